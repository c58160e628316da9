-- The real http backend: one libcurl request.
local curl = require "atlas.curl"

local M = {}

local function curl_request(req)
    return {
        method = req.method,
        url = req.url,
        headers = req.headers,
        body = req.body,
        timeout = req.timeout,
        connect_timeout = req.connect_timeout or math.min(req.timeout, 5),
    }
end

-- atlas.http builds the error object, the same one the mock world's faults produce.
local function http_error(req, message, code) return require("atlas.http").transport_error(req, message, code) end

function M.request(req)
    local response, message, code = curl.request(curl_request(req))
    if not response then error(http_error(req, message, code), 0) end
    return response
end

-- request_many{req, ...} -> list of responses or http error objects, in
-- order. All requests run at once (curl multi): the wall time is that of
-- the slowest, so three stalled endpoints cost one timeout, not three.
function M.request_many(reqs)
    local wanted = {}
    for i, req in ipairs(reqs) do
        wanted[i] = curl_request(req)
    end
    local out = {}
    for i, result in ipairs(curl.request_many(wanted)) do
        out[i] = result.error and http_error(reqs[i], result.error, result.code) or result
    end
    return out
end

return M
