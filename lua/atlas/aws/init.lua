-- atlas.aws: every AWS call of a playbook goes through here.
--
--   aws.call({service=, action=, region=, params=}, {endpoint=, profile=, timeout=, ...}) -> response
--   aws.parallel{ {service=, action=, region=, params=}, ... } -> list of responses or error objects
--   aws.wait{name=, poll=, acceptors=, progress=, delay=, timeout=} -> last polled value
--   aws.sign{...} -> headers (atlas.aws.sigv4.sign)
--
-- Retries, dry-run and logging live here, above the backend, so they behave
-- the same against AWS (atlas.aws.real) and against the mock world
-- (atlas.aws.mock). Both backends take (req, options) and return the
-- response or nil and an error object (docs/architecture.md, "AWS backends"). The retry policy is
-- the SDKs' "standard" mode; see docs/aws.md.
local errors = require "atlas.errors"
local log = require "atlas.run.log"
local runtime = require "atlas.run.runtime"
local protocol = require "atlas.aws.protocol"

local M = {}

-- max_attempts counts the first try. AWS_MAX_ATTEMPTS works as in the SDKs.
M.config = {
    max_attempts = tonumber(os.getenv("AWS_MAX_ATTEMPTS") or "") or 3,
    max_backoff = 20,
    max_retry_after = 60,
    -- "atlas-{region}" gives each call the profile of its region (the runbook's
    -- one-profile-per-region setup) unless the call names one.
    profile_template = os.getenv("ATLAS_AWS_PROFILE_TEMPLATE"),
}

-- Replaceable in tests for a chosen jitter.
function M.random() return runtime.random() end

function M.sign(args) return require("atlas.aws.sigv4").sign(args) end

-- ---- retry policy --------------------------------------------------------------

local THROTTLING = {}
for code in
    ([[Throttling ThrottlingException ThrottledException RequestThrottledException
    TooManyRequestsException ProvisionedThroughputExceededException TransactionInProgressException
    RequestLimitExceeded BandwidthLimitExceeded LimitExceededException RequestThrottled SlowDown
    PriorRequestNotComplete EC2ThrottledException]]):gmatch("%S+")
do
    THROTTLING[code] = true
end

-- InvalidResponse: a 2xx reply that is not the operation's document (cut
-- short, empty, a proxy's HTML page); the next attempt may well be whole.
local TRANSIENT = {}
for code in
    ([[RequestTimeout RequestTimeoutException InternalError InternalFailure
    InternalServerError ServiceUnavailable ConnectionError IDPCommunicationError
    InvalidResponse]]):gmatch("%S+")
do
    TRANSIENT[code] = true
end

local TRANSIENT_STATUS = { [500] = true, [502] = true, [503] = true, [504] = true }

-- classify(err) -> "throttling" | "transient" | nil
function M.classify(err)
    if THROTTLING[err.code] or err.status == 429 then return "throttling" end
    if TRANSIENT[err.code] or TRANSIENT_STATUS[err.status] or err.timeout then return "transient" end
    return nil
end

-- The retry quota: a failure burst cannot turn into a retry storm. A retry
-- costs 5 tokens (10 after a timeout); a success refunds what its retries
-- took, or 1 token when it needed none.
local RETRY_COST, TIMEOUT_COST, NO_RETRY_INCREMENT = 5, 10, 1
M.quota = { capacity = 500, available = 500 }

function M.reset_quota(capacity)
    M.quota.capacity = capacity or 500
    M.quota.available = M.quota.capacity
end

local function quota_take(err)
    local cost = err.timeout and TIMEOUT_COST or RETRY_COST
    if M.quota.available < cost then return nil end
    M.quota.available = M.quota.available - cost
    return cost
end

local function quota_refund(spent)
    local q = M.quota
    q.available = math.min(q.capacity, q.available + (spent > 0 and spent or NO_RETRY_INCREMENT))
end

-- A call is safe to repeat when it reads, when the caller says so, or when a
-- client token makes the service ignore the repeat.
local function repeatable(req)
    return req.idempotent or req.read_only or req.token_filled or not runtime.is_mutating(req.service, req.action)
