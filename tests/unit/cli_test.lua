-- The CLI as a user meets it: a subprocess, its output and its exit code.
local t = require "atlas.test"
local json = require "atlas.json"

local FIX = "tests/fixtures/playbooks/"

local function run(args, env)
    local r = t.run(args, { env = env })
    return r
end

t.case("--help answers the usual questions and exits 0", function()
    local r = run({ "--help" })
    t.eq(r.code, 0)
    for _, needle in ipairs({
        "--dry%-run",
        "--scenario",
        "Exit codes",
        "Examples:",
        "atlas%-run list",
        "--resume",
        "AWS_ENDPOINT_URL",
    }) do
        t.match(r.stdout, needle)
    end
end)

t.case("--version prints the version", function()
    local r = run({ "--version" })
    t.eq(r.code, 0)
    t.match(r.stdout, "^atlas%-run %d+%.%d+%.%d+")
end)

t.case("no arguments and unknown options are usage errors (exit 2)", function()
    t.eq(run({}).code, 2)
    local r = run({ "--frobnicate" })
    t.eq(r.code, 2)
    t.match(r.stderr, "unknown option %-%-frobnicate")
    r = run({ "--log-format", "xml", FIX .. "typed.lua" })
    t.eq(r.code, 2)
    t.match(r.stderr, "text or json")
end)

t.case("-e runs a chunk with atlas loaded", function()
    local r = run({ "-e", "print(atlas.null == require('atlas.json').null, type(atlas.now()))" })
    t.eq(r.code, 0)
    t.eq(r.stdout, "true\tnumber\n")
    r = run({ "-e", "error('boom')" })
    t.eq(r.code, 1)
    t.match(r.stderr, "boom")
end)

t.case("a syntax error is reported as file:line and exits 2", function()
    local r = run({ FIX .. "syntax_error.lua" })
    t.eq(r.code, 2)
    t.match(r.stderr, "syntax_error%.lua:%d+:")
    r = run({ "check", FIX .. "syntax_error.lua" })
    t.eq(r.code, 2)
    t.match(r.stdout, "syntax_error%.lua:9: unexpected symbol")
end)

t.case("a playbook without metadata is refused", function()
    local r = run({ FIX .. "no_metadata.lua" })
    t.eq(r.code, 2)
    t.match(r.stderr, "does not return atlas%.playbook")
    r = run({ FIX .. "no_description.lua" })
    t.eq(r.code, 2)
    t.match(r.stderr, "needs a description")
end)

t.case("unknown and wrongly typed parameters exit 2 naming the parameter", function()
    local r = run({ FIX .. "typed.lua", "label=x", "colour=red" })
    t.eq(r.code, 2)
    t.match(r.stderr, 'unknown parameter "colour"')
    r = run({ FIX .. "typed.lua", "label=x", "count=many" })
    t.eq(r.code, 2)
    t.match(r.stderr, 'parameter count: "many" is not an integer from 1 to 10')
    r = run({ FIX .. "typed.lua", "label=x", "region=mars-west-9" })
    t.eq(r.code, 2)
    t.match(r.stderr, "eu%-west%-1, us%-east%-1, ap%-southeast%-1")
    r = run({ FIX .. "typed.lua" })
    t.eq(r.code, 2)
    t.match(r.stderr, "parameter label is required")
    r = run({ FIX .. "typed.lua", "label" })
    t.eq(r.code, 2)
    t.match(r.stderr, "expected name=value")
end)

t.case("typed parameters reach the steps converted", function()
    local r = run({ FIX .. "typed.lua", "label=hello", "count=3", "force=true", "hosts=x,y" })
    t.eq(r.code, 0, r.stderr)
    t.match(r.stdout, "region=eu%-west%-1 count=3 ratio=0%.5 force=true hosts=x%+y label=hello")
end)

