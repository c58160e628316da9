-- --drill and --rto: recovery time against its objective, measured to the
-- playbook's recovery point, and the drill report (world, real date, changes
-- before and after, confirmations, undone steps, verdict).
local t = require "atlas.test"
local json = require "atlas.json"

local FIX = "tests/fixtures/playbooks/"

local function drill(args, dir)
    local argv = { "--scenario", "eu-west-1-outage", "--yes" }
    for _, a in ipairs(args) do
        argv[#argv + 1] = a
    end
    return t.run(argv, { env = { ATLAS_STATE_DIR = dir } })
end

local function today() return (os.date("!%Y-%m-%d"):gsub("%-", "%%-")) end

t.case("a mock drill within its RTO passes: recovery to the recovery point plus detection and TTL", function()
    local dir = t.tmpdir()
    local r = drill({ "--rto", "15m", "--report", dir .. "/drill.json", "dr_region_outage" }, dir)
    t.eq(r.code, 0, r.stdout .. r.stderr)
    t.match(r.stdout, "drill pass: recovery 7m30s, RTO 15m00s")
    local report = json.decode(t.read_file(dir .. "/drill.json"))
    for _, key in ipairs { "playbook", "world", "started_at", "recovery_seconds", "rto_seconds", "verdict", "steps", "changes" } do
        t.ok(report[key] ~= nil, "top-level key " .. key)
    end
    t.eq(report.playbook, "dr_region_outage")
    t.eq(report.world, { kind = "mock", scenario = "eu-west-1-outage" })
    -- Virtual durations, real date: not the mock world's 2025-11-18 epoch.
    t.match(report.started_at, "^" .. today() .. "T%d%d:%d%d:%d%dZ$")
    -- 4 min of tasks starting and 1 min of DNS sync, then 30 s x 3 detection and a 60 s TTL.
    t.eq(report.recovery_measured, 300)
    t.eq(report.recovery_seconds, 450)
    t.eq(report.rto_seconds, 900)
    t.eq(report.verdict, "pass")
    t.eq(report.recovery_step, "wait for backup region to be stable")
    t.eq(#report.steps, 7)
    t.eq(report.steps[4].name, "wait for backup capacity")
    t.eq(report.steps[4].waited, 240)
    t.eq(report.steps[5].started_seconds, 240)
    t.eq(report.steps[3].confirmation, "Scale the backup region's service up?")
    t.eq(report.changes[1].before, 2)
    t.eq(report.changes[1].after, 10)
    t.match(report.changes[2].what, "route53 api%.atlas%-crm%.com records")
    t.match(report.changes[2].before[1], "^%[eu%-west%-1%] eu%-west%-1%.atlas%-crm%.com, TTL 60")
    t.match(report.changes[2].after[1], "^%[eu%-west%-1%] us%-east%-1%.atlas%-crm%.com, TTL 60")
    t.eq(#report.confirmations, 2)
    t.eq(report.confirmations[1].by, "--yes")
    t.match(report.run_by, "@")
    t.eq(report.params.desired_count, 10)
end)

t.case("a drill that misses its RTO exits 5 and its report says FAIL and why", function()
    local dir = t.tmpdir()
    local r = drill({ "--rto", "5m", "--report", dir .. "/drill.md", "dr_region_outage" }, dir)
    t.eq(r.code, 5, r.stdout .. r.stderr)
    t.match(r.stdout, "drill fail: recovery 7m30s, RTO 5m00s; recovery took longer than the RTO")
    local text = t.read_file(dir .. "/drill.md")
    t.match(text, "| RTO target | 5m00s |")
    t.match(text, "| actual recovery | 7m30s |")
    t.match(text, "| Route53 detection %(health check [%w%-]+: 30 s interval x 3 failures%) | 1m30s |")
    t.match(text, "| DNS TTL %(records of api%.atlas%-crm%.com: TTL 60 s%) | 1m00s |")
    t.match(text, "ecs service atlas%-crm%-production%-service%-us%-east%-1 %(us%-east%-1%) desired count: 2 → 10")
    t.match(text, "scenario: mock world, scenario eu%-west%-1%-outage")
    t.match(text, "started: " .. today())
    t.match(text, "## Verdict\n\n%*%*FAIL%*%*: recovery took longer than the RTO")
end)

t.case("a drill whose run fails before the recovery point keeps the run's exit code, verdict fail", function()
    local dir = t.tmpdir()
    -- The healthy world: the region is not down, so the failover refuses.
    local r = t.run(
        { "--scenario", "healthy", "--yes", "--rto", "15m", "--report", dir .. "/drill.json", "dr_region_outage" },
        { env = { ATLAS_STATE_DIR = dir } }
    )
    t.eq(r.code, 1, r.stdout .. r.stderr)
    local report = json.decode(t.read_file(dir .. "/drill.json"))
    t.eq(report.verdict, "fail")
    t.eq(report.recovery_seconds, json.null)
    t.match(report.verdict_reason, "recovery point %(wait for backup region to be stable%) was not reached")
end)

t.case("incident_start= measures from the incident; detection is then inside it, the TTL still added", function()
    local dir = t.tmpdir()
    local hour_ago = os.date("!%Y-%m-%dT%H:%M:%SZ", os.time() - 3600)
    local r = drill({ "--drill", "--report", dir .. "/drill.json", "dr_region_outage", "incident_start=" .. hour_ago }, dir)
    t.eq(r.code, 0, r.stdout .. r.stderr)
    local report = json.decode(t.read_file(dir .. "/drill.json"))
    -- An hour before the run, 300 s of run, 60 s of TTL (a few real seconds of slack for the clock).
    t.ok(report.recovery_seconds >= 3960 and report.recovery_seconds < 3970, tostring(report.recovery_seconds))
    t.eq(report.recovery_parts[1].counted, false, "detection is within incident_start")
    t.eq(report.recovery_parts[2].counted, true)
    t.eq(report.rto_seconds, json.null)
    t.eq(report.verdict, "pass")
end)

t.case("bad drill options exit 2 before anything runs, naming the problem", function()
    local dir = t.tmpdir()
    local cases = {
        { { "--rto", "soon", "dr_region_outage" }, '%-%-rto: "soon" is not a duration %(90s, 10m, 24h, 2d' },
        { { "--rto", "0", "dr_region_outage" }, '%-%-rto: "0" is not a duration' },
        { { "--drill", "dr_region_outage", "incident_start=2026-12-01T21:40:00+01:00" }, "is not a UTC time" },
        { { "--drill", "dr_region_outage", "incident_start=2999-01-01T00:00:00Z" }, "is in the future" },
        { { "--drill", "--dry-run", "dr_region_outage" }, "%-%-dry%-run changes nothing" },
        { { "--drill", FIX .. "steps.lua" }, "playbook steps declares no recovery point" },
        -- Without --drill, incident_start is no parameter of the playbook.
        { { "dr_region_outage", "incident_start=2026-12-01T21:40:00Z" }, 'unknown parameter "incident_start"' },
    }
    for _, c in ipairs(cases) do
        local r = drill(c[1], dir)
        t.eq(r.code, 2, table.concat(c[1], " ") .. ": " .. r.stdout .. r.stderr)
        t.match(r.stderr, c[2])
        t.ok(not r.stdout:find("%[1/"), "no step ran")
    end
end)

t.case("two recovery points in one playbook are refused at load", function()
    local dir = t.tmpdir()
    local path = t.write_file(
        dir .. "/two.lua",
        [[
local atlas = require "atlas"
return atlas.playbook { name = "two", description = "two recovery points", steps = {
    { name = "a", recovery_point = true, run = function() end },
    { name = "b", recovery_point = true, run = function() end },
} }
]]
    )
    local r = t.run({ "check", path })
    t.eq(r.code, 2)
    t.match(r.stdout .. r.stderr, "two steps declare recovery_point %(a and b%)")
end)

t.case("steps undone by --rollback show as undone in the report, not ok", function()
    local dir = t.tmpdir()
    local r = t.run(
        { "--yes", "--rollback", "--report", dir .. "/r.json", FIX .. "steps.lua", "mode=fail" },
        { env = { ATLAS_STATE_DIR = dir } }
    )
    t.eq(r.code, 1)
    local report = json.decode(t.read_file(dir .. "/r.json"))
    t.eq(report.steps[1].status, "undone")
    t.eq(report.steps[2].status, "failed")
    t.eq(report.verdict, "fail")
    t.eq(report.world.kind, "real")
    t.eq(report.world.account, nil, "no AWS call, so no STS call for the report")
end)

t.case("mock runs stamp their events with the real date, not the virtual epoch", function()
    local dir = t.tmpdir()
    local r = drill({ "--log-format", "json", "dr_region_outage" }, dir)
    t.eq(r.code, 0, r.stderr)
    local first = json.decode(r.stdout:match("^[^\n]+"))
    t.match(first.ts, "^" .. today() .. "T")
end)

t.case("a mock drill takes the same virtual time on every run, the throttling world's retry jitter included", function()
    local recoveries = {}
    for i = 1, 2 do
        local dir = t.tmpdir()
        local r = t.run(
            { "--scenario", "throttling", "--yes", "--drill", "--report", dir .. "/drill.json", "dr_region_outage", "force=true" },
            { env = { ATLAS_STATE_DIR = dir } }
        )
        t.eq(r.code, 0, r.stdout .. r.stderr)
        recoveries[i] = json.decode(t.read_file(dir .. "/drill.json")).recovery_measured
    end
    -- 300 s of tasks and DNS sync, plus the backoff of the throttled calls.
    t.ok(recoveries[1] > 300, "the retries took virtual time: " .. tostring(recoveries[1]))
    t.eq(recoveries[2], recoveries[1])
end)

t.case("--report x.html is a page that stands alone, in a DR test protocol's layout, with an SVG timeline", function()
    local dir = t.tmpdir()
    -- The throttling world: every ECS and Route53 operation is retried twice.
    local r = t.run(
        { "--scenario", "throttling", "--yes", "--rto", "5m", "--report", dir .. "/drill.html", "dr_region_outage", "force=true" },
        { env = { ATLAS_STATE_DIR = dir } }
    )
    t.eq(r.code, 5, r.stdout .. r.stderr)
    local read = t.spawn({ "python3", "tests/support/html_report_facts.py", dir .. "/drill.html" }, { timeout = 30 })
    t.eq(read.code, 0, read.stderr)
    local page = json.decode(read.stdout)
    t.ok(page.doctype, "starts with <!DOCTYPE html>")
    -- No scripts, no network: nothing to run, nothing fetched.
    for _, tag in ipairs(page.tags) do
        t.ok(tag ~= "script" and tag ~= "link" and tag ~= "img" and tag ~= "iframe", "no <" .. tag .. ">")
    end
    t.eq(page.fetches, {})
    t.eq(page.handlers, {})
    t.eq(page.headings, { "Drill report: dr_region_outage", "Parameters", "Recovery", "Timeline", "Changes", "Confirmations", "Observations", "Verdict" })
    t.match(page.protocol.ID, "^dr_region_outage%-")
    t.eq(page.protocol.Scenario, "mock world, scenario throttling")
    t.match(page.protocol.Started, "^" .. today())
    t.eq(page.protocol["RTO target"], "5m00s")
    -- The world's own dice throw the retry jitter: the same every run.
    t.eq(page.protocol["Actual recovery"], "7m40s")
    t.eq(page.protocol.Verdict, "FAIL")
    -- One bar per step, in order, on one time axis.
    t.eq(#page.bars, 7)
    t.match(page.bars[4].title, "^wait for backup capacity: ok, 4m00s")
    t.ok(page.bars[5].x > page.bars[4].x, "DNS after the capacity wait")
    t.ok(page.waits >= 2, "the two waits are shaded")
    t.eq(page.confirmations, 2)
    t.eq(page.retries, 16)
    t.eq(#page.parts, 2, "Route53 detection and DNS TTL")
    -- The RTO as a line; the recovery ends to its right: the miss is visible.
    t.ok(page.lines.rto and page.lines.recovered, "RTO and recovery lines")
    t.ok(page.lines.rto < page.lines.recovered)
    t.ok(page.lines.recovered <= page.width)
end)

t.case("each drill is kept in the state store; `drills` lists them with recovery, RTO, margin and trend", function()
    local dir = t.tmpdir()
    -- Fewer tasks to start, a shorter recovery: 4, 6, then 10 tasks make a rising trend.
    for _, count in ipairs { "4", "6", "10" } do
        local r = drill({ "--rto", "7m", "dr_region_outage", "desired_count=" .. count }, dir)
        t.eq(r.code, count == "10" and 5 or 0, r.stdout .. r.stderr)
    end
    -- A file in the history that is no drill report is named, not fatal.
    t.write_file(dir .. "/mock/drills/garbage.json", "not json")
    local r = t.run({ "--mock", "drills" }, { env = { ATLAS_STATE_DIR = dir } })
    t.eq(r.code, 0, r.stderr)
    local rows = {}
    for line in r.stdout:gmatch("[^\n]+") do
        if line:find("dr_region_outage  ", 1, true) then rows[#rows + 1] = line end
    end
    t.eq(#rows, 3, r.stdout)
    t.match(rows[1], "mock eu%-west%-1%-outage%s+4m30s%s+7m00s%s+2m30s%s+pass")
    t.match(rows[2], "5m30s%s+7m00s%s+1m30s%s+pass")
    t.match(rows[3], "7m30s%s+7m00s%s+%-30%.0s%s+fail")
    t.match(
        r.stdout,
        "dr_region_outage: 3 drill%(s%), 2 passed; recovery rising by 1m30s per drill %(4m30s %-> 7m30s%); the last missed the RTO 7m00s"
    )
    t.match(r.stdout, "unreadable: drills/garbage%.json: line 1 column %d+: invalid token")
    -- The real world's history is another store: mock drills are not in it.
    r = t.run({ "drills" }, { env = { ATLAS_STATE_DIR = dir } })
    t.eq(r.code, 0, r.stderr)
    t.match(r.stdout, "\n  none\n")
end)

t.case("a drill that cannot be kept in the history fails the run (exit 1) and says where", function()
    local dir = t.tmpdir()
    require("atlas.sys").mkdir(dir .. "/mock")
    t.write_file(dir .. "/mock/drills", "a file where the directory goes")
    local r = drill({ "--rto", "15m", "dr_region_outage" }, dir)
    t.eq(r.code, 1, r.stdout .. r.stderr)
    t.match(r.stderr, "cannot keep the drill in the history: .*mock/drills/dr_region_outage%-")
end)

t.case("the trend is the least-squares slope: one slow drill among fast ones is no trend", function()
    local trend = require("atlas.run.drill").trend
    for _, c in ipairs {
        { {}, "steady", 0 },
        { { 300 }, "steady", 0 },
        { { 300, 300, 300 }, "steady", 0 },
        { { 100, 200, 300 }, "rising", 100 },
        { { 300, 200, 100 }, "falling", -100 },
        { { 100, 500, 100 }, "steady", 0 },
        { { 300, 300.5 }, "steady", 0.5 },
    } do
        local direction, slope = trend(c[1])
        t.eq(direction, c[2], table.concat(c[1], ","))
        t.eq(slope, c[3], table.concat(c[1], ","))
    end
end)

t.case("--help PLAYBOOK shows which step is the recovery point", function()
    local r = t.run({ "--help", "dr_region_outage" })
    t.eq(r.code, 0, r.stderr)
    t.match(r.stdout, "6%. wait for backup region to be stable  %[recovery point: a drill's recovery time ends here%]")
end)
