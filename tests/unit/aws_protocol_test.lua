-- atlas.aws.protocol: requests built per protocol, responses decoded to boto3's
-- shapes (one-member lists stay lists, numbers and booleans by the model), and
-- errors parsed for each protocol.
local t = require "atlas.test"
local json = require "atlas.json"
local protocol = require "atlas.aws.protocol"

local function ok_response(body, headers, status)
    return { status = status or 200, headers = headers or {}, body = body }
end

-- ---- decoding: table-driven ---------------------------------------------------

local decodes = {
    {
        name = "RDS DescribeDBInstances: one-member lists, Result wrapper and metadata stripped, types",
        service = "rds",
        action = "DescribeDBInstances",
        body = [[<?xml version="1.0"?>
<DescribeDBInstancesResponse xmlns="http://rds.amazonaws.com/doc/2014-10-31/">
    <DescribeDBInstancesResult>
        <DBInstances>
            <DBInstance>
                <DBInstanceIdentifier>atlas-production-db-eu-west-1</DBInstanceIdentifier>
                <DBInstanceStatus>available</DBInstanceStatus>
                <MultiAZ>true</MultiAZ>
                <AllocatedStorage>100</AllocatedStorage>
                <Endpoint><Address>db.example</Address><Port>5432</Port></Endpoint>
                <ReadReplicaDBInstanceIdentifiers>
                    <ReadReplicaDBInstanceIdentifier>atlas-production-db-eu-west-1-replica</ReadReplicaDBInstanceIdentifier>
                </ReadReplicaDBInstanceIdentifiers>
                <VpcSecurityGroups/>
                <InstanceCreateTime>2026-01-02T03:04:05.123Z</InstanceCreateTime>
            </DBInstance>
        </DBInstances>
    </DescribeDBInstancesResult>
    <ResponseMetadata><RequestId>r-1</RequestId></ResponseMetadata>
</DescribeDBInstancesResponse>]],
        expected = {
            DBInstances = {
                {
                    DBInstanceIdentifier = "atlas-production-db-eu-west-1",
                    DBInstanceStatus = "available",
                    MultiAZ = true,
                    AllocatedStorage = 100,
                    Endpoint = { Address = "db.example", Port = 5432 },
                    ReadReplicaDBInstanceIdentifiers = { "atlas-production-db-eu-west-1-replica" },
                    VpcSecurityGroups = {},
                    InstanceCreateTime = "2026-01-02T03:04:05.123Z",
                },
            },
        },
    },
    {
        name = "RDS: an empty result list is an empty list, Marker absent",
        service = "rds",
        action = "DescribeDBSnapshots",
        body = [[<DescribeDBSnapshotsResponse><DescribeDBSnapshotsResult><DBSnapshots/></DescribeDBSnapshotsResult></DescribeDBSnapshotsResponse>]],
        expected = { DBSnapshots = {} },
    },
    {
        name = "Route53 ListResourceRecordSets: geolocation records, one-member ResourceRecords, booleans",
        service = "route53",
        action = "ListResourceRecordSets",
        body = [[<?xml version="1.0" encoding="UTF-8"?>
<ListResourceRecordSetsResponse xmlns="https://route53.amazonaws.com/doc/2013-04-01/">
    <ResourceRecordSets>
        <ResourceRecordSet>
            <Name>api.atlas-crm.com.</Name><Type>CNAME</Type><SetIdentifier>eu-west-1</SetIdentifier>
            <GeoLocation><ContinentCode>EU</ContinentCode></GeoLocation><TTL>60</TTL>
            <ResourceRecords><ResourceRecord><Value>eu-west-1.atlas-crm.com</Value></ResourceRecord></ResourceRecords>
            <HealthCheckId>hc-eu</HealthCheckId>
        </ResourceRecordSet>
    </ResourceRecordSets>
    <IsTruncated>true</IsTruncated><NextRecordName>api.atlas-crm.com.</NextRecordName>
    <NextRecordType>CNAME</NextRecordType><NextRecordIdentifier>us-east-1</NextRecordIdentifier>
    <MaxItems>1</MaxItems>
</ListResourceRecordSetsResponse>]],
        expected = {
            ResourceRecordSets = {
                {
                    Name = "api.atlas-crm.com.",
                    Type = "CNAME",
                    SetIdentifier = "eu-west-1",
                    GeoLocation = { ContinentCode = "EU" },
                    TTL = 60,
                    ResourceRecords = { { Value = "eu-west-1.atlas-crm.com" } },
                    HealthCheckId = "hc-eu",
                },
            },
            IsTruncated = true,
            NextRecordName = "api.atlas-crm.com.",
            NextRecordType = "CNAME",
            -- PageMaxItems is a string in the model, so boto3 returns "1", not 1
            NextRecordIdentifier = "us-east-1",
            MaxItems = "1",
        },
    },
    {
        name = "Route53 GetChange: no wrapper, timestamp kept as the wire's string",
        service = "route53",
        action = "GetChange",
        body = [[<GetChangeResponse xmlns="https://route53.amazonaws.com/doc/2013-04-01/"><ChangeInfo><Id>/change/C1</Id><Status>PENDING</Status><SubmittedAt>2026-11-26T02:00:00.000Z</SubmittedAt></ChangeInfo></GetChangeResponse>]],
        expected = { ChangeInfo = { Id = "/change/C1", Status = "PENDING", SubmittedAt = "2026-11-26T02:00:00.000Z" } },
    },
    {
        name = "CloudWatch GetMetricStatistics: doubles, one datapoint stays a list",
        service = "cloudwatch",
        action = "GetMetricStatistics",
        body = [[<GetMetricStatisticsResponse><GetMetricStatisticsResult><Label>CrossRegionLatency</Label><Datapoints><member><Timestamp>2026-11-26T02:00:00Z</Timestamp><Average>123.5</Average><SampleCount>2.0</SampleCount><Unit>Milliseconds</Unit></member></Datapoints></GetMetricStatisticsResult></GetMetricStatisticsResponse>]],
        expected = {
            Label = "CrossRegionLatency",
            Datapoints = {
                {
                    Timestamp = "2026-11-26T02:00:00Z",
                    Average = 123.5,
                    SampleCount = 2.0,
                    Unit = "Milliseconds",
                },
            },
        },
    },
    {
        name = "STS GetCallerIdentity",
        service = "sts",
        action = "GetCallerIdentity",
        body = [[<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><GetCallerIdentityResult><Arn>arn:aws:iam::123456789012:user/ops</Arn><UserId>AIDA</UserId><Account>123456789012</Account></GetCallerIdentityResult><ResponseMetadata><RequestId>x</RequestId></ResponseMetadata></GetCallerIdentityResponse>]],
        expected = { Arn = "arn:aws:iam::123456789012:user/ops", UserId = "AIDA", Account = "123456789012" },
    },
    {
        name = "an operation without output decodes to an empty table",
        service = "cloudwatch",
        action = "PutMetricData",
        body = [[<PutMetricDataResponse><ResponseMetadata><RequestId>x</RequestId></ResponseMetadata></PutMetricDataResponse>]],
        expected = {},
    },
}

