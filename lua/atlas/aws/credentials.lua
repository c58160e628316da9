-- AWS credentials, found the way the SDKs find them (the "default chain"):
--   1. AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN in the environment, then
--      AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN (AssumeRoleWithWebIdentity) - both skipped when
--      a call names its own profile, as boto3's Session(profile_name=) does;
--   2. the profile (per call, else AWS_PROFILE, else "default") from ~/.aws/credentials and
--      ~/.aws/config: role_arn + web_identity_token_file, role_arn + source_profile|credential_source
--      (STS AssumeRole, cached until it expires), static keys, or credential_process;
--   3. ECS container credentials (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI / _FULL_URI);
--   4. EC2 instance metadata, IMDSv2 (token first), unless AWS_EC2_METADATA_DISABLED=true.
-- Secret keys and session tokens are registered with atlas.log so no output shows them.
local errors = require "atlas.errors"
local log = require "atlas.run.log"

local M = {}

-- Replaceable for tests (a fake environment, a fake clock).
M.getenv = os.getenv
M.now = os.time

local cache = {}

local bundles -- credentials.ca_bundle's, per profile

function M.reset()
    cache = {}
    bundles = {}
end

local function env(name)
    local v = M.getenv(name)
    if v == "" then return nil end
    return v
end

local function env_true(name)
    local v = env(name)
    return v ~= nil and (v:lower() == "true" or v == "1")
end

-- "2026-11-26T03:04:05Z" (also with fractions) -> Unix seconds, UTC
M.parse_time = require("atlas.aws.protocol").parse_time

local function make(access_key_id, secret, token, expiration, source)
    log.secret(secret)
    if token then log.secret(token) end
    return {
        access_key_id = access_key_id,
        secret_access_key = secret,
        session_token = token,
        expiration = expiration and M.parse_time(expiration) or nil,
        source = source,
    }
end

-- ---- shared config files -------------------------------------------------------

local function read_file(path)
    local f = io.open(path, "r")
    if not f then return nil end
    local data = f:read("a")
    f:close()
    return data
end

-- INI as the SDKs read it; indented lines belong to a nested sub-section and are skipped.
function M.parse_ini(text, is_config)
    local sections, current = {}, nil
    for line in (text .. "\n"):gmatch("([^\n]*)\n") do
        line = line:gsub("\r$", "")
        local name = line:match("^%s*%[%s*(.-)%s*%]%s*$")
        if name then
            if is_config then
                if name ~= "default" then name = name:match("^profile%s+(.+)$") or ("\0" .. name) end
            end
            sections[name] = sections[name] or {}
            current = sections[name]
        elseif current and line:match("^%S") and not line:match("^[#;]") then
            local k, v = line:match("^([^=]-)%s*=%s*(.-)%s*$")
            if k and k ~= "" then current[k:lower()] = v end
        end
    end
    return sections
end

local function home() return env("HOME") or "." end

local function files()
    return env("AWS_SHARED_CREDENTIALS_FILE") or (home() .. "/.aws/credentials"),
        env("AWS_CONFIG_FILE") or (home() .. "/.aws/config")
end

-- credentials.ca_bundle(profile) -> the CA bundle file AWS calls trust besides
-- the system's, as the SDKs find it: AWS_CA_BUNDLE, then the profile's
-- ca_bundle; nil for none. Read once per profile (M.reset forgets it).
bundles = {}
function M.ca_bundle(profile)
    local from_env = env("AWS_CA_BUNDLE")
    if from_env then return from_env end
    local name = profile or env("AWS_PROFILE") or "default"
    if bundles[name] == nil then
        local settings = M.profile_settings(name)
        bundles[name] = settings and settings.ca_bundle or false
    end
    return bundles[name] or nil
end

