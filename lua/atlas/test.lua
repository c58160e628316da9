-- The test runner behind `atlas-run test`, and the assertions test files use.
--
-- A test file registers cases with t.case(name, fn); the runner loads each
-- *_test.lua file, runs its cases in order, runs every t.defer cleanup even
-- when a case fails, and ends with the line "N passed, N failed".
local sys = require "atlas.sys"
local errors = require "atlas.errors"
local log = require "atlas.run.log"
local runtime = require "atlas.run.runtime"
local json = require "atlas.json"

local t = {}

-- Values as a reader expects to see them in a failure message.
local function show(v, depth)
    depth = depth or 0
    if v == json.null then
        return "null"
    elseif type(v) == "string" then
        return string.format("%q", v)
    elseif type(v) ~= "table" then
        return tostring(v)
    elseif depth > 3 then
        return "{...}"
    end
    if errors.is(v) then return "error(" .. errors.message(v) .. ")" end
    local keys = {}
    for k in pairs(v) do
        keys[#keys + 1] = k
    end
    table.sort(keys, function(a, b)
        if type(a) == type(b) and (type(a) == "number" or type(a) == "string") then return a < b end
        return type(a) < type(b)
    end)
    local parts = {}
    for i, k in ipairs(keys) do
        if i > 12 then
            parts[#parts + 1] = "..."
            break
        end
        if math.type(k) == "integer" and k == i then
            parts[#parts + 1] = show(v[k], depth + 1)
        else
            parts[#parts + 1] = tostring(k) .. "=" .. show(v[k], depth + 1)
        end
    end
    return "{" .. table.concat(parts, ", ") .. "}"
end
t.show = show

local function key_path(path, k)
    if type(k) == "string" and k:match("^[%a_][%w_]*$") then return path .. "." .. k end
    return path .. "[" .. show(k) .. "]"
end

local function diff(actual, expected, path, out)
    if #out >= 20 or actual == expected then return end
    if type(actual) ~= "table" or type(expected) ~= "table" then
        out[#out + 1] = string.format("  at %s: expected %s, got %s", path, show(expected), show(actual))
        return
    end
    for k, v in pairs(expected) do
        diff(actual[k], v, key_path(path, k), out)
    end
    for k, v in pairs(actual) do
        if expected[k] == nil then
            out[#out + 1] = string.format("  at %s: unexpected %s", key_path(path, k), show(v))
        end
    end
end

local function fail(message, level) error({ assertion = true, message = message }, (level or 1) + 1) end

-- t.eq(actual, expected, msg): deep equality; the failure lists each difference.
function t.eq(actual, expected, msg)
    local out = {}
    diff(actual, expected, "value", out)
    if #out > 0 then fail((msg and (msg .. "\n") or "") .. table.concat(out, "\n"), 2) end
end

-- t.ok(value, msg): value is truthy
function t.ok(value, msg)
    if not value then fail(msg or ("expected a true value, got " .. show(value)), 2) end
    return value
end

-- t.match(s, pattern, msg): s is a string matching the Lua pattern
function t.match(s, pattern, msg)
    if type(s) ~= "string" or not s:find(pattern) then
        fail(string.format("%sexpected a string matching %q, got %s", msg and (msg .. ": ") or "", pattern, show(s)), 2)
    end
end

-- t.no_match(s, pattern, msg): s does not contain pattern (plain text)
function t.no_match(s, text, msg)
    if type(s) == "string" and s:find(text, 1, true) then
        fail(string.format("%s%q must not appear in:\n%s", msg and (msg .. ": ") or "", text, s), 2)
    end
end

-- t.raises(fn, pattern) -> the error; fails when fn does not raise or the
-- error's text does not match pattern.
function t.raises(fn, pattern, ...)
    local ok, err = pcall(fn, ...)
    if ok then fail("expected an error" .. (pattern and (" matching " .. string.format("%q", pattern)) or ""), 2) end
    if pattern and not errors.message(err):find(pattern) then
        fail(string.format("expected an error matching %q, got %s", pattern, errors.message(err)), 2)
    end
    return err
end

-- Cases and cleanups --------------------------------------------------------

local current -- the file being run: {cases=, defers=}

function t.case(name, fn)
    assert(current, "t.case outside a test file")
    current.cases[#current.cases + 1] = { name = name, fn = fn }
end

-- t.defer(fn): runs fn when the case ends (inside a case) or when the file
-- ends (at file level), whether it passed or not.
function t.defer(fn)
    assert(current, "t.defer outside a test file")
    local list = current.case_defers or current.defers
    list[#list + 1] = fn
end

local function run_defers(list, report)
    for i = #list, 1, -1 do
        local ok, err = pcall(list[i])
        if not ok then report("cleanup failed: " .. errors.message(err)) end
        list[i] = nil
    end
end

-- Fixtures --------------------------------------------------------------------

-- Scratch space. Tests write thousands of short-lived files (a journal write
-- is a create, a rename and an unlink; the mock suite makes about 2,500), and
-- on a disk file system those metadata updates, not the tests, were most of
-- the suite's time. So scratch lives in memory when the machine has a tmpfs
-- (/dev/shm), else in $TMPDIR or /tmp; $ATLAS_TEST_TMPDIR chooses. One
-- directory per test process, made and removed without a shell.
local scratch_root, scratch_seq = nil, 0

local function writable_dir(path)
    local st = path and path ~= "" and sys.stat(path)
    if not (st and st.type == "directory") then return false end
    local probe = string.format("%s/.atlas-test-probe.%d", path, sys.getpid())
    local f = io.open(probe, "w")
    if not f then return false end
    f:close()
    os.remove(probe)
    return true
end

local function scratch()
    if scratch_root then return scratch_root end
    local base = os.getenv("ATLAS_TEST_TMPDIR")
    if not writable_dir(base) then base = writable_dir("/dev/shm") and "/dev/shm" or nil end
    if not base then base = writable_dir(os.getenv("TMPDIR")) and os.getenv("TMPDIR") or "/tmp" end
    local root = string.format("%s/atlas-test.%d.%d", base, sys.getpid(), math.floor(sys.time() * 1000))
    assert(sys.mkdir(root, 448))
    scratch_root = root
    return root
end

-- t.scratch_path(name) -> a fresh path (nothing created) in the run's scratch directory
function t.scratch_path(name)
    scratch_seq = scratch_seq + 1
    return string.format("%s/%s%d", scratch(), name or "f", scratch_seq)
end

-- t.remove_tree(path): rm -rf, without a shell
function t.remove_tree(path)
    local st = sys.stat(path)
    if st and st.type == "directory" then
        for _, name in ipairs(sys.readdir(path) or {}) do
            t.remove_tree(path .. "/" .. name)
        end
    end
    os.remove(path)
end

-- t.tmpdir() -> a fresh directory, removed when the case or file ends
function t.tmpdir()
    local dir = t.scratch_path("d")
    assert(sys.mkdir(dir, 448))
    t.defer(function() t.remove_tree(dir) end)
    return dir
end

function t.write_file(path, text)
    local f = assert(io.open(path, "wb"))
    f:write(text)
    f:close()
    return path
end

function t.read_file(path)
    local f = io.open(path, "rb")
    if not f then return nil end
    local text = f:read("a")
    f:close()
    return text
end

-- The binary under test: $ATLAS_RUN (set by CTest), else this process.
function t.binary() return os.getenv("ATLAS_RUN") or sys.realpath("/proc/self/exe") end

-- t.spawn(argv, {env=, timeout=}) -> {code=, stdout=, stderr=, elapsed=}
-- Runs a process to completion with output captured and stdin at
-- /dev/null (so it has no terminal, like cron). Killed after timeout.
function t.spawn(argv, options)
    options = options or {}
    local base = t.scratch_path("spawn")
    local started = sys.monotime()
    local pid = assert(
        sys.spawn(argv, { stdout = base .. ".out", stderr = base .. ".err", stdin = "/dev/null", env = options.env })
    )
    local timeout = options.timeout or 60
    local exited, code
    repeat
        exited, code = sys.wait(pid, true)
        if not exited then
            if sys.monotime() - started > timeout then
                sys.kill(-pid, "KILL")
                sys.wait(pid)
                code = "timeout"
                break
            end
            sys.sleep(0.002)
        end
    until exited
    local result = {
        code = code,
        stdout = t.read_file(base .. ".out") or "",
        stderr = t.read_file(base .. ".err") or "",
        elapsed = sys.monotime() - started,
    }
    os.remove(base .. ".out")
    os.remove(base .. ".err")
    return result
end

-- t.run(args, {env=, timeout=}) -> {code=, stdout=, stderr=}: atlas-run as a subprocess
function t.run(args, options)
    local argv = { t.binary() }
    for _, a in ipairs(args) do
        argv[#argv + 1] = a
    end
    return t.spawn(argv, options)
end

local function wait_for_port(port, seconds, pid)
    local deadline = sys.monotime() + seconds
    while sys.monotime() < deadline do
        if sys.port_open(port) then return true end
        if pid and sys.wait(pid, true) then return false, "exited before listening" end
        sys.sleep(0.05)
    end
    return false, "not listening after " .. seconds .. " s"
end
t.wait_for_port = wait_for_port

-- t.server(argv_with_PORT, {ready_timeout=}) -> port, pid: starts a server on a
-- free loopback port (the literal "PORT" in argv is replaced) and stops it
-- (process group) when the case or file ends.
function t.server(argv, options)
    options = options or {}
    local port = assert(sys.free_port())
    local real = {}
    for i, a in ipairs(argv) do
        real[i] = (a:gsub("PORT", tostring(port)))
    end
    local logfile = os.tmpname()
    local pid = assert(sys.spawn(real, { stdout = logfile, stderr = logfile, env = options.env }))
    t.defer(function()
        require("atlas.proc.real").stop(pid, 5)
        os.remove(logfile)
    end)
    local ok, why = wait_for_port(port, options.ready_timeout or 20, pid)
    if not ok then error(string.format("%s %s: %s", real[1], why, t.read_file(logfile) or ""), 2) end
    return port, pid
end

-- t.aws_environment(env) -> env: until the case (or file) ends, atlas.aws's
-- wire and credential chain read env instead of the process environment,
-- which Lua cannot change; the credentials they cached are dropped both ways.
function t.aws_environment(env)
    local wire, credentials = require "atlas.aws.real", require "atlas.aws.credentials"
    local saved_wire, saved_cred = wire.getenv, credentials.getenv
    wire.getenv = function(k) return env[k] end
    credentials.getenv = function(k) return env[k] end
    credentials.reset()
    t.defer(function()
        wire.getenv, credentials.getenv = saved_wire, saved_cred
        credentials.reset()
    end)
    return env
end

-- t.moto() -> endpoint URL of a fresh moto_server on a free loopback port
function t.moto()
    local port = t.server({ "moto_server", "-H", "127.0.0.1", "-p", "PORT" })
    return "http://127.0.0.1:" .. port
end

-- t.world(scenario) -> a new mock world, made current for this case
function t.world(scenario)
    local World = require "atlas.mock.world"
    local world = World.new { scenario = scenario or "healthy" }
    runtime.use_world(world)
    return world
end

-- t.capture(fn, ...) -> events, ok, err: runs fn with every event recorded
function t.capture(fn, ...)
    local events = {}
    local previous = log.set_sink(function(e) events[#events + 1] = e end)
    local ok, err = pcall(fn, ...)
    log.set_sink(previous)
    return events, ok, err
end

-- t.messages(events) -> the "log" events' messages, one a line: the run's timeline as text
function t.messages(events)
    local out = {}
    for _, e in ipairs(events) do
        if e.type == "log" then out[#out + 1] = e.message end
    end
    return table.concat(out, "\n")
end

-- t.run_playbook(path, args, {scenario=, world=, dry_run=, yes=, rollback=, resume=}) -> result, events
-- Runs a playbook in this process against a mock world: the fast path
-- for playbook tests. args are strings, as on the command line.
-- resume: an earlier result, or a journal record from journal.load:
-- continues that run as --resume does.
function t.run_playbook(path, args, options)
    options = options or {}
    local playbook = require "atlas.run.playbook"
    local params_mod = require "atlas.run.params"
    local journal_mod = require "atlas.run.journal"
    runtime.dry_run = options.dry_run or false
    runtime.yes = options.yes ~= false
    local world = options.world or t.world(options.scenario)
    runtime.use_world(world)
    runtime.scenario = options.scenario
    -- By path, or by name on the search path (./playbooks, $ATLAS_PLAYBOOK_PATH, installed).
    local found, err = playbook.find(path)
    if not found then error(err, 2) end
    local pb = playbook.load(found)
    args = args or {}
    local record, journal = options.resume, nil
    if record and record.journal then
        -- As --resume does: the journal as the store holds it.
        record = assert(journal_mod.load(record.journal.run_id))
    end
    if record then args = playbook.resume_args(pb, record, args) end
    local params = params_mod.parse(pb.param_specs, args, pb.validate)
    if record then
        journal = journal_mod.resume(pb, record)
        journal.params = params
    end
    local result
    local events, ok, err = t.capture(
        function()
            result = playbook.run(
                pb,
                params,
                { rollback = options.rollback, journal = journal, resumed = record and record.run_id }
            )
        end
    )
    if not ok then error(err, 0) end -- refused before the first step (a missing program)
    result.world = world
    result.events = events
    return result, events
end

-- t.journal_record(journal) -> the journal's record as a resume reads it
-- from disk (JSON, secrets masked)
function t.journal_record(journal)
    local json = require "atlas.json"
    return json.decode(json.encode(log.redact_table(journal:to_record())))
end

-- The runner ------------------------------------------------------------------

local function find_tests(path, out)
    local st = sys.stat(path)
    if not st then return false end
    if st.type == "file" then
        out[#out + 1] = path
        return true
    end
    for _, name in ipairs(sys.readdir(path) or {}) do
        local child = path .. "/" .. name
        local cst = sys.stat(child)
        if cst and cst.type == "directory" then
            find_tests(child, out)
        elseif name:match("_test%.lua$") then
            out[#out + 1] = child
        end
    end
    return true
end

local function reset_runtime()
    runtime.use_real()
    runtime.dry_run, runtime.yes, runtime.scenario = false, false, nil
    runtime.interrupt_noted, runtime.undoing, runtime.replaying = false, false, false
    runtime.interrupt_ends_step = false
    -- Each file starts with no secrets: one file's short test secret would
    -- otherwise mask words in the next file's expected output.
    log.forget_secrets()
end

local function failure_text(err)
    if type(err) == "table" and err.assertion then return err.message end
    return errors.message(err)
end

local function run_file(path, counts, verbose)
    current = { cases = {}, defers = {} }
    local failures = {}
    local function report(name, message) failures[#failures + 1] = string.format("FAIL %s: %s\n%s", path, name, message) end
    local chunk, err = loadfile(path)
    if chunk then
        local ok, load_err = xpcall(chunk, debug.traceback)
        if not ok then report("(loading)", load_err) end
    else
        report("(loading)", err)
    end
    local started = sys.monotime()
    for _, case in ipairs(current.cases) do
        reset_runtime()
        current.case_defers = {}
        local ok, case_err = xpcall(case.fn, function(e)
            if type(e) == "table" and e.assertion then return e end
            return { assertion = true, message = debug.traceback(errors.message(e), 2) }
        end)
        run_defers(current.case_defers, function(m)
            ok, case_err = false, { assertion = true, message = m }
        end)
        current.case_defers = nil
        if ok then
            counts.passed = counts.passed + 1
            if verbose then print("ok   " .. path .. ": " .. case.name) end
        else
            counts.failed = counts.failed + 1
            report(case.name, failure_text(case_err))
        end
    end
    run_defers(current.defers, function(m) report("(cleanup)", m) end)
    if #failures > 0 and #current.cases == 0 then counts.failed = counts.failed + 1 end
    reset_runtime()
    for _, f in ipairs(failures) do
        print(f)
    end
    if #failures == 0 then
        print(string.format("ok   %s (%d cases, %.2fs)", path, #current.cases, sys.monotime() - started))
    end
    current = nil
    return #failures
end

-- test.main(paths, options) -> exit code; prints "N passed, N failed"
function t.main(paths, options)
    if #paths == 0 then paths = { "tests" } end
    local files = {}
    for _, p in ipairs(paths) do
        p = p:gsub("(.)/+$", "%1")
        if not find_tests(p, files) then
            io.stderr:write("atlas-run test: no such file or directory: " .. p .. "\n")
            return 2
        end
    end
    -- Tests never touch the user's journals or locks.
    local state = t.scratch_path("state")
    assert(sys.mkdir(state, 448))
    sys.setenv("ATLAS_STATE_DIR", state)
    sys.setenv("ATLAS_STATE", nil)
    sys.setenv("ATLAS_LOCK_TABLE", nil)
    -- Cases that need the output capture it; the rest would only be noise.
    log.configure { format = "text", level = "error" }
    local counts = { passed = 0, failed = 0 }
    for _, file in ipairs(files) do
        run_file(file, counts, options and options.verbose)
        if sys.interrupted() then break end
    end
    t.remove_tree(scratch())
    scratch_root = nil
    print(string.format("%d passed, %d failed", counts.passed, counts.failed))
    return counts.failed == 0 and 0 or 1
end

return t