end

-- retry_decision(req, err, attempt) -> delay in seconds, or nil and why not.
-- A call that is not repeatable is retried only when the service certainly
-- did not act on it: the connection never carried it (sent == false), or the
-- service answered with a throttling error, which means "not executed".
function M.retry_decision(req, err, attempt)
    -- The backend fixed the cause (clock skew, expired credentials): one immediate retry;
    -- the service refused the request, so repeating it is safe even when it mutates.
    if err.fixed and not req.fixed_once then
        req.fixed_once = true
        return 0
    end
    local class = M.classify(err)
    err.retryable = class ~= nil
    if not class then return nil, "not retryable" end
    local max_attempts = req.max_attempts or M.config.max_attempts
    if attempt >= max_attempts then return nil, "attempts exhausted" end
    if not repeatable(req) and class ~= "throttling" and err.sent ~= false then
        return nil, "not idempotent and may have reached the service"
    end
    local cost = quota_take(err)
    if not cost then return nil, "retry quota exhausted" end
    req.quota_spent = (req.quota_spent or 0) + cost
    -- botocore's standard mode: the first retry waits rand() * 1 s, then 2, 4, ... capped at 20 s
    local delay = M.random() * math.min(2 ^ (attempt - 1), M.config.max_backoff)
    if err.retry_after then delay = math.min(err.retry_after, M.config.max_retry_after) end
    return delay
end

-- ---- requests ----------------------------------------------------------------

local function uuid4()
    local r = M.random
    local function hex(n) return string.format("%0" .. n .. "x", math.floor(r() * 16 ^ n) % (16 ^ n)) end
    return string.format("%s-%s-4%s-%x%s-%s", hex(8), hex(4), hex(3), 8 + math.floor(r() * 4), hex(3), hex(12))
end

-- The control keys: how to send a call, not what it asks. OPTIONS travel to
-- the backend as its second argument, apart from the call (service, action,
-- region, params); CONTROLS steer atlas.aws itself (retries, dry-run, the journal).
M.OPTIONS = {
    endpoint = true,
    profile = true,
    timeout = true,
    connect_timeout = true,
    allow_http = true,
    credentials = true, -- the credential chain's own STS calls
    unsigned = true,
}
M.CONTROLS = { max_attempts = true, idempotent = true, read_only = true, own_state = true }

-- normalise(call, options) -> req, options: the call (with the CONTROLS), and
-- the OPTIONS alone. A control key may come in either table (aws.call{...,
-- timeout = 5} is the short form); keys of neither kind in options are ignored.
local function normalise(args, options)
    if type(args) ~= "table" then error("aws.call: expected a table", 3) end
    if type(args.service) ~= "string" then error("aws.call: service is required", 3) end
    if type(args.action) ~= "string" then error("aws.call: action is required", 3) end
    if options ~= nil and type(options) ~= "table" then error("aws.call: options must be a table", 3) end
    local req, opts = {}, {}
    for k, v in pairs(args) do
        if M.OPTIONS[k] then
            opts[k] = v
        else
            req[k] = v
        end
    end
    for k, v in pairs(options or {}) do
        if M.OPTIONS[k] then
            opts[k] = v
        elseif M.CONTROLS[k] then
            req[k] = v
        end
    end
    req.service = protocol.canonical_name(args.service)
    req.params = args.params or {}
    if opts.profile == nil and M.config.profile_template and req.region then
        opts.profile = (M.config.profile_template:gsub("{region}", req.region))
    end
    -- The SDKs fill an empty client token so that retries are idempotent; so do we.
    local ok, svc = pcall(protocol.service, req.service)
    local token = ok and svc.idempotency_tokens and svc.idempotency_tokens[req.action]
    if token and req.params[token] == nil then
        local params = {}
        for k, v in pairs(req.params) do
            params[k] = v
        end
        params[token] = uuid4()
        req.params = params
        req.token_filled = true
    elseif token then
        req.token_filled = true
    end
    return req, opts
end

local function op_name(req) return req.service .. "." .. req.action end

local clock
local function monotime()
    clock = clock or require("atlas.sys").monotime
    return clock()
