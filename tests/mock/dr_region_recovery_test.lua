-- The way back: outage, failover, the region heals, recovery.
local t = require "atlas.test"
local sys = require "atlas.sys"
local aws = require "atlas.aws"
local dns = require "atlas.dns"

local RECOVERY = "playbooks/dr_region_recovery.lua"

-- Each case its own state directory: saved records must not leak between
-- cases. One temporary directory for the file keeps the suite fast.
local STATE_BASE = t.tmpdir()
local cases_run = 0
local function fresh_state()
    local previous = os.getenv("ATLAS_STATE_DIR")
    cases_run = cases_run + 1
    local dir = STATE_BASE .. "/" .. cases_run
    sys.mkdir(dir, 448)
    sys.setenv("ATLAS_STATE_DIR", dir)
    t.defer(function() sys.setenv("ATLAS_STATE_DIR", previous) end)
    return dir
end

local function failover_then_heal(world)
    local result = t.run_playbook("playbooks/dr_region_outage.lua", {}, { world = world })
    t.eq(result.status, "ok", tostring(result.error))
    world:stall_service("eu-west-1", false)
    world:set_service("eu-west-1", { running = 2, desired = 2 })
    world:set_endpoint("eu-west-1", { mode = "auto" })
end

-- An operator's change by hand, as the console makes it.
local function upsert(world, identifier, fields)
    local _, records = dns.records {}
    for _, r in ipairs(records) do
        if r.SetIdentifier == identifier then
            for k, v in pairs(fields) do
                r[k] = v
            end
            aws.call {
                service = "route53",
                action = "ChangeResourceRecordSets",
                region = "us-east-1",
                params = {
                    HostedZoneId = dns.zone_id(),
                    ChangeBatch = { Changes = { { Action = "UPSERT", ResourceRecordSet = r } } },
                },
            }
        end
    end
    world:advance(60)
end

local function mutating_dns_calls(world) return #world:calls_to("route53", "ChangeResourceRecordSets") end

t.case("recovery restores the original records and the backup's normal size", function()
    fresh_state()
    local world = t.world("eu-west-1-outage")
    local before = world:snapshot()
    failover_then_heal(world)
    t.ok(world:snapshot().ecs["us-east-1"].desired == 10, "failover scaled the backup up")
    local result = t.run_playbook(RECOVERY, {}, { world = world })
    t.eq(result.status, "ok", tostring(result.error))
    local after = world:snapshot()
    t.eq(after.api_records, before.api_records)
    t.eq(after.ecs["us-east-1"], { desired = 2, running = 2, deployments = 1, status = "ACTIVE" })
end)

t.case("recovery refuses while the region is still unhealthy", function()
    fresh_state()
    local world = t.world("eu-west-1-outage")
    local result = t.run_playbook("playbooks/dr_region_outage.lua", {}, { world = world })
    t.eq(result.status, "ok", tostring(result.error))
    world:stall_service("eu-west-1", false)
    world:set_service("eu-west-1", { running = 2, desired = 2 })
    world:set_endpoint("eu-west-1", { status = 503 })
    local records = world:snapshot().api_records
    result = t.run_playbook(RECOVERY, {}, { world = world })
    t.eq(result.status, "failed")
    t.match(tostring(result.error), "health endpoint is not healthy")
    t.eq(world:snapshot().api_records, records, "DNS untouched")
end)

t.case("recovery with nothing to restore is a failure that says why, and changes nothing", function()
    fresh_state()
    local world = t.world("healthy")
    local result = t.run_playbook(RECOVERY, {}, { world = world })
    t.eq(result.status, "failed")
    t.eq(result.step, "check DNS records to restore")
    t.match(tostring(result.error), "no saved records for eu%-west%-1 in .*, so nothing to restore")
    t.match(tostring(result.error), "from_layout=true rebuilds them from the reference layout")
    t.eq(mutating_dns_calls(world), 0)
    t.eq(world:snapshot().ecs["us-east-1"].desired, 2)

    result = t.run_playbook(RECOVERY, { from_layout = "true" }, { world = world })
    t.eq(result.status, "failed")
    t.match(
        tostring(result.error),
        "nothing to restore for eu%-west%-1: its records already are as the reference layout has them"
    )
    t.eq(mutating_dns_calls(world), 0)
end)

for _, case in ipairs {
    {
        "its TTL",
        { TTL = 300 },
        "api%.atlas%-crm%.com %[eu%-west%-1%]: TTL 300 %(expected 60%) since the failover",
    },
    {
        "where it points",
        { ResourceRecords = { { Value = "ap-southeast-1.atlas-crm.com" } } },
        "api%.atlas%-crm%.com %[eu%-west%-1%] points at ap%-southeast%-1%.atlas%-crm%.com, but the failover pointed it at us%-east%-1%.atlas%-crm%.com",
    },
} do
    t.case(
        "recovery refuses, naming the difference, when someone changed " .. case[1] .. " since the failover",
        function()
            fresh_state()
            local world = t.world("eu-west-1-outage")
            failover_then_heal(world)
            upsert(world, "eu-west-1", case[2])
            local records = world:snapshot().api_records
            local changes = mutating_dns_calls(world)
            local result = t.run_playbook(RECOVERY, {}, { world = world })
            t.eq(result.status, "failed")
            t.eq(result.step, "check DNS records to restore")
            t.match(
                tostring(result.error),
                "not restoring eu%-west%-1: its records changed since the failover: " .. case[3]
            )
            t.match(tostring(result.error), "Fix them by hand, or remove .* and use from_layout=true")
            t.eq(mutating_dns_calls(world), changes)
            t.eq(world:snapshot().api_records, records)
            t.eq(world:snapshot().ecs["us-east-1"].desired, 10, "the backup keeps its size")
        end
    )
