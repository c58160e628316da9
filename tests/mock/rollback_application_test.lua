-- playbooks/rollback_application.lua in the mock world.
local t = require "atlas.test"

local PLAYBOOK = "playbooks/rollback_application.lua"

local function running_revision(world, region)
    local resp = world:aws_invoke("ecs", "DescribeServices", region, {
        cluster = "atlas-crm-production-cluster-" .. region,
        services = { "atlas-crm-production-service-" .. region },
    })
    local s = resp.services[1]
    return tonumber(s.taskDefinition:match(":(%d+)$")), #s.deployments, s.runningCount
end

t.case("rolls back to the previous revision and waits out the rolling deployment", function()
    local world = t.world("healthy")
    local before = running_revision(world, "us-east-1")
    local result, events = t.run_playbook(PLAYBOOK, { region = "us-east-1" }, { world = world })
    t.eq(result.status, "ok", tostring(result.error))
    local revision, deployments, running = running_revision(world, "us-east-1")
    t.eq(revision, before - 1)
    t.eq(deployments, 1, "the old deployment is gone")
    t.eq(running, 2)
    local saw_two = false
    for _, e in ipairs(events) do
        if e.type == "progress" and e.message:find("2 deployments") then saw_two = true end
    end
    t.ok(saw_two, "the wait showed the rollout with two deployments")
    t.eq(running_revision(world, "eu-west-1"), before, "other regions untouched")
end)

t.case("rolls back to a named revision; an unknown one is refused before any change", function()
    local world = t.world("healthy")
    local result = t.run_playbook(PLAYBOOK, { region = "eu-west-1", to_revision = "9" }, { world = world })
    t.eq(result.status, "ok", tostring(result.error))
    t.eq(running_revision(world, "eu-west-1"), 9)
    result = t.run_playbook(PLAYBOOK, { region = "eu-west-1", to_revision = "99" }, { world = world })
    t.eq(result.status, "failed")
    t.match(tostring(result.error), "atlas%-crm%-production%-eu%-west%-1:99 is not an active revision")
    t.eq(#world:calls_to("ecs", "UpdateService"), 1, "only the first run changed anything")
end)

t.case("with --rollback, a failed verification puts the original revision back", function()
    local world = t.world("healthy")
    local before = running_revision(world, "ap-southeast-1")
    world:set_endpoint("ap-southeast-1", { status = 503 })
    local result = t.run_playbook(PLAYBOOK, { region = "ap-southeast-1" }, { world = world, rollback = true })
    t.eq(result.status, "failed")
    t.eq(result.step, "verify")
    world:advance(600)
    t.eq(running_revision(world, "ap-southeast-1"), before)
end)

t.case("region is required", function()
    t.raises(function() t.run_playbook(PLAYBOOK, {}) end, "parameter region is required")
end)
