-- A playbook cannot tell which world it runs in (docs/architecture.md): no
-- ctx.mock, no atlas.is_mock(). What the world was is the runtime's to say,
-- in the run's first event, which the timeline and the report print.
local t = require "atlas.test"

local PLAYBOOK = [[
local atlas = require "atlas"
return atlas.playbook {
    name = "blind",
    description = "looks for a way to tell the mock world from AWS",
    steps = {
        { name = "look", run = function(ctx)
            local seen = {}
            for key in pairs(ctx) do seen[#seen + 1] = key end
            table.sort(seen)
            ctx.state.ctx_keys = table.concat(seen, " ")
            ctx.state.is_mock = type(atlas.is_mock)
        end },
    },
}
]]

t.case("neither ctx nor atlas says whether the world is the mock; the run's events do", function()
    local path = t.write_file(t.tmpdir() .. "/blind.lua", PLAYBOOK)
    local result, events = t.run_playbook(path, {}, { scenario = "eu-west-1-outage" })
    t.eq(result.status, "ok")
    local state = result.journal.state
    t.eq(state.is_mock, "nil")
    t.match(state.ctx_keys, "params")
    for _, word in ipairs { "mock", "world", "scenario" } do
        t.no_match(state.ctx_keys, word)
    end
    -- The runtime says it, in run_start: the timeline and --report print it from there.
    t.eq({ events[1].type, events[1].mode, events[1].scenario }, { "run_start", "mock", "eu-west-1-outage" })
end)
