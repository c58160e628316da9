-- The defects the seeded fault campaign (docs/faults.md) found, each pinned
-- by a queued fault in tests/support/fault_proxy.py in front of moto: the
-- same fault, deterministically, whatever the seed.
local t = require "atlas.test"
local json = require "atlas.json"
local aws = require "atlas.aws"
local errors = require "atlas.errors"

local REGION = "us-east-1"
local CLUSTER, SERVICE = "faults-cluster", "faults-service"

-- A bare moto with one ECS service, built by atlas itself (no boto3 seeding:
-- these cases need one service, not the reference environment).
local env = { AWS_ACCESS_KEY_ID = "testing", AWS_SECRET_ACCESS_KEY = "testing", AWS_EC2_METADATA_DISABLED = "true" }
t.aws_environment(env)
local endpoint = t.moto()
local function moto_call(action, params)
    return aws.call { service = "ecs", action = action, region = REGION, endpoint = endpoint, params = params }
end
moto_call("CreateCluster", { clusterName = CLUSTER })
moto_call("RegisterTaskDefinition", {
    family = "faults",
    containerDefinitions = { { name = "app", image = "atlas/crm:1", memory = 128 } },
})
moto_call("CreateService", { cluster = CLUSTER, serviceName = SERVICE, taskDefinition = "faults", desiredCount = 1 })

local function desired_count()
    return moto_call("DescribeServices", { cluster = CLUSTER, services = { SERVICE } }).services[1].desiredCount
end

