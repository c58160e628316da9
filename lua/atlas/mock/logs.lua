-- CloudWatch Logs in the mock world: the application log group of each
-- region and the failover Lambda's log group. Events come from the seed
-- below, from the simulation (tasks starting, the Lambda running) and from
-- scenarios and tests (w:add_log). FilterLogEvents understands the plain
-- term syntax of filter patterns: terms that must all appear, "quoted
-- phrases", ?alternatives and -exclusions.
local util = require "atlas.mock.util"
local env = require "atlas.env"

local M = {}

local function state(w, region)
    w.logs = w.logs or {}
    local s = w.logs[region]
    if not s then
        s = { groups = {} }
        w.logs[region] = s
    end
    return s
end

local function group_arn(region, name)
    return string.format("arn:aws:logs:%s:%s:log-group:%s", region, util.ACCOUNT, name)
end

function M.create_group(w, region, name, retention, created)
    local s = state(w, region)
    if not s.groups[name] then
        s.groups[name] = {
            name = name,
            events = {},
            retention = retention or 30,
            created = created or (w.start_time - 400 * 86400),
            streams = {},
        }
    end
    return s.groups[name]
end

local function stream_name(region, group)
    if group:match("^/aws/lambda/") then return "2025/11/18/[$LATEST]" .. util.hex_digits(#group * 53, 32) end
    return "ecs/app/" .. util.hex_digits(#region * 59 + #group, 32)
end

-- append(w, region, group, message, stream?, at?): a log event, time-stamped
-- now (milliseconds, as Logs counts).
function M.append(w, region, group, message, stream, at)
    local g = state(w, region).groups[group]
    if not g then return end
    w.seq = w.seq + 1
    local t = at or w.t
    g.events[#g.events + 1] = {
        logStreamName = stream or stream_name(region, group),
        timestamp = math.floor(t * 1000),
        ingestionTime = math.floor(t * 1000) + 120,
        message = message,
        eventId = string.format("%056d", w.seq),
    }
end

function M.build(w)
    for _, region in ipairs(util.REGIONS) do
        local group = env.log_group(region)
        M.create_group(w, region, group, 30)
        -- A quiet morning: a few minutes of ordinary application logs.
        for i = 10, 1, -1 do
            M.append(
                w,
                region,
                group,
                string.format(
                    "INFO  [http-nio-8080-exec-%d] c.a.crm.web.RequestLogger : GET /api/v1/organizations 200 %dms",
                    i,
                    20 + i * 3
                ),
                nil,
                w.start_time - i * 60
            )
        end
    end
    M.create_group(w, env.FAILOVER_REGION, env.FAILOVER_LAMBDA_LOG_GROUP, 14)
end

-- Filter patterns ----------------------------------------------------------------

local function parse_pattern(pattern)
    local required, optional, excluded = {}, {}, {}
    if pattern == nil or pattern == "" then return { required = required, optional = optional, excluded = excluded } end
    if pattern:match("^%s*[{%[]") then return nil end
    local rest = pattern
    while true do
        rest = rest:gsub("^%s+", "")
        if rest == "" then break end
        local prefix = rest:match("^[?%-]") or ""
        rest = rest:sub(#prefix + 1)
        local term
        if rest:sub(1, 1) == '"' then
            term = rest:match('^"([^"]*)"')
            rest = rest:sub(#term + 3)
        else
            term = rest:match("^(%S+)")
            rest = rest:sub(#term + 1)
        end
        local bucket = prefix == "?" and optional or prefix == "-" and excluded or required
        bucket[#bucket + 1] = term
    end
    return { required = required, optional = optional, excluded = excluded }
end

local function matches(filter, message)
    for _, term in ipairs(filter.required) do
        if not message:find(term, 1, true) then return false end
    end
    for _, term in ipairs(filter.excluded) do
        if message:find(term, 1, true) then return false end
    end
    if #filter.optional > 0 then
        for _, term in ipairs(filter.optional) do
            if message:find(term, 1, true) then return true end
        end
        return false
    end
    return true
end

-- Handlers ------------------------------------------------------------------------

local H = {}

local function find_group(w, region, ctx, p)
    local name = p.logGroupName or p.logGroupIdentifier
    if name then name = name:match("^arn:aws:logs:[^:]+:[^:]+:log%-group:(.-):?%*?$") or name end
    local g = state(w, region).groups[ctx:need({ logGroupName = name }, "logGroupName")]
    if not g then ctx:fail("ResourceNotFoundException", "The specified log group does not exist.") end
    return g
end

function H.FilterLogEvents(w, region, p, ctx)
    local g = find_group(w, region, ctx, p)
    local filter = parse_pattern(p.filterPattern)
    if not filter then
        ctx:fail(
            "InvalidParameterException",
            "The mock world supports plain term filter patterns only: " .. tostring(p.filterPattern)
        )
    end
    local streams
    if p.logStreamNames then
        streams = {}
        for _, name in ipairs(util.as_list(p.logStreamNames)) do
            streams[name] = true
        end
    end
    local start_ms = tonumber(p.startTime)
    local end_ms = tonumber(p.endTime)
    local found = {}
    local searched = {}
    for _, e in ipairs(g.events) do
        if
            (not streams or streams[e.logStreamName])
            and (not p.logStreamNamePrefix or e.logStreamName:sub(1, #p.logStreamNamePrefix) == p.logStreamNamePrefix)
            and (not start_ms or e.timestamp >= start_ms)
            and (not end_ms or e.timestamp <= end_ms)
        then
            searched[e.logStreamName] = true
            if matches(filter, e.message) then found[#found + 1] = util.copy(e) end
        end
    end
    table.sort(found, function(a, b)
        if a.timestamp ~= b.timestamp then return a.timestamp < b.timestamp end
        return a.eventId < b.eventId
    end)
    local page, token = util.page(found, p.nextToken, p.limit, 10000)
    local searched_list = util.list()
    for _, name in ipairs(util.sorted_keys(searched)) do
        searched_list[#searched_list + 1] = { logStreamName = name, searchedCompletely = true }
    end
    return { events = page, searchedLogStreams = searched_list, nextToken = token }
end

function H.DescribeLogGroups(w, region, p, ctx)
    local list = {}
    local s = state(w, region)
    local prefix = p.logGroupNamePrefix
    for _, name in ipairs(util.sorted_keys(s.groups)) do
        if
            (not prefix or name:sub(1, #prefix) == prefix)
            and (not p.logGroupNamePattern or name:find(p.logGroupNamePattern, 1, true))
        then
            local g = s.groups[name]
            local bytes = 0
            for _, e in ipairs(g.events) do
                bytes = bytes + #e.message
            end
            list[#list + 1] = {
                logGroupName = name,
                creationTime = math.floor(g.created * 1000),
                retentionInDays = g.retention,
                metricFilterCount = 0,
                arn = group_arn(region, name) .. ":*",
                storedBytes = bytes,
                logGroupClass = "STANDARD",
                logGroupArn = group_arn(region, name),
            }
        end
    end
    local page, token = util.page(list, p.nextToken, p.limit, 50)
    return { logGroups = page, nextToken = token }
end

function H.DescribeLogStreams(w, region, p, ctx)
    local g = find_group(w, region, ctx, p)
    local streams = {}
    for _, e in ipairs(g.events) do
        local s = streams[e.logStreamName]
        if not s then
            s = {
                logStreamName = e.logStreamName,
                creationTime = e.timestamp,
                firstEventTimestamp = e.timestamp,
                arn = group_arn(region, g.name) .. ":log-stream:" .. e.logStreamName,
                storedBytes = 0,
            }
            streams[e.logStreamName] = s
        end
        s.lastEventTimestamp = e.timestamp
        s.lastIngestionTime = e.ingestionTime
    end
    local list = {}
    for _, name in ipairs(util.sorted_keys(streams)) do
        if not p.logStreamNamePrefix or name:sub(1, #p.logStreamNamePrefix) == p.logStreamNamePrefix then
            list[#list + 1] = streams[name]
        end
    end
    if p.orderBy == "LastEventTime" then
        table.sort(list, function(a, b) return a.lastEventTimestamp < b.lastEventTimestamp end)
    end
    if p.descending then
        local reversed = {}
        for i = #list, 1, -1 do
            reversed[#reversed + 1] = list[i]
        end
        list = reversed
    end
    local page, token = util.page(list, p.nextToken, p.limit, 50)
    return { logStreams = page, nextToken = token }
end

-- Every new world builds this state and sends this module the calls to logs.
require("atlas.mock.world").register { name = "logs", build = M.build, handlers = { logs = H } }

return M
