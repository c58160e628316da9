-- RDS helpers. Arguments: region (+ profile, endpoint) and RDS's parameters
-- as in boto3 (DBInstanceIdentifier, DBSnapshotIdentifier, ForceFailover, ...).
-- reboot_db_instance also takes force_failover = true.
local helper = require "atlas.aws.helper"
local errors = require "atlas.errors"
local log = require "atlas.run.log"
local runtime = require "atlas.run.runtime"

local M = {}

-- describe_db_instances{DBInstanceIdentifier?, Filters?} -> list of DBInstances (all pages)
function M.describe_db_instances(args)
    return helper.paginate(
        "rds",
        "DescribeDBInstances",
        args,
        { input = "Marker", output = "Marker", items = "DBInstances" }
    )
end

-- reboot_db_instance{DBInstanceIdentifier, ForceFailover? | force_failover?} -> {DBInstance=}
function M.reboot_db_instance(args)
    local copy = {}
    for k, v in pairs(args) do
        copy[k] = v
    end
    if copy.force_failover ~= nil then
        copy.ForceFailover = copy.force_failover
        copy.force_failover = nil
    end
    return helper.call("rds", "RebootDBInstance", copy)
end

-- promote_read_replica{DBInstanceIdentifier, BackupRetentionPeriod?} -> {DBInstance=}
function M.promote_read_replica(args) return helper.call("rds", "PromoteReadReplica", args) end

-- create_db_snapshot{DBInstanceIdentifier, DBSnapshotIdentifier} -> {DBSnapshot=}
function M.create_db_snapshot(args) return helper.call("rds", "CreateDBSnapshot", args) end

-- describe_db_snapshots{DBInstanceIdentifier?, DBSnapshotIdentifier?, SnapshotType?} -> list of DBSnapshots
function M.describe_db_snapshots(args)
    return helper.paginate(
        "rds",
        "DescribeDBSnapshots",
        args,
        { input = "Marker", output = "Marker", items = "DBSnapshots" }
    )
end

-- restore_db_instance_from_db_snapshot{DBInstanceIdentifier, DBSnapshotIdentifier, ...} -> {DBInstance=}
function M.restore_db_instance_from_db_snapshot(args) return helper.call("rds", "RestoreDBInstanceFromDBSnapshot", args) end

-- copy_db_snapshot{region=<destination>, SourceDBSnapshotIdentifier, TargetDBSnapshotIdentifier,
--                  SourceRegion?, KmsKeyId?, CopyTags?} -> {DBSnapshot=}
-- As in boto3, SourceRegion is a client-side argument, not part of the API:
-- botocore turns it into a PreSignedUrl, which AWS now uses in GovCloud only,
-- so here it is checked and dropped. A copy from another region names its
-- source by ARN (AWS looks a plain identifier up in the destination region).
function M.copy_db_snapshot(args)
    local copy = {}
    for k, v in pairs(args) do
        copy[k] = v
    end
    local source_region = copy.SourceRegion
    copy.SourceRegion = nil
    if source_region and source_region ~= copy.region then
        local id = tostring(copy.SourceDBSnapshotIdentifier)
        if not id:match("^arn:") then
            error(
                "rds.copy_db_snapshot: a copy from "
                    .. source_region
                    .. " to "
                    .. tostring(copy.region)
                    .. " needs the source snapshot's ARN, not "
                    .. id,
                2
            )
        end
    end
    return helper.call("rds", "CopyDBSnapshot", copy)
end

-- describe_db_parameters{DBParameterGroupName, Source?} -> list of Parameters (all pages)
function M.describe_db_parameters(args)
    return helper.paginate(
        "rds",
        "DescribeDBParameters",
        args,
        { input = "Marker", output = "Marker", items = "Parameters" }
    )
end

-- The states AWS's db-snapshot-available and db-instance-available waiters give up on.
local FAILED = {
    deleted = true,
    deleting = true,
    failed = true,
    ["incompatible-restore"] = true,
    ["incompatible-parameters"] = true,
}

-- wait_snapshot_available{region, DBSnapshotIdentifier, timeout = 3600, delay = aws.PACE.rds} -> the snapshot
-- The AWS db-snapshot-available rule: success when "available", failure on a FAILED state.
function M.wait_snapshot_available(args)
    local id = args.DBSnapshotIdentifier
    local list = helper.wait(args, {
        name = string.format("RDS snapshot %s available in %s", tostring(id), tostring(args.region)),
        service = "rds",
        action = "DescribeDBSnapshots",
        timeout = 3600,
        describe = M.describe_db_snapshots,
        params = { DBSnapshotIdentifier = id },
        acceptors = {
            {
                state = "failure",
                matcher = function(snaps)
                    local s = snaps[1]
                    if s and FAILED[s.Status] then return true, s.DBSnapshotIdentifier .. " is " .. s.Status end
                    return false
                end,
            },
            {
                state = "success",
                matcher = function(snaps) return snaps[1] ~= nil and snaps[1].Status == "available" end,
            },
        },
        progress = function(snaps)
            local s = snaps[1]
            if not s then return tostring(args.region) .. ": " .. tostring(id) .. " not listed yet" end
            return string.format(
                "%s: %s %s, %s%%",
                tostring(args.region),
                s.DBSnapshotIdentifier,
                tostring(s.Status),
                tostring(s.PercentProgress or "?")
            )
        end,
    })
    return list and list[1]
