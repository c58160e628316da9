-- The run journal: what ran, how it ended and the playbook's ctx.state,
-- written to the run's state store (atlas.state: the state directory, or a
-- team's shared store) at every step boundary and around every mutating
-- call. A run that crashed or was interrupted can be resumed from it:
-- completed steps are skipped (unless an undo reversed them) and ctx.state
-- is restored. Each write is conditional on the version read or written
-- last, so two processes can never both append to one run.
--
-- Calls. While a step runs, the outside calls it makes (atlas.aws.call) are
-- kept in order in the step's record: reads with their answers, mutations
-- as an intent written to disk before the call is sent ("sent") and their
-- result after it ("ok" or "error"), each time with ctx.state. A step that
-- is run again (it was cut off, failed or was interrupted) replays that
-- record: while its calls match the recorded ones (same operation, region
-- and parameters, in order) it gets the recorded answers and nothing is
-- sent, so it takes the same decisions with the same values and no
-- completed mutation is repeated. After the record, calls go out again. A
-- mutation whose intent has no result is unknown: it is sent again only when
-- it is idempotent (declared, or a client token that the service
-- deduplicates, reused from the record); otherwise the step stops and says so.
local sys = require "atlas.sys"
local json = require "atlas.json"
local runtime = require "atlas.run.runtime"
local log = require "atlas.run.log"
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

