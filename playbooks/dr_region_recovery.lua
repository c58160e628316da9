-- Runbook "Recovery" after a region outage: the way back from
-- dr_region_outage. Shows the region's recent errors, deploys a given
-- task-definition revision when asked, confirms the recovered region is
-- healthy again, puts its API records back exactly as they were before the
-- failover, and returns the backup region to its normal size.
local atlas = require "atlas"
local ecs = require "atlas.ecs"
local logs = require "atlas.logs"
local errors = require "atlas.errors"
local http = require "atlas.http"
local dns = require "atlas.dns"

local env = require "atlas.env"

local cluster, service = env.cluster, env.service

local function restore_args(p)
    return { region = p.recovered_region, backup = p.backup_region, from_layout = p.from_layout }
end

local function describe(region)
    return ecs.describe_service { region = region, cluster = cluster(region), service = service(region) }
end

-- Errors shown at most; the rest are counted (logs_tail shows them all).
local ERRORS_SHOWN = 20

-- The failures of the outside world a log read may meet; anything else is a bug and stops the run.
local function unreadable(err) return errors.is(err, "aws") or errors.is(err, "http") or errors.is(err, "timeout") end

local function show_recent_errors(region, since)
    local group = env.log_group(region)
    local ok, events, more = pcall(logs.recent_errors, { region = region, logGroupName = group, since = since })
    if not ok then
        if not unreadable(events) then error(events, 0) end
        -- The errors inform the operator; the decision rests on the service and the
        -- health endpoint, checked next. Unreadable logs must not keep a healed region out.
        atlas.warn("cannot read %s's recent errors (%s); going on without them", group, errors.message(events))
        return
    end
    since = math.floor(since)
    local span = since % 3600 == 0 and (since // 3600 .. "h") or since % 60 == 0 and (since // 60 .. "m") or (since .. "s")
    atlas.log(
        "%s %s: %s%d error%s in the last %s",
        region,
        group,
        more and "more than " or "",
        #events,
        #events == 1 and "" or "s",
        span
    )
    for i = math.max(1, #events - ERRORS_SHOWN + 1), #events do
        local e = events[i]
        local ms = e.timestamp or 0
        atlas.log("  %s  %s", os.date("!%Y-%m-%dT%H:%M:%SZ", ms // 1000), (tostring(e.message):gsub("%s+$", "")))
    end
    if #events > ERRORS_SHOWN or more then
        atlas.log("  (the last %d shown; logs_tail region=%s filter=ERROR shows them all)", math.min(#events, ERRORS_SHOWN), region)
    end
end

local function deploy(region, arn)
    return ecs.deploy_task_definition {
        region = region,
        cluster = cluster(region),
        service = service(region),
        taskDefinition = arn,
    }
end

return atlas.playbook {
    name = "dr_region_recovery",
    description = "Bring a failed-over region back: show its errors, deploy a revision if asked, verify it, restore its DNS records, scale the backup down",
    -- One lock for everything that changes the production services and DNS.
    lock = "atlas-crm-production",
    params = {
        recovered_region = { type = "region", default = "eu-west-1", description = "the region that was failed over" },
        backup_region = { type = "region", default = "us-east-1", description = "the region that took its traffic" },
        normal_count = {
            type = "integer",
            default = 2,
            min = 2,
            max = 10,
            description = "the backup region's normal desired count",
        },
        from_layout = {
            type = "boolean",
            default = false,
            description = "when no saved records exist, rebuild the region's records from the reference layout",
        },
        health_url = env.health_url_param(),
        stable_timeout = env.stable_timeout_param("each region"),
        revision = {
            type = "integer",
            min = 1,
            description = "a task-definition revision of atlas-crm-production-REGION to deploy to the recovered region before it is verified (default: keep the one it runs)",
        },
        errors_since = {
            type = "duration",
            default = "1h",
            min = 60,
            description = "how far back to show the recovered region's errors",
        },
    },
    validate = function(p)
        if p.recovered_region == p.backup_region then return "recovered_region and backup_region must differ" end
    end,
    steps = {
        {
            name = "show recent errors",
            run = function(ctx) show_recent_errors(ctx.params.recovered_region, ctx.params.errors_since) end,
        },
        {
            -- Read-only, before the confirmation: a revision that cannot be deployed stops here.
            name = "choose the revision",
            run = function(ctx)
                local region, revision = ctx.params.recovered_region, ctx.params.revision
                local s = describe(region)
                if not s then ctx.fail("%s: service %s not found", region, service(region)) end
                if not revision then
                    atlas.log("%s runs %s; no revision= given, keeping it", service(region), s.taskDefinition)
                    return
                end
                local arn, why = ecs.active_revision { region = region, family = env.task_family(region), revision = revision }
                if not arn then ctx.fail("%s", why) end
                ctx.state.target_arn = arn
                if s.taskDefinition == arn then
                    atlas.log("%s already runs revision %d: nothing to deploy", service(region), revision)
                    return
                end
                ctx.state.previous_arn = ctx.state.previous_arn or s.taskDefinition
                atlas.log(
                    "%s runs revision %s; revision %d is active and will be deployed",
                    service(region),
                    tostring(ecs.revision_of(s.taskDefinition)),
                    revision
                )
            end,
        },
        {
            name = "deploy the revision",
            mutates = true,
            confirm = true, -- asks itself below (atlas.confirm), naming the region and revision, only with revision=
            run = function(ctx)
                local region, arn = ctx.params.recovered_region, ctx.state.target_arn
                if not ctx.state.previous_arn then
                    atlas.log("no revision to deploy")
                    return
                end
                if not ctx.dry_run then
                    atlas.confirm(
                        string.format(
                            "Deploy %s:%d to %s (%s) before verifying it?",
                            env.task_family(region),
                            ctx.params.revision,
                            region,
                            service(region)
                        )
                    )
                end
                deploy(region, arn)
            end,
            undo = function(ctx)
                if ctx.state.previous_arn then deploy(ctx.params.recovered_region, ctx.state.previous_arn) end
            end,
        },
        {
            name = "verify recovered region is healthy",
            run = function(ctx)
                local region = ctx.params.recovered_region
                local s = describe(region)
                if not s or s.status ~= "ACTIVE" then
                    ctx.fail("%s: service %s is not active", region, service(region))
                end
                atlas.log("%s ECS service: %d/%d running", region, s.runningCount, s.desiredCount)
                if s.runningCount < 1 or not ecs.is_stable({ services = { s } }) then
                    atlas.log("%s is not stable yet; waiting", region)
                    s = ecs.wait_stable({
                        region = region,
                        cluster = cluster(region),
                        services = { service(region) },
                        timeout = ctx.params.stable_timeout,
                    })[1]
                end
                local wanted = ctx.state.target_arn
                if wanted and not ctx.dry_run and s.taskDefinition ~= wanted then
                    ctx.fail("%s runs %s, not the deployed %s", service(region), s.taskDefinition, wanted)
                end
                local url = ctx.params.health_url:gsub("{region}", region)
                local healthy, detail = http.check(url, { timeout = 5 })
                if not healthy then
                    ctx.fail(
                        "%s health endpoint is not healthy (%s -> %s); not sending traffic back",
                        region,
                        url,
                        tostring(detail)
                    )
                end
                atlas.log("%s health endpoint: %s", region, tostring(detail))
            end,
        },
        {
            -- Read-only, and before the confirmation: what will be written is
            -- shown, and records someone changed since the failover stop the run.
            name = "check DNS records to restore",
            run = function(ctx)
                local plan = dns.plan_enable(restore_args(ctx.params))
                if plan.source == "layout" then
                    atlas.warn(
                        "dns: nothing saved for %s; rebuilding its records from the reference layout",
                        ctx.params.recovered_region
                    )
                end
                if #plan.changed > 0 then
                    ctx.fail(
                        "not restoring %s: its records changed since the failover: %s. Fix them by hand, or remove %s and use from_layout=true",
                        ctx.params.recovered_region,
                        table.concat(plan.changed, "; "),
                        tostring(plan.saved)
                    )
                end
                for _, r in ipairs(plan.restore) do
                    atlas.log("dns: will restore %s [%s] -> %s", dns.API_NAME, r.SetIdentifier, dns.describe_record(r))
                end
                for _, r in ipairs(plan.already) do
                    atlas.log(
                        "dns: %s [%s] is already restored (%s)",
                        dns.API_NAME,
                        r.SetIdentifier,
                        dns.describe_record(r)
                    )
                end
                if #plan.restore == 0 and (plan.source ~= "saved" or #plan.already == 0) then
                    ctx.fail(
                        "nothing to restore for %s: its records already are %s",
                        ctx.params.recovered_region,
                        plan.source == "layout" and "as the reference layout has them" or "empty"
                    )
                end
            end,
        },
        {
            name = "restore DNS records",
            mutates = true,
            confirm = "Send the recovered region's API traffic back to it?",
            run = function(ctx)
                local args = restore_args(ctx.params)
                -- Forgotten only once the report has verified the records.
                args.keep_saved = true
                local result = dns.enable_region(args)
                for _, r in ipairs(result.restored) do
                    atlas.log("dns: api.atlas-crm.com [%s] -> %s", r.SetIdentifier, dns.record_value(r))
                end
            end,
        },
        {
            name = "scale backup region down",
            mutates = true,
            confirm = "Return the backup region to its normal size?",
            run = function(ctx)
                local region = ctx.params.backup_region
                ecs.set_desired_count {
                    region = region,
                    cluster = cluster(region),
                    service = service(region),
                    desiredCount = ctx.params.normal_count,
                }
            end,
        },
        {
            name = "wait for backup region to be stable",
            run = function(ctx)
                local region = ctx.params.backup_region
                ecs.wait_stable {
                    region = region,
                    cluster = cluster(region),
                    services = { service(region) },
                    timeout = ctx.params.stable_timeout,
                }
            end,
        },
        {
            name = "report",
            run = function(ctx)
                if ctx.dry_run then
                    atlas.log("dry run: nothing was changed")
                    return
                end
                local served = dns.regions_served()
                local region = ctx.params.recovered_region
                if served[region] ~= region then
                    ctx.fail("the %s record still resolves to %s", region, tostring(served[region]))
                end
                local plan = dns.plan_enable(restore_args(ctx.params))
                if #plan.restore > 0 or #plan.changed > 0 then
                    ctx.fail(
                        "the records of %s are not as restored: %d to restore, %s",
                        region,
                        #plan.restore,
                        table.concat(plan.changed, "; ")
                    )
                end
                local s = describe(ctx.params.backup_region)
                if not s or s.desiredCount ~= ctx.params.normal_count then
                    ctx.fail(
                        "%s wants %s tasks, not its normal %d",
                        ctx.params.backup_region,
                        tostring(s and s.desiredCount),
                        ctx.params.normal_count
                    )
                end
                -- Last, once everything is verified: a report cut short by a
                -- failed call keeps the saved records, so its resume checks
                -- against them again instead of finding nothing to compare.
                dns.forget_saved { region = region }
                atlas.log(
                    "%s serves its own clients again; %s runs %d/%d tasks",
                    region,
                    ctx.params.backup_region,
                    s.runningCount,
                    s.desiredCount
                )
            end,
        },
    },
}