for _, case in ipairs(decodes) do
    t.case("decode: " .. case.name, function()
        local svc = protocol.service(case.service)
        local v, err = protocol.decode(svc, case.action, "eu-west-1", ok_response(case.body))
        t.eq(err, nil)
        t.eq(v, case.expected)
    end)
end

t.case("decode: lists decode as JSON arrays even when empty", function()
    local svc = protocol.service("rds")
    local v = protocol.decode(svc, "DescribeDBSnapshots", "eu-west-1", ok_response(decodes[2].body))
    t.eq(json.encode(v), '{"DBSnapshots":[]}')
end)

t.case("decode: rest-json Lambda Invoke takes status, headers and the raw payload", function()
    local svc = protocol.service("lambda")
    local v = protocol.decode(
        svc,
        "Invoke",
        "eu-west-1",
        ok_response(
            '{"ok":true}',
            { ["x-amz-function-error"] = "Unhandled", ["x-amz-executed-version"] = "$LATEST" },
            200
        )
    )
    t.eq(v, { StatusCode = 200, FunctionError = "Unhandled", ExecutedVersion = "$LATEST", Payload = '{"ok":true}' })
end)

t.case("decode: json protocol passes the document through", function()
    local svc = protocol.service("ecs")
    local v = protocol.decode(
        svc,
        "DescribeServices",
        "us-east-1",
        ok_response('{"services":[{"serviceName":"s","runningCount":2}],"failures":[]}')
    )
    t.eq(v, { services = { { serviceName = "s", runningCount = 2 } }, failures = {} })
end)

