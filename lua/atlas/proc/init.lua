-- atlas.proc: runs a local command (a CLI the runbook still needs, such as
-- a CDN purge script). Under the mock world the world scripts the answers.
-- The command is an argv list, never a shell string, so parameters cannot
-- inject shell syntax.
--
-- Backends (atlas.proc.real, atlas.proc.mock), both the same shape:
--   run(argv, options) -> {code=, stdout=, stderr=} | nil, err (a "proc" error object:
--   the program could not be started); available(name) -> truthy | nil
local runtime = require "atlas.run.runtime"
local log = require "atlas.run.log"
local errors = require "atlas.errors"

local M = {}

-- proc.run(argv, {mutates=true, check=true}) -> {code=, stdout=, stderr=}
-- Raises a "proc" error for a non-zero exit when check is true (the default).
function M.run(argv, options)
    assert(type(argv) == "table" and type(argv[1]) == "string", "proc.run needs an argv list")
    options = options or {}
    runtime.check_interrupted()
    local display = table.concat(argv, " ")
    if options.mutates ~= false and runtime.check_change("proc " .. display) == "dry-run" then
        log.event { type = "call", module = "proc", op = argv[1], outcome = "dry-run", params = display }
        return { code = 0, stdout = "", stderr = "", dry_run = true }
    end
    local started = runtime.now()
    local result, err = runtime.backend("proc").run(argv, options)
    log.event {
        type = "call",
        module = "proc",
        op = argv[1],
        duration_ms = math.floor((runtime.now() - started) * 1000),
        outcome = not result and "error" or result.code == 0 and "ok" or ("exit " .. result.code),
        error = err and errors.message(err) or nil,
    }
    if not result then error(err, 0) end
    if result.code ~= 0 and options.check ~= false then
        errors.raise {
            kind = "proc",
            code = result.code,
            message = string.format("%s exited with %d: %s", display, result.code, (result.stderr or ""):sub(1, 500)),
        }
    end
    return result
end

-- proc.available(name) -> true (the path, for a real program) when the program can
-- be run: on PATH for real, scripted by the mock world otherwise.
function M.available(name) return runtime.backend("proc").available(name) end

return M
