-- ECS (and its Application Auto Scaling target) in the mock world.
--
-- Each region has one cluster and one service. A service keeps a list of
-- deployments (PRIMARY first, then ACTIVE ones being replaced), each with
-- desired/running/pending counts. While a service has not converged, a
-- timer fires every ecs_task_start seconds (a latency of the world): one pending task of the primary
-- deployment starts, one task of an older deployment stops, surplus tasks
-- stop; when one deployment is left with running == desired, the rollout
-- completes and the service reports a steady state.
local util = require "atlas.mock.util"
local env = require "atlas.env"

local M = {}

local REVISIONS = 14
local EVENTS_KEPT = 100

local function names(region)
    return {
        cluster = env.cluster(region),
        service = env.service(region),
        family = env.task_family(region),
        log_group = env.log_group(region),
    }
end
M.names = names

local function arn(region, resource) return string.format("arn:aws:ecs:%s:%s:%s", region, util.ACCOUNT, resource) end

local function state(w, region)
    w.ecs = w.ecs or {}
    local s = w.ecs[region]
    if not s then
        s = { clusters = {}, task_defs = {} }
        w.ecs[region] = s
    end
    return s
end

-- Task definitions ----------------------------------------------------------

local function task_definition(w, region, family, revision)
    local n = names(region)
    local registered = w.start_time - (REVISIONS - revision + 1) * 6 * 86400
    return {
        taskDefinitionArn = arn(region, string.format("task-definition/%s:%d", family, revision)),
        family = family,
        revision = revision,
        status = "ACTIVE",
        taskRoleArn = string.format("arn:aws:iam::%s:role/atlas-crm-production-task-role", util.ACCOUNT),
        executionRoleArn = string.format("arn:aws:iam::%s:role/atlas-crm-production-execution-role", util.ACCOUNT),
        networkMode = "awsvpc",
        cpu = "1024",
        memory = "2048",
        requiresCompatibilities = util.list { "FARGATE" },
        compatibilities = util.list { "EC2", "FARGATE" },
        volumes = util.list(),
        placementConstraints = util.list(),
        requiresAttributes = util.list {
            { name = "com.amazonaws.ecs.capability.logging-driver.awslogs" },
            { name = "ecs.capability.execution-role-awslogs" },
            { name = "ecs.capability.task-eni" },
        },
        registeredAt = registered,
        registeredBy = string.format("arn:aws:iam::%s:role/atlas-deploy", util.ACCOUNT),
        containerDefinitions = util.list {
            {
                name = "app",
                image = string.format("%s.dkr.ecr.%s.amazonaws.com/atlas-crm:1.%d.0", util.ACCOUNT, region, revision),
                cpu = 1024,
                memory = 2048,
                essential = true,
                portMappings = util.list { { containerPort = 8080, hostPort = 8080, protocol = "tcp" } },
                environment = util.list {
                    { name = "AWS_REGION", value = region },
                    { name = "SPRING_PROFILES_ACTIVE", value = "production" },
                    {
                        name = "DB_HOST",
                        value = require("atlas.mock.rds").endpoint_address(env.db_instance(region), region),
                    },
                },
                secrets = util.list {
                    {
                        name = "DB_PASSWORD",
                        valueFrom = string.format(
                            "arn:aws:secretsmanager:%s:%s:secret:%s",
                            env.PRIMARY_REGION,
                            util.ACCOUNT,
                            env.PASSWORD_SECRET
                        ),
                    },
                },
                mountPoints = util.list(),
                volumesFrom = util.list(),
                logConfiguration = {
                    logDriver = "awslogs",
                    options = {
                        ["awslogs-group"] = n.log_group,
                        ["awslogs-region"] = region,
                        ["awslogs-stream-prefix"] = "ecs",
                    },
                },
                healthCheck = {
                    command = util.list { "CMD-SHELL", "curl -f http://localhost:8080/actuator/health || exit 1" },
                    interval = 30,
                    timeout = 5,
                    retries = 3,
                    startPeriod = 60,
                },
            },
        },
    }
