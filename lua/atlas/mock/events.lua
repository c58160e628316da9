-- EventBridge in the mock world: the rule that runs the failover
-- orchestrator Lambda every minute in eu-west-1.
local util = require "atlas.mock.util"

local M = {}

M.FAILOVER_RULE = "atlas-production-failover-schedule"

local function state(w, region)
    w.events = w.events or {}
    w.events[region] = w.events[region] or {}
    return w.events[region]
end

function M.build(w)
    state(w, "eu-west-1")[M.FAILOVER_RULE] = {
        Name = M.FAILOVER_RULE,
        Arn = string.format("arn:aws:events:eu-west-1:%s:rule/%s", util.ACCOUNT, M.FAILOVER_RULE),
        ScheduleExpression = "rate(1 minute)",
        State = "ENABLED",
        Description = "Runs atlas-production-failover-orchestrator, which fails over after 3 consecutive health-check failures",
        EventBusName = "default",
        CreatedBy = util.ACCOUNT,
    }
end

local H = {}
M.handlers = H

function H.DescribeRule(w, region, p, ctx)
    local name = ctx:need(p, "Name")
    local bus = p.EventBusName or "default"
    local rule = state(w, region)[name]
    if not rule or rule.EventBusName ~= (bus:match("event%-bus/(.+)$") or bus) then
        ctx:fail("ResourceNotFoundException", string.format("Rule %s does not exist on EventBus %s.", name, bus))
    end
    return util.copy(rule)
end

function H.ListRules(w, region, p, ctx)
    local rules = {}
    for _, name in ipairs(util.sorted_keys(state(w, region))) do
        if not p.NamePrefix or name:sub(1, #p.NamePrefix) == p.NamePrefix then
            local rule = util.copy(state(w, region)[name])
            rule.CreatedBy = nil -- DescribeRule has it; ListRules' Rule shape does not
            rules[#rules + 1] = rule
        end
    end
    local page, token = util.page(rules, p.NextToken, p.Limit, 100)
    return { Rules = page, NextToken = token }
end

return M
