-- The real AWS backend: endpoints, credentials, SigV4 and libcurl around
-- atlas.aws.protocol. One attempt per invoke; atlas.aws retries above it.
-- Contract (docs/architecture.md "AWS backends"): invoke(req, options) ->
-- response | nil, err and invoke_many(reqs, options) -> list of responses /
-- error objects. options: endpoint, profile, timeout, ... (atlas.aws OPTIONS).
local protocol = require "atlas.aws.protocol"
local credentials = require "atlas.aws.credentials"
local errors = require "atlas.errors"
local runtime = require "atlas.run.runtime"

local M = {}

-- Seconds; a call may override with options.timeout / options.connect_timeout,
-- and ATLAS_AWS_TIMEOUT replaces the default timeout (see default_timeout).
M.defaults = { timeout = 30, connect_timeout = 5 }

-- Tests replace this to resolve endpoints under a controlled environment.
M.getenv = os.getenv

-- Seconds to add to the local clock when signing, learnt from a service that
-- said our clock is off (RequestTimeTooSkewed and friends), as the SDKs do.
M.clock_skew = 0

local net = require "atlas.net"
local sigv4
local function natives() sigv4 = sigv4 or require "atlas.aws.sigv4" end

local SKEW_CODES = {
    RequestTimeTooSkewed = true,
    RequestExpired = true,
    InvalidSignatureException = true,
    SignatureDoesNotMatch = true,
    RequestInTheFuture = true,
    AuthFailure = true,
}
local EXPIRED_CODES = { ExpiredToken = true, ExpiredTokenException = true }
local MONTHS = {
    Jan = 1,
    Feb = 2,
    Mar = 3,
    Apr = 4,
    May = 5,
    Jun = 6,
    Jul = 7,
    Aug = 8,
    Sep = 9,
    Oct = 10,
    Nov = 11,
    Dec = 12,
}

-- "Thu, 26 Nov 2026 02:23:34 GMT" -> Unix seconds
function M.parse_http_date(s)
    local d, mon, y, h, mi, sec = tostring(s):match("(%d+) (%a+) (%d+) (%d+):(%d+):(%d+)")
    if not d or not MONTHS[mon] then return nil end
    return credentials.parse_time(string.format("%s-%02d-%02dT%s:%s:%s", y, MONTHS[mon], tonumber(d), h, mi, sec))
end

-- Marks an error atlas.aws may retry at once because its cause is fixed here:
-- a clock off by more than a minute (now corrected) or expired credentials
-- (now dropped from the cache, so the next attempt resolves them again).
local function learn_from(err, resp, options)
    if SKEW_CODES[err.code] then
        local server = M.parse_http_date(resp.headers["date"])
        local here = os.time() + M.clock_skew
        if server and math.abs(server - here) > 60 then
            M.clock_skew = server - os.time()
            err.fixed = "clock skew corrected by " .. M.clock_skew .. " s"
        end
    elseif EXPIRED_CODES[err.code] and not options.credentials then
        credentials.reset()
        err.fixed = "expired credentials dropped"
    end
    return err
end

local function usage(message) errors.raise { kind = "usage", code = "endpoint", message = message } end

-- Parses "https://host:port/prefix" into scheme, host (with port) and path prefix.
local function split_url(url)
    local scheme, hostport, path = url:match("^(%a[%w+.-]*)://([^/?#]+)([^?#]*)")
    if not scheme then usage("invalid endpoint URL: " .. url) end
    return scheme:lower(), hostport, (path:gsub("/+$", ""))
end

-- ATLAS_AWS_TIMEOUT: the time one attempt may take, in seconds, when the call
-- names none: longer for a slow link, shorter where a stalled service must
-- be given up on fast (the fault campaign, docs/faults.md).
local function default_timeout()
    local v = M.getenv("ATLAS_AWS_TIMEOUT")
    if v == nil or v == "" then return M.defaults.timeout end
    local seconds = v:match("^%d+%.?%d*$") and tonumber(v)
    if not seconds or seconds <= 0 then
        errors.raise {
            kind = "usage",
            code = "environment",
            message = "ATLAS_AWS_TIMEOUT must be a positive number of seconds, got " .. string.format("%q", v),
        }
    end
    return seconds
