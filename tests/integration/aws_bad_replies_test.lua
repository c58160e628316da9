-- Replies no healthy AWS endpoint sends (truncated JSON, an HTML error page
-- from a proxy, broken XML, an empty body, a wrong document type) end as an
-- aws error naming the service, the call and the region: never a crash,
-- never a bare parser message.
local t = require "atlas.test"
local sys = require "atlas.sys"
local json = require "atlas.json"
local aws = require "atlas.aws"
local errors = require "atlas.errors"

local CASES = {
    {
        "truncated JSON",
        "ecs",
        "DescribeServices",
        { cluster = "c", services = { "s" } },
        {
            status = 200,
            headers = { ["Content-Type"] = "application/x-amz-json-1.1" },
            body = '{"services": [ {"serviceName": ',
        },
    },
    {
        "an HTML 502 page from a proxy",
        "ecs",
        "DescribeServices",
        { cluster = "c", services = { "s" } },
        { status = 502, headers = { ["Content-Type"] = "text/html" }, body = "<html><body>Bad Gateway</body></html>" },
    },
    {
        "truncated XML",
        "rds",
        "DescribeDBInstances",
        {},
        {
            status = 200,
            headers = { ["Content-Type"] = "text/xml" },
            body = "<DescribeDBInstancesResponse><DescribeDBInstancesResult><DBInstances><DBInstance>",
        },
    },
    { "an empty body", "rds", "DescribeDBInstances", {}, { status = 200, body = "" } },
    { "text where XML belongs", "route53", "GetChange", { Id = "C1" }, { status = 200, body = "not xml at all" } },
    -- rest-xml: today's danger is not a crash but an empty result ("no records").
    {
        "an HTML 200 page from a captive proxy",
        "route53",
        "ListResourceRecordSets",
        { HostedZoneId = "Z1" },
        { status = 200, headers = { ["Content-Type"] = "text/html" }, body = "<html><body>Welcome</body></html>" },
    },
    {
        "an empty 200",
        "route53",
        "ChangeResourceRecordSets",
        { HostedZoneId = "Z1", ChangeBatch = { Changes = {} } },
        { status = 200, body = "" },
    },
    {
        "a JSON array where an object belongs",
        "ecs",
        "DescribeServices",
        { cluster = "c", services = { "s" } },
        {
            status = 200,
            body = "[1,2,3]",
        },
    },
}

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
    end)
end

for _, case in ipairs(CASES) do
    local name, service, action, params, reply = table.unpack(case)
    t.case(name .. " from " .. service .. " " .. action .. " is a clear aws error", function()
        with_credentials()
        local dir = t.tmpdir()
        local file = t.write_file(dir .. "/replies.json", json.encode(json.array { reply }))
        local port = t.server { "python3", "tests/support/canned_server.py", "PORT", file }
        local err = t.raises(
            function()
                aws.call {
                    service = service,
                    action = action,
                    region = "us-east-1",
                    params = params,
                    endpoint = "http://127.0.0.1:" .. port,
                    max_attempts = 1,
                }
            end
        )
        t.ok(errors.is(err, "aws"), "an aws error object, got " .. errors.message(err))
        t.eq(err.service, service)
        t.eq(err.action, action)
        t.eq(err.region, "us-east-1")
        t.match(tostring(err), "^" .. service .. " " .. action .. " %(us%-east%-1%): ")
    end)
end
