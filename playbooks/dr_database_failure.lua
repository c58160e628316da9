-- Runbook "Scenario 2: Database Failure".
--
-- Reads the primary's state first and says what it sees, then, by what it
-- sees or as asked: a Multi-AZ failover (reboot with ForceFailover), a
-- promotion of the read replica, or a restore of the newest snapshot into
-- another region (copied there first: a restore cannot name a snapshot of
-- another region). After a promotion, logical replication follows the new
-- primary: PostgreSQL 15 does not carry logical slots to a physical replica,
-- so the slots are created on it, each subscription is pointed at it and
-- checked, the global tables are compared (changes that reached the replica
-- but not the subscribers have no slot to come from), a subscriber that
-- differs is resynchronised after confirmation, and sequences are advanced
-- when the new primary was a logical subscriber.
local atlas = require "atlas"
local rds = require "atlas.rds"
local sql = require "atlas.sql"
local errors = require "atlas.errors"
local cloudwatch = require "atlas.cloudwatch"
local replication = require "atlas.replication"
local env = require "atlas.env"

local ACTIONS = { "auto", "failover", "promote", "restore" }
local RESTORED_CLASS = "db.r6g.xlarge"

-- Statuses from which RDS itself does not bring the instance back.
local BROKEN = {
    failed = true,
    ["incompatible-restore"] = true,
    ["incompatible-parameters"] = true,
    ["incompatible-network"] = true,
    ["inaccessible-encryption-credentials"] = true,
    ["storage-full"] = true,
    ["restore-error"] = true,
}
-- Statuses that end by themselves: wait rather than act.
local TRANSIENT = {
    rebooting = true,
    modifying = true,
    ["backing-up"] = true,
    maintenance = true,
    upgrading = true,
    renaming = true,
    starting = true,
    ["configuring-enhanced-monitoring"] = true,
    ["configuring-log-exports"] = true,
    ["resetting-master-credentials"] = true,
    ["storage-optimization"] = true,
}

local function primary_id(ctx) return env.db_instance(ctx.params.region) end
local function replica_id(ctx) return env.db_instance(ctx.params.region) .. "-replica" end
local function restored_id(ctx) return env.db_instance(ctx.params.region) .. "-restored" end
local function copy_id(ctx) return ctx.params.snapshot .. "-" .. ctx.params.restore_region end

-- The instance, or nil when RDS does not know it.
local function describe(region, id) return rds.find_db_instance { region = region, DBInstanceIdentifier = id } end

-- The database behind an instance, as sql.connect takes it: the conninfo
-- given, or the instance's endpoint with the master password's secret.
local function database_spec(ctx, conninfo, instance)
    if conninfo and conninfo ~= "" then return conninfo end
    if not instance or not instance.Endpoint then return nil end
    return {
        host = instance.Endpoint.Address,
        port = instance.Endpoint.Port or 5432,
        dbname = instance.DBName or env.DB_NAME,
        user = instance.MasterUsername or env.DB_USER,
        password_secret = ctx.params.password_secret,
        secret_region = env.PRIMARY_REGION,
        connect_timeout = 5,
    }
end

-- true | false (the server does not answer) | nil (we cannot tell: our
-- credentials, our secret), and what was seen.
local function probe(spec)
    if not spec then return false, "no endpoint" end
    local ok, err = pcall(function()
        local db <close> = sql.connect(spec)
        db:query("SELECT 1")
    end)
    if ok then return true, "answers SQL" end
    if errors.is(err, "interrupted") then error(err, 0) end
    local state = type(err) == "table" and err.sqlstate or nil
    if state and (state:sub(1, 2) == "08" or state == "57P01" or state == "57P03") then
        return false, errors.message(err)
    end
    return nil, "cannot tell: " .. errors.message(err)
end

