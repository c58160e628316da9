#!/usr/bin/env python3
"""Seed the reference environment (../shared/reference-environment.md) into a moto server with boto3.

  seed_moto.py ENDPOINT_URL

boto3, not atlas, writes the world, so the atlas tests read what an independent client wrote.
Prints a JSON summary (zone id, health check ids) on stdout.
"""
import io
import json
import sys
import time
import urllib.request
import zipfile

import boto3

REGIONS = ["eu-west-1", "us-east-1", "ap-southeast-1"]
CONTINENT = {"eu-west-1": "EU", "us-east-1": "NA", "ap-southeast-1": "AS"}
REVISIONS = 14
ACCOUNT = "123456789012"
ALB_IDS = {"eu-west-1": "50dc6c495c0c9188", "us-east-1": "6fa2a1b0c8d1e2f3", "ap-southeast-1": "0a1b2c3d4e5f6071"}


def client(name, region, endpoint):
    return boto3.client(name, region_name=region, endpoint_url=endpoint,
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def seed_ecs(endpoint, region):
    ecs = client("ecs", region, endpoint)
    cluster = f"atlas-crm-production-cluster-{region}"
    family = f"atlas-crm-production-{region}"
    service = f"atlas-crm-production-service-{region}"
    ecs.create_cluster(clusterName=cluster)
    for rev in range(1, REVISIONS + 1):
        ecs.register_task_definition(family=family, containerDefinitions=[{
            "name": "app", "image": f"atlas/crm:1.{rev}", "memory": 2048, "cpu": 1024, "essential": True,
            "portMappings": [{"containerPort": 8080}]}])
    ecs.create_service(cluster=cluster, serviceName=service, taskDefinition=f"{family}:{REVISIONS}",
                       desiredCount=2)
    # moto leaves runningCount at 0 until the service is updated (see docs/aws.md, moto notes).
    ecs.update_service(cluster=cluster, service=service, desiredCount=2)
    client("application-autoscaling", region, endpoint).register_scalable_target(
        ServiceNamespace="ecs", ResourceId=f"service/{cluster}/{service}",
        ScalableDimension="ecs:service:DesiredCount", MinCapacity=2, MaxCapacity=10)


def seed_rds(endpoint, region):
    rds = client("rds", region, endpoint)
    db = f"atlas-production-db-{region}"
    # The production parameter group: logical replication on (reference environment).
    group = "atlas-production-postgres15"
    rds.create_db_parameter_group(DBParameterGroupName=group, DBParameterGroupFamily="postgres15",
                                  Description="Atlas CRM production PostgreSQL 15")
    rds.modify_db_parameter_group(DBParameterGroupName=group, Parameters=[
        {"ParameterName": name, "ParameterValue": value, "ApplyMethod": "pending-reboot"}
        for name, value in [("rds.logical_replication", "1"), ("max_wal_senders", "10"),
                            ("max_replication_slots", "10")]])
    rds.create_db_instance(DBInstanceIdentifier=db, Engine="postgres", EngineVersion="15.4",
                           DBInstanceClass="db.r6g.xlarge", MultiAZ=True, DBName="atlas",
                           MasterUsername="atlas_admin", MasterUserPassword="moto-Atl4s-password",
                           AllocatedStorage=100, DBParameterGroupName=group)
    if region == "eu-west-1":
        rds.create_db_instance_read_replica(DBInstanceIdentifier=f"{db}-replica", SourceDBInstanceIdentifier=db,
                                            DBInstanceClass="db.r6g.xlarge", MultiAZ=False)
        for snap in ["atlas-production-snapshot-before-migration", "atlas-production-snapshot-latest"]:
            rds.create_db_snapshot(DBInstanceIdentifier=db, DBSnapshotIdentifier=snap)


def seed_logs(endpoint, region):
    logs = client("logs", region, endpoint)
    now = int(time.time() * 1000)
    groups = [f"/ecs/atlas-crm-production-{region}"]
    if region == "eu-west-1":
        groups.append("/aws/lambda/atlas-production-failover-orchestrator")
    for group in groups:
        logs.create_log_group(logGroupName=group)
        logs.create_log_stream(logGroupName=group, logStreamName="app/1")
        logs.put_log_events(logGroupName=group, logStreamName="app/1", logEvents=[
            {"timestamp": now - 60000 + i * 1000, "message": f"{region} event {i}" + (" ERROR" if i % 4 == 0 else "")}
            for i in range(12)])


def seed_cloudwatch(endpoint, region):
    cw = client("cloudwatch", region, endpoint)
    cw.put_metric_data(Namespace="AtlasCRM/Production", MetricData=[
        {"MetricName": "CrossRegionLatency", "Dimensions": [{"Name": "Region", "Value": region}],
         "Value": v, "Unit": "Milliseconds"} for v in (80.0, 120.0)])
    if region != "eu-west-1":
        cw.put_metric_data(Namespace="AtlasCRM/Production", MetricData=[
            {"MetricName": "ReplicationLag", "Dimensions": [{"Name": "Region", "Value": region}],
             "Value": 0.4, "Unit": "Seconds"}])
    # Real AWS publishes AWS/ namespaces itself; moto lets a client stand in for the ALB.
    alb = [{"Name": "LoadBalancer", "Value": f"app/atlas-crm-production-alb-{region}/{ALB_IDS[region]}"}]
    cw.put_metric_data(Namespace="AWS/ApplicationELB", MetricData=[
        {"MetricName": "RequestCount", "Dimensions": alb, "Value": 6000.0, "Unit": "Count"},
        {"MetricName": "HTTPCode_ELB_5XX_Count", "Dimensions": alb, "Value": 3.0, "Unit": "Count"},
        {"MetricName": "HTTPCode_Target_5XX_Count", "Dimensions": alb, "Value": 1.0, "Unit": "Count"}])
    cw.put_metric_alarm(AlarmName=f"atlas-crm-{region}-latency", Namespace="AtlasCRM/Production",
                        MetricName="CrossRegionLatency", Dimensions=[{"Name": "Region", "Value": region}],
                        Statistic="Average", Period=60, EvaluationPeriods=3, Threshold=200.0,
                        ComparisonOperator="GreaterThanThreshold")


def seed_eu_only(endpoint):
    region = "eu-west-1"
    client("secretsmanager", region, endpoint).create_secret(
        Name="atlas-db-master-password", SecretString="moto-Atl4s-password")
    iam = client("iam", "us-east-1", endpoint)
    role = iam.create_role(RoleName="atlas-failover", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                                                "Action": "sts:AssumeRole"}]}))["Role"]["Arn"]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("index.py", "def handler(event, context):\n    return event\n")
    function_arn = client("lambda", region, endpoint).create_function(
        FunctionName="atlas-production-failover-orchestrator", Runtime="python3.12", Role=role,
        Handler="index.handler", Code={"ZipFile": buf.getvalue()})["FunctionArn"]
    events = client("events", region, endpoint)
    events.put_rule(
        Name="atlas-production-failover-trigger", State="ENABLED",
        EventPattern=json.dumps({"source": ["aws.cloudwatch"], "detail-type": ["CloudWatch Alarm State Change"],
                                 "detail": {"state": {"value": ["ALARM"]}}}),
        Description="Runs atlas-production-failover-orchestrator when a health alarm goes to ALARM")
    events.put_targets(Rule="atlas-production-failover-trigger",
                       Targets=[{"Id": "failover-orchestrator", "Arn": function_arn}])


