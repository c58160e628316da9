-- atlas.aws.sigv4: AWS Signature Version 4, the header-signed variant.
--
--   sign{method, url, headers, body, region, service, time, credentials,
--        normalize=true, sign_body=false, omit_session_token=false}
--     -> headers_to_add, {canonical_request=, string_to_sign=, signature=, signed_headers=}
--   sha256_hex(s), hmac_sha256(key, s), hex(s): atlas.sigv4's digests
--
-- The canonical request is string policy and lives here; the digests, HMAC and the derived
-- signing key (cached per date, region and service, never the secret) are OpenSSL's, in
-- engine/sigv4.c. The url is the URL as it goes on the wire, already percent-encoded by the
-- caller. For services other than S3 the canonical URI encodes each path byte once more
-- ("double encoding"), as the SDKs do: a function name "a:b" travels as "a%3Ab" and is signed
-- as "a%253Ab". Misuse (a missing field, a relative url, a header value that is not text)
-- raises. Byte comparisons (sorting, lower-casing) rely on the C locale, which atlas-run
-- never changes.
local native = require "atlas.sigv4"

local byte, char, concat, find, format, gmatch, gsub, lower, match, sub, tostring, type =
    string.byte, string.char, table.concat, string.find, string.format, string.gmatch, string.gsub, string.lower,
    string.match, string.sub, tostring, type
local sha256_hex, signature = native.sha256_hex, native.signature

local M = { sha256_hex = native.sha256_hex, hmac_sha256 = native.hmac_sha256, hex = native.hex }

local function misuse(message) error("sigv4.sign: " .. message, 0) end

-- ---- URI encoding (RFC 3986: everything but the unreserved set as %XX, upper case) ---------

local ENCODED = {}
for c = 0, 255 do
    ENCODED[char(c)] = format("%%%02X", c)
end
local NOT_UNRESERVED = "[^A-Za-z0-9%-._~]"
local NOT_UNRESERVED_OR_SLASH = "[^A-Za-z0-9%-._~/]"

-- "%7e" and "%7E" -> "~": a query component is decoded, then encoded strictly, so that "%7e", "~"
-- and "%7E" all sign alike.
local DECODED = {}
do
    local digits = "0123456789ABCDEFabcdef"
    for i = 1, #digits do
        for j = 1, #digits do
            local pair = sub(digits, i, i) .. sub(digits, j, j)
            DECODED["%" .. pair] = char(tonumber(pair, 16))
        end
    end
end
local PERCENT_PAIR = "%%[0-9A-Fa-f][0-9A-Fa-f]"

local function query_component(s)
    if find(s, "%", 1, true) then s = gsub(s, PERCENT_PAIR, DECODED) end
    return (gsub(s, NOT_UNRESERVED, ENCODED))
end

-- ---- URL pieces ----------------------------------------------------------------------------

