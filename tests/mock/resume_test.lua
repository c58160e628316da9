-- Resume and rollback of the failover in the mock world: a resumed run is
-- the same run, and nothing is lost between a call and the end of its step.
local t = require "atlas.test"
local sys = require "atlas.sys"
local json = require "atlas.json"
local runtime = require "atlas.runtime"
local journal_mod = require "atlas.journal"

local PLAYBOOK = "playbooks/dr_region_outage.lua"

-- The saved DNS records live in the state directory: this file's own.
local saved_state_dir = os.getenv("ATLAS_STATE_DIR")
sys.setenv("ATLAS_STATE_DIR", t.tmpdir())
t.defer(function() sys.setenv("ATLAS_STATE_DIR", saved_state_dir) end)

local function mutations_sent(world)
    local n = 0
    for _, c in ipairs(world.calls) do
        if c.module == "aws" and runtime.is_mutating(c.service, c.action) then n = n + 1 end
    end
    return n
end

local function served(world)
    local out = {}
    for _, r in ipairs(world:snapshot().api_records) do
        out[r.set_identifier] = r.value
    end
    return out
end

-- The end state of a correct failover of eu-west-1 to us-east-1.
local function assert_failed_over(world, before)
    local snap = world:snapshot()
    t.eq(snap.ecs["us-east-1"].desired, 10, "the backup runs the full count")
    t.eq(snap.ecs["us-east-1"].running, 10)
    local now = served(world)
    t.eq(now["eu-west-1"], "us-east-1.atlas-crm.com")
    for _, id in ipairs({ "us-east-1", "ap-southeast-1", "default" }) do
        t.eq(now[id], before[id], "record " .. id .. " unchanged")
    end
end

t.case("a run rolled back and then resumed runs the undone steps again", function()
    local world = t.world("eu-west-1-outage")
    local before = served(world)
    -- The DNS change fails for good: --rollback scales the backup back down.
    world:inject { service = "route53", action = "ChangeResourceRecordSets", code = "InvalidInput", times = 1 }
    local failed = t.run_playbook(PLAYBOOK, {}, { world = world, rollback = true })
    t.eq(failed.status, "failed")
    t.eq(failed.step, "disable failed region in DNS")
    t.eq(world:snapshot().ecs["us-east-1"].desired, 2, "the undo put the backup back")
    t.eq(failed.journal.steps[2].status, "undone")

    local resumed = t.run_playbook(PLAYBOOK, {}, { world = world, resume = failed })
    t.eq(resumed.status, "ok", tostring(resumed.error))
    assert_failed_over(world, before)
end)

t.case("resume checks again that the region is down", function()
    local world = t.world("eu-west-1-outage")
    world:stall_service("us-east-1")
    local failed = t.run_playbook(PLAYBOOK, { stable_timeout = "600" }, { world = world })
    t.eq(failed.step, "wait for backup region to be stable")
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
    t.eq(statuses, { "checked", "skipped", "skipped", "ok", "ok" })
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

-- Runs the failover and stops it dead right after its Nth journal write, as
-- SIGKILL would: returns the journal as it was on disk at that moment, or
-- nil when the run has fewer writes.
local function crash_after_write(world, n, args)
    local store = require("atlas.state").open()
    local writes, key, on_disk = 0, nil, nil
    local original = journal_mod.after_write
    journal_mod.after_write = function(journal)
        writes = writes + 1
        if writes == n then
            key = "runs/" .. journal.run_id .. ".json"
            on_disk = assert(store:get(key))
            error("crash after journal write " .. n, 0)
        end
    end
    local ok, err = pcall(t.run_playbook, PLAYBOOK, args or {}, { world = world })
    journal_mod.after_write = original
    if not ok and not on_disk then error(err, 0) end
    if not on_disk then return nil end
    -- What the process would have written after the crash never happened.
    assert(store:put(key, on_disk))
    return assert(journal_mod.load(key:match("^runs/(.*)%.json$")))
end

t.case("a failover cut off after any journal write resumes to the right end state, no mutation repeated", function()
    local clean = t.world("eu-west-1-outage")
    local clean_run = t.run_playbook(PLAYBOOK, {}, { world = clean })
    t.eq(clean_run.status, "ok")
    local expected_mutations = mutations_sent(clean)
    t.eq(expected_mutations, 2, "one UpdateService, one ChangeResourceRecordSets")
    local n = 0
    while true do
        n = n + 1
        local world = t.world("eu-west-1-outage")
        local before = served(world)
        local record = crash_after_write(world, n)
        if not record then break end
        local resumed = t.run_playbook(PLAYBOOK, {}, { world = world, resume = record })
        t.eq(resumed.status, "ok", "crash after write " .. n .. ": " .. tostring(resumed.error))
        assert_failed_over(world, before)
        t.eq(mutations_sent(world), expected_mutations, "crash after write " .. n .. ": mutations sent")
        -- What undo will need (the count and the records before the failover) is what a clean run saw.
        t.eq(resumed.journal.state, clean_run.journal.state, "crash after write " .. n .. ": ctx.state")
    end
    t.ok(n > 8, "the run has a journal write before and after each mutation, got " .. n - 1)
end)

t.case("a failover cut off after the DNS change rolls back to the records that were there", function()
    local world = t.world("eu-west-1-outage")
    local before = world:snapshot()
    -- Cut off after the write that records ChangeResourceRecordSets' result,
    -- while the step waits for the change to be INSYNC.
    local n, record = 0, nil
    repeat
        n = n + 1
        world = t.world("eu-west-1-outage")
        record = crash_after_write(world, n)
        local step = record and record.steps[3]
        local last = step and step.calls and step.calls[#step.calls]
    until not record or (last and last.op == "route53.ChangeResourceRecordSets" and last.status == "ok")
    t.ok(record, "the journal records the DNS change's result")
    t.eq(served(world)["eu-west-1"], "us-east-1.atlas-crm.com", "the change was applied")
    -- The resumed run then fails (the backup never stabilises) and rolls back.
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
    local n, record = 0, nil
    repeat
        n = n + 1
        world = t.world("eu-west-1-outage")
        record = crash_after_write(world, n)
        local step = record and record.steps[2]
        local last = step and step.calls and step.calls[#step.calls]
    until not record or (last and last.op == "ecs.UpdateService" and last.status == "sent")
    t.ok(record, "the intent is on disk before the call")
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
