-- Drills: a run marked as a rehearsal, timed from its start (or from the
-- incident's start) to the playbook's declared recovery point, against the
-- recovery time objective (--rto). A drill that misses its RTO exits 5.
local errors = require "atlas.errors"
local params = require "atlas.run.params"
local runtime = require "atlas.run.runtime"

local M = {}

local function usage(fmt, ...) errors.raise { kind = "usage", message = string.format(fmt, ...) } end

-- A UTC time only: an offset read as UTC would move the incident by hours.
local ISO_UTC = "^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.?%d*Z$"

-- drill.prepare(pb, options, args) -> the drill {rto=, incident_start=} or
-- nil when the run is no drill. Takes incident_start= out of args: it
-- belongs to the drill, not to the playbook. Raises a usage error for a
-- drill that could not measure anything.
function M.prepare(pb, options, args)
    if not (options.drill or options.rto) then return nil end
    if not pb.recovery_step then
        usage(
            "--drill: playbook %s declares no recovery point (a step with recovery_point = true), so a drill "
                .. "cannot time its recovery",
            pb.name
        )
    end
    if options.dry_run then usage("--drill times a recovery, and --dry-run changes nothing: give one of them") end
    local drill = {}
    if options.rto then
        local seconds, what = params.duration(options.rto)
        if not seconds or seconds <= 0 then usage("--rto: %q is not %s, above zero", options.rto, what or "a duration") end
        drill.rto = seconds
    end
    local given = args.incident_start
    if given ~= nil then
        args.incident_start = nil
        if not given:match(ISO_UTC) then
            usage("incident_start: %q is not a UTC time such as 2026-12-01T21:40:00Z", given)
        end
        drill.incident_start = require("atlas.aws.protocol").parse_time(given)
        if drill.incident_start > runtime.wall() then
            usage("incident_start: %s is in the future; it is when the outage began", given)
        end
    end
    return drill
end

-- drill.measure(drill, result, parts) -> {recovery_seconds=, measured=,
-- parts=, rto_seconds=, verdict=, reason=}. parts: the recovery_part events
-- of the run. The recovery runs from the run's start, or incident_start, to
-- the recovery point, plus what the engine cannot see: parts before the run
-- (detection) count only from the run's start, since an incident_start
-- already holds them; parts after it (the TTL) always count.
function M.measure(drill, result, parts)
    local outcome = { rto_seconds = drill.rto, parts = {}, verdict = "fail" }
    local started = runtime.wall(result.started)
    local from = drill.incident_start or started
    if not result.recovered_at then
        outcome.reason = "the recovery point (" .. tostring(result.recovery_step) .. ") was not reached"
        return outcome
    end
    outcome.measured = runtime.wall(result.recovered_at) - from
    local total = outcome.measured
    for _, part in ipairs(parts) do
        local counted = not (part.before_run and drill.incident_start)
        outcome.parts[#outcome.parts + 1] =
            { name = part.name, seconds = part.seconds, detail = part.detail, counted = counted, before_run = part.before_run }
        if counted then total = total + part.seconds end
    end
    outcome.recovery_seconds = total
    if result.status ~= "ok" then
        outcome.reason = "the run " .. result.status .. " after the recovery point"
    elseif drill.rto and total > drill.rto then
        outcome.reason = "recovery took longer than the RTO"
    else
        outcome.verdict = "pass"
    end
    return outcome
end


-- History ---------------------------------------------------------------------
-- Each drill's JSON report is kept in the state store (the local directory, or
-- the team's S3 store), under drills/<run id>.json; `atlas-run drills` reads them.

local function history_key(run_id) return "drills/" .. run_id .. ".json" end

-- drill.keep(model, json_text) -> where it was kept, or nil and why not
function M.keep(model, text)
    local store = require("atlas.state").open()
    local key = history_key(model.run_id or "unknown")
    local ok, err = store:put(key, text)
    if not ok then return nil, string.format("%s: %s", store:where(key), tostring(err)) end
    return store:where(key)
end

-- drill.history(store) -> drills {playbook=, started_at=, recovery_seconds=, rto_seconds=, verdict=, world=, key=}
-- oldest first, and the keys that could not be read, with why.
function M.history(store)
    local json = require "atlas.json"
    local items, err = store:list("drills/")
    if not items then return nil, err end
    local drills, unreadable = {}, {}
    for _, item in ipairs(items) do
        local report, why = store:get(item.key)
        -- json.decode answers nil and why for text that is not JSON.
        if report then report, why = json.decode(report) end
        if report and (type(report) ~= "table" or type(report.playbook) ~= "string") then
            report, why = nil, "not a drill report (no playbook)"
        end
        if report then
            report.key = item.key
            drills[#drills + 1] = report
        else
            unreadable[#unreadable + 1] = { key = item.key, why = tostring(why) }
        end
    end
    table.sort(drills, function(a, b)
        -- started_unix orders drills started within the same second.
        if a.started_at ~= b.started_at then return tostring(a.started_at) < tostring(b.started_at) end
        return (tonumber(a.started_unix) or 0) < (tonumber(b.started_unix) or 0)
    end)
    return drills, unreadable
end

-- drill.trend(recoveries) -> "rising", "falling" or "steady", and the change
-- per drill in seconds: the least-squares slope over the drills given, so one
-- slow drill among fast ones does not read as a trend.
function M.trend(recoveries)
    local n = #recoveries
    if n < 2 then return "steady", 0 end
    local sx, sy, sxx, sxy = 0, 0, 0, 0
    for i, y in ipairs(recoveries) do
        sx, sy, sxx, sxy = sx + i, sy + y, sxx + i * i, sxy + i * y
    end
    local slope = (n * sxy - sx * sy) / (n * sxx - sx * sx)
    -- Under a second per drill is noise on a recovery of minutes.
    if slope >= 1 then return "rising", slope end
    if slope <= -1 then return "falling", slope end
    return "steady", slope
end

return M
