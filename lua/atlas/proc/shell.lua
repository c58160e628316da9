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

function M.run(argv, options)
    local base = os.tmpname()
    local pid, err = sys.spawn(argv, { stdout = base .. ".out", stderr = base .. ".err", env = options.env })
    os.remove(base)
    if not pid then errors.raise { kind = "proc", code = "spawn", message = err } end
    local _, code = sys.wait(pid)
    if sys.interrupted() then
        sys.kill(-pid, "TERM")
        sys.wait(pid)
    end
    return { code = code, stdout = slurp(base .. ".out"), stderr = slurp(base .. ".err") }
end

return M
