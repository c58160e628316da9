-- One mock world, the whole way: eu-west-1 fails, dr_region_outage fails it
-- over, the region heals, dr_region_recovery shows its errors, deploys the
-- revision asked for and brings it back.
local t = require "atlas.test"
local ecs = require "atlas.ecs"
local env = require "atlas.env"

local OUTAGE, RECOVERY = "playbooks/dr_region_outage.lua", "playbooks/dr_region_recovery.lua"
local E, U = "eu-west-1", "us-east-1"
local FAMILY = env.task_family(E)

local function failed_over_and_healed()
    local world = t.world("eu-west-1-outage")
    local before = world:snapshot()
    local result = t.run_playbook(OUTAGE, {}, { world = world })
    t.eq(result.status, "ok", tostring(result.error))
    t.eq(world:snapshot().ecs[U].desired, 10, "failover scaled the backup up")
    world:stall_service(E, false)
    world:set_service(E, { running = 2, desired = 2 })
    world:set_endpoint(E, { mode = "auto" })
    return world, before
end

local function messages(events, level)
    local out = {}
    for _, e in ipairs(events) do
        if e.type == "log" and (level == nil or e.level == level) then out[#out + 1] = e.message end
    end
    return out
end

local function find(list, pattern)
    for i, text in ipairs(list) do
        if text:find(pattern) then return i, text end
    end
end

local function running_revision(region)
    local s = ecs.describe_service { region = region, cluster = env.cluster(region), service = env.service(region) }
    return ecs.revision_of(s.taskDefinition), s
end

-- index in world.calls of the first call of service/action (in region), after index `from`
local function first_call(world, service, action, region, from)
    for i = (from or 0) + 1, #world.calls do
        local c = world.calls[i]
        if c.service == service and c.action == action and (region == nil or c.region == region) then return i end
    end
end

t.case("failover then recovery with revision=13: errors shown, revision deployed before the checks, records restored exactly, backup back to 2", function()
    local world, before = failed_over_and_healed()
    local started = #world.calls
    local result, events = t.run_playbook(RECOVERY, { revision = "13" }, { world = world })
    t.eq(result.status, "ok", tostring(result.error))
    t.eq(result.exit, 0)

    local after = world:snapshot()
    t.eq(after.api_records, before.api_records, "the records are exactly as before the failover")
    t.eq(after.ecs[U], { desired = 2, running = 2, deployments = 1, status = "ACTIVE" })
    local revision, s = running_revision(E)
    t.eq(revision, 13)
    t.eq({ s.runningCount, s.desiredCount, #s.deployments }, { 2, 2, 1 })

    local lines = messages(events)
    t.ok(find(lines, "^eu%-west%-1 /ecs/atlas%-crm%-production%-eu%-west%-1: 5 errors? in the last 1h"), "error count shown")
    t.ok(find(lines, "Application run failed: java%.net%.ConnectException"), "the error lines shown")
    local _, asked = find(lines, "^confirmed by %-%-yes: Deploy")
    t.ok(asked, "the deployment was confirmed")
    t.match(asked, "atlas%-crm%-production%-eu%-west%-1:13")
    t.match(asked, "eu%-west%-1")
    -- Deployed before the health checks and before any record moved.
    local deployed = first_call(world, "ecs", "UpdateService", E)
    t.ok(deployed, "UpdateService in eu-west-1")
    t.ok(deployed < first_call(world, "route53", "ChangeResourceRecordSets", nil, started), "deployed before DNS changed")
end)

t.case("without revision= the revision it runs is kept: no UpdateService in the recovered region", function()
    local world, before = failed_over_and_healed()
    local result = t.run_playbook(RECOVERY, {}, { world = world })
    t.eq(result.status, "ok", tostring(result.error))
    t.eq(first_call(world, "ecs", "UpdateService", E), nil)
    t.eq(running_revision(E), 14)
    t.eq(world:snapshot().api_records, before.api_records)
end)

t.case("a revision that does not exist: exit 1 naming it, the call and the region, before anything changes", function()
    local world = failed_over_and_healed()
    local failed_over = world:snapshot()
    local result = t.run_playbook(RECOVERY, { revision = "99" }, { world = world })
    t.eq(result.status, "failed")
    t.eq(result.exit, 1)
    t.eq(result.step, "choose the revision")
    t.match(
        tostring(result.error),
        "atlas%-crm%-production%-eu%-west%-1:99 is not an active revision %(ecs ListTaskDefinitions %(eu%-west%-1%): active revisions 1 to 14%)"
    )
    t.eq(first_call(world, "ecs", "UpdateService", E), nil)
    t.eq(world:snapshot().api_records, failed_over.api_records, "DNS untouched")
    t.eq(world:snapshot().ecs[U].desired, 10, "backup untouched")
end)

t.case("an INACTIVE revision is refused the same way", function()
    local world = failed_over_and_healed()
    world.ecs[E].task_defs[FAMILY].revisions[12].status = "INACTIVE"
    local result = t.run_playbook(RECOVERY, { revision = "12" }, { world = world })
    t.eq(result.exit, 1)
    t.match(tostring(result.error), "atlas%-crm%-production%-eu%-west%-1:12 is not an active revision")
end)

t.case("unreadable logs are a warning naming the call and region; the recovery goes on", function()
    local world, before = failed_over_and_healed()
    world:inject { service = "logs", action = "FilterLogEvents", region = E, code = "AccessDeniedException" }
    local result, events = t.run_playbook(RECOVERY, { revision = "13" }, { world = world })
    t.eq(result.status, "ok", tostring(result.error))
    local _, warning = find(messages(events, "warn"), "cannot read")
    t.ok(warning, "a warning")
    t.match(warning, "logs FilterLogEvents %(eu%-west%-1%): AccessDeniedException")
    t.eq(running_revision(E), 13)
    t.eq(world:snapshot().api_records, before.api_records)
end)

t.case("the deployment asks first: with no terminal and no --yes it is refused (exit 3) and nothing is deployed", function()
    local world = failed_over_and_healed()
    local result = t.run_playbook(RECOVERY, { revision = "13" }, { world = world, yes = false })
    t.eq(result.status, "refused")
    t.eq(result.exit, 3)
    t.eq(result.step, "deploy the revision")
    t.eq(first_call(world, "ecs", "UpdateService", E), nil)
    t.eq(running_revision(E), 14)
end)

t.case("--dry-run with revision= shows the deployment and sends nothing", function()
    local world = failed_over_and_healed()
    local failed_over, started = world:snapshot(), #world.calls
    local result = t.run_playbook(RECOVERY, { revision = "13" }, { world = world, dry_run = true })
    t.eq(result.status, "ok", tostring(result.error))
    t.eq(first_call(world, "ecs", "UpdateService", nil, started), nil)
    t.eq(running_revision(E), 14)
    t.eq(world:snapshot().api_records, failed_over.api_records)
end)

t.case("revision= naming the revision it already runs deploys nothing and asks nothing", function()
    local world = failed_over_and_healed()
    local started = #world.calls
    local result, events = t.run_playbook(RECOVERY, { revision = "14" }, { world = world, yes = false })
    -- Refused later, at the DNS confirmation: the deploy step itself asked nothing.
    t.eq(result.step, "restore DNS records")
    t.eq(first_call(world, "ecs", "UpdateService", nil, started), nil)
    t.ok(find(messages(events), "already runs revision 14: nothing to deploy"))
end)
