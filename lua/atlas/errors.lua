-- The error object of atlas: how a failure of the outside world (AWS, SQL,
-- HTTP, a process, a timeout) reaches a playbook. It is a table, so a
-- playbook can pcall and decide on e.code or e.retryable; it prints as one
-- readable line. Misuse of an API stays a plain string error.
local M = {}

local mt = { __name = "atlas.error" }
M.mt = mt

local formatters = {}

function formatters.aws(e)
    return string.format(
        "%s %s (%s): %s: %s",
        e.service or "aws",
        e.action or "?",
        e.region or "global",
        e.code or "Error",
        e.message or ""
    )
end

function formatters.sql(e)
    local where = e.host and ((e.dbname and (e.dbname .. "@") or "") .. e.host) or "?"
    return string.format("sql %s: %s: %s", where, e.sqlstate or e.code or "ERROR", e.message or "")
end

function formatters.http(e)
    return string.format("http %s %s: %s", e.method or "GET", e.url or "?", e.message or e.code or "")
end

-- A wait that ran out of time names the call it was polling.
function formatters.timeout(e)
    if e.service then
        return string.format(
            "%s %s (%s): timeout: %s",
            e.service,
            e.action or "?",
            e.region or "global",
            e.message or ""
        )
    end
    return "timeout: " .. (e.message or "")
end

-- fail() and critical() from a playbook: the author's words are the message.
function formatters.playbook(e) return e.message or "failed" end

function formatters.usage(e) return e.message or "bad usage" end

mt.__tostring = function(e)
    local format = formatters[e.kind]
    local text = format and format(e) or string.format("%s: %s", e.kind or "error", e.message or "")
    if e.step then text = string.format('step "%s": %s', e.step, text) end
    return text
end

-- Lets the host's signal hook give its "interrupted" object this metatable.
debug.getregistry()["atlas.error"] = mt

-- errors.new{kind=, message=, code=, retryable=, ...} -> error object
function M.new(fields)
    assert(type(fields) == "table", "errors.new takes a table")
    assert(type(fields.kind) == "string", "errors.new: kind is required")
    fields.message = fields.message or fields.code or fields.kind
    if fields.retryable == nil then fields.retryable = false end
    return setmetatable(fields, mt)
end

-- errors.raise{...}: raises a new error object (no position prefix: the
-- object carries its own context).
function M.raise(fields) error(M.new(fields), 0) end

-- errors.is(value, kind?) -> true when value is an atlas error (of that kind)
function M.is(value, kind)
    if type(value) ~= "table" or getmetatable(value) ~= mt then return false end
    return kind == nil or value.kind == kind
end

-- errors.message(value) -> a one-line text for any error value
function M.message(value)
    if type(value) == "table" then
        local mt = getmetatable(value)
        if mt and mt.__tostring then
            local ok, text = pcall(tostring, value)
            if ok then return text end
        end
        -- A bare table raised by a playbook: its message, or its contents,
        -- say more than "table: 0x55...".
        if value.message ~= nil then return tostring(value.message) end
        local ok, text = pcall(require("atlas.json").encode, value)
        if ok then return "error object " .. text end
    end
    return tostring(value)
end

return M