-- journal:to_record() -> the record as written to the store (before redaction)
function M:to_record()
    return {
        run_id = self.run_id,
        playbook = self.playbook,
        path = self.path,
        -- Secret parameters are masked: --resume asks for them again.
        params = self.specs and require("atlas.run.params").display(self.specs, self.params) or self.params,
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
end

function M:save()
    if not self.persist then return end
    local record = self:to_record()
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
        M.unwritable(self.file, err)
    end
    local created = self.version == nil
    self.version = version
    -- The pointer to the last run changes when a run is created, not at every write.
    if created or not self.last_written then
        local written, last_err = store:put(last_key(self.playbook), self.run_id)
        if not written then M.unwritable(store:where(last_key(self.playbook)), last_err) end
        self.last_written = true
    end
    M.after_write(self)
end

-- A journal that cannot be written cannot promise a resume: the run stops
-- before its next call rather than change the world unrecorded. The state
-- location is the operator's input, so this is exit 2, naming it.
function M.unwritable(where, err)
    errors.raise {
        kind = "usage",
        code = "StateUnwritable",
        message = string.format(
            "cannot write the journal %s: %s (check --state-dir / ATLAS_STATE_DIR)",
            where,
            tostring(err)
        ),
    }
end

-- Test hook, documented in docs/architecture.md and used only by the
-- crash tests: ATLAS_TEST_KILL_AFTER_WRITES=N makes the process SIGKILL
-- itself right after its Nth journal write, a crash at an exact point.
local kill_after = tonumber(os.getenv("ATLAS_TEST_KILL_AFTER_WRITES") or "")
local writes = 0
function M.after_write(_journal)
    writes = writes + 1
    if kill_after and writes >= kill_after then sys.kill(sys.getpid(), "KILL") end
end



function M:step_started(index, name)
    local earlier = self.steps[index]
    -- An undone step's calls were reversed: it starts afresh.
    local replay = earlier and earlier.status ~= "undone" and earlier.calls or nil
    self.steps[index] = { name = name, status = "running", started = runtime.now(), calls = json.array {} }
    self.current = { index = index, replay = replay, position = 1 }
    runtime.replaying = replay ~= nil and replay[1] ~= nil
    self:save()
end

-- Only the calls that a replay needs stay in the record: a completed step
-- keeps its mutations (what it changed); an unfinished one keeps every
-- call up to its last mutation, the prefix that leads to it.
local function keep_calls(calls, completed)
    local kept, last_mutation = {}, 0
    for i, c in ipairs(calls) do
        if c.mutates then last_mutation = i end
    end
    for i = 1, last_mutation do
        if not completed or calls[i].mutates then kept[#kept + 1] = calls[i] end
    end
    return #kept > 0 and json.array(kept) or nil
end

function M:step_finished(index, status, duration, err)
    local step = self.steps[index]
    step.status, step.duration, step.error = status, duration, err
    step.calls = keep_calls(step.calls or {}, status == "ok")
    self.current = nil
    runtime.replaying = false
    self:save()
end

-- journal:step_undone(index): the undo reversed the step; a resume runs it again.
function M:step_undone(index)
    local step = self.steps[index]
    if step then
        step.status = "undone"
        self:save()
    end
end

-- The journal of the step that is running now, if any: atlas.aws.call
-- records and replays through it.
local active

-- journal:activate() -> a to-be-closed value that deactivates it
function M:activate()
    active = self
    return setmetatable({}, { __close = M.deactivate })
end

function M.deactivate()
    if active then active.current = nil end
    active = nil
    runtime.replaying = false
end

-- journal.call_begin{service=, action=, region=, params=, mutates=, token=?, repeatable=}
--   -> entry, or nil when no step is running
-- Called by atlas.aws.call before it sends. entry.replayed is the recorded
-- response (send nothing); entry.resend_token the recorded client token to
-- send again. A mutation's intent is on disk before this returns. Raises
-- when a mutation of unknown outcome may not be repeated.
function M.call_begin(call)
    local self = active
    local current = self and self.current
    if not current then return nil end
    local op = call.service .. "." .. call.action
    local fingerprint = M.fingerprint(call.params, call.token)
    local entry = { op = op, region = call.region, fingerprint = fingerprint, mutates = call.mutates or nil }
    local recorded = current.replay and current.replay[current.position]
    if recorded then
        current.position = current.position + 1
        local same = recorded.op == op and recorded.region == call.region and recorded.fingerprint == fingerprint
        if same and recorded.status == "ok" and recorded.response ~= nil then
            entry.status, entry.response, entry.replayed = "ok", recorded.response, recorded.response
            entry.token_value = recorded.token_value
            self:add_call(entry)
            runtime.replaying = current.replay[current.position] ~= nil
            return entry
        end
        current.replay = nil
        runtime.replaying = false
        if not same then
            log.warn(
                "journal: step %q now calls %s (%s) where its earlier attempt called %s (%s); "
                    .. "from here on every call is made again",
                self.steps[current.index].name,
                op,
                tostring(call.region),
                recorded.op,
                tostring(recorded.region)
            )
        elseif recorded.status == "sent" then
            if not call.repeatable then
                entry.status = "unknown"
                self:add_call(entry, true)
                errors.raise {
                    kind = "aws",
                    code = "UnknownOutcome",
                    service = call.service,
                    action = call.action,
                    region = call.region,
                    message = "the earlier attempt was cut off after sending this call and before its answer; "
                        .. "whether it took effect is unknown and it is not safe to repeat. Check it, "
                        .. "then --resume again to send it again",
                }
            end
            entry.resend_token = recorded.token_value
        end
    end
    entry.status = call.mutates and "sent" or "pending"
    entry.token_value = entry.resend_token or (call.token and call.params[call.token])
    self:add_call(entry, call.mutates)
    return entry
end

-- journal.call_end(entry, response | nil, err): the call's result, on disk
-- (with ctx.state) before the caller sees it when the call mutates.
function M.call_end(entry, response, err)
    local self = active
    if not (self and entry) or entry.replayed ~= nil then return end
    if response ~= nil then
        entry.status, entry.response = "ok", response
    else
        entry.status, entry.error = "error", err and tostring(err.code or err) or nil
    end
    if entry.mutates then self:save() end
end

function M:add_call(entry, save)
    local calls = self.steps[self.current.index].calls
    calls[#calls + 1] = entry
    if save then self:save() end
end

-- journal.fingerprint(params, token_name) -> a hash that is equal for equal
-- parameters (keys sorted); a client token filled in by atlas.aws is left
-- out. Hashed (FNV-1a, 64 bits) so that no parameter value is written twice.
function M.fingerprint(params, token_name)
    local copy = params
    if token_name and params[token_name] ~= nil then
        copy = {}
        for k, v in pairs(params) do
            if k ~= token_name then copy[k] = v end
        end
    end
    local ok, text = pcall(json.encode, copy, { sort = true })
    if not ok then return "unencodable" end
    local hash = -3750763034362895579 -- 14695981039346656037, the FNV offset basis
    local byte, n = string.byte, #text
    local i = 1
    -- Eight bytes per string.byte call: every call a step makes is
    -- fingerprinted, and the per-byte call was most of the cost.
    while i + 7 <= n do
        local a, b, c, d, e, f, g, h = byte(text, i, i + 7)
        hash = (hash ~ a) * 1099511628211
        hash = (hash ~ b) * 1099511628211
        hash = (hash ~ c) * 1099511628211
        hash = (hash ~ d) * 1099511628211
        hash = (hash ~ e) * 1099511628211
        hash = (hash ~ f) * 1099511628211
        hash = (hash ~ g) * 1099511628211
        hash = (hash ~ h) * 1099511628211
        i = i + 8
    end
    for j = i, n do
        hash = (hash ~ byte(text, j)) * 1099511628211
    end
    return string.format("%016x", hash)
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
    local record, why = json.decode(text)
    if type(record) ~= "table" then
        return nil, "journal " .. run_id .. " is unreadable: " .. (why or "not a JSON object")
    end
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
