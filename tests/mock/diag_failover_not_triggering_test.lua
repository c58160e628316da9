-- playbooks/diag_failover_not_triggering.lua in the mock world: the chain
-- health check -> alarm -> cross-region routing -> rule -> Lambda -> errors.
local t = require "atlas.test"

local PLAYBOOK = "playbooks/diag_failover_not_triggering.lua"
local TRIGGER = "atlas-production-failover-trigger"

-- The fix the runbook's design lacks: a rule in us-east-1 that forwards
-- alarm state changes to eu-west-1's default event bus.
local function add_forwarding(world)
    world:aws_invoke("events", "PutRule", "us-east-1", {
        Name = "atlas-production-health-to-eu-west-1",
        EventPattern = '{"source":["aws.cloudwatch"],"detail-type":["CloudWatch Alarm State Change"]}',
        State = "ENABLED",
    })
    world:aws_invoke("events", "PutTargets", "us-east-1", {
        Rule = "atlas-production-health-to-eu-west-1",
        Targets = { { Id = "eu-west-1", Arn = "arn:aws:events:eu-west-1:123456789012:event-bus/default" } },
    })
end

local function run(world, args)
    local result = t.run_playbook(PLAYBOOK, args or {}, { world = world })
    local broken = {}
    for _, l in ipairs(result.journal.state.links or {}) do
        if not l.ok then broken[#broken + 1] = l.link end
    end
    return result, broken
end

t.case("the reference layout: the alarm in us-east-1 never reaches the rule in eu-west-1", function()
    local result, broken = run(t.world("healthy"))
    t.eq(result.status, "critical")
    t.eq(result.exit, 5)
    t.eq(broken, { "cross-region routing" })
    t.match(tostring(result.error), "first broken link: cross%-region routing: atlas%-production%-health%-eu%-west%-1 changes state in us%-east%-1")
end)

t.case("with forwarding, a healthy region: every link holds, nothing to trigger, exit 0", function()
    local world = t.world("healthy")
    add_forwarding(world)
    local result, broken = run(world)
    t.eq(result.status, "ok", tostring(result.error))
    t.eq(broken, {})
    t.eq(#result.journal.state.links, 6)
    t.eq(result.journal.state.down, false)
end)

t.case("with forwarding, an outage: the health check fails, the alarm is in ALARM, the chain holds", function()
    local world = t.world("eu-west-1-outage")
    add_forwarding(world)
    local result, broken = run(world)
    t.eq(result.status, "ok", tostring(result.error))
    t.eq(broken, {})
    t.eq(result.journal.state.down, true)
    t.match(result.journal.state.links[1].text, "reports eu%-west%-1 down: 8/8 checkers fail")
    t.match(result.journal.state.links[2].text, "ALARM since")
end)

t.case("a disabled rule, then a rule without the Lambda as target, is named", function()
    local world = t.world("eu-west-1-outage")
    add_forwarding(world)
    world:aws_invoke("events", "DisableRule", "eu-west-1", { Name = TRIGGER })
    local result, broken = run(world)
    t.eq(result.exit, 5)
    t.eq(broken, { "EventBridge rule" })
    t.match(tostring(result.error), "first broken link: EventBridge rule: atlas%-production%-failover%-trigger in eu%-west%-1 is DISABLED")
    world:aws_invoke("events", "EnableRule", "eu-west-1", { Name = TRIGGER })
    world:aws_invoke("events", "RemoveTargets", "eu-west-1", { Rule = TRIGGER, Ids = { "failover-orchestrator" } })
    result = run(world)
    t.match(tostring(result.error), "does not target atlas%-production%-failover%-orchestrator %(targets: none%)")
end)

t.case("a Lambda with reserved concurrency 0, or in state Failed, is named", function()
    local world = t.world("healthy")
    add_forwarding(world)
    world:set_lambda_config("atlas-production-failover-orchestrator", { reserved = 0 })
    local result, broken = run(world)
    t.eq(broken, { "Lambda" })
    t.match(tostring(result.error), "reserved concurrency of 0")
    world:set_lambda_config("atlas-production-failover-orchestrator", { reserved = 5, state = "Failed" })
    result = run(world)
    t.match(tostring(result.error), "first broken link: Lambda: atlas%-production%-failover%-orchestrator is Failed")
    world:set_lambda_config("atlas-production-failover-orchestrator", { deleted = true })
    result = run(world)
    t.match(tostring(result.error), "first broken link: Lambda: .*Function not found")
end)

t.case("an alarm that watches another health check, or none, is the first broken link", function()
    local world = t.world("eu-west-1-outage")
    add_forwarding(world)
    world:set_alarm("us-east-1", "atlas-production-health-eu-west-1", {
        dimensions = { { Name = "HealthCheckId", Value = "0c1d2e3f-old-check" } },
    })
    local result, broken = run(world)
    t.eq(broken[1], "alarm")
    t.match(tostring(result.error), "watches health check 0c1d2e3f%-old%-check, not ")
    world:aws_invoke("cloudwatch", "DeleteAlarms", "us-east-1", { AlarmNames = { "atlas-production-health-eu-west-1" } })
    result = run(world)
    t.match(tostring(result.error), "first broken link: alarm: atlas%-production%-health%-eu%-west%-1 does not exist in us%-east%-1")
end)

t.case("a health check that says healthy while the endpoint fails, and a Lambda that errors, are named", function()
    local world = t.world("eu-west-1-outage")
    add_forwarding(world)
    world:force_health_check("eu-west-1", true)
    local result, broken = run(world)
    t.eq(broken[1], "health check")
    t.match(tostring(result.error), "reports eu%-west%-1 healthy %(0/8 checkers fail%), but https://eu%-west%-1.atlas%-crm.com/actuator/health %-> 503")

    world = t.world("healthy")
    add_forwarding(world)
    world:add_log(
        "eu-west-1",
        "/aws/lambda/atlas-production-failover-orchestrator",
        "[ERROR] AccessDeniedException: not authorized to perform: route53:ChangeResourceRecordSets"
    )
    result, broken = run(world)
    t.eq(broken, { "Lambda errors" })
    t.match(tostring(result.error), "1 error%(s%) in /aws/lambda/atlas%-production%-failover%-orchestrator in the last 60 min; newest: %[ERROR%] AccessDenied")
end)
