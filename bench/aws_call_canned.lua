-- CPU per aws.call above the transport: a warm DescribeServices loop in which libcurl is
-- replaced by a canned 200 answer (atlas.net.curl, the hook atlas.net offers tests), so what is measured is
-- endpoint, request building, signing, decoding and the call bookkeeping, free of the network
-- and of the server's noise.
--   AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_EC2_METADATA_DISABLED=true \
--   N=20000 atlas-run -e 'dofile("bench/aws_call_canned.lua")'
-- prints "aws_call_canned_us <x>".
local aws = require "atlas.aws"
local n = tonumber(os.getenv("N") or "20000")
local body = '{"services":[{"serviceName":"atlas-crm-production-service-us-east-1","status":"ACTIVE",'
    .. '"desiredCount":4,"runningCount":4,"pendingCount":0,"deployments":[{"status":"PRIMARY","desiredCount":4,'
    .. '"runningCount":4,"rolloutState":"COMPLETED"}]}],"failures":[]}'
require("atlas.net").curl = {
    request = function()
        return { status = 200, headers = { ["x-amzn-requestid"] = "r" }, body = body, elapsed = 0, reused = true }
    end,
}
local req = {
    service = "ecs",
    action = "DescribeServices",
    region = "us-east-1",
    params = { cluster = "atlas-crm-production-cluster-us-east-1", services = { "atlas-crm-production-service-us-east-1" } },
}
for _ = 1, 200 do
    aws.call(req)
end
local started = os.clock()
for _ = 1, n do
    assert(aws.call(req).services[1].serviceName)
end
print(string.format("aws_call_canned_us %.1f", (os.clock() - started) / n * 1e6))
