-- Every AWS helper and waiter, for real, against moto_server seeded with the
-- reference environment by boto3 (tests/support/seed_moto.py); then retries
-- recovering from throttling, 5xx and connection resets injected by a
-- loopback fault proxy (tests/support/fault_proxy.py).
local t = require "atlas.test"
local aws = require "atlas.aws"
local json = require "atlas.json"
local errors = require "atlas.errors"
local log = require "atlas.run.log"

local ecs = require "atlas.ecs"
local route53 = require "atlas.route53"
local rds = require "atlas.rds"
local cloudwatch = require "atlas.cloudwatch"
local logs = require "atlas.logs"
local secrets = require "atlas.secrets"
local sts = require "atlas.sts"
local lambda = require "atlas.lambda"
local eventbridge = require "atlas.eventbridge"

local REGIONS = { "eu-west-1", "us-east-1", "ap-southeast-1" }

local world = dofile("tests/support/moto_world.lua")(t)
local endpoint = world.endpoint

local function names(region)
    return {
        cluster = "atlas-crm-production-cluster-" .. region,
        service = "atlas-crm-production-service-" .. region,
        family = "atlas-crm-production-" .. region,
        db = "atlas-production-db-" .. region,
    }
end

-- ---- ECS ------------------------------------------------------------------------

