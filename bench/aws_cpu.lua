-- Client CPU per DescribeServices call in one warm atlas-run process:
--   N=500 atlas-run -e 'dofile("bench/aws_cpu.lua")'
-- prints "atlas_cpu_us_per_call <x>". os.clock() is this process's CPU time
-- (user + system), so the server's time is not counted.
local aws = require "atlas.aws"
local n = tonumber(os.getenv("N") or "500")
local req = {
    service = "ecs",
    action = "DescribeServices",
    region = "us-east-1",
    params = {
        cluster = "atlas-crm-production-cluster-us-east-1",
        services = { "atlas-crm-production-service-us-east-1" },
    },
}
for _ = 1, 20 do
    aws.call(req)
end -- warm: credentials, shapes, connections
local started = os.clock()
for _ = 1, n do
    local r = aws.call(req)
    assert(r.services[1].serviceName)
end
print(string.format("atlas_cpu_us_per_call %.1f", (os.clock() - started) / n * 1e6))