-- profile_settings(name) -> merged settings (credentials file over config) or nil, where-text
function M.profile_settings(name)
    local cred_path, config_path = files()
    local creds_text, config_text = read_file(cred_path), read_file(config_path)
    local merged, found = {}, false
    local config = config_text and M.parse_ini(config_text, true) or {}
    local creds = creds_text and M.parse_ini(creds_text, false) or {}
    for k, v in pairs(config[name] or {}) do
        merged[k] = v
        found = true
    end
    for k, v in pairs(creds[name] or {}) do
        merged[k] = v
        found = true
    end
    if config[name] or creds[name] then found = true end
    return found and merged or nil, cred_path .. ", " .. config_path
end

-- ---- sources -------------------------------------------------------------------

-- credentials.register_environment(): the secrets the environment holds are
-- masked in every output from the start of a run, before any call needs them.
function M.register_environment()
    log.secret(env("AWS_SECRET_ACCESS_KEY"))
    log.secret(env("AWS_SESSION_TOKEN"))
end

local function from_env()
    local id, secret = env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")
    if id and secret then return make(id, secret, env("AWS_SESSION_TOKEN"), nil, "environment") end
    return nil, "environment: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY not set"
end

-- AssumeRoleWithWebIdentity (EKS service accounts, CI OIDC): the token file is
-- the credential, so the STS call itself is not signed.
local function from_web_identity(settings, name)
    local token_file = settings and settings.web_identity_token_file or env("AWS_WEB_IDENTITY_TOKEN_FILE")
    local role = settings and settings.role_arn or env("AWS_ROLE_ARN")
    local where = settings and ("profile " .. name .. " web identity") or "web identity"
    if not token_file or not role then return nil, where .. ": AWS_WEB_IDENTITY_TOKEN_FILE/AWS_ROLE_ARN not set" end
    local token = read_file(token_file)
    if not token then return nil, where .. ": cannot read " .. token_file end
    token = token:gsub("%s+$", "")
    log.secret(token)
    local ok, resp = pcall(require("atlas.aws").call, {
        service = "sts",
        action = "AssumeRoleWithWebIdentity",
        region = (settings and settings.region) or env("AWS_REGION") or env("AWS_DEFAULT_REGION") or "us-east-1",
        unsigned = true,
        read_only = true,
        params = {
            RoleArn = role,
            RoleSessionName = (settings and settings.role_session_name)
                or env("AWS_ROLE_SESSION_NAME")
                or ("atlas-run-" .. math.floor(M.now())),
            WebIdentityToken = token,
        },
    })
    if not ok then
        if not errors.is(resp) then error(resp, 0) end
        return nil, where .. ": AssumeRoleWithWebIdentity " .. role .. ": " .. errors.message(resp)
    end
    local c = resp.Credentials
    return make(c.AccessKeyId, c.SecretAccessKey, c.SessionToken, c.Expiration, "web identity role " .. role)
end

-- Seconds a credential_process may take: an SSO helper that waits for a
-- browser nobody will open at 3 a.m. must end the run, not hang it.
M.PROCESS_TIMEOUT = 60

local function from_process(command, profile)
    -- Through the shell, as the AWS CLI documents the setting (a command
    -- line), with the real proc backend's timeout: the credentials of a mock
    -- run are never scripted by the world.
    local result, err =
        require("atlas.proc.real").run({ "/bin/sh", "-c", command }, { timeout = M.PROCESS_TIMEOUT })
    if not result then
        return nil, string.format("credential_process of profile %s: %s", profile, errors.message(err))
    end
    if result.code ~= 0 then
        return nil, string.format("credential_process of profile %s: exited with %s", profile, tostring(result.code))
    end
    local out = result.stdout
    local doc = require("atlas.json").decode(out)
    if type(doc) ~= "table" or not doc.AccessKeyId or not doc.SecretAccessKey then
        return nil, "credential_process of profile " .. profile .. ": output is not credentials JSON"
    end
    return make(
        doc.AccessKeyId,
        doc.SecretAccessKey,
        doc.SessionToken,
        doc.Expiration,
        "credential_process (" .. profile .. ")"
    )
end

