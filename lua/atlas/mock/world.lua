-- The mock world: ../shared/reference-environment.md simulated in virtual
-- time. It answers at the level of AWS operations (service, action, region,
-- params in; the boto3-shaped response out), so the service helpers, waiters
-- and playbooks run the same code against it as against AWS.
--
-- This file is the dispatcher, the clock and the fault table. Each service's
-- state and handlers live in atlas.mock.<service>; shared builders (ids,
-- timestamps, errors) in atlas.mock.util.
local errors = require "atlas.errors"
local util = require "atlas.mock.util"
local env = require "atlas.env"
local scenarios = require "atlas.mock.scenarios"
local protocol = require "atlas.aws.protocol"

local World = {}
World.__index = World

World.REGIONS = util.REGIONS
World.ACCOUNT = util.ACCOUNT
-- 2025-11-18 09:30:00 UTC, a Tuesday morning: a fixed start keeps every run
-- (timestamps, ids, generated metrics) reproducible.
World.START_TIME = 1763458200

-- The mock services. Each module atlas.mock.<service> registers its state
-- builder and the handlers of the boto3 clients it answers (World.register)
-- when it loads; the world loads every module under atlas.mock once, so a
-- new service is a new file and nothing here names it.
local handlers_of = {} -- boto3 client name -> { Action = handler(world, region, params, ctx) }
local builders = {} -- { {name=, build=}, ... } sorted by name: ids depend on the build order
local services_loaded = false

