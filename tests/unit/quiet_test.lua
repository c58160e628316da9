-- --quiet prints only warnings, errors and the result, as --help says.
local t = require "atlas.test"

t.case("--quiet: a run that succeeds prints its result line only", function()
    local dir = t.tmpdir()
    local r = t.run(
        { "--quiet", "--yes", "--scenario", "eu-west-1-outage", "dr_region_outage" },
        { env = { ATLAS_STATE_DIR = dir } }
    )
    t.eq(r.code, 0, r.stderr)
    t.eq(r.stdout, "== dr_region_outage ok in 5m00s\n")
end)

t.case("--quiet: a failure still shows its step, its error and the result", function()
    local dir = t.tmpdir()
    local r = t.run({ "--quiet", "--yes", "--scenario", "healthy", "dr_region_outage" }, { env = { ATLAS_STATE_DIR = dir } })
    t.eq(r.code, 1)
    t.match(r.stdout, "FAIL %[1/7%] verify failed region is down")
    t.match(r.stdout, "error: .*looks healthy")
    t.match(r.stdout, "== dr_region_outage failed")
    t.no_match(r.stdout, "(mock world")
end)

t.case("--quiet keeps warnings", function()
    local dir = t.tmpdir()
    t.write_file(
        dir .. "/pb.lua",
        [[
local atlas = require "atlas"
return atlas.playbook { name = "pb", description = "d", params = {},
    steps = { { name = "s", run = function() atlas.log("chatter"); atlas.warn("heads up") end } } }
]]
    )
    local r = t.run({ "--quiet", dir .. "/pb.lua" }, { env = { ATLAS_STATE_DIR = dir } })
    t.eq(r.code, 0, r.stderr)
    t.match(r.stdout .. r.stderr, "heads up")
    t.no_match(r.stdout .. r.stderr, "chatter")
    t.no_match(r.stdout, "ok   [1/1]")
end)
