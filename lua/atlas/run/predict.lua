-- Predicted recovery time (--predict): the playbook run in a fresh mock
-- world whose waits notice each state the moment the world reaches it. What
-- the run then takes is the world's own time, made of its latencies
-- (World.LATENCIES: health-check detection, DNS TTL, Route53 sync, ECS task
-- starts, RDS failover, promotion, snapshot copy and restore); to each wait
-- the prediction adds the engine's share, at most one pace of its waiter.
--
-- The critical path is the steps up to the playbook's recovery point, as the
-- playbook runs them, plus the parts of the recovery it reports beyond the
-- run (detection before it, the TTL after). The prediction is their sum, so
-- a latency on the path moves it by exactly as much as it changes.
--
-- Steps that could overlap: read from the calls each step made. A step that
-- changes the world waits for every step before it (they are its checks); a
-- step that only reads waits for the steps that changed what it reads.
local errors = require "atlas.errors"
local log = require "atlas.run.log"
local runtime = require "atlas.run.runtime"
local sys = require "atlas.sys"

local M = {}

-- The resource an AWS call touches: a service in a region (Route53 is global).
local GLOBAL = { route53 = true, sts = true, iam = true }
local function resource(e)
    if GLOBAL[e.service] then return e.service end
    return e.service .. ":" .. tostring(e.region)
end

-- What a call event touches, and whether it changes it. SQL and commands
-- change what they touch when their step is declared to change the world.
local function touched(e, step_mutates)
    if e.module == "aws" and e.service then return resource(e), runtime.is_mutating(e.service, e.action) end
    if e.module == "http" then return "http:" .. tostring(e.region), require("atlas.http").is_mutating(e.op) end
    if e.module == "sql" then return "sql:" .. tostring(e.region), step_mutates end
    if e.module == "proc" then return "proc", step_mutates end
end

-- A scratch state store for the simulation: the prediction must not leave
-- saved DNS records or journals where a later drill would find them.
local function scratch_store()
    local base = os.getenv("TMPDIR") or "/tmp"
    local dir = string.format("%s/atlas-predict.%d.%d", base, sys.getpid(), math.floor(sys.time() * 1000))
    assert(sys.mkdir(dir, 448))
    local saved = { ATLAS_STATE = os.getenv("ATLAS_STATE"), ATLAS_STATE_DIR = os.getenv("ATLAS_STATE_DIR") }
    sys.setenv("ATLAS_STATE", "")
    sys.setenv("ATLAS_STATE_DIR", dir)
    local function remove(path)
        local st = sys.stat(path)
        if st and st.type == "directory" then
            for _, name in ipairs(sys.readdir(path) or {}) do
                remove(path .. "/" .. name)
            end
        end
        os.remove(path)
    end
    return setmetatable({}, {
        __close = function()
            for name, value in pairs(saved) do
                sys.setenv(name, value or "")
            end
            remove(dir)
        end,
    })
end

