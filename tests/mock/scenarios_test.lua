-- The shipped scenarios and what each does to the world.
local t = require "atlas.test"
local World = require "atlas.mock.world"

local E, U, A = "eu-west-1", "us-east-1", "ap-southeast-1"

local function describe(w, region)
    return w:aws_invoke("ecs", "DescribeServices", region, {
        cluster = "atlas-crm-production-cluster-" .. region,
        services = { "atlas-crm-production-service-" .. region },
    }).services[1]
end

local function health(w, region)
    return w:http_request { url = "https://" .. region .. ".atlas-crm.com/actuator/health" }.status
end

local function health_check_healthy(w, region)
    local route53 = require "atlas.mock.route53"
    return route53.health_check_healthy(w, route53.health_check_of_region(w, region))
end

local function alarm(w, region, name)
    return w:aws_invoke("cloudwatch", "DescribeAlarms", region, { AlarmNames = { name } }).MetricAlarms[1].StateValue
end

t.case("every shipped scenario loads by name and says what it does", function()
    for _, name in ipairs(require("atlas.mock.scenarios").names()) do
        local scenario = require("atlas.mock.scenarios." .. name)
        t.eq(type(scenario.description), "string", name)
        t.eq(type(scenario.apply), "function", name)
        t.ok(World.new { scenario = name }, name)
    end
end)

t.case("healthy: every region serves and the snapshot equals a fresh world's", function()
    local w = World.new { scenario = "healthy" }
    for _, region in ipairs { E, U, A } do
        t.eq(health(w, region), 200)
        t.eq(health_check_healthy(w, region), true)
    end
    t.eq(w:snapshot(), World.new {}:snapshot())
end)

t.case("eu-west-1-outage: service 0/2 and stuck, endpoint 503, health check failing; others untouched", function()
    local w = World.new { scenario = "eu-west-1-outage" }
    local s = describe(w, E)
    t.eq({ s.runningCount, s.desiredCount }, { 0, 2 })
    t.eq(health(w, E), 503)
    t.eq(health_check_healthy(w, E), false)
    t.eq(alarm(w, U, "atlas-production-health-eu-west-1"), "ALARM")
    t.eq(alarm(w, E, "atlas-production-ecs-unhealthy-eu-west-1"), "ALARM")
    w:advance(3600)
    t.eq(describe(w, E).runningCount, 0)
    t.eq(health_check_healthy(w, E), false)
    for _, region in ipairs { U, A } do
        t.eq(health(w, region), 200)
        t.eq(describe(w, region).runningCount, 2)
        t.eq(health_check_healthy(w, region), true)
    end
    t.eq(
        #w:aws_invoke(
            "logs",
            "FilterLogEvents",
            E,
            { logGroupName = "/ecs/atlas-crm-production-eu-west-1", filterPattern = "ERROR" }
        ).events,
        5
    )
    -- EU clients already resolve to the default record.
    t.eq(require("atlas.mock.route53").resolve_region(w, "api.atlas-crm.com", "EU"), U)
end)

t.case("eu-west-1-db-failure: the primary failed, the replica is available, the application reports DOWN", function()
    local w = World.new { scenario = "eu-west-1-db-failure" }
    local function db(id)
        return w:aws_invoke("rds", "DescribeDBInstances", E, { DBInstanceIdentifier = id }).DBInstances[1]
    end
    t.eq(db("atlas-production-db-eu-west-1").DBInstanceStatus, "failed")
    local replica = db("atlas-production-db-eu-west-1-replica")
    t.eq(replica.DBInstanceStatus, "available")
    t.eq(replica.StatusInfos[1].Normal, false)
    t.eq(describe(w, E).runningCount, 2)
    local r = w:http_request { url = "https://eu-west-1.atlas-crm.com/actuator/health" }
    t.eq(r.status, 503)
    t.match(r.body, '"db":{"status":"DOWN"}')
    t.eq(health_check_healthy(w, E), false)
    t.raises(
        function()
            w:aws_invoke(
                "rds",
                "RebootDBInstance",
                E,
                { DBInstanceIdentifier = "atlas-production-db-eu-west-1", ForceFailover = true }
            )
        end,
        "InvalidDBInstanceState"
    )
    t.eq(health(w, U), 200)
end)

