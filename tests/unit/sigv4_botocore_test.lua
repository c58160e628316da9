-- atlas.sigv4 against botocore's SigV4Auth, byte for byte, on the requests the runbook's
-- services actually send: rest-xml paths and queries (Route53), an encoded ARN in a rest-json
-- path (Lambda), JSON and query bodies, session tokens, non-default ports.
-- tests/support/botocore_sigv4.py signs the same table with botocore.
local t = require "atlas.test"
local json = require "atlas.json"
local sigv4 = require "atlas.sigv4"

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local signer = here .. "/../support/botocore_sigv4.py"

local creds = { access_key_id = "AKIAIOSFODNN7EXAMPLE", secret_access_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY" }
local temp = {
    access_key_id = "ASIAIOSFODNN7EXAMPLE",
    secret_access_key = "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY",
    session_token = "FwoGZXIvYXdzEBYaDH//////////wEaDEXAMPLE+token/with=chars",
}
local T = 1764123456 -- 2025-11-26T02:17:36Z
local FN = "arn%3Aaws%3Alambda%3Aeu-west-1%3A123456789012%3Afunction%3Aatlas-production-failover-orchestrator"

local cases = {
    {
        name = "Route53 ListResourceRecordSets, paginated (GET, query)",
        method = "GET",
        service = "route53",
        region = "us-east-1",
        url = "https://route53.amazonaws.com/2013-04-01/hostedzone/Z0123456789ABC/rrset?maxitems=7"
            .. "&name=api.atlas-crm.com.&type=CNAME&identifier=eu-west-1",
    },
    {
        name = "Route53 ChangeResourceRecordSets (POST, XML body)",
        method = "POST",
        service = "route53",
        region = "us-east-1",
        url = "https://route53.amazonaws.com/2013-04-01/hostedzone/Z0123456789ABC/rrset/",
        headers = { ["Content-Type"] = "application/xml" },
        body = '<?xml version="1.0" encoding="UTF-8"?><ChangeResourceRecordSetsRequest xmlns="https://route53.amazonaws.com/'
            .. 'doc/2013-04-01/"><ChangeBatch><Comment>failover eu-west-1 &amp; more</Comment></ChangeBatch>'
            .. "</ChangeResourceRecordSetsRequest>",
    },
    {
        name = "Lambda Invoke (encoded ARN in the path, double-encoded when signed)",
        method = "POST",
        service = "lambda",
        region = "eu-west-1",
        url = "https://lambda.eu-west-1.amazonaws.com/2015-03-31/functions/" .. FN .. "/invocations",
        headers = { ["X-Amz-Invocation-Type"] = "RequestResponse", ["Content-Type"] = "application/json" },
        body = '{"source_region": "eu-west-1", "target_region": "us-east-1"}',
    },
    {
        name = "ECS UpdateService (JSON 1.1, temporary credentials)",
        method = "POST",
        service = "ecs",
        region = "us-east-1",
        credentials = temp,
        url = "https://ecs.us-east-1.amazonaws.com/",
        headers = {
            ["Content-Type"] = "application/x-amz-json-1.1",
            ["X-Amz-Target"] = "AmazonEC2ContainerServiceV20141113.UpdateService",
        },
        body = '{"cluster": "atlas-crm-production-cluster-us-east-1", "desiredCount": 6}',
    },
    {
        name = "RDS DescribeDBInstances (query body)",
        method = "POST",
        service = "rds",
        region = "eu-west-1",
        url = "https://rds.eu-west-1.amazonaws.com/",
        headers = { ["Content-Type"] = "application/x-www-form-urlencoded; charset=utf-8" },
        body = "Action=DescribeDBInstances&Version=2014-10-31&DBInstanceIdentifier=atlas-production-db-eu-west-1",
    },
    {
        name = "Logs FilterLogEvents (unicode in the body)",
        method = "POST",
        service = "logs",
        region = "ap-southeast-1",
        url = "https://logs.ap-southeast-1.amazonaws.com/",
        headers = {
            ["Content-Type"] = "application/x-amz-json-1.1",
            ["X-Amz-Target"] = "Logs_20140328.FilterLogEvents",
        },
        body = '{"logGroupName": "/ecs/atlas-crm-production-ap-southeast-1", "filterPattern": "\u{00e9}rreur \u{2603}"}',
    },
    {
        name = "query keys and values needing encoding, repeated keys, empty value",
        method = "GET",
        service = "route53",
        region = "us-east-1",
        url = "https://route53.amazonaws.com/2013-04-01/healthcheck?marker=%2Fa%2Bb&b=2&a=3&a=1&empty=",
    },
    {
        name = "header values with runs of spaces and tabs",
        method = "POST",
        service = "ecs",
        region = "us-east-1",
        url = "https://ecs.us-east-1.amazonaws.com/",
        headers = {
            ["X-Amz-Target"] = "  AmazonEC2ContainerServiceV20141113.ListClusters  ",
            ["X-Custom"] = "a   b\tc",
            ["Content-Type"] = "application/x-amz-json-1.1",
        },
        body = "{}",
    },
    {
        name = "loopback endpoint with a port (moto, the fault proxy)",
        method = "POST",
        service = "sts",
        region = "us-east-1",
        url = "http://127.0.0.1:5000/",
        headers = { ["Content-Type"] = "application/x-www-form-urlencoded; charset=utf-8" },
        body = "Action=GetCallerIdentity&Version=2011-06-15",
    },
}

t.case("every request signs exactly as botocore signs it", function()
    local inputs = {}
    for i, c in ipairs(cases) do
        inputs[i] = {
            method = c.method,
            url = c.url,
            headers = c.headers or json.object({}),
            body = c.body or "",
            region = c.region,
            service = c.service,
            time = T,
            credentials = c.credentials or creds,
        }
    end
    local file = t.tmpdir() .. "/cases.json"
    t.write_file(file, json.encode(inputs))
    local run = t.spawn({ "python3", signer, file })
    t.eq(run.code, 0, run.stderr)
    local expected = json.decode(run.stdout)
    t.eq(#expected, #cases)
    for i, c in ipairs(cases) do
        local headers = {}
        for k, v in pairs(c.headers or {}) do
            headers[k] = v
        end
        local added, d = sigv4.sign {
            method = c.method,
            url = c.url,
            headers = headers,
            body = c.body or "",
            region = c.region,
            service = c.service,
            time = T,
            credentials = c.credentials or creds,
        }
        t.eq(d.canonical_request, expected[i].canonical_request, c.name .. ": canonical request")
        t.eq(d.string_to_sign, expected[i].string_to_sign, c.name .. ": string to sign")
        t.eq(added.Authorization, expected[i].authorization, c.name .. ": Authorization")
    end
end)
