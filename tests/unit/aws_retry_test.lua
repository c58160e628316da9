-- atlas.aws retry policy, dry-run, parallel and waiters, with a fake backend
-- and a fake clock: every delay the policy asks for is recorded, not slept.
local t = require "atlas.test"
local aws = require "atlas.aws"
local errors = require "atlas.errors"
local runtime = require "atlas.run.runtime"

-- Installs a fake real-mode backend answering from `script` (a list of
-- responses / error field tables, one per attempt) and a recording clock.
local function fake(script)
    local state = { calls = {}, sleeps = {}, now = 1000 }
    local backend = {}
    function backend.invoke(req)
        state.calls[#state.calls + 1] = { action = req.action, params = req.params, attempt = req.attempt }
        local step = script[#state.calls] or script[#script]
        if type(step) == "function" then step = step(req) end
        if step.code then
            local fields = { kind = "aws" }
            for k, v in pairs(step) do
                fields[k] = v
            end
            return nil, errors.new(fields)
        end
        return step
    end
    function backend.invoke_many(reqs)
        local out = {}
        for i, req in ipairs(reqs) do
            local v, err = backend.invoke(req)
            out[i] = v or err
        end
        return out
    end
    local saved_wire, saved_sleep, saved_now, saved_random =
        package.loaded["atlas.aws.real"], runtime.sleep, runtime.now, aws.random
    package.loaded["atlas.aws.real"] = backend
    runtime.sleep = function(s)
        state.sleeps[#state.sleeps + 1] = s
        state.now = state.now + s
    end
    runtime.now = function() return state.now end
    aws.random = function() return 1 end -- the top of the jitter range: delays are exact
    aws.reset_quota()
    t.defer(function()
        package.loaded["atlas.aws.real"], runtime.sleep, runtime.now, aws.random =
            saved_wire, saved_sleep, saved_now, saved_random
        aws.reset_quota()
    end)
    return state
end

local THROTTLE = { code = "ThrottlingException", message = "Rate exceeded", status = 400 }
local OK = { services = {} }

local function describe()
    return aws.call {
        service = "ecs",
        action = "DescribeServices",
        region = "us-east-1",
        params = { cluster = "c", services = { "s" } },
    }
end

t.case("throttling is retried with exponential full-jitter backoff, then succeeds", function()
    local state = fake { THROTTLE, THROTTLE, OK }
    local events = t.capture(function() t.eq(describe(), OK) end)
    t.eq(#state.calls, 3)
    t.eq(state.sleeps, { 1, 2 }) -- random() = 1: exactly min(2^(n-1), 20)
    local outcomes = {}
    for _, e in ipairs(events) do
        if e.type == "call" then outcomes[#outcomes + 1] = e.outcome .. "#" .. e.attempt end
    end
    t.eq(outcomes, { "retry#1", "retry#2", "ok#3" })
end)

t.case("jitter is random * cap, and the cap is 20 s", function()
    local state = fake { THROTTLE, THROTTLE, THROTTLE, THROTTLE, THROTTLE, THROTTLE, OK }
    aws.random = function() return 0.5 end
    aws.call { service = "ecs", action = "DescribeServices", region = "us-east-1", params = {}, max_attempts = 7 }
    t.eq(state.sleeps, { 0.5, 1, 2, 4, 8, 10 })
end)

t.case("three attempts by default, then the last error is raised with its context", function()
    local state = fake { { code = "ServiceUnavailable", message = "down", status = 503 } }
    local err = t.raises(describe, "ServiceUnavailable")
    t.eq(#state.calls, 3)
    t.eq(
        { err.code, err.retryable, err.attempts, err.service, err.action, err.region },
        { "ServiceUnavailable", true, 3, "ecs", "DescribeServices", "us-east-1" }
    )
    t.eq(tostring(err), "ecs DescribeServices (us-east-1): ServiceUnavailable: down")
end)

t.case("a client error is not retried", function()
    local state = fake { { code = "ServiceNotFoundException", message = "Service not found", status = 400 } }
    local err = t.raises(
        function()
            aws.call { service = "ecs", action = "UpdateService", region = "us-east-1", params = { service = "x" } }
        end
    )
    t.eq(#state.calls, 1)
    t.eq(err.retryable, false)
    t.eq(tostring(err), "ecs UpdateService (us-east-1): ServiceNotFoundException: Service not found")
end)

t.case("a non-idempotent call is not retried after a 500 or a reset once sent", function()
    for _, failure in ipairs {
        { code = "InternalError", status = 500 },
        { code = "ConnectionError", sent = true },
    } do
        local state = fake { failure, OK }
        local err = t.raises(
            function()
                aws.call { service = "ecs", action = "UpdateService", region = "us-east-1", params = { service = "s" } }
            end
        )
        t.eq(#state.calls, 1, failure.code)
        t.match(err.retry_stopped, "not idempotent")
    end
end)

t.case("a non-idempotent call is retried when it never left, or was throttled", function()
    for _, failure in ipairs { { code = "ConnectionError", sent = false }, THROTTLE } do
        local state = fake { failure, OK }
        aws.call { service = "ecs", action = "UpdateService", region = "us-east-1", params = { service = "s" } }
        t.eq(#state.calls, 2, failure.code)
    end
end)

t.case("a client token makes a mutating call retryable; the same token is sent each time", function()
    local state = fake { { code = "InternalError", status = 500 }, { code = "InternalError", status = 500 }, OK }
    aws.call { service = "ecs", action = "RunTask", region = "us-east-1", params = { cluster = "c" } }
    t.eq(#state.calls, 3)
    local token = state.calls[1].params.clientToken
    t.match(token, "^%x+%-%x+%-4%x+%-%x+%-%x+$")
    t.eq(state.calls[3].params.clientToken, token)
end)

t.case("reads are retried after a 500 and after a timeout", function()
    local state = fake { { code = "InternalError", status = 500 }, { code = "RequestTimeout", timeout = true }, OK }
    describe()
    t.eq(#state.calls, 3)
end)

t.case("Retry-After is honoured", function()
    local state = fake { { code = "TooManyRequestsException", status = 429, retry_after = 7 }, OK }
    describe()
    t.eq(state.sleeps, { 7 })
end)

t.case("the retry quota: 5 tokens per retry, 10 per timeout, refunded on success", function()
    local state = fake { THROTTLE, OK }
    aws.reset_quota(12)
    describe()
    t.eq(aws.quota.available, 12, "a success refunds its retry cost")
    state = fake { THROTTLE, THROTTLE, THROTTLE, OK }
    aws.reset_quota(12)
    local err = t.raises(
        function()
            aws.call { service = "ecs", action = "DescribeServices", region = "us-east-1", params = {}, max_attempts = 5 }
        end
    )
    t.eq(#state.calls, 3, "two retries cost 10 of 12 tokens, the third is refused")
    t.eq(err.retry_stopped, "retry quota exhausted")
    state = fake { { code = "RequestTimeout", timeout = true }, OK }
    aws.reset_quota(9)
    t.raises(describe)
    t.eq(#state.calls, 1, "a timeout needs 10 tokens")
end)

t.case("dry-run: mutating calls are logged with their parameters, not made; reads are made", function()
    local state = fake { OK }
    runtime.dry_run = true
    local events = t.capture(function()
        t.eq(
            aws.call {
                service = "ecs",
                action = "UpdateService",
                region = "us-east-1",
                params = { service = "s", desiredCount = 10 },
            },
            {}
        )
        describe()
    end)
    t.eq(#state.calls, 1)
    t.eq(state.calls[1].action, "DescribeServices")
    t.eq(events[1].outcome, "dry-run")
    t.eq(events[1].params, { service = "s", desiredCount = 10 })
end)

t.case("parallel: results in order, only the failed call is retried", function()
    local state = fake { OK }
    local n = 0
    package.loaded["atlas.aws.real"].invoke_many = function(reqs)
        n = n + 1
        local out = {}
        for i, req in ipairs(reqs) do
            state.calls[#state.calls + 1] = req.region
            if req.region == "eu-west-1" and n == 1 then
                out[i] = errors.new { kind = "aws", code = "ThrottlingException", status = 400 }
            elseif req.region == "ap-southeast-1" then
                out[i] = errors.new { kind = "aws", code = "AccessDeniedException", status = 400, message = "no" }
            else
                out[i] = { region = req.region }
            end
        end
        return out
    end
    local results = aws.parallel {
        { service = "ecs", action = "DescribeServices", region = "eu-west-1", params = {} },
        { service = "ecs", action = "DescribeServices", region = "us-east-1", params = {} },
        { service = "ecs", action = "DescribeServices", region = "ap-southeast-1", params = {} },
    }
    t.eq(results[1], { region = "eu-west-1" })
    t.eq(results[2], { region = "us-east-1" })
    t.ok(errors.is(results[3], "aws"))
    t.eq(results[3].code, "AccessDeniedException")
    t.eq(state.calls, { "eu-west-1", "us-east-1", "ap-southeast-1", "eu-west-1" })
end)

-- ---- waiters ------------------------------------------------------------------

local function service(running, desired, deployments, status)
    local ds = {}
    for i = 1, deployments do
        ds[i] = { status = i == 1 and "PRIMARY" or "ACTIVE" }
    end
    return {
        serviceName = "atlas-crm-production-service-us-east-1",
        status = status or "ACTIVE",
        runningCount = running,
        desiredCount = desired,
        deployments = ds,
    }
end

t.case("ECS services-stable: polls every delay until one deployment and running == desired", function()
    local state = fake {
        { services = { service(6, 10, 2) }, failures = {} },
        { services = { service(10, 10, 2) }, failures = {} },
        { services = { service(10, 10, 1) }, failures = {} },
    }
    local ecs = require "atlas.ecs"
    local events = t.capture(function()
        local s = ecs.wait_stable {
            region = "us-east-1",
            cluster = "c",
            services = { "atlas-crm-production-service-us-east-1" },
        }
        t.eq(s[1].runningCount, 10)
    end)
    -- The engine's share of a recovery: at most one pace between ECS being
    -- stable and the waiter seeing it; the CLI's 15 s would cost up to 15 s.
    t.eq(state.sleeps, { 4, 4 })
    local progress = {}
    for _, e in ipairs(events) do
        if e.type == "progress" then progress[#progress + 1] = e.message end
    end
    t.eq(progress[1], "us-east-1: 6/10 running, 2 deployments")
    t.eq(progress[3], "us-east-1: 10/10 running, 1 deployment")
end)

t.case("ECS services-stable fails at once on MISSING, DRAINING and INACTIVE", function()
    local ecs = require "atlas.ecs"
    for _, case in ipairs {
        { "MISSING", { services = {}, failures = { { arn = "arn:x", reason = "MISSING" } } } },
        { "DRAINING", { services = { service(2, 2, 1, "DRAINING") }, failures = {} } },
        { "INACTIVE", { services = { service(2, 2, 1, "INACTIVE") }, failures = {} } },
    } do
        local want, resp = case[1], case[2]
        local state = fake { resp }
        local err = t.raises(function() ecs.wait_stable { region = "us-east-1", cluster = "c", services = { "s" } } end)
        t.eq(err.code, "WaiterFailed")
        t.match(tostring(err), want)
        t.eq(#state.calls, 1)
    end
end)

t.case("ECS services-stable: the timeout is a parameter and raises kind timeout with the last state", function()
    local state = fake { { services = { service(6, 10, 2) }, failures = {} } }
    local ecs = require "atlas.ecs"
    local err = t.raises(
        function() ecs.wait_stable { region = "us-east-1", cluster = "c", services = { "s" }, timeout = 60, delay = 15 } end
    )
    t.eq(err.kind, "timeout")
    t.match(tostring(err), "6/10 running, 2 deployments")
    t.eq(#state.calls, 5, "polls at 0, 15, 30, 45, 60 s")
end)

t.case("Route53 change waiter: INSYNC succeeds, NoSuchChange counts as success", function()
    local r53 = require "atlas.route53"
    local state =
        fake { { ChangeInfo = { Id = "C1", Status = "PENDING" } }, { ChangeInfo = { Id = "C1", Status = "INSYNC" } } }
    t.eq(r53.wait_changed { Id = "/change/C1" }.Status, "INSYNC")
    t.eq(state.sleeps, { 4 }) -- not the CLI's 30 s: the engine's share stays under 5 s
    state = fake { { code = "NoSuchChange", status = 404 } }
    t.eq(r53.wait_changed { Id = "C2" }, nil)
    t.eq(#state.calls, 1)
end)

t.case("RDS available waiter: success when available, failure on a failed state", function()
    local rds = require "atlas.rds"
    local function db(status) return { DBInstances = { { DBInstanceIdentifier = "db", DBInstanceStatus = status } } } end
    local state = fake { db("rebooting"), db("available") }
    t.eq(rds.wait_available { region = "eu-west-1", DBInstanceIdentifier = "db" }[1].DBInstanceStatus, "available")
    t.eq(state.sleeps, { 10 })
    fake { db("failed") }
    t.raises(function() rds.wait_available { region = "eu-west-1", DBInstanceIdentifier = "db" } end, "db is failed")
end)

t.case("waiters in dry-run do not poll", function()
    local state = fake { OK }
    runtime.dry_run = true
    local events = t.capture(
        function() require("atlas.ecs").wait_stable { region = "us-east-1", cluster = "c", services = { "s" } } end
    )
    t.eq(#state.calls, 0)
    t.match(events[1].message, "would wait for ECS services stable")
end)

t.case("a profile template gives each region its own profile unless the call names one", function()
    local profiles = {}
    local state = fake { OK }
    package.loaded["atlas.aws.real"].invoke = function(req, options)
        profiles[#profiles + 1] = options.profile or "-"
        return OK
    end
    local saved = aws.config.profile_template
    t.defer(function() aws.config.profile_template = saved end)
    aws.config.profile_template = "atlas-{region}"
    aws.call { service = "ecs", action = "DescribeServices", region = "eu-west-1", params = {} }
    aws.call { service = "ecs", action = "DescribeServices", region = "us-east-1", params = {}, profile = "ops" }
    aws.config.profile_template = nil
    aws.call { service = "ecs", action = "DescribeServices", region = "us-east-1", params = {} }
    t.eq(profiles, { "atlas-eu-west-1", "ops", "-" })
    t.eq(#state.calls, 0)
end)

t.case("generic waiter: a retry acceptor on an error keeps polling; other errors propagate", function()
    local state = fake { OK }
    local n = 0
    local v = aws.wait {
        name = "log group to appear",
        delay = 5,
        timeout = 60,
        poll = function()
            n = n + 1
            if n < 3 then errors.raise { kind = "aws", code = "ResourceNotFoundException", message = "not yet" } end
            return { ready = true }
        end,
        acceptors = {
            { state = "retry", error = "ResourceNotFoundException" },
            { state = "success", matcher = function(r) return r.ready end },
        },
    }
    t.eq(v, { ready = true })
    t.eq(state.sleeps, { 5, 5 })
    local err = t.raises(function()
        aws.wait {
            name = "x",
            poll = function() errors.raise { kind = "aws", code = "AccessDeniedException", message = "no" } end,
            acceptors = { { state = "retry", error = "ResourceNotFoundException" } },
        }
    end)
    t.eq(err.code, "AccessDeniedException")
end)

t.case("is_mutating: reads by prefix or name, everything else changes the world, the same answer when asked again", function()
    local cases = {
        { "DescribeServices", false }, { "ListHostedZonesByName", false }, { "GetSecretValue", false },
        { "AssumeRole", false }, { "GetCallerIdentity", false }, { "UpdateService", true },
        { "ChangeResourceRecordSets", true }, { "PromoteReadReplica", true }, { "Describ", true },
    }
    for _ = 1, 2 do -- the second round is answered from what the first learnt
        for _, case in ipairs(cases) do
            t.eq(runtime.is_mutating("ecs", case[1]), case[2], case[1])
        end
    end
end)
