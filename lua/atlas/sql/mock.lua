-- The mock SQL backend: atlas.pq's calls (connect, conninfo_parse,
-- conn:query/exec/notices/info/quote_ident/quote_literal/close) and its
-- failures (nil, message, code, fields), answered from the mock world's
-- databases (atlas.mock.db, world.db). docs/sql.md.
--
-- This file is the session: the login, the transaction and its read-only
-- mode, the record of every statement in world.calls ({module="sql", host=,
-- sql=, params=}). What a statement does is atlas.sql.mock_statements.
local json = require "atlas.json"
local pq = require "atlas.pq"
local runtime = require "atlas.run.runtime"
local statements = require "atlas.sql.mock_statements"

local M = {}

local null = json.null

-- libpq's parser and quoting: string work with no world behind it.
M.conninfo_parse = pq.conninfo_parse
M.quote_ident = pq.quote_ident
M.quote_literal = pq.quote_literal

local function world()
    local w = runtime.world
    assert(w, "atlas.sql.mock used without a mock world")
    assert(w.db, "the mock world has no database model (atlas.mock.db)")
    return w
end

local Conn = {}
Conn.__index = Conn
Conn.__name = "atlas.sql.mock.conn"

-- Transactions and read-only mode, as PostgreSQL has them: a session
-- default (default_transaction_read_only, from the connect options or SET)
-- and the open transaction's own mode. The mock's writes are refused in a
-- read-only transaction with SQLSTATE 25006 (atlas.sql.mock_statements).
function Conn:read_only()
    if self.txn then return self.txn.read_only end
    return self.default_read_only
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
                local mode = c:read_only()
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

-- One statement: rows, info | nil, message, code, fields, as atlas.pq.
function Conn:_statement(statement, params)
    if not self.region then error("attempt to use a closed connection", 3) end
    local w = self.world
    w.calls[#w.calls + 1] =
        { module = "sql", host = self.host, region = self.region, sql = statement, params = params, t = w:now() }
    if not w.db:reachable(self.region) then
        return nil, "server closed the connection unexpectedly", "lost", { connection_lost = true }
    end
    local text = statement:gsub("^%s+", ""):gsub("[%s;]+$", "")
    local rows, command = transaction_statement(self, text:upper())
    if not rows then
        local state -- on a failure, command is the message
        rows, command, state = statements.answer(self, statement, params)
        if not rows then
            w.calls[#w.calls].error = state
            return nil, command, state, {}
        end
    end
    return rows, info(command, rows)
end

-- conn:query(sql, params, n, timeout) -> rows, info | nil, message, code, fields
function Conn:query(statement, params, n)
    local list = {}
    for i = 1, n or (params and #params) or 0 do
        local v = params[i]
        list[i] = v == nil and null or v
    end
    return self:_statement(statement, list)
end

-- conn:exec(sql, timeout): each statement in turn, the last one's result
function Conn:exec(statement)
    local rows, last = {}, { command = "", columns = {} }
    for part in statement:gmatch("[^;]+") do
        if part:match("%S") then
            local r, i, code, fields = self:_statement(part, {})
            if not r then return nil, i, code, fields end
            rows, last = r, i
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

function Conn:quote_ident(s) return pq.quote_ident(s) end

function Conn:quote_literal(s) return pq.quote_literal(s) end

function Conn:close() self.region = nil end

Conn.__close = Conn.close

-- connect(params, timeout) -> conn | nil, message, "connect", {}: libpq
-- names no SQLSTATE for a failed connect, atlas.sql reads the message.
function M.connect(params)
    local w = world()
    local db = w.db
    local host = params.host or params.hostaddr or "localhost"
    w.calls[#w.calls + 1] = { module = "sql", host = host, op = "connect", t = w:now(), sslmode = params.sslmode }
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

return M