end

local function env_true(name)
    local v = M.getenv(name)
    return v ~= nil and (v == "1" or v:lower() == "true" or v:lower() == "yes")
end

-- endpoint(svc, region, options) -> {url=base URL, signing_region=}
-- Order as in the SDKs: the call's endpoint, AWS_ENDPOINT_URL_<SERVICE>, AWS_ENDPOINT_URL,
-- then the standard one (Route53: its global endpoint, signed for us-east-1).
function M.endpoint(svc, region, options)
    local url = options and options.endpoint
    local source = "the call's endpoint"
    if not url and not env_true("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS") then
        url, source = M.getenv(svc.env_name), svc.env_name
        if url == "" then url = nil end
        if not url then
            url, source = M.getenv("AWS_ENDPOINT_URL"), "AWS_ENDPOINT_URL"
        end
        if url == "" then url = nil end
    end
    local custom = url ~= nil
    -- A malformed endpoint is bad input (exit 2) named by where it came
    -- from, not a network failure or a policy refusal.
    if custom and not select(2, net.url_host(url)) then
        usage(string.format("%s=%s is not a valid endpoint URL (scheme://host[:port][/path])", source, url))
    end
    local signing_region = region
    if svc.global_endpoint then signing_region = "us-east-1" end
    if not url then
        if svc.global_endpoint then
            url = "https://" .. svc.global_endpoint
        else
            local suffix = region:match("^cn%-") and "amazonaws.com.cn" or "amazonaws.com"
            url = string.format("https://%s.%s.%s", svc.endpoint_prefix, region, suffix)
        end
    end
    local scheme, hostport, prefix = split_url(url)
    -- atlas.net owns the rule; asked here too, so that a refused endpoint is a
    -- usage error before anything is signed.
    local allowed, why = net.check_url(url, options and options.allow_http, M.getenv)
    if not allowed then usage(why) end
    return { url = scheme .. "://" .. hostport .. prefix, signing_region = signing_region, custom = custom }
end

-- curl's failure codes (engine/curl.c, atlas.net): dns, connect, timeout, reset, tls, interrupted, policy, ...
-- transport_error(svc, req, message, code, sent) -> the aws error object of a
-- call that got no HTTP answer. The mock world's network faults are built
-- here too, so that they look exactly like the real transport's.
local function transport_error(svc, req, message, code, sent)
    if code == "interrupted" then
        errors.raise { kind = "interrupted", code = "interrupted", message = "interrupted by signal" }
    end
    if code == "policy" then errors.raise { kind = "usage", code = "endpoint", message = tostring(message) } end
    local timed_out = code == "timeout"
    return errors.new {
        kind = "aws",
        code = timed_out and "RequestTimeout" or "ConnectionError",
        message = string.format("%s (%s)", tostring(message), tostring(code)),
        service = svc.name,
        action = req.action,
        region = req.region,
        sent = sent and true or false,
        timeout = timed_out or nil,
        transport = code,
        retryable = false,
    }
end

M.transport_error = transport_error

