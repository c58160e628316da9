-- xml.parse on any bytes: a tree of well-formed elements, or nil, a positioned message and
-- a code; never a raise.
local xml = require "atlas.xml"

local function check(node, depth)
    if type(node.tag) ~= "string" or type(node.attr) ~= "table" then fuzz.fail("element without tag or attr") end
    if node.text ~= nil and (type(node.text) ~= "string" or node.text == "") then fuzz.fail("empty or odd text") end
    if depth > 200 then fuzz.fail("deeper than the limit") end
    for k, v in pairs(node.attr) do
        if type(k) ~= "string" or type(v) ~= "string" then fuzz.fail("attribute not a string") end
    end
    for i, child in ipairs(node) do
        check(child, depth + 1)
    end
end

return function(data)
    local ok, root, message, code = pcall(xml.parse, data)
    if not ok then fuzz.fail("parse raised: " .. tostring(root)) end
    if root == nil then
        if type(message) ~= "string" or not message:find("^line %d+ column %d+: ") or code ~= "malformed" then
            fuzz.fail("failure without a positioned message: " .. tostring(message))
        end
        return
    end
    check(root, 1)
end
