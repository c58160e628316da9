-- The credential chain, with a fake environment and files in a temporary HOME.
local t = require "atlas.test"
local credentials = require "atlas.aws.credentials"
local log = require "atlas.run.log"

-- use(env) -> HOME path: from now on credentials see only `env` (+ HOME)
local function use(env)
    local home = t.tmpdir()
    env.HOME = env.HOME or home
    env.AWS_EC2_METADATA_DISABLED = env.AWS_EC2_METADATA_DISABLED or "true"
    local saved = credentials.getenv
    credentials.getenv = function(name) return env[name] end
    credentials.reset()
    t.defer(function()
        credentials.getenv = saved
        credentials.reset()
    end)
    os.execute("mkdir -p " .. home .. "/.aws")
    return home
end

local CREDENTIALS_FILE = [[
[default]
aws_access_key_id = AKIADEFAULT
aws_secret_access_key = default-secret

[atlas-eu-west-1]
aws_access_key_id=AKIAEU
aws_secret_access_key=eu-secret
aws_session_token = eu-token
]]

local CONFIG_FILE = [[
[default]
region = us-east-1

[profile atlas-us-east-1]
region = us-east-1
credential_process = printf '{"Version": 1, "AccessKeyId": "AKIAPROC", "SecretAccessKey": "proc-secret", "SessionToken": "proc-token", "Expiration": "2099-01-01T00:00:00Z"}'

[profile atlas-ap-southeast-1]
role_arn = arn:aws:iam::123456789012:role/atlas-ops
source_profile = atlas-eu-west-1
region = ap-southeast-1

[profile broken]
credential_process = sh -c 'exit 3'
]]

t.case("environment variables come first", function()
    use { AWS_ACCESS_KEY_ID = "AKIAENV", AWS_SECRET_ACCESS_KEY = "env-secret", AWS_SESSION_TOKEN = "env-token" }
    local c = credentials.resolve()
    t.eq(
        { c.access_key_id, c.secret_access_key, c.session_token, c.source },
        { "AKIAENV", "env-secret", "env-token", "environment" }
    )
end)

t.case("secret keys and tokens are redacted from output", function()
    use { AWS_ACCESS_KEY_ID = "AKIAENV", AWS_SECRET_ACCESS_KEY = "env-secret-xyz", AWS_SESSION_TOKEN = "env-token-xyz" }
    credentials.resolve()
    local text = log.redact("sig env-secret-xyz tok env-token-xyz")
    t.no_match(text, "env%-secret%-xyz")
    t.no_match(text, "env%-token%-xyz")
end)

t.case("AWS_PROFILE and per-call profiles read ~/.aws/credentials", function()
    local home = use { AWS_PROFILE = "atlas-eu-west-1" }
    t.write_file(home .. "/.aws/credentials", CREDENTIALS_FILE)
    local c = credentials.resolve()
    t.eq({ c.access_key_id, c.secret_access_key, c.session_token }, { "AKIAEU", "eu-secret", "eu-token" })
    t.eq(credentials.resolve { profile = "default" }.access_key_id, "AKIADEFAULT")
end)

t.case("a per-call profile wins over environment keys", function()
    local home = use { AWS_ACCESS_KEY_ID = "AKIAENV", AWS_SECRET_ACCESS_KEY = "env-secret" }
    t.write_file(home .. "/.aws/credentials", CREDENTIALS_FILE)
    t.eq(credentials.resolve { profile = "atlas-eu-west-1" }.access_key_id, "AKIAEU")
    t.eq(credentials.resolve().access_key_id, "AKIAENV")
end)

t.case("the default profile is used when nothing else is set", function()
    local home = use {}
    t.write_file(home .. "/.aws/credentials", CREDENTIALS_FILE)
    t.eq(credentials.resolve().access_key_id, "AKIADEFAULT")
end)

t.case("credential_process from ~/.aws/config", function()
    local home = use {}
    t.write_file(home .. "/.aws/config", CONFIG_FILE)
    local c = credentials.resolve { profile = "atlas-us-east-1" }
    t.eq(
        { c.access_key_id, c.secret_access_key, c.session_token, c.expiration },
        { "AKIAPROC", "proc-secret", "proc-token", 4070908800 }
    )
    local err = t.raises(function() credentials.resolve { profile = "broken" } end)
    t.match(tostring(err), "credential_process of profile broken: exited with 3")
end)

