-- DNS changes for failover: take a region out of the geo-routed API name and
-- put it back exactly as it was.
--
-- The global API name (api.atlas-crm.com) has one geolocation CNAME per
-- region plus a default, each pointing at a regional name R.atlas-crm.com.
-- Disabling region F for backup B rewrites every record that points at F so
-- that it points at B (with B's health check); every other record is left
-- alone. The records as they were are returned and saved in the run's state
-- store (atlas.state), so enabling F again, from any machine that shares the
-- store, restores them to the letter: TTL, health check, location and all.
local route53 = require "atlas.route53"
local json = require "atlas.json"
local log = require "atlas.log"
local errors = require "atlas.errors"
local runtime = require "atlas.runtime"

local M = {}

M.ZONE = require("atlas.env").ZONE
M.API_NAME = require("atlas.env").API_NAME

local function fqdn(name) return (name:gsub("%.$", "")) .. "." end

-- dns.regional_name("eu-west-1") -> "eu-west-1.atlas-crm.com"
function M.regional_name(region, zone) return region .. "." .. (zone or M.ZONE) end

local function record_value(record)
    local values = record.ResourceRecords or {}
    return values[1] and values[1].Value and (values[1].Value:gsub("%.$", "")) or nil
end
M.record_value = record_value

-- dns.zone_id(zone) -> the hosted zone id, or raises a "dns" error
function M.zone_id(zone)
    local found = route53.find_zone { name = zone or M.ZONE }
    if not found then
        errors.raise { kind = "dns", code = "NoSuchHostedZone", message = "no public hosted zone " .. (zone or M.ZONE) }
    end
    return found.Id
end

-- dns.records{zone=, name=} -> zone id, the routing records of name (the ones with a SetIdentifier)
function M.records(args)
    local zone_id = args.zone_id or M.zone_id(args.zone)
    local name = fqdn(args.name or M.API_NAME)
    local all = route53.list_resource_record_sets { HostedZoneId = zone_id, StartRecordName = name }
    local records = {}
    for _, r in ipairs(all) do
        if fqdn(r.Name) == name and r.SetIdentifier then records[#records + 1] = r end
    end
    return zone_id, records
end

local function copy(value)
    if type(value) ~= "table" then return value end
    local out = {}
    for k, v in pairs(value) do
        out[k] = copy(v)
    end
    return setmetatable(out, getmetatable(value))
end

-- Only the fields ChangeResourceRecordSets accepts for a record.
local RECORD_FIELDS = {
    "Name",
    "Type",
    "SetIdentifier",
    "Weight",
    "Region",
    "GeoLocation",
    "Failover",
    "MultiValueAnswer",
    "TTL",
    "ResourceRecords",
    "AliasTarget",
    "HealthCheckId",
    "TrafficPolicyInstanceId",
    "CidrRoutingConfig",
    "GeoProximityLocation",
}

local function change_record(record)
    local out = {}
    for _, field in ipairs(RECORD_FIELDS) do
        if record[field] ~= nil then out[field] = copy(record[field]) end
    end
    return out
end

-- The saved records live in the run's state store (atlas.state), so that
-- any machine that shares it can put a region back.
local function saved_key(name, region) return string.format("dns/%s.%s.json", (name:gsub("%.$", "")), region) end

-- dns.saved_records(name, region) -> records saved by disable_region, or nil
-- and where they were looked for; raises a "dns" error when the store fails.
function M.saved_records(name, region)
    local store = require("atlas.state").open()
    local key = saved_key(name or M.API_NAME, region)
    local text, err, code = store:get(key)
    if not text then
        if code == "NotFound" then return nil, store:where(key) end
        errors.raise { kind = "dns", code = "SavedUnreadable", message = "cannot read the saved records: " .. err }
    end
    return json.decode(text), store:where(key)
end

-- Keeps the first saving: a second failover of an already disabled region
-- must not overwrite the way back with the records that point at the backup.
local function save_records(name, region, records)
    local store = require("atlas.state").open()
    local key = saved_key(name, region)
    local ok, err, code = store:put(key, json.encode(json.array(records), { indent = 2 }), { if_absent = true })
    if not ok and code ~= "PreconditionFailed" then
        errors.raise { kind = "dns", code = "SaveFailed", message = "cannot save the records to restore: " .. err }
    end
    return store:where(key)
end

local function forget_saved(name, region)
    local store = require("atlas.state").open()
    local ok, err = store:delete(saved_key(name, region))
    if not ok then log.warn("dns: cannot remove the saved records of %s: %s", region, err) end
end

local function apply(zone_id, records, comment, wait)
    local changes = {}
    for _, r in ipairs(records) do
        changes[#changes + 1] = { Action = "UPSERT", ResourceRecordSet = change_record(r) }
    end
    local resp = route53.change_resource_record_sets {
        idempotent = true, -- only UPSERTs: the same batch twice leaves the same records
        HostedZoneId = zone_id,
        ChangeBatch = { Comment = comment, Changes = changes },
    }
    local info = resp.ChangeInfo
    if wait ~= false and info and info.Id then
        return route53.wait_changed { Id = info.Id, delay = 10, timeout = 600 } or info
    end
    return info
end

-- dns.plan_disable(records, failed, backup, backup_check, zone) -> changed records (new values), previous records
-- backup_check is the id of the health check that checks the backup region.
function M.plan_disable(records, failed, backup, backup_check, zone)
    local failed_target = M.regional_name(failed, zone)
    local backup_target = M.regional_name(backup, zone)
    local changed, previous = {}, {}
    for _, r in ipairs(records) do
        if record_value(r) == failed_target then
            previous[#previous + 1] = copy(r)
            local new = change_record(r)
            new.ResourceRecords = { { Value = backup_target } }
            new.HealthCheckId = backup_check
            changed[#changed + 1] = new
        end
    end
    return changed, previous
end

-- dns.disable_region{failed=, backup=, zone=, name=, wait=true}
--   -> {changed = {...}, previous = {...}, change = ChangeInfo|nil, saved = path}
-- Idempotent: when no record points at the failed region, nothing changes.
function M.disable_region(args)
    assert(args.failed and args.backup, "dns.disable_region needs failed and backup")
    if args.failed == args.backup then
        errors.raise {
            kind = "dns",
            code = "InvalidArgument",
            message = "the backup region must differ from the failed one",
        }
    end
    local name = args.name or M.API_NAME
    local zone_id, records = M.records { zone = args.zone, name = name }
    if #records == 0 then
        errors.raise { kind = "dns", code = "NoRecords", message = "no routing records for " .. name }
    end
    local backup_check = M.health_check_id(args.backup, args.zone)
    if not backup_check then log.warn("dns: no health check found for %s; its records will have none", args.backup) end
    local changed, previous = M.plan_disable(records, args.failed, args.backup, backup_check, args.zone)
    local result = { changed = changed, previous = previous, zone_id = zone_id }
    if #changed == 0 then
        log.info("dns: no record of %s points at %s; nothing to change", name, args.failed)
        return result
    end
    for _, r in ipairs(changed) do
        log.info("dns: %s %s -> %s", name, r.SetIdentifier, record_value(r))
    end
    if not runtime.dry_run then
        -- Saved before the change: if the change half-happens, the way back is known.
        result.saved = save_records(name, args.failed, previous)
    end
    result.change = apply(
        zone_id,
        changed,
        string.format("atlas-run: disable %s, serve from %s", args.failed, args.backup),
        args.wait
    )
    return result
end

-- dns.enable_region{region=, records=?, zone=, name=, wait=true} -> {restored=, change=}
-- Puts back the records saved by disable_region (or the ones given).
function M.enable_region(args)
    local name = args.name or M.API_NAME
    local records = args.records
    if not records then
        local path
        records, path = M.saved_records(name, args.region)
        if not records then
            errors.raise {
                kind = "dns",
                code = "NothingSaved",
                message = string.format(
                    "no saved records for %s in %s (was it disabled by atlas-run?)",
                    args.region,
                    path
                ),
            }
        end
    end
    local zone_id = M.zone_id(args.zone)
    local restore = {}
    for _, r in ipairs(records) do
        restore[#restore + 1] = change_record(r)
    end
    local change = apply(zone_id, restore, "atlas-run: enable " .. args.region, args.wait)
    if not runtime.dry_run then forget_saved(name, args.region) end
    return { restored = restore, change = change }
end

-- dns.health_check_id(region) -> the id of the Route53 health check that
-- checks R.atlas-crm.com, or nil. Found by what it checks, not through the
-- region's record: after a failover that record carries the backup's check.
function M.health_check_id(region, zone)
    local target = M.regional_name(region, zone)
    local marker
    repeat
        local resp = require("atlas.aws").call {
            service = "route53",
            action = "ListHealthChecks",
            region = "us-east-1",
            params = { Marker = marker },
        }
        for _, hc in ipairs(resp.HealthChecks or {}) do
            local config = hc.HealthCheckConfig or {}
            if config.FullyQualifiedDomainName == target then return hc.Id end
        end
        marker = resp.IsTruncated and resp.NextMarker or nil
    until not marker
    return nil
end

-- dns.failing_checkers(GetHealthCheckStatus response) -> failing, total
-- How many of Route53's checkers report the endpoint failing.
function M.failing_checkers(status)
    local failing, total = 0, 0
    for _, o in ipairs(status.HealthCheckObservations or {}) do
        total = total + 1
        local report = o.StatusReport and o.StatusReport.Status or ""
        if not report:match("^Success") then failing = failing + 1 end
    end
    return failing, total
end

-- dns.regions_served{zone=, name=} -> map SetIdentifier -> target region name
-- ("eu-west-1.atlas-crm.com" -> "eu-west-1"), to verify a failover.
function M.regions_served(args)
    local _, records = M.records(args or {})
    local served = {}
    for _, r in ipairs(records) do
        local value = record_value(r) or ""
        served[r.SetIdentifier] = value:match("^([%w%-]+)%.") or value
    end
    return served
end

return M