-- ---- requests -------------------------------------------------------------------

t.case("build query: nested lists use the model's member names", function()
    local r = protocol.build(
        protocol.service("rds"),
        "DescribeDBInstances",
        { DBInstanceIdentifier = "db 1", Filters = { { Name = "engine", Values = { "postgres" } } } }
    )
    t.eq(r.method, "POST")
    t.eq(
        r.body,
        "Action=DescribeDBInstances&Version=2014-10-31&DBInstanceIdentifier=db+1"
            .. "&Filters.Filter.1.Name=engine&Filters.Filter.1.Values.Value.1=postgres"
    )
end)

t.case("build query: booleans, doubles, timestamps and CloudWatch .member lists", function()
    local r = protocol.build(protocol.service("cloudwatch"), "PutMetricData", {
        Namespace = "AtlasCRM/Production",
        MetricData = {
            {
                MetricName = "CrossRegionLatency",
                Value = 123.5,
                Unit = "Milliseconds",
                Timestamp = 1764122400,
                Dimensions = { { Name = "Region", Value = "eu-west-1" } },
            },
        },
    })
    t.match(r.body, "Namespace=AtlasCRM%%2FProduction", "namespace escaped")
    t.match(r.body, "MetricData%.member%.1%.Dimensions%.member%.1%.Name=Region")
    t.match(r.body, "MetricData%.member%.1%.Value=123%.5")
    t.match(r.body, "MetricData%.member%.1%.Timestamp=2025%-11%-26T02%%3A00%%3A00Z")
    local b = protocol.build(
        protocol.service("rds"),
        "RebootDBInstance",
        { DBInstanceIdentifier = "x", ForceFailover = true }
    )
    t.match(b.body, "ForceFailover=true")
end)

t.case("build rest-xml: URI label with the /hostedzone/ prefix stripped, ordered XML body", function()
    local r = protocol.build(protocol.service("route53"), "ChangeResourceRecordSets", {
        HostedZoneId = "/hostedzone/Z123",
        ChangeBatch = {
            Changes = {
                {
                    Action = "UPSERT",
                    ResourceRecordSet = {
                        TTL = 60,
                        Type = "CNAME",
                        Name = "api.atlas-crm.com",
                        SetIdentifier = "eu-west-1",
                        GeoLocation = { ContinentCode = "EU" },
                        ResourceRecords = { { Value = "us-east-1.atlas-crm.com" } },
                        HealthCheckId = "hc & <1>",
                    },
                },
            },
            Comment = "failover",
        },
    })
    t.eq(r.method, "POST")
    t.eq(r.path, "/2013-04-01/hostedzone/Z123/rrset/")
    t.eq(
        r.body,
        '<?xml version="1.0" encoding="UTF-8"?><ChangeResourceRecordSetsRequest xmlns="https://route53.amazonaws.com/doc/2013-04-01/">'
            .. "<ChangeBatch><Comment>failover</Comment><Changes><Change><Action>UPSERT</Action><ResourceRecordSet>"
            .. "<Name>api.atlas-crm.com</Name><Type>CNAME</Type><SetIdentifier>eu-west-1</SetIdentifier>"
            .. "<GeoLocation><ContinentCode>EU</ContinentCode></GeoLocation><TTL>60</TTL>"
            .. "<ResourceRecords><ResourceRecord><Value>us-east-1.atlas-crm.com</Value></ResourceRecord></ResourceRecords>"
            .. "<HealthCheckId>hc &amp; &lt;1&gt;</HealthCheckId></ResourceRecordSet></Change></Changes></ChangeBatch>"
            .. "</ChangeResourceRecordSetsRequest>"
    )
end)

