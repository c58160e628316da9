-- diag_connection_pool terminate_idle=true in the mock world: which sessions
-- end, which never do, and what --dry-run and a refused confirmation leave.
local t = require "atlas.test"

local PLAYBOOK = "playbooks/diag_connection_pool.lua"

local messages = t.messages

local function states(world, region)
    local counts = {}
    for _, s in ipairs(world.db.regions[region].sessions) do
        local key = s.state .. "/" .. math.floor(s.state_seconds)
        counts[key] = (counts[key] or 0) + 1
    end
    return counts
end

-- The healthy pool (3 active, 17 idle for 12 s) plus sessions left behind.
local function crowded_world()
    local world = t.world("healthy")
    world.db:add_sessions("eu-west-1", { state = "idle", count = 4, seconds = 900 })
    world.db:add_sessions("eu-west-1", { state = "idle in transaction", count = 2, seconds = 700 })
    world.db:add_sessions("eu-west-1", { state = "active", count = 2, seconds = 2000, query = "SELECT pg_sleep(3000)" })
    return world
end

t.case("terminate_idle ends the long-idle sessions, never an active one", function()
    local world = crowded_world()
    local result, events = t.run_playbook(
        PLAYBOOK,
        { terminate_idle = "true", idle_seconds = "300" },
        { world = world }
    )
    t.eq(result.status, "ok", tostring(result.error))
    t.eq(states(world, "eu-west-1"), { ["active/0"] = 3, ["idle/12"] = 17, ["active/2000"] = 2 })
    local text = messages(events)
    t.match(
        text,
        "confirmed by %-%-yes: End 6 sessions idle for over 300 s on atlas%-production%-db%-eu%-west%-1 %(eu%-west%-1%)%?"
    )
    t.match(text, "eu%-west%-1: ended 6 idle sessions")
    t.match(text, "eu%-west%-1: headroom=3579 of 3601", "headroom read again after the sessions ended")
    t.eq(#world.db.regions["us-east-1"].sessions, 20, "another region's database untouched")
end)

t.case("--dry-run lists the sessions and ends none; the statement is printed", function()
    local world = crowded_world()
    local result, events = t.run_playbook(
        PLAYBOOK,
        { terminate_idle = "true", idle_seconds = "300" },
        { world = world, dry_run = true }
    )
    t.eq(result.status, "ok", tostring(result.error))
    t.eq(#world.db.regions["eu-west-1"].sessions, 28)
    local text = messages(events)
    local listed = 0
    for _ in text:gmatch("would end pid %d+") do
        listed = listed + 1
    end
    t.eq(listed, 6)
    local printed
    for _, e in ipairs(events) do
        if e.type == "call" and e.outcome == "dry-run" then printed = e.params end
    end
    t.match(printed, "pg_terminate_backend%(pid%)")
    t.match(printed, "state IN %('idle', 'idle in transaction', 'idle in transaction %(aborted%)'%)")
end)

t.case("a refused confirmation ends nothing and exits 3", function()
    local world = crowded_world()
    local result = t.run_playbook(
        PLAYBOOK,
        { terminate_idle = "true", idle_seconds = "300" },
        { world = world, yes = false }
    )
    t.eq(result.status, "refused")
    t.eq(result.exit, 3)
    t.match(tostring(result.error), "atlas%-production%-db%-eu%-west%-1")
    t.eq(#world.db.regions["eu-west-1"].sessions, 28)
end)

t.case("without terminate_idle nothing is asked or ended; nothing idle long enough is said", function()
    local world = crowded_world()
    local result = t.run_playbook(PLAYBOOK, {}, { world = world, yes = false })
    t.eq(result.status, "ok", tostring(result.error))
    t.eq(#world.db.regions["eu-west-1"].sessions, 28)
    local events
    result, events = t.run_playbook(
        PLAYBOOK,
        { terminate_idle = "true", idle_seconds = "5000" },
        { world = world, yes = false }
    )
    t.eq(result.status, "ok", tostring(result.error))
    t.match(messages(events), "no session idle for over 5000 s; nothing to end")
end)

t.case("an unreachable database fails the run before anything ends", function()
    local result = t.run_playbook(PLAYBOOK, { terminate_idle = "true" }, { scenario = "eu-west-1-db-failure" })
    t.eq(result.status, "failed")
    t.eq(result.step, "connections by state")
    t.eq(result.error.kind, "sql")
end)

t.case("idle_seconds must not be negative", function()
    t.raises(function() t.run_playbook(PLAYBOOK, { terminate_idle = "true", idle_seconds = "-1" }) end, "idle_seconds")
end)
