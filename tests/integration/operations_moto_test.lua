-- The monitoring and troubleshooting playbooks as an SRE runs them, against
-- the reference environment that boto3 built in moto (one seeded moto for
-- the file); boto3 then changes the world the way an incident would.
local t = require "atlas.test"

local endpoint = t.moto()
local seeded = t.spawn({ "python3", "tests/support/seed_moto.py", endpoint }, { timeout = 120 })
assert(seeded.code == 0, "seeding moto failed: " .. seeded.stderr)
local ENV = {
    AWS_ENDPOINT_URL = endpoint,
    AWS_ACCESS_KEY_ID = "testing",
    AWS_SECRET_ACCESS_KEY = "testing",
    AWS_EC2_METADATA_DISABLED = "true",
    AWS_PROFILE = false,
}

local function boto3(code)
    local r = t.spawn({
        "python3",
        "-c",
        "import boto3,sys,json\n"
            .. "def client(name, region):\n"
            .. "    return boto3.client(name, region_name=region, endpoint_url=sys.argv[1],"
            .. " aws_access_key_id='testing', aws_secret_access_key='testing')\n"
            .. code,
        endpoint,
    })
    t.eq(r.code, 0, r.stderr)
    return r.stdout
end

local function run(args) return t.run(args, { env = ENV }) end

t.case("diag_cross_region_latency reads moto's datapoints; a region pushed over 200 ms is named", function()
    local r = run { "playbooks/diag_cross_region_latency.lua" }
    t.eq(r.code, 0, r.stdout .. r.stderr)
    t.match(r.stdout, "eu%-west%-1: average 100 ms, maximum 120 ms over 1 periods of 5 min")
    t.match(r.stdout, "0 region%(s%) over 200 ms")
    boto3(
        "client('cloudwatch', 'ap-southeast-1').put_metric_data(Namespace='AtlasCRM/Production', MetricData=[{"
            .. "'MetricName': 'CrossRegionLatency', 'Dimensions': [{'Name': 'Region', 'Value': 'ap-southeast-1'}],"
            .. " 'Value': v, 'Unit': 'Milliseconds'} for v in (400.0, 500.0)])"
    )
    r = run { "playbooks/diag_cross_region_latency.lua" }
    t.eq(r.code, 0, r.stdout .. r.stderr)
    t.match(r.stdout, "ap%-southeast%-1: average 275 ms, maximum 500 ms")
    t.match(r.stdout, "1 region%(s%) over 200 ms: ap%-southeast%-1")
end)

