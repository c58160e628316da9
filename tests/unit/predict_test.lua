-- --predict: a drill's recovery time, predicted from the mock world's
-- latencies before the drill; its critical path, the engine's share of each
-- wait, and the steps that could overlap.
local t = require "atlas.test"
local json = require "atlas.json"

local function predict(args, dir)
    local argv = { "--drill", "--predict", "--log-format", "json" }
    for _, a in ipairs(args) do
        argv[#argv + 1] = a
    end
    local r = t.run(argv, { env = { ATLAS_STATE_DIR = dir or t.tmpdir() } })
    local ok, doc = pcall(json.decode, r.stdout)
    r.prediction = ok and doc or nil
    return r
end

-- A scenario file: eu-west-1-outage with some of the world's latencies changed.
local function outage_with(latencies)
    local dir = t.tmpdir()
    local fields = {}
    for name, seconds in pairs(latencies) do
        fields[#fields + 1] = string.format("%s = %s", name, tostring(seconds))
    end
    local path = dir .. "/scenario.lua"
    t.write_file(
        path,
        string.format(
            'local base = require "atlas.mock.scenarios.eu-west-1-outage"\n'
                .. 'return { description = "eu-west-1 down, other latencies", apply = base.apply, latencies = { %s } }\n',
            table.concat(fields, ", ")
        )
    )
    return path
end

local function sum_of_path(p)
    local total = 0
    for _, part in ipairs(p.parts) do
        total = total + part.seconds
    end
    for _, step in ipairs(p.path) do
        total = total + step.seconds
    end
    return total
end

local function wait_of(p, step_name)
    for _, step in ipairs(p.path) do
        if step.name == step_name then return step.waits[1], step end
    end
end

t.case("the prediction for dr_region_outage is the sum along its critical path, made of the world's latencies", function()
    local r = predict { "--scenario", "eu-west-1-outage", "dr_region_outage" }
    t.eq(r.code, 0, r.stdout .. r.stderr)
    local p = r.prediction
    t.eq(p.playbook, "dr_region_outage")
    t.eq(p.world, { kind = "mock", scenario = "eu-west-1-outage" })
    t.eq(p.recovery_step, "wait for backup region to be stable")
    t.eq(p.recovery_seconds, sum_of_path(p))
    -- The path ends at the recovery point; the report step is not on it.
    t.eq(#p.path, 6)
    t.eq(p.path[6].name, p.recovery_step)
    -- 8 tasks start one after the other, then Route53 syncs: the waits.
    local capacity = wait_of(p, "wait for backup capacity")
    t.eq(capacity.latencies, { { latency = "ecs_task_start", count = 8, seconds = 240, each = 30 } })
    local dns = wait_of(p, "disable failed region in DNS")
    t.eq(dns.latencies, { { latency = "route53_insync", count = 1, seconds = 60, each = 60 } })
    -- The engine's share: at most one pace per wait, 5 s or less for ECS and Route53.
    for _, step in ipairs(p.path) do
        for _, wait in ipairs(step.waits) do
            t.ok(wait.engine_seconds <= 5, wait.name .. ": engine share " .. wait.engine_seconds .. " s")
        end
    end
    t.eq(p.engine_seconds, capacity.engine_seconds + dns.engine_seconds)
    t.ok(p.engine_seconds > 0, "the engine's share is part of the prediction")
    -- What the engine cannot see: detection (interval x threshold) and the TTL.
    t.eq(p.parts[1].name, "Route53 detection")
    t.eq(p.parts[1].seconds, 90)
    t.eq(p.parts[2].name, "DNS TTL")
    t.eq(p.parts[2].seconds, 60)
    t.eq(p.recovery_seconds, 90 + 240 + 60 + p.engine_seconds + 60)
end)

t.case("changing one latency in a scenario moves the prediction by exactly that much", function()
    local base = predict({ "--scenario", outage_with {}, "dr_region_outage" }).prediction
    t.ok(base, "a prediction in the unchanged world")
    for _, case in ipairs {
        { { route53_insync = 90 }, 30 },
        { { dns_ttl = 300 }, 240 },
        -- Detection is interval x threshold: 10 s x 3 instead of 30 s x 3.
        { { health_check_interval = 10 }, -60 },
        { { health_check_failure_threshold = 5 }, 60 },
        -- Eight tasks start one after the other: each takes 15 s more.
        { { ecs_task_start = 45 }, 8 * 15 },
        -- Not on this playbook's path: no change.
        { { rds_replica_promotion = 600 }, 0 },
    } do
        local r = predict { "--scenario", outage_with(case[1]), "dr_region_outage" }
        t.eq(r.code, 0, r.stdout .. r.stderr)
        local name = next(case[1])
        t.eq(r.prediction.recovery_seconds - base.recovery_seconds, case[2], name)
        t.eq(r.prediction.recovery_seconds, sum_of_path(r.prediction), name)
        t.eq(r.prediction.latencies[name], case[1][name])
    end
end)

t.case("a mock drill then measures what was predicted, short of the engine's bound", function()
    local dir = t.tmpdir()
    local p = predict({ "--scenario", "eu-west-1-outage", "dr_region_outage" }, dir).prediction
    local r = t.run(
        { "--scenario", "eu-west-1-outage", "--yes", "--drill", "--report", dir .. "/drill.json", "dr_region_outage" },
        { env = { ATLAS_STATE_DIR = dir } }
    )
    t.eq(r.code, 0, r.stdout .. r.stderr)
    local measured = json.decode(t.read_file(dir .. "/drill.json")).recovery_seconds
    t.ok(measured <= p.recovery_seconds, string.format("measured %s <= predicted %s", measured, p.recovery_seconds))
    t.ok(
        measured >= p.recovery_seconds - p.engine_seconds,
        string.format("measured %s >= predicted %s minus the engine's bound", measured, p.recovery_seconds)
    )
end)

t.case("the text prediction names the critical path, its waits, the engine's share and the steps that could overlap", function()
    local r = t.run({ "--scenario", "eu-west-1-outage", "--drill", "--predict", "dr_region_outage" }, { env = { ATLAS_STATE_DIR = t.tmpdir() } })
    t.eq(r.code, 0, r.stderr)
    t.match(r.stdout, "Predicted recovery of dr_region_outage: 7m38s %(mock world, scenario eu%-west%-1%-outage%)")
    t.match(r.stdout, "ecs_task_start 8 x 30")
    t.match(r.stdout, "route53_insync 1 x 1m00s")
    t.match(r.stdout, "engine <= 4")
    t.match(r.stdout, "Route53 detection +1m30s")
    t.match(r.stdout, "DNS TTL +1m00s")
    -- The two read-only checks could run together; a change waits for every check before it.
    t.match(r.stdout, "verify failed region is down  ||  verify backup region is healthy")
    t.no_match(r.stdout, "||  scale up backup region")
    t.no_match(r.stdout, "||  disable failed region in DNS\n")
end)

t.case("--rto with --predict: a predicted miss exits 5, a predicted pass 0", function()
    local r = t.run({ "--scenario", "eu-west-1-outage", "--rto", "15m", "--predict", "dr_region_outage" }, { env = { ATLAS_STATE_DIR = t.tmpdir() } })
    t.eq(r.code, 0, r.stderr)
    t.match(r.stdout, "RTO 15m00s: predicted to meet it")
    r = t.run({ "--scenario", "eu-west-1-outage", "--rto", "5m", "--predict", "dr_region_outage" }, { env = { ATLAS_STATE_DIR = t.tmpdir() } })
    t.eq(r.code, 5, r.stderr)
    t.match(r.stdout, "RTO 5m00s: predicted to MISS it")
end)

t.case("a prediction touches nothing: no journal, no saved records, no drill history", function()
    local dir = t.tmpdir()
    local r = predict({ "--scenario", "eu-west-1-outage", "dr_region_outage" }, dir)
    t.eq(r.code, 0, r.stderr)
    t.eq(require("atlas.sys").readdir(dir), {})
end)

t.case("--predict refuses what it cannot do, and says why a simulation did not recover", function()
    local dir = t.tmpdir()
    for _, case in ipairs {
        { { "--report", dir .. "/x.md" }, "%-%-predict runs nothing outside this process: drop %-%-report" },
        { { "--resume" }, "drop %-%-resume" },
        { { "--notify", "sns:arn:aws:sns:us-east-1:123456789012:t" }, "drop %-%-notify" },
        { { "--dry-run" }, "%-%-dry%-run changes nothing" },
    } do
        local argv = { "--scenario", "eu-west-1-outage", "--predict" }
        for _, a in ipairs(case[1]) do
            argv[#argv + 1] = a
        end
        argv[#argv + 1] = "dr_region_outage"
        local r = t.run(argv, { env = { ATLAS_STATE_DIR = dir } })
        t.eq(r.code, 2, table.concat(argv, " ") .. ": " .. r.stderr)
        t.match(r.stderr, case[2])
    end
    -- A playbook without a recovery point has no recovery time to predict.
    local r = t.run({ "--mock", "--predict", "diag_health" }, { env = { ATLAS_STATE_DIR = dir } })
    t.eq(r.code, 2)
    t.match(r.stderr, "declares no recovery point")
    -- The healthy world: the failover refuses to move a healthy region.
    r = t.run({ "--predict", "dr_region_outage" }, { env = { ATLAS_STATE_DIR = dir } })
    t.eq(r.code, 1, r.stdout .. r.stderr)
    t.match(r.stderr, 'the simulated run failed at step "verify failed region is down" before the recovery point: .*looks healthy')
end)

t.case("dr_database_failure declares its recovery point: a promotion's prediction is made of the replica promotion", function()
    local r = predict { "--scenario", "eu-west-1-db-failure", "dr_database_failure" }
    t.eq(r.code, 0, r.stdout .. r.stderr)
    local p = r.prediction
    t.eq(p.recovery_step, "sequences on the new primary")
    local promote = wait_of(p, "promote the read replica")
    t.eq(promote.latencies, { { latency = "rds_replica_promotion", count = 1, seconds = 120, each = 120 } })
    t.eq(p.recovery_seconds, sum_of_path(p))
end)
