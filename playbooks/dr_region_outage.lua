-- Runbook "Scenario 1: Region Complete Outage".
--
-- Confirms the failed region is really down, scales the backup region up,
-- takes the failed region out of api.atlas-crm.com, waits for the backup to
-- be stable and reports. Every step is safe to run again: resume after a
-- crash picks up where the journal says it stopped.
local atlas = require "atlas"
local ecs = require "atlas.ecs"
local route53 = require "atlas.route53"
local http = require "atlas.http"
local dns = require "atlas.dns"
local errors = require "atlas.errors"

local env = require "atlas.env"

local cluster, service = env.cluster, env.service

-- Three independent signals; a single failing probe is not an outage.
-- A probe that fails because of our side (no credentials, access denied, a
-- bad request) says nothing about the region: it is "unknown", never
-- "DOWN", or a broken laptop profile would fail over a healthy region.
-- Transport failures that point at the region: it did not answer in time,
-- refused, or cut the connection. A name that does not resolve, a TLS
-- failure or a refused plain-http URL points at our own network or setup.
local REGION_SIDE_TRANSPORT = { connect = true, timeout = true, reset = true }

local function region_side_failure(err)
    if errors.is(err, "interrupted") then error(err, 0) end
    if not errors.is(err, "aws") then return false end
    if err.status then return err.status >= 500 end
    return REGION_SIDE_TRANSPORT[err.transport] == true
end

local function ecs_signal(region)
    local ok, s = pcall(ecs.describe_service, { region = region, cluster = cluster(region), service = service(region) })
    if not ok then
        if region_side_failure(s) then return false, "ECS API unreachable: " .. errors.message(s) end
        return nil, "cannot ask ECS: " .. errors.message(s)
    end
    if not s then return false, "service missing" end
    if s.status ~= "ACTIVE" or (s.runningCount or 0) == 0 then
        return false, string.format("%s, %d/%d running", s.status, s.runningCount or 0, s.desiredCount or 0)
    end
    return true, string.format("%d/%d running", s.runningCount, s.desiredCount)
end

local function health_check_signal(region)
    local ok, served = pcall(dns.health_check_id, region)
    if not ok then
        if errors.is(served, "interrupted") then error(served, 0) end
        return nil, "cannot list the health checks: " .. errors.message(served)
    end
    if not served then return nil, "no health check checks " .. dns.regional_name(region) end
    local read, status = pcall(route53.get_health_check_status, { HealthCheckId = served })
    if not read then
        if errors.is(status, "interrupted") then error(status, 0) end
        return nil, "cannot read the health check: " .. errors.message(status)
    end
    local failing, total = dns.failing_checkers(status)
    if total == 0 then return nil, "health check has no observations" end
    return failing * 2 < total, string.format("%d/%d checkers report failure", failing, total)
end

local function endpoint_signal(url)
    local healthy, detail = http.check(url, { timeout = 5 })
    return healthy, string.format("%s -> %s", url, tostring(detail))
end

