-- Shared state for a team (atlas.state.s3): journals and saved DNS records
-- in S3, run locks in DynamoDB, against moto. Each "machine" is an
-- atlas-run process with its own local state directory.
local t = require "atlas.test"
local sys = require "atlas.sys"
local json = require "atlas.json"

local FIX = "tests/fixtures/playbooks/"

-- One moto for the file; each case has a prefix (and so locks) of its own.
local endpoint = t.moto()
local make_shared = dofile("tests/support/shared_state.lua")
local cases = 0
local function shared_state()
    cases = cases + 1
    return make_shared(t, { endpoint = endpoint, prefix = "case-" .. cases })
end

dofile("tests/support/store_contract.lua")(t, "s3", function()
    local shared = shared_state()
    return shared.store()
end)

t.case("two runs with separate state directories contend for one lock in DynamoDB", function()
    local shared = shared_state()
    local a = shared.machine(t.tmpdir(), { USER = "alice", ATLAS_LOCK_LEASE = "2" })
    local b = shared.machine(t.tmpdir(), { USER = "bob", ATLAS_LOCK_LEASE = "2" })
    local log = os.tmpname()
    t.defer(function() os.remove(log) end)
    local pid = assert(
        sys.spawn(
            { t.binary(), "--yes", FIX .. "steps.lua", "mode=sleep" },
            { stdout = log, stderr = log, stdin = "/dev/null", env = a }
        )
    )
    t.defer(function()
        sys.kill(-pid, "KILL")
        sys.wait(pid)
    end)
    -- A holds the lock once its first step has run.
    local deadline = sys.monotime() + 20
    while not (t.read_file(log) or ""):find("one ran", 1, true) do
        t.ok(sys.monotime() < deadline, "A never started: " .. (t.read_file(log) or ""))
        sys.sleep(0.05)
    end
    local r = t.run({ "--yes", FIX .. "steps.lua" }, { env = b })
    t.eq(r.code, 4, r.stdout .. r.stderr)
    t.match(r.stderr, 'another run holds the lock "steps" %(alice@[^,]+, pid ' .. pid .. ", run steps%-")
    -- Longer than the lease: A renews it while it sleeps, so B is still refused.
    sys.sleep(3)
    r = t.run({ "--yes", FIX .. "steps.lua" }, { env = b })
    t.eq(r.code, 4, "A renews its lease during a long wait: " .. r.stderr)

    -- A's machine dies: no release, no renewal. Until the lease runs out B waits.
    sys.kill(-pid, "KILL")
    sys.wait(pid)
    local killed = sys.monotime()
    r = t.run({ "--yes", FIX .. "steps.lua" }, { env = b })
    if sys.monotime() - killed < 1.5 then t.eq(r.code, 4, "the lease is still live: " .. r.stderr) end
    sys.sleep(math.max(0, 2.5 - (sys.monotime() - killed)))
    r = t.run({ "--yes", FIX .. "steps.lua" }, { env = b })
    t.eq(r.code, 0, r.stdout .. r.stderr)
    t.match(r.stdout, "the lease of alice@[^,]+, pid " .. pid .. ".-ran out .- taking the lock over")
    t.match(r.stdout, "three ran")
    -- B released it at the end: a third run takes it at once.
    r = t.run({ "--yes", FIX .. "steps.lua" }, { env = b })
    t.eq(r.code, 0, r.stderr)
end)

-- A run stopped by Ctrl-C still writes its journal's last state and
-- releases its lock: the store is atlas-run's own, not the world's, so the
-- rule "after Ctrl-C nothing calls out" does not apply to it.
t.case("Ctrl-C: the shared journal says interrupted and the lock is free at once", function()
    local shared = shared_state()
    local a = shared.machine(t.tmpdir(), { USER = "alice", ATLAS_LOCK_LEASE = "60" })
    local log = os.tmpname()
    t.defer(function() os.remove(log) end)
    local pid = assert(
        sys.spawn(
            { t.binary(), "--yes", FIX .. "steps.lua", "mode=sleep" },
            { stdout = log, stderr = log, stdin = "/dev/null", env = a }
        )
    )
    t.defer(function()
        sys.kill(-pid, "KILL")
        sys.wait(pid)
    end)
    local deadline = sys.monotime() + 20
    while not (t.read_file(log) or ""):find("one ran", 1, true) do
        t.ok(sys.monotime() < deadline, "A never started: " .. (t.read_file(log) or ""))
        sys.sleep(0.05)
    end
    sys.sleep(1) -- into step two's long wait
    sys.kill(pid, "INT")
    local exited, code
    repeat
        exited, code = sys.wait(pid, true)
        if not exited then sys.sleep(0.05) end
        t.ok(sys.monotime() < deadline + 10, "A did not stop after Ctrl-C")
    until exited
    t.eq(code, 3, t.read_file(log))
    local store = shared.store()
    local run_id = assert(store:get("steps.last"))
    local record = json.decode(assert(store:get("runs/" .. run_id .. ".json")))
    t.eq(record.status, "interrupted")
    t.eq(record.steps[2].status, "interrupted")
    -- The lease had 60 s to go: only a release frees it this soon.
    local r = t.run({ "--yes", FIX .. "steps.lua" }, { env = shared.machine(t.tmpdir()) })
    t.eq(r.code, 0, r.stdout .. r.stderr)
end)

