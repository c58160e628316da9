-- Runbook "Monitoring": the state of all three regions against every alert
-- rule of the runbook, in one read-only pass.
--
-- Critical: a region's health check fails; database replication lag is over
-- 10 s; the ALB's 5xx rate is over 5 %; an ECS service is unhealthy (no
-- running task, or not ACTIVE); a database is not available; a health
-- endpoint does not answer 2xx.
-- Warning: cross-region latency over 200 ms; database CPU over 80 %; an ECS
-- service at its maximum task count (Application Auto Scaling's bound), or
-- below its desired count.
-- Each check asks every region at once (aws.parallel, http.check_many), so
-- a pass takes as long as the slowest region, not the sum: three stalled
-- endpoints cost one timeout. Exits 5 when anything is critical.
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
        requests[i].region = requests[i].region or region
    end
    return aws.parallel(requests)
end

-- GetMetricStatistics over the last `minutes`, one datapoint per `period`.
local function metric_request(namespace, metric, dimensions, minutes, statistic, period)
    -- The window ends just after now: a datapoint put this very second is in it.
    local finish = math.floor(atlas.now()) + 1
    return {
        service = "cloudwatch",
        action = "GetMetricStatistics",
        params = {
            Namespace = namespace,
            MetricName = metric,
            Dimensions = dimensions,
            StartTime = finish - minutes * 60,
            EndTime = finish,
            Period = period or 60,
            Statistics = { statistic or "Average" },
        },
    }
end

-- The newest datapoint's value of `statistic`, or nil when there is none
-- (or the call failed: the caller says so).
local function latest(response, statistic)
    if errors.is(response) then return nil end
    local newest
    for _, point in ipairs(response.Datapoints or {}) do
        if newest == nil or tostring(point.Timestamp) > tostring(newest.Timestamp) then newest = point end
    end
    return newest and newest[statistic or "Average"]
end

-- The sum of every datapoint's Sum, or nil when there is none.
local function total(response)
    if errors.is(response) then return nil end
    local sum
    for _, point in ipairs(response.Datapoints or {}) do
        sum = (sum or 0) + (point.Sum or 0)
    end
    return sum
end

-- The ALB's CloudWatch dimension (app/<name>/<id>) as CloudWatch lists it:
-- the id is AWS's, so it is found, not built.
local function alb_dimension(response, region)
    if errors.is(response) then return nil end
    local prefix = "app/" .. env.alb_name(region) .. "/"
    for _, metric in ipairs(response.Metrics or {}) do
        for _, d in ipairs(metric.Dimensions or {}) do
            if d.Name == "LoadBalancer" and d.Value:sub(1, #prefix) == prefix then return d.Value end
        end
    end
end

local function ecs_finding(ctx, region, answer, max_tasks)
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
    elseif s.runningCount >= max_tasks then
        finding(ctx, "warning", region, "ECS service at its maximum task count (%d of %d)", s.runningCount, max_tasks)
    elseif s.runningCount < s.desiredCount then
        finding(ctx, "warning", region, "ECS service below desired: %d/%d running", s.runningCount, s.desiredCount)
    else
        finding(
            ctx,
            "ok",
            region,
            "ECS %d/%d running (maximum %d), %d deployment(s)",
            s.runningCount,
            s.desiredCount,
            max_tasks,
            #(s.deployments or {})
        )
    end
end

-- The service's maximum task count: Application Auto Scaling's MaxCapacity,
-- or the reference layout's when the target cannot be read.
local function max_tasks_of(ctx, region, answer)
    local target = not errors.is(answer) and answer.ScalableTargets and answer.ScalableTargets[1]
    if target then return target.MaxCapacity end
    finding(
        ctx,
        "warning",
        region,
        "no auto-scaling target for %s (%s); assuming a maximum of %d",
        env.service(region),
        errors.is(answer) and errors.message(answer) or "none registered",
        env.MAX_DESIRED_COUNT
    )
    return env.MAX_DESIRED_COUNT
end

return atlas.playbook {
    name = "diag_health",
    description = "All regions against every alert rule of the runbook: health checks, replication lag, ALB 5xx, ECS, endpoints, databases, latency",
    lock = false, -- read-only: any number may run at once
    params = {
        regions = env.regions_param "regions to check",
        health_url = env.health_url_param(),
        endpoint_timeout = env.endpoint_timeout_param "seconds each health endpoint may take (all are asked at once)",
        replication_lag_critical_s = {
            type = "number",
            default = env.REPLICATION_LAG_CRITICAL_S,
            min = 0,
            description = "replication lag that is critical (runbook: 10 s)",
        },
        alb_5xx_critical_percent = {
            type = "number",
            default = env.ALB_5XX_CRITICAL_PERCENT,
            min = 0,
            max = 100,
            description = "ALB 5xx share of requests that is critical (runbook: 5 %)",
        },
        latency_warn_ms = {
            type = "number",
            default = env.LATENCY_WARNING_MS,
            description = "cross-region latency warning (runbook: 200 ms)",
        },
        db_cpu_warn_percent = {
            type = "number",
            default = env.DB_CPU_WARNING_PERCENT,
            description = "database CPU warning (runbook: 80 %)",
        },
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
                local targets = each_region(
                    regions,
                    function(region)
                        return {
                            service = "application-autoscaling",
                            action = "DescribeScalableTargets",
                            params = {
                                ServiceNamespace = "ecs",
                                ResourceIds = { env.scalable_target(region) },
                                ScalableDimension = "ecs:service:DesiredCount",
                            },
                        }
                    end
                )
                for i, region in ipairs(regions) do
                    ecs_finding(ctx, region, answers[i], max_tasks_of(ctx, region, targets[i]))
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
                            region = "us-east-1",
                            params = { HealthCheckId = check_of[region] },
                        }
                    end
                )
                for i, region in ipairs(regions) do
                    local answer = answers[i]
                    if errors.is(answer) then
                        finding(ctx, "critical", region, "health check status: %s", errors.message(answer))
                    else
                        local failing, total_checkers = dns.failing_checkers(answer)
                        if total_checkers > 0 and failing * 2 >= total_checkers then
                            finding(
                                ctx,
                                "critical",
                                region,
                                "health check failing (%d/%d checkers)",
                                failing,
                                total_checkers
                            )
                        else
                            finding(
                                ctx,
                                "ok",
                                region,
                                "health check passing (%d/%d checkers fail)",
                                failing,
                                total_checkers
                            )
                        end
                    end
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
                    local severity = probes[i].healthy and "ok" or "critical"
                    finding(ctx, severity, region, "%s -> %s", urls[i], tostring(probes[i].detail))
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
                        return metric_request(
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
                    local average = latest(cpu[i])
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
            name = "replication lag",
            run = function(ctx)
                -- Lag is measured on the subscribers; the primary has none.
                local regions = {}
                for _, region in ipairs(ctx.params.regions) do
                    if region ~= env.PRIMARY_REGION then regions[#regions + 1] = region end
                end
                local answers = each_region(
                    regions,
                    function(region)
                        return metric_request(
                            env.METRIC_NAMESPACE,
                            "ReplicationLag",
                            { { Name = "Region", Value = region } },
                            5,
                            "Maximum"
                        )
                    end
                )
                local limit = ctx.params.replication_lag_critical_s
                for i, region in ipairs(regions) do
                    local lag = latest(answers[i], "Maximum")
                    if errors.is(answers[i]) then
                        finding(ctx, "critical", region, "replication lag unknown: %s", errors.message(answers[i]))
                    elseif not lag then
                        finding(ctx, "warning", region, "no ReplicationLag data in the last 5 minutes")
                    elseif lag > limit then
                        finding(ctx, "critical", region, "replication lag %.1f s (over %s s)", lag, limit)
                    else
                        finding(ctx, "ok", region, "replication lag %.1f s", lag)
                    end
                end
            end,
        },
        {
            name = "ALB 5xx rate",
            run = function(ctx)
                local regions = ctx.params.regions
                local listed = each_region(
                    regions,
                    function()
                        return {
                            service = "cloudwatch",
                            action = "ListMetrics",
                            params = { Namespace = "AWS/ApplicationELB", MetricName = "RequestCount" },
                        }
                    end
                )
                local found, requests = {}, {}
                for i, region in ipairs(regions) do
                    local dimension = alb_dimension(listed[i], region)
                    if errors.is(listed[i]) then
                        finding(ctx, "critical", region, "ALB metrics: %s", errors.message(listed[i]))
                    elseif not dimension then
                        finding(ctx, "warning", region, "no AWS/ApplicationELB metrics for %s", env.alb_name(region))
                    else
                        local dims = { { Name = "LoadBalancer", Value = dimension } }
                        found[#found + 1] = region
                        for _, metric in ipairs { "RequestCount", "HTTPCode_ELB_5XX_Count", "HTTPCode_Target_5XX_Count" } do
                            local req = metric_request("AWS/ApplicationELB", metric, dims, 5, "Sum")
                            req.region = region
                            requests[#requests + 1] = req
                        end
                    end
                end
                local sums = aws.parallel(requests)
                local limit = ctx.params.alb_5xx_critical_percent
                for i, region in ipairs(found) do
                    local served, elb, target = total(sums[3 * i - 2]), total(sums[3 * i - 1]), total(sums[3 * i])
                    if not served or served == 0 then
                        finding(ctx, "ok", region, "no ALB requests in the last 5 minutes")
                    else
                        local errors_5xx = (elb or 0) + (target or 0)
                        local percent = 100 * errors_5xx / served
                        local severity = percent > limit and "critical" or "ok"
                        finding(
                            ctx,
                            severity,
                            region,
                            "ALB 5xx %.1f %% of %d requests%s",
                            percent,
                            math.floor(served),
                            severity == "critical" and string.format(" (over %s %%)", limit) or ""
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
                        return metric_request(
                            env.METRIC_NAMESPACE,
                            "CrossRegionLatency",
                            { { Name = "Region", Value = region } },
                            10
                        )
                    end
                )
                for i, region in ipairs(regions) do
                    local average = latest(answers[i])
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
