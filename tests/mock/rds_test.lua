-- RDS in the mock world: the instances, the replica and the snapshots of the
-- reference environment, and the statuses operations move them through.
local t = require "atlas.test"
local World = require "atlas.mock.world"

local E = "eu-west-1"
local PRIMARY = "atlas-production-db-eu-west-1"
local REPLICA = "atlas-production-db-eu-west-1-replica"

local function db(w, id, region)
    return w:aws_invoke("rds", "DescribeDBInstances", region or E, { DBInstanceIdentifier = id }).DBInstances[1]
end

local function call(w, action, params, region) return w:aws_invoke("rds", action, region or E, params) end

t.case("eu-west-1 holds the primary, its read replica and the two snapshots", function()
    local w = World.new {}
    local list = call(w, "DescribeDBInstances", {}).DBInstances
    t.eq(#list, 2)
    local p = db(w, PRIMARY)
    t.eq(
        { p.DBName, p.MasterUsername, p.EngineVersion:match("^15"), p.Endpoint.Port, p.MultiAZ },
        { "atlas", "atlas_admin", "15", 5432, true }
    )
    t.eq(p.ReadReplicaDBInstanceIdentifiers, { REPLICA })
    t.match(p.Endpoint.Address, "^atlas%-production%-db%-eu%-west%-1%..+%.eu%-west%-1%.rds%.amazonaws%.com$")
    t.match(p.InstanceCreateTime, "^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$")
    local r = db(w, REPLICA)
    t.eq(r.ReadReplicaSourceDBInstanceIdentifier, PRIMARY)
    t.eq(r.StatusInfos[1].Status, "replicating")
    local snaps = call(w, "DescribeDBSnapshots", {}).DBSnapshots
    t.eq(
        { snaps[1].DBSnapshotIdentifier, snaps[2].DBSnapshotIdentifier },
        { "atlas-production-snapshot-latest", "atlas-production-snapshot-before-migration" }
    )
    t.eq(snaps[1].Status, "available")
    t.eq(snaps[1].DBInstanceIdentifier, PRIMARY)
    t.eq(#call(w, "DescribeDBSnapshots", {}, "us-east-1").DBSnapshots, 0)
    t.eq(
        #call(w, "DescribeDBInstances", { Filters = { { Name = "db-instance-id", Values = { REPLICA } } } }).DBInstances,
        1
    )
end)

t.case("unknown instances and snapshots raise the RDS not-found codes", function()
    local w = World.new {}
    local err = t.raises(function() db(w, "ghost") end, "DBInstanceNotFound")
    t.eq(err.status, 404)
    t.raises(function() call(w, "DescribeDBSnapshots", { DBSnapshotIdentifier = "ghost" }) end, "DBSnapshotNotFound")
    t.raises(function() db(w, PRIMARY, "us-east-1") end, "DBInstanceNotFound")
end)

t.case("a reboot with failover: rebooting, then available with the zones swapped", function()
    local w = World.new {}
    local before = db(w, PRIMARY)
    local r = call(w, "RebootDBInstance", { DBInstanceIdentifier = PRIMARY, ForceFailover = true }).DBInstance
    t.eq(r.DBInstanceStatus, "rebooting")
    t.raises(function() call(w, "RebootDBInstance", { DBInstanceIdentifier = PRIMARY }) end, "InvalidDBInstanceState")
    w:advance(60)
    t.eq(db(w, PRIMARY).DBInstanceStatus, "rebooting")
    w:advance(30)
    local after = db(w, PRIMARY)
    t.eq(after.DBInstanceStatus, "available")
    t.eq(
        { after.AvailabilityZone, after.SecondaryAvailabilityZone },
        { before.SecondaryAvailabilityZone, before.AvailabilityZone }
    )
    t.raises(
        function() call(w, "RebootDBInstance", { DBInstanceIdentifier = REPLICA, ForceFailover = true }) end,
        "InvalidParameterCombination"
    )
end)

t.case("promoting the replica: modifying, then a standalone available instance", function()
    local w = World.new {}
    local r = call(w, "PromoteReadReplica", { DBInstanceIdentifier = REPLICA }).DBInstance
    t.eq(r.DBInstanceStatus, "modifying")
    w:advance(119)
    t.eq(db(w, REPLICA).DBInstanceStatus, "modifying")
    t.eq(db(w, REPLICA).ReadReplicaSourceDBInstanceIdentifier, PRIMARY)
    w:advance(1)
    local promoted = db(w, REPLICA)
    t.eq(promoted.DBInstanceStatus, "available")
    t.eq(promoted.ReadReplicaSourceDBInstanceIdentifier, nil)
    t.eq(promoted.BackupRetentionPeriod, 1)
    t.eq(db(w, PRIMARY).ReadReplicaDBInstanceIdentifiers, {})
    t.raises(function() call(w, "PromoteReadReplica", { DBInstanceIdentifier = PRIMARY }) end, "not a read replica")
end)

t.case("a snapshot is creating, then available; a duplicate name is refused", function()
    local w = World.new {}
    local s =
        call(w, "CreateDBSnapshot", { DBInstanceIdentifier = PRIMARY, DBSnapshotIdentifier = "drill-1" }).DBSnapshot
    t.eq({ s.Status, s.PercentProgress, s.SnapshotType }, { "creating", 0, "manual" })
    t.raises(
        function() call(w, "CreateDBSnapshot", { DBInstanceIdentifier = PRIMARY, DBSnapshotIdentifier = "drill-1" }) end,
        "DBSnapshotAlreadyExists"
    )
    w:advance(239)
    t.eq(call(w, "DescribeDBSnapshots", { DBSnapshotIdentifier = "drill-1" }).DBSnapshots[1].Status, "creating")
    w:advance(1)
    local found = call(w, "DescribeDBSnapshots", { DBSnapshotIdentifier = "drill-1" }).DBSnapshots[1]
    t.eq({ found.Status, found.PercentProgress }, { "available", 100 })
    t.eq(
        call(w, "DescribeDBSnapshots", { DBInstanceIdentifier = PRIMARY }).DBSnapshots[1].DBSnapshotIdentifier,
        "drill-1"
    )
end)

t.case("restoring from a snapshot creates a new instance that becomes available", function()
    local w = World.new {}
    local r = call(w, "RestoreDBInstanceFromDBSnapshot", {
        DBInstanceIdentifier = "atlas-restore-test",
        DBSnapshotIdentifier = "atlas-production-snapshot-before-migration",
    }).DBInstance
    t.eq(r.DBInstanceStatus, "creating")
    t.eq(r.DBInstanceClass, "db.r6g.xlarge")
    t.raises(
        function()
            call(
                w,
                "RestoreDBInstanceFromDBSnapshot",
                { DBInstanceIdentifier = PRIMARY, DBSnapshotIdentifier = "atlas-production-snapshot-latest" }
            )
        end,
        "DBInstanceAlreadyExists"
    )
    t.raises(
        function()
            call(w, "RestoreDBInstanceFromDBSnapshot", {
                DBInstanceIdentifier = "x",
                DBSnapshotIdentifier = "ghost",
            })
        end,
        "DBSnapshotNotFound"
    )
    w:advance(600)
    t.eq(db(w, "atlas-restore-test").DBInstanceStatus, "available")
end)

t.case("ModifyDBInstance: pending without ApplyImmediately, applied after modifying with it", function()
    local w = World.new {}
    local r =
        call(w, "ModifyDBInstance", { DBInstanceIdentifier = PRIMARY, DBInstanceClass = "db.r6g.2xlarge" }).DBInstance
    t.eq(r.DBInstanceStatus, "available")
    t.eq(r.PendingModifiedValues, { DBInstanceClass = "db.r6g.2xlarge" })
    r = call(w, "ModifyDBInstance", {
        DBInstanceIdentifier = "atlas-production-db-us-east-1",
        DBInstanceClass = "db.r6g.2xlarge",
        ApplyImmediately = true,
    }, "us-east-1").DBInstance
    t.eq(r.DBInstanceStatus, "modifying")
    w:advance(60)
    local after = db(w, "atlas-production-db-us-east-1", "us-east-1")
    t.eq(
        { after.DBInstanceStatus, after.DBInstanceClass, after.PendingModifiedValues },
        { "available", "db.r6g.2xlarge", {} }
    )
end)

t.case("renaming the promoted replica to the primary's name gives the application its database back", function()
    local w = World.new { scenario = "eu-west-1-db-failure" }
    t.eq(w:http_request { url = "https://eu-west-1.atlas-crm.com/actuator/health" }.status, 503)
    t.eq(w.db:reachable("eu-west-1"), false)
    call(w, "PromoteReadReplica", { DBInstanceIdentifier = REPLICA })
    w:advance(120)
    -- The failed instance cannot be renamed; it is deleted (protection first).
    t.raises(
        function()
            call(w, "ModifyDBInstance", {
                DBInstanceIdentifier = PRIMARY,
                NewDBInstanceIdentifier = PRIMARY .. "-failed",
                ApplyImmediately = true,
            })
        end,
        "InvalidDBInstanceState"
    )
    t.raises(
        function() call(w, "DeleteDBInstance", { DBInstanceIdentifier = PRIMARY, SkipFinalSnapshot = true }) end,
        "protected"
    )
    call(w, "ModifyDBInstance", { DBInstanceIdentifier = PRIMARY, DeletionProtection = false, ApplyImmediately = true })
    t.eq(
        call(w, "DeleteDBInstance", { DBInstanceIdentifier = PRIMARY, SkipFinalSnapshot = true }).DBInstance.DBInstanceStatus,
        "deleting"
    )
    t.raises(
        function()
            call(
                w,
                "ModifyDBInstance",
                { DBInstanceIdentifier = REPLICA, NewDBInstanceIdentifier = PRIMARY, ApplyImmediately = true }
            )
        end,
        "DBInstanceAlreadyExists"
    )
    w:advance(180)
    t.raises(function() db(w, PRIMARY) end, "DBInstanceNotFound")
    local r = call(
        w,
        "ModifyDBInstance",
        { DBInstanceIdentifier = REPLICA, NewDBInstanceIdentifier = PRIMARY, ApplyImmediately = true }
    ).DBInstance
    t.eq(r.DBInstanceStatus, "renaming")
    t.eq(r.DBInstanceIdentifier, PRIMARY)
    w:advance(60)
    local renamed = db(w, PRIMARY)
    t.eq(renamed.DBInstanceStatus, "available")
    t.eq(renamed.MultiAZ, false)
    t.eq(w:http_request { url = "https://eu-west-1.atlas-crm.com/actuator/health" }.status, 200)
    t.eq(w.db:reachable("eu-west-1"), true)
end)

t.case("the RDS waiter of atlas.rds waits for available in virtual time", function()
    local w = t.world()
    local rds = require "atlas.rds"
    if not rds.wait_available then return end
    call(w, "RebootDBInstance", { DBInstanceIdentifier = PRIMARY })
    local started = w:now()
    rds.wait_available { region = E, DBInstanceIdentifier = PRIMARY, timeout = 600 }
    t.ok(w:now() - started >= 60)
    t.eq(db(w, PRIMARY).DBInstanceStatus, "available")
end)

t.case("find_db_instance and find_db_snapshot: nil for a name RDS does not know, other errors raise", function()
    local w = t.world()
    local rds = require "atlas.rds"
    t.eq(rds.find_db_instance({ region = E, DBInstanceIdentifier = PRIMARY }).DBInstanceIdentifier, PRIMARY)
    t.eq(rds.find_db_instance { region = E, DBInstanceIdentifier = "ghost" }, nil)
    t.eq(rds.find_db_snapshot { region = "us-east-1", DBSnapshotIdentifier = "atlas-production-snapshot-latest" }, nil)
    t.eq(
        rds.find_db_snapshot({ region = E, DBSnapshotIdentifier = "atlas-production-snapshot-latest" }).Status,
        "available"
    )
    w:inject { service = "rds", action = "DescribeDBInstances", code = "AccessDenied", times = 1 }
    t.raises(function() rds.find_db_instance { region = E, DBInstanceIdentifier = PRIMARY } end, "AccessDenied")
end)

t.case("available_snapshot: a snapshot still being made is refused with why; an available one is named in the timeline", function()
    local w = t.world()
    local rds = require "atlas.rds"
    call(w, "CreateDBSnapshot", { DBInstanceIdentifier = PRIMARY, DBSnapshotIdentifier = "fresh" })
    local snap, why = rds.available_snapshot { region = E, DBSnapshotIdentifier = "fresh" }
    t.eq(snap, nil)
    t.match(why, "^snapshot fresh in eu%-west%-1 is %a+, not available$")
    local events, ok = t.capture(function()
        snap = rds.available_snapshot { region = E, DBSnapshotIdentifier = "atlas-production-snapshot-latest" }
    end)
    t.ok(ok)
    t.eq(snap.DBSnapshotIdentifier, "atlas-production-snapshot-latest")
    t.match(events[#events].message, "^snapshot atlas%-production%-snapshot%-latest %(eu%-west%-1%): taken .+ from " .. PRIMARY:gsub("%-", "%%-") .. "$")
end)

t.case("restore_and_wait restores once: a second call finds the instance, skips before_restore and waits", function()
    local w = t.world()
    local rds = require "atlas.rds"
    local asked = 0
    local args = {
        region = E,
        DBInstanceIdentifier = "restored",
        DBSnapshotIdentifier = "atlas-production-snapshot-latest",
        timeout = 3600,
        before_restore = function()
            asked = asked + 1
            return { DBInstanceClass = "db.r6g.large" }
        end,
    }
    local inst = rds.restore_and_wait(args)
    t.eq({ inst.DBInstanceIdentifier, inst.DBInstanceStatus, inst.DBInstanceClass }, { "restored", "available", "db.r6g.large" })
    t.eq(rds.restore_and_wait(args).DBInstanceIdentifier, "restored")
    t.eq(asked, 1)
    local calls = w:calls_to("rds", "RestoreDBInstanceFromDBSnapshot")
    t.eq(#calls, 1)
    t.eq(calls[1].params.timeout, nil, "the wait's timeout is not a restore parameter")
end)
