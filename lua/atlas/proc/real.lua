-- The real proc backend: spawns the argv with its output in temporary files.
local sys = require "atlas.sys"
local errors = require "atlas.errors"

local M = {}

local function slurp(path)
    local f = io.open(path, "rb")
    if not f then return "" end
    local data = f:read("a")
    f:close()
    os.remove(path)
    return data
end

-- real.stop(pid, grace = 2): ends the process group of pid: TERM, then KILL
-- if it is still there after grace seconds. The group, so that a shell's
-- children go too.
function M.stop(pid, grace)
    sys.kill(-pid, "TERM")
    local deadline = sys.monotime() + (grace or 2)
    while not sys.wait(pid, true) do
        if sys.monotime() > deadline then
            sys.kill(-pid, "KILL")
            sys.wait(pid)
            return
        end
        sys.sleep(0.02)
    end
end

-- run(argv, {env=, timeout=}) -> {code=, stdout=, stderr=} | nil, err: a "proc"
-- error object when the program could not be started (code "spawn") or did
-- not finish within timeout seconds (code "timeout"; it is stopped). Every
-- process gets a timeout: a hung command must not hang a 3 a.m. run.
function M.run(argv, options)
    local timeout = options.timeout or M.DEFAULT_TIMEOUT
    local base = os.tmpname()
    local pid, err = sys.spawn(argv, { stdout = base .. ".out", stderr = base .. ".err", env = options.env })
    os.remove(base)
    if not pid then return nil, errors.new { kind = "proc", code = "spawn", message = err } end
    local deadline = sys.monotime() + timeout
    local exited, code
    local pause = 0.001
    repeat
        exited, code = sys.wait(pid, true)
        if not exited then
            if sys.interrupted() or sys.monotime() > deadline then break end
            -- Short commands answer in milliseconds; long ones are polled
            -- at most every 100 ms.
            sys.sleep(pause)
            pause = math.min(pause * 2, 0.1)
        end
    until exited
    if not exited then
        M.stop(pid)
        slurp(base .. ".out")
        local stderr = slurp(base .. ".err")
        if sys.interrupted() then return { code = 130, stdout = "", stderr = stderr } end
        return nil,
            errors.new {
                kind = "proc",
                code = "timeout",
                message = string.format("%s did not finish within %g s; it was stopped", argv[1], timeout),
                timeout = timeout,
            }
    end
    return { code = code, stdout = slurp(base .. ".out"), stderr = slurp(base .. ".err") }
end

-- The timeout of a command that names none: long enough for a terraform apply.
M.DEFAULT_TIMEOUT = 3600

-- available(name) -> the path of an executable file called name on PATH, or nil.
function M.available(name)
    if name:find("/", 1, true) then
        local st = sys.stat(name)
        return st and st.type == "file" and st.mode % 512 // 64 % 2 == 1 and name or nil
    end
    for dir in (os.getenv("PATH") or ""):gmatch("[^:]+") do
        local path = dir .. "/" .. name
        local st = sys.stat(path)
        -- the owner's execute bit (0100): enough for the operator running atlas-run
        if st and st.type == "file" and (st.mode // 64) % 2 == 1 then return path end
    end
    return nil
end

return M
