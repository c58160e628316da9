-- atlas.sql: PostgreSQL for playbooks.
--
--   local sql = require "atlas.sql"
--   local db <close> = sql.connect{ host = "...", dbname = "atlas", user = "atlas_admin",
--                                   password_secret = "atlas-db-master-password" }
--   local rows = db:query("SELECT slot_name, active FROM pg_replication_slots WHERE slot_name = $1", name)
--
-- The backend is atlas.pq (libpq) for real runs and atlas.mock.sql under the
-- mock world; both take the same calls, so this file is the one place that
-- decides defaults, dry-run, events, redaction and the error objects.
-- Documented in docs/sql.md.
local errors = require "atlas.errors"
local json = require "atlas.json"
local log = require "atlas.log"
local runtime = require "atlas.runtime"
local sys = require "atlas.sys"

local monotime = sys.monotime

local M = {}

M.null = json.null

local DEFAULT_CONNECT_TIMEOUT = 10
local APPLICATION_NAME = "atlas-run"

-- Keys of sql.connect{} that are ours, not libpq's.
local OWN_KEYS = { password_secret = true, secret_region = true, timeout = true, conninfo = true }

local function backend() return runtime.backend("sql") end

-- Quoting is string work with no world behind it, so both modes use libpq's.
function M.quote_ident(s) return require("atlas.pq").quote_ident(s) end

function M.quote_literal(s) return require("atlas.pq").quote_literal(s) end

local function is_loopback_host(host)
    if host == "" or host:sub(1, 1) == "/" or host:sub(1, 1) == "@" then
        return true -- Unix-domain socket
    end
    return host == "localhost" or host == "::1" or host:match("^127%.%d+%.%d+%.%d+$") ~= nil
end

-- True when every host of a (possibly multi-host "a,b") list is this machine.
local function is_loopback(host)
    if host == nil then return true end
    for one in (host .. ","):gmatch("([^,]*),") do
        if not is_loopback_host(one:match("^%s*(.-)%s*$")) then return false end
    end
    return true
end

