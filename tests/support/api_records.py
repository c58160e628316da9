#!/usr/bin/env python3
"""Prints, as JSON, what an independent client (boto3) sees of the failover
state in a moto server: the api.atlas-crm.com records (health checks named by
the domain they check) and each region's ECS desired/running counts.
Usage: api_records.py ENDPOINT_URL"""
import json
import sys

import boto3

def view(endpoint):
    kw = dict(endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing")
    r53 = boto3.client("route53", region_name="us-east-1", **kw)
    zone = [z for z in r53.list_hosted_zones()["HostedZones"] if z["Name"] == "atlas-crm.com."][0]
    checks = {h["Id"]: h["HealthCheckConfig"].get("FullyQualifiedDomainName") for h in r53.list_health_checks()["HealthChecks"]}
    records = []
    for page in r53.get_paginator("list_resource_record_sets").paginate(HostedZoneId=zone["Id"]):
        for r in page["ResourceRecordSets"]:
            if r["Name"] == "api.atlas-crm.com." and "SetIdentifier" in r:
                records.append({
                    "id": r["SetIdentifier"],
                    "value": r["ResourceRecords"][0]["Value"],
                    "ttl": r.get("TTL"),
                    "location": r.get("GeoLocation"),
                    "health_check": checks.get(r.get("HealthCheckId")),
                })
    records.sort(key=lambda r: r["id"])
    ecs = {}
    for region in ["eu-west-1", "us-east-1", "ap-southeast-1"]:
        client = boto3.client("ecs", region_name=region, **kw)
        s = client.describe_services(cluster=f"atlas-crm-production-cluster-{region}",
                                     services=[f"atlas-crm-production-service-{region}"])["services"][0]
        ecs[region] = {"desired": s["desiredCount"], "running": s["runningCount"]}
    return {"records": records, "ecs": ecs}


if __name__ == "__main__":
    print(json.dumps(view(sys.argv[1]), sort_keys=True))
