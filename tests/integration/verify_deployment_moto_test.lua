-- verify_deployment against an environment that boto3 built in moto: the
-- playbook's idea of the reference layout matches an independent client's,
-- and a drift made by boto3 is reported.
local t = require "atlas.test"

local function seeded_moto()
    local endpoint = t.moto()
    local seeded = t.spawn({ "python3", "tests/support/seed_moto.py", endpoint }, { timeout = 120 })
    t.eq(seeded.code, 0, seeded.stderr)
    return endpoint,
        {
            AWS_ENDPOINT_URL = endpoint,
            AWS_ACCESS_KEY_ID = "testing",
            AWS_SECRET_ACCESS_KEY = "testing",
            AWS_EC2_METADATA_DISABLED = "true",
            AWS_PROFILE = false,
        }
end

t.case("the seeded reference environment verifies with no mismatch; a drift is reported", function()
    local endpoint, env = seeded_moto()
    -- The regional health endpoints, on a threaded loopback server.
    local port = t.server { "python3", "tests/support/http_test_server.py", "PORT" }
    local health = "health_url=http://127.0.0.1:" .. port .. "/status?code=200&region={region}"
    local r = t.run({ "playbooks/verify_deployment.lua", health }, { env = env })
    t.eq(r.code, 0, r.stdout .. r.stderr)
    t.match(r.stdout, "%d+ checks passed, 0 mismatches")

    -- Drift, made by boto3: the EU log group is deleted.
    local drift = t.spawn({
        "python3",
        "-c",
        "import boto3,sys; boto3.client('logs', region_name='eu-west-1', endpoint_url=sys.argv[1], "
            .. "aws_access_key_id='testing', aws_secret_access_key='testing')"
            .. ".delete_log_group(logGroupName='/ecs/atlas-crm-production-eu-west-1')",
        endpoint,
    })
    t.eq(drift.code, 0, drift.stderr)
    r = t.run({ "playbooks/verify_deployment.lua", health }, { env = env })
    t.eq(r.code, 1)
    t.match(
        r.stderr,
        "1 mismatch%(es%) with the reference environment: eu%-west%-1: log group /ecs/atlas%-crm%-production%-eu%-west%-1 exists"
    )
end)

t.case("a service that exists but runs 0 of 2 tasks fails; so does an endpoint that answers 503", function()
    local endpoint, env = seeded_moto()
    local port = t.server { "python3", "tests/support/http_test_server.py", "PORT" }
    -- moto starts a new service with no running task: boto3 recreates us-east-1's.
    local drift = t.spawn({
        "python3",
        "-c",
        "import boto3,sys; ecs = boto3.client('ecs', region_name='us-east-1', endpoint_url=sys.argv[1], "
            .. "aws_access_key_id='testing', aws_secret_access_key='testing'); "
            .. "c, s = 'atlas-crm-production-cluster-us-east-1', 'atlas-crm-production-service-us-east-1'; "
            .. "ecs.delete_service(cluster=c, service=s, force=True); "
            .. "ecs.create_service(cluster=c, serviceName=s, taskDefinition='atlas-crm-production-us-east-1:14', desiredCount=2); "
            .. "print(ecs.describe_services(cluster=c, services=[s])['services'][0]['runningCount'])",
        endpoint,
    })
    t.eq(drift.code, 0, drift.stderr)
    t.eq(drift.stdout, "0\n")
    local health = "health_url=http://127.0.0.1:" .. port .. "/status?code=200&region={region}"
    local r = t.run({ "playbooks/verify_deployment.lua", "regions=us-east-1", health }, { env = env })
    t.eq(r.code, 1, r.stdout .. r.stderr)
    t.match(r.stderr, "us%-east%-1: tasks running as desired %(0 of 2 running%)")
    local down = "health_url=http://127.0.0.1:" .. port .. "/status?code=503&region={region}"
    r = t.run({ "playbooks/verify_deployment.lua", "regions=eu-west-1", down }, { env = env })
    t.eq(r.code, 1, r.stdout .. r.stderr)
    t.match(r.stderr, "1 mismatch%(es%) with the reference environment: eu%-west%-1: http://127.0.0.1:%d+/status%?code=503&region=eu%-west%-1 answers 2xx %(503%)")
end)
