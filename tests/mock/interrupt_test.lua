-- Ctrl-C is final, in-process: the interrupt is simulated where the real
-- transport would report it (libpq returns a cancelled connection).
local t = require "atlas.test"
local runtime = require "atlas.run.runtime"
local mock_sql = require "atlas.sql.mock"

t.case("Ctrl-C while diag_replication_lag reads a secondary ends as interrupted, not critical", function()
    local world = t.world("healthy")
    local connect = mock_sql.connect
    t.defer(function() mock_sql.connect = connect end)
    mock_sql.connect = function(params, ...)
        if tostring(params.host):find("us%-east%-1") then
            runtime.interrupt()
            return nil, { sqlstate = "57014", message = "connecting cancelled by Ctrl-C", interrupted = true }
        end
        return connect(params, ...)
    end
    local result, events = t.run_playbook("playbooks/diag_replication_lag.lua", {}, { world = world })
    t.eq(result.status, "interrupted")
    t.eq(result.exit, 3)
    t.eq(result.step, "secondary subscriptions")
    -- Nothing after the interrupt reached the world: ap-southeast-1 was never asked.
    for _, c in ipairs(world.calls) do
        t.ok(not tostring(c.host):find("ap%-southeast%-1"), "no call after Ctrl-C: " .. tostring(c.host))
    end
    for _, e in ipairs(events) do
        t.ok(not (e.type == "step_end" and e.step == "assess"), "the assessment never ran")
    end
end)

t.case("after Ctrl-C every outside call raises the interrupt again; only an undo may call out", function()
    t.world("healthy")
    runtime.interrupt()
    local ecs = require "atlas.ecs"
    local args = { region = "us-east-1", cluster = "c", service = "s" }
    for _, call in ipairs({
        function() ecs.describe_service(args) end,
        function() require("atlas.http").get("https://eu-west-1.atlas-crm.com/actuator/health") end,
        function() require("atlas.proc").run { "true" } end,
        function() require("atlas.sql").connect "host=localhost dbname=atlas" end,
        function() runtime.sleep(1) end,
    }) do
        t.raises(call, "interrupted by signal")
    end
    local ok = runtime.undoing_call(function() runtime.sleep(1) end)
    t.ok(ok, "an undo may still wait")
end)

t.case("after Ctrl-C, --rollback's undo still calls out and puts the failover back", function()
    local sys = require "atlas.sys"
    local journal_mod = require "atlas.run.journal"
    local saved_dir = os.getenv("ATLAS_STATE_DIR")
    sys.setenv("ATLAS_STATE_DIR", t.tmpdir())
    local after_write = journal_mod.after_write
    t.defer(function()
        journal_mod.after_write = after_write
        sys.setenv("ATLAS_STATE_DIR", saved_dir)
    end)
    -- Ctrl-C as the wait for the backup starts.
    journal_mod.after_write = function(journal)
        local step = journal.steps[6]
        if step and step.status == "running" then runtime.interrupt() end
    end
    local world = t.world("eu-west-1-outage")
    local before = world:snapshot()
    local result = t.run_playbook("playbooks/dr_region_outage.lua", {}, { world = world, rollback = true })
    t.eq(result.status, "interrupted")
    t.eq(result.exit, 3)
    t.eq(result.step, "wait for backup region to be stable")
    t.eq(world:snapshot().api_records, before.api_records, "the undo restored DNS")
    t.eq(world:snapshot().ecs["us-east-1"].desired, 2, "the undo scaled the backup back")
    t.eq(result.journal.steps[5].status, "undone")
end)

t.case("a step that declares Ctrl-C its end (atlas.until_interrupted) ends normally; nothing after it runs", function()
    local atlas = require "atlas"
    local dir = t.tmpdir()
    local path = t.write_file(
        dir .. "/follow.lua",
        [[
local atlas = require "atlas"
return atlas.playbook {
    name = "follow",
    description = "follows until Ctrl-C",
    lock = false,
    steps = {
        { name = "follow", run = function(ctx)
            ctx.state.followed = atlas.until_interrupted(function()
                require("atlas.run.runtime").interrupt() -- Ctrl-C while following
                atlas.sleep(60)
            end)
            ctx.state.sleep_after = pcall(atlas.sleep, 1)
        end },
        { name = "after", run = function(ctx) ctx.state.after_ran = true end },
    },
}
]]
    )
    local result = t.run_playbook(path, {}, { scenario = "healthy" })
    t.eq(result.journal.state.followed, false, "Ctrl-C ended the follow")
    t.eq(result.journal.state.sleep_after, false, "no outside call after it")
    t.eq(result.journal.steps[1].status, "ok", "the follow step ended normally")
    t.eq(result.journal.state.after_ran, nil, "the next step never ran")
    t.eq(result.exit, 3)
    t.raises(function() atlas.until_interrupted(error, "other") end, "other")
end)
