-- `check` finds what would go wrong only during an outage: globals the
-- compiler cannot put in one instruction, ctx.state typos, undeclared params.
local t = require "atlas.test"

local function check(source)
    local dir = t.tmpdir()
    local path = dir .. "/pb.lua"
    t.write_file(path, source)
    local r = t.run { "check", path }
    return r, path
end

local function playbook(step_body, params)
    return string.format(
        [[
local atlas = require "atlas"
return atlas.playbook { name = "pb", description = "d", params = { %s },
    steps = {
        { name = "s", run = function(ctx)
%s
        end },
    } }
]],
        params or "",
        step_body
    )
end

t.case("an undefined global with a name over 40 characters is found, read or written", function()
    local long = "an_undefined_global_whose_name_is_longer_than_forty_characters"
    local r = check(playbook("            return " .. long .. "_read"))
    t.eq(r.code, 2, r.stdout)
    t.match(r.stdout, "pb%.lua:5: undefined global '" .. long .. "_read'")
    r = check(playbook("            " .. long .. "_written = 1"))
    t.eq(r.code, 2, r.stdout)
    t.match(r.stdout, "pb%.lua:5: assignment to global '" .. long .. "_written'")
end)

t.case("an undefined global in a function with more than 255 constants is found", function()
    local fields = {}
    for i = 1, 300 do
        fields[i] = string.format("k%d = %d.5", i, i)
    end
    local body = "            local t = { " .. table.concat(fields, ", ") .. " }\n"
        .. "            return t, undefined_after_many_constants"
    local r = check(playbook(body))
    t.eq(r.code, 2, r.stdout)
    t.match(r.stdout, "pb%.lua:6: undefined global 'undefined_after_many_constants'")
end)

t.case("a ctx.state field that a step reads and no step writes is reported with its line", function()
    local r = check(playbook([[
            ctx.state.before, ctx.state.count = 1, 2
            local other = {}
            other.x, ctx.state.after = 1, 3
            return ctx.state.befor + ctx.state.count + ctx.state.after]]))
    t.eq(r.code, 2, r.stdout)
    t.match(r.stdout, "pb%.lua:8: ctx%.state%.befor is read but no step writes it")
    t.no_match(r.stdout, "ctx.state.count is read")
    t.no_match(r.stdout, "ctx.state.after is read")
end)

t.case("ctx.state reached through an alias is not guessed at", function()
    local r = check(playbook([[
            local s = ctx.state
            s.value = 1
            return ctx.state.value]]))
    t.eq(r.code, 0, r.stdout)
end)

t.case("a ctx.params name the playbook does not declare is reported with its line", function()
    local r = check(playbook([[
            return ctx.params.region, ctx.params.regoin]], 'region = { type = "region" }'))
    t.eq(r.code, 2, r.stdout)
    t.match(r.stdout, "pb%.lua:5: ctx%.params%.regoin is not a declared parameter %(declared: region%)")
    t.no_match(r.stdout, "ctx.params.region is not")
end)
