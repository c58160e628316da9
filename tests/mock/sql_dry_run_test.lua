-- The mock world's databases keep the same rule as PostgreSQL: a dry run's
-- statements run in a read-only transaction that refuses writes (25006), so
-- they are printed as changes that would be made; a playbook's own
-- transaction tricks cannot lift it; and a step not declared mutates cannot
-- write outside a dry run.
local t = require "atlas.test"

local function playbook(body, step_fields)
    local path = t.tmpdir() .. "/mock_tricks.lua"
    t.write_file(
        path,
        [[
local atlas = require "atlas"
local sql = require "atlas.sql"
local replication = require "atlas.replication"
return atlas.playbook {
    name = "mock_tricks", description = "sends SQL to the mock primary", lock = false,
    steps = { { name = "send sql", ]] .. (step_fields or 'mutates = true, confirm = "Send?",') .. [[ run = function()
        local target = replication.resolve_targets {}
        local db <close> = sql.connect(target.primary.spec)
]] .. body .. [[

    end } },
}
]]
    )
    return path
end

local CREATE = [[CREATE PUBLICATION p_dry FOR TABLE organization]]

local function printed(events)
    local out = {}
    for _, e in ipairs(events) do
        if e.type == "call" and e.outcome == "dry-run" then out[#out + 1] = e.params end
    end
    return out
end

t.case("mock dry run: a write is refused by the read-only transaction and printed, whatever the tricks", function()
    local world = t.world("healthy")
    local body = table.concat({
        'db:exec("' .. CREATE .. '")',
        'db:exec("SET TRANSACTION READ WRITE; ' .. CREATE .. '")',
        'db:exec("COMMIT; SET default_transaction_read_only = off; ' .. CREATE .. '; COMMIT")',
        'db:exec("BEGIN READ WRITE; ' .. CREATE .. '; COMMIT")',
        'db:query("SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE"); db:query("' .. CREATE .. '")',
        'db:transaction(function(tx) tx:exec("' .. CREATE .. '") end)',
    }, "\n")
    local result, events = t.run_playbook(playbook(body), {}, { world = world, dry_run = true })
    t.eq(result.status, "ok", tostring(result.error))
    t.eq(world.db.regions["eu-west-1"].publications.p_dry, nil)
    local lines = printed(events)
    t.eq(#lines, 6)
    for _, line in ipairs(lines) do
        t.eq(line, CREATE)
    end
end)

t.case("mock: a step not declared mutates cannot write; a declared one can", function()
    local world = t.world("healthy")
    local result = t.run_playbook(playbook('db:exec("' .. CREATE .. '")', ""), {}, { world = world })
    t.eq(result.status, "failed")
    t.eq(result.error.code, "undeclared_change")
    t.match(tostring(result.error), "PostgreSQL refused it: cannot execute CREATE PUBLICATION in a read%-only transaction")
    t.eq(world.db.regions["eu-west-1"].publications.p_dry, nil)
    result = t.run_playbook(playbook('db:exec("' .. CREATE .. '")'), {}, { world = world })
    t.eq(result.status, "ok", tostring(result.error))
    t.ok(world.db.regions["eu-west-1"].publications.p_dry, "created by the declared step")
end)