def seed_health_alarms(endpoint, checks):
    # Route53 publishes health-check metrics in us-east-1 only, so the alarms live there.
    cw = client("cloudwatch", "us-east-1", endpoint)
    for region, check in checks.items():
        cw.put_metric_alarm(
            AlarmName=f"atlas-production-health-{region}", Namespace="AWS/Route53", MetricName="HealthCheckStatus",
            Dimensions=[{"Name": "HealthCheckId", "Value": check}], Statistic="Minimum", Period=30,
            EvaluationPeriods=3, Threshold=1.0, ComparisonOperator="LessThanThreshold", ActionsEnabled=True,
            AlarmActions=[f"arn:aws:sns:us-east-1:{ACCOUNT}:atlas-production-critical"])


def seed_route53(endpoint):
    r53 = client("route53", "us-east-1", endpoint)
    zone = r53.create_hosted_zone(Name="atlas-crm.com", CallerReference="atlas-crm.com")["HostedZone"]["Id"]
    checks, changes = {}, []
    for region in REGIONS:
        checks[region] = r53.create_health_check(CallerReference=f"hc-{region}", HealthCheckConfig={
            "Type": "HTTPS", "FullyQualifiedDomainName": f"{region}.atlas-crm.com", "Port": 443,
            "ResourcePath": "/actuator/health", "RequestInterval": 30, "FailureThreshold": 3})["HealthCheck"]["Id"]
        changes.append({"Action": "CREATE", "ResourceRecordSet": {
            "Name": f"{region}.atlas-crm.com", "Type": "CNAME", "TTL": 60,
            "ResourceRecords": [{"Value": f"atlas-crm-production-alb-{region}.{region}.elb.amazonaws.com"}]}})
        changes.append({"Action": "CREATE", "ResourceRecordSet": {
            "Name": "api.atlas-crm.com", "Type": "CNAME", "SetIdentifier": region,
            "GeoLocation": {"ContinentCode": CONTINENT[region]}, "TTL": 60,
            "ResourceRecords": [{"Value": f"{region}.atlas-crm.com"}], "HealthCheckId": checks[region]}})
    changes.append({"Action": "CREATE", "ResourceRecordSet": {
        "Name": "api.atlas-crm.com", "Type": "CNAME", "SetIdentifier": "default", "GeoLocation": {"CountryCode": "*"},
        "TTL": 60, "ResourceRecords": [{"Value": "us-east-1.atlas-crm.com"}], "HealthCheckId": checks["us-east-1"]}})
    r53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": changes})
    return zone, checks


def main():
    endpoint = sys.argv[1]
    # moto's Lambda runs functions in Docker unless told otherwise; there is no Docker here.
    req = urllib.request.Request(endpoint + "/moto-api/config", method="POST",
                                 data=json.dumps({"lambda": {"use_docker": False}}).encode(),
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req).read()
    for region in REGIONS:
        seed_ecs(endpoint, region)
        seed_rds(endpoint, region)
        seed_logs(endpoint, region)
        seed_cloudwatch(endpoint, region)
    seed_eu_only(endpoint)
    zone, checks = seed_route53(endpoint)
    seed_health_alarms(endpoint, checks)
    print(json.dumps({"zone": zone, "health_checks": checks}))


if __name__ == "__main__":
    main()
