-- Logical replication helpers for the Atlas databases: the EU primary holds
-- a publication, each secondary a subscription to it.
--
-- Every function takes an atlas.sql connection. Each read query starts with
-- a /* atlas:<name> */ tag: the server ignores it, it names the query in
-- pg_stat_activity, and the mock backend answers by it. The DDL is built
-- with quote_ident/quote_literal, so names never need trusting.
local sql = require "atlas.sql"
local json = require "atlas.json"

local M = {}

M.PUBLICATION = require("atlas.env").PUBLICATION
M.SUBSCRIPTION = require("atlas.env").SUBSCRIPTION
M.TABLES = require("atlas.env").GLOBAL_TABLES

local null = json.null

local function present(v) return v ~= nil and v ~= null end
M.present = present

-- "schema.table" or "table" -> quoted SQL name
local function quote_table(name)
    local schema, relation = name:match("^([^.]+)%.([^.]+)$")
    if schema then return sql.quote_ident(schema) .. "." .. sql.quote_ident(relation) end
    return sql.quote_ident(name)
end

-- Names as pg_publication_tables reports them, public schema left out.
local function display_table(schema, relation)
    if schema == "public" then return relation end
    return schema .. "." .. relation
end

local function set_of(list)
    local set = {}
    for _, v in ipairs(list) do
        set[v] = true
    end
    return set
end

