-- The state store's local backend: conditional writes, listing, locks, and
-- the failures a caller must tell apart (absent, conflict, lock held,
-- unusable). The shared backend has the same contract (tests/integration).
local t = require "atlas.test"
local json = require "atlas.json"

local FIX = "tests/fixtures/playbooks/"

local function store(dir) return require("atlas.state.local").new(dir, { durable = false }) end

t.case("get of an absent key is NotFound, put returns the version get sees", function()
    local s = store(t.tmpdir())
    local text, err, code = s:get("runs/x.json")
    t.eq(text, nil)
    t.eq(code, "NotFound")
    t.match(err, "runs/x%.json")
    local version = assert(s:put("runs/x.json", "one"))
    local got, got_version = s:get("runs/x.json")
    t.eq(got, "one")
    t.eq(got_version, version)
end)

t.case("put if_absent and if_version refuse with PreconditionFailed and keep the stored value", function()
    local s = store(t.tmpdir())
    local v1 = assert(s:put("k", "first", { if_absent = true }))
    local ok, _, code = s:put("k", "second", { if_absent = true })
    t.eq(ok, nil)
    t.eq(code, "PreconditionFailed")
    local v2 = assert(s:put("k", "second", { if_version = v1 }))
    ok, _, code = s:put("k", "third", { if_version = v1 })
    t.eq(code, "PreconditionFailed", "a stale version must not win")
    t.eq((s:get("k")), "second")
    ok, _, code = s:put("absent", "x", { if_version = v2 })
    t.eq(code, "PreconditionFailed", "if_version needs the key to exist")
end)

t.case("list finds keys under a prefix, sorted, without temporaries; delete is idempotent", function()
    local dir = t.tmpdir()
    local s = store(dir)
    assert(s:put("runs/b.json", "b"))
    assert(s:put("runs/a.json", "a"))
    assert(s:put("other.last", "a"))
    t.write_file(dir .. "/runs/a.json.tmp.123", "half")
    local keys = {}
    for _, item in ipairs(assert(s:list("runs/"))) do
        keys[#keys + 1] = item.key
        t.ok(item.modified > 0, "modified time")
    end
    t.eq(keys, { "runs/a.json", "runs/b.json" })
    t.eq(#assert(s:list("nothing/")), 0)
    t.eq(s:delete("runs/a.json"), true)
    t.eq(s:delete("runs/a.json"), true)
    t.eq(#assert(s:list("runs/")), 1)
end)

t.case("a held lock is LockHeld and names the holder; an unusable directory is not", function()
    local dir = t.tmpdir()
    local s = store(dir)
    local lock = assert(s:lock("prod", { run_id = "r-1" }))
    local none, holder, code = s:lock("prod")
    t.eq(none, nil)
    t.eq(code, "LockHeld")
    t.match(holder, "^pid %d+ on .+ since .+, run r%-1$")
    lock:release()
    assert(s:lock("prod")):release()
    t.write_file(dir .. "/file", "")
    none, holder, code = store(dir .. "/file/sub"):lock("prod")
    t.eq(none, nil)
    t.ok(code ~= "LockHeld", "a failure of the directory is not another run's lock")
    t.match(holder, "file/sub")
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
    local runtime = require "atlas.runtime"
    runtime.use_real()
    local previous = os.getenv("ATLAS_STATE_DIR")
    require("atlas.sys").setenv("ATLAS_STATE_DIR", dir)
    t.defer(function() require("atlas.sys").setenv("ATLAS_STATE_DIR", previous) end)
    local journal = require "atlas.journal"
    local pb = require("atlas.playbook").load(FIX .. "steps.lua")
    local first = journal.resume(pb, assert(journal.last("steps")))
    local second = journal.resume(pb, assert(journal.last("steps")))
    t.eq(first.run_id, run_id)
    first:step_started(2, "two")
    t.raises(function() second:step_started(2, "two") end, "written by another process")
    first:step_finished(2, "ok", 0)
    local record = json.decode(t.read_file(dir .. "/runs/" .. run_id .. ".json"))
    t.eq(record.steps[2].status, "ok")
end)
