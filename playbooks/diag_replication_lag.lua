-- The runbook's replication troubleshooting: the primary's slots and
-- walsenders (lag in bytes and seconds), each secondary's subscription and
-- apply worker, and long-running transactions that hold WAL back.
-- Read-only. Exits 5 (critical) when lag is over the threshold, a slot is
-- inactive or dropped, or a subscription is not running.
local atlas = require "atlas"
local sql = require "atlas.sql"
local replication = require "atlas.replication"
local env = require "atlas.env"

local text = atlas.text

local function seconds(v)
    if v == nil or v == atlas.null then return "-" end
    return string.format("%.3f", v)
end

-- Findings live in a local, not ctx.state: the rows hold values (NULLs,
-- timestamps) that need not survive the journal.
local findings

return atlas.playbook {
    name = "diag_replication_lag",
    description = "Replication slots, lag (bytes and seconds) and subscriptions; critical over the lag threshold",
    lock = false, -- read-only: any number may run at once
    params = {
        primary = {
            type = "string",
            description = "conninfo or URI of the primary (default: the eu-west-1 RDS instance)",
        },
        secondaries = {
            type = "list",
            description = "comma-separated conninfos or URIs of the secondaries (default: us-east-1 and ap-southeast-1 RDS)",
        },
        subscription = {
            type = "string",
            default = replication.SUBSCRIPTION,
            description = "subscription expected on each secondary",
        },
        max_lag_seconds = { type = "number", default = 10, description = "lag above this is critical (runbook: 10 s)" },
        warn_lag_bytes = {
            type = "integer",
            default = 64 * 1024 * 1024,
            description = "WAL behind above this is a warning",
        },
        long_transaction_seconds = {
            type = "number",
            default = 300,
            description = "transactions open longer are reported",
        },
        password_secret = env.password_secret_param(),
    },
    validate = function(values) return replication.validate_conninfos(values, { "primary", "secondaries" }) end,
    steps = {
        {
            name = "primary slots and lag",
            run = function(ctx)
                findings = { subscribers = {} }
                local t = replication.targets_of(ctx)
                local db <close> = sql.connect(t.primary.spec)
                findings.slots = replication.slot_status(db)
                findings.long_transactions = replication.long_transactions(db, ctx.params.long_transaction_seconds)
                if #findings.slots == 0 then atlas.log("%s: no replication slots", t.primary.label) end
                local slot_pids = {}
                for _, slot in ipairs(findings.slots) do
                    atlas.log(
                        "slot %s: active=%s state=%s client=%s lag_bytes=%s lag_seconds=%s wal_status=%s",
                        slot.slot_name,
                        tostring(slot.active),
                        text(slot.state),
                        text(slot.client_addr),
                        text(slot.lag_bytes),
                        seconds(slot.lag_seconds),
                        text(slot.wal_status)
                    )
                    if slot.pid ~= atlas.null then slot_pids[slot.pid] = true end
                end
                -- Walsenders without a slot (a physical replica, pg_basebackup):
                -- the runbook's pg_stat_replication query covers them too.
                findings.walsenders = {}
                for _, row in ipairs(replication.replication_stats(db)) do
                    if not slot_pids[row.pid] then
                        findings.walsenders[#findings.walsenders + 1] = row
                        atlas.log(
                            "walsender %s (%s): state=%s lag_bytes=%s lag_seconds=%s",
                            text(row.application_name),
                            text(row.client_addr),
                            text(row.state),
                            text(row.lag_bytes),
                            seconds(row.lag_seconds)
                        )
                    end
                end
            end,
        },
        {
            name = "secondary subscriptions",
            run = function(ctx)
                local t = replication.targets_of(ctx)
                for _, secondary in ipairs(t.secondaries) do
                    local entry = { label = secondary.label }
                    findings.subscribers[#findings.subscribers + 1] = entry
                    local ok, err = pcall(function()
                        local db <close> = sql.connect(secondary.spec)
                        entry.subscriptions = replication.subscription_status(db)
                    end)
                    if not ok then
                        entry.error = err
                        atlas.warn("%s: cannot read subscriptions: %s", secondary.label, tostring(err))
                    else
                        for _, sub in ipairs(entry.subscriptions) do
                            atlas.log(
                                "%s: subscription %s enabled=%s worker=%s slot=%s received_lsn=%s tables_ready=%d/%d last_message=%ss ago",
                                secondary.label,
                                sub.subname,
                                tostring(sub.enabled),
                                text(sub.pid),
                                text(sub.slot_name),
                                text(sub.received_lsn),
                                sub.tables_ready,
                                sub.tables_total,
                                seconds(sub.seconds_since_message)
                            )
                        end
                        if #entry.subscriptions == 0 then atlas.log("%s: no subscriptions", secondary.label) end
                    end
                end
            end,
        },
        {
            name = "assess",
            run = function(ctx)
                local problems = replication.assess {
                    slots = findings.slots,
                    subscribers = findings.subscribers,
                    long_transactions = findings.long_transactions,
                    max_lag_seconds = ctx.params.max_lag_seconds,
                    warn_lag_bytes = ctx.params.warn_lag_bytes,
                    expected_subscription = ctx.params.subscription,
                }
                for _, row in ipairs(findings.walsenders) do
                    if row.lag_seconds ~= atlas.null and row.lag_seconds > ctx.params.max_lag_seconds then
                        problems[#problems + 1] = {
                            severity = "critical",
                            message = string.format(
                                "walsender %s (%s) lags %.1f s (over %g s)",
                                text(row.application_name),
                                text(row.client_addr),
                                row.lag_seconds,
                                ctx.params.max_lag_seconds
                            ),
                        }
                    end
                end
                for _, subscriber in ipairs(findings.subscribers) do
                    if subscriber.error then
                        problems[#problems + 1] = {
                            severity = "critical",
                            message = subscriber.label .. ": unreachable: " .. tostring(subscriber.error),
                        }
                    end
                end
                local critical, first_critical = 0, nil
                for _, problem in ipairs(problems) do
                    if problem.severity == "critical" then
                        critical = critical + 1
                        first_critical = first_critical or problem.message
                        atlas.warn("CRITICAL %s", problem.message)
                    else
                        atlas.warn("warning %s", problem.message)
                    end
                end
                ctx.state.critical = critical
                ctx.state.warnings = #problems - critical
                if critical > 0 then
                    ctx.critical(
                        "%d critical replication problem%s (first: %s)",
                        critical,
                        critical == 1 and "" or "s",
                        first_critical
                    )
                end
                atlas.log(
                    "replication healthy: %d slot%s, lag within %g s, %d warning%s",
                    #findings.slots,
                    #findings.slots == 1 and "" or "s",
                    ctx.params.max_lag_seconds,
                    #problems,
                    #problems == 1 and "" or "s"
                )
            end,
        },
    },
}
