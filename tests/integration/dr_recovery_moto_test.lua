-- dr_region_recovery's first runbook steps against moto: the region's recent
-- errors, then the deployment of a given revision, after a failover; boto3
-- checks the end state independently.
local t = require "atlas.test"
local json = require "atlas.json"

-- What boto3 sees: the records, each region's counts and the revision it deploys.
local VIEW = [[
import json, subprocess, sys
import boto3
endpoint = sys.argv[1]
view = json.loads(subprocess.check_output([sys.executable, "tests/support/api_records.py", endpoint]))
kw = dict(endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing")
for region in view["ecs"]:
    s = boto3.client("ecs", region_name=region, **kw).describe_services(
        cluster="atlas-crm-production-cluster-" + region, services=["atlas-crm-production-service-" + region])["services"][0]
    view["ecs"][region]["revision"] = int(s["taskDefinition"].rsplit(":", 1)[1])
print(json.dumps(view))
]]

local function boto3_view(endpoint)
    local r = t.spawn({ "python3", "-c", VIEW, endpoint }, { timeout = 60 })
    t.eq(r.code, 0, r.stderr)
    return json.decode(r.stdout)
end

t.case("failover, then recovery with revision=13 against moto: errors shown, revision deployed, records restored", function()
    local endpoint = t.moto()
    local seeded = t.spawn({ "python3", "tests/support/seed_moto.py", endpoint }, { timeout = 120 })
    t.eq(seeded.code, 0, seeded.stderr)
    local dir = t.tmpdir()
    local replies = t.write_file(dir .. "/ok.json", '[{"status": 200, "body": "{\\"status\\":\\"UP\\"}"}]')
    local port = t.server { "python3", "tests/support/canned_server.py", "PORT", replies }
    local env = {
        AWS_ENDPOINT_URL = endpoint,
        AWS_ACCESS_KEY_ID = "testing",
        AWS_SECRET_ACCESS_KEY = "testing",
        AWS_EC2_METADATA_DISABLED = "true",
        AWS_PROFILE = false,
        ATLAS_STATE_DIR = dir,
    }
    local health = "health_url=http://127.0.0.1:" .. port .. "/{region}/actuator/health"
    local before = boto3_view(endpoint)
    t.eq(before.ecs["eu-west-1"].revision, 14)

    local r = t.run({ "--yes", "playbooks/dr_region_outage.lua", "force=true", "desired_count=6", health }, { env = env })
    t.eq(r.code, 0, r.stdout .. r.stderr)

    -- A revision moto never registered: exit 1 before anything changes.
    r = t.run({ "--yes", "playbooks/dr_region_recovery.lua", "revision=99", health }, { env = env })
    t.eq(r.code, 1, r.stdout .. r.stderr)
    t.match(
        r.stdout .. r.stderr,
        "atlas%-crm%-production%-eu%-west%-1:99 is not an active revision %(ecs ListTaskDefinitions %(eu%-west%-1%): active revisions 1 to 14%)"
    )
    t.eq(boto3_view(endpoint).ecs["us-east-1"].desired, 6, "nothing changed")

    r = t.run({ "--yes", "playbooks/dr_region_recovery.lua", "revision=13", health }, { env = env })
    t.eq(r.code, 0, r.stdout .. r.stderr)
    -- The seed logged three ERROR lines in eu-west-1 a minute ago.
    t.match(r.stdout, "eu%-west%-1 /ecs/atlas%-crm%-production%-eu%-west%-1: 3 errors in the last 1h")
    t.match(r.stdout, "eu%-west%-1 event 8 ERROR")
    t.match(r.stdout, "Deploy atlas%-crm%-production%-eu%-west%-1:13 to eu%-west%-1")
    local recovered = boto3_view(endpoint)
    t.eq(recovered.records, before.records, "the records are back exactly as they were")
    t.eq(recovered.ecs["us-east-1"], { desired = 2, running = 2, revision = 14 })
    t.eq(recovered.ecs["eu-west-1"].revision, 13)
end)
