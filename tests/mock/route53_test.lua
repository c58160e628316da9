-- Route53 in the mock world: the zone and its records as the reference
-- environment has them, changes PENDING -> INSYNC, validation like AWS,
-- health checks that follow the endpoints.
local t = require "atlas.test"
local World = require "atlas.mock.world"

local G = "us-east-1" -- Route53 is global; the region is only what the caller passes

local function zone_id(w)
    return w:aws_invoke("route53", "ListHostedZonesByName", G, { DNSName = "atlas-crm.com" }).HostedZones[1].Id
end

local function all_records(w)
    return w:aws_invoke("route53", "ListResourceRecordSets", G, { HostedZoneId = zone_id(w) }).ResourceRecordSets
end

local function api_records(w)
    local out = {}
    for _, r in ipairs(all_records(w)) do
        if r.Name == "api.atlas-crm.com." then out[r.SetIdentifier] = r end
    end
    return out
end

local function health_check_ids(w)
    local ids = {}
    for _, hc in ipairs(w:aws_invoke("route53", "ListHealthChecks", G, {}).HealthChecks) do
        ids[hc.HealthCheckConfig.FullyQualifiedDomainName:match("^(.-)%.atlas")] = hc.Id
    end
    return ids
end

local function change(w, changes)
    return w:aws_invoke("route53", "ChangeResourceRecordSets", G, {
        HostedZoneId = zone_id(w),
        ChangeBatch = { Comment = "test", Changes = changes },
    })
end

