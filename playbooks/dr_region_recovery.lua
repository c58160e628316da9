-- Runbook "Recovery" after a region outage: the way back from
-- dr_region_outage. Confirms the recovered region is healthy again, puts
-- its API records back exactly as they were before the failover, and
-- returns the backup region to its normal size.
local atlas = require "atlas"
local ecs = require "atlas.ecs"
local http = require "atlas.http"
local dns = require "atlas.dns"

local env = require "atlas.env"

local cluster, service = env.cluster, env.service

local function describe(region)
    return ecs.describe_service { region = region, cluster = cluster(region), service = service(region) }
end

return atlas.playbook {
    name = "dr_region_recovery",
    description = "Bring a failed-over region back: verify it, restore its DNS records, scale the backup down",
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
        health_url = env.health_url_param(),
        stable_timeout = env.stable_timeout_param("each region"),
    },
    validate = function(p)
        if p.recovered_region == p.backup_region then return "recovered_region and backup_region must differ" end
    end,
    steps = {
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
                    ecs.wait_stable {
                        region = region,
                        cluster = cluster(region),
                        services = { service(region) },
                        timeout = ctx.params.stable_timeout,
                    }
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
            name = "restore DNS records",
            mutates = true,
            confirm = "Send the recovered region's API traffic back to it?",
            run = function(ctx)
                local region = ctx.params.recovered_region
                local served = dns.regions_served()
                local moved = false
                for id, target in pairs(served) do
                    if id == region and target ~= region then moved = true end
                end
                if not moved then
                    atlas.log("dns: %s already serves its own record; nothing to restore", region)
                    return
                end
                local result = dns.enable_region { region = region }
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
                local s = describe(ctx.params.backup_region)
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
