-- The mock world itself: construction, virtual clock, call record, faults,
-- HTTP and process answers, scenarios, snapshot.
local t = require "atlas.test"
local World = require "atlas.mock.world"
local errors = require "atlas.errors"

local E, U, A = "eu-west-1", "us-east-1", "ap-southeast-1"

local function describe(w, region)
    return w:aws_invoke("ecs", "DescribeServices", region, {
        cluster = "atlas-crm-production-cluster-" .. region,
        services = { "atlas-crm-production-service-" .. region },
    }).services[1]
end

t.case("the world starts at a fixed realistic time and virtual time only moves on advance", function()
    local w = World.new {}
    t.eq(w:now(), World.START_TIME)
    t.eq(os.date("!%Y-%m-%d %H:%M", w:now()), "2025-11-18 09:30")
    w:advance(90)
    t.eq(w:now(), World.START_TIME + 90)
    w:advance(10)
    t.eq(w:now(), World.START_TIME + 100)
    local other = World.new { start_time = 1000 }
    t.eq(other:now(), 1000)
end)

t.case("timers fire in time order at their own instant", function()
    local w = World.new {}
    local fired = {}
    w:after(20, function(world) fired[#fired + 1] = { "b", world:now() - World.START_TIME } end)
    w:after(10, function(world)
        fired[#fired + 1] = { "a", world:now() - World.START_TIME }
        world:after(5, function(x) fired[#fired + 1] = { "c", x:now() - World.START_TIME } end)
    end)
    local cancelled = w:after(12, function() fired[#fired + 1] = { "cancelled" } end)
    cancelled.cancelled = true
    w:advance(18)
    t.eq(fired, { { "a", 10 }, { "c", 15 } })
    w:advance(100)
    t.eq(fired, { { "a", 10 }, { "c", 15 }, { "b", 20 } })
end)

t.case("every region of the reference environment is there", function()
    local w = World.new {}
    for _, region in ipairs { E, U, A } do
        local svc = describe(w, region)
        t.eq(
            { svc.serviceName, svc.desiredCount, svc.runningCount, #svc.deployments, svc.deployments[1].status },
            { "atlas-crm-production-service-" .. region, 2, 2, 1, "PRIMARY" }
        )
        local db = w:aws_invoke(
            "rds",
            "DescribeDBInstances",
            region,
            { DBInstanceIdentifier = "atlas-production-db-" .. region }
        )
        t.eq(db.DBInstances[1].DBInstanceStatus, "available")
        t.eq(db.DBInstances[1].Engine, "postgres")
        t.eq(db.DBInstances[1].DBInstanceClass, "db.r6g.xlarge")
        t.eq(db.DBInstances[1].MultiAZ, true)
    end
    t.eq(w.regions, { E, U, A })
end)

t.case("every call is recorded in order with its virtual time, failed ones too", function()
    local w = World.new {}
    describe(w, E)
    w:advance(5)
    t.raises(
        function() w:aws_invoke("ecs", "UpdateService", U, { cluster = "nope", service = "x", desiredCount = 3 }) end,
        "ClusterNotFoundException"
    )
    w:http_request { url = "https://us-east-1.atlas-crm.com/actuator/health" }
    t.eq(#w.calls, 3)
    t.eq(w.calls[1].module, "aws")
    t.eq(w.calls[1].service, "ecs")
    t.eq(w.calls[1].action, "DescribeServices")
    t.eq(w.calls[1].region, E)
    t.eq(w.calls[1].t, World.START_TIME)
    t.eq(w.calls[1].params.services, { "atlas-crm-production-service-eu-west-1" })
    t.eq(w.calls[2].t, World.START_TIME + 5)
    t.eq(w.calls[2].error, "ClusterNotFoundException")
    t.eq(w.calls[2].params.desiredCount, 3)
    t.eq(w.calls[3].module, "http")
    t.eq(w.calls[3].status, 200)
    t.eq(#w:calls_to("ecs", "UpdateService"), 1)
    t.eq(#w:calls_to("ecs"), 2)
    t.eq(#w:calls_to("route53", "GetChange"), 0)
end)

t.case("recorded params are a copy: later changes by the caller do not rewrite history", function()
    local w = World.new {}
    local params =
        { cluster = "atlas-crm-production-cluster-us-east-1", services = { "atlas-crm-production-service-us-east-1" } }
    w:aws_invoke("ecs", "DescribeServices", U, params)
    params.services[1] = "changed"
    t.eq(w.calls[1].params.services[1], "atlas-crm-production-service-us-east-1")
end)

t.case("errors are atlas error objects with the real AWS code and the call's context", function()
    local w = World.new {}
    local err = t.raises(
        function() w:aws_invoke("rds", "DescribeDBInstances", E, { DBInstanceIdentifier = "atlas-nope" }) end
    )
    t.ok(errors.is(err, "aws"))
    t.eq(
        { err.code, err.status, err.service, err.action, err.region, err.retryable },
        { "DBInstanceNotFound", 404, "rds", "DescribeDBInstances", E, false }
    )
    t.eq(tostring(err), "rds DescribeDBInstances (eu-west-1): DBInstanceNotFound: DBInstance atlas-nope not found.")
end)

t.case("an operation or a service the world does not simulate raises the protocol's unknown-operation code", function()
    local w = World.new {}
    local err = t.raises(function() w:aws_invoke("ecs", "RunTask", E, {}) end)
    t.eq(err.code, "UnknownOperationException")
    err = t.raises(function() w:aws_invoke("rds", "DescribeDBClusterSnapshots", E, {}) end)
    t.eq(err.code, "InvalidAction")
    err = t.raises(function() w:aws_invoke("s3", "ListBuckets", E, {}) end)
    t.eq(err.code, "UnknownOperationException")
    t.match(err.message, "s3")
end)

t.case("the endpoint prefix 'monitoring' names CloudWatch too", function()
    local w = World.new {}
    local r = w:aws_invoke("monitoring", "DescribeAlarms", U, { AlarmNamePrefix = "atlas-production-health-" })
    t.eq(#r.MetricAlarms, 3)
    t.eq(w.calls[1].service, "cloudwatch")
    t.eq(#w:calls_to("monitoring", "DescribeAlarms"), 1)
end)

t.case("an injected fault is consumed per matching call, then the call succeeds", function()
    local w = World.new {}
    w:inject { service = "ecs", action = "DescribeServices", region = E, code = "ThrottlingException", times = 2 }
    for _ = 1, 2 do
        local err = t.raises(function() describe(w, E) end, "ThrottlingException")
        t.eq(err.status, 400)
        t.eq(err.retryable, true)
        t.eq(err.message, "Rate exceeded")
    end
    t.eq(describe(w, E).runningCount, 2)
    -- Other regions and actions never matched it.
    w:inject { service = "ecs", action = "DescribeServices", region = E, code = "ThrottlingException", times = 1 }
    t.eq(describe(w, U).runningCount, 2)
    t.raises(function() describe(w, E) end, "ThrottlingException")
    t.eq(w.calls[1].fault, true)
    t.eq(w.calls[3].fault, nil)
end)

t.case("a fault with times=nil lasts forever; clear_faults removes it", function()
    local w = World.new {}
    w:inject { service = "rds", code = "InternalFailure" }
    for _ = 1, 5 do
        local err = t.raises(function() w:aws_invoke("rds", "DescribeDBInstances", U, {}) end, "InternalFailure")
        t.eq(err.status, 500)
        t.eq(err.retryable, true)
    end
    w:clear_faults()
    t.eq(#w:aws_invoke("rds", "DescribeDBInstances", U, {}).DBInstances, 1)
end)

t.case("faults can count per action, start after n calls, and carry status, message and retryable", function()
    local w = World.new {}
    w:inject { service = "route53", code = "Throttling", times = 1, each_action = true }
    t.raises(function() w:aws_invoke("route53", "ListHostedZones", U, {}) end, "Throttling")
    t.raises(function() w:aws_invoke("route53", "ListHealthChecks", U, {}) end, "Throttling")
    w:aws_invoke("route53", "ListHostedZones", U, {})
    w:aws_invoke("route53", "ListHealthChecks", U, {})
    w:inject {
        service = "sts",
        code = "AccessDenied",
        status = 403,
        message = "nope",
        retryable = false,
        after = 1,
        times = 1,
    }
    w:aws_invoke("sts", "GetCallerIdentity", U, {})
    local err = t.raises(function() w:aws_invoke("sts", "GetCallerIdentity", U, {}) end, "AccessDenied")
    t.eq({ err.status, err.message, err.retryable }, { 403, "nope", false })
    w:aws_invoke("sts", "GetCallerIdentity", U, {})
end)

-- The mock once kept its own list of retryable codes, and it had drifted from atlas.aws's.
t.case("an injected fault is retryable exactly when atlas.aws's classification retries it", function()
    local aws = require "atlas.aws"
    local cases = {
        { code = "ThrottlingException", retryable = true },
        { code = "IDPCommunicationError", retryable = true },
        { code = "InternalServerError", status = 400, retryable = true },
        { code = "ServerException", status = 400, retryable = false },
        { code = "ServiceUnavailableException", status = 400, retryable = false },
        { code = "AccessDeniedException", retryable = false },
        { code = "SomethingElse", status = 502, retryable = true },
    }
    for _, case in ipairs(cases) do
        local w = World.new {}
        w:inject { service = "sts", code = case.code, status = case.status, times = 1 }
        local err = t.raises(function() w:aws_invoke("sts", "GetCallerIdentity", U, {}) end, case.code)
        t.eq({ case.code, err.retryable }, { case.code, case.retryable })
        t.eq({ case.code, err.retryable }, { case.code, aws.classify(err) ~= nil })
    end
    local message = t.raises(
        function() World.new {}:inject { code = "AccessDeniedException", retryable = true } end,
        "not retryable by atlas.aws's classification"
    )
    t.match(tostring(message), "AccessDeniedException")
end)

t.case("the regional health endpoints answer 200 while the region serves", function()
    local w = World.new {}
    for _, region in ipairs { E, U, A } do
        local r = w:http_request { method = "GET", url = "https://" .. region .. ".atlas-crm.com/actuator/health" }
        t.eq(r.status, 200)
        t.eq(r.body, '{"status":"UP"}')
    end
    local err = t.raises(function() w:http_request { url = "https://mars-west-9.atlas-crm.com/actuator/health" } end)
    t.ok(errors.is(err, "http"))
    t.eq(err.code, "dns")
    w:set_endpoint(A, { mode = "unreachable" })
    err = t.raises(function() w:http_request { url = "https://ap-southeast-1.atlas-crm.com/actuator/health" } end)
    t.eq(err.code, "connect")
    t.eq(err.retryable, true)
    w:set_endpoint(A, { mode = "down", status = 502 })
    t.eq(w:http_request { url = "https://ap-southeast-1.atlas-crm.com/actuator/health" }.status, 502)
end)

t.case("an endpoint goes 503 as soon as its service has no running task", function()
    local w = World.new {}
    w:set_service(U, { running = 0 })
    w:stall_service(U)
    local r = w:http_request { url = "https://us-east-1.atlas-crm.com/actuator/health" }
    t.eq(r.status, 503)
    t.match(r.body, "503")
    w:stall_service(U, false)
    w:advance(30)
    t.eq(w:http_request { url = "https://us-east-1.atlas-crm.com/actuator/health" }.status, 200)
end)

t.case("a forced status sets the answer and the health; mode auto gives the world back", function()
    local w = World.new {}
    local route53 = require "atlas.mock.route53"
    local id = route53.health_check_of_region(w, U)
    w:set_endpoint(U, { status = 503 })
    local r = w:http_request { url = "https://us-east-1.atlas-crm.com/actuator/health" }
    t.eq({ r.status, r.body }, { 503, '{"status":"DOWN"}' })
    w:advance(90)
    t.eq(route53.health_check_healthy(w, id), false)
    w:set_endpoint(U, { mode = "auto" })
    t.eq(w:http_request { url = "https://us-east-1.atlas-crm.com/actuator/health" }.status, 200)
    w:advance(90)
    t.eq(route53.health_check_healthy(w, id), true)
    -- Backdating the change: the checks noticed long ago.
    w:set_endpoint(A, { mode = "down", changed_at = w:now() - 600 })
    t.eq(route53.health_check_healthy(w, route53.health_check_of_region(w, A)), false)
end)

t.case("proc_run answers 0 with empty output unless a rule scripts it", function()
    local w = World.new {}
    t.eq(w:proc_run { "true" }, { code = 0, stdout = "", stderr = "" })
    w:on_proc("^dig ", { stdout = "us-east-1.atlas-crm.com.\n" })
    w:on_proc(
        function(argv) return argv[1] == "psql" end,
        function(argv) return { code = 2, stderr = "no " .. argv[2] } end
    )
    t.eq(
        w:proc_run { "dig", "+short", "api.atlas-crm.com" },
        { code = 0, stdout = "us-east-1.atlas-crm.com.\n", stderr = "" }
    )
    t.eq(w:proc_run { "psql", "atlas" }, { code = 2, stdout = "", stderr = "no atlas" })
    t.eq(w.calls[2].module, "proc")
    t.eq(w.calls[2].argv, { "dig", "+short", "api.atlas-crm.com" })
    t.eq(w.calls[3].code, 2)
end)

t.case("a scenario can be a name, a file, a table or a function", function()
    t.eq(World.new { scenario = "healthy" }.scenario.description:match("healthy") ~= nil, true)
    local w = World.new { scenario = function(world) world:set_service(A, { desired = 5 }) end }
    t.eq(describe(w, A).desiredCount, 5)
    w =
        World.new { scenario = { description = "t", apply = function(world) world:set_service(A, { desired = 3 }) end } }
    t.eq(describe(w, A).desiredCount, 3)
    local dir = t.tmpdir()
    local path = dir .. "/mine.lua"
    t.write_file(
        path,
        'return { description = "mine", apply = function(w) w:set_service("us-east-1", { running = 1 }) end }'
    )
    w = World.new { scenario = path }
    t.eq(w.scenario.description, "mine")
    t.eq(describe(w, U).runningCount, 1)
    local err = t.raises(function() World.new { scenario = "no-such-scenario" } end, "unknown scenario")
    t.ok(errors.is(err, "usage"))
    t.match(err.message, "eu%-west%-1%-outage")
    t.write_file(dir .. "/bad.lua", "return 42")
    t.raises(function() World.new { scenario = dir .. "/bad.lua" } end, "must return")
end)

t.case("snapshot reads the state that matters, and it compares", function()
    local a, b = World.new {}, World.new {}
    t.eq(a:snapshot(), b:snapshot())
    local s = a:snapshot()
    t.eq(s.ecs[U], { desired = 2, running = 2, deployments = 1, status = "ACTIVE" })
    t.eq(#s.api_records, 4)
    t.eq(s.api_records[2], {
        set_identifier = "default",
        type = "CNAME",
        location = "*",
        value = "us-east-1.atlas-crm.com",
        ttl = 60,
        health_check = "us-east-1.atlas-crm.com",
    })
    t.eq(s.rds["atlas-production-db-eu-west-1"], { region = E, status = "available", role = "primary" })
    t.eq(
        s.rds["atlas-production-db-eu-west-1-replica"],
        { region = E, status = "available", role = "replica", source = "atlas-production-db-eu-west-1" }
    )
    -- Reading the snapshot is not a call of the playbook.
    t.eq(#a.calls, 0)
    b:set_service(U, { desired = 4 })
    t.ok(not pcall(t.eq, b:snapshot(), a:snapshot()), "a changed world must not compare equal")
end)

t.case("the mock aws backend answers for the current world: response or nil and the error", function()
    local runtime = require "atlas.run.runtime"
    local backend = require "atlas.aws.mock"
    local previous = runtime.world
    local w = World.new {}
    runtime.use_world(w)
    t.defer(function() runtime.use_world(previous) end)
    local r = backend.invoke { service = "sts", action = "GetCallerIdentity", region = U, params = {} }
    t.eq(r.Account, "123456789012")
    local none, err = backend.invoke {
        service = "ecs",
        action = "DescribeServices",
        region = U,
        params = { cluster = "x", services = { "y" } },
    }
    t.eq(none, nil)
    t.eq(err.code, "ClusterNotFoundException")
    w:inject { service = "sts", code = "ThrottlingException", times = 1 }
    local many = backend.invoke_many {
        { service = "sts", action = "GetCallerIdentity", region = U, params = {} },
        { service = "sts", action = "GetCallerIdentity", region = E, params = {} },
    }
    t.eq(#many, 2)
    t.ok(errors.is(many[1]) and many[1].code == "ThrottlingException")
    t.eq(many[2].Account, "123456789012")
end)

-- atlas.env holds every name of the reference environment "in one place"; the mock's
-- services once wrote many of them out again. A rename in atlas.env must reach the world.
t.case("renaming resources in atlas.env renames them in the mock world", function()
    local env = require "atlas.env"
    local saved = {}
    local function set(key, value)
        saved[key] = env[key]
        env[key] = value
    end
    t.defer(function()
        for k, v in pairs(saved) do
            env[k] = v
        end
    end)
    set("db_instance", function(region) return "crm-db-" .. region end)
    set("REPLICA", "crm-db-replica")
    set("SNAPSHOTS", { "crm-snap-1", "crm-snap-2" })
    set("DB_USER", "crm_admin")
    set("log_group", function(region) return "/ecs/crm-" .. region end)
    set("PASSWORD_SECRET", "crm-db-password")
    set("FAILOVER_LAMBDA", "crm-failover")
    set("CDN_NAME", "static.example.net")
    set("regional_name", function(region) return region .. ".example.net" end)
    local w = World.new { scenario = "eu-west-1-db-failure" }
    local ids = {}
    for _, db in ipairs(w:aws_invoke("rds", "DescribeDBInstances", E, {}).DBInstances) do
        ids[#ids + 1] = db.DBInstanceIdentifier .. " " .. db.DBInstanceStatus .. " " .. db.MasterUsername
    end
    table.sort(ids)
    t.eq(ids, { "crm-db-eu-west-1 failed crm_admin", "crm-db-replica available crm_admin" })
    local snaps = w:aws_invoke("rds", "DescribeDBSnapshots", E, {}).DBSnapshots
    t.eq({ snaps[1].DBSnapshotIdentifier, snaps[2].DBSnapshotIdentifier }, { "crm-snap-1", "crm-snap-2" })
    local groups = w:aws_invoke("logs", "DescribeLogGroups", U, { logGroupNamePrefix = "/ecs/crm-" }).logGroups
    t.eq(groups[1].logGroupName, "/ecs/crm-us-east-1")
    t.eq(w:aws_invoke("secretsmanager", "GetSecretValue", E, { SecretId = "crm-db-password" }).Name, "crm-db-password")
    t.eq(w:aws_invoke("lambda", "GetFunction", E, { FunctionName = "crm-failover" }).Configuration.FunctionName, "crm-failover")
    t.eq(w:http_request { url = "https://static.example.net/" }.status, 200)
    t.eq(w:http_request { url = "https://us-east-1.example.net/actuator/health" }.status, 200)
    t.eq(w:http_request { url = "https://eu-west-1.example.net/actuator/health" }.status, 503)
end)

-- replication_lag_of once duck-typed w.db (pcall, then a private table, then 0.4): an
-- unknown region read as a healthy lag. w.db is always there and owns the lag.
t.case("the replication lag has one owner, w.db; an unknown region is an error, not a healthy 0.4 s", function()
    local w = World.new {}
    w.db:set_lag(U, 12)
    t.eq(w:replication_lag_of(U), 12)
    w:set_replication_lag(A, 30)
    t.eq(w.db:lag(A), 30)
    t.raises(function() w:replication_lag_of("mars-west-9") end, "unknown region")
end)