-- -> host (authority without userinfo; the default port dropped, as curl does on the wire),
--    path, query (without "?" and fragment).
local function url_split(url)
    local scheme_end = find(url, "://", 1, true)
    local nul = find(url, "\0", 1, true)
    if not scheme_end or (nul and nul < scheme_end) then misuse "url must be absolute (scheme://host/...)" end
    local default_port = lower(sub(url, 1, scheme_end - 1)) == "https" and ":443" or ":80"
    local authority, rest = match(url, "^([^/?#]*)(.*)$", scheme_end + 3)
    local host = match(authority, "@([^@]*)$") or authority
    if host == "" then misuse "url has no host" end
    if #host > #default_port and sub(host, -#default_port) == default_port then
        host = sub(host, 1, -#default_port - 1)
    end
    local path, query = match(rest, "^([^?#]*)%??([^#]*)")
    return host, path, query
end

-- The canonical URI of `path`, the way botocore's normalize_url_path does it: RFC 3986
-- dot-segment removal, empty segments dropped, and a trailing slash kept only when the path
-- ends in "/" and something is left ("/a/." is "/a", "/a/.." is "/"). Each segment is then
-- encoded once more. Without `normalize` (S3), the path is encoded as it is.
local function canonical_uri(path, normalize)
    if path == "" or path == "/" then return "/" end
    if not normalize then return (gsub(path, NOT_UNRESERVED_OR_SLASH, ENCODED)) end
    local segments, n = {}, 0
    for segment in gmatch(path, "[^/]+") do
        if segment == ".." then
            if n > 0 then
                segments[n] = nil
                n = n - 1
            end
        elseif segment ~= "." then
            n = n + 1
            segments[n] = gsub(segment, NOT_UNRESERVED, ENCODED)
        end
    end
    -- a path is empty or starts with "/": the authority ends at the first "/", "?" or "#"
    local uri = "/" .. concat(segments, "/")
    if n > 0 and byte(path, -1) == 47 then uri = uri .. "/" end
    return uri
end

-- "k1=v1&k2=v2" sorted by encoded key, then encoded value; a bare key gets "=". Pairs are
-- sorted as "key\1value": every encoded byte sorts after \1, so that is the (key, value) order.
local function canonical_query(query)
    if query == "" then return "" end
    local pairs_, n = {}, 0
    for piece in gmatch(query, "[^&]+") do
        local key, value = match(piece, "^([^=]*)=?(.*)$")
        n = n + 1
        pairs_[n] = query_component(key) .. "\1" .. query_component(value)
    end
    table.sort(pairs_)
    return (gsub(concat(pairs_, "&"), "\1", "="))
end

-- A run signs the same few urls again and again: their canonical pieces are kept, a bounded few.
local url_cache, url_cache_size = { [true] = {}, [false] = {} }, 0

local function canonical_url(url, normalize)
    local hit = url_cache[normalize][url]
    if hit then return hit[1], hit[2], hit[3] end
    local host, path, query = url_split(url)
    local uri, canonical = canonical_uri(path, normalize), canonical_query(query)
    if url_cache_size >= 64 then
        url_cache, url_cache_size = { [true] = {}, [false] = {} }, 0
    end
    url_cache_size = url_cache_size + 1
    url_cache[normalize][url] = { host, uri, canonical }
    return host, uri, canonical
end

-- ---- headers -------------------------------------------------------------------------------

-- What botocore's str.split() splits a header value on, within one byte: ASCII white space and
-- the separators 0x1c to 0x1f.
local SPACE = "[ \t-\r\28-\31]"
local SPACES = SPACE .. "+"
local NO_SPACE = "^[^ \t-\r\28-\31]*$"

-- A run sends the same few header values again and again: their trimmed forms are kept, a
-- bounded few.
local trim_cache, trim_cache_size = {}, 0

-- Trimmed, every run of white space (the line breaks of a multi-line value included) one space.
local function trimmed(s)
    local hit = trim_cache[s]
    if hit then return hit end
    local t = s
    if not find(t, NO_SPACE) then
        t = gsub(t, SPACES, " ")
        if byte(t, 1) == 32 then t = sub(t, 2) end
        if byte(t, -1) == 32 then t = sub(t, 1, -2) end
    end
    if trim_cache_size >= 256 then
        trim_cache, trim_cache_size = {}, 0
    end
    trim_cache_size = trim_cache_size + 1
    trim_cache[s] = t
    return t
end

local function text(v)
    local kind = type(v)
    if kind == "string" then return v end
    if kind == "number" then return tostring(v) end
    return nil
end

-- The normalised value of a header: a string, or a list of strings for a header repeated on
-- the wire (joined by ","). Numbers are taken as their text.
local function header_value(value, name)
    if type(value) ~= "table" then
        local s = text(value)
        if s == nil then misuse(format("header '%s' value is not a string", name)) end
        return trimmed(s)
    end
    local items = {}
    for i = 1, #value do
        local s = text(value[i])
        if s == nil then misuse(format("header '%s' value %d is not a string", name, i)) end
        items[i] = trimmed(s)
    end
    return concat(items, ",")
end

-- Headers sign() computes itself; a caller's copy is not signed (the caller replaces it with
-- ours). A caller's x-amz-content-sha256 is signed as given unless sign_body.
local COMPUTED = { authorization = true, ["x-amz-date"] = true, ["x-amz-security-token"] = true }

-- Adds the caller's headers to `names` (lower case, n of them so far) and `values` (by name).
-- Headers whose names differ only in case are joined by "," in the order the table gives them.
local function add_caller_headers(headers, sign_body, names, values, n)
    for name, value in next, headers do
        if type(name) ~= "string" then misuse "header names must be strings" end
        local key = lower(name)
        if not COMPUTED[key] and not (sign_body and key == "x-amz-content-sha256") then
            local v = header_value(value, name)
            local previous = values[key]
            if previous then
                values[key] = previous .. "," .. v
            else
                n = n + 1
                names[n] = key
                values[key] = v
            end
        end
    end
    return n
