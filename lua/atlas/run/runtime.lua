-- The run's mode, chosen once at start-up: real or mock world, dry run,
-- pre-approved confirmations. World-facing modules ask backend() on every
-- call, so a playbook cannot tell which implementation it has, and a test
-- can swap worlds between cases.
local sys = require "atlas.sys"
local errors = require "atlas.errors"

local M = {
    mode = "real",
    world = nil,
    dry_run = false,
    yes = false,
    scenario = nil,
}

-- Each world-facing interface has a real and a mock implementation, both
-- modules with the same functions, named atlas.<interface>.real and
-- atlas.<interface>.mock: the folder is the interface.
local INTERFACES = { aws = true, sql = true, http = true, proc = true }

-- Work that must go on while a run waits or calls out, without threads:
-- the shared run lock renews its lease here. tick() runs before each outside
-- call (runtime.backend) and between the slices of a runtime.sleep.
local keepers, ticking = {}, false

-- runtime.keep_alive(fn, interval) registers fn to run at least every
-- interval seconds of sleeping; keep_alive(fn, nil) removes it.
function M.keep_alive(fn, interval) keepers[fn] = interval end

-- runtime.tick() -> runs each registered fn (which decides whether its work is due)
function M.tick()
    if ticking or next(keepers) == nil then return end
    ticking = true
    local ok, err = pcall(function()
        for fn in pairs(keepers) do
            fn()
        end
    end)
    ticking = false
    if not ok then error(err, 0) end
end

local function tick_interval()
    local shortest
    for _, interval in pairs(keepers) do
        if not shortest or interval < shortest then shortest = interval end
    end
    return shortest
end

-- runtime.backend(name) -> the implementation module for the current mode
function M.backend(name)
    if not INTERFACES[name] then error("no backend named " .. tostring(name), 2) end
    M.tick()
    return require("atlas." .. name .. (M.world and ".mock" or ".real"))
end

-- runtime.now() -> seconds since the epoch: virtual under the mock world
function M.now()
    if M.world then return M.world:now() end
    return sys.time()
end

-- runtime.random() -> a number in [0, 1): the retry jitter's dice. The mock
-- world throws its own, seeded, so a scenario (throttling included) takes the
-- same virtual time on every run and a drill's figures can be compared.
function M.random()
    if M.world then return M.world:random() end
    return math.random()
end

-- Ctrl-C is final. The signal raises once, where Lua happens to be; a
-- playbook's pcall can catch that. So every later outside call (AWS, SQL,
-- HTTP, commands, sleeps and waits) raises it again: nothing a playbook does
-- after Ctrl-C reaches the world. The one exception is --rollback's undo
-- (runtime.undoing), which must be able to finish putting things back.
M.interrupt_noted = false
M.undoing = false
M.replaying = false

-- runtime.interrupted() -> true once the run was interrupted
function M.interrupted() return M.interrupt_noted or sys.interrupted() end

-- runtime.interrupt(): marks the run interrupted, as SIGINT does (for
-- in-process tests, which cannot signal themselves)
function M.interrupt() M.interrupt_noted = true end

function M.interrupted_error()
    return errors.new { kind = "interrupted", code = "interrupted", message = "interrupted by signal" }
end

-- Raises the interrupted error once the run was interrupted, unless an undo is running.
function M.check_interrupted()
    if M.interrupted() and not M.undoing then error(M.interrupted_error(), 0) end
end

-- runtime.until_interrupted(fn, ...) -> true when fn returned, false when
-- Ctrl-C ended it. For a step whose normal end is Ctrl-C (a log follow, as
-- `tail -f`): the step may then end normally. The interrupt stays final for
-- everything else: no later outside call is made and no later step runs.
M.interrupt_ends_step = false
function M.until_interrupted(fn, ...)
    local ok, err = pcall(fn, ...)
    if ok then return true end
    if (errors.is(err, "interrupted") or err == "interrupted") and M.interrupted() then
        M.interrupt_ends_step = true
        return false
    end
    error(err, 0)
end

