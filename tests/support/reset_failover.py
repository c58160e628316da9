#!/usr/bin/env python3
"""Put what a failover changes back to the seeded layout in a moto server, with boto3:
the api.atlas-crm.com records (each region's record to its own regional name and health check,
the default to us-east-1) and every region's ECS service at 2 tasks. Lets a test fail over many
times against one seeded moto. Usage: reset_failover.py ENDPOINT_URL (or reset() from failover_server.py)"""
import sys

import boto3

CONTINENT = {"eu-west-1": "EU", "us-east-1": "NA", "ap-southeast-1": "AS"}


def reset(endpoint):
    kw = dict(endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing")
    r53 = boto3.client("route53", region_name="us-east-1", **kw)
    zone = [z for z in r53.list_hosted_zones()["HostedZones"] if z["Name"] == "atlas-crm.com."][0]["Id"]
    checks = {h["HealthCheckConfig"].get("FullyQualifiedDomainName"): h["Id"]
              for h in r53.list_health_checks()["HealthChecks"]}

    def record(identifier, location, region):
        return {"Action": "UPSERT", "ResourceRecordSet": {
            "Name": "api.atlas-crm.com", "Type": "CNAME", "SetIdentifier": identifier, "GeoLocation": location,
            "TTL": 60, "ResourceRecords": [{"Value": f"{region}.atlas-crm.com"}],
            "HealthCheckId": checks[f"{region}.atlas-crm.com"]}}

    changes = [record(region, {"ContinentCode": continent}, region) for region, continent in CONTINENT.items()]
    changes.append(record("default", {"CountryCode": "*"}, "us-east-1"))
    r53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": changes})
    for region in CONTINENT:
        boto3.client("ecs", region_name=region, **kw).update_service(
            cluster=f"atlas-crm-production-cluster-{region}", service=f"atlas-crm-production-service-{region}",
            desiredCount=2)


if __name__ == "__main__":
    reset(sys.argv[1])
