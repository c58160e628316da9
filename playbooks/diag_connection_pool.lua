-- When the application's pool runs dry: who holds the database's
-- connections (pg_stat_activity by state), which sessions sit idle inside a
-- transaction, and how much headroom is left against max_connections.
-- Read-only. Exits 5 (critical) when the headroom is below the critical
-- threshold.
local atlas = require "atlas"
local sql = require "atlas.sql"
local replication = require "atlas.replication"

local function text(v)
    if v == nil or v == atlas.null then return "-" end
    return tostring(v)
end

-- The database to look at: a conninfo, or the region's RDS instance.
local function target(ctx)
    if ctx.params.target and ctx.params.target ~= "" then
        local parsed = sql.parse_conninfo(ctx.params.target)
        return ctx.params.target, (parsed.host or "localhost") .. ":" .. (parsed.port or "5432")
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
        region
end

local report
local SHOW_AT_MOST = 20

return atlas.playbook {
    name = "diag_connection_pool",
    description = "Connections by state, idle-in-transaction sessions and headroom against max_connections",
    lock = false, -- read-only: any number may run at once
    params = {
        region = { type = "region", default = "eu-west-1", description = "whose RDS instance to inspect" },
        target = { type = "string", description = "conninfo or URI instead of the region's RDS instance" },
        idle_in_transaction_seconds = {
            type = "number",
            default = 60,
            description = "report sessions idle in a transaction for longer",
        },
        warn_headroom_percent = { type = "number", default = 20, description = "headroom below this is a warning" },
        critical_headroom_percent = { type = "number", default = 5, description = "headroom below this is critical" },
        password_secret = {
            type = "string",
            default = replication.PASSWORD_SECRET,
            description = "Secrets Manager secret holding the master password (RDS endpoints only)",
        },
    },
    validate = function(values) return replication.validate_conninfos(values, { "target" }) end,
    steps = {
        {
            name = "connections by state",
            run = function(ctx)
                local spec, label = target(ctx)
                local db <close> = sql.connect(spec)
                report = { label = label, connections = replication.connections(db) }
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
