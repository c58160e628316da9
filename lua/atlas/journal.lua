-- The run journal: after every step, what ran, how it ended and the
-- playbook's ctx.state, written to the run's state store (atlas.state: the
-- state directory, or a team's shared store). A run that crashed or was
-- interrupted can be resumed from it: completed steps are skipped and
-- ctx.state is restored. Each write is conditional on the version read or
-- written last, so two processes can never both append to one run.
local sys = require "atlas.sys"
local json = require "atlas.json"
local runtime = require "atlas.runtime"
local log = require "atlas.log"
local errors = require "atlas.errors"
local state = require "atlas.state"

local M = {}
M.__index = M

-- journal.state_dir() -> this machine's state directory (atlas.state owns the rule)
function M.state_dir() return state.local_dir() end

local function run_key(run_id) return "runs/" .. run_id .. ".json" end
local function last_key(name) return name .. ".last" end

-- The version each record had when it was read, for the conditional write
-- of the run that resumes it.
local read_versions = setmetatable({}, { __mode = "k" })

-- Unique per process too: tests run many playbooks in one process, often
-- within one second.
local issued = {}
local function new_run_id(name)
    local id = string.format("%s-%s-%d", name, os.date("!%Y%m%dT%H%M%SZ", math.floor(sys.time())), sys.getpid())
    issued[id] = (issued[id] or 0) + 1
    if issued[id] > 1 then id = id .. "." .. issued[id] end
    return id
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
        -- who and where, for `atlas-run runs` and `show`
        started = runtime.now(),
    }, M)
    self.user, self.host = state.whoami()
    self.file = state.open():where(run_key(self.run_id))
    return self
end

-- Writes the record on the condition that the run is as this process last
-- left it. A write whose outcome this process never learnt (the connection
-- dropped, Ctrl-C cut it short) may have landed: finding exactly that text
-- in the store is no conflict, and its version is taken.
local function put_conditionally(self, store, text)
    local key = run_key(self.run_id)
    local attempted = self.unconfirmed
    self.unconfirmed = text
    local version, err, code = store:put(key, text, { if_absent = self.version == nil, if_version = self.version })
    if code == "PreconditionFailed" and attempted then
        local current, current_version = store:get(key)
        if current == attempted then
            version, err, code = store:put(key, text, { if_version = current_version })
        end
    end
    if version then self.unconfirmed = nil end
    return version, err, code
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
        user = self.user,
        host = self.host,
        started = self.started,
        resumes = self.resumes and json.array(self.resumes) or nil,
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
    local store = state.open()
    -- The first write creates the run; each later one must find the version
    -- this process wrote, or another process has written to the run.
    local version, err, code = put_conditionally(self, store, text)
    if code == "PreconditionFailed" then
        errors.raise {
            kind = "state",
            code = "JournalConflict",
            message = string.format(
                "the journal %s was written by another process since this run read it; stopping so that the two do not both continue the run",
                self.file
            ),
        }
    elseif not version then
        log.warn("journal: cannot write %s: %s", self.file, err)
    else
        self.version = version
    end
    store:put(last_key(self.playbook), self.run_id)
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

-- journal.last(name) -> the most recent journal record of that playbook, or
-- nil (none), or nil and why it cannot be read
function M.last(name)
    local store = state.open()
    local run_id, err, code = store:get(last_key(name))
    if not run_id then
        if code == "NotFound" then return nil end
        return nil, "cannot read the last run of " .. name .. ": " .. tostring(err)
    end
    run_id = run_id:match("^[^\n]*")
    return M.load(run_id)
end

-- journal.load(run_id) -> the journal record of that run, or nil and why not
function M.load(run_id)
    local store = state.open()
    local text, version_or_err, code = store:get(run_key(run_id))
    if not text then
        if code == "NotFound" then return nil, "no run " .. run_id .. " in " .. store:where() end
        return nil, "cannot read journal " .. run_id .. ": " .. tostring(version_or_err)
    end
    local ok, record = pcall(json.decode, text)
    if not ok then return nil, "journal " .. run_id .. " is unreadable: " .. record end
    read_versions[record] = version_or_err
    return record
end

-- journal.resume(playbook, record) -> a journal continuing that run
function M.resume(pb, record)
    local self = M.new(pb, record.params)
    self.run_id = record.run_id
    self.file = state.open():where(run_key(self.run_id))
    self.version = read_versions[record]
    -- The run keeps who started it; each resume adds who continued it, and where.
    self.user, self.host, self.started =
        record.user or self.user, record.host or self.host, record.started or self.started
    self.resumes = record.resumes or {}
    local user, host = state.whoami()
    self.resumes[#self.resumes + 1] = { user = user, host = host, at = runtime.now() }
    for i, step in ipairs(record.steps or {}) do
        if pb.steps[i] and pb.steps[i].name == step.name then self.steps[i] = step end
    end
    self.state = record.state or {}
    return self
end

-- journal.lock(name, {run_id=}) -> lock handle, or nil, who holds it, "LockHeld",
-- or nil, message, code when the store cannot take locks.
-- One run of a playbook at a time: two operators failing over the same
-- region at once is worse than either alone.
function M.lock(name, info) return state.open():lock(name, info) end

return M