end

-- atlas-run's own state calls are "state" events: a count of the calls a
-- playbook made to the world (a report, a test) must not include them.
local function module_of(req) return req.own_state and "state" or "aws" end

local function log_call(req, attempt, started, outcome, err)
    log.event {
        type = "call",
        module = module_of(req),
        op = op_name(req),
        service = req.service,
        action = req.action,
        region = req.region,
        attempt = attempt,
        outcome = outcome,
        duration_ms = math.floor((monotime() - started) * 1000 + 0.5),
        error = err and errors.message(err) or nil,
        code = err and err.code or nil,
        -- a backend may leave the request id on req (the wire does)
        request_id = err and err.request_id or req.request_id,
    }
    req.request_id = nil
end

-- The params go into the event as a table: atlas.log masks secret-named
-- fields (MasterUserPassword, ...) before any sink encodes them.
local function dry_run(req)
    log.event {
        type = "call",
        module = "aws",
        op = op_name(req),
        service = req.service,
        action = req.action,
        region = req.region,
        outcome = "dry-run",
        params = req.params,
        duration_ms = 0,
    }
    return {}
end

-- read_only: the caller vouches that the call changes nothing (the STS calls of the credential chain).
-- own_state: atlas-run's own record of the run (atlas.state), not the world a
-- playbook changes; it is made whatever step is running.
-- Any other call that changes the world is printed in a dry run, and refused
-- (not sent) from a step that may not change it (runtime.check_change).
local function is_dry_run(req)
    if req.read_only or req.own_state or not runtime.is_mutating(req.service, req.action) then return false end
    return runtime.check_change(string.format("%s %s (%s)", req.service, req.action, tostring(req.region))) == "dry-run"
end

-- Runs one attempt on the current backend: response, or nil and an error object.
-- Backends return the world's failures; an error object they raise (Ctrl-C, a
-- refused endpoint) is still this attempt's outcome, logged and journalled as
-- such before aws.call raises it.
local function attempt_once(backend, req, options)
    local ok, resp, err = pcall(backend.invoke, req, options)
    if not ok then
        if errors.is(resp) then return nil, resp end
        error(resp, 0)
    end
    if resp == nil then
        return nil,
            err or errors.new {
                kind = "aws",
                code = "NoResponse",
                message = "backend returned nothing",
                service = req.service,
                action = req.action,
                region = req.region,
            }
    end
    -- A secret in a reply (GetSecretValue, AssumeRole, a password) stays
    -- masked wherever it is printed later, however the call was made.
    log.secret_fields(resp)
    return resp
end

-- After a failed attempt: logs it and returns the delay before the next
-- attempt, or nil when the error is final.
local function after_failure(req, attempt, started, err)
    err.service = err.service or req.service
    err.action = err.action or req.action
    err.region = err.region or req.region
    local delay, why = M.retry_decision(req, err, attempt)
    err.attempts = attempt
    log_call(req, attempt, started, delay and "retry" or "error", err)
    if delay then
        log.event {
            type = "retry",
            module = module_of(req),
            op = op_name(req),
            region = req.region,
            attempt = attempt,
            delay = delay,
            error = tostring(err.code) .. ": " .. tostring(err.message),
            code = err.code,
        }
    else
        err.retry_stopped = why
    end
    return delay
end

-- send(req, options) -> response, or nil and the final error: the attempts and retries of one call.
local function send(req, options)
    local attempt = 0
    while true do
        -- atlas-run's own state (the journal, the run lock) must still be
        -- written after Ctrl-C: that is how the run records that it stopped.
        if not req.own_state then runtime.check_interrupted() end
        attempt = attempt + 1
        req.attempt = attempt
        local started = monotime()
        local resp, err = attempt_once(runtime.backend("aws"), req, options)
        if resp then
            quota_refund(req.quota_spent or 0)
            log_call(req, attempt, started, "ok")
            return resp
        end
        local delay = after_failure(req, attempt, started, err)
        if not delay then return nil, err end
        runtime.sleep(delay)
    end
end

