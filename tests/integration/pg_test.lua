-- atlas.sql and the replication playbooks against three real PostgreSQL 15
-- clusters (eu = primary, us and ap = secondaries), started for this file
-- on free loopback ports and removed at the end, pass or fail.
local t = require "atlas.test"
local sql = require "atlas.sql"
local sys = require "atlas.sys"
local json = require "atlas.json"

local source = debug.getinfo(1, "S").source:match("^@(.*)$")
local root = source:match("^(.*)tests/integration/pg_test%.lua$") or "./"
if root == "" then root = "./" end
local pg = dofile(root .. "tests/support/pg.lua")

local clusters = pg.start(t, { "eu", "us", "ap" })
local eu, us, ap = clusters.eu, clusters.us, clusters.ap
for _, c in ipairs { eu, us, ap } do
    pg.create_schema(c)
end

local SETUP = root .. "playbooks/db_publication_setup.lua"
local DIAG_LAG = root .. "playbooks/diag_replication_lag.lua"
local DIAG_POOL = root .. "playbooks/diag_connection_pool.lua"

local function setup_args(extra)
    local args = { "--yes", SETUP, "primary=" .. eu.conninfo, "secondaries=" .. us.conninfo .. "," .. ap.conninfo }
    for _, a in ipairs(extra or {}) do
        table.insert(args, 1, a)
    end
    return args
end

local function connect(cluster) return sql.connect(cluster.conninfo) end

-- The replication state a second run must leave exactly as it was.
local function catalog_state()
    return {
        publication = pg.psql(eu, "SELECT oid, pubname FROM pg_publication ORDER BY 1"),
        tables = pg.psql(eu, "SELECT pubname, tablename FROM pg_publication_tables ORDER BY 1, 2"),
        slots = pg.psql(eu, "SELECT slot_name, plugin, database FROM pg_replication_slots ORDER BY 1"),
        us = pg.psql(us, "SELECT oid, subname, subenabled, subslotname, subpublications FROM pg_subscription"),
        ap = pg.psql(ap, "SELECT oid, subname, subenabled, subslotname, subpublications FROM pg_subscription"),
    }
end

local function count_rows(cluster, tbl) return tonumber(pg.psql(cluster, "SELECT count(*) FROM " .. tbl)) end

t.case("db_publication_setup creates the publication and subscriptions, rows replicate", function()
    -- Rows present before the subscription arrive by the initial copy...
    pg.psql(
        eu,
        [[INSERT INTO organization VALUES (1, 'Acme'), (2, 'Globex');
INSERT INTO referential VALUES ('fr', 'France'), ('jp', 'Japan');
INSERT INTO system_config VALUES ('maintenance', 'off');]]
    )
    local r = t.run(setup_args())
    t.eq(r.code, 0, "exit code; output:\n" .. r.stdout .. r.stderr)
    t.match(r.stdout, "created publication atlas_publication")
    t.match(r.stdout, "created subscription atlas_subscription_from_eu")
    t.match(r.stdout, "enabled and streaming")
    t.eq(
        pg.psql(eu, "SELECT tablename FROM pg_publication_tables WHERE pubname = 'atlas_publication' ORDER BY 1"),
        "app_user\norganization\nreferential\nsystem_config\nuser_preferences"
    )
    t.eq(
        pg.psql(eu, "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'atlas_subscription_from_eu_%'"),
        "2"
    )

    -- ...and rows written afterwards by streaming, within a bound.
    local db <close> = connect(eu)
    db:transaction(function(tx)
        tx:query("INSERT INTO organization VALUES ($1, $2)", 3, "Initech")
        tx:query("INSERT INTO app_user VALUES ($1, $2, $3)", 10, 3, "ada@initech.example")
        tx:query("INSERT INTO user_preferences VALUES ($1, $2)", 10, { theme = "dark" })
    end)
    for _, secondary in ipairs { us, ap } do
        local arrived = pg.wait_for(
            function()
                return count_rows(secondary, "organization") == 3
                    and count_rows(secondary, "app_user") == 1
                    and count_rows(secondary, "user_preferences") == 1
            end,
            10
        )
        t.ok(arrived, "rows reached port " .. secondary.port .. " within 10 s")
        t.eq(count_rows(secondary, "referential"), 2)
        t.eq(pg.psql(secondary, "SELECT preferences->>'theme' FROM user_preferences WHERE user_id = 10"), "dark")
    end
end)

