-- EventBridge helpers.
local helper = require "atlas.aws.helper"

local M = {}

-- describe_rule{Name, EventBusName?} -> {Name, Arn, State, ScheduleExpression?, EventPattern?, ...}
function M.describe_rule(args) return helper.call("events", "DescribeRule", args) end

-- list_rules{NamePrefix?, EventBusName?} -> list of Rules (all pages)
function M.list_rules(args)
    return helper.paginate("events", "ListRules", args, { input = "NextToken", output = "NextToken", items = "Rules" })
end

-- list_targets_by_rule{Rule, EventBusName?} -> list of Targets (all pages)
function M.list_targets_by_rule(args)
    return helper.paginate("events", "ListTargetsByRule", args, { input = "NextToken", output = "NextToken", items = "Targets" })
end

return M
