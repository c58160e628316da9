-- The runbook's `aws logs tail --follow`: a region's application log group
-- (/ecs/atlas-crm-production-R, the default) or the failover Lambda's
-- (group=lambda), from `since` ago, optionally filtered by a CloudWatch
-- Logs filter pattern. follow=true keeps polling for new events until
-- Ctrl-C, which ends the tail normally (exit 0): stopping is how a tail ends.
-- Read-only.
local atlas = require "atlas"
local logs = require "atlas.logs"
local env = require "atlas.env"

local LAMBDA = "lambda"

local function group_of(params)
    if params.group == LAMBDA then return env.FAILOVER_LAMBDA_LOG_GROUP end
    return params.group or env.log_group(params.region)
end

-- "2025-11-18T09:21:00.000Z  ecs/app/1f2e...  message", as aws logs tail prints it.
local function show(event)
    local ms = event.timestamp or 0
    local stamp = os.date("!%Y-%m-%dT%H:%M:%S", ms // 1000) .. string.format(".%03dZ", ms % 1000)
    atlas.log("%s  %s  %s", stamp, tostring(event.logStreamName), (tostring(event.message):gsub("%s+$", "")))
end

return atlas.playbook {
    name = "logs_tail",
    description = "Show (and with follow=true, stream until Ctrl-C) a region's application log group or the failover Lambda's",
    lock = false, -- read-only
    params = {
        region = { type = "region", default = env.PRIMARY_REGION, description = "whose log group" },
        group = {
            type = "string",
            description = "a log group name, or 'lambda' for the failover Lambda's; default /ecs/atlas-crm-production-REGION",
        },
        since = { type = "duration", default = "10m", min = 1, description = "how far back to start" },
        filter = { type = "string", description = "a CloudWatch Logs filter pattern, e.g. ERROR or \"?ERROR ?WARN\"" },
        follow = { type = "boolean", default = false, description = "keep streaming new events until Ctrl-C" },
        interval = { type = "number", default = 2, min = 0.5, max = 60, description = "seconds between polls when following" },
    },
    validate = function(p)
        if p.group == LAMBDA and p.region ~= env.FAILOVER_REGION then
            return string.format(
                "group=lambda: the failover Lambda logs in %s, not %s (drop region= or set region=%s)",
                env.FAILOVER_REGION,
                p.region,
                env.FAILOVER_REGION
            )
        end
    end,
    steps = {
        {
            name = "tail",
            run = function(ctx)
                local p = ctx.params
                local group = group_of(p)
                ctx.state.group, ctx.state.shown = group, 0
                atlas.log(
                    "%s %s since %ds ago%s%s",
                    p.region,
                    group,
                    math.floor(p.since),
                    p.filter and (", filter " .. p.filter) or "",
                    p.follow and "; following until Ctrl-C" or ""
                )
                local tail = {
                    region = p.region,
                    logGroupName = group,
                    since = p.since,
                    filterPattern = p.filter,
                    follow = p.follow,
                    interval = p.interval,
                    on_event = function(event)
                        show(event)
                        ctx.state.shown = ctx.state.shown + 1
                    end,
                }
                -- Ctrl-C is how a follow ends; anywhere else it interrupts.
                if p.follow and not atlas.until_interrupted(logs.tail, tail) then
                    atlas.log("stopped after %d event(s)", ctx.state.shown)
                    return
                elseif not p.follow then
                    logs.tail(tail)
                end
                atlas.log("%d event(s)", ctx.state.shown)
            end,
        },
    },
}
