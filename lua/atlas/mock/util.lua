-- Shared pieces of the mock world's services: names of the reference
-- environment, deterministic ids, timestamps in each protocol's wire form,
-- errors raised from handlers, paging.
local errors = require "atlas.errors"

local M = {}

local env = require "atlas.env"

M.REGIONS = env.REGIONS
M.ACCOUNT = "123456789012"
M.ZONE_NAME = env.ZONE .. "."
M.API_NAME = env.API_NAME .. "."

local FAULT_TEXT = {
    Throttling = { 400, "Rate exceeded" },
    ThrottlingException = { 400, "Rate exceeded" },
    TooManyRequestsException = { 429, "Rate exceeded" },
    RequestLimitExceeded = { 400, "Request limit exceeded." },
    PriorRequestNotComplete = { 400, "The request was rejected because Route 53 was still processing a prior request." },
    InternalError = { 500, "An internal error has occurred." },
    InternalFailure = { 500, "The request processing has failed because of an unknown error, exception or failure." },
    ServiceUnavailable = { 503, "Service is unavailable." },
    ServiceUnavailableException = { 503, "Service is unavailable." },
    ServerException = { 500, "Server error." },
    AccessDeniedException = { 400, "User is not authorized to perform this action" },
    AccessDenied = { 403, "User is not authorized to perform this action" },
    ExpiredTokenException = { 400, "The security token included in the request is expired" },
}

function M.fault_message(code) return (FAULT_TEXT[code] or { 400, "Injected fault " .. code })[2] end

function M.fault_status(code) return (FAULT_TEXT[code] or { 400 })[1] end

-- Deep copy of plain data (tables keep their metatables, e.g. json arrays).
function M.copy(value)
    if type(value) ~= "table" then return value end
    local out = {}
    for k, v in pairs(value) do
        out[k] = M.copy(v)
    end
    return setmetatable(out, getmetatable(value))
end

-- Deterministic identifiers: the same run produces the same ids.
-- A 31-bit LCG scrambled into 8 hex digits per step: deterministic, cheap,
-- and no global random state touched.
local function compute_hex_digits(seed, n)
    local out = {}
    local x = seed % 2147483648
    local i, len = 0, 0
    while len < n do
        i = i + 1
        x = (x * 1103515245 + 12345 + i) % 2147483648
        out[i] = string.format("%08x", (x * 2654435761) % 4294967296)
        len = len + 8
    end
    return table.concat(out):sub(1, n)
end

-- Every test case builds a world, and each build asks for the same ids
-- (log streams, endpoints, ARNs): remembered, they were a quarter of the
-- build. The function is pure, so the cache only trades memory for time;
-- it starts afresh past 50,000 entries.
local function memoised(compute)
    local cache, cached = {}, 0
    return function(seed, n)
        local by_length = cache[n]
        local value = by_length and by_length[seed]
        if value then return value end
        if cached >= 50000 then cache, cached = {}, 0 end
        by_length = cache[n] or {}
        cache[n] = by_length
        value = compute(seed, n)
        by_length[seed] = value
        cached = cached + 1
        return value
    end
end

local hex_digits = memoised(compute_hex_digits)
M.hex_digits = hex_digits

