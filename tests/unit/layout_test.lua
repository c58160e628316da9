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

-- The world once kept a table of service modules, a build order and special cases
-- (application-autoscaling's handlers in the ECS module). Now each mock service
-- registers itself: a new file under atlas/mock/ is a new service, world.lua unchanged.
t.case("a mock service registers its own state builder and handlers; a new file is a new service", function()
    local dir = t.tmpdir()
    assert(require("atlas.sys").mkdir(dir .. "/atlas/mock"))
    t.write_file(
        dir .. "/atlas/mock/dynamodb.lua",
        [[
local M = {}
function M.build(w) w.tables = { "atlas-" .. w:now() } end
local H = {}
function H.ListTables(w, region) return { TableNames = { w.tables[1] .. "-" .. region } } end
require("atlas.mock.world").register { name = "dynamodb", build = M.build, handlers = { dynamodb = H } }
return M
]]
    )
    local script = [[
local World = require "atlas.mock.world"
local w = World.new { start_time = 1000 }
print(w:aws_invoke("dynamodb", "ListTables", "us-east-1", {}).TableNames[1])
print(#w:aws_invoke("application-autoscaling", "DescribeScalableTargets", "us-east-1", { ServiceNamespace = "ecs" }).ScalableTargets)
print(select(2, pcall(World.register, { name = "other", build = function() end, handlers = { ecs = {} } })))
]]
    local r = t.run({ "-e", script }, { env = { ATLAS_LUA_PATH = dir } })
    t.eq(r.code, 0, r.stderr)
    local lines = {}
    for line in r.stdout:gmatch("[^\n]+") do
        lines[#lines + 1] = line
    end
    t.eq(lines[1], "atlas-1000-us-east-1")
    t.eq(lines[2], "1")
    t.match(lines[3], "two mock services answer ecs")
end)
