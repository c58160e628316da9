-- atlas.run.exit: the exit code of every outcome, in one table. README.md
-- documents it and cron and monitoring rely on it; the runner (a run's
-- result) and the command line (every other command) both read it here.
local errors = require "atlas.errors"

local M = {}

M.codes = { ok = 0, failed = 1, usage = 2, refused = 3, locked = 4, critical = 5, internal = 70 }

-- exit.of_error(err) -> status, code: what an error that ended a run or a
-- command means. Anything that is no error object is a failure here; the
-- command line calls it internal (70) when it escapes atlas-run itself.
function M.of_error(err)
    local codes = M.codes
    if errors.is(err, "interrupted") then
        return "interrupted", codes.refused
    elseif errors.is(err, "aborted") then
        return "refused", codes.refused
    elseif errors.is(err, "playbook") and err.code == "critical" then
        return "critical", codes.critical
    elseif errors.is(err, "usage") then
        return "failed", codes.usage
    end
    return "failed", codes.failed
end

return M
