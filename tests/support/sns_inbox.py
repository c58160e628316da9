#!/usr/bin/env python3
"""An SNS topic in moto whose messages land in an SQS queue, so that a test can
read what was published.
Usage: sns_inbox.py ENDPOINT setup          -> {"topic": ARN, "queue": URL}
       sns_inbox.py ENDPOINT read QUEUE_URL  -> [{"subject": ..., "message": ...}, ...]"""
import json
import sys

import boto3

endpoint, command = sys.argv[1], sys.argv[2]
session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
sns = session.client("sns", endpoint_url=endpoint)
sqs = session.client("sqs", endpoint_url=endpoint)

if command == "setup":
    topic = sns.create_topic(Name="atlas-drills")["TopicArn"]
    queue = sqs.create_queue(QueueName="atlas-drills-inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    print(json.dumps({"topic": topic, "queue": queue}))
else:
    queue = sys.argv[3]
    got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
    out = []
    for m in got:
        envelope = json.loads(m["Body"])
        out.append({"subject": envelope.get("Subject"), "message": envelope.get("Message")})
    print(json.dumps(out))
