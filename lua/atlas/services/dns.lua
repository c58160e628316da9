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
local route53 = require "atlas.services.route53"
local json = require "atlas.json"
local log = require "atlas.run.log"
local errors = require "atlas.errors"
local runtime = require "atlas.run.runtime"

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

local function decode_saved(text, where)
    local records, why = json.decode(text)
    if type(records) ~= "table" then
        errors.raise {
            kind = "dns",
            code = "SavedUnreadable",
            message = string.format("the saved records in %s are not readable: %s", where, why or "not a list"),
        }
    end
    return records
end

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
    return decode_saved(text, store:where(key)), store:where(key)
end

-- Merged with what is saved already (dns.merge_saved), never simply
-- overwritten: a second failover of an already disabled region must not
-- replace the way back with the records that point at the backup. The write
-- is conditional on the version read, so two writers cannot both win.
local function save_records(name, region, previous)
    local store = require("atlas.state").open()
    local key = saved_key(name, region)
    local text, version, code = store:get(key)
    if not text and code ~= "NotFound" then
        errors.raise { kind = "dns", code = "SavedUnreadable", message = "cannot read the saved records: " .. version }
    end
    local merged = M.merge_saved(text and decode_saved(text, store:where(key)), previous)
    local condition = text and { if_version = version } or { if_absent = true }
    local ok, err, put_code = store:put(key, json.encode(json.array(merged), { indent = 2 }), condition)
    if not ok then
        errors.raise {
            kind = "dns",
            code = put_code == "PreconditionFailed" and "SaveConflict" or "SaveFailed",
            message = put_code == "PreconditionFailed"
                    and ("the saved records in " .. store:where(key) .. " changed while this run saved them; run again")
                or ("cannot save the records to restore: " .. err),
        }
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
    -- An answer without a change id is not a change Route53 accepted.
    if not runtime.dry_run and not (info and info.Id) then
        errors.raise {
            kind = "dns",
            code = "NoChangeInfo",
            message = "route53 ChangeResourceRecordSets (us-east-1) answered without a change id; the records may not have changed",
        }
    end
    if wait ~= false and info and info.Id then
        return route53.wait_changed { Id = info.Id, timeout = 600 } or info
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

