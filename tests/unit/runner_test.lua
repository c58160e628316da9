-- Journal, resume, run lock, rollback, reports and Ctrl-C.
local t = require "atlas.test"
local sys = require "atlas.sys"
local json = require "atlas.json"

local FIX = "tests/fixtures/playbooks/"

t.case("a failed run resumes from the failed step, keeping ctx.state", function()
    local state = t.tmpdir()
    local marker = state .. "/failed-once"
    local env = { ATLAS_STATE_DIR = state }
    local r = t.run({ "--yes", FIX .. "steps.lua", "fail_once_file=" .. marker }, { env = env })
    t.eq(r.code, 1)
    t.match(r.stdout, "one ran 1 time%(s%)")
    r = t.run({ "--yes", "--resume", FIX .. "steps.lua" }, { env = env })
    t.eq(r.code, 0, r.stdout .. r.stderr)
    t.match(r.stdout, "skip %[1/3%] one")
    t.match(r.stdout, "state%.one=1")
    t.ok(not r.stdout:find("one ran 2"), "step one must not run twice")
    r = t.run({ "--yes", "--resume", FIX .. "steps.lua" }, { env = env })
    t.eq(r.code, 2)
    t.match(r.stderr, "completed; nothing to resume")
end)

t.case("the journal records every step as JSON", function()
    local state = t.tmpdir()
    local r = t.run({ "--yes", FIX .. "steps.lua" }, { env = { ATLAS_STATE_DIR = state } })
    t.eq(r.code, 0)
    local run_id = t.read_file(state .. "/steps.last")
    local record = json.decode(t.read_file(state .. "/runs/" .. run_id .. ".json"))
    t.eq(record.status, "ok")
    t.eq(#record.steps, 3)
    t.eq(record.steps[2].name, "two")
    t.eq(record.state.one, 1)
end)

t.case("a second run of the same playbook is refused while the first holds the lock", function()
    local state = t.tmpdir()
    local held = sys.lock(state .. "/steps.lock", "pid 1 on test")
    t.ok(held)
    local r = t.run({ "--yes", FIX .. "steps.lua" }, { env = { ATLAS_STATE_DIR = state } })
    t.eq(r.code, 4)
    t.match(r.stderr, 'another run holds the lock "steps" %(pid 1 on test%)')
    held:release()
    held:release() -- idempotent
    r = t.run({ "--yes", FIX .. "steps.lua" }, { env = { ATLAS_STATE_DIR = state } })
    t.eq(r.code, 0)
end)

t.case("--rollback runs the undo of completed steps after a failure", function()
    local r = t.run({ "--yes", "--rollback", FIX .. "steps.lua", "mode=raise" })
    t.eq(r.code, 1)
    t.match(r.stdout, "undo: one")
    t.match(r.stdout, "undo one")
end)

t.case("--report writes a drill report with steps and status", function()
    local dir = t.tmpdir()
    local r = t.run({ "--yes", "--report", dir .. "/report.md", FIX .. "steps.lua", "mode=fail" })
    t.eq(r.code, 1)
    local text = t.read_file(dir .. "/report.md")
    t.match(text, "# Drill report: steps")
    t.match(text, "result: %*%*failed%*%*")
    t.match(text, "| 2 | two | failed |")
    r = t.run({ "--yes", "--report", dir .. "/report.json", FIX .. "steps.lua" })
    t.eq(r.code, 0)
    local report = json.decode(t.read_file(dir .. "/report.json"))
    t.eq(report.status, "ok")
    t.eq(#report.steps, 3)
end)

t.case("Ctrl-C stops cleanly, says where, exits 3, and the run can resume", function()
    local state = t.tmpdir()
    local base = state .. "/out"
    local pid = sys.spawn(
        { t.binary(), "--yes", FIX .. "steps.lua", "mode=sleep" },
        { stdout = base, stderr = base .. ".err", stdin = "/dev/null", env = { ATLAS_STATE_DIR = state } }
    )
    -- Wait until step two is sleeping, then interrupt.
    local deadline = sys.monotime() + 10
    repeat
        sys.sleep(0.02)
        local out = t.read_file(base) or ""
    until out:find("one ran") or sys.monotime() > deadline
    sys.sleep(0.1)
    sys.kill(pid, "INT")
    local _, code = sys.wait(pid)
    t.eq(code, 3)
    local out = t.read_file(base)
    t.match(out, "STOP %[2/3%] two")
    t.match(t.read_file(base .. ".err"), 'stopped at step "two"')
    local run_id = t.read_file(state .. "/steps.last")
    local record = json.decode(t.read_file(state .. "/runs/" .. run_id .. ".json"))
    t.eq(record.status, "interrupted")
end)

t.case("after a crash (SIGKILL) the lock is free and --resume continues the run", function()
    local state = t.tmpdir()
    local base = state .. "/out"
    local pid = sys.spawn(
        { t.binary(), "--yes", FIX .. "steps.lua", "sleep_once_file=" .. state .. "/slept" },
        { stdout = base, stderr = base .. ".err", stdin = "/dev/null", env = { ATLAS_STATE_DIR = state } }
    )
    local deadline = sys.monotime() + 10
    repeat
        sys.sleep(0.02)
    until (t.read_file(base) or ""):find("one ran") or sys.monotime() > deadline
    sys.sleep(0.1)
    sys.kill(pid, "KILL")
    sys.wait(pid)
    local run_id = t.read_file(state .. "/steps.last")
    local record = json.decode(t.read_file(state .. "/runs/" .. run_id .. ".json"))
    t.eq(record.status, "running", "the journal shows the run was cut off")
    t.eq(record.steps[2].status, "running")
    local r = t.run({ "--yes", "--resume", FIX .. "steps.lua" }, { env = { ATLAS_STATE_DIR = state } })
    t.eq(r.code, 0, r.stdout .. r.stderr)
    t.match(r.stdout, "skip %[1/3%] one")
    t.match(r.stdout, "ok   %[2/3%] two")
end)

t.case("a failover and its recovery share one lock; read-only playbooks take none", function()
    local state = t.tmpdir()
    sys.mkdir(state .. "/mock", 448)
    local held = sys.lock(state .. "/mock/atlas-crm-production.lock", "pid 2 on drill-host")
    t.ok(held)
    local env = { ATLAS_STATE_DIR = state }
    local r = t.run({ "--mock", "--yes", "playbooks/dr_region_recovery.lua" }, { env = env })
    t.eq(r.code, 4)
    t.match(
        r.stderr,
        'dr_region_recovery cannot start: another run holds the lock "atlas%-crm%-production" %(pid 2 on drill%-host%)'
    )
    r = t.run({ "--mock", "--yes", "playbooks/rollback_application.lua", "region=us-east-1" }, { env = env })
    t.eq(r.code, 4)
    r = t.run({ "--mock", "playbooks/diag_health.lua" }, { env = env })
    t.eq(r.code, 0, r.stderr)
    held:release()
end)

t.case("a lock that is not a name is refused when the playbook loads", function()
    local dir = t.tmpdir()
    t.write_file(
        dir .. "/bad.lua",
        [[
local atlas = require "atlas"
return atlas.playbook { name = "bad", description = "d", lock = "a b/c", steps = { { name = "s", run = function() end } } }
]]
    )
    local r = t.run({ "check", dir .. "/bad.lua" })
    t.eq(r.code, 2)
    t.match(r.stdout, "lock must be a name")
end)

-- Starts a run of FIX .. name and sends SIGINT once `ready` shows in its output.
local function interrupt_when(state, args, ready)
    local base = state .. "/out"
    local argv = { t.binary(), "--yes" }
    for _, a in ipairs(args) do
        argv[#argv + 1] = a
    end
    local pid = sys.spawn(argv, { stdout = base, stderr = base .. ".err", stdin = "/dev/null", env = { ATLAS_STATE_DIR = state } })
    local deadline = sys.monotime() + 10
    repeat
        sys.sleep(0.02)
    until (t.read_file(base) or ""):find(ready) or sys.monotime() > deadline
    sys.sleep(0.2)
    sys.kill(pid, "INT")
    local _, code = sys.wait(pid)
    return code, t.read_file(base) or "", t.read_file(base .. ".err") or ""
end

t.case("Ctrl-C is final: a playbook that pcalls around it cannot call out or go on", function()
    local state = t.tmpdir()
    local code, out = interrupt_when(state, { "--log-format", "json", FIX .. "swallow.lua" }, "step_start")
    t.eq(code, 3, out)
    t.match(out, "pcall caught: false interrupted: interrupted by signal")
    t.no_match(out, "called out after Ctrl-C")
    t.no_match(out, "next step ran")
    t.no_match(out, '"module":"proc"')
end)

t.case("Ctrl-C is final even when the step returns normally after catching it", function()
    local state = t.tmpdir()
    local code, out = interrupt_when(state, { FIX .. "swallow.lua", "after=return" }, "wait")
    t.eq(code, 3, out)
    t.match(out, "STOP %[1/2%] wait")
    t.no_match(out, "next step ran")
end)

t.case("a journal that cannot be written stops the run with exit 2, naming where and why", function()
    local dir = t.tmpdir()
    local file = t.write_file(dir .. "/not-a-dir", "x")
    -- A read-only playbook takes no lock, but its journal is written all the same.
    local r = t.run({ "--mock", "playbooks/diag_health.lua" }, { env = { ATLAS_STATE_DIR = file } })
    t.eq(r.code, 2, r.stdout .. r.stderr)
    t.match(r.stderr, file:gsub("%p", "%%%0") .. "/mock.*Not a directory")
end)

t.case("a report that cannot be written fails the run and says why", function()
    local state = t.tmpdir()
    local r = t.run(
        { "--yes", "--report", state .. "/no/such/dir/report.md", FIX .. "steps.lua" },
        { env = { ATLAS_STATE_DIR = state } }
    )
    t.eq(r.code, 1, r.stdout .. r.stderr)
    t.match(r.stderr, "cannot write the report " .. state:gsub("%p", "%%%0") .. "/no/such/dir/report.md: ")
    -- The lock was released: the next run starts.
    r = t.run({ "--yes", FIX .. "steps.lua" }, { env = { ATLAS_STATE_DIR = state } })
    t.eq(r.code, 0, r.stderr)
end)

t.case("--report refuses a symlink, a FIFO or a device before the run starts, and never replaces it", function()
    local state = t.tmpdir()
    local target = state .. "/target.md"
    t.write_file(target, "keep me\n")
    local link = state .. "/link.md"
    os.execute(string.format("ln -s %q %q && mkfifo %q", target, link, state .. "/fifo.md"))
    for _, path in ipairs { link, state .. "/fifo.md", "/dev/null" } do
        local r = t.run({ "--yes", "--report", path, FIX .. "steps.lua" }, { env = { ATLAS_STATE_DIR = state } })
        t.eq(r.code, 2, path .. ": " .. r.stdout .. r.stderr)
        t.match(r.stderr, "exists and is not a regular file")
        t.no_match(r.stdout, "[1/3] one", "nothing ran")
    end
    t.eq(sys.stat(link, true).type, "link", "the symlink is still a symlink")
    t.eq(t.read_file(target), "keep me\n")
    t.eq(sys.stat(state .. "/fifo.md").type, "other")
    -- The primitive itself refuses too, whoever calls it.
    local ok, err = sys.write_atomic(link, "x")
    t.eq(ok, nil)
    t.match(err, "not a regular file")
    t.eq(t.read_file(target), "keep me\n")
end)

t.case("--resume keeps the run's parameters: a different value is refused, a secret is given again", function()
    local state = t.tmpdir()
    local env = { ATLAS_STATE_DIR = state }
    local r = t.run({ "--yes", FIX .. "steps.lua", "mode=fail", "token=s3cret-value" }, { env = env })
    t.eq(r.code, 1)
    r = t.run({ "--yes", "--resume", FIX .. "steps.lua", "mode=ok" }, { env = env })
    t.eq(r.code, 2)
    t.match(r.stderr, "parameter mode is fail in run steps%-.*, not ok")
    r = t.run({ "--yes", "--resume", FIX .. "steps.lua", "fail_once_file=/tmp/x" }, { env = env })
    t.eq(r.code, 2)
    t.match(r.stderr, "parameter fail_once_file is not set in run")
    -- The same value, and a secret given again, are the same run (which fails the same way).
    r = t.run({ "--yes", "--resume", FIX .. "steps.lua", "mode=fail", "token=s3cret-value" }, { env = env })
    t.eq(r.code, 1, r.stderr)
    t.match(r.stdout, "skip %[1/3%] one")
    t.no_match(t.read_file(state .. "/runs/" .. t.read_file(state .. "/steps.last") .. ".json"), "s3cret")
end)

t.case("the run lock is released even when writing the report raises", function()
    local state = t.tmpdir()
    local saved = os.getenv("ATLAS_STATE_DIR")
    local report = require "atlas.run.report"
    local write = report.write
    t.defer(function()
        report.write = write
        sys.setenv("ATLAS_STATE_DIR", saved)
        require("atlas.run.log").configure { format = "text", level = "info" }
    end)
    report.write = function() error("report exploded") end
    local code
    t.capture(function()
        code = require("atlas.run.cli").main {
            "--quiet",
            "--yes",
            "--state-dir",
            state,
            "--report",
            state .. "/r.md",
            FIX .. "steps.lua",
        }
    end)
    t.eq(code, 70)
    -- flock conflicts between two opens of the file, even in one process.
    local lock = sys.lock(state .. "/steps.lock", "test")
    t.ok(lock, "the lock was released")
    lock:release()
end)