t.case("atlas-run unlock releases a dead holder's lock; its run would stop at its next renewal", function()
    local shared = shared_state()
    local store = shared.store { lease = 60 }
    local held = assert(store:lock("steps", { run_id = "steps-dead-1" }))
    t.defer(function() held:release() end)
    local b = shared.machine(t.tmpdir())
    local r = t.run({ "--yes", FIX .. "steps.lua" }, { env = b })
    t.eq(r.code, 4)
    t.match(r.stderr, "run steps%-dead%-1")
    -- A live lease is not released without a confirmation.
    r = t.run({ "unlock", "steps-dead-1" }, { env = b })
    t.eq(r.code, 3, r.stdout .. r.stderr)
    r = t.run({ "--yes", "unlock", "steps-dead-1" }, { env = b })
    t.eq(r.code, 0, r.stderr)
    t.match(r.stdout, "released the run lock steps")
    r = t.run({ "--yes", FIX .. "steps.lua" }, { env = b })
    t.eq(r.code, 0, r.stderr)
    -- The holder learns it at its next renewal and stops.
    held.renew_at = 0
    t.raises(function() held:renew() end, "lost the run lock .*released")
    t.raises(function() held:renew() end, "lost the run lock", "and on every later call")
    held:release()
    r = t.run({ "unlock", "nothing-1" }, { env = b })
    t.eq(r.code, 0)
    t.match(r.stdout, "nothing to release")
end)

t.case("an unreachable or denied store exits 2 with what and why, never 4", function()
    local shared = shared_state()
    local dir = t.tmpdir()
    local cases = {
        { { ATLAS_STATE = "s3://no-such-bucket/team" }, "no%-such%-bucket" },
        { { ATLAS_LOCK_TABLE = "no-such-table" }, "no%-such%-table.*ResourceNotFound" },
        { { AWS_ENDPOINT_URL = "http://127.0.0.1:" .. sys.free_port() }, "ConnectionError" },
        { { ATLAS_LOCK_TABLE = false }, "needs a DynamoDB lock table" },
        { { ATLAS_STATE = "s3://" }, "expected s3://BUCKET/PREFIX" },
    }
    for _, c in ipairs(cases) do
        local r = t.run({ "--yes", FIX .. "steps.lua" }, { env = shared.machine(dir, c[1]) })
        t.eq(r.code, 2, json.encode(c[1]) .. ": " .. r.stderr)
        t.match(r.stderr, c[2])
        t.no_match(r.stderr, "another run holds")
    end
    local r = t.run({ "--lock-table", "atlas-locks", "--yes", FIX .. "steps.lua" }, { env = { ATLAS_STATE = false } })
    t.eq(r.code, 2)
    t.match(r.stderr, "give %-%-state s3://BUCKET/PREFIX too")
    r = t.run({ "--mock", "--yes", FIX .. "steps.lua" }, { env = shared.machine(dir) })
    t.eq(r.code, 2)
    t.match(r.stderr, "mock world keeps its state in the local directory")
    r = t.run({ "runs" }, { env = shared.machine(dir, { ATLAS_STATE = "s3://no-such-bucket/team" }) })
    t.eq(r.code, 2)
    t.match(r.stderr, "no%-such%-bucket")
end)

