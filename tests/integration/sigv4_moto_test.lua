-- atlas.aws.sigv4 signatures checked by an independent implementation: moto with IAM
-- authentication on (INITIAL_NO_AUTH_ACTION_COUNT) recomputes every signature with
-- botocore's SigV4Auth and answers SignatureDoesNotMatch when ours differs.
--
-- moto rebuilds GET requests imperfectly when it checks them (boto3's own Route53 and
-- Lambda GET calls fail its check the same way), so the protocols proven here are the
-- POST ones: query (STS, IAM, RDS, CloudWatch) and JSON (ECS, Secrets Manager, Logs).
-- The GET/rest paths are covered by the SigV4 suite (tests/unit/sigv4_test.lua).
local t = require "atlas.test"
local curl = require "atlas.curl"
local sigv4 = require "atlas.aws.sigv4"
local xml = require "atlas.xml"

-- The first three requests (user, policy, access key) go unchecked; every later one is verified.
local port = t.server(
    { "moto_server", "-H", "127.0.0.1", "-p", "PORT" },
    { env = { INITIAL_NO_AUTH_ACTION_COUNT = "3" } }
)
local base = "http://127.0.0.1:" .. port
local FORM = "application/x-www-form-urlencoded; charset=utf-8"

-- Form encoding as botocore sends it (space as "+"): moto re-encodes the form it parsed
-- that way before recomputing the payload hash, so "%20" would fail its check (not AWS's).
local function encode(s)
    return (s:gsub("[^%w%-%._~ ]", function(c) return string.format("%%%02X", c:byte()) end):gsub(" ", "+"))
end

local function signed(creds, service, req)
    local url = base .. (req.path or "/")
    local headers = {}
    for k, v in pairs(req.headers or {}) do
        headers[k] = v
    end
    local added = sigv4.sign {
        method = req.method or "POST",
        url = url,
        headers = headers,
        body = req.body or "",
        region = req.region or "us-east-1",
        service = service,
        credentials = creds,
    }
    for k, v in pairs(added) do
        headers[k] = v
    end
    local body = req.tamper and req.tamper(req.body) or req.body
    local res, msg = curl.request { method = req.method or "POST", url = url, headers = headers, body = body }
    t.ok(res, "transport: " .. tostring(msg))
    return res
end

local function query(creds, service, body, region)
    return signed(creds, service, { headers = { ["Content-Type"] = FORM }, body = body, region = region })
end

local function json(creds, service, target, body, region)
    return signed(creds, service, {
        headers = { ["Content-Type"] = "application/x-amz-json-1.1", ["X-Amz-Target"] = target },
        body = body or "{}",
        region = region,
    })
end

local function find(node, tag)
    if node.tag == tag then return node end
    for _, child in ipairs(node) do
        local found = find(child, tag)
        if found then return found end
    end
end

local function error_code(res)
    local doc = xml.parse(res.body)
    local code = doc and find(doc, "Code")
    return code and code.text or res.body:match('"__type"%s*:%s*"([^"]+)"')
end

-- Bootstrap: a user allowed everything, and its access key.
local dummy = { access_key_id = "AKIAIOSFODNN7EXAMPLE", secret_access_key = "unchecked" }
local ALLOW_ALL = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}'
local IAM = "&Version=2010-05-08"
assert(query(dummy, "iam", "Action=CreateUser&UserName=atlas-signer" .. IAM).status == 200)
assert(
    query(
        dummy,
        "iam",
        "Action=PutUserPolicy&UserName=atlas-signer&PolicyName=all&PolicyDocument=" .. encode(ALLOW_ALL) .. IAM
    ).status == 200
)
local key = xml.parse(query(dummy, "iam", "Action=CreateAccessKey&UserName=atlas-signer" .. IAM).body)
local creds = { access_key_id = find(key, "AccessKeyId").text, secret_access_key = find(key, "SecretAccessKey").text }

t.case("the check is live: a wrong secret is refused", function()
    local res = json(
        { access_key_id = creds.access_key_id, secret_access_key = "wrong" },
        "ecs",
        "AmazonEC2ContainerServiceV20141113.ListClusters"
    )
    t.eq({ res.status, error_code(res) }, { 403, "SignatureDoesNotMatch" })
end)

