-- The mock world's responses have the shapes the real wire backend decodes:
-- every member a member of the botocore output shape, lists as arrays,
-- numbers as numbers, XML timestamps as strings. Checked against the shape
-- tables atlas.aws ships (lua/atlas/aws/shapes), for the XML services whose
-- shapes it keeps. (The JSON services' shapes were checked once against the
-- botocore models while writing the world; the wire passes their JSON as is.)
local t = require "atlas.test"
local World = require "atlas.mock.world"

local SHAPE_MODULE = {
    route53 = "atlas.aws.shapes.route53",
    rds = "atlas.aws.shapes.rds",
    cloudwatch = "atlas.aws.shapes.cloudwatch",
    sts = "atlas.aws.shapes.sts",
    lambda = "atlas.aws.shapes.lambda",
}

local INTEGER = { integer = true, long = true }
local NUMBER = { double = true, float = true, integer = true, long = true }

local function is_array(v)
    if type(v) ~= "table" then return false end
    local n = 0
    for k in pairs(v) do
        if math.type(k) ~= "integer" or k < 1 then return false end
        n = n + 1
    end
    return n == #v
end

-- Returns a list of problems "path: what" for value against shape name.
local function check(model, shape_name, value, path, problems)
    local shape = model.shapes[shape_name]
    if shape == nil then
        problems[#problems + 1] = path .. ": shape " .. tostring(shape_name) .. " unknown"
        return
    end
    local function bad(what) problems[#problems + 1] = string.format("%s: %s (%s)", path, what, t.show(value)) end
    if type(shape) == "string" then
        if INTEGER[shape] then
            if math.type(value) ~= "integer" then bad("expected an integer") end
        elseif NUMBER[shape] then
            if type(value) ~= "number" then bad("expected a number") end
        elseif shape == "boolean" then
            if type(value) ~= "boolean" then bad("expected a boolean") end
        elseif shape == "string" or shape == "blob" or shape == "timestamp" then
            -- XML protocols send timestamps as ISO 8601 text.
            if type(value) ~= "string" then bad("expected a string") end
        end
    elseif shape.t == "structure" then
        if type(value) ~= "table" or (next(value) ~= nil and is_array(value)) then
            return bad("expected a structure")
        end
        for k, v in pairs(value) do
            local member = shape.m[k]
            if not member then
                problems[#problems + 1] = path .. ": unknown member " .. tostring(k)
            else
                check(model, member.s, v, path .. "." .. k, problems)
            end
        end
    elseif shape.t == "list" then
        if not is_array(value) then return bad("expected an array") end
        for i, v in ipairs(value) do
            check(model, shape.m, v, path .. "[" .. i .. "]", problems)
        end
    elseif shape.t == "map" then
        if type(value) ~= "table" then return bad("expected a map") end
        for k, v in pairs(value) do
            check(model, shape.v, v, path .. "[" .. tostring(k) .. "]", problems)
        end
    end
end

local function conforms(service, action, response)
    local model = require(SHAPE_MODULE[service])
    local op = model.operations[action]
    t.ok(op, service .. " " .. action .. " has no shape in atlas.aws.shapes")
    local problems = {}
    if op.output == nil then
        t.eq(response, {}, service .. " " .. action .. " has no output")
        return
    end
    check(model, op.output, response, action, problems)
    t.eq(problems, {}, service .. " " .. action)
end

t.case("the checker itself rejects a wrong shape", function()
    local model = require "atlas.aws.shapes.route53"
    local problems = {}
    check(model, "GetChangeResponse", { ChangeInfo = { Id = 1, Status = "INSYNC", Bogus = true } }, "x", problems)
    t.eq(#problems, 2)
    problems = {}
    check(
        model,
        "ListHealthChecksResponse",
        { HealthChecks = { first = {} }, Marker = "", IsTruncated = false, MaxItems = "1" },
        "x",
        problems
    )
    t.eq(#problems, 1)
end)

t.case("Route53 responses conform", function()
    local w = World.new {}
    local function call(action, params)
        local r = w:aws_invoke("route53", action, "us-east-1", params)
        conforms("route53", action, r)
        return r
    end
    local zone = call("ListHostedZonesByName", { DNSName = "atlas-crm.com" }).HostedZones[1]
    call("ListHostedZones", {})
    call("GetHostedZone", { Id = zone.Id })
    call("ListResourceRecordSets", { HostedZoneId = zone.Id, MaxItems = "3" })
    local change = call("ChangeResourceRecordSets", {
        HostedZoneId = zone.Id,
        ChangeBatch = {
            Changes = {
                {
                    Action = "UPSERT",
                    ResourceRecordSet = {
                        Name = "t.atlas-crm.com",
                        Type = "A",
                        TTL = 60,
                        ResourceRecords = { { Value = "192.0.2.1" } },
                    },
                },
            },
        },
    })
    call("GetChange", { Id = change.ChangeInfo.Id })
    local hc = call("ListHealthChecks", {}).HealthChecks[1]
    call("GetHealthCheck", { HealthCheckId = hc.Id })
    call("GetHealthCheckStatus", { HealthCheckId = hc.Id })
end)

t.case("RDS responses conform", function()
    local w = World.new {}
    local function call(action, params)
        local r = w:aws_invoke("rds", action, "eu-west-1", params)
        conforms("rds", action, r)
        return r
    end
    call("DescribeDBInstances", {})
    call("RebootDBInstance", { DBInstanceIdentifier = "atlas-production-db-eu-west-1", ForceFailover = true })
    call("PromoteReadReplica", { DBInstanceIdentifier = "atlas-production-db-eu-west-1-replica" })
    w:advance(200)
    call("CreateDBSnapshot", { DBInstanceIdentifier = "atlas-production-db-eu-west-1", DBSnapshotIdentifier = "s1" })
    call("DescribeDBSnapshots", {})
    call(
        "RestoreDBInstanceFromDBSnapshot",
        { DBInstanceIdentifier = "r1", DBSnapshotIdentifier = "atlas-production-snapshot-latest" }
    )
    call(
        "ModifyDBInstance",
        { DBInstanceIdentifier = "atlas-production-db-eu-west-1", DBInstanceClass = "db.r6g.2xlarge" }
    )
    call(
        "ModifyDBInstance",
        { DBInstanceIdentifier = "atlas-production-db-eu-west-1-replica", DeletionProtection = false }
    )
    call(
        "DeleteDBInstance",
        { DBInstanceIdentifier = "atlas-production-db-eu-west-1-replica", SkipFinalSnapshot = true }
    )
    w:advance(600)
    call("DescribeDBInstances", {})
    call("DescribeDBParameters", { DBParameterGroupName = "atlas-production-postgres15" })
    local snap =
        call("DescribeDBSnapshots", { DBSnapshotIdentifier = "atlas-production-snapshot-latest" }).DBSnapshots[1]
    local copy = w:aws_invoke("rds", "CopyDBSnapshot", "us-east-1", {
        SourceDBSnapshotIdentifier = snap.DBSnapshotArn,
        TargetDBSnapshotIdentifier = "copy1",
        KmsKeyId = "alias/aws/rds",
    })
    conforms("rds", "CopyDBSnapshot", copy)
    t.eq({ copy.DBSnapshot.Status, copy.DBSnapshot.SourceRegion }, { "copying", "eu-west-1" })
    w:advance(900)
    local copied = w:aws_invoke("rds", "DescribeDBSnapshots", "us-east-1", { DBSnapshotIdentifier = "copy1" })
    conforms("rds", "DescribeDBSnapshots", copied)
    t.eq(copied.DBSnapshots[1].Status, "available")
    -- A plain identifier names a snapshot of the destination region, as in AWS and moto.
    local err = t.raises(
        function()
            w:aws_invoke("rds", "CopyDBSnapshot", "us-east-1", {
                SourceDBSnapshotIdentifier = "atlas-production-snapshot-latest",
                TargetDBSnapshotIdentifier = "copy2",
            })
        end
    )
    t.eq(err.code, "DBSnapshotNotFound")
end)

t.case("CloudWatch, STS and Lambda responses conform", function()
    local w = World.new { scenario = "eu-west-1-outage" }
    local function call(service, action, region, params)
        local r = w:aws_invoke(service, action, region, params)
        conforms(service, action, r)
        return r
    end
    call("cloudwatch", "GetMetricStatistics", "eu-west-1", {
        Namespace = "AtlasCRM/Production",
        MetricName = "CrossRegionLatency",
        Dimensions = { { Name = "Region", Value = "eu-west-1" } },
        StartTime = w:now() - 600,
        EndTime = w:now(),
        Period = 60,
        Statistics = { "Average", "Sum", "SampleCount", "Minimum", "Maximum" },
    })
    call(
        "cloudwatch",
        "PutMetricData",
        "eu-west-1",
        { Namespace = "X", MetricData = { { MetricName = "m", Value = 1 } } }
    )
    call("cloudwatch", "DescribeAlarms", "us-east-1", { AlarmTypes = { "MetricAlarm", "CompositeAlarm" } })
    call("cloudwatch", "DescribeAlarms", "eu-west-1", {})
    call("sts", "GetCallerIdentity", "eu-west-1", {})
    call("sts", "AssumeRole", "eu-west-1", { RoleArn = "arn:aws:iam::123456789012:role/x", RoleSessionName = "s" })
    call("lambda", "Invoke", "eu-west-1", { FunctionName = "atlas-production-failover-orchestrator", LogType = "Tail" })
end)
