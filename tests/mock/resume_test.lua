-- Resume and rollback of the failover in the mock world: a resumed run is
-- the same run, and nothing is lost between a call and the end of its step.
local t = require "atlas.test"
local sys = require "atlas.sys"
local json = require "atlas.json"

local PLAYBOOK = "playbooks/dr_region_outage.lua"
local crash = dofile("tests/support/mock_crash.lua")(t)
local served, assert_failed_over, crash_after_write, last_call_is =
    crash.served, crash.assert_failed_over, crash.crash_after_write, crash.last_call_is

-- The saved DNS records live in the state directory: this file's own.
local saved_state_dir = os.getenv("ATLAS_STATE_DIR")
sys.setenv("ATLAS_STATE_DIR", t.tmpdir())
t.defer(function() sys.setenv("ATLAS_STATE_DIR", saved_state_dir) end)

t.case("a run rolled back and then resumed runs the undone steps again", function()
    local world = t.world("eu-west-1-outage")
    local before = served(world)
    -- The DNS change fails for good: --rollback scales the backup back down.
    world:inject { service = "route53", action = "ChangeResourceRecordSets", code = "InvalidInput", times = 1 }
    local failed = t.run_playbook(PLAYBOOK, {}, { world = world, rollback = true })
    t.eq(failed.status, "failed")
    t.eq(failed.step, "disable failed region in DNS")
    t.eq(world:snapshot().ecs["us-east-1"].desired, 2, "the undo put the backup back")
    t.eq(failed.journal.steps[3].status, "undone")

    local resumed = t.run_playbook(PLAYBOOK, {}, { world = world, resume = failed })
    t.eq(resumed.status, "ok", tostring(resumed.error))
    assert_failed_over(world, before)
end)

t.case("resume checks again that the region is down", function()
    local world = t.world("eu-west-1-outage")
    world:stall_service("us-east-1")
    local failed = t.run_playbook(PLAYBOOK, { stable_timeout = "600" }, { world = world })
    t.eq(failed.step, "wait for backup capacity")
    -- eu-west-1 came back meanwhile: the failover must not go on.
    world:set_service("eu-west-1", { running = 2 })
    world:set_endpoint("eu-west-1", { status = 200 })
    world:force_health_check("eu-west-1", true)
    world:stall_service("us-east-1", false)
    local resumed = t.run_playbook(PLAYBOOK, {}, { world = world, resume = failed })
    t.eq(resumed.status, "failed")
    t.eq(resumed.step, "verify failed region is down")
    t.match(tostring(resumed.error), "eu%-west%-1 looks healthy")
end)

