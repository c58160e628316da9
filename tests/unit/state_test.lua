-- The state store's local backend: conditional writes, listing, locks, and
-- the failures a caller must tell apart (absent, conflict, lock held,
-- unusable). The shared backend has the same contract (tests/integration).
local t = require "atlas.test"
local json = require "atlas.json"

local FIX = "tests/fixtures/playbooks/"

local function store(dir) return require("atlas.state.local").new(dir, { durable = false }) end

dofile("tests/support/store_contract.lua")(t, "local", function() return store(t.tmpdir()) end)

t.case("list leaves out the temporaries of an atomic write", function()
    local dir = t.tmpdir()
    local s = store(dir)
    assert(s:put("runs/a.json", "a"))
    t.write_file(dir .. "/runs/a.json.tmp.123", "half")
    t.eq(#assert(s:list("runs/")), 1)
end)

t.case("an unusable state directory is not another run's lock", function()
    local dir = t.tmpdir()
    t.write_file(dir .. "/file", "")
    local none, message, code = store(dir .. "/file/sub"):lock("prod")
    t.eq(none, nil)
    t.ok(code ~= "LockHeld", "a failure of the directory is not another run's lock")
    t.match(message, "file/sub")
end)

t.case("a state directory that cannot be created exits 2 naming it, never 4", function()
    local dir = t.tmpdir()
    t.write_file(dir .. "/file", "")
    local r = t.run({ "--yes", FIX .. "steps.lua" }, { env = { ATLAS_STATE_DIR = dir .. "/file/state" } })
    t.eq(r.code, 2, r.stderr)
    t.match(r.stderr, "file/state")
    t.no_match(r.stderr, "another run holds")
end)

t.case("two processes cannot both continue one run: the journal write is conditional", function()
    local dir = t.tmpdir()
    local r = t.run({ "--yes", FIX .. "steps.lua", "mode=fail" }, { env = { ATLAS_STATE_DIR = dir } })
    t.eq(r.code, 1)
    local run_id = t.read_file(dir .. "/steps.last")
    -- Two resumers read the same journal; the first to write wins.
    local runtime = require "atlas.run.runtime"
    runtime.use_real()
    local previous = os.getenv("ATLAS_STATE_DIR")
    require("atlas.sys").setenv("ATLAS_STATE_DIR", dir)
    t.defer(function() require("atlas.sys").setenv("ATLAS_STATE_DIR", previous) end)
    local journal = require "atlas.run.journal"
    local pb = require("atlas.run.playbook").load(FIX .. "steps.lua")
    local first = journal.resume(pb, assert(journal.last("steps")))
    local second = journal.resume(pb, assert(journal.last("steps")))
    t.eq(first.run_id, run_id)
    first:step_started(2, "two")
    t.raises(function() second:step_started(2, "two") end, "written by another process")
    first:step_finished(2, "ok", 0)
    local record = json.decode(t.read_file(dir .. "/runs/" .. run_id .. ".json"))
    t.eq(record.steps[2].status, "ok")
end)

t.case("a journal write whose outcome was never learnt is no conflict when it landed", function()
    local dir = t.tmpdir()
    local previous = os.getenv("ATLAS_STATE_DIR")
    require("atlas.sys").setenv("ATLAS_STATE_DIR", dir)
    t.defer(function() require("atlas.sys").setenv("ATLAS_STATE_DIR", previous) end)
    require("atlas.run.runtime").use_real()
    local journal = require "atlas.run.journal"
    local store = require("atlas.state").open()
    local pb = require("atlas.run.playbook").load(FIX .. "steps.lua")
    local j = journal.new(pb, {})
    j:step_started(1, "one")
    -- The next write lands, but the answer is lost (the store raises after writing).
    local real_put = store.put
    store.put = function(s, ...)
        real_put(s, ...)
        store.put = nil
        error(require("atlas.errors").new { kind = "interrupted", message = "interrupted by signal" }, 0)
    end
    t.defer(function() store.put = nil end)
    t.raises(function() j:step_finished(1, "ok", 0) end, "interrupted")
    j:finish("interrupted", 0)
    local record = json.decode(t.read_file(dir .. "/runs/" .. j.run_id .. ".json"))
    t.eq(record.status, "interrupted")
    -- A different text in the store is still a conflict.
    assert(store:put("runs/" .. j.run_id .. ".json", "{}"))
    t.raises(function() j:finish("ok", 0) end, "written by another process")
end)

t.case("show prints a run's timeline from its journal, with the world it changed", function()
    local dir = t.tmpdir()
    local s = store(dir)
    assert(s:put(
        "runs/r-1.json",
        json.encode {
            run_id = "r-1",
            playbook = "dr_region_outage",
            status = "interrupted",
            user = "alice",
            host = "laptop",
            started = 1764554400,
            resumes = { { user = "bob", host = "desk", at = 1764554700 } },
            params = { failed_region = "eu-west-1" },
            steps = {
                {
                    name = "scale up backup region",
                    status = "ok",
                    started = 1764554401,
                    duration = 2,
                    calls = {
                        { op = "ecs.UpdateService", region = "us-east-1", status = "ok", mutates = true },
                        { op = "ecs.DescribeServices", region = "us-east-1", status = "ok" },
                    },
                },
                {
                    name = "disable failed region in DNS",
                    status = "interrupted",
                    started = 1764554403,
                    calls = {
                        {
                            op = "route53.ChangeResourceRecordSets",
                            region = "us-east-1",
                            status = "sent",
                            mutates = true,
                        },
                    },
                },
            },
        }
    ))
    local r = t.run({ "show", "r-1" }, { env = { ATLAS_STATE_DIR = dir } })
    t.eq(r.code, 0, r.stderr)
    t.match(r.stdout, "started%s+2025%-12%-01 02:00:00 UTC by alice@laptop")
    t.match(r.stdout, "resumed%s+2025%-12%-01 02:05:00 UTC by bob@desk")
    t.match(r.stdout, "params%s+failed_region=eu%-west%-1")
    t.match(r.stdout, "ok%s+1%. scale up backup region.-ecs%.UpdateService %(us%-east%-1%): ok")
    t.no_match(r.stdout, "DescribeServices")
    t.match(r.stdout, "interrupted 2%. disable failed region in DNS.-ChangeResourceRecordSets %(us%-east%-1%): sent")
    r = t.run({ "show", "r-2" }, { env = { ATLAS_STATE_DIR = dir } })
    t.eq(r.code, 2)
    t.match(r.stderr, "no run r%-2")
    r = t.run({ "runs" }, { env = { ATLAS_STATE_DIR = dir } })
    t.eq(r.code, 0)
    t.match(r.stdout, "2025%-12%-01 02:00:00%s+dr_region_outage%s+interrupted%s+alice@laptop%s+r%-1")
end)
