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
        started_unix = runtime.wall(result.started or runtime.now()),
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

-- HTML ---------------------------------------------------------------------
-- A page that stands alone: inline style and SVG, no script, nothing fetched.

local escape = require("atlas.xml").escape

local function h(s) return escape(tostring(s)) end

local STYLE = [[
body{font:14px/1.4 system-ui,sans-serif;margin:2em auto;max-width:1000px;color:#222}
table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f3f3f3}.pass{color:#146c2e;font-weight:bold}.fail{color:#b00020;font-weight:bold}
svg text{font:11px sans-serif}.bar-ok{fill:#7aa7d6}.bar-failed{fill:#e06666}.bar-undone{fill:#bbb}
.bar-other{fill:#d9c27a}.part{fill:#c9b3e6}.wait{fill:url(#waiting)}.rto{stroke:#b00020;stroke-width:2}
.recovered{stroke:#146c2e;stroke-width:2;stroke-dasharray:4 3}.axis{stroke:#888}.confirmation{fill:#f0a000}
.retry{fill:#b00020}
]]

-- Where the run lies on the recovery's time axis: 0 is the incident (the
-- run's start, less the detection before it; or incident_start=).
local function recovery_offsets(m)
    local point
    for _, step in ipairs(m.steps) do
        if step.name == m.recovery_step and step.status == "ok" then point = step.started_seconds + step.duration end
    end
    local before = 0
    for _, part in ipairs(m.recovery_parts) do
        if part.before_run and part.counted then before = before + part.seconds end
    end
    local gap = (m.recovery_measured and point) and math.max(0, m.recovery_measured - point) or 0
    return before + gap, point
end

-- The rows of the timeline: {label, from, to, class, waited, marks={...}}
local function timeline_rows(m)
    local origin, point = recovery_offsets(m)
    local rows, cursor = {}, origin
    for i = #m.recovery_parts, 1, -1 do
        local part = m.recovery_parts[i]
        if part.before_run then
            local from = part.counted and cursor - part.seconds or 0
            if part.counted then cursor = from end
            table.insert(rows, 1, { label = part.name, from = from, to = from + part.seconds, class = "part", title = part.detail })
        end
    end
    for _, step in ipairs(m.steps) do
        local from = origin + step.started_seconds
        local marks = {}
        for _, at in ipairs(step.retry_at) do
            marks[#marks + 1] = { at = origin + at, class = "retry", title = "retry" }
        end
        rows[#rows + 1] = {
            label = step.index .. ". " .. step.name,
            from = from,
            to = from + step.duration,
            class = (step.status == "ok" or step.status == "failed" or step.status == "undone") and ("bar-" .. step.status)
                or "bar-other",
            status = step.status,
            waited = step.waited,
            marks = marks,
            title = string.format("%s: %s, %s", step.name, step.status, seconds_text(step.duration)),
        }
    end
    for _, c in ipairs(m.confirmations) do
        for _, row in ipairs(rows) do
            if row.label:find(". " .. tostring(c.step), 1, true) then
                row.marks[#row.marks + 1] = { at = origin + c.at, class = "confirmation", title = "confirmed: " .. c.question }
            end
        end
    end
    local after = point and origin + point or nil
    for _, part in ipairs(m.recovery_parts) do
        if not part.before_run and after then
            rows[#rows + 1] = { label = part.name, from = after, to = after + part.seconds, class = "part", title = part.detail }
            after = after + part.seconds
        end
    end
    return rows
end

-- report.svg(model) -> an SVG timeline: one bar per step on a time axis,
-- waits shaded, confirmations (diamonds) and retries (ticks) marked, the
-- recovery (dashed) and the RTO target as lines.
function M.svg(m)
    local rows = timeline_rows(m)
    local span = 1
    for _, row in ipairs(rows) do
        span = math.max(span, row.to)
    end
    if m.rto_seconds ~= json.null then span = math.max(span, m.rto_seconds) end
    if m.recovery_seconds ~= json.null then span = math.max(span, m.recovery_seconds) end
    local left, width, row_height, top = 280, 600, 22, 20
    local height = top + #rows * row_height + 40
    local function x(t) return string.format("%.1f", left + width * t / span) end
    local out = {}
    local function add(fmt, ...) out[#out + 1] = fmt:format(...) end
    add('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-label="timeline">', left + width + 20, height, left + width + 20, height)
    add('<defs><pattern id="waiting" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="6" height="6" fill="#7aa7d6"/><line x1="0" y1="0" x2="0" y2="6" stroke="#2d5f93" stroke-width="3"/></pattern></defs>')
    for i, row in ipairs(rows) do
        local y = top + (i - 1) * row_height
        add('<text x="4" y="%d">%s</text>', y + 15, h(row.label))
        local w = math.max(2, width * (row.to - row.from) / span)
        add('<rect class="%s" x="%s" y="%d" width="%.1f" height="16"><title>%s</title></rect>', row.class, x(row.from), y + 3, w, h(row.title or row.label))
        if row.waited and row.waited > 0 then
            -- A step's waits end it (a waiter polls until the state is reached).
            local ww = math.min(w, width * row.waited / span)
            add('<rect class="wait" x="%.1f" y="%d" width="%.1f" height="16"><title>waiting %s</title></rect>', tonumber(x(row.from)) + w - ww, y + 3, ww, h(seconds_text(row.waited)))
        end
        for _, mark in ipairs(row.marks or {}) do
            local cx = tonumber(x(mark.at))
            if mark.class == "confirmation" then
                add('<path class="confirmation" d="M%.1f %d l5 6 l-5 6 l-5 -6 z"><title>%s</title></path>', cx, y + 5, h(mark.title))
            else
                add('<rect class="retry" x="%.1f" y="%d" width="2" height="18"><title>%s</title></rect>', cx - 1, y + 2, h(mark.title))
            end
        end
    end
    local axis_y = top + #rows * row_height + 5
    add('<line class="axis" x1="%d" y1="%d" x2="%d" y2="%d"/>', left, axis_y, left + width, axis_y)
    for i = 0, 4 do
        local t = span * i / 4
        add('<text x="%s" y="%d" text-anchor="middle">%s</text>', x(t), axis_y + 14, h(seconds_text(t)))
    end
    if m.recovery_seconds ~= json.null then
        add('<line class="recovered" x1="%s" y1="%d" x2="%s" y2="%d"><title>recovered after %s</title></line>', x(m.recovery_seconds), top - 10, x(m.recovery_seconds), axis_y, h(seconds_text(m.recovery_seconds)))
    end
    if m.rto_seconds ~= json.null then
        add('<line class="rto" x1="%s" y1="%d" x2="%s" y2="%d"><title>RTO %s</title></line>', x(m.rto_seconds), top - 10, x(m.rto_seconds), axis_y, h(seconds_text(m.rto_seconds)))
        add('<text x="%s" y="%d" text-anchor="end">RTO %s</text>', x(m.rto_seconds), top - 10 + 9, h(seconds_text(m.rto_seconds)))
    end
    add("</svg>")
    return table.concat(out, "\n")
end

local function html_table(headers, rows)
    local out = { "<table>" }
    if headers then
        local cells = {}
        for _, c in ipairs(headers) do
            cells[#cells + 1] = "<th>" .. h(c) .. "</th>"
        end
        out[#out + 1] = "<tr>" .. table.concat(cells) .. "</tr>"
    end
    for _, row in ipairs(rows) do
        local cells = {}
        for i, c in ipairs(row) do
            local tag = (not headers and i == 1) and "th" or "td"
            cells[#cells + 1] = string.format("<%s>%s</%s>", tag, h(c), tag)
        end
        out[#out + 1] = "<tr>" .. table.concat(cells) .. "</tr>"
    end
    out[#out + 1] = "</table>"
    return table.concat(out, "\n")
end

local function html(m)
    local out = {}
    local function add(s) out[#out + 1] = s end
    local verdict = string.format('<span class="%s">%s</span>', m.verdict == "pass" and "pass" or "fail", m.verdict:upper())
    add("<!DOCTYPE html>")
    add('<html lang="en"><head><meta charset="utf-8"><title>Drill report: ' .. h(m.playbook) .. "</title>")
    add("<style>" .. STYLE .. "</style></head><body>")
    add("<h1>Drill report: " .. h(m.playbook) .. "</h1>")
    local ident = {
        { "ID", m.run_id or "?" },
        { "Scenario", m.world_text },
        { "Started", m.started_at },
        { "Run by", m.run_by .. ", atlas-run " .. m.version },
        { "Result", string.format("%s (exit %d) in %s", m.status, m.exit_code, seconds_text(m.duration or 0)) },
        { "RTO target", m.rto_seconds ~= json.null and seconds_text(m.rto_seconds) or "none given" },
        { "Actual recovery", m.recovery_seconds ~= json.null and seconds_text(m.recovery_seconds) or (m.drill and "not recovered" or "not a drill") },
    }
    add('<table class="protocol">')
    for _, row in ipairs(ident) do
        add("<tr><th>" .. h(row[1]) .. "</th><td>" .. h(row[2]) .. "</td></tr>")
    end
    add("<tr><th>Verdict</th><td>" .. verdict .. "</td></tr></table>")
    add("<h2>Parameters</h2>")
    local names, params = {}, {}
    for name in pairs(m.params) do
        names[#names + 1] = name
    end
    table.sort(names)
    for _, name in ipairs(names) do
        params[#params + 1] = { name, value_text(m.params[name]) }
    end
    add(html_table({ "parameter", "value" }, params))
    if m.drill then
        add("<h2>Recovery</h2>")
        local parts = {}
        if m.recovery_measured then parts[#parts + 1] = { "run to recovery point (" .. tostring(m.recovery_step) .. ")", seconds_text(m.recovery_measured), "" } end
        for _, part in ipairs(m.recovery_parts) do
            parts[#parts + 1] = { part.name, seconds_text(part.seconds), (part.detail or "") .. (part.counted and "" or "; within incident_start") }
        end
        add(html_table({ "part", "time", "detail" }, parts))
    end
    add("<h2>Timeline</h2>")
    add(M.svg(m))
    local steps = {}
    for _, step in ipairs(m.steps) do
        steps[#steps + 1] = {
            tostring(step.index),
            step.name,
            step.status,
            "+" .. seconds_text(step.started_seconds),
            seconds_text(step.duration),
            seconds_text(step.waited),
            step.retries > 0 and tostring(step.retries) or "",
            step.error or "",
        }
    end
    add(html_table({ "#", "step", "status", "start", "duration", "waited", "retries", "error" }, steps))
    add("<h2>Changes</h2>")
    local changes = {}
    for _, c in ipairs(m.changes) do
        changes[#changes + 1] = { tostring(c.step), c.what, value_text(c.before), value_text(c.after) }
    end
    add(#changes > 0 and html_table({ "step", "what", "before", "after" }, changes) or "<p>none</p>")
    add("<h2>Confirmations</h2>")
    local confirmations = {}
    for _, c in ipairs(m.confirmations) do
        confirmations[#confirmations + 1] = { tostring(c.step), c.question, c.by }
    end
    add(#confirmations > 0 and html_table({ "step", "question", "given by" }, confirmations) or "<p>none</p>")
    add("<h2>Observations</h2><ul>")
    for _, o in ipairs(m.observations) do
        add("<li>" .. h(o) .. "</li>")
    end
    if m.retries > 0 then add("<li>" .. m.retries .. " retried call(s)</li>") end
    if m.error then add("<li>failure: <pre>" .. h(m.error) .. "</pre></li>") end
    add("</ul>")
    add("<h2>Verdict</h2><p>" .. verdict .. (m.verdict_reason and (": " .. h(m.verdict_reason)) or "") .. "</p>")
    add("</body></html>")
    return table.concat(out, "\n") .. "\n"
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
    if format == "html" then return log.redact(html(m)) end
    return log.redact(markdown(m))
end

-- report.write(path, model) -> true, or nil and why it could not be written
function M.write(path, m)
    local format = path:match("%.json$") and "json" or path:match("%.html?$") and "html" or "md"
    return sys.write_atomic(path, M.render(m, format), 420)
end

return M