t.case("role_arn + source_profile: AssumeRole with the source's keys, cached until expiry", function()
    local home = use {}
    t.write_file(home .. "/.aws/credentials", CREDENTIALS_FILE)
    t.write_file(home .. "/.aws/config", CONFIG_FILE)
    local wire = require "atlas.aws.real"
    local saved = wire.invoke
    t.defer(function() wire.invoke = saved end)
    local calls = {}
    wire.invoke = function(req, options)
        req.options = options -- the credentials and signing travel apart from the call
        calls[#calls + 1] = req
        return {
            Credentials = {
                AccessKeyId = "ASIAROLE",
                SecretAccessKey = "role-secret",
                SessionToken = "role-token",
                Expiration = "2099-01-01T00:00:00Z",
            },
        }
    end
    local c = credentials.resolve { profile = "atlas-ap-southeast-1" }
    t.eq({ c.access_key_id, c.session_token }, { "ASIAROLE", "role-token" })
    t.eq(calls[1].action, "AssumeRole")
    t.eq(calls[1].region, "ap-southeast-1")
    t.eq(calls[1].params.RoleArn, "arn:aws:iam::123456789012:role/atlas-ops")
    t.eq(calls[1].options.credentials.access_key_id, "AKIAEU")
    credentials.resolve { profile = "atlas-ap-southeast-1" }
    t.eq(#calls, 1, "cached")
    -- five minutes before expiry the role is assumed again
    local saved_now = credentials.now
    t.defer(function() credentials.now = saved_now end)
    credentials.now = function() return 4070908800 - 200 end
    credentials.resolve { profile = "atlas-ap-southeast-1" }
    t.eq(#calls, 2, "refreshed near expiry")
end)

t.case("a profile asked for by name must exist", function()
    use { AWS_PROFILE = "atlas-nowhere" }
    local err = t.raises(function() credentials.resolve() end)
    t.eq(err.code, "ProfileNotFound")
    t.match(tostring(err), "atlas%-nowhere")
end)

t.case("no credentials anywhere: one error listing every place looked", function()
    local home = use {}
    local err = t.raises(function() credentials.resolve() end)
    t.eq(err.code, "NoCredentials")
    local text = tostring(err)
    t.match(text, "environment: AWS_ACCESS_KEY_ID")
    t.match(text, "profile default: not found in " .. home:gsub("%p", "%%%0") .. "/%.aws/credentials")
    t.match(text, "container credentials")
    t.match(text, "EC2 instance metadata: disabled")
end)

t.case("ECS container credentials and EC2 IMDSv2 from a loopback metadata server", function()
    local port = t.server { "python3", "tests/support/fake_metadata.py", "PORT" }
    local base = "http://127.0.0.1:" .. port
    use { AWS_CONTAINER_CREDENTIALS_FULL_URI = base .. "/creds", AWS_CONTAINER_AUTHORIZATION_TOKEN = "secret-auth" }
    local c = credentials.resolve()
    t.eq({ c.access_key_id, c.secret_access_key, c.session_token }, { "ASIAECS", "ecs-secret", "ecs-session" })
    use { AWS_EC2_METADATA_DISABLED = "false", AWS_EC2_METADATA_SERVICE_ENDPOINT = base }
    c = credentials.resolve()
    t.eq({ c.access_key_id, c.secret_access_key, c.session_token }, { "ASIAIMDS", "imds-secret", "imds-session" })
    t.match(c.source, "EC2 instance metadata")
end)

t.case("parse_time is UTC whatever the local zone", function()
    t.eq(credentials.parse_time("1970-01-01T00:00:00Z"), 0)
    t.eq(credentials.parse_time("2026-11-26T02:00:00.123Z"), 1795658400.123)
    t.eq(credentials.parse_time("2000-03-01T00:00:00+00:00"), 951868800)
end)

t.case("web identity: the token file and role from the environment, an unsigned AssumeRoleWithWebIdentity", function()
    local home = use {}
    t.write_file(home .. "/token", "eyJhbGciOi.token-value\n")
    use {
        AWS_WEB_IDENTITY_TOKEN_FILE = home .. "/token",
        AWS_ROLE_ARN = "arn:aws:iam::123456789012:role/eks-ops",
        AWS_ROLE_SESSION_NAME = "pod-1",
        HOME = home,
    }
    local wire = require "atlas.aws.real"
    local saved = wire.invoke
    t.defer(function() wire.invoke = saved end)
    local calls = {}
    wire.invoke = function(req, options)
        req.options = options -- the credentials and signing travel apart from the call
        calls[#calls + 1] = req
        return {
            Credentials = {
                AccessKeyId = "ASIAWEB",
                SecretAccessKey = "web-secret",
                SessionToken = "web-token",
                Expiration = "2099-01-01T00:00:00Z",
            },
        }
    end
    local c = credentials.resolve()
    t.eq({ c.access_key_id, c.session_token }, { "ASIAWEB", "web-token" })
    t.eq({ calls[1].action, calls[1].options.unsigned }, { "AssumeRoleWithWebIdentity", true })
    t.eq(calls[1].params, {
        RoleArn = "arn:aws:iam::123456789012:role/eks-ops",
        RoleSessionName = "pod-1",
        WebIdentityToken = "eyJhbGciOi.token-value",
    })
    t.no_match(log.redact("token eyJhbGciOi.token-value"), "token%-value")
end)

t.case("web identity in dry-run still resolves (the STS call is read-only)", function()
    local home = use {}
    t.write_file(home .. "/token", "tok")
    use { AWS_WEB_IDENTITY_TOKEN_FILE = home .. "/token", AWS_ROLE_ARN = "arn:aws:iam::1:role/r", HOME = home }
    local runtime = require "atlas.run.runtime"
    runtime.dry_run = true
    local wire = require "atlas.aws.real"
    local saved = wire.invoke
    t.defer(function() wire.invoke = saved end)
    wire.invoke = function() return { Credentials = { AccessKeyId = "A", SecretAccessKey = "S", SessionToken = "T" } } end
    t.eq(credentials.resolve().access_key_id, "A")
end)

t.case("container credentials: plain http only to loopback or the ECS/EKS agents", function()
    local allowed = credentials.container_url_allowed
    t.ok(allowed("http://169.254.170.2/v2/credentials/abc"))
    t.ok(allowed("http://169.254.170.23/v1/credentials"))
    t.ok(allowed("http://[fd00:ec2::23]/v1/credentials"))
    t.ok(allowed("http://127.0.0.1:8080/creds"))
    t.ok(allowed("https://creds.internal.example/"))
    t.ok(not allowed("http://10.0.0.5/creds"))
    t.ok(not allowed("ftp://169.254.170.2/"))
    use { AWS_CONTAINER_CREDENTIALS_FULL_URI = "http://10.0.0.5/creds" }
    local err = t.raises(function() credentials.resolve() end)
    t.match(tostring(err), "neither https nor a loopback/ECS/EKS agent address")
end)
