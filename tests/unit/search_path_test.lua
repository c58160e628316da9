-- Playbooks found by name: ./playbooks, then $ATLAS_PLAYBOOK_PATH (a team's
-- own repository), then the playbooks installed beside the binary.
local t = require "atlas.test"
local sys = require "atlas.sys"

local function team_repo()
    local dir = t.tmpdir()
    sys.mkdir(dir .. "/team/playbooks")
    t.write_file(
        dir .. "/team/playbooks/team_check.lua",
        [[
local atlas = require "atlas"
return atlas.playbook { name = "team_check", description = "a team's own playbook", params = {},
    steps = { { name = "say", run = function() atlas.log("team check ran") end } } }
]]
    )
    return dir, dir .. "/team/playbooks"
end

t.case("ATLAS_PLAYBOOK_PATH: atlas-run NAME, list and --help find a team's playbook by name", function()
    local dir, team = team_repo()
    local env = { ATLAS_PLAYBOOK_PATH = dir .. "/missing:" .. team, ATLAS_STATE_DIR = dir .. "/state" }
    local r = t.run({ "--mock", "team_check" }, { env = env })
    t.eq(r.code, 0, r.stderr)
    t.match(r.stdout, "team check ran")
    r = t.run({ "list" }, { env = env })
    t.eq(r.code, 0, r.stderr)
    t.match(r.stdout, "team_check  %(" .. team:gsub("%p", "%%%0") .. "/team_check%.lua%)")
    t.match(r.stdout, "dr_region_outage  %(playbooks/dr_region_outage%.lua%)")
    t.match(r.stderr, "ATLAS_PLAYBOOK_PATH: cannot list .*missing")
    r = t.run({ "--help", "team_check" }, { env = env })
    t.eq(r.code, 0, r.stderr)
    t.match(r.stdout, "a team's own playbook")
    r = t.run({ "--mock", "team_check" }, { env = { ATLAS_STATE_DIR = dir .. "/state" } })
    t.eq(r.code, 2)
    t.match(r.stderr, "no playbook team_check")
end)

t.case("./playbooks comes first: a team's playbook cannot shadow a shipped one by name", function()
    local dir, team = team_repo()
    t.write_file(team .. "/dr_region_outage.lua", "error('the team copy must not load')\n")
    local playbook = require "atlas.run.playbook"
    local saved = os.getenv("ATLAS_PLAYBOOK_PATH")
    sys.setenv("ATLAS_PLAYBOOK_PATH", team)
    t.defer(function() sys.setenv("ATLAS_PLAYBOOK_PATH", saved) end)
    t.eq(playbook.find("dr_region_outage"), "playbooks/dr_region_outage.lua")
    t.eq(playbook.find("team_check.lua"), team .. "/team_check.lua")
    t.ok(dir)
end)

t.case("the test helpers find a playbook by name on the search path", function()
    local _, team = team_repo()
    local saved = os.getenv("ATLAS_PLAYBOOK_PATH")
    sys.setenv("ATLAS_PLAYBOOK_PATH", team)
    t.defer(function() sys.setenv("ATLAS_PLAYBOOK_PATH", saved) end)
    local result = t.run_playbook("team_check", {}, { scenario = "healthy" })
    t.eq(result.status, "ok")
    result = t.run_playbook("dr_region_outage", {}, { scenario = "eu-west-1-outage" })
    t.eq(result.status, "ok")
end)

t.case("an installed atlas-run finds its playbooks from any directory", function()
    local root = t.tmpdir()
    sys.mkdir(root .. "/bin")
    sys.mkdir(root .. "/share/atlas-run/playbooks")
    os.execute(string.format("cp %q %q && cp playbooks/verify_deployment.lua %q", t.binary(), root .. "/bin/atlas-run",
        root .. "/share/atlas-run/playbooks/"))
    local r = t.spawn(
        { "/bin/sh", "-c", "cd / && exec " .. root .. "/bin/atlas-run list" },
        { env = { ATLAS_LUA_PATH = false, ATLAS_PLAYBOOK_PATH = false } }
    )
    t.eq(r.code, 0, r.stderr)
    t.match(r.stdout, "verify_deployment  %(" .. root:gsub("%p", "%%%0") .. "/share/atlas%-run/playbooks/verify_deployment%.lua%)")
end)