t.case("a resume that passes the check continues, and the check shows in the timeline", function()
    local world = t.world("eu-west-1-outage")
    local before = served(world)
    world:stall_service("us-east-1")
    local failed = t.run_playbook(PLAYBOOK, { stable_timeout = "600" }, { world = world })
    t.eq(failed.status, "failed")
    world:stall_service("us-east-1", false)
    local resumed, events = t.run_playbook(PLAYBOOK, {}, { world = world, resume = failed })
    t.eq(resumed.status, "ok", tostring(resumed.error))
    local statuses = {}
    for _, e in ipairs(events) do
        if e.type == "step_end" then statuses[#statuses + 1] = e.status end
    end
    t.eq(statuses, { "checked", "skipped", "skipped", "ok", "ok", "ok", "ok" })
    assert_failed_over(world, before)
end)

t.case("resume refuses a parameter that differs from the run's, naming it", function()
    local world = t.world("eu-west-1-outage")
    world:stall_service("us-east-1")
    local failed = t.run_playbook(PLAYBOOK, { stable_timeout = "600" }, { world = world })
    t.raises(
        function() t.run_playbook(PLAYBOOK, { failed_region = "ap-southeast-1" }, { world = world, resume = failed }) end,
        "parameter failed_region is eu%-west%-1 in run .*, not ap%-southeast%-1"
    )
    t.raises(
        function() t.run_playbook(PLAYBOOK, { stable_timeout = "900" }, { world = world, resume = failed }) end,
        "parameter stable_timeout is 600"
    )
    -- The same value again is the same run.
    world:stall_service("us-east-1", false)
    local resumed = t.run_playbook(PLAYBOOK, { desired_count = "10" }, { world = world, resume = failed })
    t.eq(resumed.status, "ok", tostring(resumed.error))
end)

t.case("a failover cut off after the DNS change rolls back to the records that were there", function()
    local world = t.world("eu-west-1-outage")
    local before = world:snapshot()
    -- Cut off after the write that records ChangeResourceRecordSets' result,
    -- before the step waits for the change to be INSYNC.
    local record = crash_after_write(world, last_call_is(5, "route53.ChangeResourceRecordSets", "ok"))
    t.ok(record, "the journal records the DNS change's result")
    t.eq(served(world)["eu-west-1"], "us-east-1.atlas-crm.com", "the change was applied")
    -- The resumed run then fails (the backup loses tasks and never stabilises) and rolls back.
    world:set_service("us-east-1", { running = 4 })
    world:stall_service("us-east-1")
    local resumed = t.run_playbook(PLAYBOOK, {}, { world = world, resume = record, rollback = true })
    t.eq(resumed.status, "failed")
    t.eq(resumed.step, "wait for backup region to be stable")
    t.eq(world:snapshot().api_records, before.api_records, "DNS is back exactly as it was")
    t.eq(world:snapshot().ecs["us-east-1"].desired, 2)
end)

t.case("a mutation whose answer was never recorded is sent again only when idempotent", function()
    local world = t.world("eu-west-1-outage")
    -- Cut off right after the intent of UpdateService is on disk.
    local record = crash_after_write(world, last_call_is(3, "ecs.UpdateService", "sent"))
    t.ok(record, "the intent is on disk before the call")
    t.eq(#world:calls_to("ecs", "UpdateService"), 0, "and before it is sent")
    -- Pretend the call reached ECS before the crash.
    world:set_service("us-east-1", { desired = 10 })
    local resumed = t.run_playbook(PLAYBOOK, {}, { world = world, resume = record })
    t.eq(resumed.status, "ok", tostring(resumed.error))
    t.eq(#world:calls_to("ecs", "UpdateService"), 1, "setting a count is idempotent: sent again")
    -- The count it had before the failover is the one the journal saw, not the one after the crash.
    t.eq(resumed.journal.state.backup_previous_count, 2)
end)

t.case("the journal keeps a step's calls up to its last mutation, and json survives the round trip", function()
    local world = t.world("eu-west-1-outage")
    local result = t.run_playbook(PLAYBOOK, {}, { world = world })
    local record = t.journal_record(result.journal)
    local ops = {}
    for _, step in ipairs(record.steps) do
        for _, c in ipairs(step.calls or {}) do
            ops[#ops + 1] = c.op .. " " .. c.status
        end
    end
    t.eq(ops, { "ecs.UpdateService ok", "route53.ChangeResourceRecordSets ok" })
    t.ok(json.encode(record), "encodable")
end)

t.case("a mutation that is not idempotent and whose answer was never recorded stops the resume", function()
    local dir = t.tmpdir()
    local path = t.write_file(
        dir .. "/redeploy.lua",
        [[
local atlas = require "atlas"
local ecs = require "atlas.ecs"
return atlas.playbook {
    name = "redeploy",
    description = "a new deployment: not idempotent",
    steps = {
        {
            name = "redeploy",
            mutates = true,
            confirm = "Redeploy?",
            run = function()
                ecs.update_service {
                    region = "us-east-1",
                    cluster = "atlas-crm-production-cluster-us-east-1",
                    service = "atlas-crm-production-service-us-east-1",
                    forceNewDeployment = true,
                }
            end,
        },
    },
}
]]
    )
    local world = t.world("healthy")
    local record = crash_after_write(world, last_call_is(1, "ecs.UpdateService", "sent"), {}, path)
    t.ok(record, "the intent is on disk")
    local refused = t.run_playbook(path, {}, { world = world, resume = record })
    t.eq(refused.status, "failed")
    t.match(tostring(refused.error), "ecs UpdateService %(us%-east%-1%): UnknownOutcome: .*not safe to repeat")
    t.eq(#world:calls_to("ecs", "UpdateService"), 0, "not sent while its outcome is unknown")
    -- The operator checked: the next resume sends it.
    local resumed = t.run_playbook(path, {}, { world = world, resume = refused })
    t.eq(resumed.status, "ok", tostring(resumed.error))
    t.eq(#world:calls_to("ecs", "UpdateService"), 1)
end)
