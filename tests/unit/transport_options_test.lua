-- Control keys (timeouts, endpoint) travel apart from a call's parameters,
-- from the caller down to the transport: what reaches atlas.curl is recorded.
local t = require "atlas.test"
local net = require "atlas.net"

-- Records every table atlas.net hands to libcurl and answers 200 with `body`.
local function record(body)
    local seen = {}
    local saved = net.curl
    local function answer(r)
        seen[#seen + 1] = r
        return { status = 200, headers = {}, body = body, elapsed = 0, reused = false }
    end
    net.curl = {
        request = answer,
        request_many = function(list)
            local out = {}
            for i, r in ipairs(list) do
                out[i] = { answer(r) }
            end
            return out
        end,
    }
    t.defer(function() net.curl = saved end)
    return seen
end

local function static_credentials()
    local credentials = require "atlas.aws.credentials"
    local saved = credentials.getenv
    credentials.getenv = function(k)
        return ({ AWS_ACCESS_KEY_ID = "AKIA1", AWS_SECRET_ACCESS_KEY = "s", AWS_EC2_METADATA_DISABLED = "true" })[k]
    end
    credentials.reset()
    t.defer(function()
        credentials.getenv = saved
        credentials.reset()
    end)
end

local SERVICES = '{"services":[],"failures":[]}'

t.case("connect_timeout reaches the transport: a service helper's call", function()
    static_credentials()
    local seen = record(SERVICES)
    require("atlas.ecs").describe_services {
        region = "us-east-1",
        endpoint = "http://127.0.0.1:9",
        cluster = "atlas-production",
        services = { "atlas-api" },
        connect_timeout = 0.25,
        timeout = 7,
    }
    t.eq(#seen, 1)
    t.eq({ seen[1].url, seen[1].connect_timeout, seen[1].timeout }, { "http://127.0.0.1:9/", 0.25, 7 })
    t.eq(seen[1].body:find("connect_timeout", 1, true), nil, "a control key leaked into the AWS parameters")
    require("atlas.ecs").update_service {
        region = "us-east-1",
        endpoint = "http://127.0.0.1:9",
        cluster = "atlas-production",
        service = "atlas-api",
        connect_timeout = 0.5,
    }
    t.eq(seen[2].connect_timeout, 0.5)
end)

t.case("connect_timeout reaches the transport: aws.call and aws.parallel", function()
    static_credentials()
    local seen = record(SERVICES)
    local aws = require "atlas.aws"
    aws.call(
        { service = "ecs", action = "DescribeServices", region = "us-east-1", params = { services = { "a" } } },
        { endpoint = "http://127.0.0.1:9", connect_timeout = 0.75 }
    )
    aws.call {
        service = "ecs",
        action = "DescribeServices",
        region = "us-east-1",
        params = {},
        endpoint = "http://127.0.0.1:9",
        connect_timeout = 1.5,
    }
    aws.parallel {
        { service = "ecs", action = "DescribeServices", region = "us-east-1", params = {}, endpoint = "http://127.0.0.1:9" },
        {
            service = "ecs",
            action = "DescribeServices",
            region = "eu-west-1",
            params = {},
            endpoint = "http://127.0.0.1:9",
            connect_timeout = 2.5,
        },
    }
    t.eq({ seen[1].connect_timeout, seen[2].connect_timeout }, { 0.75, 1.5 })
    t.eq(seen[4].connect_timeout, 2.5)
    t.eq(seen[3].connect_timeout, require("atlas.aws.real").defaults.connect_timeout)
end)

t.case("connect_timeout reaches the transport: atlas.http", function()
    local seen = record("ok")
    local http = require "atlas.http"
    http.request { url = "http://127.0.0.1:9/health", timeout = 3, connect_timeout = 0.3 }
    http.get("http://127.0.0.1:9/health", { timeout = 8 })
    http.request_many { { url = "http://127.0.0.1:9/a", connect_timeout = 0.4 } }
    t.eq({ seen[1].timeout, seen[1].connect_timeout }, { 3, 0.3 })
    t.eq({ seen[2].timeout, seen[2].connect_timeout }, { 8, 5 })
    t.eq(seen[3].connect_timeout, 0.4)
    t.eq(seen[1].continent, nil, "only transport keys reach libcurl")
end)