local function replica_lag(region, id)
    local now = atlas.now()
    local ok, stats = pcall(cloudwatch.get_metric_statistics, {
        region = region,
        Namespace = "AWS/RDS",
        MetricName = "ReplicaLag",
        Dimensions = { { Name = "DBInstanceIdentifier", Value = id } },
        StartTime = now - 600,
        EndTime = now,
        Period = 60,
        Statistics = { "Maximum" },
    })
    if not ok then
        if errors.is(stats, "interrupted") then error(stats, 0) end
        return nil, errors.message(stats)
    end
    local newest
    for _, point in ipairs(stats.Datapoints or {}) do
        if not newest or tostring(point.Timestamp) > tostring(newest.Timestamp) then newest = point end
    end
    if not newest then return nil, "no ReplicaLag datapoints in the last 10 minutes" end
    return newest.Maximum
end

local function describe_instance(inst)
    if not inst then return "does not exist" end
    return string.format(
        "%s, %s, %s",
        inst.DBInstanceStatus,
        inst.MultiAZ and "Multi-AZ" or "single-AZ",
        inst.DBInstanceClass or "?"
    )
end

-- Whether the replica can be promoted now.
local function promotable(replica)
    return replica ~= nil
        and replica.DBInstanceStatus == "available"
        and replica.ReadReplicaSourceDBInstanceIdentifier ~= nil
end

-- action, reason: what auto does with what it saw.
local function decide(seen)
    local p = seen.primary
    local fallback = promotable(seen.replica) and "promote" or "restore"
    local fallback_reason = fallback == "promote" and "the replica is available"
        or "the replica cannot be promoted (" .. describe_instance(seen.replica) .. ")"
    if not p then return fallback, "the primary does not exist; " .. fallback_reason end
    local status = p.DBInstanceStatus
    if BROKEN[status] then return fallback, "the primary is " .. status .. "; " .. fallback_reason end
    if TRANSIENT[status] then return "wait", "the primary is " .. status .. ", which ends by itself" end
    if status ~= "available" then return nil, "the primary is " .. status .. ": choose an action" end
    if seen.reachable == true then return "none", "the primary is available and answers SQL" end
    if seen.reachable == nil then
        return nil, "RDS says available but the database could not be checked (" .. seen.probe .. ")"
    end
    if p.MultiAZ then
        return "failover", "available in RDS but not answering, and Multi-AZ: fail over to the standby"
    end
    return fallback, "not answering and not Multi-AZ; " .. fallback_reason
end

-- Connection targets stay out of ctx.state (journaled): a conninfo may hold
-- a password.
local targets

local function new_primary_target(ctx)
    if ctx.params.new_primary and ctx.params.new_primary ~= "" then
        return replication.conninfo_target(ctx.params.new_primary)
    end
    return replication.instance_target(ctx.params.region, ctx.state.new_primary, ctx.params.password_secret)
end

local function resolve(ctx)
    if not targets then
        targets = { new_primary = new_primary_target(ctx) }
        targets.secondaries = replication.resolve_secondaries(ctx.params.secondaries, ctx.params.password_secret)
    end
    return targets
end

local function follows_promotion(ctx) return ctx.state.action == "promote" and ctx.state.new_primary ~= nil end

