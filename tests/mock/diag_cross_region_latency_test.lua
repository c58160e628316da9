-- playbooks/diag_cross_region_latency.lua in the mock world.
local t = require "atlas.test"

local PLAYBOOK = "playbooks/diag_cross_region_latency.lua"
local LATENCY = "CrossRegionLatency"
local NS = "AtlasCRM/Production"

local function region_dims(region) return { { Name = "Region", Value = region } } end

t.case("the last hour, period 300, Average and Maximum, for each region; all under 200 ms", function()
    local result = t.run_playbook(PLAYBOOK, {})
    t.eq(result.status, "ok", tostring(result.error))
    t.eq(result.journal.state.over, {})
    local calls = result.world:calls_to("cloudwatch", "GetMetricStatistics")
    t.eq(#calls, 3)
    for _, c in ipairs(calls) do
        t.eq(c.params.Period, 300)
        t.eq(c.params.Statistics, { "Average", "Maximum" })
        t.eq(c.params.EndTime - c.params.StartTime, 3600)
        t.eq(c.params.Dimensions, region_dims(c.region))
    end
    local ap = result.journal.state.regions["ap-southeast-1"]
    t.eq(ap.periods, 12)
    t.ok(ap.average > 150 and ap.average < 200, "ap-southeast-1 averages about 164 ms: " .. ap.average)
end)

t.case("a region over 200 ms is named, with its average and worst period", function()
    local world = t.world("healthy")
    world:set_metric(NS, LATENCY, region_dims("us-east-1"), function(at) return at % 600 < 300 and 260 or 180 end)
    world:advance(3600)
    local result, events = t.run_playbook(PLAYBOOK, {}, { world = world })
    t.eq(result.status, "ok", tostring(result.error))
    t.eq(result.journal.state.over, { "us-east-1" })
    local text = {}
    for _, e in ipairs(events) do
        if e.type == "log" then text[#text + 1] = e.message end
    end
    text = table.concat(text, "\n")
    t.match(text, "us%-east%-1: latency over 200 ms %(hourly average 220 ms, worst 5%-minute average 260 ms%)")
    t.match(text, "1 region%(s%) over 200 ms: us%-east%-1")
end)

t.case("a region whose metric cannot be read fails the run and is named", function()
    local world = t.world("healthy")
    world:inject { service = "cloudwatch", action = "GetMetricStatistics", region = "eu-west-1", code = "AccessDenied", status = 403 }
    local result = t.run_playbook(PLAYBOOK, {}, { world = world })
    t.eq(result.status, "failed")
    t.eq(result.exit, 1)
    t.match(tostring(result.error), "CrossRegionLatency unreadable: eu%-west%-1: .*AccessDenied")
    t.eq(result.journal.state.over, {})
end)

t.case("no data is said, not taken for low latency; an empty region list is bad input", function()
    local world = t.world("healthy")
    world:set_metric(NS, LATENCY, region_dims("eu-west-1"), function() return nil end)
    local result = t.run_playbook(PLAYBOOK, { regions = "eu-west-1" }, { world = world })
    t.eq(result.status, "ok", tostring(result.error))
    t.eq(result.journal.state.quiet, { "eu-west-1" })
    t.raises(function() t.run_playbook(PLAYBOOK, { regions = "" }) end, "needs at least 1")
end)
