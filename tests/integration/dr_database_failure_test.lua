-- dr_database_failure (and db_publication_setup's parameter-group check)
-- against real peers: moto (seeded by boto3) plays RDS,
-- PostgreSQL 15 plays the databases. A primary, a physical standby of it
-- (pg_basebackup) and two logical subscribers; the primary's last rows reach
-- the standby but not the subscribers, the primary dies, the standby is
-- promoted, and the playbook's replication steps run against it.
local t = require "atlas.test"
local json = require "atlas.json"

local source = debug.getinfo(1, "S").source:match("^@(.*)$")
local root = source:match("^(.*)tests/integration/dr_database_failure_test%.lua$") or "./"
if root == "" then root = "./" end
local pg = dofile(root .. "tests/support/pg.lua")

local PLAYBOOK = root .. "playbooks/dr_database_failure.lua"

local function seeded_moto()
    local endpoint = t.moto()
    local seeded = t.spawn({ "python3", root .. "tests/support/seed_moto.py", endpoint }, { timeout = 120 })
    assert(seeded.code == 0, "seeding moto failed: " .. seeded.stderr)
    return endpoint,
        {
            AWS_ENDPOINT_URL = endpoint,
            AWS_ACCESS_KEY_ID = "testing",
            AWS_SECRET_ACCESS_KEY = "testing",
            AWS_EC2_METADATA_DISABLED = "true",
            AWS_PROFILE = false,
            ATLAS_STATE_DIR = t.tmpdir(),
        }
end

-- What boto3 sees in moto, independently of atlas.
local function boto3(endpoint, code)
    local r = t.spawn({
        "python3",
        "-c",
        [[
import boto3, json, sys
def rds(region):
    return boto3.client("rds", region_name=region, endpoint_url=sys.argv[1],
                        aws_access_key_id="testing", aws_secret_access_key="testing")
]] .. code,
        endpoint,
    }, { timeout = 60 })
    t.eq(r.code, 0, r.stderr)
    return json.decode(r.stdout)
end

-- One moto and one set of clusters for the file: seeding and initdb are the
-- slow parts. The cases run in order: failover, restore, then promote.
local endpoint, env = seeded_moto()
local clusters = pg.start(t, { "eu", "us", "ap" })
local eu, us, ap = clusters.eu, clusters.us, clusters.ap

local function count(cluster, tbl) return tonumber(pg.psql(cluster, "SELECT count(*) FROM " .. tbl)) end

t.case("restore against moto: the snapshot is copied to us-east-1 by ARN and restored there", function()
    local r = t.run(
        { "--yes", PLAYBOOK, "action=restore", "primary=host=127.0.0.1 port=1 connect_timeout=2" },
        { env = env, timeout = 120 }
    )
    t.eq(r.code, 0, r.stdout .. r.stderr)
    local seen = boto3(
        endpoint,
        [[
us = rds("us-east-1")
snap = us.describe_db_snapshots(DBSnapshotIdentifier="atlas-production-snapshot-latest-us-east-1")["DBSnapshots"][0]
db = us.describe_db_instances(DBInstanceIdentifier="atlas-production-db-eu-west-1-restored")["DBInstances"][0]
print(json.dumps({"snapshot": snap["Status"], "status": db["DBInstanceStatus"], "class": db["DBInstanceClass"]}))
]]
    )
    t.eq(seen, { snapshot = "available", status = "available", class = "db.r6g.xlarge" })
end)

t.case("failover against moto: RebootDBInstance with ForceFailover, then the database answers", function()
    local r = t.run({ "--yes", PLAYBOOK, "action=failover", "primary=" .. us.conninfo }, { env = env, timeout = 120 })
    t.eq(r.code, 0, r.stdout .. r.stderr)
    t.match(r.stdout, "called RebootDBInstance with ForceFailover")
    t.match(r.stdout, "atlas%-production%-db%-eu%-west%-1: available in .*, answers SQL")
    -- A reachable Multi-AZ primary and action=auto: nothing to do.
    r = t.run({ "--yes", PLAYBOOK, "primary=" .. us.conninfo }, { env = env, timeout = 120 })
    t.eq(r.code, 0, r.stdout .. r.stderr)
    t.match(r.stdout, "decision: none")
    local seen = boto3(
        endpoint,
        [[
db = rds("eu-west-1").describe_db_instances(DBInstanceIdentifier="atlas-production-db-eu-west-1")["DBInstances"][0]
print(json.dumps({"status": db["DBInstanceStatus"]}))
]]
    )
    t.eq(seen, { status = "available" })
end)

t.case("promote: replication follows the promoted standby; rows written on it reach both subscribers", function()
    for _, c in ipairs { eu, us, ap } do
        pg.create_schema(c)
    end
    local standby = pg.standby(clusters, "replica", "eu")
    local setup = t.run {
        "--yes",
        root .. "playbooks/db_publication_setup.lua",
        "primary=" .. eu.conninfo,
        "secondaries=" .. us.conninfo .. "," .. ap.conninfo,
    }
    t.eq(setup.code, 0, setup.stdout .. setup.stderr)
    pg.psql(eu, "INSERT INTO organization (name) SELECT 'org ' || g FROM generate_series(1, 20) g")
    for _, c in ipairs { us, ap } do
        t.ok(pg.wait_for(function() return count(c, "organization") == 20 end, 20), c.name .. " has the first rows")
    end
    -- The last writes reach the standby but not the subscribers.
    for _, c in ipairs { us, ap } do
        pg.psql(c, "ALTER SUBSCRIPTION atlas_subscription_from_eu DISABLE")
    end
    pg.psql(
        eu,
        [[INSERT INTO organization (name) VALUES ('late 1'), ('late 2'), ('late 3');
INSERT INTO app_user (organization_id, email) VALUES (21, 'ada@late.example')]]
    )
    local lsn = pg.psql(eu, "SELECT pg_current_wal_lsn()")
    t.ok(
        pg.wait_for(
            function() return pg.psql(standby, "SELECT pg_last_wal_replay_lsn() >= '" .. lsn .. "'::pg_lsn") == "t" end,
            20
        ),
        "the standby replayed the last writes"
    )
    -- The primary dies; the subscribers keep trying to reach it.
    os.execute(
        string.format(
            "%s/pg_ctl -D %s/eu -m immediate -w stop >/dev/null 2>&1 || runuser -u postgres -- %s/pg_ctl -D %s/eu -m immediate -w stop >/dev/null 2>&1",
            "/usr/lib/postgresql/15/bin",
            clusters.dir,
            "/usr/lib/postgresql/15/bin",
            clusters.dir
        )
    )
    for _, c in ipairs { us, ap } do
        pg.psql(c, "ALTER SUBSCRIPTION atlas_subscription_from_eu ENABLE")
    end
    -- RDS promotes the instance; here PostgreSQL promotes the standby.
    t.eq(pg.psql(standby, "SELECT pg_promote(true, 30)"), "t")

    local r = t.run({
        "--yes",
        PLAYBOOK,
        "action=promote",
        "primary=" .. eu.conninfo,
        "new_primary=" .. standby.conninfo,
        "secondaries=" .. us.conninfo .. "," .. ap.conninfo,
        "stream_wait=60",
    }, { env = env, timeout = 300 })
    t.eq(r.code, 0, r.stdout .. r.stderr)
    t.match(r.stdout, "atlas%-production%-db%-eu%-west%-1: unreachable")
    t.match(r.stdout, "called PromoteReadReplica")
    t.match(r.stdout, "created slot atlas_subscription_from_eu_127_0_0_1_" .. us.port)
    t.match(r.stdout, "pointed subscription atlas_subscription_from_eu at 127%.0%.0%.1:" .. standby.port)
    t.match(r.stdout, "organization differs: 23 rows .* on the new primary, 20 rows")
    t.match(r.stdout, "subscription atlas_subscription_from_eu created again with copy_data")
    t.match(r.stdout, "is a promoted physical replica: sequences came with the WAL %(2 checked%)")

    -- boto3 sees the replica promoted in moto.
    local seen = boto3(
        endpoint,
        [[
db = rds("eu-west-1").describe_db_instances(DBInstanceIdentifier="atlas-production-db-eu-west-1-replica")["DBInstances"][0]
print(json.dumps({"status": db["DBInstanceStatus"], "source": db.get("ReadReplicaSourceDBInstanceIdentifier")}))
]]
    )
    -- moto keeps ReadReplicaSourceDBInstanceIdentifier after a promotion (docs/aws.md).
    t.eq(seen.status, "available")

    -- The late rows were copied; new rows on the promoted standby stream to both.
    for _, c in ipairs { us, ap } do
        t.eq(count(c, "organization"), 23)
        t.eq(count(c, "app_user"), 1)
    end
    pg.psql(standby, "INSERT INTO organization (name) VALUES ('after 1'), ('after 2')")
    for _, c in ipairs { us, ap } do
        t.ok(
            pg.wait_for(function() return count(c, "organization") == 25 end, 20),
            c.name .. " receives rows written on the new primary"
        )
    end
    t.eq(
        pg.psql(standby, "SELECT count(*) FROM pg_replication_slots WHERE active AND slot_type = 'logical'"),
        "2",
        "two logical slots, both streaming"
    )
    -- A second run finds everything in place and changes nothing.
    r = t.run({
        "--yes",
        PLAYBOOK,
        "action=promote",
        "primary=" .. eu.conninfo,
        "new_primary=" .. standby.conninfo,
        "secondaries=" .. us.conninfo .. "," .. ap.conninfo,
    }, { env = env, timeout = 300 })
    t.eq(r.code, 0, r.stdout .. r.stderr)
    t.match(r.stdout, "slot atlas_subscription_from_eu_127_0_0_1_" .. us.port .. " exists already")
    t.match(r.stdout, "every subscriber holds the same global rows")
end)

t.case("db_publication_setup reads the primary's parameter group in moto; a wrong value stops it", function()
    local values = boto3(
        endpoint,
        [[
eu = rds("eu-west-1")
group = eu.describe_db_instances(DBInstanceIdentifier="atlas-production-db-eu-west-1")["DBInstances"][0]["DBParameterGroups"][0]["DBParameterGroupName"]
eu.modify_db_parameter_group(DBParameterGroupName=group, Parameters=[
    {"ParameterName": "rds.logical_replication", "ParameterValue": "0", "ApplyMethod": "pending-reboot"}])
print(json.dumps({"group": group}))
]]
    )
    t.eq(values.group, "atlas-production-postgres15")
    local r = t.run({ root .. "playbooks/db_publication_setup.lua" }, { env = env, timeout = 120 })
    t.eq(r.code, 1, r.stdout .. r.stderr)
    t.match(r.stdout, "parameter group atlas%-production%-postgres15: max_wal_senders = 10")
    t.match(
        r.stdout .. r.stderr,
        "rds%.logical_replication is 0 in parameter group atlas%-production%-postgres15; it must be 1"
    )
    t.match(r.stdout .. r.stderr, "ParameterName=rds%.logical_replication,ParameterValue=1,ApplyMethod=pending%-reboot")
    t.no_match(r.stdout, "create publication")
end)

t.case("rollback_schema restore=true against moto: the pre-migration snapshot becomes a new instance", function()
    local r = t.run(
        { "--yes", root .. "playbooks/rollback_schema.lua", "restore=true", "target=" .. us.conninfo },
        { env = env, timeout = 120 }
    )
    t.eq(r.code, 0, r.stdout .. r.stderr)
    t.match(r.stdout, "called RestoreDBInstanceFromDBSnapshot atlas%-production%-db%-rollback")
    local seen = boto3(
        endpoint,
        [[
eu = rds("eu-west-1")
db = eu.describe_db_instances(DBInstanceIdentifier="atlas-production-db-rollback")["DBInstances"][0]
primary = eu.describe_db_instances(DBInstanceIdentifier="atlas-production-db-eu-west-1")["DBInstances"][0]
print(json.dumps({"status": db["DBInstanceStatus"], "class": db["DBInstanceClass"], "primary": primary["DBInstanceStatus"]}))
]]
    )
    t.eq(seen, { status = "available", class = "db.r6g.xlarge", primary = "available" })
end)
