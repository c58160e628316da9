-- atlas.sql: PostgreSQL for playbooks.
--
--   local sql = require "atlas.sql"
--   local db <close> = sql.connect{ host = "...", dbname = "atlas", user = "atlas_admin",
--                                   password_secret = "atlas-db-master-password" }
--   local rows = db:query("SELECT slot_name, active FROM pg_replication_slots WHERE slot_name = $1", name)
--
-- The backend is atlas.pq (libpq) for real runs and atlas.sql.mock under the
-- mock world; both take the same calls, so this file is the one place that
-- decides defaults, dry-run, events, redaction and the error objects.
-- Documented in docs/sql.md.
local errors = require "atlas.errors"
local json = require "atlas.json"
local log = require "atlas.run.log"
local runtime = require "atlas.run.runtime"
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

-- A Unix-domain socket (a path, an abstract "@name", or libpq's default) or a
-- host that atlas.net calls loopback.
local function is_loopback_host(host)
    if host == "" or host:sub(1, 1) == "/" or host:sub(1, 1) == "@" then return true end
    return require("atlas.net").is_loopback(host)
end

-- True when every host of a (possibly multi-host "a,b") list is this machine.
local function is_loopback(host)
    if host == nil then return true end
    for one in (host .. ","):gmatch("([^,]*),") do
        if not is_loopback_host(one:match("^%s*(.-)%s*$")) then return false end
    end
    return true
end

-- Modes that already refuse a connection without TLS.
local TLS_MODES = { require = true, ["verify-ca"] = true, ["verify-full"] = true }

-- Sets sslmode=require when the connection may leave this machine. The
-- address is whatever libpq will use, however it is given: host, hostaddr
-- (which libpq dials instead of host), or PGHOST/PGHOSTADDR from the
-- environment. An sslmode given with the connection is the caller's choice;
-- a weaker PGSSLMODE from the environment is not.
local function require_tls(params)
    if params.sslmode then return end
    local host = params.host or os.getenv("PGHOST")
    local hostaddr = params.hostaddr or os.getenv("PGHOSTADDR")
    if is_loopback(host) and is_loopback(hostaddr) then return end
    if TLS_MODES[os.getenv("PGSSLMODE") or ""] then return end
    params.sslmode = "require"
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

-- atlas.pq's codes that are not a server's SQLSTATE, and the SQLSTATE each
-- one is given (a connect that timed out is 08001, see failure()).
local NATIVE_SQLSTATE = { connect = "08001", lost = "08006", timeout = "57014", interrupted = "57014", copy = "0A000" }

-- A backend's failure (nil, message, code, fields) as one table of the
-- error object's fields; `where` names the connection (host, port, dbname,
-- user).
local function failure(message, code, fields, where, connecting)
    local f = { message = message }
    for k, v in pairs(fields or {}) do
        f[k] = v
    end
    for k, v in pairs(where or {}) do
        f[k] = v
    end
    if code == "timeout" or code == "interrupted" then f[code] = true end
    f.sqlstate = (connecting and code == "timeout") and "08001" or NATIVE_SQLSTATE[code] or code
    -- libpq reports a failed login as text only; name it by its SQLSTATE.
    if type(message) == "string" and message:find("password authentication failed", 1, true) then
        f.sqlstate = "28P01"
    end
    return f
end

