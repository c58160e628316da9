-- The mock world's network faults (world:inject{network=...}) against the
-- real transport on loopback: a refused connection, a stalled server, a
-- reset, a name that does not resolve. The error object a playbook sees
-- must be the same, field for field, so that a rule tested in the mock world
-- ("a probe that fails on our side is unknown") holds against AWS.
local t = require "atlas.test"
local sys = require "atlas.sys"
local aws = require "atlas.aws"
local http = require "atlas.http"
local errors = require "atlas.errors"
local runtime = require "atlas.run.runtime"

local FIELDS = { "kind", "code", "transport", "sent", "timeout", "retryable", "status", "service", "action", "region" }
local HTTP_FIELDS = { "kind", "code", "retryable", "status", "method" }

local function fields_of(err, names)
    t.ok(errors.is(err), "an error object, got " .. tostring(err))
    local out = {}
    for _, k in ipairs(names) do
        out[k] = err[k] == nil and "(nil)" or err[k]
    end
    return out
end

-- The message without hosts, ports and numbers: the same words.
local function shape(message) return (tostring(message):gsub("[%w%-]+%.[%w%.%-]+", "HOST"):gsub("%d+", "N")) end

local function with_credentials()
    local saved = {}
    for k, v in pairs { AWS_ACCESS_KEY_ID = "testing", AWS_SECRET_ACCESS_KEY = "testing", AWS_SESSION_TOKEN = false } do
        saved[k] = os.getenv(k) or false
        sys.setenv(k, v or nil)
    end
    t.defer(function()
        for k, v in pairs(saved) do
            sys.setenv(k, v or nil)
        end
        runtime.use_real()
    end)
end

local function describe(endpoint)
    return t.raises(
        function()
            aws.call {
                service = "ecs",
                action = "DescribeServices",
                region = "eu-west-1",
                params = { cluster = "c", services = { "s" } },
                endpoint = endpoint,
                timeout = 1,
                max_attempts = 1,
            }
        end
    )
end

local function real_endpoint(kind)
    if kind == "connect" then return "http://127.0.0.1:" .. assert(sys.free_port()) end
    if kind == "dns" then return "https://atlas-test-host.invalid" end
    return "http://127.0.0.1:" .. t.server { "python3", "tests/support/raw_server.py", "PORT", kind }
end

for _, kind in ipairs { "connect", "timeout", "reset", "dns" } do
    t.case("aws: a mock " .. kind .. " fault is the real transport's error object", function()
        with_credentials()
        runtime.use_real()
        local real = describe(real_endpoint(kind))
        local world = t.world("healthy")
        world:inject { service = "ecs", network = kind, times = 1 }
        local started = world:now()
        local mock = describe(nil)
        t.eq(fields_of(mock, FIELDS), fields_of(real, FIELDS))
        t.eq(real.transport, kind, "the real transport reported " .. tostring(real.transport))
        t.eq(shape(mock.message), shape(real.message))
        if kind == "timeout" then t.ok(world:now() > started, "a mock timeout costs virtual time") end
    end)

    t.case("http: a mock " .. kind .. " fault is the real transport's error object", function()
        runtime.use_real()
        local url = real_endpoint(kind) .. "/actuator/health"
        local real = t.raises(function() http.get(url, { timeout = 1 }) end)
        local world = t.world("healthy")
        world:inject { http = true, region = "eu-west-1", network = kind, times = 1 }
        local mock = t.raises(
            function() http.get("https://eu-west-1.atlas-crm.com/actuator/health", { timeout = 1 }) end
        )
        t.eq(fields_of(mock, HTTP_FIELDS), fields_of(real, HTTP_FIELDS))
        t.eq(shape(mock.message), shape(real.message))
        t.eq(http.far_side(mock), http.far_side(real))
        runtime.use_real()
    end)
end
