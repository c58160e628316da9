-- playbooks/dr_region_outage.lua in the mock world: ten minutes of
-- simulated waiting per case, milliseconds of real time.
local t = require "atlas.test"
local dns = require "atlas.dns"
local runtime = require "atlas.run.runtime"

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

t.case("a backup that never reaches its capacity times out before DNS moves", function()
    local world = t.world("eu-west-1-outage")
    world:stall_service("us-east-1")
    local records = world:snapshot().api_records
    local started = world:now()
    local result = t.run_playbook(PLAYBOOK, { stable_timeout = "600" }, { world = world })
    t.eq(result.status, "failed")
    t.eq(result.step, "wait for backup capacity")
    t.eq(result.error.kind, "timeout")
    t.match(tostring(result.error), 'step "wait for backup capacity"')
    t.match(
        tostring(result.error),
        "ecs DescribeServices %(us%-east%-1%): timeout: gave up waiting for 10 running tasks in us%-east%-1 %(atlas%-crm%-production%-service%-us%-east%-1%) after 600 s"
    )
    t.match(tostring(result.error), "last: us%-east%-1: %d+/10 running")
    t.ok(world:now() - started >= 600, "waited the full timeout in virtual time")
    t.eq(world:snapshot().api_records, records, "DNS did not move to a backup that cannot take the load")
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

-- ---- issue 8: a failover that cannot end wrong ------------------------------------

local http = require "atlas.http"

local function logged(events, pattern)
    for _, e in ipairs(events) do
        if e.type == "log" and e.message:find(pattern) then return true end
    end
    return false
end

local function outage_world()
    local world = t.world("eu-west-1-outage")
    return world, world:snapshot().api_records
end

for _, case in ipairs {
    {
        "ECS service runs no task",
        function(w) w:set_service("us-east-1", { running = 0 }) end,
        "ECS service DOWN",
    },
    {
        "Route53's checkers see it failing",
        function(w) w:force_health_check("us-east-1", false) end,
        "Route53 health check DOWN",
    },
    {
        "health endpoint answers 503",
        function(w) w:set_endpoint("us-east-1", { status = 503 }) end,
        "health endpoint DOWN",
    },
    {
        "health check cannot be read",
        function(w)
            w:inject {
                service = "route53",
                action = "GetHealthCheckStatus",
                after = 1,
                code = "AccessDenied",
                status = 403,
            }
        end,
        "Route53 health check unknown",
    },
} do
    t.case("a backup region whose " .. case[1] .. " stops the run before anything changes", function()
        local world, records = outage_world()
        case[2](world)
        local result = t.run_playbook(PLAYBOOK, {}, { world = world })
        t.eq(result.status, "failed")
        t.eq(result.step, "verify backup region is healthy")
        t.match(tostring(result.error), "backup region us%-east%-1 is not healthy: .*" .. case[3]:gsub("%-", "%%-"))
        t.match(
            tostring(result.error),
            "Nothing was changed%. Fix us%-east%-1 first, choose another backup_region, or use force_backup=true"
        )
        t.eq(mutating_calls(world), 0)
        t.eq(world:snapshot().api_records, records)
    end)
end

t.case("force_backup=true fails over onto a backup that does not look healthy, and says so", function()
    local world = outage_world()
    world:set_endpoint("us-east-1", { status = 503 })
    local result, events = t.run_playbook(PLAYBOOK, { force_backup = "true" }, { world = world })
    t.eq(result.status, "ok", tostring(result.error))
    local warned = false
    for _, e in ipairs(events) do
        if e.type == "log" and e.level == "warn" and e.message:find("force_backup=true") then warned = true end
    end
    t.ok(warned, "the run warns that the backup was not verified")
    t.eq(world:snapshot().ecs["us-east-1"].desired, 10)
end)

-- running count of us-east-1 in the last progress line before DNS changed
local function running_when_dns_moved(events)
    local running
    for _, e in ipairs(events) do
        if e.type == "progress" then running = tonumber(e.message:match("^us%-east%-1: (%d+)/")) or running end
        if e.type == "call" and e.op == "route53.ChangeResourceRecordSets" then return running end
    end
end

t.case("DNS moves only once the backup runs desired_count tasks (the default of min_backup_tasks)", function()
    local world = outage_world()
    local result, events = t.run_playbook(PLAYBOOK, {}, { world = world })
    t.eq(result.status, "ok", tostring(result.error))
    t.eq(running_when_dns_moved(events), 10)
end)

t.case("min_backup_tasks lets DNS move earlier, and may not exceed desired_count", function()
    local world = outage_world()
    local result, events = t.run_playbook(PLAYBOOK, { min_backup_tasks = "4" }, { world = world })
    t.eq(result.status, "ok", tostring(result.error))
    local running = running_when_dns_moved(events)
    t.ok(running >= 4 and running < 10, "DNS moved at " .. tostring(running) .. " running tasks")
    t.raises(
        function() t.run_playbook(PLAYBOOK, { min_backup_tasks = "8", desired_count = "6" }) end,
        "min_backup_tasks %(8%) cannot exceed desired_count %(6%)"
    )
end)

t.case("a backup below its desired count at the end is a failure, not a report line", function()
    local world = outage_world()
    -- Someone (or a scaling policy) sets the backup back to 4 while it scales up.
    world:after(30, function() world:set_service("us-east-1", { desired = 4 }) end)
    local result = t.run_playbook(PLAYBOOK, { min_backup_tasks = "2" }, { world = world })
    t.eq(result.status, "failed")
    t.eq(result.step, "report")
    t.match(tostring(result.error), "us%-east%-1 runs 4/4 tasks, below the desired count 10")
end)

t.case("a record is never written without the backup's health check", function()
    local world = outage_world()
    -- the check that should watch us-east-1 watches another name
    for _, hc in pairs(world.route53.health_checks) do
        if hc.HealthCheckConfig.FullyQualifiedDomainName == "us-east-1.atlas-crm.com" then
            hc.HealthCheckConfig.FullyQualifiedDomainName = "old-us-east-1.atlas-crm.com"
        end
    end
    local records = world:snapshot().api_records
    local result = t.run_playbook(PLAYBOOK, { force_backup = "true" }, { world = world })
    t.eq(result.status, "failed")
    t.eq(result.step, "disable failed region in DNS")
    t.match(
        tostring(result.error),
        "no Route53 health check checks us%-east%-1%.atlas%-crm%.com; refusing to write records without one"
    )
    t.eq(#world:calls_to("route53", "ChangeResourceRecordSets"), 0)
    t.eq(world:snapshot().api_records, records)
end)

t.case(
    "an empty success reply to the DNS change fails the step; a change that did not happen fails the report",
    function()
        local world, records = outage_world()
        world:inject { service = "route53", action = "ChangeResourceRecordSets", reply = {}, times = 1 }
        local result = t.run_playbook(PLAYBOOK, {}, { world = world })
        t.eq(result.status, "failed")
        t.eq(result.step, "disable failed region in DNS")
        t.match(tostring(result.error), "answered without a change id; the records may not have changed")
        t.eq(world:snapshot().api_records, records)

        world, records = outage_world()
        world:inject {
            service = "route53",
            action = "ChangeResourceRecordSets",
            reply = { ChangeInfo = { Id = "/change/CFAKE", Status = "INSYNC" } },
            times = 1,
        }
        world:inject {
            service = "route53",
            action = "GetChange",
            reply = { ChangeInfo = { Id = "/change/CFAKE", Status = "INSYNC" } },
        }
        result = t.run_playbook(PLAYBOOK, {}, { world = world })
        t.eq(result.status, "failed")
        t.eq(result.step, "report")
        t.match(tostring(result.error), "records still resolve to eu%-west%-1: eu%-west%-1")
    end
)

t.case("an UpdateService answer without the new count fails the scale-up step", function()
    local world = outage_world()
    world:inject { service = "ecs", action = "UpdateService", reply = { service = { desiredCount = 2 } }, times = 1 }
    local result = t.run_playbook(PLAYBOOK, {}, { world = world })
    t.eq(result.status, "failed")
    t.eq(result.step, "scale up backup region")
    t.match(
        tostring(result.error),
        "ecs UpdateService %(us%-east%-1%): InvalidResponse: UpdateService answered desired count 2, not 10"
    )
end)

-- "A probe that fails on our side is unknown, never DOWN": a region whose
-- Route53 checkers see it failing, but whose own service answers, must not
-- be failed over on the strength of a probe that failed here.
local function check_down_service_up()
    local world = t.world("healthy")
    world:force_health_check("eu-west-1", false)
    return world
end

t.case("an endpoint whose name does not resolve here is unknown, not DOWN", function()
    local world = check_down_service_up()
    world:set_endpoint("eu-west-1", { status = 503 })
    local result, events = t.run_playbook(
        PLAYBOOK,
        { health_url = "https://{region}.internal.invalid/actuator/health" },
        { world = world }
    )
    t.ok(
        logged(events, "eu%-west%-1 health endpoint: unknown %(cannot probe https://eu%-west%-1%.internal%.invalid"),
        "unknown"
    )
    t.eq(result.status, "failed")
    t.match(tostring(result.error), "eu%-west%-1 looks healthy %(1 of 2 signals down")
    t.eq(mutating_calls(world), 0)
end)

for _, case in ipairs {
    { "dns", "unknown", false },
    { "connect", "DOWN", true },
    { "timeout", "DOWN", true },
    { "reset", "DOWN", true },
} do
    local kind, verdict, fails_over = table.unpack(case)
    t.case("a network " .. kind .. " failure on the ECS API is " .. verdict, function()
        local world = check_down_service_up()
        world:inject { service = "ecs", action = "DescribeServices", region = "eu-west-1", network = kind }
        local result, events = t.run_playbook(PLAYBOOK, {}, { world = world })
        t.ok(logged(events, "eu%-west%-1 ECS service: " .. verdict), "ECS signal " .. verdict)
        t.eq(result.status == "ok", fails_over, tostring(result.error))
    end)

    t.case("a network " .. kind .. " failure on the health endpoint is " .. verdict, function()
        local world = check_down_service_up()
        world:inject { http = true, region = "eu-west-1", network = kind }
        local result, events = t.run_playbook(PLAYBOOK, {}, { world = world })
        t.ok(logged(events, "eu%-west%-1 health endpoint: " .. verdict), "endpoint signal " .. verdict)
        t.eq(result.status == "ok", fails_over, tostring(result.error))
    end)
end

t.case("access errors on every probe are unknown: the failover is refused", function()
    local world = t.world("eu-west-1-outage")
    world:inject { service = "ecs", region = "eu-west-1", code = "AccessDeniedException", status = 400 }
    world:inject { service = "route53", action = "GetHealthCheckStatus", code = "AccessDenied", status = 403 }
    local result, events = t.run_playbook(PLAYBOOK, {}, { world = world })
    t.ok(logged(events, "eu%-west%-1 ECS service: unknown %(cannot ask ECS"), "ECS unknown")
    t.ok(logged(events, "eu%-west%-1 Route53 health check: unknown"), "health check unknown")
    t.eq(result.status, "failed")
    t.eq(mutating_calls(world), 0)
    t.ok(http.far_side ~= nil)
end)
