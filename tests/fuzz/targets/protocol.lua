-- Each AWS protocol's response and error decoder (atlas.aws.protocol.decode) on any body.
-- Input: byte 1 picks the service (json, query, rest-xml, rest-json), byte 2 the status
-- (a success or an error), the rest is the body. Property: a response table, or nil and an
-- atlas error object; never a raise, never a bare Lua error.
local protocol = require "atlas.aws.protocol"

local CALLS = {
    { "ecs", "DescribeServices" },
    { "rds", "DescribeDBInstances" },
    { "cloudwatch", "ListMetrics" },
    { "route53", "ListResourceRecordSets" },
    { "lambda", "GetFunction" },
}
local STATUSES = { 200, 200, 200, 400, 403, 404, 429, 500, 503, 204 }

return function(data)
    if #data < 2 then return end
    local call = CALLS[data:byte(1) % #CALLS + 1]
    local status = STATUSES[data:byte(2) % #STATUSES + 1]
    local resp = {
        status = status,
        headers = { ["x-amzn-requestid"] = "r-1", ["x-amzn-errortype"] = data:byte(2) % 3 == 0 and "Throttling:x" or nil },
        body = data:sub(3),
    }
    local ok, value, err = pcall(protocol.decode, protocol.service(call[1]), call[2], "eu-west-1", resp)
    if not ok then fuzz.fail(call[1] .. " decode raised: " .. tostring(value)) end
    if value == nil then
        if type(err) ~= "table" or err.kind ~= "aws" or type(err.code) ~= "string" then
            fuzz.fail(call[1] .. " failure is not an aws error object: " .. tostring(err))
        end
        if status >= 200 and status < 300 and err.code == nil then fuzz.fail("a 2xx failure without a code") end
    elseif type(value) ~= "table" then
        fuzz.fail(call[1] .. " decoded to a " .. type(value))
    end
end
