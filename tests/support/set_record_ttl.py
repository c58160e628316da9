#!/usr/bin/env python3
"""An operator's change by hand, made with boto3: sets the TTL of one
api.atlas-crm.com record, everything else kept.
Usage: set_record_ttl.py ENDPOINT_URL SET_IDENTIFIER TTL"""
import sys

import boto3

endpoint, identifier, ttl = sys.argv[1], sys.argv[2], int(sys.argv[3])
kw = dict(endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing")
r53 = boto3.client("route53", region_name="us-east-1", **kw)
zone = [z for z in r53.list_hosted_zones()["HostedZones"] if z["Name"] == "atlas-crm.com."][0]
for page in r53.get_paginator("list_resource_record_sets").paginate(HostedZoneId=zone["Id"]):
    for r in page["ResourceRecordSets"]:
        if r["Name"] == "api.atlas-crm.com." and r.get("SetIdentifier") == identifier:
            r["TTL"] = ttl
            r53.change_resource_record_sets(
                HostedZoneId=zone["Id"],
                ChangeBatch={"Changes": [{"Action": "UPSERT", "ResourceRecordSet": r}]},
            )
            sys.exit(0)
sys.exit(f"no record {identifier}")
