-- The database playbooks that act on one server, against a real PostgreSQL
-- 15 cluster started for this file (removed at the end, pass or fail).
local t = require "atlas.test"
local sql = require "atlas.sql"
local sys = require "atlas.sys"

local source = debug.getinfo(1, "S").source:match("^@(.*)$")
local root = source:match("^(.*)tests/integration/pg_playbooks_test%.lua$") or "./"
if root == "" then root = "./" end
local pg = dofile(root .. "tests/support/pg.lua")

local clusters = pg.start(t, { "db" })
local db = clusters.db
pg.create_schema(db)

local DIAG_POOL = root .. "playbooks/diag_connection_pool.lua"

local function backend_exists(pid)
    return pg.psql(db, "SELECT count(*) FROM pg_stat_activity WHERE pid = " .. pid) == "1"
end

t.case("diag_connection_pool terminate_idle ends idle sessions, never an active one", function()
    local idle <close> = sql.connect(db.conninfo)
    idle:query("SELECT 1")
    local idle_pid = idle:info().backend_pid
    local in_tx <close> = sql.connect(db.conninfo)
    in_tx:exec("BEGIN; SELECT 1")
    local in_tx_pid = in_tx:info().backend_pid
    -- An active session: psql inside pg_sleep for the whole test.
    local psql = assert(sys.spawn({
        "psql",
        "-X",
        "-q",
        "-h",
        "127.0.0.1",
        "-p",
        tostring(db.port),
        "-U",
        "atlas_admin",
        "-d",
        "atlas",
        "-c",
        "SELECT pg_sleep(60) /* atlas-test-active */",
    }, { stdout = "/dev/null", stderr = "/dev/null", stdin = "/dev/null" }))
    t.defer(function()
        pcall(
            pg.psql,
            db,
            "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query LIKE '%atlas-test-active%' AND pid <> pg_backend_pid()"
        )
        sys.kill(psql, "TERM")
        sys.wait(psql)
    end)
    local active_pid = pg.wait_for(function()
        local pid =
            pg.psql(db, "SELECT pid FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'SELECT pg_sleep(60)%'")
        return pid ~= "" and pid or nil
    end, 10)
    t.ok(active_pid, "the pg_sleep session is active")
    sys.sleep(1.2) -- every session above is now older than idle_seconds=1

    local dry = t.run { "--dry-run", DIAG_POOL, "target=" .. db.conninfo, "terminate_idle=true", "idle_seconds=1" }
    t.eq(dry.code, 0, dry.stdout .. dry.stderr)
    t.match(dry.stdout, "would end pid " .. idle_pid .. " ")
    t.match(dry.stdout, "would end pid " .. in_tx_pid .. " ")
    t.no_match(dry.stdout, "pid " .. active_pid .. " ")
    t.ok(backend_exists(idle_pid) and backend_exists(in_tx_pid), "--dry-run ended nothing")

    local refused = t.run { DIAG_POOL, "target=" .. db.conninfo, "terminate_idle=true", "idle_seconds=1" }
    t.eq(refused.code, 3, "no terminal, no --yes: refused\n" .. refused.stdout .. refused.stderr)
    t.ok(backend_exists(idle_pid), "a refused confirmation ended nothing")

    local r = t.run { "--yes", DIAG_POOL, "target=" .. db.conninfo, "terminate_idle=true", "idle_seconds=1" }
    t.eq(r.code, 0, r.stdout .. r.stderr)
    t.match(r.stdout, "ended 2 idle sessions")
    t.ok(
        pg.wait_for(function() return not backend_exists(idle_pid) and not backend_exists(in_tx_pid) end, 5),
        "the idle and idle-in-transaction sessions are gone"
    )
    t.ok(backend_exists(active_pid), "the active session still runs")
    t.eq(pg.psql(db, "SELECT state FROM pg_stat_activity WHERE pid = " .. active_pid), "active")
    -- Our end of an ended session sees it closed.
    local err = t.raises(function() idle:query("SELECT 1") end)
    t.eq(err.kind, "sql")
end)

t.case("db_bidirectional_setup refuses on PostgreSQL 15 and changes nothing", function()
    local other = db.conninfo:gsub("dbname=atlas", "dbname=postgres")
    local r =
        t.run { "--yes", root .. "playbooks/db_bidirectional_setup.lua", "databases=" .. db.conninfo .. "," .. other }
    t.eq(r.code, 1, r.stdout .. r.stderr)
    t.match(r.stdout, "PostgreSQL 15%.%d+, wal_level = logical")
    t.match(
        r.stdout .. r.stderr,
        "needs PostgreSQL 16 or later on every database %(127%.0%.0%.1:" .. db.port .. " runs 15%."
    )
    t.match(r.stdout .. r.stderr, "the changes would loop")
    t.eq(pg.psql(db, "SELECT count(*) FROM pg_publication"), "0")
    t.eq(pg.psql(db, "SELECT count(*) FROM pg_subscription"), "0")
end)

t.case("rollback_schema runs an undo file in one transaction; a failing one leaves nothing done", function()
    pg.psql(
        db,
        [[CREATE TABLE system_config_audit (id bigint PRIMARY KEY, changed text);
INSERT INTO flyway_schema_history VALUES
    (3, '3', 'system config audit', 'SQL', 'V3__system_config_audit.sql', 4242, 'atlas_admin', now(), 12, true)]]
    )
    local dir = t.tmpdir()
    local bad = t.write_file(
        dir .. "/bad.sql",
        "DELETE FROM flyway_schema_history WHERE version = '3';\nDROP TABLE no_such_table;\n"
    )
    local r = t.run { "--yes", root .. "playbooks/rollback_schema.lua", "target=" .. db.conninfo, "undo_sql=" .. bad }
    t.eq(r.code, 1, r.stdout .. r.stderr)
    t.match(r.stdout .. r.stderr, "42P01")
    t.eq(
        pg.psql(db, "SELECT count(*) FROM flyway_schema_history WHERE version = '3'"),
        "1",
        "the DELETE was rolled back"
    )

    local good = t.write_file(
        dir .. "/undo.sql",
        "-- undo V3\nDROP TABLE system_config_audit;\nDELETE FROM flyway_schema_history WHERE version = '3';\n"
    )
    r = t.run { root .. "playbooks/rollback_schema.lua", "target=" .. db.conninfo, "undo_sql=" .. good }
    t.eq(r.code, 3, "no terminal, no --yes: refused\n" .. r.stdout .. r.stderr)
    t.match(r.stdout, "#3 version 3 system config audit %(V3__system_config_audit%.sql%)")
    t.match(r.stdout, "   2 | DROP TABLE system_config_audit;")
    t.eq(pg.psql(db, "SELECT to_regclass('system_config_audit') IS NOT NULL"), "t")

    r = t.run { "--yes", root .. "playbooks/rollback_schema.lua", "target=" .. db.conninfo, "undo_sql=" .. good }
    t.eq(r.code, 0, r.stdout .. r.stderr)
    t.match(r.stdout, "undo%.sql committed")
    t.eq(pg.psql(db, "SELECT to_regclass('system_config_audit') IS NULL"), "t")
    t.eq(pg.psql(db, "SELECT max(version) FROM flyway_schema_history"), "2")
end)
