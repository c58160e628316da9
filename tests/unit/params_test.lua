local t = require "atlas.test"
local params = require "atlas.run.params"

local specs = params.check_specs("p", {
    failed_region = { type = "region", default = "eu-west-1" },
    count = { type = "integer", default = 10, min = 1, max = 50 },
    force = { type = "boolean", default = false },
    hosts = { type = "list" },
    name = { type = "string", required = true },
    ratio = { type = "number" },
})

t.case("converts each type from its command-line text", function()
    local values = params.parse(specs, { count = "7", force = "yes", hosts = "a, b,,c", name = "x", ratio = "0.25" })
    t.eq(
        values,
        { failed_region = "eu-west-1", count = 7, force = true, hosts = { "a", "b", "c" }, name = "x", ratio = 0.25 }
    )
end)

t.case("rejects bad values naming the parameter and what it accepts", function()
    local cases = {
        {
            { name = "x", failed_region = "mars-west-9" },
            'parameter failed_region: "mars%-west%-9" is not one of eu%-west%-1, us%-east%-1, ap%-southeast%-1',
        },
        { { name = "x", count = "ten" }, 'parameter count: "ten" is not an integer from 1 to 50' },
        { { name = "x", count = "99" }, "parameter count: 99 is not an integer from 1 to 50" },
        { { name = "x", count = "2.5" }, "is not an integer" },
        -- decimal only: tonumber alone takes all of these
        { { name = "x", count = "0x8" }, '"0x8" is not an integer' },
        { { name = "x", count = "5e0" }, '"5e0" is not an integer' },
        { { name = "x", count = " 5" }, '" 5" is not an integer' },
        { { name = "x", count = "5 " }, '"5 " is not an integer' },
        { { name = "x", ratio = "0x1p4" }, "is not a number" },
        { { name = "x", ratio = " 0.5" }, "is not a number" },
        { { name = "x", force = "maybe" }, 'parameter force: "maybe" is not true or false' },
        { { name = "x", ratio = "nan" }, "is not a number" },
        { {}, "parameter name is required" },
        {
            { name = "x", colour = "red" },
            'unknown parameter "colour" %(this playbook takes: count, failed_region, force, hosts, name, ratio%)',
        },
    }
    for _, case in ipairs(cases) do
        local err = t.raises(function() params.parse(specs, case[1]) end, case[2])
        t.eq(err.kind, "usage")
    end
end)

t.case("bad declarations are refused when the playbook loads", function()
    t.raises(function() params.check_specs("p", { x = { type = "colour" } }) end, "unknown type 'colour'")
    t.raises(
        function() params.check_specs("p", { x = { type = "integer", default = "abc" } }) end,
        "the default of parameter x"
    )
    t.raises(
        function() params.check_specs("p", { x = { type = "string", defualt = "typo" } }) end,
        "unknown field 'defualt'"
    )
end)

t.case("cross-parameter validation runs after conversion", function()
    local s = params.check_specs("p", { a = { type = "region" }, b = { type = "region" } })
    t.raises(function()
        params.parse(s, { a = "eu-west-1", b = "eu-west-1" }, function(v)
            if v.a == v.b then return "a and b must differ" end
        end)
    end, "a and b must differ")
end)

t.case("durations take s, m, h, d or bare seconds; min and max are in seconds", function()
    local d = params.check_specs("p", { since = { type = "duration", default = "10m", min = 60, max = 7 * 86400 } })
    local cases = { { "90s", 90 }, { "10m", 600 }, { "24h", 86400 }, { "2d", 172800 }, { "3600", 3600 }, { "1.5h", 5400 } }
    for _, case in ipairs(cases) do
        t.eq(params.parse(d, { since = case[1] }).since, case[2], case[1])
    end
    t.eq(params.parse(d, {}).since, 600)
    t.raises(function() params.parse(d, { since = "a day" }) end, 'parameter since: "a day" is not a duration')
    t.raises(function() params.parse(d, { since = "30s" }) end, "parameter since: 30s is not a duration")
    t.raises(function() params.parse(d, { since = "8d" }) end, "is not a duration .* from 60 to 604800")
end)

t.case("a list's min and max count its items", function()
    local l = params.check_specs("p", { regions = { type = "list", min = 1, max = 2 } })
    t.eq(params.parse(l, { regions = "a,b" }).regions, { "a", "b" })
    t.raises(function() params.parse(l, { regions = "" }) end, 'parameter regions: "" has 0 item%(s%); it needs 1 to 2')
    t.raises(function() params.parse(l, { regions = "a,b,c" }) end, "has 3 item%(s%); it needs 1 to 2")
end)
