-- The real http backend: libcurl, through atlas.net (which owns the url policy).
local net = require "atlas.net"

local M = {}

-- A request that changes something goes out once: on a fresh connection,
-- which libcurl never re-sends on its own (engine/curl.c).
local function transport_options(req, options)
    if not require("atlas.http").is_mutating(req.method) then return options end
    local out = { fresh_connect = true }
    for k, v in pairs(options or {}) do
        out[k] = v
    end
    return out
end

-- atlas.http builds the error object, the same one the mock world's faults produce.
local function http_error(req, message, code) return require("atlas.http").transport_error(req, message, code) end

-- request(req, options) -> response | nil, err
function M.request(req, options)
    local response, message, code = net.request(req, transport_options(req, options))
    if not response then return nil, http_error(req, message, code) end
    return response
end

-- request_many(reqs, options) -> list of responses or http error objects, in
-- order (options: a parallel list). All requests run at once (curl multi): the
-- wall time is that of the slowest, so three stalled endpoints cost one timeout, not three.
function M.request_many(reqs, options)
    local out, each = {}, {}
    for i, req in ipairs(reqs) do
        each[i] = transport_options(req, options and options[i])
    end
    for i, result in ipairs(net.request_many(reqs, each)) do
        local response, message, code = table.unpack(result, 1, 3)
        out[i] = response or http_error(reqs[i], message, code)
    end
    return out
end

return M
