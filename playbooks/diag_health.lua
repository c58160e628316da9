-- Runbook "Monitoring": the state of all three regions against the
-- runbook's alert thresholds, in one read-only pass.
--
-- Critical: a region's health check fails; an ECS service is unhealthy (no
-- running task, or not ACTIVE); a database is not available.
-- Warning: cross-region latency over 200 ms; database CPU over 80 %; an ECS
-- service at its maximum task count, or below its desired count.
-- Each region is asked at once (aws.parallel), so the pass takes as long as
-- the slowest region, not the sum. Exits 5 when anything is critical.
local atlas = require "atlas"
local aws = require "atlas.aws"
local http = require "atlas.http"
local dns = require "atlas.dns"
local errors = require "atlas.errors"
local env = require "atlas.env"

local function finding(ctx, severity, region, fmt, ...)
    local text = string.format(fmt, ...)
    local list = ctx.state.findings
    list[#list + 1] = { severity = severity, region = region, text = text }
    if severity == "critical" then
        atlas.warn("CRITICAL %s: %s", region, text)
    elseif severity == "warning" then
        atlas.warn("warning %s: %s", region, text)
    else
        atlas.log("%s: %s", region, text)
    end
end

-- One request per region, all at once; an error object stands in for a
-- region whose API did not answer.
local function each_region(regions, build)
    local requests = {}
    for i, region in ipairs(regions) do
        requests[i] = build(region)
        requests[i].region = region
    end
    return aws.parallel(requests)
end

local function metric_average(region, namespace, metric, dimensions, minutes)
    local now = math.floor(atlas.now())
    return {
        service = "cloudwatch",
        action = "GetMetricStatistics",
        params = {
            Namespace = namespace,
            MetricName = metric,
            Dimensions = dimensions,
            StartTime = now - minutes * 60,
            EndTime = now,
            Period = 60,
            Statistics = { "Average" },
        },
    }
end

-- The newest datapoint's average, or nil when there is none.
local function latest_average(response)
    local newest
    for _, point in ipairs(response.Datapoints or {}) do
        if newest == nil or tostring(point.Timestamp) > tostring(newest.Timestamp) then newest = point end
    end
    return newest and newest.Average
end

return atlas.playbook {
    name = "diag_health",
    description = "All regions against the runbook's alert thresholds: ECS, health checks, endpoints, databases, latency",
    lock = false, -- read-only: any number may run at once
    params = {
        regions = {
            type = "list",
            default = table.concat(env.REGIONS, ","),
            choices = env.REGIONS,
            description = "regions to check",
        },
        health_url = env.health_url_param(),
        latency_warn_ms = {
            type = "number",
            default = 200,
            description = "cross-region latency warning (runbook: 200 ms)",
        },
        db_cpu_warn_percent = { type = "number", default = 80, description = "database CPU warning (runbook: 80 %)" },
    },
    steps = {
        {
            name = "ECS services",
            run = function(ctx)
                ctx.state.findings = ctx.state.findings or {}
                local regions = ctx.params.regions
                local answers = each_region(
                    regions,
                    function(region)
                        return {
                            service = "ecs",
                            action = "DescribeServices",
                            params = { cluster = env.cluster(region), services = { env.service(region) } },
                        }
                    end
                )
                for i, region in ipairs(regions) do
                    local answer = answers[i]
                    local s = not errors.is(answer) and answer.services and answer.services[1]
                    if errors.is(answer) then
                        finding(ctx, "critical", region, "ECS API: %s", errors.message(answer))
                    elseif not s then
                        finding(ctx, "critical", region, "service %s missing", env.service(region))
                    elseif s.status ~= "ACTIVE" or (s.runningCount or 0) == 0 then
                        finding(
                            ctx,
                            "critical",
                            region,
                            "ECS service unhealthy: %s, %d/%d running",
                            s.status,
                            s.runningCount or 0,
                            s.desiredCount or 0
                        )
                    elseif s.runningCount >= env.MAX_DESIRED_COUNT then
                        finding(ctx, "warning", region, "ECS service at its maximum task count (%d)", s.runningCount)
                    elseif s.runningCount < s.desiredCount then
                        finding(
                            ctx,
                            "warning",
                            region,
                            "ECS service below desired: %d/%d running",
                            s.runningCount,
                            s.desiredCount
                        )
                    else
                        finding(
                            ctx,
                            "ok",
                            region,
                            "ECS %d/%d running, %d deployment(s)",
                            s.runningCount,
                            s.desiredCount,
                            #(s.deployments or {})
                        )
                    end
                end
            end,
        },
        {
            name = "Route53 health checks",
            run = function(ctx)
                -- Each region's own check, found by what it checks: after a
                -- failover the region's record carries the backup's check.
                local check_of, regions = {}, {}
                for _, region in ipairs(ctx.params.regions) do
                    check_of[region] = dns.health_check_id(region)
                    if check_of[region] then
                        regions[#regions + 1] = region
                    else
                        finding(ctx, "warning", region, "no health check checks %s", dns.regional_name(region))
                    end
                end
                local answers = each_region(
                    regions,
                    function(region)
                        return {
                            service = "route53",
                            action = "GetHealthCheckStatus",
                            params = { HealthCheckId = check_of[region] },
                        }
                    end
                )
                for i, region in ipairs(regions) do
                    local answer = answers[i]
                    if errors.is(answer) then
                        finding(ctx, "critical", region, "health check status: %s", errors.message(answer))
                    else
                        local failing, total = dns.failing_checkers(answer)
                        if total > 0 and failing * 2 >= total then
                            finding(ctx, "critical", region, "health check failing (%d/%d checkers)", failing, total)
                        else
                            finding(ctx, "ok", region, "health check passing (%d/%d checkers fail)", failing, total)
                        end
                    end
                end
            end,
        },
        {
            name = "health endpoints",
            run = function(ctx)
                for _, region in ipairs(ctx.params.regions) do
                    local url = ctx.params.health_url:gsub("{region}", region)
                    local healthy, detail = http.check(url, { timeout = 5 })
                    if healthy then
                        finding(ctx, "ok", region, "%s -> %s", url, tostring(detail))
                    else
                        finding(ctx, "critical", region, "%s -> %s", url, tostring(detail))
                    end
                end
            end,
        },
        {
            name = "databases",
            run = function(ctx)
                local regions = ctx.params.regions
                local instances = each_region(
                    regions,
                    function(region)
                        return {
                            service = "rds",
                            action = "DescribeDBInstances",
                            params = { DBInstanceIdentifier = env.db_instance(region) },
                        }
                    end
                )
                local cpu = each_region(
                    regions,
                    function(region)
                        return metric_average(
                            region,
                            "AWS/RDS",
                            "CPUUtilization",
                            { { Name = "DBInstanceIdentifier", Value = env.db_instance(region) } },
                            10
                        )
                    end
                )
                for i, region in ipairs(regions) do
                    local answer = instances[i]
                    local db = not errors.is(answer) and answer.DBInstances and answer.DBInstances[1]
                    if errors.is(answer) then
                        finding(ctx, "critical", region, "RDS: %s", errors.message(answer))
                    elseif not db or db.DBInstanceStatus ~= "available" then
                        finding(
                            ctx,
                            "critical",
                            region,
                            "database %s is %s",
                            env.db_instance(region),
                            db and db.DBInstanceStatus or "missing"
                        )
                    else
                        finding(ctx, "ok", region, "database %s available", env.db_instance(region))
                    end
                    local average = not errors.is(cpu[i]) and latest_average(cpu[i])
                    if average and average > ctx.params.db_cpu_warn_percent then
                        finding(
                            ctx,
                            "warning",
                            region,
                            "database CPU %.0f %% (over %s %%)",
                            average,
                            ctx.params.db_cpu_warn_percent
                        )
                    end
                end
            end,
        },
        {
            name = "cross-region latency",
            run = function(ctx)
                local regions = ctx.params.regions
                local answers = each_region(
                    regions,
                    function(region)
                        return metric_average(
                            region,
                            env.METRIC_NAMESPACE,
                            "CrossRegionLatency",
                            { { Name = "Region", Value = region } },
                            10
                        )
                    end
                )
                for i, region in ipairs(regions) do
                    local average = not errors.is(answers[i]) and latest_average(answers[i])
                    if not average then
                        finding(ctx, "ok", region, "no CrossRegionLatency data in the last 10 minutes")
                    elseif average > ctx.params.latency_warn_ms then
                        finding(
                            ctx,
                            "warning",
                            region,
                            "cross-region latency %.0f ms (over %s ms)",
                            average,
                            ctx.params.latency_warn_ms
                        )
                    else
                        finding(ctx, "ok", region, "cross-region latency %.0f ms", average)
                    end
                end
            end,
        },
        {
            name = "summary",
            run = function(ctx)
                local critical, warning = {}, {}
                for _, f in ipairs(ctx.state.findings) do
                    if f.severity == "critical" then critical[#critical + 1] = f.region .. ": " .. f.text end
                    if f.severity == "warning" then warning[#warning + 1] = f.region .. ": " .. f.text end
                end
                atlas.log("%d critical, %d warning", #critical, #warning)
                if #critical > 0 then
                    ctx.critical("%d critical finding(s): %s", #critical, table.concat(critical, "; "))
                end
            end,
        },
    },
}
