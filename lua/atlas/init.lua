-- require "atlas": what every playbook uses.
local json = require "atlas.json"
local sys = require "atlas.sys"
local log = require "atlas.run.log"
local runtime = require "atlas.run.runtime"
local errors = require "atlas.errors"

local atlas = {
    version = sys.version,
    -- The one null sentinel: JSON null and SQL NULL alike.
    null = json.null,
    REGIONS = require("atlas.env").REGIONS,
}

-- atlas.text(v) -> v as a report shows it: "-" for nil and atlas.null (a SQL NULL)
function atlas.text(v)
    if v == nil or v == json.null then return "-" end
    return tostring(v)
end

-- atlas.log(fmt, ...): a line in the run's timeline
function atlas.log(fmt, ...) log.info(fmt, ...) end

function atlas.warn(fmt, ...) log.warn(fmt, ...) end

function atlas.debug(fmt, ...) log.debug(fmt, ...) end

-- atlas.progress(fmt, ...): the live line of a long wait
function atlas.progress(fmt, ...) log.progress(fmt, ...) end

-- atlas.sleep(seconds): real, or virtual under the mock world
function atlas.sleep(seconds) runtime.sleep(seconds) end

-- atlas.now() -> Unix seconds: real, or virtual under the mock world
function atlas.now() return runtime.now() end

-- atlas.playbook{...} -> the checked declaration of a playbook
function atlas.playbook(declaration) return require("atlas.run.playbook").declare(declaration) end

-- atlas.confirm(message): asks, or honours --yes; raises "aborted" on no
function atlas.confirm(message) return runtime.confirm(message) end

-- atlas.until_interrupted(fn, ...) -> true when fn returned, false when Ctrl-C
-- ended it: the one declared way for a step to end on Ctrl-C (a follow).
function atlas.until_interrupted(fn, ...) return runtime.until_interrupted(fn, ...) end

-- atlas.fail(message): ends the run as failed (exit 1), without a traceback
function atlas.fail(fmt, ...)
    errors.raise { kind = "playbook", code = "failed", message = select("#", ...) > 0 and fmt:format(...) or fmt }
end

-- atlas.critical(message): ends the run with a critical finding (exit 5)
function atlas.critical(fmt, ...)
    errors.raise { kind = "playbook", code = "critical", message = select("#", ...) > 0 and fmt:format(...) or fmt }
end

-- atlas.is_dry_run() -> true under --dry-run
function atlas.is_dry_run() return runtime.dry_run end

return atlas