t.case("the check covers the body: a body changed after signing is refused", function()
    local res = signed(creds, "ecs", {
        headers = {
            ["Content-Type"] = "application/x-amz-json-1.1",
            ["X-Amz-Target"] = "AmazonEC2ContainerServiceV20141113.ListClusters",
        },
        body = "{}",
        tamper = function() return '{"maxResults": 5}' end,
    })
    t.eq({ res.status, error_code(res) }, { 403, "SignatureDoesNotMatch" })
end)

t.case("query protocol: STS, IAM (encoded JSON in the body), RDS, CloudWatch in several regions", function()
    local res = query(creds, "sts", "Action=GetCallerIdentity&Version=2011-06-15")
    t.eq(res.status, 200, res.body)
    t.match(find(xml.parse(res.body), "Arn").text, ":user/atlas%-signer$")
    res = query(
        creds,
        "iam",
        "Action=CreatePolicy&PolicyName=p-one&Description="
            .. encode("spaces, commas & ünïcödé ~*'()")
            .. "&PolicyDocument="
            .. encode(ALLOW_ALL)
            .. IAM
    )
    t.eq(res.status, 200, res.body)
    for _, region in ipairs { "eu-west-1", "us-east-1", "ap-southeast-1" } do
        res = query(creds, "rds", "Action=DescribeDBInstances&Version=2014-10-31", region)
        t.eq(res.status, 200, region .. ": " .. res.body)
        res = query(
            creds,
            "monitoring",
            "Action=ListMetrics&Version=2010-08-01&Namespace=" .. encode("AtlasCRM/Production"),
            region
        )
        t.eq(res.status, 200, region .. ": " .. res.body)
    end
end)

t.case("JSON protocol: ECS, Secrets Manager, Logs", function()
    local res = json(
        creds,
        "ecs",
        "AmazonEC2ContainerServiceV20141113.CreateCluster",
        '{"clusterName": "atlas-crm-production-cluster-eu-west-1"}',
        "eu-west-1"
    )
    t.eq(res.status, 200, res.body)
    res = json(creds, "ecs", "AmazonEC2ContainerServiceV20141113.ListClusters", "{}", "eu-west-1")
    t.match(res.body, "atlas%-crm%-production%-cluster%-eu%-west%-1")
    res = json(
        creds,
        "secretsmanager",
        "secretsmanager.CreateSecret",
        '{"Name": "atlas-db-master-password", "SecretString": "p\\u00e4ss w/ \\"quotes\\""}',
        "eu-west-1"
    )
    t.eq(res.status, 200, res.body)
    res = json(
        creds,
        "logs",
        "Logs_20140328.CreateLogGroup",
        '{"logGroupName": "/ecs/atlas-crm-production-eu-west-1"}',
        "eu-west-1"
    )
    t.eq(res.status, 200, res.body)
end)

t.case("temporary credentials: the session token is signed and checked", function()
    local trust = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":'
        .. '"arn:aws:iam::123456789012:user/atlas-signer"},"Action":"sts:AssumeRole"}]}'
    t.eq(
        query(creds, "iam", "Action=CreateRole&RoleName=atlas-role&AssumeRolePolicyDocument=" .. encode(trust) .. IAM).status,
        200
    )
    t.eq(
        query(
            creds,
            "iam",
            "Action=PutRolePolicy&RoleName=atlas-role&PolicyName=all&PolicyDocument=" .. encode(ALLOW_ALL) .. IAM
        ).status,
        200
    )
    local res = query(
        creds,
        "sts",
        "Action=AssumeRole&RoleSessionName=atlas&Version=2011-06-15&RoleArn="
            .. encode("arn:aws:iam::123456789012:role/atlas-role")
    )
    t.eq(res.status, 200, res.body)
    local doc = xml.parse(res.body)
    local temp = {
        access_key_id = find(doc, "AccessKeyId").text,
        secret_access_key = find(doc, "SecretAccessKey").text,
        session_token = find(doc, "SessionToken").text,
    }
    t.match(temp.access_key_id, "^ASIA")
    res = json(temp, "ecs", "AmazonEC2ContainerServiceV20141113.ListClusters")
    t.eq(res.status, 200, res.body)
    res = query(temp, "sts", "Action=GetCallerIdentity&Version=2011-06-15")
    t.match(find(xml.parse(res.body), "Arn").text, ":assumed%-role/atlas%-role/atlas$")
    local forged =
        { access_key_id = temp.access_key_id, secret_access_key = temp.secret_access_key, session_token = "forged" }
    res = json(forged, "ecs", "AmazonEC2ContainerServiceV20141113.ListClusters")
    t.eq({ res.status, error_code(res) }, { 403, "InvalidClientTokenId" })
end)