t.case("build rest-xml: querystring members, sorted; GET without body", function()
    local r = protocol.build(
        protocol.service("route53"),
        "ListResourceRecordSets",
        { HostedZoneId = "Z1", StartRecordName = "api.atlas-crm.com.", StartRecordType = "CNAME", MaxItems = 100 }
    )
    t.eq(
        { r.method, r.path, r.query, r.body },
        { "GET", "/2013-04-01/hostedzone/Z1/rrset", "maxitems=100&name=api.atlas-crm.com.&type=CNAME", "" }
    )
    t.raises(function() protocol.build(protocol.service("route53"), "GetChange", {}) end, "missing URI parameter")
end)

t.case("build rest-json: Lambda Invoke sends the payload raw and the invocation type as a header", function()
    local r = protocol.build(protocol.service("lambda"), "Invoke", {
        FunctionName = "arn:aws:lambda:eu-west-1:1:function:f",
        Payload = '{"a":1}',
        InvocationType = "Event",
        Qualifier = "live",
    })
    t.eq(r.path, "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aeu-west-1%3A1%3Afunction%3Af/invocations")
    t.eq(r.query, "Qualifier=live")
    t.eq(r.headers["X-Amz-Invocation-Type"], "Event")
    t.eq(r.body, '{"a":1}')
end)

t.case("build json: the model turns empty lists into [] and ISO timestamps into epoch seconds", function()
    local r = protocol.build(
        protocol.service("logs"),
        "FilterLogEvents",
        { logGroupName = "g", logStreamNames = {}, startTime = 1000, filterPattern = "ERROR" }
    )
    t.match(r.body, '"logStreamNames":%[%]')
    local d = protocol.build(protocol.service("ecs"), "DescribeServices", { cluster = "c", services = {} })
    t.match(d.body, '"services":%[%]')
    local u = protocol.build(
        protocol.service("ecs"),
        "UpdateService",
        { service = "s", deploymentConfiguration = { maximumPercent = 200 }, placementConstraints = {} }
    )
    t.eq(
        json.decode(u.body),
        { service = "s", deploymentConfiguration = { maximumPercent = 200 }, placementConstraints = {} }
    )
    t.match(u.body, '"placementConstraints":%[%]')
    t.eq(protocol.parse_time("2026-11-26T02:00:00.5Z"), 1795658400.5)
end)

t.case("build json: X-Amz-Target, content type per JSON version, empty params are {}", function()
    local r = protocol.build(protocol.service("ecs"), "DescribeServices", { cluster = "c", services = { "s" } })
    t.eq(r.headers["X-Amz-Target"], "AmazonEC2ContainerServiceV20141113.DescribeServices")
    t.eq(r.headers["Content-Type"], "application/x-amz-json-1.1")
    t.eq(json.decode(r.body), { cluster = "c", services = { "s" } })
    local d = protocol.build(protocol.service("dynamodb"), "ListTables", nil)
    t.eq(d.headers["Content-Type"], "application/x-amz-json-1.0")
    t.eq(d.body, "{}")
    t.eq(
        protocol.build(protocol.service("eventbridge"), "DescribeRule", { Name = "r" }).headers["X-Amz-Target"],
        "AWSEvents.DescribeRule"
    )
end)

-- ---- errors per protocol --------------------------------------------------------

