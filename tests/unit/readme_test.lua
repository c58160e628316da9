-- The examples in README.md work as printed: the playbook passes check and
-- runs in the mock world, and the test example passes.
local t = require "atlas.test"

local function lua_block_after(heading)
    local readme = assert(t.read_file("README.md"))
    local from = assert(readme:find(heading, 1, true), "README has " .. heading)
    local code = readme:match("```lua\n(.-)```", from)
    return assert(code, "a lua block after " .. heading)
end

t.case("the playbook example passes check and scales a region in the mock world", function()
    local dir = t.tmpdir()
    local path = t.write_file(dir .. "/scale_region.lua", lua_block_after("## Writing a playbook"))
    local r = t.run({ "check", path })
    t.eq(r.code, 0, r.stdout)
    r = t.run({ "--mock", "--yes", path, "region=ap-southeast-1", "count=6" }, { env = { ATLAS_STATE_DIR = dir } })
    t.eq(r.code, 0, r.stdout .. r.stderr)
    t.match(r.stdout, "ap%-southeast%-1: 6/6 running")
end)

t.case("the test example passes", function()
    local dir = t.tmpdir()
    local path = t.write_file(dir .. "/example_test.lua", lua_block_after("## Testing a playbook with mocks"))
    local r = t.run({ "test", path }, { env = { ATLAS_STATE_DIR = dir } })
    t.eq(r.code, 0, r.stdout .. r.stderr)
    t.match(r.stdout, "1 passed, 0 failed")
end)
