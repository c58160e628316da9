-- The shipped failover and recovery playbooks, as an SRE runs them, against
-- the reference environment that boto3 built in moto; boto3 then checks
-- the result independently.
local t = require "atlas.test"
local json = require "atlas.json"

local function boto3_view(endpoint)
    local r = t.spawn({ "python3", "tests/support/api_records.py", endpoint }, { timeout = 60 })
    t.eq(r.code, 0, r.stderr)
    return json.decode(r.stdout)
end

local function by_id(records)
    local out = {}
    for _, r in ipairs(records) do
        out[r.id] = r
    end
    return out
end

-- moto seeded with the reference environment, health endpoints on loopback,
-- and the environment a run sees -> endpoint, env, health parameter
local function seeded_world()
    local endpoint = t.moto()
    local seeded = t.spawn({ "python3", "tests/support/seed_moto.py", endpoint }, { timeout = 120 })
    t.eq(seeded.code, 0, seeded.stderr)
    -- The regional health endpoints, on loopback: every region answers 200.
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
    return endpoint, env, health, dir
end

t.case("dr_region_outage then dr_region_recovery against moto, checked by boto3", function()
    local endpoint, env, health = seeded_world()
    local before = boto3_view(endpoint)

    -- moto's health checks always pass, so the region looks healthy: a planned drill.
    local report = env.ATLAS_STATE_DIR .. "/drill.json"
    local r = t.run(
        { "--yes", "--rto", "1h", "--report", report, "playbooks/dr_region_outage.lua", "force=true", "desired_count=6", health },
        { env = env }
    )
    t.eq(r.code, 0, r.stdout .. r.stderr)
    -- The drill's report names the real world it ran in (STS's account) and
    -- the parts of the recovery the engine cannot see, read from Route53.
    local drill = json.decode(t.read_file(report))
    t.eq(drill.world, { kind = "real", account = "123456789012", region = "eu-west-1", endpoint = endpoint })
    t.eq(drill.verdict, "pass")
    t.eq(drill.rto_seconds, 3600)
    t.eq(drill.recovery_parts[1].name, "Route53 detection")
    t.eq(drill.recovery_parts[1].seconds, 90)
    t.eq(drill.recovery_parts[2].name, "DNS TTL")
    t.eq(drill.recovery_parts[2].seconds, 60)
    t.eq(drill.recovery_seconds, drill.recovery_measured + 150)
    t.eq(drill.changes[1].before, 2)
    t.eq(drill.changes[1].after, 6)
    local after = boto3_view(endpoint)
    local old, new = by_id(before.records), by_id(after.records)
    t.eq(new["eu-west-1"].value, "us-east-1.atlas-crm.com")
    t.eq(new["eu-west-1"].health_check, "us-east-1.atlas-crm.com")
    t.eq(new["eu-west-1"].location, old["eu-west-1"].location)
    t.eq(new["eu-west-1"].ttl, old["eu-west-1"].ttl)
    for _, id in ipairs({ "us-east-1", "ap-southeast-1", "default" }) do
        t.eq(new[id], old[id], "record " .. id .. " unchanged")
    end
    t.eq(after.ecs["us-east-1"], { desired = 6, running = 6 })
    t.eq(after.ecs["eu-west-1"], before.ecs["eu-west-1"])

    r = t.run({ "--yes", "playbooks/dr_region_recovery.lua", health }, { env = env })
    t.eq(r.code, 0, r.stdout .. r.stderr)
    local recovered = boto3_view(endpoint)
    t.eq(recovered.records, before.records, "the records are back exactly as they were")
    t.eq(recovered.ecs["us-east-1"], { desired = 2, running = 2 })
end)

t.case(
    "against moto: a record changed since the failover is not restored; from_layout rebuilds lost records",
    function()
        local endpoint, env, health, dir = seeded_world()
        local before = boto3_view(endpoint)
        local r = t.run(
            { "--yes", "playbooks/dr_region_outage.lua", "force=true", "desired_count=4", health },
            { env = env }
        )
        t.eq(r.code, 0, r.stdout .. r.stderr)
        -- Someone changes the moved record by hand.
        local edit = t.spawn(
            { "python3", "tests/support/set_record_ttl.py", endpoint, "eu-west-1", "300" },
            { timeout = 60 }
        )
        t.eq(edit.code, 0, edit.stderr)
        local edited = boto3_view(endpoint)
        r = t.run({ "--yes", "playbooks/dr_region_recovery.lua", health }, { env = env })
        t.eq(r.code, 1, r.stdout .. r.stderr)
        t.match(
            r.stdout .. r.stderr,
            "its records changed since the failover: api%.atlas%-crm%.com %[eu%-west%-1%]: TTL 300 %(expected 60%)"
        )
        t.eq(boto3_view(endpoint), edited, "nothing changed")

        -- The saved records are lost: recovery says so, and from_layout=true rebuilds them.
        os.execute("rm -rf '" .. dir .. "/dns'")
        r = t.run({ "--yes", "playbooks/dr_region_recovery.lua", health }, { env = env })
        t.eq(r.code, 1, r.stdout .. r.stderr)
        t.match(r.stdout .. r.stderr, "no saved records for eu%-west%-1")
        r = t.run({ "--yes", "playbooks/dr_region_recovery.lua", "from_layout=true", health }, { env = env })
        t.eq(r.code, 0, r.stdout .. r.stderr)
        t.match(r.stdout, "will restore api%.atlas%-crm%.com %[eu%-west%-1%] %-> eu%-west%-1%.atlas%-crm%.com, TTL 60")
        local recovered = boto3_view(endpoint)
        t.eq(recovered.records, before.records, "the records are as the reference layout has them")
        t.eq(recovered.ecs["us-east-1"], { desired = 2, running = 2 })
    end
)
