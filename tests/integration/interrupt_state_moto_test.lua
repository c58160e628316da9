-- Ctrl-C is final for the playbook, not for atlas-run's own state: after the
-- interrupt the journal in S3 still records that the run stopped, and the
-- DynamoDB run lock is released (atlas.aws exempts own_state calls).
local t = require "atlas.test"
local sys = require "atlas.sys"
local json = require "atlas.json"

t.case("an interrupted run on a shared store records it and releases the lock", function()
    local shared = dofile("tests/support/shared_state.lua")(t, { prefix = "interrupt" })
    local machine = shared.machine(t.tmpdir())
    local dir = t.tmpdir()
    local out = dir .. "/out"
    local pid = assert(sys.spawn({ t.binary(), "--yes", "--log-format", "json", "tests/fixtures/playbooks/swallow.lua" }, {
        stdout = out,
        stderr = out .. ".err",
        stdin = "/dev/null",
        env = machine,
    }))
    local deadline = sys.monotime() + 30
    repeat
        sys.sleep(0.05)
    until (t.read_file(out) or ""):find('"step_start"', 1, true) or sys.monotime() > deadline
    sys.sleep(0.5)
    sys.kill(pid, "INT")
    local _, code = sys.wait(pid)
    t.eq(code, 3, (t.read_file(out) or "") .. (t.read_file(out .. ".err") or ""))
    local store = shared.store()
    local run_id = assert(store:get("swallow.last"))
    local record = json.decode(assert(store:get("runs/" .. run_id:match("^[^\n]*") .. ".json")))
    t.eq(record.status, "interrupted")
    -- The lock is free: it is taken at once.
    local lock, holder = store:lock("swallow", { run_id = "test" })
    t.ok(lock, "the lock was released, not left to its lease: " .. tostring(holder))
    lock:release()
end)