-- The metadata services speak plain http on link-local addresses: allowed for
-- them (allow_http), and only for them (see container_url_allowed).
local function http_get(method, url, headers, timeout)
    local resp, message = require("atlas.net").request(
        { method = method, url = url, headers = headers or {}, body = "" },
        { timeout = timeout or 2, connect_timeout = 1, allow_http = true }
    )
    if not resp then return nil, message end
    if resp.status ~= 200 then return nil, "HTTP " .. resp.status end
    return resp.body
end

local function decode_json_credentials(body, source)
    local doc = require("atlas.json").decode(body)
    if type(doc) ~= "table" or not doc.AccessKeyId then return nil, source .. ": unexpected response" end
    return make(doc.AccessKeyId, doc.SecretAccessKey, doc.Token or doc.SessionToken, doc.Expiration, source)
end

-- As in the SDKs, a FULL_URI over plain http must point at loopback (atlas.net
-- says what that is) or at the ECS / EKS Pod Identity agents' link-local
-- addresses; anything else needs https.
local CONTAINER_HOSTS = {
    ["169.254.170.2"] = true,
    ["169.254.170.23"] = true,
    ["[fd00:ec2::23]"] = true,
}

function M.container_url_allowed(url)
    local net = require "atlas.net"
    local scheme, host = net.url_host(url)
    if scheme == "https" then return true end
    return scheme == "http" and host ~= nil and (CONTAINER_HOSTS[host:lower()] or net.is_loopback(host)) or false
end

local function from_container()
    local relative, full = env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"), env("AWS_CONTAINER_CREDENTIALS_FULL_URI")
    local url = relative and ("http://169.254.170.2" .. relative) or full
    if not url then return nil, "container credentials: AWS_CONTAINER_CREDENTIALS_RELATIVE_URI/FULL_URI not set" end
    if not M.container_url_allowed(url) then
        return nil, "container credentials: " .. url .. " is neither https nor a loopback/ECS/EKS agent address"
    end
    local headers = {}
    local token = env("AWS_CONTAINER_AUTHORIZATION_TOKEN")
    local token_file = env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")
    if token_file then token = (read_file(token_file) or ""):gsub("%s+$", "") end
    if token then
        headers["Authorization"] = token
        log.secret(token)
    end
    local body, err = http_get("GET", url, headers)
    if not body then return nil, "container credentials (" .. url .. "): " .. tostring(err) end
    return decode_json_credentials(body, "container credentials (" .. url .. ")")
end

local function from_imds()
    if env_true("AWS_EC2_METADATA_DISABLED") then
        return nil, "EC2 instance metadata: disabled by AWS_EC2_METADATA_DISABLED"
    end
    local base = (env("AWS_EC2_METADATA_SERVICE_ENDPOINT") or "http://169.254.169.254"):gsub("/+$", "")
    local where = "EC2 instance metadata (" .. base .. ")"
    local token, err =
        http_get("PUT", base .. "/latest/api/token", { ["X-aws-ec2-metadata-token-ttl-seconds"] = "21600" }, 1)
    if not token then return nil, where .. ": " .. tostring(err) end
    log.secret(token)
    local headers = { ["X-aws-ec2-metadata-token"] = token }
    local roles
    roles, err = http_get("GET", base .. "/latest/meta-data/iam/security-credentials/", headers, 1)
    if not roles then return nil, where .. ": no instance role: " .. tostring(err) end
    local role = roles:match("^%s*([^\n]-)%s*$")
    local body
    body, err = http_get("GET", base .. "/latest/meta-data/iam/security-credentials/" .. role, headers, 1)
    if not body then return nil, where .. ": " .. tostring(err) end
    return decode_json_credentials(body, where)
end

local resolve_profile

