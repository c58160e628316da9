-- terraform through atlas.proc: an argv list, never a shell string, with
-- -chdir so the working directory is explicit and the operator's own
-- directory is never changed. -input=false: a run must not stop at a
-- terraform prompt that nobody sees; -no-color: the output goes to logs.
local proc = require "atlas.proc"

local M = {}

M.PLAN_FILE = "atlas.tfplan"

-- terraform.run(dir, {args...}, {mutates=, check=}) -> {code=, stdout=, stderr=}
function M.run(dir, args, options)
    local argv = { "terraform", "-chdir=" .. dir }
    for _, a in ipairs(args) do
        argv[#argv + 1] = a
    end
    return proc.run(argv, options)
end

-- plan(dir) -> "changes" | "none", output. -detailed-exitcode: 0 no
-- changes, 2 changes, 1 an error (raised as a proc error naming the call).
function M.plan(dir)
    local result = M.run(
        dir,
        { "plan", "-input=false", "-no-color", "-detailed-exitcode", "-out=" .. M.PLAN_FILE },
        { mutates = false, check = false }
    )
    if result.code == 0 then return "none", result.stdout end
    if result.code == 2 then return "changes", result.stdout end
    require("atlas.errors").raise {
        kind = "proc",
        code = result.code,
        message = string.format(
            "terraform -chdir=%s plan exited with %d: %s",
            dir,
            result.code,
            (result.stderr or ""):sub(1, 500)
        ),
    }
end

-- The plan's last line that counts, "Plan: 3 to add, 1 to change, 0 to destroy.", or nil.
function M.plan_summary(output)
    return output:match("(Plan: %d+ to add, %d+ to change, %d+ to destroy%.)")
        or output:match("(No changes%.[^\n]*)")
end

return M