end

-- Services ------------------------------------------------------------------

local function new_deployment(w, svc, task_def, desired, running)
    local id = "ecs-svc/" .. string.format("%019d", (w.seq * 982451653 + #svc.region * 7) % 9223372036854775807)
    w.seq = w.seq + 1
    return {
        id = id,
        status = "PRIMARY",
        taskDefinition = task_def,
        desiredCount = desired,
        runningCount = running,
        pendingCount = math.max(0, desired - running),
        failedTasks = 0,
        createdAt = w.t,
        updatedAt = w.t,
        rolloutState = running >= desired and "COMPLETED" or "IN_PROGRESS",
    }
end

-- svc.events is oldest first; DescribeServices shows the newest 100 first.
-- Like ECS, a message repeated within REPEAT_SECONDS is posted once.
local REPEAT_SECONDS = 300
local function service_event(w, svc, message)
    local events = svc.events
    local last = events[#events]
    if last and last.message == message and w.t - last.createdAt < REPEAT_SECONDS then return end
    w.seq = w.seq + 1
    events[#events + 1] = { id = util.uuid(w.seq), createdAt = w.t, message = message }
    if #events > 2 * EVENTS_KEPT then
        table.move(events, #events - EVENTS_KEPT + 1, #events, 1)
        for i = #events, EVENTS_KEPT + 1, -1 do
            events[i] = nil
        end
    end
end

local function app_log(w, svc, message)
    require("atlas.mock.logs").append(w, svc.region, names(svc.region).log_group, message)
end

local function converged(svc)
    local primary = svc.deployments[1]
    return #svc.deployments == 1 and primary.runningCount == svc.desiredCount
end

local function refresh_counts(svc)
    local primary = svc.deployments[1]
    primary.desiredCount = svc.desiredCount
    primary.pendingCount = (svc.status == "ACTIVE") and math.max(0, svc.desiredCount - primary.runningCount) or 0
end

local schedule

-- One step of the scheduler for one service.
local function step(w, svc)
    svc.timer = nil
    if svc.status ~= "ACTIVE" then return end
    local primary = svc.deployments[1]
    local name = "(service " .. svc.serviceName .. ")"
    if primary.runningCount < svc.desiredCount and svc.stalled then
        primary.failedTasks = primary.failedTasks + 1
        primary.updatedAt = w.t
        service_event(w, svc, name .. " is unable to consistently start tasks successfully.")
    elseif primary.runningCount < svc.desiredCount then
        primary.runningCount = primary.runningCount + 1
        primary.updatedAt = w.t
        local task = util.hex_digits(w.seq * 31 + 7, 32)
        w.seq = w.seq + 1
        service_event(w, svc, string.format("%s has started 1 tasks: (task %s).", name, task))
        app_log(
            w,
            svc,
            string.format(
                "INFO  [main] c.a.crm.AtlasCrmApplication : Started AtlasCrmApplication in 14.%d seconds (task %s)",
                w.seq % 10,
                task:sub(1, 8)
            )
        )
        -- Minimum healthy 100 %: an old task stops only once its
        -- replacement runs.
        local old = svc.deployments[2]
        if old and old.runningCount > 0 then
            old.runningCount = old.runningCount - 1
            old.updatedAt = w.t
        end
    elseif primary.runningCount > svc.desiredCount then
        local stopped = primary.runningCount - svc.desiredCount
        primary.runningCount = svc.desiredCount
        primary.updatedAt = w.t
        service_event(w, svc, string.format("%s has stopped %d running tasks.", name, stopped))
    else
        -- The new deployment is complete: drain what is left of the old ones.
        for i = 2, #svc.deployments do
            svc.deployments[i].runningCount = 0
        end
    end
    for i = #svc.deployments, 2, -1 do
        local old = svc.deployments[i]
        if old.runningCount == 0 then table.remove(svc.deployments, i) end
    end
    refresh_counts(svc)
    if converged(svc) then
        if primary.rolloutState ~= "COMPLETED" then
            primary.rolloutState = "COMPLETED"
            primary.rolloutStateReason = "ECS deployment " .. primary.id .. " completed."
            service_event(w, svc, name .. " deployment " .. primary.id .. " completed.")
        end
        service_event(w, svc, name .. " has reached a steady state.")
    else
        schedule(w, svc)
    end
end

function schedule(w, svc)
    if not svc.timer and svc.status == "ACTIVE" then
        svc.timer = w:after_latency("ecs_task_start", function(world) step(world, svc) end, "ecs:" .. svc.region)
    end
end

local function unschedule(svc)
    if svc.timer then
        svc.timer.cancelled = true
        svc.timer = nil
    end
end

local function build_service(w, region, cluster, td_arn)
    local n = names(region)
    local svc = {
        region = region,
        serviceName = n.service,
        serviceArn = arn(region, "service/" .. n.cluster .. "/" .. n.service),
        clusterArn = cluster.clusterArn,
        status = "ACTIVE",
        desiredCount = 2,
        createdAt = w.start_time - 400 * 86400,
        events = {},
        min_capacity = 2,
        max_capacity = 10,
        scalable_target_created = w.start_time - 400 * 86400,
    }
    local first = new_deployment(w, svc, td_arn, 2, 2)
    first.createdAt = w.start_time - 6 * 86400
    first.updatedAt = first.createdAt
    first.rolloutStateReason = "ECS deployment " .. first.id .. " completed."
    svc.deployments = { first }
    service_event(w, svc, "(service " .. n.service .. ") has reached a steady state.")
    svc.events[#svc.events].createdAt = w.start_time - 3 * 3600
    return svc
end

function M.build(w)
    for _, region in ipairs(util.REGIONS) do
        local s = state(w, region)
        local n = names(region)
        -- Revisions are listed from light records; the full definition is
        -- built the first time someone describes it.
        local family = { revisions = {}, full = {} }
        for revision = 1, REVISIONS do
            family.revisions[revision] = {
                taskDefinitionArn = arn(region, string.format("task-definition/%s:%d", n.family, revision)),
                status = "ACTIVE",
                build = function() return task_definition(w, region, n.family, revision) end,
            }
        end
        s.task_defs[n.family] = family
        local cluster = {
            clusterName = n.cluster,
            clusterArn = arn(region, "cluster/" .. n.cluster),
            services = {},
        }
        s.clusters[n.cluster] = cluster
        cluster.services[n.service] = build_service(w, region, cluster, family.revisions[REVISIONS].taskDefinitionArn)
    end
end

-- Lookups -------------------------------------------------------------------

local function last_segment(name_or_arn) return (tostring(name_or_arn):match("([^/]+)$")) end

local function find_cluster(w, region, ctx, name_or_arn)
    local name = last_segment(name_or_arn or "default")
    local cluster = state(w, region).clusters[name]
    if not cluster then ctx:fail("ClusterNotFoundException", "Cluster not found.") end
    return cluster
end

local function find_service(w, region, ctx, cluster, name_or_arn)
    local svc = cluster.services[last_segment(name_or_arn)]
    if not svc then ctx:fail("ServiceNotFoundException", "Service not found.") end
    return svc
end

-- family, family:revision or a task-definition ARN -> the definition or nil
local function find_task_definition(w, region, ref)
    ref = tostring(ref)
    local body = ref:match("task%-definition/(.+)$") or ref
    local family, revision = body:match("^(.+):(%d+)$")
    family = family or body
    local fam = state(w, region).task_defs[family]
    if not fam then return nil end
    local n = revision and tonumber(revision) or #fam.revisions
    local light = fam.revisions[n]
    if not light then return nil end
    if not fam.full[n] then
        fam.full[n] = light.build()
        fam.full[n].status = light.status
    end
    return fam.full[n]
end

function M.service(w, region)
    local s = w.ecs and w.ecs[region]
    if not s then return nil end
    -- Asked at every refresh of the world: two names, not the whole set.
    local cluster = s.clusters[env.cluster(region)]
    return cluster and cluster.services[env.service(region)]
end

function M.running_count(w, region)
    local svc = M.service(w, region)
    if not svc or svc.status ~= "ACTIVE" then return 0 end
    local total = 0
    for _, d in ipairs(svc.deployments) do
        total = total + d.runningCount
    end
    return total
end

-- Responses -----------------------------------------------------------------

local network_by_region = {}
local function network_configuration(region)
    local nc = network_by_region[region]
    if not nc then
        nc = {
            awsvpcConfiguration = {
                subnets = util.list {
                    "subnet-0a" .. util.hex_digits(#region * 3, 15),
                    "subnet-0b" .. util.hex_digits(#region * 5, 15),
                },
                securityGroups = util.list { "sg-0" .. util.hex_digits(#region * 11, 16) },
                assignPublicIp = "DISABLED",
            },
        }
        network_by_region[region] = nc
    end
    return util.copy(nc)
end

local function deployment_view(region, d)
    return {
        id = d.id,
        status = d.status,
        taskDefinition = d.taskDefinition,
        desiredCount = d.desiredCount,
        pendingCount = d.pendingCount,
        runningCount = d.runningCount,
        failedTasks = d.failedTasks,
        createdAt = d.createdAt,
        updatedAt = d.updatedAt,
        launchType = "FARGATE",
        platformVersion = "1.4.0",
        platformFamily = "Linux",
        networkConfiguration = network_configuration(region),
        rolloutState = d.rolloutState,
        rolloutStateReason = d.rolloutStateReason,
    }
end

local function service_view(svc)
    local running, pending = 0, 0
    local deployments = util.list()
    for i, d in ipairs(svc.deployments) do
        running = running + d.runningCount
        pending = pending + d.pendingCount
        deployments[i] = deployment_view(svc.region, d)
    end
    local events = util.list()
    for i = #svc.events, math.max(1, #svc.events - EVENTS_KEPT + 1), -1 do
        local e = svc.events[i]
        events[#events + 1] = { id = e.id, createdAt = e.createdAt, message = e.message }
    end
    local primary = svc.deployments[1]
    return {
        serviceArn = svc.serviceArn,
        serviceName = svc.serviceName,
        clusterArn = svc.clusterArn,
        loadBalancers = util.list {
            {
                targetGroupArn = string.format(
                    "arn:aws:elasticloadbalancing:%s:%s:targetgroup/atlas-crm-production-tg/%s",
                    svc.region,
                    util.ACCOUNT,
                    util.hex_digits(#svc.region, 16)
                ),
                containerName = "app",
                containerPort = 8080,
            },
        },
        serviceRegistries = util.list(),
        status = svc.status,
        desiredCount = svc.desiredCount,
        runningCount = svc.status == "ACTIVE" and running or 0,
        pendingCount = svc.status == "ACTIVE" and pending or 0,
        launchType = "FARGATE",
        platformVersion = "LATEST",
        platformFamily = "Linux",
        taskDefinition = primary.taskDefinition,
        deploymentConfiguration = {
            deploymentCircuitBreaker = { enable = true, rollback = true },
            maximumPercent = 200,
            minimumHealthyPercent = 100,
            strategy = "ROLLING",
        },
        deployments = deployments,
        roleArn = string.format(
            "arn:aws:iam::%s:role/aws-service-role/ecs.amazonaws.com/AWSServiceRoleForECS",
            util.ACCOUNT
        ),
        events = events,
        createdAt = svc.createdAt,
        placementConstraints = util.list(),
        placementStrategy = util.list(),
        networkConfiguration = network_configuration(svc.region),
        healthCheckGracePeriodSeconds = 60,
        schedulingStrategy = "REPLICA",
        deploymentController = { type = "ECS" },
        createdBy = string.format("arn:aws:iam::%s:role/atlas-deploy", util.ACCOUNT),
        enableECSManagedTags = true,
        propagateTags = "SERVICE",
        enableExecuteCommand = false,
        availabilityZoneRebalancing = "ENABLED",
    }
end

local function cluster_view(w, region, cluster)
    local running, pending, active = 0, 0, 0
    for _, svc in pairs(cluster.services) do
        if svc.status == "ACTIVE" then
            active = active + 1
            for _, d in ipairs(svc.deployments) do
                running = running + d.runningCount
                pending = pending + d.pendingCount
            end
        end
    end
    return {
        clusterArn = cluster.clusterArn,
        clusterName = cluster.clusterName,
        status = "ACTIVE",
        registeredContainerInstancesCount = 0,
        runningTasksCount = running,
        pendingTasksCount = pending,
        activeServicesCount = active,
        statistics = util.list(),
        tags = util.list(),
        settings = util.list { { name = "containerInsights", value = "enabled" } },
        capacityProviders = util.list { "FARGATE", "FARGATE_SPOT" },
        defaultCapacityProviderStrategy = util.list(),
    }
end

-- Handlers ------------------------------------------------------------------

local H = {}

function H.DescribeServices(w, region, p, ctx)
    local cluster = find_cluster(w, region, ctx, p.cluster)
    local services, failures = util.list(), util.list()
    local list = util.as_list(ctx:need(p, "services"))
    if #list > 10 then ctx:fail("InvalidParameterException", "services can have at most 10 items.") end
    local with_tags = false
    for _, include in ipairs(util.as_list(p.include)) do
        with_tags = with_tags or include == "TAGS"
    end
    for _, ref in ipairs(list) do
        local svc = cluster.services[last_segment(ref)]
        if svc then
            local view = service_view(svc)
            if with_tags then
                view.tags = util.list {
                    { key = "Environment", value = "production" },
                    { key = "Application", value = "atlas-crm" },
                }
            end
            services[#services + 1] = view
        else
            local missing = tostring(ref):match("^arn:") and ref
                or arn(region, "service/" .. cluster.clusterName .. "/" .. tostring(ref))
            failures[#failures + 1] = { arn = missing, reason = "MISSING" }
        end
    end
    return { services = services, failures = failures }
end

function H.UpdateService(w, region, p, ctx)
    local cluster = find_cluster(w, region, ctx, p.cluster)
    local svc = find_service(w, region, ctx, cluster, ctx:need(p, "service"))
    if svc.status ~= "ACTIVE" then ctx:fail("ServiceNotActiveException", "Service was not ACTIVE.") end
    local desired = p.desiredCount
    if desired ~= nil then
        if math.type(desired) ~= "integer" and not (type(desired) == "number" and desired == math.floor(desired)) then
            ctx:fail("InvalidParameterException", "desiredCount must be an integer.")
        end
        if desired < 0 then
            ctx:fail("InvalidParameterException", "The desired count must be greater than or equal to 0.")
        end
        svc.desiredCount = math.tointeger(desired)
    end
    local new_td
    if p.taskDefinition ~= nil then
        local td = find_task_definition(w, region, p.taskDefinition)
        if not td then ctx:fail("ClientException", "TaskDefinition not found.") end
        if td.taskDefinitionArn ~= svc.deployments[1].taskDefinition then new_td = td.taskDefinitionArn end
    end
    if new_td or p.forceNewDeployment then
        local primary = svc.deployments[1]
        primary.status = "ACTIVE"
        primary.desiredCount = primary.runningCount
        primary.pendingCount = 0
        local deployment = new_deployment(w, svc, new_td or primary.taskDefinition, svc.desiredCount, 0)
        deployment.rolloutStateReason = "ECS deployment " .. deployment.id .. " in progress."
        table.insert(svc.deployments, 1, deployment)
        service_event(w, svc, "(service " .. svc.serviceName .. ") has begun draining connections on 0 tasks.")
    end
    refresh_counts(svc)
    if not converged(svc) then
        local primary = svc.deployments[1]
        if primary.rolloutState == "COMPLETED" and primary.runningCount ~= svc.desiredCount then
            primary.updatedAt = w.t
        end
        schedule(w, svc)
    end
    return { service = service_view(svc) }
end

function H.DescribeClusters(w, region, p, ctx)
    local clusters, failures = util.list(), util.list()
    local refs = p.clusters and util.as_list(p.clusters) or { "default" }
    for _, ref in ipairs(refs) do
        local cluster = state(w, region).clusters[last_segment(ref)]
        if cluster then
            clusters[#clusters + 1] = cluster_view(w, region, cluster)
        else
            local missing = tostring(ref):match("^arn:") and ref or arn(region, "cluster/" .. tostring(ref))
            failures[#failures + 1] = { arn = missing, reason = "MISSING" }
        end
    end
    return { clusters = clusters, failures = failures }
end

function H.ListClusters(w, region, p, ctx)
    local arns = {}
    for _, name in ipairs(util.sorted_keys(state(w, region).clusters)) do
        arns[#arns + 1] = state(w, region).clusters[name].clusterArn
    end
    local page, token = util.page(arns, p.nextToken, p.maxResults, 100)
    return { clusterArns = page, nextToken = token }
end

function H.ListServices(w, region, p, ctx)
    local cluster = find_cluster(w, region, ctx, p.cluster)
    local arns = {}
    for _, name in ipairs(util.sorted_keys(cluster.services)) do
        local svc = cluster.services[name]
        if svc.status == "ACTIVE" then arns[#arns + 1] = svc.serviceArn end
    end
    local page, token = util.page(arns, p.nextToken, p.maxResults, 10)
    return { serviceArns = page, nextToken = token }
end

function H.ListTaskDefinitions(w, region, p, ctx)
    local status = p.status or "ACTIVE"
    local arns = {}
    for _, family in ipairs(util.sorted_keys(state(w, region).task_defs)) do
        if p.familyPrefix == nil or family:sub(1, #p.familyPrefix) == p.familyPrefix then
            for _, td in ipairs(state(w, region).task_defs[family].revisions) do
                if td.status == status then arns[#arns + 1] = td.taskDefinitionArn end
            end
        end
    end
    if p.sort == "DESC" then
        local reversed = {}
        for i = #arns, 1, -1 do
            reversed[#reversed + 1] = arns[i]
        end
        arns = reversed
    elseif p.sort ~= nil and p.sort ~= "ASC" then
        ctx:fail("InvalidParameterException", "sort must be ASC or DESC.")
    end
    local page, token = util.page(arns, p.nextToken, p.maxResults, 100)
    return { taskDefinitionArns = page, nextToken = token }
end

function H.DescribeTaskDefinition(w, region, p, ctx)
    local td = find_task_definition(w, region, ctx:need(p, "taskDefinition"))
    if not td then ctx:fail("ClientException", "Unable to describe task definition.") end
    local response = { taskDefinition = util.copy(td) }
    for _, include in ipairs(util.as_list(p.include)) do
        if include == "TAGS" then
            response.tags = util.list {
                { key = "Environment", value = "production" },
                { key = "Application", value = "atlas-crm" },
            }
        end
    end
    return response
end

-- Application Auto Scaling: the service's 2..10 bounds ----------------------

local A = {}

local function resource_id(svc) return "service/" .. svc.clusterArn:match("cluster/(.+)$") .. "/" .. svc.serviceName end

local function scalable_target_view(svc)
    return {
        ServiceNamespace = "ecs",
        ResourceId = resource_id(svc),
        ScalableDimension = "ecs:service:DesiredCount",
        MinCapacity = svc.min_capacity,
        MaxCapacity = svc.max_capacity,
        RoleARN = string.format(
            "arn:aws:iam::%s:role/aws-service-role/ecs.application-autoscaling.amazonaws.com/AWSServiceRoleForApplicationAutoScaling_ECSService",
            util.ACCOUNT
        ),
        CreationTime = svc.scalable_target_created,
        SuspendedState = {
            DynamicScalingInSuspended = false,
            DynamicScalingOutSuspended = false,
            ScheduledScalingSuspended = false,
        },
        ScalableTargetARN = string.format(
            "arn:aws:application-autoscaling:%s:%s:scalable-target/0e%s",
            svc.region,
            util.ACCOUNT,
            util.hex_digits(#svc.region * 13, 30)
        ),
    }
end

local function services_in(w, region)
    local out = {}
    for _, cname in ipairs(util.sorted_keys(state(w, region).clusters)) do
        local cluster = state(w, region).clusters[cname]
        for _, sname in ipairs(util.sorted_keys(cluster.services)) do
            out[#out + 1] = cluster.services[sname]
        end
    end
    return out
end

function A.DescribeScalableTargets(w, region, p, ctx)
    if ctx:need(p, "ServiceNamespace") ~= "ecs" then return { ScalableTargets = util.list() } end
    local wanted
    if p.ResourceIds then
        wanted = {}
        for _, id in ipairs(util.as_list(p.ResourceIds)) do
            wanted[id] = true
        end
    end
    local targets = {}
    for _, svc in ipairs(services_in(w, region)) do
        if not wanted or wanted[resource_id(svc)] then targets[#targets + 1] = scalable_target_view(svc) end
    end
    local page, token = util.page(targets, p.NextToken, p.MaxResults, 50)
    return { ScalableTargets = page, NextToken = token }
end

function A.RegisterScalableTarget(w, region, p, ctx)
    ctx:need(p, "ServiceNamespace")
    local id = ctx:need(p, "ResourceId")
    for _, svc in ipairs(services_in(w, region)) do
        if resource_id(svc) == id then
            svc.min_capacity = p.MinCapacity or svc.min_capacity
            svc.max_capacity = p.MaxCapacity or svc.max_capacity
            if svc.min_capacity > svc.max_capacity then
                ctx:fail("ValidationException", "Minimum capacity cannot be greater than maximum capacity")
            end
            -- Application Auto Scaling moves the desired count into the new
            -- bounds right away.
            local desired = math.max(svc.min_capacity, math.min(svc.max_capacity, svc.desiredCount))
            if desired ~= svc.desiredCount then
                svc.desiredCount = desired
                refresh_counts(svc)
                schedule(w, svc)
            end
            return { ScalableTargetARN = scalable_target_view(svc).ScalableTargetARN }
        end
    end
    ctx:fail("ValidationException", "ECS service doesn't exist: " .. id)
end

-- Test and scenario helpers -----------------------------------------------

function M.set_service(w, region, fields)
    local svc = assert(M.service(w, region), "no ECS service in " .. tostring(region))
    if fields.status then svc.status = fields.status end
    if fields.desired then svc.desiredCount = fields.desired end
    if fields.running then
        -- Forcing the running count collapses the service to one deployment.
        for i = #svc.deployments, 2, -1 do
            svc.deployments[i] = nil
        end
        svc.deployments[1].runningCount = fields.running
    end
    refresh_counts(svc)
    if fields.pending then svc.deployments[1].pendingCount = fields.pending end
    if converged(svc) then
        svc.deployments[1].rolloutState = "COMPLETED"
        unschedule(svc)
    else
        svc.deployments[1].rolloutState = "IN_PROGRESS"
        schedule(w, svc)
    end
end

function M.stall_service(w, region, stalled)
    local svc = assert(M.service(w, region), "no ECS service in " .. tostring(region))
    svc.stalled = stalled
    if not converged(svc) then schedule(w, svc) end
end

function M.add_service_event(w, region, message, at)
    local svc = assert(M.service(w, region))
    service_event(w, svc, message)
    if at then svc.events[#svc.events].createdAt = at end
end

-- Every new world builds this state and sends this module the calls to ecs and application-autoscaling.
require("atlas.mock.world").register { name = "ecs", build = M.build, handlers = { ecs = H, ["application-autoscaling"] = A } }

return M
