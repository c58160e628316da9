-- The three database playbooks in the mock world (atlas.sql.mock over
-- world.db): same code path as against real servers, virtual time.
local t = require "atlas.test"
local json = require "atlas.json"

local SETUP = "playbooks/db_publication_setup.lua"
local DIAG_LAG = "playbooks/diag_replication_lag.lua"
local DIAG_POOL = "playbooks/diag_connection_pool.lua"

local messages = t.messages

local function sql_calls(world, pattern)
    local out = {}
    for _, call in ipairs(world.calls) do
        if call.module == "sql" and call.sql and (not pattern or call.sql:find(pattern)) then out[#out + 1] = call end
    end
    return out
end

local function dry_run_lines(events)
    local out = {}
    for _, e in ipairs(events) do
        if e.type == "call" and e.outcome == "dry-run" then out[#out + 1] = e.params end
    end
    return out
end

t.case("healthy world: setup finds everything in place and changes nothing", function()
    local result, events = t.run_playbook(SETUP, {})
    t.eq(result.status, "ok", tostring(result.error))
    t.match(messages(events), "no change: the publication and 2 subscriptions were already in place")
    t.eq(#sql_calls(result.world, "^CREATE"), 0)
    -- The endpoints came from RDS, the password from the secret.
    local describe = result.world:calls_to("rds", "DescribeDBInstances")
    t.eq(#describe, 4, "the primary twice (its parameter group, its endpoint), each secondary once")
    local hosts = {}
    for _, call in ipairs(result.world.calls) do
        if call.module == "sql" and call.op == "connect" then hosts[call.host] = true end
    end
    t.ok(
        hosts[require("atlas.mock.rds").endpoint_address("atlas-production-db-eu-west-1", "eu-west-1")],
        "connected to the eu-west-1 endpoint"
    )
end)

t.case("empty databases: setup creates publication, subscriptions and slots, then a rerun changes nothing", function()
    local world = t.world("healthy")
    world.db:clear_replication()
    local started = world:now()
    local result, events = t.run_playbook(SETUP, {}, { world = world })
    t.eq(result.status, "ok", tostring(result.error))
    local primary = world.db.regions["eu-west-1"]
    t.eq(
        primary.publications.atlas_publication.tables,
        { "organization", "app_user", "user_preferences", "referential", "system_config" }
    )
    t.ok(primary.slots.atlas_subscription_from_eu_us_east_1, "slot for us-east-1")
    t.ok(primary.slots.atlas_subscription_from_eu_ap_southeast_1, "slot for ap-southeast-1")
    for _, region in ipairs { "us-east-1", "ap-southeast-1" } do
        local sub = world.db.regions[region].subscriptions.atlas_subscription_from_eu
        t.eq(sub.enabled, true)
        t.eq(sub.tables_ready, 5)
    end
    -- verify waited (in virtual time) for the initial copy.
    t.ok(world:now() - started >= world.latency.replication_initial_copy, "waited for the copy")
    local creates = sql_calls(world, "^CREATE SUBSCRIPTION")
    t.eq(#creates, 2)
    t.match(
        creates[1].sql,
        "WITH %(copy_data = true, create_slot = true, slot_name = 'atlas_subscription_from_eu_us_east_1'%)"
    )
    t.match(messages(events), "changed: publication, subscription us%-east%-1, subscription ap%-southeast%-1")
    -- The password is in the statement sent, never in an event.
    t.ok(creates[1].sql:find(world.master_password, 1, true), "CONNECTION carries the password")
    t.no_match(json.encode(events), world.master_password)

    local before = #world.calls
    result, events = t.run_playbook(SETUP, {}, { world = world })
    t.eq(result.status, "ok", tostring(result.error))
    t.match(messages(events), "no change")
    for i = before + 1, #world.calls do
        local call = world.calls[i]
        t.ok(
            not (call.sql and (call.sql:find("^CREATE") or call.sql:find("^ALTER"))),
            "no DDL on rerun: " .. tostring(call.sql)
        )
    end
end)

t.case("dry run prints the statements, changes nothing, hides the password", function()
    local world = t.world("healthy")
    world.db:clear_replication()
    local result, events = t.run_playbook(SETUP, {}, { world = world, dry_run = true })
    t.eq(result.status, "ok", tostring(result.error))
    local lines = dry_run_lines(events)
    t.eq(#lines, 3)
    t.eq(
        lines[1],
        'CREATE PUBLICATION "atlas_publication" FOR TABLE "organization", "app_user", "user_preferences", "referential", "system_config"'
    )
    t.match(
        lines[2],
        '^CREATE SUBSCRIPTION "atlas_subscription_from_eu" CONNECTION \'host=atlas%-production%-db%-eu%-west%-1%.'
    )
    t.match(lines[2], "password=%[REDACTED%] sslmode=require'")
    t.no_match(json.encode(events), world.master_password)
    t.eq(next(world.db.regions["eu-west-1"].publications), nil)
    -- Each one reached the database inside a read-only transaction, which
    -- refused it, as PostgreSQL does.
    local creates = sql_calls(world, "^CREATE")
    t.eq(#creates, 3)
    for _, call in ipairs(creates) do
        t.eq(call.error, "25006", call.sql)
    end
end)

t.case("diag_replication_lag: healthy world is ok", function()
    local result, events = t.run_playbook(DIAG_LAG, {})
    t.eq(result.status, "ok", tostring(result.error))
    t.eq(result.exit, 0)
    t.match(messages(events), "slot atlas_subscription_from_eu_us_east_1: active=true state=streaming")
    t.match(messages(events), "lag_seconds=0%.400")
end)

t.case("diag_replication_lag: the replication-lag scenario is critical (exit 5)", function()
    local result, events = t.run_playbook(DIAG_LAG, {}, { scenario = "replication-lag" })
    t.eq(result.status, "critical")
    t.eq(result.exit, 5)
    t.match(messages(events), "CRITICAL slot atlas_subscription_from_eu_us_east_1 lags 45%.0 s %(over 10 s%)")
    t.match(messages(events), "lag_bytes=" .. math.floor(45 * 256 * 1024))
    -- A higher threshold makes the same lag acceptable.
    result = t.run_playbook(DIAG_LAG, { max_lag_seconds = "60" }, { scenario = "replication-lag" })
    t.eq(result.status, "ok", tostring(result.error))
end)

t.case("diag_replication_lag: lag that catches up below the threshold is fine again", function()
    local world = t.world("replication-lag")
    world.db:set_lag("us-east-1", 45, 1)
    world.db:set_lag("ap-southeast-1", 45, 1)
    world:advance(40)
    local result = t.run_playbook(DIAG_LAG, {}, { world = world })
    t.eq(result.status, "ok", tostring(result.error))
end)

t.case("diag_replication_lag: a dropped slot and a disabled subscription are critical", function()
    local world = t.world("healthy")
    world.db:drop_slot("atlas_subscription_from_eu_us_east_1")
    world.db.regions["ap-southeast-1"].subscriptions.atlas_subscription_from_eu.enabled = false
    local result, events = t.run_playbook(DIAG_LAG, {}, { world = world })
    t.eq(result.exit, 5)
    local text = messages(events)
    t.match(
        text,
        "us%-east%-1: slot atlas_subscription_from_eu_us_east_1 of subscription atlas_subscription_from_eu was dropped on the primary"
    )
    t.match(text, "ap%-southeast%-1: subscription atlas_subscription_from_eu is disabled")
    t.match(text, "CRITICAL slot atlas_subscription_from_eu_ap_southeast_1 is inactive")
end)

t.case("diag_replication_lag: an unreachable primary fails the run", function()
    local result = t.run_playbook(DIAG_LAG, {}, { scenario = "eu-west-1-db-failure" })
    t.eq(result.status, "failed")
    t.eq(result.error.kind, "sql")
    t.eq(result.error.sqlstate, "08001")
end)

t.case("diag_connection_pool: idle-in-transaction sessions and exhausted headroom", function()
    local result, events = t.run_playbook(DIAG_POOL, {})
    t.eq(result.status, "ok", tostring(result.error))
    t.match(messages(events), "eu%-west%-1: total=20 max_connections=3604 reserved=3")

    local world = t.world("healthy")
    world.db:add_sessions(
        "eu-west-1",
        { state = "idle in transaction", count = 40, seconds = 600, application_name = "atlas-crm-batch" }
    )
    world.db:add_sessions("eu-west-1", { state = "active", count = 3500, seconds = 2 })
    result, events = t.run_playbook(DIAG_POOL, {}, { world = world })
    t.eq(result.exit, 5)
    local text = messages(events)
    t.match(text, "eu%-west%-1: 3503 active")
    t.match(text, "eu%-west%-1: 40 idle in transaction")
    t.match(text, "idle in transaction for 600 s")
    t.match(
        text,
        "eu%-west%-1: 3500 from atlas%-crm as atlas_admin at 10%.0%.2%.15 %(active 3500, idle 0, idle in transaction 0%)"
    )
    t.match(
        text,
        "eu%-west%-1: 40 from atlas%-crm%-batch as atlas_admin at 10%.0%.2%.15 %(active 0, idle 0, idle in transaction 40%)"
    )
    t.match(tostring(result.error), "only 41 connections left")
    -- Another region's database is not affected.
    result = t.run_playbook(DIAG_POOL, { region = "us-east-1" }, { world = world })
    t.eq(result.status, "ok", tostring(result.error))
end)

t.case("mock sql: wrong password, unknown host, unknown statement, call record", function()
    local world = t.world("healthy")
    local sql = require "atlas.sql"
    local host = require("atlas.mock.rds").endpoint_address("atlas-production-db-us-east-1", "us-east-1")
    local err = t.raises(
        function() sql.connect { host = host, dbname = "atlas", user = "atlas_admin", password = "not-the-Password-1" } end
    )
    t.eq(err.sqlstate, "28P01")
    t.no_match(tostring(err), "not%-the%-Password%-1")
    err = t.raises(function() sql.connect { host = "nowhere.example.com", user = "atlas_admin" } end)
    t.eq(err.sqlstate, "08001")
    local db <close> =
        sql.connect { host = host, dbname = "atlas", user = "atlas_admin", password = world.master_password }
    err = t.raises(function() db:query("SELECT * FROM app_user WHERE id = $1", 7) end)
    t.eq(err.sqlstate, "0A000")
    local last = world.calls[#world.calls]
    t.eq(last.module, "sql")
    t.eq(last.host, host)
    t.eq(last.sql, "SELECT * FROM app_user WHERE id = $1")
    t.eq(last.params, { 7 })
    local history = require("atlas.replication").flyway_history(db)
    t.eq(#history, 3)
    t.eq(history[3].script, "V3__system_config.sql")
end)

t.case("setup fails at once, with the way out, when a subscription's slot is gone", function()
    local world = t.world("healthy")
    world.db:drop_slot("atlas_subscription_from_eu_ap_southeast_1")
    local started = world:now()
    local result = t.run_playbook(SETUP, {}, { world = world })
    t.eq(result.status, "failed")
    t.eq(result.step, "verify replication")
    t.match(
        tostring(result.error),
        "ap%-southeast%-1: the slot atlas_subscription_from_eu_ap_southeast_1 of subscription atlas_subscription_from_eu is gone from the primary"
    )
    t.ok(world:now() - started < 5, "did not wait for what cannot recover")
end)

t.case("setup waits for a subscription's worker to come back, within `wait`", function()
    local world = t.world("healthy")
    local sub = world.db.regions["us-east-1"].subscriptions.atlas_subscription_from_eu
    sub.worker = false
    world:after(20, function() sub.worker = true end)
    local result = t.run_playbook(SETUP, {}, { world = world })
    t.eq(result.status, "ok", tostring(result.error))
    sub.worker = false
    result = t.run_playbook(SETUP, { wait = "10" }, { world = world })
    t.eq(result.status, "failed")
    t.match(tostring(result.error), "replication not streaming after 10 s: us%-east%-1: no apply worker")
end)

t.case("an unreachable database is the instance behind the endpoint: a replacement answers", function()
    local world = t.world("eu-west-1-db-failure")
    local sql = require "atlas.sql"
    local rds = require "atlas.mock.rds"
    local host = rds.endpoint_address("atlas-production-db-eu-west-1", "eu-west-1")
    local spec = { host = host, dbname = "atlas", user = "atlas_admin", password = world.master_password }
    local err = t.raises(function() sql.connect(spec) end)
    t.eq(err.sqlstate, "08001")
    -- What a failover ends with: another instance (the promoted replica)
    -- serving under the primary's identifier and endpoint.
    local instances = world.rds["eu-west-1"].instances
    local replacement = require("atlas.mock.util").copy(instances["atlas-production-db-eu-west-1-replica"])
    replacement.v.DBInstanceIdentifier = "atlas-production-db-eu-west-1"
    replacement.v.DBInstanceStatus = "available"
    replacement.reachable = true
    instances["atlas-production-db-eu-west-1"] = replacement
    local db <close> = sql.connect(spec)
    t.eq(db:query("SELECT 1")[1]["?column?"], 1)
end)

-- The mock backend takes atlas.pq's calls and fails as atlas.pq does:
-- nil, message, code, fields, with libpq's "connect" and no SQLSTATE for a
-- failed connect, the server's SQLSTATE for a statement, "lost" when the
-- server goes away, and libpq's own conninfo parser.
t.case("mock sql backend: atlas.pq's signature and failures", function()
    local world = t.world("healthy")
    local mock = require "atlas.sql.mock"
    local pq = require "atlas.pq"
    t.eq(mock.conninfo_parse, pq.conninfo_parse)
    t.eq(table.pack(mock.connect { host = "nowhere.example.com", user = "atlas_admin" }), {
        n = 4,
        nil,
        'could not translate host name "nowhere.example.com" to address: Name or service not known',
        "connect",
        {},
    })
    local host = require("atlas.mock.rds").endpoint_address("atlas-production-db-us-east-1", "us-east-1")
    local conn = assert(mock.connect { host = host, user = "atlas_admin", password = world.master_password })
    t.eq(table.pack(conn:query("SELECT * FROM no_such_table", {}, 0)), {
        n = 4,
        nil,
        "the mock database does not answer: SELECT * FROM no_such_table",
        "0A000",
        {},
    })
    t.eq(table.pack(conn:exec "DROP TABLE no_such_table"), {
        n = 4,
        nil,
        'table "no_such_table" does not exist',
        "42P01",
        {},
    })
    world.db:set_reachable("us-east-1", false)
    t.eq(table.pack(conn:query("SELECT 1", {}, 0)), {
        n = 4,
        nil,
        "server closed the connection unexpectedly",
        "lost",
        { connection_lost = true },
    })
    t.eq(conn:notices(), nil)
    t.eq(conn.cancel, nil, "no call atlas.pq does not have")
    t.eq(conn.has_notices, nil, "no call atlas.pq does not have")
    conn:close()
end)
