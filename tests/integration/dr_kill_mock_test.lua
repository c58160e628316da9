-- The failover in the mock world, stopped dead right after each journal
-- write in turn (as SIGKILL would stop it) and resumed: every time it ends in
-- the right state with the ctx.state an undo needs, and the mutations sent by
-- both attempts together are one clean run's. In-process and exhaustive; the
-- same proof against moto with a real SIGKILL is dr_kill_moto_test.lua.
local t = require "atlas.test"
local sys = require "atlas.sys"

local PLAYBOOK = "playbooks/dr_region_outage.lua"
local crash = dofile("tests/support/mock_crash.lua")(t)
local mutations_sent, served, assert_failed_over, crash_after_write =
    crash.mutations_sent, crash.served, crash.assert_failed_over, crash.crash_after_write

local saved_state_dir = os.getenv("ATLAS_STATE_DIR")
sys.setenv("ATLAS_STATE_DIR", t.tmpdir())
t.defer(function() sys.setenv("ATLAS_STATE_DIR", saved_state_dir) end)

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

