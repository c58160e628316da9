-- EventBridge helpers.
local helper = require "atlas.aws.helper"

local M = {}

-- describe_rule{Name, EventBusName?} -> {Name, Arn, State, ScheduleExpression?, EventPattern?, ...}
function M.describe_rule(args) return helper.call("events", "DescribeRule", args) end

return M
