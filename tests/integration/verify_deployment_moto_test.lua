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
    local r = t.run({ "playbooks/verify_deployment.lua" }, { env = env })
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
    r = t.run({ "playbooks/verify_deployment.lua" }, { env = env })
    t.eq(r.code, 1)
    t.match(
        r.stderr,
        "1 mismatch%(es%) with the reference environment: eu%-west%-1: log group /ecs/atlas%-crm%-production%-eu%-west%-1 exists"
    )
end)
