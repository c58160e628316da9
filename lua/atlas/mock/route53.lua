-- Route53 in the mock world: the public zone atlas-crm.com with the regional
-- CNAMEs and the api.atlas-crm.com geolocation records, the three health
-- checks, and changes that go PENDING -> INSYNC after the world's route53_insync latency.
--
-- Health follows the region's endpoint: each checker reports what it sees
-- now; the aggregate status (what DNS answers and CloudWatch use) flips only
-- after RequestInterval x FailureThreshold seconds of a steady new state.
local util = require "atlas.mock.util"

local M = {}

local ZONE_ID = "Z04417222ATLASCRM7KQ"
local ZONE = util.ZONE_NAME
local CHECKER_REGIONS = {
    "ap-northeast-1",
    "ap-southeast-1",
    "ap-southeast-2",
    "eu-west-1",
    "sa-east-1",
    "us-east-1",
    "us-west-1",
    "us-west-2",
}
local CONTINENTS = { AF = true, AN = true, AS = true, EU = true, OC = true, NA = true, SA = true }
local env = require "atlas.env"

local function fqdn(name)
    name = tostring(name):lower()
    if name:sub(-1) ~= "." then name = name .. "." end
    return name
end
M.fqdn = fqdn

local function bare_id(id, prefix) return (tostring(id):gsub("^/?" .. prefix .. "/", "")) end

function M.alb_dns(region) return env.alb_dns_name(region) end

local function state(w) return w.route53 end

-- Records ---------------------------------------------------------------------

local function cname(name, value, ttl)
    return { Name = name, Type = "CNAME", TTL = ttl or 60, ResourceRecords = util.list { { Value = value } } }
end

local function geo_record(region, identifier, location, health_check_id, ttl)
    local record = cname(util.API_NAME, env.regional_name(region), ttl)
    record.SetIdentifier = identifier
    record.GeoLocation = location
    record.HealthCheckId = health_check_id
    return record
end

-- The order ListResourceRecordSets uses: name with its labels reversed, then
-- type, then set identifier.
local function sort_key(name, rtype, identifier)
    local labels = {}
    for label in tostring(name):gmatch("[^.]+") do
        table.insert(labels, 1, label)
    end
    return table.concat(labels, ".") .. "\0" .. (rtype or "") .. "\0" .. (identifier or "")
end

local function record_key(r) return sort_key(fqdn(r.Name), r.Type, r.SetIdentifier) end

-- Each record's key is computed once, not at every comparison.
local function sort_records(records)
    local keys = {}
    for _, r in ipairs(records) do
        keys[r] = record_key(r)
    end
    table.sort(records, function(a, b) return keys[a] < keys[b] end)
end

local function health_check_for(w, region)
    for _, id in ipairs(state(w).health_check_order) do
        local hc = state(w).health_checks[id]
        if hc.region == region then return hc end
    end
end

