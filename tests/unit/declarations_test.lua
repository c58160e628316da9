-- Nothing changes unattended without being declared so: a step that changes
-- the world (mutates = true) has a confirm, or says why it is safe without a
-- person (unattended = "..."). `check` and every run refuse one that does
-- neither, naming the file, the line and the step.
local t = require "atlas.test"

local function playbook_text(step_fields)
    return string.format(
        [[
local atlas = require "atlas"
return atlas.playbook {
    name = "decl", description = "declarations",
    steps = {
        { name = "read", run = function() end },
        { name = "write", %s
          run = function() require("atlas").log("write ran") end },
    },
}
]],
        step_fields
    )
end

local function write_playbook(step_fields)
    local path = t.tmpdir() .. "/decl.lua"
    t.write_file(path, playbook_text(step_fields))
    return path
end

t.case("check flags a mutating step with neither confirm nor unattended: exit 2, file, line and step", function()
    local path = write_playbook("mutates = true,")
    local r = t.run { "check", path, "tests/fixtures/playbooks/typed.lua" }
    t.eq(r.code, 2, r.stdout .. r.stderr)
    t.match(r.stdout, path:gsub("%p", "%%%0") .. ":7: step 2 %(write%): changes the world %(mutates = true%) but has neither")
    t.match(r.stdout, "typed%.lua: ok")
    -- A run refuses it too, before any step.
    r = t.run({ "--mock", "--yes", path }, { env = { ATLAS_STATE_DIR = t.tmpdir() } })
    t.eq(r.code, 2, r.stdout .. r.stderr)
    t.no_match(r.stdout, "write ran")
    t.match(r.stderr, "unattended")
end)

t.case("contradictory or empty declarations are refused", function()
    for _, case in ipairs {
        { 'mutates = true, confirm = "Go?", unattended = "safe",', "both confirm and unattended" },
        { 'mutates = true, unattended = "  ",', "must say why" },
        { 'unattended = "safe",', "does not change the world" },
        { "mutates = true, unattended = 42,", "field 'unattended' must be a string" },
    } do
        local r = t.run { "check", write_playbook(case[1]) }
        t.eq(r.code, 2, case[1])
        t.match(r.stdout, case[2], case[1])
    end
end)

t.case("an unattended step runs without a terminal and without --yes; a confirm is refused there", function()
    local env = { ATLAS_STATE_DIR = t.tmpdir() }
    local r = t.run({ "--mock", write_playbook('mutates = true, unattended = "it only logs",') }, { env = env })
    t.eq(r.code, 0, r.stdout .. r.stderr)
    t.match(r.stdout, "write ran")
    r = t.run({ "--mock", write_playbook('mutates = true, confirm = "Write?",') }, { env = env })
    t.eq(r.code, 3, r.stdout .. r.stderr)
    t.no_match(r.stdout, "write ran")
end)

t.case("--help PLAYBOOK says which steps run unattended and why", function()
    local r = t.run { "--help", write_playbook('mutates = true, unattended = "it only logs",') }
    t.eq(r.code, 0, r.stderr)
    t.match(r.stdout, "2%. write  %[changes the world; runs unattended: it only logs%]")
end)

t.case("every playbook that ships and every fixture that loads declares its mutating steps", function()
    local sys = require "atlas.sys"
    local playbook = require "atlas.run.playbook"
    for _, dir in ipairs { "playbooks", "tests/fixtures/playbooks" } do
        for _, name in ipairs(sys.readdir(dir)) do
            local ok, pb = pcall(playbook.load, dir .. "/" .. name)
            if ok then
                for _, step in ipairs(pb.steps) do
                    if step.mutates then
                        t.ok(step.confirm or step.unattended, dir .. "/" .. name .. ": " .. step.name)
                    end
                end
            else
                t.no_match(tostring(require("atlas.errors").message(pb)), "unattended", name)
            end
        end
    end
end)

t.case("db_publication_setup asks before it creates anything: without --yes and a terminal, nothing changes", function()
    local world = t.world("healthy")
    world.db:clear_replication()
    local result = t.run_playbook("playbooks/db_publication_setup.lua", {}, { world = world, yes = false })
    t.eq(result.status, "refused", tostring(result.error))
    t.eq(result.step, "create publication")
    t.eq(next(world.db.regions["eu-west-1"].publications), nil)
    t.eq(next(world.db.regions["us-east-1"].subscriptions), nil)
    for _, call in ipairs(world.calls) do
        t.ok(not (call.sql and call.sql:match("^%s*CREATE")), "no CREATE was sent: " .. tostring(call.sql))
    end
end)

-- At run time: a step may change the world only when it says so ------------

