-- playbooks/initial_deploy.lua in the mock world: the world scripts terraform.
local t = require "atlas.test"

local PLAYBOOK = "playbooks/initial_deploy.lua"

local PLAN = "Terraform will perform the following actions:\n  # aws_ecs_service.app will be created\n"
    .. "Plan: 42 to add, 0 to change, 0 to destroy.\n"

local function terraform_world(scenario, results)
    local world = t.world(scenario or "healthy")
    results = results or {}
    world:on_proc("^terraform ", function(argv)
        local verb = argv[3]
        if results[verb] then return results[verb] end
        if verb == "plan" then return { code = 2, stdout = PLAN } end
        return { code = 0, stdout = verb .. " done\n" }
    end)
    return world
end

-- The terraform verbs the world saw, with their -chdir.
local function verbs(world)
    local out = {}
    for _, c in ipairs(world.calls) do
        if c.module == "proc" then out[#out + 1] = c.argv[2] .. " " .. c.argv[3] end
    end
    return out
end

-- One directory for the file: the playbook only needs terraform_dir to exist.
local TF = t.tmpdir()
local function dir() return TF, "-chdir=" .. TF end

t.case("init, validate, plan, apply in terraform_dir; services, endpoints and name servers verified", function()
    local tf, chdir = dir()
    local world = terraform_world()
    local result, events = t.run_playbook(PLAYBOOK, { terraform_dir = tf }, { world = world })
    t.eq(result.status, "ok", tostring(result.error))
    t.eq(verbs(world), { chdir .. " init", chdir .. " validate", chdir .. " plan", chdir .. " apply" })
    local apply = world.calls[#world.calls]
    for _, c in ipairs(world.calls) do
        if c.module == "proc" and c.argv[3] == "apply" then apply = c end
    end
    t.eq(apply.argv, { "terraform", chdir, "apply", "-input=false", "-no-color", "atlas.tfplan" })
    t.eq(#result.journal.state.name_servers, 4)
    local text = {}
    for _, e in ipairs(events) do
        if e.type == "log" then text[#text + 1] = e.message end
    end
    text = table.concat(text, "\n")
    t.match(text, "Plan: 42 to add, 0 to change, 0 to destroy%.")
    t.match(text, "global: https://api.atlas%-crm.com/actuator/health %-> 200")
    t.match(text, "CDN: https://cdn.atlas%-crm.com/ %-> 200")
    t.match(text, "point the registrar of atlas%-crm.com at these name servers:\n  ns%-")
end)

t.case("--dry-run stops after the plan: no apply, no verification", function()
    local tf, chdir = dir()
    local world = terraform_world()
    local result = t.run_playbook(PLAYBOOK, { terraform_dir = tf }, { world = world, dry_run = true })
    t.eq(result.status, "ok", tostring(result.error))
    t.eq(verbs(world), { chdir .. " init", chdir .. " validate", chdir .. " plan" })
    t.eq(#world:calls_to("ecs"), 0)
end)

t.case("a failed validate stops before the plan, naming terraform's message", function()
    local tf, chdir = dir()
    local world = terraform_world(nil, { validate = { code = 1, stderr = "Error: Missing required argument" } })
    local result = t.run_playbook(PLAYBOOK, { terraform_dir = tf }, { world = world })
    t.eq(result.status, "failed")
    t.eq(result.exit, 1)
    t.match(tostring(result.error), 'step "terraform validate": proc: terraform %-chdir=.* validate %-no%-color exited with 1: Error: Missing required argument')
    t.eq(verbs(world), { chdir .. " init", chdir .. " validate" })
end)

t.case("apply unconfirmed is refused (exit 3) after the plan was shown", function()
    local tf, chdir = dir()
    local world = terraform_world()
    local result = t.run_playbook(PLAYBOOK, { terraform_dir = tf }, { world = world, yes = false })
    t.eq(result.status, "refused")
    t.eq(result.exit, 3)
    t.eq(verbs(world), { chdir .. " init", chdir .. " validate", chdir .. " plan" })
end)

t.case("a region whose service runs nothing, or a CDN that fails, fails the verification", function()
    local tf = dir()
    local world = terraform_world()
    world:set_service("ap-southeast-1", { desired = 2, running = 0 })
    world:stall_service("ap-southeast-1", true)
    local result = t.run_playbook(PLAYBOOK, { terraform_dir = tf, stable_timeout = "60" }, { world = world })
    t.eq(result.status, "failed")
    t.match(tostring(result.error), 'step "verify the services": .*ap%-southeast%-1')
    world = terraform_world()
    world.cdn.status = 522
    result = t.run_playbook(PLAYBOOK, { terraform_dir = tf }, { world = world })
    t.eq(result.status, "failed")
    t.match(tostring(result.error), "1 endpoint%(s%) not healthy: CDN https://cdn.atlas%-crm.com/ %-> 522")
end)

t.case("terraform missing is said before anything runs; a terraform_dir that is not a directory is bad input", function()
    local tf = dir()
    local world = terraform_world()
    world.missing_programs = { terraform = true }
    t.raises(
        function() t.run_playbook(PLAYBOOK, { terraform_dir = tf }, { world = world }) end,
        "initial_deploy needs terraform, which is not on PATH"
    )
    t.eq(#world.calls, 0)
    t.raises(function() t.run_playbook(PLAYBOOK, { terraform_dir = tf .. "/nope" }) end, "is not a directory")
    t.raises(function() t.run_playbook(PLAYBOOK, {}) end, "parameter terraform_dir is required")
end)
