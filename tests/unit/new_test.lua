-- `atlas-run new NAME`: a skeleton and its tests that pass check and test as written.
local t = require "atlas.test"

local function in_dir(dir, args)
    local quoted = {}
    for i, a in ipairs(args) do
        quoted[i] = string.format("%q", a)
    end
    return t.spawn(
        { "/bin/sh", "-c", string.format("cd %q && exec %q %s", dir, t.binary(), table.concat(quoted, " ")) },
        { env = { ATLAS_STATE_DIR = dir .. "/state" } }
    )
end

t.case("new writes a playbook and a test file that pass check and test as written", function()
    local dir = t.tmpdir()
    local r = in_dir(dir, { "new", "team_scale" })
    t.eq(r.code, 0, r.stderr)
    t.match(r.stdout, "wrote %./playbooks/team_scale%.lua")
    t.match(r.stdout, "wrote %./tests/team_scale_test%.lua")
    r = in_dir(dir, { "check", "playbooks/team_scale.lua" })
    t.eq(r.code, 0, r.stdout .. r.stderr)
    r = in_dir(dir, { "test", "tests/team_scale_test.lua" })
    t.eq(r.code, 0, r.stdout .. r.stderr)
    t.match(r.stdout, "3 passed, 0 failed")
    local text = t.read_file(dir .. "/playbooks/team_scale.lua")
    for _, part in ipairs { "mutates = true", "confirm =", "undo =", "wait_stable", "type = \"duration\"" } do
        t.ok(text:find(part, 1, true), part)
    end
end)

t.case("new refuses a bad name and never overwrites", function()
    local dir = t.tmpdir()
    local r = in_dir(dir, { "new", "bad-name" })
    t.eq(r.code, 2)
    t.match(r.stderr, "not a playbook name")
    t.eq(in_dir(dir, { "new", "mine" }).code, 0)
    t.write_file(dir .. "/playbooks/mine.lua", "-- edited\n")
    r = in_dir(dir, { "new", "mine" })
    t.eq(r.code, 2)
    t.match(r.stderr, "exists; nothing was written")
    t.eq(t.read_file(dir .. "/playbooks/mine.lua"), "-- edited\n")
end)
