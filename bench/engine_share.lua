-- The engine's share of recovery time: how long after the world reaches a
-- state a waiter notices it. Runs dr_region_outage in the eu-west-1-outage
-- world twice per latency setting: once as --predict does (waits notice the
-- moment the world changes), once as a drill does (waiters poll at their
-- pace). The difference, wait by wait, is the engine's share. The latencies
-- sweep ECS task starts and Route53 syncs over many values, so the world's
-- changes fall at every phase of the poll.
--   ATLAS_STATE_DIR=$(mktemp -d) build/atlas-run --quiet -e 'dofile("bench/engine_share.lua")'
local World = require "atlas.mock.world"
local runtime = require "atlas.run.runtime"
local playbook = require "atlas.run.playbook"
local params_mod = require "atlas.run.params"
local log = require "atlas.run.log"
local aws = require "atlas.aws"

local outage = require "atlas.mock.scenarios.eu-west-1-outage"
local pb = playbook.load(playbook.find("dr_region_outage"))
local params = params_mod.parse(pb.param_specs, {}, pb.validate)

-- waits{name -> {seconds, polls}} of one run
local function run(latencies, at_once)
    runtime.use_world(World.new { scenario = { description = "sweep", apply = outage.apply, latencies = latencies } })
    runtime.yes, runtime.notice_at_once = true, at_once
    local waits, order = {}, {}
    local previous = log.set_sink(function(e)
        if e.type == "wait" then
            local kind = e.service .. " " .. (e.name:match("^(%d+ running tasks)") and "running" or e.name:match("INSYNC") and "INSYNC" or "stable")
            waits[kind] = { seconds = e.seconds, polls = e.polls, pace = e.pace }
            order[#order + 1] = kind
        end
    end)
    local journal = require("atlas.run.journal").new(pb, params)
    journal.persist = false
    local result = playbook.run(pb, params, { journal = journal })
    log.set_sink(previous)
    runtime.notice_at_once = false
    assert(result.status == "ok", tostring(result.error))
    return waits, order
end

-- One sweep under a set of paces: kind -> {n, total, max, polls, seconds, pace}
local function sweep(pace)
    local saved = aws.PACE
    aws.PACE = pace
    local stats, settings = {}, 0
    -- Fractional steps: eight starts of a whole number of seconds would always
    -- land on the 4 s poll grid and hide the lag.
    for task = 20, 45, 0.74 do
        for insync = 30, 90, 6.1 do
            settings = settings + 1
            local latencies = { ecs_task_start = task, route53_insync = insync }
            local exact = run(latencies, true)
            local paced, order = run(latencies, false)
            for _, kind in ipairs(order) do
                local lag = paced[kind].seconds - exact[kind].seconds
                local st = stats[kind] or { n = 0, total = 0, max = 0, polls = 0, seconds = 0, pace = paced[kind].pace }
                stats[kind] = st
                st.n, st.total, st.max = st.n + 1, st.total + lag, math.max(st.max, lag)
                st.polls, st.seconds = st.polls + paced[kind].polls, st.seconds + paced[kind].seconds
            end
        end
    end
    aws.PACE = saved
    return stats, settings
end

local function show(title, stats, settings)
    print(string.format("%s: %d latency settings (ecs_task_start 20..45 s by 0.74, route53_insync 30..90 s by 6.1)", title, settings))
    print(string.format("  %-16s %6s %10s %10s %8s %10s", "wait", "pace", "mean lag", "max lag", "waits", "polls/s"))
    local kinds = {}
    for kind in pairs(stats) do
        kinds[#kinds + 1] = kind
    end
    table.sort(kinds)
    for _, kind in ipairs(kinds) do
        local st = stats[kind]
        print(
            string.format(
                "  %-16s %5gs %9.2fs %9.2fs %8d %10s",
                kind,
                st.pace,
                st.total / st.n,
                st.max,
                st.n,
                st.seconds > 0 and string.format("%.3f", st.polls / st.seconds) or "-"
            )
        )
    end
end

show("atlas-run's pace", sweep(aws.PACE))
show("the AWS CLI's delays (ECS 15 s, Route53 30 s)", sweep { ecs = 15, route53 = 30, rds = 30 })
print(string.format("aws.PACE: ecs %gs, route53 %gs, rds %gs", aws.PACE.ecs, aws.PACE.route53, aws.PACE.rds))
