-- `atlas-run new NAME`: a playbook to start from, and its tests.
--
-- Writes playbooks/NAME.lua and tests/NAME_test.lua in the current
-- directory (a team's repository). The skeleton shows each part a playbook
-- usually needs: typed parameters, a step that changes the world with a
-- confirmation and an undo, a wait with a timeout, and a check. Both files
-- pass `atlas-run check` and `atlas-run test` as written, so the first
-- change a team makes starts from green.
local sys = require "atlas.sys"
local errors = require "atlas.errors"

local M = {}

local PLAYBOOK = [==[
-- __NAME__: scale a region's ECS service to a number of tasks and wait until
-- they run. A skeleton from `atlas-run new`: change it to what your runbook
-- says, keeping the shape (parameters, confirm, undo, wait, verify).
local atlas = require "atlas"
local ecs = require "atlas.ecs"
local env = require "atlas.env"

local function service_args(region)
    return { region = region, cluster = env.cluster(region), service = env.service(region) }
end

return atlas.playbook {
    name = "__NAME__",
    description = "Scale a region's ECS service and wait for its tasks",
    params = {
        region = { type = "region", required = true, description = "the region whose service to scale" },
        desired_count = { type = "integer", default = 4, min = 1, max = 50, description = "tasks to run" },
        timeout = { type = "duration", default = "15m", description = "how long to wait for the tasks" },
    },
    steps = {
        {
            name = "scale the service",
            mutates = true,
            -- The step asks itself (atlas.confirm) once it knows the change;
            -- --yes answers for an unattended drill.
            confirm = true,
            run = function(ctx)
                local args = service_args(ctx.params.region)
                local s = ecs.describe_service(args)
                if not s then ctx.fail("%s: service %s not found", args.region, args.service) end
                atlas.confirm(string.format("Scale %s in %s from %d to %d tasks?", args.service, args.region,
                    s.desiredCount, ctx.params.desired_count))
                args.desiredCount = ctx.params.desired_count
                -- Kept in the journal: the undo and a --resume need it.
                ctx.state.previous_count = ecs.set_desired_count(args)
            end,
            -- --rollback puts the count back.
            undo = function(ctx)
                local args = service_args(ctx.params.region)
                args.desiredCount = ctx.state.previous_count
                ecs.set_desired_count(args)
            end,
        },
        {
            name = "wait for the tasks",
            run = function(ctx)
                local args = service_args(ctx.params.region)
                ecs.wait_stable {
                    region = args.region,
                    cluster = args.cluster,
                    services = { args.service },
                    timeout = ctx.params.timeout,
                }
            end,
        },
        {
            name = "verify",
            run = function(ctx)
                -- Exit 0 is a promise: look at the world, never assume.
                local s = ecs.describe_service(service_args(ctx.params.region))
                if not s or s.runningCount < ctx.params.desired_count then
                    ctx.fail("%s runs %s of %d tasks", ctx.params.region, s and s.runningCount or "none",
                        ctx.params.desired_count)
                end
                atlas.log("%s runs %d tasks", ctx.params.region, s.runningCount)
            end,
        },
    },
}
]==]

local TEST = [==[
-- Tests for playbooks/__NAME__.lua, in the mock world: `atlas-run test tests/__NAME___test.lua`.
-- docs/testing.md describes each helper used here.
local t = require "atlas.test"

t.case("scales the service and waits until its tasks run", function()
    local world = t.world("healthy")
    local result = t.run_playbook("__NAME__", { region = "us-east-1", desired_count = "6" }, { world = world })
    t.eq(result.status, "ok")
    t.eq(world:snapshot().ecs["us-east-1"].running, 6)
end)

t.case("a service that cannot start its tasks ends failed, not ok", function()
    local world = t.world("healthy")
    world:stall_service("us-east-1")
    local result = t.run_playbook("__NAME__", { region = "us-east-1", timeout = "5m" }, { world = world })
    t.eq(result.status, "failed")
    t.eq(result.exit, 1)
end)

t.case("--rollback puts the count back when a later step fails", function()
    local world = t.world("healthy")
    world:stall_service("us-east-1")
    local before = world:snapshot().ecs["us-east-1"].desired
    local result = t.run_playbook("__NAME__", { region = "us-east-1", timeout = "5m" }, { world = world, rollback = true })
    t.eq(result.status, "failed")
    t.eq(world:snapshot().ecs["us-east-1"].desired, before)
end)
]==]

-- new.write(name, dir) -> the paths written; a usage error for a bad name
-- or a file that is already there (nothing is overwritten).
function M.write(name, dir)
    if type(name) ~= "string" or not name:match("^[%a_][%w_]*$") then
        errors.raise {
            kind = "usage",
            message = string.format("new: %q is not a playbook name (letters, digits and _, as a Lua name)", tostring(name)),
        }
    end
    dir = dir or "."
    local files = {
        { path = dir .. "/playbooks/" .. name .. ".lua", text = PLAYBOOK },
        { path = dir .. "/tests/" .. name .. "_test.lua", text = TEST },
    }
    for _, f in ipairs(files) do
        if sys.stat(f.path) then
            errors.raise { kind = "usage", message = "new: " .. f.path .. " exists; nothing was written" }
        end
    end
    local written = {}
    for _, f in ipairs(files) do
        local ok, err = sys.mkdir(f.path:match("^(.*)/[^/]*$"))
        if ok then ok, err = sys.write_atomic(f.path, (f.text:gsub("__NAME__", name)), 420) end
        if not ok then errors.raise { kind = "usage", message = "new: " .. tostring(err) } end
        written[#written + 1] = f.path
    end
    return written
end

return M
