-- Crashes of the failover in the mock world, in-process: a run stopped dead
-- right after a journal write, as SIGKILL would stop it, and what a correct
-- failover ends with. Usage: local crash = dofile("tests/support/mock_crash.lua")(t)
return function(t)
    local runtime = require "atlas.run.runtime"
    local journal_mod = require "atlas.run.journal"
    local PLAYBOOK = "playbooks/dr_region_outage.lua"

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

    -- Runs the failover and stops it dead right after a journal write, as
    -- SIGKILL would: the Nth write when `at` is a number, else the first write
    -- for which at(journal) is true. Returns the journal as it was in the store
    -- at that moment, or nil when the run never got there. playbook: the
    -- failover unless given.
    local function crash_after_write(world, at, args, playbook)
        local store = require("atlas.state").open()
        local writes, key, on_disk = 0, nil, nil
        local original = journal_mod.after_write
        journal_mod.after_write = function(journal)
            writes = writes + 1
            if on_disk == nil and (writes == at or (type(at) == "function" and at(journal))) then
                key = "runs/" .. journal.run_id .. ".json"
                on_disk = assert(store:get(key))
                error("crash after journal write " .. writes, 0)
            end
        end
        local ok, err = pcall(t.run_playbook, playbook or PLAYBOOK, args or {}, { world = world })
        journal_mod.after_write = original
        if not ok and not on_disk then error(err, 0) end
        if not on_disk then return nil end
        -- What the process would have written after the crash never happened.
        assert(store:put(key, on_disk))
        return assert(journal_mod.load(key:match("^runs/(.*)%.json$")))
    end

    -- at(journal) for crash_after_write: the last call recorded in step `index` is `op` with `status`.
    local function last_call_is(index, op, status)
        return function(journal)
            local step = journal.steps[index]
            local last = step and step.calls and step.calls[#step.calls]
            return last ~= nil and last.op == op and last.status == status
        end
    end

    return {
        mutations_sent = mutations_sent,
        served = served,
        assert_failed_over = assert_failed_over,
        crash_after_write = crash_after_write,
        last_call_is = last_call_is,
    }
end
