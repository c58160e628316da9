-- ECS helpers. Arguments: region (+ profile, endpoint) and ECS's own
-- camelCase parameters (cluster, services, service, desiredCount, ...).
local helper = require "atlas.aws.helper"
local json = require "atlas.json"

local M = {}

-- describe_services{region, cluster, services} -> {services = {...}, failures = {...}}
-- More than 10 services are asked in batches of 10 (the API's limit).
function M.describe_services(args)
    local control, params = helper.split(args)
    local names = params.services
    if type(names) == "string" then names = { names } end
    if type(names) ~= "table" or #names == 0 then error("ecs.describe_services: services (a list) is required", 2) end
    local out = { services = json.array({}), failures = json.array({}) }
    for first = 1, math.max(#names, 1), 10 do
        local p = {}
        for k, v in pairs(params) do
            p[k] = v
        end
        p.services = {}
        for i = first, math.min(first + 9, #names) do
            p.services[#p.services + 1] = names[i]
        end
        local resp = helper.send("ecs", "DescribeServices", control, p)
        for _, s in ipairs(resp.services or {}) do
            out.services[#out.services + 1] = s
        end
        for _, f in ipairs(resp.failures or {}) do
            out.failures[#out.failures + 1] = f
        end
    end
    return out
end

-- update_service{region, cluster, service, desiredCount?, taskDefinition?, forceNewDeployment?} -> {service=}
function M.update_service(args) return helper.call("ecs", "UpdateService", args) end

-- describe_service{region, cluster, service} -> the service, or nil when ECS reports it missing
function M.describe_service(args)
    local copy = {}
    for k, v in pairs(args) do
        copy[k] = v
    end
    copy.service, copy.services = nil, { args.service }
    return M.describe_services(copy).services[1]
end

-- existing_service{region, cluster, service} -> the service; raises ECS's own
-- ServiceNotFoundException when it is missing, as UpdateService would.
local function existing_service(args)
    local current = M.describe_service(args)
    if not current then
        require("atlas.errors").raise {
            kind = "aws",
            code = "ServiceNotFoundException",
            message = "service " .. tostring(args.service) .. " not found",
            service = "ecs",
            action = "DescribeServices",
            region = args.region,
        }
    end
    return current
end

-- update_if_different(args, field, extra) -> the service as it was, and UpdateService's
-- answer (a table, also in a dry run), or no answer when the service has args[field] already
-- Calls UpdateService (with args[field] and the extra control keys) only when
-- the service differs, so a rerun or --resume changes nothing.
local function update_if_different(args, field, extra)
    local current = existing_service(args)
    if current[field] == args[field] then return current end
    local call = {
        region = args.region,
        profile = args.profile,
        endpoint = args.endpoint,
        cluster = args.cluster,
        service = args.service,
        [field] = args[field],
    }
    for k, v in pairs(extra or {}) do
        call[k] = v
    end
    return current, M.update_service(call)
end

-- set_desired_count{region, cluster, service, desiredCount} -> the count it wanted before
-- Calls UpdateService only when the count differs; says what it did in the run's timeline.
function M.set_desired_count(args)
    local log = require "atlas.run.log"
    -- Setting a count twice is setting it once: safe to send again when
    -- a crash or a timeout hid whether the first one arrived.
    local current, resp = update_if_different(args, "desiredCount", { idempotent = true })
    if not resp then
        log.info("%s already wants %d tasks", args.region, current.desiredCount)
        return current.desiredCount
    end
    -- An answer that does not show the new count is not a change ECS made.
    local now = resp.service and resp.service.desiredCount
    if not require("atlas.run.runtime").dry_run and now ~= args.desiredCount then
        require("atlas.errors").raise {
            kind = "aws",
            code = "InvalidResponse",
            message = string.format(
                "UpdateService answered desired count %s, not %d; the service may not have changed",
                tostring(now),
                args.desiredCount
            ),
            service = "ecs",
            action = "UpdateService",
            region = args.region,
        }
    end
    log.info(
        "%s: desired count %d -> %d%s",
        args.region,
        current.desiredCount,
        args.desiredCount,
        require("atlas.run.runtime").dry_run and " (dry run: not changed)" or ""
    )
    log.change(
        string.format("ecs service %s (%s) desired count", args.service, args.region),
        current.desiredCount,
        args.desiredCount
    )
    return current.desiredCount
end

-- list_task_definitions{region, familyPrefix?, status?, sort?} -> list of ARNs (all pages)
function M.list_task_definitions(args)
    return helper.paginate(
        "ecs",
        "ListTaskDefinitions",
        args,
        { input = "nextToken", output = "nextToken", items = "taskDefinitionArns" }
    )
end

-- revision_of("arn:...:task-definition/atlas-crm-production-R:14" or "family:14") -> 14, or nil
function M.revision_of(ref) return tonumber(tostring(ref):match(":(%d+)$")) end

-- active_revisions{region, family} -> {[revision] = ARN} of the family's ACTIVE task
-- definitions: the ones UpdateService accepts (an INACTIVE one cannot be deployed).
function M.active_revisions(args)
    local arns = M.list_task_definitions {
        region = args.region,
        profile = args.profile,
        endpoint = args.endpoint,
        familyPrefix = args.family,
        status = "ACTIVE",
        sort = "DESC",
    }
    local by_revision = {}
    for _, arn in ipairs(arns) do
        -- familyPrefix also matches longer family names; keep this family's own
        local family, revision = tostring(arn):match("task%-definition/(.+):(%d+)$")
        if family == args.family then by_revision[tonumber(revision)] = arn end
    end
    return by_revision
end

-- active_revision{region, family, revision, active?} -> the ARN of family:revision, or nil
-- and why (naming the call and the region). active: a list from active_revisions, not asked again.
function M.active_revision(args)
    local active = args.active or M.active_revisions(args)
    if active[args.revision] then return active[args.revision] end
    local numbers = {}
    for r in pairs(active) do
        numbers[#numbers + 1] = r
    end
    table.sort(numbers)
    return nil,
        string.format(
            "%s:%d is not an active revision (ecs ListTaskDefinitions (%s): %s)",
            args.family,
            args.revision,
            tostring(args.region),
            #numbers == 0 and "the family has no active revision"
                or string.format("active revisions %d to %d", numbers[1], numbers[#numbers])
        )
end

-- deploy_task_definition{region, cluster, service, taskDefinition} -> the task definition it ran before
-- Calls UpdateService only when the service does not deploy it already; says
-- what it did in the run's timeline.
function M.deploy_task_definition(args)
    local log = require "atlas.run.log"
    local current, resp = update_if_different(args, "taskDefinition")
    if not resp then
        log.info("%s already deploys %s", args.region, args.taskDefinition)
        return current.taskDefinition
    end
    log.info(
        "%s: %s revision %s -> %s%s",
        args.region,
        tostring(args.service),
        tostring(M.revision_of(current.taskDefinition)),
        tostring(M.revision_of(args.taskDefinition)),
        require("atlas.run.runtime").dry_run and " (dry run: not changed)" or ""
    )
    return current.taskDefinition
end

-- describe_task_definition{region, taskDefinition} -> {taskDefinition=, tags=}
function M.describe_task_definition(args) return helper.call("ecs", "DescribeTaskDefinition", args) end

-- "us-east-1: 6/10 running, 2 deployments" (one service), or one such part per service.
local function progress_text(region, services)
    local parts = {}
    for _, s in ipairs(services) do
        local deployments = #(s.deployments or {})
        parts[#parts + 1] = string.format(
            "%s%d/%d running, %d deployment%s",
            #services > 1 and (s.serviceName .. " ") or "",
            s.runningCount or 0,
            s.desiredCount or 0,
            deployments,
            deployments == 1 and "" or "s"
        )
    end
    return (region or "?") .. ": " .. table.concat(parts, "; ")
end

-- The ECS services-stable rule, as in the AWS waiter definition.
local function failure_reason(resp)
    for _, f in ipairs(resp.failures or {}) do
        if f.reason == "MISSING" then return "service " .. tostring(f.arn) .. " is MISSING" end
    end
    for _, s in ipairs(resp.services or {}) do
        if s.status == "DRAINING" or s.status == "INACTIVE" then
            return "service " .. s.serviceName .. " is " .. s.status
        end
    end
end

local function all_stable(resp)
    if #(resp.services or {}) == 0 then return false end
    for _, s in ipairs(resp.services) do
        if #(s.deployments or {}) ~= 1 or s.runningCount ~= s.desiredCount then return false end
    end
    return true
end

M.is_stable = all_stable

-- wait_stable{region, cluster, services, timeout = 600, delay = aws.PACE.ecs} -> the stable services
-- Fails at once on MISSING, DRAINING or INACTIVE; raises kind "timeout" after timeout.
function M.wait_stable(args)
    local services = args.services
    if type(services) == "string" then services = { services } end
    local resp = helper.wait(args, {
        name = string.format("ECS services stable in %s (%s)", args.region or "?", table.concat(services, ", ")),
        service = "ecs",
        action = "DescribeServices",
        timeout = 600,
        describe = M.describe_services,
        params = { cluster = args.cluster, services = services },
        acceptors = {
            {
                state = "failure",
                matcher = function(r)
                    local why = failure_reason(r)
                    return why ~= nil, why
                end,
            },
            { state = "success", matcher = all_stable },
        },
        progress = function(r) return progress_text(args.region, r.services or {}) end,
    })
    return resp and resp.services
end

-- wait_running{region, cluster, service, count, timeout = 600, delay = aws.PACE.ecs} -> the service
-- Until at least `count` tasks run; fails at once on MISSING, DRAINING or
-- INACTIVE, raises kind "timeout" after timeout.
function M.wait_running(args)
    local resp = helper.wait(args, {
        name = string.format("%d running tasks in %s (%s)", args.count, args.region or "?", args.service),
        service = "ecs",
        action = "DescribeServices",
        timeout = 600,
        describe = M.describe_services,
        params = { cluster = args.cluster, services = { args.service } },
        acceptors = {
            {
                state = "failure",
                matcher = function(r)
                    local why = failure_reason(r)
                    return why ~= nil, why
                end,
            },
            {
                state = "success",
                matcher = function(r)
                    local s = (r.services or {})[1]
                    return s ~= nil and (s.runningCount or 0) >= args.count
                end,
            },
        },
        progress = function(r) return progress_text(args.region, r.services or {}) end,
    })
    return resp and resp.services[1]
end

M.progress_text = progress_text

return M
