local t = require "atlas.test"
local json = require "atlas.json"
local atlas = require "atlas"

t.case("round trips arrays, objects, null and numbers", function()
    local cases = {
        { "[1,2,3]", { 1, 2, 3 } },
        { '{"a":1,"b":"x"}', { a = 1, b = "x" } },
        { "[]", {} },
        { "{}", {} },
        { "null", json.null },
        { "[1,null,3]", { 1, json.null, 3 } },
        { '{"n":1.5}', { n = 1.5 } },
        { '"\\u00e9"', "é", '"é"' },
        { "9007199254740993", 9007199254740993 },
    }
    for _, case in ipairs(cases) do
        local decoded = json.decode(case[1])
        t.eq(decoded, case[2], case[1])
        t.eq(json.encode(decoded), case[3] or case[1], "re-encoding " .. case[1])
    end
end)

t.case("one null sentinel for everything", function()
    t.ok(atlas.null == json.null)
    t.ok(json.decode("null") == atlas.null)
    t.eq(json.encode({ a = atlas.null }), '{"a":null}')
end)

t.case("empty tables encode the same way every time, and either kind can be forced", function()
    for _ = 1, 3 do
        t.eq(json.encode({}), "{}")
    end
    t.eq(json.encode(json.array()), "[]")
    t.eq(json.encode(json.object({})), "{}")
    t.eq(json.encode({ list = json.array({}) }), '{"list":[]}')
    t.ok(json.is_array(json.decode("[]")))
    t.ok(not json.is_array(json.decode("{}")))
end)

t.case(
    "keys are sorted, so output is stable",
    function() t.eq(json.encode({ zeta = 1, alpha = 2, mid = 3 }), '{"alpha":2,"mid":3,"zeta":1}') end
)

t.case("integers and floats keep their kind", function()
    t.eq(math.type(json.decode("3")), "integer")
    t.eq(math.type(json.decode("3.0")), "float")
    t.eq(json.encode(3), "3")
end)

t.case("malformed input is the outside world's failure: nil, its position, malformed", function()
    local cases = {
        { '{"a": [1, 2,', "line 1 column 12" },
        { '{"a" 1}', "line 1 column 6" },
        { "[1, 2]\n]", "line 2" },
        { "", "line 1" },
        { '{"a":tru}', "line 1" },
        { '"\\ud800"', "line 1" },
        { string.rep("[", 100000), "line 1" },
    }
    for _, case in ipairs(cases) do
        local value, message, code = json.decode(case[1])
        t.eq({ value, code }, { nil, "malformed" }, case[1]:sub(1, 20))
        t.match(message, "^" .. case[2]:gsub("%p", "%%%0") .. ".*: ")
    end
    -- false and null are values, not failures
    t.eq({ json.decode("false") }, { false })
    t.eq(select("#", json.decode("null")), 1)
end)

t.case("misuse raises: decode takes a string", function()
    t.raises(function() json.decode() end, "string expected")
    t.raises(function() json.decode {} end, "string expected")
end)

t.case("values JSON cannot hold are refused with a reason", function()
    t.raises(function()
        json.encode(function() end)
    end, "cannot encode a value of type function")
    t.raises(function() json.encode(0 / 0) end, "not a JSON number")
    t.raises(function() json.encode({ [true] = 1 }) end, "key of type boolean")
    t.raises(function() json.encode("\255") end, "invalid UTF%-8")
    local cycle = {}
    cycle.self = cycle
    t.raises(function() json.encode(cycle) end, "nesting deeper")
end)

t.case("random bytes never crash the decoder", function()
    math.randomseed(42)
    local alphabet = '{}[]",:0123456789.eE+-truefalsn\\u \n\t\0\255'
    for _ = 1, 2000 do
        local n = math.random(0, 40)
        local chars = {}
        for i = 1, n do
            local k = math.random(#alphabet)
            chars[i] = alphabet:sub(k, k)
        end
        pcall(json.decode, table.concat(chars))
    end
    t.ok(true)
end)

t.case("indent option pretty-prints", function() t.eq(json.encode({ a = 1 }, { indent = 2 }), '{\n  "a": 1\n}') end)