t.case("ecs: describe the three regions at once", function()
    local reqs = {}
    for i, region in ipairs(REGIONS) do
        reqs[i] = {
            service = "ecs",
            action = "DescribeServices",
            region = region,
            params = { cluster = names(region).cluster, services = { names(region).service } },
        }
    end
    local results = aws.parallel(reqs)
    for i, region in ipairs(REGIONS) do
        t.ok(not errors.is(results[i]), tostring(results[i]))
        local s = results[i].services[1]
        t.eq(
            { s.serviceName, s.status, s.desiredCount, s.runningCount, #s.deployments },
            { names(region).service, "ACTIVE", 2, 2, 1 }
        )
        t.eq(s.taskDefinition:match("[^/]+$"), names(region).family .. ":14")
    end
end)

t.case("ecs: scale the backup region and wait until stable, with progress", function()
    local n = names("us-east-1")
    local resp = ecs.update_service { region = "us-east-1", cluster = n.cluster, service = n.service, desiredCount = 6 }
    t.eq(resp.service.desiredCount, 6)
    local events = t.capture(function()
        local stable = ecs.wait_stable {
            region = "us-east-1",
            cluster = n.cluster,
            services = { n.service },
            delay = 1,
            timeout = 10,
        }
        t.eq(stable[1].runningCount, 6)
    end)
    local progress
    for _, e in ipairs(events) do
        if e.type == "progress" then progress = e.message end
    end
    t.eq(progress, "us-east-1: 6/6 running, 1 deployment")
    ecs.update_service { region = "us-east-1", cluster = n.cluster, service = n.service, desiredCount = 2 }
end)

t.case("ecs: the stable waiter fails at once on a MISSING service", function()
    local err = t.raises(
        function()
            ecs.wait_stable {
                region = "eu-west-1",
                cluster = names("eu-west-1").cluster,
                services = { "nope" },
                delay = 1,
                timeout = 30,
            }
        end
    )
    t.eq(err.code, "WaiterFailed")
    t.match(tostring(err), "MISSING")
end)

t.case("ecs: task definitions, paginated, and the newest one", function()
    local n = names("ap-southeast-1")
    local arns = ecs.list_task_definitions { region = "ap-southeast-1", familyPrefix = n.family, maxResults = 5 }
    t.eq(#arns, 14, "three pages of at most 5")
    local td = ecs.describe_task_definition { region = "ap-southeast-1", taskDefinition = n.family }
    t.eq({ td.taskDefinition.revision, td.taskDefinition.containerDefinitions[1].name }, { 14, "app" })
end)

t.case("ecs: a missing service is a readable aws error", function()
    local err = t.raises(
        function()
            ecs.update_service {
                region = "us-east-1",
                cluster = names("us-east-1").cluster,
                service = "nope",
                desiredCount = 1,
            }
        end
    )
    t.eq({ err.kind, err.code, err.status, err.retryable }, { "aws", "ServiceNotFoundException", 400, false })
    t.match(tostring(err), "^ecs UpdateService %(us%-east%-1%): ServiceNotFoundException: ")
    t.ok(err.request_id, "request id kept")
end)

-- ---- Route53 --------------------------------------------------------------------

local function api_records(zone_id)
    local out = {}
    for _, r in ipairs(route53.list_resource_record_sets { HostedZoneId = zone_id, MaxItems = "7" }) do
        if r.Name == "api.atlas-crm.com." then out[r.SetIdentifier] = r end
    end
    return out
end

t.case("route53: zone, paginated geolocation records, failover change, INSYNC waiter, health", function()
    local zone = route53.find_zone { name = "atlas-crm.com" }
    t.eq(zone.Id, world.zone)
    -- Pages of 7 end between record names: moto omits NextRecordIdentifier (see docs/aws.md).
    local records = route53.list_resource_record_sets { HostedZoneId = zone.Id, MaxItems = "7" }
    t.eq(#records, 2 + 3 + 4, "NS, SOA, three regional CNAMEs and four api records, over two pages")
    local api = api_records(zone.Id)
    t.eq(api["eu-west-1"].GeoLocation, { ContinentCode = "EU" })
    t.eq(api["default"].GeoLocation, { CountryCode = "*" })
    t.eq(api["eu-west-1"].ResourceRecords, { { Value = "eu-west-1.atlas-crm.com" } })
    t.eq({ api["eu-west-1"].TTL, api["eu-west-1"].HealthCheckId }, { 60, world.health_checks["eu-west-1"] })

    -- disable eu-west-1: its clients go to us-east-1's endpoint
    local moved = {}
    for k, v in pairs(api["eu-west-1"]) do
        moved[k] = v
    end
    moved.ResourceRecords = { { Value = "us-east-1.atlas-crm.com" } }
    moved.HealthCheckId = world.health_checks["us-east-1"]
    local change = route53.change_resource_record_sets {
        HostedZoneId = zone.Id,
        ChangeBatch = {
            Comment = "failover eu-west-1 -> us-east-1",
            Changes = { { Action = "UPSERT", ResourceRecordSet = moved } },
        },
    }
    t.match(change.ChangeInfo.Id, "C")
    t.eq(route53.get_change { Id = change.ChangeInfo.Id }.ChangeInfo.Status, "INSYNC")
    t.eq(route53.wait_changed { Id = change.ChangeInfo.Id, delay = 1 }.Status, "INSYNC")
    local after = api_records(zone.Id)
    t.eq(after["eu-west-1"].ResourceRecords, { { Value = "us-east-1.atlas-crm.com" } })
    t.eq(after["ap-southeast-1"], api["ap-southeast-1"], "other regions unchanged")
    -- and back, exactly as before
    route53.change_resource_record_sets {
        HostedZoneId = zone.Id,
        ChangeBatch = {
            Changes = { { Action = "UPSERT", ResourceRecordSet = api["eu-west-1"] } },
        },
    }
    t.eq(api_records(zone.Id), api)

    local status = route53.get_health_check_status { HealthCheckId = world.health_checks["eu-west-1"] }
    t.ok(#status.HealthCheckObservations >= 1)
    t.match(status.HealthCheckObservations[1].StatusReport.Status, "^Success")
end)

-- ---- RDS ------------------------------------------------------------------------

t.case("rds: instances, failover reboot, snapshots, restore, promote, available waiter", function()
    local dbs = rds.describe_db_instances { region = "eu-west-1" }
    local by_id = {}
    for _, db in ipairs(dbs) do
        by_id[db.DBInstanceIdentifier] = db
    end
    local primary = by_id["atlas-production-db-eu-west-1"]
    t.eq(
        { primary.Engine, primary.MultiAZ, primary.DBInstanceClass, primary.DBName, primary.MasterUsername },
        { "postgres", true, "db.r6g.xlarge", "atlas", "atlas_admin" }
    )
    t.eq(primary.ReadReplicaDBInstanceIdentifiers, { "atlas-production-db-eu-west-1-replica" }, "one-member list")
    t.eq(type(primary.AllocatedStorage), "number")

    local rebooted = rds.reboot_db_instance {
        region = "eu-west-1",
        DBInstanceIdentifier = primary.DBInstanceIdentifier,
        force_failover = true,
    }
    t.eq(rebooted.DBInstance.DBInstanceIdentifier, primary.DBInstanceIdentifier)
    local ready = rds.wait_available {
        region = "eu-west-1",
        DBInstanceIdentifier = primary.DBInstanceIdentifier,
        delay = 1,
        timeout = 20,
    }
    t.eq(ready[1].DBInstanceStatus, "available")

    rds.create_db_snapshot {
        region = "eu-west-1",
        DBInstanceIdentifier = primary.DBInstanceIdentifier,
        DBSnapshotIdentifier = "atlas-test-before-drill",
    }
    local snaps = {}
    for _, s in ipairs(rds.describe_db_snapshots { region = "eu-west-1", SnapshotType = "manual" }) do
        snaps[s.DBSnapshotIdentifier] = s
    end
    t.ok(
        snaps["atlas-production-snapshot-latest"]
            and snaps["atlas-production-snapshot-before-migration"]
            and snaps["atlas-test-before-drill"],
        "seeded and new snapshots listed"
    )

    local restored = rds.restore_db_instance_from_db_snapshot {
        region = "eu-west-1",
        DBInstanceIdentifier = "atlas-production-db-restored",
        DBSnapshotIdentifier = "atlas-production-snapshot-latest",
        DBInstanceClass = "db.r6g.xlarge",
    }
    t.eq(restored.DBInstance.DBInstanceIdentifier, "atlas-production-db-restored")

    local promoted = rds.promote_read_replica {
        region = "eu-west-1",
        DBInstanceIdentifier = "atlas-production-db-eu-west-1-replica",
    }
    t.eq(promoted.DBInstance.DBInstanceIdentifier, "atlas-production-db-eu-west-1-replica")
    local err = t.raises(
        function() rds.describe_db_instances { region = "eu-west-1", DBInstanceIdentifier = "nope" } end
    )
    t.eq(err.code, "DBInstanceNotFound")
end)

-- ---- CloudWatch, Logs, Secrets, STS, Lambda, EventBridge ---------------------------

t.case("cloudwatch: put and read CrossRegionLatency, alarms", function()
    local now = os.time()
    cloudwatch.put_metric_data {
        region = "ap-southeast-1",
        Namespace = "AtlasCRM/Production",
        MetricData = {
            {
                MetricName = "CrossRegionLatency",
                Value = 250.0,
                Unit = "Milliseconds",
                Dimensions = { { Name = "Region", Value = "ap-southeast-1" } },
            },
        },
    }
    local stats = cloudwatch.get_metric_statistics {
        region = "ap-southeast-1",
        Namespace = "AtlasCRM/Production",
        MetricName = "CrossRegionLatency",
        Dimensions = { { Name = "Region", Value = "ap-southeast-1" } },
        StartTime = now - 3600,
        EndTime = now + 60,
        Period = 3600,
        Statistics = { "Maximum", "SampleCount" },
    }
    t.eq(#stats.Datapoints, 1)
    t.eq({ stats.Datapoints[1].Maximum, stats.Datapoints[1].SampleCount }, { 250.0, 3.0 })
    local alarms = cloudwatch.describe_alarms { region = "ap-southeast-1" }
    t.eq(#alarms, 1)
    t.eq(
        { alarms[1].AlarmName, alarms[1].Threshold, alarms[1].EvaluationPeriods },
        { "atlas-crm-ap-southeast-1-latency", 200.0, 3 }
    )
end)

t.case("logs: filter with a pattern and a limit; tail follows until told to stop", function()
    local group = "/ecs/atlas-crm-production-eu-west-1"
    local errs = logs.filter_log_events { region = "eu-west-1", logGroupName = group, filterPattern = "ERROR" }
    t.eq(#errs, 3)
    t.eq(#logs.filter_log_events { region = "eu-west-1", logGroupName = group, limit = 5 }, 5)
    local seen = {}
    local out = logs.tail {
        region = "eu-west-1",
        logGroupName = group,
        follow = true,
        interval = 0.05,
        since = 3600,
        on_event = function(e)
            seen[#seen + 1] = e.message
            return #seen < 12
        end,
    }
    t.eq(#out, 12)
    t.eq(seen[1], "eu-west-1 event 0 ERROR")
    t.eq(#logs.tail { region = "eu-west-1", logGroupName = group, since = 3600 }, 12, "no duplicates in one pass")
end)

t.case("secrets: the value is returned and redacted from every output", function()
    local v = secrets.get_secret_value { region = "eu-west-1", SecretId = "atlas-db-master-password" }
    t.eq(v.SecretString, "moto-Atl4s-password")
    t.no_match(log.redact("password=moto-Atl4s-password"), "moto%-Atl4s")
    local events = t.capture(function() log.info("connecting with %s", v.SecretString) end)
    t.no_match(events[1].message, "moto%-Atl4s")
end)

t.case("sts: caller identity and assume-role (credentials redacted)", function()
    t.eq(sts.get_caller_identity {}.Account, "123456789012")
    local r = sts.assume_role { RoleArn = "arn:aws:iam::123456789012:role/atlas-failover", RoleSessionName = "drill" }
    t.match(r.AssumedRoleUser.Arn, "assumed%-role/atlas%-failover/drill$")
    t.no_match(log.redact(r.Credentials.SecretAccessKey), r.Credentials.SecretAccessKey:gsub("%p", "%%%0"))
end)

t.case("credentials: a per-region profile assuming a role through moto's STS", function()
    local dir = t.tmpdir()
    t.write_file(dir .. "/credentials", "[ops-base]\naws_access_key_id = testing\naws_secret_access_key = testing\n")
    t.write_file(
        dir .. "/config",
        "[profile atlas-ap-southeast-1]\nrole_arn = arn:aws:iam::123456789012:role/atlas-failover\n"
            .. "source_profile = ops-base\nrole_session_name = drill\nregion = ap-southeast-1\n"
    )
    world.env.AWS_SHARED_CREDENTIALS_FILE = dir .. "/credentials"
    world.env.AWS_CONFIG_FILE = dir .. "/config"
    t.defer(function()
        world.env.AWS_SHARED_CREDENTIALS_FILE, world.env.AWS_CONFIG_FILE = nil, nil
        require("atlas.aws.credentials").reset()
    end)
    local events = t.capture(function()
        local me = sts.get_caller_identity { region = "ap-southeast-1", profile = "atlas-ap-southeast-1" }
        t.match(me.Arn, "assumed%-role/atlas%-failover/drill$")
        -- cached: a second call assumes nothing
        sts.get_caller_identity { region = "ap-southeast-1", profile = "atlas-ap-southeast-1" }
    end)
    local ops = {}
    for _, e in ipairs(events) do
        if e.type == "call" then ops[#ops + 1] = e.op end
    end
    t.eq(ops, { "sts.AssumeRole", "sts.GetCallerIdentity", "sts.GetCallerIdentity" })
end)

t.case("credentials: web identity (token file + role) through moto's STS, unsigned", function()
    local dir = t.tmpdir()
    t.write_file(dir .. "/token", "header.payload.signature")
    local saved = { world.env.AWS_ACCESS_KEY_ID, world.env.AWS_SECRET_ACCESS_KEY }
    world.env.AWS_ACCESS_KEY_ID, world.env.AWS_SECRET_ACCESS_KEY = nil, nil
    world.env.AWS_WEB_IDENTITY_TOKEN_FILE = dir .. "/token"
    world.env.AWS_ROLE_ARN = "arn:aws:iam::123456789012:role/atlas-failover"
    world.env.AWS_ROLE_SESSION_NAME = "oidc-drill"
    require("atlas.aws.credentials").reset()
    t.defer(function()
        world.env.AWS_ACCESS_KEY_ID, world.env.AWS_SECRET_ACCESS_KEY = saved[1], saved[2]
        world.env.AWS_WEB_IDENTITY_TOKEN_FILE, world.env.AWS_ROLE_ARN, world.env.AWS_ROLE_SESSION_NAME = nil, nil, nil
        require("atlas.aws.credentials").reset()
    end)
    local me = sts.get_caller_identity { region = "eu-west-1" }
    t.match(me.Arn, "assumed%-role/atlas%-failover/oidc%-drill$")
end)

t.case("lambda: invoke the failover orchestrator", function()
    local r = lambda.invoke {
        region = "eu-west-1",
        FunctionName = "atlas-production-failover-orchestrator",
        Payload = { failed_region = "eu-west-1", backup_region = "us-east-1" },
    }
    t.eq(r.StatusCode, 200)
    t.eq(json.decode(r.Payload), { failed_region = "eu-west-1", backup_region = "us-east-1" })
    -- moto's Docker-less Lambda answers Invoke for any name; GetFunction shows rest-json errors
    local err = t.raises(
        function()
            aws.call {
                service = "lambda",
                action = "GetFunction",
                region = "eu-west-1",
                params = { FunctionName = "nope" },
            }
        end
    )
    t.eq({ err.code, err.status }, { "ResourceNotFoundException", 404 })
end)

t.case("eventbridge: describe the failover trigger and list its target", function()
    local r = eventbridge.describe_rule { region = "eu-west-1", Name = "atlas-production-failover-trigger" }
    t.eq(r.State, "ENABLED")
    t.eq(require("atlas.json").decode(r.EventPattern)["detail-type"], { "CloudWatch Alarm State Change" })
    local targets = eventbridge.list_targets_by_rule { region = "eu-west-1", Rule = "atlas-production-failover-trigger" }
    t.eq(#targets, 1)
    t.match(targets[1].Arn, ":function:atlas%-production%-failover%-orchestrator$")
end)

t.case("json 1.0 (DynamoDB) and Application Auto Scaling through aws.call", function()
    t.eq(aws.call { service = "dynamodb", action = "ListTables", region = "eu-west-1" }.TableNames, {})
    local n = names("eu-west-1")
    local resource = "service/" .. n.cluster .. "/" .. n.service
    aws.call {
        service = "application-autoscaling",
        action = "RegisterScalableTarget",
        region = "eu-west-1",
        params = {
            ServiceNamespace = "ecs",
            ResourceId = resource,
            ScalableDimension = "ecs:service:DesiredCount",
            MinCapacity = 2,
            MaxCapacity = 10,
        },
    }
    local r = aws.call {
        service = "application-autoscaling",
        action = "DescribeScalableTargets",
        region = "eu-west-1",
        params = { ServiceNamespace = "ecs", ResourceIds = { resource } },
    }
    t.eq({ r.ScalableTargets[1].MinCapacity, r.ScalableTargets[1].MaxCapacity }, { 2, 10 })
    local err = t.raises(
        function()
            aws.call {
                service = "dynamodb",
                action = "DescribeTable",
                region = "eu-west-1",
                params = { TableName = "nope" },
            }
        end
    )
    t.eq(err.code, "ResourceNotFoundException")
end)

t.case("dry-run: a mutating helper is printed, not made", function()
    local runtime = require "atlas.run.runtime"
    runtime.dry_run = true
    local n = names("eu-west-1")
    local events = t.capture(
        function()
            t.eq(
                ecs.update_service { region = "eu-west-1", cluster = n.cluster, service = n.service, desiredCount = 9 },
                {}
            )
        end
    )
    runtime.dry_run = false
    t.eq(events[1].outcome, "dry-run")
    t.eq(
        ecs.describe_services { region = "eu-west-1", cluster = n.cluster, services = { n.service } }.services[1].desiredCount,
        2
    )
end)

-- ---- faults ---------------------------------------------------------------------

local function with_proxy()
    local port = t.server { "python3", "tests/support/fault_proxy.py", "PORT", endpoint }
    local proxy = "http://127.0.0.1:" .. port
    local curl = require "atlas.curl"
    local saved = aws.random
    aws.random = function() return 0.02 end -- keep the real backoff sleeps short
    aws.reset_quota()
    t.defer(function()
        aws.random = saved
        aws.reset_quota()
    end)
    local function plan(faults)
        local r = assert(curl.request {
            method = "POST",
            url = proxy .. "/__faults",
            body = json.encode { faults = json.array(faults) },
        })
        assert(r.status == 200)
    end
    local function applied()
        return json.decode(assert(curl.request { method = "GET", url = proxy .. "/__faults" }).body).log
    end
    return proxy, plan, applied
end

t.case("connections are reused across calls (keep-alive through the proxy; moto itself closes them)", function()
    local proxy = with_proxy()
    local curl = require "atlas.curl"
    local n = names("ap-southeast-1")
    local before = curl.stats()
    for _ = 1, 5 do
        ecs.describe_services {
            region = "ap-southeast-1",
            endpoint = proxy,
            cluster = n.cluster,
            services = { n.service },
        }
    end
    local after = curl.stats()
    t.eq(after.requests - before.requests, 5)
    t.ok(after.reuses - before.reuses >= 4, "at least 4 of 5 calls on a reused connection")
    t.ok(after.connects - before.connects <= 1, "at most one new connection")
end)

t.case("parallel: three slow calls take the time of one, not of three", function()
    local proxy, plan = with_proxy()
    local sys = require "atlas.sys"
    plan { "slow", "slow", "slow" }
    local reqs = {}
    for i, region in ipairs(REGIONS) do
        reqs[i] = {
            service = "ecs",
            action = "DescribeServices",
            region = region,
            endpoint = proxy,
            params = { cluster = names(region).cluster, services = { names(region).service } },
        }
    end
    local started = sys.monotime()
    local results = aws.parallel(reqs)
    local wall = sys.monotime() - started
    for i, region in ipairs(REGIONS) do
        t.eq(results[i].services[1].serviceName, names(region).service)
    end
    t.ok(wall >= 0.5, "each call waited 0.5 s")
    t.ok(wall < 1.4, string.format("wall %.2f s: the calls overlapped (sequential would be >= 1.5 s)", wall))
end)

t.case("timeouts: a per-call timeout, reads retried after one, the quota charged 10", function()
    local proxy, plan, applied = with_proxy()
    plan { "stall", "stall" }
    local n = names("eu-west-1")
    local r = ecs.describe_services {
        region = "eu-west-1",
        endpoint = proxy,
        timeout = 0.6,
        cluster = n.cluster,
        services = { n.service },
    }
    t.eq(r.services[1].serviceName, n.service)
    t.eq(#applied(), 3, "two timed out, the third answered")
    -- The proxy still forwards the timed-out update a moment later: it did reach the
    -- service, which is exactly why a mutating call is not repeated after a timeout.
    plan { "stall" }
    aws.reset_quota()
    local err = t.raises(
        function()
            ecs.update_service {
                region = "eu-west-1",
                endpoint = proxy,
                timeout = 0.6,
                cluster = n.cluster,
                service = n.service,
                desiredCount = 2,
            }
        end
    )
    t.eq({ err.code, err.timeout, err.attempts }, { "RequestTimeout", true, 1 })
    t.eq(aws.quota.available, 500, "no retry, nothing charged")
end)

t.case("faults: throttling, 5xx and a reset on reads are retried until they succeed", function()
    local proxy, plan, applied = with_proxy()
    local n = names("eu-west-1")
    plan { "throttle", "503" }
    local events = t.capture(function()
        local r = aws.call {
            service = "ecs",
            action = "DescribeServices",
            region = "eu-west-1",
            endpoint = proxy,
            params = { cluster = n.cluster, services = { n.service } },
        }
        t.eq(r.services[1].serviceName, n.service)
    end)
    local outcomes = {}
    for _, e in ipairs(events) do
        if e.type == "call" then outcomes[#outcomes + 1] = e.outcome .. ":" .. (e.code or "") end
    end
    t.eq(outcomes, { "retry:ThrottlingException", "retry:503", "ok:" })
    local last = events[#events]
    t.eq(last.type, "call")
    t.match(last.request_id, "^%w+$", "moto's request id on the successful attempt")
    t.eq(events[1].request_id, "fault-proxy")

    plan { "reset", "throttle" }
    local dbs = rds.describe_db_instances { region = "eu-west-1", endpoint = proxy, DBInstanceIdentifier = n.db }
    t.eq(dbs[1].DBInstanceIdentifier, n.db)
    t.eq(#applied(), 3, "reset, throttle (XML), then through")

    plan { "503-retry-after", "500" }
    local zone = route53.find_zone { name = "atlas-crm.com", endpoint = proxy }
    t.eq(zone.Id, world.zone)
end)

t.case("faults: a non-idempotent call is not repeated after a reset, but is after throttling", function()
    local proxy, plan, applied = with_proxy()
    local n = names("us-east-1")
    -- A mutating call takes a fresh connection, so libcurl never re-sends it on its own
    -- (tests/integration/fault_regressions_test.lua); atlas must not repeat it either.
    plan { "reset", "reset" }
    local err = t.raises(
        function()
            ecs.update_service {
                region = "us-east-1",
                endpoint = proxy,
                cluster = n.cluster,
                service = n.service,
                desiredCount = 3,
            }
        end
    )
    t.eq(err.code, "ConnectionError")
    t.match(err.retry_stopped, "not idempotent")
    t.eq(applied(), { { "reset", "POST", "AmazonEC2ContainerServiceV20141113.UpdateService" } }, "sent once, never reached moto")
    t.eq(
        ecs.describe_services { region = "us-east-1", cluster = n.cluster, services = { n.service } }.services[1].desiredCount,
        2
    )
    plan { "throttle", "throttle" }
    local r = ecs.update_service {
        region = "us-east-1",
        endpoint = proxy,
        cluster = n.cluster,
        service = n.service,
        desiredCount = 2,
    }
    t.eq(r.service.desiredCount, 2)
    t.eq(#applied(), 3)
end)

t.case("faults: retries give up after max attempts with the last error", function()
    local proxy, plan, applied = with_proxy()
    plan { "500", "502", "504", "pass" }
    local err = t.raises(function() sts.get_caller_identity { endpoint = proxy } end)
    t.eq({ err.code, err.status, err.attempts, err.retryable }, { "504", 504, 3, true })
    t.eq(#applied(), 3)
end)
