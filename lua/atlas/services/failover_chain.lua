-- The automatic-failover chain of the runbook, link by link: the rules that
-- say whether each link holds, for diag_failover_not_triggering (which
-- names the first broken link) and dr_readiness (which asks whether a
-- failover could happen now). The chain:
--   1. the region's Route53 health check (its configuration, and what its
--      checkers report, beside our own probe of the endpoint);
--   2. the CloudWatch alarm atlas-production-health-R (us-east-1), which
--      must watch that health check and go to ALARM when it fails;
--   3. the way the alarm's state change reaches eu-west-1: Route53 metrics,
--      and so the alarm, live in us-east-1, but the rule is in eu-west-1;
--      without a rule that forwards the event across regions it never
--      arrives (reference-environment.md, "Where the runbook's own design
--      is weak");
--   4. the EventBridge rule atlas-production-failover-trigger: it exists,
--      is enabled, matches the alarm's change to ALARM, targets the Lambda;
--   5. the Lambda atlas-production-failover-orchestrator: it exists, is
--      Active, its last update succeeded, its reserved concurrency is not 0;
--   6. the Lambda's recent errors in its log group.
-- Read-only. Each check takes the walk {region=, health_url=,
-- endpoint_timeout=, since_minutes=} and returns holds, text; the health
-- check's link also sets walk.health_check and walk.down for the next links.
local log = require "atlas.run.log"
local runtime = require "atlas.run.runtime"
local aws = require "atlas.aws"
local http = require "atlas.http"
local dns = require "atlas.services.dns"
local cloudwatch = require "atlas.services.cloudwatch"
local eventbridge = require "atlas.services.eventbridge"
local lambda = require "atlas.services.lambda"
local logs = require "atlas.services.logs"
local json = require "atlas.json"
local errors = require "atlas.errors"
local env = require "atlas.env"

local ALARM_EVENT = "CloudWatch Alarm State Change"

local function result(ok, fmt, ...) return ok, string.format(fmt, ...) end

local function note(fmt, ...) log.warn("note    " .. fmt, ...) end

-- Runs fn; an AWS answer that the resource does not exist is returned as
-- nil, its message; any other failure of AWS propagates (the step fails,
-- naming the call: the chain cannot be judged without it).
local function unless_missing(fn)
    local ok, outcome = pcall(fn)
    if ok then return outcome end
    local code = errors.is(outcome, "aws") and outcome.code or ""
    if code:match("NotFound") or code:match("^NoSuch") then return nil, errors.message(outcome) end
    error(outcome, 0)
end

local function contains(list, value)
    for _, v in ipairs(type(list) == "table" and list or { list }) do
        if v == value then return true end
    end
    return false
end

-- Whether an EventBridge pattern matches the alarm's change to ALARM.
-- Returns ok, why-not.
local function matches_alarm_event(pattern_text, alarm_name)
    local pattern = json.decode(pattern_text or "")
    if type(pattern) ~= "table" then return false, "its event pattern is not JSON" end
    if pattern.source and not contains(pattern.source, "aws.cloudwatch") then
        return false, "its pattern's source is not aws.cloudwatch"
    end
    if not contains(pattern["detail-type"], ALARM_EVENT) then
        return false, "its pattern does not match \"" .. ALARM_EVENT .. "\" events"
    end
    local detail = type(pattern.detail) == "table" and pattern.detail or {}
    local state = type(detail.state) == "table" and detail.state.value
    if state and not contains(state, "ALARM") then return false, "its pattern does not match the ALARM state" end
    if detail.alarmName then
        local named = contains(detail.alarmName, alarm_name)
        for _, v in ipairs(type(detail.alarmName) == "table" and detail.alarmName or {}) do
            if type(v) == "table" and v.prefix and alarm_name:sub(1, #v.prefix) == v.prefix then named = true end
        end
        if not named then return false, "its pattern names other alarms than " .. alarm_name end
    end
    return true
end

local function targets_lambda(targets, function_name)
    for _, target in ipairs(targets) do
        local name = tostring(target.Arn):match(":function:([^:]+)")
        if name == function_name then return true end
    end
    return false
end

local function check_health_check(walk)
    local region = walk.region
    local id = dns.health_check_id(region)
    walk.health_check = id
    if not id then
        return result(false, "no Route53 health check checks %s", dns.regional_name(region))
    end
    local config = aws.call {
        service = "route53",
        action = "GetHealthCheck",
        region = "us-east-1",
        params = { HealthCheckId = id },
    }.HealthCheck.HealthCheckConfig
    if config.Disabled then
        return result(false, "%s is disabled: Route53 then reports it healthy, always", id)
    end
    if config.Inverted then
        return result(false, "%s is inverted: a failing endpoint reads as healthy", id)
    end
    local path_ok = config.ResourcePath == "/actuator/health" and config.Type == "HTTPS"
    if not path_ok then
        return result(false,
            "%s checks %s %s%s, not HTTPS %s/actuator/health",
            id,
            tostring(config.Type),
            tostring(config.FullyQualifiedDomainName),
            tostring(config.ResourcePath),
            dns.regional_name(region)
        )
    end
    if config.RequestInterval ~= 30 or config.FailureThreshold ~= 3 then
        note(
            "%s checks every %s s with failure threshold %s (runbook: 30 s, 3): failover takes %s s to notice",
            id,
            tostring(config.RequestInterval),
            tostring(config.FailureThreshold),
            tostring((config.RequestInterval or 0) * (config.FailureThreshold or 0))
        )
    end
    local status = aws.call {
        service = "route53",
        action = "GetHealthCheckStatus",
        region = "us-east-1",
        params = { HealthCheckId = id },
    }
    local failing, total = dns.failing_checkers(status)
    local url = walk.health_url:gsub("{region}", region)
    local healthy, detail = http.check(url, { timeout = walk.endpoint_timeout })
    walk.down = total > 0 and failing * 2 >= total
    if walk.down then
        return result(true, "%s reports %s down: %d/%d checkers fail", id, region, failing, total)
    end
    if not healthy then
        return result(false,
            "%s reports %s healthy (%d/%d checkers fail), but %s -> %s: the check does not see what clients see",
            id,
            region,
            failing,
            total,
            url,
            tostring(detail)
        )
    end
    return result(true,
        "%s reports %s healthy (%d/%d checkers fail) and %s -> %s: nothing to trigger; the rest of the chain is checked for when it must",
        id,
        region,
        failing,
        total,
        url,
        tostring(detail)
    )
end

local function check_alarm(walk)
    local region = walk.region
    local name = env.health_alarm(region)
    local alarm = cloudwatch.describe_alarms({ region = env.HEALTH_ALARM_REGION, AlarmNames = { name } })[1]
    if not alarm then
        return result(false, "%s does not exist in %s", name, env.HEALTH_ALARM_REGION)
    end
    local watched
    for _, d in ipairs(alarm.Dimensions or {}) do
        if d.Name == "HealthCheckId" then watched = d.Value end
    end
    if alarm.Namespace ~= "AWS/Route53" or alarm.MetricName ~= "HealthCheckStatus" then
        return result(false,
            "%s watches %s %s, not AWS/Route53 HealthCheckStatus",
            name,
            tostring(alarm.Namespace),
            tostring(alarm.MetricName)
        )
    end
    if walk.health_check and watched ~= walk.health_check then
        return result(false,
            "%s watches health check %s, not %s (the one that checks %s)",
            name,
            tostring(watched),
            walk.health_check,
            dns.regional_name(region)
        )
    end
    if not alarm.ActionsEnabled then
        note("%s has its actions disabled: EventBridge still sees its state changes, SNS does not", name)
    end
    if walk.down and alarm.StateValue ~= "ALARM" then
        return result(false,
            "%s is %s while the health check fails (%s)",
            name,
            tostring(alarm.StateValue),
            tostring(alarm.StateReason)
        )
    end
    return result(true,
        "%s in %s watches %s, %s since %s",
        name,
        env.HEALTH_ALARM_REGION,
        tostring(watched),
        tostring(alarm.StateValue),
        tostring(alarm.StateTransitionedTimestamp or alarm.StateUpdatedTimestamp)
    )
end

-- A rule in the alarm's region that matches its state changes and sends them
-- to the default event bus of the rule's region.
local function forwarding_rule(alarm_name)
    local bus = ":event-bus/default"
    for _, rule in ipairs(eventbridge.list_rules { region = env.HEALTH_ALARM_REGION }) do
        if rule.State == "ENABLED" and rule.EventPattern and matches_alarm_event(rule.EventPattern, alarm_name) then
            local targets = eventbridge.list_targets_by_rule { region = env.HEALTH_ALARM_REGION, Rule = rule.Name }
            for _, target in ipairs(targets) do
                local arn = tostring(target.Arn)
                if arn:match("^arn:aws:events:" .. env.FAILOVER_REGION:gsub("%-", "%%-") .. ":") and arn:sub(-#bus) == bus then
                    return rule.Name
                end
            end
        end
    end
end

local function check_routing(walk)
    if env.HEALTH_ALARM_REGION == env.FAILOVER_REGION then
        return result(true, "the alarm and the rule share %s", env.FAILOVER_REGION)
    end
    local alarm_name = env.health_alarm(walk.region)
    local forwarder = forwarding_rule(alarm_name)
    if not forwarder then
        return result(false,
            "%s changes state in %s, but no enabled rule there forwards alarm state changes to %s's event bus, so %s in %s never sees them (the runbook's design: add a forwarding rule, or move the trigger to %s)",
            alarm_name,
            env.HEALTH_ALARM_REGION,
            env.FAILOVER_REGION,
            env.FAILOVER_RULE,
            env.FAILOVER_REGION,
            env.HEALTH_ALARM_REGION
        )
    end
    return result(true,
        "rule %s in %s forwards alarm state changes to %s",
        forwarder,
        env.HEALTH_ALARM_REGION,
        env.FAILOVER_REGION
    )
end

local function check_rule(walk)
    local where = env.FAILOVER_REGION
    local rule, missing = unless_missing(
        function() return eventbridge.describe_rule { region = where, Name = env.FAILOVER_RULE } end
    )
    if not rule then return result(false, "%s (%s)", env.FAILOVER_RULE, missing) end
    if rule.State ~= "ENABLED" then
        return result(false, "%s in %s is %s", env.FAILOVER_RULE, where, tostring(rule.State))
    end
    if not rule.EventPattern then
        return result(false,
            "%s has no event pattern (%s): alarm state changes do not start it",
            env.FAILOVER_RULE,
            tostring(rule.ScheduleExpression or "no schedule")
        )
    end
    local matches, why = matches_alarm_event(rule.EventPattern, env.health_alarm(walk.region))
    if not matches then return result(false, "%s: %s", env.FAILOVER_RULE, why) end
    local targets = eventbridge.list_targets_by_rule { region = where, Rule = env.FAILOVER_RULE }
    if not targets_lambda(targets, env.FAILOVER_LAMBDA) then
        local arns = {}
        for _, target in ipairs(targets) do
            arns[#arns + 1] = tostring(target.Arn)
        end
        return result(false,
            "%s does not target %s (targets: %s)",
            env.FAILOVER_RULE,
            env.FAILOVER_LAMBDA,
            #arns > 0 and table.concat(arns, ", ") or "none"
        )
    end
    return result(true,
        "%s in %s is enabled, matches alarm changes to ALARM, targets %s",
        env.FAILOVER_RULE,
        where,
        env.FAILOVER_LAMBDA
    )
end

local function check_lambda(walk)
    local fn, missing = unless_missing(
        function() return lambda.get_function { region = env.FAILOVER_REGION, FunctionName = env.FAILOVER_LAMBDA } end
    )
    if not fn then return result(false, "%s (%s)", env.FAILOVER_LAMBDA, missing) end
    local c = fn.Configuration or {}
    if c.State and c.State ~= "Active" then
        return result(false,
            "%s is %s%s",
            env.FAILOVER_LAMBDA,
            tostring(c.State),
            c.StateReason and (": " .. c.StateReason) or ""
        )
    end
    if c.LastUpdateStatus == "Failed" then
        return result(false,
            "%s: its last update failed%s",
            env.FAILOVER_LAMBDA,
            c.LastUpdateStatusReason and (": " .. c.LastUpdateStatusReason) or ""
        )
    end
    -- Asked on its own: GetFunction leaves Concurrency out when none is reserved,
    -- and moto leaves it out for a reservation of 0 as well.
    local reserved = lambda.get_function_concurrency({
        region = env.FAILOVER_REGION,
        FunctionName = env.FAILOVER_LAMBDA,
    }).ReservedConcurrentExecutions
    if reserved == 0 then
        return result(false,
            "%s has a reserved concurrency of 0: every invocation is throttled",
            env.FAILOVER_LAMBDA
        )
    end
    return result(true,
        "%s is %s, last update %s, concurrency %s",
        env.FAILOVER_LAMBDA,
        tostring(c.State or "Active"),
        tostring(c.LastUpdateStatus or "Successful"),
        reserved and ("reserved " .. reserved) or "unreserved"
    )
end

local function check_lambda_errors(walk)
    local since = walk.since_minutes * 60
    local start_ms = math.floor((runtime.now() - since) * 1000)
    local events, missing = unless_missing(
        function()
            return logs.filter_log_events {
                region = env.FAILOVER_REGION,
                logGroupName = env.FAILOVER_LAMBDA_LOG_GROUP,
                startTime = start_ms,
                filterPattern = "ERROR",
            }
        end
    )
    if not events then
        note("%s: %s: the Lambda has never run, or logs elsewhere", env.FAILOVER_LAMBDA_LOG_GROUP, missing)
        return result(true, "no log group, so no logged error")
    end
    if #events > 0 then
        local newest = events[#events]
        return result(false,
            "%d error(s) in %s in the last %d min; newest: %s",
            #events,
            env.FAILOVER_LAMBDA_LOG_GROUP,
            walk.since_minutes,
            tostring(newest.message):gsub("%s+$", "")
        )
    end
    return result(true,
        "no error in %s in the last %d min",
        env.FAILOVER_LAMBDA_LOG_GROUP,
        walk.since_minutes
    )
end

local M = {}

M.LINKS = {
    { name = "health check", check = check_health_check },
    { name = "alarm", check = check_alarm },
    { name = "cross-region routing", check = check_routing },
    { name = "EventBridge rule", check = check_rule },
    { name = "Lambda", check = check_lambda },
    { name = "Lambda errors", check = check_lambda_errors },
}

-- chain.walk{region=, health_url=, endpoint_timeout=5, since_minutes=60}
--   -> list of {link=, ok=, text=}, the walk (with health_check and down)
function M.walk(walk)
    walk.endpoint_timeout = walk.endpoint_timeout or 5
    walk.since_minutes = walk.since_minutes or 60
    walk.health_url = walk.health_url or require("atlas.env").HEALTH_URL_TEMPLATE
    local links = {}
    for _, l in ipairs(M.LINKS) do
        local ok, text = l.check(walk)
        links[#links + 1] = { link = l.name, ok = ok, text = text }
    end
    return links, walk
end

return M