-- The proxy, with faults queued for the requests that follow, in order.
local function proxy_with(faults)
    local http = require "atlas.http"
    local proxy = "http://127.0.0.1:" .. t.server { "python3", "tests/support/fault_proxy.py", "PORT", endpoint }
    local r = http.request {
        method = "POST",
        url = proxy .. "/__faults",
        body = json.encode { faults = json.array(faults) },
    }
    assert(r.status == 200, r.body)
    local saved = aws.random
    aws.random = function() return 0.02 end -- short real backoff sleeps
    aws.reset_quota()
    t.defer(function()
        aws.random = saved
        aws.reset_quota()
    end)
    -- requests(op) -> the requests of that operation the proxy received, in order
    local function requests(op)
        local all = json.decode(http.request { method = "GET", url = proxy .. "/__faults/requests" }.body).requests
        local out = {}
        for _, q in ipairs(all) do
            if q.op == op then out[#out + 1] = q end
        end
        return out
    end
    return proxy, requests
end

local function call(proxy, action, params, extra)
    local args = { service = "ecs", action = action, region = REGION, endpoint = proxy, params = params }
    for k, v in pairs(extra or {}) do
        args[k] = v
    end
    return aws.call(args)
end

local function describe(proxy) return call(proxy, "DescribeServices", { cluster = CLUSTER, services = { SERVICE } }) end

local function update(proxy, count, extra)
    return call(proxy, "UpdateService", { cluster = CLUSTER, service = SERVICE, desiredCount = count }, extra)
end

-- The attempts atlas.aws logged: {"retry:ConnectionError", "ok:"}
local function attempts(events, op)
    local out = {}
    for _, e in ipairs(events) do
        if e.type == "call" and e.op == op then out[#out + 1] = e.outcome .. ":" .. (e.code or "") end
    end
    return out
end

t.case("a mutating call cut after the service acted is sent once: libcurl does not send it again", function()
    -- The read leaves a keep-alive connection; libcurl re-sends a request on a reused
    -- connection that closes before any byte of the answer, which is what reset-after is.
    local proxy, requests = proxy_with { "pass", "reset-after" }
    describe(proxy)
    local events, ok, err = t.capture(update, proxy, 5)
    t.ok(not ok, "the update fails: its outcome is unknown")
    t.eq({ err.code, err.transport, err.sent, err.retry_stopped }, {
        "ConnectionError",
        "reset",
        true,
        "not idempotent and may have reached the service",
    })
    t.eq(attempts(events, "ecs.UpdateService"), { "error:ConnectionError" })
    local sent = requests("ecs.UpdateService")
    t.eq(#sent, 1, "UpdateService reached the proxy once: " .. json.encode(sent))
    t.eq(desired_count(), 5, "the service acted on the one copy")
end)

t.case("an idempotent mutating call is retried by atlas, as an attempt in the log, never by libcurl", function()
    local proxy, requests = proxy_with { "pass", "reset-after" }
    describe(proxy)
    local events, ok, err = t.capture(update, proxy, 4, { idempotent = true })
    t.ok(ok, errors.message(err))
    t.eq(attempts(events, "ecs.UpdateService"), { "retry:ConnectionError", "ok:" })
    t.eq(#requests("ecs.UpdateService"), 2, "one request per attempt")
    t.eq(desired_count(), 4)
end)

t.case("a read whose reply is cut short is retried: a truncated body, framed or ended by the close", function()
    local proxy, requests = proxy_with { "truncate-close", "truncate" }
    local events, ok, err = t.capture(describe, proxy)
    t.ok(ok, errors.message(err))
    t.eq(err.services[1].serviceName, SERVICE, "the third attempt's answer")
    t.eq(attempts(events, "ecs.DescribeServices"), { "retry:InvalidResponse", "retry:ConnectionError", "ok:" })
    t.eq(#requests("ecs.DescribeServices"), 3)
end)

t.case("a mutating call whose reply is cut short is not repeated: the service may have acted", function()
    local proxy, requests = proxy_with { "truncate-close" }
    local events, ok, err = t.capture(update, proxy, 3)
    t.ok(not ok)
    t.eq({ err.code, err.retry_stopped }, { "InvalidResponse", "not idempotent and may have reached the service" })
    t.eq(attempts(events, "ecs.UpdateService"), { "error:InvalidResponse" })
    t.eq(#requests("ecs.UpdateService"), 1)
    t.eq(desired_count(), 3, "it did act")
end)

t.case("an empty 200 to UpdateService is not an answer: an idempotent update is sent again, a plain one stops", function()
    -- Campaign seeds 7, 39, 45, 92: the empty body was read as {} and journalled
    -- as UpdateService's answer, so every --resume replayed it and failed.
    local proxy, requests = proxy_with { "empty-200" }
    local events, ok, err = t.capture(update, proxy, 6, { idempotent = true })
    t.ok(ok, errors.message(err))
    t.eq(attempts(events, "ecs.UpdateService"), { "retry:InvalidResponse", "ok:" })
    t.eq(#requests("ecs.UpdateService"), 2)
    t.eq(err.service.desiredCount, 6, "the answer is the second attempt's document")
    proxy = proxy_with { "empty-200" }
    events, ok, err = t.capture(update, proxy, 7)
    t.ok(not ok)
    t.eq({ err.code, err.retry_stopped }, { "InvalidResponse", "not idempotent and may have reached the service" })
end)

t.case("ATLAS_AWS_TIMEOUT sets how long an attempt may take; a malformed value is a usage error", function()
    local proxy, requests = proxy_with { "stall" } -- 1.5 s, then forwarded
    t.defer(function() env.ATLAS_AWS_TIMEOUT = nil end)
    env.ATLAS_AWS_TIMEOUT = "0.5"
    local events, ok, err = t.capture(describe, proxy)
    t.ok(ok, errors.message(err))
    t.eq(attempts(events, "ecs.DescribeServices"), { "retry:RequestTimeout", "ok:" })
    t.eq(#requests("ecs.DescribeServices"), 2)
    for _, bad in ipairs { "abc", "0", "-1", "1e3" } do
        env.ATLAS_AWS_TIMEOUT = bad
        local e = t.raises(function() describe(proxy) end)
        t.eq({ e.kind, e.code }, { "usage", "environment" })
        t.match(e.message, "ATLAS_AWS_TIMEOUT must be a positive number of seconds")
    end
end)
