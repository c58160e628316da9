-- CloudWatch in the mock world: metrics and the runbook's alarms.
--
-- A metric's datapoints come from what PutMetricData stored, else from a
-- generator that reads the world (latency per region, replication lag, task
-- counts, 5xx while an endpoint is down, health-check status). Alarms are
-- evaluated from the same world state when they are described.
local util = require "atlas.mock.util"
local env = require "atlas.env"

local M = {}

local NAMESPACE = env.METRIC_NAMESPACE
local MAX_DATAPOINTS = 1440
local LATENCY_BASE = { ["eu-west-1"] = 38, ["us-east-1"] = 72, ["ap-southeast-1"] = 164 }

local function state(w, region)
    w.cloudwatch = w.cloudwatch or {}
    local s = w.cloudwatch[region]
    if not s then
        s = { data = {}, alarm_state = {}, alarm_changes = {} }
        w.cloudwatch[region] = s
    end
    return s
end

local function dims_key(dimensions)
    local parts = {}
    for _, d in ipairs(dimensions or {}) do
        parts[#parts + 1] = tostring(d.Name) .. "=" .. tostring(d.Value)
    end
    table.sort(parts)
    return table.concat(parts, ",")
end

local function metric_key(namespace, name, dimensions) return namespace .. "|" .. name .. "|" .. dims_key(dimensions) end

local function dims_table(dimensions)
    local out = {}
    for _, d in ipairs(dimensions or {}) do
        out[d.Name] = d.Value
    end
    return out
end

-- A small deterministic wiggle so generated series are not flat lines.
local function wiggle(t, amplitude)
    local minute = math.floor(t / 60)
    return amplitude * (((minute * 37) % 11) / 10 - 0.5)
end

local function alb_dimension(region)
    return "app/" .. env.alb_name(region) .. "/" .. util.hex_digits(#region * 43, 16)
end
M.alb_dimension = alb_dimension

-- Generators: (w, region, dims, t) -> value, unit | nil when there is no data.
local generators = {}

generators[NAMESPACE .. "|CrossRegionLatency"] = function(w, region, d, t)
    local base = LATENCY_BASE[d.Region]
    if not base or d.Region ~= region then return nil end
    return base + wiggle(t, 10), "Milliseconds"
end

generators[NAMESPACE .. "|ReplicationLag"] = function(w, region, d, t)
    if d.Region ~= region or region == "eu-west-1" or not LATENCY_BASE[region] then return nil end
    return w:replication_lag_of(region), "Seconds"
end

generators["AWS/RDS|CPUUtilization"] = function(w, region, d, t)
    local inst = require("atlas.mock.rds").instance(w, region, d.DBInstanceIdentifier or "")
    if not inst or inst.v.DBInstanceStatus == "failed" then return nil end
    return 34 + wiggle(t, 8), "Percent"
end

generators["AWS/RDS|ReplicaLag"] = function(w, region, d, t)
    local inst = require("atlas.mock.rds").instance(w, region, d.DBInstanceIdentifier or "")
    if not inst or not inst.v.ReadReplicaSourceDBInstanceIdentifier then return nil end
    return 0.2 + math.abs(wiggle(t, 0.2)), "Seconds"
end

local function ecs_service_dims(region, d)
    local n = require("atlas.mock.ecs").names(region)
    return d.ClusterName == n.cluster and d.ServiceName == n.service
end

generators["AWS/ECS|CPUUtilization"] = function(w, region, d, t)
    if not ecs_service_dims(region, d) or require("atlas.mock.ecs").running_count(w, region) == 0 then return nil end
    return 41 + wiggle(t, 12), "Percent"
end

generators["ECS/ContainerInsights|RunningTaskCount"] = function(w, region, d, t)
    if not ecs_service_dims(region, d) then return nil end
    return require("atlas.mock.ecs").running_count(w, region), "Count"
end

generators["AWS/ApplicationELB|RequestCount"] = function(w, region, d, t)
    if d.LoadBalancer ~= alb_dimension(region) then return nil end
    return 6000 + wiggle(t, 600), "Count"
end

generators["AWS/ApplicationELB|HTTPCode_ELB_5XX_Count"] = function(w, region, d, t)
    if d.LoadBalancer ~= alb_dimension(region) then return nil end
    return w.endpoints[region].up and 2 or 5900, "Count"
end

generators["AWS/ApplicationELB|HTTPCode_Target_5XX_Count"] = function(w, region, d, t)
    if d.LoadBalancer ~= alb_dimension(region) then return nil end
    return w.endpoints[region].up and 1 or 0, "Count"
end

generators["AWS/ApplicationELB|TargetResponseTime"] = function(w, region, d, t)
    if d.LoadBalancer ~= alb_dimension(region) then return nil end
    return 0.045 + wiggle(t, 0.01), "Seconds"
end

generators["AWS/Route53|HealthCheckStatus"] = function(w, region, d, t)
    if region ~= "us-east-1" then return nil end
    local healthy = require("atlas.mock.route53").health_check_healthy(w, d.HealthCheckId or "")
    if healthy == nil then return nil end
    return healthy and 1 or 0, "None"
end

-- The value a metric has now in a region, or nil.
function M.current_value(w, region, namespace, name, dimensions)
    local override = (w.metric_overrides or {})[metric_key(namespace, name, dimensions)]
    if override ~= nil then
        if type(override) == "function" then return override(w.t, w) end
        return override
    end
    local generator = generators[namespace .. "|" .. name]
    if generator then return (generator(w, region, dims_table(dimensions), w.t)) end
end

function M.set_generator(w, namespace, name, dimensions, value)
    w.metric_overrides = w.metric_overrides or {}
    w.metric_overrides[metric_key(namespace, name, dimensions)] = value
end

-- Alarms ------------------------------------------------------------------------

local function topic(region, severity)
    return string.format("arn:aws:sns:%s:%s:atlas-production-%s", region, util.ACCOUNT, severity)
end

local function alarm_definitions(w, region)
    local defs = {}
    local function add(def)
        def.region = region
        defs[#defs + 1] = def
    end
    local n = require("atlas.mock.ecs").names(region)
    if region == "us-east-1" then
        -- Route53 publishes health-check metrics in us-east-1 only.
        for _, r in ipairs(util.REGIONS) do
            add {
                name = env.health_alarm(r),
                severity = "critical",
                description = "Route53 health check of " .. env.regional_name(r) .. " is failing",
                namespace = "AWS/Route53",
                metric = "HealthCheckStatus",
                statistic = "Minimum",
                dimensions = {
                    { Name = "HealthCheckId", Value = require("atlas.mock.route53").health_check_of_region(w, r) },
                },
                period = 30,
                evaluation = 3,
                threshold = 1,
                comparison = "LessThanThreshold",
                unit = nil,
            }
        end
    end
    add {
        name = "atlas-production-alb-5xx-" .. region,
        severity = "critical",
        description = "ALB 5xx responses above 5 % of requests in " .. region,
        namespace = "AWS/ApplicationELB",
        metric = "HTTPCode_ELB_5XX_Count",
        statistic = "Sum",
        dimensions = { { Name = "LoadBalancer", Value = alb_dimension(region) } },
        period = 60,
        evaluation = 2,
        threshold = 300,
        comparison = "GreaterThanThreshold",
    }
    add {
        name = "atlas-production-ecs-unhealthy-" .. region,
        severity = "critical",
        description = "No running task in " .. n.service,
        namespace = "ECS/ContainerInsights",
        metric = "RunningTaskCount",
        statistic = "Minimum",
        dimensions = { { Name = "ClusterName", Value = n.cluster }, { Name = "ServiceName", Value = n.service } },
        period = 60,
        evaluation = 2,
        threshold = 1,
        comparison = "LessThanThreshold",
    }
    add {
        name = "atlas-production-ecs-max-tasks-" .. region,
        severity = "warning",
        description = n.service .. " is at its maximum task count",
        namespace = "ECS/ContainerInsights",
        metric = "RunningTaskCount",
        statistic = "Maximum",
        dimensions = { { Name = "ClusterName", Value = n.cluster }, { Name = "ServiceName", Value = n.service } },
        period = 60,
        evaluation = 5,
        threshold = 10,
        comparison = "GreaterThanOrEqualToThreshold",
    }
    add {
        name = "atlas-production-cross-region-latency-" .. region,
        severity = "warning",
        description = "Cross-region latency from " .. region .. " above 200 ms",
        namespace = NAMESPACE,
        metric = "CrossRegionLatency",
        statistic = "Average",
        dimensions = { { Name = "Region", Value = region } },
        period = 60,
        evaluation = 5,
        threshold = 200,
        comparison = "GreaterThanThreshold",
        unit = "Milliseconds",
    }
    add {
        name = "atlas-production-db-cpu-" .. region,
        severity = "warning",
        description = "Database CPU above 80 % on " .. env.db_instance(region),
        namespace = "AWS/RDS",
        metric = "CPUUtilization",
        statistic = "Average",
        dimensions = { { Name = "DBInstanceIdentifier", Value = env.db_instance(region) } },
        period = 300,
        evaluation = 3,
        threshold = 80,
        comparison = "GreaterThanThreshold",
        unit = "Percent",
    }
    if region ~= "eu-west-1" then
        add {
            name = "atlas-production-replication-lag-" .. region,
            severity = "critical",
            description = "Logical replication lag from eu-west-1 to " .. region .. " above 10 s",
            namespace = NAMESPACE,
            metric = "ReplicationLag",
            statistic = "Maximum",
            dimensions = { { Name = "Region", Value = region } },
            period = 60,
            evaluation = 2,
            threshold = 10,
            comparison = "GreaterThanThreshold",
            unit = "Seconds",
        }
    end
    -- What DeleteAlarms and tests changed: a deleted alarm is gone, a
    -- changed one keeps the rest of its definition.
    local changes = state(w, region).alarm_changes
    local kept = {}
    for _, def in ipairs(defs) do
        local change = changes[def.name]
        if not (change and change.deleted) then
            for k, v in pairs(change or {}) do
                def[k] = v
            end
            kept[#kept + 1] = def
        end
    end
    return kept
end

-- set_alarm(w, region, name, {deleted=true} | {actions_enabled=false, dimensions=, threshold=, ...})
function M.set_alarm(w, region, name, fields)
    local changes = state(w, region).alarm_changes
    changes[name] = changes[name] or {}
    for k, v in pairs(fields) do
        changes[name][k] = v
    end
end

local COMPARE = {
    GreaterThanThreshold = function(v, t) return v > t end,
    GreaterThanOrEqualToThreshold = function(v, t) return v >= t end,
    LessThanThreshold = function(v, t) return v < t end,
    LessThanOrEqualToThreshold = function(v, t) return v <= t end,
}

local function evaluate(w, def)
    local value = M.current_value(w, def.region, def.namespace, def.metric, def.dimensions)
    if value == nil then
        return "INSUFFICIENT_DATA",
            "Insufficient Data: no datapoints were received for " .. def.evaluation .. " periods."
    end
    if COMPARE[def.comparison](value, def.threshold) then
        return "ALARM",
            string.format(
                "Threshold Crossed: %d datapoints [%s] were %s the threshold (%s).",
                def.evaluation,
                tostring(value),
                def.comparison:find("Greater") and "greater than" or "less than",
                tostring(def.threshold)
            )
    end
    return "OK",
        string.format(
            "Threshold Crossed: %d datapoints [%s] were not %s the threshold (%s).",
            def.evaluation,
            tostring(value),
            def.comparison:find("Greater") and "greater than" or "less than",
            tostring(def.threshold)
        )
end

local function alarm_view(w, def)
    local s = state(w, def.region)
    local value, reason = evaluate(w, def)
    local remembered = s.alarm_state[def.name]
    if not remembered or remembered.value ~= value then
        remembered = { value = value, since = remembered and w.t or (w.start_time - 86400) }
        s.alarm_state[def.name] = remembered
    end
    local configured = util.iso(w.start_time - 90 * 86400)
    return {
        AlarmName = def.name,
        AlarmArn = string.format("arn:aws:cloudwatch:%s:%s:alarm:%s", def.region, util.ACCOUNT, def.name),
        AlarmDescription = def.description,
        AlarmConfigurationUpdatedTimestamp = configured,
        ActionsEnabled = def.actions_enabled ~= false,
        OKActions = util.list { topic(def.region, def.severity) },
        AlarmActions = util.list { topic(def.region, def.severity) },
        InsufficientDataActions = util.list(),
        StateValue = value,
        StateReason = reason,
        StateUpdatedTimestamp = util.iso(remembered.since),
        StateTransitionedTimestamp = util.iso(remembered.since),
        MetricName = def.metric,
        Namespace = def.namespace,
        Statistic = def.statistic,
        Dimensions = util.list(util.copy(def.dimensions)),
        Period = def.period,
        Unit = def.unit,
        EvaluationPeriods = def.evaluation,
        DatapointsToAlarm = def.evaluation,
        Threshold = def.threshold + 0.0,
        ComparisonOperator = def.comparison,
        TreatMissingData = "missing",
    }
end

function M.build(w)
    for _, region in ipairs(util.REGIONS) do
        state(w, region)
    end
end

-- Handlers ------------------------------------------------------------------------

local H = {}

local STATISTICS = { SampleCount = true, Average = true, Sum = true, Minimum = true, Maximum = true }

local function aggregate(values, statistics, unit)
    local point = { Unit = unit or "None" }
    local sum, min, max = 0, math.huge, -math.huge
    for _, v in ipairs(values) do
        sum = sum + v
        min = math.min(min, v)
        max = math.max(max, v)
    end
    for _, stat in ipairs(statistics) do
        if stat == "SampleCount" then
            point.SampleCount = #values + 0.0
        elseif stat == "Average" then
            point.Average = sum / #values
        elseif stat == "Sum" then
            point.Sum = sum + 0.0
        elseif stat == "Minimum" then
            point.Minimum = min + 0.0
        elseif stat == "Maximum" then
            point.Maximum = max + 0.0
        end
    end
    return point
end

function H.GetMetricStatistics(w, region, p, ctx)
    local namespace = ctx:need(p, "Namespace")
    local name = ctx:need(p, "MetricName")
    local start = util.parse_time(ctx:need(p, "StartTime"))
    local finish = util.parse_time(ctx:need(p, "EndTime"))
    local period = tonumber(ctx:need(p, "Period"))
    if not start or not finish then ctx:fail("InvalidParameterValue", "StartTime and EndTime must be timestamps.") end
    if not period or period < 1 or (period >= 60 and period % 60 ~= 0) then
        ctx:fail("InvalidParameterValue", "The parameter Period must be a multiple of 60.")
    end
    local statistics = util.as_list(p.Statistics)
    if #statistics == 0 and not p.ExtendedStatistics then
        ctx:fail("MissingParameter", "Must specify either Statistics or ExtendedStatistics.")
    end
    for _, stat in ipairs(statistics) do
        if not STATISTICS[stat] then
            ctx:fail("InvalidParameterValue", "The parameter Statistics contains an invalid value: " .. tostring(stat))
        end
    end
    if finish <= start then
        ctx:fail("InvalidParameterValue", "The parameter StartTime must be less than the parameter EndTime.")
    end
    local count = math.ceil((finish - start) / period)
    if count > MAX_DATAPOINTS then
        ctx:fail(
            "InvalidParameterCombination",
            string.format(
                "You have requested up to %d datapoints, which exceeds the limit of %d. You may reduce the datapoints requested by increasing Period, or decreasing the time range.",
                count,
                MAX_DATAPOINTS
            )
        )
    end
    local key = metric_key(namespace, name, p.Dimensions)
    local stored = state(w, region).data[key]
    local datapoints = util.list()
    local first = math.floor(start / period) * period
    local last_time = math.min(finish, w.t)
    for bucket = first, last_time - 1, period do
        local values, unit = {}, nil
        if stored then
            for _, point in ipairs(stored) do
                if point.t >= bucket and point.t < bucket + period then
                    values[#values + 1] = point.value
                    unit = point.unit
                end
            end
        else
            local override = (w.metric_overrides or {})[key]
            local samples = math.max(1, math.floor(period / 60))
            for i = 0, samples - 1 do
                local at = bucket + i * 60
                local value
                if type(override) == "function" then
                    value = override(at, w)
                elseif override ~= nil then
                    value = override
                else
                    local generator = generators[namespace .. "|" .. name]
                    if generator then
                        value, unit = generator(w, region, dims_table(p.Dimensions), at)
                    end
                end
                values[#values + 1] = value
            end
        end
        if #values > 0 then
            local point = aggregate(values, statistics, p.Unit or unit)
            point.Timestamp = util.iso(bucket)
            datapoints[#datapoints + 1] = point
        end
    end
    return { Label = name, Datapoints = datapoints }
end

function H.PutMetricData(w, region, p, ctx)
    local namespace = ctx:need(p, "Namespace")
    if namespace:sub(1, 4) == "AWS/" then
        ctx:fail("InvalidParameterValue", "The value AWS/ for parameter Namespace is invalid.")
    end
    local data = util.as_list(ctx:need(p, "MetricData"))
    local s = state(w, region)
    for _, datum in ipairs(data) do
        if not datum.MetricName then
            ctx:fail("MissingParameter", "The parameter MetricData.member.MetricName is required.")
        end
        local key = metric_key(namespace, datum.MetricName, datum.Dimensions)
        local at = util.parse_time(datum.Timestamp) or w.t
        s.data[key] = s.data[key] or {}
        local values = datum.Values or (datum.Value ~= nil and { datum.Value }) or {}
        if datum.StatisticValues then values = { datum.StatisticValues.Sum / datum.StatisticValues.SampleCount } end
        if #values == 0 then
            ctx:fail(
                "InvalidParameterCombination",
                "At least one of the parameters Value, Values or StatisticValues must be specified."
            )
        end
        for i, v in ipairs(values) do
            local repeats = datum.Counts and datum.Counts[i] or 1
            for _ = 1, repeats do
                table.insert(s.data[key], { t = at, value = tonumber(v), unit = datum.Unit })
            end
        end
    end
    return {}
end

-- The series a region has: what PutMetricData stored and what the
-- generators publish (the ALBs, latency, replication lag, the databases).
local function known_series(w, region)
    local series = {}
    local function add(namespace, name, dimensions)
        local key = metric_key(namespace, name, dimensions)
        if not series[key] then series[key] = { Namespace = namespace, MetricName = name, Dimensions = dimensions } end
    end
    local alb = { { Name = "LoadBalancer", Value = alb_dimension(region) } }
    for _, name in ipairs { "RequestCount", "HTTPCode_ELB_5XX_Count", "HTTPCode_Target_5XX_Count", "TargetResponseTime" } do
        add("AWS/ApplicationELB", name, alb)
    end
    add(NAMESPACE, "CrossRegionLatency", { { Name = "Region", Value = region } })
    if region ~= "eu-west-1" then add(NAMESPACE, "ReplicationLag", { { Name = "Region", Value = region } }) end
    add("AWS/RDS", "CPUUtilization", { { Name = "DBInstanceIdentifier", Value = env.db_instance(region) } })
    for key in pairs(state(w, region).data) do
        local namespace, name, dims = key:match("^(.-)|(.-)|(.*)$")
        local dimensions = {}
        for pair in dims:gmatch("[^,]+") do
            local k, v = pair:match("^(.-)=(.*)$")
            dimensions[#dimensions + 1] = { Name = k, Value = v }
        end
        add(namespace, name, dimensions)
    end
    return series
end

local function dimensions_match(dimensions, filters)
    for _, f in ipairs(filters or {}) do
        local found = false
        for _, d in ipairs(dimensions) do
            if d.Name == f.Name and (f.Value == nil or d.Value == f.Value) then found = true end
        end
        if not found then return false end
    end
    return true
end

function H.ListMetrics(w, region, p, ctx)
    local series = known_series(w, region)
    local metrics = {}
    for _, key in ipairs(util.sorted_keys(series)) do
        local m = series[key]
        if
            (not p.Namespace or m.Namespace == p.Namespace)
            and (not p.MetricName or m.MetricName == p.MetricName)
            and dimensions_match(m.Dimensions, util.as_list(p.Dimensions))
        then
            metrics[#metrics + 1] =
                { Namespace = m.Namespace, MetricName = m.MetricName, Dimensions = util.list(util.copy(m.Dimensions)) }
        end
    end
    local page, token = util.page(metrics, p.NextToken, nil, 500)
    return { Metrics = page, NextToken = token }
end

function H.DeleteAlarms(w, region, p, ctx)
    for _, name in ipairs(util.as_list(ctx:need(p, "AlarmNames"))) do
        M.set_alarm(w, region, name, { deleted = true })
    end
    return {}
end

function H.DescribeAlarms(w, region, p, ctx)
    local names
    if p.AlarmNames then
        names = {}
        for _, n in ipairs(util.as_list(p.AlarmNames)) do
            names[n] = true
        end
    end
    local alarms = {}
    for _, def in ipairs(alarm_definitions(w, region)) do
        if
            (not names or names[def.name])
            and (not p.AlarmNamePrefix or def.name:sub(1, #p.AlarmNamePrefix) == p.AlarmNamePrefix)
        then
            local alarm = alarm_view(w, def)
            local action_ok = not p.ActionPrefix or alarm.AlarmActions[1]:sub(1, #p.ActionPrefix) == p.ActionPrefix
            if action_ok and (not p.StateValue or alarm.StateValue == p.StateValue) then alarms[#alarms + 1] = alarm end
        end
    end
    local types = p.AlarmTypes and util.as_list(p.AlarmTypes) or { "MetricAlarm" }
    local want = {}
    for _, t in ipairs(types) do
        want[t] = true
    end
    local page, token = util.page(want.MetricAlarm and alarms or {}, p.NextToken, p.MaxRecords, 50)
    local response = { MetricAlarms = page, NextToken = token }
    if want.CompositeAlarm then response.CompositeAlarms = util.list() end
    return response
end

-- Every new world builds this state and sends this module the calls to cloudwatch.
require("atlas.mock.world").register { name = "cloudwatch", build = M.build, handlers = { cloudwatch = H } }

return M
