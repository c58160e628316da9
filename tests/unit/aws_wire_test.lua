-- atlas.aws.real: endpoint resolution as the SDKs do it, the http policy,
-- and the helpers' pagination.
local t = require "atlas.test"
local wire = require "atlas.aws.real"
local protocol = require "atlas.aws.protocol"

local function with_env(env)
    local saved = wire.getenv
    wire.getenv = function(k) return env[k] end
    t.defer(function() wire.getenv = saved end)
end

local cases = {
    { "standard regional endpoint", "ecs", "eu-west-1", {}, nil, "https://ecs.eu-west-1.amazonaws.com", "eu-west-1" },
    {
        "endpoint prefix differs from the client name",
        "cloudwatch",
        "ap-southeast-1",
        {},
        nil,
        "https://monitoring.ap-southeast-1.amazonaws.com",
        "ap-southeast-1",
    },
    {
        "Route53 is global and signs for us-east-1",
        "route53",
        "eu-west-1",
        {},
        nil,
        "https://route53.amazonaws.com",
        "us-east-1",
    },
    { "China partition", "rds", "cn-north-1", {}, nil, "https://rds.cn-north-1.amazonaws.com.cn", "cn-north-1" },
    {
        "AWS_ENDPOINT_URL",
        "logs",
        "eu-west-1",
        { AWS_ENDPOINT_URL = "http://127.0.0.1:5000/" },
        nil,
        "http://127.0.0.1:5000",
        "eu-west-1",
    },
    {
        "AWS_ENDPOINT_URL_<SERVICE> wins over AWS_ENDPOINT_URL",
        "ecs",
        "eu-west-1",
        { AWS_ENDPOINT_URL = "http://127.0.0.1:5000", AWS_ENDPOINT_URL_ECS = "http://localhost:6000" },
        nil,
        "http://localhost:6000",
        "eu-west-1",
    },
    {
        "service ids with spaces",
        "secretsmanager",
        "eu-west-1",
        { AWS_ENDPOINT_URL_SECRETS_MANAGER = "https://secrets.internal" },
        nil,
        "https://secrets.internal",
        "eu-west-1",
    },
    {
        "Route53 override keeps signing us-east-1",
        "route53",
        "eu-west-1",
        { AWS_ENDPOINT_URL_ROUTE_53 = "http://127.0.0.1:7000" },
        nil,
        "http://127.0.0.1:7000",
        "us-east-1",
    },
    {
        "the call's endpoint wins over everything",
        "ecs",
        "us-east-1",
        { AWS_ENDPOINT_URL_ECS = "http://127.0.0.1:6000" },
        "https://vpce-1.ecs.us-east-1.vpce.amazonaws.com/",
        "https://vpce-1.ecs.us-east-1.vpce.amazonaws.com",
        "us-east-1",
    },
    {
        "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
        "ecs",
        "us-east-1",
        { AWS_ENDPOINT_URL = "http://127.0.0.1:6000", AWS_IGNORE_CONFIGURED_ENDPOINT_URLS = "true" },
        nil,
        "https://ecs.us-east-1.amazonaws.com",
        "us-east-1",
    },
}

for _, c in ipairs(cases) do
    t.case("endpoint: " .. c[1], function()
        with_env(c[4])
        local ep = wire.endpoint(protocol.service(c[2]), c[3], { endpoint = c[5] })
        t.eq({ ep.url, ep.signing_region }, { c[6], c[7] })
    end)
end

t.case("endpoint: plain http only to loopback unless allowed", function()
    with_env {}
    local svc = protocol.service("ecs")
    local err = t.raises(function() wire.endpoint(svc, "us-east-1", { endpoint = "http://ecs.internal:8080" }) end)
    t.eq(err.kind, "usage")
    t.match(tostring(err), "plain http to a non%-loopback endpoint refused")
    t.eq(
        wire.endpoint(svc, "us-east-1", { endpoint = "http://ecs.internal:8080", allow_http = true }).url,
        "http://ecs.internal:8080"
    )
    with_env { ATLAS_ALLOW_HTTP = "1" }
    t.eq(wire.endpoint(svc, "us-east-1", { endpoint = "http://ecs.internal" }).url, "http://ecs.internal")
    with_env {}
    t.eq(wire.endpoint(svc, "us-east-1", { endpoint = "http://[::1]:5000" }).url, "http://[::1]:5000")
    t.raises(function() wire.endpoint(svc, "us-east-1", { endpoint = "ftp://x" }) end, "unsupported endpoint scheme")
end)

