-- The test helpers' scratch space: in memory when the machine has a tmpfs, so
-- that the suites' thousands of journal writes cost no disk I/O, and made
-- without spawning a shell.
local t = require "atlas.test"
local sys = require "atlas.sys"

t.case("t.tmpdir is a fresh private directory under the run's scratch root, on /dev/shm when it is usable", function()
    local a, b = t.tmpdir(), t.tmpdir()
    t.ok(a ~= b)
    t.eq(sys.stat(a).type, "directory")
    t.eq(sys.stat(a).mode, 448)
    local chosen = os.getenv("ATLAS_TEST_TMPDIR")
    if not chosen and sys.stat("/dev/shm") then chosen = "/dev/shm" end
    if chosen then t.eq(a:sub(1, #chosen + 12), chosen .. "/atlas-test.") end
    t.eq(os.getenv("ATLAS_STATE_DIR"):match("^(.*)/[^/]+$"), a:match("^(.*)/[^/]+$"))
end)

t.case("t.remove_tree removes a tree without a shell", function()
    local dir = t.tmpdir()
    assert(sys.mkdir(dir .. "/x/y/z"))
    t.write_file(dir .. "/x/y/z/f", "data")
    t.write_file(dir .. "/x/g", "data")
    t.remove_tree(dir .. "/x")
    t.eq(sys.stat(dir .. "/x"), nil)
end)