local function calls_playbook(steps_text)
    local path = t.tmpdir() .. "/calls.lua"
    t.write_file(
        path,
        [[
local atlas = require "atlas"
local ecs = require "atlas.ecs"
local http = require "atlas.http"
local proc = require "atlas.proc"
local function scale(n)
    ecs.update_service { region = "us-east-1", cluster = require("atlas.env").cluster("us-east-1"),
                         service = require("atlas.env").service("us-east-1"), desiredCount = n }
end
return atlas.playbook { name = "calls", description = "makes calls", steps = {
]] .. steps_text .. "\n} }\n"
    )
    return path
end

local function desired(world) return world:snapshot().ecs["us-east-1"].desired end

t.case("a step not marked mutates cannot change the world: the call fails the step before it is sent", function()
    for _, call in ipairs {
        { "scale(9)", "ecs UpdateService %(us%-east%-1%)" },
        { 'http.request { method = "POST", url = "https://hooks.example.com/x", body = "{}" }', "http POST https://hooks" },
        { 'proc.run { "touch", "/tmp/atlas-undeclared" }', "proc touch /tmp/atlas%-undeclared" },
    } do
        local world = t.world("healthy")
        local before = desired(world)
        local path = calls_playbook('{ name = "look", run = function() ' .. call[1] .. " end },")
        local result = t.run_playbook(path, {}, { world = world })
        t.eq(result.status, "failed", call[1])
        t.eq(result.exit, 1)
        t.eq(result.error.code, "undeclared_change")
        t.match(tostring(result.error), 'step "look" is not declared to change the world %(mutates = true%), but made ' .. call[2])
        t.eq(desired(world), before)
        t.eq(#world:calls_to("ecs", "UpdateService"), 0)
        for _, c in ipairs(world.calls) do
            t.ok(c.module ~= "proc" and c.module ~= "http", "nothing was sent: " .. tostring(c.module))
        end
    end
end)

t.case("reads are free in any step; a declared, confirmed step changes the world", function()
    local world = t.world("healthy")
    local path = calls_playbook [[
{ name = "read", run = function() require("atlas.ecs").describe_services { region = "us-east-1",
    cluster = require("atlas.env").cluster("us-east-1"), services = { require("atlas.env").service("us-east-1") } } end },
{ name = "write", mutates = true, confirm = "Scale?", run = function() scale(7) end },
]]
    local result = t.run_playbook(path, {}, { world = world })
    t.eq(result.status, "ok", tostring(result.error))
    t.eq(desired(world), 7)
end)

t.case("confirm = true: the step asks itself, and nothing may change before the answer", function()
    local world = t.world("healthy")
    local before = desired(world)
    local early = calls_playbook [[
{ name = "asks late", mutates = true, confirm = true, run = function() scale(8); atlas.confirm("Scale?") end },
]]
    local result = t.run_playbook(early, {}, { world = world })
    t.eq(result.status, "failed")
    t.match(tostring(result.error), "asks before it changes anything %(confirm = true%), but made ecs UpdateService")
    t.eq(desired(world), before)
    local asks = calls_playbook [[
{ name = "asks first", mutates = true, confirm = true, run = function() atlas.confirm("Scale?"); scale(8) end },
]]
    result = t.run_playbook(asks, {}, { world = world, yes = false })
    t.eq(result.status, "refused", "no terminal, no --yes")
    t.eq(desired(world), before)
    result = t.run_playbook(asks, {}, { world = world })
    t.eq(result.status, "ok", tostring(result.error))
    t.eq(desired(world), 8)
end)

t.case("--rollback's undo may change the world", function()
    local world = t.world("healthy")
    local before = desired(world)
    local path = calls_playbook([[
{ name = "scale", mutates = true, confirm = "Scale?", run = function() scale(6) end,
  undo = function() scale(]] .. before .. [[) end },
{ name = "break", run = function() error("boom") end },
]])
    local result = t.run_playbook(path, {}, { world = world, rollback = true })
    t.eq(result.status, "failed")
    t.eq(#world:calls_to("ecs", "UpdateService"), 2)
    t.eq(desired(world), before)
end)

t.case("own_state: atlas-run's own bookkeeping is made from any step, and is not printed as a change", function()
    local world = t.world("healthy")
    local path = calls_playbook [[
{ name = "look", run = function()
    require("atlas.aws").call { service = "cloudwatch", action = "PutMetricData", region = "eu-west-1", own_state = true,
        params = { Namespace = "AtlasRun/Test", MetricData = { { MetricName = "beat", Value = 1 } } } }
end },
]]
    local result = t.run_playbook(path, {}, { world = world })
    t.eq(result.status, "ok", tostring(result.error))
    t.eq(#world:calls_to("cloudwatch", "PutMetricData"), 1)
end)

-- `check` and `list` load files nobody has run yet: a loop at the top level
-- is stopped after playbook.LOAD_SECONDS with a clear message, not waited for.
local HANG = "tests/fixtures/hang/loops_at_load.lua"

t.case("a playbook that loops at load is stopped with a usage error naming the file", function()
    local playbook = require "atlas.run.playbook"
    local saved = playbook.LOAD_SECONDS
    t.defer(function() playbook.LOAD_SECONDS = saved end)
    playbook.LOAD_SECONDS = 0.2
    local err = t.raises(function() playbook.load(HANG) end, "still loading after 0%.2s: a loop at the top level%?")
    t.eq(err.kind, "usage")
    t.match(err.message, "^" .. HANG:gsub("%p", "%%%0"))
    t.eq(debug.gethook(), nil, "the load's hook is removed")
    for _, argv in ipairs { { "check", HANG }, { "list", "tests/fixtures/hang" } } do
        local code
        local _, ok, err = t.capture(function() code = require("atlas.run.cli").main(argv) end)
        t.ok(ok, err)
        t.eq(code, 2, argv[1])
    end
end)

t.case("SIGTERM while a playbook loads exits 3 (interrupted), not 2", function()
    local sys = require "atlas.sys"
    local out = t.tmpdir()
    local pid = assert(sys.spawn({ t.binary(), "check", HANG }, { stdout = out .. "/o", stderr = out .. "/e" }))
    sys.sleep(0.3)
    sys.kill(pid, "TERM")
    local deadline = sys.monotime() + 10
    local exited, code
    repeat
        exited, code = sys.wait(pid, true)
        if not exited then sys.sleep(0.02) end
    until exited or sys.monotime() > deadline
    if not exited then sys.kill(pid, "KILL") end
    t.ok(exited, "exited")
    t.eq(code, 3, t.read_file(out .. "/e"))
end)
