-- diag_health as cron runs it, against the reference environment that boto3
-- built in moto, with the regional health endpoints on loopback: healthy,
-- then with ALB 5xx written by boto3, then with endpoints that stall.
local t = require "atlas.test"
local json = require "atlas.json"

local PLAYBOOK = "playbooks/diag_health.lua"

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

local function boto3(endpoint, code)
    local r = t.spawn({
        "python3",
        "-c",
        "import boto3,sys\n"
            .. "def client(name, region):\n"
            .. "    return boto3.client(name, region_name=region, endpoint_url=sys.argv[1],"
            .. " aws_access_key_id='testing', aws_secret_access_key='testing')\n"
            .. code,
        endpoint,
    })
    t.eq(r.code, 0, r.stderr)
end

-- The duration of one step, from the JSON event stream.
local function step_duration(stdout, name)
    for line in stdout:gmatch("[^\n]+") do
        local ok, e = pcall(json.decode, line)
        if ok and type(e) == "table" and e.type == "step_end" and e.step == name then return e.duration end
    end
end

t.case("healthy moto passes; ALB 5xx over 5 % exits 5; stalled endpoints cost one timeout", function()
    local endpoint, env = seeded_moto()
    -- A threaded loopback server: the probes arrive at once.
    local port = t.server { "python3", "tests/support/http_test_server.py", "PORT" }
    local health = "health_url=http://127.0.0.1:" .. port .. "/status?code=200&region={region}"

    local r = t.run({ PLAYBOOK, health }, { env = env })
    t.eq(r.code, 0, r.stdout .. r.stderr)
    t.match(r.stdout, "0 critical, 0 warning")
    t.match(r.stdout, "us%-east%-1: ALB 5xx 0.1 %% of 6000 requests")
    t.match(r.stdout, "ap%-southeast%-1: replication lag 0.4 s")
    t.match(r.stdout, "ECS 2/2 running %(maximum 10%)")

    -- boto3 writes 420 ALB 5xx against the same 6000 requests in eu-west-1: 7 %.
    boto3(
        endpoint,
        "client('cloudwatch', 'eu-west-1').put_metric_data(Namespace='AWS/ApplicationELB', MetricData=[{"
            .. "'MetricName': 'HTTPCode_ELB_5XX_Count', 'Value': 417.0, 'Unit': 'Count', 'Dimensions': "
            .. "[{'Name': 'LoadBalancer', 'Value': 'app/atlas-crm-production-alb-eu-west-1/50dc6c495c0c9188'}]}])"
    )
    r = t.run({ PLAYBOOK, health }, { env = env })
    t.eq(r.code, 5, r.stdout .. r.stderr)
    t.match(r.stderr, "eu%-west%-1: ALB 5xx 7.0 %% of 6000 requests %(over 5 %%%)")

    -- Three endpoints that stall for 4 s, each allowed 1 s: asked at once,
    -- they cost one timeout, not three.
    local stalled = "health_url=http://127.0.0.1:" .. port .. "/delay?ms=4000&region={region}"
    r = t.run({ "--log-format", "json", PLAYBOOK, stalled, "endpoint_timeout=1" }, { env = env })
    t.eq(r.code, 5, r.stdout .. r.stderr)
    local took = step_duration(r.stdout, "health endpoints")
    t.ok(took and took >= 0.9 and took < 2, "the health endpoints step took " .. tostring(took) .. " s")
    local timeouts = 0
    for _ in r.stdout:gmatch("\"CRITICAL [%w-]+: [^\n]-Operation timed out after %d+ milliseconds") do
        timeouts = timeouts + 1
    end
    t.eq(timeouts, 3, r.stdout)
end)
