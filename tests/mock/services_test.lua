-- CloudWatch, Logs, Secrets Manager, STS, Lambda and EventBridge in the mock world.
local t = require "atlas.test"
local World = require "atlas.mock.world"

local E, U, A = "eu-west-1", "us-east-1", "ap-southeast-1"

local function latency(w, region, minutes, statistics)
    return w:aws_invoke("cloudwatch", "GetMetricStatistics", region, {
        Namespace = "AtlasCRM/Production",
        MetricName = "CrossRegionLatency",
        Dimensions = { { Name = "Region", Value = region } },
        StartTime = w:now() - minutes * 60,
        EndTime = w:now(),
        Period = 60,
        Statistics = statistics or { "Average", "Maximum" },
    })
end

t.case("CrossRegionLatency has one datapoint per period up to now, in ms, per region", function()
    local w = World.new {}
    local r = latency(w, A, 10)
    t.eq(r.Label, "CrossRegionLatency")
    t.eq(#r.Datapoints, 10)
    local p = r.Datapoints[1]
    t.eq(p.Unit, "Milliseconds")
    t.ok(p.Average > 140 and p.Average < 190, "ap-southeast-1 latency " .. p.Average)
    t.ok(p.Maximum >= p.Average)
    t.eq(p.SampleCount, nil)
    t.match(p.Timestamp, "^2025%-11%-18T09:2%d:00%.000Z$")
    t.ok(latency(w, E, 10).Datapoints[1].Average < 60)
    -- A region publishes its own metric only.
    t.eq(#w:aws_invoke("cloudwatch", "GetMetricStatistics", U, {
        Namespace = "AtlasCRM/Production",
        MetricName = "CrossRegionLatency",
        Dimensions = { { Name = "Region", Value = A } },
        StartTime = w:now() - 600,
        EndTime = w:now(),
        Period = 60,
        Statistics = { "Average" },
    }).Datapoints, 0)
    -- ISO 8601 timestamps are accepted as well as epoch seconds.
    local iso = w:aws_invoke("cloudwatch", "GetMetricStatistics", A, {
        Namespace = "AtlasCRM/Production",
        MetricName = "CrossRegionLatency",
        Dimensions = { { Name = "Region", Value = A } },
        StartTime = "2025-11-18T09:00:00Z",
        EndTime = "2025-11-18T09:30:00Z",
        Period = 300,
        Statistics = { "SampleCount" },
    })
    t.eq(#iso.Datapoints, 6)
    t.eq(iso.Datapoints[1].SampleCount, 5.0)
end)

t.case("GetMetricStatistics validates like CloudWatch", function()
    local w = World.new {}
    local base = {
        Namespace = "AtlasCRM/Production",
        MetricName = "CrossRegionLatency",
        StartTime = w:now() - 600,
        EndTime = w:now(),
        Period = 60,
        Statistics = { "Average" },
    }
    local function with(k, v)
        local p = {}
        for key, val in pairs(base) do
            p[key] = val
        end
        p[k] = v
        return p
    end
    t.raises(
        function() w:aws_invoke("cloudwatch", "GetMetricStatistics", E, with("Period", 61)) end,
        "InvalidParameterValue"
    )
    t.raises(
        function() w:aws_invoke("cloudwatch", "GetMetricStatistics", E, with("Statistics", { "Median" })) end,
        "InvalidParameterValue"
    )
    t.raises(
        function() w:aws_invoke("cloudwatch", "GetMetricStatistics", E, with("StartTime", w:now() - 86400 * 2)) end,
        "InvalidParameterCombination"
    )
    t.raises(
        function() w:aws_invoke("cloudwatch", "GetMetricStatistics", E, with("EndTime", nil)) end,
        "MissingParameter"
    )
end)