local function assume_role(name, settings, depth)
    local source, err
    if settings.source_profile then
        if settings.source_profile == name then
            -- a profile may be its own source when it also holds static keys
            if not settings.aws_access_key_id then return nil, "profile " .. name .. ": source_profile loops" end
            source = make(
                settings.aws_access_key_id,
                settings.aws_secret_access_key,
                settings.aws_session_token,
                nil,
                "profile " .. name
            )
        else
            source, err = resolve_profile(settings.source_profile, depth + 1)
        end
    elseif settings.credential_source == "Environment" then
        source, err = from_env()
    elseif settings.credential_source == "EcsContainer" then
        source, err = from_container()
    elseif settings.credential_source == "Ec2InstanceMetadata" then
        source, err = from_imds()
    else
        return nil, "profile " .. name .. ": role_arn needs source_profile or credential_source"
    end
    if not source then return nil, err end
    -- Through atlas.aws, so a throttled AssumeRole in the middle of a failover is retried (and logged).
    local ok, resp = pcall(require("atlas.aws").call, {
        service = "sts",
        action = "AssumeRole",
        read_only = true,
        region = settings.region or env("AWS_REGION") or "us-east-1",
        credentials = source,
        params = {
            RoleArn = settings.role_arn,
            RoleSessionName = settings.role_session_name or ("atlas-run-" .. math.floor(M.now())),
            ExternalId = settings.external_id,
            DurationSeconds = tonumber(settings.duration_seconds),
        },
    })
    if not ok then
        if not errors.is(resp) then error(resp, 0) end
        return nil, "profile " .. name .. ": AssumeRole " .. settings.role_arn .. ": " .. errors.message(resp)
    end
    local c = resp.Credentials
    return make(
        c.AccessKeyId,
        c.SecretAccessKey,
        c.SessionToken,
        c.Expiration,
        "assumed role " .. settings.role_arn .. " (profile " .. name .. ")"
    )
end

-- IAM Identity Center (`aws sso login`): the profile names an account and a
-- role, and an sso-session (or, in the legacy form, its own sso_start_url and
-- sso_region). The token is the one `aws sso login` left in ~/.aws/sso/cache;
-- the portal's GetRoleCredentials turns it into role credentials, cached
-- with the others until they expire. The token is never refreshed here: an
-- expired one is one clear message.
local function sso_cache_token(start_url, session, profile)
    local dir = home() .. "/.aws/sso/cache"
    local best
    for _, file in ipairs(require("atlas.sys").readdir(dir) or {}) do
        local text = file:match("%.json$") and read_file(dir .. "/" .. file)
        local doc = text and require("atlas.json").decode(text)
        -- The CLI names the file by a SHA-1 of the session name (or start
        -- URL); the same file is found by what it holds.
        if type(doc) == "table" and doc.accessToken and doc.startUrl == start_url
            and (not session or doc.sessionName == nil or doc.sessionName == session) then
            local expires = doc.expiresAt and M.parse_time(doc.expiresAt) or 0
            if not best or expires > best.expires then best = { token = doc.accessToken, expires = expires } end
        end
    end
    local login = "run `aws sso login --profile " .. profile .. "`"
    if not best then return nil, string.format("profile %s: no SSO token for %s in %s; %s", profile, start_url, dir, login) end
    if best.expires <= M.now() then
        return nil,
            string.format("profile %s: the SSO token expired at %s; %s", profile,
                os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(best.expires)), login)
    end
    log.secret(best.token)
    return best.token
end

