-- atlas.net: the Lua side of atlas.curl, and the one owner of the rule "plain
-- (unencrypted) traffic only to this machine".
--
-- Every HTTP request atlas-run makes (the AWS backend, atlas.http, the
-- credential chain) goes through net.request or net.request_many, which
-- refuse a url the rule forbids before libcurl sees it; atlas.sql asks
-- net.is_loopback before it lets a connection go without TLS. atlas.curl
-- itself only limits libcurl to http and https.
--
--   net.request(req, options) -> response | nil, message, code, sent
--   net.request_many(reqs, options) -> { {response} | {nil, message, code, sent}, ... }
--
-- req = {method=, url=, headers=, body=}: what goes on the wire.
-- options = {timeout=, connect_timeout=, allow_http=, ca_file=, fresh_connect=}: how to send
-- it; the control keys stay apart from the request until this point.
-- Failures are atlas.curl's (docs/transport.md): code "policy" for a url
-- refused here, sent false.
local M = {}

-- Seconds, when a caller gives none.
M.defaults = { timeout = 60, connect_timeout = 10 }

-- Tests replace these: the environment (ATLAS_ALLOW_HTTP), and the transport
-- (same request/request_many contract as atlas.curl).
M.getenv = os.getenv
M.curl = nil

local function transport()
    M.curl = M.curl or require "atlas.curl"
    return M.curl
end

-- net.is_loopback(host) -> true for 127.0.0.0/8, ::1 and localhost, in the
-- forms a url or a conninfo writes them ("[::1]", "localhost.").
function M.is_loopback(host)
    if type(host) ~= "string" then return false end
    host = host:lower()
    if host == "localhost" or host == "localhost." or host == "::1" or host == "[::1]" then return true end
    local a, b, c, d = host:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
    return a == "127" and tonumber(b) < 256 and tonumber(c) < 256 and tonumber(d) < 256
end

-- net.url_host(url) -> scheme (lower case), host | nil
-- The host only when the authority is a plain "host" or "host:port": a url
-- with user info, escapes or anything else libcurl might read another way
-- has no host here, so it is never taken for loopback.
-- Every call to a custom endpoint (moto, a proxy) parses its url twice; the
-- parse is kept per url (a handful per run; the bound is for safety).
local url_hosts, url_host_count = {}, 0

function M.url_host(url)
    url = tostring(url)
    local known = url_hosts[url]
    if known then return known[1], known[2] end
    local scheme, authority = url:match("^(%a[%w+.-]*)://([^/?#]*)")
    if not scheme then return nil end
    local host = authority:match("^(%[[%x:.]+%])") or authority:match("^([%w.-]+)")
    if host and not authority:sub(#host + 1):match("^:?%d*$") then host = nil end
    scheme = scheme:lower()
    if url_host_count >= 1000 then url_hosts, url_host_count = {}, 0 end
    url_hosts[url], url_host_count = { scheme, host }, url_host_count + 1
    return scheme, host
end

local function env_true(getenv, name)
    local v = getenv(name)
    v = v and v:lower()
    return v == "1" or v == "true" or v == "yes"
end

-- net.check_url(url, allow_http, getenv) -> true | nil, message, "policy"
-- https anywhere; plain http to loopback, or anywhere when the call says
-- allow_http or the operator set ATLAS_ALLOW_HTTP=1 (read with getenv,
-- default net.getenv); nothing else.
function M.check_url(url, allow_http, getenv)
    if url:find("^https://") then return true end -- every call to AWS: no parse needed
    local scheme, host = M.url_host(url)
    if scheme == "https" then return true end
    if scheme ~= "http" then
        return nil, "unsupported endpoint scheme: " .. tostring(url) .. " (only http:// and https://)", "policy"
    end
    if M.is_loopback(host) or allow_http or env_true(getenv or M.getenv, "ATLAS_ALLOW_HTTP") then return true end
    return nil,
        "plain http to a non-loopback endpoint refused ("
            .. url
            .. "); set ATLAS_ALLOW_HTTP=1 or allow_http=true to allow it",
        "policy"
end

-- The table atlas.curl takes: the request's fields and the options' transport keys.
local function curl_request(req, options)
    options = options or {}
    return {
        method = req.method,
        url = req.url,
        headers = req.headers,
        body = req.body,
        timeout = options.timeout or M.defaults.timeout,
        connect_timeout = options.connect_timeout or M.defaults.connect_timeout,
        ca_file = options.ca_file,
        fresh_connect = options.fresh_connect,
    }
end

local function refused(req, options)
    if type(req) ~= "table" or type(req.url) ~= "string" then error("atlas.net: request needs a url", 3) end
    local ok, message, code = M.check_url(req.url, options and options.allow_http)
    if not ok then return { nil, message, code, false } end
end

-- net.request(req, options) -> response | nil, message, code, sent
function M.request(req, options)
    local refusal = refused(req, options)
    if refusal then return table.unpack(refusal, 1, 4) end
    return transport().request(curl_request(req, options))
end

-- net.request_many(reqs, options) -> list, entry i holding, packed, what
-- net.request(reqs[i], options[i]) returns. options is a list parallel to
-- reqs (nil: defaults). The requests run at once: the wall time is the slowest's.
function M.request_many(reqs, options)
    options = options or {}
    local out, wanted, slots = {}, {}, {}
    for i, req in ipairs(reqs) do
        out[i] = refused(req, options[i])
        if not out[i] then
            wanted[#wanted + 1] = curl_request(req, options[i])
            slots[#wanted] = i
        end
    end
    if #wanted > 0 then
        for j, result in ipairs(transport().request_many(wanted)) do
            out[slots[j]] = result
        end
    end
    return out
end

return M
