-- db_publication_setup's first step in the mock world: the primary's
-- parameter group and server settings are checked before anything is
-- created, and a wrong value stops it with the exact change to make.
local t = require "atlas.test"

local PLAYBOOK = "playbooks/db_publication_setup.lua"
local GROUP = "atlas-production-postgres15"

local messages = t.messages

local function created(world)
    local n = 0
    for _, call in ipairs(world.calls) do
        if call.module == "sql" and call.sql and (call.sql:find("^CREATE") or call.sql:find("^ALTER")) then
            n = n + 1
        end
    end
    return n
end

local function empty_world()
    local world = t.world("healthy")
    world.db:clear_replication()
    return world
end

t.case("a ready primary: the group's and the server's values are shown, then setup proceeds", function()
    local world = empty_world()
    local result, events = t.run_playbook(PLAYBOOK, {}, { world = world })
    t.eq(result.status, "ok", tostring(result.error))
    local text = messages(events)
    t.match(text, "parameter group atlas%-production%-postgres15: rds%.logical_replication = 1")
    t.match(text, "parameter group atlas%-production%-postgres15: max_wal_senders = 10")
    t.match(text, "eu%-west%-1: wal_level = logical, max_wal_senders = 10, max_replication_slots = 10")
    t.match(text, "eu%-west%-1: ready for logical replication")
    t.eq(#world:calls_to("rds", "DescribeDBParameters"), 1)
    t.ok(world.db.regions["eu-west-1"].publications.atlas_publication, "then the publication was created")
end)

t.case("rds.logical_replication = 0 stops it with the exact change, before anything is created", function()
    local world = empty_world()
    require("atlas.mock.rds").set_parameter(world, GROUP, "rds.logical_replication", "0")
    local result = t.run_playbook(PLAYBOOK, {}, { world = world })
    t.eq(result.status, "failed")
    t.eq(result.step, "check the primary's settings")
    local text = tostring(result.error)
    t.match(text, "rds%.logical_replication is 0 in parameter group atlas%-production%-postgres15; it must be 1")
    t.match(
        text,
        "change: aws rds modify%-db%-parameter%-group %-%-region eu%-west%-1 %-%-db%-parameter%-group%-name atlas%-production%-postgres15 "
            .. "%-%-parameters ParameterName=rds%.logical_replication,ParameterValue=1,ApplyMethod=pending%-reboot, "
            .. "then aws rds reboot%-db%-instance %-%-region eu%-west%-1 %-%-db%-instance%-identifier atlas%-production%-db%-eu%-west%-1"
    )
    t.eq(created(world), 0)
    t.eq(next(world.db.regions["eu-west-1"].publications), nil)
end)

t.case("too few WAL senders or slots: each named with the value it needs", function()
    local world = empty_world()
    local rds = require "atlas.mock.rds"
    rds.set_parameter(world, GROUP, "max_wal_senders", "5")
    rds.set_parameter(world, GROUP, "max_replication_slots", nil)
    local result = t.run_playbook(PLAYBOOK, { min_wal_senders = "8" }, { world = world })
    t.eq(result.status, "failed")
    local text = tostring(result.error)
    t.match(text, "max_wal_senders is 5 in parameter group atlas%-production%-postgres15; it must be at least 8")
    t.match(
        text,
        "max_replication_slots is the engine default in parameter group atlas%-production%-postgres15; it must be at least 10"
    )
    t.match(
        text,
        "ParameterName=max_wal_senders,ParameterValue=8,ApplyMethod=pending%-reboot ParameterName=max_replication_slots,ParameterValue=10"
    )
    t.eq(created(world), 0)
end)

t.case("wal_level not logical on the server: reboot the instance (RDS) or ALTER SYSTEM (a conninfo)", function()
    local world = empty_world()
    world.db.regions["eu-west-1"].settings.wal_level = "replica"
    local result = t.run_playbook(PLAYBOOK, {}, { world = world })
    t.eq(result.status, "failed")
    t.match(
        tostring(result.error),
        "wal_level is replica on the server; rds%.logical_replication = 1 makes it logical after aws rds reboot%-db%-instance "
            .. "%-%-region eu%-west%-1 %-%-db%-instance%-identifier atlas%-production%-db%-eu%-west%-1"
    )
    local rds = require "atlas.mock.rds"
    local function conninfo(region)
        return string.format(
            "host=%s dbname=atlas user=atlas_admin password=%s",
            rds.endpoint_address("atlas-production-db-" .. region, region),
            world.master_password
        )
    end
    world.db.regions["eu-west-1"].settings.max_replication_slots = "4"
    local events
    result, events = t.run_playbook(
        PLAYBOOK,
        { primary = conninfo("eu-west-1"), secondaries = conninfo("us-east-1") },
        { world = world }
    )
    t.eq(result.status, "failed")
    local text = tostring(result.error)
    t.match(
        text,
        "wal_level is replica on the server; change: ALTER SYSTEM SET wal_level = logical; then restart the server"
    )
    t.match(text, "max_replication_slots is 4 on the server; change: ALTER SYSTEM SET max_replication_slots = 10")
    t.match(messages(events), "given as a conninfo, so no RDS parameter group to read")
    t.eq(#world:calls_to("rds", "DescribeDBParameters"), 1, "only the first run read the group")
    t.eq(created(world), 0)
end)
