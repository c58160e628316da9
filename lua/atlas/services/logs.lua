-- CloudWatch Logs helpers. Parameters are the API's camelCase ones
-- (logGroupName, startTime, endTime in milliseconds, filterPattern).
local helper = require "atlas.aws.helper"
local runtime = require "atlas.run.runtime"

local M = {}

-- filter_log_events{logGroupName, startTime?, endTime?, filterPattern?, logStreamNames?, limit?}
-- -> list of events (all pages, at most `limit` when given)
function M.filter_log_events(args)
    local copy = {}
    for k, v in pairs(args) do
        copy[k] = v
    end
    local limit = copy.limit
    return helper.paginate(
        "logs",
        "FilterLogEvents",
        copy,
        { input = "nextToken", output = "nextToken", items = "events", limit = limit }
    )
end

-- recent_errors{region, logGroupName, since = 3600 (seconds back), limit = 1000}
-- -> the ERROR events, oldest first, and whether there were more than limit
-- (then the list holds the first limit of them). The runbook's "look at the
-- recent errors" before acting on a region.
function M.recent_errors(args)
    local limit = args.limit or 1000
    local events = M.filter_log_events {
        region = args.region,
        profile = args.profile,
        endpoint = args.endpoint,
        logGroupName = args.logGroupName,
        filterPattern = "ERROR",
        startTime = math.floor((runtime.now() - (args.since or 3600)) * 1000),
        limit = limit + 1,
    }
    local more = #events > limit
    if more then events[#events] = nil end
    return events, more
end

-- tail{logGroupName, since = 600 (seconds back), filterPattern?, follow = false,
--      interval = 2, timeout? (seconds of following), on_event = fn(event) -> false to stop}
-- -> list of the events seen. Without follow: one pass. With follow: polls until on_event
-- returns false, timeout passes, or the run is interrupted. Events are not repeated.
function M.tail(args)
    local seen, out = {}, {}
    local since_ms = math.floor((runtime.now() - (args.since or 600)) * 1000)
    local stop_at = args.timeout and (runtime.now() + args.timeout)
    while true do
        local events = M.filter_log_events {
            region = args.region,
            profile = args.profile,
            endpoint = args.endpoint,
            logGroupName = args.logGroupName,
            filterPattern = args.filterPattern,
            logStreamNames = args.logStreamNames,
            startTime = since_ms,
        }
        table.sort(events, function(a, b) return (a.timestamp or 0) < (b.timestamp or 0) end)
        for _, e in ipairs(events) do
            local id = e.eventId or (tostring(e.timestamp) .. (e.message or ""))
            if not seen[id] then
                seen[id] = true
                out[#out + 1] = e
                -- the next poll starts at the newest timestamp seen; eventId de-duplicates the overlap
                if e.timestamp and e.timestamp > since_ms then since_ms = e.timestamp end
                if args.on_event and args.on_event(e) == false then return out end
            end
        end
        if not args.follow then return out end
        if stop_at and runtime.now() >= stop_at then return out end
        runtime.sleep(args.interval or 2)
    end
end

return M
