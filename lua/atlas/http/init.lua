-- atlas.http: plain HTTP(S) requests, for health endpoints and webhooks.
-- Real requests go through libcurl; under the mock world the world answers
-- for its endpoints. A transport failure raises an "http" error object;
-- any HTTP status is data and is returned.
--
-- Backends (atlas.http.real, atlas.http.mock), both the same shape:
--   request(req, options) -> response | nil, err
--   request_many(reqs, options) -> list of responses or error objects (options: a parallel list)
-- req = {method, url, headers, body}: what goes on the wire; options =
-- {timeout, connect_timeout, ...}: every other key of the caller's table.
local runtime = require "atlas.run.runtime"
local log = require "atlas.run.log"
local errors = require "atlas.errors"

local M = {}

local function host_of(url) return url:match("^%a+://([^/:]+)") or url end

-- The methods that only read. Any other one changes something on the far
-- side, so a dry run prints it and a step that may not change the world
-- cannot send it.
local READ_METHODS = { GET = true, HEAD = true }

-- http.is_mutating(method) -> true unless the method only reads
function M.is_mutating(method) return not READ_METHODS[(method or "GET"):upper()] end

-- In a dry run: the request as it would go, and a reply that says so.
local function dry_run(req)
    log.event {
        type = "call",
        module = "http",
        op = req.method,
        region = host_of(req.url),
        duration_ms = 0,
        outcome = "dry-run",
        params = req.method .. " " .. req.url,
    }
    return { status = 204, headers = {}, body = "", dry_run = true }
end

-- http.transport_error(req, message, code) -> the "http" error object of a
-- request that got no HTTP answer; code is curl's (engine/curl.c): dns,
-- connect, timeout, reset, tls, policy, ... The mock world's network faults
-- are built here too, so that they look exactly like the real ones.
function M.transport_error(req, message, code)
    return errors.new {
        kind = "http",
        code = code,
        message = message,
        url = req.url,
        method = req.method or "GET",
        retryable = code ~= "policy",
    }
end

-- The keys of a caller's request that go on the wire; every other key is an option.
local REQUEST_KEYS = { method = true, url = true, headers = true, body = true }

-- split(req) -> the request, the options (timeouts filled in)
local function split(req)
    local request, options = {}, {}
    for k, v in pairs(req) do
        if REQUEST_KEYS[k] then
            request[k] = v
        else
            options[k] = v
        end
    end
    options.timeout = options.timeout or 10
    options.connect_timeout = options.connect_timeout or math.min(options.timeout, 5)
    return request, options
end

-- Transport failures that point at the far side: it did not answer in time,
-- refused the connection or cut it. A name that does not resolve, a TLS
-- failure or a refused plain-http URL points at our own network or setup.
-- http.far_side(err) -> true for those, for http and aws errors alike
local FAR_SIDE = { connect = true, timeout = true, reset = true }
function M.far_side(err)
    if errors.is(err, "http") then return FAR_SIDE[err.code] == true end
    return errors.is(err, "aws") and FAR_SIDE[err.transport] == true
end

local function call_event(req, started, result)
    local failed = errors.is(result)
    log.event {
        type = "call",
        module = "http",
        op = req.method,
        region = host_of(req.url),
        duration_ms = math.floor((runtime.now() - started) * 1000),
        outcome = failed and "error" or tostring(result.status),
        error = failed and errors.message(result) or nil,
    }
end

-- http.request{method="GET", url=, headers=, body=, timeout=10}
--   -> {status=, headers=, body=}
-- Under --dry-run a method other than GET or HEAD is printed, not sent, and
-- answered {status = 204, dry_run = true}.
function M.request(req)
    assert(type(req) == "table" and type(req.url) == "string", "http.request needs a url")
    runtime.check_interrupted()
    req.method = req.method or "GET"
    if M.is_mutating(req.method) and runtime.check_change("http " .. req.method .. " " .. req.url) == "dry-run" then
        return dry_run(req)
    end
    local started = runtime.now()
    local response, err = runtime.backend("http").request(split(req))
    call_event(req, started, response or err)
    if not response then error(err, 0) end
    return response
end

-- http.request_many{req, ...} -> list of responses or http error objects, in order.
-- The requests run at once: the wall time is that of the slowest.
function M.request_many(reqs)
    local requests, options = {}, {}
    for i, req in ipairs(reqs) do
        assert(type(req) == "table" and type(req.url) == "string", "http.request_many: each request needs a url")
        req.method = req.method or "GET"
        requests[i], options[i] = split(req)
    end
    local started = runtime.now()
    local results = runtime.backend("http").request_many(requests, options)
    for i, req in ipairs(reqs) do
        call_event(req, started, results[i])
    end
    return results
end

-- http.get(url, options) -> response
function M.get(url, options)
    local req = { method = "GET", url = url }
    for k, v in pairs(options or {}) do
        req[k] = v
    end
    return M.request(req)
end

-- http.check(url, options) -> healthy, status-or-error-text, error object|nil
-- A health probe: any failure is an answer, never an exception. The error
-- object lets a caller tell "the endpoint is down" from "we could not ask"
-- (http.far_side).
function M.check(url, options)
    local ok, response = pcall(M.get, url, options)
    if not ok then
        if errors.is(response, "interrupted") then error(response, 0) end
        return false, errors.message(response), response
    end
    return response.status >= 200 and response.status < 300, response.status
end

-- http.check_many(urls, options) -> list of {healthy=, detail=} in order: the
-- probes of http.check, all at once.
function M.check_many(urls, options)
    local reqs = {}
    for i, url in ipairs(urls) do
        reqs[i] = { method = "GET", url = url }
        for k, v in pairs(options or {}) do
            reqs[i][k] = v
        end
    end
    local out = {}
    for i, result in ipairs(M.request_many(reqs)) do
        if errors.is(result) then
            if errors.is(result, "interrupted") or result.code == "interrupted" then error(result, 0) end
            out[i] = { healthy = false, detail = errors.message(result) }
        else
            out[i] = { healthy = result.status >= 200 and result.status < 300, detail = result.status }
        end
    end
    return out
end

return M
