-- A dry run changes nothing on a real PostgreSQL 15, whatever the playbook
-- sends: each statement runs alone in a read-only transaction that is rolled
-- back, a refused write is printed as the change that would be made, and
-- what PostgreSQL would run even there (pg_stat_reset(), slot functions,
-- dblink, and the database's own functions that call them) is printed and
-- never sent. Outside a dry run, a step that is not
-- declared mutates = true cannot write either.
local t = require "atlas.test"

local source = debug.getinfo(1, "S").source:match("^@(.*)$")
local root = source:match("^(.*)tests/integration/pg_dry_run_test%.lua$") or "./"
if root == "" then root = "./" end
local pg = dofile(root .. "tests/support/pg.lua")

local clusters = pg.start(t, { "db" })
local db = clusters.db
pg.psql(
    db,
    [[CREATE TABLE audit (i int);
CREATE SEQUENCE audit_seq;
CREATE FUNCTION write_audit(n int) RETURNS int LANGUAGE plpgsql AS $$
BEGIN INSERT INTO audit VALUES (n); RETURN n; END $$;
CREATE FUNCTION reset_counters() RETURNS void LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_stat_reset(); END $$;
CREATE FUNCTION nightly_maintenance() RETURNS void LANGUAGE sql AS $$ SELECT reset_counters() $$;
SELECT pg_create_logical_replication_slot('source_slot', 'pgoutput');]]
)
local has_dblink = pcall(pg.psql, db, "CREATE EXTENSION dblink")

-- Everything that could have changed, read with psql.
local function world_state()
    return {
        audit = pg.psql(db, "SELECT count(*) FROM audit"),
        sequence = pg.psql(db, "SELECT last_value || ' ' || is_called FROM audit_seq"),
        slots = pg.psql(db, "SELECT string_agg(slot_name, ',' ORDER BY slot_name) FROM pg_replication_slots"),
        stats_reset = pg.psql(db, "SELECT coalesce(stats_reset::text, 'never') FROM pg_stat_database WHERE datname = 'atlas'"),
        publications = pg.psql(db, "SELECT count(*) FROM pg_publication"),
        tables = pg.psql(db, "SELECT count(*) FROM pg_class WHERE relname = 'made_by_dry_run'"),
    }
end

-- A playbook whose one step sends `body` (Lua with `db` connected).
local function playbook(body, step_fields)
    local path = t.tmpdir() .. "/tricks.lua"
    t.write_file(
        path,
        string.format(
            [[
local atlas = require "atlas"
local sql = require "atlas.sql"
return atlas.playbook {
    name = "tricks", description = "sends SQL", lock = false,
    steps = { { name = "send sql", %s run = function(ctx)
        local db <close> = sql.connect(%q)
        local function show(label, rows) atlas.log("%%s: %%s", label, require("atlas.json").encode(rows)) end
%s
    end } },
}
]],
            step_fields or 'mutates = true, confirm = "Send it?",',
            db.conninfo,
            body
        )
    )
    return path
end

local TRICKS = {
    -- a user-defined function that writes
    [[db:query("SELECT write_audit(1)")]],
    -- statistics: PostgreSQL resets them even in a read-only transaction
    [[db:query("SELECT pg_stat_reset()")]],
    -- replication slots are not transactional
    [[db:query("SELECT pg_copy_logical_replication_slot('source_slot', 'copied_slot')")]],
    [[db:query("SELECT pg_drop_replication_slot('source_slot')")]],
    [[db:query("SELECT nextval('audit_seq')")]],
    -- the playbook's own transaction tricks
    [[db:exec("SET TRANSACTION READ WRITE; INSERT INTO audit VALUES (2)")]],
    [[db:exec("COMMIT; SET default_transaction_read_only = off; INSERT INTO audit VALUES (3); COMMIT")]],
    [[db:exec("BEGIN READ WRITE; INSERT INTO audit VALUES (4); COMMIT")]],
    [[db:query("SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE"); db:query("INSERT INTO audit VALUES (5)")]],
    [[db:query("SELECT set_config('default_transaction_read_only', 'off', false)"); db:query("INSERT INTO audit VALUES (6)")]],
    [[db:query("SET TRANSACTION READ WRITE"); db:query("INSERT INTO audit VALUES (7)")]],
    [[db:transaction(function(tx) tx:query("INSERT INTO audit VALUES ($1)", 8) end)]],
    [[db:exec("CREATE TABLE made_by_dry_run (i int)")]],
    [[db:exec("CREATE PUBLICATION dry_pub FOR TABLE audit")]],
    [[db:exec("DO $$ BEGIN PERFORM pg_stat_reset(); END $$")]],
    [[db:exec("VACUUM audit")]],
    -- functions of the database's own that call pg_stat_reset() inside
    [[db:query("SELECT reset_counters()")]],
    [[db:query("SELECT nightly_maintenance()")]],
}

t.case("--dry-run: writes, functions and transaction tricks change nothing and are printed", function()
    pg.psql(db, "INSERT INTO audit VALUES (0)")
    local before = world_state()
    local body = {}
    for _, trick in ipairs(TRICKS) do
        body[#body + 1] = "        " .. trick
    end
    if has_dblink then
        body[#body + 1] = string.format(
            [[        db:query("SELECT dblink_exec('host=127.0.0.1 port=%d dbname=atlas user=atlas_admin', 'INSERT INTO audit VALUES (9)')")]],
            db.port
        )
    end
    -- Reads are made, and see the real data.
    body[#body + 1] = [[        show("audit rows", db:query("SELECT count(*) AS n FROM audit"))]]
    local r = t.run { "--dry-run", playbook(table.concat(body, "\n")) }
    t.eq(r.code, 0, r.stdout .. r.stderr)
    t.eq(world_state(), before)
    t.match(r.stdout, 'audit rows: %[{"n":1}%]')
    for _, printed in ipairs {
        "SELECT write_audit%(1%)",
        "SELECT pg_stat_reset%(%)",
        "SELECT pg_copy_logical_replication_slot",
        "SELECT pg_drop_replication_slot",
        "SELECT nextval",
        "INSERT INTO audit VALUES %(2%)",
        "INSERT INTO audit VALUES %(3%)",
        "INSERT INTO audit VALUES %(4%)",
        "INSERT INTO audit VALUES %(5%)",
        "INSERT INTO audit VALUES %(6%)",
        "INSERT INTO audit VALUES %(7%)",
        "INSERT INTO audit VALUES %(%$1%)  %-%- %$1 = 8",
        "CREATE TABLE made_by_dry_run",
        "CREATE PUBLICATION dry_pub",
        "DO %$%$ BEGIN PERFORM pg_stat_reset",
        "VACUUM audit",
        "SELECT reset_counters%(%)",
        "SELECT nightly_maintenance%(%)",
    } do
        t.match(r.stdout, "dry%-run: would call sql %a+ %(127%.0%.0%.1%) " .. printed, printed)
    end
    if has_dblink then t.match(r.stdout, "would call sql query %(127%.0%.0%.1%) SELECT dblink_exec") end
    -- The wrapper's own warnings are not the playbook's news.
    t.no_match(r.stdout .. r.stderr, "transaction in progress")
end)

t.case("--dry-run: a SET carries over to the reads after it, and cannot lift read-only", function()
    pg.psql(db, "CREATE SCHEMA IF NOT EXISTS archive; CREATE TABLE IF NOT EXISTS archive.old_audit (i int)")
    local before = world_state()
    local r = t.run {
        "--dry-run",
        playbook [[
        db:exec("SET search_path = archive, public")
        show("archived", db:query("SELECT count(*) AS n FROM old_audit"))
        db:query("SET default_transaction_read_only = off")
        db:query("SET transaction_read_only = off")
        db:query("INSERT INTO old_audit VALUES (1)")
        db:query("RESET search_path")
        show("audit", db:query("SELECT count(*) AS n FROM audit"))]],
    }
    t.eq(r.code, 0, r.stdout .. r.stderr)
    t.match(r.stdout, 'archived: %[{"n":0}%]')
    t.match(r.stdout, "would call sql query %(127%.0%.0%.1%) INSERT INTO old_audit VALUES %(1%)")
    t.match(r.stdout, 'audit: %[{"n":%d+}%]')
    t.eq(pg.psql(db, "SELECT count(*) FROM archive.old_audit"), "0")
    t.eq(world_state(), before)
end)

t.case("outside a dry run, a step not declared mutates cannot write; a declared one can", function()
    local before = world_state()
    for _, trick in ipairs {
        { [[db:query("INSERT INTO audit VALUES (10)")]], "PostgreSQL refused it" },
        { [[db:query("SELECT write_audit(11)")]], "PostgreSQL refused it" },
        { [[db:exec("BEGIN; INSERT INTO audit VALUES (12); COMMIT")]], "PostgreSQL refused it" },
        { [[db:query("SELECT pg_stat_reset()")]], "it was not sent" },
        { [[db:query("SELECT nightly_maintenance()")]], "nightly_maintenance%(%)%); it was not sent" },
    } do
        local r = t.run { playbook(trick[1], "") }
        t.eq(r.code, 1, trick[1] .. "\n" .. r.stdout .. r.stderr)
        t.match(r.stdout .. r.stderr, 'step "send sql" is not declared to change the world')
        t.match(r.stdout .. r.stderr, trick[2])
    end
    t.eq(world_state(), before)
    -- The same write from a declared, confirmed step is made.
    local r = t.run { "--yes", playbook([[db:query("INSERT INTO audit VALUES (13)")]]) }
    t.eq(r.code, 0, r.stdout .. r.stderr)
    t.eq(pg.psql(db, "SELECT count(*) FROM audit WHERE i = 13"), "1")
end)
