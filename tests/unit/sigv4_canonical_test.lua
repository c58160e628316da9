-- atlas.aws.sigv4's canonical request where neither the AWS SigV4 suite nor botocore's
-- cross-check pins it down: url pieces, query edge cases, header folding, time and misuse.
-- Each case passed against the C signer before issue 10 moved the canonicalisation to Lua.
local t = require "atlas.test"
local sigv4 = require "atlas.aws.sigv4"

local creds = { access_key_id = "AKIDEXAMPLE", secret_access_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY" }
local T = 1440938160 -- 2015-08-30T12:36:00Z

local function sign(over)
    local req = {
        method = "GET",
        url = "https://ecs.us-east-1.amazonaws.com/",
        region = "us-east-1",
        service = "ecs",
        time = T,
        credentials = creds,
    }
    for k, v in pairs(over) do
        req[k] = v
    end
    return sigv4.sign(req)
end

local function contains(s, text, msg) t.ok(s:find(text, 1, true), (msg or "") .. ": " .. string.format("%q", text) .. " not in\n" .. s) end

-- canonical request lines: 1 method, 2 URI, 3 query, 4.. headers
local function lines_of(over)
    local _, d = sign(over)
    local lines = {}
    for line in (d.canonical_request .. "\n"):gmatch("(.-)\n") do
        lines[#lines + 1] = line
    end
    return lines, d
end

t.case("url: host without userinfo or default port, path and query without the fragment", function()
    local cases = {
        -- url, host line, URI, query
        { "https://user:pw@ecs.amazonaws.com/", "host:ecs.amazonaws.com", "/", "" },
        { "https://a@b@h:443/x", "host:h", "/x", "" },
        { "HTTPS://h:443/", "host:h", "/", "" },
        { "http://h:80/", "host:h", "/", "" },
        { "http://h:443/", "host:h:443", "/", "" },
        { "https://h:80/", "host:h:80", "/", "" },
        { "ftp://h:80/", "host:h", "/", "" },
        { "https://:443/", "host::443", "/", "" },
        { "https://h?b=1", "host:h", "/", "b=1" },
        { "https://h/a#frag?x=1", "host:h", "/a", "" },
        { "https://h/a?b=1#c&d=2", "host:h", "/a", "b=1" },
        { "https://h/a?", "host:h", "/a", "" },
        { "https://h#/a", "host:h", "/", "" },
    }
    for _, c in ipairs(cases) do
        local lines = lines_of { url = c[1] }
        t.eq(lines[4], c[2], c[1] .. ": host")
        t.eq(lines[2], c[3], c[1] .. ": URI")
        t.eq(lines[3], c[4], c[1] .. ": query")
    end
end)

t.case("S3 (normalize=false): the path is encoded as sent, dots and empty segments kept", function()
    local lines = lines_of { url = "https://b.s3.amazonaws.com/a/./b//c%2F~ d/../", normalize = false }
    t.eq(lines[2], "/a/./b//c%252F~%20d/../")
    lines = lines_of { url = "https://b.s3.amazonaws.com", normalize = false }
    t.eq(lines[2], "/")
    -- any true value normalises, as Lua reads a flag
    lines = lines_of { url = "https://h/a/./b", normalize = 0 }
    t.eq(lines[2], "/a/b")
end)

t.case("query edge cases: '=' in values, bare and empty keys, stray '%', key prefixes sort first", function()
    local cases = {
        { "a=1=2", "a=1%3D2" },
        { "=v", "=v" },
        { "&&a&", "a=" },
        { "%zz=%4", "%25zz=%254" },
        { "a-b=1&a=2", "a=2&a-b=1" },
        { "b=2&a=%62&a=a", "a=a&a=b&b=2" },
        { "k=%2541", "k=%2541" },
        { "%C3%A9=%e2%82%ac", "%C3%A9=%E2%82%AC" },
    }
    for _, c in ipairs(cases) do
        t.eq(lines_of({ url = "https://h/?" .. c[1] })[3], c[2], c[1])
    end
end)

t.case("headers: separators 0x1c-0x1f fold like white space; list items are trimmed, empty ones kept", function()
    local _, d = sign { headers = { V = "\29v\30", X = "\28a\31\31b\v\f", Y = { "a", "", " b " }, Z = 12, W = 1.5 } }
    contains(d.canonical_request, "\nv:v\nw:1.5\nx:a b\nx-amz-date:20150830T123600Z\ny:a,,b\nz:12\n")
    t.eq(d.signed_headers, "host;v;w;x;x-amz-date;y;z")
end)

t.case("headers whose names differ only in case are joined in the table's order", function()
    local headers = { ["X-A"] = "1", ["x-a"] = "2", ["X-a"] = "3" }
    local order = {}
    for _, v in next, headers do
        order[#order + 1] = v
    end
    local _, d = sign { headers = headers }
    contains(d.canonical_request, "\nx-a:" .. table.concat(order, ",") .. "\n")
    t.eq(d.signed_headers, "host;x-a;x-amz-date")
end)

t.case("a caller's host header is folded and signed, the url's host is not", function()
    local _, d = sign { headers = { HOST = "  Example.com \n x ", host = "second" } }
    t.eq(d.signed_headers, "host;x-amz-date")
    t.match(d.canonical_request, "\nhost:[^\n]*Example%.com x[^\n]*\n")
    t.no_match(d.canonical_request, "ecs.us-east-1")
end)

t.case("session token: signed as given, without folding; a number is no token", function()
    local added, d = sign { credentials = { access_key_id = "A", secret_access_key = "S", session_token = " t  k " } }
    contains(d.canonical_request, "\nx-amz-security-token: t  k \n")
    t.eq(added["X-Amz-Security-Token"], " t  k ")
    added, d = sign { credentials = { access_key_id = "A", secret_access_key = "S", session_token = 77 } }
    t.eq(added["X-Amz-Security-Token"], nil)
    t.eq(d.signed_headers, "host;x-amz-date")
end)

t.case("time: numeric text and fractions (truncated) are accepted", function()
    t.eq(sign({ time = "1440938160" })["X-Amz-Date"], "20150830T123600Z")
    t.eq(sign({ time = 1440938160.9 })["X-Amz-Date"], "20150830T123600Z")
    t.eq(sign({ time = -1.5 })["X-Amz-Date"], "19691231T235959Z")
end)

t.case("a method is read up to a NUL; a body that is not text signs as empty", function()
    t.eq(lines_of({ method = "GE\0T" })[1], "GE")
    t.eq(lines_of({ method = 12 })[1], "12")
    local lines = lines_of { body = {} }
    t.eq(lines[#lines], sigv4.sha256_hex(""))
end)

t.case("region, service and secret with bytes a C string would cut still sign in full", function()
    local a = select(2, sign { region = "r\0a" }).signature
    local b = select(2, sign { region = "r\0b" }).signature
    local c = select(2, sign { credentials = { access_key_id = "A", secret_access_key = "\0s" } }).signature
    local d = select(2, sign { credentials = { access_key_id = "A", secret_access_key = "\0t" } }).signature
    t.ok(a ~= b, "regions differing after a NUL must sign differently")
    t.ok(c ~= d, "secrets differing after a NUL must sign differently")
    t.eq(select(2, sign { region = "r\0a" }).signature, a)
end)

t.case("misuse raises with a message naming the field", function()
    local cases = {
        { { url = "https:///x" }, "url has no host" },
        { { url = "https://user@/" }, "url has no host" },
        { { url = "ht\0tps://h/" }, "url must be absolute" },
        { { url = "/relative" }, "url must be absolute" },
        { { url = 5 }, "url must be absolute" },
        { { url = false }, "field 'url' must be a string" },
        { { region = {} }, "field 'region' must be a string" },
        { { service = true }, "field 'service' must be a string" },
        { { headers = "x" }, "field 'headers' must be a table" },
        { { headers = { [1] = "x" } }, "header names must be strings" },
        { { headers = { X = true } }, "header 'X' value is not a string" },
        { { headers = { X = { "a", false } } }, "header 'X' value 2 is not a string" },
        { { credentials = "x" }, "field 'credentials' must be a table" },
        { { credentials = { secret_access_key = "s" } }, "field 'access_key_id' must be a string" },
        { { time = {} }, "field 'time' must be a number" },
        { { time = "soon" }, "field 'time' must be a number" },
        { { time = 1e300 }, "time out of range" },
        { { time = 253402300800 }, "time out of range" }, -- year 10000
    }
    for _, c in ipairs(cases) do
        t.raises(function() sign(c[1]) end, c[2])
    end
    t.raises(function() sigv4.sign "GET" end, "table")
end)

t.case("sign_body: a caller's x-amz-content-sha256 gives way to the computed one, signed once", function()
    local added, d = sign { headers = { ["X-Amz-Content-Sha256"] = "UNSIGNED-PAYLOAD" }, sign_body = true, body = "b" }
    t.eq(d.signed_headers, "host;x-amz-content-sha256;x-amz-date")
    contains(d.canonical_request, "\nx-amz-content-sha256:" .. sigv4.sha256_hex("b") .. "\n")
    t.eq(added["X-Amz-Content-Sha256"], sigv4.sha256_hex("b"))
end)

t.case("computed headers a caller sets are neither signed nor errors, whatever their value", function()
    local _, d = sign { headers = { Authorization = true, ["X-Amz-Date"] = {}, ["x-amz-security-token"] = false } }
    t.eq(d.signed_headers, "host;x-amz-date")
end)

-- The derived key is cached per date, region and service (engine/sigv4.c); a signature must
-- still be the one its own key gives, whatever was signed before it.
t.case("each signature uses the key derived for its own secret, date, region and service", function()
    local function expected(d, secret, region, service)
        local k = sigv4.hmac_sha256("AWS4" .. secret, d.string_to_sign:match("\n(%d+)/"))
        k = sigv4.hmac_sha256(k, region)
        k = sigv4.hmac_sha256(k, service)
        k = sigv4.hmac_sha256(k, "aws4_request")
        return sigv4.hex(sigv4.hmac_sha256(k, d.string_to_sign))
    end
    local other = { access_key_id = "AKIDEXAMPLE", secret_access_key = "other" }
    local long = { access_key_id = "AKIDEXAMPLE", secret_access_key = string.rep("s", 70) }
    local requests = {
        { region = "eu-west-1", service = "ecs", credentials = creds, time = T },
        { region = "us-east-1", service = "ecs", credentials = creds, time = T },
        { region = "us-east-1", service = "route53", credentials = creds, time = T },
        { region = "us-east-1", service = "route53", credentials = other, time = T },
        { region = "us-east-1", service = "route53", credentials = long, time = T },
        { region = "us-east-1", service = "route53", credentials = creds, time = T + 86400 },
        { region = "eu-west-1", service = "ecs", credentials = creds, time = T },
    }
    for round = 1, 2 do
        for i, r in ipairs(requests) do
            local _, d = sign(r)
            t.eq(d.signature, expected(d, r.credentials.secret_access_key, r.region, r.service), round .. "/" .. i)
        end
    end
end)

-- The host is what follows the last "@"; a pattern that looked for it from every position took
-- quadratic time (20,000 bytes: a second). Linear, 200,000 bytes take milliseconds.
t.case("a long userinfo is skipped in linear time", function()
    local started = os.clock()
    local lines = lines_of { url = "https://" .. string.rep("a", 200000) .. "@h:443/" }
    t.eq(lines[4], "host:h")
    t.ok(os.clock() - started < 2, "signing took " .. (os.clock() - started) .. " s of CPU")
end)