end

local function add_header(names, values, n, name, value)
    names[n + 1] = name
    values[name] = value
    return n + 1
end

-- ---- the request ---------------------------------------------------------------------------

local function required(t, key)
    local s = text(t[key])
    if s == nil then misuse("field '" .. key .. "' must be a string") end
    return s
end

local function flag(t, key, default)
    local v = t[key]
    if v == nil then return default end
    return not not v
end

-- Unix seconds of the field `time`: a number, numeric text, or false/nil for now.
local function seconds(t)
    if not t then return os.time() end
    local n = tonumber(t)
    if not n then misuse "field 'time' must be a number" end
    return math.tointeger(n) or math.tointeger(n >= 0 and math.floor(n) or math.ceil(n)) or false
end

local last_time, last_date

-- "20150830T123600Z"
local function amz_date(t)
    if t == last_time then return last_date end
    local ok, date = pcall(os.date, "!%Y%m%dT%H%M%SZ", t)
    if not t or not ok or #date ~= 16 then misuse "time out of range" end
    last_time, last_date = t, date
    return date
end

-- -> signed headers ("host;x-amz-date"), canonical header lines ("host:h\nx-amz-date:...")
local function canonical_headers(headers, sign_body, token, omit_token, host, date, payload_hash)
    local names, values, n = { "x-amz-date" }, { ["x-amz-date"] = date }, 1
    if headers then n = add_caller_headers(headers, sign_body, names, values, n) end
    if not values.host then n = add_header(names, values, n, "host", host) end
    if sign_body then n = add_header(names, values, n, "x-amz-content-sha256", payload_hash) end
    if token and not omit_token then n = add_header(names, values, n, "x-amz-security-token", token) end
    table.sort(names)
    local signed_headers = concat(names, ";")
    for i = 1, n do
        local name = names[i]
        names[i] = name .. ":" .. values[name]
    end
    return signed_headers, concat(names, "\n")
end

-- The fields are read into locals, not a table (a table of them cost a microsecond per call), and
-- checked in the order the C signer checked them, so that a request with two faults names the
-- same one.
function M.sign(req)
    if type(req) ~= "table" then misuse "the request must be a table" end
    local method = required(req, "method")
    -- a NUL ends the method, as it did when the signer read it as a C string
    local nul = find(method, "\0", 1, true)
    if nul then method = sub(method, 1, nul - 1) end
    local host, uri, query = canonical_url(required(req, "url"), flag(req, "normalize", true))
    local body = text(req.body) or ""
    local region, service = required(req, "region"), required(req, "service")
    local sign_body, omit_token = flag(req, "sign_body", false), flag(req, "omit_session_token", false)
    local time = seconds(req.time)
    local creds = req.credentials
    if type(creds) ~= "table" then misuse "field 'credentials' must be a table" end
    local access_key, secret = required(creds, "access_key_id"), required(creds, "secret_access_key")
    local token = creds.session_token
    if type(token) ~= "string" then token = nil end -- nil, false or atlas.null all mean none
    local headers = req.headers
    if headers ~= nil and type(headers) ~= "table" then misuse "field 'headers' must be a table" end

    local date = amz_date(time)
    local payload_hash = sha256_hex(body)
    local signed_headers, header_lines =
        canonical_headers(headers, sign_body, token, omit_token, host, date, payload_hash)
    local canonical_request = method .. "\n" .. uri .. "\n" .. query .. "\n" .. header_lines .. "\n\n"
        .. signed_headers .. "\n" .. payload_hash
    local day = sub(date, 1, 8)
    local scope = day .. "/" .. region .. "/" .. service .. "/aws4_request"
    local string_to_sign = "AWS4-HMAC-SHA256\n" .. date .. "\n" .. scope .. "\n" .. sha256_hex(canonical_request)
    local sig = signature(secret, day, region, service, string_to_sign)
    local added = {
        Authorization = "AWS4-HMAC-SHA256 Credential=" .. access_key .. "/" .. scope .. ", SignedHeaders="
            .. signed_headers .. ", Signature=" .. sig,
        ["X-Amz-Date"] = date,
        ["X-Amz-Security-Token"] = token,
        ["X-Amz-Content-Sha256"] = sign_body and payload_hash or nil,
    }
    return added,
        {
            canonical_request = canonical_request,
            string_to_sign = string_to_sign,
            signature = sig,
            signed_headers = signed_headers,
        }
end

return M
