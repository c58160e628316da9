-- The state of the reference environment that a failover changes, read
-- through AWS operations only. The mock world reads itself with it
-- (w:snapshot()) and the fidelity test reads moto with it, so the two
-- results compare with one deep equality.
--
-- read(call) where call(service, action, region, params) -> response ->
-- {
--   ecs = { [region] = { desired=, running=, deployments=, status= } | { missing=true } },
--   api_records = { { set_identifier=, location="EU"|"NA"|"AS"|"*", value="us-east-1.atlas-crm.com",
--                     ttl=60, health_check="us-east-1.atlas-crm.com" (the checked FQDN) }, ... } sorted,
--   rds = { [identifier] = { region=, status=, role="primary"|"replica"|"standalone", source=? } },
-- }
-- Health checks are named by the domain they check, not by id: ids differ
-- between worlds, what they check does not.
local util = require "atlas.mock.util"

local M = {}

local function ecs_state(call, region)
    local n = require("atlas.mock.ecs").names(region)
    local ok, response =
        pcall(call, "ecs", "DescribeServices", region, { cluster = n.cluster, services = { n.service } })
    local svc = ok and response.services and response.services[1]
    if not svc then return { missing = true } end
    return {
        desired = svc.desiredCount,
        running = svc.runningCount,
        deployments = #(svc.deployments or {}),
        status = svc.status,
    }
end

local function find_zone_id(call)
    local response = call("route53", "ListHostedZonesByName", "us-east-1", { DNSName = util.ZONE_NAME })
    for _, zone in ipairs(response.HostedZones or {}) do
        if zone.Name == util.ZONE_NAME then return zone.Id end
    end
end

local function api_records(call)
    local zone_id = find_zone_id(call)
    if not zone_id then return {} end
    local checked = {}
    local function health_check_domain(id)
        if id == nil then return nil end
        if checked[id] == nil then
            local ok, response = pcall(call, "route53", "GetHealthCheck", "us-east-1", { HealthCheckId = id })
            checked[id] = ok and response.HealthCheck.HealthCheckConfig.FullyQualifiedDomainName or ("missing:" .. id)
        end
        return checked[id]
    end
    local out = {}
    local params = { HostedZoneId = zone_id, StartRecordName = util.API_NAME }
    repeat
        local response = call("route53", "ListResourceRecordSets", "us-east-1", params)
        local past = false
        for _, r in ipairs(response.ResourceRecordSets or {}) do
            if r.Name == util.API_NAME then
                local geo = r.GeoLocation or {}
                out[#out + 1] = {
                    set_identifier = r.SetIdentifier,
                    type = r.Type,
                    location = geo.ContinentCode or geo.CountryCode or geo.SubdivisionCode,
                    value = r.ResourceRecords and r.ResourceRecords[1] and (r.ResourceRecords[1].Value
                        :lower()
                        :gsub("%.$", "")),
                    ttl = r.TTL,
                    health_check = health_check_domain(r.HealthCheckId),
                }
            else
                past = true
            end
        end
        params = {
            HostedZoneId = zone_id,
            StartRecordName = response.NextRecordName,
            StartRecordType = response.NextRecordType,
            StartRecordIdentifier = response.NextRecordIdentifier,
        }
    until past or not response.IsTruncated
    table.sort(out, function(a, b) return (a.set_identifier or "") < (b.set_identifier or "") end)
    return out
end

local function rds_state(call, out)
    for _, region in ipairs(util.REGIONS) do
        local params = {}
        repeat
            local response = call("rds", "DescribeDBInstances", region, params)
            for _, db in ipairs(response.DBInstances or {}) do
                local role = "standalone"
                if db.ReadReplicaSourceDBInstanceIdentifier then
                    role = "replica"
                elseif db.ReadReplicaDBInstanceIdentifiers and #db.ReadReplicaDBInstanceIdentifiers > 0 then
                    role = "primary"
                end
                out[db.DBInstanceIdentifier] = {
                    region = region,
                    status = db.DBInstanceStatus,
                    role = role,
                    source = db.ReadReplicaSourceDBInstanceIdentifier,
                }
            end
            params = { Marker = response.Marker }
        until not response.Marker
    end
    return out
end

function M.read(call)
    local snapshot = { ecs = {}, rds = {} }
    for _, region in ipairs(util.REGIONS) do
        snapshot.ecs[region] = ecs_state(call, region)
    end
    snapshot.api_records = api_records(call)
    rds_state(call, snapshot.rds)
    return snapshot
end

return M