t.case("diag_failover_not_triggering walks moto's chain and names the first broken link", function()
    local port = t.server { "python3", "tests/support/http_test_server.py", "PORT" }
    local health = "health_url=http://127.0.0.1:" .. port .. "/status?code=200&region={region}"
    local pb = "playbooks/diag_failover_not_triggering.lua"
    -- As seeded (the runbook's layout): nothing forwards the alarm to eu-west-1.
    local r = run { pb, health }
    t.eq(r.code, 5, r.stdout .. r.stderr)
    t.match(r.stderr, "first broken link: cross%-region routing")
    t.match(r.stdout, "ok      alarm: atlas%-production%-health%-eu%-west%-1 in us%-east%-1 watches")
    t.match(r.stdout, "ok      EventBridge rule: atlas%-production%-failover%-trigger in eu%-west%-1 is enabled")

    boto3(
        "ev = client('events', 'us-east-1')\n"
            .. "ev.put_rule(Name='atlas-production-health-to-eu-west-1', State='ENABLED', EventPattern=json.dumps("
            .. "{'source': ['aws.cloudwatch'], 'detail-type': ['CloudWatch Alarm State Change']}))\n"
            .. "ev.put_targets(Rule='atlas-production-health-to-eu-west-1', Targets=[{'Id': 'eu', "
            .. "'Arn': 'arn:aws:events:eu-west-1:123456789012:event-bus/default'}])\n"
    )
    -- The seed logged three ERROR lines from the Lambda a minute ago.
    r = run { pb, health }
    t.eq(r.code, 5, r.stdout .. r.stderr)
    t.match(r.stdout, "ok      cross%-region routing: rule atlas%-production%-health%-to%-eu%-west%-1 in us%-east%-1 forwards")
    t.match(r.stderr, "first broken link: Lambda errors: 3 error%(s%) in /aws/lambda/atlas%-production%-failover%-orchestrator")

    boto3(
        "client('lambda', 'eu-west-1').put_function_concurrency(FunctionName='atlas-production-failover-orchestrator',"
            .. " ReservedConcurrentExecutions=0)"
    )
    r = run { pb, health }
    t.eq(r.code, 5, r.stdout .. r.stderr)
    t.match(r.stderr, "first broken link: Lambda: atlas%-production%-failover%-orchestrator has a reserved concurrency of 0")
end)

t.case("dr_readiness against moto: ready, then blocked by an auto-scaling maximum boto3 lowered", function()
    local port = t.server { "python3", "tests/support/http_test_server.py", "PORT" }
    local health = "health_url=http://127.0.0.1:" .. port .. "/status?code=200&region={region}"
    local r = run { "playbooks/dr_readiness.lua", health }
    t.eq(r.code, 0, r.stdout .. r.stderr)
    t.match(r.stdout, "eu%-west%-1 %-> us%-east%-1: a failover could succeed now")
    t.match(r.stdout, "newest snapshot atlas%-production%-snapshot%-[%w-]+ is %d+ min old %(RPO 1.0 d%)")
    boto3(
        "client('application-autoscaling', 'us-east-1').register_scalable_target(ServiceNamespace='ecs',"
            .. " ResourceId='service/atlas-crm-production-cluster-us-east-1/atlas-crm-production-service-us-east-1',"
            .. " ScalableDimension='ecs:service:DesiredCount', MinCapacity=2, MaxCapacity=4)"
    )
    r = run { "playbooks/dr_readiness.lua", health, "regions=eu-west-1,ap-southeast-1" }
    t.eq(r.code, 5, r.stdout .. r.stderr)
    t.match(r.stderr, "a failover would fail: eu%-west%-1: backup us%-east%-1: auto%-scaling maximum 4 is below the failover's 10 tasks")
end)

t.case("logs_tail against moto: a filtered pass, then follow sees a new line and stops on Ctrl-C", function()
    local sys = require "atlas.sys"
    local r = run { "playbooks/logs_tail.lua", "region=us-east-1", "since=1h", "filter=ERROR" }
    t.eq(r.code, 0, r.stdout .. r.stderr)
    t.match(r.stdout, "app/1  us%-east%-1 event 8 ERROR")
    t.match(r.stdout, "3 event%(s%)")

    local dir = t.tmpdir()
    local out = dir .. "/out"
    local env = {}
    for k, v in pairs(ENV) do
        env[k] = v
    end
    local pid = assert(sys.spawn({
        t.binary(),
        "playbooks/logs_tail.lua",
        "region=us-east-1",
        "since=1h",
        "follow=true",
        "interval=0.5",
    }, { stdout = out, stderr = out, stdin = "/dev/null", env = env }))
    local function wait_for(text, seconds)
        local deadline = sys.monotime() + seconds
        while sys.monotime() < deadline do
            if (t.read_file(out) or ""):find(text, 1, true) then return true end
            sys.sleep(0.1)
        end
        return false
    end
    local stopped = false
    t.defer(function()
        if not stopped then
            sys.kill(pid, "KILL")
            sys.wait(pid)
        end
    end)
    t.ok(wait_for("us-east-1 event 11", 30), t.read_file(out))
    boto3(
        "import time\nclient('logs', 'us-east-1').put_log_events(logGroupName='/ecs/atlas-crm-production-us-east-1',"
            .. " logStreamName='app/1', logEvents=[{'timestamp': int(time.time() * 1000), 'message': 'new line while following'}])"
    )
    t.ok(wait_for("new line while following", 30), t.read_file(out))
    sys.kill(pid, "INT")
    local exited, code
    local deadline = sys.monotime() + 15
    repeat
        exited, code = sys.wait(pid, true)
        if not exited then sys.sleep(0.05) end
    until exited or sys.monotime() > deadline
    stopped = exited
    t.eq(code, 0, t.read_file(out))
    t.match(t.read_file(out), "stopped after 13 event%(s%)")
end)
