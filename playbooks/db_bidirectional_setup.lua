-- The runbook's "Database Replication Setup", step 5: bidirectional
-- replication, each region publisher and subscriber of every other.
--
-- It needs PostgreSQL 16 or later on every database: a subscription created
-- WITH (origin = none) applies only changes that originated on its
-- publisher, so a row applied from another region is not published again.
-- Before 16 there is no origin option, each applied change would be sent on
-- and come back, and the regions would loop; the playbook refuses.
local atlas = require "atlas"
local sql = require "atlas.sql"
local replication = require "atlas.replication"
local env = require "atlas.env"

local ORIGIN_NONE_SINCE = 160000

-- "eu-west-1" -> "eu", as in atlas_subscription_from_eu; a conninfo's
-- host:port -> its characters that are allowed in a name.
local function short(label)
    local prefix = label:match("^(%a%a)%-%a+%-%d$")
    if prefix then return prefix end
    return (label:lower():gsub("[^%w]+", "_"))
end

local nodes

local function resolve(ctx)
    if nodes then return nodes end
    nodes = {}
    local list = ctx.params.databases
    if list and #list > 0 then
        for i, text in ipairs(list) do
            nodes[i] = replication.conninfo_target(text)
        end
    else
        for i, region in ipairs(env.REGIONS) do
            nodes[i] = replication.instance_target(region, env.db_instance(region), ctx.params.password_secret)
            nodes[i].label = region
        end
    end
    for _, node in ipairs(nodes) do
        node.short = short(node.label)
    end
    return nodes
end

local function subscription_name(ctx, publisher) return ctx.params.subscription_prefix .. publisher.short end

