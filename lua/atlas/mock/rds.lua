-- RDS in the mock world: one Multi-AZ PostgreSQL 15 instance per region, the
-- eu-west-1 read replica and the two eu-west-1 snapshots.
--
-- Operations move instances through the statuses RDS shows (rebooting,
-- modifying, renaming, creating) and back to available after a realistic
-- delay. The application in region R talks to the instance whose identifier
-- is atlas-production-db-R (its endpoint name), so renaming a promoted
-- replica to that identifier brings the application back.
local util = require "atlas.mock.util"
local env = require "atlas.env"

local M = {}

-- How long each operation takes is a latency of the world (World.LATENCIES).

-- Statuses in which an instance does not accept connections.
local UNREACHABLE = {
    failed = true,
    stopped = true,
    stopping = true,
    deleting = true,
    creating = true,
    ["inaccessible-encryption-credentials"] = true,
    ["incompatible-restore"] = true,
    ["storage-full"] = true,
    restoring = true,
}


function M.endpoint_address(id, region)
    return string.format("%s.c%s.%s.rds.amazonaws.com", id, util.hex_digits(#region * 17 + 5, 11), region)
end

local function state(w, region)
    w.rds = w.rds or {}
    local s = w.rds[region]
    if not s then
        s = { instances = {}, snapshots = {} }
        w.rds[region] = s
    end
    return s
end

local function arn(region, kind, id) return string.format("arn:aws:rds:%s:%s:%s:%s", region, util.ACCOUNT, kind, id) end

local function instance(w, region, id, fields)
    local v = {
        DBInstanceIdentifier = id,
        DBInstanceClass = "db.r6g.xlarge",
        Engine = "postgres",
        DBInstanceStatus = "available",
        MasterUsername = env.DB_USER,
        DBName = env.DB_NAME,
        Endpoint = { Address = M.endpoint_address(id, region), Port = 5432, HostedZoneId = "Z29XKXDKYMONMX" },
        AllocatedStorage = 500,
        InstanceCreateTime = util.iso(w.start_time - 420 * 86400),
        PreferredBackupWindow = "02:00-03:00",
        BackupRetentionPeriod = 7,
        DBSecurityGroups = util.list(),
        VpcSecurityGroups = util.list {
            { VpcSecurityGroupId = "sg-0" .. util.hex_digits(#region * 19, 16), Status = "active" },
        },
        DBParameterGroups = util.list {
            { DBParameterGroupName = "atlas-production-postgres15", ParameterApplyStatus = "in-sync" },
        },
        AvailabilityZone = region .. "a",
        DBSubnetGroup = {
            DBSubnetGroupName = "atlas-production-db-subnets",
            DBSubnetGroupDescription = "Atlas CRM production database subnets",
            VpcId = "vpc-0" .. util.hex_digits(#region * 23, 16),
            SubnetGroupStatus = "Complete",
            Subnets = util.list {
                {
                    SubnetIdentifier = "subnet-0d" .. util.hex_digits(#region * 29, 15),
                    SubnetAvailabilityZone = { Name = region .. "a" },
                    SubnetStatus = "Active",
                },
                {
                    SubnetIdentifier = "subnet-0e" .. util.hex_digits(#region * 31, 15),
                    SubnetAvailabilityZone = { Name = region .. "b" },
                    SubnetStatus = "Active",
                },
            },
        },
        PreferredMaintenanceWindow = "sun:04:00-sun:05:00",
        PendingModifiedValues = {},
        LatestRestorableTime = util.iso(w.t - 300),
        MultiAZ = true,
        EngineVersion = "15.7",
        AutoMinorVersionUpgrade = true,
        ReadReplicaDBInstanceIdentifiers = util.list(),
        LicenseModel = "postgresql-license",
        OptionGroupMemberships = util.list { { OptionGroupName = "default:postgres-15", Status = "in-sync" } },
        SecondaryAvailabilityZone = region .. "b",
        PubliclyAccessible = false,
        StorageType = "gp3",
        Iops = 12000,
        StorageThroughput = 500,
        DbInstancePort = 0,
        StorageEncrypted = true,
        KmsKeyId = string.format("arn:aws:kms:%s:%s:key/%s", region, util.ACCOUNT, util.uuid(#region * 37)),
        DbiResourceId = "db-" .. util.upper_id("", #id * 41 + #region, 26),
        CACertificateIdentifier = "rds-ca-rsa2048-g1",
        CopyTagsToSnapshot = true,
        DBInstanceArn = arn(region, "db", id),
        IAMDatabaseAuthenticationEnabled = false,
        PerformanceInsightsEnabled = true,
        DeletionProtection = true,
        TagList = util.list {
            { Key = "Environment", Value = "production" },
            { Key = "Application", Value = "atlas-crm" },
        },
        CustomerOwnedIpEnabled = false,
        BackupTarget = "region",
        NetworkType = "IPV4",
        StorageVolumeStatus = "IN_USE",
        DedicatedLogVolume = false,
        IsStorageConfigUpgradeAvailable = false,
        EngineLifecycleSupport = "open-source-rds-extended-support",
    }
    for k, val in pairs(fields or {}) do
        v[k] = val
    end
    return { v = v, region = region, reachable = true }
end

local function snapshot(w, region, id, source, created, fields)
    local iv = source.v
    local s = {
        DBSnapshotIdentifier = id,
        DBInstanceIdentifier = iv.DBInstanceIdentifier,
        SnapshotCreateTime = util.iso(created),
        Engine = "postgres",
        AllocatedStorage = iv.AllocatedStorage,
        Status = "available",
        Port = 5432,
        AvailabilityZone = iv.AvailabilityZone,
        VpcId = iv.DBSubnetGroup.VpcId,
        InstanceCreateTime = iv.InstanceCreateTime,
        MasterUsername = iv.MasterUsername,
        EngineVersion = iv.EngineVersion,
        LicenseModel = "postgresql-license",
        SnapshotType = "manual",
        Iops = iv.Iops,
        StorageThroughput = iv.StorageThroughput,
        OptionGroupName = "default:postgres-15",
        PercentProgress = 100,
        StorageType = iv.StorageType,
        Encrypted = true,
        KmsKeyId = iv.KmsKeyId,
        DBSnapshotArn = arn(region, "snapshot", id),
        IAMDatabaseAuthenticationEnabled = false,
        ProcessorFeatures = util.list(),
        DbiResourceId = iv.DbiResourceId,
        TagList = util.list(),
        OriginalSnapshotCreateTime = util.iso(created),
        SnapshotTarget = "region",
        DedicatedLogVolume = false,
    }
    for k, val in pairs(fields or {}) do
        s[k] = val
    end
    return { v = s, region = region, created = created, source_class = iv.DBInstanceClass }
end

local function add_instance(w, region, inst)
    local s = state(w, region)
    s.instances[inst.v.DBInstanceIdentifier] = inst
end

M.PARAMETER_GROUP = "atlas-production-postgres15"

-- The production parameter group's settings that differ from the engine's
-- defaults (Source "user"), and a few defaults beside them.
local function parameter_group()
    local function p(name, value, source, data_type, apply_type, allowed, description)
        return {
            ParameterName = name,
            ParameterValue = value,
            Description = description,
            Source = source,
            ApplyType = apply_type,
            DataType = data_type,
            AllowedValues = allowed,
            IsModifiable = true,
            ApplyMethod = "pending-reboot",
        }
    end
    return {
        p(
            "max_connections",
            nil,
            "engine-default",
            "integer",
            "static",
            "6-262143",
            "Sets the maximum number of concurrent connections."
        ),
        p(
            "max_replication_slots",
            "10",
            "user",
            "integer",
            "static",
            "5-8388607",
            "Sets the maximum number of replication slots that the server can support."
        ),
        p(
            "max_wal_senders",
            "10",
            "user",
            "integer",
            "static",
            "5-8388607",
            "Sets the maximum number of simultaneously running WAL sender processes."
        ),
        p("rds.logical_replication", "1", "user", "boolean", "static", "0,1", "Enables logical decoding."),
        p(
            "shared_preload_libraries",
            "pg_stat_statements",
            "engine-default",
            "list",
            "static",
            nil,
            "Lists shared libraries to preload into server."
        ),
    }
end

function M.build(w)
    w.rds_parameter_groups = { [M.PARAMETER_GROUP] = parameter_group() }
    for _, region in ipairs(util.REGIONS) do
        add_instance(w, region, instance(w, region, env.db_instance(region)))
    end
    local primary = state(w, env.PRIMARY_REGION).instances[env.db_instance(env.PRIMARY_REGION)]
    local replica = instance(w, env.PRIMARY_REGION, env.REPLICA, {
        MultiAZ = false,
        SecondaryAvailabilityZone = nil,
        AvailabilityZone = "eu-west-1c",
        BackupRetentionPeriod = 0,
        ReadReplicaSourceDBInstanceIdentifier = env.db_instance(env.PRIMARY_REGION),
        StatusInfos = util.list { { StatusType = "read replication", Normal = true, Status = "replicating" } },
        DeletionProtection = false,
        InstanceCreateTime = util.iso(w.start_time - 200 * 86400),
    })
    add_instance(w, "eu-west-1", replica)
    primary.v.ReadReplicaDBInstanceIdentifiers = util.list { env.REPLICA }
    local snaps = state(w, "eu-west-1").snapshots
    snaps[env.SNAPSHOTS[1]] = snapshot(w, env.PRIMARY_REGION, env.SNAPSHOTS[1], primary, w.start_time - 6 * 3600)
    snaps[env.SNAPSHOTS[2]] = snapshot(w, env.PRIMARY_REGION, env.SNAPSHOTS[2], primary, w.start_time - 16 * 86400)
end

-- Lookups ----------------------------------------------------------------------

local function find_instance(w, region, ctx, id)
    local inst = state(w, region).instances[ctx:need({ DBInstanceIdentifier = id }, "DBInstanceIdentifier")]
    if not inst then ctx:fail("DBInstanceNotFound", "DBInstance " .. tostring(id) .. " not found.", 404) end
    return inst
end

local function find_snapshot(w, region, ctx, id)
    local snap = state(w, region).snapshots[id]
    if not snap then ctx:fail("DBSnapshotNotFound", "DBSnapshot " .. tostring(id) .. " not found.", 404) end
    return snap
end

local function require_available(ctx, inst, doing)
    if inst.v.DBInstanceStatus ~= "available" then
        ctx:fail(
            "InvalidDBInstanceState",
            string.format(
                "%s: DB instance %s is not in the available state (it is %s).",
                doing,
                inst.v.DBInstanceIdentifier,
                inst.v.DBInstanceStatus
            )
        )
    end
end

function M.instance(w, region, id) return state(w, region).instances[id] end

-- Whether the application of `region` can reach its database: the instance
-- answering at atlas-production-db-<region>.
function M.application_db_reachable(w, region)
    local inst = state(w, region).instances[env.db_instance(region)]
    return inst ~= nil and inst.reachable and not UNREACHABLE[inst.v.DBInstanceStatus]
end

-- Whether the instance `id` in `region` takes connections now.
function M.instance_reachable(w, region, id)
    local inst = state(w, region).instances[id]
    return inst ~= nil and inst.reachable and not UNREACHABLE[inst.v.DBInstanceStatus]
end

local function sorted_instances(w, region)
    local out = {}
    local s = state(w, region)
    for _, id in ipairs(util.sorted_keys(s.instances)) do
        out[#out + 1] = s.instances[id]
    end
    return out
end

local function view(inst)
    local v = util.copy(inst.v)
    v.PendingModifiedValues = v.PendingModifiedValues or {}
    return v
end

-- Transitions ----------------------------------------------------------------------

-- Sets a transient status now and `final(inst)` + available after `seconds`.
local function transition(w, inst, status, latency, final)
    inst.v.DBInstanceStatus = status
    inst.busy = w:after_latency(latency, function()
        inst.busy = nil
        if inst.v.DBInstanceStatus == status then inst.v.DBInstanceStatus = "available" end
        if final then final(inst) end
    end, "rds:" .. inst.region)
end

local function rename(w, region, inst, new_id)
    local s = state(w, region)
    local old_id = inst.v.DBInstanceIdentifier
    s.instances[old_id] = nil
    s.instances[new_id] = inst
    inst.v.DBInstanceIdentifier = new_id
    inst.v.DBInstanceArn = arn(region, "db", new_id)
    inst.v.Endpoint.Address = M.endpoint_address(new_id, region)
    -- Replication links follow the new name.
    for _, other in pairs(s.instances) do
        if other.v.ReadReplicaSourceDBInstanceIdentifier == old_id then
            other.v.ReadReplicaSourceDBInstanceIdentifier = new_id
        end
        for i, rid in ipairs(other.v.ReadReplicaDBInstanceIdentifiers or {}) do
            if rid == old_id then other.v.ReadReplicaDBInstanceIdentifiers[i] = new_id end
        end
    end
end

-- Handlers ------------------------------------------------------------------------

local H = {}

local function filter_values(filters, name)
    for _, f in ipairs(filters or {}) do
        if f.Name == name then
            local set = {}
            for _, value in ipairs(util.as_list(f.Values)) do
                set[value] = true
            end
            return set
        end
    end
end

function H.DescribeDBInstances(w, region, p, ctx)
    local list = {}
    if p.DBInstanceIdentifier then
        list[1] = view(find_instance(w, region, ctx, p.DBInstanceIdentifier))
    else
        local ids = filter_values(p.Filters, "db-instance-id")
        local engines = filter_values(p.Filters, "engine")
        for _, inst in ipairs(sorted_instances(w, region)) do
            if
                (not ids or ids[inst.v.DBInstanceIdentifier] or ids[inst.v.DBInstanceArn])
                and (not engines or engines[inst.v.Engine])
            then
                list[#list + 1] = view(inst)
            end
        end
    end
    local max = p.MaxRecords and tonumber(p.MaxRecords) or 100
    if max < 20 or max > 100 then
        ctx:fail(
            "InvalidParameterValue",
            "Invalid value " .. tostring(max) .. " for MaxRecords. Must be between 20 and 100"
        )
    end
    local page, marker = util.page(list, p.Marker, max, 100)
    return { DBInstances = page, Marker = marker }
end

function H.RebootDBInstance(w, region, p, ctx)
    local inst = find_instance(w, region, ctx, p.DBInstanceIdentifier)
    require_available(ctx, inst, "Reboot")
    local failover = p.ForceFailover == true or p.ForceFailover == "true"
    if failover and not inst.v.MultiAZ then
        ctx:fail("InvalidParameterCombination", "Failover cannot be forced on a DB instance that is not Multi-AZ.")
    end
    transition(w, inst, "rebooting", failover and "rds_multi_az_failover" or "rds_reboot", function(i)
        if failover then
            i.v.AvailabilityZone, i.v.SecondaryAvailabilityZone = i.v.SecondaryAvailabilityZone, i.v.AvailabilityZone
            -- The standby's host answers now: a fault of the old host is left behind.
            i.reachable = true
        end
    end)
    return { DBInstance = view(inst) }
end

function H.PromoteReadReplica(w, region, p, ctx)
    local inst = find_instance(w, region, ctx, p.DBInstanceIdentifier)
    if not inst.v.ReadReplicaSourceDBInstanceIdentifier then
        ctx:fail("InvalidDBInstanceState", "DB Instance is not a read replica.")
    end
    require_available(ctx, inst, "Promote")
    if p.BackupRetentionPeriod then
        inst.v.BackupRetentionPeriod = math.tointeger(tonumber(p.BackupRetentionPeriod))
    elseif inst.v.BackupRetentionPeriod == 0 then
        inst.v.BackupRetentionPeriod = 1
    end
    transition(w, inst, "modifying", "rds_replica_promotion", function(i)
        local source_id = i.v.ReadReplicaSourceDBInstanceIdentifier
        i.v.ReadReplicaSourceDBInstanceIdentifier = nil
        i.v.StatusInfos = nil
        local source = state(w, region).instances[source_id]
        if source then
            local kept = util.list()
            for _, rid in ipairs(source.v.ReadReplicaDBInstanceIdentifiers) do
                if rid ~= i.v.DBInstanceIdentifier then kept[#kept + 1] = rid end
            end
            source.v.ReadReplicaDBInstanceIdentifiers = kept
        end
    end)
    return { DBInstance = view(inst) }
end

function H.CreateDBSnapshot(w, region, p, ctx)
    local id = ctx:need(p, "DBSnapshotIdentifier")
    local inst = find_instance(w, region, ctx, p.DBInstanceIdentifier)
    if state(w, region).snapshots[id] then
        ctx:fail(
            "DBSnapshotAlreadyExists",
            "Cannot create the snapshot because a snapshot with the identifier " .. id .. " already exists."
        )
    end
    if inst.v.DBInstanceStatus ~= "available" and inst.v.DBInstanceStatus ~= "backing-up" then
        ctx:fail(
            "InvalidDBInstanceState",
            "Cannot create a snapshot because the database instance "
                .. inst.v.DBInstanceIdentifier
                .. " is not currently in the available state."
        )
    end
    local snap = snapshot(w, region, id, inst, w.t, {
        Status = "creating",
        PercentProgress = 0,
        TagList = util.list(util.copy(p.Tags or {})),
    })
    state(w, region).snapshots[id] = snap
    w:after_latency("rds_snapshot_create", function()
        snap.v.Status = "available"
        snap.v.PercentProgress = 100
    end, "rds:" .. region)
    return { DBSnapshot = util.copy(snap.v) }
end

function H.DescribeDBSnapshots(w, region, p, ctx)
    local list = {}
    if p.DBSnapshotIdentifier then
        list[1] = util.copy(find_snapshot(w, region, ctx, p.DBSnapshotIdentifier).v)
    else
        local s = state(w, region)
        local ids = util.sorted_keys(s.snapshots)
        table.sort(ids, function(a, b) return s.snapshots[a].created > s.snapshots[b].created end)
        for _, id in ipairs(ids) do
            local snap = s.snapshots[id]
            if
                (p.DBInstanceIdentifier == nil or snap.v.DBInstanceIdentifier == p.DBInstanceIdentifier)
                and (p.SnapshotType == nil or snap.v.SnapshotType == p.SnapshotType)
            then
                list[#list + 1] = util.copy(snap.v)
            end
        end
    end
    local page, marker = util.page(list, p.Marker, p.MaxRecords, 100)
    return { DBSnapshots = page, Marker = marker }
end

-- The snapshot a CopyDBSnapshot names: an ARN (any region, as AWS allows
-- for a cross-region copy) or an identifier in the destination region.
local function copy_source(w, region, ctx, id)
    local source_region, name = tostring(id):match("^arn:aws:rds:([%w-]+):%d+:snapshot:(.+)$")
    if tostring(id):match("^arn:") and not source_region then
        ctx:fail(
            "InvalidParameterValue",
            "The parameter SourceDBSnapshotIdentifier is not a valid identifier. Identifiers must begin with a letter; "
                .. "must contain only ASCII letters, digits, and hyphens; and must not end with a hyphen or contain two "
                .. "consecutive hyphens."
        )
    end
    if not source_region then return find_snapshot(w, region, ctx, id), region end
    if not state(w, source_region).snapshots[name] then
        ctx:fail("DBSnapshotNotFound", "DBSnapshot " .. name .. " not found.", 404)
    end
    return state(w, source_region).snapshots[name], source_region
end

function H.CopyDBSnapshot(w, region, p, ctx)
    local target = ctx:need(p, "TargetDBSnapshotIdentifier")
    local source, source_region = copy_source(w, region, ctx, ctx:need(p, "SourceDBSnapshotIdentifier"))
    if state(w, region).snapshots[target] then
        ctx:fail(
            "DBSnapshotAlreadyExists",
            "Cannot create the snapshot because a snapshot with the identifier " .. target .. " already exists."
        )
    end
    if source.v.Status ~= "available" then
        ctx:fail("InvalidDBSnapshotState", "Snapshot " .. source.v.DBSnapshotIdentifier .. " is not available.")
    end
    local fields = util.copy(source.v)
    fields.DBSnapshotIdentifier = target
    fields.DBSnapshotArn = arn(region, "snapshot", target)
    fields.Status = "copying"
    fields.PercentProgress = 0
    fields.SnapshotType = "manual"
    fields.SnapshotCreateTime = util.iso(w.t)
    fields.AvailabilityZone = region .. "a"
    if source_region ~= region then
        fields.SourceRegion = source_region
        fields.SourceDBSnapshotIdentifier = source.v.DBSnapshotArn
    else
        fields.SourceDBSnapshotIdentifier = source.v.DBSnapshotIdentifier
    end
    if p.KmsKeyId then fields.KmsKeyId = p.KmsKeyId end
    fields.TagList = util.list(util.copy(p.Tags or (p.CopyTags and source.v.TagList) or {}))
    local snap = { v = fields, region = region, created = w.t, source_class = source.source_class }
    state(w, region).snapshots[target] = snap
    -- A cross-region copy moves the whole volume between regions.
    w:after_latency(source_region ~= region and "rds_snapshot_copy_cross_region" or "rds_snapshot_copy", function()
        snap.v.Status = "available"
        snap.v.PercentProgress = 100
    end, "rds:" .. region)
    return { DBSnapshot = util.copy(snap.v) }
end

function H.RestoreDBInstanceFromDBSnapshot(w, region, p, ctx)
    local id = ctx:need(p, "DBInstanceIdentifier")
    local snap = find_snapshot(w, region, ctx, ctx:need(p, "DBSnapshotIdentifier"))
    if state(w, region).instances[id] then ctx:fail("DBInstanceAlreadyExists", "DB instance already exists") end
    if snap.v.Status ~= "available" then
        ctx:fail("InvalidDBSnapshotState", "Snapshot " .. snap.v.DBSnapshotIdentifier .. " is not available.")
    end
    local inst = instance(w, region, id, {
        DBInstanceClass = p.DBInstanceClass or snap.source_class,
        MultiAZ = p.MultiAZ == true,
        DBInstanceStatus = "creating",
        InstanceCreateTime = util.iso(w.t),
        AvailabilityZone = p.AvailabilityZone or (region .. "a"),
        DeletionProtection = p.DeletionProtection == true,
        TagList = util.list(util.copy(p.Tags or {})),
    })
    if not inst.v.MultiAZ then inst.v.SecondaryAvailabilityZone = nil end
    inst.v.LatestRestorableTime = nil
    add_instance(w, region, inst)
    transition(w, inst, "creating", "rds_snapshot_restore", function(i) i.v.LatestRestorableTime = util.iso(w.t) end)
    return { DBInstance = view(inst) }
end

function H.DescribeDBParameters(w, region, p, ctx)
    local name = ctx:need(p, "DBParameterGroupName")
    local group = (w.rds_parameter_groups or {})[name]
    if not group then ctx:fail("DBParameterGroupNotFound", "DBParameterGroup not found: " .. name, 404) end
    local list = {}
    for _, param in ipairs(group) do
        if p.Source == nil or param.Source == p.Source then list[#list + 1] = util.copy(param) end
    end
    local page, marker = util.page(list, p.Marker, p.MaxRecords, 100)
    return { Parameters = page, Marker = marker }
end

-- set_parameter(w, group, name, value): a test's change to the parameter
-- group (in effect at once; the instances' apply status is not modelled).
function M.set_parameter(w, group, name, value)
    for _, param in ipairs(w.rds_parameter_groups[group]) do
        if param.ParameterName == name then
            param.ParameterValue = value
            param.Source = value == nil and "engine-default" or "user"
            return
        end
    end
    error("set_parameter: no parameter " .. name)
end

local MODIFIABLE = {
    "DBInstanceClass",
    "MultiAZ",
    "BackupRetentionPeriod",
    "AllocatedStorage",
    "EngineVersion",
    "StorageType",
    "Iops",
}

function H.ModifyDBInstance(w, region, p, ctx)
    local inst = find_instance(w, region, ctx, p.DBInstanceIdentifier)
    local s = state(w, region)
    if p.NewDBInstanceIdentifier and s.instances[p.NewDBInstanceIdentifier] then
        ctx:fail("DBInstanceAlreadyExists", "DB instance already exists")
    end
    local changes = {}
    for _, key in ipairs(MODIFIABLE) do
        if p[key] ~= nil and p[key] ~= inst.v[key] then changes[key] = p[key] end
    end
    -- Settings that apply at once whatever ApplyImmediately says.
    for _, key in ipairs({
        "DeletionProtection",
        "AutoMinorVersionUpgrade",
        "CopyTagsToSnapshot",
        "PreferredBackupWindow",
        "PreferredMaintenanceWindow",
    }) do
        if p[key] ~= nil then inst.v[key] = p[key] end
    end
    local immediately = p.ApplyImmediately == true
    if not immediately then
        for k, val in pairs(changes) do
            inst.v.PendingModifiedValues[k] = val
        end
        if p.NewDBInstanceIdentifier then
            inst.v.PendingModifiedValues.DBInstanceIdentifier = p.NewDBInstanceIdentifier
        end
        return { DBInstance = view(inst) }
    end
    if next(changes) or p.NewDBInstanceIdentifier then require_available(ctx, inst, "Modify") end
    if p.NewDBInstanceIdentifier then
        rename(w, region, inst, p.NewDBInstanceIdentifier)
        transition(w, inst, "renaming", "rds_modify")
    end
    if next(changes) then
        inst.v.PendingModifiedValues = util.copy(changes)
        local apply = function(i)
            for k, val in pairs(changes) do
                i.v[k] = val
            end
            if i.v.MultiAZ and not i.v.SecondaryAvailabilityZone then
                i.v.SecondaryAvailabilityZone = region .. "b"
            elseif not i.v.MultiAZ then
                i.v.SecondaryAvailabilityZone = nil
            end
            i.v.PendingModifiedValues = {}
        end
        if p.NewDBInstanceIdentifier then
            -- Renaming holds the instance; the other changes follow it.
            local renamed = inst.busy
            local previous = renamed.fn
            renamed.fn = function(world)
                previous(world)
                transition(world, inst, "modifying", "rds_modify", apply)
            end
        else
            transition(w, inst, "modifying", "rds_modify", apply)
        end
    end
    return { DBInstance = view(inst) }
end

function H.DeleteDBInstance(w, region, p, ctx)
    local inst = find_instance(w, region, ctx, p.DBInstanceIdentifier)
    local id = inst.v.DBInstanceIdentifier
    if inst.v.DeletionProtection then
        ctx:fail(
            "InvalidParameterCombination",
            "Cannot delete protected DB Instance, please disable deletion protection and try again."
        )
    end
    if inst.v.DBInstanceStatus == "deleting" then
        ctx:fail("InvalidDBInstanceState", "Instance " .. id .. " is already being deleted.")
    end
    local skip = p.SkipFinalSnapshot == true
    if not skip and not p.FinalDBSnapshotIdentifier then
        ctx:fail(
            "InvalidParameterCombination",
            "FinalDBSnapshotIdentifier is required unless SkipFinalSnapshot is specified."
        )
    end
    if not skip then
        H.CreateDBSnapshot(
            w,
            region,
            { DBInstanceIdentifier = id, DBSnapshotIdentifier = p.FinalDBSnapshotIdentifier },
            ctx
        )
    end
    if inst.busy then
        inst.busy.cancelled = true
        inst.busy = nil
    end
    inst.v.DBInstanceStatus = "deleting"
    w:after_latency("rds_delete", function()
        local s = state(w, region)
        if s.instances[id] == inst then s.instances[id] = nil end
        -- Replicas of a deleted source stand alone (PostgreSQL semantics).
        for _, other in pairs(s.instances) do
            if other.v.ReadReplicaSourceDBInstanceIdentifier == id then
                other.v.ReadReplicaSourceDBInstanceIdentifier = nil
                other.v.StatusInfos = nil
            end
        end
    end, "rds:" .. region)
    return { DBInstance = view(inst) }
end

-- Scenario and test helpers ------------------------------------------------------------

-- set_instance(w, id, {status=, reachable=, region=}) finds the instance in
-- any region.
function M.set_instance(w, id, fields)
    for _, region in ipairs(util.REGIONS) do
        local inst = state(w, region).instances[id]
        if inst then
            if fields.status then
                inst.v.DBInstanceStatus = fields.status
                if inst.busy then
                    inst.busy.cancelled = true
                    inst.busy = nil
                end
            end
            if fields.reachable ~= nil then inst.reachable = fields.reachable end
            if fields.replication then
                for _, other in pairs(state(w, region).instances) do
                    if other.v.ReadReplicaSourceDBInstanceIdentifier == id then
                        other.v.StatusInfos = util.list { util.copy(fields.replication) }
                    end
                end
            end
            return inst
        end
    end
    error("set_db_instance: no instance " .. tostring(id))
end

-- Every new world builds this state and sends this module the calls to rds.
require("atlas.mock.world").register { name = "rds", build = M.build, handlers = { rds = H } }

return M
