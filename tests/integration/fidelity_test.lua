-- Keeps the mock world honest: the same failover scenario, through the same
-- helpers, against moto (seeded by boto3) and against the mock world
-- (atlas.mock.world, healthy) must start from the same observable state and
-- end in the same observable state.
--
-- "Observable" is what the runbook reads: ECS service counts and task
-- definition, the CNAME records of atlas-crm.com (values, TTL, location,
-- which region's health check), the eu-west-1 instances and manual snapshots.
-- Generated ids (ARNs' random parts, health-check ids, change ids) are
-- mapped to names first; see docs/aws.md "moto notes" for what moto cannot show.
local t = require "atlas.test"
local aws = require "atlas.aws"
local runtime = require "atlas.run.runtime"

local ecs = require "atlas.ecs"
local route53 = require "atlas.route53"
local rds = require "atlas.rds"

local REGIONS = { "eu-west-1", "us-east-1", "ap-southeast-1" }

local function names(region)
    return { cluster = "atlas-crm-production-cluster-" .. region, service = "atlas-crm-production-service-" .. region }
end

local function health_check_names()
    local by_id = {}
    local resp = aws.call { service = "route53", action = "ListHealthChecks", region = "us-east-1", params = {} }
    for _, hc in ipairs(resp.HealthChecks or {}) do
        by_id[hc.Id] = hc.HealthCheckConfig.FullyQualifiedDomainName
    end
    return by_id
end

-- observe() -> the state the runbook can see, with generated ids replaced by names
local function observe()
    local state = { ecs = {}, dns = {}, rds = {}, snapshots = {}, task_definitions = {}, log_groups = {} }
    for _, region in ipairs(REGIONS) do
        local n = names(region)
        local family = "atlas-crm-production-" .. region
        local arns = ecs.list_task_definitions { region = region, familyPrefix = family }
        local td = ecs.describe_task_definition { region = region, taskDefinition = family }.taskDefinition
        state.task_definitions[region] = {
            count = #arns,
            newest = td.family .. ":" .. td.revision,
            container = td.containerDefinitions[1].name,
        }
        local groups = aws.call {
            service = "logs",
            action = "DescribeLogGroups",
            region = region,
            params = { logGroupNamePrefix = "/" },
        }
        for _, g in ipairs(groups.logGroups or {}) do
            state.log_groups[region .. " " .. g.logGroupName] = true
        end
        local s = ecs.describe_services { region = region, cluster = n.cluster, services = { n.service } }.services[1]
        state.ecs[region] = {
            status = s.status,
            desiredCount = s.desiredCount,
            runningCount = s.runningCount,
            deployments = #s.deployments,
            taskDefinition = s.taskDefinition:match("[^/]+$"),
        }
    end
    local zone = route53.find_zone { name = "atlas-crm.com" }
    local checks = health_check_names()
    for _, r in ipairs(route53.list_resource_record_sets { HostedZoneId = zone.Id }) do
        if r.Type == "CNAME" then
            local values = {}
            for i, rr in ipairs(r.ResourceRecords or {}) do
                values[i] = rr.Value
            end
            table.sort(values)
            -- AWS returns names with the final dot; so must both worlds.
            state.dns[r.Name .. (r.SetIdentifier and ("/" .. r.SetIdentifier) or "")] = {
                TTL = r.TTL,
                values = values,
                GeoLocation = r.GeoLocation,
                health_check = r.HealthCheckId and (checks[r.HealthCheckId] or ("unknown " .. r.HealthCheckId)),
            }
        end
    end
    for _, db in ipairs(rds.describe_db_instances { region = "eu-west-1" }) do
        state.rds[db.DBInstanceIdentifier] = {
            status = db.DBInstanceStatus,
            Engine = db.Engine,
            MultiAZ = db.MultiAZ,
            DBInstanceClass = db.DBInstanceClass,
            DBName = db.DBName,
            MasterUsername = db.MasterUsername,
            replica_of = db.ReadReplicaSourceDBInstanceIdentifier,
            replicas = db.ReadReplicaDBInstanceIdentifiers,
        }
    end
    local secret =
        require("atlas.secrets").get_secret_value { region = "eu-west-1", SecretId = "atlas-db-master-password" }
    state.secret = { Name = secret.Name, stages = secret.VersionStages, has_string = secret.SecretString ~= nil }
    local eventbridge = require "atlas.eventbridge"
    local rule = eventbridge.describe_rule { region = "eu-west-1", Name = "atlas-production-failover-trigger" }
    local pattern = require("atlas.json").decode(rule.EventPattern)
    state.rule = {
        State = rule.State,
        EventBusName = rule.EventBusName,
        matches = { pattern.source, pattern["detail-type"], pattern.detail.state.value },
        targets = {},
    }
    for _, target in ipairs(eventbridge.list_targets_by_rule { region = "eu-west-1", Rule = rule.Name }) do
        state.rule.targets[#state.rule.targets + 1] = target.Arn
    end
    for _, snap in ipairs(rds.describe_db_snapshots { region = "eu-west-1", SnapshotType = "manual" }) do
        state.snapshots[snap.DBSnapshotIdentifier] = {
            DBInstanceIdentifier = snap.DBInstanceIdentifier,
            Status = snap.Status,
        }
    end
    return state
end

-- The runbook's failover of eu-west-1 to us-east-1, through the helpers.
local function failover()
    local n = names("us-east-1")
    ecs.update_service { region = "us-east-1", cluster = n.cluster, service = n.service, desiredCount = 6 }
    ecs.wait_stable { region = "us-east-1", cluster = n.cluster, services = { n.service }, delay = 1, timeout = 600 }
    local zone = route53.find_zone { name = "atlas-crm.com" }
    local checks = health_check_names()
    local us_check
    for id, fqdn in pairs(checks) do
        if fqdn == "us-east-1.atlas-crm.com" then us_check = id end
    end
    local changes = {}
    for _, r in
        ipairs(route53.list_resource_record_sets { HostedZoneId = zone.Id, StartRecordName = "api.atlas-crm.com" })
    do
        if
            r.Name == "api.atlas-crm.com."
            and r.Type == "CNAME"
            and r.ResourceRecords[1].Value == "eu-west-1.atlas-crm.com"
        then
            local moved = {}
            for k, v in pairs(r) do
                moved[k] = v
            end
            moved.ResourceRecords = { { Value = "us-east-1.atlas-crm.com" } }
            moved.HealthCheckId = us_check
            changes[#changes + 1] = { Action = "UPSERT", ResourceRecordSet = moved }
        end
    end
    assert(#changes == 1, "exactly one record served eu-west-1")
    local change = route53.change_resource_record_sets {
        HostedZoneId = zone.Id,
        ChangeBatch = { Comment = "disable eu-west-1", Changes = changes },
    }
    route53.wait_changed { Id = change.ChangeInfo.Id, delay = 1, timeout = 600 }
    rds.create_db_snapshot {
        region = "eu-west-1",
        DBInstanceIdentifier = "atlas-production-db-eu-west-1",
        DBSnapshotIdentifier = "atlas-production-snapshot-failover",
    }
    -- moto's snapshot is available at once, AWS's (and the mock's) after a while: the generic waiter
    aws.wait {
        name = "snapshot atlas-production-snapshot-failover available",
        delay = 1,
        timeout = 3600,
        poll = function()
            return rds.describe_db_snapshots {
                region = "eu-west-1",
                DBSnapshotIdentifier = "atlas-production-snapshot-failover",
            }
        end,
        acceptors = {
            { state = "success", matcher = function(s) return s[1] and s[1].Status == "available" end },
            { state = "failure", matcher = function(s) return s[1] and s[1].Status == "failed" end },
        },
    }
    rds.wait_available {
        region = "eu-west-1",
        DBInstanceIdentifier = "atlas-production-db-eu-west-1",
        delay = 1,
        timeout = 600,
    }
end

-- The read calls of the runbook, made raw so their responses can be checked
-- against the botocore output shapes (tests/support/validate_shapes.py).
local READS = {
    {
        "ecs",
        "DescribeServices",
        "us-east-1",
        {
            cluster = "atlas-crm-production-cluster-us-east-1",
            services = { "atlas-crm-production-service-us-east-1" },
        },
    },
    { "ecs", "ListTaskDefinitions", "us-east-1", { familyPrefix = "atlas-crm-production-us-east-1" } },
    { "ecs", "DescribeTaskDefinition", "us-east-1", { taskDefinition = "atlas-crm-production-us-east-1" } },
    { "route53", "ListHostedZonesByName", "us-east-1", { DNSName = "atlas-crm.com" } },
    { "route53", "ListHealthChecks", "us-east-1", {} },
    { "rds", "DescribeDBInstances", "eu-west-1", {} },
    { "rds", "DescribeDBSnapshots", "eu-west-1", { DBInstanceIdentifier = "atlas-production-db-eu-west-1" } },
    { "cloudwatch", "DescribeAlarms", "eu-west-1", {} },
    {
        "cloudwatch",
        "GetMetricStatistics",
        "eu-west-1",
        function()
            return {
                Namespace = "AtlasCRM/Production",
                MetricName = "CrossRegionLatency",
                Dimensions = { { Name = "Region", Value = "eu-west-1" } },
                StartTime = runtime.now() - 3600,
                EndTime = runtime.now() + 60,
                Period = 3600,
                Statistics = { "Average", "Maximum" },
            }
        end,
    },
    { "logs", "FilterLogEvents", "eu-west-1", { logGroupName = "/ecs/atlas-crm-production-eu-west-1", limit = 5 } },
    { "secretsmanager", "GetSecretValue", "eu-west-1", { SecretId = "atlas-db-master-password" } },
    { "sts", "GetCallerIdentity", "us-east-1", {} },
    { "events", "DescribeRule", "eu-west-1", { Name = "atlas-production-failover-trigger" } },
    { "events", "ListTargetsByRule", "eu-west-1", { Rule = "atlas-production-failover-trigger" } },
    { "cloudwatch", "ListMetrics", "us-east-1", { Namespace = "AWS/ApplicationELB", MetricName = "RequestCount" } },
    { "cloudwatch", "DescribeAlarms", "us-east-1", { AlarmNamePrefix = "atlas-production-health-" } },
    {
        "application-autoscaling",
        "DescribeScalableTargets",
        "us-east-1",
        {
            ServiceNamespace = "ecs",
            ResourceIds = { "service/atlas-crm-production-cluster-us-east-1/atlas-crm-production-service-us-east-1" },
        },
    },
    { "lambda", "Invoke", "eu-west-1", { FunctionName = "atlas-production-failover-orchestrator", Payload = "{}" } },
}

-- Calls that must fail the same way in both worlds: {code, status} are compared.
local FAILS = {
    { "ecs", "UpdateService", "us-east-1", { cluster = "atlas-crm-production-cluster-us-east-1", service = "nope" } },
    { "ecs", "DescribeServices", "us-east-1", { cluster = "nope", services = { "x" } } },
    { "rds", "DescribeDBInstances", "eu-west-1", { DBInstanceIdentifier = "nope" } },
    { "rds", "DescribeDBSnapshots", "eu-west-1", { DBSnapshotIdentifier = "nope" } },
    { "secretsmanager", "GetSecretValue", "eu-west-1", { SecretId = "nope" } },
    { "events", "DescribeRule", "eu-west-1", { Name = "nope" } },
    { "route53", "ListResourceRecordSets", "us-east-1", { HostedZoneId = "ZNOPE" } },
}

-- Where moto's HTTP status is not AWS's (docs/aws.md, moto notes), AWS's is what the mock must give.
local MOTO_STATUS_FIX = { ["secretsmanager GetSecretValue 404"] = 400 }

local function fail_all(out, is_moto)
    for _, f in ipairs(FAILS) do
        local ok, err = pcall(aws.call, { service = f[1], action = f[2], region = f[3], params = f[4] })
        local status = not ok and err.status
        if is_moto then status = MOTO_STATUS_FIX[f[1] .. " " .. f[2] .. " " .. tostring(status)] or status end
        out[#out + 1] = ok and "no error" or string.format("%s %s: %s %s", f[1], f[2], err.code, tostring(status))
    end
    return out
end

local function read_all(label, out)
    for _, r in ipairs(READS) do
        local params = type(r[4]) == "function" and r[4]() or r[4]
        local resp = aws.call { service = r[1], action = r[2], region = r[3], params = params }
        out[#out + 1] = { label = label, service = r[1], action = r[2], response = resp }
    end
end

-- Both runs happen in the file body: the case below compares them.
local moto_before, moto_after, mock_before, mock_after
local responses = {}
local moto_failures, mock_failures = {}, {}

t.case("run the scenario against moto", function()
    dofile("tests/support/moto_world.lua")(t)
    read_all("moto", responses)
    fail_all(moto_failures, true)
    moto_before = observe()
    failover()
    moto_after = observe()
end)

t.case("run the scenario against the mock world", function()
    local World = require "atlas.mock.world"
    runtime.use_world(World.new { scenario = "healthy" })
    t.defer(function() runtime.use_real() end)
    read_all("mock", responses)
    fail_all(mock_failures)
    mock_before = observe()
    failover()
    mock_after = observe()
end)

t.case("moto and the mock world start in the same state", function()
    t.ok(moto_before and mock_before, "both runs completed")
    t.eq(mock_before, moto_before)
    -- and the comparison is not vacuous
    t.eq(moto_before.task_definitions["us-east-1"].count, 14)
    t.ok(moto_before.log_groups["eu-west-1 /aws/lambda/atlas-production-failover-orchestrator"])
    t.ok(moto_before.log_groups["ap-southeast-1 /ecs/atlas-crm-production-ap-southeast-1"])
    t.eq(moto_before.rule.matches[2], { "CloudWatch Alarm State Change" })
    t.eq(#moto_before.rule.targets, 1)
    t.eq(moto_before.dns["api.atlas-crm.com./default"].GeoLocation, { CountryCode = "*" })
end)

t.case("moto and the mock world end in the same state", function()
    t.ok(moto_after and mock_after, "both runs completed")
    t.eq(mock_after, moto_after)
    t.eq(moto_after.dns["api.atlas-crm.com./eu-west-1"].values, { "us-east-1.atlas-crm.com" })
    t.eq(moto_after.ecs["us-east-1"].runningCount, 6)
end)

t.case("every response, from moto through atlas and from the mock, fits the botocore output shape", function()
    t.eq(#responses, 2 * #READS)
    local path = t.tmpdir() .. "/responses.json"
    t.write_file(path, require("atlas.json").encode(responses))
    local r = t.spawn({ "python3", "tests/support/validate_shapes.py", path }, { timeout = 60 })
    t.eq(r.code, 0, r.stderr)
    t.eq(require("atlas.json").decode(r.stdout), {})
end)

t.case("the shape check itself catches unknown members and wrong scalar types", function()
    local path = t.tmpdir() .. "/bad.json"
    t.write_file(
        path,
        require("atlas.json").encode {
            {
                label = "bad",
                service = "rds",
                action = "DescribeDBInstances",
                response = { DBInstances = { { MultiAZ = "true", AllocatedStorage = 20, Bogus = 1 } } },
            },
        }
    )
    local r = t.spawn({ "python3", "tests/support/validate_shapes.py", path }, { timeout = 60 })
    local problems = require("atlas.json").decode(r.stdout)
    table.sort(problems)
    t.eq(problems, {
        "bad rds DescribeDBInstances.DBInstances[0].Bogus: not a member of DBInstance",
        "bad rds DescribeDBInstances.DBInstances[0].MultiAZ: Boolean is a boolean, got str 'true'",
    })
end)

t.case("the same failing calls fail with the same codes and statuses", function()
    t.eq(#moto_failures, #FAILS)
    t.eq(mock_failures, moto_failures)
end)
