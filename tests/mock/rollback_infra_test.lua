-- playbooks/rollback_infra.lua in the mock world: the world scripts git and terraform.
local t = require "atlas.test"

local PLAYBOOK = "playbooks/rollback_infra.lua"
-- One directory for the file (terraform_dir must exist); the local-state case makes its own below it.
local TF = t.tmpdir()

local function world_with(results)
    local world = t.world("healthy")
    results = results or {}
    world:on_proc("^git ", function(argv)
        local line = table.concat(argv, " ")
        if line:find("--show-toplevel", 1, true) then return { stdout = "/srv/atlas-infra\n" } end
        if line:find("--show-prefix", 1, true) then return { stdout = "terraform/\n" } end
        if line:find("rev-parse --verify", 1, true) then
            return results.verify or { stdout = "8d796c8f0e1c2b3a4d5e6f708192a3b4c5d6e7f8\n" }
        end
        return { code = 0 }
    end)
    world:on_proc("^terraform ", function(argv)
        local verb = argv[3]
        if results[verb] then return results[verb] end
        if verb == "state" then return { stdout = "aws_ecs_cluster.main\naws_route53_zone.main\n" } end
        if verb == "plan" then return { code = 2, stdout = "Plan: 0 to add, 2 to change, 0 to destroy.\n" } end
        return { code = 0 }
    end)
    return world
end

local function lines(world)
    local out = {}
    for _, c in ipairs(world.calls) do
        if c.module == "proc" then out[#out + 1] = table.concat(c.argv, " ") end
    end
    return out
end

t.case("state list only, without ref or import: nothing changes and nothing is asked", function()
    local tf = TF
    local world = world_with()
    local result = t.run_playbook(PLAYBOOK, { terraform_dir = tf }, { world = world, yes = false })
    t.eq(result.status, "ok", tostring(result.error))
    t.eq(result.journal.state.addresses, { "aws_ecs_cluster.main", "aws_route53_zone.main" })
    t.eq(lines(world), { "terraform -chdir=" .. tf .. " state list" })
end)

t.case("a rollback is planned and applied in a temporary checkout, then the checkout is removed", function()
    local tf = TF
    local world = world_with()
    local result = t.run_playbook(PLAYBOOK, { terraform_dir = tf, ref = "v1.4.0" }, { world = world })
    t.eq(result.status, "ok", tostring(result.error))
    local l = lines(world)
    local add = l[5]
    local path = add:match("^git %-C /srv/atlas%-infra worktree add %-%-detach (%S+) 8d796c8f")
    t.ok(path, add)
    t.eq(l[6], "terraform -chdir=" .. path .. "/terraform init -input=false -no-color")
    t.match(l[7], "^terraform %-chdir=" .. path:gsub("%p", "%%%0") .. "/terraform plan ")
    t.match(l[8], "^terraform %-chdir=" .. path:gsub("%p", "%%%0") .. "/terraform apply %-input=false %-no%-color atlas.tfplan$")
    t.eq(l[9], "git -C /srv/atlas-infra worktree remove --force " .. path)
    for _, line in ipairs(l) do
        t.no_match(line, "-chdir=" .. tf .. " apply")
    end
end)

t.case("--dry-run plans in the checkout, applies nothing, removes the checkout", function()
    local tf = TF
    local world = world_with()
    local result = t.run_playbook(PLAYBOOK, { terraform_dir = tf, ref = "v1.4.0" }, { world = world, dry_run = true })
    t.eq(result.status, "ok", tostring(result.error))
    local text = table.concat(lines(world), "\n")
    t.match(text, " plan ")
    t.no_match(text, " apply ")
    t.match(text, "worktree remove %-%-force")
end)

t.case("a plan that fails removes the checkout and names terraform's error", function()
    local tf = TF
    local world = world_with { plan = { code = 1, stderr = "Error: Unsupported argument" } }
    local result = t.run_playbook(PLAYBOOK, { terraform_dir = tf, ref = "v1.4.0" }, { world = world })
    t.eq(result.status, "failed")
    t.match(tostring(result.error), "plan exited with 1: Error: Unsupported argument")
    local l = lines(world)
    t.match(l[#l], "^git %-C /srv/atlas%-infra worktree remove %-%-force ")
end)

t.case("an import of an address already in the state fails; half an import pair is bad input; local state is refused", function()
    local tf = TF
    local result = t.run_playbook(
        PLAYBOOK,
        { terraform_dir = tf, import_address = "aws_route53_zone.main", import_id = "Z123" },
        { world = world_with() }
    )
    t.eq(result.status, "failed")
    t.match(tostring(result.error), "aws_route53_zone.main is already in the state")
    t.raises(
        function() t.run_playbook(PLAYBOOK, { terraform_dir = tf, import_id = "Z123" }) end,
        "import_address and import_id go together"
    )
    local local_state = tf .. "/local-state"
    require("atlas.sys").mkdir(local_state)
    t.write_file(local_state .. "/terraform.tfstate", "{}")
    result = t.run_playbook(PLAYBOOK, { terraform_dir = local_state, ref = "v1" }, { world = world_with() })
    t.match(tostring(result.error), "keeps its state locally")
end)

t.case("git missing is said before anything runs", function()
    local world = world_with()
    world.missing_programs = { git = true }
    t.raises(function() t.run_playbook(PLAYBOOK, { terraform_dir = TF }, { world = world }) end, "needs git")
    t.eq(#world.calls, 0)
end)