local error_cases = {
    {
        name = "json: __type with a namespace",
        service = "ecs",
        action = "UpdateService",
        status = 400,
        headers = { ["x-amzn-requestid"] = "rid-1" },
        body = '{"__type":"com.amazonaws.ecs#ServiceNotFoundException","message":"Service not found"}',
        code = "ServiceNotFoundException",
        message = "Service not found",
        request_id = "rid-1",
        text = "ecs UpdateService (us-east-1): ServiceNotFoundException: Service not found",
    },
    {
        name = "json: x-amzn-errortype header wins, Message capitalised",
        service = "secretsmanager",
        action = "GetSecretValue",
        status = 400,
        headers = { ["x-amzn-errortype"] = "ResourceNotFoundException:http://internal.amazon.com/coral/" },
        body = '{"Message":"Secrets Manager can\'t find the specified secret."}',
        code = "ResourceNotFoundException",
        message = "Secrets Manager can't find the specified secret.",
    },
    {
        name = "json: throttling",
        service = "ecs",
        action = "DescribeServices",
        status = 400,
        headers = {},
        body = '{"__type":"ThrottlingException","message":"Rate exceeded"}',
        code = "ThrottlingException",
        message = "Rate exceeded",
    },
    {
        name = "query: ErrorResponse with RequestId in the body",
        service = "rds",
        action = "DescribeDBInstances",
        status = 404,
        headers = {},
        body = [[<ErrorResponse xmlns="http://rds.amazonaws.com/doc/2014-10-31/"><Error><Type>Sender</Type><Code>DBInstanceNotFound</Code><Message>DBInstance nope not found.</Message></Error><RequestId>rid-2</RequestId></ErrorResponse>]],
        code = "DBInstanceNotFound",
        message = "DBInstance nope not found.",
        request_id = "rid-2",
    },
    {
        name = "query: throttling from STS",
        service = "sts",
        action = "GetCallerIdentity",
        status = 400,
        headers = {},
        body = [[<ErrorResponse><Error><Code>Throttling</Code><Message>Rate exceeded</Message></Error></ErrorResponse>]],
        code = "Throttling",
        message = "Rate exceeded",
    },
    {
        name = "rest-xml: Route53 error",
        service = "route53",
        action = "GetChange",
        status = 404,
        headers = { ["x-amzn-requestid"] = "rid-3" },
        body = [[<?xml version="1.0"?><ErrorResponse xmlns="https://route53.amazonaws.com/doc/2013-04-01/"><Error><Type>Sender</Type><Code>NoSuchChange</Code><Message>A change with the specified change ID does not exist.</Message></Error><RequestId>rid-3</RequestId></ErrorResponse>]],
        code = "NoSuchChange",
        message = "A change with the specified change ID does not exist.",
        request_id = "rid-3",
    },
    {
        name = "rest-xml: Route53 InvalidChangeBatch names the error by its root and lists messages",
        service = "route53",
        action = "ChangeResourceRecordSets",
        status = 400,
        headers = {},
        body = [[<?xml version="1.0"?>
<InvalidChangeBatch xmlns="https://route53.amazonaws.com/doc/2013-04-01/"><Messages><Message>Tried to create resource record set [name='api.atlas-crm.com.', type='CNAME', set-identifier='eu-west-1'] but it already exists</Message><Message>second</Message></Messages><RequestId>rid-5</RequestId></InvalidChangeBatch>]],
        code = "InvalidChangeBatch",
        request_id = "rid-5",
        message = "Tried to create resource record set [name='api.atlas-crm.com.', type='CNAME', set-identifier='eu-west-1'] but it already exists; second",
    },
    {
        name = "rest-json: Lambda error type header",
        service = "lambda",
        action = "Invoke",
        status = 404,
        headers = { ["x-amzn-errortype"] = "ResourceNotFoundException", ["x-amzn-requestid"] = "rid-4" },
        body = '{"Type":"User","Message":"Function not found: arn:aws:lambda:eu-west-1:1:function:f"}',
        code = "ResourceNotFoundException",
        message = "Function not found: arn:aws:lambda:eu-west-1:1:function:f",
        request_id = "rid-4",
    },
    {
        name = "an HTML 503 from a load balancer: status as code, Retry-After kept",
        service = "ecs",
        action = "DescribeServices",
        status = 503,
        headers = { ["retry-after"] = "3" },
        body = "<html><body>Service Unavailable</body></html>",
        code = "503",
        message = "Service Unavailable",
        retry_after = 3,
    },
}

