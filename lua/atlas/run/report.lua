-- Drill reports: what a run did, for the post-drill review and the audit
-- trail. Records the run's events while it runs (tee on the event sink) and
-- writes Markdown, or JSON when the file name ends in .json. The layout is a
-- DR test protocol's: identification, objective (RTO target against actual),
-- timeline, changes, observations, verdict.
local log = require "atlas.run.log"
local json = require "atlas.json"
local sys = require "atlas.sys"
local errors = require "atlas.errors"
local runtime = require "atlas.run.runtime"

local M = {}

local recorded = nil

-- report.start(): from now on, every event is also kept for the report, with
-- the run's clock and the seconds waited so far (the timeline's shading).
function M.start()
    recorded = {}
    local previous
    previous = log.set_sink(function(e)
        recorded[#recorded + 1] = { event = e, at = runtime.now(), slept = runtime.slept }
        previous(e)
    end)
end

local function summarize_call(summary, calls_by_op, e)
    local key = string.format("%s %s (%s)", e.module, e.op, e.region or "-")
    local entry = calls_by_op[key]
    if not entry then
        entry = { call = key, count = 0, errors = 0, total_ms = 0 }
        calls_by_op[key] = entry
        summary.calls[#summary.calls + 1] = entry
    end
    entry.count = entry.count + 1
    entry.total_ms = entry.total_ms + (e.duration_ms or 0)
    if e.outcome == "error" then
        entry.errors = entry.errors + 1
    elseif e.outcome == "dry-run" then
        summary.dry_run_calls[#summary.dry_run_calls + 1] = key .. " " .. tostring(e.params or "")
    end
    if e.module == "aws" and e.region and not summary.aws_region then summary.aws_region = e.region end
end

-- report.summary() -> what the recorded events say: run_start, steps (with
-- their offsets from the run's start, waits, retries, confirmation),
-- changes, confirmations, recovery parts, observations, calls.
function M.summary()
    local s = {
        steps = {},
        calls = {},
        retries = 0,
        dry_run_calls = {},
        changes = {},
        confirmations = {},
        parts = {},
        observations = {},
    }
    local calls_by_op, by_index, current, t0 = {}, {}, nil, nil
    local function step_at(index, name, at)
        local step = by_index[index]
        if not step then
            step = { index = index, step = name, started = at - (t0 or at), retry_marks = {}, retries = 0 }
            by_index[index] = step
            s.steps[#s.steps + 1] = step
        end
        return step
    end
    for _, r in ipairs(recorded or {}) do
        local e = r.event
        if e.type == "run_start" then
            s.start, t0 = e, r.at
        elseif e.type == "run_end" then
            s.finish = e
        elseif e.type == "step_start" then
            current = step_at(e.index, e.step, r.at)
            current.slept_before = r.slept
        elseif e.type == "step_end" then
            local step = step_at(e.index, e.step, r.at)
            step.status, step.duration, step.error = e.status, e.duration or 0, e.error
            step.waited = step.slept_before and (r.slept - step.slept_before) or 0
            step.slept_before = nil
            current = nil
        elseif e.type == "step_undone" then
            if by_index[e.index] then by_index[e.index].status = "undone" end
        elseif e.type == "retry" then
            s.retries = s.retries + 1
            if current then
                current.retries = current.retries + 1
                current.retry_marks[#current.retry_marks + 1] = r.at - t0
            end
        elseif e.type == "confirmation" then
            s.confirmations[#s.confirmations + 1] = { step = e.step, question = e.question, by = e.by, at = r.at - (t0 or r.at) }
            if current then current.confirmation = e.question end
        elseif e.type == "change" then
            s.changes[#s.changes + 1] = { step = e.step, what = e.what, before = e.before, after = e.after }
        elseif e.type == "recovery_part" then
            s.parts[#s.parts + 1] = e
        elseif e.type == "log" and (e.level == "warn" or e.level == "error") then
            s.observations[#s.observations + 1] = e.level .. ": " .. tostring(e.message)
        elseif e.type == "call" then
            summarize_call(s, calls_by_op, e)
        end
    end
    return s
end

-- The world the run acted on: the mock scenario, or the endpoint and the
-- account and region STS names (asked only when the run called AWS, so a
-- run that made no AWS call makes none for its report).
local function world_of(s)
    local start = s.start or {}
    if start.mode == "mock" then
        local scenario = start.scenario or "healthy"
        return { kind = "mock", scenario = scenario }, "mock world, scenario " .. scenario
    end
    local world = { kind = "real", endpoint = os.getenv("AWS_ENDPOINT_URL") }
    local text = "real AWS"
    if s.aws_region then
        local ok, identity = pcall(require("atlas.sts").get_caller_identity, { region = s.aws_region })
        if ok then
            world.account, world.region = identity.Account, s.aws_region
            text = string.format("AWS account %s, %s", tostring(identity.Account), s.aws_region)
        else
            world.identity_error = errors.message(identity)
            text = "real AWS (account unknown: " .. world.identity_error .. ")"
        end
    end
    if world.endpoint then text = text .. ", endpoint " .. world.endpoint end
    return world, text
end

local function value_text(v)
    if type(v) == "table" then
        local items = {}
        for _, item in ipairs(v) do
            items[#items + 1] = tostring(item)
        end
        return table.concat(items, "; ")
    end
    return tostring(v)
end

local function iso(t) return os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(t)) end

-- report.model(pb, result, summary, outcome) -> everything a report shows,
-- in one table: the JSON report is this table; Markdown and HTML draw it.
function M.model(pb, result, s, outcome)
    local world, world_text = world_of(s)
    local journal = result.journal or {}
    local steps = {}
    for _, step in ipairs(s.steps) do
        steps[#steps + 1] = {
            index = step.index,
            name = step.step,
            status = step.status or "running",
            started_seconds = step.started,
            duration = step.duration or 0,
            waited = step.waited or 0,
            retries = step.retries,
            retry_at = json.array(step.retry_marks),
            confirmation = step.confirmation,
            error = step.error,
        }
    end
    local verdict = outcome and outcome.verdict or (result.status == "ok" and "pass" or "fail")
    local params = s.start and s.start.params or {}
    return {
        -- The eight keys scripts read; the rest may grow.
        playbook = pb.name,
        world = world,
        started_at = iso(runtime.wall(result.started or runtime.now())),
        recovery_seconds = outcome and outcome.recovery_seconds or json.null,
        rto_seconds = outcome and outcome.rto_seconds or json.null,
        verdict = verdict,
        steps = json.array(steps),
        changes = json.array(s.changes),

        world_text = world_text,
        drill = outcome ~= nil,
        verdict_reason = outcome and outcome.reason
            or (result.status ~= "ok" and ("the run " .. result.status) or nil),
        recovery_measured = outcome and outcome.measured,
        recovery_parts = json.array(outcome and outcome.parts or {}),
        recovery_step = pb.recovery_step,
        run_id = journal.run_id,
        run_by = string.format("%s@%s", journal.user or "?", journal.host or "?"),
        status = result.status,
        exit_code = result.exit,
        duration = result.duration,
        dry_run = runtime.dry_run,
        params = next(params) and params or json.object {},
        confirmations = json.array(s.confirmations),
        observations = json.array(s.observations),
        error = result.error and errors.message(result.error) or nil,
        calls = json.array(s.calls),
        retries = s.retries,
        dry_run_calls = json.array(s.dry_run_calls),
        version = sys.version,
    }
end

local seconds_text = log.seconds_text

local function markdown(m)
    local lines = {}
    local function add(fmt, ...) lines[#lines + 1] = select("#", ...) > 0 and fmt:format(...) or fmt end
    add("# Drill report: %s", m.playbook)
    add("")
    add("## Identification")
    add("")
    add("- ID: `%s`", tostring(m.run_id or "?"))
    add("- scenario: %s", m.world_text)
    add("- started: %s", m.started_at)
    add("- run by: %s, atlas-run %s", m.run_by, m.version)
    add("- result: **%s** (exit %d)", m.status, m.exit_code)
    add("- duration: %s", seconds_text(m.duration or 0))
    if m.dry_run then add("- dry run: nothing was changed") end
    add("")
    add("## Parameters")
    add("")
    local names = {}
    for name in pairs(m.params) do
        names[#names + 1] = name
    end
    table.sort(names)
    for _, name in ipairs(names) do
        add("- `%s` = `%s`", name, value_text(m.params[name]))
    end
    if m.drill then
        add("")
        add("## Recovery time objective")
        add("")
        add("| | seconds |")
        add("| --- | --- |")
        add("| RTO target | %s |", m.rto_seconds ~= json.null and seconds_text(m.rto_seconds) or "none given")
        add(
            "| actual recovery | %s |",
            m.recovery_seconds ~= json.null and seconds_text(m.recovery_seconds) or "not recovered"
        )
        if m.recovery_measured then
            add("| run to recovery point (%s) | %s |", tostring(m.recovery_step), seconds_text(m.recovery_measured))
        end
        for _, part in ipairs(m.recovery_parts) do
            add(
                "| %s (%s)%s | %s |",
                part.name,
                tostring(part.detail or ""),
                part.counted and "" or ", within incident_start",
                seconds_text(part.seconds)
            )
        end
    end
    add("")
    add("## Timeline")
    add("")
    add("| # | step | status | start | duration | waited | notes |")
    add("| --- | --- | --- | --- | --- | --- | --- |")
    for _, step in ipairs(m.steps) do
        local notes = {}
        if step.confirmation then notes[#notes + 1] = "confirmed: " .. step.confirmation end
        if step.retries > 0 then notes[#notes + 1] = step.retries .. " retries" end
        add(
            "| %d | %s | %s | +%s | %s | %s | %s |",
            step.index,
            step.name,
            step.status,
            seconds_text(step.started_seconds),
            seconds_text(step.duration),
            seconds_text(step.waited),
            table.concat(notes, "; ")
        )
    end
    add("")
    add("## Changes")
    add("")
    if #m.changes == 0 then add("none") end
    for _, c in ipairs(m.changes) do
        if type(c.before) == "table" or type(c.after) == "table" then
            add("- %s (step %s):", c.what, tostring(c.step))
            for _, b in ipairs(type(c.before) == "table" and c.before or { c.before }) do
                add("  - before: %s", tostring(b))
            end
            for _, a in ipairs(type(c.after) == "table" and c.after or { c.after }) do
                add("  - after: %s", tostring(a))
            end
        else
            add("- %s: %s → %s (step %s)", c.what, tostring(c.before), tostring(c.after), tostring(c.step))
        end
    end
    add("")
    add("## Confirmations")
    add("")
    if #m.confirmations == 0 then add("none") end
    for _, c in ipairs(m.confirmations) do
        add("- %s: \"%s\" (by %s)", tostring(c.step), c.question, c.by)
    end
    add("")
    add("## Observations")
    add("")
    if #m.observations == 0 and not m.error and m.retries == 0 then add("none") end
    for _, o in ipairs(m.observations) do
        add("- %s", o)
    end
    if m.retries > 0 then add("- %d retried call(s)", m.retries) end
    if m.error then
        add("")
        add("### Failure")
        add("")
        add("```")
        add("%s", m.error)
        add("```")
    end
    add("")
    add("## Outside calls")
    add("")
    add("| call | count | errors | total time |")
    add("| --- | --- | --- | --- |")
    for _, c in ipairs(m.calls) do
        add("| %s | %d | %d | %s |", c.call, c.count, c.errors, seconds_text(c.total_ms / 1000))
    end
    if #m.dry_run_calls > 0 then
        add("")
        add("## Calls a real run would make")
        add("")
        for _, c in ipairs(m.dry_run_calls) do
            add("- `%s`", c)
        end
    end
    add("")
    add("## Verdict")
    add("")
    add("**%s**%s", m.verdict:upper(), m.verdict_reason and (": " .. m.verdict_reason) or "")
    return table.concat(lines, "\n") .. "\n"
end

-- report.check_path(path) -> true, or nil and why a report cannot go there.
-- A report replaces only a regular file, and a symlink is never followed: as
-- root, `--report /dev/full` once replaced the device with a file.
function M.check_path(path)
    local st = sys.stat(path, true)
    if st and st.type ~= "file" then
        return nil, string.format("exists and is not a regular file (%s)", st.type == "link" and "a symlink" or st.type)
    end
    return true
end

-- report.render(model, format) -> text ("json" or "md")
function M.render(m, format)
    if format == "json" then return json.encode(log.redact_table(m), { indent = 2 }) end
    return log.redact(markdown(m))
end

-- report.write(path, model) -> true, or nil and why it could not be written
function M.write(path, m)
    local format = path:match("%.json$") and "json" or "md"
    return sys.write_atomic(path, M.render(m, format), 420)
end

return M
