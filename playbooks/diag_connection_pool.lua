-- When the application's pool runs dry: who holds the database's
-- connections (pg_stat_activity by state), which sessions sit idle inside a
-- transaction, and how much headroom is left against max_connections.
-- Read-only unless terminate_idle=true: then, after confirmation, it ends the
-- sessions idle (or idle in a transaction) for longer than idle_seconds, and
-- never an active one. Exits 5 (critical) when the headroom is below the
-- critical threshold.
local atlas = require "atlas"
local sql = require "atlas.sql"
local replication = require "atlas.replication"
local env = require "atlas.env"

local text = atlas.text

-- The database to look at: a conninfo, or the region's RDS instance.
local function target(ctx)
    if ctx.params.target and ctx.params.target ~= "" then
        local parsed = sql.parse_conninfo(ctx.params.target)
        local label = (parsed.host or "localhost") .. ":" .. (parsed.port or "5432")
        return ctx.params.target, label, label
    end
    local region = ctx.params.region
    local instances = require("atlas.rds").describe_db_instances {
        region = region,
        DBInstanceIdentifier = "atlas-production-db-" .. region,
    }
    local instance = instances[1]
    if not instance or not instance.Endpoint then
        ctx.fail("RDS instance atlas-production-db-%s has no endpoint", region)
    end
    return {
        host = instance.Endpoint.Address,
        port = instance.Endpoint.Port or 5432,
        dbname = instance.DBName or "atlas",
        user = instance.MasterUsername or "atlas_admin",
        password_secret = ctx.params.password_secret,
        secret_region = replication.PRIMARY_REGION,
    },
        region,
        string.format("%s (%s)", instance.DBInstanceIdentifier, region)
end

local report
local SHOW_AT_MOST = 20

