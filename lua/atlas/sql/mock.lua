-- The mock SQL backend: the same calls as atlas.pq (connect, conninfo_parse,
-- conn:query/exec/notices/info/close), answered from the mock world's
-- databases (atlas.mock.db, world.db).
--
-- It is not a SQL engine. It answers the statements atlas.replication sends
-- (read queries by their /* atlas:<name> */ tag, the publication and
-- subscription DDL by pattern) plus trivial ones (SELECT 1, BEGIN, COMMIT);
-- anything else is an SQL error 0A000 naming the statement, so a playbook
-- that needs more fails loudly in its mock test. Every statement is recorded
-- in world.calls as {module="sql", host=, sql=, params=}.
local runtime = require "atlas.run.runtime"
local json = require "atlas.json"

local M = {}

local null = json.null

local function world()
    local w = runtime.world
    assert(w, "atlas.sql.mock used without a mock world")
    assert(w.db, "the mock world has no database model (atlas.mock.db)")
    return w
end

local function iso(t)
    local whole = math.floor(t)
    return os.date("!%Y-%m-%dT%H:%M:%S", whole) .. string.format(".%06d+00:00", math.floor((t - whole) * 1e6))
end

local function lsn_text(n) return string.format("%X/%X", n // 0x100000000, n % 0x100000000) end

-- libpq's own conninfo parser: a subscription's CONNECTION is read as the
-- server would read it.
M.conninfo_parse = require("atlas.pq").conninfo_parse

-- errors ----------------------------------------------------------------------

local function sql_failure(state, message, fields)
    local e = { sqlstate = state, message = message }
    for k, v in pairs(fields or {}) do
        e[k] = v
    end
    return e
end

-- SQL literal text ('...' or E'...') -> its value
local function unquote_literal(text)
    local escaped, body = text:match("^([Ee]?)'(.*)'$")
    if not body then return nil end
    body = body:gsub("''", "'")
    if escaped ~= "" then body = body:gsub("\\(.)", "%1") end
    return body
end

local function unquote_ident(text)
    local inner = text:match('^%s*"(.*)"%s*$')
    if inner then return (inner:gsub('""', '"')) end
    return text:match("^%s*(.-)%s*$"):lower()
end

local function ident_list(text)
    local out = {}
    for item in text:gmatch("[^,]+") do
        local schema, name = item:match("^%s*(.-)%.(.-)%s*$")
        if schema and not item:match('^%s*"[^"]*%.[^"]*"%s*$') then
            local s, n = unquote_ident(schema), unquote_ident(name)
            out[#out + 1] = s == "public" and n or (s .. "." .. n)
        else
            out[#out + 1] = unquote_ident(item)
        end
    end
    return out
end

-- The connection -------------------------------------------------------------

local Conn = {}
Conn.__index = Conn
Conn.__name = "atlas.sql.mock.conn"

local answers = {}
local WRITING_TAGS

function answers.publication(c, p)
    local pub = c.db.publications[p[1]]
    if not pub then return {} end
    return {
        {
            pubname = p[1],
            puballtables = pub.all_tables or false,
            pubinsert = true,
            pubupdate = true,
            pubdelete = true,
        },
    }
end

function answers.publication_tables(c, p)
    local pub = c.db.publications[p[1]]
    local rows = {}
    if pub then
        local names = {}
        for _, t in ipairs(pub.tables) do
            names[#names + 1] = t
        end
        table.sort(names)
        for _, t in ipairs(names) do
            local schema, name = t:match("^(.-)%.(.*)$")
            rows[#rows + 1] = { schemaname = schema or "public", tablename = name or t }
        end
    end
    return rows
end

local function subscription_row(c, name, sub)
    return {
        subname = name,
        enabled = sub.enabled,
        slot_name = sub.slot_name or null,
        publications = table.concat(sub.publications, ","),
    }
end

function answers.subscription(c, p)
    local sub = c.db.subscriptions[p[1]]
    if not sub then return {} end
    return { subscription_row(c, p[1], sub) }
end

local function util_copy(t)
    local out = {}
    for k, v in pairs(t) do
        out[k] = v
    end
    return out
end

local function sorted_keys(t)
    local keys = {}
    for k in pairs(t) do
        keys[#keys + 1] = k
    end
    table.sort(keys)
    return keys
end

-- Whether the subscriber's apply worker is connected to its slot now.
local function streaming(c, slot)
    if not slot.subscriber then return false end
    local db = c.world.db
    local subscriber = db.regions[slot.subscriber]
    if not db:reachable(slot.subscriber) then return false end
    for _, sub in pairs(subscriber.subscriptions) do
        if sub.slot_name == slot.name and sub.enabled and sub.worker and (sub.primary or "eu-west-1") == c.region then
            return true
        end
    end
    return false
end

local function slot_rows(c)
    local rows = {}
    local db = c.world.db
    local current = db:current_lsn(c.region)
    for _, name in ipairs(sorted_keys(c.db.slots)) do
        local slot = c.db.slots[name]
        slot.name = name
        local active = slot.active ~= false and streaming(c, slot)
        local lag = slot.subscriber and db:lag(slot.subscriber) or 0
        local lag_bytes = slot.subscriber and db:lag_bytes(slot.subscriber) or 0
        if not active then
            -- Nothing confirms WAL while no subscriber is connected.
            lag_bytes = lag_bytes
                + math.floor((slot.inactive_since and (db:now() - slot.inactive_since) or 0) * c.db.bytes_per_second)
        end
        local row = {
            slot_name = name,
            plugin = slot.plugin or "pgoutput",
            slot_type = "logical",
            database = "atlas",
            active = active,
            pid = active and (slot.pid or 30000 + #name) or null,
            wal_status = slot.wal_status or "reserved",
            restart_lsn = lsn_text(current - lag_bytes - 4096),
            confirmed_flush_lsn = lsn_text(current - lag_bytes),
            lag_bytes = lag_bytes,
            state = active and "streaming" or null,
            client_addr = active and string.format("10.%d.0.25/32", #slot.subscriber) or null,
            application_name = active and M.subscription_for_slot(c, slot) or null,
            sent_lsn = active and lsn_text(current) or null,
            replay_lsn = active and lsn_text(current - lag_bytes) or null,
            replay_lag_bytes = active and lag_bytes or null,
            write_lag_seconds = active and lag or null,
            flush_lag_seconds = active and lag or null,
            replay_lag_seconds = active and lag or null,
        }
        rows[#rows + 1] = row
    end
    return rows
end

function M.subscription_for_slot(c, slot)
    local subscriber = c.world.db.regions[slot.subscriber]
    for name, sub in pairs(subscriber.subscriptions) do
        if sub.slot_name == slot.name then return name end
    end
    return slot.name
end

function answers.slot_status(c) return slot_rows(c) end

-- The mock databases have no functions of their own.
function answers.user_functions() return {} end

function answers.stat_replication(c)
    local rows = {}
    for _, slot in ipairs(slot_rows(c)) do
        if slot.active then
            rows[#rows + 1] = {
                pid = slot.pid,
                usename = "atlas_admin",
                application_name = slot.application_name,
                client_addr = slot.client_addr,
                state = "streaming",
                sync_state = "async",
                sent_lsn = slot.sent_lsn,
                write_lsn = slot.replay_lsn,
                flush_lsn = slot.replay_lsn,
                replay_lsn = slot.replay_lsn,
                lag_bytes = slot.lag_bytes,
                lag_seconds = slot.replay_lag_seconds,
            }
        end
    end
    return rows
end

function answers.subscription_status(c)
    local rows = {}
    local db = c.world.db
    for _, name in ipairs(sorted_keys(c.db.subscriptions)) do
        local sub = c.db.subscriptions[name]
        local primary = db.regions[sub.primary or "eu-west-1"]
        local slot = primary.slots[sub.slot_name or ""]
        local running = sub.enabled and sub.worker and slot ~= nil and db:reachable(sub.primary or "eu-west-1")
        local lag = db:lag(c.region)
        local received = db:current_lsn(sub.primary or "eu-west-1") - db:lag_bytes(c.region)
        rows[#rows + 1] = {
            subname = name,
            enabled = sub.enabled,
            slot_name = sub.slot_name or null,
            publications = table.concat(sub.publications, ","),
            pid = running and (sub.pid or 40000 + 10 * #c.region) or null,
            received_lsn = running and lsn_text(received) or null,
            latest_end_lsn = running and lsn_text(received) or null,
            last_msg_receipt_time = running and iso(db:now() - 0.2) or null,
            latest_end_time = running and iso(db:now() - lag) or null,
            seconds_since_message = running and 0.2 or null,
            tables_total = sub.tables_total or 0,
            tables_ready = sub.tables_ready or 0,
        }
    end
    return rows
end

local function session_row(s)
    return {
        pid = s.pid,
        usename = s.usename or null,
        application_name = s.application_name or "",
        client_addr = s.client_addr or null,
        state = s.state or null,
        backend_type = "client backend",
        xact_seconds = s.xact_seconds or null,
        idle_seconds = s.state_seconds or 0,
        query = s.query or "",
    }
end

function answers.long_transactions(c, p)
    local rows = {}
    for _, s in ipairs(c.db.sessions) do
        if s.xact_seconds and s.xact_seconds > (tonumber(p[1]) or 0) then rows[#rows + 1] = session_row(s) end
    end
    table.sort(rows, function(a, b) return a.xact_seconds > b.xact_seconds end)
    return rows
end

function answers.idle_in_transaction(c, p)
    local rows = {}
    for _, s in ipairs(c.db.sessions) do
        if s.state and s.state:find("^idle in transaction") and (s.state_seconds or 0) > (tonumber(p[1]) or 0) then
            rows[#rows + 1] = session_row(s)
        end
    end
    table.sort(rows, function(a, b) return a.idle_seconds > b.idle_seconds end)
    return rows
end

local function idle_longer(s, seconds)
    return s.state
        and (s.state == "idle" or s.state:find("^idle in transaction"))
        and (s.state_seconds or 0) > (tonumber(seconds) or 0)
end

function answers.idle_sessions(c, p)
    local rows = {}
    for _, s in ipairs(c.db.sessions) do
        if idle_longer(s, p[1]) then rows[#rows + 1] = session_row(s) end
    end
    table.sort(rows, function(a, b) return a.idle_seconds > b.idle_seconds end)
    return rows
end

-- pg_terminate_backend on the listed pids that are still idle: the session
-- leaves pg_stat_activity.
function answers.terminate_idle(c, p)
    local wanted = {}
    for pid in tostring(p[1]):gmatch("%d+") do
        wanted[tonumber(pid)] = true
    end
    local rows, kept = {}, {}
    for _, s in ipairs(c.db.sessions) do
        if wanted[s.pid] and idle_longer(s, p[2]) then
            rows[#rows + 1] = { pid = s.pid, state = s.state, terminated = true }
        else
            kept[#kept + 1] = s
        end
    end
    c.db.sessions = kept
    table.sort(rows, function(a, b) return a.pid < b.pid end)
    return rows
end

function answers.connections_by_state(c)
    local counts = {}
    for _, s in ipairs(c.db.sessions) do
        local state = s.state or "unknown"
        counts[state] = (counts[state] or 0) + 1
    end
    local rows = {}
    for _, state in ipairs(sorted_keys(counts)) do
        rows[#rows + 1] = { state = state, count = counts[state] }
    end
    table.sort(rows, function(a, b)
        if a.count ~= b.count then return a.count > b.count end
        return a.state < b.state
    end)
    return rows
end

function answers.connections_by_client(c)
    local groups, order = {}, {}
    for _, s in ipairs(c.db.sessions) do
        local addr = s.client_addr and s.client_addr:gsub("/%d+$", "") or "local"
        local key = table.concat({ s.application_name or "", s.usename or "", addr }, "\0")
        local g = groups[key]
        if not g then
            g = {
                application_name = s.application_name or "",
                usename = s.usename or "",
                client_addr = addr,
                total = 0,
                active = 0,
                idle = 0,
                idle_in_transaction = 0,
            }
            groups[key] = g
            order[#order + 1] = g
        end
        g.total = g.total + 1
        if s.state == "active" then
            g.active = g.active + 1
        elseif s.state == "idle" then
            g.idle = g.idle + 1
        elseif s.state and s.state:find("^idle in transaction") then
            g.idle_in_transaction = g.idle_in_transaction + 1
        end
    end
    table.sort(order, function(a, b)
        if a.total ~= b.total then return a.total > b.total end
        return a.application_name .. a.usename .. a.client_addr < b.application_name .. b.usename .. b.client_addr
    end)
    local rows = {}
    for i = 1, math.min(20, #order) do
        rows[i] = order[i]
    end
    return rows
end

function answers.connection_limits(c) return { { max_connections = c.db.max_connections, reserved = c.db.reserved } } end

function answers.flyway_history(c)
    if not c.db.flyway then return nil, sql_failure("42P01", 'relation "flyway_schema_history" does not exist') end
    local rows = {}
    for i, row in ipairs(c.db.flyway) do
        local copy = {}
        for k, v in pairs(row) do
            copy[k] = v
        end
        if type(copy.installed_on) == "string" then copy.installed_on = copy.installed_on:gsub(" ", "T") end
        rows[i] = copy
    end
    return rows
end

function answers.subscription_origin(c, p)
    local sub = c.db.subscriptions[p[1]]
    if not sub then return {} end
    if tonumber(c.db.settings.server_version_num) < 160000 then
        return nil, sql_failure("42703", 'column "suborigin" does not exist')
    end
    return { { suborigin = sub.origin or "any" } }
end

function answers.settings(c, p)
    local rows = {}
    for name in tostring(p[1]):gmatch("[^{},]+") do
        if c.db.settings[name] then rows[#rows + 1] = { name = name, setting = c.db.settings[name] } end
    end
    table.sort(rows, function(a, b) return a.name < b.name end)
    return rows
end

function answers.in_recovery(c)
    return { { in_recovery = c.db.physical_source ~= nil and c.world.db:follows(c.region, c.db.physical_source) } }
end

function answers.create_slot(c, p)
    local name = p[1]
    if c.db.slots[name] then
        return nil, sql_failure("42710", string.format('replication slot "%s" already exists', name))
    end
    if c.db.physical_source and c.world.db:follows(c.region, c.db.physical_source) then
        return nil, sql_failure("55000", "logical decoding cannot be used while in recovery")
    end
    c.db.slots[name] =
        { plugin = "pgoutput", active = true, wal_status = "reserved", inactive_since = c.world.db:now() }
    return { { slot_name = name, lsn = lsn_text(c.world.db:current_lsn(c.region)) } }
end

function answers.drop_slot(c, p)
    local slot = c.db.slots[p[1]]
    if not slot then return nil, sql_failure("42704", string.format('replication slot "%s" does not exist', p[1])) end
    if
        slot.subscriber and streaming(
            c,
            (function()
                slot.name = p[1]
                return slot
            end)()
        )
    then
        return nil, sql_failure("55006", string.format('replication slot "%s" is active', p[1]))
    end
    c.db.slots[p[1]] = nil
    return { { pg_drop_replication_slot = "" } }
end

function answers.table_summary(c, p)
    local name = p[1]
    if not c.db.data[name] then
        return nil, sql_failure("42P01", string.format('relation "%s" does not exist', tostring(name)))
    end
    local count, checksum = c.world.db:summary(c.region, name)
    return { { table_name = name, row_count = count, checksum = checksum } }
end

function answers.owned_sequences(c, p)
    local wanted = {}
    for name in tostring(p[1]):gmatch("[^{},]+") do
        wanted[name] = true
    end
    local rows = {}
    for _, name in ipairs(sorted_keys(c.db.sequences)) do
        local seq = c.db.sequences[name]
        if wanted[seq.table] then
            rows[#rows + 1] = {
                sequence_name = "public." .. name,
                table_name = seq.table,
                column_name = seq.column,
                last_value = seq.last_value,
                max_in_use = c.db.data[seq.table].max_id,
            }
        end
    end
    return rows
end

function answers.setval(c, p)
    local name = tostring(p[1]):gsub("^public%.", "")
    local seq = c.db.sequences[name]
    if not seq then return nil, sql_failure("42P01", string.format('relation "%s" does not exist', tostring(p[1]))) end
    seq.last_value = math.tointeger(tonumber(p[2]))
    return { { setval = seq.last_value } }
end

-- DDL -----------------------------------------------------------------------

local ddl = {}

ddl[#ddl + 1] = {
    "^CREATE PUBLICATION%s+(.-)%s+FOR TABLE%s+(.-)%s*;?%s*$",
    function(c, name, list)
        name = unquote_ident(name)
        if c.db.publications[name] then
            return nil, sql_failure("42710", string.format('publication "%s" already exists', name))
        end
        local tables = ident_list(list)
        for _, t in ipairs(tables) do
            if not c.db.tables[t] then
                return nil, sql_failure("42P01", string.format('relation "%s" does not exist', t))
            end
        end
        c.db.publications[name] = { tables = tables, all_tables = false }
        return {}, "CREATE PUBLICATION"
    end,
}

ddl[#ddl + 1] = {
    "^ALTER PUBLICATION%s+(.-)%s+ADD TABLE%s+(.-)%s*;?%s*$",
    function(c, name, list)
        name = unquote_ident(name)
        local pub = c.db.publications[name]
        if not pub then return nil, sql_failure("42704", string.format('publication "%s" does not exist', name)) end
        for _, t in ipairs(ident_list(list)) do
            if not c.db.tables[t] then
                return nil, sql_failure("42P01", string.format('relation "%s" does not exist', t))
            end
            pub.tables[#pub.tables + 1] = t
        end
        return {}, "ALTER PUBLICATION"
    end,
}

local function parse_with(text)
    local options = {}
    for item in (text or ""):gmatch("[^,]+") do
        local k, v = item:match("^%s*([%w_]+)%s*=%s*(.-)%s*$")
        if k then options[k:lower()] = unquote_literal(v) or v:lower() end
    end
    return options
end

ddl[#ddl + 1] = {
    "^CREATE SUBSCRIPTION%s+(.-)%s+CONNECTION%s+([Ee]?'.-')%s+PUBLICATION%s+(.-)%s+WITH%s*%((.*)%)%s*;?%s*$",
    function(c, name, connection, publication, with)
        name = unquote_ident(name)
        if c.db.subscriptions[name] then
            return nil, sql_failure("42710", string.format('subscription "%s" already exists', name))
        end
        local conninfo = unquote_literal(connection)
        local params, message = M.conninfo_parse(conninfo or "")
        if not params then return nil, sql_failure("42601", "invalid connection string syntax: " .. message) end
        local w, db = c.world, c.world.db
        local primary = db:region_of(params.host)
        if not primary then
            return nil,
                sql_failure(
                    "08001",
                    string.format(
                        'could not connect to the publisher: could not translate host name "%s" to address',
                        tostring(params.host)
                    )
                )
        end
        if not db:reachable(primary) then
            return nil, sql_failure("08001", "could not connect to the publisher: connection timed out")
        end
        if params.password ~= w.master_password then
            return nil,
                sql_failure(
                    "08001",
                    string.format(
                        'could not connect to the publisher: FATAL:  password authentication failed for user "%s"',
                        tostring(params.user)
                    )
                )
        end
        local options = parse_with(with)
        if options.origin and tonumber(c.db.settings.server_version_num) < 160000 then
            return nil, sql_failure("42601", 'unrecognized subscription parameter: "origin"')
        end
        local slot_name = options.slot_name or name
        local pubs = ident_list(publication)
        if options.create_slot ~= "false" then
            if db.regions[primary].slots[slot_name] then
                return nil,
                    sql_failure(
                        "42710",
                        string.format(
                            'could not create replication slot "%s": ERROR:  replication slot "%s" already exists',
                            slot_name,
                            slot_name
                        )
                    )
            end
            db.regions[primary].slots[slot_name] =
                { plugin = "pgoutput", active = true, subscriber = c.region, wal_status = "reserved" }
        end
        local total = 0
        for _, pub_name in ipairs(pubs) do
            local pub = db.regions[primary].publications[pub_name]
            total = total + (pub and #pub.tables or 0)
        end
        local sub = {
            enabled = options.enabled ~= "false",
            slot_name = slot_name,
            publications = pubs,
            primary = primary,
            worker = true,
            tables_total = total,
            tables_ready = options.copy_data == "false" and total or 0,
        }
        c.db.subscriptions[name] = sub
        db:set_lag(c.region, 0)
        sub.origin = options.origin
        if sub.tables_ready < total then
            local subscriber = c.db
            w:after(require("atlas.mock.db").INITIAL_COPY_SECONDS, function()
                -- The initial copy brings the publisher's rows (not its
                -- sequences). Into a table that already has rows it fails
                -- on the first duplicate key and the tablesync worker
                -- retries for ever: that table never becomes ready.
                local ready = 0
                for name, data in pairs(db.regions[primary].data) do
                    if subscriber.data[name].count == 0 then
                        subscriber.data[name] = util_copy(data)
                        ready = ready + 1
                    end
                end
                sub.tables_ready = math.min(total, ready)
            end)
        end
        c._notices[#c._notices + 1] = string.format('NOTICE: created replication slot "%s" on publisher', slot_name)
        return {}, "CREATE SUBSCRIPTION"
    end,
}

local function find_subscription(c, name)
    name = unquote_ident(name)
    local sub = c.db.subscriptions[name]
    if not sub then return nil, name, sql_failure("42704", string.format('subscription "%s" does not exist', name)) end
    return sub, name
end

-- The node a subscription CONNECTION reaches, or nil and the failure the
-- apply worker (or CREATE SUBSCRIPTION) would report.
local function publisher_node(c, connection)
    local conninfo = unquote_literal(connection)
    local params, message = M.conninfo_parse(conninfo or "")
    if not params then return nil, sql_failure("42601", "invalid connection string syntax: " .. message) end
    local db = c.world.db
    local node = db:region_of(params.host)
    if not node then
        return nil,
            sql_failure(
                "08001",
                string.format(
                    'could not connect to the publisher: could not translate host name "%s" to address',
                    tostring(params.host)
                )
            )
    end
    if not db:reachable(node) then
        return nil, sql_failure("08001", "could not connect to the publisher: connection timed out")
    end
    if params.password ~= c.world.master_password then
        return nil,
            sql_failure(
                "08001",
                string.format(
                    'could not connect to the publisher: FATAL:  password authentication failed for user "%s"',
                    tostring(params.user)
                )
            )
    end
    return node
end

-- ALTER SUBSCRIPTION ... CONNECTION: the apply worker restarts against the
-- new publisher and streams from the slot of the same name there.
ddl[#ddl + 1] = {
    "^ALTER SUBSCRIPTION%s+(.-)%s+CONNECTION%s+([Ee]?'.-')%s*;?%s*$",
    function(c, name, connection)
        local sub, _, failure = find_subscription(c, name)
        if not sub then return nil, failure end
        local node, why = publisher_node(c, connection)
        if not node then return nil, why end
        sub.primary = node
        local slot = c.world.db.regions[node].slots[sub.slot_name or ""]
        if slot then
            slot.subscriber = c.region
            slot.inactive_since = nil
            sub.worker = true
            c.world.db:set_lag(c.region, 0)
        else
            -- The worker keeps failing: 'replication slot "..." does not exist'.
            sub.worker = false
        end
        return {}, "ALTER SUBSCRIPTION"
    end,
}

ddl[#ddl + 1] = {
    "^ALTER SUBSCRIPTION%s+(.-)%s+SET%s*%(%s*origin%s*=%s*'?(%a+)'?%s*%)%s*;?%s*$",
    function(c, name, origin)
        local sub, _, failure = find_subscription(c, name)
        if not sub then return nil, failure end
        if tonumber(c.db.settings.server_version_num) < 160000 then
            return nil, sql_failure("42601", 'unrecognized subscription parameter: "origin"')
        end
        sub.origin = origin:lower()
        return {}, "ALTER SUBSCRIPTION"
    end,
}

ddl[#ddl + 1] = {
    "^ALTER SUBSCRIPTION%s+(.-)%s+SET%s*%(%s*slot_name%s*=%s*NONE%s*%)%s*;?%s*$",
    function(c, name)
        local sub, _, failure = find_subscription(c, name)
        if not sub then return nil, failure end
        if sub.enabled then return nil, sql_failure("55000", "cannot set slot_name = NONE for enabled subscription") end
        sub.slot_name = nil
        return {}, "ALTER SUBSCRIPTION"
    end,
}

ddl[#ddl + 1] = {
    "^DROP SUBSCRIPTION%s+(.-)%s*;?%s*$",
    function(c, name)
        local sub, key, failure = find_subscription(c, name)
        if not sub then return nil, failure end
        if sub.slot_name then
            -- PostgreSQL drops the slot on the publisher too, and fails
            -- when it cannot reach it.
            local node = c.world.db.regions[sub.primary or "eu-west-1"]
            if not c.world.db:reachable(sub.primary or "eu-west-1") then
                return nil,
                    sql_failure("08006", "could not connect to publisher when attempting to drop replication slot")
            end
            node.slots[sub.slot_name] = nil
        end
        c.db.subscriptions[key] = nil
        return {}, "DROP SUBSCRIPTION"
    end,
}

ddl[#ddl + 1] = {
    "^DROP TABLE%s+(.-)%s*;?%s*$",
    function(c, rest)
        local if_exists, name = rest:match("^(IF EXISTS%s+)(.-)$")
        name = unquote_ident(name or rest)
        if not c.db.tables[name] then
            if if_exists then return {}, "DROP TABLE" end
            return nil, sql_failure("42P01", string.format('table "%s" does not exist', name))
        end
        if c.db.data[name] then
            return nil,
                sql_failure("2BP01", string.format("cannot drop table %s because other objects depend on it", name))
        end
        c.db.tables[name] = nil
        if name == "flyway_schema_history" then c.db.flyway = nil end
        return {}, "DROP TABLE"
    end,
}

ddl[#ddl + 1] = {
    "^DELETE FROM%s+flyway_schema_history%s+WHERE%s+version%s*=%s*'([^']*)'%s*;?%s*$",
    function(c, version)
        if not c.db.flyway then return nil, sql_failure("42P01", 'relation "flyway_schema_history" does not exist') end
        local kept, n = {}, 0
        for _, row in ipairs(c.db.flyway) do
            if row.version == version then
                n = n + 1
            else
                kept[#kept + 1] = row
            end
        end
        c.db.flyway = kept
        return {}, "DELETE " .. n
    end,
}

ddl[#ddl + 1] = {
    "^TRUNCATE%s+(.-)%s*;?%s*$",
    function(c, list)
        local names = ident_list(list:gsub("^TABLE%s+", ""))
        for _, t in ipairs(names) do
            if not c.db.data[t] then
                return nil, sql_failure("42P01", string.format('relation "%s" does not exist', t))
            end
        end
        for _, t in ipairs(names) do
            local d = c.db.data[t]
            c.db.data[t] = { count = 0, version = d.version + 1, max_id = 0 }
        end
        return {}, "TRUNCATE TABLE"
    end,
}

ddl[#ddl + 1] = {
    "^ALTER SUBSCRIPTION%s+(.-)%s+(%a+)%s*;?%s*$",
    function(c, name, action)
        name = unquote_ident(name)
        local sub = c.db.subscriptions[name]
        if not sub then return nil, sql_failure("42704", string.format('subscription "%s" does not exist', name)) end
        action = action:upper()
        if action ~= "ENABLE" and action ~= "DISABLE" then
            return nil, sql_failure("0A000", "the mock database only does ALTER SUBSCRIPTION ENABLE/DISABLE")
        end
        sub.enabled = action == "ENABLE"
        return {}, "ALTER SUBSCRIPTION"
    end,
}

-- Transactions and read-only mode, as PostgreSQL has them: a session
-- default (default_transaction_read_only, from the connect options or SET)
-- and the open transaction's own mode. The mock's writes (the DDL above)
-- are refused in a read-only transaction with SQLSTATE 25006, so a dry run
-- reports them as changes it would make, as against a real server.
local function read_only(c)
    if c.txn then return c.txn.read_only end
    return c.default_read_only
end

local function on_off(word)
    word = word:lower():gsub("'", "")
    if word == "on" or word == "true" or word == "1" or word == "yes" then return true end
    if word == "off" or word == "false" or word == "0" or word == "no" then return false end
    return nil
end

local transaction_control = {
    {
        "^BEGIN(.*)$",
        "BEGIN",
    },
    {
        "^START%s+TRANSACTION(.*)$",
        "START TRANSACTION",
    },
}

-- Answers BEGIN/COMMIT/ROLLBACK/SET of the transaction mode: rows, command,
-- or nil when the statement is none of those.
local function transaction_statement(c, upper)
    for _, entry in ipairs(transaction_control) do
        local rest = upper:match(entry[1])
        if rest and (rest == "" or rest:match("^%s")) then
            rest = rest:gsub("^%s*TRANSACTION", ""):gsub("^%s*WORK", "")
            if not c.txn then
                local mode = read_only(c)
                if rest:match("READ%s+ONLY") then
                    mode = true
                elseif rest:match("READ%s+WRITE") then
                    mode = false
                end
                c.txn = { read_only = mode }
            else
                c._notices[#c._notices + 1] = "WARNING:  there is already a transaction in progress"
            end
            return {}, entry[2]
        end
    end
    if upper == "COMMIT" or upper == "END" or upper == "ROLLBACK" or upper == "ABORT" then
        if not c.txn then c._notices[#c._notices + 1] = "WARNING:  there is no transaction in progress" end
        c.txn = nil
        return {}, (upper == "END" and "COMMIT") or (upper == "ABORT" and "ROLLBACK") or upper
    end
    local value = upper:match("^SET%s+DEFAULT_TRANSACTION_READ_ONLY%s*[=T][O]?%s*(%S+)$")
    if value and on_off(value) ~= nil then
        c.default_read_only = on_off(value)
        return {}, "SET"
    end
    local mode = upper:match("^SET%s+SESSION%s+CHARACTERISTICS%s+AS%s+TRANSACTION%s+READ%s+(%a+)$")
    if mode then
        c.default_read_only = mode == "ONLY"
        return {}, "SET"
    end
    mode = upper:match("^SET%s+TRANSACTION%s+READ%s+(%a+)$")
    if mode then
        if c.txn then c.txn.read_only = mode == "ONLY" end
        return {}, "SET"
    end
    -- Any other setting (search_path, statement_timeout...) changes nothing
    -- the mock answers from.
    if upper:match("^SET%s") or upper:match("^RESET%s") then return {}, upper:match("^%a+") end
    return nil
end

local function strip(statement) return statement:gsub("^%s+", ""):gsub("[%s;]+$", "") end

-- Tagged statements that write (their functions change the server): refused
-- in a read-only transaction like the DDL.
WRITING_TAGS = { create_slot = true, drop_slot = true, setval = true, terminate_idle = true }

-- Answers one statement: rows, command | nil, failure
function M.answer(c, statement, params)
    local tag = statement:match("^%s*/%*%s*atlas:([%w_]+)%s*%*/")
    if tag then
        local answer = answers[tag]
        if not answer then return nil, sql_failure("0A000", "the mock database does not answer atlas:" .. tag) end
        if WRITING_TAGS[tag] and read_only(c) then
            return nil, sql_failure("25006", "cannot execute SELECT " .. tag .. " in a read-only transaction")
        end
        local rows, failure = answer(c, params)
        if not rows then return nil, failure end
        return rows, "SELECT " .. #rows
    end
    local text = strip(statement)
    local upper = text:upper()
    local rows, command = transaction_statement(c, upper)
    if rows then return rows, command end
    if upper:match("^SELECT%s+1$") then return { { ["?column?"] = 1 } }, "SELECT 1" end
    if upper:match("^SET%s+[%w_]+%s*[=T]") then return {}, "SET" end
    for _, entry in ipairs(ddl) do
        local captures = table.pack(text:match(entry[1]))
        if captures[1] then
            if read_only(c) then
                local verb = upper:match("^(%a+%s+%a+)")
                return nil, sql_failure("25006", string.format("cannot execute %s in a read-only transaction", verb))
            end
            return entry[2](c, table.unpack(captures, 1, captures.n))
        end
    end
    return nil, sql_failure("0A000", "the mock database does not answer: " .. text:sub(1, 200))
end

local function info(command, rows)
    local columns = {}
    if rows[1] then
        for k in pairs(rows[1]) do
            columns[#columns + 1] = k
        end
        table.sort(columns)
    end
    return { command = command, rows_affected = #rows, columns = columns }
end

function Conn:_statement(statement, params)
    if not self.region then error("attempt to use a closed connection", 3) end
    local w = self.world
    w.calls[#w.calls + 1] =
        { module = "sql", host = self.host, region = self.region, sql = statement, params = params, t = w:now() }
    if not w.db:reachable(self.region) then
        return nil,
            sql_failure("lost", "server closed the connection unexpectedly", { connection_lost = true })
    end
    local rows, command = M.answer(self, statement, params or {})
    if not rows then
        w.calls[#w.calls].error = command.sqlstate
        return nil, command
    end
    return rows, info(command, rows)
end

-- A statement's result as atlas.pq gives it: rows, info, or nil, message,
-- code, fields.
local function result(rows, info_or_failure)
    if rows then return rows, info_or_failure end
    local f = info_or_failure
    return nil, f.message, f.sqlstate, { connection_lost = f.connection_lost }
end

-- conn:query(sql, params, n, timeout) -> rows, info | nil, err
function Conn:query(statement, params, n)
    local list = {}
    for i = 1, n or (params and #params) or 0 do
        local v = params[i]
        list[i] = v == nil and null or v
    end
    return result(self:_statement(statement, list))
end

-- conn:exec(sql, timeout): each statement in turn, the last one's result
function Conn:exec(statement)
    local rows, last = {}, { command = "", columns = {} }
    for part in statement:gmatch("[^;]+") do
        if part:match("%S") then
            rows, last = self:_statement(part, {})
            if not rows then return result(nil, last) end
        end
    end
    return rows, last
end

function Conn:notices()
    if #self._notices == 0 then return nil end
    local out = self._notices
    self._notices = {}
    return out
end

function Conn:info()
    return {
        host = self.host,
        port = self.port,
        dbname = self.dbname,
        user = self.user,
        server_version = tonumber(self.db.settings.server_version_num),
        backend_pid = self.pid,
        ssl = self.sslmode ~= "disable",
        ok = true,
    }
end

function Conn:quote_ident(s) return require("atlas.pq").quote_ident(s) end

function Conn:quote_literal(s) return require("atlas.pq").quote_literal(s) end

function Conn:close() self.region = nil end

Conn.__close = Conn.close

-- connect(params, timeout) -> conn | nil, message, "connect", {}: libpq
-- names no SQLSTATE for a failed connect, atlas.sql reads the message.
function M.connect(params)
    local w = world()
    local db = w.db
    local host = params.host or params.hostaddr or "localhost"
    w.calls[#w.calls + 1] = { module = "sql", host = host, op = "connect", t = w:now() }
    local function fail(state, message)
        w.calls[#w.calls].error = state
        return nil, message, "connect", {}
    end
    local region = db:region_of(host)
    if not region then
        return fail(
            "08001",
            string.format('could not translate host name "%s" to address: Name or service not known', host)
        )
    end
    if not db:reachable(region) then
        return fail(
            "08001",
            string.format(
                'connection to server at "%s", port %s failed: Connection timed out',
                host,
                params.port or "5432"
            )
        )
    end
    local user = params.user or "atlas_admin"
    if user ~= "atlas_admin" or params.password ~= w.master_password then
        return fail(
            "28P01",
            string.format(
                'connection to server at "%s", port %s failed: FATAL:  password authentication failed for user "%s"',
                host,
                params.port or "5432",
                user
            )
        )
    end
    local c = setmetatable({
        world = w,
        db = db.regions[region],
        region = region,
        host = host,
        port = params.port or "5432",
        dbname = params.dbname or user,
        user = user,
        sslmode = params.sslmode,
        _notices = {},
        pid = db:next_pid(region),
        -- "-c default_transaction_read_only=on" among the connect options
        default_read_only = on_off((params.options or ""):match("default_transaction_read_only%s*=%s*(%S+)") or "off")
            or false,
    }, Conn)
    return c
end

function M.quote_ident(s) return require("atlas.pq").quote_ident(s) end

function M.quote_literal(s) return require("atlas.pq").quote_literal(s) end

return M
