-- playbooks/dr_database_failure.lua in the mock world: what it decides from
-- what it sees, each action's end state, and the failures that stop it
-- before it changes anything.
local t = require "atlas.test"

local PLAYBOOK = "playbooks/dr_database_failure.lua"
local PRIMARY = "atlas-production-db-eu-west-1"
local REPLICA = "atlas-production-db-eu-west-1-replica"
local SUB = "atlas_subscription_from_eu"

local messages = t.messages

local MUTATING = {
    RebootDBInstance = true,
    PromoteReadReplica = true,
    CopyDBSnapshot = true,
    RestoreDBInstanceFromDBSnapshot = true,
}

-- A statement that changed a mock database: a write that was not refused.
local WRITING_TAGS = { create_slot = true, drop_slot = true, setval = true, terminate_idle = true }
local CONTROL = { BEGIN = true, COMMIT = true, ROLLBACK = true, SET = true, SELECT = true, START = true, END = true }
local function is_change(call)
    if call.module ~= "sql" or not call.sql or call.error then return false end
    local tag = call.sql:match("^%s*/%*%s*atlas:([%w_]+)")
    if tag then return WRITING_TAGS[tag] or false end
    return not CONTROL[(call.sql:match("^%s*(%a+)") or ""):upper()]
end

local function changes(world)
    local out = {}
    for _, call in ipairs(world.calls) do
        if call.service == "rds" and MUTATING[call.action] then out[#out + 1] = call.action end
        if is_change(call) then out[#out + 1] = call.sql:match("^%s*(%S+%s*%S*)") end
    end
    return out
end

local function instance(world, region, id)
    local resp = world:aws_invoke("rds", "DescribeDBInstances", region, { DBInstanceIdentifier = id })
    return resp.DBInstances[1]
end

t.case(
    "auto, primary failed: promotes the replica, replication follows it, the subscribers are resynchronised",
    function()
        local world = t.world("eu-west-1-db-failure")
        local result, events = t.run_playbook(PLAYBOOK, {}, { world = world, scenario = "eu-west-1-db-failure" })
        t.eq(result.status, "ok", tostring(result.error))
        local text = messages(events)
        t.match(text, "atlas%-production%-db%-eu%-west%-1 %(eu%-west%-1%): failed, Multi%-AZ")
        t.match(
            text,
            "replica atlas%-production%-db%-eu%-west%-1%-replica: available, single%-AZ.*read replication error"
        )
        t.match(text, "decision: promote %(the primary is failed; the replica is available%)")
        t.match(text, "confirmed by %-%-yes: Promote atlas%-production%-db%-eu%-west%-1%-replica %(eu%-west%-1%)")
        local promoted = instance(world, "eu-west-1", REPLICA)
        t.eq(promoted.DBInstanceStatus, "available")
        t.eq(promoted.ReadReplicaSourceDBInstanceIdentifier, nil, "no longer a replica")
        -- Each subscription streams from a slot on the new primary.
        local db = world.db
        for _, region in ipairs { "us-east-1", "ap-southeast-1" } do
            local sub = db.regions[region].subscriptions[SUB]
            t.eq(sub.primary, "eu-west-1-replica", region .. " points at the new primary")
            t.ok(
                db.regions["eu-west-1-replica"].slots[sub.slot_name],
                "slot " .. sub.slot_name .. " on the new primary"
            )
            t.ok(db:follows(region, "eu-west-1-replica"), region .. " streams")
        end
        -- The 3 organizations and 5 users that only the replica had were found and copied.
        t.match(text, "us%-east%-1: organization differs: 123 rows .* on the new primary, 120 rows")
        t.match(
            text,
            "confirmed by %-%-yes: Resynchronise us%-east%-1 from atlas%-production%-db%-eu%-west%-1%-replica%?"
        )
        t.match(text, "physical replica: sequences came with the WAL")
        for _, region in ipairs { "us-east-1", "ap-southeast-1" } do
            t.eq({ db:summary(region, "organization") }, { db:summary("eu-west-1-replica", "organization") })
            t.eq({ db:summary(region, "app_user") }, { db:summary("eu-west-1-replica", "app_user") })
        end
        -- Rows written on the new primary now reach both subscribers.
        db:write("eu-west-1-replica", "organization", 2)
        t.eq(db.regions["us-east-1"].data.organization.count, 125)
        t.eq(db.regions["ap-southeast-1"].data.organization.count, 125)
        t.eq(#world:calls_to("rds", "RebootDBInstance"), 0)
        t.eq(#world:calls_to("rds", "CopyDBSnapshot"), 0)
    end
)

t.case("auto, Multi-AZ primary available but not answering: reboot with ForceFailover and wait", function()
    local world = t.world("healthy")
    world:set_db_instance(PRIMARY, { reachable = false })
    local before = instance(world, "eu-west-1", PRIMARY)
    local result, events = t.run_playbook(PLAYBOOK, {}, { world = world })
    t.eq(result.status, "ok", tostring(result.error))
    local text = messages(events)
    t.match(text, "unreachable: ")
    t.match(text, "decision: failover")
    t.match(text, "Reboot atlas%-production%-db%-eu%-west%-1 %(eu%-west%-1%) with ForceFailover")
    local calls = world:calls_to("rds", "RebootDBInstance")
    t.eq(#calls, 1)
    t.eq(calls[1].params.ForceFailover, true)
    local after = instance(world, "eu-west-1", PRIMARY)
    t.eq(after.DBInstanceStatus, "available")
    t.eq(after.AvailabilityZone, before.SecondaryAvailabilityZone, "the standby's zone is the primary's now")
    t.ok(world.db:reachable("eu-west-1"))
    local waited = false
    for _, e in ipairs(events) do
        if e.type == "progress" and e.message:find(PRIMARY .. " rebooting", 1, true) then waited = true end
    end
    t.ok(waited, "the wait showed progress")
    t.eq(#world:calls_to("rds", "PromoteReadReplica"), 0)
end)

t.case("action=restore copies the snapshot to us-east-1 by ARN, restores it there and waits", function()
    local world = t.world("eu-west-1-db-failure")
    local result, events = t.run_playbook(PLAYBOOK, { action = "restore" }, { world = world })
    t.eq(result.status, "ok", tostring(result.error))
    local copy = world:calls_to("rds", "CopyDBSnapshot")
    t.eq(#copy, 1)
    t.eq(copy[1].region, "us-east-1")
    t.match(
        copy[1].params.SourceDBSnapshotIdentifier,
        "^arn:aws:rds:eu%-west%-1:%d+:snapshot:atlas%-production%-snapshot%-latest$"
    )
    t.eq(copy[1].params.SourceRegion, nil, "SourceRegion is client-side, as in botocore")
    t.eq(copy[1].params.KmsKeyId, "alias/aws/rds")
    local restored = instance(world, "us-east-1", "atlas-production-db-eu-west-1-restored")
    t.eq(restored.DBInstanceStatus, "available")
    t.eq(restored.DBInstanceClass, "db.r6g.xlarge")
    local snap = world:aws_invoke(
        "rds",
        "DescribeDBSnapshots",
        "us-east-1",
        { DBSnapshotIdentifier = "atlas-production-snapshot-latest-us-east-1" }
    ).DBSnapshots[1]
    t.eq({ snap.Status, snap.SourceRegion }, { "available", "eu-west-1" })
    t.match(messages(events), "logical replication is not moved to atlas%-production%-db%-eu%-west%-1%-restored")
    t.eq(#world:calls_to("rds", "PromoteReadReplica"), 0)
    -- Run again: the copy and the instance are found, nothing is made twice.
    result = t.run_playbook(PLAYBOOK, { action = "restore" }, { world = world })
    t.eq(result.status, "ok", tostring(result.error))
    t.eq(#world:calls_to("rds", "CopyDBSnapshot"), 1)
    t.eq(#world:calls_to("rds", "RestoreDBInstanceFromDBSnapshot"), 1)
end)

t.case(
    "writes moving to a former logical subscriber: its sequences are advanced and its subscription disabled",
    function()
        local world = t.world("eu-west-1-db-failure")
        local host = require("atlas.mock.rds").endpoint_address("atlas-production-db-us-east-1", "us-east-1")
        local ap = require("atlas.mock.rds").endpoint_address("atlas-production-db-ap-southeast-1", "ap-southeast-1")
        local function conninfo(h)
            return string.format("host=%s dbname=atlas user=atlas_admin password=%s", h, world.master_password)
        end
        t.raises(function() world.db:write("us-east-1", "organization", 1) end, "duplicate key")
        local result, events = t.run_playbook(
            PLAYBOOK,
            { action = "promote", new_primary = conninfo(host), secondaries = conninfo(ap) },
            { world = world }
        )
        t.eq(result.status, "ok", tostring(result.error))
        local text = messages(events)
        t.match(text, "was a logical subscriber %(atlas_subscription_from_eu%)")
        t.match(text, "set public%.organization_id_seq from 1 to 1120 %(highest organization%.id in use: 120%)")
        t.match(text, "created for organization")
        local us = world.db.regions["us-east-1"]
        t.eq(us.subscriptions[SUB].enabled, false)
        world.db:write("us-east-1", "organization", 1) -- no duplicate key now
        t.eq(world.db.regions["ap-southeast-1"].data.organization.count, 121, "ap follows the new primary")
    end
)

t.case("a healthy primary: nothing to do, nothing changed", function()
    local world = t.world("healthy")
    local result, events = t.run_playbook(PLAYBOOK, {}, { world = world })
    t.eq(result.status, "ok", tostring(result.error))
    t.match(messages(events), "decision: none %(the primary is available and answers SQL%)")
    t.eq(changes(world), {})
end)

t.case("--dry-run decides, prints the promotion, changes nothing", function()
    local world = t.world("eu-west-1-db-failure")
    local result, events = t.run_playbook(PLAYBOOK, {}, { world = world, dry_run = true })
    t.eq(result.status, "ok", tostring(result.error))
    t.eq(changes(world), {})
    local printed = {}
    for _, e in ipairs(events) do
        if e.type == "call" and e.outcome == "dry-run" then printed[#printed + 1] = e.op end
    end
    t.eq(printed, { "rds.PromoteReadReplica" })
    t.match(messages(events), "still a standby: once promoted")
    t.eq(instance(world, "eu-west-1", REPLICA).ReadReplicaSourceDBInstanceIdentifier, PRIMARY)
end)

t.case("a refused confirmation promotes nothing and exits 3", function()
    local world = t.world("eu-west-1-db-failure")
    local result = t.run_playbook(PLAYBOOK, {}, { world = world, yes = false })
    t.eq(result.status, "refused")
    t.eq(result.exit, 3)
    t.match(tostring(result.error), "Promote atlas%-production%-db%-eu%-west%-1%-replica")
    t.eq(changes(world), {})
end)

t.case("failures before any change: no replica, no Multi-AZ, no snapshot, same restore region", function()
    local world = t.world("healthy")
    local result = t.run_playbook(PLAYBOOK, { region = "us-east-1", action = "promote" }, { world = world })
    t.eq(result.status, "failed")
    t.match(tostring(result.error), "has no read replica atlas%-production%-db%-us%-east%-1%-replica")

    world.rds["eu-west-1"].instances[PRIMARY].v.MultiAZ = false
    result = t.run_playbook(PLAYBOOK, { action = "failover" }, { world = world })
    t.eq(result.status, "failed")
    t.match(tostring(result.error), "is not Multi%-AZ")

    result = t.run_playbook(PLAYBOOK, { action = "restore", snapshot = "no-such-snapshot" }, { world = world })
    t.eq(result.status, "failed")
    t.eq(result.error.code, "DBSnapshotNotFound")
    t.eq(changes(world), {})

    t.raises(
        function() t.run_playbook(PLAYBOOK, { action = "restore", restore_region = "eu-west-1" }) end,
        "restore_region must differ"
    )
    t.raises(function() t.run_playbook(PLAYBOOK, { action = "reboot" }) end, "action")
end)

t.case("a promoted primary whose subscribers cannot be reached fails the run, naming them", function()
    local world = t.world("eu-west-1-db-failure")
    world.db:set_reachable("ap-southeast-1", false)
    local result = t.run_playbook(PLAYBOOK, {}, { world = world })
    t.eq(result.status, "failed")
    t.eq(result.step, "point logical replication at the new primary")
    t.eq(result.error.kind, "sql")
    t.eq(instance(world, "eu-west-1", REPLICA).ReadReplicaSourceDBInstanceIdentifier, nil, "the promotion stands")
end)

t.case("auto, primary rebooting: waits for it instead of acting", function()
    local world = t.world("healthy")
    world:aws_invoke("rds", "RebootDBInstance", "eu-west-1", { DBInstanceIdentifier = PRIMARY })
    local result, events = t.run_playbook(PLAYBOOK, {}, { world = world })
    t.eq(result.status, "ok", tostring(result.error))
    local text = messages(events)
    t.match(text, "atlas%-production%-db%-eu%-west%-1 %(eu%-west%-1%): rebooting, Multi%-AZ")
    t.match(text, "decision: wait %(the primary is rebooting, which ends by itself%)")
    t.match(text, "atlas%-production%-db%-eu%-west%-1: available in eu%-west%-1a, answers SQL")
    t.eq(#world:calls_to("rds", "RebootDBInstance"), 1, "only the one the test made")
    t.eq(changes(world), { "RebootDBInstance" })
end)
