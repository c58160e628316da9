-- The mock http backend: the mock world answers for its endpoints.
local M = {}

function M.request(req) return require("atlas.runtime").world:http_request(req) end

return M
