-- Drill notifications (--notify): when a drill fails or misses its RTO, a
-- message with the verdict and where the report is goes to an SNS topic
-- (sns:ARN) or a webhook (https://...). The notification leaves the world
-- the drill ran in: a mock drill still tells the real team.
local errors = require "atlas.errors"
local runtime = require "atlas.run.runtime"
local json = require "atlas.json"

local M = {}

local function usage(fmt, ...) errors.raise { kind = "usage", message = string.format(fmt, ...) } end

local SNS_ARN = "^arn:aws[%w%-]*:sns:([%w%-]+):%d+:[%w%-_%.]+$"

-- notify.parse(target) -> {kind="sns", arn=, region=} | {kind="webhook", url=}; a usage error otherwise
function M.parse(target)
    local arn = target:match("^sns:(.+)$")
    if arn then
        local region = arn:match(SNS_ARN)
        if not region then usage("--notify %s: not an SNS topic ARN (sns:arn:aws:sns:REGION:ACCOUNT:TOPIC)", target) end
        return { kind = "sns", arn = arn, region = region, where = target }
    end
    if target:match("^https?://[^/%s]+") then return { kind = "webhook", url = target, where = target } end
    usage("--notify takes sns:ARN or an https:// webhook URL, not %s", target)
end

-- notify.text(model, locations) -> subject, message
function M.text(m, locations)
    local seconds = require("atlas.run.log").seconds_text
    local subject = string.format("atlas-run drill %s: %s", m.verdict:upper(), m.playbook)
    local lines = {
        string.format(
            "Drill %s: %s in %s, run %s by %s, started %s.",
            m.verdict:upper(),
            m.playbook,
            m.world_text,
            tostring(m.run_id),
            m.run_by,
            m.started_at
        ),
        string.format(
            "Recovery %s against an RTO of %s%s.",
            m.recovery_seconds ~= json.null and seconds(m.recovery_seconds) or "not reached",
            m.rto_seconds ~= json.null and seconds(m.rto_seconds) or "none",
            m.verdict_reason and (": " .. m.verdict_reason) or ""
        ),
    }
    if m.error then lines[#lines + 1] = "Failure: " .. m.error end
    for _, where in ipairs(locations) do
        lines[#lines + 1] = "Report: " .. where
    end
    return subject, table.concat(lines, "\n")
end

local function send(target, subject, message, m)
    if target.kind == "sns" then
        require("atlas.aws").call {
            service = "sns",
            action = "Publish",
            region = target.region,
            params = { TopicArn = target.arn, Subject = subject, Message = message },
        }
        return true
    end
    local response = require("atlas.http").request {
        method = "POST",
        url = target.url,
        headers = { ["content-type"] = "application/json" },
        body = json.encode {
            text = subject .. "\n" .. message,
            playbook = m.playbook,
            verdict = m.verdict,
            recovery_seconds = m.recovery_seconds,
            rto_seconds = m.rto_seconds,
            run_id = m.run_id,
        },
        timeout = 10,
    }
    if response.status < 200 or response.status > 299 then
        return nil, string.format("the webhook answered HTTP %d", response.status)
    end
    return true
end

-- notify.send(target, model, locations) -> true | nil, why. Called only for a
-- drill that did not pass. Outside the mock world, whatever world the drill had.
function M.send(target, m, locations)
    local log = require "atlas.run.log"
    local subject, message = M.text(m, locations)
    message, subject = log.redact(message), log.redact(subject)
    local ok, sent, why = runtime.outside_world(send, target, subject, message, m)
    if not ok then return nil, errors.message(sent) end
    if not sent then return nil, why end
    return true
end

return M