return atlas.playbook {
    name = "dr_region_outage",
    description = "Region complete outage: fail a region over to the backup region (runbook scenario 1)",
    -- One lock for everything that changes the production services and DNS.
    lock = "atlas-crm-production",
    params = {
        failed_region = { type = "region", default = "eu-west-1", description = "the region that is down" },
        backup_region = { type = "region", default = "us-east-1", description = "the region that takes its traffic" },
        desired_count = {
            type = "integer",
            default = 10,
            min = 2,
            max = 10,
            description = "tasks to run in the backup region (auto-scaling allows 2..10)",
        },
        force = {
            type = "boolean",
            default = false,
            description = "fail over even though the region looks healthy (planned drills)",
        },
        health_url = env.health_url_param(),
        stable_timeout = env.stable_timeout_param("the backup region"),
    },
    validate = function(p)
        if p.failed_region == p.backup_region then
            return "failed_region and backup_region must differ (both are " .. p.failed_region .. ")"
        end
    end,
    steps = {
        {
            name = "verify failed region is down",
            -- Checked again on --resume: the region may have come back since.
            check = function(ctx, step) return step.run(ctx) end,
            run = function(ctx)
                local region = ctx.params.failed_region
                local url = ctx.params.health_url:gsub("{region}", region)
                local signals = {
                    { "ECS service", ecs_signal(region) },
                    { "Route53 health check", health_check_signal(region) },
                    { "health endpoint", endpoint_signal(url) },
                }
                local down, known = 0, 0
                for _, s in ipairs(signals) do
                    local name, healthy, detail = s[1], s[2], s[3]
                    if healthy ~= nil then
                        known = known + 1
                        if not healthy then down = down + 1 end
                    end
                    atlas.log(
                        "%s %s: %s (%s)",
                        region,
                        name,
                        healthy == nil and "unknown" or healthy and "healthy" or "DOWN",
                        detail
                    )
                end
                ctx.state.signals_down = down
                if signals[1][2] and down > 0 then
                    atlas.warn(
                        "%s's ECS service is healthy while its health checks fail: this may be a database "
                            .. "failure rather than a region outage (see the database failover procedure)",
                        region
                    )
                end
                if ctx.params.force then
                    if down * 2 <= known then
                        atlas.warn("%s looks healthy, failing over anyway: force=true", region)
                    end
                    return
                end
                -- Route53's checkers see the region from many places, so their
                -- view decides; our own probes only corroborate it. A machine
                -- whose network or credentials are broken must not move a region.
                local check_healthy = signals[2][2]
                if check_healthy == nil then
                    ctx.fail(
                        "cannot tell whether %s is down: its Route53 health check could not be read (see above); "
                            .. "fix access, or use force=true to fail over anyway",
                        region
                    )
                end
                if down * 2 <= known or check_healthy then
                    local ours = (signals[1][2] == false or signals[3][2] == false) and check_healthy
                    ctx.fail(
                        "%s looks healthy (%d of %d signals down%s); not failing over. Use force=true for a planned drill",
                        region,
                        down,
                        known,
                        ours and "; Route53's checkers see it up, so the failing probes may be this machine's network"
                            or ""
                    )
                end
            end,
        },
        {
            name = "scale up backup region",
            mutates = true,
            confirm = "Scale the backup region's service up?",
            run = function(ctx)
                local region = ctx.params.backup_region
                local before = ecs.set_desired_count {
                    region = region,
                    cluster = cluster(region),
                    service = service(region),
                    desiredCount = ctx.params.desired_count,
                }
                -- Kept for undo; only the first attempt's value is the real "before".
                ctx.state.backup_previous_count = ctx.state.backup_previous_count or before
            end,
            undo = function(ctx)
                local region = ctx.params.backup_region
                if ctx.state.backup_previous_count then
                    ecs.set_desired_count {
                        region = region,
                        cluster = cluster(region),
                        service = service(region),
                        desiredCount = ctx.state.backup_previous_count,
                    }
                end
            end,
        },
        {
            name = "disable failed region in DNS",
            mutates = true,
            confirm = "Route the failed region's API traffic to the backup region?",
            run = function(ctx)
                local result =
                    dns.disable_region { failed = ctx.params.failed_region, backup = ctx.params.backup_region }
                ctx.state.dns_previous = ctx.state.dns_previous or result.previous
                ctx.state.dns_saved = result.saved or ctx.state.dns_saved
                if result.change then
                    atlas.log("dns: change %s is %s", result.change.Id, tostring(result.change.Status))
                end
            end,
            undo = function(ctx)
                dns.enable_region { region = ctx.params.failed_region, records = ctx.state.dns_previous }
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
                    delay = 15,
                }
            end,
        },
        {
            name = "report",
            run = function(ctx)
                local failed, backup = ctx.params.failed_region, ctx.params.backup_region
                if ctx.dry_run then
                    atlas.log("dry run: nothing was changed; the calls above are what a real run makes")
                    return
                end
                local served = dns.regions_served()
                local ids = {}
                for id in pairs(served) do
                    ids[#ids + 1] = id
                end
                table.sort(ids)
                local still = {}
                for _, id in ipairs(ids) do
                    atlas.log("api.atlas-crm.com [%s] -> %s", id, served[id])
                    if served[id] == failed then still[#still + 1] = id end
                end
                if #still > 0 then ctx.fail("records still resolve to %s: %s", failed, table.concat(still, ", ")) end
                local s = ecs.describe_service { region = backup, cluster = cluster(backup), service = service(backup) }
                atlas.log("%s now runs %d/%d tasks; %s is out of DNS", backup, s.runningCount, s.desiredCount, failed)
            end,
        },
    },
}
