-- STS in the mock world: who the operator is, and assumed roles with
-- credentials that expire in virtual time.
local util = require "atlas.mock.util"

local M = {}

function M.build(w)
    w.identity = w.identity
        or {
            UserId = "AIDA" .. util.upper_id("", 61, 17),
            Account = util.ACCOUNT,
            Arn = string.format("arn:aws:iam::%s:user/atlas-sre", util.ACCOUNT),
        }
end

local H = {}

function H.GetCallerIdentity(w, region, p, ctx) return util.copy(w.identity) end

function H.AssumeRole(w, region, p, ctx)
    local role_arn = ctx:need(p, "RoleArn")
    local session = ctx:need(p, "RoleSessionName")
    local account, role = tostring(role_arn):match("^arn:aws:iam::(%d+):role/(.+)$")
    if not account or #account ~= 12 then
        ctx:fail(
            "ValidationError",
            "1 validation error detected: Value '"
                .. tostring(role_arn)
                .. "' at 'roleArn' failed to satisfy constraint: Member must have length greater than or equal to 20"
        )
    end
    if account ~= util.ACCOUNT then
        ctx:fail(
            "AccessDenied",
            string.format(
                "User: %s is not authorized to perform: sts:AssumeRole on resource: %s",
                w.identity.Arn,
                role_arn
            ),
            403
        )
    end
    local duration = tonumber(p.DurationSeconds) or 3600
    if duration < 900 or duration > 43200 then
        ctx:fail("ValidationError", "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.")
    end
    w.seq = w.seq + 1
    local role_name = role:match("([^/]+)$")
    local role_id = "AROA" .. util.upper_id("", #role_name * 71, 17)
    return {
        Credentials = {
            AccessKeyId = "ASIA" .. util.upper_id("", w.seq * 73, 16),
            SecretAccessKey = util.hex_digits(w.seq * 79, 40),
            SessionToken = "FwoGZXIvYXdzE" .. util.hex_digits(w.seq * 83, 120),
            Expiration = util.iso(w.t + duration, false),
        },
        AssumedRoleUser = {
            AssumedRoleId = role_id .. ":" .. session,
            Arn = string.format("arn:aws:sts::%s:assumed-role/%s/%s", util.ACCOUNT, role_name, session),
        },
        PackedPolicySize = p.Policy and 6 or nil,
    }
end

-- Every new world builds this state and sends this module the calls to sts.
require("atlas.mock.world").register { name = "sts", build = M.build, handlers = { sts = H } }

return M
