-- Lambda in the mock world: the failover orchestrator in eu-west-1.
--
-- By default it reports which regions' health checks pass, the way the real
-- orchestrator decides whether to act; a test or scenario can replace its
-- code with w:set_lambda(name, function(payload, world) ... end). Each run
-- writes START/END/REPORT lines to its log group, and LogType=Tail returns
-- them base64-encoded as Lambda does.
local util = require "atlas.mock.util"
local env = require "atlas.env"

local M = {}

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
    state(w, env.FAILOVER_REGION)[env.FAILOVER_LAMBDA] = {
        name = env.FAILOVER_LAMBDA,
        arn = string.format("arn:aws:lambda:%s:%s:function:%s", env.FAILOVER_REGION, util.ACCOUNT, env.FAILOVER_LAMBDA),
        log_group = env.FAILOVER_LAMBDA_LOG_GROUP,
        handler = orchestrator,
        -- GetFunction's Configuration.State and LastUpdateStatus, and the
        -- reserved concurrency (nil: none reserved, the account's pool).
        state = "Active",
        last_update = "Successful",
        reserved = nil,
        modified = w.start_time - 30 * 86400,
    }
end

-- set_config(w, name, {state=, last_update=, reserved=, deleted=true}): the
-- function as the console or a failed deployment left it.
function M.set_config(w, name, fields)
    for _, region in ipairs(util.REGIONS) do
        local fn = state(w, region)[name]
        if fn then
            if fields.deleted then
                state(w, region)[name] = nil
                return
            end
            for k, v in pairs(fields) do
                fn[k] = v
            end
            return
        end
    end
    error("set_lambda_config: no function " .. tostring(name))
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

local function configuration(w, region, fn)
    return {
        FunctionName = fn.name,
        FunctionArn = fn.arn,
        Runtime = "python3.12",
        Role = string.format("arn:aws:iam::%s:role/atlas-failover", util.ACCOUNT),
        Handler = "index.handler",
        CodeSize = 2048,
        Description = "Fails a region over after 3 consecutive health-check failures",
        Timeout = 300,
        MemorySize = 256,
        LastModified = util.iso(fn.modified):gsub("Z$", ".000+0000"),
        CodeSha256 = "R9xwDqlGawqyCJ7yZBhfBHui2bRhsw+Fe1ICXLzkJUA=",
        Version = "$LATEST",
        TracingConfig = { Mode = "PassThrough" },
        State = fn.state,
        LastUpdateStatus = fn.last_update,
        PackageType = "Zip",
        Architectures = util.list { "x86_64" },
        EphemeralStorage = { Size = 512 },
        LoggingConfig = { LogFormat = "Text", LogGroup = fn.log_group },
    }
end

function H.GetFunction(w, region, p, ctx)
    local fn = find_function(w, region, ctx, p.FunctionName)
    local response = {
        Configuration = configuration(w, region, fn),
        Code = {
            RepositoryType = "S3",
            Location = string.format("https://awslambda-%s-tasks.s3.%s.amazonaws.com/snapshots/%s", region, region, fn.name),
        },
    }
    if fn.reserved ~= nil then response.Concurrency = { ReservedConcurrentExecutions = fn.reserved } end
    return response
end

function H.GetFunctionConcurrency(w, region, p, ctx)
    local fn = find_function(w, region, ctx, p.FunctionName)
    return { ReservedConcurrentExecutions = fn.reserved }
end

function H.Invoke(w, region, p, ctx)
    local fn = find_function(w, region, ctx, p.FunctionName)
    if fn.reserved == 0 then
        ctx:fail("TooManyRequestsException", "Rate Exceeded.", 429)
    end
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

-- Every new world builds this state and sends this module the calls to lambda.
require("atlas.mock.world").register { name = "lambda", build = M.build, handlers = { lambda = H } }

return M
