-- --notify: a drill that fails or misses its RTO tells the team, through moto's
-- SNS (read back from an SQS queue subscribed to the topic) or a loopback
-- webhook. A drill that passes sends nothing.
local t = require "atlas.test"
local json = require "atlas.json"

local function webhook(status)
    local dir = t.tmpdir()
    local inbox = dir .. "/inbox.jsonl"
    local port = t.server { "python3", "tests/support/webhook_server.py", "PORT", inbox, tostring(status or 200) }
    return "http://127.0.0.1:" .. port .. "/hooks/drills", inbox
end

local function received(inbox)
    local f = io.open(inbox, "r")
    if not f then return {} end
    local out = {}
    for line in f:lines() do
        out[#out + 1] = json.decode(line)
    end
    f:close()
    return out
end

local function mock_drill(dir, args, env)
    local argv = { "--scenario", "eu-west-1-outage", "--yes" }
    for _, a in ipairs(args) do
        argv[#argv + 1] = a
    end
    env = env or {}
    env.ATLAS_STATE_DIR = dir
    return t.run(argv, { env = env })
end

t.case("a drill that misses its RTO posts its verdict and its report's location to a webhook", function()
    local url, inbox = webhook()
    local dir = t.tmpdir()
    local r = mock_drill(dir, { "--rto", "5m", "--notify", url, "--report", dir .. "/drill.html", "dr_region_outage" })
    t.eq(r.code, 5, r.stdout .. r.stderr)
    t.match(r.stdout, "notified http://127%.0%.0%.1:%d+/hooks/drills")
    local got = received(inbox)
    t.eq(#got, 1)
    t.eq(got[1].method, "POST")
    t.eq(got[1].path, "/hooks/drills")
    t.eq(got[1].content_type, "application/json")
    local body = json.decode(got[1].body)
    t.eq(body.verdict, "fail")
    t.eq(body.recovery_seconds, 450)
    t.eq(body.rto_seconds, 300)
    t.match(body.text, "^atlas%-run drill FAIL: dr_region_outage\n")
    t.match(body.text, "Recovery 7m30s against an RTO of 5m00s: recovery took longer than the RTO")
    t.match(body.text, "Report: " .. dir:gsub("%p", "%%%0") .. "/drill%.html")
    t.match(body.text, "Report: " .. dir:gsub("%p", "%%%0") .. "/mock/drills/dr_region_outage%-.*%.json")
end)

t.case("a drill that passes notifies nobody", function()
    local url, inbox = webhook()
    local dir = t.tmpdir()
    local r = mock_drill(dir, { "--rto", "15m", "--notify", url, "dr_region_outage" })
    t.eq(r.code, 0, r.stdout .. r.stderr)
    t.eq(#received(inbox), 0)
end)

t.case("a webhook that refuses is said on stderr; the drill keeps its exit code", function()
    local url = webhook(500)
    local dir = t.tmpdir()
    local r = mock_drill(dir, { "--rto", "5m", "--notify", url, "dr_region_outage" })
    t.eq(r.code, 5)
    t.match(r.stderr, "cannot notify http://127%.0%.0%.1:%d+/hooks/drills: the webhook answered HTTP 500")
end)

t.case("a bad --notify target, or --notify without a drill, exits 2 before anything runs", function()
    local dir = t.tmpdir()
    for _, c in ipairs {
        { { "--rto", "5m", "--notify", "mailto:sre@example.com", "dr_region_outage" }, "%-%-notify takes sns:ARN or an https:// webhook URL" },
        { { "--rto", "5m", "--notify", "sns:topic", "dr_region_outage" }, "not an SNS topic ARN" },
        { { "--notify", "https://hooks.example.com/x", "dr_region_outage" }, "give %-%-drill or %-%-rto too" },
    } do
        local r = mock_drill(dir, c[1])
        t.eq(r.code, 2, r.stdout .. r.stderr)
        t.match(r.stderr, c[2])
        t.ok(not r.stdout:find("%[1/"), "no step ran")
    end
end)

t.case("a failed drill publishes to an SNS topic (moto), even from the mock world", function()
    local endpoint = t.moto()
    local setup = t.spawn({ "python3", "tests/support/sns_inbox.py", endpoint, "setup" }, { timeout = 60 })
    t.eq(setup.code, 0, setup.stderr)
    local inbox = json.decode(setup.stdout)
    local dir = t.tmpdir()
    local r = mock_drill(dir, { "--rto", "5m", "--notify", "sns:" .. inbox.topic, "dr_region_outage" }, {
        AWS_ENDPOINT_URL = endpoint,
        AWS_ACCESS_KEY_ID = "testing",
        AWS_SECRET_ACCESS_KEY = "testing",
        AWS_EC2_METADATA_DISABLED = "true",
        AWS_PROFILE = false,
    })
    t.eq(r.code, 5, r.stdout .. r.stderr)
    t.match(r.stdout, "notified sns:arn:aws:sns:us%-east%-1:123456789012:atlas%-drills")
    local read = t.spawn({ "python3", "tests/support/sns_inbox.py", endpoint, "read", inbox.queue }, { timeout = 60 })
    t.eq(read.code, 0, read.stderr)
    local messages = json.decode(read.stdout)
    t.eq(#messages, 1)
    t.eq(messages[1].subject, "atlas-run drill FAIL: dr_region_outage")
    t.match(messages[1].message, "^Drill FAIL: dr_region_outage in mock world, scenario eu%-west%-1%-outage")
    t.match(messages[1].message, "Report: .*/mock/drills/dr_region_outage%-")
end)
