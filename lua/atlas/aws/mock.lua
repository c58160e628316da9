-- The mock AWS backend: the same contract as atlas.aws.real, answered by the
-- current mock world (atlas.runtime.world). atlas.aws above it does the
-- retries, dry-run and logging, so an injected throttle is retried exactly
-- as a real one would be.
local errors = require "atlas.errors"

local M = {}

local function current_world()
    local world = require("atlas.run.runtime").world
    if not world then error("atlas.aws.mock: no mock world is current (runtime.use_world or --mock)", 2) end
    return world
end

-- invoke(req, options) -> response | nil, err   (req = {service=, action=, region=, params=, ...});
-- the world needs none of the options (endpoint, timeouts): it answers at once.
function M.invoke(req, options)
    local world = current_world()
    local ok, result = pcall(world.aws_invoke, world, req.service, req.action, req.region, req.params)
    if ok then return result end
    if errors.is(result) then return nil, result end
    -- A bug in the mock world itself: let it surface with its message.
    error(result, 0)
end

-- invoke_many(reqs, options) -> { response | error object, ... } in request order.
function M.invoke_many(reqs, options)
    local results = {}
    for i, req in ipairs(reqs) do
        local response, err = M.invoke(req)
        results[i] = response or err
    end
    return results
end

return M
