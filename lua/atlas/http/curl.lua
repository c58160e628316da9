-- The real http backend: one libcurl request.
local curl = require "atlas.curl"
local errors = require "atlas.errors"

local M = {}

function M.request(req)
    local response, message, code = curl.request {
        method = req.method,
        url = req.url,
        headers = req.headers,
        body = req.body,
        timeout = req.timeout,
        connect_timeout = req.connect_timeout or math.min(req.timeout, 5),
    }
    if not response then
        errors.raise {
            kind = "http",
            code = code,
            message = message,
            url = req.url,
            method = req.method,
            retryable = code ~= "policy",
        }
    end
    return response
end

return M