local function difference(list, other)
    local exclude, out = set_of(other), {}
    for _, v in ipairs(list) do
        if not exclude[v] then out[#out + 1] = v end
    end
    return out
end

-- "{a,b}" (a text[] as text) -> {"a", "b"}
local function parse_text_array(text)
    if type(text) == "table" then return text end
    local out = {}
    if type(text) ~= "string" then return out end
    for item in text:gsub("^{", ""):gsub("}$", ""):gmatch("[^,]+") do
        out[#out + 1] = (item:gsub('^"(.*)"$', "%1"))
    end
    return out
end

-- Publications -------------------------------------------------------------

-- publication(conn, name) -> {name=, all_tables=, tables={...}} or nil when absent
function M.publication(conn, name)
    local rows = conn:query(
        [[/* atlas:publication */ SELECT pubname, puballtables, pubinsert, pubupdate, pubdelete
FROM pg_publication WHERE pubname = $1]],
        name
    )
    if #rows == 0 then return nil end
    local tables = {}
    local listed = conn:query(
        [[/* atlas:publication_tables */ SELECT schemaname, tablename
FROM pg_publication_tables WHERE pubname = $1 ORDER BY schemaname, tablename]],
        name
    )
    for _, row in ipairs(listed) do
        tables[#tables + 1] = display_table(row.schemaname, row.tablename)
    end
    table.sort(tables)
    return { name = name, all_tables = rows[1].puballtables, tables = tables }
end

-- ensure_publication(conn, name, tables) -> report
-- Creates the publication when absent, adds missing tables when present;
-- never drops a table someone else added (reported in `extra`).
-- report = {created=bool, added={...}, extra={...}, tables={...}, changed=bool, statements={...}}
function M.ensure_publication(conn, name, tables)
    local report = { created = false, added = {}, extra = {}, changed = false, statements = {} }
    local quoted = {}
    for i, t in ipairs(tables) do
        quoted[i] = quote_table(t)
    end
    local existing = M.publication(conn, name)
    if not existing then
        local statement =
            string.format("CREATE PUBLICATION %s FOR TABLE %s", sql.quote_ident(name), table.concat(quoted, ", "))
        conn:query(statement)
        report.statements[#report.statements + 1] = statement
        report.created, report.changed, report.added = true, true, tables
    elseif not existing.all_tables then
        local missing = difference(tables, existing.tables)
        report.extra = difference(existing.tables, tables)
        if #missing > 0 then
            local names = {}
            for i, t in ipairs(missing) do
                names[i] = quote_table(t)
            end
            local statement =
                string.format("ALTER PUBLICATION %s ADD TABLE %s", sql.quote_ident(name), table.concat(names, ", "))
            conn:query(statement)
            report.statements[#report.statements + 1] = statement
            report.added, report.changed = missing, true
        end
    end
    local now = M.publication(conn, name)
    report.tables = now and now.tables or {}
    report.all_tables = now and now.all_tables or false
    return report
end

-- Subscriptions ------------------------------------------------------------

-- A replication slot name from a label ("us-east-1", "127.0.0.1:5433"):
-- each subscriber needs its own slot on the primary.
function M.slot_name(subscription, label)
    local suffix = tostring(label):lower():gsub("[^%w]+", "_"):gsub("^_+", ""):gsub("_+$", "")
    return (subscription .. "_" .. suffix):sub(1, 63)
end

-- subscription(conn, name) -> row of pg_subscription (+ worker state) or nil
function M.subscription(conn, name)
    local rows = conn:query(
        [[/* atlas:subscription */ SELECT s.subname, s.subenabled AS enabled,
  s.subslotname AS slot_name, array_to_string(s.subpublications, ',') AS publications
FROM pg_subscription s
WHERE s.subname = $1 AND s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())]],
        name
    )
    local row = rows[1]
    if row then
        row.publications = parse_text_array("{" .. (present(row.publications) and row.publications or "") .. "}")
    end
    return row
end

-- ensure_subscription(conn, {name=, connection=<SQL literal>, publication=, slot_name=,
--                           copy_data=true, create_slot=true}) -> report
-- report = {created=, enabled_now=, changed=, mismatch=text|nil, slot_name=, statements=}
function M.ensure_subscription(conn, options)
    local name = options.name or M.SUBSCRIPTION
    local publication = options.publication or M.PUBLICATION
    local report = { created = false, enabled_now = false, changed = false, statements = {} }
    local existing = M.subscription(conn, name)
    if not existing then
        assert(options.connection, "ensure_subscription needs connection (sql.subscription_connection)")
        local with = {
            string.format("copy_data = %s", options.copy_data == false and "false" or "true"),
            string.format("create_slot = %s", options.create_slot == false and "false" or "true"),
        }
        if options.slot_name then with[#with + 1] = "slot_name = " .. sql.quote_literal(options.slot_name) end
        -- PostgreSQL 16+: apply only changes that originated on the publisher.
        if options.origin then with[#with + 1] = "origin = " .. sql.quote_literal(options.origin) end
        local statement = string.format(
            "CREATE SUBSCRIPTION %s CONNECTION %s PUBLICATION %s WITH (%s)",
            sql.quote_ident(name),
            options.connection,
            sql.quote_ident(publication),
            table.concat(with, ", ")
        )
        -- Creating the slot on the primary can take a while on a busy server.
        conn:query { sql = statement, timeout = options.timeout or 120 }
        report.statements[#report.statements + 1] = statement
        report.created, report.changed = true, true
        report.slot_name = options.slot_name or name
        return report
    end
    report.slot_name = present(existing.slot_name) and existing.slot_name or nil
    if not set_of(existing.publications)[publication] then
        report.mismatch = string.format(
            "subscription %s exists but subscribes to %s, not %s",
            name,
            table.concat(existing.publications, ","),
            publication
        )
    end
    if not existing.enabled then
        local statement = string.format("ALTER SUBSCRIPTION %s ENABLE", sql.quote_ident(name))
        conn:query(statement)
        report.statements[#report.statements + 1] = statement
        report.enabled_now, report.changed = true, true
    end
    return report
end

-- ensure_origin_none(conn, name) -> true when it had to be set (PostgreSQL 16+:
-- pg_subscription.suborigin). A subscription with origin = any also applies
-- changes its publisher got from elsewhere: in a ring they would loop.
function M.ensure_origin_none(conn, name)
    local row = conn:query_one(
        [[/* atlas:subscription_origin */ SELECT suborigin FROM pg_subscription
WHERE subname = $1 AND subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())]],
        name
    )
    if not row or row.suborigin == "none" then return false end
    conn:query { sql = "ALTER SUBSCRIPTION " .. sql.quote_ident(name) .. " SET (origin = none)", mutates = true }
    return true
end

-- Status -------------------------------------------------------------------

-- slot_status(primary) -> one row per replication slot, with its walsender:
-- {slot_name, plugin, slot_type, database, active, pid, wal_status, restart_lsn,
--  confirmed_flush_lsn, lag_bytes, state, client_addr, application_name, sent_lsn,
--  replay_lsn, replay_lag_bytes, write_lag_seconds, flush_lag_seconds, lag_seconds}
-- lag_bytes: WAL the slot's consumer has not confirmed (pg_wal_lsn_diff).
-- lag_seconds: pg_stat_replication.replay_lag; 0 when the consumer is caught
-- up (replay_lag goes NULL when idle), null when there is no walsender.
function M.slot_status(conn)
    local rows = conn:query([[/* atlas:slot_status */ SELECT s.slot_name, s.plugin, s.slot_type, s.database,
  s.active, s.active_pid AS pid, s.wal_status,
  s.restart_lsn::text AS restart_lsn, s.confirmed_flush_lsn::text AS confirmed_flush_lsn,
  pg_wal_lsn_diff(pg_current_wal_lsn(), coalesce(s.confirmed_flush_lsn, s.restart_lsn))::bigint AS lag_bytes,
  r.state, r.client_addr::text AS client_addr, r.application_name,
  r.sent_lsn::text AS sent_lsn, r.replay_lsn::text AS replay_lsn,
  pg_wal_lsn_diff(pg_current_wal_lsn(), r.replay_lsn)::bigint AS replay_lag_bytes,
  extract(epoch FROM r.write_lag)::float8 AS write_lag_seconds,
  extract(epoch FROM r.flush_lag)::float8 AS flush_lag_seconds,
  extract(epoch FROM r.replay_lag)::float8 AS replay_lag_seconds
FROM pg_replication_slots s
LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid
ORDER BY s.slot_name]])
    for _, row in ipairs(rows) do
        if present(row.replay_lag_seconds) then
            row.lag_seconds = row.replay_lag_seconds
        elseif present(row.state) and row.lag_bytes == 0 then
            row.lag_seconds = 0
        else
            row.lag_seconds = null
        end
    end
    return rows
end

-- replication_stats(primary) -> rows of pg_stat_replication, the runbook's
-- troubleshooting query, lag in bytes and seconds
function M.replication_stats(conn)
    return conn:query([[/* atlas:stat_replication */ SELECT pid, usename, application_name,
  client_addr::text AS client_addr, state, sync_state,
  sent_lsn::text AS sent_lsn, write_lsn::text AS write_lsn, flush_lsn::text AS flush_lsn, replay_lsn::text AS replay_lsn,
  pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint AS lag_bytes,
  extract(epoch FROM replay_lag)::float8 AS lag_seconds
FROM pg_stat_replication ORDER BY pid]])
end

-- subscription_status(secondary) -> rows of pg_subscription with their apply
-- worker (pg_stat_subscription) and table sync states:
-- {subname, enabled, slot_name, publications, pid, received_lsn, latest_end_lsn,
--  last_msg_receipt_time, latest_end_time, seconds_since_message, tables_total, tables_ready}
function M.subscription_status(conn)
    local rows = conn:query([[/* atlas:subscription_status */ SELECT s.subname, s.subenabled AS enabled,
  s.subslotname AS slot_name, array_to_string(s.subpublications, ',') AS publications,
  st.pid, st.received_lsn::text AS received_lsn, st.latest_end_lsn::text AS latest_end_lsn,
  st.last_msg_receipt_time, st.latest_end_time,
  extract(epoch FROM now() - st.last_msg_receipt_time)::float8 AS seconds_since_message,
  (SELECT count(*) FROM pg_subscription_rel r WHERE r.srsubid = s.oid)::int AS tables_total,
  (SELECT count(*) FROM pg_subscription_rel r WHERE r.srsubid = s.oid AND r.srsubstate = 'r')::int AS tables_ready
FROM pg_subscription s
LEFT JOIN pg_stat_subscription st ON st.subid = s.oid AND st.relid IS NULL
WHERE s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())
ORDER BY s.subname]])
    for _, row in ipairs(rows) do
        row.publications = parse_text_array("{" .. (present(row.publications) and row.publications or "") .. "}")
    end
    return rows
end

-- long_transactions(conn, min_seconds) -> sessions whose transaction is older
function M.long_transactions(conn, min_seconds)
    return conn:query(
        [[/* atlas:long_transactions */ SELECT pid, usename, application_name,
  client_addr::text AS client_addr, state, backend_type,
  extract(epoch FROM now() - xact_start)::float8 AS xact_seconds,
  left(query, 200) AS query
FROM pg_stat_activity
WHERE xact_start IS NOT NULL AND pid <> pg_backend_pid()
  AND now() - xact_start > make_interval(secs => $1)
ORDER BY xact_start]],
        min_seconds
    )
end

-- connections(conn) -> {by_state={{state=, count=}, ...}, total=, max_connections=,
--                      reserved=, available=, headroom=, headroom_percent=}
-- Client backends only: the pool competes with them, not with walsenders.
function M.connections(conn)
    local by_state = conn:query([[/* atlas:connections_by_state */ SELECT coalesce(state, 'unknown') AS state,
  count(*)::int AS count
FROM pg_stat_activity WHERE backend_type = 'client backend'
GROUP BY 1 ORDER BY 2 DESC, 1]])
    local limits =
        conn:query([[/* atlas:connection_limits */ SELECT current_setting('max_connections')::int AS max_connections,
  current_setting('superuser_reserved_connections')::int AS reserved]])[1]
    local total = 0
    for _, row in ipairs(by_state) do
        total = total + row.count
    end
    local available = limits.max_connections - limits.reserved
    local headroom = available - total
    return {
        by_state = by_state,
        total = total,
        max_connections = limits.max_connections,
        reserved = limits.reserved,
        available = available,
        headroom = headroom,
        headroom_percent = available > 0 and (headroom * 100.0 / available) or 0,
    }
end

-- connections_by_client(conn) -> {{application_name=, usename=, client_addr=, total=,
--                                  active=, idle=, idle_in_transaction=}, ...}
-- Who holds the connections, most first: the pool that ran dry shows here.
function M.connections_by_client(conn)
    return conn:query([[/* atlas:connections_by_client */ SELECT coalesce(application_name, '') AS application_name,
  coalesce(usename, '') AS usename, coalesce(host(client_addr), 'local') AS client_addr,
  count(*)::int AS total,
  count(*) FILTER (WHERE state = 'active')::int AS active,
  count(*) FILTER (WHERE state = 'idle')::int AS idle,
  count(*) FILTER (WHERE state LIKE 'idle in transaction%')::int AS idle_in_transaction
FROM pg_stat_activity WHERE backend_type = 'client backend'
GROUP BY 1, 2, 3 ORDER BY total DESC, 1, 2, 3 LIMIT 20]])
end

-- idle_in_transaction(conn, min_seconds) -> sessions idle inside a transaction
function M.idle_in_transaction(conn, min_seconds)
    return conn:query(
        [[/* atlas:idle_in_transaction */ SELECT pid, usename, application_name,
  client_addr::text AS client_addr, state,
  extract(epoch FROM now() - state_change)::float8 AS idle_seconds,
  extract(epoch FROM now() - xact_start)::float8 AS xact_seconds,
  left(query, 200) AS query
FROM pg_stat_activity
WHERE state IN ('idle in transaction', 'idle in transaction (aborted)')
  AND now() - state_change > make_interval(secs => $1)
ORDER BY state_change]],
        min_seconds or 0
    )
end

-- The states a session may be ended in: it holds a connection and does no
-- work. 'active' (and fastpath, disabled) sessions are never in this list.
local IDLE_STATES = "'idle', 'idle in transaction', 'idle in transaction (aborted)'"

-- idle_sessions(conn, min_seconds) -> client sessions idle, or idle in a
-- transaction, for longer than min_seconds (oldest first), this one excluded:
-- {pid, usename, application_name, client_addr, state, idle_seconds, query}
function M.idle_sessions(conn, min_seconds)
    return conn:query([[/* atlas:idle_sessions */ SELECT pid, usename, application_name,
  client_addr::text AS client_addr, state,
  extract(epoch FROM now() - state_change)::float8 AS idle_seconds,
  left(query, 200) AS query
FROM pg_stat_activity
WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
  AND state IN (]] .. IDLE_STATES .. [[)
  AND now() - state_change > make_interval(secs => $1)
ORDER BY state_change]], min_seconds or 0)
end

-- terminate_idle(conn, pids, min_seconds) -> rows {pid, state, terminated}
-- Ends the given sessions with pg_terminate_backend, but only those that are
-- still idle for longer than min_seconds when the statement runs: a session
-- that turned active since it was listed is left alone.
function M.terminate_idle(conn, pids, min_seconds)
    local list = {}
    for i, pid in ipairs(pids) do
        list[i] = tostring(math.tointeger(pid) or error("terminate_idle: pid must be an integer", 2))
    end
    return conn:query {
        sql = [[/* atlas:terminate_idle */ SELECT pid, state, pg_terminate_backend(pid) AS terminated
FROM pg_stat_activity
WHERE pid = ANY($1::int[]) AND backend_type = 'client backend' AND pid <> pg_backend_pid()
  AND state IN (]] .. IDLE_STATES .. [[)
  AND now() - state_change > make_interval(secs => $2)
ORDER BY pid]],
        params = { "{" .. table.concat(list, ",") .. "}", min_seconds or 0 },
        mutates = true,
    }
end

-- flyway_history(conn) -> rows of flyway_schema_history by installed_rank,
-- or nil when the table does not exist
function M.flyway_history(conn)
    local ok, rows = pcall(
        conn.query,
        conn,
        [[/* atlas:flyway_history */ SELECT installed_rank, version,
  description, type, script, checksum, installed_by, installed_on, execution_time, success
FROM flyway_schema_history ORDER BY installed_rank]]
    )
    if ok then return rows end
    if type(rows) == "table" and rows.sqlstate == "42P01" then return nil end
    error(rows, 0)
end

-- Targets ------------------------------------------------------------------

M.PRIMARY_REGION = require("atlas.env").PRIMARY_REGION
M.SECONDARY_REGIONS = require("atlas.env").SECONDARY_REGIONS
M.PASSWORD_SECRET = require("atlas.env").PASSWORD_SECRET

-- The connection spec of a region's RDS instance, found with DescribeDBInstances;
-- the password comes from the master-password secret (eu-west-1).
local function rds_target(region, password_secret, identifier)
    identifier = identifier or require("atlas.env").db_instance(region)
    local instances = require("atlas.services.rds").describe_db_instances { region = region, DBInstanceIdentifier = identifier }
    local instance = instances[1]
    if not instance or not instance.Endpoint or not instance.Endpoint.Address then
        require("atlas.errors").raise {
            kind = "sql",
            code = "no_endpoint",
            message = "RDS instance " .. identifier .. " has no endpoint (status " .. tostring(
                instance and instance.DBInstanceStatus
            ) .. ")",
        }
    end
    return {
        label = region,
        spec = {
            host = instance.Endpoint.Address,
            port = instance.Endpoint.Port or 5432,
            dbname = instance.DBName or "atlas",
            user = instance.MasterUsername or "atlas_admin",
            password_secret = password_secret,
            secret_region = M.PRIMARY_REGION,
        },
    }
end

local function conninfo_target(text)
    local parsed = sql.parse_conninfo(text)
    local host = parsed.host or parsed.hostaddr or "localhost"
    return { label = host .. ":" .. (parsed.port or "5432"), spec = text, params = parsed }
end

-- instance_target(region, identifier, password_secret) -> {label=, spec=, params=}:
-- any RDS instance (a promoted replica, a restored one) as a SQL target.
function M.instance_target(region, identifier, password_secret)
    local target = rds_target(region, password_secret or M.PASSWORD_SECRET, identifier)
    target.label = identifier
    target.params = target.spec
    return target
end

-- conninfo_target(text) -> {label = "host:port", spec=, params=}
M.conninfo_target = conninfo_target

-- resolve_targets{primary=conninfo|nil, secondaries={conninfo...}|nil, password_secret=}
-- -> {primary={label=, spec=, params=}, secondaries={...}}
-- Missing ones default to the environment's RDS instances. A spec is what
-- sql.connect takes; params (for the subscription's CONNECTION) is the
-- primary's keywords.
function M.resolve_targets(options)
    local secret = options.password_secret or M.PASSWORD_SECRET
    local targets = { secondaries = {} }
    if options.primary and options.primary ~= "" then
        targets.primary = conninfo_target(options.primary)
    else
        targets.primary = rds_target(M.PRIMARY_REGION, secret)
        targets.primary.params = targets.primary.spec
    end
    targets.secondaries = M.resolve_secondaries(options.secondaries, secret)
    return targets
end

-- Each run's targets, by its ctx: gone with the run.
local run_targets = setmetatable({}, { __mode = "k" })

-- targets_of(ctx) -> resolve_targets of the run's primary, secondaries and password_secret parameters
-- Worked out once per run and kept out of ctx.state, which is journaled to
-- disk: a conninfo may hold a password.
function M.targets_of(ctx)
    if not run_targets[ctx] then
        run_targets[ctx] = M.resolve_targets {
            primary = ctx.params.primary,
            secondaries = ctx.params.secondaries,
            password_secret = ctx.params.password_secret,
        }
    end
    return run_targets[ctx]
end

-- resolve_secondaries({conninfo...}|nil, password_secret) -> {{label=, spec=, params=}, ...}
-- The given conninfos, or the secondary regions' RDS instances.
function M.resolve_secondaries(list, password_secret)
    local out = {}
    if list and #list > 0 then
        for i, text in ipairs(list) do
            out[i] = conninfo_target(text)
        end
    else
        for i, region in ipairs(M.SECONDARY_REGIONS) do
            out[i] = rds_target(region, password_secret or M.PASSWORD_SECRET)
        end
    end
    return out
end

-- validate_conninfos(values, names) -> nil, or a message naming the bad one.
-- For a playbook's validate: runs before the run starts (and before its
-- parameters are shown), so a password inside a conninfo is registered as
-- a secret before anything could print it, and a malformed one is a usage
-- error (exit 2) rather than a failed step.
function M.validate_conninfos(values, names)
    for _, name in ipairs(names) do
        local value = values[name]
        local list = type(value) == "table" and value or { value }
        for _, text in ipairs(list) do
            if type(text) == "string" and text ~= "" then
                local ok, err = pcall(sql.parse_conninfo, text)
                if not ok then
                    return string.format("%s: %s", name, type(err) == "table" and err.message or tostring(err))
                end
            end
        end
    end
    return nil
end

-- The subscription's CONNECTION literal for reaching the primary.
function M.primary_connection(primary)
    local params = {}
    for k, v in pairs(primary.params) do
        if k ~= "application_name" then params[k] = v end
    end
    return sql.subscription_connection(params)
end

-- Following a new primary ----------------------------------------------------

-- settings(conn, names) -> {name = "value"} from pg_settings (names it does not know are absent)
function M.settings(conn, names)
    local out = {}
    for _, row in
        ipairs(
            conn:query(
                "/* atlas:settings */ SELECT name, setting FROM pg_settings WHERE name = ANY($1::text[]) ORDER BY name",
                "{" .. table.concat(names, ",") .. "}"
            )
        )
    do
        out[row.name] = row.setting
    end
    return out
end

-- in_recovery(conn) -> true while the server is a standby
function M.in_recovery(conn)
    return conn:query_one("/* atlas:in_recovery */ SELECT pg_is_in_recovery() AS in_recovery").in_recovery
end

-- ensure_logical_slot(conn, name) -> true when created, false when it existed
function M.ensure_logical_slot(conn, name)
    for _, slot in ipairs(M.slot_status(conn)) do
        if slot.slot_name == name then return false end
    end
    conn:query {
        sql = [[/* atlas:create_slot */ SELECT slot_name::text AS slot_name, lsn::text AS lsn
FROM pg_create_logical_replication_slot($1, 'pgoutput')]],
        params = { name },
        mutates = true,
    }
    return true
end

-- drop_slot(conn, name): the slot on the publisher (it must be inactive)
function M.drop_slot(conn, name)
    conn:query {
        sql = "/* atlas:drop_slot */ SELECT pg_drop_replication_slot($1)",
        params = { name },
        mutates = true,
    }
end

-- point_subscription(conn, name, connection) -> the statement run.
-- connection is the SQL literal from sql.subscription_connection. The apply
-- worker restarts and streams from the slot of the same name at the new
-- publisher, from that slot's position.
function M.point_subscription(conn, name, connection)
    local statement = string.format("ALTER SUBSCRIPTION %s CONNECTION %s", sql.quote_ident(name), connection)
    conn:query { sql = statement, mutates = true }
    return statement
end

-- drop_subscription(conn, name): detaches the subscription from its slot
-- first, so dropping it never needs the publisher it pointed at.
function M.drop_subscription(conn, name)
    local quoted = sql.quote_ident(name)
    for _, statement in ipairs {
        "ALTER SUBSCRIPTION " .. quoted .. " DISABLE",
        "ALTER SUBSCRIPTION " .. quoted .. " SET (slot_name = NONE)",
        "DROP SUBSCRIPTION " .. quoted,
    } do
        conn:query { sql = statement, mutates = true }
    end
end

-- truncate(conn, tables): empties the tables in one statement (the global
-- tables reference each other), never CASCADE beyond them.
function M.truncate(conn, tables)
    local names = {}
    for i, t in ipairs(tables) do
        names[i] = quote_table(t)
    end
    conn:query { sql = "TRUNCATE " .. table.concat(names, ", "), mutates = true }
end

-- table_summary(conn, table) -> {table_name=, row_count=, checksum=}
-- The checksum is the md5 of the sorted md5s of every row's text form, in
-- UTC, so two servers with the same rows give the same value.
function M.table_summary(conn, name)
    return conn:query_one(
        [[/* atlas:table_summary */ SELECT $1::text AS table_name,
  (xpath('/row/c/text()', x))[1]::text::bigint AS row_count,
  coalesce((xpath('/row/h/text()', x))[1]::text, '') AS checksum
FROM query_to_xml(format('SELECT count(*) AS c, md5(coalesce(string_agg(md5(t::text), '''' ORDER BY md5(t::text)), '''')) AS h FROM %s t',
  $1::regclass), false, true, '') AS x]],
        name
    )
end

-- compare_tables(a, b, tables) -> list of {table=, a_rows=, b_rows=, a_checksum=, b_checksum=, same=}
function M.compare_tables(a, b, tables)
    local out = {}
    for _, conn in ipairs { a, b } do
        conn:exec("SET TimeZone = 'UTC'")
    end
    for i, name in ipairs(tables) do
        local x, y = M.table_summary(a, name), M.table_summary(b, name)
        out[i] = {
            table = name,
            a_rows = x.row_count,
            b_rows = y.row_count,
            a_checksum = x.checksum,
            b_checksum = y.checksum,
            same = x.row_count == y.row_count and x.checksum == y.checksum,
        }
    end
    return out
end

-- owned_sequences(conn, tables) -> {sequence_name, table_name, column_name,
-- last_value (null if never used), max_in_use (null for an empty table)}:
-- the sequences that fill the tables' columns (serial or identity).
function M.owned_sequences(conn, tables)
    return conn:query(
        [[/* atlas:owned_sequences */ SELECT format('%I.%I', sn.nspname, s.relname) AS sequence_name,
  t.relname::text AS table_name, a.attname::text AS column_name, ps.last_value,
  (xpath('/row/m/text()', query_to_xml(format('SELECT max(%I) AS m FROM %I.%I', a.attname, n.nspname, t.relname),
    false, true, '')))[1]::text::bigint AS max_in_use
FROM pg_depend d
JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
JOIN pg_namespace sn ON sn.oid = s.relnamespace
JOIN pg_class t ON t.oid = d.refobjid
JOIN pg_namespace n ON n.oid = t.relnamespace
JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
LEFT JOIN pg_sequences ps ON ps.schemaname = sn.nspname AND ps.sequencename = s.relname
WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
  AND t.relname = ANY($1::text[])
ORDER BY 1]],
        "{" .. table.concat(tables, ",") .. "}"
    )
end

-- set_sequence(conn, name, value): nextval returns value + 1 afterwards
function M.set_sequence(conn, name, value)
    conn:query {
        sql = "/* atlas:setval */ SELECT setval($1::regclass, $2::bigint, true) AS setval",
        params = { name, value },
        mutates = true,
    }
end

-- Assessment ---------------------------------------------------------------

-- assess{slots=, subscribers={{label=, subscriptions=}}, long_transactions=,
--        max_lag_seconds=10, warn_lag_bytes=, expected_subscription=} -> problems
-- problems: list of {severity="critical"|"warning", message=}
function M.assess(input)
    local problems = {}
    local function add(severity, fmt, ...)
        problems[#problems + 1] = { severity = severity, message = string.format(fmt, ...) }
    end
    local max_lag = input.max_lag_seconds or 10
    local slots_by_name = {}
    for _, slot in ipairs(input.slots or {}) do
        slots_by_name[slot.slot_name] = slot
        if slot.wal_status == "lost" then
            add(
                "critical",
                "slot %s has lost required WAL (wal_status=lost): the subscriber must be re-synced",
                slot.slot_name
            )
        elseif slot.wal_status == "unreserved" then
            add("warning", "slot %s is about to lose WAL (wal_status=unreserved)", slot.slot_name)
        end
        if not slot.active then
            add(
                "critical",
                "slot %s is inactive (no subscriber connected), %s bytes behind",
                slot.slot_name,
                tostring(slot.lag_bytes)
            )
        elseif present(slot.lag_seconds) and slot.lag_seconds > max_lag then
            add("critical", "slot %s lags %.1f s (over %g s)", slot.slot_name, slot.lag_seconds, max_lag)
        end
        if input.warn_lag_bytes and present(slot.lag_bytes) and slot.lag_bytes > input.warn_lag_bytes then
            add("warning", "slot %s is %d bytes behind (over %d)", slot.slot_name, slot.lag_bytes, input.warn_lag_bytes)
        end
    end
    for _, subscriber in ipairs(input.subscribers or {}) do
        local found = false
        for _, sub in ipairs(subscriber.subscriptions or {}) do
            if input.expected_subscription == nil or sub.subname == input.expected_subscription then
                found = true
                if not sub.enabled then
                    add("critical", "%s: subscription %s is disabled", subscriber.label, sub.subname)
                elseif not present(sub.pid) then
                    add("critical", "%s: subscription %s has no apply worker running", subscriber.label, sub.subname)
                end
                if present(sub.slot_name) and input.slots and not slots_by_name[sub.slot_name] then
                    add(
                        "critical",
                        "%s: slot %s of subscription %s was dropped on the primary",
                        subscriber.label,
                        sub.slot_name,
                        sub.subname
                    )
                end
            end
        end
        if not found and input.expected_subscription then
            add("critical", "%s: subscription %s does not exist", subscriber.label, input.expected_subscription)
        end
    end
    for _, tx in ipairs(input.long_transactions or {}) do
        add(
            "warning",
            "transaction of pid %d (%s, %s) open for %.0f s",
            tx.pid,
            present(tx.usename) and tx.usename or "?",
            present(tx.application_name) and tx.application_name or "",
            tx.xact_seconds
        )
    end
    return problems
end

return M