local function version_text(num)
    local n = tonumber(num) or 0
    return string.format("%d.%d", n // 10000, n % 10000)
end

return atlas.playbook {
    name = "db_bidirectional_setup",
    description = "Bidirectional logical replication: every region publishes and subscribes with origin = none (PostgreSQL 16+)",
    lock = "atlas-production-db",
    params = {
        databases = {
            type = "list",
            description = "conninfos or URIs of the databases (default: the three regions' RDS instances)",
        },
        publication = {
            type = "string",
            default = replication.PUBLICATION,
            description = "publication on each database",
        },
        subscription_prefix = {
            type = "string",
            default = "atlas_subscription_from_",
            pattern = "^[%a_][%w_]*$",
            description = "subscriptions are named this plus the publisher (eu, us, ap)",
        },
        password_secret = env.password_secret_param(),
        wait = {
            type = "number",
            default = 120,
            min = 1,
            description = "seconds to wait for every subscription to stream",
        },
    },
    validate = function(values)
        if values.databases and #values.databases == 1 then return "databases: give at least two" end
        return replication.validate_conninfos(values, { "databases" })
    end,
    steps = {
        {
            name = "check versions and settings",
            run = function(ctx)
                local problems, old = {}, {}
                for _, node in ipairs(resolve(ctx)) do
                    local db <close> = sql.connect(node.spec)
                    local s = replication.settings(db, { "server_version_num", "wal_level" })
                    atlas.log(
                        "%s: PostgreSQL %s, wal_level = %s",
                        node.label,
                        version_text(s.server_version_num),
                        tostring(s.wal_level)
                    )
                    if (tonumber(s.server_version_num) or 0) < ORIGIN_NONE_SINCE then
                        old[#old + 1] = string.format("%s runs %s", node.label, version_text(s.server_version_num))
                    end
                    if s.wal_level ~= "logical" then
                        problems[#problems + 1] =
                            string.format("%s: wal_level is %s, not logical", node.label, tostring(s.wal_level))
                    end
                end
                if #old > 0 then
                    ctx.fail(
                        "refusing bidirectional replication: it needs PostgreSQL 16 or later on every database (%s). "
                            .. "Before 16 a subscription has no origin = none, so every change applied from one region "
                            .. "would be published again to the others and come back: the changes would loop. Upgrade "
                            .. "every region to 16 or later, or keep the one-way replication from %s. Nothing was changed.",
                        table.concat(old, ", "),
                        env.PRIMARY_REGION
                    )
                end
                if #problems > 0 then
                    ctx.fail("not ready for logical replication: %s", table.concat(problems, "; "))
                end
            end,
        },
        {
            name = "publish and subscribe with origin = none",
            mutates = true,
            confirm = true, -- asked inside, naming the instance, only when there is something to do
            run = function(ctx)
                local labels = {}
                for i, node in ipairs(resolve(ctx)) do
                    labels[i] = node.label
                end
                if not ctx.dry_run then
                    atlas.confirm(
                        string.format(
                            "Make %s publishers and subscribers of each other (publication %s, subscriptions with origin = none)?",
                            table.concat(labels, ", "),
                            ctx.params.publication
                        )
                    )
                end
                for _, node in ipairs(resolve(ctx)) do
                    local db <close> = sql.connect(node.spec)
                    local report = replication.ensure_publication(db, ctx.params.publication, replication.TABLES)
                    atlas.log(
                        "%s: publication %s %s",
                        node.label,
                        ctx.params.publication,
                        report.created and (ctx.dry_run and "would be created" or "created")
                            or (#report.added > 0 and "extended" or "already in place")
                    )
                end
                -- Then every database subscribes to every other one.
                local all = resolve(ctx)
                for _, subscriber in ipairs(all) do
                    local db <close> = sql.connect(subscriber.spec)
                    for _, publisher in ipairs(all) do
                        if publisher ~= subscriber then
                            local name = subscription_name(ctx, publisher)
                            local report = replication.ensure_subscription(db, {
                                name = name,
                                publication = ctx.params.publication,
                                connection = replication.primary_connection(publisher),
                                slot_name = replication.slot_name(name, subscriber.label),
                                -- The regions hold the same rows already (one-way
                                -- replication from the primary put them there).
                                copy_data = false,
                                create_slot = true,
                                origin = "none",
                            })
                            if report.mismatch then ctx.fail("%s: %s", subscriber.label, report.mismatch) end
                            local origin_set = not report.created and replication.ensure_origin_none(db, name)
                            atlas.log(
                                "%s: subscription %s from %s %s",
                                subscriber.label,
                                name,
                                publisher.label,
                                report.created and (ctx.dry_run and "would be created" or "created")
                                    or origin_set and (ctx.dry_run and "would be set to origin = none" or "set to origin = none")
                                    or "already in place with origin = none"
                            )
                        end
                    end
                end
            end,
        },
        {
            name = "verify",
            run = function(ctx)
                if ctx.dry_run then
                    atlas.log("dry run: the statements above were not run; nothing to verify")
                    return
                end
                local all = resolve(ctx)
                local deadline = atlas.now() + ctx.params.wait
                while true do
                    local pending = {}
                    for _, subscriber in ipairs(all) do
                        local db <close> = sql.connect(subscriber.spec)
                        local running = {}
                        for _, row in ipairs(replication.subscription_status(db)) do
                            if row.enabled and replication.present(row.pid) then running[row.subname] = true end
                        end
                        for _, publisher in ipairs(all) do
                            local name = subscription_name(ctx, publisher)
                            if publisher ~= subscriber and not running[name] then
                                pending[#pending + 1] = subscriber.label .. ": " .. name
                            end
                        end
                    end
                    if #pending == 0 then break end
                    if atlas.now() >= deadline then
                        ctx.fail("not streaming after %g s: %s", ctx.params.wait, table.concat(pending, ", "))
                    end
                    atlas.progress("waiting for %s", table.concat(pending, ", "))
                    atlas.sleep(0.5)
                end
                atlas.log("%d databases publish and subscribe to each other with origin = none", #all)
            end,
        },
    },
}
