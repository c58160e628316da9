-- aws_call_canned.lua with moto's own DescribeServices reply (1,205 bytes, 9 headers, captured
-- from the seeded moto of bench/aws_bench.sh) instead of a 300-byte one: the work above the
-- transport of the call bench/aws_cpu.lua makes, free of the network.
--   AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_EC2_METADATA_DISABLED=true \
--   AWS_ENDPOINT_URL=http://127.0.0.1:5000 N=20000 atlas-run -e 'dofile("bench/aws_call_canned_moto.lua")'
-- prints "aws_call_canned_moto_us <x>". With AWS_ENDPOINT_URL set, as in aws_bench.sh, the
-- endpoint is a custom loopback one, as against moto.
CANNED = {
    body = "{\"services\": [{\"serviceArn\": \"arn:aws:ecs:us-east-1:123456789012:service/atlas-crm-production-cluster-us-east-1/atlas-crm-production-service-us-east-1\", \"serviceName\": \"atlas-crm-production-service-us-east-1\", \"clusterArn\": \"arn:aws:ecs:us-east-1:123456789012:cluster/atlas-crm-production-cluster-us-east-1\", \"loadBalancers\": [], \"serviceRegistries\": [], \"status\": \"ACTIVE\", \"desiredCount\": 2, \"runningCount\": 2, \"pendingCount\": 0, \"launchType\": \"EC2\", \"taskDefinition\": \"arn:aws:ecs:us-east-1:123456789012:task-definition/atlas-crm-production-us-east-1:14\", \"taskSets\": [], \"deployments\": [{\"id\": \"ecs-svc/240869841171142066\", \"status\": \"PRIMARY\", \"taskDefinition\": \"arn:aws:ecs:us-east-1:123456789012:task-definition/atlas-crm-production-us-east-1:14\", \"desiredCount\": 2, \"pendingCount\": 2, \"runningCount\": 0, \"failedTasks\": 0, \"createdAt\": 1796171499.569, \"updatedAt\": 1796171499.569, \"launchType\": \"EC2\", \"platformFamily\": \"EC2\", \"rolloutState\": \"IN_PROGRESS\", \"rolloutStateReason\": \"ECS deployment ecs-svc/240869841171142066 in progress.\"}], \"events\": [], \"networkConfiguration\": {}, \"schedulingStrategy\": \"REPLICA\", \"deploymentController\": {\"type\": \"ECS\"}, \"propagateTags\": \"NONE\"}], \"failures\": []}",
    headers = { ["access-control-allow-origin"] = "*", ["connection"] = "close", ["content-length"] = "1205", ["content-type"] = "application/x-amz-json-1.1", ["date"] = "Wed, 02 Dec 2026 00:32:15 GMT", ["server"] = "Werkzeug/3.1.8 Python/3.11.7, amazon.com", ["x-amzn-requestid"] = "WKIPZN9Lij9FJETYfCSHztQkBC7JEbhlSyNWWZr4aEDHwHCszwBA" },
    reused = false,
    label = "aws_call_canned_moto_us",
}
dofile("bench/aws_call_canned.lua")
