-- CPU per aws.call above the transport: a warm DescribeServices loop in which libcurl is
-- replaced by a canned 200 answer (atlas.net.curl, the hook atlas.net offers tests), so what is measured is
-- endpoint, request building, signing, decoding and the call bookkeeping, free of the network
-- and of the server's noise.
--   AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_EC2_METADATA_DISABLED=true \
--   N=20000 atlas-run -e 'dofile("bench/aws_call_canned.lua")'
-- prints "aws_call_canned_us <x>".
local aws = require "atlas.aws"
local n = tonumber(os.getenv("N") or "20000")
-- The canned answer: a 300-byte one, or what a caller set in CANNED
-- ({body=, headers=, reused=, label=}; bench/aws_call_canned_moto.lua).
local canned = CANNED
    or {
        body = '{"services":[{"serviceName":"atlas-crm-production-service-us-east-1","status":"ACTIVE",'
            .. '"desiredCount":4,"runningCount":4,"pendingCount":0,"deployments":[{"status":"PRIMARY","desiredCount":4,'
            .. '"runningCount":4,"rolloutState":"COMPLETED"}]}],"failures":[]}',
        headers = { ["x-amzn-requestid"] = "r" },
        reused = true,
        label = "aws_call_canned_us",
    }
require("atlas.net").curl = {
    request = function()
        -- A fresh header table each call, as the transport gives.
        local h = {}
        for k, v in pairs(canned.headers) do
            h[k] = v
        end
        return { status = 200, headers = h, body = canned.body, elapsed = 0, reused = canned.reused }
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
print(string.format("%s %.1f", canned.label, (os.clock() - started) / n * 1e6))
