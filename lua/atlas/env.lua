-- The reference environment of Atlas CRM (shared/reference-environment.md):
-- every name a playbook, the DNS module and the mock world agree on, in one
-- place, so a renamed resource is one edit and the mock cannot drift.
local M = {}

M.REGIONS = { "eu-west-1", "us-east-1", "ap-southeast-1" }
M.PRIMARY_REGION = "eu-west-1"
M.DEFAULT_BACKUP_REGION = "us-east-1"
M.SECONDARY_REGIONS = { "us-east-1", "ap-southeast-1" }

M.ZONE = "atlas-crm.com"
M.API_NAME = "api.atlas-crm.com"
M.CDN_NAME = "cdn.atlas-crm.com"
M.ALERT_EMAIL = "ops@atlas-crm.com"

M.NORMAL_DESIRED_COUNT = 2
M.MAX_DESIRED_COUNT = 10

M.DB_NAME = "atlas"
M.DB_USER = "atlas_admin"
M.REPLICA = "atlas-production-db-eu-west-1-replica"
M.SNAPSHOTS = { "atlas-production-snapshot-latest", "atlas-production-snapshot-before-migration" }
M.PASSWORD_SECRET = "atlas-db-master-password"
M.PUBLICATION = "atlas_publication"
M.SUBSCRIPTION = "atlas_subscription_from_eu"
M.GLOBAL_TABLES = { "organization", "app_user", "user_preferences", "referential", "system_config" }
M.FAILOVER_LAMBDA = "atlas-production-failover-orchestrator"
M.FAILOVER_LAMBDA_LOG_GROUP = "/aws/lambda/atlas-production-failover-orchestrator"
-- The automatic-failover chain: a Route53 health check, its alarm (in
-- us-east-1, where Route53 publishes its metrics), the EventBridge rule that
-- matches the alarm's state change, and the Lambda the rule targets.
M.FAILOVER_REGION = "eu-west-1"
M.HEALTH_ALARM_REGION = "us-east-1"
M.FAILOVER_RULE = "atlas-production-failover-trigger"
function M.health_alarm(region) return "atlas-production-health-" .. region end
-- The region that takes a failed region's traffic: the preferred backup
-- (by default us-east-1), or, when that is the failed region, the first
-- other region.
function M.backup_for(region, preferred)
    preferred = preferred or M.DEFAULT_BACKUP_REGION
    if region ~= preferred then return preferred end
    for _, other in ipairs(M.REGIONS) do
        if other ~= region then return other end
    end
end
-- Application Auto Scaling's name for a region's service.
function M.scalable_target(region) return "service/" .. M.cluster(region) .. "/" .. M.service(region) end
-- Alert thresholds (reference-environment.md, "Alert thresholds").
M.REPLICATION_LAG_CRITICAL_S = 10
M.ALB_5XX_CRITICAL_PERCENT = 5
M.LATENCY_WARNING_MS = 200
M.DB_CPU_WARNING_PERCENT = 80
M.METRIC_NAMESPACE = "AtlasCRM/Production"

function M.cluster(region) return "atlas-crm-production-cluster-" .. region end
function M.service(region) return "atlas-crm-production-service-" .. region end
function M.task_family(region) return "atlas-crm-production-" .. region end
function M.log_group(region) return "/ecs/atlas-crm-production-" .. region end
function M.db_instance(region) return "atlas-production-db-" .. region end
function M.alb_name(region) return "atlas-crm-production-alb-" .. region end
function M.alb_dns_name(region) return M.alb_name(region) .. "." .. region .. ".elb.amazonaws.com" end
-- R.atlas-crm.com: the regional endpoint every geo record points at.
function M.regional_name(region) return region .. "." .. M.ZONE end
function M.health_url(region) return "https://" .. M.regional_name(region) .. "/actuator/health" end

-- api.atlas-crm.com: one geolocation CNAME per region (SetIdentifier = the
-- region, value R.atlas-crm.com, that region's health check) and the
-- default location ("*"), all with this TTL.
M.API_CONTINENT = { ["eu-west-1"] = "EU", ["us-east-1"] = "NA", ["ap-southeast-1"] = "AS" }
M.API_DEFAULT_REGION = "us-east-1"
M.API_TTL = 60

-- env.api_layout() -> { {set_identifier=, region=, location=GeoLocation}, ... }
-- the records of the global API name as the reference environment has them
function M.api_layout()
    local out = {}
    for _, region in ipairs(M.REGIONS) do
        out[#out + 1] =
            { set_identifier = region, region = region, location = { ContinentCode = M.API_CONTINENT[region] } }
    end
    out[#out + 1] = { set_identifier = "default", region = M.API_DEFAULT_REGION, location = { CountryCode = "*" } }
    return out
end

-- The default of the playbooks' health_url parameter.
M.HEALTH_URL_TEMPLATE = "https://{region}." .. M.ZONE .. "/actuator/health"

-- Parameter declarations several playbooks share. Each call returns a
-- fresh table, since declaring a parameter records its name in it.
function M.health_url_param()
    return {
        type = "string",
        default = M.HEALTH_URL_TEMPLATE,
        pattern = "{region}",
        description = "health endpoint template; {region} is replaced",
    }
end

-- The regions a diagnostic looks at: all three by default, never none.
function M.regions_param(what)
    return {
        type = "list",
        default = table.concat(M.REGIONS, ","),
        choices = M.REGIONS,
        min = 1,
        description = what or "regions to check",
    }
end

-- The secret a playbook reads the RDS master password from, for targets it
-- is not given a conninfo for.
function M.password_secret_param()
    return {
        type = "string",
        default = M.PASSWORD_SECRET,
        description = "Secrets Manager secret holding the master password (RDS endpoints only)",
    }
end

-- How long one health probe may take: a probe needs a moment, and one
-- longer than a minute holds up the run instead of finding a fault.
function M.endpoint_timeout_param(description, default)
    return { type = "number", default = default or 5, min = 0.1, max = 60, description = description }
end

function M.stable_timeout_param(what)
    return {
        type = "integer",
        default = 900,
        min = 60,
        description = "seconds to wait for " .. what .. " to become stable",
    }
end

return M