-- runtime.undoing_call(fn, ...) -> pcall(fn, ...), with outside calls (and
-- native waits) allowed even after Ctrl-C: the undo of --rollback.
function M.undoing_call(fn, ...)
    local was = M.undoing
    M.undoing = true
    sys.suspend_interrupt(true)
    local result = table.pack(pcall(fn, ...))
    M.undoing = was
    sys.suspend_interrupt(was)
    return table.unpack(result, 1, result.n)
end

-- runtime.sleep(seconds): advances the virtual clock under the mock world,
-- so ten minutes of waiting costs microseconds in a test.
-- runtime.slept: seconds spent in runtime.sleep so far (the waits a drill
-- report shades on its timeline).
M.slept = 0

function M.sleep(seconds)
    M.check_interrupted()
    -- A step replaying its recorded calls (atlas.journal) has already waited.
    if seconds <= 0 or M.replaying then return end
    M.slept = M.slept + seconds
    if M.world then
        M.world:advance(seconds)
        return
    end
    local deadline = sys.monotime() + seconds
    repeat
        local slice = math.min(deadline - sys.monotime(), tick_interval() or seconds)
        if slice > 0 then sys.sleep(slice) end
        M.check_interrupted()
        M.tick()
    until sys.monotime() >= deadline
end

-- runtime.sleep_between_polls(seconds): a waiter's pause. The same as
-- runtime.sleep, except when the simulation is set to notice at once
-- (runtime.notice_at_once, for --predict): then the pause ends at the world's
-- next change, so a wait lasts exactly as long as the world takes.
M.notice_at_once = false

function M.sleep_between_polls(seconds)
    if M.notice_at_once and M.world and not M.replaying then
        local next_event = M.world:next_event()
        if next_event and next_event > M.world:now() then
            seconds = math.min(seconds, next_event - M.world:now())
        end
    end
    M.sleep(seconds)
end

-- runtime.use_world(world): from now on, calls go to this mock world.
-- The world's clock starts at its fixed epoch; the anchor ties that instant
-- to the real time the world was taken into use (runtime.wall).
function M.use_world(world)
    M.world = world
    M.mode = world and "mock" or "real"
    M.anchor = world and { virtual = world:now(), real = sys.time() } or nil
end

-- runtime.wall(t?) -> t (default now()) as a real wall-clock time. A mock
-- run keeps its virtual durations but is dated by the real clock: a drill
-- rehearsed today says today, not the world's epoch.
function M.wall(t)
    t = t or M.now()
    local anchor = M.anchor
    if not M.world or not anchor then return t end
    return t - anchor.virtual + anchor.real
end

function M.use_real() M.use_world(nil) end

-- runtime.outside_world(fn, ...) -> pcall(fn, ...) with the real backends,
-- the mock world set aside: a drill's notification reaches the real team.
function M.outside_world(fn, ...)
    local world, mode, anchor = M.world, M.mode, M.anchor
    M.world, M.mode = nil, "real"
    local result = table.pack(pcall(fn, ...))
    M.world, M.mode, M.anchor = world, mode, anchor
    return table.unpack(result, 1, result.n)
end

-- runtime.setup{mock=, scenario=, dry_run=, yes=}
function M.setup(options)
    M.dry_run = options.dry_run and true or false
    M.yes = options.yes and true or false
    M.scenario = options.scenario
    if options.mock or options.scenario then
        local World = require "atlas.mock.world"
        M.use_world(World.new { scenario = options.scenario or "healthy" })
    else
        M.use_real()
    end
end

-- The read-only AWS actions. Everything else changes the world, so dry-run
-- prints it instead of making it.
local READ_PREFIXES = {
    "Describe",
    "List",
    "Get",
    "Filter",
    "Lookup",
    "Search",
    "Head",
    "Query",
    "Scan",
    "BatchGet",
    "Test",
    "Validate",
    "Estimate",
    "Simulate",
}
local READ_ACTIONS = { AssumeRole = true, GetCallerIdentity = true }

-- The answer per action name: every AWS call asks several times (dry run,
-- journal, fresh connection), and the prefix scan made a string per prefix.
local mutating_seen = {}

