-- The runbook's "Database Replication Setup", steps 1 to 4: the primary's
-- settings (parameter group and server) checked before anything is created,
-- the publication on the EU primary, a subscription to it on each secondary,
-- and a check that the result replicates. Safe to run again: what exists is
-- left alone and the run says that nothing changed.
local atlas = require "atlas"
local sql = require "atlas.sql"
local replication = require "atlas.replication"
local env = require "atlas.env"

-- The settings logical replication needs on the primary. `min` is the
-- parameter a playbook run compares against.
local REQUIRED = {
    { name = "rds.logical_replication", exactly = "1" },
    { name = "max_wal_senders", min = "min_wal_senders" },
    { name = "max_replication_slots", min = "min_replication_slots" },
}

local function wrong(ctx, rule, value)
    if rule.exactly then return value ~= rule.exactly, rule.exactly end
    local want = ctx.params[rule.min]
    return (tonumber(value) or -1) < want, tostring(want)
end

-- Problems in the RDS parameter group of the eu-west-1 primary, each with
-- the exact change that fixes it.
local function parameter_group_problems(ctx)
    local rds = require "atlas.rds"
    local region, id = replication.PRIMARY_REGION, env.db_instance(replication.PRIMARY_REGION)
    local instance = rds.describe_db_instances({ region = region, DBInstanceIdentifier = id })[1]
    local membership = (instance.DBParameterGroups or {})[1]
    if not membership then return { string.format("%s has no DB parameter group", id) } end
    local group = membership.DBParameterGroupName
    local values = {}
    for _, param in ipairs(rds.describe_db_parameters { region = region, DBParameterGroupName = group }) do
        values[param.ParameterName] = param.ParameterValue
    end
    local problems, changes = {}, {}
    for _, rule in ipairs(REQUIRED) do
        local value = values[rule.name]
        local bad, want = wrong(ctx, rule, value)
        atlas.log("parameter group %s: %s = %s", group, rule.name, tostring(value or "(engine default)"))
        if bad then
            problems[#problems + 1] = string.format(
                "%s is %s in parameter group %s; it must be %s%s",
                rule.name,
                tostring(value or "the engine default"),
                group,
                rule.exactly and "" or "at least ",
                want
            )
            changes[#changes + 1] =
                string.format("ParameterName=%s,ParameterValue=%s,ApplyMethod=pending-reboot", rule.name, want)
        end
    end
    if #changes > 0 then
        problems[#problems + 1] = string.format(
            "change: aws rds modify-db-parameter-group --region %s --db-parameter-group-name %s --parameters %s, "
                .. "then aws rds reboot-db-instance --region %s --db-instance-identifier %s",
            region,
            group,
            table.concat(changes, " "),
            region,
            id
        )
    elseif membership.ParameterApplyStatus == "pending-reboot" then
        problems[#problems + 1] = string.format(
            "parameter group %s is pending-reboot on %s: its values are not in effect until "
                .. "aws rds reboot-db-instance --region %s --db-instance-identifier %s",
            group,
            id,
            region,
            id
        )
    end
    return problems, id
end

-- "created" or, under --dry-run, "would create".
local function did(ctx, verb) return ctx.dry_run and ("would " .. verb) or (verb:gsub("e?$", "ed", 1)) end

local function count_change(ctx, what)
    ctx.state.changes = ctx.state.changes or {}
    table.insert(ctx.state.changes, what)
end

return atlas.playbook {
    name = "db_publication_setup",
    description = "Create the EU publication and the subscriptions on the secondaries, then verify replication",
    params = {
        primary = {
            type = "string",
            description = "conninfo or URI of the primary (default: the eu-west-1 RDS instance)",
        },
        secondaries = {
            type = "list",
            description = "comma-separated conninfos or URIs of the secondaries (default: the us-east-1 and ap-southeast-1 RDS instances)",
        },
        publication = { type = "string", default = replication.PUBLICATION, description = "publication name" },
        subscription = { type = "string", default = replication.SUBSCRIPTION, description = "subscription name" },
        password_secret = env.password_secret_param(),
        wait = { type = "number", default = 120, description = "seconds to wait for the subscriptions to stream" },
        min_wal_senders = {
            type = "integer",
            default = 10,
            min = 1,
            description = "max_wal_senders must be at least this",
        },
        min_replication_slots = {
            type = "integer",
            default = 10,
            min = 1,
            description = "max_replication_slots must be at least this",
        },
    },
    validate = function(values) return replication.validate_conninfos(values, { "primary", "secondaries" }) end,
    steps = {
        {
            name = "check the primary's settings",
            run = function(ctx)
                local t = replication.targets_of(ctx)
                local problems, instance = {}, nil
                if ctx.params.primary and ctx.params.primary ~= "" then
                    atlas.log(
                        "%s: given as a conninfo, so no RDS parameter group to read; the server's settings decide",
                        t.primary.label
                    )
                else
                    problems, instance = parameter_group_problems(ctx)
                    -- The server's settings follow the group after a reboot:
                    -- fix the group first.
                    if #problems > 0 then
                        ctx.fail(
                            "the primary is not ready for logical replication; nothing was created:\n  %s",
                            table.concat(problems, "\n  ")
                        )
                    end
                end
                local db <close> = sql.connect(t.primary.spec)
                local settings = replication.settings(db, { "wal_level", "max_wal_senders", "max_replication_slots" })
                atlas.log(
                    "%s: wal_level = %s, max_wal_senders = %s, max_replication_slots = %s",
                    t.primary.label,
                    tostring(settings.wal_level),
                    tostring(settings.max_wal_senders),
                    tostring(settings.max_replication_slots)
                )
                if settings.wal_level ~= "logical" then
                    problems[#problems + 1] = instance
                            and string.format(
                                "wal_level is %s on the server; rds.logical_replication = 1 makes it logical after "
                                    .. "aws rds reboot-db-instance --region %s --db-instance-identifier %s",
                                tostring(settings.wal_level),
                                replication.PRIMARY_REGION,
                                instance
                            )
                        or string.format(
                            "wal_level is %s on the server; change: ALTER SYSTEM SET wal_level = logical; then restart the server",
                            tostring(settings.wal_level)
                        )
                end
                if not instance then
                    for _, rule in ipairs(REQUIRED) do
                        if rule.min then
                            local bad, want = wrong(ctx, rule, settings[rule.name])
                            if bad then
                                problems[#problems + 1] = string.format(
                                    "%s is %s on the server; change: ALTER SYSTEM SET %s = %s; then restart the server",
                                    rule.name,
                                    tostring(settings[rule.name]),
                                    rule.name,
                                    want
                                )
                            end
                        end
                    end
                end
                if #problems > 0 then
                    ctx.fail(
                        "the primary is not ready for logical replication; nothing was created:\n  %s",
                        table.concat(problems, "\n  ")
                    )
                end
                atlas.log("%s: ready for logical replication", t.primary.label)
            end,
        },
        {
            name = "create publication",
            mutates = true,
            confirm = "Create the publication on the primary, or add the tables it lacks?",
            run = function(ctx)
                local t = replication.targets_of(ctx)
                local db <close> = sql.connect(t.primary.spec)
                local report = replication.ensure_publication(db, ctx.params.publication, replication.TABLES)
                if report.created then
                    count_change(ctx, "publication")
                    atlas.log(
                        "%s: %s publication %s (%s)",
                        t.primary.label,
                        did(ctx, "create"),
                        ctx.params.publication,
                        table.concat(replication.TABLES, ", ")
                    )
                elseif #report.added > 0 then
                    count_change(ctx, "publication tables")
                    atlas.log(
                        "%s: %s %s to publication %s",
                        t.primary.label,
                        did(ctx, "add"),
                        table.concat(report.added, ", "),
                        ctx.params.publication
                    )
                else
                    atlas.log(
                        "%s: publication %s already covers %s",
                        t.primary.label,
                        ctx.params.publication,
                        table.concat(report.tables, ", ")
                    )
                end
                if #report.extra > 0 then
                    atlas.warn(
                        "publication %s also covers %s (left as is)",
                        ctx.params.publication,
                        table.concat(report.extra, ", ")
                    )
                end
            end,
        },
        {
            name = "create subscriptions",
            mutates = true,
            confirm = "Create or enable the subscriptions on the secondaries (each one makes a replication slot on the primary)?",
            run = function(ctx)
                local t = replication.targets_of(ctx)
                local connection = replication.primary_connection(t.primary)
                for _, secondary in ipairs(t.secondaries) do
                    local db <close> = sql.connect(secondary.spec)
                    local report = replication.ensure_subscription(db, {
                        name = ctx.params.subscription,
                        publication = ctx.params.publication,
                        connection = connection,
                        slot_name = replication.slot_name(ctx.params.subscription, secondary.label),
                        copy_data = true,
                        create_slot = true,
                    })
                    if report.mismatch then ctx.fail("%s: %s", secondary.label, report.mismatch) end
                    if report.created then
                        count_change(ctx, "subscription " .. secondary.label)
                        atlas.log(
                            "%s: %s subscription %s (slot %s on the primary)",
                            secondary.label,
                            did(ctx, "create"),
                            ctx.params.subscription,
                            report.slot_name
                        )
                    elseif report.enabled_now then
                        count_change(ctx, "enabled " .. secondary.label)
                        atlas.log(
                            "%s: %s subscription %s (it was disabled)",
                            secondary.label,
                            did(ctx, "enable"),
                            ctx.params.subscription
                        )
                    else
                        atlas.log(
                            "%s: subscription %s already exists (slot %s)",
                            secondary.label,
                            ctx.params.subscription,
                            tostring(report.slot_name)
                        )
                    end
                end
            end,
        },
        {
            name = "verify replication",
            run = function(ctx)
                local t = replication.targets_of(ctx)
                if ctx.dry_run then
                    atlas.log("dry run: the statements above were not run; nothing to verify")
                    return
                end
                local primary <close> = sql.connect(t.primary.spec)
                local publication = replication.publication(primary, ctx.params.publication)
                if not publication then ctx.fail("publication %s is missing on the primary", ctx.params.publication) end
                local missing = {}
                local have = {}
                for _, name in ipairs(publication.tables) do
                    have[name] = true
                end
                for _, name in ipairs(replication.TABLES) do
                    if not have[name] and not publication.all_tables then missing[#missing + 1] = name end
                end
                if #missing > 0 then
                    ctx.fail("publication %s lacks %s", ctx.params.publication, table.concat(missing, ", "))
                end
                atlas.log(
                    "%s: publication %s covers %s",
                    t.primary.label,
                    ctx.params.publication,
                    table.concat(publication.tables, ", ")
                )

                local secondaries = {}
                for i, secondary in ipairs(t.secondaries) do
                    secondaries[i] = { label = secondary.label, conn = sql.connect(secondary.spec) }
                end
                local deadline = atlas.now() + ctx.params.wait
                local pending
                repeat
                    pending = {}
                    local slots = {}
                    for _, slot in ipairs(replication.slot_status(primary)) do
                        slots[slot.slot_name] = slot
                    end
                    for _, secondary in ipairs(secondaries) do
                        local sub = replication.subscription_status(secondary.conn)
                        local found
                        for _, row in ipairs(sub) do
                            if row.subname == ctx.params.subscription then found = row end
                        end
                        local slot = found and replication.present(found.slot_name) and slots[found.slot_name]
                        -- These will not fix themselves: no point waiting.
                        if not found then
                            ctx.fail("%s: subscription %s is missing", secondary.label, ctx.params.subscription)
                        elseif not found.enabled then
                            ctx.fail("%s: subscription %s is disabled", secondary.label, ctx.params.subscription)
                        elseif not slot then
                            ctx.fail(
                                "%s: the slot %s of subscription %s is gone from the primary; drop the "
                                    .. "subscription on %s (ALTER SUBSCRIPTION ... DISABLE; ALTER SUBSCRIPTION ... SET "
                                    .. "(slot_name = NONE); DROP SUBSCRIPTION ...) and run this again to recreate it",
                                secondary.label,
                                tostring(found.slot_name),
                                ctx.params.subscription,
                                secondary.label
                            )
                        end
                        local why
                        if not replication.present(found.pid) then
                            why = "no apply worker"
                        elseif not slot.active or slot.state ~= "streaming" then
                            why = "slot not streaming ("
                                .. tostring(replication.present(slot.state) and slot.state or "no walsender")
                                .. ")"
                        elseif found.tables_ready < found.tables_total then
                            why = string.format(
                                "initial copy: %d of %d tables ready",
                                found.tables_ready,
                                found.tables_total
                            )
                        end
                        secondary.why = why
                        secondary.slot = slot
                        if why then pending[#pending + 1] = secondary.label .. ": " .. why end
                    end
                    if #pending > 0 then
                        if atlas.now() >= deadline then break end
                        atlas.progress("waiting for %s", table.concat(pending, "; "))
                        atlas.sleep(0.5)
                    end
                until #pending == 0
                for _, secondary in ipairs(secondaries) do
                    secondary.conn:close()
                end
                if #pending > 0 then
                    ctx.fail("replication not streaming after %g s: %s", ctx.params.wait, table.concat(pending, "; "))
                end
                for _, secondary in ipairs(secondaries) do
                    atlas.log(
                        "%s: subscription %s enabled and streaming (slot %s, %d bytes behind)",
                        secondary.label,
                        ctx.params.subscription,
                        secondary.slot.slot_name,
                        secondary.slot.lag_bytes
                    )
                end
                local changes = ctx.state.changes or {}
                if #changes == 0 then
                    atlas.log("no change: the publication and %d subscriptions were already in place", #secondaries)
                else
                    atlas.log("changed: %s", table.concat(changes, ", "))
                end
            end,
        },
    },
}
