-- atlas.net: the one owner of "plain http only to loopback", and the options
-- it hands atlas.curl.
local t = require "atlas.test"
local net = require "atlas.net"
local curl = require "atlas.curl"
local sys = require "atlas.sys"

local function with_env(env)
    local saved = net.getenv
    net.getenv = function(k) return env[k] end
    t.defer(function() net.getenv = saved end)
end

local function requests() return curl.stats().requests end

t.case("plain http is refused off loopback unless allowed; loopback forms are allowed", function()
    with_env {}
    local before = requests()
    for _, url in ipairs {
        "http://example.com/",
        "HTTP://10.0.0.1/",
        "http://127.0.0.1@example.com/",
        "http://127.0.0.1.example.com/",
        "http://127.0.0.1:80@example.com/",
        "http://127.0.0.1\\@example.com/",
        "http://127.0.0.1%2f@example.com/",
        "http://127.0.0.256/",
        "ftp://127.0.0.1/",
        "file:///etc/passwd",
        "127.0.0.1/echo",
    } do
        local res, msg, code, sent = net.request { url = url }
        t.eq({ res, code, sent }, { nil, "policy", false }, url)
        t.ok(#msg > 0)
        local many = net.request_many({ { url = url } })[1]
        t.eq({ many[1], many[3], many[4] }, { nil, "policy", false }, url)
    end
    t.eq(requests() - before, 0, "a refused url must not reach curl")
    -- allowed: the failure is the network's, not the policy's
    local port = assert(sys.free_port())
    for _, url in ipairs {
        "http://127.0.0.1:" .. port,
        "http://127.9.8.7:" .. port,
        "http://localhost:" .. port,
        "http://[::1]:" .. port,
    } do
        local _, _, code = net.request({ url = url .. "/" }, { connect_timeout = 2 })
        t.eq(code, "connect", url)
    end
    t.ok(net.check_url("http://LOCALHOST.:8080/x"))
    local _, _, code = net.request({ url = "http://host.invalid/" }, { allow_http = true, connect_timeout = 5 })
    t.eq(code, "dns")
    with_env { ATLAS_ALLOW_HTTP = "1" }
    _, _, code = net.request({ url = "http://host.invalid/" }, { connect_timeout = 5 })
    t.eq(code, "dns", "ATLAS_ALLOW_HTTP=1 allows it for every caller")
end)

t.case("is_loopback: 127.0.0.0/8, ::1 and localhost only", function()
    for host, want in pairs {
        ["127.0.0.1"] = true,
        ["127.255.0.9"] = true,
        ["localhost"] = true,
        ["::1"] = true,
        ["[::1]"] = true,
        ["128.0.0.1"] = false,
        ["127.0.0.1.nip.io"] = false,
        ["1270.0.0.1"] = false,
        ["localhost.example.com"] = false,
        ["::2"] = false,
    } do
        t.eq(net.is_loopback(host), want, host)
    end
    t.eq(net.is_loopback(nil), false)
end)

t.case("options reach atlas.curl apart from the request; defaults fill the rest", function()
    local seen = {}
    local saved = net.curl
    net.curl = {
        request = function(r)
            seen[#seen + 1] = r
            return { status = 200, headers = {}, body = "" }
        end,
        request_many = function(list)
            local out = {}
            for i, r in ipairs(list) do
                seen[#seen + 1] = r
                out[i] = { { status = 200 + i, headers = {}, body = "" } }
            end
            return out
        end,
    }
    t.defer(function() net.curl = saved end)
    net.request({ url = "https://a/", method = "POST", body = "b" }, { timeout = 3, connect_timeout = 0.25 })
    t.eq(
        seen[1],
        { url = "https://a/", method = "POST", body = "b", timeout = 3, connect_timeout = 0.25 }
    )
    net.request { url = "https://a/" }
    t.eq({ seen[2].timeout, seen[2].connect_timeout }, { net.defaults.timeout, net.defaults.connect_timeout })
    local out = net.request_many({ { url = "https://x/" }, { url = "http://evil/" }, { url = "https://y/" } }, {
        nil,
        nil,
        { connect_timeout = 0.5 },
    })
    t.eq({ out[1][1].status, out[2][3], out[3][1].status }, { 201, "policy", 202 })
    t.eq({ #seen, seen[4].url, seen[4].connect_timeout }, { 4, "https://y/", 0.5 })
    t.raises(function() net.request { method = "GET" } end, "url")
end)

t.case("the mock http backend refuses what the real one refuses, with the same error", function()
    with_env {}
    local runtime = require "atlas.run.runtime"
    local previous = runtime.world
    runtime.use_world(require("atlas.mock.world").new {})
    t.defer(function() runtime.use_world(previous) end)
    local req, options = { method = "GET", url = "http://example.com/health" }, { timeout = 1 }
    local real_none, real_err = require("atlas.http.real").request(req, options)
    local mock_none, mock_err = require("atlas.http.mock").request(req, options)
    t.eq({ real_none, mock_none }, { nil, nil })
    t.eq(mock_err, real_err)
    t.eq({ mock_err.kind, mock_err.code }, { "http", "policy" })
    t.eq(#runtime.world.calls, 0, "a refused url must not reach the world")
end)
