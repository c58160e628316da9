-- STS helpers. assume_role registers the returned secret key and session
-- token for redaction.
local helper = require "atlas.aws.helper"
local log = require "atlas.run.log"

local M = {}

-- get_caller_identity{region?} -> {Account, Arn, UserId}
function M.get_caller_identity(args)
    args = args or {}
    local copy = {}
    for k, v in pairs(args) do
        copy[k] = v
    end
    copy.region = copy.region or "us-east-1"
    return helper.call("sts", "GetCallerIdentity", copy)
end

-- assume_role{RoleArn, RoleSessionName, DurationSeconds?, ExternalId?, region?} -> {Credentials, AssumedRoleUser}
function M.assume_role(args)
    local copy = {}
    for k, v in pairs(args) do
        copy[k] = v
    end
    copy.region = copy.region or "us-east-1"
    local resp = helper.call("sts", "AssumeRole", copy)
    if resp.Credentials then
        log.secret(resp.Credentials.SecretAccessKey)
        log.secret(resp.Credentials.SessionToken)
    end
    return resp
end

return M