t.case("replication-lag: the subscribers lag 45 s and the lag alarms fire", function()
    local w = World.new { scenario = "replication-lag" }
    for _, region in ipairs { U, A } do
        local r = w:aws_invoke("cloudwatch", "GetMetricStatistics", region, {
            Namespace = "AtlasCRM/Production",
            MetricName = "ReplicationLag",
            Dimensions = { { Name = "Region", Value = region } },
            StartTime = w:now() - 300,
            EndTime = w:now(),
            Period = 60,
            Statistics = { "Maximum" },
        })
        t.eq(r.Datapoints[1].Maximum, 45.0)
        t.eq(alarm(w, region, "atlas-production-replication-lag-" .. region), "ALARM")
        t.eq(w:replication_lag_of(region), 45)
    end
    t.eq(alarm(World.new {}, U, "atlas-production-replication-lag-us-east-1"), "OK")
end)

t.case("throttling: the first two calls of each ECS and Route53 operation are throttled", function()
    local w = World.new { scenario = "throttling" }
    for _ = 1, 2 do
        t.raises(function() describe(w, U) end, "ThrottlingException")
    end
    t.eq(describe(w, U).runningCount, 2)
    t.eq(describe(w, E).runningCount, 2)
    t.raises(
        function() w:aws_invoke("ecs", "ListServices", U, { cluster = "atlas-crm-production-cluster-us-east-1" }) end,
        "ThrottlingException"
    )
    local err = t.raises(
        function() w:aws_invoke("route53", "ListHostedZonesByName", U, { DNSName = "atlas-crm.com" }) end
    )
    t.eq({ err.code, err.status, err.retryable }, { "Throttling", 400, true })
    -- Other services are not throttled.
    t.eq(w:aws_invoke("rds", "DescribeDBInstances", U, {}).DBInstances[1].DBInstanceStatus, "available")
end)

t.case("throttling: atlas.aws retries through it, in virtual time", function()
    local w = t.world("throttling")
    local ecs = require "atlas.ecs"
    local r = ecs.describe_services {
        region = U,
        cluster = "atlas-crm-production-cluster-us-east-1",
        services = { "atlas-crm-production-service-us-east-1" },
    }
    t.eq(r.services[1].runningCount, 2)
    local calls = w:calls_to("ecs", "DescribeServices")
    t.eq(#calls, 3)
    t.eq({ calls[1].error, calls[2].error, calls[3].error }, { "ThrottlingException", "ThrottlingException", nil })
end)

t.case("a user scenario file in the documented format works like a shipped one", function()
    local dir = t.tmpdir()
    local path = dir .. "/ap-slow.lua"
    t.write_file(
        path,
        [[
return {
    description = "ap-southeast-1 slow to scale",
    apply = function(world)
        world:stall_service("ap-southeast-1")
        world:set_metric("AtlasCRM/Production", "CrossRegionLatency", { { Name = "Region", Value = "ap-southeast-1" } }, 350)
        world:inject { service = "ecs", action = "UpdateService", region = "ap-southeast-1", code = "ServerException", times = 1 }
    end,
}
]]
    )
    local w = World.new { scenario = path }
    t.eq(w.scenario.description, "ap-southeast-1 slow to scale")
    t.eq(alarm(w, A, "atlas-production-cross-region-latency-ap-southeast-1"), "ALARM")
    local err = t.raises(
        function()
            w:aws_invoke("ecs", "UpdateService", A, {
                cluster = "atlas-crm-production-cluster-ap-southeast-1",
                service = "atlas-crm-production-service-ap-southeast-1",
                desiredCount = 4,
            })
        end,
        "ServerException"
    )
    t.eq(err.status, 500)
    w:aws_invoke("ecs", "UpdateService", A, {
        cluster = "atlas-crm-production-cluster-ap-southeast-1",
        service = "atlas-crm-production-service-ap-southeast-1",
        desiredCount = 4,
    })
    w:advance(600)
    t.eq(describe(w, A).runningCount, 2)
end)
