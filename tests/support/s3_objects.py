#!/usr/bin/env python3
"""An independent client (boto3) for objects in an S3 bucket on moto.
Usage: s3_objects.py ENDPOINT_URL BUCKET list PREFIX   prints [{"key", "body"}, ...] as JSON, sorted by key
       s3_objects.py ENDPOINT_URL BUCKET put KEY BODY [KEY BODY ...]  writes the objects"""
import json
import sys

import boto3


def main(endpoint, bucket, command, *args):
    s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=endpoint,
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    if command == "put":
        for key, body in zip(args[::2], args[1::2]):
            s3.put_object(Bucket=bucket, Key=key, Body=body.encode())
        return
    out = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=args[0]):
        for item in page.get("Contents", []):
            text = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read().decode()
            out.append({"key": item["Key"], "body": text})
    out.sort(key=lambda o: o["key"])
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main(*sys.argv[1:])
