-- IAM Identity Center profiles (`aws sso login`): sso_session and the legacy
-- sso_start_url form, a token from ~/.aws/sso/cache, GetRoleCredentials from
-- a loopback stand-in for the portal, credentials cached until they expire.
local t = require "atlas.test"
local credentials = require "atlas.aws.credentials"
local sys = require "atlas.sys"

local CONFIG = [[
[profile atlas-sso]
sso_session = atlas
sso_account_id = 123456789012
sso_role_name = AtlasOps
region = eu-west-1

[sso-session atlas]
sso_start_url = https://atlas.awsapps.com/start
sso_region = eu-west-1
sso_registration_scopes = sso:account:access

[profile atlas-legacy]
sso_start_url = https://legacy.awsapps.com/start
sso_region = us-east-1
sso_account_id = 210987654321
sso_role_name = Legacy
]]

local function setup(expires_at, legacy_expires_at)
    local home = t.tmpdir()
    sys.mkdir(home .. "/.aws/sso/cache")
    t.write_file(home .. "/.aws/config", CONFIG)
    t.write_file(home .. "/.aws/sso/cache/0f3c6b1e.json", string.format(
        '{"startUrl": "https://atlas.awsapps.com/start", "sessionName": "atlas", "region": "eu-west-1", '
            .. '"accessToken": "Tk9ssotokencanary", "expiresAt": "%s"}', expires_at))
    t.write_file(home .. "/.aws/sso/cache/9a1b.json", string.format(
        '{"startUrl": "https://legacy.awsapps.com/start", "region": "us-east-1", '
            .. '"accessToken": "Tk9ssotokencanary", "expiresAt": "%s"}', legacy_expires_at or expires_at))
    local port = t.server { "python3", "tests/support/sso_portal.py", "PORT", "Tk9ssotokencanary" }
    local env = { HOME = home, AWS_EC2_METADATA_DISABLED = "true", AWS_ENDPOINT_URL_SSO = "http://127.0.0.1:" .. port }
    local saved = credentials.getenv
    credentials.getenv = function(name) return env[name] end
    credentials.reset()
    t.defer(function()
        credentials.getenv = saved
        credentials.reset()
    end)
    return port
end

local function portal_calls(port)
    local r = t.spawn { "python3", "-c",
        "import urllib.request,json;print(json.load(urllib.request.urlopen('http://127.0.0.1:" .. port .. "/__count'))['count'])" }
    return tonumber(r.stdout)
end

t.case("an sso_session profile gets role credentials for its account and role, cached until they expire", function()
    local port = setup("2099-01-01T00:00:00Z")
    local c = credentials.resolve { profile = "atlas-sso" }
    t.eq({ c.access_key_id, c.secret_access_key, c.session_token },
        { "ASIASSO9012", "sso-secret-for-AtlasOps", "sso-session-token" })
    t.ok(c.expiration and c.expiration > os.time(), "expires in the future")
    credentials.resolve { profile = "atlas-sso" }
    t.eq(portal_calls(port), 1, "the second lookup is served from the cache")
    t.eq(require("atlas.run.log").redact("Tk9ssotokencanary"), "[REDACTED]")
end)

t.case("the legacy form (sso_start_url in the profile) works the same", function()
    setup("2099-01-01T00:00:00Z")
    local c = credentials.resolve { profile = "atlas-legacy" }
    t.eq({ c.access_key_id, c.secret_access_key }, { "ASIASSO4321", "sso-secret-for-Legacy" })
end)

t.case("an expired token is one clear message: run aws sso login --profile P", function()
    setup("2020-01-01T00:00:00Z")
    local err = t.raises(function() credentials.resolve { profile = "atlas-sso" } end)
    t.match(tostring(err), "profile atlas%-sso: the SSO token expired at 2020%-01%-01T00:00:00Z; run `aws sso login %-%-profile atlas%-sso`")
end)

t.case("no token in the cache, or one the portal refuses, says to log in", function()
    local port = setup("2099-01-01T00:00:00Z")
    os.remove(credentials.getenv("HOME") .. "/.aws/sso/cache/0f3c6b1e.json")
    local err = t.raises(function() credentials.resolve { profile = "atlas-sso" } end)
    t.match(tostring(err), "no SSO token for https://atlas%.awsapps%.com/start")
    t.match(tostring(err), "aws sso login %-%-profile atlas%-sso")
    t.write_file(credentials.getenv("HOME") .. "/.aws/sso/cache/x.json",
        '{"startUrl": "https://atlas.awsapps.com/start", "accessToken": "stale", "expiresAt": "2099-01-01T00:00:00Z"}')
    credentials.reset()
    err = t.raises(function() credentials.resolve { profile = "atlas-sso" } end)
    t.match(tostring(err), "the portal refused the token %(HTTP 401%)")
    t.ok(port)
end)
