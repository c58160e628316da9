-- The playbook model: declarations, typed parameters, and the step runner.
--
-- A playbook file returns atlas.playbook{name=, description=, params=, steps=}.
-- Loading it runs no step; `atlas-run check` and `list` rely on that. The
-- runner executes the steps in order, stops at the first failure, journals
-- each step so a crashed run can resume, and reports every boundary as an
-- event (atlas.log), which the sinks turn into the timeline or JSON lines.
local errors = require "atlas.errors"
local sys = require "atlas.sys"
local log = require "atlas.run.log"
local runtime = require "atlas.run.runtime"
local params_mod = require "atlas.run.params"

local M = {}

local exit = require "atlas.run.exit"
local EXIT = exit.codes

local PLAYBOOK_MT = { __name = "atlas.run.playbook" }

local function usage(fmt, ...)
    errors.raise { kind = "usage", message = select("#", ...) > 0 and fmt:format(...) or fmt }
end

local STEP_FIELDS = {
    name = "string",
    run = "function",
    mutates = "boolean",
    confirm = "string", -- or true: the step asks itself, with atlas.confirm, before it changes anything
    unattended = "string",
    undo = "function",
    description = "string",
    -- check(ctx, step): runs again on --resume although the step completed,
    -- for a step whose finding can have changed since (is the region still down?)
    check = "function",
    -- recovery_point: when this step completes, the service is recovered
    -- (a drill's recovery time ends here; see --drill and --rto)
    recovery_point = "boolean",
}

local function allowed_fields()
    local names = {}
    for name in pairs(STEP_FIELDS) do
        names[#names + 1] = name
    end
    table.sort(names)
    return table.concat(names, ", ")
end

-- Where a step is written, for messages: "path:line: " from its run function.
local function step_place(step)
    local info = type(step.run) == "function" and debug.getinfo(step.run, "S")
    if not info or info.what ~= "Lua" then return "" end
    local file = info.source:match("^@(.*)$") or info.short_src
    return file .. ":" .. info.linedefined .. ": "
end

-- Nothing changes unattended without being declared so: a step that changes
-- the world asks a person first (confirm), or says why it is safe to run
-- without one (unattended). Cron runs without --yes rely on this.
local function check_attendance(step, index)
    local function problem(fmt, ...)
        usage("%sstep %d (%s): " .. fmt, step_place(step), index, step.name, ...)
    end
    if step.unattended ~= nil and not step.unattended:match("%S") then
        problem("unattended must say why the step is safe without a person")
    end
    if step.mutates then
        if step.confirm and step.unattended then
            problem("has both confirm and unattended; a step either asks a person or says why it need not")
        elseif not step.confirm and not step.unattended then
            problem(
                "changes the world (mutates = true) but has neither a confirm nor an unattended reason; "
                    .. 'add confirm = "question?" or unattended = "why this is safe without a person"'
            )
        end
    elseif step.confirm == true then
        problem("confirm = true (the step asks itself) is for a step that changes the world (mutates = true)")
    elseif step.unattended then
        problem("declares unattended but does not change the world (add mutates = true, or remove unattended)")
    end
end

local function check_step(step, index, seen)
    if type(step) ~= "table" then usage("step %d is a %s, not a table", index, type(step)) end
    for key, value in pairs(step) do
        local expected = STEP_FIELDS[key]
        if not expected then
            usage(
                "step %d (%s): unknown field '%s' (allowed: %s)",
                index,
                tostring(step.name),
                tostring(key),
                allowed_fields()
            )
        elseif type(value) ~= expected and not (key == "confirm" and value == true) then
            usage(
                "step %d (%s): field '%s' must be a %s, not a %s",
                index,
                tostring(step.name),
                key,
                expected,
                type(value)
            )
        end
    end
    if type(step.name) ~= "string" or step.name == "" then usage("step %d has no name", index) end
    if not step.run then usage("step %d (%s) has no run function", index, step.name) end
    if seen[step.name] then usage("two steps are named '%s'", step.name) end
    seen[step.name] = true
    check_attendance(step, index)
end

-- playbook.declare(table) -> the checked declaration (what atlas.playbook returns)
function M.declare(decl)
    if type(decl) ~= "table" then usage("atlas.playbook takes a table, got a %s", type(decl)) end
    if type(decl.name) ~= "string" or not decl.name:match("^[%w_%-%.]+$") then
        usage("the playbook needs a name (letters, digits, _ - .), got %s", tostring(decl.name))
    end
    if type(decl.description) ~= "string" or decl.description == "" then
        usage("playbook %s needs a description", decl.name)
    end
    if type(decl.steps) ~= "table" or #decl.steps == 0 then
        usage("playbook %s needs a non-empty list of steps", decl.name)
    end
    -- lock: the run lock's name. Playbooks that act on the same resources
    -- share one (a failover and its recovery must never run at once);
    -- false for read-only playbooks, which any number may run.
    if decl.lock == nil then
        decl.lock = decl.name
    elseif decl.lock ~= false and (type(decl.lock) ~= "string" or not decl.lock:match("^[%w_%-%.]+$")) then
        usage("playbook %s: lock must be a name (letters, digits, _ - .) or false", decl.name)
    end
    if decl.validate ~= nil and type(decl.validate) ~= "function" then
        usage("playbook %s: validate must be a function", decl.name)
    end
    -- requires: the programs the playbook runs (terraform, git), checked by
    -- `check` and before the first step, never found missing half-way.
    if decl.requires ~= nil then
        if type(decl.requires) ~= "table" then usage("playbook %s: requires must be a list of program names", decl.name) end
        for _, program in ipairs(decl.requires) do
            if type(program) ~= "string" or not program:match("^[%w_%.%-]+$") then
                usage("playbook %s: requires: %s is not a program name", decl.name, tostring(program))
            end
        end
    end
    local seen = {}
    for i, step in ipairs(decl.steps) do
        check_step(step, i, seen)
        if step.recovery_point then
            if decl.recovery_step then
                usage("playbook %s: two steps declare recovery_point (%s and %s); recovery has one moment", decl.name, decl.recovery_step, step.name)
            end
            decl.recovery_step = step.name
        end
    end
    decl.param_specs = params_mod.check_specs(decl.name, decl.params or {})
    return setmetatable(decl, PLAYBOOK_MT)
end

function M.is_playbook(value) return getmetatable(value) == PLAYBOOK_MT end

-- Globals a playbook may read; anything else is a typo that would otherwise
-- surface as "attempt to call a nil value" in the middle of a failover.
local function strict_env()
    return setmetatable({}, {
        __index = function(_, key)
            local value = _G[key]
            if value == nil then error(string.format("undefined global '%s'", tostring(key)), 2) end
            return value
        end,
        __newindex = function(_, key)
            error(string.format("assignment to global '%s' (declare it local)", tostring(key)), 2)
        end,
    })
end

-- playbook.load(path) -> declaration, or raises a "usage" error that names
-- the file and line.
M.LOAD_SECONDS = 5

function M.load(path)
    local file = io.open(path, "r")
    if not file then usage("cannot open playbook %s", path) end
    file:close()
    local chunk, err = loadfile(path, "t", strict_env())
    if not chunk then usage("%s", err) end
    -- A playbook's top level only declares. `check` and `list` load files
    -- nobody has run yet, so a loop there is stopped, not waited for.
    local deadline = sys.monotime() + M.LOAD_SECONDS
    debug.sethook(function()
        if sys.monotime() > deadline then
            debug.sethook()
            usage("%s: still loading after %gs: a loop at the top level? (a playbook's top level only declares; work goes in steps)", path, M.LOAD_SECONDS)
        end
    end, "", 10000)
    local ok, decl = xpcall(chunk, function(e)
        if errors.is(e) then return e end
        return tostring(e)
    end)
    debug.sethook()
    if not ok then
        -- Ctrl-C or SIGTERM while loading is an interruption (exit 3), not bad input.
        if errors.is(decl, "interrupted") then error(decl, 0) end
        if errors.is(decl, "usage") then
            -- A message that already names the file and line keeps them.
            if decl.message:sub(1, #path + 1) ~= path .. ":" then decl.message = path .. ": " .. decl.message end
            error(decl, 0)
        end
        usage("%s: %s", path, errors.message(decl))
    end
    if not M.is_playbook(decl) then
        usage("%s does not return atlas.playbook{...} (no name, description, params and steps)", path)
    end
    decl.path = path
    return decl
end

-- playbook.search_path() -> the directories a playbook is looked up in by
-- name, in order: ./playbooks, each directory of $ATLAS_PLAYBOOK_PATH (a
-- team's own repository), then the playbooks installed beside the binary
-- (<prefix>/share/atlas-run/playbooks for <prefix>/bin/atlas-run), so an
-- installed atlas-run works from any directory.
function M.search_path()
    local dirs, seen = {}, {}
    local function add(dir)
        if dir and dir ~= "" and not seen[dir] then
            seen[dir] = true
            dirs[#dirs + 1] = dir
        end
    end
    add("playbooks")
    for dir in (os.getenv("ATLAS_PLAYBOOK_PATH") or ""):gmatch("[^:]+") do
        add(dir)
    end
    local exe = sys.realpath("/proc/self/exe")
    local prefix = exe and exe:match("^(.*)/bin/[^/]+$")
    if prefix then
        local installed = prefix .. "/share/atlas-run/playbooks"
        local st = sys.stat(installed)
        if st and st.type == "directory" then add(installed) end
    end
    return dirs
end

-- playbook.find(name) -> the path of a playbook given as a path, or by name
-- (with or without .lua) on the search path; nil and why otherwise.
function M.find(name)
    if sys.stat(name) then return name end
    if not name:find("/", 1, true) then
        local file = name:gsub("%.lua$", "") .. ".lua"
        for _, dir in ipairs(M.search_path()) do
            local candidate = dir .. "/" .. file
            if sys.stat(candidate) then return candidate end
        end
    end
    return nil,
        string.format(
            "no playbook %s (give a path, or a name from `atlas-run list`; searched %s)",
            name,
            table.concat(M.search_path(), ":")
        )
end

-- playbook.missing_programs(pb) -> the programs of pb.requires that cannot be run here
function M.missing_programs(pb)
    local proc = require "atlas.proc"
    local missing = {}
    for _, program in ipairs(pb.requires or {}) do
        if not proc.available(program) then missing[#missing + 1] = program end
    end
    return missing
end

local function check_requirements(pb)
    local missing = M.missing_programs(pb)
    if #missing > 0 then
        usage(
            "%s needs %s, which %s not on PATH: install %s first (nothing was run)",
            pb.name,
            table.concat(missing, " and "),
            #missing == 1 and "is" or "are",
            #missing == 1 and "it" or "them"
        )
    end
end

-- The journal ---------------------------------------------------------------

local journal_mod = require "atlas.run.journal"

-- The runner ----------------------------------------------------------------

-- Keeps the frames a playbook author can act on: their own files, not the
-- runner's or the C boundary.
local function trim_traceback(tb)
    local lines = {}
    for line in tb:gmatch("[^\n]+") do
        if
            not line:find("%[C%]")
            and not line:find("lua/atlas/")
            and not line:find("tail calls")
            and line ~= "stack traceback:"
        then
            lines[#lines + 1] = "  " .. line:gsub("^%s+", "")
        end
    end
    return table.concat(lines, "\n")
end

local function run_step(step, ctx)
    local traceback
    local ok, err = xpcall(step.run, function(e)
        traceback = trim_traceback(debug.traceback("", 2))
        return e
    end, ctx)
    return ok, err, traceback
end

local function make_context(pb, params, journal)
    local ctx = {
        playbook = pb.name,
        params = params,
        state = journal.state,
        run_id = journal.run_id,
        dry_run = runtime.dry_run,
    }
    function ctx.log(fmt, ...) log.info(fmt, ...) end
    function ctx.warn(fmt, ...) log.warn(fmt, ...) end
    function ctx.fail(fmt, ...) require("atlas").fail(fmt, ...) end
    function ctx.critical(fmt, ...) require("atlas").critical(fmt, ...) end
    -- ctx.recovery_part{name=, seconds=, detail=, before_run=bool}: a part of
    -- the recovery the engine cannot see, listed by name in a drill's report
    -- and added to its recovery time. before_run: it happens before anyone
    -- can start the run (Route53's detection), so it counts only when the
    -- recovery is measured from the run's start, not from incident_start=;
    -- otherwise it follows the recovery point (clients' cached DNS, the TTL).
    function ctx.recovery_part(part)
        if type(part) ~= "table" or type(part.name) ~= "string" or type(part.seconds) ~= "number" or part.seconds < 0 then
            error("ctx.recovery_part{name=, seconds=, detail=, before_run=} needs a name and seconds >= 0", 2)
        end
        log.event {
            type = "recovery_part",
            name = part.name,
            seconds = part.seconds,
            detail = part.detail,
            before_run = part.before_run and true or false,
        }
    end
    return ctx
end

-- A step changed the world when its journal record holds a mutation that
-- was (or may have been) made: a completed step always counts.
local function changed_world(record)
    if record.status == "ok" then return true end
    for _, call in ipairs(record.calls or {}) do
        if call.mutates and call.status ~= "error" then return true end
    end
    return false
end

-- --rollback: the undo of every step that changed the world, newest first,
-- the failed step included when its journal shows it changed something. An
-- undone step is not complete: a resume runs it again. Undo may call out
-- even after Ctrl-C (runtime.undoing_call).
local function undo_steps(pb, ctx, journal, upto)
    for i = upto, 1, -1 do
        local step, record = pb.steps[i], journal.steps[i]
        if step.undo and record and record.status ~= "undone" and changed_world(record) then
            log.warn("undo: %s", step.name)
            runtime.enter_step(step, { undo = true })
            local _, ok, err = runtime.undoing_call(run_step, { run = step.undo }, ctx)
            runtime.leave_step()
            if ok then
                journal:step_undone(i)
                log.event { type = "step_undone", step = step.name, index = i }
            else
                log.error("undo of '%s' failed: %s", step.name, errors.message(err))
            end
        end
    end
end

-- The failure of a step (or of its check on resume): journalled, shown,
-- and returned as {status=, exit=, error=, traceback=}.
local function step_failed(step, index, total, journal, err, traceback, duration)
    local status, code = exit.of_error(err)
    if errors.is(err) then err.step = step.name end
    local shown = status == "critical" and "failed" or status
    journal:step_finished(index, shown, duration, errors.message(err))
    -- A deliberate fail() or a declined confirmation needs no traceback;
    -- anything else says where it happened.
    local deliberate = (errors.is(err, "playbook") and err.code ~= "undeclared_change") or errors.is(err, "aborted")
    log.event {
        type = "step_end",
        step = step.name,
        index = index,
        total = total,
        status = shown,
        duration = duration,
        error = errors.message(err),
        traceback = (not deliberate and traceback ~= "") and traceback or nil,
    }
    return { status = status, exit = code, error = err, traceback = traceback }
end

-- Runs fn(ctx) under xpcall. Ctrl-C is final: a step that caught the
-- interrupt and returned normally is still interrupted, unless Ctrl-C was
-- its declared end (atlas.until_interrupted).
local function run_guarded(fn, ctx)
    local ok, err, traceback = run_step({ run = fn }, ctx)
    if ok and runtime.interrupted() and not runtime.interrupt_ends_step then
        ok, err = false, runtime.interrupted_error()
    end
    return ok, err, traceback
end

-- Runs one step: confirmation, then step.run under xpcall. Returns nil on
-- success, or the failure {status=, exit=, error=, traceback=}.
local function execute_step(step, index, total, ctx, journal)
    ctx.step = step.name
    local started = runtime.now()
    log.event { type = "step_start", step = step.name, index = index, total = total, mutates = step.mutates }
    journal:step_started(index, step.name)
    local ok, err, traceback = true, nil, nil
    -- From here until the step ends, runtime.may_change() answers for it.
    runtime.enter_step(step)
    if type(step.confirm) == "string" and not runtime.dry_run then
        ok, err = pcall(runtime.confirm, step.confirm)
    end
    if ok then
        ok, err, traceback = run_guarded(step.run, ctx)
    end
    runtime.leave_step()
    log.end_progress()
    local duration = runtime.now() - started
    if not ok then return step_failed(step, index, total, journal, err, traceback, duration) end
    journal:step_finished(index, "ok", duration)
    log.event {
        type = "step_end",
        step = step.name,
        index = index,
        total = total,
        status = "ok",
        duration = duration,
    }
    return nil
end

-- On --resume, a completed step with a check runs that check again: its
-- finding may no longer hold. A failed check stops the run there, and the
-- step itself runs on the next resume.
local function recheck_step(step, index, total, ctx, journal)
    ctx.step = step.name
    local started = runtime.now()
    log.event { type = "step_start", step = step.name, index = index, total = total, check = true }
    -- A check reads: it runs as the step, but without the confirmation a change needs.
    runtime.enter_step(step)
    local ok, err, traceback = run_guarded(function(c) return step.check(c, step) end, ctx)
    runtime.leave_step()
    log.end_progress()
    local duration = runtime.now() - started
    if not ok then
        -- The finding no longer holds: the step itself runs on the next resume.
        journal.steps[index].calls = nil
        return step_failed(step, index, total, journal, err, traceback, duration)
    end
    log.event {
        type = "step_end",
        step = step.name,
        index = index,
        total = total,
        status = "checked",
        reason = "completed in an earlier attempt; its check passed again",
        duration = duration,
    }
    return nil
end

local function skip_step(step, index, total)
    log.event {
        type = "step_end",
        step = step.name,
        index = index,
        total = total,
        status = "skipped",
        reason = "completed in an earlier attempt",
        duration = 0,
    }
end

-- playbook.resume_args(pb, record, args) -> the arguments of the resumed run.
-- A resumed run is the same run: it takes the journal's parameters. A value
-- given again must be the same; a secret (masked in the journal) is given again.
function M.resume_args(pb, record, args)
    local recorded = record.params or {}
    local merged = {}
    for name, value in pairs(recorded) do
        if value ~= "[REDACTED]" then
            merged[name] = type(value) == "table" and table.concat(value, ",") or tostring(value)
        end
    end
    for _, spec in ipairs(pb.param_specs) do
        local given = args[spec.name]
        if given ~= nil and not spec.secret and recorded[spec.name] ~= "[REDACTED]" then
            local value = params_mod.parse({ spec }, { [spec.name] = given })[spec.name]
            local before = recorded[spec.name]
            local same = type(value) == "table"
                    and type(before) == "table"
                    and table.concat(value, ",") == table.concat(before, ",")
                or value == before
            if not same then
                usage(
                    "--resume: parameter %s is %s in run %s, not %s; a resumed run keeps its parameters "
                        .. "(start a new run to change them)",
                    spec.name,
                    before == nil and "not set" or type(before) == "table" and table.concat(before, ",")
                        or tostring(before),
                    tostring(record.run_id),
                    given
                )
            end
        end
    end
    for name, value in pairs(args) do
        if merged[name] == nil or recorded[name] == "[REDACTED]" then merged[name] = value end
    end
    return merged
end

-- When the run reached its recovery point: the end of the step that declares
-- it, as the journal has it (a resumed run may have completed it earlier).
-- nil when that step did not complete, or was undone.
local function recovered_at(pb, journal)
    for index, step in ipairs(pb.steps) do
        local record = journal.steps[index]
        if step.recovery_point and record and record.status == "ok" and record.started then
            return record.started + (record.duration or 0)
        end
    end
    return nil
end

-- playbook.run(pb, params, {journal=?, resumed=run_id?, rollback=bool}) -> result
-- result = {status="ok"|"failed"|"critical"|"refused"|"interrupted", exit=, error=, step=, journal=,
--           started=, duration=, recovered_at=} (times in runtime.now()'s clock)
function M.run(pb, params, options)
    options = options or {}
    check_requirements(pb)
    local journal = options.journal or journal_mod.new(pb, params)
    local ctx = make_context(pb, params, journal)
    local started = runtime.now()
    local total = #pb.steps
    log.event {
        type = "run_start",
        playbook = pb.name,
        run_id = journal.run_id,
        mode = runtime.mode,
        scenario = runtime.world and runtime.scenario or nil,
        dry_run = runtime.dry_run,
        params = params_mod.display(pb.param_specs, params),
        resumed = options.resumed or nil,
    }

    local result = { status = "ok", exit = EXIT.ok, journal = journal }
    -- Calls are journalled only while this run's steps run, however it ends.
    local _ <close> = journal:activate()
    for index, step in ipairs(pb.steps) do
        local record = journal.steps[index]
        local failure
        if runtime.interrupted() then
            failure = { status = "interrupted", exit = EXIT.refused, error = runtime.interrupted_error() }
            failure.error.step = step.name
            log.event { type = "step_end", step = step.name, index = index, total = total, status = "interrupted" }
        elseif record and record.status == "ok" and step.check and options.resumed then
            failure = recheck_step(step, index, total, ctx, journal)
        elseif record and record.status == "ok" then
            skip_step(step, index, total)
        else
            failure = execute_step(step, index, total, ctx, journal)
        end
        if failure then
            result.status, result.exit, result.error = failure.status, failure.exit, failure.error
            result.step, result.traceback = step.name, failure.traceback
            if options.rollback and failure.status ~= "refused" then undo_steps(pb, ctx, journal, index) end
            break
        end
    end

    local duration = runtime.now() - started
    journal:finish(result.status, duration)
    result.duration = duration
    result.started = started
    result.recovery_step = pb.recovery_step
    result.recovered_at = recovered_at(pb, journal)
    log.event {
        type = "run_end",
        playbook = pb.name,
        run_id = journal.run_id,
        status = result.status,
        exit_code = result.exit,
        duration = duration,
        failed_step = result.step,
        error = result.error and errors.message(result.error) or nil,
    }
    return result
end

return M