return atlas.playbook {
    name = "diag_connection_pool",
    description = "Connections by state, idle-in-transaction sessions and headroom against max_connections",
    -- No run lock, even with terminate_idle: ending idle sessions twice at
    -- once is harmless, and the read-only use must never wait for a lock.
    lock = false,
    params = {
        region = { type = "region", default = "eu-west-1", description = "whose RDS instance to inspect" },
        target = { type = "string", description = "conninfo or URI instead of the region's RDS instance" },
        idle_in_transaction_seconds = {
            type = "number",
            default = 60,
            description = "report sessions idle in a transaction for longer",
        },
        terminate_idle = {
            type = "boolean",
            default = false,
            description = "end sessions idle (or idle in a transaction) for longer than idle_seconds, after confirmation",
        },
        idle_seconds = {
            type = "number",
            default = 600,
            min = 0,
            description = "with terminate_idle: how long a session must have been idle to be ended",
        },
        warn_headroom_percent = { type = "number", default = 20, description = "headroom below this is a warning" },
        critical_headroom_percent = { type = "number", default = 5, description = "headroom below this is critical" },
        password_secret = env.password_secret_param(),
    },
    validate = function(values) return replication.validate_conninfos(values, { "target" }) end,
    steps = {
        {
            name = "connections by state",
            run = function(ctx)
                local spec, label, instance = target(ctx)
                local db <close> = sql.connect(spec)
                report = { spec = spec, label = label, instance = instance, connections = replication.connections(db) }
                report.clients = replication.connections_by_client(db)
                report.idle = replication.idle_in_transaction(db, ctx.params.idle_in_transaction_seconds)
                report.long = replication.long_transactions(db, ctx.params.idle_in_transaction_seconds)
                for _, row in ipairs(report.connections.by_state) do
                    atlas.log("%s: %d %s", label, row.count, row.state)
                end
                atlas.log(
                    "%s: total=%d max_connections=%d reserved=%d",
                    label,
                    report.connections.total,
                    report.connections.max_connections,
                    report.connections.reserved
                )
                for i, row in ipairs(report.clients) do
                    if i > 5 then break end
                    atlas.log(
                        "%s: %d from %s as %s at %s (active %d, idle %d, idle in transaction %d)",
                        label,
                        row.total,
                        row.application_name ~= "" and row.application_name or "(no name)",
                        row.usename,
                        row.client_addr,
                        row.active,
                        row.idle,
                        row.idle_in_transaction
                    )
                end
            end,
        },
        {
            name = "idle in transaction",
            run = function(ctx)
                if #report.idle == 0 then
                    atlas.log("no session idle in a transaction for over %g s", ctx.params.idle_in_transaction_seconds)
                end
                -- The oldest first, and only enough to act on: a pool gone
                -- bad can have thousands.
                for i, row in ipairs(report.idle) do
                    if i > SHOW_AT_MOST then
                        atlas.warn("... and %d more idle in a transaction", #report.idle - SHOW_AT_MOST)
                        break
                    end
                    atlas.warn(
                        "pid %d (%s, %s, %s) %s for %.0f s: %s",
                        row.pid,
                        text(row.usename),
                        text(row.application_name),
                        text(row.client_addr),
                        row.state,
                        row.idle_seconds,
                        text(row.query)
                    )
                end
                for i, row in ipairs(report.long) do
                    if i > SHOW_AT_MOST then
                        atlas.log("... and %d more long transactions", #report.long - SHOW_AT_MOST)
                        break
                    end
                    atlas.log(
                        "long transaction: pid %d (%s) open for %.0f s, %s",
                        row.pid,
                        text(row.usename),
                        row.xact_seconds,
                        text(row.state)
                    )
                end
            end,
        },
        {
            name = "terminate idle sessions",
            mutates = true,
            -- Asked inside the step, naming the instance and how many
            -- sessions: without terminate_idle there is nothing to confirm.
            confirm = true,
            run = function(ctx)
                if not ctx.params.terminate_idle then return end
                local db <close> = sql.connect(report.spec)
                local idle = replication.idle_sessions(db, ctx.params.idle_seconds)
                if #idle == 0 then
                    atlas.log(
                        "%s: no session idle for over %g s; nothing to end",
                        report.label,
                        ctx.params.idle_seconds
                    )
                    return
                end
                local pids = {}
                for i, row in ipairs(idle) do
                    pids[i] = row.pid
                    if i <= SHOW_AT_MOST then
                        atlas.log(
                            "%s pid %d (%s, %s, %s) %s for %.0f s: %s",
                            ctx.dry_run and "would end" or "to end:",
                            row.pid,
                            text(row.usename),
                            text(row.application_name),
                            text(row.client_addr),
                            row.state,
                            row.idle_seconds,
                            text(row.query)
                        )
                    end
                end
                if #idle > SHOW_AT_MOST then atlas.log("... and %d more", #idle - SHOW_AT_MOST) end
                if not ctx.dry_run then
                    atlas.confirm(
                        string.format(
                            "End %d session%s idle for over %g s on %s?",
                            #idle,
                            #idle == 1 and "" or "s",
                            ctx.params.idle_seconds,
                            report.instance
                        )
                    )
                end
                local rows = replication.terminate_idle(db, pids, ctx.params.idle_seconds)
                if ctx.dry_run then return end
                local ended = 0
                for _, row in ipairs(rows) do
                    if row.terminated then ended = ended + 1 end
                end
                ctx.state.terminated = ended
                if ended < #idle then
                    atlas.log(
                        "%d of the listed sessions were no longer idle (or gone) and were left alone",
                        #idle - ended
                    )
                end
                atlas.log("%s: ended %d idle session%s", report.label, ended, ended == 1 and "" or "s")
                if ended > 0 then report.connections = replication.connections(db) end
            end,
        },
        {
            name = "headroom",
            run = function(ctx)
                local c = report.connections
                atlas.log(
                    "%s: headroom=%d of %d usable connections (%.1f%%)",
                    report.label,
                    c.headroom,
                    c.available,
                    c.headroom_percent
                )
                ctx.state.headroom = c.headroom
                ctx.state.idle_in_transaction = #report.idle
                if c.headroom_percent < ctx.params.critical_headroom_percent then
                    ctx.critical(
                        "%s: only %d connections left (%.1f%% < %g%%); %d idle in transaction",
                        report.label,
                        c.headroom,
                        c.headroom_percent,
                        ctx.params.critical_headroom_percent,
                        #report.idle
                    )
                elseif c.headroom_percent < ctx.params.warn_headroom_percent then
                    atlas.warn(
                        "%s: headroom %.1f%% is below %g%%",
                        report.label,
                        c.headroom_percent,
                        ctx.params.warn_headroom_percent
                    )
                end
            end,
        },
    },
}
