-- CloudWatch helpers. Arguments: region and CloudWatch's parameters as in
-- boto3 (Namespace, MetricName, Dimensions, StartTime, EndTime, Period,
-- Statistics, MetricData, AlarmNames, StateValue). Times are Unix seconds or
-- ISO 8601 strings.
local helper = require "atlas.aws.helper"

local M = {}

-- get_metric_statistics{Namespace, MetricName, Dimensions?, StartTime, EndTime, Period, Statistics}
-- -> {Label=, Datapoints={...}}
function M.get_metric_statistics(args) return helper.call("cloudwatch", "GetMetricStatistics", args) end

-- put_metric_data{Namespace, MetricData = {{MetricName=, Value=, Unit=, Dimensions=}}} -> {}
function M.put_metric_data(args) return helper.call("cloudwatch", "PutMetricData", args) end

-- describe_alarms{AlarmNames?, AlarmNamePrefix?, StateValue?} -> list of MetricAlarms (all pages)
function M.describe_alarms(args)
    return helper.paginate(
        "cloudwatch",
        "DescribeAlarms",
        args,
        { input = "NextToken", output = "NextToken", items = "MetricAlarms" }
    )
end

-- list_metrics{Namespace?, MetricName?, Dimensions? = {{Name=, Value=?}}} -> list of Metrics (all pages)
function M.list_metrics(args)
    return helper.paginate("cloudwatch", "ListMetrics", args, { input = "NextToken", output = "NextToken", items = "Metrics" })
end

return M