function M.id(prefix, seq) return prefix .. hex_digits(seq * 7919 + #prefix, 12) end

function M.uuid(seed)
    local h = hex_digits(seed * 104729 + 17, 32)
    return string.format("%s-%s-4%s-a%s-%s", h:sub(1, 8), h:sub(9, 12), h:sub(14, 16), h:sub(18, 20), h:sub(21, 32))
end

function M.request_id(seq) return M.uuid(seq + 500000) end

-- Upper-case base-32-ish ids as Route53 uses (zone "Z...", change "C...").
local UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
local upper_digits = memoised(function(seed, n)
    local out = {}
    local x = seed
    for i = 1, n do
        x = (x * 1103515245 + 12345 + i) % 2147483648
        local d = (x >> 16) % #UPPER
        out[i] = UPPER:sub(d + 1, d + 1)
    end
    return table.concat(out)
end)
function M.upper_id(prefix, seed, n) return prefix .. upper_digits(seed, n) end

-- Timestamps. JSON protocols (ECS, Logs, Secrets Manager, Events) send epoch
-- seconds as numbers; query and rest-xml protocols (RDS, CloudWatch, STS,
-- Route53) send ISO 8601 strings. The AWS layer passes both through as-is.
function M.iso(t, millis)
    local whole = math.floor(t)
    if millis == false then return os.date("!%Y-%m-%dT%H:%M:%SZ", whole) end
    return os.date("!%Y-%m-%dT%H:%M:%S", whole) .. string.format(".%03dZ", math.floor((t - whole) * 1000 + 0.5) % 1000)
end

-- Parses an input timestamp: epoch seconds (number or numeric string) or
-- ISO 8601 ("2025-11-18T09:30:00Z", fractional seconds and offsets allowed).
function M.parse_time(value)
    if type(value) == "number" then return value end
    if type(value) ~= "string" then return nil end
    local n = tonumber(value)
    if n then return n end
    local y, mo, d, h, mi, s, rest = value:match("^(%d+)-(%d+)-(%d+)[T ](%d+):(%d+):(%d+)(.*)$")
    if not y then
        y, mo, d = value:match("^(%d+)-(%d+)-(%d+)$")
        if not y then return nil end
        h, mi, s, rest = 0, 0, 0, ""
    end
    local days = M.days_from_civil(tonumber(y), tonumber(mo), tonumber(d))
    local t = days * 86400 + tonumber(h) * 3600 + tonumber(mi) * 60 + tonumber(s)
    local frac = rest:match("^(%.%d+)")
    if frac then
        t = t + tonumber("0" .. frac)
        rest = rest:sub(#frac + 1)
    end
    local sign, oh, om = rest:match("^([+-])(%d%d):?(%d%d)$")
    if sign then
        local offset = tonumber(oh) * 3600 + tonumber(om) * 60
        t = sign == "+" and t - offset or t + offset
    end
    return t
end

-- Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
-- algorithm), so parsing never depends on the local time zone.
function M.days_from_civil(y, m, d)
    if m <= 2 then y = y - 1 end
    local era = (y >= 0 and y or y - 399) // 400
    local yoe = y - era * 400
    local mp = (m + 9) % 12
    local doy = (153 * mp + 2) // 5 + d - 1
    local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468
end

-- The handler context: raises aws errors named after the current call.
local Context = {}
Context.__index = Context

function Context:fail(code, message, status)
    error(self.world:aws_error(self.service, self.action, self.region, code, message, status or 400), 0)
end

-- ctx:require(params, name) -> params[name], or fails the way the service
-- reports a missing required parameter.
function Context:need(params, name)
    local value = params[name]
    if value == nil or value == "" then
        if self.service == "rds" or self.service == "sts" or self.service == "cloudwatch" then
            self:fail("MissingParameter", "The request must contain the parameter " .. name, 400)
        elseif self.service == "route53" then
            self:fail(
                "InvalidInput",
                "1 validation error detected: Value null at '"
                    .. name
                    .. "' failed to satisfy constraint: Member must not be null",
                400
            )
        else
            self:fail(
                self.service == "ecs" and "InvalidParameterException" or "ValidationException",
                "1 validation error detected: Value null at '"
                    .. name
                    .. "' failed to satisfy constraint: Member must not be null",
                400
            )
        end
    end
    return value
end

function M.context(world, service, action, region)
    return setmetatable({ world = world, service = service, action = action, region = region }, Context)
end

-- Marks a table as a JSON array when atlas.json is there, so an empty list
-- encodes as [] in --log-format json and in tests that print responses.
local json_ok, json = pcall(require, "atlas.json")
function M.list(t)
    t = t or {}
    if json_ok and type(json) == "table" and json.array then return json.array(t) end
    return t
end

-- Paging by an opaque token that is the index of the next item.
-- page(items, token, max, default_max) -> slice, next_token|nil
function M.page(items, token, max, default_max)
    local start = 1
    if token ~= nil and token ~= "" then start = tonumber(tostring(token):match("^p(%d+)$")) or 1 end
    max = tonumber(max) or default_max
    local slice = M.list()
    for i = start, math.min(#items, start + max - 1) do
        slice[#slice + 1] = items[i]
    end
    local next_index = start + max
    if next_index <= #items then return slice, "p" .. next_index end
    return slice, nil
end

-- Lists from botocore inputs may arrive as a single string in hand-written
-- params; accept both.
function M.as_list(value)
    if value == nil then return {} end
    if type(value) ~= "table" then return { value } end
    return value
end

function M.region_map(fn)
    local out = {}
    for _, region in ipairs(M.REGIONS) do
        out[region] = fn(region)
    end
    return out
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
function M.base64(s)
    local out = {}
    for i = 1, #s, 3 do
        local a, b, c = s:byte(i, i + 2)
        local n = (a << 16) | ((b or 0) << 8) | (c or 0)
        local chunk = {}
        for j = 3, 0, -1 do
            local k = (n >> (6 * j)) & 63
            chunk[#chunk + 1] = B64:sub(k + 1, k + 1)
        end
        if not b then
            chunk[3], chunk[4] = "=", "="
        elseif not c then
            chunk[4] = "="
        end
        out[#out + 1] = table.concat(chunk)
    end
    return table.concat(out)
end

-- util.modules_under(prefix) -> the sorted names of the modules one level
-- below prefix ("atlas.mock" -> atlas.mock.ecs, ...): compiled in, or, during
-- development, files in $ATLAS_LUA_PATH (new ones included). How the mock
-- world finds its services and its scenarios.
function M.modules_under(prefix)
    local names, seen = {}, {}
    local function add(name)
        if not seen[name] then
            seen[name] = true
            names[#names + 1] = name
        end
    end
    local head = prefix .. "."
    for _, module in ipairs(require "atlas.embedded") do
        local rest = module:sub(#head + 1)
        if module:sub(1, #head) == head and rest ~= "" and not rest:find(".", 1, true) then add(module) end
    end
    local dev = os.getenv("ATLAS_LUA_PATH")
    if dev and dev ~= "" then
        local dir = dev .. "/" .. prefix:gsub("%.", "/")
        for _, file in ipairs(require("atlas.sys").readdir(dir) or {}) do
            local name = file:match("^(.+)%.lua$")
            if name then add(head .. name) end
        end
    end
    table.sort(names)
    return names
end

-- Sorted keys, so everything the world iterates is in a stable order.
function M.sorted_keys(t)
    local keys = {}
    for k in pairs(t) do
        keys[#keys + 1] = k
    end
    table.sort(keys)
    return keys
end

return M
