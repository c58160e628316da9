-- Shared plumbing of the service helpers (atlas.ecs, atlas.rds, ...).
-- A helper takes one table: lowercase control keys (region, profile, endpoint,
-- timeout, connect_timeout, max_attempts, ...) and the API's own parameters, AWS-cased exactly as in
-- boto3 and the AWS API reference (ECS's are camelCase: cluster, desiredCount).
local aws = require "atlas.aws"

local errors = require "atlas.errors"

local M = {}

-- A server that keeps inventing cursors must not keep a playbook busy forever.
M.MAX_PAGES = 1000

-- split(args, extra_control) -> control table, params table (a copy)
-- Control: the region and atlas.aws's control keys (aws.OPTIONS, aws.CONTROLS),
-- which go to aws.call whole, as its options; params: everything else.
function M.split(args, extra)
    assert(type(args) == "table", "expected a table of arguments")
    local control, params = {}, {}
    for k, v in pairs(args) do
        if k == "region" or aws.OPTIONS[k] or aws.CONTROLS[k] or (extra and extra[k]) then
            control[k] = v
        else
            params[k] = v
        end
    end
    return control, params
end

-- send(service, action, control, params) -> response: a call whose control
-- keys and params are already apart (split), as aws.call's options and call.
function M.send(service, action, control, params)
    return aws.call({ service = service, action = action, region = control.region, params = params }, control)
end

-- call(service, action, args, extra_control) -> response
function M.call(service, action, args, extra)
    local control, params = M.split(args, extra)
    return M.send(service, action, control, params)
end

-- paginate(service, action, args, {input=token param, output=token field, items=list field,
--   more=truncation flag (optional), limit=max items}) -> concatenated list
function M.paginate(service, action, args, spec)
    local control, params = M.split(args, spec.extra)
    local items = {}
    local pages = 0
    while true do
        pages = pages + 1
        if pages > M.MAX_PAGES then
            errors.raise {
                kind = "aws",
                code = "TooManyPages",
                service = service,
                action = action,
                region = control.region,
                message = string.format("still paginating after %d pages; giving up", M.MAX_PAGES),
            }
        end
        local page_params = {}
        for k, v in pairs(params) do
            page_params[k] = v
        end
        local resp = M.send(service, action, control, page_params)
        for _, item in ipairs(resp[spec.items] or {}) do
            items[#items + 1] = item
            if spec.limit and #items >= spec.limit then return require("atlas.json").array(items) end
        end
        local token = resp[spec.output]
        if
            token == nil
            or token == require("atlas.json").null
            or token == ""
            or (spec.more and not resp[spec.more])
        then
            break
        end
        -- A server that hands back the cursor it was given would loop forever: stop instead.
        local changed = false
        if type(spec.input) == "table" then
            -- several cursor fields (Route53 NextRecordName/Type/Identifier)
            for out_name, in_name in pairs(spec.input) do
                if params[in_name] ~= resp[out_name] then changed = true end
                params[in_name] = resp[out_name]
            end
        else
            changed = params[spec.input] ~= token
            params[spec.input] = token
        end
        if not changed then
            require("atlas.run.log").warn("%s %s: the service repeated its pagination cursor; stopping", service, action)
            break
        end
    end
    return require("atlas.json").array(items)
end

-- wait(args, waiter) -> the value of the successful poll (nil in a dry run)
-- A service helper's waiter on aws.wait. args is the caller's table: region,
-- profile and endpoint go to every poll; delay (nil: the service's pace) and
-- timeout (nil: waiter.timeout) go to the wait only, since a poll would read
-- timeout as its own call's. waiter is aws.wait's table (name, service,
-- action, acceptors, progress, timeout) plus describe, the helper each poll
-- calls, and params, that helper's own parameters.
function M.wait(args, waiter)
    local opts = {}
    for k, v in pairs(waiter) do
        opts[k] = v
    end
    opts.describe, opts.params = nil, nil
    opts.region, opts.delay, opts.timeout = args.region, args.delay, args.timeout or waiter.timeout
    opts.poll = function()
        local call = { region = args.region, profile = args.profile, endpoint = args.endpoint }
        for k, v in pairs(waiter.params) do
            call[k] = v
        end
        return waiter.describe(call)
    end
    return aws.wait(opts)
end

return M