-- The latencies a wait was made of: each stretch of the wait up to an event
-- of the resource it polls is that event's latency; what no such event
-- explains is calls and retries (or the world's other business).
local function attribute(wait, fired)
    local parts, by_name = {}, {}
    local from, done = wait.started, 0
    for _, f in ipairs(fired) do
        if f.resource == wait.resource and f.t > wait.started and f.t <= wait.ended then
            local part = by_name[f.latency]
            if not part then
                part = { latency = f.latency, count = 0, seconds = 0, each = f.seconds }
                by_name[f.latency] = part
                parts[#parts + 1] = part
            end
            part.count = part.count + 1
            part.seconds = part.seconds + (f.t - from)
            done = done + (f.t - from)
            from = f.t
        end
    end
    return parts, wait.seconds - done
end

-- Runs the playbook in the simulation and records what each step did.
local function simulate(pb, params)
    local playbook = require "atlas.run.playbook"
    local journal = require("atlas.run.journal").new(pb, params)
    journal.persist = false
    local steps, parts, current = {}, {}, nil
    local previous = log.set_sink(function(e)
        local now = runtime.now()
        if e.type == "step_start" then
            current = { index = e.index, name = e.step, started = now, reads = {}, writes = {}, waits = {}, calls = 0 }
            steps[e.index] = current
        elseif e.type == "step_end" and current then
            current.seconds = now - current.started
            current = nil
        elseif e.type == "call" and current then
            local key, writes = touched(e, pb.steps[current.index].mutates)
            if key then
                current.calls = current.calls + 1
                if writes then
                    current.writes[key] = true
                else
                    current.reads[key] = true
                end
            end
        elseif e.type == "wait" and current then
            current.waits[#current.waits + 1] =
                {
                    name = e.name,
                    resource = e.service and resource(e),
                    seconds = e.seconds,
                    polls = e.polls,
                    pace = e.pace,
                    started = now - e.seconds,
                    ended = now,
                }
        elseif e.type == "recovery_part" then
            parts[#parts + 1] = { name = e.name, seconds = e.seconds, detail = e.detail, before_run = e.before_run }
        end
    end)
    local was_yes, was_notice = runtime.yes, runtime.notice_at_once
    runtime.yes, runtime.notice_at_once = true, true
    local ok, result = pcall(playbook.run, pb, params, { journal = journal })
    runtime.yes, runtime.notice_at_once = was_yes, was_notice
    log.set_sink(previous)
    if not ok then error(result, 0) end
    for _, step in ipairs(steps) do
        step.mutates = pb.steps[step.index].mutates or next(step.writes) ~= nil
    end
    return result, steps, parts
end

-- Which steps up to `last` wait for which: deps[j][i] = true when step j
-- must follow step i.
local function dependencies(steps, last)
    local deps = {}
    for j = 1, last do
        deps[j] = {}
        local sj = steps[j]
        for i = 1, j - 1 do
            local si = steps[i]
            local follows = sj.mutates or sj.calls == 0
            if not follows then
                for key in pairs(si.writes) do
                    if sj.reads[key] or sj.writes[key] then follows = true end
                end
            end
            if follows then deps[j][i] = true end
        end
    end
    return deps
end

-- The steps that could overlap (neither waits, even indirectly, for the
-- other), and how long the recovery would take if they did.
local function overlaps(steps, last)
    local deps = dependencies(steps, last)
    local reaches = {} -- reaches[j][i]: j waits for i, directly or not
    local finish, longest = {}, 0
    for j = 1, last do
        reaches[j] = {}
        local start = 0
        for i in pairs(deps[j]) do
            reaches[j][i] = true
            for k in pairs(reaches[i]) do
                reaches[j][k] = true
            end
            start = math.max(start, finish[i])
        end
        finish[j] = start + steps[j].predicted
        longest = math.max(longest, finish[j])
    end
    local pairs_found = {}
    for j = 1, last do
        for i = 1, j - 1 do
            if not reaches[j][i] then pairs_found[#pairs_found + 1] = { steps[i].name, steps[j].name } end
        end
    end
    return pairs_found, longest
end

-- predict.run(pb, params) -> the prediction {playbook=, world=, recovery_seconds=,
-- path=, parts=, overlaps=, overlapped_seconds=, latencies=, engine_seconds=}
-- Raises a failed-run error when the playbook does not reach its recovery
-- point in the simulation.
function M.run(pb, params)
    if not runtime.world then error("predict.run: needs the mock world", 2) end
    local world = runtime.world
    local _ <close> = scratch_store()
    local result, steps, parts = simulate(pb, params)
    local recovery_index
    for i, step in ipairs(pb.steps) do
        if step.name == pb.recovery_step then recovery_index = i end
    end
    local recovered = result.recovered_at and steps[recovery_index] and steps[recovery_index].seconds
    -- A run that failed after its recovery point still predicts the recovery.
    if result.status ~= "ok" and not recovered then
        errors.raise {
            kind = "playbook",
            message = string.format(
                "the simulated run %s at step %q before the recovery point: %s",
                result.status,
                tostring(result.step),
                result.error and errors.message(result.error) or "?"
            ),
        }
    end

    local prediction = {
        playbook = pb.name,
        world = { kind = "mock", scenario = runtime.scenario or "healthy" },
        recovery_step = pb.recovery_step,
        path = {},
        parts = {},
        latencies = world.latency,
        engine_seconds = 0,
    }
    local total = 0
    for _, part in ipairs(parts) do
        prediction.parts[#prediction.parts + 1] = part
        total = total + part.seconds
    end
    for i = 1, recovery_index do
        local step = steps[i]
        local entry = { index = i, name = step.name, world_seconds = step.seconds, waits = {}, engine_seconds = 0 }
        for _, wait in ipairs(step.waits) do
            local latencies, other = attribute(wait, world.fired)
            -- A wait whose first poll found the state lagged behind nothing.
            local share = wait.polls > 1 and wait.pace or 0
            entry.waits[#entry.waits + 1] = {
                name = wait.name,
                world_seconds = wait.seconds,
                latencies = latencies,
                other_seconds = other,
                engine_seconds = share,
                pace = wait.pace,
                polls = wait.polls,
            }
            entry.engine_seconds = entry.engine_seconds + share
        end
        entry.seconds = step.seconds + entry.engine_seconds
        step.predicted = entry.seconds
        prediction.path[i] = entry
        prediction.engine_seconds = prediction.engine_seconds + entry.engine_seconds
        total = total + entry.seconds
    end
    prediction.recovery_seconds = total
    local found, longest = overlaps(steps, recovery_index)
    prediction.overlaps = found
    prediction.overlapped_seconds = longest
    for _, part in ipairs(parts) do
        prediction.overlapped_seconds = prediction.overlapped_seconds + part.seconds
    end
    return prediction
end

-- predict.render(prediction, rto) -> the text a person reads
function M.render(p, rto)
    local s = log.seconds_text
    local out = {}
    local function line(fmt, ...) out[#out + 1] = string.format(fmt, ...) end
    line("Predicted recovery of %s: %s (mock world, scenario %s)", p.playbook, s(p.recovery_seconds), p.world.scenario)
    line("")
    line("Critical path (the steps up to the recovery point, as the playbook runs them):")
    local function part_line(part)
        local when = part.before_run and " (before the run)" or ""
        line("  %-44s %7s  %s%s", part.name, s(part.seconds), part.detail or "", when)
    end
    for _, part in ipairs(p.parts) do
        if part.before_run then part_line(part) end
    end
    for _, step in ipairs(p.path) do
        local name = string.format("[%d] %s%s", step.index, step.name, step.name == p.recovery_step and " *" or "")
        line("  %-44s %7s", name, s(step.seconds))
        for _, wait in ipairs(step.waits) do
            local bits = {}
            for _, l in ipairs(wait.latencies) do
                bits[#bits + 1] = string.format("%s %d x %s", l.latency, l.count, s(l.each))
            end
            if wait.other_seconds > 0.0005 then bits[#bits + 1] = "calls and retries " .. s(wait.other_seconds) end
            bits[#bits + 1] = string.format("engine <= %s (one poll every %s)", s(wait.engine_seconds), s(wait.pace))
            line("      wait: %s", wait.name)
            line("            %s", table.concat(bits, " + "))
        end
    end
    for _, part in ipairs(p.parts) do
        if not part.before_run then part_line(part) end
    end
    local total = s(p.recovery_seconds)
    line("  %-44s %7s  (* the recovery point; the engine's share is %s)", "total", total, s(p.engine_seconds))
    line("")
    if #p.overlaps == 0 then
        line("No steps could overlap: each waits for the one before it.")
    else
        line("Steps that could overlap (neither waits for what the other changes):")
        for _, pair in ipairs(p.overlaps) do
            line("  %s  ||  %s", pair[1], pair[2])
        end
        if p.overlapped_seconds < p.recovery_seconds then
            line("Run together, the recovery would take %s.", s(p.overlapped_seconds))
        else
            line("Running them together would save nothing: the time is in the waits on the critical path.")
        end
    end
    line("")
    local names = {}
    for name in pairs(p.latencies) do
        names[#names + 1] = name
    end
    table.sort(names)
    local values = {}
    for _, name in ipairs(names) do
        values[#values + 1] = name .. "=" .. tostring(p.latencies[name])
    end
    line("World latencies (a scenario changes them with latencies = {...}):")
    line("  %s", table.concat(values, " "))
    if rto then
        local margin = rto - p.recovery_seconds
        line("")
        local verdict, sign = margin >= 0 and "meet it" or "MISS it", margin < 0 and "-" or ""
        line("RTO %s: predicted to %s (margin %s%s)", s(rto), verdict, sign, s(math.abs(margin)))
    end
    return table.concat(out, "\n") .. "\n"
end

return M
