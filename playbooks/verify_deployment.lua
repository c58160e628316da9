-- Runbook "Initial deployment verification": the deployed environment is
-- checked, read-only, against reference-environment.md: the ECS clusters
-- and services, the task-definition families, the RDS instances (engine,
-- class, Multi-AZ), the replica and snapshots, the log groups, the hosted
-- zone with its regional and geo-routed records, and the health checks.
-- It also checks that the environment works, not only that it exists: each
-- service runs the tasks it wants, each database is available, each health
-- endpoint answers 2xx (all asked at once).
-- Every difference is listed; any difference fails the run (exit 1).
local atlas = require "atlas"
local aws = require "atlas.aws"
local http = require "atlas.http"
local ecs = require "atlas.ecs"
local rds = require "atlas.rds"
local dns = require "atlas.dns"
local route53 = require "atlas.route53"
local errors = require "atlas.errors"
local env = require "atlas.env"

local CONTINENT = { ["eu-west-1"] = "EU", ["us-east-1"] = "NA", ["ap-southeast-1"] = "AS" }

local function check(ctx, ok, fmt, ...)
    local text = string.format(fmt, ...)
    if ok then
        atlas.debug("ok: %s", text)
        ctx.state.passed = (ctx.state.passed or 0) + 1
    else
        atlas.warn("MISMATCH %s", text)
        local list = ctx.state.mismatches
        list[#list + 1] = text
    end
    return ok
end

-- Runs fn; an AWS "not found" answer becomes a mismatch instead of a failed step.
local function guarded(ctx, what, fn)
    local ok, err = pcall(fn)
    if not ok then
        if not errors.is(err, "aws") then error(err, 0) end
        check(ctx, false, "%s: %s", what, errors.message(err))
    end
end

return atlas.playbook {
    name = "verify_deployment",
    description = "Check the deployed environment against the reference layout (ECS, RDS, logs, DNS, health checks)",
    lock = false, -- read-only: any number may run at once
    params = {
        regions = env.regions_param "regions to verify",
        health_url = env.health_url_param(),
        endpoint_timeout = env.endpoint_timeout_param "seconds each health endpoint may take (all are asked at once)",
    },
    steps = {
        {
            name = "ECS clusters, services and task definitions",
            run = function(ctx)
                ctx.state.mismatches = ctx.state.mismatches or {}
                for _, region in ipairs(ctx.params.regions) do
                    guarded(ctx, region .. " ECS service", function()
                        local resp = ecs.describe_services {
                            region = region,
                            cluster = env.cluster(region),
                            services = { env.service(region) },
                        }
                        local s = resp.services[1]
                        if check(ctx, s ~= nil, "%s: service %s exists", region, env.service(region)) then
                            check(ctx, s.status == "ACTIVE", "%s: service is ACTIVE (is %s)", region, s.status)
                            check(
                                ctx,
                                s.runningCount > 0 and s.runningCount == s.desiredCount,
                                "%s: tasks running as desired (%d of %d running)",
                                region,
                                s.runningCount,
                                s.desiredCount
                            )
                            check(
                                ctx,
                                s.desiredCount >= env.NORMAL_DESIRED_COUNT and s.desiredCount <= env.MAX_DESIRED_COUNT,
                                "%s: desired count %d within %d..%d",
                                region,
                                s.desiredCount,
                                env.NORMAL_DESIRED_COUNT,
                                env.MAX_DESIRED_COUNT
                            )
                            local family = tostring(s.taskDefinition):match("task%-definition/([^:]+):")
                            check(
                                ctx,
                                family == env.task_family(region),
                                "%s: service runs family %s (runs %s)",
                                region,
                                env.task_family(region),
                                tostring(family)
                            )
                            ctx.state["running_" .. region] = s.taskDefinition
                        end
                    end)
                    guarded(ctx, region .. " task definitions", function()
                        -- The newest is the highest revision, found by number: not every
                        -- implementation honours sort=DESC (moto does not).
                        local arns =
                            ecs.list_task_definitions { region = region, familyPrefix = env.task_family(region) }
                        local newest, newest_revision = nil, -1
                        for _, arn in ipairs(arns) do
                            local revision = tonumber(arn:match(":(%d+)$"))
                            if revision and revision > newest_revision then
                                newest, newest_revision = arn, revision
                            end
                        end
                        check(ctx, newest ~= nil, "%s: family %s has revisions", region, env.task_family(region))
                        local running = ctx.state["running_" .. region]
                        if newest and running then
                            check(
                                ctx,
                                newest == running,
                                "%s: the service runs the newest revision (%s; newest %s)",
                                region,
                                running,
                                newest
                            )
                        end
                    end)
                end
            end,
        },
        {
            name = "RDS instances, replica and snapshots",
            run = function(ctx)
                for _, region in ipairs(ctx.params.regions) do
                    guarded(ctx, region .. " RDS", function()
                        local db = rds.describe_db_instances {
                            region = region,
                            DBInstanceIdentifier = env.db_instance(region),
                        }[1]
                        if check(ctx, db ~= nil, "%s: instance %s exists", region, env.db_instance(region)) then
                            check(
                                ctx,
                                db.DBInstanceStatus == "available",
                                "%s: database available (is %s)",
                                region,
                                tostring(db.DBInstanceStatus)
                            )
                            check(
                                ctx,
                                db.Engine == "postgres",
                                "%s: engine postgres (is %s)",
                                region,
                                tostring(db.Engine)
                            )
                            check(
                                ctx,
                                tostring(db.EngineVersion):match("^15") ~= nil,
                                "%s: PostgreSQL 15 (is %s)",
                                region,
                                tostring(db.EngineVersion)
                            )
                            check(
                                ctx,
                                db.DBInstanceClass == "db.r6g.xlarge",
                                "%s: class db.r6g.xlarge (is %s)",
                                region,
                                tostring(db.DBInstanceClass)
                            )
                            check(ctx, db.MultiAZ == true, "%s: Multi-AZ", region)
                            check(
                                ctx,
                                db.DBName == env.DB_NAME,
                                "%s: database %s (is %s)",
                                region,
                                env.DB_NAME,
                                tostring(db.DBName)
                            )
                            check(
                                ctx,
                                db.MasterUsername == env.DB_USER,
                                "%s: master user %s (is %s)",
                                region,
                                env.DB_USER,
                                tostring(db.MasterUsername)
                            )
                        end
                    end)
                end
                local primary = env.PRIMARY_REGION
                guarded(ctx, "read replica", function()
                    local replica =
                        rds.describe_db_instances { region = primary, DBInstanceIdentifier = env.REPLICA }[1]
                    check(ctx, replica ~= nil, "%s: read replica %s exists", primary, env.REPLICA)
                end)
                guarded(ctx, "snapshots", function()
                    local snapshots =
                        rds.describe_db_snapshots { region = primary, DBInstanceIdentifier = env.db_instance(primary) }
                    local found = {}
                    for _, snap in ipairs(snapshots) do
                        found[snap.DBSnapshotIdentifier] = true
                    end
                    for _, name in ipairs(env.SNAPSHOTS) do
                        check(ctx, found[name], "%s: snapshot %s exists", primary, name)
                    end
                end)
            end,
        },
        {
            name = "log groups",
            run = function(ctx)
                for _, region in ipairs(ctx.params.regions) do
                    guarded(ctx, region .. " logs", function()
                        local resp = aws.call {
                            service = "logs",
                            action = "DescribeLogGroups",
                            region = region,
                            params = { logGroupNamePrefix = env.log_group(region) },
                        }
                        local found = false
                        for _, g in ipairs(resp.logGroups or {}) do
                            if g.logGroupName == env.log_group(region) then found = true end
                        end
                        check(ctx, found, "%s: log group %s exists", region, env.log_group(region))
                    end)
                end
            end,
        },
        {
            name = "DNS records and health checks",
            run = function(ctx)
                local zone_id = dns.zone_id(env.ZONE)
                local all = route53.list_resource_record_sets { HostedZoneId = zone_id }
                local regional, geo = {}, {}
                for _, r in ipairs(all) do
                    local name = r.Name:gsub("%.$", "")
                    if r.SetIdentifier and name == env.API_NAME then
                        geo[r.SetIdentifier] = r
                    elseif r.Type == "CNAME" then
                        regional[name] = r
                    end
                end
                for _, region in ipairs(ctx.params.regions) do
                    local r = regional[env.regional_name(region)]
                    if check(ctx, r ~= nil, "%s: CNAME %s exists", region, env.regional_name(region)) then
                        check(
                            ctx,
                            dns.record_value(r) == env.alb_dns_name(region),
                            "%s: %s -> %s (is %s)",
                            region,
                            env.regional_name(region),
                            env.alb_dns_name(region),
                            tostring(dns.record_value(r))
                        )
                        check(ctx, r.TTL == 60, "%s: TTL 60 (is %s)", region, tostring(r.TTL))
                    end
                    local g = geo[region]
                    if check(ctx, g ~= nil, "%s: geo record of %s exists", region, env.API_NAME) then
                        check(
                            ctx,
                            dns.record_value(g) == env.regional_name(region),
                            "%s: geo record -> %s (is %s)",
                            region,
                            env.regional_name(region),
                            tostring(dns.record_value(g))
                        )
                        check(
                            ctx,
                            g.GeoLocation and g.GeoLocation.ContinentCode == CONTINENT[region],
                            "%s: geo record serves continent %s",
                            region,
                            CONTINENT[region]
                        )
                        if check(ctx, g.HealthCheckId ~= nil, "%s: geo record has a health check", region) then
                            guarded(ctx, region .. " health check", function()
                                local hc = aws.call {
                                    service = "route53",
                                    action = "GetHealthCheck",
                                    region = "us-east-1",
                                    params = { HealthCheckId = g.HealthCheckId },
                                }
                                local c = hc.HealthCheck.HealthCheckConfig
                                check(
                                    ctx,
                                    c.Type == "HTTPS"
                                        and c.FullyQualifiedDomainName == env.regional_name(region)
                                        and c.ResourcePath == "/actuator/health",
                                    "%s: health check HTTPS %s/actuator/health (is %s %s%s)",
                                    region,
                                    env.regional_name(region),
                                    tostring(c.Type),
                                    tostring(c.FullyQualifiedDomainName),
                                    tostring(c.ResourcePath)
                                )
                                check(
                                    ctx,
                                    c.RequestInterval == 30 and c.FailureThreshold == 3,
                                    "%s: health check interval 30 s, threshold 3 (is %s s, %s)",
                                    region,
                                    tostring(c.RequestInterval),
                                    tostring(c.FailureThreshold)
                                )
                            end)
                        end
                    end
                end
                local default = geo.default
                if check(ctx, default ~= nil, "the default (*) record of %s exists", env.API_NAME) then
                    check(
                        ctx,
                        dns.record_value(default) == env.regional_name(env.DEFAULT_BACKUP_REGION),
                        "default record -> %s (is %s)",
                        env.regional_name(env.DEFAULT_BACKUP_REGION),
                        tostring(dns.record_value(default))
                    )
                end
            end,
        },
        {
            name = "health endpoints",
            run = function(ctx)
                local urls = {}
                for i, region in ipairs(ctx.params.regions) do
                    urls[i] = (ctx.params.health_url:gsub("{region}", region))
                end
                local probes = http.check_many(urls, { timeout = ctx.params.endpoint_timeout })
                for i, region in ipairs(ctx.params.regions) do
                    check(
                        ctx,
                        probes[i].healthy,
                        "%s: %s answers 2xx (%s)",
                        region,
                        urls[i],
                        tostring(probes[i].detail)
                    )
                end
            end,
        },
        {
            name = "summary",
            run = function(ctx)
                local mismatches = ctx.state.mismatches
                atlas.log("%d checks passed, %d mismatches", ctx.state.passed or 0, #mismatches)
                if #mismatches > 0 then
                    ctx.fail(
                        "%d mismatch(es) with the reference environment: %s",
                        #mismatches,
                        table.concat(mismatches, "; ")
                    )
                end
            end,
        },
    },
}
