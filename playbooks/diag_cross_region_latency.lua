-- Runbook troubleshooting, "high cross-region latency": CrossRegionLatency
-- (AtlasCRM/Production, dimension Region) of each region over the last hour,
-- in 5-minute periods, Average and Maximum, against the runbook's 200 ms.
-- Read-only. A region whose hourly average or worst 5-minute average is over
-- the threshold is a warning (the runbook's severity for latency); a region
-- whose metric cannot be read fails the run (exit 1), since nothing can be
-- said about it.
local atlas = require "atlas"
local aws = require "atlas.aws"
local errors = require "atlas.errors"
local env = require "atlas.env"

local PERIOD = 300
local WINDOW = 3600

local function request(region)
    -- The window ends just after now: a datapoint put this very second is in it.
    local finish = math.floor(atlas.now()) + 1
    return {
        service = "cloudwatch",
        action = "GetMetricStatistics",
        region = region,
        params = {
            Namespace = env.METRIC_NAMESPACE,
            MetricName = "CrossRegionLatency",
            Dimensions = { { Name = "Region", Value = region } },
            StartTime = finish - WINDOW,
            EndTime = finish,
            Period = PERIOD,
            Statistics = { "Average", "Maximum" },
            Unit = "Milliseconds",
        },
    }
end

-- {periods=, average=, maximum=, worst_average=, newest=} from the datapoints.
local function summarise(datapoints)
    local points = {}
    for _, p in ipairs(datapoints or {}) do
        points[#points + 1] = p
    end
    if #points == 0 then return nil end
    table.sort(points, function(a, b) return tostring(a.Timestamp) < tostring(b.Timestamp) end)
    local sum, maximum, worst = 0, -math.huge, -math.huge
    for _, p in ipairs(points) do
        sum = sum + p.Average
        maximum = math.max(maximum, p.Maximum or p.Average)
        worst = math.max(worst, p.Average)
    end
    return {
        periods = #points,
        average = sum / #points,
        maximum = maximum,
        worst_average = worst,
        newest = points[#points],
    }
end

return atlas.playbook {
    name = "diag_cross_region_latency",
    description = "CrossRegionLatency of each region over the last hour (5-minute Average and Maximum) against 200 ms",
    lock = false, -- read-only
    params = {
        regions = env.regions_param "regions whose latency to read",
        threshold_ms = {
            type = "number",
            default = env.LATENCY_WARNING_MS,
            min = 0,
            description = "latency warning threshold (runbook: 200 ms)",
        },
    },
    steps = {
        {
            name = "read CrossRegionLatency",
            run = function(ctx)
                local requests = {}
                for i, region in ipairs(ctx.params.regions) do
                    requests[i] = request(region)
                end
                local answers = aws.parallel(requests)
                ctx.state.regions, ctx.state.unreadable = {}, {}
                for i, region in ipairs(ctx.params.regions) do
                    if errors.is(answers[i]) then
                        ctx.state.unreadable[#ctx.state.unreadable + 1] = region .. ": " .. errors.message(answers[i])
                        ctx.warn("%s: cannot read CrossRegionLatency: %s", region, errors.message(answers[i]))
                    else
                        ctx.state.regions[region] = summarise(answers[i].Datapoints) or false
                    end
                end
            end,
        },
        {
            name = "compare with the threshold",
            run = function(ctx)
                local limit = ctx.params.threshold_ms
                local over, quiet = {}, {}
                for _, region in ipairs(ctx.params.regions) do
                    local s = ctx.state.regions[region]
                    if s == false then
                        quiet[#quiet + 1] = region
                        ctx.warn("%s: no CrossRegionLatency data in the last hour", region)
                    elseif s then
                        ctx.log(
                            "%s: average %.0f ms, maximum %.0f ms over %d periods of 5 min; newest %.0f ms at %s",
                            region,
                            s.average,
                            s.maximum,
                            s.periods,
                            s.newest.Average,
                            tostring(s.newest.Timestamp)
                        )
                        if s.average > limit or s.worst_average > limit then
                            over[#over + 1] = region
                            ctx.warn(
                                "%s: latency over %s ms (hourly average %.0f ms, worst 5-minute average %.0f ms)",
                                region,
                                limit,
                                s.average,
                                s.worst_average
                            )
                        elseif s.maximum > limit then
                            ctx.log("%s: single samples reached %.0f ms; the 5-minute averages stay under %s ms", region, s.maximum, limit)
                        end
                    end
                end
                ctx.state.over, ctx.state.quiet = over, quiet
                ctx.log(
                    "%d region(s) over %s ms%s",
                    #over,
                    limit,
                    #over > 0 and (": " .. table.concat(over, ", ")) or ""
                )
                if #ctx.state.unreadable > 0 then
                    ctx.fail("CrossRegionLatency unreadable: %s", table.concat(ctx.state.unreadable, "; "))
                end
            end,
        },
    },
}