t.case("a run started on one machine is resumed on another; runs and show read the shared store", function()
    local shared = shared_state()
    local a = shared.machine(t.tmpdir(), { USER = "alice" })
    local b = shared.machine(t.tmpdir(), { USER = "bob" })
    -- Step two fails once; the resume (with the run's own parameters) gets past it.
    local marker = t.tmpdir() .. "/failed-once"
    local r = t.run({ "--yes", FIX .. "steps.lua", "fail_once_file=" .. marker }, { env = a })
    t.eq(r.code, 1)
    r = t.run({ "--yes", "--resume", FIX .. "steps.lua" }, { env = b })
    t.eq(r.code, 0, r.stdout .. r.stderr)
    t.match(r.stdout, "skip %[1/3%] one")
    t.match(r.stdout, "state%.one=1")
    r = t.run({ "runs" }, { env = b })
    t.eq(r.code, 0, r.stderr)
    local run_id = r.stdout:match("(steps%-%S+)")
    t.ok(run_id, r.stdout)
    t.match(r.stdout, "steps%s+ok%s+alice@")
    r = t.run({ "show", run_id }, { env = a })
    t.eq(r.code, 0, r.stderr)
    t.match(r.stdout, "started .* by alice@")
    t.match(r.stdout, "resumed .* by bob@")
    t.match(r.stdout, "ok%s+1%. one")
    t.match(r.stdout, "ok%s+3%. three")
    t.match(r.stdout, "s3://atlas%-state/case%-%d+/runs/" .. run_id:gsub("%p", "%%%0") .. "%.json")
    r = t.run({ "show", "no-such-run" }, { env = a })
    t.eq(r.code, 2)
end)

t.case("a failover started on one machine is finished by a second and recovered by a third", function()
    local moto = dofile("tests/support/moto_world.lua")(t)
    local shared = make_shared(t, { moto = moto, prefix = "dr" })
    local dir = t.tmpdir()
    local replies = t.write_file(dir .. "/ok.json", '[{"status": 200, "body": "{\\"status\\":\\"UP\\"}"}]')
    local port = t.server { "python3", "tests/support/canned_server.py", "PORT", replies }
    local health = "health_url=http://127.0.0.1:" .. port .. "/{region}/actuator/health"
    local machines = {}
    for _, name in ipairs { "a", "b", "c" } do
        machines[name] = shared.machine(t.tmpdir(), { USER = name })
    end
    local dns = require "atlas.dns"
    local before = select(2, dns.records {})

    -- A verifies the region and stops at the first confirmation (no terminal, no --yes).
    local r = t.run({ "playbooks/dr_region_outage.lua", "force=true", "desired_count=6", health }, { env = machines.a })
    t.eq(r.code, 3, r.stdout .. r.stderr)
    -- B continues A's run from the shared journal.
    r = t.run({ "--yes", "--resume", "playbooks/dr_region_outage.lua" }, { env = machines.b })
    t.eq(r.code, 0, r.stdout .. r.stderr)
    -- "Is it down?" is checked again on resume; the steps after it were never run.
    t.match(r.stdout, "chk  %[1/%d+%] verify failed region is down")
    t.eq(dns.regions_served()["eu-west-1"], "us-east-1")
    local store = shared.store()
    local saved = assert(store:get("dns/api.atlas-crm.com.eu-west-1.json"), "the replaced records are in S3")
    t.eq(#json.decode(saved), 1)
    t.eq(sys.stat(machines.b.ATLAS_STATE_DIR .. "/dns"), nil, "nothing saved on B's disk")

    -- C has never seen this failover: it recovers from what B saved.
    r = t.run({ "--yes", "playbooks/dr_region_recovery.lua", health }, { env = machines.c })
    t.eq(r.code, 0, r.stdout .. r.stderr)
    t.eq(select(2, dns.records {}), before, "the records are back exactly as they were")
    local _, _, code = store:get("dns/api.atlas-crm.com.eu-west-1.json")
    t.eq(code, "NotFound", "the saved records are spent")
    r = t.run({ "runs" }, { env = machines.c })
    t.match(r.stdout, "dr_region_recovery%s+ok%s+c@")
    t.match(r.stdout, "dr_region_outage%s+ok%s+a@")
end)

t.case("the shared store's calls are logged as atlas-run's own state, not as calls to the world", function()
    local shared = shared_state()
    local r = t.run({ "--yes", "--log-format", "json", FIX .. "steps.lua" }, { env = shared.machine(t.tmpdir()) })
    t.eq(r.code, 0, r.stderr)
    local modules = {}
    for line in r.stdout:gmatch("[^\n]+") do
        local e = json.decode(line)
        if e.type == "call" then modules[e.op] = e.module end
    end
    t.eq(modules["s3.PutObject"], "state")
    t.eq(modules["dynamodb.PutItem"], "state")
    t.eq(modules["dynamodb.DeleteItem"], "state")
end)
