-- Drill reports: what a run did, for the post-drill review and the audit
-- trail. Records the run's events while it runs (tee on the event sink) and
-- writes Markdown, or JSON when the file name ends in .json.
local log = require "atlas.run.log"
local json = require "atlas.json"
local sys = require "atlas.sys"
local errors = require "atlas.errors"

local M = {}

local recorded = nil

-- report.start(): from now on, every event is also kept for the report.
function M.start()
    recorded = {}
    local previous
    previous = log.set_sink(function(e)
        recorded[#recorded + 1] = e
        previous(e)
    end)
end

local function summarize(events)
    local summary = { steps = {}, calls = {}, retries = 0, dry_run_calls = {} }
    local calls_by_op = {}
    for _, e in ipairs(events) do
        if e.type == "run_start" then
            summary.start = e
        elseif e.type == "run_end" then
            summary.finish = e
        elseif e.type == "step_end" then
            summary.steps[#summary.steps + 1] = e
        elseif e.type == "retry" then
            summary.retries = summary.retries + 1
        elseif e.type == "call" then
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
        end
    end
    return summary
end

local function markdown(pb, params, result, s)
    local lines = {}
    local function add(fmt, ...) lines[#lines + 1] = select("#", ...) > 0 and fmt:format(...) or fmt end
    add("# Drill report: %s", pb.name)
    add("")
    add("- result: **%s** (exit %d)", result.status, result.exit)
    add("- run id: `%s`", result.journal and result.journal.run_id or "?")
    add("- started: %s", s.start and s.start.ts or "?")
    add("- duration: %s", log.seconds_text(result.duration))
    add(
        "- world: %s",
        s.start
                and (s.start.mode == "mock" and ("mock" .. (s.start.scenario and (", scenario " .. s.start.scenario) or "")) or "real AWS")
            or "?"
    )
    add("- dry run: %s", s.start and tostring(s.start.dry_run) or "?")
    add("- written by atlas-run %s on %s", sys.version, sys.hostname() or "?")
    add("")
    add("## Parameters")
    add("")
    local names = {}
    for name in pairs(s.start and s.start.params or {}) do
        names[#names + 1] = name
    end
    table.sort(names)
    for _, name in ipairs(names) do
        local v = s.start.params[name]
        add("- `%s` = `%s`", name, type(v) == "table" and table.concat(v, ",") or tostring(v))
    end
    add("")
    add("## Steps")
    add("")
    add("| # | step | status | duration |")
    add("| --- | --- | --- | --- |")
    for _, step in ipairs(s.steps) do
        add("| %d | %s | %s | %s |", step.index, step.step, step.status, log.seconds_text(step.duration))
    end
    if result.error then
        add("")
        add("## Failure")
        add("")
        add("```")
        add("%s", log.redact(errors.message(result.error)))
        add("```")
    end
    add("")
    add("## Outside calls")
    add("")
    add("| call | count | errors | total time |")
    add("| --- | --- | --- | --- |")
    for _, c in ipairs(s.calls) do
        add("| %s | %d | %d | %s |", c.call, c.count, c.errors, log.seconds_text(c.total_ms / 1000))
    end
    add("")
    add("Retries: %d", s.retries)
    if #s.dry_run_calls > 0 then
        add("")
        add("## Calls a real run would make")
        add("")
        for _, c in ipairs(s.dry_run_calls) do
            add("- `%s`", c)
        end
    end
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

-- report.write(path, playbook, params, result) -> true, or nil and why it could not be written
function M.write(path, pb, params, result)
    local s = summarize(recorded or {})
    local text
    if path:match("%.json$") then
        text = json.encode(
            log.redact_table({
                playbook = pb.name,
                status = result.status,
                exit_code = result.exit,
                duration = result.duration,
                run_id = result.journal and result.journal.run_id,
                params = s.start and s.start.params,
                steps = json.array(s.steps),
                calls = json.array(s.calls),
                retries = s.retries,
                error = result.error and errors.message(result.error) or nil,
            }),
            { indent = 2 }
        )
    else
        text = markdown(pb, params, result, s)
    end
    return sys.write_atomic(path, log.redact(text), 420)
end

return M