for _, case in ipairs(error_cases) do
    t.case("error: " .. case.name, function()
        local svc = protocol.service(case.service)
        local v, err = protocol.decode(
            svc,
            case.action,
            "us-east-1",
            { status = case.status, headers = case.headers, body = case.body }
        )
        t.eq(v, nil)
        t.ok(require("atlas.errors").is(err, "aws"), "an aws error object")
        t.eq(
            { err.code, err.message, err.status, err.service, err.action, err.region },
            { case.code, case.message, case.status, svc.name, case.action, "us-east-1" }
        )
        if case.request_id then t.eq(err.request_id, case.request_id) end
        if case.retry_after then t.eq(err.retry_after, case.retry_after) end
        if case.text then t.eq(tostring(err), case.text) end
    end)
end

t.case("base64 round trip", function()
    for _, s in ipairs { "", "a", "ab", "abc", "abcd", "\0\255\1binary" } do
        t.eq(protocol.base64_decode(protocol.base64_encode(s)), s)
    end
    t.eq(protocol.base64_encode("hello"), "aGVsbG8=")
end)

-- ---- the shape rules no runbook operation happens to use -------------------------

local synthetic = {
    name = "synthetic",
    protocol = "query",
    api_version = "2020-01-01",
    operations = { Op = { method = "POST", uri = "/", input = "In", output = "Out", result_wrapper = "OpResult" } },
    shapes = {
        In = {
            t = "structure",
            o = { "Flat", "Tags", "When", "Data" },
            m = {
                Flat = { s = "FlatList", n = "Item" },
                Tags = { s = "TagMap" },
                When = { s = "Time" },
                Data = { s = "Bytes" },
            },
        },
        Out = {
            t = "structure",
            o = { "Flat", "Tags", "FlatTags", "Id", "Data", "Ratio" },
            m = {
                Flat = { s = "FlatList" },
                Tags = { s = "TagMap" },
                FlatTags = { s = "FlatMap", n = "Tag" },
                Id = { s = "Str", n = "id", attr = true },
                Data = { s = "Bytes" },
                Ratio = { s = "Dbl" },
            },
        },
        FlatList = { t = "list", m = "Num", n = "Item", f = true },
        TagMap = { t = "map", k = "Str", v = "Str", kn = "Key", vn = "Value" },
        FlatMap = { t = "map", k = "Str", v = "Num", f = true },
        Num = "integer",
        Dbl = "double",
        Str = "string",
        Time = "timestamp",
        Bytes = "blob",
    },
}

t.case("decode: flattened lists, maps (wrapped and flattened), attributes, blobs", function()
    local body = [[<OpResponse><OpResult id="abc">
        <Item>1</Item><Item>2</Item>
        <Tags><entry><Key>env</Key><Value>prod</Value></entry><entry><Key>team</Key><Value>ops</Value></entry></Tags>
        <Tag><key>a</key><value>7</value></Tag>
        <Data>aGVsbG8=</Data><Ratio>0.25</Ratio>
    </OpResult></OpResponse>]]
    local v, err = protocol.decode(synthetic, "Op", "eu-west-1", ok_response(body))
    t.eq(err, nil)
    t.eq(v, {
        Id = "abc",
        Flat = { 1, 2 },
        Tags = { env = "prod", team = "ops" },
        FlatTags = { a = 7 },
        Data = "hello",
        Ratio = 0.25,
    })
end)

t.case("build query: flattened lists, maps, timestamps and blobs", function()
    local r = protocol.build(synthetic, "Op", { Flat = { 1, 2 }, Tags = { b = "2", a = "1" }, When = 0, Data = "hi" })
    t.eq(
        r.body,
        "Action=Op&Version=2020-01-01&Item.1=1&Item.2=2&Tags.entry.1.Key=a&Tags.entry.1.Value=1"
            .. "&Tags.entry.2.Key=b&Tags.entry.2.Value=2&When=1970-01-01T00%3A00%3A00Z&Data=aGk%3D"
    )
end)