t.case("PutMetricData stores points that GetMetricStatistics aggregates", function()
    local w = World.new {}
    local dims = { { Name = "Region", Value = U } }
    w:aws_invoke("cloudwatch", "PutMetricData", U, {
        Namespace = "AtlasCRM/Drills",
        MetricData = {
            { MetricName = "FailoverSeconds", Dimensions = dims, Value = 120, Unit = "Seconds" },
            {
                MetricName = "FailoverSeconds",
                Dimensions = dims,
                Values = { 60, 90 },
                Counts = { 1, 2 },
                Unit = "Seconds",
            },
        },
    })
    w:advance(60)
    local r = w:aws_invoke("cloudwatch", "GetMetricStatistics", U, {
        Namespace = "AtlasCRM/Drills",
        MetricName = "FailoverSeconds",
        Dimensions = dims,
        StartTime = w:now() - 300,
        EndTime = w:now(),
        Period = 300,
        Statistics = { "Sum", "SampleCount", "Minimum", "Maximum", "Average" },
    })
    t.eq(#r.Datapoints, 1)
    local p = r.Datapoints[1]
    t.eq(
        { p.Sum, p.SampleCount, p.Minimum, p.Maximum, p.Average, p.Unit },
        { 360.0, 4.0, 60.0, 120.0, 90.0, "Seconds" }
    )
    t.raises(
        function()
            w:aws_invoke(
                "cloudwatch",
                "PutMetricData",
                U,
                { Namespace = "AWS/ECS", MetricData = { { MetricName = "x", Value = 1 } } }
            )
        end,
        "InvalidParameterValue"
    )
end)

t.case("the runbook's alarms are evaluated from the world", function()
    local w = World.new {}
    local function states(region, prefix)
        local out = {}
        for _, a in
            ipairs(w:aws_invoke("cloudwatch", "DescribeAlarms", region, { AlarmNamePrefix = prefix }).MetricAlarms)
        do
            out[a.AlarmName] = a.StateValue
        end
        return out
    end
    t.eq(states(U, "atlas-production-health-"), {
        ["atlas-production-health-eu-west-1"] = "OK",
        ["atlas-production-health-us-east-1"] = "OK",
        ["atlas-production-health-ap-southeast-1"] = "OK",
    })
    t.eq(states(E, "atlas-production-ecs-unhealthy-"), { ["atlas-production-ecs-unhealthy-eu-west-1"] = "OK" })
    w:set_endpoint(E, { mode = "down" })
    w:advance(90)
    t.eq(
        states(U, "atlas-production-health-eu-west-1"),
        { ["atlas-production-health-eu-west-1"] = "ALARM" }
    )
    t.eq(states(E, "atlas-production-alb-5xx-"), { ["atlas-production-alb-5xx-eu-west-1"] = "ALARM" })
    local alarm = w:aws_invoke(
        "cloudwatch",
        "DescribeAlarms",
        U,
        { AlarmNames = { "atlas-production-health-eu-west-1" } }
    ).MetricAlarms[1]
    t.eq(
        { alarm.Namespace, alarm.MetricName, alarm.ComparisonOperator, alarm.Threshold, alarm.EvaluationPeriods },
        { "AWS/Route53", "HealthCheckStatus", "LessThanThreshold", 1.0, 3 }
    )
    t.eq(alarm.StateUpdatedTimestamp, "2025-11-18T09:31:30.000Z")
    t.eq(#w:aws_invoke("cloudwatch", "DescribeAlarms", U, { StateValue = "ALARM" }).MetricAlarms, 1)
    t.eq(
        #w:aws_invoke("cloudwatch", "DescribeAlarms", E, { AlarmNamePrefix = "atlas-production-replication-lag" }).MetricAlarms,
        0
    )
end)

t.case("FilterLogEvents finds application log lines by terms, time and stream", function()
    local w = World.new {}
    local group = "/ecs/atlas-crm-production-us-east-1"
    local all = w:aws_invoke("logs", "FilterLogEvents", U, { logGroupName = group })
    t.eq(#all.events, 10)
    t.eq(type(all.events[1].timestamp), "number")
    t.ok(all.events[1].timestamp < all.events[2].timestamp)
    t.match(all.events[1].logStreamName, "^ecs/app/")
    w:add_log(U, group, "ERROR [main] boom: connection refused")
    t.eq(#w:aws_invoke("logs", "FilterLogEvents", U, { logGroupName = group, filterPattern = "ERROR" }).events, 1)
    t.eq(
        #w:aws_invoke("logs", "FilterLogEvents", U, { logGroupName = group, filterPattern = '"connection refused"' }).events,
        1
    )
    t.eq(
        #w:aws_invoke("logs", "FilterLogEvents", U, { logGroupName = group, filterPattern = "?boom ?organizations" }).events,
        11
    )
    t.eq(
        #w:aws_invoke("logs", "FilterLogEvents", U, { logGroupName = group, filterPattern = "GET -exec-1]" }).events,
        9
    )
    t.eq(
        #w:aws_invoke("logs", "FilterLogEvents", U, { logGroupName = group, startTime = (w:now() - 90) * 1000 }).events,
        2
    )
    local page = w:aws_invoke("logs", "FilterLogEvents", U, { logGroupName = group, limit = 4 })
    t.eq(#page.events, 4)
    t.ok(page.nextToken)
    t.raises(
        function() w:aws_invoke("logs", "FilterLogEvents", U, { logGroupName = "/nope" }) end,
        "ResourceNotFoundException"
    )
end)

t.case("tasks that start write their startup line to the region's log group", function()
    local w = World.new {}
    w:aws_invoke("ecs", "UpdateService", A, {
        cluster = "atlas-crm-production-cluster-ap-southeast-1",
        service = "atlas-crm-production-service-ap-southeast-1",
        desiredCount = 4,
    })
    w:advance(60)
    local r = w:aws_invoke(
        "logs",
        "FilterLogEvents",
        A,
        { logGroupName = "/ecs/atlas-crm-production-ap-southeast-1", filterPattern = "Started AtlasCrmApplication" }
    )
    t.eq(#r.events, 2)
end)

t.case("DescribeLogGroups lists each region's groups", function()
    local w = World.new {}
    local names = {}
    for _, g in ipairs(w:aws_invoke("logs", "DescribeLogGroups", E, {}).logGroups) do
        names[#names + 1] = g.logGroupName
    end
    t.eq(names, { "/aws/lambda/atlas-production-failover-orchestrator", "/ecs/atlas-crm-production-eu-west-1" })
    local r = w:aws_invoke("logs", "DescribeLogGroups", U, { logGroupNamePrefix = "/ecs/" })
    t.eq(r.logGroups[1].logGroupName, "/ecs/atlas-crm-production-us-east-1")
    t.eq(r.logGroups[1].retentionInDays, 30)
end)

t.case("the master password is a plain SecretString in eu-west-1 only", function()
    local w = World.new {}
    local s = w:aws_invoke("secretsmanager", "GetSecretValue", E, { SecretId = "atlas-db-master-password" })
    t.eq(s.Name, "atlas-db-master-password")
    t.eq(s.SecretString, w.master_password)
    t.eq(s.VersionStages, { "AWSCURRENT" })
    t.eq(type(s.CreatedDate), "number")
    t.eq(w:aws_invoke("secretsmanager", "GetSecretValue", E, { SecretId = s.ARN }).SecretString, s.SecretString)
    local err = t.raises(
        function() w:aws_invoke("secretsmanager", "GetSecretValue", U, { SecretId = "atlas-db-master-password" }) end
    )
    t.eq(err.code, "ResourceNotFoundException")
    t.eq(err.message, "Secrets Manager can't find the specified secret.")
end)

t.case("STS: the caller and assumed roles with expiring credentials", function()
    local w = World.new {}
    t.eq(w:aws_invoke("sts", "GetCallerIdentity", E, {}).Account, "123456789012")
    local r = w:aws_invoke("sts", "AssumeRole", U, {
        RoleArn = "arn:aws:iam::123456789012:role/atlas-dr-operator",
        RoleSessionName = "drill",
        DurationSeconds = 900,
    })
    t.match(r.Credentials.AccessKeyId, "^ASIA")
    t.eq(r.Credentials.Expiration, "2025-11-18T09:45:00Z")
    t.eq(r.AssumedRoleUser.Arn, "arn:aws:sts::123456789012:assumed-role/atlas-dr-operator/drill")
    t.raises(
        function()
            w:aws_invoke(
                "sts",
                "AssumeRole",
                U,
                { RoleArn = "arn:aws:iam::999999999999:role/x", RoleSessionName = "s" }
            )
        end,
        "AccessDenied"
    )
    t.raises(
        function() w:aws_invoke("sts", "AssumeRole", U, { RoleArn = "bad", RoleSessionName = "s" }) end,
        "ValidationError"
    )
end)

t.case("the failover Lambda answers with the regions' health and logs its run", function()
    local w = World.new {}
    local r = w:aws_invoke(
        "lambda",
        "Invoke",
        E,
        { FunctionName = "atlas-production-failover-orchestrator", Payload = '{"dry_run":true}', LogType = "Tail" }
    )
    t.eq(r.StatusCode, 200)
    t.eq(r.FunctionError, nil)
    t.match(r.Payload, '"action":"none"')
    t.ok(r.LogResult and #r.LogResult > 0)
    local logs = w:aws_invoke(
        "logs",
        "FilterLogEvents",
        E,
        { logGroupName = "/aws/lambda/atlas-production-failover-orchestrator", filterPattern = "REPORT" }
    )
    t.eq(#logs.events, 1)
    w:set_endpoint(E, { mode = "down" })
    w:advance(90)
    r = w:aws_invoke(
        "lambda",
        "Invoke",
        E,
        { FunctionName = "arn:aws:lambda:eu-west-1:123456789012:function:atlas-production-failover-orchestrator" }
    )
    t.match(r.Payload, '"unhealthy_regions":%["eu%-west%-1"%]')
    t.match(r.Payload, '"action":"failover_required"')
    t.eq(
        w:aws_invoke(
            "lambda",
            "Invoke",
            E,
            { FunctionName = "atlas-production-failover-orchestrator", InvocationType = "Event" }
        ).StatusCode,
        202
    )
    w:set_lambda("atlas-production-failover-orchestrator", function() error("no quorum") end)
    r = w:aws_invoke("lambda", "Invoke", E, { FunctionName = "atlas-production-failover-orchestrator" })
    t.eq(r.FunctionError, "Unhandled")
    t.match(r.Payload, "no quorum")
    t.raises(
        function() w:aws_invoke("lambda", "Invoke", U, { FunctionName = "atlas-production-failover-orchestrator" }) end,
        "ResourceNotFoundException"
    )
end)

t.case("EventBridge describes the failover trigger and its target, the orchestrator", function()
    local w = World.new {}
    local r = w:aws_invoke("events", "DescribeRule", E, { Name = "atlas-production-failover-trigger" })
    t.eq({ r.State, r.EventBusName, r.targets }, { "ENABLED", "default", nil })
    local pattern = require("atlas.json").decode(r.EventPattern)
    t.eq(pattern["detail-type"], { "CloudWatch Alarm State Change" })
    t.eq(pattern.detail.state.value, { "ALARM" })
    local targets = w:aws_invoke("events", "ListTargetsByRule", E, { Rule = "atlas-production-failover-trigger" })
    t.eq(targets.Targets, {
        {
            Id = "failover-orchestrator",
            Arn = "arn:aws:lambda:eu-west-1:123456789012:function:atlas-production-failover-orchestrator",
        },
    })
    w:aws_invoke("events", "DisableRule", E, { Name = "atlas-production-failover-trigger" })
    t.eq(w:aws_invoke("events", "DescribeRule", E, { Name = "atlas-production-failover-trigger" }).State, "DISABLED")
    local err = t.raises(
        function() w:aws_invoke("events", "DescribeRule", E, { Name = "nope" }) end,
        "ResourceNotFoundException"
    )
    t.eq(err.message, "Rule nope does not exist on EventBus default.")
end)
