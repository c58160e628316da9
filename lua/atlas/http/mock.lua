-- The mock http backend: the mock world answers for its endpoints.
local errors = require "atlas.errors"

local M = {}

-- request(req, options) -> response | nil, err. The world's http_request takes
-- one table: the request, and the options it simulates (timeout, continent).
function M.request(req, options)
    -- The real transport's url rule (atlas.net) holds here too: a url it refuses never reaches the world.
    local allowed, why, code = require("atlas.net").check_url(req.url, options and options.allow_http)
    if not allowed then return nil, require("atlas.http").transport_error(req, why, code) end
    local world = require("atlas.run.runtime").world
    local asked = { method = req.method, url = req.url, headers = req.headers, body = req.body }
    asked.timeout, asked.continent = options and options.timeout, options and options.continent
    local ok, result = pcall(world.http_request, world, asked)
    if ok then return result end
    if errors.is(result) then return nil, result end
    error(result, 0) -- a bug in the mock world itself
end

-- The world answers at once, so one after another is as fast as at once.
function M.request_many(reqs, options)
    local out = {}
    for i, req in ipairs(reqs) do
        local response, err = M.request(req, options and options[i])
        out[i] = response or err
    end
    return out
end

return M
