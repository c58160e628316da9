-- The conninfo and URI parser: libpq's (atlas.pq.conninfo_parse, C; the mock world's backend
-- uses the same function) and atlas.sql's on top of it. Property: a table of strings, or a
-- refusal (nil, a message and the code "conninfo"; an sql error object from atlas.sql); never
-- a bare Lua error.
local pq = require "atlas.pq"
local sql = require "atlas.sql"

return function(data)
    local ok, parsed, message, code = pcall(pq.conninfo_parse, data)
    if not ok then
        -- an embedded NUL is misuse of the C string API: a raise is the right answer then
        if not data:find("\0", 1, true) then fuzz.fail("conninfo_parse raised: " .. tostring(parsed)) end
        return
    end
    if parsed == nil then
        if type(message) ~= "string" then fuzz.fail("refusal without a message") end
        if code ~= "conninfo" then fuzz.fail("refusal without the code conninfo: " .. tostring(code)) end
    else
        for k, v in pairs(parsed) do
            if type(k) ~= "string" or type(v) ~= "string" then fuzz.fail("a non-string option") end
        end
    end
    local sql_ok, result = pcall(sql.parse_conninfo, data)
    if not sql_ok and (type(result) ~= "table" or result.kind ~= "sql") then
        fuzz.fail("sql.parse_conninfo raised a bare error: " .. tostring(result))
    end
end
