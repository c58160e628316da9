-- Disaster-recovery readiness, for cron every 30 minutes: could a failover
-- of each region succeed now? For each region F and its backup B it checks,
-- read-only:
--   - B's service: ACTIVE, running what it wants, its health check and
--     endpoint healthy; and its auto-scaling headroom: Application Auto
--     Scaling's MaxCapacity must allow the count a failover scales B to, or
--     the scaler takes the tasks away again;
--   - the records a failover edits (api.atlas-crm.com's records that point
--     at F) and their TTL, and B's health check, which they get;
--   - the automatic-failover chain (atlas.failover_chain);
--   - B's replication lag (its copy of the global tables);
--   - the age of the primary database's newest snapshot against `rpo`.
-- It also says what the runbook's design gets wrong (the orchestrator in
-- the region it protects, the alarm and its rule in different regions, a
-- region failover that leaves the primary database behind).
-- A failover that would fail exits 5 and says why; warnings exit 0.
local atlas = require "atlas"
local aws = require "atlas.aws"
local http = require "atlas.http"
local dns = require "atlas.dns"
local rds = require "atlas.rds"
local chain = require "atlas.failover_chain"
local protocol = require "atlas.aws.protocol"
local errors = require "atlas.errors"
local env = require "atlas.env"

local function human(seconds)
    if seconds >= 86400 then return string.format("%.1f d", seconds / 86400) end
    if seconds >= 3600 then return string.format("%.1f h", seconds / 3600) end
    return string.format("%d min", math.floor(seconds / 60))
end

