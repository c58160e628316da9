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
-- bad request, a name that does not resolve, TLS) says nothing about the
-- region: it is "unknown", never "DOWN", or a broken laptop profile or
-- resolver would fail over a healthy region. Which transport failures point
-- at the far side is atlas.http's rule (http.far_side).
local function region_side_failure(err)
    if errors.is(err, "interrupted") then error(err, 0) end
    if errors.is(err, "aws") and err.status then return err.status >= 500 end
    return http.far_side(err)
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
    local healthy, detail, err = http.check(url, { timeout = 5 })
    if err and not region_side_failure(err) then
        return nil, string.format("cannot probe %s from here: %s", url, tostring(detail))
    end
    return healthy, string.format("%s -> %s", url, tostring(detail))
end

-- probe_region(region, health_url) -> { {name, healthy|false|nil, detail}, ... }, logged
local function probe_region(region, health_url)
    local url = health_url:gsub("{region}", region)
    local list = {
        { "ECS service", ecs_signal(region) },
        { "Route53 health check", health_check_signal(region) },
        { "health endpoint", endpoint_signal(url) },
    }
    for _, s in ipairs(list) do
        atlas.log("%s %s: %s (%s)", region, s[1], s[2] == nil and "unknown" or s[2] and "healthy" or "DOWN", s[3])
    end
    return list
end

local function describe(region)
    return ecs.describe_service { region = region, cluster = cluster(region), service = service(region) }
end

-- What a drill's recovery time holds beyond the run: Route53 noticed the
-- outage only after interval x threshold seconds of failed checks, and
-- clients keep the old answer for up to the records' TTL after the switch.
local function record_unseen_recovery(ctx, previous)
    local hc = dns.health_check(ctx.params.failed_region)
    local config = hc and hc.HealthCheckConfig
    if config and config.RequestInterval and config.FailureThreshold then
        ctx.recovery_part {
            name = "Route53 detection",
            seconds = config.RequestInterval * config.FailureThreshold,
            detail = string.format(
                "health check %s: %d s interval x %d failures",
                hc.Id,
                config.RequestInterval,
                config.FailureThreshold
            ),
            before_run = true,
        }
    end
    local ttl = 0
    for _, r in ipairs(previous or {}) do
        ttl = math.max(ttl, r.TTL or 0)
    end
    if ttl > 0 then
        ctx.recovery_part { name = "DNS TTL", seconds = ttl, detail = string.format("records of %s: TTL %d s", dns.API_NAME, ttl) }
    end
end

-- The task count DNS waits for: min_backup_tasks, by default all of desired_count.
local function capacity_needed(p) return p.min_backup_tasks or p.desired_count end

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
        min_backup_tasks = {
            type = "integer",
            min = 1,
            max = 10,
            description = "running backup tasks required before DNS moves (default: desired_count, all of them)",
        },
        force_backup = {
            type = "boolean",
            default = false,
            description = "fail over even though the backup region does not look healthy",
        },
        health_url = env.health_url_param(),
        stable_timeout = env.stable_timeout_param("the backup region"),
    },
    validate = function(p)
        if p.failed_region == p.backup_region then
            return "failed_region and backup_region must differ (both are " .. p.failed_region .. ")"
        end
        if p.min_backup_tasks and p.min_backup_tasks > p.desired_count then
            return string.format(
                "min_backup_tasks (%d) cannot exceed desired_count (%d)",
                p.min_backup_tasks,
                p.desired_count
            )
        end
    end,
    steps = {
        {
            name = "verify failed region is down",
            -- Checked again on --resume: the region may have come back since.
            check = function(ctx, step) return step.run(ctx) end,
            run = function(ctx)
                local region = ctx.params.failed_region
                local signals = probe_region(region, ctx.params.health_url)
                local down, known = 0, 0
                for _, s in ipairs(signals) do
                    if s[2] ~= nil then
                        known = known + 1
                        if not s[2] then down = down + 1 end
                    end
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
            -- Before anything changes: moving the failed region's clients onto a
            -- backup that is failing too takes both regions down.
            name = "verify backup region is healthy",
            run = function(ctx)
                local region = ctx.params.backup_region
                local bad = {}
                for _, s in ipairs(probe_region(region, ctx.params.health_url)) do
                    if s[2] ~= true then
                        bad[#bad + 1] = string.format("%s %s (%s)", s[1], s[2] == nil and "unknown" or "DOWN", s[3])
                    end
                end
                if #bad == 0 then return end
                if ctx.params.force_backup then
                    atlas.warn(
                        "backup region %s is not verified healthy, failing over anyway: force_backup=true",
                        region
                    )
                    return
                end
                ctx.fail(
                    "backup region %s is not healthy: %s. Nothing was changed. Fix %s first, choose another "
                        .. "backup_region, or use force_backup=true if you know it can take the traffic",
                    region,
                    table.concat(bad, "; "),
                    region
                )
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
            -- DNS moves the failed region's clients at once: the backup must be
            -- able to take them before, or its own clients go down too.
            name = "wait for backup capacity",
            run = function(ctx)
                local region = ctx.params.backup_region
                ecs.wait_running {
                    region = region,
                    cluster = cluster(region),
                    service = service(region),
                    count = capacity_needed(ctx.params),
                    timeout = ctx.params.stable_timeout,
                }
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
                record_unseen_recovery(ctx, ctx.state.dns_previous)
            end,
            undo = function(ctx)
                dns.enable_region {
                    region = ctx.params.failed_region,
                    backup = ctx.params.backup_region,
                    records = ctx.state.dns_previous,
                }
            end,
        },
        {
            -- Recovered: the backup runs stable and DNS sends the clients there.
            name = "wait for backup region to be stable",
            recovery_point = true,
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
            -- Verified, not assumed: a change that silently did not happen fails here.
            name = "report",
            run = function(ctx)
                local failed, backup = ctx.params.failed_region, ctx.params.backup_region
                if ctx.dry_run then
                    atlas.log("dry run: nothing was changed; the calls above are what a real run makes")
                    return
                end
                local _, records = dns.records {}
                if #records == 0 then
                    ctx.fail("no routing records found for %s; cannot verify the failover", dns.API_NAME)
                end
                local backup_check = dns.health_check_id(backup)
                local still = {}
                for _, r in ipairs(records) do
                    local id, value = r.SetIdentifier, dns.record_value(r)
                    atlas.log("%s [%s] -> %s", dns.API_NAME, id, tostring(value))
                    if value == dns.regional_name(failed) then still[#still + 1] = id end
                    if value == dns.regional_name(backup) and r.HealthCheckId ~= backup_check then
                        ctx.fail("%s [%s] points at %s without its health check", dns.API_NAME, id, backup)
                    end
                end
                if #still > 0 then ctx.fail("records still resolve to %s: %s", failed, table.concat(still, ", ")) end
                local s = describe(backup)
                if not s or s.desiredCount < ctx.params.desired_count or s.runningCount < ctx.params.desired_count then
                    ctx.fail(
                        "%s runs %d/%d tasks, below the desired count %d: it may not carry %s's clients",
                        backup,
                        s and s.runningCount or 0,
                        s and s.desiredCount or 0,
                        ctx.params.desired_count,
                        failed
                    )
                end
                atlas.log("%s now runs %d/%d tasks; %s is out of DNS", backup, s.runningCount, s.desiredCount, failed)
            end,
        },
    },
}
