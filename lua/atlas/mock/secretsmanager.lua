-- Secrets Manager in the mock world: the database master password in
-- eu-west-1, as a plain SecretString. The value is fixed per world so the
-- mock SQL layer (w.db) can accept it.
local util = require "atlas.mock.util"
local env = require "atlas.env"

local M = {}

local function state(w, region)
    w.secrets = w.secrets or {}
    w.secrets[region] = w.secrets[region] or {}
    return w.secrets[region]
end

function M.build(w)
    w.master_password = w.master_password or "mock-Atl4s-" .. util.hex_digits(w.start_time % 100000, 16)
    local name = env.PASSWORD_SECRET
    state(w, "eu-west-1")[name] = {
        ARN = string.format("arn:aws:secretsmanager:eu-west-1:%s:secret:%s-Xk3q9Z", util.ACCOUNT, name),
        Name = name,
        VersionId = util.uuid(97),
        CreatedDate = w.start_time - 120 * 86400,
        value = function()
            -- Read at call time: a test or w.db may rotate the password.
            return w.master_password
        end,
    }
end

local H = {}

function H.GetSecretValue(w, region, p, ctx)
    local id = ctx:need(p, "SecretId")
    local secret
    for _, s in pairs(state(w, region)) do
        if s.Name == id or s.ARN == id or s.ARN:sub(1, #id + 1) == id .. "-" then secret = s end
    end
    if not secret then ctx:fail("ResourceNotFoundException", "Secrets Manager can't find the specified secret.") end
    if p.VersionId and p.VersionId ~= secret.VersionId then
        ctx:fail(
            "ResourceNotFoundException",
            "Secrets Manager can't find the specified secret value for VersionId: " .. p.VersionId
        )
    end
    if p.VersionStage and p.VersionStage ~= "AWSCURRENT" then
        ctx:fail(
            "ResourceNotFoundException",
            "Secrets Manager can't find the specified secret value for staging label: " .. p.VersionStage
        )
    end
    return {
        ARN = secret.ARN,
        Name = secret.Name,
        VersionId = secret.VersionId,
        SecretString = secret.value(),
        VersionStages = util.list { "AWSCURRENT" },
        CreatedDate = secret.CreatedDate,
    }
end

-- Every new world builds this state and sends this module the calls to secretsmanager.
require("atlas.mock.world").register { name = "secretsmanager", build = M.build, handlers = { secretsmanager = H } }

return M