-- Removes the password from a text a server or libpq wrote, in case it
-- echoed any part of the connection string.
local function scrub(text, password)
    if type(text) ~= "string" then return text end
    -- A very short password would mask ordinary letters; atlas.log treats
    -- those the same way.
    if password and #password >= 4 then
        text = text:gsub(password:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0"), "[REDACTED]")
    end
    -- A conninfo or URI quoted back at us: hide any password in it.
    text = text:gsub("(password%s*=%s*)'[^']*'", "%1[REDACTED]")
    text = text:gsub("(password%s*=%s*)[^%s'\"]+", "%1[REDACTED]")
    text = text:gsub("(://[^:/@%s]+:)[^@%s]+@", "%1[REDACTED]@")
    return text
end

local function sql_error(fields, password)
    -- libpq reports a failed login as text only; name it by its SQLSTATE.
    if fields.message and fields.message:find("password authentication failed", 1, true) then
        fields.sqlstate = "28P01"
    end
    local e = {
        kind = "sql",
        sqlstate = fields.sqlstate,
        code = fields.sqlstate or fields.code,
        message = scrub(fields.message, password) or "unknown error",
        detail = scrub(fields.detail, password),
        hint = scrub(fields.hint, password),
        position = fields.position and tonumber(fields.position) or nil,
        host = fields.host,
        port = fields.port,
        dbname = fields.dbname,
        user = fields.user,
        timeout = fields.timeout,
        interrupted = fields.interrupted,
        connection_lost = fields.connection_lost,
        -- Connection failures and lost connections may succeed on a retry;
        -- an SQL error will not.
        retryable = fields.sqlstate ~= nil
                and (fields.sqlstate:sub(1, 2) == "08" or fields.sqlstate == "40001" or fields.sqlstate == "40P01")
            or false,
    }
    return errors.new(e)
end

-- The password for connect: the one given, or the secret's value.
local function resolve_password(params, options)
    if options.password_secret then
        local secrets = require "atlas.secrets"
        local value = secrets.get_secret_value {
            SecretId = options.password_secret,
            region = options.secret_region or "eu-west-1",
        }
        if type(value) == "table" then value = value.SecretString end
        if type(value) ~= "string" or value == "" then
            errors.raise {
                kind = "sql",
                code = "secret",
                message = "secret " .. options.password_secret .. " holds no password string",
            }
        end
        -- An RDS-managed secret is JSON with username and password.
        if value:sub(1, 1) == "{" then
            local ok, decoded = pcall(json.decode, value)
            if ok and type(decoded) == "table" and type(decoded.password) == "string" then
                value = decoded.password
                if not params.user and type(decoded.username) == "string" then params.user = decoded.username end
            end
        end
        params.password = value
    end
    if params.password then log.secret(params.password) end
    return params.password
end

-- sql.parse_conninfo(s) -> {keyword = value} for a conninfo string or URI;
-- raises an sql error (code "conninfo") naming what is wrong with it.
function M.parse_conninfo(s)
    local parsed, message = backend().conninfo_parse(s)
    if not parsed then
        errors.raise { kind = "sql", code = "conninfo", message = "invalid connection string: " .. scrub(message, nil) }
    end
    if parsed.password then log.secret(parsed.password) end
    return parsed
end

-- Turns sql.connect's argument into libpq keywords and our own options.
local function connection_params(spec)
    local params, options = {}, {}
    if type(spec) == "string" then
        spec = { conninfo = spec }
    elseif type(spec) ~= "table" then
        error("sql.connect takes a conninfo string, a URI or a table, not a " .. type(spec), 3)
    end
    if spec.conninfo then
        for k, v in pairs(M.parse_conninfo(spec.conninfo)) do
            params[k] = v
        end
    end
    for k, v in pairs(spec) do
        if OWN_KEYS[k] then
            options[k] = v
        elseif type(k) == "string" then
            if type(v) == "number" then
                v = tostring(math.tointeger(v) or v)
            elseif type(v) == "boolean" then
                v = v and "1" or "0"
            elseif type(v) ~= "string" then
                error("sql.connect: field " .. k .. " must be a string or a number", 3)
            end
            params[k] = v
        end
    end
    params.application_name = params.application_name or APPLICATION_NAME
    if not params.sslmode and not is_loopback(params.host) then params.sslmode = "require" end
    params.connect_timeout = params.connect_timeout or tostring(DEFAULT_CONNECT_TIMEOUT)
    -- Timestamps are converted from the ISO output style whatever the
    -- server's default DateStyle is.
    params.options = (params.options and (params.options .. " ") or "") .. "-c DateStyle=ISO,MDY"
    return params, options
end

local Conn = {}
Conn.__index = Conn
Conn.__name = "atlas.sql.conn"

-- Statements that only read. Anything else is printed, not run, under
-- --dry-run. Function calls that change the server are caught by name.
local READ_ONLY_FIRST_WORDS = {
    select = true,
    show = true,
    explain = true,
    values = true,
    table = true,
    with = true,
    begin = true,
    start = true,
    commit = true,
    ["end"] = true,
    rollback = true,
    savepoint = true,
    release = true,
    set = true,
    reset = true,
}
local MUTATING_FUNCTIONS = {
    "pg_drop_replication_slot",
    "pg_create_logical_replication_slot",
    "pg_create_physical_replication_slot",
    "pg_replication_slot_advance",
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_reload_conf",
    "pg_switch_wal",
    "nextval",
    "setval",
    "pg_promote",
    "pg_replication_origin_advance",
    "pg_advisory_lock",
    "lo_unlink",
}

local function strip_comments(text)
    text = text:gsub("/%*.-%*/", " ")
    text = text:gsub("%-%-[^\n]*", " ")
    return text
end

-- sql.is_mutating(statement) -> true unless the statement only reads
function M.is_mutating(statement)
    local text = strip_comments(statement):lower()
    local first = text:match("^[%s%(]*([%a_]+)")
    if not first or not READ_ONLY_FIRST_WORDS[first] then return true end
    -- Look at every statement of a multi-statement exec.
    local rest = text:match("^[^;]*;(.*)$")
    if rest and rest:match("%S") and M.is_mutating(rest) then return true end
    local this = text:match("^[^;]*")
    if first == "explain" and this:match("^%s*explain%s*%(?[^)]*analy[sz]e") then return true end
    if
        first == "with"
        and (
            this:match("%f[%a]insert%f[%A]")
            or this:match("%f[%a]update%f[%A]")
            or this:match("%f[%a]delete%f[%A]")
            or this:match("%f[%a]merge%f[%A]")
        )
    then
        return true
    end
    if first == "select" and this:match("%f[%a]into%f[%A]") and not this:match("%f[%a]into%s*strict") then
        return true -- SELECT ... INTO new_table
    end
    for _, fn in ipairs(MUTATING_FUNCTIONS) do
        if this:find(fn .. "%s*%(") then return true end
    end
    return false
end

local function display_param(v)
    if v == nil or v == json.null then
        return "NULL"
    elseif type(v) == "string" then
        return M.quote_literal(v)
    end
    return tostring(v)
end

-- The statement as dry-run shows it: the exact text, and the parameters it
-- would send beside it (they are never interpolated into the SQL).
local function dry_run_text(statement, params)
    if not params or params.n == 0 then return statement end
    local shown = {}
    for i = 1, params.n do
        shown[i] = string.format("$%d = %s", i, display_param(params[i]))
    end
    return statement .. "  -- " .. table.concat(shown, ", ")
end

local function encode_params(args)
    for i = 1, args.n do
        local v = args[i]
        if type(v) == "table" and v ~= json.null then args[i] = json.encode(v) end
    end
    return args
end

function Conn:_check_open()
    if not self._native then error("attempt to use a closed sql connection", 3) end
end

function Conn:_collect_notices()
    local fresh = self._native and self._native:notices()
    if fresh then
        for _, text in ipairs(fresh) do
            self.notices[#self.notices + 1] = text
            log.debug("sql notice (%s): %s", self.host or "-", text)
        end
    end
end

function Conn:_emit(op, started, outcome, err)
    log.event {
        type = "call",
        module = "sql",
        op = op,
        region = self.host,
        duration_ms = math.floor((monotime() - started) * 1000 + 0.5),
        outcome = outcome,
        error = err and (err.sqlstate or err.code) or nil,
    }
end

-- Runs one native call (method `op` of the backend's connection) with
-- events, notices and errors handled alike. No closure per call: this is
-- the path a tight loop of queries takes.
function Conn:_run(op, statement, mutates, a, b, c)
    self:_check_open()
    if runtime.dry_run and (mutates or (mutates == nil and M.is_mutating(statement))) then
        log.event {
            type = "call",
            module = "sql",
            op = op,
            region = self.host,
            outcome = "dry-run",
            duration_ms = 0,
            params = self._dry_text or statement,
        }
        self.dry_run_statements[#self.dry_run_statements + 1] = self._dry_text or statement
        return {}, { command = "DRY-RUN", rows_affected = 0, columns = {}, dry_run = true }
    end
    local started = monotime()
    local native = self._native
    local rows, info = native[op](native, statement, a, b, c)
    if native:has_notices() then self:_collect_notices() end
    if rows == nil then
        self:_emit(op, started, "error", info)
        if info and info.connection_lost then
            self._native:close()
            self._native = nil
        end
        error(sql_error(info or {}, self._password), 0)
    end
    self:_emit(op, started, "ok")
    return rows, info
end

-- conn:query(sql, ...) -> rows, info
-- conn:query{sql=, params={...}, timeout=seconds, mutates=bool} -> rows, info
-- rows: array of {column = value}; info: {command=, rows_affected=, columns={...}}
function Conn:query(statement, ...)
    local args, timeout, mutates
    if type(statement) == "table" then
        local spec = statement
        statement, timeout, mutates = spec.sql or spec[1], spec.timeout, spec.mutates
        local list = spec.params or {}
        args = table.pack(table.unpack(list, 1, list.n or #list))
    else
        args = table.pack(...)
    end
    if type(statement) ~= "string" then error("conn:query: the SQL text must be a string", 2) end
    timeout = timeout or self.timeout
    args = encode_params(args)
    self._dry_text = runtime.dry_run and dry_run_text(statement, args) or nil
    return self:_run("query", statement, mutates, args, args.n, timeout)
end

-- conn:query_one(sql, ...) -> the first row, or nil
function Conn:query_one(...)
    local rows = self:query(...)
    return rows[1]
end

-- conn:exec(sql, {timeout=, mutates=}) -> rows, info of the last statement
-- Runs several statements separated by semicolons; no parameters.
function Conn:exec(statement, options)
    options = options or {}
    if type(statement) ~= "string" then error("conn:exec: the SQL text must be a string", 2) end
    self._dry_text = nil
    return self:_run("exec", statement, options.mutates, options.timeout or self.timeout)
end

-- conn:transaction(fn) -> fn's results; COMMIT when fn returns, ROLLBACK
-- (and the error raised again) when it raises.
function Conn:transaction(fn)
    self:exec("BEGIN")
    local results = table.pack(pcall(fn, self))
    if results[1] then
        self:exec("COMMIT")
        return table.unpack(results, 2, results.n)
    end
    if self._native then pcall(self.exec, self, "ROLLBACK") end
    error(results[2], 0)
end

-- conn:notices: every notice the server sent on this connection
-- ("NOTICE: relation ... already exists, skipping").

function Conn:quote_ident(s)
    self:_check_open()
    return self._native:quote_ident(s)
end

function Conn:quote_literal(s)
    self:_check_open()
    return self._native:quote_literal(s)
end

-- conn:info() -> {host, port, dbname, user, server_version, backend_pid, ssl}
function Conn:info()
    self:_check_open()
    return self._native:info()
end

-- conn:close(): idempotent; also what <close> and garbage collection do.
function Conn:close()
    local native = self._native
    if native then
        self._native = nil
        native:close()
    end
end

Conn.__close = Conn.close
Conn.__gc = Conn.close

function Conn:__tostring()
    return string.format(
        "atlas.sql.conn (%s@%s/%s%s)",
        self.user or "?",
        self.host or "?",
        self.dbname or "?",
        self._native and "" or ", closed"
    )
end

-- sql.connect{host=, port=, dbname=, user=, password=, sslmode=, connect_timeout=,
--             password_secret=, secret_region=, timeout=} -> conn
-- sql.connect("host=... dbname=...") / sql.connect("postgresql://...") -> conn
-- Any other string field is passed to libpq as a connection keyword.
function M.connect(spec)
    local params, options = connection_params(spec)
    local password = resolve_password(params, options)
    local host = params.host or params.hostaddr or "localhost"
    local started = monotime()
    local native, err = backend().connect(params, tonumber(params.connect_timeout))
    local fake = { host = host }
    if not native then
        Conn._emit(fake, "connect", started, "error", err)
        err = err or {}
        err.host = err.host or host
        err.dbname = err.dbname or params.dbname
        error(sql_error(err, password), 0)
    end
    Conn._emit(fake, "connect", started, "ok")
    local conn = setmetatable({
        _native = native,
        _password = password,
        host = host,
        port = params.port,
        dbname = params.dbname or params.user,
        user = params.user,
        timeout = options.timeout,
        notices = {},
        dry_run_statements = {},
    }, Conn)
    conn:_collect_notices()
    return conn
end

-- Quotes a value for a libpq conninfo string: single quotes, with \ and '
-- escaped by a backslash.
local function conninfo_value(v)
    v = tostring(v)
    if v ~= "" and not v:find("[%s'\\]") then return v end
    return "'" .. v:gsub("\\", "\\\\"):gsub("'", "\\'") .. "'"
end

local CONNINFO_ORDER =
    { "host", "port", "dbname", "user", "password", "sslmode", "connect_timeout", "application_name" }

-- sql.subscription_connection{host=, port=, dbname=, user=, password= | password_secret=,
--                            secret_region=, sslmode=} -> SQL literal, conninfo
-- The literal goes after CREATE SUBSCRIPTION ... CONNECTION; it is quoted
-- twice (libpq conninfo, then SQL), and every form of the password is
-- registered as a secret so no log shows it.
function M.subscription_connection(spec)
    assert(type(spec) == "table", "sql.subscription_connection takes a table")
    local params = {}
    for k, v in pairs(spec) do
        if not OWN_KEYS[k] then params[k] = tostring(v) end
    end
    resolve_password(params, spec)
    if not params.sslmode and not is_loopback(params.host) then params.sslmode = "require" end
    local parts, seen = {}, {}
    for _, key in ipairs(CONNINFO_ORDER) do
        if params[key] then
            parts[#parts + 1] = key .. "=" .. conninfo_value(params[key])
            seen[key] = true
        end
    end
    local extra = {}
    for key in pairs(params) do
        if not seen[key] then extra[#extra + 1] = key end
    end
    table.sort(extra)
    for _, key in ipairs(extra) do
        parts[#parts + 1] = key .. "=" .. conninfo_value(params[key])
    end
    local conninfo = table.concat(parts, " ")
    local literal = M.quote_literal(conninfo)
    if params.password then
        -- The password as it appears inside the conninfo and inside the
        -- SQL literal, so redaction finds it in every form.
        local quoted = conninfo_value(params.password)
        log.secret(quoted)
        log.secret((quoted:gsub("\\", "\\\\"):gsub("'", "''")))
    end
    return literal, conninfo
end

M.Conn = Conn
M.scrub = scrub
M.is_loopback = is_loopback

return M
