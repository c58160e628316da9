-- Whole requests of atlas.aws, signed, checked by an independent implementation:
-- moto with IAM authentication on recomputes each signature with botocore and
-- refuses any that differs. This covers what the layer adds to atlas.aws.sigv4:
-- the form encoding of query bodies, the JSON bodies and targets, the endpoint
-- and signing-region choice, and the credential chain feeding the signer.
-- (moto rebuilds GET requests imperfectly when it checks them, so the REST
-- protocols are left to the SigV4 suite; see tests/integration/sigv4_moto_test.lua.)
local t = require "atlas.test"
local aws = require "atlas.aws"
local credentials = require "atlas.aws.credentials"

-- The first three requests (user, policy, access key) go unchecked; every later one is verified.
local port = t.server(
    { "moto_server", "-H", "127.0.0.1", "-p", "PORT" },
    { env = { INITIAL_NO_AUTH_ACTION_COUNT = "3" } }
)
local env = {
    AWS_ENDPOINT_URL = "http://127.0.0.1:" .. port,
    AWS_ACCESS_KEY_ID = "AKIAIOSFODNN7EXAMPLE",
    AWS_SECRET_ACCESS_KEY = "unchecked",
    AWS_EC2_METADATA_DISABLED = "true",
}
t.aws_environment(env)

local ALLOW_ALL = '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}'
aws.call { service = "iam", action = "CreateUser", region = "us-east-1", params = { UserName = "atlas signer" } }
aws.call {
    service = "iam",
    action = "PutUserPolicy",
    region = "us-east-1",
    params = { UserName = "atlas signer", PolicyName = "all", PolicyDocument = ALLOW_ALL },
}
local key = aws.call {
    service = "iam",
    action = "CreateAccessKey",
    region = "us-east-1",
    params = { UserName = "atlas signer" },
}
env.AWS_ACCESS_KEY_ID = key.AccessKey.AccessKeyId
env.AWS_SECRET_ACCESS_KEY = key.AccessKey.SecretAccessKey
credentials.reset()

t.case("query protocol (STS, RDS with a space in a filter, CloudWatch with nested lists) is accepted", function()
    t.match(aws.call({ service = "sts", action = "GetCallerIdentity", region = "eu-west-1" }).Arn, "user/atlas signer$")
    local dbs = aws.call {
        service = "rds",
        action = "DescribeDBInstances",
        region = "eu-west-1",
        params = { Filters = { { Name = "db-instance-id", Values = { "atlas production db" } } } },
    }
    t.eq(dbs.DBInstances, {})
    aws.call {
        service = "cloudwatch",
        action = "PutMetricData",
        region = "ap-southeast-1",
        params = {
            Namespace = "AtlasCRM/Production",
            MetricData = {
                {
                    MetricName = "CrossRegionLatency",
                    Value = 42.5,
                    Unit = "Milliseconds",
                    Dimensions = { { Name = "Region", Value = "ap-southeast-1 (drill)" } },
                },
            },
        },
    }
end)

t.case("JSON protocols (ECS 1.1, DynamoDB 1.0, Secrets Manager, Logs) are accepted", function()
    t.eq(aws.call({ service = "ecs", action = "ListClusters", region = "us-east-1" }).clusterArns, {})
    t.eq(aws.call({ service = "dynamodb", action = "ListTables", region = "eu-west-1" }).TableNames, {})
    aws.call {
        service = "secretsmanager",
        action = "CreateSecret",
        region = "eu-west-1",
        params = { Name = "atlas-db-master-password", SecretString = "p4ss word+/=" },
    }
    local s = require("atlas.secrets").get_secret_value { region = "eu-west-1", SecretId = "atlas-db-master-password" }
    t.eq(s.SecretString, "p4ss word+/=")
    aws.call {
        service = "logs",
        action = "CreateLogGroup",
        region = "eu-west-1",
        params = { logGroupName = "/ecs/atlas-crm-production-eu-west-1" },
    }
    local events = require("atlas.logs").filter_log_events {
        region = "eu-west-1",
        logGroupName = "/ecs/atlas-crm-production-eu-west-1",
        filterPattern = "ERROR timeout",
    }
    t.eq(events, {})
end)

t.case("the check is live: a wrong secret is refused, and not retried as a clock problem", function()
    env.AWS_SECRET_ACCESS_KEY = "wrong"
    credentials.reset()
    t.defer(function()
        env.AWS_SECRET_ACCESS_KEY = key.AccessKey.SecretAccessKey
        credentials.reset()
    end)
    local events = t.capture(function()
        local err = t.raises(
            function() aws.call { service = "sts", action = "GetCallerIdentity", region = "eu-west-1" } end
        )
        t.eq({ err.kind, err.code, err.status }, { "aws", "SignatureDoesNotMatch", 403 })
        err = t.raises(function() aws.call { service = "ecs", action = "ListClusters", region = "us-east-1" } end)
        t.eq(err.status, 403)
    end)
    local calls = 0
    for _, e in ipairs(events) do
        if e.type == "call" then calls = calls + 1 end
    end
    t.eq(calls, 2, "one attempt each")
end)