t.case("a step that raises stops the run: step, error and traceback, exit 1", function()
    local r = run({ "--yes", FIX .. "steps.lua", "mode=raise" })
    t.eq(r.code, 1)
    t.match(r.stdout, "FAIL %[2/3%] two")
    t.match(r.stdout, "attempt to index a nil value")
    t.match(r.stdout, "traceback:")
    t.match(r.stdout, "steps%.lua:%d+: in")
    t.ok(not r.stdout:find("three ran"), "step three must not run after a failure")
    t.match(r.stderr, 'stopped at step "two"')
end)

t.case("an outside-world error reads as step, call and region", function()
    local r = run({ "--yes", FIX .. "steps.lua", "mode=error_object" })
    t.eq(r.code, 1)
    t.match(r.stderr, 'step "two": ecs UpdateService %(us%-east%-1%): ServiceNotFoundException: Service not found')
end)

t.case("fail() exits 1 and critical() exits 5, without tracebacks", function()
    local r = run({ "--yes", FIX .. "steps.lua", "mode=fail" })
    t.eq(r.code, 1)
    t.match(r.stderr, "region eu%-west%-1 is healthy")
    t.ok(not r.stdout:find("traceback"), "no traceback for a deliberate failure")
    r = run({ "--yes", FIX .. "steps.lua", "mode=critical" })
    t.eq(r.code, 5)
    t.match(r.stderr, "replication lag 42s")
end)

t.case("a confirmation without a terminal and without --yes is refused with exit 3", function()
    local r = run({ FIX .. "steps.lua" })
    t.eq(r.code, 3)
    t.match(r.stdout, "REFUSED %[3/3%] three")
    t.match(r.stderr, "needs confirmation")
    r = run({ "--yes", FIX .. "steps.lua" })
    t.eq(r.code, 0)
    t.match(r.stdout, "three ran")
end)