end

-- wait_available{DBInstanceIdentifier, region, timeout = 1800, delay = aws.PACE.rds} -> list of DBInstances
-- The AWS db-instance-available rule: success when every instance is "available", failure
-- when one is in a FAILED state.
function M.wait_available(args)
    local id = args.DBInstanceIdentifier or args.db_instance_identifier
    local list = helper.wait(args, {
        name = string.format("RDS instance %s available in %s", tostring(id), tostring(args.region)),
        service = "rds",
        action = "DescribeDBInstances",
        timeout = 1800,
        describe = M.describe_db_instances,
        params = { DBInstanceIdentifier = id },
        acceptors = {
            {
                state = "failure",
                matcher = function(dbs)
                    for _, db in ipairs(dbs) do
                        if FAILED[db.DBInstanceStatus] then
                            return true, db.DBInstanceIdentifier .. " is " .. db.DBInstanceStatus
                        end
                    end
                    return false
                end,
            },
            {
                state = "success",
                matcher = function(dbs)
                    if #dbs == 0 then return false end
                    for _, db in ipairs(dbs) do
                        if db.DBInstanceStatus ~= "available" then return false end
                    end
                    return true
                end,
            },
        },
        progress = function(dbs)
            local parts = {}
            for _, db in ipairs(dbs) do
                parts[#parts + 1] = db.DBInstanceIdentifier .. " " .. tostring(db.DBInstanceStatus)
            end
            return tostring(args.region) .. ": " .. table.concat(parts, ", ")
        end,
    })
    return list
end

-- The first item `describe` lists, or nil when RDS answers `missing`, its
-- code for "no such identifier" (RDS does not answer an empty list).
local function first_or_nil(describe, args, missing)
    local ok, list = pcall(describe, args)
    if ok then return list[1] end
    if errors.is(list, "aws") and list.code == missing then return nil end
    error(list, 0)
end

-- find_db_instance{region, DBInstanceIdentifier} -> the instance, or nil when it does not exist
function M.find_db_instance(args) return first_or_nil(M.describe_db_instances, args, "DBInstanceNotFound") end

-- find_db_snapshot{region, DBSnapshotIdentifier} -> the snapshot, or nil when it does not exist
function M.find_db_snapshot(args) return first_or_nil(M.describe_db_snapshots, args, "DBSnapshotNotFound") end

-- available_snapshot{region, DBSnapshotIdentifier} -> the snapshot, or nil and why it cannot be restored
-- Only an "available" snapshot can be copied or restored; says in the run's
-- timeline when it was taken and of which instance.
function M.available_snapshot(args)
    local snap = M.describe_db_snapshots(args)[1]
    if snap.Status ~= "available" then
        return nil,
            string.format(
                "snapshot %s in %s is %s, not available",
                tostring(args.DBSnapshotIdentifier),
                tostring(args.region),
                tostring(snap.Status)
            )
    end
    log.info(
        "snapshot %s (%s): taken %s from %s",
        tostring(args.DBSnapshotIdentifier),
        tostring(args.region),
        tostring(snap.SnapshotCreateTime),
        tostring(snap.DBInstanceIdentifier)
    )
    return snap
end

-- restore_and_wait{region, DBInstanceIdentifier, DBSnapshotIdentifier, timeout = 1800,
--                  before_restore = fn() -> more parameters, and RestoreDBInstanceFromDBSnapshot's
--                  other parameters (DBInstanceClass, MultiAZ, ...)} -> the available instance (nil in a dry run)
-- Restores only when no instance of that name exists, so a rerun or --resume
-- waits for the one it started; says what it did in the run's timeline.
-- before_restore runs only when there is a restore to make: the place to
-- confirm it and to look up what it needs.
function M.restore_and_wait(args)
    local region, id = args.region, args.DBInstanceIdentifier
    local existing = M.find_db_instance {
        region = region,
        profile = args.profile,
        endpoint = args.endpoint,
        DBInstanceIdentifier = id,
    }
    if existing then
        log.info("%s: %s exists already (%s): not restored again", region, id, tostring(existing.DBInstanceStatus))
    else
        local restore = {}
        for k, v in pairs(args) do
            restore[k] = v
        end
        restore.timeout, restore.delay, restore.before_restore = nil, nil, nil
        for k, v in pairs(args.before_restore and args.before_restore() or {}) do
            restore[k] = v
        end
        M.restore_db_instance_from_db_snapshot(restore)
        log.info(
            "%s: %s RestoreDBInstanceFromDBSnapshot %s from %s",
            region,
            runtime.dry_run and "would call" or "called",
            id,
            tostring(args.DBSnapshotIdentifier)
        )
    end
    local list = M.wait_available {
        region = region,
        profile = args.profile,
        endpoint = args.endpoint,
        DBInstanceIdentifier = id,
        timeout = args.timeout,
        delay = args.delay,
    }
    return list and list[1]
end

return M
