#!/usr/bin/env python3
"""Client CPU per DescribeServices call in one warm boto3 process (time.process_time)."""
import os
import time

import boto3

n = int(os.environ.get("N", "500"))
ecs = boto3.client("ecs", region_name="us-east-1")
kw = dict(cluster="atlas-crm-production-cluster-us-east-1", services=["atlas-crm-production-service-us-east-1"])
for _ in range(20):
    ecs.describe_services(**kw)
start = time.process_time()
for _ in range(n):
    assert ecs.describe_services(**kw)["services"][0]["serviceName"]
print("boto3_cpu_us_per_call %.1f" % ((time.process_time() - start) / n * 1e6))
