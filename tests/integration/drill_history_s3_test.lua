-- The drill history in a team's shared store: a real-world drill against moto
-- keeps its JSON report at s3://BUCKET/PREFIX/drills/<run id>.json (read back
-- by boto3, not by atlas), and `atlas-run drills` on any machine of the team
-- lists it from there.
local t = require "atlas.test"
local json = require "atlas.json"
local sys = require "atlas.sys"

local make_shared = dofile("tests/support/shared_state.lua")

-- What boto3 sees under s3://atlas-state/PREFIX: {{key=, body=}, ...} by key.
local function boto3_objects(endpoint, prefix)
    local argv = { "python3", "tests/support/s3_objects.py", endpoint, "atlas-state", "list", prefix }
    local r = t.spawn(argv, { timeout = 60 })
    t.eq(r.code, 0, r.stderr)
    return json.decode(r.stdout)
end

-- boto3_put(endpoint, key, body, key, body, ...)
local function boto3_put(endpoint, ...)
    local argv = { "python3", "tests/support/s3_objects.py", endpoint, "atlas-state", "put", ... }
    local r = t.spawn(argv, { timeout = 60 })
    t.eq(r.code, 0, r.stderr)
end

local function quoted(s) return (s:gsub("%p", "%%%0")) end

t.case("a real drill's report is kept in the team's S3 store; `drills` on another machine lists it", function()
    local moto = dofile("tests/support/moto_world.lua")(t)
    local shared = make_shared(t, { moto = moto, prefix = "team" })
    local dir = t.tmpdir()
    local replies = t.write_file(dir .. "/ok.json", '[{"status": 200, "body": "{\\"status\\":\\"UP\\"}"}]')
    local port = t.server { "python3", "tests/support/canned_server.py", "PORT", replies }
    local health = "health_url=http://127.0.0.1:" .. port .. "/{region}/actuator/health"
    local a = shared.machine(t.tmpdir(), { USER = "alice" })

    local r = t.run(
        { "--yes", "--rto", "1h", "playbooks/dr_region_outage.lua", "force=true", "desired_count=6", health },
        { env = a }
    )
    t.eq(r.code, 0, r.stdout .. r.stderr)
    t.match(r.stdout, "drill pass")

    -- boto3 finds the report under the store's prefix, named by the run.
    local objects = boto3_objects(moto.endpoint, "team/drills/")
    t.eq(#objects, 1, json.encode(objects))
    local run_id = objects[1].key:match("^team/drills/(dr_region_outage%-.+)%.json$")
    t.ok(run_id, "the key is drills/<run id>.json: " .. objects[1].key)
    t.eq(run_id, shared.store():get("dr_region_outage.last"), "the drill's own run")
    local report = json.decode(objects[1].body)
    t.eq(report.playbook, "dr_region_outage")
    t.eq(report.run_id, run_id)
    t.eq(report.verdict, "pass")
    t.eq(report.rto_seconds, 3600)
    t.eq(report.world, { kind = "real", account = "123456789012", region = "eu-west-1", endpoint = moto.endpoint })
    -- 90 s of Route53 detection and 60 s of DNS TTL on top of what was measured
    t.eq(report.recovery_seconds, report.recovery_measured + 150)
    t.eq(sys.stat(a.ATLAS_STATE_DIR .. "/drills"), nil, "nothing kept on alice's disk")

    -- Bob's machine has never run a drill: it reads the team's history.
    local b = shared.machine(t.tmpdir(), { USER = "bob" })
    local row = "\n  "
        .. quoted(report.started_at)
        .. "%s+dr_region_outage%s+123456789012 eu%-west%-1%s+"
        .. quoted(require("atlas.run.log").seconds_text(report.recovery_seconds))
        .. "%s+60m00s%s+%S+%s+pass"
    for _, args in ipairs { { "drills" }, { "drills", "dr_region_outage" } } do
        r = t.run(args, { env = b })
        t.eq(r.code, 0, r.stdout .. r.stderr)
        t.match(r.stdout, "^drills in s3://atlas%-state/team/drills/ %(oldest first%):\n")
        t.match(r.stdout, row)
        t.match(r.stdout, "dr_region_outage: 1 drill%(s%), 1 passed; one recovery so far; the last met the RTO 60m00s")
        t.no_match(r.stdout, "unreadable")
    end
    r = t.run({ "drills", "dr_region_recovery" }, { env = b })
    t.eq(r.code, 0, r.stderr)
    t.match(r.stdout, "\n  none\n")
    t.no_match(r.stdout, "dr_region_outage")
    -- Without the shared store, bob's own directory has no drills.
    r = t.run({ "drills" }, { env = shared.machine(b.ATLAS_STATE_DIR, { ATLAS_STATE = false }) })
    t.eq(r.code, 0, r.stderr)
    t.match(r.stdout, "\n  none\n")
end)

t.case("`drills` on S3: a key that is not a drill report is listed as unreadable; a missing store exits 2", function()
    local shared = make_shared(t, { prefix = "team" })
    local env = shared.machine(t.tmpdir())
    local good = json.encode {
        playbook = "dr_region_outage",
        run_id = "dr_region_outage-1",
        started_at = "2026-11-30T02:00:00Z",
        recovery_seconds = 400,
        rto_seconds = 900,
        verdict = "pass",
        world = { kind = "real", account = "123456789012", region = "eu-west-1" },
    }
    boto3_put(
        shared.endpoint,
        "team/drills/dr_region_outage-1.json", good,
        "team/drills/garbage.json", "not json",
        "team/drills/other.json", '{"status": "ok"}',
        "team/drills/number.json", "42"
    )
    local r = t.run({ "drills" }, { env = env })
    t.eq(r.code, 0, r.stdout .. r.stderr)
    t.match(
        r.stdout,
        "2026%-11%-30T02:00:00Z%s+dr_region_outage%s+123456789012 eu%-west%-1%s+6m40s%s+15m00s%s+8m20s%s+pass"
    )
    t.match(r.stdout, "dr_region_outage: 1 drill%(s%), 1 passed")
    t.match(r.stdout, "unreadable: drills/garbage%.json: line 1 column %d+: invalid token")
    t.match(r.stdout, "unreadable: drills/other%.json: not a drill report")
    t.match(r.stdout, "unreadable: drills/number%.json: not a drill report")
    t.no_match(r.stdout, ": 0x", "no Lua value's address for a reason")

    -- The store itself cannot be read: what, where and why, exit 2.
    local cases = {
        {
            { ATLAS_STATE = "s3://no-such-bucket/team" },
            "cannot list the drills in s3://no%-such%-bucket/team/drills/: .*NoSuchBucket",
        },
        {
            { AWS_ENDPOINT_URL = "http://127.0.0.1:" .. sys.free_port() },
            "cannot list the drills in s3://atlas%-state/team/drills/: .*ConnectionError",
        },
        { { ATLAS_LOCK_TABLE = false }, "needs a DynamoDB lock table" },
    }
    for _, c in ipairs(cases) do
        r = t.run({ "drills" }, { env = shared.machine(env.ATLAS_STATE_DIR, c[1]) })
        t.eq(r.code, 2, json.encode(c[1]) .. ": " .. r.stdout .. r.stderr)
        t.match(r.stderr, c[2])
        t.no_match(r.stderr, "traceback")
    end
end)
