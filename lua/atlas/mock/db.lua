-- The mock world's databases: the three regional PostgreSQL 15 instances
-- as atlas.sql.mock sees them. world.db = db.new(world).
--
-- State, per region R, in db.regions[R] (scenarios and tests may set it):
--   reachable        false: every connection fails (08001), while the RDS
--                    instance that was serving the endpoint when it was set
--                    (db:set_reachable) still does; also false whenever
--                    atlas-production-db-R is not reachable in the RDS model.
--   publications     {[name] = {tables = {"organization", ...}, all_tables = false}}
--   subscriptions    {[name] = {enabled=, slot_name=, publications={...}, primary="eu-west-1",
--                     worker=true|false (apply worker running), tables_total=, tables_ready=}}
--   slots            {[name] = {plugin="pgoutput", active=, subscriber=region|nil,
--                     wal_status="reserved"}}  (on the primary)
--   lag_seconds      this subscriber's replication lag, as the primary's
--                    pg_stat_replication reports it (use db:set_lag)
--   catch_up_rate    seconds of lag recovered per virtual second (0: lag stays)
--   bytes_per_second WAL written per second on the primary: lag_bytes = lag_seconds * this
--   sessions         pg_stat_activity client backends: {{pid=, usename=, application_name=,
--                     client_addr=, state=, state_seconds=, xact_seconds=|nil, query=}, ...}
--   max_connections, reserved   current_setting('max_connections') / superuser_reserved_connections
--   flyway           rows of flyway_schema_history (nil: the table does not exist)
--   tables           {[name] = true}: tables that exist (CREATE PUBLICATION checks them)
--   data             {[table] = {count=, version=, max_id=}}: the global tables' rows as
--                    row count, a version that changes with every write (the checksum
--                    is made from both) and the highest id in use
--   settings         {[name] = "value"}: what pg_settings shows (wal_level, max_wal_senders, ...)
--   sequences        {[name] = {table=, column=, last_value=}}: sequences owned by the
--                    global tables' id columns; writes on a node advance its own only
--                    (logical replication does not carry sequence values)
--
-- Besides the three regions there is one more node, "eu-west-1-replica": the
-- database of the read replica atlas-production-db-eu-west-1-replica, a
-- physical copy of the eu-west-1 primary (same publications and data, no
-- logical slots: PostgreSQL 15 does not copy them). db:write on the primary
-- reaches it while it is a replica, and reaches every subscriber streaming
-- from the node written to.
--
-- Helpers: db:set_lag(region, seconds [, catch_up_rate]), db:lag(region),
-- db:set_reachable(region, bool), db:clear_replication() (no publication, no
-- subscription, no slot: what db_publication_setup starts from),
-- db:drop_slot(name), db:add_sessions(region, {state=, count=, seconds=, usename=,
-- application_name=}), db:region_of(host), db:write(node, table, rows, {to=}),
-- db:summary(node, table) -> count, checksum.
local rds = require "atlas.mock.rds"
local util = require "atlas.mock.util"
local env = require "atlas.env"

local M = {}

local DB = {}
DB.__index = DB

-- The names are the reference environment's (atlas.env), never written again here.
M.PRIMARY = env.PRIMARY_REGION
M.SECONDARIES = env.SECONDARY_REGIONS
M.PUBLICATION = env.PUBLICATION
M.SUBSCRIPTION = env.SUBSCRIPTION
M.TABLES = env.GLOBAL_TABLES
-- RDS's default for db.r6g.xlarge: LEAST(DBInstanceClassMemory / 9531392, 5000).
M.MAX_CONNECTIONS = 3604
M.RESERVED = 3
-- Steady state: the subscribers are a fraction of a second behind.
M.HEALTHY_LAG = 0.4

M.REPLICA_NODE = "eu-west-1-replica"
local REPLICA_ID = env.REPLICA

-- Rows of the global tables in the reference environment.
local INITIAL_ROWS =
    { organization = 120, app_user = 2400, user_preferences = 2300, referential = 250, system_config = 40 }