-- A 200 whose document is not the operation's reply (a proxy's HTML page, an
-- empty body, another operation's answer) is an error, as it is for the JSON
-- protocol: read as an empty result, it would look like "no records" or "no
-- change" and let a playbook end in exit 0 with the world unchanged.
local wrong_replies = {
    {
        "route53",
        "ListResourceRecordSets",
        "<html><body><h1>200 OK</h1></body></html>",
        "expected <ListResourceRecordSetsResponse>, got <html>",
    },
    { "route53", "ListResourceRecordSets", "", "empty reply, expected <ListResourceRecordSetsResponse>" },
    { "route53", "ChangeResourceRecordSets", "", "empty reply, expected <ChangeResourceRecordSetsResponse>" },
    {
        "route53",
        "ChangeResourceRecordSets",
        [[<GetChangeResponse><ChangeInfo><Id>/change/C1</Id></ChangeInfo></GetChangeResponse>]],
        "expected <ChangeResourceRecordSetsResponse>, got <GetChangeResponse>",
    },
    { "route53", "GetHealthCheckStatus", "<html/>", "expected <GetHealthCheckStatusResponse>, got <html>" },
    {
        "rds",
        "DescribeDBInstances",
        "<html><body>hello</body></html>",
        "expected <DescribeDBInstancesResponse>, got <html>",
    },
    -- rest-json keeps the JSON protocol's rule: the output is an object
    -- (found by the fuzzer: a bare number came back as the response).
    { "lambda", "GetFunction", "2", "expected a JSON object, got number" },
    { "lambda", "GetFunction", "[1]", "expected a JSON object, got an array" },
    { "lambda", "GetFunction", '"x"', "expected a JSON object, got string" },
}

for _, case in ipairs(wrong_replies) do
    local service, action, body, why = table.unpack(case)
    t.case(
        string.format("decode: %s %s 200 with %q is an InvalidResponse", service, action, body:sub(1, 20)),
        function()
            local v, err = protocol.decode(protocol.service(service), action, "us-east-1", ok_response(body))
            t.eq(v, nil)
            t.ok(require("atlas.errors").is(err, "aws"), "an aws error object")
            t.eq({ err.code, err.message, err.service, err.action }, { "InvalidResponse", why, service, action })
        end
    )
end

-- JSON that does not parse is the reply's fault: an InvalidResponse with the
-- position atlas.json reports, never a raised string.
for _, case in ipairs {
    { "ecs", "DescribeServices", '{"services": [' },
    { "lambda", "GetFunction", '{"Configuration": }' },
} do
    local service, action, body = table.unpack(case)
    t.case(string.format("decode: %s %s 200 with malformed JSON is an InvalidResponse", service, action), function()
        local v, err = protocol.decode(protocol.service(service), action, "us-east-1", ok_response(body))
        t.eq(v, nil)
        t.ok(require("atlas.errors").is(err, "aws"), "an aws error object")
        t.eq(err.code, "InvalidResponse")
        t.match(err.message, "^malformed JSON: line 1 column %d+: ")
    end)
end

t.case("an empty 200 to a JSON operation that answers a document is an InvalidResponse, not {}", function()
    local ecs = protocol.service("ecs")
    local v, err = protocol.decode(ecs, "UpdateService", "us-east-1", ok_response(""))
    t.eq(v, nil)
    t.eq(err.code, "InvalidResponse")
    t.match(err.message, "empty reply, expected a JSON document")
    t.eq(protocol.decode(ecs, "UpdateService", "us-east-1", ok_response("{}")), {})
    -- An operation the shapes do not describe keeps botocore's reading.
    t.eq(protocol.decode(protocol.service("dynamodb"), "PutItem", "us-east-1", ok_response("")), {})
end)
