-- EventBridge in the mock world: the failover trigger in eu-west-1, the rule
-- that matches a CloudWatch alarm's change to ALARM and targets the failover
-- orchestrator Lambda (reference-environment.md, "failover trigger").
local util = require "atlas.mock.util"
local env = require "atlas.env"

local M = {}

M.FAILOVER_RULE = env.FAILOVER_RULE

-- The pattern as EventBridge stores it: the JSON text the rule was put with.
M.FAILOVER_PATTERN = '{"source":["aws.cloudwatch"],"detail-type":["CloudWatch Alarm State Change"],'
    .. '"detail":{"state":{"value":["ALARM"]}}}'

local function state(w, region)
    w.events = w.events or {}
    w.events[region] = w.events[region] or {}
    return w.events[region]
end

function M.build(w)
    local region = env.FAILOVER_REGION
    state(w, region)[M.FAILOVER_RULE] = {
        Name = M.FAILOVER_RULE,
        Arn = string.format("arn:aws:events:%s:%s:rule/%s", region, util.ACCOUNT, M.FAILOVER_RULE),
        EventPattern = M.FAILOVER_PATTERN,
        State = "ENABLED",
        Description = "Runs " .. env.FAILOVER_LAMBDA .. " when a health alarm goes to ALARM",
        EventBusName = "default",
        CreatedBy = util.ACCOUNT,
        targets = {
            {
                Id = "failover-orchestrator",
                Arn = string.format("arn:aws:lambda:%s:%s:function:%s", region, util.ACCOUNT, env.FAILOVER_LAMBDA),
            },
        },
    }
end

-- Test and scenario helpers: change the rule as the console would.
-- set_rule(w, region, name, {State=, EventPattern=, targets=}) ; nil fields stay.
function M.set_rule(w, region, name, fields)
    local rule = state(w, region)[name]
    assert(rule, "set_rule: no rule " .. tostring(name) .. " in " .. tostring(region))
    for k, v in pairs(fields) do
        rule[k] = v
    end
end

function M.delete_rule(w, region, name) state(w, region)[name] = nil end

local H = {}

-- The rule's public view: the API's members only.
local function rule_view(rule)
    local view = util.copy(rule)
    view.targets = nil
    return view
end

local function find_rule(w, region, p, ctx, name)
    local bus = p.EventBusName or "default"
    local rule = state(w, region)[name]
    if not rule or rule.EventBusName ~= (bus:match("event%-bus/(.+)$") or bus) then
        ctx:fail("ResourceNotFoundException", string.format("Rule %s does not exist on EventBus %s.", name, bus))
    end
    return rule
end

function H.DescribeRule(w, region, p, ctx) return rule_view(find_rule(w, region, p, ctx, ctx:need(p, "Name"))) end

function H.ListRules(w, region, p, ctx)
    local rules = {}
    for _, name in ipairs(util.sorted_keys(state(w, region))) do
        if not p.NamePrefix or name:sub(1, #p.NamePrefix) == p.NamePrefix then
            local rule = rule_view(state(w, region)[name])
            rule.CreatedBy = nil -- DescribeRule has it; ListRules' Rule shape does not
            rules[#rules + 1] = rule
        end
    end
    local page, token = util.page(rules, p.NextToken, p.Limit, 100)
    return { Rules = page, NextToken = token }
end

function H.ListTargetsByRule(w, region, p, ctx)
    local rule = find_rule(w, region, p, ctx, ctx:need(p, "Rule"))
    local page, token = util.page(util.copy(rule.targets or {}), p.NextToken, p.Limit, 100)
    return { Targets = page, NextToken = token }
end

local function set_state(value)
    return function(w, region, p, ctx)
        find_rule(w, region, p, ctx, ctx:need(p, "Name")).State = value
        return {}
    end
end

function H.PutRule(w, region, p, ctx)
    local name = ctx:need(p, "Name")
    if not p.EventPattern and not p.ScheduleExpression then
        ctx:fail("ValidationException", "Parameter(s) EventPattern or ScheduleExpression must be specified.")
    end
    local rules = state(w, region)
    local rule = rules[name]
        or {
            Name = name,
            Arn = string.format("arn:aws:events:%s:%s:rule/%s", region, util.ACCOUNT, name),
            EventBusName = "default",
            CreatedBy = util.ACCOUNT,
            targets = {},
        }
    rule.EventPattern, rule.ScheduleExpression = p.EventPattern, p.ScheduleExpression
    rule.State = p.State or "ENABLED"
    rule.Description = p.Description
    rules[name] = rule
    return { RuleArn = rule.Arn }
end

function H.PutTargets(w, region, p, ctx)
    local rule = find_rule(w, region, p, ctx, ctx:need(p, "Rule"))
    for _, target in ipairs(util.as_list(ctx:need(p, "Targets"))) do
        local replaced = false
        for i, existing in ipairs(rule.targets) do
            if existing.Id == target.Id then
                rule.targets[i], replaced = util.copy(target), true
            end
        end
        if not replaced then rule.targets[#rule.targets + 1] = util.copy(target) end
    end
    return { FailedEntryCount = 0, FailedEntries = util.list() }
end

function H.RemoveTargets(w, region, p, ctx)
    local rule = find_rule(w, region, p, ctx, ctx:need(p, "Rule"))
    local gone = {}
    for _, id in ipairs(util.as_list(ctx:need(p, "Ids"))) do
        gone[id] = true
    end
    local kept = {}
    for _, target in ipairs(rule.targets) do
        if not gone[target.Id] then kept[#kept + 1] = target end
    end
    rule.targets = kept
    return { FailedEntryCount = 0, FailedEntries = util.list() }
end

H.EnableRule = set_state "ENABLED"
H.DisableRule = set_state "DISABLED"

-- Every new world builds this state and sends this module the calls to events.
require("atlas.mock.world").register { name = "events", build = M.build, handlers = { events = H } }

return M
