-- atlas.sql type conversions, table-driven, against a real PostgreSQL 15
-- (one throwaway cluster for this file), plus quoting and dry-run
-- classification, which need no server.
local t = require "atlas.test"
local sql = require "atlas.sql"
local json = require "atlas.json"

local source = debug.getinfo(1, "S").source:match("^@(.*)$")
local root = source:match("^(.*)tests/unit/sql_types_test%.lua$") or "./"
if root == "" then root = "./" end
local pg = dofile(root .. "tests/support/pg.lua")

local null = json.null
local cluster = pg.start(t, { "types" }).types
local db = sql.connect(cluster.conninfo .. " options='-c TimeZone=UTC'")
t.defer(function() db:close() end)

-- {SQL expression, expected Lua value, Lua type}
local CASES = {
    { "1::int2", 1, "number" },
    { "(-32768)::int2", -32768, "number" },
    { "2147483647::int4", 2147483647, "number" },
    { "9223372036854775807::int8", math.maxinteger, "number" },
    { "(-9223372036854775807 - 1)::int8", math.mininteger, "number" },
    { "1.5::float4", 1.5, "number" },
    { "0.1::float8", 0.1, "number" },
    { "'-1e300'::float8", -1e300, "number" },
    { "'Infinity'::float8", math.huge, "number" },
    { "'-Infinity'::float8", -math.huge, "number" },
    { "12345678901234567890.123456789::numeric", "12345678901234567890.123456789", "string" },
    { "0.10::numeric(5,2)", "0.10", "string" },
    { "true", true, "boolean" },
    { "false", false, "boolean" },
    { [['{"a": [1, 2, {"b": null}], "c": "x"}'::jsonb]], { a = { 1, 2, { b = null } }, c = "x" }, "table" },
    { [['[1, "two", true]'::json]], { 1, "two", true }, "table" },
    { [['"just a string"'::json]], "just a string", "string" },
    { "'2024-01-02 03:04:05'::timestamp", "2024-01-02T03:04:05", "string" },
    { "'2024-01-02 03:04:05.123456'::timestamp", "2024-01-02T03:04:05.123456", "string" },
    { "'2024-01-02 03:04:05+00'::timestamptz", "2024-01-02T03:04:05+00:00", "string" },
    { "'2024-06-30 23:59:59.5+02'::timestamptz", "2024-06-30T21:59:59.5+00:00", "string" },
    { "'infinity'::timestamp", "infinity", "string" },
    { "NULL::int4", null, "userdata" },
    { "NULL::text", null, "userdata" },
    { "NULL::jsonb", null, "userdata" },
    { "'héllo wörld'::text", "héllo wörld", "string" },
    { "''::text", "", "string" },
    { "'x'::varchar(3)", "x", "string" },
    { "'2024-01-02'::date", "2024-01-02", "string" },
    { "'0/16B3748'::pg_lsn", "0/16B3748", "string" },
    { "ARRAY[1,2,3]", "{1,2,3}", "string" },
    { "'\\x0001ff'::bytea", "\\x0001ff", "string" },
    { "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "string" },
}

for _, case in ipairs(CASES) do
    local expression, expected, lua_type = case[1], case[2], case[3]
    t.case("SELECT " .. expression, function()
        local rows = db:query("SELECT " .. expression .. " AS v")
        t.eq(#rows, 1)
        t.eq(type(rows[1].v), lua_type)
        t.eq(rows[1].v, expected)
    end)
end

t.case("integers come back as Lua integers, not floats", function()
    local row = db:query("SELECT 5::int2 AS a, 5::int4 AS b, 5::int8 AS c, 5::float8 AS d")[1]
    t.eq(math.type(row.a), "integer")
    t.eq(math.type(row.b), "integer")
    t.eq(math.type(row.c), "integer")
    t.eq(math.type(row.d), "float")
end)

t.case("NULL is the one sentinel atlas.null, and rows keep every column", function()
    local row = db:query("SELECT NULL AS a, 1 AS b")[1]
    t.ok(row.a == require("atlas").null, "atlas.null")
    t.ok(row.a == json.null, "json.null")
    local n = 0
    for _ in pairs(row) do
        n = n + 1
    end
    t.eq(n, 2)
end)

-- {Lua value sent as $1, SQL cast, expected text of $1 on the server}
local PARAMS = {
    { 42, "int8", "42" },
    { math.maxinteger, "int8", "9223372036854775807" },
    { 0.1, "float8", "0.1" },
    { 1 / 3, "float8", "0.3333333333333333" },
    { true, "bool", "true" },
    { false, "bool", "false" },
    { "it's", "text", "it's" },
    { { a = 1 }, "jsonb", '{"a": 1}' },
    { json.array {}, "jsonb", "[]" },
}

for _, case in ipairs(PARAMS) do
    t.case("parameter " .. tostring(case[1]) .. "::" .. case[2], function()
        local rows = db:query("SELECT $1::" .. case[2] .. "::text AS v", case[1])
        t.eq(rows[1].v, case[3])
    end)
end

t.case("nil and atlas.null parameters are SQL NULL, even between others", function()
    local row = db:query("SELECT $1::int IS NULL AS a, $2::text IS NULL AS b, $3::int AS c", nil, null, 3)[1]
    t.eq(row, { a = true, b = true, c = 3 })
end)

t.case("a column list comes back in order with the rows", function()
    local rows, info = db:query("SELECT 1 AS z, 2 AS a, 3 AS m FROM generate_series(1, 3)")
    t.eq(#rows, 3)
    t.eq(info.columns, { "z", "a", "m" })
    t.eq(info.command, "SELECT 3")
    t.eq(info.rows_affected, 3)
end)

-- Quoting -------------------------------------------------------------------

local QUOTE_IDENT = {
    { "organization", '"organization"' },
    { 'we"ird', '"we""ird"' },
    { "MixedCase", '"MixedCase"' },
    { "semi;colon", '"semi;colon"' },
}

for _, case in ipairs(QUOTE_IDENT) do
    t.case("quote_ident " .. case[1], function()
        t.eq(sql.quote_ident(case[1]), case[2])
        t.eq(db:quote_ident(case[1]), case[2])
        -- The server reads it back as the same name.
        t.eq(db:query("SELECT 1 AS " .. sql.quote_ident(case[1]))[1][case[1]], 1)
    end)
end

local QUOTE_LITERAL = {
    { "plain", "'plain'" },
    { "it's", "'it''s'" },
    { [[back\slash]], [[ E'back\\slash']] },
    { "", "''" },
    { "x'); DROP TABLE t; --", "'x''); DROP TABLE t; --'" },
}

for _, case in ipairs(QUOTE_LITERAL) do
    t.case("quote_literal " .. case[1], function()
        t.eq(sql.quote_literal(case[1]), case[2])
        t.eq(db:query("SELECT " .. sql.quote_literal(case[1]) .. "::text AS v")[1].v, case[1])
    end)
end

t.case("subscription_connection quotes the password twice and registers it as a secret", function()
    local log = require "atlas.run.log"
    local password = [[p'w\ s3cret]]
    local literal, conninfo = sql.subscription_connection {
        host = "atlas-db.example.com",
        port = 5432,
        dbname = "atlas",
        user = "atlas_admin",
        password = password,
    }
    t.eq(
        conninfo,
        [[host=atlas-db.example.com port=5432 dbname=atlas user=atlas_admin password='p\'w\\ s3cret' sslmode=require]]
    )
    -- The server reads the literal back as the conninfo, and libpq parses the
    -- conninfo back to the password.
    t.eq(db:query("SELECT " .. literal .. "::text AS v")[1].v, conninfo)
    t.eq(sql.parse_conninfo(conninfo).password, password)
    t.no_match(log.redact("CREATE SUBSCRIPTION s CONNECTION " .. literal), "s3cret")
end)

-- The SQL text: statements split for a dry run, and what acts outside any
-- transaction (what PostgreSQL would run even in a read-only transaction).

local SPLIT = {
    { "SELECT 1", { "SELECT 1" } },
    { "SELECT 1; SELECT 2;", { "SELECT 1", "SELECT 2" } },
    { "SELECT ';'; SELECT 2", { "SELECT ';'", "SELECT 2" } },
    { "SELECT 'it''s; here'; SELECT 2", { "SELECT 'it''s; here'", "SELECT 2" } },
    { [[SELECT E'\'; x'; SELECT 2]], { [[SELECT E'\'; x']], "SELECT 2" } },
    { 'SELECT 1 AS "a;b"; SELECT 2', { 'SELECT 1 AS "a;b"', "SELECT 2" } },
    { "DO $$ BEGIN PERFORM 1; END $$; SELECT 2", { "DO $$ BEGIN PERFORM 1; END $$", "SELECT 2" } },
    { "DO $f$ BEGIN PERFORM 1; END $f$; SELECT 2", { "DO $f$ BEGIN PERFORM 1; END $f$", "SELECT 2" } },
    { "SELECT 1 -- a; comment\n; SELECT 2", { "SELECT 1 -- a; comment", "SELECT 2" } },
    { "SELECT /* a /* nested; */ ; */ 1; SELECT 2", { "SELECT /* a /* nested; */ ; */ 1", "SELECT 2" } },
    { "-- only a comment;\n ; ;", {} },
}

for _, case in ipairs(SPLIT) do
    t.case("split_statements: " .. case[1]:gsub("\n", " "), function() t.eq(sql.split_statements(case[1]), case[2]) end)
end

local OUTSIDE = {
    { "SELECT 1", nil },
    { "/* atlas:slot_status */ SELECT slot_name FROM pg_replication_slots", nil },
    { "SELECT * FROM pg_stat_reset_log", nil },
    { "INSERT INTO t VALUES (1)", nil }, -- the read-only transaction refuses it
    { "SELECT pg_stat_reset()", "pg_stat_reset()" },
    { "select PG_CATALOG.PG_STAT_RESET_SHARED('bgwriter')", "pg_stat_reset_shared()" },
    { 'SELECT "pg_stat_reset" ()', "pg_stat_reset()" },
    { "SELECT pg_copy_logical_replication_slot('a', 'b')", "pg_copy_logical_replication_slot()" },
    { "SELECT pg_create_logical_replication_slot('a', 'pgoutput')", "pg_create_logical_replication_slot()" },
    { "SELECT pg_drop_replication_slot('s')", "pg_drop_replication_slot()" },
    { "SELECT pg_terminate_backend(123)", "pg_terminate_backend()" },
    { "SELECT pg_advisory_lock(1)", "pg_advisory_lock()" },
    { "SELECT pg_advisory_xact_lock(1)", nil }, -- released by the rollback
    { "SELECT dblink_exec('dbname=atlas', 'DELETE FROM t')", "dblink_exec()" },
    { "DO $$ BEGIN PERFORM pg_stat_reset(); END $$", "pg_stat_reset()" },
    { "-- pg_stat_reset()\nSELECT 1", nil },
    { "COPY t TO STDOUT", nil },
    { "COPY (SELECT 1) TO '/tmp/x'", "COPY ... TO a file" },
    { "copy t to '/tmp/x' with (format csv)", "COPY ... TO a file" },
    { "COPY t FROM PROGRAM 'curl x'", "COPY ... PROGRAM" },
    { "ALTER SYSTEM SET work_mem = '1GB'", "ALTER SYSTEM" },
}

t.case("outside_transactions: also the functions given, by name", function()
    t.eq(sql.outside_transactions("SELECT nightly_reset()", { nightly_reset = true }), "nightly_reset()")
    t.eq(sql.outside_transactions("SELECT nightly_reset_log()", { nightly_reset = true }), nil)
end)

for _, case in ipairs(OUTSIDE) do
    t.case(
        "outside_transactions: " .. case[1]:gsub("\n", " "),
        function() t.eq(sql.outside_transactions(case[1]), case[2]) end
    )
end

t.case("a large result converts every row and leaves the collector running", function()
    local rows = db:query("SELECT g AS i, jsonb_build_object('i', g) AS j, now() AS ts FROM generate_series(1, 5000) g")
    t.eq(#rows, 5000)
    t.eq(rows[5000].i, 5000)
    t.eq(rows[4321].j, { i = 4321 })
    t.match(rows[1].ts, "^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d")
    t.eq(collectgarbage("isrunning"), true)
end)

t.case("an error after rows have streamed in discards them, restarts the collector, keeps the connection", function()
    -- Rows arrive and are converted one by one; row 2500 divides by zero.
    local err = t.raises(function() db:query("SELECT g, 1 / (2500 - g) AS x FROM generate_series(1, 3000) g") end)
    t.eq(err.sqlstate, "22012")
    t.eq(collectgarbage("isrunning"), true)
    t.eq(db:query("SELECT 42 AS answer")[1].answer, 42)
end)

t.case("a wide row (more columns than the small fast path) converts every column", function()
    local columns = {}
    for i = 1, 40 do
        columns[i] = string.format("%d AS c%d", i, i)
    end
    local rows, info = db:query("SELECT " .. table.concat(columns, ", ") .. " FROM generate_series(1, 3)")
    t.eq(#rows, 3)
    t.eq(#info.columns, 40)
    for i = 1, 40 do
        t.eq(rows[3]["c" .. i], i)
    end
end)

local LOOPBACK = {
    { nil, true },
    { "", true },
    { "localhost", true },
    { "127.0.0.1", true },
    { "127.1.2.3", true },
    { "::1", true },
    { "/var/run/postgresql", true },
    { "127.0.0.1,localhost", true },
    { "db.example.com", false },
    { "10.0.0.5", false },
    { "127.0.0.1,db.example.com", false },
    { "atlas-production-db-eu-west-1.cxyz.eu-west-1.rds.amazonaws.com", false },
}

for _, case in ipairs(LOOPBACK) do
    t.case("is_loopback " .. tostring(case[1]), function() t.eq(sql.is_loopback(case[1]), case[2]) end)
end