-- S3 as the SDKs address it: virtual-hosted (https://bucket.s3.region.amazonaws.com/key)
-- on AWS, path-style (endpoint/bucket/key) with a custom endpoint. A bucket
-- name with a dot cannot match the wildcard certificate, so it stays path-style.
local function s3_virtual_host(base, path)
    local bucket, rest = path:match("^/([^/?]+)(.*)$")
    if not bucket or bucket:find(".", 1, true) then return base, path end
    local scheme, host = base:match("^(%a+://)(.*)$")
    return scheme .. bucket .. "." .. host, rest ~= "" and rest or "/"
end

-- prepare(req, options) -> svc, the signed http request, its transport options | raises on misuse
local function prepare(req, options)
    natives()
    local svc = protocol.service(req.service)
    local region = req.region or M.getenv("AWS_REGION") or M.getenv("AWS_DEFAULT_REGION")
    if not region or region == "" then
        error("atlas.aws: " .. svc.name .. " " .. tostring(req.action) .. ": region is required", 0)
    end
    req.region = region
    local ep = M.endpoint(svc, region, options)
    local http = protocol.build(svc, req.action, req.params)
    local base, path = ep.url, http.path
    if svc.name == "s3" and not ep.custom then
        base, path = s3_virtual_host(base, path)
    end
    local url = base .. path .. (http.query ~= "" and ("?" .. http.query) or "")
    local added = {}
    if not options.unsigned then
        local creds = options.credentials or credentials.resolve { profile = options.profile, region = region }
        added = sigv4.sign {
            method = http.method,
            url = url,
            headers = http.headers,
            body = http.body,
            region = ep.signing_region,
            service = svc.signing_name,
            credentials = creds,
            time = M.clock_skew ~= 0 and (os.time() + M.clock_skew) or nil,
            -- S3 signs its payload's hash and its path as sent (botocore's S3SigV4Auth)
            sign_body = svc.name == "s3",
            normalize = svc.name ~= "s3",
        }
    end
    for k, v in pairs(added) do
        http.headers[k] = v
    end
    -- No body at all on GET/DELETE, so that libcurl adds no Content-Type or Content-Length of its own.
    local body = http.body
    if body == "" and http.method ~= "POST" and http.method ~= "PUT" then body = nil end
    return svc, { method = http.method, url = url, headers = http.headers, body = body }, {
        timeout = options.timeout or default_timeout(),
        connect_timeout = options.connect_timeout or M.defaults.connect_timeout,
        allow_http = options.allow_http,
        -- behind a TLS-inspecting proxy: the corporate CA, as the SDKs take it
        ca_file = options.ca_file or credentials.ca_bundle(options.profile),
        -- a call that changes something goes out once per attempt atlas.aws logs (engine/curl.c)
        fresh_connect = runtime.is_mutating(svc.name, req.action),
    }
end

local function finish(svc, req, options, resp)
    -- for the call event: what AWS support asks for first
    local h = resp.headers
    req.request_id = h["x-amzn-requestid"] or h["x-amz-request-id"] or h["x-amzn-request-id"]
    local v, err = protocol.decode(svc, req.action, req.region, resp)
    if err then learn_from(err, resp, options) end
    return v, err
end

-- prepare's failures that are the world's (no credentials for a profile) are
-- this call's error; misuse and usage errors are raised.
local function try_prepare(req, options)
    local ok, svc, http, transport = pcall(prepare, req, options or {})
    if ok then return svc, http, transport end
    if errors.is(svc) and svc.kind ~= "usage" then return nil, svc end
    error(svc, 0)
end

-- invoke(req, options) -> response | nil, err
function M.invoke(req, options)
    options = options or {}
    local svc, http, transport = try_prepare(req, options)
    if not svc then return nil, http end
    local resp, message, code, sent = net.request(http, transport)
    if not resp then return nil, transport_error(svc, req, message, code, sent) end
    return finish(svc, req, options, resp)
end

-- invoke_many(reqs, options) -> list of responses or error objects, in order
-- (options: a list parallel to reqs); the requests run concurrently (curl
-- multi), so the wall time is the slowest one.
function M.invoke_many(reqs, options)
    options = options or {}
    local svcs, https, transports, slots, out = {}, {}, {}, {}, {}
    for i, req in ipairs(reqs) do
        options[i] = options[i] or {}
        local svc, http, transport = try_prepare(req, options[i])
        if svc then
            svcs[i] = svc
            https[#https + 1], transports[#https + 1] = http, transport
            slots[#https] = i
        else
            out[i] = http
        end
    end
    local results = #https > 0 and net.request_many(https, transports) or {}
    for j, i in ipairs(slots) do
        local resp, message, code, sent = table.unpack(results[j], 1, 4)
        if resp then
            local v, err = finish(svcs[i], reqs[i], options[i], resp)
            out[i] = v or err
        else
            out[i] = transport_error(svcs[i], reqs[i], message, code, sent)
        end
    end
    return out
end

return M