t.case("--log-format json emits one parsable event per line", function()
    local r = run({ "--yes", "--log-format", "json", FIX .. "steps.lua" })
    t.eq(r.code, 0)
    local types = {}
    for line in r.stdout:gmatch("[^\n]+") do
        local e = json.decode(line)
        types[#types + 1] = e.type
        t.ok(e.ts, "every event has a timestamp")
    end
    t.eq(types[1], "run_start")
    t.eq(types[#types], "run_end")
end)

t.case("dry-run prints a mutating process call instead of running it", function()
    os.remove("/tmp/atlas-dry-run-must-not-exist")
    local r = run({
        "--dry-run",
        "-e",
        [[
        local proc = require "atlas.proc"
        local res = proc.run({"touch", "/tmp/atlas-dry-run-must-not-exist"})
        print("dry", res.dry_run)
    ]],
    })
    t.eq(r.code, 0, r.stderr)
    t.match(r.stdout, "dry%-run: would call proc touch")
    t.match(r.stdout, "dry\ttrue")
    t.eq(io.open("/tmp/atlas-dry-run-must-not-exist"), nil)
end)

t.case("list shows playbooks with descriptions and parameters", function()
    local dir = t.tmpdir()
    os.execute("cp " .. FIX .. "typed.lua " .. FIX .. "steps.lua " .. dir)
    local r = run({ "list", dir })
    t.eq(r.code, 0)
    t.match(r.stdout, "typed")
    t.match(r.stdout, "exercises every parameter type")
    t.match(r.stdout, "count=an integer from 1 to 10 %[default 2%]")
    t.match(r.stdout, "label=a string %(required%)")
end)

t.case("check finds undefined globals inside steps, with their lines", function()
    local dir = t.tmpdir()
    t.write_file(
        dir .. "/typo.lua",
        [[
local atlas = require "atlas"
return atlas.playbook {
  name = "typo", description = "d",
  steps = { { name = "s", run = function()
      if false then prnt("never runs") end
      counter = 1
  end } },
}
]]
    )
    local r = run({ "check", dir .. "/typo.lua", FIX .. "typed.lua" })
    t.eq(r.code, 2)
    t.match(r.stdout, "typo%.lua:5: undefined global 'prnt'")
    t.match(r.stdout, "typo%.lua:6: assignment to global 'counter'")
    t.match(r.stdout, "typed%.lua: ok")
end)

t.case("a bare table raised by a playbook shows its contents, not an address", function()
    local r = run({ "-e", "error({ code = 7, reason = 'disk full' })" })
    t.eq(r.code, 1)
    t.match(r.stderr, 'error object {"code":7,"reason":"disk full"}')
end)

t.case("a wait's progress says how long it has waited and when it gives up", function()
    local r = run({ "--scenario", "eu-west-1-outage", "--yes", "playbooks/dr_region_outage.lua" })
    t.eq(r.code, 0, r.stderr)
    t.match(r.stdout, "us%-east%-1: 6/10 running, 1 deployment  %(waited 2:00 of 15:00%)")
end)

t.case("--help PLAYBOOK lists its parameters and which steps change the world", function()
    local r = run({ "--help", "dr_region_outage" })
    t.eq(r.code, 0, r.stderr)
    t.match(r.stdout, "failed_region=one of eu%-west%-1, us%-east%-1, ap%-southeast%-1 %[default eu%-west%-1%]")
    t.match(r.stdout, "1%. verify failed region is down  %[checked again on %-%-resume%]\n")
    t.match(r.stdout, "3%. scale up backup region  %[changes the world; asks: ")
    r = run({ "--help", "no_such_playbook" })
    t.eq(r.code, 2)
end)

-- The exit codes were once written out in both cli.lua and playbook.lua. With one
-- owner, changing its table changes what every path returns.
t.case("every exit code comes from atlas.run.exit, for commands and for runs alike", function()
    local exit = require "atlas.run.exit"
    local saved = {}
    for k, v in pairs(exit.codes) do
        saved[k] = v
    end
    t.defer(function()
        for k, v in pairs(saved) do
            exit.codes[k] = v
        end
    end)
    exit.codes.usage, exit.codes.critical, exit.codes.refused = 42, 45, 43
    local previous = io.stderr
    io.stderr = assert(io.open("/dev/null", "w"))
    local code = require("atlas.run.cli").main { "--frobnicate" }
    io.stderr:close()
    io.stderr = previous
    t.eq(code, 42)
    t.eq(t.run_playbook(FIX .. "steps.lua", { mode = "critical" }).exit, 45)
    local status, refused = exit.of_error(require("atlas.errors").new { kind = "aborted", message = "no" })
    t.eq({ status, refused }, { "refused", 43 })
end)

-- Scenario discovery was written three times (cli, runtime, world), and the world's copy
-- had a hard-coded list of names. Now a scenario file added under ATLAS_LUA_PATH is known
-- to every one of them, and an unknown name gets the same message from each.
t.case("a scenario in ATLAS_LUA_PATH is listed, runs by name, and is named in every unknown-scenario message", function()
    local dir = t.tmpdir()
    assert(require("atlas.sys").mkdir(dir .. "/atlas/mock/scenarios"))
    t.write_file(
        dir .. "/atlas/mock/scenarios/extra-drill.lua",
        'return { description = "an extra drill", apply = function(w) w:set_service("us-east-1", { running = 1 }) end }'
    )
    local env = { ATLAS_LUA_PATH = dir }
    local r = t.run({ "scenarios" }, { env = env })
    t.eq(r.code, 0, r.stderr)
    t.match(r.stdout, "extra%-drill +an extra drill\n")
    t.match(r.stdout, "eu%-west%-1%-outage +")
    r = t.run({ "--scenario", "extra-drill", "-e", 'print(require("atlas.run.runtime").world.scenario.description)' }, { env = env })
    t.eq({ r.code, r.stdout }, { 0, "an extra drill\n" }, r.stderr)
    r = t.run({ "--scenario", "no-such", "-e", "" }, { env = env })
    t.eq(r.code, 2)
    t.match(r.stderr, 'unknown scenario "no%-such" %(scenarios: [^)]*extra%-drill')
    local from_cli = r.stderr:match('(unknown scenario [^\n]*)')
    r = t.run({
        "-e",
        'local ok, err = pcall(require("atlas.mock.world").new, { scenario = "no-such" }) print(err.message)',
    }, { env = env })
    t.eq(r.stdout, from_cli .. "\n")
end)