-- Credentials and secrets are never written to the journal, so they are
-- neither recorded nor replayed; nor is atlas-run's own state (own_state:
-- the journal's writes and the run lock), which is not the playbook's world.
local UNRECORDED = { sts = true, secretsmanager = true }

-- The journal's view of a call (see atlas.journal): nil when it is not recorded.
local function journal_begin(req)
    if req.read_only or req.own_state or UNRECORDED[req.service] then return nil end
    local ok, svc = pcall(protocol.service, req.service)
    local token = ok and svc.idempotency_tokens and svc.idempotency_tokens[req.action] or nil
    local entry = require("atlas.run.journal").call_begin {
        service = req.service,
        action = req.action,
        region = req.region,
        params = req.params,
        token = token,
        mutates = runtime.is_mutating(req.service, req.action),
        repeatable = repeatable(req),
    }
    if entry and entry.resend_token and token then
        -- The same client token again: the service treats the call as the earlier one.
        req.params[token] = entry.resend_token
    end
    return entry
end

local function replayed(req, entry)
    log.event {
        type = "call",
        module = "aws",
        op = op_name(req),
        service = req.service,
        action = req.action,
        region = req.region,
        outcome = "replayed",
        duration_ms = 0,
    }
    return entry.replayed
end

-- aws.call({service, action, region, params}, options?) -> response table;
-- raises an aws error object when the call fails for good. options: any of
-- M.OPTIONS and M.CONTROLS (endpoint, profile, timeout, connect_timeout,
-- idempotent, max_attempts, ...), which may also sit in the first table.
function M.call(args, options)
    local req, opts = normalise(args, options)
    if not req.own_state then runtime.check_interrupted() end
    if is_dry_run(req) then return dry_run(req) end
    local entry = journal_begin(req)
    if entry and entry.replayed ~= nil then return replayed(req, entry) end
    local resp, err = send(req, opts)
    if entry then require("atlas.run.journal").call_end(entry, resp, err) end
    if not resp then error(err, 0) end
    return resp
end

