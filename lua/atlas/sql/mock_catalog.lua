-- The mock databases' catalog views: the answers to atlas.replication's
-- tagged queries (/* atlas:<name> */), read from the mock world's databases
-- (atlas.mock.db), and the few server functions they call that change
-- something (slots, sequences, terminating sessions). Each answer is
-- (c, params) -> rows | nil, message, sqlstate, where c is the session
-- (atlas.sql.mock).
local json = require "atlas.json"
local util = require "atlas.mock.util"

local M = {}

local null = json.null

-- answers[tag](c, params) -> rows | nil, message, sqlstate
local answers = {}
M.answers = answers

-- The tags whose functions change the server: refused in a read-only
-- transaction, like the DDL.
M.writes = { create_slot = true, drop_slot = true, setval = true, terminate_idle = true }

local function iso(t)
    local whole = math.floor(t)
    return os.date("!%Y-%m-%dT%H:%M:%S", whole) .. string.format(".%06d+00:00", math.floor((t - whole) * 1e6))
end

local function lsn_text(n) return string.format("%X/%X", n // 0x100000000, n % 0x100000000) end

local sorted_keys = util.sorted_keys

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

local function subscription_for_slot(c, slot)
    local subscriber = c.world.db.regions[slot.subscriber]
    for name, sub in pairs(subscriber.subscriptions) do
        if sub.slot_name == slot.name then return name end
    end
    return slot.name
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
            application_name = active and subscription_for_slot(c, slot) or null,
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
    if not c.db.flyway then return nil, 'relation "flyway_schema_history" does not exist', "42P01" end
    local rows = {}
    for i, row in ipairs(c.db.flyway) do
        local copy = util.copy(row)
        if type(copy.installed_on) == "string" then copy.installed_on = copy.installed_on:gsub(" ", "T") end
        rows[i] = copy
    end
    return rows
end

function answers.subscription_origin(c, p)
    local sub = c.db.subscriptions[p[1]]
    if not sub then return {} end
    if tonumber(c.db.settings.server_version_num) < 160000 then
        return nil, 'column "suborigin" does not exist', "42703"
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
        return nil, string.format('replication slot "%s" already exists', name), "42710"
    end
    if c.db.physical_source and c.world.db:follows(c.region, c.db.physical_source) then
        return nil, "logical decoding cannot be used while in recovery", "55000"
    end
    c.db.slots[name] =
        { plugin = "pgoutput", active = true, wal_status = "reserved", inactive_since = c.world.db:now() }
    return { { slot_name = name, lsn = lsn_text(c.world.db:current_lsn(c.region)) } }
end

function answers.drop_slot(c, p)
    local slot = c.db.slots[p[1]]
    if not slot then return nil, string.format('replication slot "%s" does not exist', p[1]), "42704" end
    slot.name = p[1]
    if slot.subscriber and streaming(c, slot) then
        return nil, string.format('replication slot "%s" is active', p[1]), "55006"
    end
    c.db.slots[p[1]] = nil
    return { { pg_drop_replication_slot = "" } }
end

function answers.table_summary(c, p)
    local name = p[1]
    if not c.db.data[name] then
        return nil, string.format('relation "%s" does not exist', tostring(name)), "42P01"
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
    if not seq then return nil, string.format('relation "%s" does not exist', tostring(p[1])), "42P01" end
    seq.last_value = math.tointeger(tonumber(p[2]))
    return { { setval = seq.last_value } }
end

return M
