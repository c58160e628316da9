-- The runbook's "Schema rollback": shows the last migrations Flyway
-- recorded, and either runs an undo SQL file in one transaction (shown in
-- full before the confirmation) or restores the snapshot taken before the
-- migration into a new instance. It never overwrites a database in place:
-- the restore always makes a new instance, and switching the application
-- to it is a separate, deliberate step.
local atlas = require "atlas"
local sql = require "atlas.sql"
local rds = require "atlas.rds"
local errors = require "atlas.errors"
local replication = require "atlas.replication"
local env = require "atlas.env"

local SHOWN = 5

local text = atlas.text

-- The database to look at and act on: a conninfo, or the region's RDS instance.
local function target(ctx)
    if ctx.params.target and ctx.params.target ~= "" then return replication.conninfo_target(ctx.params.target) end
    local t =
        replication.instance_target(ctx.params.region, env.db_instance(ctx.params.region), ctx.params.password_secret)
    return t
end

local function read_file(path)
    local f, err = io.open(path, "r")
    if not f then return nil, err end
    local body = f:read("a")
    f:close()
    return body
end

-- Statements that would end or start a transaction inside ours.
local function manages_transaction(body)
    local stripped = body:gsub("/%*.-%*/", " "):gsub("%-%-[^\n]*", " ")
    for statement in stripped:gmatch("[^;]+") do
        local first = statement:match("^%s*(%a+)")
        first = first and first:upper()
        if first == "BEGIN" or first == "COMMIT" or first == "ROLLBACK" or first == "END" or first == "START" then
            return first
        end
    end
end

