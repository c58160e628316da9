-- playbooks/dr_region_outage.lua in the mock world: ten minutes of
-- simulated waiting per case, milliseconds of real time.
local t = require "atlas.test"
local dns = require "atlas.dns"
local runtime = require "atlas.runtime"

local PLAYBOOK = "playbooks/dr_region_outage.lua"

local function by_identifier(records)
    local out = {}
    for _, r in ipairs(records) do
        out[r.set_identifier] = r
    end
    return out
end

local function mutating_calls(world)
    local n = 0
    for _, c in ipairs(world.calls) do
        if c.module == "aws" and runtime.is_mutating(c.service, c.action) then n = n + 1 end
    end
    return n
end

t.case("a healthy region is refused unless force=true, and nothing is changed", function()
    local result = t.run_playbook(PLAYBOOK, {}, { scenario = "healthy" })
    t.eq(result.status, "failed")
    t.eq(result.step, "verify failed region is down")
    t.match(tostring(result.error), "eu%-west%-1 looks healthy %(0 of 3 signals down%)")
    t.eq(mutating_calls(result.world), 0)

    local forced = t.run_playbook(PLAYBOOK, { force = "true" }, { scenario = "healthy" })
    t.eq(forced.status, "ok", tostring(forced.error))
    t.eq(forced.world:snapshot().ecs["us-east-1"].desired, 10)
end)

t.case("an outage ends with the backup scaled and the failed region out of DNS", function()
    local world = t.world("eu-west-1-outage")
    local before = world:snapshot()
    local result = t.run_playbook(PLAYBOOK, {}, { world = world, scenario = "eu-west-1-outage" })
    t.eq(result.status, "ok", tostring(result.error))
    local after = world:snapshot()

    t.eq(after.ecs["us-east-1"], { desired = 10, running = 10, deployments = 1, status = "ACTIVE" })
    t.eq(after.ecs["ap-southeast-1"], before.ecs["ap-southeast-1"], "other regions untouched")

    local old, new = by_identifier(before.api_records), by_identifier(after.api_records)
    -- The records that served eu-west-1's clients now go to us-east-1, guarded by its health check.
    t.eq(new["eu-west-1"].value, "us-east-1.atlas-crm.com")
    t.eq(new["eu-west-1"].health_check, "us-east-1.atlas-crm.com")
    t.eq(new["eu-west-1"].location, old["eu-west-1"].location)
    t.eq(new["eu-west-1"].ttl, old["eu-west-1"].ttl)
    -- Every other record is unchanged.
    for _, id in ipairs({ "us-east-1", "ap-southeast-1", "default" }) do
        t.eq(new[id], old[id], "record " .. id)
    end
    for _, r in ipairs(after.api_records) do
        t.ok(r.value ~= "eu-west-1.atlas-crm.com", "no record resolves to eu-west-1")
    end
    -- Simulated minutes passed; the test took milliseconds.
    t.ok(result.duration >= 120, "virtual time covers the ECS convergence, got " .. result.duration)
end)

t.case("re-enabling the failed region restores exactly the records that were there", function()
    local world = t.world("eu-west-1-outage")
    local before = world:snapshot().api_records
    local result = t.run_playbook(PLAYBOOK, {}, { world = world })
    t.eq(result.status, "ok", tostring(result.error))
    t.capture(function() dns.enable_region { region = "eu-west-1" } end)
    t.eq(world:snapshot().api_records, before)
end)

t.case("failing over the default backup region moves the default record too", function()
    local world = t.world("healthy")
    world:set_service("us-east-1", { running = 0 })
    world:set_endpoint("us-east-1", { status = 503 })
    local before = by_identifier(world:snapshot().api_records)
    local result = t.run_playbook(
        PLAYBOOK,
        { failed_region = "us-east-1", backup_region = "eu-west-1" },
        { world = world }
    )
    t.eq(result.status, "ok", tostring(result.error))
    local after = by_identifier(world:snapshot().api_records)
    t.eq(after["us-east-1"].value, "eu-west-1.atlas-crm.com")
    t.eq(after["default"].value, "eu-west-1.atlas-crm.com")
    t.eq(after["default"].location, before["default"].location)
    t.eq(after["eu-west-1"], before["eu-west-1"])
    t.eq(after["ap-southeast-1"], before["ap-southeast-1"])
end)

t.case("a backup that never stabilises times out with a clear error", function()
    local world = t.world("eu-west-1-outage")
    world:stall_service("us-east-1")
    local started = world:now()
    local result = t.run_playbook(PLAYBOOK, { stable_timeout = "600" }, { world = world })
    t.eq(result.status, "failed")
    t.eq(result.step, "wait for backup region to be stable")
    t.eq(result.error.kind, "timeout")
    t.match(tostring(result.error), 'step "wait for backup region to be stable"')
    t.match(
        tostring(result.error),
        "ecs DescribeServices %(us%-east%-1%): timeout: gave up waiting for ECS services stable in us%-east%-1 %(atlas%-crm%-production%-service%-us%-east%-1%) after 600 s"
    )
    t.match(tostring(result.error), "last: us%-east%-1: %d+/10 running")
    t.ok(world:now() - started >= 600, "waited the full timeout in virtual time")
end)