t.case("the public zone atlas-crm.com is found by name", function()
    local w = World.new {}
    local r = w:aws_invoke("route53", "ListHostedZonesByName", G, { DNSName = "atlas-crm.com." })
    t.eq(#r.HostedZones, 1)
    local zone = r.HostedZones[1]
    t.eq(zone.Name, "atlas-crm.com.")
    t.match(zone.Id, "^/hostedzone/Z")
    t.eq(zone.Config.PrivateZone, false)
    t.eq(zone.ResourceRecordSetCount, 9)
    t.eq(r.IsTruncated, false)
    t.eq(r.MaxItems, "100")
    local by_id = w:aws_invoke("route53", "GetHostedZone", G, { Id = zone.Id:gsub("^/hostedzone/", "") })
    t.eq(by_id.HostedZone.Name, "atlas-crm.com.")
    t.eq(#by_id.DelegationSet.NameServers, 4)
    t.raises(function() w:aws_invoke("route53", "GetHostedZone", G, { Id = "ZNOPE" }) end, "NoSuchHostedZone")
    t.eq(#w:aws_invoke("route53", "ListHostedZones", G, {}).HostedZones, 1)
end)

t.case("api.atlas-crm.com has the geolocation records of the reference environment", function()
    local w = World.new {}
    local hc = health_check_ids(w)
    local records = api_records(w)
    local function expect(id, location, region)
        t.eq(records[id], {
            Name = "api.atlas-crm.com.",
            Type = "CNAME",
            SetIdentifier = id,
            GeoLocation = location,
            TTL = 60,
            ResourceRecords = { { Value = region .. ".atlas-crm.com" } },
            HealthCheckId = hc[region],
        }, id)
    end
    expect("eu-west-1", { ContinentCode = "EU" }, "eu-west-1")
    expect("us-east-1", { ContinentCode = "NA" }, "us-east-1")
    expect("ap-southeast-1", { ContinentCode = "AS" }, "ap-southeast-1")
    expect("default", { CountryCode = "*" }, "us-east-1")
end)

t.case("each regional name is a CNAME (TTL 60) to its load balancer", function()
    local w = World.new {}
    for _, r in ipairs(all_records(w)) do
        local region = r.Name:match("^([a-z0-9-]+)%.atlas%-crm%.com%.$")
        if region and region ~= "api" then
            t.eq(
                { r.Type, r.TTL, r.ResourceRecords[1].Value },
                { "CNAME", 60, "atlas-crm-production-alb-" .. region .. "." .. region .. ".elb.amazonaws.com" }
            )
        end
    end
end)

t.case("ListResourceRecordSets pages with NextRecordName/Type/Identifier and a string MaxItems", function()
    local w = World.new {}
    local id = zone_id(w)
    local everything = all_records(w)
    local seen = {}
    local params = { HostedZoneId = id, MaxItems = "2" }
    repeat
        local r = w:aws_invoke("route53", "ListResourceRecordSets", G, params)
        t.eq(r.MaxItems, "2")
        t.ok(#r.ResourceRecordSets <= 2)
        for _, rec in ipairs(r.ResourceRecordSets) do
            seen[#seen + 1] = rec
        end
        params = {
            HostedZoneId = id,
            MaxItems = "2",
            StartRecordName = r.NextRecordName,
            StartRecordType = r.NextRecordType,
            StartRecordIdentifier = r.NextRecordIdentifier,
        }
    until not r.IsTruncated
    t.eq(seen, everything)
    -- Reversed-label order (com.atlas-crm.<label>): the apex NS and SOA first,
    -- then "ap-southeast-1" before "api" ('-' sorts before 'i').
    local names = {}
    for i, r in ipairs(everything) do
        names[i] = r.Name .. " " .. r.Type .. " " .. (r.SetIdentifier or "")
    end
    t.eq(names, {
        "atlas-crm.com. NS ",
        "atlas-crm.com. SOA ",
        "ap-southeast-1.atlas-crm.com. CNAME ",
        "api.atlas-crm.com. CNAME ap-southeast-1",
        "api.atlas-crm.com. CNAME default",
        "api.atlas-crm.com. CNAME eu-west-1",
        "api.atlas-crm.com. CNAME us-east-1",
        "eu-west-1.atlas-crm.com. CNAME ",
        "us-east-1.atlas-crm.com. CNAME ",
    })
    t.raises(
        function() w:aws_invoke("route53", "ListResourceRecordSets", G, { HostedZoneId = id, StartRecordType = "A" }) end,
        "InvalidInput"
    )
end)

t.case("a change is PENDING, then INSYNC about 60 s later", function()
    local w = World.new {}
    local info = change(w, {
        {
            Action = "UPSERT",
            ResourceRecordSet = {
                Name = "status.atlas-crm.com",
                Type = "CNAME",
                TTL = 300,
                ResourceRecords = { { Value = "us-east-1.atlas-crm.com" } },
            },
        },
    }).ChangeInfo
    t.eq(info.Status, "PENDING")
    t.match(info.Id, "^/change/C")
    t.eq(info.SubmittedAt, "2025-11-18T09:30:00.000Z")
    t.eq(info.Comment, "test")
    w:advance(59)
    t.eq(w:aws_invoke("route53", "GetChange", G, { Id = info.Id }).ChangeInfo.Status, "PENDING")
    w:advance(1)
    t.eq(w:aws_invoke("route53", "GetChange", G, { Id = info.Id:gsub("^/change/", "") }).ChangeInfo.Status, "INSYNC")
    t.raises(function() w:aws_invoke("route53", "GetChange", G, { Id = "CNOPE" }) end, "NoSuchChange")
    -- The record itself is listed at once.
    local found
    for _, r in ipairs(all_records(w)) do
        if r.Name == "status.atlas-crm.com." then found = r end
    end
    t.eq(found.TTL, 300)
end)

t.case("the route53 waiter of atlas.route53 sees INSYNC in virtual time", function()
    local w = t.world()
    local route53 = require "atlas.route53"
    local zone = route53.find_zone { name = "atlas-crm.com" }
    local info = route53.change_resource_record_sets {
        HostedZoneId = zone.Id,
        ChangeBatch = {
            Changes = {
                {
                    Action = "CREATE",
                    ResourceRecordSet = {
                        Name = "x.atlas-crm.com",
                        Type = "A",
                        TTL = 60,
                        ResourceRecords = { { Value = "192.0.2.1" } },
                    },
                },
            },
        },
    }.ChangeInfo
    local started = w:now()
    t.eq(route53.wait_changed { Id = info.Id, delay = 10 }.Status, "INSYNC")
    t.ok(w:now() - started >= 60 and w:now() - started <= 70)
end)

t.case("CREATE of an existing record and DELETE of an absent one are InvalidChangeBatch", function()
    local w = World.new {}
    local records = api_records(w)
    local err = t.raises(function() change(w, { { Action = "CREATE", ResourceRecordSet = records["eu-west-1"] } }) end)
    t.eq({ err.code, err.status }, { "InvalidChangeBatch", 400 })
    t.eq(
        err.message,
        "[Tried to create resource record set [name='api.atlas-crm.com.', type='CNAME', set-identifier='eu-west-1'] but it already exists]"
    )
    err = t.raises(
        function()
            change(w, {
                {
                    Action = "DELETE",
                    ResourceRecordSet = {
                        Name = "nothing.atlas-crm.com",
                        Type = "A",
                        TTL = 60,
                        ResourceRecords = { { Value = "192.0.2.1" } },
                    },
                },
            })
        end
    )
    t.eq(
        err.message,
        "[Tried to delete resource record set [name='nothing.atlas-crm.com.', type='A'] but it was not found]"
    )
    local wrong = records["eu-west-1"]
    wrong.TTL = 300
    err = t.raises(function() change(w, { { Action = "DELETE", ResourceRecordSet = wrong } }) end, "InvalidChangeBatch")
    t.match(err.message, "do not match the current values")
end)

t.case("a failed batch changes nothing; a DELETE + CREATE batch is applied whole", function()
    local w = World.new {}
    local before = all_records(w)
    local records = api_records(w)
    t.raises(
        function()
            change(w, {
                { Action = "DELETE", ResourceRecordSet = records["eu-west-1"] },
                { Action = "CREATE", ResourceRecordSet = records["us-east-1"] },
            })
        end,
        "already exists"
    )
    t.eq(all_records(w), before)
    local current = api_records(w)["eu-west-1"]
    local moved = api_records(w)["eu-west-1"]
    moved.ResourceRecords = { { Value = "us-east-1.atlas-crm.com" } }
    moved.HealthCheckId = records["us-east-1"].HealthCheckId
    change(w, {
        { Action = "DELETE", ResourceRecordSet = current },
        { Action = "CREATE", ResourceRecordSet = moved },
    })
    t.eq(api_records(w)["eu-west-1"].ResourceRecords[1].Value, "us-east-1.atlas-crm.com")
end)

t.case("conflicting record sets are refused: a second EU location, a CNAME beside an A, mixed routing", function()
    local w = World.new {}
    local hc = health_check_ids(w)
    t.raises(
        function()
            change(w, {
                {
                    Action = "CREATE",
                    ResourceRecordSet = {
                        Name = "api.atlas-crm.com",
                        Type = "CNAME",
                        SetIdentifier = "eu-west-1-failover",
                        GeoLocation = { ContinentCode = "EU" },
                        TTL = 60,
                        ResourceRecords = { { Value = "us-east-1.atlas-crm.com" } },
                        HealthCheckId = hc["us-east-1"],
                    },
                },
            })
        end,
        "same GeoLocation"
    )
    t.raises(
        function()
            change(w, {
                {
                    Action = "CREATE",
                    ResourceRecordSet = {
                        Name = "us-east-1.atlas-crm.com",
                        Type = "A",
                        TTL = 60,
                        ResourceRecords = { { Value = "192.0.2.1" } },
                    },
                },
            })
        end,
        "conflicts with other records"
    )
    t.raises(
        function()
            change(w, {
                {
                    Action = "CREATE",
                    ResourceRecordSet = {
                        Name = "api.atlas-crm.com",
                        Type = "CNAME",
                        TTL = 60,
                        ResourceRecords = { { Value = "x.atlas-crm.com" } },
                    },
                },
            })
        end,
        "routing policy"
    )
    t.raises(
        function()
            change(w, {
                {
                    Action = "UPSERT",
                    ResourceRecordSet = {
                        Name = "www.example.org",
                        Type = "A",
                        TTL = 60,
                        ResourceRecords = { { Value = "192.0.2.1" } },
                    },
                },
            })
        end,
        "not permitted in zone"
    )
    t.raises(
        function() change(w, { { Action = "UPSERT", ResourceRecordSet = { Name = "y.atlas-crm.com", Type = "A" } } }) end,
        "InvalidInput"
    )
    t.raises(
        function()
            change(w, {
                {
                    Action = "UPSERT",
                    ResourceRecordSet = {
                        Name = "api.atlas-crm.com",
                        Type = "CNAME",
                        SetIdentifier = "eu-west-1",
                        GeoLocation = { ContinentCode = "EU" },
                        TTL = 60,
                        ResourceRecords = { { Value = "eu-west-1.atlas-crm.com" } },
                        HealthCheckId = "no-such-check",
                    },
                },
            })
        end,
        "NoSuchHealthCheck"
    )
    t.raises(function() change(w, { { Action = "REPLACE", ResourceRecordSet = {} } }) end, "InvalidInput")
end)

t.case("failing over by UPSERT and back puts back exactly the records that were there", function()
    local w = World.new {}
    local before = all_records(w)
    local records = api_records(w)
    local original = records["eu-west-1"]
    local failover = api_records(w)["eu-west-1"]
    failover.ResourceRecords = { { Value = "us-east-1.atlas-crm.com" } }
    failover.HealthCheckId = records["us-east-1"].HealthCheckId
    change(w, { { Action = "UPSERT", ResourceRecordSet = failover } })
    local during = api_records(w)
    t.eq(during["eu-west-1"].ResourceRecords[1].Value, "us-east-1.atlas-crm.com")
    t.eq(during["ap-southeast-1"], records["ap-southeast-1"])
    change(w, { { Action = "UPSERT", ResourceRecordSet = original } })
    t.eq(all_records(w), before)
end)

t.case("health checks: HTTPS on R.atlas-crm.com /actuator/health, interval 30, threshold 3", function()
    local w = World.new {}
    local list = w:aws_invoke("route53", "ListHealthChecks", G, {})
    t.eq(#list.HealthChecks, 3)
    t.eq(list.Marker, "")
    for _, hc in ipairs(list.HealthChecks) do
        local c = hc.HealthCheckConfig
        t.eq(
            { c.Type, c.ResourcePath, c.RequestInterval, c.FailureThreshold, c.Port },
            { "HTTPS", "/actuator/health", 30, 3, 443 }
        )
        t.match(c.FullyQualifiedDomainName, "^[a-z0-9-]+%.atlas%-crm%.com$")
        t.eq(w:aws_invoke("route53", "GetHealthCheck", G, { HealthCheckId = hc.Id }).HealthCheck.Id, hc.Id)
    end
    t.raises(
        function() w:aws_invoke("route53", "GetHealthCheck", G, { HealthCheckId = "nope" }) end,
        "NoSuchHealthCheck"
    )
end)

t.case("health check observations follow the endpoint; the aggregate flips after 90 s", function()
    local w = World.new {}
    local route53 = require "atlas.mock.route53"
    local id = health_check_ids(w)["ap-southeast-1"]
    local function statuses()
        local r = w:aws_invoke("route53", "GetHealthCheckStatus", G, { HealthCheckId = id })
        local failing = 0
        for _, o in ipairs(r.HealthCheckObservations) do
            if o.StatusReport.Status:match("^Failure") then failing = failing + 1 end
        end
        return #r.HealthCheckObservations, failing
    end
    t.eq({ statuses() }, { 8, 0 })
    t.eq(route53.health_check_healthy(w, id), true)
    w:set_endpoint("ap-southeast-1", { mode = "down" })
    t.eq({ statuses() }, { 8, 8 })
    w:advance(89)
    t.eq(route53.health_check_healthy(w, id), true)
    w:advance(1)
    t.eq(route53.health_check_healthy(w, id), false)
    local r = w:aws_invoke("route53", "GetHealthCheckStatus", G, { HealthCheckId = id })
    t.match(r.HealthCheckObservations[1].StatusReport.Status, "^Failure: HTTP Status Code 503")
    t.match(r.HealthCheckObservations[1].StatusReport.CheckedTime, "^2025%-11%-18T09:3%d:%d%d%.000Z$")
end)

t.case("force_health_check pins a health check whatever the endpoint says", function()
    local w = World.new {}
    local route53 = require "atlas.mock.route53"
    local id = health_check_ids(w)["us-east-1"]
    w:force_health_check("us-east-1", false)
    t.eq(route53.health_check_healthy(w, id), false)
    local r = w:aws_invoke("route53", "GetHealthCheckStatus", G, { HealthCheckId = id })
    t.match(r.HealthCheckObservations[8].StatusReport.Status, "^Failure")
    t.eq(w:http_request { url = "https://us-east-1.atlas-crm.com/actuator/health" }.status, 200)
    w:force_health_check("us-east-1", nil)
    t.eq(route53.health_check_healthy(w, id), true)
end)

t.case("api.atlas-crm.com resolves by continent and falls back to the default when a region is unhealthy", function()
    local w = World.new {}
    local route53 = require "atlas.mock.route53"
    t.eq(route53.resolve_region(w, "api.atlas-crm.com", "EU"), "eu-west-1")
    t.eq(route53.resolve_region(w, "api.atlas-crm.com", "AS"), "ap-southeast-1")
    t.eq(route53.resolve_region(w, "api.atlas-crm.com", "SA"), "us-east-1")
    w:set_endpoint("eu-west-1", { mode = "down" })
    w:advance(90)
    t.eq(route53.resolve_region(w, "api.atlas-crm.com", "EU"), "us-east-1")
    t.eq(w:http_request { url = "https://api.atlas-crm.com/actuator/health", continent = "EU" }.status, 200)
end)
