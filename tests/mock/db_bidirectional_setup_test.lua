-- db_bidirectional_setup in the mock world: the refusal before PostgreSQL
-- 16, and on 16 (server_version_num 160000 and later) every region made a
-- publisher and a subscriber of the others with origin = none.
local t = require "atlas.test"

local PLAYBOOK = "playbooks/db_bidirectional_setup.lua"
local REGIONS = { "eu-west-1", "us-east-1", "ap-southeast-1" }
local SHORT = { ["eu-west-1"] = "eu", ["us-east-1"] = "us", ["ap-southeast-1"] = "ap" }

local messages = t.messages

-- A statement that changed a mock database: a write that was not refused.
local WRITING_TAGS = { create_slot = true, drop_slot = true, setval = true, terminate_idle = true }
local CONTROL = { BEGIN = true, COMMIT = true, ROLLBACK = true, SET = true, SELECT = true, START = true, END = true }
local function is_change(call)
    if call.module ~= "sql" or not call.sql or call.error then return false end
    local tag = call.sql:match("^%s*/%*%s*atlas:([%w_]+)")
    if tag then return WRITING_TAGS[tag] or false end
    return not CONTROL[(call.sql:match("^%s*(%a+)") or ""):upper()]
end

local function changed(world)
    local n = 0
    for _, call in ipairs(world.calls) do
        if is_change(call) then n = n + 1 end
    end
    return n
end

local function on_16(world)
    for _, region in ipairs(REGIONS) do
        world.db.regions[region].settings.server_version_num = "160004"
    end
    return world
end

t.case("PostgreSQL 15: refuses, explains the loop, changes nothing", function()
    local world = t.world("healthy")
    local result = t.run_playbook(PLAYBOOK, {}, { world = world })
    t.eq(result.status, "failed")
    t.eq(result.exit, 1)
    t.eq(result.step, "check versions and settings")
    local text = tostring(result.error)
    t.match(text, "needs PostgreSQL 16 or later on every database %(eu%-west%-1 runs 15%.10, us%-east%-1 runs 15%.10")
    t.match(text, "no origin = none")
    t.match(text, "the changes would loop")
    t.eq(changed(world), 0)
    -- One database on 15 is enough to refuse.
    on_16(world).db.regions["ap-southeast-1"].settings.server_version_num = "150010"
    result = t.run_playbook(PLAYBOOK, {}, { world = world })
    t.eq(result.status, "failed")
    t.match(tostring(result.error), "%(ap%-southeast%-1 runs 15%.10%)")
    t.eq(changed(world), 0)
end)

t.case("PostgreSQL 16: each region publishes and subscribes to the others with origin = none", function()
    local world = on_16(t.world("healthy"))
    local result, events = t.run_playbook(PLAYBOOK, {}, { world = world })
    t.eq(result.status, "ok", tostring(result.error))
    local db = world.db
    for _, subscriber in ipairs(REGIONS) do
        t.ok(db.regions[subscriber].publications.atlas_publication, subscriber .. " publishes")
        for _, publisher in ipairs(REGIONS) do
            if publisher ~= subscriber then
                local sub = db.regions[subscriber].subscriptions["atlas_subscription_from_" .. SHORT[publisher]]
                t.ok(sub, subscriber .. " subscribes to " .. publisher)
                t.eq({ sub.primary, sub.origin, sub.enabled }, { publisher, "none", true })
                t.ok(db:follows(subscriber, publisher), subscriber .. " streams from " .. publisher)
            end
        end
    end
    local text = messages(events)
    t.match(text, "us%-east%-1: subscription atlas_subscription_from_eu from eu%-west%-1 set to origin = none")
    t.match(text, "us%-east%-1: subscription atlas_subscription_from_ap from ap%-southeast%-1 created")
    t.match(text, "eu%-west%-1: publication atlas_publication already in place")
    -- A row written in any region reaches the two others.
    db:write("us-east-1", "system_config", 1)
    t.eq(db.regions["eu-west-1"].data.system_config.count, 41)
    t.eq(db.regions["ap-southeast-1"].data.system_config.count, 41)
    -- Run again: nothing to do.
    local before = changed(world)
    result, events = t.run_playbook(PLAYBOOK, {}, { world = world })
    t.eq(result.status, "ok", tostring(result.error))
    t.eq(changed(world), before)
    t.match(messages(events), "already in place with origin = none")
end)

t.case("--dry-run on 16 prints the SQL and changes nothing", function()
    local world = on_16(t.world("healthy"))
    local result, events = t.run_playbook(PLAYBOOK, {}, { world = world, dry_run = true })
    t.eq(result.status, "ok", tostring(result.error))
    local printed = {}
    for _, e in ipairs(events) do
        if e.type == "call" and e.outcome == "dry-run" then printed[#printed + 1] = e.params end
    end
    local text = table.concat(printed, "\n")
    t.match(text, 'CREATE PUBLICATION "atlas_publication" FOR TABLE "organization", "app_user"')
    t.match(
        text,
        "CREATE SUBSCRIPTION \"atlas_subscription_from_ap\" CONNECTION 'host=atlas%-production%-db%-ap%-southeast%-1[^']*' "
            .. 'PUBLICATION "atlas_publication" WITH %(copy_data = false, create_slot = true, '
            .. "slot_name = 'atlas_subscription_from_ap_us_east_1', origin = 'none'%)"
    )
    t.match(text, 'ALTER SUBSCRIPTION "atlas_subscription_from_eu" SET %(origin = none%)')
    t.no_match(text, world.master_password)
    t.eq(changed(world), 0)
    t.eq(world.db.regions["us-east-1"].publications.atlas_publication, nil)
end)

t.case("an unreachable region or a wrong wal_level stops it before any change", function()
    local world = on_16(t.world("healthy"))
    world.db:set_reachable("ap-southeast-1", false)
    local result = t.run_playbook(PLAYBOOK, {}, { world = world })
    t.eq(result.status, "failed")
    t.eq(result.error.kind, "sql")
    world.db:set_reachable("ap-southeast-1", true)
    world.db.regions["us-east-1"].settings.wal_level = "replica"
    result = t.run_playbook(PLAYBOOK, {}, { world = world })
    t.eq(result.status, "failed")
    t.match(tostring(result.error), "us%-east%-1: wal_level is replica, not logical")
    t.eq(changed(world), 0)
    t.raises(function() t.run_playbook(PLAYBOOK, { databases = "host=127.0.0.1" }) end, "at least two")
end)