t.case("a second run changes nothing and says so", function()
    local before = catalog_state()
    local r = t.run(setup_args())
    t.eq(r.code, 0, "exit code; output:\n" .. r.stdout .. r.stderr)
    t.match(r.stdout, "no change: the publication and 2 subscriptions were already in place")
    t.no_match(r.stdout, "created")
    t.eq(catalog_state(), before)
end)

t.case("--dry-run prints the exact SQL and runs none of it", function()
    local r = t.run(setup_args { "--dry-run" })
    -- Everything exists: a dry run of the same setup has nothing to print.
    t.eq(r.code, 0, r.stdout .. r.stderr)
    t.no_match(r.stdout, "CREATE ")
    local args = setup_args { "--dry-run" }
    args[#args + 1] = "publication=pub_dry"
    args[#args + 1] = "subscription=sub_dry"
    r = t.run(args)
    t.eq(r.code, 0, r.stdout .. r.stderr)
    t.match(
        r.stdout,
        'CREATE PUBLICATION "pub_dry" FOR TABLE "organization", "app_user", "user_preferences", "referential", "system_config"',
        nil
    )
    local expected = string.format(
        [[CREATE SUBSCRIPTION "sub_dry" CONNECTION 'host=127.0.0.1 port=%d dbname=atlas user=atlas_admin' PUBLICATION "pub_dry" WITH (copy_data = true, create_slot = true, slot_name = 'sub_dry_127_0_0_1_%d')]],
        eu.port,
        us.port
    )
    t.ok(r.stdout:find(expected, 1, true), "dry run shows:\n" .. expected .. "\nin:\n" .. r.stdout)
    t.eq(pg.psql(eu, "SELECT count(*) FROM pg_publication WHERE pubname = 'pub_dry'"), "0")
    t.eq(pg.psql(us, "SELECT count(*) FROM pg_subscription WHERE subname = 'sub_dry'"), "0")
end)

local function slot_figures(stdout)
    local figures = {}
    for name, active, lag in stdout:gmatch("slot ([%w_]+): active=(%a+) state=%S+ client=%S+ lag_bytes=(%S+)") do
        figures[name] = { active = active == "true", lag_bytes = tonumber(lag) }
    end
    return figures
end

t.case("diag_replication_lag: healthy, then an inactive slot with psql's lag figure", function()
    local args = { DIAG_LAG, "primary=" .. eu.conninfo, "secondaries=" .. us.conninfo .. "," .. ap.conninfo }
    local r = t.run(args)
    t.eq(r.code, 0, r.stdout .. r.stderr)
    t.match(r.stdout, "replication healthy: 2 slots")

    -- Stop the ap subscriber: its slot goes inactive and WAL piles up behind it.
    pg.psql(ap, "ALTER SUBSCRIPTION atlas_subscription_from_eu DISABLE")
    t.defer(function() pg.psql(ap, "ALTER SUBSCRIPTION atlas_subscription_from_eu ENABLE") end)
    local ap_slot = "atlas_subscription_from_eu_127_0_0_1_" .. ap.port
    t.ok(
        pg.wait_for(
            function()
                return pg.psql(eu, "SELECT active FROM pg_replication_slots WHERE slot_name = '" .. ap_slot .. "'")
                    == "f"
            end,
            10
        ),
        "ap slot inactive"
    )
    pg.psql(eu, "INSERT INTO organization SELECT g, 'org ' || g FROM generate_series(100, 2099) g")

    local lag_query = "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint FROM pg_replication_slots WHERE slot_name = '"
        .. ap_slot
        .. "'"
    local before = tonumber(pg.psql(eu, lag_query))
    r = t.run(args)
    local after = tonumber(pg.psql(eu, lag_query))
    t.eq(r.code, 5, "critical exit code; output:\n" .. r.stdout .. r.stderr)
    local figures = slot_figures(r.stdout)
    t.ok(figures[ap_slot], "diag lists the ap slot:\n" .. r.stdout)
    t.eq(figures[ap_slot].active, false)
    t.ok(before > 50000, "2000 rows of WAL behind, psql says " .. before)
    t.ok(
        figures[ap_slot].lag_bytes >= before and figures[ap_slot].lag_bytes <= after,
        string.format("diag lag_bytes %d within psql's %d..%d", figures[ap_slot].lag_bytes, before, after)
    )
    t.match(r.stdout, "CRITICAL slot " .. ap_slot .. " is inactive")
    t.match(r.stdout, "subscription atlas_subscription_from_eu is disabled")
end)

t.case("diag_connection_pool counts what pg_stat_activity shows", function()
    local idle <close> = connect(eu)
    idle:exec("BEGIN; SELECT 1")
    local pid = idle:info().backend_pid
    local expected = pg.psql(eu, "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'")
    local r = t.run { DIAG_POOL, "target=" .. eu.conninfo, "idle_in_transaction_seconds=0" }
    t.eq(r.code, 0, r.stdout .. r.stderr)
    t.match(r.stdout, "total=" .. expected .. " max_connections=50 reserved=3")
    t.match(r.stdout, "pid " .. pid .. " %(atlas_admin, atlas%-run, 127%.0%.0%.1/32%) idle in transaction")
    t.match(r.stdout, "headroom=" .. (47 - tonumber(expected)) .. " of 47 usable connections")
    local from_us = tonumber(
        pg.psql(
            eu,
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'atlas-run' AND backend_type = 'client backend'"
        )
    )
    -- Ours (idle in transaction) plus the playbook's own, active while it looked.
    t.match(
        r.stdout,
        string.format(
            "%d from atlas%%-run as atlas_admin at 127%%.0%%.0%%.1 %%(active 1, idle 0, idle in transaction 1%%)",
            from_us + 1
        )
    )
    r = t.run { DIAG_POOL, "target=" .. eu.conninfo, "critical_headroom_percent=99" }
    t.eq(r.code, 5, "critical below the headroom threshold:\n" .. r.stdout)
end)

-- atlas.sql errors -------------------------------------------------------------

t.case("a wrong password fails with 28P01 and shows the password nowhere", function()
    local password = "Wr0ng-Passw0rd-71"
    local events, ok, err = t.capture(
        sql.connect,
        { host = "127.0.0.1", port = eu.port, dbname = "atlas", user = "atlas_pw", password = password }
    )
    t.eq(ok, false)
    t.eq(err.kind, "sql")
    t.eq(err.sqlstate, "28P01")
    t.match(tostring(err), "password authentication failed")
    t.no_match(tostring(err), password)
    t.no_match(json.encode(events), password)
    -- In a URI too, where the password is part of the text handed over.
    local uri = string.format("postgresql://atlas_pw:%s@127.0.0.1:%d/atlas", password, eu.port)
    events, ok, err = t.capture(sql.connect, uri)
    t.eq(ok, false)
    t.eq(err.sqlstate, "28P01")
    t.no_match(tostring(err), password)
    t.no_match(json.encode(events), password)
    -- The right one works.
    local good <close> = sql.connect {
        host = "127.0.0.1",
        port = eu.port,
        dbname = "atlas",
        user = "atlas_pw",
        password = "pw-Secret-42",
    }
    t.eq(good:query("SELECT current_user AS u")[1].u, "atlas_pw")
end)

t.case("an unreachable host respects connect_timeout", function()
    -- A server that accepts TCP and never answers: libpq waits for the
    -- startup reply until the timeout.
    local port = t.server {
        "python3",
        "-c",
        [[
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(64)
held = []
while True:
    held.append(s.accept()[0])
]],
        "PORT",
    }
    local started = sys.monotime()
    local ok, err = pcall(
        sql.connect,
        { host = "127.0.0.1", port = port, dbname = "atlas", user = "atlas_admin", connect_timeout = 1 }
    )
    local elapsed = sys.monotime() - started
    t.eq(ok, false)
    t.eq(err.sqlstate, "08001")
    t.eq(err.timeout, true)
    t.ok(elapsed >= 0.9 and elapsed < 3, "gave up after " .. elapsed .. " s")
end)

t.case("SQL errors carry their SQLSTATE, detail and position", function()
    local db <close> = connect(eu)
    local err = t.raises(function() db:query("SELECT * FROM no_such_table") end, "42P01")
    t.eq(err.sqlstate, "42P01")
    t.eq(err.code, "42P01")
    t.eq(err.position, 15)
    t.eq(err.host, "127.0.0.1")
    t.eq(err.dbname, "atlas")
    t.eq(tostring(err), 'sql atlas@127.0.0.1: 42P01: relation "no_such_table" does not exist')
    err = t.raises(function() db:query("SELECT 1 / $1::int", 0) end)
    t.eq(err.sqlstate, "22012")
    err = t.raises(function() db:query("INSERT INTO referential VALUES ($1, $2)", "fr", "again") end)
    t.eq(err.sqlstate, "23505")
    t.match(err.detail, "Key %(code%)=%(fr%) already exists")
    -- The connection is still usable after an error.
    t.eq(db:query("SELECT 2 AS two")[1].two, 2)
end)

-- atlas.pq's own contract, beneath atlas.sql: misuse raises; what the server
-- or the network did is nil, message, code (the SQLSTATE, or a word when
-- there is none), fields.
t.case("atlas.pq: nil, message, code, fields for a failure of the server or the network", function()
    local pq = require "atlas.pq"
    local conn <close> = assert(pq.connect(sql.parse_conninfo(eu.conninfo), 5))
    t.eq(
        table.pack(conn:query("SELECT * FROM no_such_table", {}, 0)),
        { n = 4, nil, 'relation "no_such_table" does not exist', "42P01", { severity = "ERROR", position = "15" } }
    )
    local _, message, code = conn:query("SELECT pg_sleep(5)", {}, 0, 0.2)
    t.eq({ message, code }, { "statement cancelled after the 0.2 s timeout", "timeout" })
    t.eq(
        table.pack(conn:exec "COPY (SELECT 1) TO STDOUT"),
        {
            n = 4,
            nil,
            "COPY FROM STDIN / TO STDOUT is not supported (COPY to or from a server file, or SELECT, instead)",
            "copy",
            {},
        }
    )
    t.eq(conn:exec "DO $$ BEGIN RAISE NOTICE 'n1'; RAISE WARNING 'w2'; END $$", {})
    t.eq(conn:notices(), { "NOTICE: n1", "WARNING: w2" })
    t.eq(conn:notices(), nil)
    t.raises(function() conn:query("SELECT $1", { print }, 1) end, "query parameter $1: a function has no SQL text form")
    -- The server ends the session: the connection can carry nothing more.
    local pid = conn:info().backend_pid
    pg.psql(eu, "SELECT pg_terminate_backend(" .. pid .. ")")
    local rows, _, lost_code, fields = conn:query("SELECT 1", {}, 0)
    t.eq(rows, nil)
    t.ok(lost_code == "57P01" or lost_code == "lost", "code " .. tostring(lost_code))
    t.eq(fields.connection_lost, true)
end)

t.case("a statement over its timeout is cancelled on the server", function()
    local db <close> = connect(eu)
    local started = sys.monotime()
    local err = t.raises(function() db:query { sql = "SELECT pg_sleep(20)", timeout = 0.3 } end)
    t.ok(sys.monotime() - started < 3, "returned promptly")
    t.eq(err.sqlstate, "57014")
    t.eq(err.timeout, true)
    t.eq(
        pg.psql(eu, "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(20)' AND state = 'active'"),
        "0"
    )
    t.eq(db:query("SELECT 3 AS three")[1].three, 3)
end)

t.case("Ctrl-C cancels the running query with PQcancel", function()
    local marker = "ctrl_c_" .. sys.getpid()
    local base = os.tmpname()
    local pid = assert(sys.spawn({
        t.binary(),
        "-e",
        string.format(
            [[local db = require("atlas.sql").connect(%q); db:query("SELECT pg_sleep(30), '%s'::text")]],
            eu.conninfo,
            marker
        ),
    }, { stdout = base .. ".out", stderr = base .. ".err", stdin = "/dev/null" }))
    t.defer(function()
        sys.kill(pid, "KILL")
        sys.wait(pid, true)
        os.remove(base)
        os.remove(base .. ".out")
        os.remove(base .. ".err")
    end)
    local running_query = "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%"
        .. marker
        .. "%' AND pid <> pg_backend_pid()"
    t.ok(pg.wait_for(function() return pg.psql(eu, running_query) == "1" end, 10), "query running")
    local started = sys.monotime()
    sys.kill(pid, "INT")
    local exited, code
    repeat
        exited, code = sys.wait(pid, true)
        sys.sleep(0.01)
    until exited or sys.monotime() - started > 10
    t.ok(exited, "exited after Ctrl-C")
    t.ok(sys.monotime() - started < 3, "exited promptly")
    t.eq(code, 3)
    t.eq(pg.psql(eu, running_query), "0")
end)

t.case("a parameter that is not a valid conninfo", function()
    local err = t.raises(function() sql.connect("host=127.0.0.1 bogus_option=1 password=Secret-Conn-1") end)
    t.eq(err.kind, "sql")
    t.eq(err.code, "conninfo")
    t.match(err.message, 'invalid connection option "bogus_option"')
    t.no_match(tostring(err), "Secret%-Conn%-1")
    err = t.raises(function() sql.connect("host=127.0.0.1 port") end)
    t.eq(err.code, "conninfo")
    err = t.raises(
        function() sql.connect(string.format("postgresql://u:Secret-Uri-2@127.0.0.1:%d/atlas?nope=1", eu.port)) end
    )
    t.eq(err.code, "conninfo")
    t.no_match(tostring(err), "Secret%-Uri%-2")
    -- As a playbook parameter: a usage error before anything runs.
    local r = t.run { DIAG_POOL, "target=host=127.0.0.1 bogus_option=1" }
    t.eq(r.code, 2)
    t.match(r.stderr, 'target: invalid connection string: invalid connection option "bogus_option"')
end)

t.case("a password inside a conninfo parameter is never printed", function()
    local password = "Conn-Pass-In-Param-3"
    local r = t.run { "--log-format", "json", DIAG_POOL, "target=" .. eu.conninfo .. " password=" .. password }
    t.eq(r.code, 0, r.stdout .. r.stderr)
    t.match(r.stdout, '"type":"run_start"')
    t.match(r.stdout, "password=%[REDACTED%]")
    t.no_match(r.stdout .. r.stderr, password)
end)

-- atlas.sql behaviour --------------------------------------------------------------

t.case("transaction commits on success and rolls back on error", function()
    local db <close> = connect(eu)
    db:exec("CREATE TEMP TABLE tx_probe (id int PRIMARY KEY)")
    db:transaction(function(tx) tx:query("INSERT INTO tx_probe VALUES ($1)", 1) end)
    t.raises(function()
        db:transaction(function(tx)
            tx:query("INSERT INTO tx_probe VALUES ($1)", 2)
            error("changed my mind")
        end)
    end, "changed my mind")
    t.eq(db:query("SELECT array_agg(id ORDER BY id)::text AS ids FROM tx_probe")[1].ids, "{1}")
end)

t.case("parameters are never interpolated", function()
    local db <close> = connect(eu)
    local hostile = "x'); DROP TABLE organization; --"
    local rows = db:query("SELECT $1::text AS v, length($1) AS n", hostile)
    t.eq(rows[1].v, hostile)
    t.eq(rows[1].n, #hostile)
    t.eq(pg.psql(eu, "SELECT count(*) > 0 FROM organization"), "t")
end)

t.case("notices are captured, exec runs several statements", function()
    local db <close> = connect(eu)
    local rows, info = db:exec([[CREATE TEMP TABLE n1 (x int);
CREATE TEMP TABLE IF NOT EXISTS n1 (x int);
DO $$ BEGIN RAISE NOTICE 'hello %', 42; END $$;
SELECT 7 AS seven]])
    t.eq(rows, { { seven = 7 } })
    t.eq(info.command, "SELECT 1")
    t.eq(db.notices, { 'NOTICE: relation "n1" already exists, skipping', "NOTICE: hello 42" })
end)

t.case("COPY streams are refused and leave the connection usable", function()
    local db <close> = connect(eu)
    local err = t.raises(function() db:query("COPY (SELECT * FROM organization) TO STDOUT") end)
    t.eq(err.sqlstate, "0A000")
    t.eq(db:query("SELECT 1 AS one")[1].one, 1)
    db:exec("CREATE TEMP TABLE copy_in (x int)")
    err = t.raises(function() db:exec("COPY copy_in FROM STDIN") end)
    t.eq(err.sqlstate, "0A000")
    t.eq(db:query("SELECT count(*)::int AS n FROM copy_in")[1].n, 0)
end)

t.case("close is idempotent, <close> closes, a closed connection raises", function()
    local db = connect(eu)
    local pid = db:info().backend_pid
    db:close()
    db:close()
    t.raises(function() db:query("SELECT 1") end, "closed")
    t.ok(
        pg.wait_for(
            function() return pg.psql(eu, "SELECT count(*) FROM pg_stat_activity WHERE pid = " .. pid) == "0" end,
            5
        ),
        "backend gone"
    )
    do
        local scoped <close> = connect(eu)
        pid = scoped:info().backend_pid
    end
    t.ok(
        pg.wait_for(
            function() return pg.psql(eu, "SELECT count(*) FROM pg_stat_activity WHERE pid = " .. pid) == "0" end,
            5
        ),
        "<close> closed it"
    )
end)

t.case("application_name, sslmode default and query events", function()
    local db <close> = connect(eu)
    t.eq(db:query("SELECT current_setting('application_name') AS a")[1].a, "atlas-run")
    local events = t.capture(function() db:query("SELECT $1::int AS x", 5) end)
    local call
    for _, e in ipairs(events) do
        if e.type == "call" then call = e end
    end
    t.eq(call.module, "sql")
    t.eq(call.op, "query")
    t.eq(call.region, "127.0.0.1")
    t.eq(call.outcome, "ok")
    t.ok(type(call.duration_ms) == "number")
    -- A host name that is not loopback gets sslmode=require: hostaddr sends
    -- it to the test server, which has no SSL, so libpq refuses.
    local err = t.raises(
        function()
            sql.connect {
                host = "db.example.com",
                hostaddr = "127.0.0.1",
                port = eu.port,
                dbname = "atlas",
                user = "atlas_admin",
            }
        end
    )
    t.match(err.message, "SSL was required")
    local plain <close> = sql.connect {
        host = "db.example.com",
        hostaddr = "127.0.0.1",
        port = eu.port,
        dbname = "atlas",
        user = "atlas_admin",
        sslmode = "disable",
    }
    t.eq(plain:info().ssl, false)
end)

t.case("flyway history and replication helpers read the primary", function()
    local replication = require "atlas.replication"
    local db <close> = connect(eu)
    local history = replication.flyway_history(db)
    t.eq(#history, 2)
    t.eq(history[2].version, "2")
    t.eq(history[2].checksum, -98765)
    t.eq(history[1].installed_on, "2025-01-10T10:00:00")
    t.eq(history[1].success, true)
    local conns = replication.connections(db)
    t.eq(conns.max_connections, 50)
    t.ok(conns.total >= 1)
    local stats = replication.replication_stats(db)
    t.ok(#stats >= 1, "walsenders listed")
    t.eq(replication.flyway_history(connect(us)) ~= nil, true)
    local missing <close> =
        sql.connect(string.format("host=127.0.0.1 port=%d dbname=postgres user=atlas_admin", eu.port))
    t.eq(replication.flyway_history(missing), nil)
end)

t.case("password_secret reads the password from Secrets Manager (moto) and shows it nowhere", function()
    -- atlas.aws pointed at a fresh moto_server, as tests/support/moto_world.lua does.
    local env = {
        AWS_ENDPOINT_URL = t.moto(),
        AWS_ACCESS_KEY_ID = "testing",
        AWS_SECRET_ACCESS_KEY = "testing",
        AWS_EC2_METADATA_DISABLED = "true",
    }
    t.aws_environment(env)
    require("atlas.aws").call {
        service = "secretsmanager",
        action = "CreateSecret",
        region = "eu-west-1",
        params = { Name = "atlas-db-master-password", SecretString = "pw-Secret-42" },
    }

    local spec = {
        host = "127.0.0.1",
        port = eu.port,
        dbname = "atlas",
        user = "atlas_pw",
        password_secret = "atlas-db-master-password",
    }
    local events, ok, db = t.capture(sql.connect, spec)
    t.ok(ok, tostring(db))
    t.eq(db:query("SELECT current_user AS u")[1].u, "atlas_pw")
    db:close()
    t.no_match(json.encode(events), "pw%-Secret%-42")
    -- The subscription CONNECTION built from the same secret carries it to
    -- the server, and no log line can show it.
    local literal = sql.subscription_connection(spec)
    t.ok(literal:find("password=pw-Secret-42", 1, true), "CONNECTION holds the password")
    t.no_match(require("atlas.run.log").redact("CREATE SUBSCRIPTION s CONNECTION " .. literal), "pw%-Secret%-42")
end)
