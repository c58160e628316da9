-- Runbook "Application rollback": put a region's ECS service back on an
-- earlier task-definition revision of atlas-crm-production-R, wait for the
-- rolling deployment to finish, and check the health endpoint.
--
-- The revision the service ran before is kept in the journal, so --rollback
-- (or running this playbook again with to_revision=) can undo it.
local atlas = require "atlas"
local ecs = require "atlas.ecs"
local http = require "atlas.http"
local env = require "atlas.env"

local revision_of = ecs.revision_of

local function current_service(region)
    return ecs.describe_service { region = region, cluster = env.cluster(region), service = env.service(region) }
end

local function switch_to(region, arn)
    ecs.deploy_task_definition {
        region = region,
        cluster = env.cluster(region),
        service = env.service(region),
        taskDefinition = arn,
    }
end

return atlas.playbook {
    name = "rollback_application",
    description = "Roll a region's ECS service back to an earlier task-definition revision and verify it",
    -- One lock for everything that changes the production services and DNS.
    lock = "atlas-crm-production",
    params = {
        region = { type = "region", required = true, description = "the region to roll back" },
        to_revision = {
            type = "integer",
            min = 1,
            description = "the revision to run (default: the one before the current)",
        },
        stable_timeout = env.stable_timeout_param("the deployment"),
        health_url = env.health_url_param(),
    },
    steps = {
        {
            name = "choose the revision",
            run = function(ctx)
                local region = ctx.params.region
                local s = current_service(region)
                if not s then ctx.fail("%s: service %s not found", region, env.service(region)) end
                local current = s.taskDefinition
                local current_revision = revision_of(current)
                local by_revision = ecs.active_revisions { region = region, family = env.task_family(region) }
                local target = ctx.params.to_revision
                if not target then
                    for r = current_revision - 1, 1, -1 do
                        if by_revision[r] then
                            target = r
                            break
                        end
                    end
                    if not target then
                        ctx.fail(
                            "%s has no revision before %d to roll back to",
                            env.task_family(region),
                            current_revision
                        )
                    end
                end
                local target_arn, why = ecs.active_revision {
                    region = region,
                    family = env.task_family(region),
                    revision = target,
                    active = by_revision,
                }
                if not target_arn then ctx.fail("%s", why) end
                if target == current_revision then
                    ctx.fail("%s already runs revision %d", env.service(region), target)
                end
                ctx.state.previous_arn = ctx.state.previous_arn or current
                ctx.state.target_arn = target_arn
                atlas.log("%s: revision %d -> %d", env.service(region), current_revision, target)
            end,
        },
        {
            name = "deploy the earlier revision",
            mutates = true,
            confirm = "Roll the service back to the earlier revision?",
            run = function(ctx)
                switch_to(ctx.params.region, ctx.state.target_arn)
            end,
            undo = function(ctx) switch_to(ctx.params.region, ctx.state.previous_arn) end,
        },
        {
            name = "wait for the deployment",
            run = function(ctx)
                local region = ctx.params.region
                ecs.wait_stable {
                    region = region,
                    cluster = env.cluster(region),
                    services = { env.service(region) },
                    timeout = ctx.params.stable_timeout,
                }
            end,
        },
        {
            name = "verify",
            run = function(ctx)
                if ctx.dry_run then
                    atlas.log("dry run: nothing was changed")
                    return
                end
                local region = ctx.params.region
                local s = current_service(region)
                if s.taskDefinition ~= ctx.state.target_arn then
                    ctx.fail("%s runs %s, not %s", env.service(region), s.taskDefinition, ctx.state.target_arn)
                end
                local url = ctx.params.health_url:gsub("{region}", region)
                local healthy, detail = http.check(url, { timeout = 5 })
                if not healthy then
                    ctx.fail("%s health endpoint after the rollback: %s -> %s", region, url, tostring(detail))
                end
                atlas.log(
                    "%s runs revision %d, %d/%d tasks, health %s",
                    region,
                    revision_of(s.taskDefinition),
                    s.runningCount,
                    s.desiredCount,
                    tostring(detail)
                )
            end,
        },
    },
}
