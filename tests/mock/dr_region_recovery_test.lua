-- The way back: outage, failover, the region heals, recovery.
local t = require "atlas.test"

local function failover_then_heal(world)
    local result = t.run_playbook("playbooks/dr_region_outage.lua", {}, { world = world })
    t.eq(result.status, "ok", tostring(result.error))
    world:stall_service("eu-west-1", false)
    world:set_service("eu-west-1", { running = 2, desired = 2 })
    world:set_endpoint("eu-west-1", { mode = "auto" })
end

t.case("recovery restores the original records and the backup's normal size", function()
    local world = t.world("eu-west-1-outage")
    local before = world:snapshot()
    failover_then_heal(world)
    t.ok(world:snapshot().ecs["us-east-1"].desired == 10, "failover scaled the backup up")
    local result = t.run_playbook("playbooks/dr_region_recovery.lua", {}, { world = world })
    t.eq(result.status, "ok", tostring(result.error))
    local after = world:snapshot()
    t.eq(after.api_records, before.api_records)
    t.eq(after.ecs["us-east-1"], { desired = 2, running = 2, deployments = 1, status = "ACTIVE" })
end)

t.case("recovery refuses while the region is still unhealthy", function()
    local world = t.world("eu-west-1-outage")
    local result = t.run_playbook("playbooks/dr_region_outage.lua", {}, { world = world })
    t.eq(result.status, "ok", tostring(result.error))
    world:stall_service("eu-west-1", false)
    world:set_service("eu-west-1", { running = 2, desired = 2 })
    world:set_endpoint("eu-west-1", { status = 503 })
    local records = world:snapshot().api_records
    result = t.run_playbook("playbooks/dr_region_recovery.lua", {}, { world = world })
    t.eq(result.status, "failed")
    t.match(tostring(result.error), "health endpoint is not healthy")
    t.eq(world:snapshot().api_records, records, "DNS untouched")
end)

t.case("recovery with nothing to restore changes no record", function()
    local world = t.world("healthy")
    local result = t.run_playbook("playbooks/dr_region_recovery.lua", {}, { world = world })
    t.eq(result.status, "ok", tostring(result.error))
    t.eq(#world:calls_to("route53", "ChangeResourceRecordSets"), 0)
end)
