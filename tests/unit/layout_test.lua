-- The module layout: short service names, one naming rule for backends.
local t = require "atlas.test"

t.case("a short service name is the module in lua/atlas/services, not a copy", function()
    t.eq(require "atlas.ecs", require "atlas.services.ecs")
    t.eq(require "atlas.failover_chain", require "atlas.services.failover_chain")
    local dns = require "atlas.dns"
    t.eq(dns, package.loaded["atlas.services.dns"])
end)

t.case("a short name that is no service stays unknown, with require's message", function()
    local ok, err = pcall(require, "atlas.no_such_service")
    t.ok(not ok)
    t.match(tostring(err), "module 'atlas.no_such_service' not found")
    ok = pcall(require, "atlas.nested.no_such")
    t.ok(not ok)
end)

t.case("each interface's backends are atlas.<interface>.real and .mock", function()
    local runtime = require "atlas.run.runtime"
    for _, iface in ipairs { "aws", "sql", "http", "proc" } do
        t.eq(runtime.backend(iface), require("atlas." .. iface .. ".real"), iface)
    end
    t.raises(function() runtime.backend("smtp") end, "no backend named smtp")
end)
