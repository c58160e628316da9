-- ECS in the mock world: shapes, errors, and tasks converging in virtual time.
local t = require "atlas.test"
local World = require "atlas.mock.world"

local U, E = "us-east-1", "eu-west-1"
local CLUSTER = "atlas-crm-production-cluster-us-east-1"
local SERVICE = "atlas-crm-production-service-us-east-1"

local function describe(w, region)
    region = region or U
    return w:aws_invoke("ecs", "DescribeServices", region, {
        cluster = "atlas-crm-production-cluster-" .. region,
        services = { "atlas-crm-production-service-" .. region },
    }).services[1]
end

local function update(w, params)
    params.cluster = params.cluster or CLUSTER
    params.service = params.service or SERVICE
    return w:aws_invoke("ecs", "UpdateService", U, params).service
end

t.case("DescribeServices has the boto3 shape: arrays, numbers, the service's configuration", function()
    local w = World.new {}
    local r = w:aws_invoke("ecs", "DescribeServices", U, { cluster = CLUSTER, services = { SERVICE } })
    t.eq(#r.services, 1)
    t.eq(#r.failures, 0)
    local s = r.services[1]
    t.eq(s.serviceArn, "arn:aws:ecs:us-east-1:123456789012:service/" .. CLUSTER .. "/" .. SERVICE)
    t.eq(s.clusterArn, "arn:aws:ecs:us-east-1:123456789012:cluster/" .. CLUSTER)
    t.eq(s.status, "ACTIVE")
    t.eq(math.type(s.desiredCount), "integer")
    t.eq(s.taskDefinition, "arn:aws:ecs:us-east-1:123456789012:task-definition/atlas-crm-production-us-east-1:14")
    t.eq(s.deployments[1].taskDefinition, s.taskDefinition)
    t.eq(s.deployments[1].rolloutState, "COMPLETED")
    t.eq(type(s.deployments[1].createdAt), "number")
    t.eq(s.loadBalancers[1].containerName, "app")
    t.match(s.events[1].message, "has reached a steady state")
    t.eq(s.deploymentConfiguration.minimumHealthyPercent, 100)
    t.eq(s.tags, nil)
    local tagged =
        w:aws_invoke("ecs", "DescribeServices", U, { cluster = CLUSTER, services = { SERVICE }, include = { "TAGS" } })
    t.eq(tagged.services[1].tags[1], { key = "Environment", value = "production" })
end)

t.case("DescribeServices reports an unknown service as a MISSING failure, an unknown cluster as an error", function()
    local w = World.new {}
    local r = w:aws_invoke("ecs", "DescribeServices", U, { cluster = CLUSTER, services = { SERVICE, "ghost" } })
    t.eq(#r.services, 1)
    t.eq(
        r.failures,
        { { arn = "arn:aws:ecs:us-east-1:123456789012:service/" .. CLUSTER .. "/ghost", reason = "MISSING" } }
    )
    -- ARNs are accepted where names are.
    r = w:aws_invoke(
        "ecs",
        "DescribeServices",
        U,
        { cluster = "arn:aws:ecs:us-east-1:123456789012:cluster/" .. CLUSTER, services = { r.services[1].serviceArn } }
    )
    t.eq(r.services[1].serviceName, SERVICE)
    t.raises(
        function() w:aws_invoke("ecs", "DescribeServices", U, { cluster = "nope", services = { SERVICE } }) end,
        "ClusterNotFoundException: Cluster not found."
    )
    -- Each region only knows its own cluster.
    t.raises(
        function() w:aws_invoke("ecs", "DescribeServices", E, { cluster = CLUSTER, services = { SERVICE } }) end,
        "ClusterNotFoundException"
    )
end)

t.case("UpdateService errors: unknown service, negative count, unknown task definition", function()
    local w = World.new {}
    t.raises(function() update(w, { service = "ghost", desiredCount = 3 }) end, "ServiceNotFoundException")
    t.raises(function() update(w, { desiredCount = -1 }) end, "InvalidParameterException")
    t.raises(function() update(w, { taskDefinition = "atlas-crm-production-us-east-1:99" }) end, "ClientException")
    t.eq(describe(w).desiredCount, 2)
end)

t.case("scaling 2 -> 10 starts one task every 30 s and converges after 4 minutes", function()
    local w = World.new {}
    local s = update(w, { desiredCount = 10 })
    t.eq({ s.desiredCount, s.runningCount, s.pendingCount }, { 10, 2, 8 })
    local seen = {}
    for _ = 1, 9 do
        w:advance(30)
        local d = describe(w)
        seen[#seen + 1] = d.runningCount
    end
    t.eq(seen, { 3, 4, 5, 6, 7, 8, 9, 10, 10 })
    local d = describe(w)
    t.eq({ d.runningCount, d.pendingCount, #d.deployments }, { 10, 0, 1 })
    t.match(d.events[1].message, "steady state")
end)

t.case("scaling down stops the surplus tasks at the next step", function()
    local w = World.new {}
    update(w, { desiredCount = 1 })
    t.eq(describe(w).runningCount, 2)
    w:advance(30)
    local d = describe(w)
    t.eq({ d.runningCount, d.pendingCount }, { 1, 0 })
end)

t.case("a new deployment replaces tasks one by one and collapses to one PRIMARY deployment", function()
    local w = World.new {}
    local s = update(w, { taskDefinition = "atlas-crm-production-us-east-1:13" })
    t.eq(#s.deployments, 2)
    t.eq(s.deployments[1].status, "PRIMARY")
    t.eq(s.deployments[1].rolloutState, "IN_PROGRESS")
    t.eq(s.deployments[2].status, "ACTIVE")
    t.eq(
        s.deployments[1].taskDefinition,
        "arn:aws:ecs:us-east-1:123456789012:task-definition/atlas-crm-production-us-east-1:13"
    )
    w:advance(30)
    local d = describe(w)
    t.eq({ d.deployments[1].runningCount, d.deployments[2].runningCount }, { 1, 1 })
    -- Never below the desired count while replacing (minimum healthy 100 %).
    t.eq(d.runningCount, 2)
    w:advance(60)
    d = describe(w)
    t.eq(#d.deployments, 1)
    t.eq(d.deployments[1].rolloutState, "COMPLETED")
    t.eq(d.runningCount, 2)
    t.eq(d.taskDefinition, "arn:aws:ecs:us-east-1:123456789012:task-definition/atlas-crm-production-us-east-1:13")
end)

t.case("forceNewDeployment starts a new deployment of the same task definition", function()
    local w = World.new {}
    local s = update(w, { forceNewDeployment = true })
    t.eq(#s.deployments, 2)
    t.ok(s.deployments[1].id ~= s.deployments[2].id)
    w:advance(600)
    t.eq(#describe(w).deployments, 1)
end)

t.case("a stalled service never converges and counts failed tasks", function()
    local w = World.new {}
    w:stall_service(U)
    update(w, { desiredCount = 6 })
    w:advance(3600)
    local d = describe(w)
    t.eq({ d.runningCount, d.pendingCount, d.desiredCount }, { 2, 4, 6 })
    t.ok(d.deployments[1].failedTasks >= 100)
    t.match(d.events[1].message, "unable to consistently start tasks")
    w:stall_service(U, false)
    w:advance(120)
    t.eq(describe(w).runningCount, 6)
end)

t.case("set_service forces counts and status for tests", function()
    local w = World.new {}
    w:set_service(U, { running = 0, desired = 3 })
    local d = describe(w)
    t.eq({ d.runningCount, d.desiredCount, d.pendingCount }, { 0, 3, 3 })
    w:set_service(U, { status = "DRAINING" })
    t.eq(describe(w).status, "DRAINING")
    t.raises(function() update(w, { desiredCount = 4 }) end, "ServiceNotActiveException")
end)

t.case("task definitions: families with revisions 1..14, container app, paging", function()
    local w = World.new {}
    local r = w:aws_invoke("ecs", "ListTaskDefinitions", U, { familyPrefix = "atlas-crm-production-us-east-1" })
    t.eq(#r.taskDefinitionArns, 14)
    t.eq(r.nextToken, nil)
    t.match(r.taskDefinitionArns[1], ":1$")
    local page1 = w:aws_invoke("ecs", "ListTaskDefinitions", U, { sort = "DESC", maxResults = 10 })
    t.eq(#page1.taskDefinitionArns, 10)
    t.match(page1.taskDefinitionArns[1], "us%-east%-1:14$")
    t.ok(page1.nextToken)
    local page2 =
        w:aws_invoke("ecs", "ListTaskDefinitions", U, { sort = "DESC", maxResults = 10, nextToken = page1.nextToken })
    t.eq(#page2.taskDefinitionArns, 4)
    t.match(page2.taskDefinitionArns[4], "us%-east%-1:1$")
    local td =
        w:aws_invoke("ecs", "DescribeTaskDefinition", U, { taskDefinition = "atlas-crm-production-us-east-1" }).taskDefinition
    t.eq({ td.family, td.revision, td.containerDefinitions[1].name }, { "atlas-crm-production-us-east-1", 14, "app" })
    t.eq(td.containerDefinitions[1].logConfiguration.options["awslogs-group"], "/ecs/atlas-crm-production-us-east-1")
    td =
        w:aws_invoke("ecs", "DescribeTaskDefinition", U, { taskDefinition = "atlas-crm-production-us-east-1:3" }).taskDefinition
    t.eq(td.revision, 3)
    t.raises(
        function() w:aws_invoke("ecs", "DescribeTaskDefinition", U, { taskDefinition = "nope:1" }) end,
        "ClientException"
    )
end)

t.case("DescribeClusters and ListServices", function()
    local w = World.new {}
    local r =
        w:aws_invoke("ecs", "DescribeClusters", E, { clusters = { "atlas-crm-production-cluster-eu-west-1", "ghost" } })
    t.eq(r.clusters[1].clusterName, "atlas-crm-production-cluster-eu-west-1")
    t.eq(r.clusters[1].runningTasksCount, 2)
    t.eq(r.clusters[1].activeServicesCount, 1)
    t.eq(r.failures[1].reason, "MISSING")
    local l = w:aws_invoke("ecs", "ListServices", E, { cluster = "atlas-crm-production-cluster-eu-west-1" })
    t.eq(l.serviceArns, {
        "arn:aws:ecs:eu-west-1:123456789012:service/atlas-crm-production-cluster-eu-west-1/atlas-crm-production-service-eu-west-1",
    })
end)

t.case("the autoscaling target holds the 2..10 bounds and moves the desired count into new bounds", function()
    local w = World.new {}
    local r = w:aws_invoke("application-autoscaling", "DescribeScalableTargets", U, { ServiceNamespace = "ecs" })
    t.eq(#r.ScalableTargets, 1)
    t.eq({ r.ScalableTargets[1].MinCapacity, r.ScalableTargets[1].MaxCapacity }, { 2, 10 })
    t.eq(r.ScalableTargets[1].ResourceId, "service/" .. CLUSTER .. "/" .. SERVICE)
    w:aws_invoke("application-autoscaling", "RegisterScalableTarget", U, {
        ServiceNamespace = "ecs",
        ResourceId = "service/" .. CLUSTER .. "/" .. SERVICE,
        ScalableDimension = "ecs:service:DesiredCount",
        MinCapacity = 6,
        MaxCapacity = 20,
    })
    t.eq(describe(w).desiredCount, 6)
end)

t.case("the ECS waiter of atlas.ecs runs unchanged on the mock world, in virtual time", function()
    local w = t.world()
    local ecs = require "atlas.ecs"
    ecs.update_service { region = U, cluster = CLUSTER, service = SERVICE, desiredCount = 10 }
    local started = w:now()
    local services = ecs.wait_stable { region = U, cluster = CLUSTER, services = { SERVICE }, timeout = 900 }
    t.eq(services[1].runningCount, 10)
    local waited = w:now() - started
    t.ok(waited >= 240 and waited <= 270, "waited " .. waited .. " s of virtual time")
end)

t.case("the ECS waiter times out on a stalled service", function()
    local w = t.world()
    w:stall_service(U)
    local ecs = require "atlas.ecs"
    ecs.update_service { region = U, cluster = CLUSTER, service = SERVICE, desiredCount = 10 }
    local err = t.raises(
        function() ecs.wait_stable { region = U, cluster = CLUSTER, services = { SERVICE }, timeout = 300 } end
    )
    t.eq(err.kind, "timeout")
    t.eq(describe(w).runningCount, 2)
end)

t.case("active_revisions and active_revision: only the family's ACTIVE revisions, a missing one named with the call and region", function()
    local w = t.world()
    local ecs = require "atlas.ecs"
    local family = "atlas-crm-production-eu-west-1"
    w.ecs[E].task_defs[family].revisions[13].status = "INACTIVE"
    local active = ecs.active_revisions { region = E, family = family }
    t.eq(active[14], "arn:aws:ecs:eu-west-1:123456789012:task-definition/" .. family .. ":14")
    t.eq(active[13], nil, "an INACTIVE revision cannot be deployed")
    t.eq(ecs.active_revision { region = E, family = family, revision = 12 }, active[12])
    for _, revision in ipairs { 13, 99 } do
        local arn, why = ecs.active_revision { region = E, family = family, revision = revision }
        t.eq(arn, nil)
        t.eq(
            why,
            family .. ":" .. revision
                .. " is not an active revision (ecs ListTaskDefinitions (eu-west-1): active revisions 1 to 14)"
        )
    end
    t.eq(ecs.revision_of(active[12]), 12)
    t.eq(ecs.revision_of(family .. ":7"), 7)
end)

t.case("deploy_task_definition starts a deployment once; a rerun sends nothing", function()
    local w = t.world()
    local ecs = require "atlas.ecs"
    local family = "atlas-crm-production-us-east-1"
    local target = ecs.active_revision { region = U, family = family, revision = 12 }
    local args = { region = U, cluster = CLUSTER, service = SERVICE, taskDefinition = target }
    local before
    t.capture(function() before = ecs.deploy_task_definition(args) end)
    t.eq(ecs.revision_of(before), 14)
    t.eq(describe(w).taskDefinition, target)
    t.eq(#describe(w).deployments, 2)
    t.eq(#w:calls_to("ecs", "UpdateService"), 1)
    t.capture(function() t.eq(ecs.deploy_task_definition(args), target) end)
    t.eq(#w:calls_to("ecs", "UpdateService"), 1, "already deploying it: no second UpdateService")
end)

t.case("set_desired_count changes the count once and says so; a rerun sends nothing; an answer without it raises", function()
    local w = t.world()
    local ecs = require "atlas.ecs"
    local args = { region = U, cluster = CLUSTER, service = SERVICE, desiredCount = 6 }
    local before
    local events = t.capture(function() before = ecs.set_desired_count(args) end)
    t.eq(before, 2)
    t.eq(describe(w).desiredCount, 6)
    t.match(t.messages(events), "us%-east%-1: desired count 2 %-> 6")
    local calls = w:calls_to("ecs", "UpdateService")
    t.eq({ #calls, calls[1].params.desiredCount, calls[1].params.idempotent }, { 1, 6, nil })
    events = t.capture(function() t.eq(ecs.set_desired_count(args), 6) end)
    t.match(t.messages(events), "us%-east%-1 already wants 6 tasks")
    t.eq(#w:calls_to("ecs", "UpdateService"), 1, "already so: no second UpdateService")
    w:inject { service = "ecs", action = "UpdateService", reply = { service = { desiredCount = 6 } }, times = 1 }
    local _, ok, err = t.capture(function() ecs.set_desired_count { region = U, cluster = CLUSTER, service = SERVICE, desiredCount = 8 } end)
    t.eq(ok, false)
    t.eq(err.code, "InvalidResponse")
    t.match(err.message, "UpdateService answered desired count 6, not 8")
end)
