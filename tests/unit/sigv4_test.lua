-- atlas.aws.sigv4 against every case of the AWS SigV4 suite (header-signed variant),
-- plus the behaviours the AWS layer relies on beyond the suite.
local t = require "atlas.test"
local json = require "atlas.json"
local sigv4 = require "atlas.aws.sigv4"

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local suite = here .. "/../../vendor/aws-sigv4-suite"

local function read(path)
    local f = assert(io.open(path, "rb"))
    local s = f:read("a")
    f:close()
    return s
end

local function exists(path)
    local f = io.open(path, "rb")
    if f then f:close() end
    return f ~= nil
end

local function case_names()
    local names = {}
    local p = assert(io.popen("ls -1 '" .. suite .. "'"))
    for name in p:lines() do
        if exists(suite .. "/" .. name .. "/request.txt") then names[#names + 1] = name end
    end
    p:close()
    return names
end

-- "2015-08-30T12:36:00Z" -> Unix seconds, independent of the local zone.
local function parse_timestamp(s)
    local y, mo, d, h, mi, sec = s:match("^(%d+)-(%d+)-(%d+)T(%d+):(%d+):(%d+)Z$")
    y, mo, d = tonumber(y), tonumber(mo), tonumber(d)
    if mo <= 2 then y = y - 1 end
    local era = y // 400
    local yoe = y - era * 400
    local doy = (153 * (mo + (mo > 2 and -3 or 9)) + 2) // 5 + d - 1
    local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    local days = era * 146097 + doe - 719468
    return days * 86400 + tonumber(h) * 3600 + tonumber(mi) * 60 + tonumber(sec)
end

-- request.txt: request line, headers (continuation lines fold into the previous
-- value, repeated names become a list in order), blank line, body.
local function parse_request(text)
    local lines = {}
    local head, body = text:match("^(.-)\n\n(.*)$")
    head = head or text:gsub("\n$", "")
    for line in (head .. "\n"):gmatch("(.-)\n") do
        lines[#lines + 1] = line
    end
    local method, path = lines[1]:match("^(%S+) (.*) HTTP/1%.1$")
    local headers, host, last = {}, nil, nil
    for i = 2, #lines do
        local line = lines[i]
        if line:match("^[ \t]") then
            local values = headers[last]
            values[#values] = values[#values] .. "\n" .. line
        else
            local name, value = line:match("^([^:]+):(.*)$")
            if name:lower() == "host" then
                host = value
            else
                headers[name] = headers[name] or {}
                table.insert(headers[name], value)
                last = name
            end
        end
    end
    for name, values in pairs(headers) do
        if #values == 1 then headers[name] = values[1] end
    end
    return { method = method, url = "https://" .. host .. path, headers = headers, body = body }
end

local function authorization_of(signed_request) return signed_request:match("\nAuthorization:([^\n]*)") end

local names = case_names()

t.case(
    "the suite is present and complete",
    function() t.ok(#names >= 38, "expected the 38 cases of the suite, found " .. #names) end
)

for _, name in ipairs(names) do
    t.case("suite: " .. name, function()
        local dir = suite .. "/" .. name .. "/"
        local ctx = json.decode(read(dir .. "context.json"))
        local req = parse_request(read(dir .. "request.txt"))
        local token = ctx.credentials.token
        local added, debug = sigv4.sign {
            method = req.method,
            url = req.url,
            headers = req.headers,
            body = ctx.sign_body and req.body or "",
            region = ctx.region,
            service = ctx.service,
            time = parse_timestamp(ctx.timestamp),
            normalize = ctx.normalize,
            sign_body = ctx.sign_body,
            omit_session_token = ctx.omit_session_token,
            credentials = {
                access_key_id = ctx.credentials.access_key_id,
                secret_access_key = ctx.credentials.secret_access_key,
                session_token = token,
            },
        }
        t.eq(debug.canonical_request, read(dir .. "header-canonical-request.txt"), "canonical request")
        t.eq(debug.string_to_sign, read(dir .. "header-string-to-sign.txt"), "string to sign")
        t.eq(debug.signature, read(dir .. "header-signature.txt"), "signature")
        t.eq(added.Authorization, authorization_of(read(dir .. "header-signed-request.txt")), "Authorization header")
        t.eq(added["X-Amz-Date"], "20150830T123600Z", "X-Amz-Date")
        t.eq(added["X-Amz-Security-Token"], token, "X-Amz-Security-Token")
    end)
end

-- Beyond the suite: what the AWS layer sends in practice.
local creds = { access_key_id = "AKIDEXAMPLE", secret_access_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY" }
local T = parse_timestamp("2015-08-30T12:36:00Z")

local function sign(over)
    local req = {
        method = "POST",
        url = "https://ecs.us-east-1.amazonaws.com/",
        region = "us-east-1",
        service = "ecs",
        time = T,
        credentials = creds,
        body = "{}",
    }
    for k, v in pairs(over or {}) do
        req[k] = v
    end
    return sigv4.sign(req)
end

local function canonical_lines(over)
    local _, d = sign(over)
    local lines = {}
    for line in (d.canonical_request .. "\n"):gmatch("(.-)\n") do
        lines[#lines + 1] = line
    end
    return lines, d
end

t.case("path segments are encoded a second time (non-S3)", function()
    local lines =
        canonical_lines { url = "https://lambda.eu-west-1.amazonaws.com/2015-03-31/functions/my%3Afn/invocations" }
    t.eq(lines[2], "/2015-03-31/functions/my%253Afn/invocations")
end)

-- As botocore's normalize_url_path: a trailing slash survives only when the path ends in "/"
-- and something is left, so "/a/." and "/a/b/.." lose it.
t.case("path normalisation beyond the suite, as botocore does it", function()
    local cases = {
        { "/a/b/..", "/a" },
        { "/a/./b/", "/a/b/" },
        { "//a//b/.", "/a/b" },
        { "/a/.", "/a" },
        { "/.", "/" },
        { "/a/b/../", "/a/" },
        { "//", "/" },
        { "/a/b/../../..", "/" },
        { "/a/..b/.c", "/a/..b/.c" },
        { "", "/" },
        { "/%7E~", "/%257E~" },
        { "/a b+c", "/a%20b%2Bc" },
    }
    for _, c in ipairs(cases) do
        local lines = canonical_lines { url = "https://ecs.us-east-1.amazonaws.com" .. c[1] }
        t.eq(lines[2], c[2], c[1])
    end
end)

t.case("query: sorted, decoded then strictly re-encoded, bare keys get '='", function()
    local lines = canonical_lines { url = "https://x.amazonaws.com/?b=2&a=%7e1&a=0&flag&c=a%2Fb+c" }
    t.eq(lines[3], "a=0&a=~1&b=2&c=a%2Fb%2Bc&flag=")
end)

t.case("host keeps a non-default port and drops a default one", function()
    local lines = canonical_lines { url = "http://127.0.0.1:5000/" }
    t.eq(lines[4], "host:127.0.0.1:5000")
    lines = canonical_lines { url = "https://ecs.us-east-1.amazonaws.com:443/" }
    t.eq(lines[4], "host:ecs.us-east-1.amazonaws.com")
end)

t.case("a supplied Host header wins over the url's host and is not duplicated", function()
    local _, d = sign { headers = { Host = "example.com" } }
    t.eq(d.signed_headers, "host;x-amz-date")
    t.match(d.canonical_request, "\nhost:example.com\n")
end)

t.case("caller's x-amz-date and authorization are replaced, not signed twice", function()
    local _, d = sign {
        headers = {
            ["X-Amz-Date"] = "19990101T000000Z",
            Authorization = "x",
            ["X-Amz-Target"] = "AmazonEC2ContainerServiceV20141113.DescribeServices",
        },
    }
    t.eq(d.signed_headers, "host;x-amz-date;x-amz-target")
    t.ok(not d.canonical_request:find("1999"), "stale date signed")
end)

t.case("x-amz-content-sha256: a caller's value is signed as given; sign_body computes it", function()
    local _, d = sign { headers = { ["X-Amz-Content-Sha256"] = "UNSIGNED-PAYLOAD" } }
    t.eq(d.signed_headers, "host;x-amz-content-sha256;x-amz-date")
    t.match(d.canonical_request, "\nx%-amz%-content%-sha256:UNSIGNED%-PAYLOAD\n")
    local added
    added, d = sign { headers = { ["X-Amz-Content-Sha256"] = "UNSIGNED-PAYLOAD" }, sign_body = true }
    t.eq(added["X-Amz-Content-Sha256"], sigv4.sha256_hex("{}"))
    t.match(d.canonical_request, "\nx%-amz%-content%-sha256:" .. sigv4.sha256_hex("{}") .. "\n")
end)

t.case("payload hash is the body's", function()
    local lines = canonical_lines { body = "Action=GetCallerIdentity&Version=2011-06-15" }
    t.eq(lines[#lines], sigv4.sha256_hex("Action=GetCallerIdentity&Version=2011-06-15"))
end)

t.case("session token: atlas.null or false mean none", function()
    local added = sign { credentials = { access_key_id = "A", secret_access_key = "S", session_token = json.null } }
    t.eq(added["X-Amz-Security-Token"], nil)
    added = sign { credentials = { access_key_id = "A", secret_access_key = "S", session_token = "tok" } }
    t.eq(added["X-Amz-Security-Token"], "tok")
end)

t.case("the signing key cache never mixes regions, services or secrets", function()
    local a = select(2, sign { region = "eu-west-1" }).signature
    local b = select(2, sign { region = "us-east-1" }).signature
    local c = select(
        2,
        sign { region = "eu-west-1", credentials = { access_key_id = "AKIDEXAMPLE", secret_access_key = "other" } }
    ).signature
    local a2 = select(2, sign { region = "eu-west-1" }).signature
    t.ok(a ~= b and a ~= c and b ~= c, "signatures must differ")
    t.eq(a2, a)
end)

-- A credential_process may print a numeric AccessKeyId, and JSON gives a number. sign() once
-- popped the string Lua converted from it and read it after the collector had freed it (heap
-- use-after-free, issue 11; make test-asan reports it). With the collector running at every
-- allocation, numbers must sign exactly as their text does.
t.case("numbers in credentials and headers sign as their text, whatever the collector does", function()
    local function request(i, convert)
        return {
            method = "GET",
            url = "https://ecs.us-east-1.amazonaws.com/",
            region = "us-east-1",
            service = "ecs",
            time = T,
            credentials = { access_key_id = convert(94011 + i), secret_access_key = convert(190274 * i) },
            headers = { ["X-Count"] = convert(8484 + i), ["X-List"] = { convert(121 * i), convert(i + 0.5) } },
        }
    end
    local function same(v) return v end
    local numeric = {}
    collectgarbage("incremental", 1, 1000, 1)
    local ok, err = pcall(function()
        for i = 1, 100 do
            local headers, details = sigv4.sign(request(i, same))
            numeric[i] = { headers.Authorization, details.canonical_request }
        end
    end)
    collectgarbage("incremental", 200, 100, 13)
    assert(ok, err)
    for i = 1, 100 do
        local headers, details = sigv4.sign(request(i, tostring))
        t.eq(numeric[i][1], headers.Authorization)
        t.eq(numeric[i][2], details.canonical_request)
    end
    t.match(numeric[1][1], "Credential=94012/")
end)

t.case("time defaults to now", function()
    local added = sign { time = false }
    t.match(added["X-Amz-Date"], "^%d%d%d%d%d%d%d%dT%d%d%d%d%d%dZ$")
    t.ok(added["X-Amz-Date"] ~= "20150830T123600Z")
end)

t.case("digests: sha256_hex, hmac_sha256, hex (RFC 4231 case 2)", function()
    t.eq(sigv4.sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    t.eq(
        sigv4.hex(sigv4.hmac_sha256("Jefe", "what do ya want for nothing?")),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )
    -- a key longer than the block is hashed first (RFC 4231 case 6)
    t.eq(
        sigv4.hex(sigv4.hmac_sha256(string.rep("\xaa", 131), "Test Using Larger Than Block-Size Key - Hash Key First")),
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
    )
    t.eq(sigv4.hex("\0\255a"), "00ff61")
end)

-- hmac_sha256 is built on SHA-256 in engine/sigv4.c: the key at, under and over the block
-- size. Expected values from Python's hmac module and RFC 4231 (cases 1 and 7).
t.case("hmac_sha256 agrees with RFC 4231 and Python's hmac around the 64-byte block", function()
    local cases = {
        { string.rep("\x0b", 20), "Hi There", "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7" },
        { string.rep("k", 64), "exactly one block of key", "baa93ea4ccc7062ed6870c5e7937dbd35ad7791df4e29df9addeb429ff491acf" },
        { string.rep("k", 65), "one byte over the block", "ea45307a1bd866c1d3612dc405564939492cf1d4ddbc10e7933454ebc427a2a3" },
        { "", "", "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad" },
        {
            string.rep("\xaa", 131),
            "This is a test using a larger than block-size key and a larger than block-size data. The key needs to be "
                .. "hashed before being used by the HMAC algorithm.",
            "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
        },
    }
    for _, case in ipairs(cases) do
        t.eq(sigv4.hex(sigv4.hmac_sha256(case[1], case[2])), case[3], #case[1] .. "-byte key")
    end
end)

t.case("misuse raises", function()
    t.raises(
        function() sigv4.sign { url = "https://x/", region = "r", service = "s", credentials = creds } end,
        "method"
    )
    t.raises(function() sign { url = "not a url" } end, "absolute")
    t.raises(function() sign { credentials = { access_key_id = "A" } } end, "secret_access_key")
end)

t.case("random urls and headers never crash the signer", function()
    math.randomseed(7)
    local alphabet = "/.%?&=#:@[]abcXYZ019 ~\0\255-_+"
    local function junk(n)
        local out = {}
        for i = 1, n do
            local k = math.random(#alphabet)
            out[i] = alphabet:sub(k, k)
        end
        return table.concat(out)
    end
    local signed = 0
    for _ = 1, 3000 do
        local ok, added = pcall(sigv4.sign, {
            method = "GET",
            url = "https://h" .. junk(math.random(0, 30)),
            body = junk(5),
            headers = { [junk(4) .. "x"] = junk(math.random(0, 10)), Multi = { junk(3), junk(3) } },
            region = "r",
            service = "s",
            time = T,
            credentials = creds,
        })
        if ok then
            signed = signed + 1
            t.match(added.Authorization, "Signature=%x+$")
        end
    end
    t.ok(signed > 2500, "most random requests must sign, got " .. signed)
end)