local function from_sso(settings, name)
    local start_url, region = settings.sso_start_url, settings.sso_region
    local session = settings.sso_session
    if session then
        local _, config_path = files()
        local text = read_file(config_path)
        local section = text and M.parse_ini(text, true)["\0sso-session " .. session]
        if not section then return nil, "profile " .. name .. ": sso-session " .. session .. " not found in " .. config_path end
        start_url, region = section.sso_start_url, section.sso_region
    end
    if not (start_url and region and settings.sso_account_id and settings.sso_role_name) then
        return nil, "profile " .. name .. ": an SSO profile needs sso_start_url, sso_region, sso_account_id and sso_role_name"
    end
    local token, err = sso_cache_token(start_url, session, name)
    if not token then return nil, err end
    local base = env("AWS_ENDPOINT_URL_SSO") or env("AWS_ENDPOINT_URL")
        or ("https://portal.sso." .. region .. ".amazonaws.com")
    local url = string.format("%s/federation/credentials?account_id=%s&role_name=%s", base:gsub("/$", ""),
        settings.sso_account_id, settings.sso_role_name:gsub("[^%w%-_.~]", function(c) return string.format("%%%02X", c:byte()) end))
    local resp, message = require("atlas.net").request(
        { method = "GET", url = url, headers = { ["x-amz-sso_bearer_token"] = token }, body = "" },
        { timeout = 10, connect_timeout = 5 }
    )
    local where = "profile " .. name .. ": SSO GetRoleCredentials " .. settings.sso_role_name .. "@" .. settings.sso_account_id
    if not resp then return nil, where .. ": " .. tostring(message) end
    if resp.status == 401 or resp.status == 403 then
        return nil, where .. ": the portal refused the token (HTTP " .. resp.status .. "); run `aws sso login --profile " .. name .. "`"
    end
    local doc = resp.status == 200 and require("atlas.json").decode(resp.body)
    local c = type(doc) == "table" and doc.roleCredentials
    if type(c) ~= "table" or not c.accessKeyId or not c.secretAccessKey then
        return nil, where .. ": unexpected answer (HTTP " .. resp.status .. ")"
    end
    local expiration = c.expiration and os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(c.expiration / 1000)) or nil
    return make(c.accessKeyId, c.secretAccessKey, c.sessionToken, expiration, "SSO role " .. settings.sso_role_name .. " (profile " .. name .. ")")
end

resolve_profile = function(name, depth)
    if depth > 5 then return nil, "profile " .. name .. ": source_profile chain too deep" end
    local settings, where = M.profile_settings(name)
    if not settings then return nil, "profile " .. name .. ": not found in " .. where, "missing" end
    if settings.role_arn and settings.web_identity_token_file then return from_web_identity(settings, name) end
    if settings.role_arn then return assume_role(name, settings, depth) end
    if settings.aws_access_key_id and settings.aws_secret_access_key then
        return make(
            settings.aws_access_key_id,
            settings.aws_secret_access_key,
            settings.aws_session_token,
            nil,
            "profile " .. name
        )
    end
    if settings.credential_process then return from_process(settings.credential_process, name) end
    if settings.sso_session or settings.sso_start_url then return from_sso(settings, name) end
    return nil, "profile " .. name .. " (" .. where .. "): no keys, role_arn or credential_process"
end

-- ---- the chain -----------------------------------------------------------------

local function no_credentials(looked)
    errors.raise {
        kind = "aws",
        code = "NoCredentials",
        -- service/action/region are filled by atlas.aws with the call that needed credentials
        message = "no AWS credentials found; looked in: " .. table.concat(looked, "; "),
    }
end

local function chain(profile)
    local looked = {}
    local explicit = profile or env("AWS_PROFILE")
    if not profile then
        local c, why = from_env()
        if c then return c end
        looked[#looked + 1] = why
        c, why = from_web_identity(nil)
        if c then return c end
        looked[#looked + 1] = why
    end
    local name = explicit or "default"
    local c, why, missing = resolve_profile(name, 0)
    if c then return c end
    if explicit and missing then
        -- like the SDKs: a profile asked for by name must exist
        errors.raise {
            kind = "aws",
            code = "ProfileNotFound",
            message = why,
        }
    end
    looked[#looked + 1] = why
    if explicit and not missing then no_credentials(looked) end
    c, why = from_container()
    if c then return c end
    looked[#looked + 1] = why
    c, why = from_imds()
    if c then return c end
    looked[#looked + 1] = why
    no_credentials(looked)
end

-- resolve{profile=} -> {access_key_id, secret_access_key, session_token, expiration, source}
-- Cached per profile; temporary credentials are refreshed five minutes before they expire.
function M.resolve(options)
    local profile = options and options.profile
    local key = profile or ""
    local c = cache[key]
    if c and (not c.expiration or c.expiration - 300 > M.now()) then return c end
    c = chain(profile)
    cache[key] = c
    return c
end

return M
