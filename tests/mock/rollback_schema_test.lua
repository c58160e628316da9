-- rollback_schema in the mock world: the history it shows, the undo file in
-- one transaction, the restore into a new instance, and what it refuses.
local t = require "atlas.test"

local PLAYBOOK = "playbooks/rollback_schema.lua"

local messages = t.messages

-- Migration 4 added an audit table; migrations 5 and 6 came before it was noticed.
local function migrated_world()
    local world = t.world("healthy")
    local eu = world.db.regions["eu-west-1"]
    for v = 4, 6 do
        eu.flyway[#eu.flyway + 1] = {
            installed_rank = v,
            version = tostring(v),
            description = "migration " .. v,
            type = "SQL",
            script = "V" .. v .. "__migration.sql",
            checksum = v * 1000,
            installed_by = "atlas_admin",
            installed_on = "2026-12-01 10:0" .. v .. ":00",
            execution_time = 10,
            success = true,
        }
    end
    eu.tables.system_config_audit = true
    return world
end

local function undo_file(body)
    local path = t.tmpdir() .. "/undo.sql"
    t.write_file(path, body)
    return path
end

t.case("shows the last five migrations, newest first, and changes nothing without undo_sql or restore", function()
    local world = migrated_world()
    local result, events = t.run_playbook(PLAYBOOK, {}, { world = world })
    t.eq(result.status, "ok", tostring(result.error))
    local text = messages(events)
    t.match(
        text,
        "eu%-west%-1: #6 version 6 migration 6 %(V6__migration%.sql%) installed 2026%-12%-01T10:06:00 by atlas_admin, success"
    )
    t.match(text, "#2 version 2 user preferences")
    t.no_match(text, "#1 version 1")
    t.ok(text:find("#6 version", 1, true) < text:find("#5 version", 1, true), "newest first")
    t.match(text, "give undo_sql=FILE or restore=true")
    t.eq(#world:calls_to("rds", "RestoreDBInstanceFromDBSnapshot"), 0)
end)

t.case("undo_sql: the file is shown, confirmed and run in one transaction", function()
    local world = migrated_world()
    local path = undo_file("DROP TABLE system_config_audit;\nDELETE FROM flyway_schema_history WHERE version = '6';\n")
    local result, events = t.run_playbook(PLAYBOOK, { undo_sql = path }, { world = world })
    t.eq(result.status, "ok", tostring(result.error))
    local eu = world.db.regions["eu-west-1"]
    t.eq(eu.tables.system_config_audit, nil)
    t.eq(#eu.flyway, 5)
    local text = messages(events)
    t.match(text, "   1 | DROP TABLE system_config_audit;")
    t.match(text, "   2 | DELETE FROM flyway_schema_history WHERE version = '6';")
    t.match(text, "confirmed by %-%-yes: Run .*undo%.sql on atlas%-production%-db%-eu%-west%-1 in one transaction%?")
    local order = {}
    for _, call in ipairs(world.calls) do
        local word = call.module == "sql" and call.sql and not call.sql:find("atlas:") and call.sql:match("^%s*(%u+)")
        if word and word ~= "SET" then order[#order + 1] = word end
    end
    t.eq(order, { "BEGIN", "DROP", "DELETE", "COMMIT" })
end)

t.case("--dry-run shows the undo file and runs none of it", function()
    local world = migrated_world()
    local path = undo_file("DROP TABLE system_config_audit;\n")
    local result, events = t.run_playbook(PLAYBOOK, { undo_sql = path }, { world = world, dry_run = true })
    t.eq(result.status, "ok", tostring(result.error))
    t.ok(world.db.regions["eu-west-1"].tables.system_config_audit, "still there")
    local printed
    for _, e in ipairs(events) do
        if e.type == "call" and e.outcome == "dry-run" then printed = e.params end
    end
    t.match(printed, "DROP TABLE system_config_audit")
end)

t.case("restore=true: the pre-migration snapshot becomes a new instance; the primary is not touched", function()
    local world = migrated_world()
    local result, events = t.run_playbook(PLAYBOOK, { restore = "true" }, { world = world })
    t.eq(result.status, "ok", tostring(result.error))
    local calls = world:calls_to("rds", "RestoreDBInstanceFromDBSnapshot")
    t.eq(#calls, 1)
    t.eq(calls[1].params.DBInstanceIdentifier, "atlas-production-db-rollback")
    t.eq(calls[1].params.DBSnapshotIdentifier, "atlas-production-snapshot-before-migration")
    local inst = world:aws_invoke("rds", "DescribeDBInstances", "eu-west-1", {
        DBInstanceIdentifier = "atlas-production-db-rollback",
    }).DBInstances[1]
    t.eq(inst.DBInstanceStatus, "available")
    t.match(
        messages(events),
        "confirmed by %-%-yes: Restore snapshot atlas%-production%-snapshot%-before%-migration into the new instance atlas%-production%-db%-rollback in eu%-west%-1%? atlas%-production%-db%-eu%-west%-1 is not touched%."
    )
    for _, call in ipairs(world.calls) do
        if call.service == "rds" and call.action ~= "DescribeDBInstances" and call.action ~= "DescribeDBSnapshots" then
            t.eq(
                call.params.DBInstanceIdentifier,
                "atlas-production-db-rollback",
                call.action .. " only on the new instance"
            )
        end
    end
    t.eq(#world.db.regions["eu-west-1"].flyway, 6, "the database was not changed in place")
    -- Again: the instance exists and is not restored twice.
    result = t.run_playbook(PLAYBOOK, { restore = "true" }, { world = world })
    t.eq(result.status, "ok", tostring(result.error))
    t.eq(#world:calls_to("rds", "RestoreDBInstanceFromDBSnapshot"), 1)
end)

t.case("failures: an undo statement the database rejects, a missing snapshot, a refused confirmation", function()
    local world = migrated_world()
    local result = t.run_playbook(PLAYBOOK, { undo_sql = undo_file("DROP TABLE no_such_table;\n") }, { world = world })
    t.eq(result.status, "failed")
    t.eq(result.error.sqlstate, "42P01")
    local last = world.calls[#world.calls]
    t.eq(last.sql, "ROLLBACK", "the transaction was rolled back")

    result = t.run_playbook(PLAYBOOK, { restore = "true", snapshot = "no-such-snapshot" }, { world = world })
    t.eq(result.status, "failed")
    t.eq(result.error.code, "DBSnapshotNotFound")

    result = t.run_playbook(PLAYBOOK, { restore = "true" }, { world = world, yes = false })
    t.eq(result.status, "refused")
    t.eq(#world:calls_to("rds", "RestoreDBInstanceFromDBSnapshot"), 0)
end)

t.case("bad input: both ways back, a production instance name, a missing or transactional file", function()
    local path = undo_file("DROP TABLE system_config_audit;\n")
    t.raises(function() t.run_playbook(PLAYBOOK, { undo_sql = path, restore = "true" }) end, "choose one way back")
    t.raises(
        function() t.run_playbook(PLAYBOOK, { restore = "true", instance = "atlas-production-db-eu-west-1" }) end,
        "exists in production"
    )
    t.raises(function() t.run_playbook(PLAYBOOK, { undo_sql = "/nonexistent/undo.sql" }) end, "cannot read")
    t.raises(
        function() t.run_playbook(PLAYBOOK, { undo_sql = undo_file("BEGIN;\nDROP TABLE x;\nCOMMIT;\n") }) end,
        "contains BEGIN"
    )
end)
