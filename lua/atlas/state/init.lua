-- atlas.state: where a run's state lives, and the one interface to it.
--
-- Journals (runs/<id>.json), the last run of each playbook (<name>.last),
-- the DNS records saved by a failover (dns/<name>.<region>.json) and the
-- run locks all go through a store. Two backends have the same functions
-- and fail the same way (nil, message, code for the outside world):
--   atlas.state.local  a directory on this machine (the default)
--   atlas.state.s3     an S3 prefix, with run locks in DynamoDB (a team's)
--
-- store:get(key)                 -> text, version | nil, message, code ("NotFound" when absent)
-- store:put(key, text, {if_absent=, if_version=, durable=})
--                                -> version | nil, message, code ("PreconditionFailed" when the condition fails)
-- store:list(prefix)             -> {{key=, modified=}, ...} sorted by key | nil, message, code
-- store:delete(key)              -> true (also when absent) | nil, message, code
-- store:lock(name, info)         -> lock | nil, who holds it, "LockHeld" | nil, message, code
-- store:where(key?)              -> where the store (or one key) is, for messages
-- store:check()                 -> true | nil, message, code: usable before a run starts
-- store:find_lock(run_or_name)   -> {name=, holder=, live=} | nil (none) | nil, message, code
-- store:unlock(found)            -> true | nil, message, code (`atlas-run unlock`)
-- lock:release()                 -> safe to call twice
--
-- A version is opaque: pass back what get or put returned.
local errors = require "atlas.errors"
local runtime = require "atlas.run.runtime"

local M = {}

local function shared_location()
    local value = os.getenv("ATLAS_STATE")
    if value and value:match("^%a[%w+.-]*://") then return value end
    return nil
end

-- state.local_dir() -> this machine's state directory: $ATLAS_STATE when it
-- is a path, else $ATLAS_STATE_DIR, else $XDG_STATE_HOME/atlas-run, else
-- ~/.local/state/atlas-run. Mock-world runs keep theirs under mock/, so a
-- drill never resumes a real run or holds its lock.
function M.local_dir()
    local base = not shared_location() and os.getenv("ATLAS_STATE") or nil
    if not base or base == "" then base = os.getenv("ATLAS_STATE_DIR") end
    if not base or base == "" then
        local xdg = os.getenv("XDG_STATE_HOME")
        if xdg and xdg ~= "" then
            base = xdg .. "/atlas-run"
        else
            base = (os.getenv("HOME") or "/tmp") .. "/.local/state/atlas-run"
        end
    end
    if runtime.world then base = base .. "/mock" end
    return base
end

-- state.location() -> "s3://bucket/prefix" when ATLAS_STATE names a shared
-- store, else the local directory
function M.location() return shared_location() or M.local_dir() end

-- state.whoami() -> user, host: who runs, for journals and lock holders
function M.whoami()
    local user = os.getenv("USER")
    if not user or user == "" then user = os.getenv("LOGNAME") end
    if not user or user == "" then user = "?" end
    return user, require("atlas.sys").hostname() or "?"
end

local opened = {}

-- state.open() -> the store of the current configuration (ATLAS_STATE,
-- ATLAS_STATE_DIR, mock world). Raises a usage error for a location it
-- cannot use.
function M.open()
    local location = M.location()
    local key = location .. "\0" .. (runtime.world and "mock" or "real")
    if opened[key] then return opened[key] end
    local store
    if location:match("^s3://") then
        if runtime.world then
            errors.raise {
                kind = "usage",
                message = "--state "
                    .. location
                    .. ": the mock world keeps its state in the local directory; drop --state for --mock/--scenario runs",
            }
        end
        store = require("atlas.state.s3").new(location)
    elseif location:match("^%a[%w+.-]*://") then
        errors.raise {
            kind = "usage",
            message = "--state " .. location .. ": not a directory or an s3://BUCKET/PREFIX location",
        }
    else
        -- A real run's journal must survive a crash of the machine; a mock
        -- world's need not, and fsync would be most of a mock test's time.
        store = require("atlas.state.local").new(location, { durable = runtime.world == nil })
    end
    opened[key] = store
    return store
end

return M