end

t.case("a saved file left by an earlier failover does not bring back records as they were then", function()
    fresh_state()
    local world = t.world("eu-west-1-outage")
    failover_then_heal(world)
    -- Someone restores the region by hand (the saved file stays), and later sets a new TTL.
    upsert(world, "eu-west-1", {
        ResourceRecords = { { Value = "eu-west-1.atlas-crm.com" } },
        HealthCheckId = dns.health_check_id("eu-west-1"),
        TTL = 120,
    })
    local before_second = world:snapshot().api_records
    -- A second outage, a second failover and its recovery.
    world:set_service("eu-west-1", { running = 0 })
    world:set_endpoint("eu-west-1", { status = 503, changed_at = world:now() - 600 })
    local result = t.run_playbook("playbooks/dr_region_outage.lua", {}, { world = world })
    t.eq(result.status, "ok", tostring(result.error))
    world:set_service("eu-west-1", { running = 2, desired = 2 })
    world:set_endpoint("eu-west-1", { mode = "auto" })
    result = t.run_playbook(RECOVERY, {}, { world = world })
    t.eq(result.status, "ok", tostring(result.error))
    t.eq(world:snapshot().api_records, before_second, "the records as they were before the second failover")
end)

t.case("from_layout=true rebuilds the records when nothing is saved, shown before the confirmation", function()
    local dir = fresh_state()
    local world = t.world("eu-west-1-outage")
    local before = world:snapshot().api_records
    failover_then_heal(world)
    -- The saved records are lost (another machine, a wiped laptop).
    t.ok(os.remove(dir .. "/mock/dns/api.atlas-crm.com.eu-west-1.json"), "the saved records were where expected")
    local result = t.run_playbook(RECOVERY, {}, { world = world })
    t.eq(result.status, "failed")
    t.match(tostring(result.error), "from_layout=true")
    local events
    result, events = t.run_playbook(RECOVERY, { from_layout = "true" }, { world = world })
    t.eq(result.status, "ok", tostring(result.error))
    t.eq(world:snapshot().api_records, before)
    local shown, confirmed
    for i, e in ipairs(events) do
        if
            e.type == "log"
            and e.message:find(
                "will restore api%.atlas%-crm%.com %[eu%-west%-1%] %-> eu%-west%-1%.atlas%-crm%.com, TTL 60, ContinentCode=EU, health check"
            )
        then
            shown = shown or i
        end
        if e.type == "log" and e.message:find("confirmed by %-%-yes: Send the recovered region") then confirmed = i end
    end
    t.ok(shown and confirmed and shown < confirmed, "the rebuilt records are shown before the confirmation")
end)

t.case("a recovery run again after it restored the records verifies them, and does not fail", function()
    fresh_state()
    local world = t.world("eu-west-1-outage")
    local before = world:snapshot().api_records
    failover_then_heal(world)
    -- The restore went through, but the run stopped before its report.
    dns.enable_region { region = "eu-west-1", backup = "us-east-1", keep_saved = true }
    local result, events = t.run_playbook(RECOVERY, {}, { world = world })
    t.eq(result.status, "ok", tostring(result.error))
    t.eq(world:snapshot().api_records, before)
    local said = false
    for _, e in ipairs(events) do
        if e.type == "log" and e.message:find("%[eu%-west%-1%] is already restored") then said = true end
    end
    t.ok(said, "the run says the records were already restored")
end)

t.case("a recovery whose report is cut by a failed call resumes and verifies against the saved records", function()
    -- Fault campaign seeds 6, 84, 91: the report forgot the saved records before
    -- its last call; that call failed, and the resume found nothing to compare.
    local function backup_reads(world)
        local n = 0
        for _, c in ipairs(world:calls_to("ecs", "DescribeServices")) do
            if c.region == "us-east-1" then n = n + 1 end
        end
        return n
    end
    fresh_state()
    local reference = t.world("eu-west-1-outage")
    failover_then_heal(reference)
    local reads_before = backup_reads(reference)
    t.eq(t.run_playbook(RECOVERY, {}, { world = reference }).status, "ok")
    local report_read = backup_reads(reference) - reads_before -- the report's read is the last one

    fresh_state()
    local world = t.world("eu-west-1-outage")
    local before = world:snapshot().api_records
    failover_then_heal(world)
    world:inject {
        service = "ecs",
        action = "DescribeServices",
        region = "us-east-1",
        code = "AccessDeniedException",
        after = report_read - 1,
        times = 1,
    }
    local result = t.run_playbook(RECOVERY, {}, { world = world })
    t.eq(result.status, "failed")
    t.eq(result.step, "report")
    result = t.run_playbook(RECOVERY, {}, { world = world, resume = result })
    t.eq(result.status, "ok", tostring(result.error))
    t.eq(world:snapshot().api_records, before)
end)