local SEQUENCES = { organization_id_seq = { "organization", "id" }, app_user_id_seq = { "app_user", "id" } }

local function slot_name_for(region) return M.SUBSCRIPTION .. "_" .. region:gsub("-", "_") end
M.slot_name_for = slot_name_for

local function flyway_rows(world)
    local function at(days_ago) return os.date("!%Y-%m-%d %H:%M:%S", world.start_time - days_ago * 86400) end
    return {
        {
            installed_rank = 1,
            version = "1",
            description = "init",
            type = "SQL",
            script = "V1__init.sql",
            checksum = 1234567,
            installed_by = env.DB_USER,
            installed_on = at(400),
            execution_time = 812,
            success = true,
        },
        {
            installed_rank = 2,
            version = "2",
            description = "user preferences",
            type = "SQL",
            script = "V2__user_preferences.sql",
            checksum = -98765,
            installed_by = env.DB_USER,
            installed_on = at(120),
            execution_time = 95,
            success = true,
        },
        {
            installed_rank = 3,
            version = "3",
            description = "system config",
            type = "SQL",
            script = "V3__system_config.sql",
            checksum = 55501,
            installed_by = env.DB_USER,
            installed_on = at(7),
            execution_time = 40,
            success = true,
        },
    }
end

local function initial_data()
    local data = {}
    for name, count in pairs(INITIAL_ROWS) do
        data[name] = { count = count, version = 1, max_id = count }
    end
    return data
end

local function initial_sequences(fill)
    local out = {}
    for name, owner in pairs(SEQUENCES) do
        out[name] = { table = owner[1], column = owner[2], last_value = fill or INITIAL_ROWS[owner[1]] }
    end
    return out
end

