-- Runbook "Initial deployment": terraform init, validate, plan and apply in
-- terraform_dir (through atlas.proc, never a shell), then the checks that the
-- deployment works: the three services run what they want, the regional,
-- global (api.) and CDN (cdn.) endpoints answer, and the hosted zone's name
-- servers are printed for the registrar.
-- --dry-run stops after the plan. Apply asks for confirmation after the plan
-- was shown. terraform missing is said before anything runs.
local atlas = require "atlas"
local ecs = require "atlas.ecs"
local http = require "atlas.http"
local dns = require "atlas.dns"
local aws = require "atlas.aws"
local sys = require "atlas.sys"
local terraform = require "atlas.terraform"
local env = require "atlas.env"

local function show_output(text)
    for line in (text or ""):gmatch("[^\n]+") do
        atlas.log("  %s", line)
    end
end

local function stops_in_dry_run(ctx)
    if ctx.dry_run then
        atlas.log("dry run: stops after the plan")
        return true
    end
end

return atlas.playbook {
    name = "initial_deploy",
    description = "Initial deployment: terraform init, validate, plan, apply (confirmed), then verify services, endpoints and name servers",
    lock = "atlas-crm-production",
    requires = { "terraform" },
    params = {
        terraform_dir = { type = "string", required = true, description = "the Terraform configuration's directory" },
        health_url = env.health_url_param(),
        api_url = {
            type = "string",
            default = "https://" .. env.API_NAME .. "/actuator/health",
            description = "the global endpoint's health URL",
        },
        cdn_url = { type = "string", default = "https://" .. env.CDN_NAME .. "/", description = "the CDN's URL" },
        stable_timeout = env.stable_timeout_param "the services",
        endpoint_timeout = env.endpoint_timeout_param("seconds per endpoint", 10),
    },
    validate = function(p)
        local st = sys.stat(p.terraform_dir)
        if not st or st.type ~= "directory" then
            return string.format("parameter terraform_dir: %s is not a directory", p.terraform_dir)
        end
    end,
    steps = {
        {
            name = "terraform init",
            run = function(ctx)
                -- Local only: providers and modules into .terraform.
                local r = terraform.run(ctx.params.terraform_dir, { "init", "-input=false", "-no-color" }, { mutates = false })
                show_output(r.stdout)
            end,
        },
        {
            name = "terraform validate",
            run = function(ctx)
                local r = terraform.run(ctx.params.terraform_dir, { "validate", "-no-color" }, { mutates = false })
                show_output(r.stdout)
            end,
        },
        {
            name = "terraform plan",
            run = function(ctx)
                local changes, output = terraform.plan(ctx.params.terraform_dir)
                show_output(output)
                ctx.state.changes = changes
                atlas.log("%s", terraform.plan_summary(output) or ("plan: " .. changes))
            end,
        },
        {
            name = "terraform apply",
            mutates = true,
            confirm = "Apply the plan shown above to production?",
            run = function(ctx)
                if stops_in_dry_run(ctx) then return end
                if ctx.state.changes == "none" then
                    atlas.log("the plan has no changes: nothing to apply")
                    return
                end
                local r = terraform.run(
                    ctx.params.terraform_dir,
                    { "apply", "-input=false", "-no-color", terraform.PLAN_FILE },
                    { mutates = true }
                )
                show_output(r.stdout)
            end,
        },
        {
            name = "verify the services",
            run = function(ctx)
                if stops_in_dry_run(ctx) then return end
                for _, region in ipairs(env.REGIONS) do
                    local services = ecs.wait_stable {
                        region = region,
                        cluster = env.cluster(region),
                        services = { env.service(region) },
                        timeout = ctx.params.stable_timeout,
                    }
                    local s = services[1]
                    if (s.runningCount or 0) == 0 then
                        ctx.fail("%s: %s runs no task", region, env.service(region))
                    end
                    atlas.log("%s: %s runs %d/%d", region, env.service(region), s.runningCount, s.desiredCount)
                end
            end,
        },
        {
            name = "verify the endpoints",
            run = function(ctx)
                if stops_in_dry_run(ctx) then return end
                local urls, names = {}, {}
                for _, region in ipairs(env.REGIONS) do
                    urls[#urls + 1] = (ctx.params.health_url:gsub("{region}", region))
                    names[#names + 1] = region
                end
                urls[#urls + 1], names[#names + 1] = ctx.params.api_url, "global"
                urls[#urls + 1], names[#names + 1] = ctx.params.cdn_url, "CDN"
                local probes = http.check_many(urls, { timeout = ctx.params.endpoint_timeout })
                local failed = {}
                for i, probe in ipairs(probes) do
                    atlas.log("%s: %s -> %s", names[i], urls[i], tostring(probe.detail))
                    if not probe.healthy then failed[#failed + 1] = names[i] .. " " .. urls[i] .. " -> " .. tostring(probe.detail) end
                end
                if #failed > 0 then ctx.fail("%d endpoint(s) not healthy: %s", #failed, table.concat(failed, "; ")) end
            end,
        },
        {
            name = "name servers",
            run = function(ctx)
                if stops_in_dry_run(ctx) then return end
                local zone = aws.call {
                    service = "route53",
                    action = "GetHostedZone",
                    region = "us-east-1",
                    params = { Id = dns.zone_id(env.ZONE) },
                }
                local servers = zone.DelegationSet and zone.DelegationSet.NameServers or {}
                if #servers == 0 then ctx.fail("the hosted zone %s has no delegation set", env.ZONE) end
                ctx.state.name_servers = servers
                atlas.log("point the registrar of %s at these name servers:", env.ZONE)
                for _, ns in ipairs(servers) do
                    atlas.log("  %s", ns)
                end
            end,
        },
    },
}
