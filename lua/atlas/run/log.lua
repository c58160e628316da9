-- Events: the only way output leaves a run.
--
-- Everything a run reports (run and step boundaries, each outside call,
-- retries, log lines, progress during waits) is an event table. A sink turns
-- events into a readable timeline on a terminal or into one JSON object per
-- line for machines. Every string in every event passes redact() first, so
-- a value registered with secret() never reaches any output.
local sys = require "atlas.sys"
local json = require "atlas.json"
local runtime = require "atlas.run.runtime"

local M = {}

local LEVELS = { debug = 1, info = 2, warn = 3, error = 4 }

local config = {
    format = "text",
    level = "info",
    out = io.stdout,
    tty = sys.isatty(1),
}

-- Secrets are kept longest first, so a secret that contains another is
-- replaced whole rather than leaving the rest of it readable.
local secrets = {}
local MASK = "[REDACTED]"
-- Strings already found to hold no registered secret. Events and journal
-- writes pass the same strings again and again (every journal write redacts
-- the whole record); a new secret empties it, and so does its size limit.
local clean, clean_count = {}, 0

-- The forms a secret takes on its way out: as given, inside a %q string
-- (Lua error messages), inside a JSON string (the JSON sink, the journal, the
-- report) and escaped as a conninfo value. Each is masked like the value.
local function forms(value)
    local out = { value }
    -- A value JSON cannot hold (bytes that are not UTF-8) has no JSON form:
    -- the JSON sink writes those bytes as U+FFFD, after the masking.
    local encodable, encoded = pcall(json.encode, value)
    for _, form in ipairs {
        string.format("%q", value):sub(2, -2),
        encodable and encoded:sub(2, -2) or value,
        (value:gsub("[\\']", "\\%0")),
    } do
        if form ~= value then out[#out + 1] = form end
    end
    return out
end

-- log.secret(value): never print value (or any string containing it), in any
-- of its forms, again.
function M.secret(value)
    if type(value) ~= "string" or value == "" then return end
    for _, form in ipairs(forms(value)) do
        local known = false
        for _, s in ipairs(secrets) do
            if s == form then known = true end
        end
        if not known then secrets[#secrets + 1] = form end
    end
    table.sort(secrets, function(a, b) return #a > #b end)
    clean, clean_count = {}, 0
end

local function plain_pattern(s) return (s:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0")) end

-- Below this length a secret is masked only as a whole word: masking every
-- "ab" inside other words would make the output unreadable, while a short
-- password still never shows as `password=ab`.
local WHOLE_WORD_BELOW = 4

local function mask_words(s, secret)
    local out, at = {}, 1
    while true do
        local i, j = s:find(secret, at, true)
        if not i then break end
        local before, after = s:sub(i - 1, i - 1), s:sub(j + 1, j + 1)
        if not before:find("^[%w_]$") and not after:find("^[%w_]$") then
            out[#out + 1] = s:sub(at, i - 1) .. MASK
        else
            out[#out + 1] = s:sub(at, j)
        end
        at = j + 1
    end
    out[#out + 1] = s:sub(at)
    return table.concat(out)
end

-- log.forget_secrets(): the test runner's reset between test files.
function M.forget_secrets() secrets = {} end

-- A password written inside a connection string is masked by its place, in
-- any text, before anything has parsed it (a parameter in run_start, the
-- journal, the report, libpq's own message): `password=value` or
-- `password='quoted \' value'` of a conninfo, and `scheme://user:password@`.
local PASSWORD_KEY = "%f[%w][Pp][Aa][Ss][Ss][Ww][Oo][Rr][Dd]%s*=%s*"

local function mask_inline_passwords(s)
    if s:find("[Pp][Aa][Ss][Ss][Ww][Oo][Rr][Dd]%s*=") then
        local out, at = {}, 1
        while true do
            local i, j = s:find(PASSWORD_KEY, at)
            if not i then break end
            local stop
            if s:sub(j + 1, j + 1) == "'" then
                stop = j + 2
                while stop <= #s do
                    local c = s:sub(stop, stop)
                    if c == "\\" then
                        stop = stop + 2
                    elseif c == "'" then
                        break
                    else
                        stop = stop + 1
                    end
                end
            else
                stop = select(2, s:find("^[^%s'\",;&]*", j + 1))
            end
            out[#out + 1] = s:sub(at, j) .. MASK
            at = stop + 1
        end
        out[#out + 1] = s:sub(at)
        s = table.concat(out)
    end
    if s:find("://", 1, true) then s = s:gsub("(%a[%w+.%-]*://[^:/@%s]*:)[^@/%s]+@", "%1" .. MASK .. "@") end
    return s
end

-- log.written_password(s) -> the password as written in a conninfo or URI
-- text (the value the masking above finds by its place), or nil.
local URI_PASSWORD = "^%s*%a[%w+.%-]*://[^/@%s]*:([^@/%s]*)@"
function M.written_password(s)
    if type(s) ~= "string" then return nil end
    local _, j = s:find(PASSWORD_KEY)
    if not j then return s:match(URI_PASSWORD) end
    if s:sub(j + 1, j + 1) == "'" then return s:match("^'(.-)'", j + 1) end
    return s:match("^[^%s'\",;&]*", j + 1)
end

-- log.redact(s) -> s with every registered secret replaced
function M.redact(s)
    if type(s) ~= "string" or clean[s] then return s end
    local original = s
    for _, secret in ipairs(secrets) do
        if s == secret then return MASK end
        if s:find(secret, 1, true) then
            if #secret >= WHOLE_WORD_BELOW then
                s = s:gsub(plain_pattern(secret), MASK)
            else
                s = mask_words(s, secret)
            end
        end
    end
    -- After the registered secrets, whose quoted forms span what the scan
    -- below would cut at the first quote.
    s = mask_inline_passwords(s)
    if s == original and #s <= 200 then
        if clean_count >= 20000 then clean, clean_count = {}, 0 end
        clean[s] = true
        clean_count = clean_count + 1
    end
    return s
end

-- log.secret_fields(t): registers every value of a secret-named field in t
-- (a decoded reply: GetSecretValue's SecretString, STS's SecretAccessKey),
-- so that the value stays masked wherever a playbook later prints it.
local REPLY_SECRETS = { secretstring = true, secretbinary = true, secretaccesskey = true, sessiontoken = true }

-- Every reply is walked, and lower-casing each key was most of the walk's cost:
-- the answer per key is kept (replies reuse a few hundred field names; a map
-- keyed by data is bounded by the reset).
local reply_secret_seen, reply_secret_count = {}, 0
local function is_reply_secret(key)
    local known = reply_secret_seen[key]
    if known == nil then
        local lower = key:lower()
        known = REPLY_SECRETS[lower] or lower:find("password$") ~= nil
        if reply_secret_count >= 20000 then reply_secret_seen, reply_secret_count = {}, 0 end
        reply_secret_seen[key] = known
        reply_secret_count = reply_secret_count + 1
    end
    return known
end

local function secret_fields(t, depth)
    for k, v in pairs(t) do
        local kind = type(v)
        if kind == "table" then
            if depth < 20 then secret_fields(v, depth + 1) end
        elseif kind == "string" and type(k) == "string" and is_reply_secret(k) then
            M.secret(v)
        end
    end
end

function M.secret_fields(t)
    if type(t) == "table" then secret_fields(t, 0) end
end

-- Fields whose value is a secret whatever it is, so that a password typed
-- into a parameter (never registered with secret()) is still masked when a
-- dry run prints the call that carries it.
local SECRET_FIELDS = {
    password = true,
    masteruserpassword = true,
    newmasteruserpassword = true,
    secretstring = true,
    secretbinary = true,
    sessiontoken = true,
    session_token = true,
    secret_access_key = true,
    secretaccesskey = true,
    authorization = true,
    ["x-amz-security-token"] = true,
    token = true,
}

local secret_field_seen = {}

function M.is_secret_field(key)
    if type(key) ~= "string" then return false end
    local known = secret_field_seen[key]
    if known == nil then
        local lower = key:lower()
        known = SECRET_FIELDS[lower] or lower:find("password$") ~= nil
        secret_field_seen[key] = known
    end
    return known
end

-- Returns value with secrets masked. A table is copied only when something
-- in it changes: events are emitted per SQL query and per AWS attempt, and
-- copying every one of them was most of the cost of logging.
local function redact_deep(value, depth)
    local kind = type(value)
    if kind == "string" then
        return M.redact(value)
    elseif kind ~= "table" or depth > 20 then
        return value
    end
    local copy = nil
    for k, v in pairs(value) do
        local masked
        if M.is_secret_field(k) and type(v) == "string" then
            masked = MASK
        else
            masked = redact_deep(v, depth + 1)
        end
        if masked ~= v then
            if not copy then
                copy = {}
                for k2, v2 in pairs(value) do
                    copy[k2] = v2
                end
            end
            copy[k] = masked
        end
    end
    if not copy then return value end
    return setmetatable(copy, getmetatable(value))
end

M.redact_table = function(t) return redact_deep(t, 0) end

-- Sinks ------------------------------------------------------------------

local progress_shown = false
local last_progress = nil

local function write(text)
    if progress_shown then
        config.out:write("\r\27[K")
        progress_shown = false
    end
    config.out:write(text, "\n")
    config.out:flush()
end

local function seconds_text(s)
    if s == nil then
        return ""
    elseif s < 1 then
        return string.format("%dms", math.floor(s * 1000 + 0.5))
    elseif s < 60 then
        return string.format("%.1fs", s)
    end
    return string.format("%dm%02ds", math.floor(s / 60), math.floor(s % 60))
end
M.seconds_text = seconds_text

local text_handlers = {}

-- Under --quiet (level warn and above) the timeline keeps only warnings,
-- errors and the result: what cron mails and a pager shows.
local function quiet() return LEVELS[config.level] > LEVELS.info end

local QUIET_STATUSES = { ok = true, checked = true, skipped = true }

function text_handlers.run_start(e)
    if quiet() then return end
    local mode = e.mode == "mock" and ("mock world" .. (e.scenario and (": " .. e.scenario) or "")) or "real AWS"
    if e.dry_run then mode = mode .. ", dry run" end
    write(string.format("== %s  (%s)", e.playbook, mode))
end

function text_handlers.run_end(e) write(string.format("== %s %s in %s", e.playbook, e.status, seconds_text(e.duration))) end

function text_handlers.step_start(e)
    if config.level == "debug" then write(string.format("-> [%d/%d] %s", e.index, e.total, e.step)) end
end

local STATUS_MARK =
    { ok = "ok  ", checked = "chk ", failed = "FAIL", skipped = "skip", interrupted = "STOP", refused = "REFUSED" }

function text_handlers.step_end(e)
    if quiet() and QUIET_STATUSES[e.status] then return end
    write(
        string.format(
            "%s [%d/%d] %s  %s",
            STATUS_MARK[e.status] or e.status,
            e.index,
            e.total,
            e.step,
            seconds_text(e.duration)
        )
    )
    if e.error then write("     error: " .. (tostring(e.error):gsub("\n", "\n     "))) end
    if e.traceback then write("     traceback:\n     " .. (e.traceback:gsub("\n", "\n     "))) end
end

function text_handlers.call(e)
    if e.outcome == "dry-run" and not quiet() then
        local params = e.params
        if type(params) == "table" then params = require("atlas.json").encode(params) end
        write(string.format("     dry-run: would call %s %s (%s) %s", e.module, e.op, e.region or "-", params or ""))
    elseif config.level == "debug" then
        write(
            string.format(
                "     %s %s (%s) %s %s%s",
                e.module,
                e.op,
                e.region or "-",
                e.outcome,
                seconds_text((e.duration_ms or 0) / 1000),
                e.attempt and e.attempt > 1 and (" attempt " .. e.attempt) or ""
            )
        )
    end
end

function text_handlers.wait(e)
    if config.level == "debug" then
        write(string.format("     waited %s for %s (%d polls, one every %s)", seconds_text(e.seconds), e.name, e.polls, seconds_text(e.pace)))
    end
end

function text_handlers.retry(e)
    if LEVELS[config.level] <= LEVELS.warn then
        write(
            string.format(
                "     retry %s %s (%s) in %s after %s",
                e.module or "aws",
                e.op or "?",
                e.region or "-",
                seconds_text(e.delay),
                e.error or "?"
            )
        )
    end
end

function text_handlers.log(e)
    if LEVELS[e.level] < LEVELS[config.level] then return end
    local prefix = e.level == "warn" and "WARN " or e.level == "error" and "ERROR " or ""
    write("     " .. prefix .. tostring(e.message))
end

function text_handlers.progress(e)
    if LEVELS[config.level] > LEVELS.info then return end
    -- A wait says how long it has waited and when it gives up: at 3 a.m. the
    -- first question is whether to keep waiting.
    local clock = ""
    if e.elapsed and e.timeout then
        local function mmss(seconds) return string.format("%d:%02d", seconds // 60, math.floor(seconds % 60)) end
        clock = string.format("  (waited %s of %s)", mmss(e.elapsed), mmss(e.timeout))
    end
    if config.tty then
        config.out:write("\r\27[K     ", e.message, clock)
        config.out:flush()
        progress_shown = true
    elseif e.message ~= last_progress then
        -- Without a terminal a log file gets each distinct state once.
        write("     " .. e.message .. clock)
    end
    last_progress = e.message
end

local function text_sink(e)
    local handler = text_handlers[e.type]
    if handler then
        handler(e)
    elseif config.level == "debug" then
        write("     " .. e.type)
    end
end

-- JSON holds UTF-8 only, and text from outside (a server's error message, a
-- log line, a response body) may carry other bytes. Each byte that is not
-- part of valid UTF-8 becomes U+FFFD: the event is written, never lost, and
-- the JSON sink never raises in the middle of a step.
local function utf8_clean(s)
    if utf8.len(s) then return s end
    local out, i = {}, 1
    while i <= #s do
        local ok, bad = utf8.len(s, i)
        if ok then
            out[#out + 1] = s:sub(i)
            break
        end
        out[#out + 1] = s:sub(i, bad - 1)
        out[#out + 1] = "\u{FFFD}"
        i = bad + 1
    end
    return table.concat(out)
end
M.utf8_clean = utf8_clean

local function utf8_clean_deep(v, depth)
    if type(v) == "string" then return utf8_clean(v) end
    if type(v) ~= "table" or depth > 20 then return v end
    local out = {}
    for k, x in pairs(v) do
        out[utf8_clean_deep(k, depth + 1)] = utf8_clean_deep(x, depth + 1)
    end
    return setmetatable(out, getmetatable(v))
end

local function json_sink(e)
    if e.type == "log" and LEVELS[e.level] < LEVELS[config.level] then return end
    local json = require "atlas.json"
    if e.error ~= nil and type(e.error) ~= "string" then e.error = tostring(e.error) end
    local ok, text = pcall(json.encode, e)
    if not ok then text = json.encode(utf8_clean_deep(e, 0)) end
    write(text)
end

local sink = text_sink

-- log.configure{format="text"|"json", level="debug"|"info"|"warn"|"error", out=file, tty=bool}
function M.configure(options)
    for k, v in pairs(options) do
        config[k] = v
    end
    sink = config.format == "json" and json_sink or text_sink
end

function M.config() return config end

-- log.set_sink(fn) -> previous sink; fn receives each redacted event.
function M.set_sink(fn)
    local previous = sink
    sink = fn
    return previous
end

-- os.date is the costly part; the seconds change rarely between events.
local stamp_second, stamp_text = nil, nil

-- Stamped with the real date, also in the mock world (runtime.wall).
local function timestamp()
    local now = runtime.wall()
    local whole = math.floor(now)
    if whole ~= stamp_second then
        stamp_second, stamp_text = whole, os.date("!%Y-%m-%dT%H:%M:%S", whole)
    end
    return string.format("%s.%03dZ", stamp_text, math.floor((now - whole) * 1000))
end

-- log.event{type=..., ...}: stamps, redacts and emits one event.
function M.event(e)
    -- The timeline shows outside calls only with --verbose (or when they are
    -- dry-run); skipping the others here keeps a loop of 10,000 queries from
    -- paying for redaction and timestamps nobody sees.
    if sink == text_sink and e.type == "call" and config.level ~= "debug" and e.outcome ~= "dry-run" then return end
    e = redact_deep(e, 0)
    if type(e.duration) == "number" then e.duration = math.floor(e.duration * 1000 + 0.5) / 1000 end
    e.ts = e.ts or timestamp()
    sink(e)
end

local function message(fmt, ...)
    if select("#", ...) > 0 then return string.format(fmt, ...) end
    return tostring(fmt)
end

-- log.change(what, before, after): a change a run made to the world, for the
-- report ("ecs service S (us-east-1) desired count", 2, 10). Emitted by the
-- helper that makes it, once the change was accepted; a dry run makes none.
function M.change(what, before, after)
    if runtime.dry_run then return end
    M.event { type = "change", what = what, before = before, after = after, step = runtime.step and runtime.step.name }
end

function M.debug(fmt, ...) M.event { type = "log", level = "debug", message = message(fmt, ...) } end
function M.info(fmt, ...) M.event { type = "log", level = "info", message = message(fmt, ...) } end
function M.warn(fmt, ...) M.event { type = "log", level = "warn", message = message(fmt, ...) } end
function M.error(fmt, ...) M.event { type = "log", level = "error", message = message(fmt, ...) } end

-- log.progress(text): the live line of a long wait.
function M.progress(fmt, ...) M.event { type = "progress", message = message(fmt, ...) } end

-- Ends a live progress line so the next output starts on its own line.
function M.end_progress()
    if progress_shown then
        config.out:write("\n")
        progress_shown = false
    end
    last_progress = nil
end

return M
