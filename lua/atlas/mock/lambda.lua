-- Lambda in the mock world: the failover orchestrator in eu-west-1.
--
-- By default it reports which regions' health checks pass, the way the real
-- orchestrator decides whether to act; a test or scenario can replace its
-- code with w:set_lambda(name, function(payload, world) ... end). Each run
-- writes START/END/REPORT lines to its log group, and LogType=Tail returns
-- them base64-encoded as Lambda does.
local util = require "atlas.mock.util"

local M = {}

M.ORCHESTRATOR = "atlas-production-failover-orchestrator"

local function state(w, region)
    w.lambda = w.lambda or {}
    w.lambda[region] = w.lambda[region] or {}
    return w.lambda[region]
end

local function json_string(s)
    return '"' .. tostring(s):gsub('[%c"\\]', function(c) return string.format("\\u%04x", c:byte()) end) .. '"'
end

local function orchestrator(payload, w)
    local route53 = require "atlas.mock.route53"
    local healthy, unhealthy = {}, {}
    for _, region in ipairs(util.REGIONS) do
        local ok = route53.health_check_healthy(w, route53.health_check_of_region(w, region))
        local list = ok and healthy or unhealthy
        list[#list + 1] = json_string(region)
    end
    return string.format(
        '{"statusCode":200,"body":{"healthy_regions":[%s],"unhealthy_regions":[%s],"action":"%s"}}',
        table.concat(healthy, ","),
        table.concat(unhealthy, ","),
        #unhealthy > 0 and "failover_required" or "none"
    )
end

function M.build(w)
    state(w, "eu-west-1")[M.ORCHESTRATOR] = {
        name = M.ORCHESTRATOR,
        arn = string.format("arn:aws:lambda:eu-west-1:%s:function:%s", util.ACCOUNT, M.ORCHESTRATOR),
        log_group = "/aws/lambda/" .. M.ORCHESTRATOR,
        handler = orchestrator,
    }
end

function M.set_handler(w, name, handler)
    for _, region in ipairs(util.REGIONS) do
        local fn = state(w, region)[name]
        if fn then
            fn.handler = handler
            return
        end
    end
    error("set_lambda: no function " .. tostring(name))
end

local function find_function(w, region, ctx, ref)
    ref = tostring(ctx:need({ FunctionName = ref }, "FunctionName"))
    local name = ref:match("function:([^:]+)") or ref:match("^([^:]+)")
    local fn = state(w, region)[name]
    if not fn then
        ctx:fail(
            "ResourceNotFoundException",
            string.format("Function not found: arn:aws:lambda:%s:%s:function:%s", region, util.ACCOUNT, name),
            404
        )
    end
    return fn
end

local H = {}
M.handlers = H

function H.Invoke(w, region, p, ctx)
    local fn = find_function(w, region, ctx, p.FunctionName)
    local kind = p.InvocationType or "RequestResponse"
    if kind == "DryRun" then return { StatusCode = 204, Payload = "" } end
    local payload = p.Payload
    if payload == nil then
        payload = "{}"
    elseif type(payload) == "table" then
        local ok, json = pcall(require, "atlas.json")
        payload = ok and json.encode(payload) or "{}"
    end
    w.seq = w.seq + 1
    local request_id = util.uuid(w.seq * 89)
    local logs = require "atlas.mock.logs"
    local lines = { "START RequestId: " .. request_id .. " Version: $LATEST" }
    local ok, result = pcall(fn.handler, payload, w)
    local response = { StatusCode = kind == "Event" and 202 or 200, ExecutedVersion = "$LATEST" }
    if ok then
        response.Payload = kind == "Event" and "" or tostring(result or "null")
        lines[#lines + 1] = "INFO  orchestrator finished"
    else
        local message = type(result) == "table" and tostring(result.message or result) or tostring(result)
        response.FunctionError = "Unhandled"
        response.Payload = kind == "Event" and ""
            or string.format('{"errorMessage":%s,"errorType":"Error","stackTrace":[]}', json_string(message))
        lines[#lines + 1] = "ERROR Invoke Error " .. message
    end
    lines[#lines + 1] = "END RequestId: " .. request_id
    lines[#lines + 1] = string.format(
        "REPORT RequestId: %s\tDuration: 412.37 ms\tBilled Duration: 413 ms\tMemory Size: 256 MB\tMax Memory Used: 88 MB",
        request_id
    )
    for _, line in ipairs(lines) do
        logs.append(w, region, fn.log_group, line)
    end
    if p.LogType == "Tail" and kind == "RequestResponse" then
        local text = table.concat(lines, "\n") .. "\n"
        response.LogResult = util.base64(text:sub(-4096))
    end
    return response
end

return M