-- The application's pool: two tasks with ten connections each, mostly idle.
local function healthy_sessions(world, region)
    local sessions = {}
    for i = 1, 20 do
        sessions[i] = {
            pid = 10000 + i,
            usename = env.DB_USER,
            application_name = "atlas-crm",
            client_addr = string.format("10.%d.1.%d", #region, 10 + i),
            state = i <= 3 and "active" or "idle",
            state_seconds = i <= 3 and 0.05 or 12,
            xact_seconds = i <= 3 and 0.05 or nil,
            query = i <= 3 and "SELECT ... FROM app_user" or "COMMIT",
        }
    end
    return sessions
end

local function new_region(world, region)
    local tables = {}
    for _, name in ipairs(M.TABLES) do
        tables[name] = true
    end
    tables.flyway_schema_history = true
    return {
        region = region,
        reachable = true,
        publications = {},
        subscriptions = {},
        slots = {},
        lag_seconds = 0,
        catch_up_rate = 0,
        lag_set_at = world.t,
        bytes_per_second = 256 * 1024,
        sessions = healthy_sessions(world, region),
        max_connections = M.MAX_CONNECTIONS,
        reserved = M.RESERVED,
        flyway = flyway_rows(world),
        tables = tables,
        next_pid = 20000,
        lsn = 0x5A000000 + #region * 0x100000,
        data = initial_data(),
        settings = {
            wal_level = "logical",
            max_wal_senders = "10",
            max_replication_slots = "10",
            server_version_num = "150010",
        },
        sequences = initial_sequences(1),
    }
end

-- db.new(world) -> the state of the three databases, replication configured
-- as the reference environment describes it.
function M.new(world)
    local db = setmetatable({ world = world, regions = {} }, DB)
    for _, region in ipairs(util.REGIONS) do
        db.regions[region] = new_region(world, region)
    end
    local primary = db.regions[M.PRIMARY]
    primary.publications[M.PUBLICATION] = { tables = util.copy(M.TABLES), all_tables = false }
    for _, region in ipairs(M.SECONDARIES) do
        local slot = slot_name_for(region)
        primary.slots[slot] = { plugin = "pgoutput", active = true, subscriber = region, wal_status = "reserved" }
        db.regions[region].subscriptions[M.SUBSCRIPTION] = {
            enabled = true,
            slot_name = slot,
            publications = { M.PUBLICATION },
            primary = M.PRIMARY,
            worker = true,
            tables_total = #M.TABLES,
            tables_ready = #M.TABLES,
        }
        db.regions[region].lag_seconds = M.HEALTHY_LAG
    end
    -- Writes happen on the primary, so only its sequences have moved.
    primary.sequences = initial_sequences()
    local replica = new_region(world, M.REPLICA_NODE)
    replica.publications = util.copy(primary.publications)
    replica.sequences = initial_sequences()
    replica.physical_source = M.PRIMARY
    db.regions[M.REPLICA_NODE] = replica
    return db
end

-- The RDS region and instance identifier that serve a node.
function M.location(node)
    if node == M.REPLICA_NODE then return M.PRIMARY, REPLICA_ID end
    return node, env.db_instance(node)
end

function DB:now() return self.world:now() end

function DB:next_pid(region)
    local r = self.regions[region]
    r.next_pid = r.next_pid + 1
    return r.next_pid
end

-- db:set_lag(region, seconds, catch_up_rate?): the subscriber's lag from now
function DB:set_lag(region, seconds, catch_up_rate)
    local r = assert(self.regions[region], "set_lag: unknown region " .. tostring(region))
    r.lag_seconds = seconds
    r.lag_set_at = self:now()
    r.catch_up_rate = catch_up_rate or r.catch_up_rate or 0
end

-- db:lag(region) -> the subscriber's lag in seconds now (0 when no subscription runs)
function DB:lag(region)
    local r = assert(self.regions[region], "lag: unknown region " .. tostring(region))
    local elapsed = self:now() - (r.lag_set_at or self:now())
    return math.max(0, r.lag_seconds - (r.catch_up_rate or 0) * elapsed)
end

function DB:lag_bytes(region)
    local r = self.regions[region]
    return math.floor(self:lag(region) * r.bytes_per_second + 0.5)
end

-- The RDS instance answering at the node's endpoint now.
function DB:instance(node)
    local rds_region, id = M.location(node)
    return rds.instance(self.world, rds_region, id)
end

-- db:set_reachable(region, bool): the database at the region's endpoint stops
-- (or resumes) taking connections. It is tied to the instance serving the
-- endpoint now: after a failover renames another instance to that endpoint,
-- the new one answers.
function DB:set_reachable(region, reachable)
    local r = assert(self.regions[region], "set_reachable: unknown region " .. tostring(region))
    r.reachable = reachable and true or false
    r.unreachable_instance = (not reachable) and self:instance(region) or nil
end

-- Whether a connection to the region's database succeeds now.
function DB:reachable(region)
    local r = self.regions[region]
    if not r then return false end
    if not r.reachable and (r.unreachable_instance == nil or r.unreachable_instance == self:instance(region)) then
        return false
    end
    return rds.instance_reachable(self.world, M.location(region))
end

-- db:clear_replication(): no publication, subscription or slot anywhere,
-- and the secondaries' global tables empty (nothing replicated them yet)
function DB:clear_replication()
    for name, r in pairs(self.regions) do
        r.publications, r.subscriptions, r.slots = {}, {}, {}
        r.lag_seconds = 0
        if name ~= M.PRIMARY and not r.physical_source then
            for table_name, data in pairs(r.data) do
                r.data[table_name] = { count = 0, version = data.version + 1, max_id = 0 }
            end
        end
    end
end

-- db:drop_slot(name): the slot disappears from the primary (a subscriber
-- then has nothing to stream from)
function DB:drop_slot(name)
    local primary = self.regions[M.PRIMARY]
    local slot = primary.slots[name]
    primary.slots[name] = nil
    if slot and slot.subscriber then
        for _, sub in pairs(self.regions[slot.subscriber].subscriptions) do
            if sub.slot_name == name then sub.worker = false end
        end
    end
end

-- db:add_sessions(region, {state=, count=, seconds=, usename=, application_name=, query=})
function DB:add_sessions(region, spec)
    local r = assert(self.regions[region], "add_sessions: unknown region " .. tostring(region))
    for _ = 1, spec.count or 1 do
        local in_tx = spec.state and spec.state:find("in transaction", 1, true)
        r.sessions[#r.sessions + 1] = {
            pid = self:next_pid(region),
            usename = spec.usename or env.DB_USER,
            application_name = spec.application_name or "atlas-crm",
            client_addr = spec.client_addr or "10.0.2.15",
            state = spec.state or "idle",
            state_seconds = spec.seconds or 1,
            xact_seconds = (in_tx or spec.state == "active") and (spec.xact_seconds or spec.seconds or 1) or nil,
            query = spec.query or "SELECT 1",
        }
    end
end

-- db:region_of(host) -> the node whose instance answers at host, or nil
function DB:region_of(host)
    if type(host) ~= "string" then return nil end
    host = host:lower()
    for _, node in ipairs { M.REPLICA_NODE, table.unpack(util.REGIONS) } do
        local inst = self:instance(node)
        if inst and inst.v.Endpoint and inst.v.Endpoint.Address:lower() == host then return node end
    end
    -- Any other name that names the instance (a CNAME, a test's short name).
    for _, region in ipairs(util.REGIONS) do
        if host:find(env.db_instance(region), 1, true) and not host:find(env.REPLICA, 1, true) then
            return region
        end
    end
    return nil
end

-- Whether node `follower` receives what is written on `source` now: a
-- physical replica of it that is still a replica, or a subscriber whose
-- subscription streams from a slot on it.
function DB:follows(follower, source)
    local f = self.regions[follower]
    if f.physical_source == source then
        local inst = self:instance(follower)
        return inst == nil or inst.v.ReadReplicaSourceDBInstanceIdentifier ~= nil
    end
    if not self:reachable(follower) or not self:reachable(source) then return false end
    for _, sub in pairs(f.subscriptions) do
        local slot = sub.primary == source and self.regions[source].slots[sub.slot_name or ""]
        if sub.enabled and sub.worker and slot and slot.subscriber == follower then return true end
    end
    return false
end

-- db:write(node, table, rows, {to = {node...}}): `rows` new rows written on
-- `node` (ids from its sequence when it has one). They reach the nodes that
-- follow it, or exactly the nodes listed in `to` (a scenario's "reached the
-- replica but not the subscribers").
function DB:write(node, name, rows, options)
    local r = assert(self.regions[node], "write: unknown node " .. tostring(node))
    local data = assert(r.data[name], "write: not a global table: " .. tostring(name))
    for _, seq in pairs(r.sequences) do
        if seq.table == name then
            -- A sequence behind the ids in use makes the insert fail, as
            -- PostgreSQL's unique violation would.
            if seq.last_value < data.max_id then
                error(string.format('duplicate key value violates unique constraint "%s_pkey"', name), 2)
            end
            seq.last_value = seq.last_value + rows
        end
    end
    data.count = data.count + rows
    data.max_id = data.max_id + rows
    data.version = data.version + 1
    local reached = {}
    if options and options.to then
        for _, other in ipairs(options.to) do
            reached[other] = true
        end
    else
        for other in pairs(self.regions) do
            if other ~= node and self:follows(other, node) then reached[other] = true end
        end
    end
    for other in pairs(reached) do
        local o = self.regions[other]
        o.data[name] = util.copy(data)
        -- A physical replica replays the sequence too.
        if o.physical_source == node then o.sequences = util.copy(r.sequences) end
    end
end

-- db:summary(node, table) -> row count, checksum (what a compare reads)
function DB:summary(node, name)
    local data = self.regions[node].data[name]
    local h = 5381
    for ch in (name .. ":" .. data.count .. ":" .. data.version):gmatch(".") do
        h = (h * 33 + ch:byte()) % 0x100000000
    end
    return data.count, string.format("%08x%08x%08x%08x", h, (h * 7) % 0x100000000, data.count, data.version)
end

-- The primary's current WAL position, moving with virtual time.
function DB:current_lsn(region)
    local r = self.regions[region]
    return r.lsn + math.floor((self:now() - self.world.start_time) * r.bytes_per_second)
end

return M