-- World.register{name=, build=function(world), handlers={[client]={Action=fn}}}
function World.register(service)
    assert(type(service) == "table" and type(service.name) == "string", "register: needs a name")
    assert(type(service.build) == "function", "register: " .. service.name .. " needs a build function")
    for client, handlers in pairs(service.handlers or {}) do
        local owner = handlers_of[client]
        assert(owner == nil or owner == handlers, "register: two mock services answer " .. client)
        handlers_of[client] = handlers
    end
    for _, known in ipairs(builders) do
        if known.name == service.name then return end
    end
    builders[#builders + 1] = service
    table.sort(builders, function(a, b) return a.name < b.name end)
end

local function load_services()
    if services_loaded then return end
    services_loaded = true
    for _, module in ipairs(util.modules_under("atlas.mock")) do
        require(module)
    end
end

-- The client name atlas.aws uses: "monitoring" is CloudWatch, as on the wire.
local canonical_service = protocol.canonical_name
World.canonical_service = canonical_service

-- The world's latencies: how long AWS takes to do what it was asked, in
-- seconds. They are parameters of the world: a scenario changes them
-- (latencies = {name = seconds}), and --predict sums those a playbook waits
-- for. The values follow AWS's documentation:
World.LATENCIES = {
    -- Route53 health checks: "request interval 30 seconds (standard) or 10
    -- (fast)", "failure threshold 3" by default. Detection takes interval x threshold.
    health_check_interval = 30,
    health_check_failure_threshold = 3, -- a count of failed checks, not seconds
    -- The TTL of the api.atlas-crm.com records: clients keep an answer that long.
    dns_ttl = env.API_TTL,
    -- "Changes generally propagate to all Route 53 name servers within 60 seconds."
    route53_insync = 60,
    -- A Fargate task from PROVISIONING to RUNNING (image pull and start-up);
    -- the mock starts a service's pending tasks one after the other.
    ecs_task_start = 30,
    -- "Failovers, as defined by the interval between the detection of the
    -- failure on the primary and the resumption of transactions on the
    -- standby, typically complete within one to two minutes."
    rds_multi_az_failover = 90,
    rds_reboot = 60,
    -- Promoting a read replica: the instance reboots as a standalone one.
    rds_replica_promotion = 120,
    rds_modify = 60,
    rds_snapshot_create = 240,
    rds_snapshot_copy = 60,
    -- A cross-region copy moves the whole volume between regions.
    rds_snapshot_copy_cross_region = 900,
    rds_snapshot_restore = 600,
    rds_delete = 180,
    -- The initial table copy of a new logical-replication subscription.
    replication_initial_copy = 6,
}

local function bad_latencies(fmt, ...)
    errors.raise { kind = "usage", code = "scenario", message = "scenario latencies: " .. string.format(fmt, ...) }
end

-- The defaults, with what the scenario changes; bad input is a usage error.
local function latencies_of(scenario)
    local latency = util.copy(World.LATENCIES)
    for name, seconds in pairs(scenario and scenario.latencies or {}) do
        if World.LATENCIES[name] == nil then
            local names = {}
            for known in pairs(World.LATENCIES) do
                names[#names + 1] = known
            end
            table.sort(names)
            bad_latencies("unknown latency %q (the world has: %s)", tostring(name), table.concat(names, ", "))
        end
        if math.type(seconds) == nil or seconds < 0 or seconds ~= seconds or seconds == math.huge then
            bad_latencies("%s must be a number of seconds, 0 or more, not %s", name, tostring(seconds))
        end
        if name == "health_check_failure_threshold" and (math.type(seconds) ~= "integer" or seconds < 1 or seconds > 10) then
            bad_latencies("%s is a count of failed checks, 1 to 10, not %s", name, tostring(seconds))
        end
        latency[name] = seconds
    end
    return latency
end

-- World.new{scenario=name|file|table|function, start_time=seconds} -> world
function World.new(options)
    options = options or {}
    local w = setmetatable({}, World)
    w.t = options.start_time or World.START_TIME
    w.start_time = w.t
    w.account = World.ACCOUNT
    w.regions = util.copy(World.REGIONS)
    w.calls = {}
    w.faults = {}
    w.timers = {}
    w.timer_seq = 0
    w.seq = 0
    w.proc_rules = {}
    w.dice = 0x1234ABCD330E
    w.endpoints = {}
    for _, region in ipairs(w.regions) do
        -- "auto": the endpoint answers 200 while the region's service has a
        -- running task and its database is reachable, 503 otherwise.
        w.endpoints[region] = { mode = "auto", up = true, changed_at = w.t - 86400 }
    end
    -- cdn.atlas-crm.com, served by Cloudflare outside AWS: it answers while set.
    w.cdn = { status = 200 }
    -- Loaded first: its latencies shape what the services build.
    local scenario = options.scenario ~= nil and scenarios.load(options.scenario) or nil
    w.latency = latencies_of(scenario)
    -- The tagged timers that fired ({t=, latency=}): what --predict adds up.
    w.fired = {}
    load_services()
    for _, service in ipairs(builders) do
        service.build(w)
    end
    -- The databases behind the RDS instances (SQL through atlas.sql.mock).
    w.db = require("atlas.mock.db").new(w)
    w:refresh()
    if scenario then
        w.scenario = scenario
        scenarios.apply(scenario, w)
        w:refresh()
    end
    return w
end

-- Clock --------------------------------------------------------------------

function World:now() return self.t end

-- w:at(t, fn): runs fn(world) when virtual time reaches t. Returns a handle
-- whose `cancelled` field can be set to drop it.
function World:at(t, fn)
    self.timer_seq = self.timer_seq + 1
    local timer = { t = t, seq = self.timer_seq, fn = fn }
    local timers = self.timers
    local i = #timers
    -- Kept sorted by (t, seq); timers are few, insertion is cheap.
    while i >= 1 and (timers[i].t > t or (timers[i].t == t and timers[i].seq > timer.seq)) do
        timers[i + 1] = timers[i]
        i = i - 1
    end
    timers[i + 1] = timer
    return timer
end

function World:after(seconds, fn) return self:at(self.t + seconds, fn) end

-- w:after_latency(name, fn, resource): runs fn once the world's latency
-- `name` has passed, and notes that it fired and on what ("ecs:us-east-1",
-- "route53", "rds:eu-west-1"), so a prediction can say which latencies a
-- wait on that resource was made of.
function World:after_latency(name, fn, resource)
    local seconds = self.latency[name]
    assert(seconds, "after_latency: the world has no latency " .. tostring(name))
    return self:at(self.t + seconds, function(world)
        local fired = world.fired
        fired[#fired + 1] = { t = world.t, latency = name, seconds = seconds, resource = resource }
        -- Bounded: a long simulation keeps its recent history only.
        if #fired > 10000 then table.remove(fired, 1) end
        return fn(world)
    end)
end

-- w:next_event() -> the virtual time of the next pending timer, or nil
function World:next_event()
    for _, timer in ipairs(self.timers) do
        if not timer.cancelled then return timer.t end
    end
end

-- w:random() -> a number in [0, 1), from the world's own generator: a 48-bit
-- LCG (drand48's constants) seeded the same in every world, so what depends
-- on chance (the retry jitter) repeats from run to run.
function World:random()
    self.dice = (self.dice * 0x5DEECE66D + 0xB) & 0xFFFFFFFFFFFF
    return (self.dice >> 16) / 4294967296.0
end

-- w:advance(seconds): runs the simulation up to now + seconds, firing each
-- timer at its own virtual instant.
function World:advance(seconds)
    assert(type(seconds) == "number" and seconds >= 0, "advance: seconds must be a non-negative number")
    local target = self.t + seconds
    while self.timers[1] and self.timers[1].t <= target do
        local timer = table.remove(self.timers, 1)
        if not timer.cancelled then
            if timer.t > self.t then self.t = timer.t end
            timer.fn(self)
            self:refresh()
        end
    end
    self.t = target
    self:refresh()
end

-- Recomputes derived state (endpoint health and when it last changed) after
-- anything that may have moved it.
function World:refresh()
    for _, region in ipairs(self.regions) do
        local ep = self.endpoints[region]
        local up = self:endpoint_up(region)
        if up ~= ep.up then
            ep.up = up
            ep.changed_at = self.t
        end
    end
end

function World:next_id(prefix)
    self.seq = self.seq + 1
    return util.id(prefix, self.seq)
end

-- AWS ---------------------------------------------------------------------

function World:aws_error(service, action, region, code, message, status, extra)
    local fields = {
        kind = "aws",
        code = code,
        message = message,
        status = status or 400,
        service = service,
        action = action,
        region = region,
        request_id = util.request_id(self.seq),
    }
    for k, v in pairs(extra or {}) do
        fields[k] = v
    end
    -- atlas.aws's own classification: a mock error says what the retry layer will do with it.
    fields.retryable = require("atlas.aws").classify(fields) ~= nil
    return errors.new(fields)
end

local function matches(fault, service, action, region)
    return (fault.service == nil or canonical_service(fault.service) == service)
        and (fault.action == nil or fault.action == action)
        and (fault.region == nil or fault.region == region)
end

-- What curl (engine/curl.c) says for each network failure, and whether the
-- request may have left this machine (`sent`), as atlas.curl reports them.
local NETWORK = {
    dns = { sent = false, message = "Could not resolve host: %s" },
    connect = { sent = false, message = "Failed to connect to %s port %d after 0 ms: Couldn't connect to server" },
    timeout = { sent = true, message = "Operation timed out after %d milliseconds with 0 bytes received" },
    reset = { sent = true, message = "Recv failure: Connection reset by peer" },
}

-- -> message, code, sent: a network fault as atlas.curl returns it
local function network_failure(fault, host, port, timeout)
    local kind = NETWORK[fault.network]
    local message
    if fault.network == "timeout" then
        message = string.format(kind.message, math.floor(timeout * 1000))
    else
        message = string.format(kind.message, host, port)
    end
    local sent = kind.sent
    if fault.sent ~= nil then sent = fault.sent end
    return fault.message or message, fault.network, sent
end

-- w:inject{service=, action=, region=, code=, status=, message=, times=n,
-- each_action=bool, after=n}: the next matching calls fail. Whether such an
-- error is retryable is atlas.aws's classification of its code and status,
-- as for a real answer (a `retryable` that says otherwise is refused).
-- nil fields match anything; times=nil means forever. each_action counts
-- `times` separately for every action ("the first 2 calls of each
-- operation"); after=n lets n matching calls through first.
-- network="dns"|"connect"|"timeout"|"reset" instead of a code fails the
-- call with no HTTP answer at all, exactly as the real transport reports
-- it (sent= overrides whether the request may have left); a timeout costs
-- its seconds of virtual time. http=true aims the fault at the health
-- endpoints (region= the endpoint's region) instead of AWS.
-- reply={...} answers the call with that success reply and does nothing:
-- a change that silently did not happen.
function World:inject(fault)
    assert(
        type(fault) == "table" and (fault.code or fault.network or fault.reply),
        "inject needs a code, a network failure or a reply"
    )
    assert(
        fault.network == nil or NETWORK[fault.network],
        "inject: unknown network failure " .. tostring(fault.network)
    )
    assert(
        not fault.http or fault.network,
        "inject: an http fault is a network failure (use set_endpoint for a status)"
    )
    if fault.retryable ~= nil and fault.code then
        local classified = require("atlas.aws").classify {
            code = fault.code,
            status = fault.status or util.fault_status(fault.code),
            timeout = fault.timeout,
        } ~= nil
        assert(
            fault.retryable == classified,
            string.format(
                "inject: %s (status %s) is %sretryable by atlas.aws's classification; drop retryable=",
                fault.code,
                tostring(fault.status or util.fault_status(fault.code)),
                classified and "" or "not "
            )
        )
    end
    fault = util.copy(fault)
    fault.used = {}
    fault.skipped = {}
    self.faults[#self.faults + 1] = fault
    return fault
end

function World:clear_faults() self.faults = {} end

local function take_fault(self, service, action, region, http)
    for _, fault in ipairs(self.faults) do
        if (fault.http or false) == (http or false) and matches(fault, service, action, region) then
            local key = fault.each_action and action or "*"
            local skipped = fault.skipped[key] or 0
            if fault.after and skipped < fault.after then
                fault.skipped[key] = skipped + 1
            else
                local used = fault.used[key] or 0
                if fault.times == nil or used < fault.times then
                    fault.used[key] = used + 1
                    return fault
                end
            end
        end
    end
end

-- Answers without recording or faults: for snapshots and internal reads.
function World:aws_invoke_raw(service, action, region, params)
    service = canonical_service(service)
    local handlers = handlers_of[service]
    local handler = handlers and handlers[action]
    if not handler then
        -- The code the service's own protocol answers an unknown action with.
        local known, svc = pcall(protocol.service, service)
        local code = known and svc.protocol == "query" and "InvalidAction" or "UnknownOperationException"
        local message = handlers and ("The mock world does not implement " .. action)
            or ("The mock world does not simulate the service " .. tostring(service))
        error(self:aws_error(service, action, region, code, message, 400), 0)
    end
    local ctx = util.context(self, service, action, region)
    local response = handler(self, region, params or {}, ctx)
    self:refresh()
    return response
end

-- w:aws_invoke(service, action, region, params) -> response; raises an aws
-- error object. Every call is recorded in w.calls, faults first.
function World:aws_invoke(service, action, region, params)
    service = canonical_service(service)
    params = params or {}
    local call = {
        module = "aws",
        service = service,
        action = action,
        region = region,
        params = util.copy(params),
        t = self.t,
    }
    self.calls[#self.calls + 1] = call
    local fault = take_fault(self, service, action, region)
    if fault and fault.network then
        local wire = require "atlas.aws.real"
        local svc = require("atlas.aws.protocol").service(service)
        local ok, ep = pcall(wire.endpoint, svc, region, {})
        local host = ok and ep.url:match("^%a+://([^/:]+)")
            or (svc.endpoint_prefix .. "." .. region .. ".amazonaws.com")
        local timeout = wire.defaults.timeout
        if fault.network == "timeout" then self:advance(timeout) end
        local message, code, sent = network_failure(fault, host, 443, timeout)
        call.error = code
        call.fault = true
        error(wire.transport_error(svc, { action = action, region = region }, message, code, sent), 0)
    elseif fault and fault.reply then
        call.fault = true
        return util.copy(fault.reply)
    elseif fault then
        local code = fault.code
        local err = self:aws_error(
            service,
            action,
            region,
            code,
            fault.message or util.fault_message(code),
            fault.status or util.fault_status(code),
            { sent = fault.sent, timeout = fault.timeout, retry_after = fault.retry_after }
        )
        call.error = code
        call.fault = true
        error(err, 0)
    end
    local ok, result = pcall(self.aws_invoke_raw, self, service, action, region, params)
    if not ok then
        call.error = errors.is(result) and result.code or tostring(result)
        error(result, 0)
    end
    return result
end

-- w:calls_to(service, action?) -> the recorded aws calls to that operation.
function World:calls_to(service, action)
    service = canonical_service(service)
    local found = {}
    for _, call in ipairs(self.calls) do
        if call.module == "aws" and call.service == service and (action == nil or call.action == action) then
            found[#found + 1] = call
        end
    end
    return found
end

-- HTTP, processes ------------------------------------------------------------

-- Whether the region's application answers its health endpoint with 200.
-- Modes: "auto" follows the world (a running task and a reachable
-- database), unless a forced `status` is set; "up", "down" and
-- "unreachable" pin it.
function World:endpoint_up(region)
    local ep = self.endpoints[region]
    if ep.mode == "up" then
        return true
    elseif ep.mode == "down" or ep.mode == "unreachable" then
        return false
    elseif ep.status then
        return ep.status < 400
    end
    local ecs = require "atlas.mock.ecs"
    if ecs.running_count(self, region) == 0 then return false end
    local rds = require "atlas.mock.rds"
    return rds.application_db_reachable(self, region)
end

-- w:set_endpoint(region, {mode="auto"|"up"|"down"|"unreachable", status=,
-- body=, changed_at=}). status alone forces that answer (and health:
-- below 400 is up); mode="auto" clears a forced status and body.
-- changed_at backdates the last up/down change, e.g. "down for ten
-- minutes" so the health checks have already noticed.
function World:set_endpoint(region, fields)
    local ep = self.endpoints[region]
    assert(ep, "set_endpoint: unknown region " .. tostring(region))
    if fields.mode == "auto" then
        ep.status, ep.body = nil, nil
    end
    local changed_at = fields.changed_at
    for k, v in pairs(fields) do
        if k ~= "changed_at" then ep[k] = v end
    end
    self:refresh()
    if changed_at then ep.changed_at = changed_at end
end

local JSON_HEADERS = { ["content-type"] = "application/vnd.spring-boot.actuator.v3+json" }

local function health_response(self, region)
    local ep = self.endpoints[region]
    if ep.status then
        local up = ep.status < 400
        return {
            status = ep.status,
            body = ep.body or (up and '{"status":"UP"}' or '{"status":"DOWN"}'),
            headers = JSON_HEADERS,
        }
    end
    if ep.up then return { status = 200, body = ep.body or '{"status":"UP"}', headers = JSON_HEADERS } end
    local rds = require "atlas.mock.rds"
    local ecs = require "atlas.mock.ecs"
    if ep.mode == "auto" and ecs.running_count(self, region) > 0 and not rds.application_db_reachable(self, region) then
        return {
            status = 503,
            body = ep.body or '{"status":"DOWN","components":{"db":{"status":"DOWN"}}}',
            headers = JSON_HEADERS,
        }
    end
    -- The ALB answers itself when no target is healthy.
    return {
        status = 503,
        body = ep.body or "<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>",
        headers = { ["content-type"] = "text/html", server = "awselb/2.0" },
    }
end

-- R.atlas-crm.com -> R, for every region (env.regional_name)
local function regional_hosts()
    local hosts = {}
    for _, region in ipairs(env.REGIONS) do
        hosts[env.regional_name(region)] = region
    end
    return hosts
end

-- w:http_request{method=, url=, headers=, body=} -> {status=, body=, headers=}
-- for the regional endpoints; raises an http error for a host nobody serves.
function World:http_request(request)
    assert(type(request) == "table" and type(request.url) == "string", "http_request needs a url")
    local method = request.method or "GET"
    local call = { module = "http", method = method, url = request.url, t = self.t }
    self.calls[#self.calls + 1] = call
    local scheme, host, path = request.url:match("^(https?)://([^/:]+)[^/]*(.*)$")
    -- the real backend's error objects (atlas.http), with curl's codes and messages
    local function fail(message, code)
        call.error = code
        error(require("atlas.http").transport_error({ url = request.url, method = method }, message, code), 0)
    end
    if not scheme then fail("URL rejected: Malformed input to a URL function", "other") end
    host = host:lower()
    local port = scheme == "https" and 443 or 80
    if host == env.CDN_NAME then
        call.status = self.cdn.status
        return { status = self.cdn.status, body = "", headers = { server = "cloudflare" } }
    end
    local region = regional_hosts()[host]
    if host == env.API_NAME then
        region = require("atlas.mock.route53").resolve_region(self, env.API_NAME, request.continent)
    end
    local fault = take_fault(self, nil, nil, region, true)
    if fault then
        if fault.network == "timeout" then self:advance(request.timeout or 10) end
        fail(network_failure(fault, host, port, request.timeout or 10))
    end
    if not region or not self.endpoints[region] then fail(network_failure({ network = "dns" }, host, port)) end
    if self.endpoints[region].mode == "unreachable" then fail(network_failure({ network = "connect" }, host, port)) end
    local response
    if path:match("^/actuator/health") then
        response = health_response(self, region)
    elseif self.endpoints[region].up then
        response = { status = (path == "" or path == "/") and 200 or 404, body = "", headers = {} }
    else
        response = health_response(self, region)
    end
    call.status = response.status
    return response
end

-- w:on_proc(match, result): scripts proc_run. match is a Lua pattern tried
-- against the argv joined by spaces, or a function(argv) -> bool; result is
-- {code=, stdout=, stderr=} or a function(argv, world) returning one.
function World:on_proc(match, result) table.insert(self.proc_rules, 1, { match = match, result = result }) end

function World:proc_run(argv)
    assert(type(argv) == "table", "proc_run takes an argv list")
    local line = table.concat(argv, " ")
    local call = { module = "proc", argv = util.copy(argv), t = self.t }
    self.calls[#self.calls + 1] = call
    for _, rule in ipairs(self.proc_rules) do
        local hit
        if type(rule.match) == "function" then
            hit = rule.match(argv)
        else
            hit = line:find(rule.match) ~= nil
        end
        if hit then
            local result = rule.result
            if type(result) == "function" then result = result(argv, self) end
            result = util.copy(result or {})
            result.code = result.code or 0
            result.stdout = result.stdout or ""
            result.stderr = result.stderr or ""
            call.code = result.code
            return result
        end
    end
    call.code = 0
    return { code = 0, stdout = "", stderr = "" }
end

-- w:proc_available(name): every program is there unless w.missing_programs[name].
function World:proc_available(name) return not (self.missing_programs and self.missing_programs[name]) end

-- Test helpers ---------------------------------------------------------------

-- w:set_service(region, {running=, desired=, pending=, status=})
function World:set_service(region, fields)
    require("atlas.mock.ecs").set_service(self, region, fields)
    self:refresh()
end

-- w:stall_service(region, stalled=true): its tasks never start.
function World:stall_service(region, stalled)
    require("atlas.mock.ecs").stall_service(self, region, stalled ~= false)
    self:refresh()
end

-- w:force_health_check(region, healthy): pins the region's Route53 health
-- check (checkers and aggregate) to healthy=true|false; nil follows the
-- endpoint again.
function World:force_health_check(region, healthy) require("atlas.mock.route53").force_health(self, region, healthy) end

-- w:set_db_instance(id, {status=, reachable=}) for RDS-level faults.
function World:set_db_instance(id, fields)
    require("atlas.mock.rds").set_instance(self, id, fields)
    self:refresh()
end

-- w:set_replication_lag(region, seconds): the lag of a subscriber region.
-- w.db owns it; CloudWatch's ReplicationLag reads it from there.
function World:set_replication_lag(region, seconds) self.db:set_lag(region, seconds) end

function World:replication_lag_of(region) return self.db:lag(region) end

-- w:set_metric(namespace, name, dimensions, value|function(t) -> value)
function World:set_metric(namespace, name, dimensions, value)
    require("atlas.mock.cloudwatch").set_generator(self, namespace, name, dimensions, value)
end

-- w:set_lambda(name, function(payload, world) -> payload_string)
function World:set_lambda(name, handler) require("atlas.mock.lambda").set_handler(self, name, handler) end

-- w:set_lambda_config(name, {state="Failed"|..., last_update=, reserved=n, deleted=true})
function World:set_lambda_config(name, fields) require("atlas.mock.lambda").set_config(self, name, fields) end

-- w:set_alarm(region, name, {deleted=true} | {actions_enabled=false, dimensions=, ...}): an
-- alarm changed (or deleted) behind the runbook's back.
function World:set_alarm(region, name, fields) require("atlas.mock.cloudwatch").set_alarm(self, region, name, fields) end

-- w:add_log(region, group, message, stream?)
function World:add_log(region, group, message, stream)
    require("atlas.mock.logs").append(self, region, group, message, stream)
end

-- w:set{service=..., endpoint=..., db_instance=..., lag=...} bundles the
-- helpers above for scenarios written as data.
function World:set(fields)
    for region, f in pairs(fields.service or {}) do
        self:set_service(region, f)
    end
    for region, f in pairs(fields.endpoint or {}) do
        self:set_endpoint(region, f)
    end
    for id, f in pairs(fields.db_instance or {}) do
        self:set_db_instance(id, f)
    end
    for region, lag in pairs(fields.lag or {}) do
        self:set_replication_lag(region, lag)
    end
end

-- w:snapshot() -> the state that matters, as a plain comparable table. It is
-- read through AWS operations (atlas.mock.snapshot), so the fidelity test can
-- read moto the same way and compare.
function World:snapshot()
    local snapshot = require "atlas.mock.snapshot"
    return snapshot.read(
        function(service, action, region, params) return self:aws_invoke_raw(service, action, region, params) end
    )
end

return World
