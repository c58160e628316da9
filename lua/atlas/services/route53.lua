-- Route53 helpers. Route53 is global: region is optional (it signs for
-- us-east-1 whatever is given). Parameters are AWS-cased as in boto3
-- (HostedZoneId, ChangeBatch, Id, HealthCheckId); ids may carry their
-- "/hostedzone/" or "/change/" prefix, as the API returns them.
local aws = require "atlas.aws"
local helper = require "atlas.aws.helper"

local M = {}

local function global(args)
    local copy = {}
    for k, v in pairs(args) do
        copy[k] = v
    end
    copy.region = copy.region or "us-east-1"
    return copy
end

-- list_hosted_zones_by_name{DNSName?, HostedZoneId?, MaxItems?} -> response (HostedZones, IsTruncated, ...)
function M.list_hosted_zones_by_name(args) return helper.call("route53", "ListHostedZonesByName", global(args or {})) end

-- find_zone{name, private = false} -> the hosted zone named `name` (with or without the final dot), or nil
function M.find_zone(args)
    local want = args.name:gsub("%.$", "") .. "."
    local resp = M.list_hosted_zones_by_name {
        DNSName = want,
        region = args.region,
        endpoint = args.endpoint,
        profile = args.profile,
    }
    for _, zone in ipairs(resp.HostedZones or {}) do
        local private = zone.Config and zone.Config.PrivateZone or false
        if zone.Name == want and private == (args.private or false) then return zone end
    end
    return nil
end

-- list_resource_record_sets{HostedZoneId, StartRecordName?, StartRecordType?} -> every record (all pages)
function M.list_resource_record_sets(args)
    return helper.paginate("route53", "ListResourceRecordSets", global(args), {
        input = {
            NextRecordName = "StartRecordName",
            NextRecordType = "StartRecordType",
            NextRecordIdentifier = "StartRecordIdentifier",
        },
        output = "NextRecordName",
        more = "IsTruncated",
        items = "ResourceRecordSets",
    })
end

-- change_resource_record_sets{HostedZoneId, ChangeBatch = {Changes = {...}, Comment?}} -> {ChangeInfo=}
function M.change_resource_record_sets(args) return helper.call("route53", "ChangeResourceRecordSets", global(args)) end

-- get_change{Id} -> {ChangeInfo = {Id, Status, SubmittedAt}}
function M.get_change(args) return helper.call("route53", "GetChange", global(args)) end

-- get_health_check_status{HealthCheckId} -> {HealthCheckObservations = {...}}
function M.get_health_check_status(args) return helper.call("route53", "GetHealthCheckStatus", global(args)) end

-- wait_changed{Id, timeout = 1800, delay = aws.PACE.route53} -> ChangeInfo (nil when the change is unknown)
-- Success when GetChange says INSYNC; NoSuchChange also counts as success, as in the AWS waiter.
function M.wait_changed(args)
    local id = args.Id or args.id
    local resp = aws.wait {
        name = "Route53 change " .. tostring(id) .. " INSYNC",
        service = "route53",
        action = "GetChange",
        region = "us-east-1",
        delay = args.delay,
        timeout = args.timeout or 1800,
        poll = function() return M.get_change { Id = id, endpoint = args.endpoint, profile = args.profile } end,
        acceptors = {
            { state = "success", matcher = function(r) return r.ChangeInfo and r.ChangeInfo.Status == "INSYNC" end },
            { state = "success", error = "NoSuchChange" },
        },
        progress = function(r)
            return "route53: change " .. tostring(id) .. " " .. tostring(r.ChangeInfo and r.ChangeInfo.Status)
        end,
    }
    return resp and resp.ChangeInfo
end

return M