t.case("injected throttling is retried and the failover still completes", function()
    local world = t.world("throttling")
    world:set_service("eu-west-1", { running = 0 })
    world:set_endpoint("eu-west-1", { status = 503 })
    local result, events = t.run_playbook(PLAYBOOK, { force = "true" }, { world = world })
    t.eq(result.status, "ok", tostring(result.error))
    local retries = 0
    for _, e in ipairs(events) do
        if e.type == "retry" then retries = retries + 1 end
    end
    t.ok(retries > 0, "throttled calls were retried")
    t.eq(world:snapshot().ecs["us-east-1"].desired, 10)
end)

t.case("dry-run makes the reads and no mutating call", function()
    local world = t.world("eu-west-1-outage")
    local before = world:snapshot()
    local result, events = t.run_playbook(PLAYBOOK, {}, { world = world, dry_run = true })
    t.eq(result.status, "ok", tostring(result.error))
    t.eq(mutating_calls(world), 0)
    t.eq(world:snapshot().api_records, before.api_records)
    local printed = {}
    for _, e in ipairs(events) do
        if e.type == "call" and e.outcome == "dry-run" then printed[#printed + 1] = e.op end
    end
    t.eq(printed, { "ecs.UpdateService", "route53.ChangeResourceRecordSets" })
end)

t.case("a second run changes nothing in DNS and says so", function()
    local world = t.world("eu-west-1-outage")
    t.eq(t.run_playbook(PLAYBOOK, {}, { world = world }).status, "ok")
    local changes_before = #world:calls_to("route53", "ChangeResourceRecordSets")
    local result, events = t.run_playbook(PLAYBOOK, {}, { world = world })
    t.eq(result.status, "ok", tostring(result.error))
    t.eq(#world:calls_to("route53", "ChangeResourceRecordSets"), changes_before)
    local said = false
    for _, e in ipairs(events) do
        if e.type == "log" and e.message:find("nothing to change") then said = true end
    end
    t.ok(said, "the run says DNS needed no change")
end)

t.case("failed and backup regions must differ", function()
    t.raises(
        function() t.run_playbook(PLAYBOOK, { backup_region = "eu-west-1" }) end,
        "failed_region and backup_region must differ"
    )
end)

t.case("a database failure (service up, health failing) is flagged as such", function()
    local result, events = t.run_playbook(PLAYBOOK, {}, { scenario = "eu-west-1-db-failure", dry_run = true })
    t.eq(result.status, "ok", tostring(result.error))
    local flagged = false
    for _, e in ipairs(events) do
        if e.type == "log" and e.level == "warn" and e.message:find("may be a database failure") then flagged = true end
    end
    t.ok(flagged, "the run warns that this looks like a database failure")
end)

t.case("health_url must contain {region}", function()
    t.raises(
        function() t.run_playbook(PLAYBOOK, { health_url = "https://example.com/health" }) end,
        'parameter health_url: "https://example.com/health" does not match {region}'
    )
end)

t.case("our own broken access is not an outage: unknown signals refuse the failover", function()
    local world = t.world("healthy")
    world:inject {
        service = "ecs",
        action = "DescribeServices",
        region = "eu-west-1",
        code = "UnrecognizedClientException",
        status = 400,
        message = "The security token included in the request is invalid.",
    }
    world:inject { service = "route53", code = "AccessDenied", status = 403, message = "not authorized" }
    world:set_endpoint("eu-west-1", { mode = "unreachable" })
    local result = t.run_playbook(PLAYBOOK, {}, { world = world })
    t.eq(result.status, "failed")
    t.match(
        tostring(result.error),
        "cannot tell whether eu%-west%-1 is down: its Route53 health check could not be read"
    )
    t.eq(#world:calls_to("ecs", "UpdateService"), 0)
end)

t.case("an ECS API that does not answer counts as a down signal", function()
    local world = t.world("healthy")
    world:inject {
        service = "ecs",
        action = "DescribeServices",
        region = "eu-west-1",
        code = "ServiceUnavailable",
        status = 503,
    }
    world:set_endpoint("eu-west-1", { status = 503 })
    local result, events = t.run_playbook(PLAYBOOK, {}, { world = world })
    local saw = false
    for _, e in ipairs(events) do
        if e.type == "log" and e.message:find("eu%-west%-1 ECS service: DOWN %(ECS API unreachable") then saw = true end
    end
    t.ok(saw, "the unanswered ECS API is reported DOWN")
    t.eq(result.status, "ok", tostring(result.error))
end)
