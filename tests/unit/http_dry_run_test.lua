-- A dry run sends no HTTP method but GET and HEAD: the others are printed,
-- answered {status = 204, dry_run = true}, and the server receives nothing.
-- Against the loopback server of tests/support/http_test_server.py, which
-- counts the /delay requests it receives; and the mock world's equivalent.
local t = require "atlas.test"
local http = require "atlas.http"
local runtime = require "atlas.run.runtime"

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local server_script = here .. "/../support/http_test_server.py"

local function received(base)
    runtime.dry_run = false
    return tonumber(http.get(base .. "/delays").body)
end

t.case("dry run: POST, PUT, PATCH and DELETE reach no server; GET and HEAD do", function()
    local base = "http://127.0.0.1:" .. t.server({ "python3", server_script, "PORT" })
    runtime.use_real()
    runtime.dry_run = true
    t.defer(function() runtime.dry_run = false end)
    local events = t.capture(function()
        for _, method in ipairs { "POST", "PUT", "PATCH", "DELETE", "post" } do
            local reply = http.request { method = method, url = base .. "/delay?ms=1", body = '{"page":"oncall"}' }
            t.eq(reply.dry_run, true, method)
            t.eq(reply.status, 204)
        end
    end)
    local printed = 0
    for _, e in ipairs(events) do
        if e.type == "call" and e.outcome == "dry-run" then
            printed = printed + 1
            t.match(e.params, "^%a+ http://127%.0%.0%.1:%d+/delay%?ms=1$")
        end
    end
    t.eq(printed, 5)
    t.eq(received(base), 0)
    runtime.dry_run = true
    t.eq(http.request({ method = "GET", url = base .. "/delay?ms=1" }).status, 200)
    t.eq(http.request({ method = "HEAD", url = base .. "/delay?ms=1" }).status, 200)
    t.eq(received(base), 2, "the GET and HEAD were sent")
end)

t.case("a dry run through the binary prints the POST and the server sees nothing", function()
    local base = "http://127.0.0.1:" .. t.server({ "python3", server_script, "PORT" })
    local r = t.run {
        "--dry-run",
        "-e",
        string.format([[local r = require("atlas.http").request { method = "POST", url = %q, body = "x" }
print("dry", r.dry_run)]], base .. "/delay?ms=1"),
    }
    t.eq(r.code, 0, r.stderr)
    t.match(r.stdout, "dry%-run: would call http POST %(127%.0%.0%.1%) POST http://127%.0%.0%.1:%d+/delay%?ms=1")
    t.match(r.stdout, "dry\ttrue")
    runtime.use_real()
    t.eq(received(base), 0)
end)

t.case("mock world: a dry-run POST is not sent to the world either", function()
    local world = t.world("healthy")
    runtime.dry_run = true
    t.defer(function() runtime.dry_run = false end)
    local reply = http.request { method = "POST", url = "https://eu-west-1.atlas-crm.com/actuator/refresh" }
    t.eq(reply.dry_run, true)
    for _, call in ipairs(world.calls) do
        t.ok(call.module ~= "http", "no http call reached the world")
    end
    -- A GET still reaches it.
    http.request { method = "GET", url = "https://eu-west-1.atlas-crm.com/actuator/health" }
    local seen = 0
    for _, call in ipairs(world.calls) do
        if call.module == "http" then seen = seen + 1 end
    end
    t.eq(seen, 1)
end)