function M.build(w)
    local s = { zones = {}, zone_order = {}, changes = {}, health_checks = {}, health_check_order = {} }
    w.route53 = s
    for i, region in ipairs(util.REGIONS) do
        local id = util.uuid(i * 7 + 3)
        s.health_checks[id] = {
            Id = id,
            CallerReference = "atlas-production-hc-" .. region,
            HealthCheckConfig = {
                Port = 443,
                Type = "HTTPS",
                ResourcePath = "/actuator/health",
                FullyQualifiedDomainName = env.regional_name(region),
                RequestInterval = w.latency.health_check_interval,
                FailureThreshold = w.latency.health_check_failure_threshold,
                MeasureLatency = false,
                Inverted = false,
                Disabled = false,
                EnableSNI = true,
            },
            HealthCheckVersion = 1,
            region = region,
        }
        s.health_check_order[#s.health_check_order + 1] = id
    end
    local records = {
        {
            Name = ZONE,
            Type = "NS",
            TTL = 172800,
            ResourceRecords = util.list {
                { Value = "ns-1372.awsdns-43.org." },
                { Value = "ns-1840.awsdns-38.co.uk." },
                { Value = "ns-231.awsdns-28.com." },
                { Value = "ns-707.awsdns-24.net." },
            },
        },
        {
            Name = ZONE,
            Type = "SOA",
            TTL = 900,
            ResourceRecords = util.list {
                { Value = "ns-1372.awsdns-43.org. awsdns-hostmaster.amazon.com. 1 7200 900 1209600 86400" },
            },
        },
    }
    for _, region in ipairs(util.REGIONS) do
        records[#records + 1] = cname(env.regional_name(region) .. ".", M.alb_dns(region), 60)
    end
    for _, r in ipairs(env.api_layout()) do
        local check = health_check_for(w, r.region).Id
        records[#records + 1] = geo_record(r.region, r.set_identifier, r.location, check, w.latency.dns_ttl)
    end
    sort_records(records)
    s.zones[ZONE_ID] = {
        Id = "/hostedzone/" .. ZONE_ID,
        Name = ZONE,
        CallerReference = "atlas-crm-com-2024",
        Config = { Comment = "Atlas CRM public zone", PrivateZone = false },
        records = records,
    }
    s.zone_order[1] = ZONE_ID
end

-- Health ------------------------------------------------------------------------

local function endpoint_of(w, hc) return w.endpoints[hc.region] end

-- The aggregate status Route53 acts on: the endpoint's state once it has
-- held for interval x threshold seconds, the previous state before that.
function M.health_check_healthy(w, id)
    local hc = state(w).health_checks[id]
    if not hc then return nil end
    if hc.forced ~= nil then return hc.forced end
    local ep = endpoint_of(w, hc)
    local cfg = hc.HealthCheckConfig
    local settle = cfg.RequestInterval * cfg.FailureThreshold
    local healthy
    if w.t - ep.changed_at >= settle then
        healthy = ep.up
    else
        healthy = not ep.up
    end
    if cfg.Inverted then healthy = not healthy end
    return healthy
end

function M.health_check_of_region(w, region)
    local hc = health_check_for(w, region)
    return hc and hc.Id
end

-- w.route53 health override for tests: forced=true|false|nil (nil follows
-- the endpoint again).
function M.force_health(w, region, healthy) health_check_for(w, region).forced = healthy end

local function observation_status(w, hc)
    local ep = endpoint_of(w, hc)
    if ep.mode == "unreachable" then
        return "Failure: Connection timed out. The endpoint or the internet connection is down, or requests are being blocked by your firewall. See https://docs.aws.amazon.com/console/route53/health-checks-failure-reasons"
    end
    local ip = string.format("52.%d.%d.%d", 16 + #hc.region, 100 + #hc.region * 3, 20)
    local healthy = ep.up
    if hc.forced ~= nil then healthy = hc.forced end
    if healthy then return "Success: HTTP Status Code 200, OK. Resolved IP: " .. ip end
    return "Failure: HTTP Status Code 503, Service Unavailable. Resolved IP: " .. ip
end

-- Resolution --------------------------------------------------------------------

local function records_named(w, name)
    local out = {}
    for _, zone_id in ipairs(state(w).zone_order) do
        for _, r in ipairs(state(w).zones[zone_id].records) do
            if r.Name == name then out[#out + 1] = r end
        end
    end
    return out
end

local function usable(w, record)
    return record.HealthCheckId == nil or M.health_check_healthy(w, record.HealthCheckId) ~= false
end

-- resolve_region(w, name, continent) -> the region whose endpoint a client on
-- that continent reaches through `name`, following geolocation, health and
-- the default record as Route53 does; nil when nothing answers.
function M.resolve_region(w, name, continent)
    name = fqdn(name)
    for _ = 1, 8 do
        for region in pairs(w.endpoints) do
            if name == env.regional_name(region) .. "." then return region end
        end
        local records = records_named(w, name)
        local chosen, default
        for _, r in ipairs(records) do
            if r.Type == "CNAME" then
                local geo = r.GeoLocation
                if not geo then
                    chosen = r
                elseif geo.CountryCode == "*" then
                    default = r
                elseif continent and geo.ContinentCode == continent and usable(w, r) then
                    chosen = r
                end
            end
        end
        chosen = chosen or default
        if not chosen then return nil end
        name = fqdn(chosen.ResourceRecords[1].Value)
    end
end

-- Handlers ------------------------------------------------------------------------

local H = {}

local function find_zone(w, ctx, id)
    local zone = state(w).zones[bare_id(ctx:need({ Id = id }, "Id"), "hostedzone")]
    if not zone then
        ctx:fail("NoSuchHostedZone", "No hosted zone found with ID: " .. bare_id(id, "hostedzone"), 404)
    end
    return zone
end

local function zone_view(zone)
    return {
        Id = zone.Id,
        Name = zone.Name,
        CallerReference = zone.CallerReference,
        Config = util.copy(zone.Config),
        ResourceRecordSetCount = #zone.records,
    }
end

local function sorted_zones(w)
    local zones = {}
    for _, id in ipairs(state(w).zone_order) do
        zones[#zones + 1] = state(w).zones[id]
    end
    table.sort(zones, function(a, b) return sort_key(a.Name) < sort_key(b.Name) end)
    return zones
end

function H.ListHostedZones(w, region, p, ctx)
    local zones = {}
    for _, zone in ipairs(sorted_zones(w)) do
        zones[#zones + 1] = zone_view(zone)
    end
    local page, token = util.page(zones, p.Marker, p.MaxItems, 100)
    return {
        HostedZones = page,
        Marker = p.Marker or "",
        IsTruncated = token ~= nil,
        NextMarker = token,
        MaxItems = tostring(p.MaxItems or 100),
    }
end

function H.ListHostedZonesByName(w, region, p, ctx)
    local start = p.DNSName and sort_key(fqdn(p.DNSName)) or ""
    local zones = util.list()
    local max = tonumber(p.MaxItems) or 100
    local truncated, next_name, next_id = false, nil, nil
    for _, zone in ipairs(sorted_zones(w)) do
        if sort_key(zone.Name) >= start then
            if #zones < max then
                zones[#zones + 1] = zone_view(zone)
            elseif not truncated then
                truncated, next_name, next_id = true, zone.Name, bare_id(zone.Id, "hostedzone")
            end
        end
    end
    return {
        HostedZones = zones,
        DNSName = p.DNSName,
        HostedZoneId = p.HostedZoneId,
        IsTruncated = truncated,
        NextDNSName = next_name,
        NextHostedZoneId = next_id,
        MaxItems = tostring(max),
    }
end

function H.GetHostedZone(w, region, p, ctx)
    local zone = find_zone(w, ctx, p.Id)
    local ns = {}
    for _, r in ipairs(zone.records) do
        if r.Type == "NS" and r.Name == zone.Name then
            for _, v in ipairs(r.ResourceRecords) do
                ns[#ns + 1] = (v.Value:gsub("%.$", ""))
            end
        end
    end
    return { HostedZone = zone_view(zone), DelegationSet = { NameServers = util.list(ns) } }
end

function H.ListResourceRecordSets(w, region, p, ctx)
    local zone = find_zone(w, ctx, p.HostedZoneId)
    if p.StartRecordType and not p.StartRecordName then
        ctx:fail("InvalidInput", "The input is not valid: StartRecordType requires StartRecordName")
    end
    if p.StartRecordIdentifier and not p.StartRecordType then
        ctx:fail("InvalidInput", "The input is not valid: StartRecordIdentifier requires StartRecordType")
    end
    local start = p.StartRecordName and sort_key(fqdn(p.StartRecordName), p.StartRecordType, p.StartRecordIdentifier)
        or ""
    local max = tonumber(p.MaxItems) or 300
    local page = util.list()
    local response = { ResourceRecordSets = page, IsTruncated = false, MaxItems = tostring(max) }
    for _, r in ipairs(zone.records) do
        if record_key(r) >= start then
            if #page < max then
                page[#page + 1] = util.copy(r)
            else
                response.IsTruncated = true
                response.NextRecordName = r.Name
                response.NextRecordType = r.Type
                response.NextRecordIdentifier = r.SetIdentifier
                break
            end
        end
    end
    return response
end

-- ChangeResourceRecordSets ------------------------------------------------------

local function describe(r)
    local text = string.format("[name='%s', type='%s'", fqdn(r.Name), tostring(r.Type))
    if r.SetIdentifier then text = text .. string.format(", set-identifier='%s'", r.SetIdentifier) end
    return text .. "]"
end

local function normalize(r)
    r = util.copy(r)
    r.Name = fqdn(r.Name)
    if r.TTL ~= nil then r.TTL = math.tointeger(tonumber(r.TTL)) or r.TTL end
    if r.ResourceRecords then r.ResourceRecords = util.list(r.ResourceRecords) end
    return r
end

-- Two record sets are the same when every field AWS stores matches.
local function same_values(a, b)
    local function canon(v)
        if type(v) ~= "table" then return tostring(v) end
        local parts = {}
        for _, k in ipairs(util.sorted_keys(v)) do
            parts[#parts + 1] = tostring(k) .. "=" .. canon(v[k])
        end
        return "{" .. table.concat(parts, ",") .. "}"
    end
    return canon(a) == canon(b)
end

local function routing_policy(r)
    if r.GeoLocation then return "geolocation" end
    if r.Weight then return "weighted" end
    if r.Region then return "latency" end
    if r.Failover then return "failover" end
    if r.MultiValueAnswer then return "multivalue" end
    return "simple"
end

local function change_input_error(ctx, change, why)
    local r = change.ResourceRecordSet or {}
    ctx:fail(
        "InvalidInput",
        string.format(
            "Invalid request: %s in Change with [Action=%s, Name=%s, Type=%s, SetIdentifier=%s]",
            why,
            tostring(change.Action),
            tostring(r.Name),
            tostring(r.Type),
            tostring(r.SetIdentifier)
        )
    )
end

local function check_change_input(w, ctx, change)
    local r = change.ResourceRecordSet
    if change.Action ~= "CREATE" and change.Action ~= "DELETE" and change.Action ~= "UPSERT" then
        ctx:fail(
            "InvalidInput",
            "Invalid request: Action must be one of CREATE, DELETE, UPSERT; got " .. tostring(change.Action)
        )
    end
    if type(r) ~= "table" or not r.Name or not r.Type then
        change_input_error(ctx, change, "Missing field 'Name' or 'Type'")
    end
    local has_alias = r.AliasTarget ~= nil
    local has_values = r.TTL ~= nil and r.ResourceRecords ~= nil and #r.ResourceRecords > 0
    if has_alias == has_values then
        change_input_error(
            ctx,
            change,
            "Expected exactly one of [AliasTarget, all of [TTL, and ResourceRecords], or TrafficPolicyInstanceId], but found "
                .. (has_alias and "more than one" or "none")
        )
    end
    local policy = routing_policy(r)
    if policy ~= "simple" and not r.SetIdentifier then
        change_input_error(ctx, change, "Missing field 'SetIdentifier'")
    end
    if policy == "simple" and r.SetIdentifier then
        change_input_error(ctx, change, "Unexpected field 'SetIdentifier' for a record without a routing policy")
    end
    if r.GeoLocation then
        local g = r.GeoLocation
        if g.ContinentCode and not CONTINENTS[g.ContinentCode] then
            change_input_error(
                ctx,
                change,
                "Value '" .. tostring(g.ContinentCode) .. "' at 'continentCode' failed to satisfy constraint"
            )
        end
        if g.ContinentCode and g.CountryCode then
            change_input_error(ctx, change, "GeoLocation may specify ContinentCode or CountryCode, not both")
        end
        if not g.ContinentCode and not g.CountryCode then
            change_input_error(ctx, change, "GeoLocation needs a ContinentCode or a CountryCode")
        end
    end
    if r.Type == "CNAME" and r.ResourceRecords and #r.ResourceRecords > 1 then
        ctx:fail(
            "InvalidChangeBatch",
            string.format("[RRSet of type CNAME with DNS name %s has more than one value]", fqdn(r.Name))
        )
    end
    if r.HealthCheckId and not state(w).health_checks[r.HealthCheckId] then
        ctx:fail("NoSuchHealthCheck", "No health check exists with the specified ID " .. tostring(r.HealthCheckId), 404)
    end
end

local function find_record(records, r)
    local key = record_key(r)
    for i, existing in ipairs(records) do
        if record_key(existing) == key then return i, existing end
    end
end

local function location_text(g)
    if g.CountryCode then
        return "CountryCode="
            .. g.CountryCode
            .. (g.SubdivisionCode and (", SubdivisionCode=" .. g.SubdivisionCode) or "")
    end
    return "ContinentCode=" .. tostring(g.ContinentCode)
end

-- Rules across record sets, checked on the batch's end state.
local function conflicts(zone_name, records, touched)
    local problems = {}
    for name in pairs(touched) do
        local by_type = {}
        for _, r in ipairs(records) do
            if r.Name == name then
                by_type[r.Type] = by_type[r.Type] or {}
                table.insert(by_type[r.Type], r)
            end
        end
        local type_count = 0
        for _ in pairs(by_type) do
            type_count = type_count + 1
        end
        if by_type.CNAME and type_count > 1 then
            problems[#problems + 1] = string.format(
                "RRSet of type CNAME with DNS name %s is not permitted as it conflicts with other records with the same DNS name in zone %s",
                name,
                zone_name
            )
        end
        for rtype, sets in pairs(by_type) do
            local policy = routing_policy(sets[1])
            local locations = {}
            for _, r in ipairs(sets) do
                if routing_policy(r) ~= policy or (policy == "simple" and #sets > 1) then
                    problems[#problems + 1] = string.format(
                        "RRSet with DNS name %s, type %s cannot be created because another RRSet with the same name and type uses a different routing policy",
                        name,
                        rtype
                    )
                    break
                end
                if r.GeoLocation then
                    local where = location_text(r.GeoLocation)
                    if locations[where] then
                        problems[#problems + 1] = string.format(
                            "RRSet with DNS name %s, type %s, SetIdentifier %s and GeoLocation [%s] conflicts with the RRSet with SetIdentifier %s, which has the same GeoLocation",
                            name,
                            rtype,
                            r.SetIdentifier,
                            where,
                            locations[where]
                        )
                    end
                    locations[where] = r.SetIdentifier
                end
            end
        end
    end
    return problems
end

function H.ChangeResourceRecordSets(w, region, p, ctx)
    local zone = find_zone(w, ctx, p.HostedZoneId)
    local batch = ctx:need(p, "ChangeBatch")
    local changes = batch.Changes
    if type(changes) ~= "table" or #changes == 0 then
        ctx:fail("InvalidInput", "Invalid request: ChangeBatch must contain at least one Change")
    end
    for _, change in ipairs(changes) do
        check_change_input(w, ctx, change)
    end
    local records = util.copy(zone.records)
    local problems, touched = {}, {}
    local suffix = "." .. zone.Name
    for _, change in ipairs(changes) do
        local r = normalize(change.ResourceRecordSet)
        if r.Name ~= zone.Name and r.Name:sub(-#suffix) ~= suffix then
            problems[#problems + 1] =
                string.format("RRSet with DNS name %s is not permitted in zone %s", r.Name, zone.Name)
        else
            touched[r.Name] = true
            local index, existing = find_record(records, r)
            if change.Action == "CREATE" then
                if existing then
                    problems[#problems + 1] = "Tried to create resource record set "
                        .. describe(r)
                        .. " but it already exists"
                else
                    records[#records + 1] = r
                end
            elseif change.Action == "DELETE" then
                if not existing then
                    problems[#problems + 1] = "Tried to delete resource record set "
                        .. describe(r)
                        .. " but it was not found"
                elseif not same_values(existing, r) then
                    problems[#problems + 1] = "Tried to delete resource record set "
                        .. describe(r)
                        .. " but the values provided do not match the current values"
                else
                    table.remove(records, index)
                end
            else
                if existing then
                    records[index] = r
                else
                    records[#records + 1] = r
                end
            end
        end
    end
    for _, problem in ipairs(conflicts(zone.Name, records, touched)) do
        problems[#problems + 1] = problem
    end
    if #problems > 0 then ctx:fail("InvalidChangeBatch", "[" .. table.concat(problems, ", ") .. "]") end
    sort_records(records)
    zone.records = records
    local id = util.upper_id("C", w.seq * 131 + 7, 13)
    w.seq = w.seq + 1
    local change = { Id = "/change/" .. id, Status = "PENDING", SubmittedAt = util.iso(w.t), Comment = batch.Comment }
    state(w).changes[id] = change
    w:after_latency("route53_insync", function() change.Status = "INSYNC" end, "route53")
    return { ChangeInfo = util.copy(change) }
end

function H.GetChange(w, region, p, ctx)
    local id = bare_id(ctx:need(p, "Id"), "change")
    local change = state(w).changes[id]
    if not change then ctx:fail("NoSuchChange", "A change with the specified change ID does not exist: " .. id, 404) end
    return { ChangeInfo = util.copy(change) }
end

-- Health checks ---------------------------------------------------------------

local function health_check_view(hc)
    return {
        Id = hc.Id,
        CallerReference = hc.CallerReference,
        HealthCheckConfig = util.copy(hc.HealthCheckConfig),
        HealthCheckVersion = hc.HealthCheckVersion,
    }
end

local function find_health_check(w, ctx, id)
    local hc = state(w).health_checks[ctx:need({ HealthCheckId = id }, "HealthCheckId")]
    if not hc then
        ctx:fail("NoSuchHealthCheck", "A health check with id " .. tostring(id) .. " does not exist.", 404)
    end
    return hc
end

function H.ListHealthChecks(w, region, p, ctx)
    local all = {}
    for _, id in ipairs(state(w).health_check_order) do
        all[#all + 1] = health_check_view(state(w).health_checks[id])
    end
    local page, token = util.page(all, p.Marker, p.MaxItems, 100)
    return {
        HealthChecks = page,
        Marker = p.Marker or "",
        IsTruncated = token ~= nil,
        NextMarker = token,
        MaxItems = tostring(p.MaxItems or 100),
    }
end

function H.GetHealthCheck(w, region, p, ctx)
    return { HealthCheck = health_check_view(find_health_check(w, ctx, p.HealthCheckId)) }
end

function H.GetHealthCheckStatus(w, region, p, ctx)
    local hc = find_health_check(w, ctx, p.HealthCheckId)
    local status = observation_status(w, hc)
    local observations = util.list()
    local interval = hc.HealthCheckConfig.RequestInterval
    for i, checker in ipairs(CHECKER_REGIONS) do
        -- Checkers are spread over the interval; each reports its last check.
        local offset = (i * 7) % interval
        local checked = math.floor((w.t - offset) / interval) * interval + offset
        observations[i] = {
            Region = checker,
            IPAddress = string.format("15.177.%d.%d", i * 8, 64 + i),
            StatusReport = { Status = status, CheckedTime = util.iso(checked) },
        }
    end
    return { HealthCheckObservations = observations }
end

-- Every new world builds this state and sends this module the calls to route53.
require("atlas.mock.world").register { name = "route53", build = M.build, handlers = { route53 = H } }

return M