-- Waits until every subscriber streams from the new primary; the slots' lag.
local function wait_streaming(ctx, primary, secondaries)
    local deadline = atlas.now() + ctx.params.stream_wait
    while true do
        local slots, pending = {}, {}
        for _, slot in ipairs(replication.slot_status(primary)) do
            slots[slot.slot_name] = slot
        end
        for _, s in ipairs(secondaries) do
            local sub = replication.subscription(s.conn, ctx.params.subscription)
            local status
            for _, row in ipairs(replication.subscription_status(s.conn)) do
                if row.subname == ctx.params.subscription then status = row end
            end
            local slot = sub and replication.present(sub.slot_name) and slots[sub.slot_name]
            s.slot = slot
            if not status or not replication.present(status.pid) then
                pending[#pending + 1] = s.label .. ": no apply worker"
            elseif not slot or not slot.active or slot.state ~= "streaming" then
                pending[#pending + 1] = s.label .. ": slot not streaming"
            elseif status.tables_ready < status.tables_total then
                pending[#pending + 1] = string.format(
                    "%s: initial copy, %d of %d tables",
                    s.label,
                    status.tables_ready,
                    status.tables_total
                )
            end
        end
        if #pending == 0 then return end
        if atlas.now() >= deadline then
            atlas.fail(
                "replication does not stream from the new primary after %g s: %s",
                ctx.params.stream_wait,
                table.concat(pending, "; ")
            )
        end
        atlas.progress("waiting for %s", table.concat(pending, "; "))
        atlas.sleep(0.5)
    end
end

local function connect_secondaries(t)
    local list = {}
    for i, s in ipairs(t.secondaries) do
        list[i] = { label = s.label, spec = s.spec, conn = sql.connect(s.spec) }
    end
    return list
end

local function close_all(list)
    for _, s in ipairs(list) do
        s.conn:close()
    end
end

-- compare(primary, secondary, quiet) -> names of the tables that differ
local function compare(primary, secondary, quiet)
    local differing = {}
    for _, row in ipairs(replication.compare_tables(primary, secondary.conn, replication.TABLES)) do
        if quiet then
            if not row.same then differing[#differing + 1] = row.table end
        elseif row.same then
            atlas.log("%s: %s %d rows, checksum matches", secondary.label, row.table, row.b_rows)
        else
            differing[#differing + 1] = row.table
            atlas.warn(
                "%s: %s differs: %d rows (checksum %s) on the new primary, %d rows (checksum %s) here",
                secondary.label,
                row.table,
                row.a_rows,
                row.a_checksum:sub(1, 12),
                row.b_rows,
                row.b_checksum:sub(1, 12)
            )
        end
    end
    return differing
end

-- The slot of a subscription just dropped: its walsender lets go of it a
-- moment later, and an active slot cannot be dropped.
local function drop_slot_when_released(primary, slot)
    local deadline = atlas.now() + 30
    while true do
        local found
        for _, row in ipairs(replication.slot_status(primary)) do
            if row.slot_name == slot then found = row end
        end
        if not found then return end
        if not found.active then return replication.drop_slot(primary, slot) end
        if atlas.now() >= deadline then atlas.fail("slot %s is still in use after 30 s", slot) end
        atlas.sleep(0.2)
    end
end

local function verbed(ctx, verb, done) return ctx.dry_run and ("would " .. verb) or done end

return atlas.playbook {
    name = "dr_database_failure",
    description = "Database failure: Multi-AZ failover, replica promotion or cross-region restore (runbook scenario 2)",
    lock = "atlas-production-db",
    params = {
        region = { type = "region", default = env.PRIMARY_REGION, description = "the region whose primary failed" },
        action = {
            type = "string",
            default = "auto",
            choices = ACTIONS,
            description = "auto decides from what it sees; failover, promote or restore force one",
        },
        restore_region = {
            type = "region",
            default = env.DEFAULT_BACKUP_REGION,
            description = "where action=restore restores the snapshot",
        },
        snapshot = { type = "string", default = env.SNAPSHOTS[1], description = "snapshot that restore uses" },
        kms_key = {
            type = "string",
            default = "alias/aws/rds",
            description = "KMS key in restore_region for the encrypted snapshot's copy",
        },
        primary = {
            type = "string",
            description = "conninfo or URI of the primary's database, for the reachability check (default: its endpoint)",
        },
        new_primary = {
            type = "string",
            description = "conninfo or URI of the promoted database (default: the promoted instance's endpoint)",
        },
        secondaries = {
            type = "list",
            description = "conninfos or URIs of the logical subscribers (default: us-east-1 and ap-southeast-1 RDS)",
        },
        subscription = { type = "string", default = replication.SUBSCRIPTION, description = "subscription name" },
        publication = { type = "string", default = replication.PUBLICATION, description = "publication name" },
        password_secret = env.password_secret_param(),
        wait_timeout = {
            type = "integer",
            default = 1800,
            min = 60,
            description = "seconds to wait for each RDS operation",
        },
        stream_wait = {
            type = "number",
            default = 120,
            min = 1,
            description = "seconds to wait for replication to stream from the new primary",
        },
        sequence_margin = {
            type = "integer",
            default = 1000,
            min = 0,
            description = "how far past the highest id in use a sequence is set",
        },
    },
    validate = function(values)
        if values.action == "restore" and values.restore_region == values.region then
            return "restore_region must differ from region: the restore goes to another region"
        end
        return replication.validate_conninfos(values, { "primary", "new_primary", "secondaries" })
    end,
    steps = {
        {
            name = "read the primary's state",
            run = function(ctx)
                local region = ctx.params.region
                local seen = {}
                seen.primary = describe(region, primary_id(ctx))
                atlas.log("%s (%s): %s", primary_id(ctx), region, describe_instance(seen.primary))
                if seen.primary and seen.primary.DBInstanceStatus == "available" then
                    seen.reachable, seen.probe = probe(database_spec(ctx, ctx.params.primary, seen.primary))
                    atlas.log(
                        "%s: %s",
                        primary_id(ctx),
                        seen.reachable == true and "reachable, answers SQL"
                            or (seen.reachable == false and "unreachable: " or "") .. seen.probe
                    )
                end
                seen.replica = describe(region, replica_id(ctx))
                local replica_text = describe_instance(seen.replica)
                if seen.replica then
                    for _, info in ipairs(seen.replica.StatusInfos or {}) do
                        replica_text = replica_text
                            .. string.format(
                                ", %s %s%s",
                                tostring(info.StatusType),
                                tostring(info.Status),
                                info.Message and (" (" .. info.Message .. ")") or ""
                            )
                    end
                    if not seen.replica.ReadReplicaSourceDBInstanceIdentifier then
                        replica_text = replica_text .. ", no longer a replica (already promoted)"
                    end
                    local lag, why = replica_lag(region, replica_id(ctx))
                    replica_text = replica_text
                        .. (lag and string.format(", lag %.1f s", lag) or ", lag unknown: " .. why)
                end
                atlas.log("replica %s: %s", replica_id(ctx), replica_text)

                local action, reason = ctx.params.action, "asked for"
                if action == "auto" then
                    action, reason = decide(seen)
                    if not action then
                        ctx.fail("no action chosen: %s; run again with action=failover, promote or restore", reason)
                    end
                end
                if action == "failover" and seen.primary and not seen.primary.MultiAZ then
                    ctx.fail("%s is not Multi-AZ: there is no standby to fail over to", primary_id(ctx))
                end
                if action == "failover" and not seen.primary then ctx.fail("%s does not exist", primary_id(ctx)) end
                if action == "promote" and not seen.replica then
                    ctx.fail("%s has no read replica %s to promote", primary_id(ctx), replica_id(ctx))
                end
                if action == "promote" and not promotable(seen.replica) then
                    if seen.replica.ReadReplicaSourceDBInstanceIdentifier == nil then
                        atlas.log("%s was already promoted: checking replication only", replica_id(ctx))
                    else
                        ctx.fail("%s cannot be promoted now: it is %s", replica_id(ctx), seen.replica.DBInstanceStatus)
                    end
                end
                if action == "restore" and ctx.params.restore_region == region then
                    ctx.fail("a restore goes to another region: restore_region is %s too", region)
                end
                ctx.state.action = action
                atlas.log("decision: %s (%s)", action, reason)
                if action == "none" then atlas.log("nothing to do: %s is healthy", primary_id(ctx)) end
            end,
        },
        {
            name = "Multi-AZ failover",
            mutates = true,
            confirm = true, -- asked inside, naming the instance, only when there is something to do
            run = function(ctx)
                local action = ctx.state.action
                if action ~= "failover" and action ~= "wait" then return end
                local region, id = ctx.params.region, primary_id(ctx)
                if action == "failover" then
                    if not ctx.dry_run then
                        atlas.confirm(
                            string.format(
                                "Reboot %s (%s) with ForceFailover, so that its Multi-AZ standby becomes the primary?",
                                id,
                                region
                            )
                        )
                    end
                    rds.reboot_db_instance { region = region, DBInstanceIdentifier = id, ForceFailover = true }
                    atlas.log("%s: %s RebootDBInstance with ForceFailover", id, verbed(ctx, "call", "called"))
                end
                rds.wait_available {
                    region = region,
                    DBInstanceIdentifier = id,
                    timeout = ctx.params.wait_timeout,
                }
                if ctx.dry_run then return end
                local inst = describe(region, id)
                local reachable, seen = probe(database_spec(ctx, ctx.params.primary, inst))
                if reachable ~= true then
                    ctx.fail(
                        "%s is available again but its database %s: %s; promote the replica (action=promote)",
                        id,
                        reachable == false and "does not answer" or "could not be checked",
                        seen
                    )
                end
                atlas.log("%s: available in %s, answers SQL", id, tostring(inst.AvailabilityZone))
            end,
        },
        {
            name = "promote the read replica",
            mutates = true,
            confirm = true, -- asked inside, naming the instance, only when there is something to do
            run = function(ctx)
                if ctx.state.action ~= "promote" then return end
                local region, id = ctx.params.region, replica_id(ctx)
                local replica = describe(region, id)
                if replica and replica.ReadReplicaSourceDBInstanceIdentifier then
                    if not ctx.dry_run then
                        atlas.confirm(
                            string.format(
                                "Promote %s (%s) to a standalone primary? It stops replicating from %s for good.",
                                id,
                                region,
                                replica.ReadReplicaSourceDBInstanceIdentifier
                            )
                        )
                    end
                    rds.promote_read_replica { region = region, DBInstanceIdentifier = id, BackupRetentionPeriod = 7 }
                    atlas.log("%s: %s PromoteReadReplica", id, verbed(ctx, "call", "called"))
                end
                local list = rds.wait_available {
                    region = region,
                    DBInstanceIdentifier = id,
                    timeout = ctx.params.wait_timeout,
                }
                ctx.state.new_primary = id
                if ctx.dry_run then return end
                -- Available is not enough: RDS drops the source when the
                -- promotion is over (moto never does). The database itself is
                -- asked next: it must be out of recovery to hold logical slots.
                local inst = list[1]
                if inst.ReadReplicaSourceDBInstanceIdentifier then
                    atlas.warn(
                        "%s is available but RDS still names %s as its source; the database is checked next",
                        id,
                        inst.ReadReplicaSourceDBInstanceIdentifier
                    )
                end
                atlas.log(
                    "%s: promoted, available at %s:%s",
                    id,
                    inst.Endpoint and inst.Endpoint.Address or "?",
                    tostring(inst.Endpoint and inst.Endpoint.Port or "?")
                )
            end,
        },
        {
            name = "restore into another region",
            mutates = true,
            confirm = true, -- asked inside, naming the instance, only when there is something to do
            run = function(ctx)
                if ctx.state.action ~= "restore" then return end
                local source, target = ctx.params.region, ctx.params.restore_region
                local copy, instance_id = copy_id(ctx), restored_id(ctx)
                local snap, why = rds.available_snapshot { region = source, DBSnapshotIdentifier = ctx.params.snapshot }
                if not snap then ctx.fail("%s", why) end
                if not ctx.dry_run then
                    atlas.confirm(
                        string.format(
                            "Copy snapshot %s from %s to %s and restore it there as the new instance %s (%s)?",
                            ctx.params.snapshot,
                            source,
                            target,
                            instance_id,
                            RESTORED_CLASS
                        )
                    )
                end
                local existing_copy = rds.find_db_snapshot { region = target, DBSnapshotIdentifier = copy }
                if existing_copy then
                    atlas.log("%s: the copy %s exists already (%s)", target, copy, tostring(existing_copy.Status))
                else
                    rds.copy_db_snapshot {
                        region = target,
                        SourceRegion = source,
                        SourceDBSnapshotIdentifier = snap.DBSnapshotArn,
                        TargetDBSnapshotIdentifier = copy,
                        KmsKeyId = ctx.params.kms_key,
                        CopyTags = true,
                    }
                    atlas.log(
                        "%s: %s CopyDBSnapshot %s -> %s",
                        target,
                        verbed(ctx, "call", "called"),
                        snap.DBSnapshotArn,
                        copy
                    )
                end
                rds.wait_snapshot_available {
                    region = target,
                    DBSnapshotIdentifier = copy,
                    timeout = ctx.params.wait_timeout,
                }
                local inst = rds.restore_and_wait {
                    region = target,
                    DBInstanceIdentifier = instance_id,
                    DBSnapshotIdentifier = copy,
                    DBInstanceClass = RESTORED_CLASS,
                    MultiAZ = true,
                    timeout = ctx.params.wait_timeout,
                }
                if ctx.dry_run then return end
                ctx.state.restored = instance_id
                atlas.log(
                    "%s: %s available at %s (%s); its data is as of the snapshot (%s)",
                    target,
                    instance_id,
                    inst.Endpoint and inst.Endpoint.Address or "?",
                    inst.DBInstanceClass,
                    tostring(snap.SnapshotCreateTime)
                )
                -- The subscribers hold newer rows than the snapshot: pointing
                -- them at it would throw those away.
                atlas.warn(
                    "logical replication is not moved to %s: it is older than the subscribers; reconcile the data, "
                        .. "then set up replication from it (db_publication_setup primary=...)",
                    instance_id
                )
            end,
        },
        {
            name = "point logical replication at the new primary",
            mutates = true,
            confirm = true, -- asked inside, naming the instance, only when there is something to do
            run = function(ctx)
                if not follows_promotion(ctx) then return end
                local t = resolve(ctx)
                local primary <close> = sql.connect(t.new_primary.spec)
                if replication.in_recovery(primary) then
                    if ctx.dry_run then
                        atlas.log(
                            "%s is still a standby: once promoted, slots are created on it and the subscriptions on %d secondaries are pointed at it",
                            t.new_primary.label,
                            #t.secondaries
                        )
                        return
                    end
                    ctx.fail(
                        "%s is still in recovery (a standby): it cannot hold logical slots yet",
                        t.new_primary.label
                    )
                end
                local plan = {}
                for _, s in ipairs(t.secondaries) do
                    local db <close> = sql.connect(s.spec)
                    local sub = replication.subscription(db, ctx.params.subscription)
                    if not sub then
                        ctx.fail("%s: no subscription %s to point at the new primary", s.label, ctx.params.subscription)
                    end
                    if not replication.present(sub.slot_name) then
                        ctx.fail("%s: subscription %s has no slot (slot_name = NONE)", s.label, ctx.params.subscription)
                    end
                    plan[#plan + 1] = { label = s.label, spec = s.spec, slot = sub.slot_name }
                end
                local labels = {}
                for i, p in ipairs(plan) do
                    labels[i] = p.label
                end
                if not ctx.dry_run then
                    atlas.confirm(
                        string.format(
                            "Create the publication and logical slots on %s if missing, and point subscription %s on %s at it?",
                            t.new_primary.label,
                            ctx.params.subscription,
                            table.concat(labels, ", ")
                        )
                    )
                end
                -- A promoted copy of the primary has the publication; a former
                -- subscriber gets one.
                local publication = replication.ensure_publication(primary, ctx.params.publication, replication.TABLES)
                atlas.log(
                    "%s: publication %s %s %s",
                    t.new_primary.label,
                    ctx.params.publication,
                    publication.created and verbed(ctx, "create for", "created for") or "covers",
                    table.concat(publication.created and replication.TABLES or publication.tables, ", ")
                )
                local connection = replication.primary_connection(t.new_primary)
                for _, p in ipairs(plan) do
                    if replication.ensure_logical_slot(primary, p.slot) then
                        atlas.log(
                            "%s: %s slot %s for %s",
                            t.new_primary.label,
                            verbed(ctx, "create", "created"),
                            p.slot,
                            p.label
                        )
                    else
                        atlas.log("%s: slot %s exists already", t.new_primary.label, p.slot)
                    end
                    local db <close> = sql.connect(p.spec)
                    replication.point_subscription(db, ctx.params.subscription, connection)
                    atlas.log(
                        "%s: %s subscription %s at %s",
                        p.label,
                        verbed(ctx, "point", "pointed"),
                        ctx.params.subscription,
                        t.new_primary.label
                    )
                end
                if ctx.dry_run then return end
                local secondaries = connect_secondaries(t)
                local ok, err = pcall(wait_streaming, ctx, primary, secondaries)
                close_all(secondaries)
                if not ok then error(err, 0) end
                for _, s in ipairs(secondaries) do
                    atlas.log(
                        "%s: streaming from %s (slot %s, %d bytes behind, lag %s s)",
                        s.label,
                        t.new_primary.label,
                        s.slot.slot_name,
                        s.slot.lag_bytes,
                        replication.present(s.slot.lag_seconds) and string.format("%.1f", s.slot.lag_seconds) or "?"
                    )
                end
            end,
        },
        {
            name = "compare the global tables",
            run = function(ctx)
                if not follows_promotion(ctx) or ctx.dry_run then return end
                local t = resolve(ctx)
                local primary <close> = sql.connect(t.new_primary.spec)
                local secondaries = connect_secondaries(t)
                local differ = {}
                local ok, err = pcall(function()
                    for _, s in ipairs(secondaries) do
                        -- Rows in flight look like a difference: ask again once.
                        if #compare(primary, s, true) > 0 then atlas.sleep(2) end
                        local tables = compare(primary, s)
                        if #tables > 0 then differ[#differ + 1] = { label = s.label, tables = tables } end
                    end
                end)
                close_all(secondaries)
                if not ok then error(err, 0) end
                ctx.state.differ = differ
                if #differ == 0 then
                    atlas.log("every subscriber holds the same global rows as %s", t.new_primary.label)
                end
            end,
        },
        {
            name = "resynchronise subscribers that differ",
            mutates = true,
            confirm = true, -- asked inside, naming the instance, only when there is something to do
            run = function(ctx)
                if not follows_promotion(ctx) or not ctx.state.differ or #ctx.state.differ == 0 then return end
                local t = resolve(ctx)
                local by_label = {}
                for _, s in ipairs(t.secondaries) do
                    by_label[s.label] = s
                end
                local primary <close> = sql.connect(t.new_primary.spec)
                local connection = replication.primary_connection(t.new_primary)
                for _, d in ipairs(ctx.state.differ) do
                    local s = by_label[d.label]
                    atlas.confirm(
                        string.format(
                            "Resynchronise %s from %s? Its subscription %s is dropped, its global tables (%s) are "
                                .. "emptied and copied again (copy_data = true).",
                            d.label,
                            t.new_primary.label,
                            ctx.params.subscription,
                            table.concat(replication.TABLES, ", ")
                        )
                    )
                    local db <close> = sql.connect(s.spec)
                    local sub = replication.subscription(db, ctx.params.subscription)
                    local slot = sub and replication.present(sub.slot_name) and sub.slot_name
                        or replication.slot_name(ctx.params.subscription, d.label)
                    if sub then replication.drop_subscription(db, ctx.params.subscription) end
                    drop_slot_when_released(primary, slot)
                    replication.truncate(db, replication.TABLES)
                    replication.ensure_subscription(db, {
                        name = ctx.params.subscription,
                        publication = ctx.params.publication,
                        connection = connection,
                        slot_name = slot,
                        copy_data = true,
                        create_slot = true,
                    })
                    atlas.log(
                        "%s: subscription %s created again with copy_data (slot %s)",
                        d.label,
                        ctx.params.subscription,
                        slot
                    )
                end
                local secondaries = connect_secondaries(t)
                local ok, err = pcall(function()
                    wait_streaming(ctx, primary, secondaries)
                    for _, s in ipairs(secondaries) do
                        local tables = compare(primary, s)
                        if #tables > 0 then
                            ctx.fail(
                                "%s still differs from %s after the resync: %s",
                                s.label,
                                t.new_primary.label,
                                table.concat(tables, ", ")
                            )
                        end
                    end
                end)
                close_all(secondaries)
                if not ok then error(err, 0) end
                ctx.state.resynced = #ctx.state.differ
                ctx.state.differ = {}
            end,
        },
        {
            -- Recovered: the primary (failed over, promoted or restored) takes
            -- writes, the subscribers follow it and its sequences are ahead.
            name = "sequences on the new primary",
            recovery_point = true,
            mutates = true,
            confirm = true, -- asked inside, naming the instance, only when there is something to do
            run = function(ctx)
                if not follows_promotion(ctx) then return end
                local t = resolve(ctx)
                local primary <close> = sql.connect(t.new_primary.spec)
                if ctx.dry_run and replication.in_recovery(primary) then return end
                local subscribed = {}
                for _, row in ipairs(replication.subscription_status(primary)) do
                    subscribed[#subscribed + 1] = row.subname
                end
                local sequences = replication.owned_sequences(primary, replication.TABLES)
                local behind = {}
                for _, seq in ipairs(sequences) do
                    local used = replication.present(seq.max_in_use) and seq.max_in_use or 0
                    local last = replication.present(seq.last_value) and seq.last_value or 0
                    if last < used then behind[#behind + 1] = { seq = seq, used = used, last = last } end
                end
                if #subscribed == 0 then
                    atlas.log(
                        "%s is a promoted physical replica: sequences came with the WAL (%d checked)",
                        t.new_primary.label,
                        #sequences
                    )
                    if #behind == 0 then return end
                    atlas.warn("%d sequence(s) are behind the ids in use all the same", #behind)
                else
                    atlas.log(
                        "%s was a logical subscriber (%s): logical replication does not carry sequence values",
                        t.new_primary.label,
                        table.concat(subscribed, ", ")
                    )
                end
                if #behind == 0 then
                    atlas.log("every sequence is past the highest id in use")
                    return
                end
                if not ctx.dry_run then
                    atlas.confirm(
                        string.format(
                            "Advance %d sequence(s) on %s past the highest id in use (+%d)?",
                            #behind,
                            t.new_primary.label,
                            ctx.params.sequence_margin
                        )
                    )
                end
                for _, b in ipairs(behind) do
                    local value = b.used + ctx.params.sequence_margin
                    replication.set_sequence(primary, b.seq.sequence_name, value)
                    atlas.log(
                        "%s: %s %s from %d to %d (highest %s.%s in use: %d)",
                        t.new_primary.label,
                        verbed(ctx, "set", "set"),
                        b.seq.sequence_name,
                        b.last,
                        value,
                        b.seq.table_name,
                        b.seq.column_name,
                        b.used
                    )
                end
                -- It takes the writes now: it must not apply the old primary's
                -- changes if that comes back.
                for _, name in ipairs(subscribed) do
                    primary:query { sql = "ALTER SUBSCRIPTION " .. sql.quote_ident(name) .. " DISABLE", mutates = true }
                    atlas.log("%s: %s subscription %s", t.new_primary.label, verbed(ctx, "disable", "disabled"), name)
                end
            end,
        },
        {
            name = "report",
            run = function(ctx)
                local s = ctx.state
                if ctx.dry_run then
                    atlas.log("dry run: decision %s; nothing was changed", tostring(s.action))
                    return
                end
                if s.action == "none" then
                    atlas.log("%s is healthy; nothing was changed", primary_id(ctx))
                elseif s.action == "failover" or s.action == "wait" then
                    atlas.log("%s is available and answers SQL", primary_id(ctx))
                elseif s.action == "promote" then
                    atlas.log(
                        "%s is the new primary; %d subscriber(s) stream from it%s",
                        tostring(s.new_primary),
                        targets and #targets.secondaries or 0,
                        s.resynced and string.format(", %d resynchronised", s.resynced) or ""
                    )
                    atlas.log("point the application's database endpoint at %s", tostring(s.new_primary))
                elseif s.action == "restore" then
                    atlas.log("%s is available in %s", tostring(s.restored), ctx.params.restore_region)
                end
            end,
        },
    },
}
