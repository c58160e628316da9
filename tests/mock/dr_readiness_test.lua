-- playbooks/dr_readiness.lua in the mock world.
local t = require "atlas.test"

local PLAYBOOK = "playbooks/dr_readiness.lua"

local function texts(result, kind)
    local out = {}
    for _, f in ipairs(result.journal.state[kind] or {}) do
        out[#out + 1] = f.region .. ": " .. f.text
    end
    return out
end

t.case("the reference world: every failover could succeed; the design's flaws are said, exit 0", function()
    local result = t.run_playbook(PLAYBOOK, {})
    t.eq(result.status, "ok", tostring(result.error))
    t.eq(texts(result, "blockers"), {})
    local warnings = table.concat(texts(result, "warnings"), "\n")
    t.match(warnings, "eu%-west%-1: design: the failover orchestrator atlas%-production%-failover%-orchestrator, its trigger and its logs live in eu%-west%-1")
    t.match(warnings, "design: the health alarms live in us%-east%-1")
    t.match(warnings, "eu%-west%-1: design: a region failover moves traffic, not the primary database")
    t.match(warnings, "ap%-southeast%-1: automatic failover would not start %(cross%-region routing")
end)

t.case("a backup that runs no task, and its failing health check, block the failover: exit 5", function()
    local world = t.world("healthy")
    world:set_service("us-east-1", { desired = 2, running = 0 })
    world:stall_service("us-east-1", true)
    world:force_health_check("us-east-1", false)
    local result = t.run_playbook(PLAYBOOK, { regions = "eu-west-1" }, { world = world })
    t.eq(result.status, "critical")
    t.eq(result.exit, 5)
    t.eq(texts(result, "blockers"), {
        "eu-west-1: backup us-east-1: service atlas-crm-production-service-us-east-1 is ACTIVE, 0/2 running",
        "eu-west-1: backup us-east-1: health endpoint -> 503",
        "eu-west-1: backup us-east-1's health check fails (8/8 checkers)",
    })
    t.match(tostring(result.error), "a failover would fail: eu%-west%-1: backup us%-east%-1")
end)

t.case("auto-scaling headroom below the failover's count blocks it", function()
    local world = t.world("healthy")
    world:aws_invoke("application-autoscaling", "RegisterScalableTarget", "us-east-1", {
        ServiceNamespace = "ecs",
        ResourceId = "service/atlas-crm-production-cluster-us-east-1/atlas-crm-production-service-us-east-1",
        ScalableDimension = "ecs:service:DesiredCount",
        MinCapacity = 2,
        MaxCapacity = 6,
    })
    local result = t.run_playbook(PLAYBOOK, { regions = "ap-southeast-1" }, { world = world })
    t.eq(result.exit, 5)
    t.eq(texts(result, "blockers"), {
        "ap-southeast-1: backup us-east-1: auto-scaling maximum 6 is below the failover's 10 tasks: the scaler would take them away again",
    })
    t.eq(t.run_playbook(PLAYBOOK, { regions = "ap-southeast-1", failover_count = "6" }, { world = world }).exit, 0)
end)

t.case("replication lag on the backup, and a snapshot older than the RPO, block it", function()
    local result = t.run_playbook(PLAYBOOK, { regions = "eu-west-1", rpo = "4h" }, { scenario = "replication-lag" })
    t.eq(result.exit, 5)
    t.eq(texts(result, "blockers"), {
        "eu-west-1: backup us-east-1 is 45.0 s behind the primary (over 10 s): its global tables are stale",
        "eu-west-1: the newest snapshot, atlas-production-snapshot-latest, is 6.0 h old: over the RPO of 4.0 h",
    })
    t.eq(t.run_playbook(PLAYBOOK, { regions = "eu-west-1", rpo = "7h" }).exit, 0)
end)

t.case("records with a long TTL are a warning; a bad rpo or an empty region list is bad input", function()
    local world = t.world("healthy")
    local result = t.run_playbook(PLAYBOOK, { regions = "ap-southeast-1", ttl_max = "30" }, { world = world })
    t.eq(result.exit, 0, tostring(result.error))
    t.match(table.concat(texts(result, "warnings"), "\n"), "record ap%-southeast%-1 of api.atlas%-crm.com has TTL 60 s")
    t.raises(function() t.run_playbook(PLAYBOOK, { rpo = "a day" }) end, "parameter rpo")
    t.raises(function() t.run_playbook(PLAYBOOK, { regions = "" }) end, "needs at least 1")
end)
