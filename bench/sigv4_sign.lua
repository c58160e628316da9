-- CPU per SigV4 signature, in one warm process:
--   N=20000 atlas-run -e 'dofile("bench/sigv4_sign.lua")'
-- prints "sigv4_us_per_sign <x>" for the request atlas.aws sends for ECS DescribeServices
-- (JSON 1.1, two headers, a cache hit for the signing key), alternating two secrets as a
-- run with two regions' profiles does. SIGV4_MODULE names the module (default atlas.aws.sigv4).
local sigv4 = require(os.getenv("SIGV4_MODULE") or "atlas.aws.sigv4")
local n = tonumber(os.getenv("N") or "20000")
local creds = {
    { access_key_id = "AKIAIOSFODNN7EXAMPLE", secret_access_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY" },
    { access_key_id = "ASIAIOSFODNN7EXAMPLE", secret_access_key = "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY", session_token = "FwoGZXIvYXdzEBYaDH" },
}
local body = '{"cluster":"atlas-crm-production-cluster-us-east-1","services":["atlas-crm-production-service-us-east-1"]}'
local function request(i)
    return {
        method = "POST",
        url = "https://ecs.us-east-1.amazonaws.com/",
        headers = {
            ["Content-Type"] = "application/x-amz-json-1.1",
            ["X-Amz-Target"] = "AmazonEC2ContainerServiceV20141113.DescribeServices",
        },
        body = body,
        region = "us-east-1",
        service = "ecs",
        credentials = creds[i % 2 + 1],
    }
end
for i = 1, 200 do
    sigv4.sign(request(i))
end
local started = os.clock()
for i = 1, n do
    sigv4.sign(request(i))
end
print(string.format("sigv4_us_per_sign %.2f", (os.clock() - started) / n * 1e6))