-- aws.parallel{req, ...} -> list of responses or error objects, in order.
-- All calls run at once (curl multi in the real backend); a round of retries
-- waits for the longest backoff among the calls that need one.
function M.parallel(list)
    runtime.check_interrupted()
    local reqs, opts, results, pending, entries = {}, {}, {}, {}, {}
    for i, args in ipairs(list) do
        reqs[i], opts[i] = normalise(args)
        if is_dry_run(reqs[i]) then
            results[i] = dry_run(reqs[i])
        else
            entries[i] = journal_begin(reqs[i])
            if entries[i] and entries[i].replayed ~= nil then
                results[i] = replayed(reqs[i], entries[i])
            else
                pending[#pending + 1] = i
            end
        end
    end
    local attempt = 0
    while #pending > 0 do
        runtime.check_interrupted()
        attempt = attempt + 1
        local batch, batch_opts = {}, {}
        for j, i in ipairs(pending) do
            reqs[i].attempt = attempt
            batch[j], batch_opts[j] = reqs[i], opts[i]
        end
        local started = monotime()
        local out = runtime.backend("aws").invoke_many(batch, batch_opts)
        local again, longest = {}, 0
        for j, i in ipairs(pending) do
            local v = out[j]
            if errors.is(v) then
                local delay = after_failure(reqs[i], attempt, started, v)
                if delay then
                    again[#again + 1] = i
                    longest = math.max(longest, delay)
                else
                    results[i] = v
                end
            else
                quota_refund(reqs[i].quota_spent or 0)
                log_call(reqs[i], attempt, started, "ok")
                results[i] = v
            end
        end
        pending = again
        if #pending > 0 then runtime.sleep(longest) end
    end
    for i, entry in pairs(entries) do
        if entry.replayed == nil then
            local v = results[i]
            if errors.is(v) then
                require("atlas.run.journal").call_end(entry, nil, v)
            else
                require("atlas.run.journal").call_end(entry, v)
            end
        end
    end
    return results
end

-- ---- waiters -----------------------------------------------------------------

local function acceptor_matches(acceptor, value, err)
    if acceptor.error then return err ~= nil and (acceptor.error == true or err.code == acceptor.error) end
    if err ~= nil or not acceptor.matcher then return false end
    return acceptor.matcher(value)
end

local function waiter_error(opts, code, message, kind)
    return errors.new {
        kind = kind,
        code = code,
        message = message,
        service = opts.service,
        action = opts.action,
        region = opts.region,
        waiter = opts.name,
    }
end

-- How often a waiter polls each service, in seconds. The engine's share of a
-- recovery is the time between the world reaching a state and the waiter
-- noticing it: at most one pace (plus the poll's round trip). The AWS CLI's
-- 15 s (ECS) and 30 s (Route53) cost up to that much per wait; 4 s keeps the
-- share under 5 s within the rate limits: Route53 allows 5 requests a second
-- per account, and ECS's per-Region read buckets refill several a second, so
-- one waiter's 0.25 a second is a small part of either. RDS's waits last
-- minutes, and its describe calls share a tighter account budget.
M.PACE = { ecs = 4, route53 = 4, rds = 10 }
local DEFAULT_PACE = 15

-- aws.wait{
--   name = "ECS services stable in us-east-1",
--   poll = function() return value end,          -- may raise aws errors
--   acceptors = { {state = "success"|"failure"|"retry", matcher = fn(value) -> bool, reason?}
--               | {state = ..., error = "Code" | true} },
--   progress = fn(value) -> text,                -- the live line
--   service = "ecs", action = "DescribeServices", region = ...,   -- for errors and the pace
--   delay = seconds (default: the service's pace), timeout = seconds,
-- } -> value of the successful poll (nil when an error acceptor succeeded)
-- Logs a "wait" event when it ends well: its name, seconds and polls, and
-- its pace (the most it can lag behind the world).
-- Raises kind "aws" code "WaiterFailed" on a failure acceptor, kind "timeout" after timeout.
function M.wait(opts)
    assert(type(opts.poll) == "function", "aws.wait: poll function required")
    local name = opts.name or "AWS resource"
    if runtime.dry_run and not opts.in_dry_run then
        log.info("dry-run: would wait for %s", name)
        return nil
    end
    local delay, timeout = opts.delay or M.PACE[opts.service] or DEFAULT_PACE, opts.timeout or 600
    local started = runtime.now()
    local deadline = started + timeout
    local last_text
    local polls = 0
    while true do
        polls = polls + 1
        local ok, value = pcall(opts.poll)
        local err
        if not ok then
            if not errors.is(value) then error(value, 0) end
            err = value
        end
        local state, reason
        for _, acceptor in ipairs(opts.acceptors or {}) do
            local matched, why = acceptor_matches(acceptor, value, err)
            if matched then
                state, reason = acceptor.state, why or acceptor.reason
                break
            end
        end
        if err and not state then error(err, 0) end
        if not err and opts.progress then
            last_text = opts.progress(value)
            if last_text then
                log.event {
                    type = "progress",
                    message = last_text,
                    elapsed = runtime.now() - (deadline - timeout),
                    timeout = timeout,
                }
            end
        end
        if state == "success" then
            log.end_progress()
            log.event {
                type = "wait",
                name = name,
                seconds = runtime.now() - started,
                service = opts.service,
                region = opts.region,
                polls = polls,
                pace = delay,
                step = runtime.step and runtime.step.name,
            }
            return (not err) and value or nil
        elseif state == "failure" then
            log.end_progress()
            error(
                waiter_error(
                    opts,
                    "WaiterFailed",
                    string.format("%s: %s", name, reason or (err and errors.message(err)) or "reached a failure state"),
                    "aws"
                ),
                0
            )
        end
        local remaining = deadline - runtime.now()
        if remaining <= 0 then
            log.end_progress()
            error(
                waiter_error(
                    opts,
                    "WaiterTimeout",
                    string.format(
                        "gave up waiting for %s after %s s%s",
                        name,
                        tostring(timeout),
                        last_text and (" (last: " .. last_text .. ")") or ""
                    ),
                    "timeout"
                ),
                0
            )
        end
        runtime.sleep_between_polls(math.min(delay, remaining))
    end
end

return M
