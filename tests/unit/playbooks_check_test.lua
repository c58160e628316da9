-- Every shipped playbook passes `atlas-run check`: no syntax error, no
-- undefined global, a valid declaration with a description.
local t = require "atlas.test"
local sys = require "atlas.sys"

t.case("atlas-run check passes on every playbook in playbooks/", function()
    local args = { "check" }
    for _, name in ipairs(sys.readdir("playbooks")) do
        if name:match("%.lua$") then args[#args + 1] = "playbooks/" .. name end
    end
    t.ok(#args >= 3, "playbooks found")
    local r = t.run(args)
    t.eq(r.code, 0, r.stdout .. r.stderr)
    t.eq(select(2, r.stdout:gsub(": ok\n", "")), #args - 1)
end)

t.case("make install puts a working binary and its modules under the prefix", function()
    local build = t.binary():match("^(.*)/atlas%-run$")
    if not sys.stat(build .. "/cmake_install.cmake") then
        return -- not a CMake build tree (an installed binary): nothing to check
    end
    local prefix = t.tmpdir()
    local r = t.spawn({ "cmake", "--install", build, "--prefix", prefix })
    t.eq(r.code, 0, r.stderr)
    r = t.spawn(
        { prefix .. "/bin/atlas-run", "-e", "print(require('atlas.curl') ~= nil, require('atlas.pq') ~= nil)" },
        { env = { ATLAS_LUA_PATH = false } }
    )
    t.eq(r.code, 0, r.stderr)
    t.eq(r.stdout, "true\ttrue\n")
    t.ok(sys.stat(prefix .. "/share/atlas-run/playbooks/dr_region_outage.lua"), "playbooks installed")
end)
