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
    t.eq(#critical, 3, table.concat(critical, "\n"))
    for _, text in ipairs(critical) do
        t.match(text, "^eu%-west%-1: ")
    end
    local r = t.run({ "--scenario", "eu-west-1-outage", PLAYBOOK })
    t.eq(r.code, 5)
    t.match(r.stderr, "3 critical finding%(s%)")
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