local function sql_error(fields, password)
    local e = {
        kind = "sql",
        sqlstate = fields.sqlstate,
        code = fields.sqlstate,
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
        local secrets = require "atlas.services.secrets"
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
            local decoded = json.decode(value)
            if type(decoded) == "table" and type(decoded.password) == "string" then
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
        -- libpq may quote the unreadable part alone ("invalid percent-encoded
        -- token"), so the password as written is masked too.
        local written = log.written_password(s)
        if written and written ~= "" then
            log.secret(written)
            message = scrub(message, written)
        end
        -- libpq may quote the part it could not read, password included:
        -- the message is masked like every output (atlas.run.log masks a
        -- password written in a conninfo or URI wherever it appears), and
        -- the text itself is never echoed.
        errors.raise {
            kind = "sql",
            code = "conninfo",
            message = "invalid connection string: " .. log.redact(scrub(message, nil)),
        }
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
    require_tls(params)
    params.connect_timeout = params.connect_timeout or tostring(DEFAULT_CONNECT_TIMEOUT)
    -- Timestamps are converted from the ISO output style whatever the
    -- server's default DateStyle is.
    params.options = (params.options and (params.options .. " ") or "") .. "-c DateStyle=ISO,MDY"
    -- A dry run's sessions start read-only too; every statement also runs in
    -- a read-only transaction of its own (Conn:_dry_statement).
    if runtime.dry_run then params.options = params.options .. " -c default_transaction_read_only=on" end
    return params, options
end

-- Column types that atlas.pq hands over as the server's text (pg_type OIDs):
-- json and jsonb are decoded, timestamps made ISO-8601.
local JSON_TYPES = { [114] = true, [3802] = true }
local TIMESTAMP_TYPES = { [1114] = true, [1184] = true }

-- PostgreSQL's ISO output "2024-01-02 03:04:05.5+01" as ISO-8601
-- "2024-01-02T03:04:05.5+01:00"; infinity and BC dates stay as they are.
local function iso8601(text)
    local date, time = text:match("^([^ ]*) (.*)$")
    if not date or text:sub(-3) == " BC" then return text end
    local sign = time:sub(-3, -3)
    if #time >= 3 and (sign == "+" or sign == "-") then time = time .. ":00" end
    return date .. "T" .. time
end

-- Converts the json and timestamp cells of a native result in place.
local function convert_cells(rows, info)
    local types = info.types
    if not types then return rows end
    for col, oid in ipairs(types) do
        local convert = JSON_TYPES[oid] and json.decode or TIMESTAMP_TYPES[oid] and iso8601
        if convert then
            local name = info.columns[col]
            for _, row in ipairs(rows) do
                local v = row[name]
                if v ~= json.null then row[name] = convert(v) end
            end
        end
    end
    return rows
end

local Conn = {}
Conn.__index = Conn
Conn.__name = "atlas.sql.conn"

-- SQL text ------------------------------------------------------------------
--
-- PostgreSQL itself decides what writes: a statement that may not change
-- anything runs in a read-only transaction, and the server refuses every
-- write in it (see Conn:_run). The text is read only for two things the
-- server cannot do for us: splitting exec's statements, so that each runs
-- alone, and the few server functions and statements that act outside any
-- transaction.

-- Calls the scanner makes as it walks the text: code(piece) for text outside
-- literals and comments, literal(piece) for a quoted string or identifier or
-- a dollar-quoted body, semicolon(position) at each statement end.
local function scan_sql(text, on)
    local i, n = 1, #text
    local code_from = 1
    local function flush(to)
        if to >= code_from and on.code then on.code(text:sub(code_from, to)) end
    end
    while i <= n do
        local c = text:sub(i, i)
        local two = text:sub(i, i + 1)
        local skip_to -- last character of a literal or comment starting at i
        local is_comment = false
        if two == "--" then
            skip_to = (text:find("\n", i + 2, true) or n + 1) - 1
            is_comment = true
        elseif two == "/*" then
            -- PostgreSQL's block comments nest.
            local depth, j = 1, i + 2
            while depth > 0 and j <= n do
                local pair = text:sub(j, j + 1)
                if pair == "/*" then
                    depth, j = depth + 1, j + 2
                elseif pair == "*/" then
                    depth, j = depth - 1, j + 2
                else
                    j = j + 1
                end
            end
            skip_to, is_comment = j - 1, true
        elseif c == "'" then
            -- E'...' takes backslash escapes; a doubled quote is a quote.
            local escapes = i > 1 and text:sub(i - 1, i - 1):lower() == "e" and not text:sub(i - 2, i - 2):match("[%w_]")
            local j = i + 1
            while j <= n do
                local d = text:sub(j, j)
                if escapes and d == "\\" then
                    j = j + 2
                elseif d == "'" and text:sub(j + 1, j + 1) == "'" then
                    j = j + 2
                elseif d == "'" then
                    break
                else
                    j = j + 1
                end
            end
            skip_to = math.min(j, n)
        elseif c == '"' then
            local j = i + 1
            while j <= n do
                if text:sub(j, j) == '"' then
                    if text:sub(j + 1, j + 1) ~= '"' then break end
                    j = j + 1
                end
                j = j + 1
            end
            skip_to = math.min(j, n)
        elseif c == "$" and not (i > 1 and text:sub(i - 1, i - 1):match("[%w_]")) then
            local tag = text:match("^%$[%a_][%w_]*%$", i) or text:match("^%$%$", i)
            if tag then
                local close = text:find(tag, i + #tag, true)
                skip_to = close and (close + #tag - 1) or n
            end
        end
        if skip_to then
            flush(i - 1)
            if not is_comment and on.literal then on.literal(text:sub(i, skip_to)) end
            -- A comment separates tokens as a space does.
            if is_comment and on.code then on.code(" ") end
            i = skip_to + 1
            code_from = i
        elseif c == ";" then
            flush(i - 1)
            if on.semicolon then on.semicolon(i) end
            i = i + 1
            code_from = i
        else
            -- Straight to the next character that can start something.
            i = text:find("[%-/'\"%$;]", i + 1) or n + 1
        end
    end
    flush(n)
end

-- sql.split_statements(text) -> list of statements (without their ";"),
-- comment-only pieces left out. A mistake here cannot make a write: each
-- piece goes to the server as one extended-protocol statement, which
-- refuses two statements at once.
function M.split_statements(text)
    local out, from, has_code = {}, 1, false
    local function finish(to)
        local piece = text:sub(from, to)
        if has_code then out[#out + 1] = piece:match("^%s*(.-)%s*$") end
        has_code = false
    end
    scan_sql(text, {
        code = function(piece)
            if piece:match("%S") then has_code = true end
        end,
        literal = function() has_code = true end,
        semicolon = function(at)
            finish(at - 1)
            from = at + 1
        end,
    })
    finish(#text)
    return out
end

-- Server functions that PostgreSQL 15 runs inside a read-only transaction
-- and whose effect a rollback does not undo (tried on PostgreSQL 15: each
-- one below ran under BEGIN READ ONLY ... ROLLBACK and left its mark).
-- Lua patterns on the lower-cased name.
local OUTSIDE_TRANSACTION_FUNCTIONS = {
    "pg_stat_reset[%w_]*", -- statistics: pg_stat_reset(), _shared, _single_table_counters, _slru, ...
    "pg_stat_statements_reset",
    "pg_create_[%w_]*replication_slot", -- replication slots are not transactional
    "pg_copy_[%w_]*replication_slot",
    "pg_drop_replication_slot",
    "pg_replication_slot_advance",
    "pg_logical_slot_get_[%w_]*changes", -- consumes the slot's changes (peek does not)
    "pg_logical_emit_message",
    "pg_replication_origin_[%w_]*", -- origin progress and session state
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_switch_wal",
    "pg_create_restore_point",
    "pg_promote",
    "pg_backup_start",
    "pg_backup_stop",
    "pg_wal_replay_pause",
    "pg_wal_replay_resume",
    "pg_log_backend_memory_contexts",
    "pg_advisory_lock[%w_]*", -- session locks outlive the transaction (the _xact_ ones do not)
    "pg_try_advisory_lock[%w_]*",
    "pg_advisory_unlock[%w_]*",
    "dblink[%w_]*", -- another session, outside this transaction
    "lo_export", -- writes a file on the server
    "pg_file_[%w_]+", -- adminpack: files on the server
}

-- sql.outside_transactions(statement) -> what in it acts outside any
-- transaction ("pg_stat_reset()", "COPY ... TO a file"), or nil. Names are
-- looked for in string literals and function bodies too (a DO block, the
-- query given to dblink): printing a read is better than making a change.
--
-- also: a set {[lower-case name] = true} of further functions to treat so
-- (the database's own functions that call one of these; Conn:_outside_functions).
local function outside_function(name, also)
    if also and also[name] then return true end
    for _, pattern in ipairs(OUTSIDE_TRANSACTION_FUNCTIONS) do
        if name:match("^" .. pattern .. "$") then return true end
    end
    return false
end

-- The statement's words, lower-cased: `code` outside literals and comments,
-- `text` with the literals too (quotes of identifiers removed). Playbooks
-- send the same texts again and again (a wait polls), so they are kept.
local words_cache, words_cached = {}, 0
local function statement_words(statement)
    local hit = words_cache[statement]
    if hit then return hit end
    local code, all = {}, {}
    scan_sql(statement, {
        code = function(piece)
            code[#code + 1] = piece
            all[#all + 1] = piece
        end,
        literal = function(piece) all[#all + 1] = " " .. piece .. " " end,
    })
    local calls = {}
    for name in table.concat(all):lower():gsub('"', " "):gmatch("%f[%w_]([%a_][%w_]*)%s*%(") do
        calls[#calls + 1] = name
    end
    hit = { code = table.concat(code, " "):lower(), calls = calls }
    if words_cached >= 1000 then
        words_cache, words_cached = {}, 0
    end
    words_cache[statement], words_cached = hit, words_cached + 1
    return hit
end

function M.outside_transactions(statement, also)
    local words = statement_words(statement)
    for _, name in ipairs(words.calls) do
        if outside_function(name, also) then return name .. "()" end
    end
    local code = words.code
    if code:match("^%s*copy%f[^%w_]") then
        if code:match("%f[%w_]program%f[^%w_]") then return "COPY ... PROGRAM" end
        -- COPY ... TO 'file': the file name is a literal, so `to` is followed
        -- by nothing in `code`; only TO STDOUT stays on the connection.
        local after_to = code:match("%f[%w_]to%f[^%w_]%s*([%w_]*)")
        if after_to and after_to ~= "stdout" then return "COPY ... TO a file" end
    end
    if code:match("^%s*alter%s+system%f[^%w_]") then return "ALTER SYSTEM" end
    return nil
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

-- One native call (method `op` of the backend's connection): rows, info or
-- nil, failure (the fields of the error object). Notices are collected; a
-- lost connection is closed; json and timestamp cells are converted
-- (atlas.pq leaves them as text).
function Conn:_native_call(op, statement, a, b, c)
    runtime.check_interrupted()
    local native = self._native
    local rows, info, code, fields = native[op](native, statement, a, b, c)
    self:_collect_notices()
    if rows == nil then
        local f = failure(info, code, fields, self._where)
        if f.connection_lost and self._native then
            self._native:close()
            self._native = nil
        end
        return nil, f
    end
    return convert_cells(rows, info), info
end

function Conn:_raise(op, started, info)
    self:_emit(op, started, "error", info)
    error(sql_error(info or {}, self._password), 0)
end

-- A statement of our own (the read-only wrapper), with no event of its own;
-- raises when it fails.
function Conn:_quiet(statement)
    self:_check_open()
    local rows, info = self:_native_call("exec", statement, self.timeout)
    if rows == nil then self:_raise("exec", monotime(), info) end
end

-- The warnings our wrapper causes around a playbook's own BEGIN or COMMIT
-- ("there is already a transaction in progress"): not the playbook's news.
function Conn:_drop_wrapper_notices(from)
    for i = #self.notices, from, -1 do
        if self.notices[i]:match("^WARNING: +there is .*transaction in progress$") then
            table.remove(self.notices, i)
        end
    end
end

-- Under a dry run, a statement that would change something: printed (the
-- exact text, with its parameters beside it) and kept, not made.
function Conn:_would_change(op, shown, refusal)
    log.event {
        type = "call",
        module = "sql",
        op = op,
        region = self.host,
        outcome = "dry-run",
        duration_ms = 0,
        params = shown,
    }
    self.dry_run_statements[#self.dry_run_statements + 1] = shown
    return {},
        {
            command = "DRY-RUN",
            rows_affected = 0,
            columns = {},
            dry_run = true,
            sqlstate = refusal and refusal.sqlstate or nil,
        }
end

-- The SQLSTATEs with which PostgreSQL refuses a change in a read-only
-- transaction: read_only_sql_transaction, and active_sql_transaction for
-- what cannot run inside a transaction block at all (VACUUM, ALTER SYSTEM,
-- CREATE DATABASE, CREATE INDEX CONCURRENTLY).
local REFUSED_CHANGE = { ["25006"] = true, ["25001"] = true }

-- Names a statement in a message: its host and its first words.
function Conn:_describe(statement, what)
    local text = statement:gsub("%s+", " "):match("^%s*(.-)%s*$")
    if #text > 100 then text = text:sub(1, 97) .. "..." end
    return string.format("sql %s: %s%s", self.host or "-", text, what and (" (" .. what .. ")") or "")
end

-- One statement of a dry run, alone in a read-only transaction that is
-- always rolled back: PostgreSQL refuses every write in it (also inside
-- functions), a playbook's own BEGIN, SET or SET TRANSACTION READ WRITE
-- lasts only until our ROLLBACK, and the extended protocol takes exactly one
-- statement, so no COMMIT can follow and open a writable transaction.
-- The wrapper's opening: the transaction, the playbook's earlier SETs (each
-- was rolled back with its own statement, and a later read may depend on
-- one, such as search_path), then READ ONLY again, whatever they said.
-- Each SET ran alone as one extended-protocol statement, so it is one
-- statement here too; a newline ends any comment in it.
function Conn:_dry_opening()
    local settings = self._dry_settings
    if not settings or #settings == 0 then return "BEGIN TRANSACTION READ ONLY" end
    return "BEGIN TRANSACTION READ ONLY;\n" .. table.concat(settings, "\n;\n") .. "\n;\nSET TRANSACTION READ ONLY"
end

-- Keeps a SET or RESET that succeeded in a dry run for the statements after it.
local MAX_DRY_SETTINGS = 50

function Conn:_remember_setting(statement)
    local first = statement_words(statement).code:match("^%s*([%a_]+)")
    if first ~= "set" and first ~= "reset" then return end
    self._dry_settings = self._dry_settings or {}
    table.insert(self._dry_settings, statement)
    if #self._dry_settings > MAX_DRY_SETTINGS then table.remove(self._dry_settings, 1) end
end

function Conn:_dry_statement(op, statement, shown, params, n, timeout)
    local first_notice = #self.notices + 1
    self:_quiet(self:_dry_opening())
    local started = monotime()
    local ok, rows, info = pcall(self._native_call, self, "query", statement, params, n, timeout)
    if self._native then
        local rolled_back, err = pcall(self._quiet, self, "ROLLBACK")
        if not rolled_back then
            -- A connection in an unknown state is not used again.
            self:close()
            error(err, 0)
        end
    end
    self:_drop_wrapper_notices(first_notice)
    if not ok then error(rows, 0) end
    if rows == nil then
        if info and REFUSED_CHANGE[info.sqlstate] then return self:_would_change(op, shown, info) end
        self:_raise(op, started, info)
    end
    self:_remember_setting(statement)
    self:_emit(op, started, "ok")
    return rows, info
end

-- Outside a dry run, a step that may not change the world (not declared
-- mutates = true, or not confirmed yet) runs its SQL with the session's
-- default_transaction_read_only on; switched with one SET when it changes.
function Conn:_session_read_only(on)
    if (self._read_only or false) == on then return end
    self:_quiet(on and "SET default_transaction_read_only = on" or "SET default_transaction_read_only = off")
    self._read_only = on
end

local NO_PARAMS = { n = 0 }

-- The database's own functions (SQL and PL/pgSQL, outside pg_catalog), with
-- their bodies: a read-only transaction does not stop one that calls
-- pg_stat_reset() inside.
local USER_FUNCTIONS_SQL = [[/* atlas:user_functions */ SELECT lower(p.proname) AS name, p.prosrc AS body
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace JOIN pg_language l ON l.oid = p.prolang
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND l.lanname IN ('sql', 'plpgsql')]]

-- The set of this database's functions whose bodies act outside any
-- transaction, directly or through each other. Asked once per connection,
-- at its first statement that may not change the world.
function Conn:_outside_functions()
    if self._outside_cache then return self._outside_cache end
    local rows, info = self:_native_call("query", USER_FUNCTIONS_SQL, NO_PARAMS, 0, self.timeout)
    if rows == nil then self:_raise("query", monotime(), info) end
    local found, grew = {}, true
    while grew do
        grew = false
        for _, row in ipairs(rows) do
            if not found[row.name] and type(row.body) == "string" and M.outside_transactions(row.body, found) then
                found[row.name], grew = true, true
            end
        end
    end
    self._outside_cache = found
    return found
end

-- Runs a statement (or exec's several) by the one rule of
-- runtime.may_change(): freely when the running step may change the world,
-- read-only when it may not (a refusal fails the step), and under a dry run
-- each statement alone in a read-only transaction that is rolled back, a
-- refused write printed as the change that would be made.
function Conn:_run(op, statement, mutates, a, b, c)
    self:_check_open()
    local may, reason = runtime.may_change()
    if may then
        self:_session_read_only(false)
        local started = monotime()
        local rows, info = self:_native_call(op, statement, a, b, c)
        if rows == nil then self:_raise(op, started, info) end
        self:_emit(op, started, "ok")
        return rows, info
    end
    -- What PostgreSQL would let through even in a read-only transaction is
    -- never sent; nor is a call its caller declared mutating.
    local outside = mutates and "declared mutates = true"
        or M.outside_transactions(statement, self:_outside_functions())
    if outside then
        if reason == "dry-run" then return self:_would_change(op, self._dry_text or statement) end
        runtime.refuse_change(self:_describe(statement, outside), reason)
    end
    if reason ~= "dry-run" then
        self:_session_read_only(true)
        local started = monotime()
        local rows, info = self:_native_call(op, statement, a, b, c)
        if rows == nil then
            self:_emit(op, started, "error", info)
            if info and REFUSED_CHANGE[info.sqlstate] then
                runtime.refuse_change(self:_describe(statement), reason, "PostgreSQL refused it: " .. tostring(info.message))
            end
            error(sql_error(info or {}, self._password), 0)
        end
        self:_emit(op, started, "ok")
        return rows, info
    end
    if op == "query" then return self:_dry_statement(op, statement, self._dry_text or statement, a, b, c) end
    local rows, info = {}, { command = "", rows_affected = 0, columns = {} }
    for _, piece in ipairs(M.split_statements(statement)) do
        rows, info = self:_dry_statement(op, piece, piece, NO_PARAMS, 0, a)
    end
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
    runtime.check_interrupted()
    local params, options = connection_params(spec)
    local password = resolve_password(params, options)
    local host = params.host or params.hostaddr or "localhost"
    local started = monotime()
    local native, message, code, fields = backend().connect(params, tonumber(params.connect_timeout))
    local fake = { host = host }
    if not native then
        local where = { host = host, port = params.port, dbname = params.dbname or params.user, user = params.user }
        local err = failure(message, code, fields, where, true)
        Conn._emit(fake, "connect", started, "error", err)
        error(sql_error(err, password), 0)
    end
    Conn._emit(fake, "connect", started, "ok")
    -- Where the backend says it is connected (libpq's choice among several
    -- hosts, its default database) names the connection in errors.
    local info = native:info()
    local conn = setmetatable({
        _native = native,
        _where = { host = info.host, port = info.port, dbname = info.dbname, user = info.user },
        _password = password,
        host = host,
        port = params.port,
        dbname = params.dbname or params.user,
        user = params.user,
        timeout = options.timeout,
        notices = {},
        dry_run_statements = {},
        _read_only = runtime.dry_run,
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
    require_tls(params)
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