local function show_history(label, rows)
    if not rows then
        atlas.warn("%s: there is no flyway_schema_history table", label)
        return
    end
    local first = math.max(1, #rows - SHOWN + 1)
    if #rows == 0 then atlas.log("%s: flyway_schema_history is empty", label) end
    for i = #rows, first, -1 do
        local row = rows[i]
        atlas.log(
            "%s: #%s version %s %s (%s) installed %s by %s, %s",
            label,
            text(row.installed_rank),
            text(row.version),
            text(row.description),
            text(row.script),
            text(row.installed_on),
            text(row.installed_by),
            row.success == true and "success" or "FAILED"
        )
    end
end

return atlas.playbook {
    name = "rollback_schema",
    description = "Schema rollback: Flyway's last migrations, an undo SQL file in one transaction, or a restore of the pre-migration snapshot into a new instance",
    lock = "atlas-production-db",
    params = {
        region = { type = "region", default = env.PRIMARY_REGION, description = "whose RDS instance and snapshot" },
        target = { type = "string", description = "conninfo or URI instead of the region's RDS instance" },
        undo_sql = { type = "string", description = "a file of SQL that undoes the migration, run in one transaction" },
        restore = {
            type = "boolean",
            default = false,
            description = "restore the pre-migration snapshot into a new instance",
        },
        snapshot = {
            type = "string",
            default = env.SNAPSHOTS[2],
            description = "the snapshot taken before the migration",
        },
        instance = {
            type = "string",
            default = "atlas-production-db-rollback",
            pattern = "^[%a][%w%-]*$",
            description = "the new instance the snapshot is restored into",
        },
        password_secret = env.password_secret_param(),
        wait_timeout = { type = "integer", default = 1800, min = 60, description = "seconds to wait for the restore" },
    },
    validate = function(values)
        if values.undo_sql and values.undo_sql ~= "" then
            if values.restore then return "undo_sql and restore=true: choose one way back" end
            local body, err = read_file(values.undo_sql)
            if not body then return "undo_sql: cannot read " .. tostring(err) end
            if not body:match("%S") then return "undo_sql: " .. values.undo_sql .. " is empty" end
            local word = manages_transaction(body)
            if word then
                return string.format(
                    "undo_sql: %s contains %s; the playbook runs the file in one transaction of its own",
                    values.undo_sql,
                    word
                )
            end
        end
        for _, region in ipairs(env.REGIONS) do
            if values.instance == env.db_instance(region) or values.instance == env.REPLICA then
                return "instance: " .. values.instance .. " exists in production; the restore goes to a new instance"
            end
        end
        return replication.validate_conninfos(values, { "target" })
    end,
    steps = {
        {
            name = "schema history",
            run = function(ctx)
                local t = target(ctx)
                local ok, err = pcall(function()
                    local db <close> = sql.connect(t.spec)
                    show_history(t.label, replication.flyway_history(db))
                end)
                if not ok then
                    -- A broken schema must not stand in the way of the restore.
                    if ctx.params.restore and errors.is(err) then
                        atlas.warn("%s: cannot read flyway_schema_history: %s", t.label, errors.message(err))
                    else
                        error(err, 0)
                    end
                end
                if not ctx.params.restore and not ctx.params.undo_sql then
                    atlas.log("nothing else asked: give undo_sql=FILE or restore=true to roll back")
                end
            end,
        },
        {
            name = "run the undo SQL",
            mutates = true,
            confirm = true, -- asked inside, naming the instance, only when there is something to do
            run = function(ctx)
                local path = ctx.params.undo_sql
                if not path or path == "" then return end
                local body = assert(read_file(path))
                local t = target(ctx)
                atlas.log("%s (%d bytes), to run on %s in one transaction:", path, #body, t.label)
                local n = 0
                for line in (body:gsub("\n$", "") .. "\n"):gmatch("([^\n]*)\n") do
                    n = n + 1
                    atlas.log("%4d | %s", n, line)
                end
                if not ctx.dry_run then
                    atlas.confirm(string.format("Run %s on %s in one transaction?", path, t.label))
                end
                local db <close> = sql.connect(t.spec)
                -- One exec, several statements: libpq runs them as one
                -- implicit transaction, and BEGIN/COMMIT make it explicit.
                db:transaction(function(tx) tx:exec(body, { mutates = true }) end)
                if ctx.dry_run then return end
                ctx.state.undone = path
                atlas.log("%s: %s committed", t.label, path)
                show_history(t.label, replication.flyway_history(db))
            end,
        },
        {
            name = "restore the pre-migration snapshot",
            mutates = true,
            confirm = true, -- asked inside, naming the instance, only when there is something to do
            run = function(ctx)
                if not ctx.params.restore then return end
                local region, id = ctx.params.region, ctx.params.instance
                local snap, why = rds.available_snapshot { region = region, DBSnapshotIdentifier = ctx.params.snapshot }
                if not snap then ctx.fail("%s", why) end
                local inst = rds.restore_and_wait {
                    region = region,
                    DBInstanceIdentifier = id,
                    DBSnapshotIdentifier = ctx.params.snapshot,
                    timeout = ctx.params.wait_timeout,
                    before_restore = function()
                        if not ctx.dry_run then
                            atlas.confirm(
                                string.format(
                                    "Restore snapshot %s into the new instance %s in %s? %s is not touched.",
                                    ctx.params.snapshot,
                                    id,
                                    region,
                                    env.db_instance(region)
                                )
                            )
                        end
                        local source = rds.describe_db_instances({
                            region = region,
                            DBInstanceIdentifier = env.db_instance(region),
                        })[1]
                        return { DBInstanceClass = source and source.DBInstanceClass or "db.r6g.xlarge" }
                    end,
                }
                if ctx.dry_run then return end
                ctx.state.restored = id
                atlas.log(
                    "%s: %s available at %s:%s with the schema of %s; point the application at it to complete the rollback",
                    region,
                    id,
                    inst.Endpoint and inst.Endpoint.Address or "?",
                    tostring(inst.Endpoint and inst.Endpoint.Port or "?"),
                    tostring(snap.SnapshotCreateTime)
                )
            end,
        },
    },
}
