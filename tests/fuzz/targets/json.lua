-- json.decode on any bytes: a value, or nil and a positioned message, never a raise; what decodes must survive encode and decode unchanged
-- (kinds included: an empty array stays an array).
local json = require "atlas.json"

local function same(a, b, depth)
    if type(a) ~= type(b) then return false end
    if type(a) ~= "table" then
        if a ~= a and b ~= b then return true end -- NaN never comes from JSON, but be exact
        return a == b and math.type(a) == math.type(b)
    end
    if json.is_array(a) ~= json.is_array(b) or depth > 2000 then return false end
    for k, v in pairs(a) do
        if not same(v, b[k], depth + 1) then return false end
    end
    for k in pairs(b) do
        if a[k] == nil then return false end
    end
    return true
end

return function(data)
    local ok, value, message, code = pcall(json.decode, data)
    if not ok then fuzz.fail("decode raised on wire data: " .. tostring(value)) end
    if value == nil then
        if type(message) ~= "string" or not message:find("^line %d+ column %d+: ") or code ~= "malformed" then
            fuzz.fail("a refusal is not nil, 'line L column C: msg', 'malformed': " .. tostring(message))
        end
        return
    end
    local encoded_ok, text = pcall(json.encode, value)
    if not encoded_ok then fuzz.fail("a decoded value does not encode: " .. tostring(text)) end
    local again, refused = json.decode(text)
    if again == nil then fuzz.fail("encode produced text decode refuses: " .. tostring(refused)) end
    if not same(value, again, 0) then fuzz.fail("round trip changed the value: " .. text) end
end