-- A list of records as a report shows them: "[eu-west-1] eu-west-1.atlas-crm.com, TTL 60, ...".
local function described(records)
    local out = {}
    for _, r in ipairs(records) do
        out[#out + 1] = string.format("[%s] %s", tostring(r.SetIdentifier), M.describe_record(r))
    end
    return out
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
    if not backup_check then
        -- A record without a health check keeps routing to the backup after it fails too.
        errors.raise {
            kind = "dns",
            code = "NoHealthCheck",
            message = string.format(
                "no Route53 health check checks %s; refusing to write records without one "
                    .. "(create it as in the reference environment, then run again)",
                M.regional_name(args.backup, args.zone)
            ),
        }
    end
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
    log.change("route53 " .. name .. " records", described(previous), described(changed))
    return result
end

-- dns.merge_saved(saved|nil, previous) -> the records to keep for the way back.
-- What points at the failed region now is the truth for its record; a saved
-- record stays only for a record that no longer points there (a failover
-- that half-happened and is run again).
function M.merge_saved(saved, previous)
    local out, seen = {}, {}
    for _, r in ipairs(previous) do
        out[#out + 1] = r
        seen[r.SetIdentifier] = true
    end
    for _, r in ipairs(saved or {}) do
        if not seen[r.SetIdentifier] then out[#out + 1] = r end
    end
    return out
end

-- A value as text that two equal records share: ids and names compared
-- without case and trailing dot, tables by their sorted fields.
local function canonical(v)
    if type(v) == "string" then return (v:gsub("%.$", "")) end
    if type(v) ~= "table" then return tostring(v) end
    local keys = {}
    for k in pairs(v) do
        keys[#keys + 1] = k
    end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    local parts = {}
    for _, k in ipairs(keys) do
        parts[#parts + 1] = (math.type(k) and "" or (tostring(k) .. "=")) .. canonical(v[k])
    end
    return "{" .. table.concat(parts, ",") .. "}"
end

local function field_text(record, field)
    local v = record[field]
    if v == nil then return "none" end
    if field == "ResourceRecords" then return record_value(record) or "none" end
    if type(v) == "table" then return canonical(v) end
    return tostring(v)
end

-- dns.record_differences(have, want) -> list of "TTL 300 (expected 60)", empty when equal
function M.record_differences(have, want)
    local out = {}
    for _, field in ipairs(RECORD_FIELDS) do
        if field ~= "Name" and field ~= "SetIdentifier" then
            local a, b = have[field], want[field]
            local same
            if field == "ResourceRecords" then
                same = record_value(have) == record_value(want)
            else
                same = canonical(a) == canonical(b)
            end
            if not same then
                out[#out + 1] =
                    string.format("%s %s (expected %s)", field, field_text(have, field), field_text(want, field))
            end
        end
    end
    return out
end

-- dns.describe_record(r) -> "eu-west-1.atlas-crm.com, TTL 60, ContinentCode=EU, health check abc"
function M.describe_record(r)
    local location = {}
    for _, k in ipairs { "ContinentCode", "CountryCode", "SubdivisionCode" } do
        if r.GeoLocation and r.GeoLocation[k] then location[#location + 1] = k .. "=" .. r.GeoLocation[k] end
    end
    return string.format(
        "%s, TTL %s%s, health check %s",
        tostring(record_value(r)),
        tostring(r.TTL),
        #location > 0 and (", " .. table.concat(location, " ")) or "",
        tostring(r.HealthCheckId or "none")
    )
end

-- The region a record's value names: "us-east-1.atlas-crm.com" -> "us-east-1".
local function target_region(record, zone)
    local value = record_value(record) or ""
    local suffix = "." .. (zone or M.ZONE)
    if value:sub(-#suffix) == suffix then return value:sub(1, -#suffix - 1) end
    return nil
end

-- dns.layout_records(region, zone, name) -> the records of name that serve
-- region in the reference environment (atlas.env.api_layout), each with
-- the region's health check; raises when that health check does not exist.
function M.layout_records(region, zone, name)
    local env = require "atlas.env"
    local check = M.health_check_id(region, zone)
    if not check then
        errors.raise {
            kind = "dns",
            code = "NoHealthCheck",
            message = "no Route53 health check checks "
                .. M.regional_name(region, zone)
                .. "; cannot rebuild its records",
        }
    end
    local out = {}
    for _, entry in ipairs(env.api_layout()) do
        if entry.region == region then
            out[#out + 1] = {
                Name = fqdn(name or M.API_NAME),
                Type = "CNAME",
                SetIdentifier = entry.set_identifier,
                GeoLocation = copy(entry.location),
                TTL = env.API_TTL,
                ResourceRecords = { { Value = M.regional_name(region, zone) } },
                HealthCheckId = check,
            }
        end
    end
    return out
end

local function by_identifier(records)
    local out = {}
    for _, r in ipairs(records) do
        out[r.SetIdentifier] = r
    end
    return out
end

-- dns.plan_enable{region=, backup=?, records=?, from_layout=, zone=, name=}
--   -> {restore = records to write, already = records already back, changed = differences,
--       source = "saved"|"given"|"layout", saved = where the saved records are, zone_id=}
-- Reads only. A saved record is restored only while its record is still
-- what the failover made of it: pointed at the region that took the
-- traffic (backup, when given), with that region's health check and
-- everything else as it was. Anything else someone changed since is in
-- `changed`, one line per record, and enable_region refuses.
function M.plan_enable(args)
    local name = args.name or M.API_NAME
    local records, saved_at, source = args.records, nil, "given"
    if not records then
        records, saved_at = M.saved_records(name, args.region)
        source = "saved"
    end
    if not records and args.from_layout then
        records, source = M.layout_records(args.region, args.zone, name), "layout"
    end
    if not records then
        errors.raise {
            kind = "dns",
            code = "NothingSaved",
            message = string.format(
                "no saved records for %s in %s, so nothing to restore (was it disabled by atlas-run, "
                    .. "on this machine?); from_layout=true rebuilds them from the reference layout",
                args.region,
                saved_at
            ),
        }
    end
    local zone_id, current = M.records { zone = args.zone, name = name }
    local now = by_identifier(current)
    local plan = { restore = {}, already = {}, changed = {}, source = source, saved = saved_at, zone_id = zone_id }
    local checks = {}
    local function check_of(region)
        if checks[region] == nil then checks[region] = M.health_check_id(region, args.zone) or false end
        return checks[region] or nil
    end
    for _, want in ipairs(records) do
        local id = want.SetIdentifier
        local have = now[id]
        local label = string.format("%s [%s]", name, tostring(id))
        if have and #M.record_differences(have, want) == 0 then
            plan.already[#plan.already + 1] = want
        elseif source == "layout" then
            plan.restore[#plan.restore + 1] = want
        elseif not have then
            plan.changed[#plan.changed + 1] = label .. " no longer exists"
        else
            local target = target_region(have, args.zone)
            if target == nil or target == args.region then
                plan.changed[#plan.changed + 1] = string.format(
                    "%s points at %s, not at the region that took the traffic",
                    label,
                    tostring(record_value(have))
                )
            elseif args.backup and target ~= args.backup then
                plan.changed[#plan.changed + 1] = string.format(
                    "%s points at %s, but the failover pointed it at %s",
                    label,
                    tostring(record_value(have)),
                    M.regional_name(args.backup, args.zone)
                )
            else
                local expected = M.plan_disable({ want }, args.region, target, check_of(target), args.zone)[1]
                local diff = expected and M.record_differences(have, expected) or { "it was never changed" }
                if #diff > 0 then
                    plan.changed[#plan.changed + 1] = label .. ": " .. table.concat(diff, ", ") .. " since the failover"
                else
                    plan.restore[#plan.restore + 1] = want
                end
            end
        end
    end
    return plan
end

-- dns.enable_region{region=, backup=?, records=?, from_layout=, keep_saved=, zone=, name=, wait=true}
--   -> {restored=, already=, change=, source=}
-- Puts back the records saved by disable_region (or the ones given, or with
-- from_layout=true and nothing saved, the reference layout's), after
-- plan_enable found them still as the failover left them. Raises, naming
-- each difference, when someone changed them since. keep_saved leaves the
-- saved records for the caller to forget once it verified the result, so
-- that a run stopped after the change still knows what it restored.
function M.enable_region(args)
    local name = args.name or M.API_NAME
    local plan = M.plan_enable(args)
    if #plan.changed > 0 then
        errors.raise {
            kind = "dns",
            code = "RecordsChanged",
            message = string.format(
                "not restoring %s: its records changed since the failover: %s. Fix them by hand, or remove %s "
                    .. "and rebuild them with from_layout=true",
                args.region,
                table.concat(plan.changed, "; "),
                tostring(plan.saved or "the saved records")
            ),
        }
    end
    local restore = {}
    for _, r in ipairs(plan.restore) do
        restore[#restore + 1] = change_record(r)
    end
    local change
    if #restore > 0 then change = apply(plan.zone_id, restore, "atlas-run: enable " .. args.region, args.wait) end
    if not runtime.dry_run and plan.source == "saved" and not args.keep_saved then forget_saved(name, args.region) end
    return { restored = restore, already = plan.already, change = change, source = plan.source }
end

-- dns.forget_saved{region=, name=}: drops the saved records of a region that is enabled again.
function M.forget_saved(args)
    if not runtime.dry_run then forget_saved(args.name or M.API_NAME, args.region) end
end

-- dns.health_check(region) -> the Route53 health check (as ListHealthChecks
-- gives it: Id, HealthCheckConfig) that checks R.atlas-crm.com, or nil. Found
-- by what it checks, not through the region's record: after a failover that
-- record carries the backup's check.
function M.health_check(region, zone)
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
            if config.FullyQualifiedDomainName == target then return hc end
        end
        marker = resp.IsTruncated and resp.NextMarker or nil
    until not marker
    return nil
end

-- dns.health_check_id(region) -> the id of the health check that checks R.atlas-crm.com, or nil
function M.health_check_id(region, zone)
    local hc = M.health_check(region, zone)
    return hc and hc.Id
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