-- A blocker makes the failover of `region` fail; a warning does not.
local function blocker(ctx, region, fmt, ...)
    local text = string.format(fmt, ...)
    local list = ctx.state.blockers
    list[#list + 1] = { region = region, text = text }
    atlas.warn("BLOCKER %s: %s", region, text)
end

local function warning(ctx, region, fmt, ...)
    local text = string.format(fmt, ...)
    local list = ctx.state.warnings
    list[#list + 1] = { region = region, text = text }
    atlas.warn("warning %s: %s", region, text)
end

local function pairs_of(ctx)
    local out = {}
    for i, region in ipairs(ctx.params.regions) do
        out[i] = { failed = region, backup = env.backup_for(region, ctx.params.backup_region) }
    end
    return out
end

local function check_backup(ctx, pair, service, target, probe)
    local b, f = pair.backup, pair.failed
    local s = not errors.is(service) and service.services and service.services[1]
    if errors.is(service) then
        blocker(ctx, f, "backup %s: ECS: %s", b, errors.message(service))
    elseif not s or s.status ~= "ACTIVE" or (s.runningCount or 0) == 0 or s.runningCount < s.desiredCount then
        blocker(
            ctx,
            f,
            "backup %s: service %s is %s, %d/%d running",
            b,
            env.service(b),
            s and s.status or "missing",
            s and s.runningCount or 0,
            s and s.desiredCount or 0
        )
    else
        atlas.log("%s: backup %s runs %d/%d tasks", f, b, s.runningCount, s.desiredCount)
    end
    local t = not errors.is(target) and target.ScalableTargets and target.ScalableTargets[1]
    if errors.is(target) then
        blocker(ctx, f, "backup %s: auto-scaling target unreadable: %s", b, errors.message(target))
    elseif not t then
        warning(ctx, f, "backup %s: no auto-scaling target for %s: nothing scales it, nothing caps it", b, env.service(b))
    elseif t.MaxCapacity < ctx.params.failover_count then
        blocker(
            ctx,
            f,
            "backup %s: auto-scaling maximum %d is below the failover's %d tasks: the scaler would take them away again",
            b,
            t.MaxCapacity,
            ctx.params.failover_count
        )
    else
        atlas.log(
            "%s: backup %s may scale to %d (failover wants %d)",
            f,
            b,
            t.MaxCapacity,
            ctx.params.failover_count
        )
    end
    if not probe.healthy then
        blocker(ctx, f, "backup %s: health endpoint -> %s", b, tostring(probe.detail))
    end
end

return atlas.playbook {
    name = "dr_readiness",
    description = "Could a failover of each region succeed now? Backup capacity and auto-scaling headroom, DNS records, health checks, the failover chain, replication lag, snapshot age against the RPO",
    lock = false, -- read-only
    params = {
        regions = env.regions_param "regions whose failover to check",
        backup_region = {
            type = "region",
            default = env.DEFAULT_BACKUP_REGION,
            description = "the preferred backup region (a region's own failover goes to the next one)",
        },
        failover_count = {
            type = "integer",
            default = env.MAX_DESIRED_COUNT,
            min = 1,
            description = "the task count a failover scales the backup to",
        },
        rpo = {
            type = "duration",
            default = "24h",
            min = 60,
            description = "the largest snapshot age accepted (the recovery point objective)",
        },
        health_url = env.health_url_param(),
        endpoint_timeout = env.endpoint_timeout_param "seconds per probe",
        ttl_max = {
            type = "integer",
            default = 60,
            min = 0,
            description = "the largest TTL of a record a failover edits before it is a warning",
        },
    },
    steps = {
        {
            name = "backup regions",
            run = function(ctx)
                ctx.state.blockers, ctx.state.warnings = {}, {}
                local pairs_list = pairs_of(ctx)
                local services, targets, urls = {}, {}, {}
                for i, pair in ipairs(pairs_list) do
                    local b = pair.backup
                    services[i] = {
                        service = "ecs",
                        action = "DescribeServices",
                        region = b,
                        params = { cluster = env.cluster(b), services = { env.service(b) } },
                    }
                    targets[i] = {
                        service = "application-autoscaling",
                        action = "DescribeScalableTargets",
                        region = b,
                        params = {
                            ServiceNamespace = "ecs",
                            ResourceIds = { env.scalable_target(b) },
                            ScalableDimension = "ecs:service:DesiredCount",
                        },
                    }
                    urls[i] = (ctx.params.health_url:gsub("{region}", b))
                end
                local service_answers = aws.parallel(services)
                local target_answers = aws.parallel(targets)
                local probes = http.check_many(urls, { timeout = ctx.params.endpoint_timeout })
                for i, pair in ipairs(pairs_list) do
                    check_backup(ctx, pair, service_answers[i], target_answers[i], probes[i])
                end
            end,
        },
        {
            name = "DNS records and health checks",
            run = function(ctx)
                local _, records = dns.records {}
                for _, pair in ipairs(pairs_of(ctx)) do
                    local f, b = pair.failed, pair.backup
                    local target = dns.regional_name(f)
                    local edited = 0
                    for _, r in ipairs(records) do
                        if dns.record_value(r) == target then
                            edited = edited + 1
                            if (r.TTL or 0) > ctx.params.ttl_max then
                                warning(
                                    ctx,
                                    f,
                                    "record %s of %s has TTL %d s: clients keep resolving %s for that long after a failover",
                                    tostring(r.SetIdentifier),
                                    env.API_NAME,
                                    r.TTL,
                                    f
                                )
                            end
                            if not r.HealthCheckId then
                                warning(ctx, f, "record %s has no health check", tostring(r.SetIdentifier))
                            end
                        end
                    end
                    if edited == 0 then
                        warning(ctx, f, "no record of %s points at %s: already failed over?", env.API_NAME, target)
                    else
                        atlas.log("%s: a failover edits %d record(s) of %s", f, edited, env.API_NAME)
                    end
                    local backup_check = dns.health_check_id(b)
                    if not backup_check then
                        blocker(
                            ctx,
                            f,
                            "no health check checks %s: the failed-over records would have none",
                            dns.regional_name(b)
                        )
                    else
                        local status = aws.call {
                            service = "route53",
                            action = "GetHealthCheckStatus",
                            region = "us-east-1",
                            params = { HealthCheckId = backup_check },
                        }
                        local failing, total = dns.failing_checkers(status)
                        if total > 0 and failing * 2 >= total then
                            blocker(ctx, f, "backup %s's health check fails (%d/%d checkers)", b, failing, total)
                        end
                    end
                end
            end,
        },
        {
            name = "automatic-failover chain",
            run = function(ctx)
                for _, region in ipairs(ctx.params.regions) do
                    local links = chain.walk {
                        region = region,
                        health_url = ctx.params.health_url,
                        endpoint_timeout = ctx.params.endpoint_timeout,
                    }
                    local first
                    for _, l in ipairs(links) do
                        if not l.ok and not first then first = l end
                    end
                    if first then
                        warning(
                            ctx,
                            region,
                            "automatic failover would not start (%s: %s); dr_region_outage still works by hand",
                            first.link,
                            first.text
                        )
                    else
                        atlas.log("%s: every link of the automatic-failover chain holds", region)
                    end
                end
            end,
        },
        {
            name = "replication lag",
            run = function(ctx)
                local finish = math.floor(atlas.now()) + 1
                for _, pair in ipairs(pairs_of(ctx)) do
                    local b = pair.backup
                    if b ~= env.PRIMARY_REGION then
                        local answer = aws.call {
                            service = "cloudwatch",
                            action = "GetMetricStatistics",
                            region = b,
                            params = {
                                Namespace = env.METRIC_NAMESPACE,
                                MetricName = "ReplicationLag",
                                Dimensions = { { Name = "Region", Value = b } },
                                StartTime = finish - 300,
                                EndTime = finish,
                                Period = 60,
                                Statistics = { "Maximum" },
                            },
                        }
                        local newest
                        for _, p in ipairs(answer.Datapoints or {}) do
                            if not newest or tostring(p.Timestamp) > tostring(newest.Timestamp) then newest = p end
                        end
                        if not newest then
                            warning(ctx, pair.failed, "backup %s: no ReplicationLag data in the last 5 minutes", b)
                        elseif newest.Maximum > env.REPLICATION_LAG_CRITICAL_S then
                            blocker(
                                ctx,
                                pair.failed,
                                "backup %s is %.1f s behind the primary (over %d s): its global tables are stale",
                                b,
                                newest.Maximum,
                                env.REPLICATION_LAG_CRITICAL_S
                            )
                        else
                            atlas.log("%s: backup %s replication lag %.1f s", pair.failed, b, newest.Maximum)
                        end
                    end
                end
            end,
        },
        {
            name = "snapshots against the RPO",
            run = function(ctx)
                local primary = env.PRIMARY_REGION
                local rpo = ctx.params.rpo
                local newest, newest_time
                for _, snap in ipairs(rds.describe_db_snapshots {
                    region = primary,
                    DBInstanceIdentifier = env.db_instance(primary),
                }) do
                    local created = protocol.parse_time(snap.SnapshotCreateTime)
                    if snap.Status == "available" and created and (not newest_time or created > newest_time) then
                        newest, newest_time = snap, created
                    end
                end
                if not newest then
                    return blocker(ctx, primary, "no available snapshot of %s", env.db_instance(primary))
                end
                local age = atlas.now() - newest_time
                ctx.state.snapshot_age = age
                if age > rpo then
                    blocker(
                        ctx,
                        primary,
                        "the newest snapshot, %s, is %s old: over the RPO of %s",
                        newest.DBSnapshotIdentifier,
                        human(age),
                        human(rpo)
                    )
                else
                    atlas.log("newest snapshot %s is %s old (RPO %s)", newest.DBSnapshotIdentifier, human(age), human(rpo))
                end
            end,
        },
        {
            name = "the runbook's design",
            run = function(ctx)
                for _, region in ipairs(ctx.params.regions) do
                    if region == env.FAILOVER_REGION then
                        warning(
                            ctx,
                            region,
                            "design: the failover orchestrator %s, its trigger and its logs live in %s, the region it must fail over: an outage of %s takes them down with it",
                            env.FAILOVER_LAMBDA,
                            region,
                            region
                        )
                    end
                    if region == env.PRIMARY_REGION then
                        warning(
                            ctx,
                            region,
                            "design: a region failover moves traffic, not the primary database %s: writes still go to %s (see dr_database_failure)",
                            env.db_instance(region),
                            region
                        )
                    end
                end
                if env.HEALTH_ALARM_REGION ~= env.FAILOVER_REGION then
                    warning(
                        ctx,
                        env.FAILOVER_REGION,
                        "design: the health alarms live in %s (Route53 metrics exist only there), the trigger rule in %s: the event does not cross regions by itself",
                        env.HEALTH_ALARM_REGION,
                        env.FAILOVER_REGION
                    )
                end
            end,
        },
        {
            name = "verdict",
            run = function(ctx)
                local blocked = {}
                for _, b in ipairs(ctx.state.blockers) do
                    blocked[#blocked + 1] = b.region .. ": " .. b.text
                end
                for _, region in ipairs(ctx.params.regions) do
                    local mine = 0
                    for _, b in ipairs(ctx.state.blockers) do
                        if b.region == region then mine = mine + 1 end
                    end
                    atlas.log(
                        "%s -> %s: %s",
                        region,
                        env.backup_for(region, ctx.params.backup_region),
                        mine == 0 and "a failover could succeed now" or (mine .. " blocker(s)")
                    )
                end
                atlas.log("%d blocker(s), %d warning(s)", #ctx.state.blockers, #ctx.state.warnings)
                if #blocked > 0 then
                    ctx.critical("a failover would fail: %s", table.concat(blocked, "; "))
                end
            end,
        },
    },
}
