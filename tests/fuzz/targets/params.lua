-- The parameter converter (atlas.params.parse) on any command-line value. Input: byte 1 picks
-- the type, byte 2 the constraints, the rest is the value. Property: the typed value, or a
-- usage error object (exit 2); never a bare Lua error.
local params = require "atlas.run.params"

local TYPES = { "string", "integer", "number", "boolean", "list", "region" }

return function(data)
    if #data < 2 then return end
    local spec = { name = "p", type = TYPES[data:byte(1) % #TYPES + 1], description = "fuzzed" }
    local flags = data:byte(2)
    if flags & 1 ~= 0 then spec.min, spec.max = 1, 5 end
    if flags & 2 ~= 0 and spec.type ~= "boolean" and spec.type ~= "list" then spec.pattern = "^[a-z0-9-]+$" end
    if flags & 4 ~= 0 and (spec.type == "string" or spec.type == "region") then spec.choices = { "a", "b" } end
    local ok, specs = pcall(params.check_specs, "fuzz", { spec })
    if not ok then return end
    local parsed_ok, values = pcall(params.parse, specs, { p = data:sub(3) })
    if parsed_ok then
        local v = values.p
        local want = ({ integer = "number", number = "number", boolean = "boolean", list = "table" })[spec.type]
            or "string"
        if type(v) ~= want then fuzz.fail(spec.type .. " gave a " .. type(v)) end
        if spec.type == "integer" and math.type(v) ~= "integer" then fuzz.fail("integer gave a float") end
    elseif type(values) ~= "table" or values.kind ~= "usage" then
        fuzz.fail("parse raised a bare error: " .. tostring(values))
    end
end
