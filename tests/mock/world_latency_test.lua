-- The world's latencies: parameters a scenario changes, which the services
-- of the mock world keep to (and --predict adds up).
local t = require "atlas.test"
local World = require "atlas.mock.world"
local errors = require "atlas.errors"

local U = "us-east-1"

local function with(latencies) return { description = "latencies only", apply = function() end, latencies = latencies } end

local function running(w, region)
    return w:aws_invoke("ecs", "DescribeServices", region, {
        cluster = "atlas-crm-production-cluster-" .. region,
        services = { "atlas-crm-production-service-" .. region },
    }).services[1].runningCount
end

local function change_status(w, id) return w:aws_invoke("route53", "GetChange", U, { Id = id }).ChangeInfo.Status end

local function move_record(w)
    local zone = w:aws_invoke("route53", "ListHostedZonesByName", U, { DNSName = "atlas-crm.com" }).HostedZones[1]
    return w:aws_invoke("route53", "ChangeResourceRecordSets", U, {
        HostedZoneId = zone.Id,
        ChangeBatch = {
            Changes = {
                {
                    Action = "UPSERT",
                    ResourceRecordSet = {
                        Name = "drill.atlas-crm.com",
                        Type = "CNAME",
                        TTL = 60,
                        ResourceRecords = { { Value = "us-east-1.atlas-crm.com" } },
                    },
                },
            },
        },
    }).ChangeInfo.Id
end

t.case("by default a Route53 change is INSYNC after 60 s, and a scenario's route53_insync moves it", function()
    local w = World.new {}
    local id = move_record(w)
    w:advance(59)
    t.eq(change_status(w, id), "PENDING")
    w:advance(1)
    t.eq(change_status(w, id), "INSYNC")
    w = World.new { scenario = with { route53_insync = 90 } }
    id = move_record(w)
    w:advance(89)
    t.eq(change_status(w, id), "PENDING")
    w:advance(1)
    t.eq(change_status(w, id), "INSYNC")
end)

t.case("ecs_task_start paces the tasks a scaled service starts", function()
    local w = World.new { scenario = with { ecs_task_start = 45 } }
    w:aws_invoke("ecs", "UpdateService", U, {
        cluster = "atlas-crm-production-cluster-" .. U,
        service = "atlas-crm-production-service-" .. U,
        desiredCount = 4,
    })
    local before = running(w, U)
    w:advance(44)
    t.eq(running(w, U), before)
    w:advance(1)
    t.eq(running(w, U), before + 1)
    -- Each start is noted, with its latency: what a prediction is made of.
    t.eq(w.fired[#w.fired].latency, "ecs_task_start")
    t.eq(w.fired[#w.fired].seconds, 45)
end)

t.case("the health checks and the API records carry the world's detection parameters and TTL", function()
    local w = World.new { scenario = with { health_check_interval = 10, health_check_failure_threshold = 2, dns_ttl = 30 } }
    local checks = w:aws_invoke("route53", "ListHealthChecks", U, {}).HealthChecks
    t.ok(#checks == 3, "three health checks")
    for _, hc in ipairs(checks) do
        t.eq(hc.HealthCheckConfig.RequestInterval, 10)
        t.eq(hc.HealthCheckConfig.FailureThreshold, 2)
    end
    local zone = w:aws_invoke("route53", "ListHostedZonesByName", U, { DNSName = "atlas-crm.com" }).HostedZones[1]
    local sets = w:aws_invoke("route53", "ListResourceRecordSets", U, { HostedZoneId = zone.Id }).ResourceRecordSets
    local api = 0
    for _, r in ipairs(sets) do
        if r.Name == "api.atlas-crm.com." then
            api = api + 1
            t.eq(r.TTL, 30)
        end
    end
    t.ok(api >= 3, "the geo records of api.atlas-crm.com")
    -- Detection follows: an endpoint down for interval x threshold = 20 s is unhealthy.
    w:set_endpoint("eu-west-1", { mode = "down" })
    local id = checks[1].Id
    for _, hc in ipairs(checks) do
        if hc.HealthCheckConfig.FullyQualifiedDomainName:match("^eu%-west%-1") then id = hc.Id end
    end
    local route53 = require "atlas.mock.route53"
    w:advance(19)
    t.eq(route53.health_check_healthy(w, id), true)
    w:advance(1)
    t.eq(route53.health_check_healthy(w, id), false)
end)

t.case("a scenario's latencies are checked: a misspelt name, a negative or odd value is a usage error", function()
    for _, case in ipairs {
        { { route53_in_sync = 60 }, 'unknown latency "route53_in_sync" %(the world has: .*route53_insync' },
        { { ecs_task_start = -1 }, "ecs_task_start must be a number of seconds, 0 or more, not %-1" },
        { { ecs_task_start = "30" }, "ecs_task_start must be a number of seconds" },
        { { dns_ttl = 0 / 0 }, "dns_ttl must be a number of seconds" },
        { { health_check_failure_threshold = 2.5 }, "a count of failed checks, 1 to 10, not 2%.5" },
        { { health_check_failure_threshold = 0 }, "a count of failed checks, 1 to 10, not 0" },
    } do
        local err = t.raises(function() World.new { scenario = with(case[1]) } end)
        t.ok(errors.is(err, "usage"), "usage error: " .. tostring(err))
        t.match(errors.message(err), case[2])
    end
    local err = t.raises(function() World.new { scenario = { description = "x", apply = function() end, latencies = 5 } } end)
    t.match(errors.message(err), "field latencies must be a table, not a number")
end)

t.case("the world's dice repeat: two worlds throw the same numbers, in [0, 1)", function()
    local a, b = World.new {}, World.new {}
    local seen = {}
    for i = 1, 1000 do
        local x = a:random()
        t.eq(b:random(), x)
        t.ok(x >= 0 and x < 1, "in [0, 1)")
        seen[math.floor(x * 10)] = true
    end
    for d = 0, 9 do
        t.ok(seen[d], "spread over [0, 1): a value in tenth " .. d)
    end
end)