t.case("the JSON env names come from the botocore serviceId", function()
    t.eq(protocol.service("logs").env_name, "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS")
    t.eq(protocol.service("events").env_name, "AWS_ENDPOINT_URL_EVENTBRIDGE")
    t.eq(protocol.service("application-autoscaling").env_name, "AWS_ENDPOINT_URL_APPLICATION_AUTO_SCALING")
end)

-- ---- pagination through a fake backend -----------------------------------------

local function fake_pages(pages)
    local saved = package.loaded["atlas.aws.real"]
    local seen = {}
    package.loaded["atlas.aws.real"] = {
        invoke = function(req)
            seen[#seen + 1] = req.params
            return pages[#seen] or pages[#pages]
        end,
    }
    t.defer(function() package.loaded["atlas.aws.real"] = saved end)
    return seen
end

t.case("pagination: every page is fetched with the cursor the last one gave", function()
    local seen = fake_pages {
        { DBInstances = { { DBInstanceIdentifier = "a" } }, Marker = "m1" },
        { DBInstances = { { DBInstanceIdentifier = "b" } }, Marker = "m2" },
        { DBInstances = { { DBInstanceIdentifier = "c" } } },
    }
    local dbs = require("atlas.rds").describe_db_instances { region = "eu-west-1" }
    t.eq(#dbs, 3)
    t.eq({ seen[1].Marker, seen[2].Marker, seen[3].Marker }, { nil, "m1", "m2" })
end)

t.case("pagination: Route53's three cursors, and a repeated cursor stops instead of looping", function()
    local seen = fake_pages {
        { ResourceRecordSets = { { Name = "a." } }, IsTruncated = true, NextRecordName = "b.", NextRecordType = "A" },
        { ResourceRecordSets = { { Name = "b." } }, IsTruncated = true, NextRecordName = "b.", NextRecordType = "A" },
    }
    local records
    t.capture(function() records = require("atlas.route53").list_resource_record_sets { HostedZoneId = "Z" } end)
    t.eq(#records, 2)
    t.eq({ seen[2].StartRecordName, seen[2].StartRecordType }, { "b.", "A" })
end)

t.case("pagination: limit caps the total", function()
    fake_pages { { events = { { message = "1" }, { message = "2" } }, nextToken = "n" } }
    t.eq(#require("atlas.logs").filter_log_events { region = "eu-west-1", logGroupName = "g", limit = 3 }, 3)
end)

-- ---- clock skew and expired credentials, with a fake transport -------------------

local function fake_http(answers)
    local net = require "atlas.net"
    local saved_http, saved_skew = net.curl, wire.clock_skew
    local credentials = require "atlas.aws.credentials"
    local saved_env = credentials.getenv
    local key = "AKIA1"
    credentials.getenv = function(k)
        return ({ AWS_ACCESS_KEY_ID = key, AWS_SECRET_ACCESS_KEY = "s", AWS_EC2_METADATA_DISABLED = "true" })[k]
    end
    credentials.reset()
    local seen = {}
    net.curl = {
        request = function(http)
            seen[#seen + 1] = http.headers
            local a = answers[#seen]
            return { status = a[1], headers = a[2] or {}, body = a[3] or "", elapsed = 0, reused = false }
        end,
    }
    t.defer(function()
        net.curl, wire.clock_skew, credentials.getenv = saved_http, saved_skew, saved_env
        credentials.reset()
    end)
    with_env {}
    return seen, function(k) key = k end
end

t.case("a RequestTimeTooSkewed answer corrects the signing clock and is retried once", function()
    local seen = fake_http {
        {
            400,
            { date = "Fri, 01 Jan 2100 00:00:00 GMT", ["x-amzn-requestid"] = "r" },
            '{"__type":"InvalidSignatureException","message":"Signature expired"}',
        },
        { 200, {}, '{"services":[],"failures":[]}' },
    }
    local r = require("atlas.aws").call {
        service = "ecs",
        action = "UpdateService",
        region = "us-east-1",
        params = { service = "s" },
    }
    t.eq(r, { services = {}, failures = {} })
    t.eq(#seen, 2, "retried once, although UpdateService is not idempotent")
    t.match(seen[1]["X-Amz-Date"] or seen[1]["x-amz-date"], "^20")
    t.match(seen[2]["X-Amz-Date"] or seen[2]["x-amz-date"], "^2100010")
    t.ok(wire.clock_skew > 0)
end)

t.case("expired credentials are resolved again and the call retried once", function()
    local seen, set_key = fake_http {
        {
            400,
            {},
            '{"__type":"ExpiredTokenException","message":"The security token included in the request is expired"}',
        },
        { 200, {}, '{"services":[],"failures":[]}' },
    }
    local aws = require "atlas.aws"
    local saved = package.loaded["atlas.aws.real"]
    -- the key rotates between the two attempts, as a refreshed role session would
    local invoke = wire.invoke
    local n = 0
    wire.invoke = function(req)
        n = n + 1
        if n == 2 then set_key("AKIA2") end
        return invoke(req)
    end
    t.defer(function()
        wire.invoke = invoke
        package.loaded["atlas.aws.real"] = saved
    end)
    aws.call { service = "ecs", action = "DescribeServices", region = "us-east-1", params = {} }
    t.eq(#seen, 2)
    t.match(seen[1].Authorization, "Credential=AKIA1/")
    t.match(seen[2].Authorization, "Credential=AKIA2/")
end)

t.case("HTTP dates parse as UTC", function()
    t.eq(wire.parse_http_date("Thu, 01 Jan 1970 00:01:00 GMT"), 60)
    t.eq(wire.parse_http_date("Thu, 26 Nov 2026 02:23:34 GMT"), 1795659814)
    t.eq(wire.parse_http_date("garbage"), nil)
end)

t.case("parallel: a request that cannot be prepared fails alone", function()
    local seen = fake_http { { 200, {}, '{"services":[],"failures":[]}' } }
    local curl = require("atlas.net").curl
    curl.request_many = function(list)
        local out = {}
        for i, http in ipairs(list) do
            out[i] = { curl.request(http) }
        end
        return out
    end
    local results = require("atlas.aws").parallel {
        { service = "ecs", action = "DescribeServices", region = "us-east-1", params = {} },
        { service = "ecs", action = "DescribeServices", region = "us-east-1", params = {}, profile = "nowhere" },
    }
    t.eq(results[1], { services = {}, failures = {} })
    t.eq(results[2].code, "ProfileNotFound")
    t.eq(#seen, 1)
end)

t.case("pagination: a server that never stops is cut off after MAX_PAGES", function()
    local n = 0
    local saved = package.loaded["atlas.aws.real"]
    package.loaded["atlas.aws.real"] = {
        invoke = function()
            n = n + 1
            return { DBInstances = {}, Marker = "m" .. n }
        end,
    }
    local helper = require "atlas.aws.helper"
    local max = helper.MAX_PAGES
    helper.MAX_PAGES = 5
    t.defer(function()
        package.loaded["atlas.aws.real"] = saved
        helper.MAX_PAGES = max
    end)
    local err = t.raises(function() require("atlas.rds").describe_db_instances { region = "eu-west-1" } end)
    t.eq({ err.code, n }, { "TooManyPages", 5 })
end)

t.case("S3: virtual-hosted on AWS, path-style with a custom endpoint or a dotted bucket; payload signed", function()
    local urls = {}
    local seen = fake_http {
        { 200, { etag = '"e1"' }, "one" },
        { 200, { etag = '"e2"' }, "two" },
        { 200, { etag = '"e3"' }, "" },
    }
    local curl = require("atlas.net").curl
    local saved_request = curl.request
    curl.request = function(http)
        urls[#urls + 1] = http.url
        return saved_request(http)
    end
    local s3 = require "atlas.s3"
    local r = s3.get_object { region = "eu-west-1", Bucket = "ops-state", Key = "team/runs/a b.json" }
    t.eq(r.Body, "one")
    t.eq(r.ETag, '"e1"')
    s3.get_object { region = "eu-west-1", Bucket = "ops.state", Key = "k" }
    with_env { AWS_ENDPOINT_URL = "http://127.0.0.1:5000" }
    s3.put_object { region = "eu-west-1", Bucket = "ops-state", Key = "team/k", Body = "x", IfNoneMatch = "*" }
    t.eq(urls, {
        "https://ops-state.s3.eu-west-1.amazonaws.com/team/runs/a%20b.json",
        "https://s3.eu-west-1.amazonaws.com/ops.state/k",
        "http://127.0.0.1:5000/ops-state/team/k",
    })
    t.eq(seen[3]["If-None-Match"], "*")
    t.eq(seen[3]["X-Amz-Content-Sha256"], require("atlas.aws.sigv4").sha256_hex("x"))
end)
