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

-- run(argv, options) -> {code=, stdout=, stderr=} | nil, err (the program could not be started)
function M.run(argv, options)
    local base = os.tmpname()
    local pid, err = sys.spawn(argv, { stdout = base .. ".out", stderr = base .. ".err", env = options.env })
    os.remove(base)
    if not pid then return nil, errors.new { kind = "proc", code = "spawn", message = err } end
    local _, code = sys.wait(pid)
    if sys.interrupted() then
        sys.kill(-pid, "TERM")
        sys.wait(pid)
    end
    return { code = code, stdout = slurp(base .. ".out"), stderr = slurp(base .. ".err") }
end

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
