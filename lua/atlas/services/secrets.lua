-- Secrets Manager. Every value it returns is registered with atlas.log as a
-- secret first, so no event, error or report can show it.
local helper = require "atlas.aws.helper"
local log = require "atlas.run.log"

local M = {}

-- A JSON secret ({"username":..,"password":..}) also has each string value
-- registered, since a playbook will pass those on one by one.
local function register(value)
    if type(value) ~= "string" or value == "" then return end
    log.secret(value)
    if value:sub(1, 1) == "{" then
        local doc = require("atlas.json").decode(value)
        if type(doc) == "table" then
            for _, v in pairs(doc) do
                if type(v) == "string" and #v >= 4 then log.secret(v) end
            end
        end
    end
end

-- get_secret_value{SecretId, VersionId?, VersionStage?} -> {ARN, Name, SecretString | SecretBinary, ...}
function M.get_secret_value(args)
    local resp = helper.call("secretsmanager", "GetSecretValue", args)
    register(resp.SecretString)
    register(resp.SecretBinary)
    return resp
end

return M
