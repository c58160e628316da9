-- The mock databases' statements: which statement it is (a tagged query,
-- SELECT 1, the DDL the database playbooks send) and what it does to the
-- mock world's databases (atlas.mock.db). A statement is answered as
-- rows, command | nil, message, sqlstate. Anything else is 0A000 naming
-- it, so a playbook that needs more fails loudly in its mock test.
-- The session around it (login, transactions, read-only mode) is
-- atlas.sql.mock; the tagged queries' answers are atlas.sql.mock_catalog.
local catalog = require "atlas.sql.mock_catalog"
local pq = require "atlas.pq"
local util = require "atlas.mock.util"

local M = {}

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

local ddl = {}

ddl[#ddl + 1] = {
    "^CREATE PUBLICATION%s+(.-)%s+FOR TABLE%s+(.-)%s*;?%s*$",
    function(c, name, list)
        name = unquote_ident(name)
        if c.db.publications[name] then
            return nil, string.format('publication "%s" already exists', name), "42710"
        end
        local tables = ident_list(list)
        for _, t in ipairs(tables) do
            if not c.db.tables[t] then
                return nil, string.format('relation "%s" does not exist', t), "42P01"
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
        if not pub then return nil, string.format('publication "%s" does not exist', name), "42704" end
        for _, t in ipairs(ident_list(list)) do
            if not c.db.tables[t] then
                return nil, string.format('relation "%s" does not exist', t), "42P01"
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

-- find_subscription(c, name) -> sub, its unquoted name | nil, message, sqlstate
local function find_subscription(c, name)
    name = unquote_ident(name)
    local sub = c.db.subscriptions[name]
    if not sub then return nil, string.format('subscription "%s" does not exist', name), "42704" end
    return sub, name
end

-- The node a subscription CONNECTION reaches, or nil, message, sqlstate:
-- what the apply worker (or CREATE SUBSCRIPTION) would report. The
-- conninfo is read by libpq's own parser, as the server reads it.
local function publisher_node(c, connection)
    local conninfo = unquote_literal(connection)
    local params, message = pq.conninfo_parse(conninfo or "")
    if not params then return nil, "invalid connection string syntax: " .. message, "42601" end
    local db = c.world.db
    local node = db:region_of(params.host)
    if not node then
        return nil,
            string.format(
                'could not connect to the publisher: could not translate host name "%s" to address',
                tostring(params.host)
            ),
            "08001"
    end
    if not db:reachable(node) then
        return nil, "could not connect to the publisher: connection timed out", "08001"
    end
    if params.password ~= c.world.master_password then
        return nil,
            string.format(
                'could not connect to the publisher: FATAL:  password authentication failed for user "%s"',
                tostring(params.user)
            ),
            "08001"
    end
    return node
end

ddl[#ddl + 1] = {
    "^CREATE SUBSCRIPTION%s+(.-)%s+CONNECTION%s+([Ee]?'.-')%s+PUBLICATION%s+(.-)%s+WITH%s*%((.*)%)%s*;?%s*$",
    function(c, name, connection, publication, with)
        name = unquote_ident(name)
        if c.db.subscriptions[name] then
            return nil, string.format('subscription "%s" already exists', name), "42710"
        end
        local primary, message, state = publisher_node(c, connection)
        if not primary then return nil, message, state end
        local w, db = c.world, c.world.db
        local options = parse_with(with)
        if options.origin and tonumber(c.db.settings.server_version_num) < 160000 then
            return nil, 'unrecognized subscription parameter: "origin"', "42601"
        end
        local slot_name = options.slot_name or name
        local pubs = ident_list(publication)
        if options.create_slot ~= "false" then
            if db.regions[primary].slots[slot_name] then
                return nil,
                    string.format(
                        'could not create replication slot "%s": ERROR:  replication slot "%s" already exists',
                        slot_name,
                        slot_name
                    ),
                    "42710"
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
            w:after_latency("replication_initial_copy", function()
                -- The initial copy brings the publisher's rows (not its
                -- sequences). Into a table that already has rows it fails
                -- on the first duplicate key and the tablesync worker
                -- retries for ever: that table never becomes ready.
                local ready = 0
                for name, data in pairs(db.regions[primary].data) do
                    if subscriber.data[name].count == 0 then
                        subscriber.data[name] = util.copy(data)
                        ready = ready + 1
                    end
                end
                sub.tables_ready = math.min(total, ready)
            end, "sql:" .. c.region)
        end
        c._notices[#c._notices + 1] = string.format('NOTICE: created replication slot "%s" on publisher', slot_name)
        return {}, "CREATE SUBSCRIPTION"
    end,
}

-- ALTER SUBSCRIPTION ... CONNECTION: the apply worker restarts against the
-- new publisher and streams from the slot of the same name there.
ddl[#ddl + 1] = {
    "^ALTER SUBSCRIPTION%s+(.-)%s+CONNECTION%s+([Ee]?'.-')%s*;?%s*$",
    function(c, name, connection)
        local sub, message, state = find_subscription(c, name)
        if not sub then return nil, message, state end
        local node, why, state = publisher_node(c, connection)
        if not node then return nil, why, state end
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
        local sub, message, state = find_subscription(c, name)
        if not sub then return nil, message, state end
        if tonumber(c.db.settings.server_version_num) < 160000 then
            return nil, 'unrecognized subscription parameter: "origin"', "42601"
        end
        sub.origin = origin:lower()
        return {}, "ALTER SUBSCRIPTION"
    end,
}

ddl[#ddl + 1] = {
    "^ALTER SUBSCRIPTION%s+(.-)%s+SET%s*%(%s*slot_name%s*=%s*NONE%s*%)%s*;?%s*$",
    function(c, name)
        local sub, message, state = find_subscription(c, name)
        if not sub then return nil, message, state end
        if sub.enabled then return nil, "cannot set slot_name = NONE for enabled subscription", "55000" end
        sub.slot_name = nil
        return {}, "ALTER SUBSCRIPTION"
    end,
}

ddl[#ddl + 1] = {
    "^DROP SUBSCRIPTION%s+(.-)%s*;?%s*$",
    function(c, name)
        local sub, key, state = find_subscription(c, name)
        if not sub then return nil, key, state end
        if sub.slot_name then
            -- PostgreSQL drops the slot on the publisher too, and fails
            -- when it cannot reach it.
            local node = c.world.db.regions[sub.primary or "eu-west-1"]
            if not c.world.db:reachable(sub.primary or "eu-west-1") then
                return nil, "could not connect to publisher when attempting to drop replication slot", "08006"
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
            return nil, string.format('table "%s" does not exist', name), "42P01"
        end
        if c.db.data[name] then
            return nil, string.format("cannot drop table %s because other objects depend on it", name), "2BP01"
        end
        c.db.tables[name] = nil
        if name == "flyway_schema_history" then c.db.flyway = nil end
        return {}, "DROP TABLE"
    end,
}

ddl[#ddl + 1] = {
    "^DELETE FROM%s+flyway_schema_history%s+WHERE%s+version%s*=%s*'([^']*)'%s*;?%s*$",
    function(c, version)
        if not c.db.flyway then return nil, 'relation "flyway_schema_history" does not exist', "42P01" end
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
                return nil, string.format('relation "%s" does not exist', t), "42P01"
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
        if not sub then return nil, string.format('subscription "%s" does not exist', name), "42704" end
        action = action:upper()
        if action ~= "ENABLE" and action ~= "DISABLE" then
            return nil, "the mock database only does ALTER SUBSCRIPTION ENABLE/DISABLE", "0A000"
        end
        sub.enabled = action == "ENABLE"
        return {}, "ALTER SUBSCRIPTION"
    end,
}

-- answer(c, statement, params) -> rows, command | nil, message, sqlstate
-- c is the session (atlas.sql.mock): its database (c.db), the world, and
-- c:read_only(), whether its transaction may write.
function M.answer(c, statement, params)
    local tag = statement:match("^%s*/%*%s*atlas:([%w_]+)%s*%*/")
    if tag then
        local answer = catalog.answers[tag]
        if not answer then return nil, "the mock database does not answer atlas:" .. tag, "0A000" end
        if catalog.writes[tag] and c:read_only() then
            return nil, "cannot execute SELECT " .. tag .. " in a read-only transaction", "25006"
        end
        local rows, message, state = answer(c, params)
        if not rows then return nil, message, state end
        return rows, "SELECT " .. #rows
    end
    local text = statement:gsub("^%s+", ""):gsub("[%s;]+$", "")
    local upper = text:upper()
    if upper:match("^SELECT%s+1$") then return { { ["?column?"] = 1 } }, "SELECT 1" end
    for _, entry in ipairs(ddl) do
        local captures = table.pack(text:match(entry[1]))
        if captures[1] then
            -- The mock's writes are refused in a read-only transaction,
            -- so a dry run reports them as changes it would make.
            if c:read_only() then
                local verb = upper:match("^(%a+%s+%a+)")
                return nil, string.format("cannot execute %s in a read-only transaction", verb), "25006"
            end
            return entry[2](c, table.unpack(captures, 1, captures.n))
        end
    end
    return nil, "the mock database does not answer: " .. text:sub(1, 200), "0A000"
end

return M