-- runtime.is_mutating(service, action) -> true when the AWS action changes state
function M.is_mutating(service, action)
    local known = mutating_seen[action]
    if known ~= nil then return known end
    known = not READ_ACTIONS[action]
    for _, prefix in ipairs(READ_PREFIXES) do
        if not known then break end
        if action:sub(1, #prefix) == prefix then known = false end
    end
    if type(action) == "string" then mutating_seen[action] = known end
    return known
end

-- The step that is running, set by atlas.playbook: {name=, mutates=,
-- unattended=, confirmed=, undo=}. nil outside a playbook run (tests, -e).
M.step = nil

-- runtime.enter_step(step, {undo=bool}) / runtime.leave_step()
function M.enter_step(step, how)
    M.step = {
        name = step.name,
        mutates = step.mutates,
        unattended = step.unattended,
        confirmed = false,
        undo = how and how.undo or false,
    }
end

function M.leave_step() M.step = nil end

-- runtime.may_change() -> true, or false and the reason ("dry-run",
-- "undeclared", "unconfirmed"). One rule for every world-facing module:
-- nothing changes in a dry run; in a run, only a step declared
-- mutates = true changes the world, and only once its confirmation was
-- given (or it is declared unattended). --rollback's undo may always.
function M.may_change()
    if M.dry_run then return false, "dry-run" end
    local step = M.step
    if not step or step.undo then return true end
    if not step.mutates then return false, "undeclared" end
    if step.unattended or step.confirmed then return true end
    return false, "unconfirmed"
end

-- runtime.refuse_change(call, reason, outcome?) raises the error for a
-- change (call names it: "ecs UpdateService (us-east-1)") that the running
-- step may not make. Called before the change is sent, so nothing happens;
-- outcome says otherwise ("PostgreSQL refused it: ...").
function M.refuse_change(call, reason, outcome)
    local step = M.step and M.step.name or "?"
    local message
    if reason == "unconfirmed" then
        message = string.format(
            'step "%s" declares that it asks before it changes anything (confirm = true), but made %s before '
                .. "atlas.confirm was answered; %s",
            step,
            call,
            outcome or "it was not sent"
        )
    else
        message = string.format(
            'step "%s" is not declared to change the world (mutates = true), but made %s; %s. '
                .. "Declare the step mutates = true, with its confirm or unattended reason",
            step,
            call,
            outcome or "it was not sent"
        )
    end
    errors.raise { kind = "playbook", code = "undeclared_change", message = message, step = step, call = call }
end

-- runtime.check_change(call) -> "dry-run" when the caller must print the
-- change instead of making it; nil when it may go ahead; raises when the
-- running step may not make it.
function M.check_change(call)
    local ok, reason = M.may_change()
    if ok then return nil end
    if reason == "dry-run" then return "dry-run" end
    M.refuse_change(call, reason)
end

-- runtime.confirm(message) -> true, or raises an "aborted" error.
-- With no terminal and no --yes it refuses: cron must never hang on a prompt.
function M.confirm(message)
    local log = require "atlas.run.log"
    if M.yes then
        log.info("confirmed by --yes: %s", message)
        log.event { type = "confirmation", question = message, by = "--yes", step = M.step and M.step.name }
        if M.step then M.step.confirmed = true end
        return true
    end
    if not sys.isatty(0) then
        errors.raise {
            kind = "aborted",
            code = "confirmation_refused",
            message = 'needs confirmation ("' .. message .. '"), no terminal to ask and --yes not given',
        }
    end
    log.end_progress()
    io.stdout:write(message, " [y/N] ")
    io.stdout:flush()
    local answer = io.stdin:read("l")
    M.check_interrupted()
    if answer and answer:lower():match("^%s*y") then
        log.event { type = "confirmation", question = message, by = "terminal", step = M.step and M.step.name }
        if M.step then M.step.confirmed = true end
        return true
    end
    errors.raise { kind = "aborted", code = "declined", message = "declined: " .. message }
end

return M
