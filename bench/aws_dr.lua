-- The runbook's DR call sequence, as atlas-run makes it: describe the
-- eu-west-1 service, scale the us-east-1 service, find the hosted zone, wait
-- for us-east-1 to be stable. Run by bench/aws_bench.sh with
--   atlas-run -e 'dofile("bench/aws_dr.lua")'
local ecs = require "atlas.ecs"
local route53 = require "atlas.route53"

local eu = ecs.describe_services {
    region = "eu-west-1",
    cluster = "atlas-crm-production-cluster-eu-west-1",
    services = { "atlas-crm-production-service-eu-west-1" },
}
assert(eu.services[1].status == "ACTIVE")
ecs.update_service {
    region = "us-east-1",
    cluster = "atlas-crm-production-cluster-us-east-1",
    service = "atlas-crm-production-service-us-east-1",
    desiredCount = 4,
}
local zone = assert(route53.find_zone { name = "atlas-crm.com" })
local stable = ecs.wait_stable {
    region = "us-east-1",
    cluster = "atlas-crm-production-cluster-us-east-1",
    services = { "atlas-crm-production-service-us-east-1" },
}
assert(stable[1].runningCount == 4 and zone.Id)
