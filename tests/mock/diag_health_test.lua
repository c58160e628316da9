-- playbooks/diag_health.lua against the runbook's thresholds.
local t = require "atlas.test"

local PLAYBOOK = "playbooks/diag_health.lua"

local function findings(result, severity)
    local out = {}
    for _, f in ipairs(result.journal.state.findings or {}) do
        if f.severity == severity then out[#out + 1] = f.region .. ": " .. f.text end
    end
    return out
end

t.case("a healthy world has no finding and exits 0", function()
    local result = t.run_playbook(PLAYBOOK, {})
    t.eq(result.status, "ok", tostring(result.error))
    t.eq(findings(result, "critical"), {})
    t.eq(findings(result, "warning"), {})
end)

t.case("an outage is critical for that region only, exit 5", function()
    local result = t.run_playbook(PLAYBOOK, {}, { scenario = "eu-west-1-outage" })
    t.eq(result.status, "critical")
    t.eq(result.exit, 5)
    local critical = findings(result, "critical")
    t.eq(#critical, 4, table.concat(critical, "\n"))
    for _, text in ipairs(critical) do
        t.match(text, "^eu%-west%-1: ")
    end
    local r = t.run({ "--scenario", "eu-west-1-outage", PLAYBOOK })
    t.eq(r.code, 5)
    t.match(r.stderr, "4 critical finding%(s%)")
end)

t.case("warnings: latency over 200 ms, a service at its maximum, a busy database", function()
    local world = t.world("healthy")
    world:set_metric(
        "AtlasCRM/Production",
        "CrossRegionLatency",
        { { Name = "Region", Value = "ap-southeast-1" } },
        250
    )
    world:set_metric(
        "AWS/RDS",
        "CPUUtilization",
        { { Name = "DBInstanceIdentifier", Value = "atlas-production-db-us-east-1" } },
        93
    )
    world:set_service("us-east-1", { desired = 10, running = 10 })
    world:advance(300)
    local result = t.run_playbook(PLAYBOOK, {}, { world = world })
    t.eq(result.status, "ok", tostring(result.error))
    local warnings = findings(result, "warning")
    table.sort(warnings)
    t.eq(#warnings, 3, table.concat(warnings, "\n"))
    t.match(warnings[1], "^ap%-southeast%-1: cross%-region latency 250 ms")
    t.match(warnings[2], "^us%-east%-1: ECS service at its maximum task count")
    t.match(warnings[3], "^us%-east%-1: database CPU 93 %%")
end)

t.case("each check asks all regions in one parallel round", function()
    local result = t.run_playbook(PLAYBOOK, { regions = "eu-west-1,ap-southeast-1" })
    t.eq(result.status, "ok", tostring(result.error))
    local regions = {}
    for _, c in ipairs(result.world:calls_to("ecs", "DescribeServices")) do
        regions[#regions + 1] = c.region
    end
    t.eq(regions, { "eu-west-1", "ap-southeast-1" })
end)

t.case("an unknown region in the list is refused", function()
    t.raises(
        function() t.run_playbook(PLAYBOOK, { regions = "eu-west-1,mars-west-9" }) end,
        'parameter regions: "mars%-west%-9" is not one of'
    )
end)

t.case("after a failover the failed region is still judged by its own health check", function()
    local world = t.world("eu-west-1-outage")
    t.eq(t.run_playbook("playbooks/dr_region_outage.lua", {}, { world = world }).status, "ok")
    local result = t.run_playbook(PLAYBOOK, { regions = "eu-west-1" }, { world = world })
    t.eq(result.status, "critical")
    local critical = table.concat(findings(result, "critical"), "\n")
    t.match(critical, "eu%-west%-1: health check failing")
end)

t.case("replication lag over 10 s is critical (the replication-lag scenario), exit 5", function()
    local result = t.run_playbook(PLAYBOOK, {}, { scenario = "replication-lag" })
    t.eq(result.status, "critical")
    t.eq(result.exit, 5)
    local critical = findings(result, "critical")
    table.sort(critical)
    t.eq(critical, {
        "ap-southeast-1: replication lag 45.0 s (over 10 s)",
        "us-east-1: replication lag 45.0 s (over 10 s)",
    })
end)

t.case("lag under the threshold is reported and passes", function()
    local world = t.world("healthy")
    world:set_replication_lag("us-east-1", 8)
    local result = t.run_playbook(PLAYBOOK, {}, { world = world })
    t.eq(result.status, "ok", tostring(result.error))
    t.match(table.concat(findings(result, "ok"), "\n"), "us%-east%-1: replication lag 8.0 s")
end)

t.case("ALB 5xx over 5 % of requests is critical even while the endpoint answers", function()
    local world = t.world("healthy")
    local alb = require("atlas.mock.cloudwatch").alb_dimension("us-east-1")
    -- 6000 requests a minute, of which 420 are the ALB's 5xx: 7 %.
    world:set_metric("AWS/ApplicationELB", "HTTPCode_ELB_5XX_Count", { { Name = "LoadBalancer", Value = alb } }, 420)
    world:set_metric("AWS/ApplicationELB", "RequestCount", { { Name = "LoadBalancer", Value = alb } }, 6000)
    world:advance(300)
    local result = t.run_playbook(PLAYBOOK, {}, { world = world })
    t.eq(result.status, "critical")
    t.eq(result.exit, 5)
    t.eq(findings(result, "critical"), { "us-east-1: ALB 5xx 7.0 % of 30000 requests (over 5 %)" })
end)

t.case("ALB 5xx at 4 % (ELB and targets together) stays below the threshold", function()
    local world = t.world("healthy")
    local alb = require("atlas.mock.cloudwatch").alb_dimension("eu-west-1")
    local dims = { { Name = "LoadBalancer", Value = alb } }
    world:set_metric("AWS/ApplicationELB", "HTTPCode_ELB_5XX_Count", dims, 100)
    world:set_metric("AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", dims, 140)
    world:set_metric("AWS/ApplicationELB", "RequestCount", dims, 6000)
    world:advance(300)
    local result = t.run_playbook(PLAYBOOK, {}, { world = world })
    t.eq(result.status, "ok", tostring(result.error))
    t.match(table.concat(findings(result, "ok"), "\n"), "eu%-west%-1: ALB 5xx 4.0 %% of 30000 requests")
    -- exactly 5 % is not over 5 %; one more error is
    world:set_metric("AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", dims, 200)
    t.eq(t.run_playbook(PLAYBOOK, {}, { world = world }).exit, 0)
    world:set_metric("AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", dims, 201)
    t.eq(t.run_playbook(PLAYBOOK, {}, { world = world }).exit, 5)
end)

t.case("an empty region list is bad input (exit 2), never 0 critical", function()
    t.raises(function() t.run_playbook(PLAYBOOK, { regions = "" }) end, "parameter regions: .* needs at least 1")
    local r = t.run({ "--mock", PLAYBOOK, "regions=" })
    t.eq(r.code, 2, r.stdout .. r.stderr)
    t.match(r.stderr, "parameter regions")
    t.no_match(r.stdout .. r.stderr, "0 critical")
    t.raises(function() t.run_playbook(PLAYBOOK, { regions = " , " }) end, "needs at least 1")
end)

t.case("the maximum task count is Application Auto Scaling's, not a constant", function()
    local world = t.world("healthy")
    world:aws_invoke("application-autoscaling", "RegisterScalableTarget", "ap-southeast-1", {
        ServiceNamespace = "ecs",
        ResourceId = "service/atlas-crm-production-cluster-ap-southeast-1/atlas-crm-production-service-ap-southeast-1",
        ScalableDimension = "ecs:service:DesiredCount",
        MinCapacity = 2,
        MaxCapacity = 2,
    })
    local result = t.run_playbook(PLAYBOOK, {}, { world = world })
    t.eq(result.status, "ok", tostring(result.error))
    t.eq(findings(result, "warning"), { "ap-southeast-1: ECS service at its maximum task count (2 of 2)" })
end)

t.case("the endpoints of all regions are probed in one round", function()
    local world = t.world("healthy")
    local http = require "atlas.http"
    local rounds, real = 0, http.request_many
    http.request_many = function(reqs)
        rounds = rounds + 1
        return real(reqs)
    end
    t.defer(function() http.request_many = real end)
    local result = t.run_playbook(PLAYBOOK, {}, { world = world })
    t.eq(result.status, "ok", tostring(result.error))
    t.eq(rounds, 1)
    local probed = 0
    for _, c in ipairs(world.calls) do
        if c.module == "http" then probed = probed + 1 end
    end
    t.eq(probed, 3)
end)
