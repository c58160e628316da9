-- atlas.curl against a real HTTP/1.1 keep-alive server on loopback
-- (tests/support/http_test_server.py), and its failure modes.
local t = require "atlas.test"
local curl = require "atlas.curl"
local json = require "atlas.json"
local sys = require "atlas.sys"

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local server_script = here .. "/../support/http_test_server.py"

-- One server per case keeps connection counts independent of case order.
local function server()
    local port = t.server({ "python3", server_script, "PORT" })
    return "http://127.0.0.1:" .. port
end

local function echo(base, req)
    req.url = base .. "/echo"
    local res, msg, code = curl.request(req)
    t.ok(res, "request failed: " .. tostring(msg) .. " (" .. tostring(code) .. ")")
    t.eq(res.status, 200)
    return json.decode(res.body), res
end

local function delta(before, after)
    return {
        connects = after.connects - before.connects,
        reuses = after.reuses - before.reuses,
        requests = after.requests - before.requests,
    }
end

t.case("GET: status, lower-case headers, body, elapsed; User-Agent names atlas-run", function()
    local base = server()
    local seen, res = echo(base, { headers = { ["X-Amz-Target"] = "AmazonEC2ContainerServiceV20141113.ListClusters" } })
    t.eq(seen.method, "GET")
    t.eq(seen.body, "")
    t.eq(seen.headers["x-amz-target"], "AmazonEC2ContainerServiceV20141113.ListClusters")
    t.match(seen.headers["user-agent"], "^atlas%-run/%d+%.%d+%.%d+$")
    t.eq(seen.headers["expect"], nil)
    t.eq(res.headers["content-type"], "application/json")
    t.eq(res.headers["content-length"], tostring(#res.body))
    t.eq(math.type(res.status), "integer")
    t.ok(type(res.elapsed) == "number" and res.elapsed > 0 and res.elapsed < 5, "elapsed " .. tostring(res.elapsed))
end)

t.case("request headers: long values and empty values arrive intact", function()
    local base = server()
    local token = string.rep("AQoDYXdzEJr", 300) -- longer than any stack buffer
    local seen = echo(base, { headers = { ["X-Amz-Security-Token"] = token, ["X-Empty"] = "", ["X-Num"] = 13 } })
    t.eq(seen.headers["x-amz-security-token"], token)
    t.eq(seen.headers["x-empty"], "")
    t.eq(seen.headers["x-num"], "13")
end)

t.case("methods and bodies arrive exactly; no Content-Type unless given", function()
    local base = server()
    local body = "Action=DescribeDBInstances&Version=2014-10-31&X=%26\0binary"
    local seen = echo(base, { method = "POST", body = body })
    t.eq(seen.method, "POST")
    t.eq(seen.body, body)
    t.eq(seen.headers["content-type"], nil)
    seen = echo(base, { method = "POST", body = "{}", headers = { ["Content-Type"] = "application/x-amz-json-1.1" } })
    t.eq(seen.headers["content-type"], "application/x-amz-json-1.1")
    seen = echo(base, { method = "PUT", body = "<a/>" })
    t.eq({ seen.method, seen.body }, { "PUT", "<a/>" })
    seen = echo(base, { method = "DELETE" })
    t.eq({ seen.method, seen.body }, { "DELETE", "" })
    seen = echo(base, { method = "POST" })
    t.eq({ seen.method, seen.headers["content-length"] }, { "POST", "0" })
    local res = curl.request { method = "HEAD", url = base .. "/echo" }
    t.eq({ res.status, res.body }, { 200, "" })
    -- the reused handle forgets the previous method and body
    seen = echo(base, {})
    t.eq({ seen.method, seen.body, seen.headers["content-length"] }, { "GET", "", nil })
    seen = echo(base, { method = "PATCH", body = "p" })
    t.eq({ seen.method, seen.body }, { "PATCH", "p" })
    seen = echo(base, { method = "GET", body = "" })
    t.eq({ seen.method, seen.body, seen.headers["content-length"] }, { "GET", "", nil })
end)

t.case("keep-alive: one connection serves consecutive calls (stats and server agree)", function()
    local base = server()
    local before = curl.stats()
    local first = curl.request { url = base .. "/connections" }
    t.eq(first.reused, false)
    local accepted = first.body -- includes the harness's readiness probes
    local first_seen = echo(base, {})
    for _ = 1, 8 do
        local seen, res = echo(base, {})
        t.eq(res.reused, true)
        t.eq(seen.connection, first_seen.connection, "server saw a new connection")
    end
    t.eq(curl.request({ url = base .. "/connections" }).body, accepted, "server accepted another connection")
    t.eq(delta(before, curl.stats()), { connects = 1, reuses = 10, requests = 11 })
end)

t.case("request_many: wall time is the slowest call, results in order", function()
    local base = server()
    curl.request { url = base .. "/echo" } -- server warm
    local started = sys.monotime()
    local results = curl.request_many {
        { url = base .. "/delay?ms=900" },
        { url = base .. "/delay?ms=600" },
        { url = base .. "/delay?ms=300" },
    }
    local wall = sys.monotime() - started
    t.eq(#results, 3)
    t.eq({ results[1][1].body, results[2][1].body, results[3][1].body }, { "slept 900", "slept 600", "slept 300" })
    t.ok(wall >= 0.85, "faster than the slowest call? " .. wall)
    t.ok(wall < 1.5, "calls ran one after another: " .. wall .. " s for 0.9+0.6+0.3")
end)

t.case("request_many: each entry holds, packed, what request returns; failures in place", function()
    local base = server()
    local dead = "http://127.0.0.1:" .. assert(sys.free_port())
    local results = curl.request_many {
        { url = base .. "/status?code=503" },
        { url = dead .. "/" },
        { url = base .. "/echo", method = "POST", body = "x" },
    }
    t.eq(results[1][1].status, 503)
    local res, message, code, sent = table.unpack(results[2], 1, 4)
    t.eq({ res, code, sent }, { nil, "connect", false })
    t.match(message, "127%.0%.0%.1")
    local alone = table.pack(curl.request { url = dead .. "/" })
    t.eq({ alone.n, alone[1], alone[3], alone[4] }, { 4, nil, "connect", false }, "the same as request says")
    t.eq(json.decode(results[3][1].body).body, "x")
    t.eq(curl.request_many {}, {})
end)

t.case("three endpoints at once: each keeps its own connection across rounds", function()
    local bases = { server(), server(), server() }
    local function round()
        local reqs = {}
        for i, base in ipairs(bases) do
            reqs[i] = { url = base .. "/echo", method = "POST", body = tostring(i) }
        end
        return curl.request_many(reqs)
    end
    local before = curl.stats()
    local first = round()
    for i = 1, 3 do
        first[i] = first[i][1]
        t.eq({ first[i].status, first[i].reused, json.decode(first[i].body).body }, { 200, false, tostring(i) })
    end
    for _ = 1, 3 do
        local again = round()
        for i = 1, 3 do
            t.eq(
                { again[i][1].reused, json.decode(again[i][1].body).connection },
                { true, json.decode(first[i].body).connection }
            )
        end
    end
    t.eq(delta(before, curl.stats()), { connects = 3, reuses = 9, requests = 12 })
end)

t.case("keep-alive is shared between request and request_many", function()
    local base = server()
    curl.request { url = base .. "/echo" }
    local before = curl.stats()
    local results = curl.request_many { { url = base .. "/echo" } }
    t.eq(results[1][1].reused, true)
    t.eq(delta(before, curl.stats()).connects, 0)
end)

t.case("timeout: code timeout, sent, and it fires on time", function()
    local base = server()
    local started = sys.monotime()
    local res, msg, code, sent = curl.request { url = base .. "/delay?ms=3000", timeout = 0.3 }
    local wall = sys.monotime() - started
    t.eq({ res, code, sent }, { nil, "timeout", true })
    t.match(msg, "timed out")
    t.ok(wall > 0.25 and wall < 1.5, "timeout took " .. wall)
end)

t.case("connection refused: code connect, certainly not sent", function()
    local port = assert(sys.free_port())
    local res, msg, code, sent = curl.request { url = "http://127.0.0.1:" .. port .. "/", method = "POST", body = "x" }
    t.eq({ res, code, sent }, { nil, "connect", false })
    t.match(msg, "onnect")
end)

t.case("connection closed without an answer: code reset, maybe sent", function()
    local base = server()
    local res, _, code, sent = curl.request { url = base .. "/drop", method = "POST", body = "x" }
    t.eq({ res, code, sent }, { nil, "reset", true })
    -- and the next call still works
    t.eq(curl.request({ url = base .. "/echo" }).status, 200)
end)

t.case("a body cut short: code reset, sent", function()
    local base = server()
    local res, msg, code, sent = curl.request { url = base .. "/partial" }
    t.eq({ res, code, sent }, { nil, "reset", true })
    t.ok(#msg > 0)
end)

t.case("a server that closes (Connection: close, or idle timeout) costs a new connection, not a failure", function()
    local base = server()
    t.eq(curl.request({ url = base .. "/close" }).body, "closing")
    local res = curl.request { url = base .. "/echo", method = "POST", body = "after close" }
    t.eq({ res.status, res.reused, json.decode(res.body).body }, { 200, false, "after close" })
    t.eq(curl.request({ url = base .. "/idle-close?ms=100" }).status, 200)
    sys.sleep(0.4) -- the server drops the kept-alive connection meanwhile
    local before = curl.stats()
    res = curl.request { url = base .. "/echo", method = "POST", body = "after idle close" }
    t.eq({ res.status, json.decode(res.body).body }, { 200, "after idle close" })
    t.eq(delta(before, curl.stats()).connects, 1)
end)

t.case("DNS failure: code dns, not sent", function()
    local res, _, code, sent = curl.request { url = "https://host.invalid/", connect_timeout = 5 }
    t.eq({ res, code, sent }, { nil, "dns", false })
end)

t.case("plain http to any host is libcurl's to try: the rule lives in atlas.net; other schemes never", function()
    local _, _, code = curl.request { url = "http://host.invalid/", connect_timeout = 5 }
    t.eq(code, "dns")
    local res, msg, code2, sent = curl.request { url = "file:///etc/passwd" }
    t.eq({ res, code2, sent }, { nil, "other", false })
    t.match(msg, "rotocol")
end)

t.case("HTTP error statuses are responses, with their headers", function()
    local base = server()
    local res = curl.request { url = base .. "/status?code=429" }
    t.eq({ res.status, res.body, res.headers["retry-after"] }, { 429, "status 429", "2" })
    res = curl.request { url = base .. "/status?code=500" }
    t.eq(res.status, 500)
end)

t.case("response headers: repeated names joined, values trimmed", function()
    local base = server()
    local h = curl.request({ url = base .. "/headers" }).headers
    t.eq(h["x-multi"], "a, b")
    t.eq(h["x-amzn-requestid"], "req-1")
    t.eq(h["x-spaced"], "padded value")
end)

t.case("large bodies arrive whole", function()
    local base = server()
    local res = curl.request { url = base .. "/bytes?n=3000000" }
    t.eq(#res.body, 3000000)
    t.eq(res.body:match("^x*$") ~= nil, true)
    res = curl.request { url = base .. "/bytes?n=10" }
    t.eq(res.body, "xxxxxxxxxx")
end)

-- A throwaway CA-less certificate for localhost, and an HTTPS test server using it.
local function tls_server()
    local dir = t.tmpdir()
    local ok = os.execute(
        "openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=localhost -addext "
            .. "subjectAltName=DNS:localhost -days 1 -keyout '"
            .. dir
            .. "/key.pem' -out '"
            .. dir
            .. "/cert.pem' >/dev/null 2>&1"
    )
    t.ok(ok, "openssl could not make a certificate")
    local port = t.server({ "python3", server_script, "PORT", "--tls", dir .. "/cert.pem", dir .. "/key.pem" })
    return "https://localhost:" .. port, dir .. "/cert.pem"
end

t.case("TLS verification is on: an unknown certificate is refused before sending", function()
    local base = tls_server()
    local res, msg, code, sent = curl.request { url = base .. "/echo", method = "POST", body = "x" }
    t.eq({ res, code, sent }, { nil, "tls", false })
    t.match(msg, "certificate")
end)

t.case("TLS: ca_file trusts another anchor, connections are kept alive, and the default comes back", function()
    local base, ca = tls_server()
    local before = curl.stats()
    local first = curl.request { url = base .. "/echo", ca_file = ca }
    t.ok(first, "https with ca_file failed")
    t.eq(first.status, 200)
    local second = curl.request { url = base .. "/echo", ca_file = ca }
    t.eq(second.reused, true)
    t.eq(delta(before, curl.stats()), { connects = 1, reuses = 1, requests = 2 })
    -- without ca_file the live connection must not be reused: verification applies again
    local res, _, code = curl.request { url = base .. "/echo" }
    t.eq({ res, code }, { nil, "tls" })
    t.ok(curl.request { url = base .. "/echo", ca_file = ca }, "ca_file again")
end)

t.case("spawned children do not inherit connections", function()
    local function inherited_sockets()
        local out = os.tmpname()
        local pid = assert(sys.spawn({ "sh", "-c", "for f in /proc/$$/fd/*; do readlink $f; done" }, { stdout = out }))
        sys.wait(pid)
        local sockets = {}
        for line in (t.read_file(out) or ""):gmatch("[^\n]+") do
            if line:match("^socket:") then sockets[line] = true end
        end
        os.remove(out)
        return sockets
    end
    local base = server()
    local before = inherited_sockets()
    t.eq(curl.request({ url = base .. "/echo" }).status, 200) -- a kept-alive connection is now open
    for socket in pairs(inherited_sockets()) do
        t.ok(before[socket], "child inherited " .. socket)
    end
end)

t.case("misuse raises", function()
    t.raises(function() curl.request {} end, "url")
    t.raises(function() curl.request "http://127.0.0.1/" end)
    t.raises(
        function() curl.request { url = "http://127.0.0.1/", headers = { X = "a\r\nInjected: 1" } } end,
        "line break"
    )
    t.raises(function() curl.request { url = "http://127.0.0.1/", headers = { X = "a\0b" } } end, "NUL")
    t.raises(function() curl.request { url = "http://127.0.0.1/", timeout = -1 } end, "timeout")
    t.raises(function() curl.request { url = "http://127.0.0.1/", method = "GET / HTTP/1.1\r\nX: y" } end, "method")
    t.raises(function() curl.request { url = "http://127.0.0.1/", method = "" } end, "method")
    t.raises(function() curl.request_many { {} } end, "url")
end)

t.case("Ctrl-C interrupts a transfer in progress; cleanup calls afterwards still run", function()
    local base = server()
    local script = [[
        local c = require 'atlas.curl'
        local ok, err = pcall(function()
            return c.request{url = BASE .. '/delay?ms=8000'}
        end)
        io.stderr:write('pcall=', tostring(ok), ' ', tostring(type(err) == 'table' and err.code or err), '\n')
        local r = c.request{url = BASE .. '/echo'}
        io.stderr:write('cleanup=', tostring(r and r.status), '\n')
    ]]
    local out = os.tmpname()
    local pid = assert(
        sys.spawn(
            { t.binary(), "-e", "BASE = '" .. base .. "'\n" .. script },
            { stdout = out, stderr = out, stdin = "/dev/null" }
        )
    )
    t.defer(function() os.remove(out) end)
    -- signal only once the child's transfer is in progress (the server has its request)
    local deadline = sys.monotime() + 10
    while curl.request({ url = base .. "/delays" }).body == "0" and sys.monotime() < deadline do
        sys.sleep(0.02)
    end
    t.eq(curl.request({ url = base .. "/delays" }).body, "1", "the child never sent its request")
    sys.sleep(0.1)
    local started = sys.monotime()
    sys.kill(pid, "INT")
    local exited
    repeat
        exited = sys.wait(pid, true)
        if not exited then sys.sleep(0.02) end
    until exited or sys.monotime() - started > 5
    if not exited then
        sys.kill(pid, "KILL")
        sys.wait(pid)
    end
    local waited = sys.monotime() - started
    local output = t.read_file(out) or ""
    t.ok(exited and waited < 1.5, "atlas-run took " .. waited .. " s to stop: " .. output)
    t.match(output, "pcall=false interrupted")
    t.match(output, "cleanup=200")
end)
