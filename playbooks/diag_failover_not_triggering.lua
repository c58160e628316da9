-- Runbook troubleshooting, "automatic failover not triggering": walks the
-- chain that should fail a region over by itself (atlas.failover_chain:
-- health check, alarm, cross-region routing, EventBridge rule, Lambda, its
-- recent errors), one step per link, reports every link, and names the
-- first broken one. Read-only; a broken link exits 5.
local atlas = require "atlas"
local chain = require "atlas.failover_chain"
local env = require "atlas.env"

local function link_step(l)
    return {
        name = l.name,
        run = function(ctx)
            local walk = ctx.state.walk
            if not walk then
                walk = {
                    region = ctx.params.region,
                    health_url = ctx.params.health_url,
                    endpoint_timeout = ctx.params.endpoint_timeout,
                    since_minutes = ctx.params.since_minutes,
                }
                ctx.state.walk, ctx.state.links = walk, {}
            end
            local ok, text = l.check(walk)
            ctx.state.down = walk.down
            local links = ctx.state.links
            links[#links + 1] = { link = l.name, ok = ok, text = text }
            if ok then
                atlas.log("ok      %s: %s", l.name, text)
            else
                atlas.warn("BROKEN  %s: %s", l.name, text)
            end
        end,
    }
end

local steps = {}
for i, l in ipairs(chain.LINKS) do
    steps[i] = link_step(l)
end

return atlas.playbook {
    name = "diag_failover_not_triggering",
    description = "Walk the automatic-failover chain (health check, alarm, cross-region routing, EventBridge rule, Lambda, its errors) and name the first broken link",
    lock = false, -- read-only
    params = {
        region = { type = "region", default = env.PRIMARY_REGION, description = "the region that should fail over" },
        health_url = env.health_url_param(),
        endpoint_timeout = env.endpoint_timeout_param "seconds for our own probe",
        since_minutes = {
            type = "integer",
            default = 60,
            min = 1,
            max = 10080,
            description = "how far back to look for the Lambda's errors",
        },
    },
    steps = {
        steps[1],
        steps[2],
        steps[3],
        steps[4],
        steps[5],
        steps[6],
        {
            name = "summary",
            run = function(ctx)
                for _, l in ipairs(ctx.state.links) do
                    if not l.ok then
                        ctx.state.first_broken = l.link
                        ctx.critical("first broken link: %s: %s", l.link, l.text)
                    end
                end
                if ctx.state.down then
                    atlas.log(
                        "every link holds and %s is down: the failover should be under way; read %s",
                        ctx.params.region,
                        env.FAILOVER_LAMBDA_LOG_GROUP
                    )
                else
                    atlas.log("every link holds; %s is healthy, so there is nothing to trigger", ctx.params.region)
                end
            end,
        },
    },
}
