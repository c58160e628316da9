-- The run journal: after every step, what ran, how it ended and the
-- playbook's ctx.state, written atomically to the state directory. A run
-- that crashed or was interrupted can be resumed from it: completed steps
-- are skipped and ctx.state is restored.
--
-- State directory: $ATLAS_STATE_DIR, else $XDG_STATE_HOME/atlas-run, else
-- ~/.local/state/atlas-run. Mock-world runs keep theirs under mock/, so a
-- drill never resumes a real run or holds its lock.
local sys = require "atlas.sys"
local json = require "atlas.json"
local runtime = require "atlas.runtime"
local log = require "atlas.log"

local M = {}
M.__index = M

function M.state_dir()
    local base = os.getenv("ATLAS_STATE_DIR")
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

local function new_run_id(name)
    return string.format("%s-%s-%d", name, os.date("!%Y%m%dT%H%M%SZ", math.floor(sys.time())), sys.getpid())
end

-- journal.new(playbook, params) -> a journal that is written to disk unless
-- this is a dry run (a dry run changes nothing, its journal included).
function M.new(pb, params)
    local self = setmetatable({
        run_id = new_run_id(pb.name),
        playbook = pb.name,
        path = pb.path,
        specs = pb.param_specs,
        params = params,
        mode = runtime.mode,
        status = "running",
        steps = {},
        state = {},
        persist = not runtime.dry_run,
    }, M)
    self.file = M.state_dir() .. "/runs/" .. self.run_id .. ".json"
    return self
end

function M:save()
    if not self.persist then return end
    local record = {
        run_id = self.run_id,
        playbook = self.playbook,
        path = self.path,
        -- Secret parameters are masked: --resume asks for them again.
        params = self.specs and require("atlas.params").display(self.specs, self.params) or self.params,
        mode = self.mode,
        status = self.status,
        steps = json.array(self.steps),
        state = self.state,
        updated = sys.time(),
    }
    local ok, text = pcall(json.encode, log.redact_table(record), { indent = 2 })
    if not ok then
        log.warn("journal: ctx.state cannot be saved as JSON (%s); resume will not restore it", text)
        record.state = nil
        text = json.encode(log.redact_table(record), { indent = 2 })
    end
    sys.mkdir(M.state_dir() .. "/runs", 448)
    -- A real run's journal must survive a crash of the machine; a mock
    -- world's need not, and fsync would be most of a mock test's time.
    local durable = runtime.world == nil
    local written, err = sys.write_atomic(self.file, text, 384, durable)
    if not written then log.warn("journal: cannot write %s: %s", self.file, err) end
    sys.write_atomic(M.state_dir() .. "/" .. self.playbook .. ".last", self.run_id, 384, durable)
end

function M:step_started(index, name)
    self.steps[index] = { name = name, status = "running", started = runtime.now() }
    self:save()
end

function M:step_finished(index, status, duration, err)
    local step = self.steps[index]
    step.status, step.duration, step.error = status, duration, err
    self:save()
end

function M:finish(status, duration)
    self.status, self.duration = status, duration
    self:save()
end

-- journal.last(name) -> the most recent journal record of that playbook, or nil
function M.last(name)
    local f = io.open(M.state_dir() .. "/" .. name .. ".last", "r")
    if not f then return nil end
    local run_id = f:read("l")
    f:close()
    f = io.open(M.state_dir() .. "/runs/" .. run_id .. ".json", "r")
    if not f then return nil end
    local text = f:read("a")
    f:close()
    local ok, record = pcall(json.decode, text)
    if not ok then return nil, "journal " .. run_id .. " is unreadable: " .. record end
    return record
end

-- journal.resume(playbook, record) -> a journal continuing that run
function M.resume(pb, record)
    local self = M.new(pb, record.params)
    self.run_id = record.run_id
    self.file = M.state_dir() .. "/runs/" .. self.run_id .. ".json"
    for i, step in ipairs(record.steps or {}) do
        if pb.steps[i] and pb.steps[i].name == step.name then self.steps[i] = step end
    end
    self.state = record.state or {}
    return self
end

-- journal.lock(name) -> lock handle, or nil and who holds it.
-- One run of a playbook at a time: two operators failing over the same
-- region at once is worse than either alone.
function M.lock(name)
    local dir = M.state_dir()
    sys.mkdir(dir, 448)
    local note =
        string.format("pid %d on %s since %s", sys.getpid(), sys.hostname() or "?", os.date("!%Y-%m-%dT%H:%M:%SZ"))
    return sys.lock(dir .. "/" .. name .. ".lock", note)
end

return M
