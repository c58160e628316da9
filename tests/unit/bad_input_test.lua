-- Runs the bad-input matrix (tests/bad_input/matrix.lua): each row is an
-- atlas-run process that must exit with the row's code and message, never
-- with a traceback or an internal error.
local t = require "atlas.test"
local sys = require "atlas.sys"

local matrix = dofile("tests/bad_input/matrix.lua")

local function expand(v, dir)
    if type(v) ~= "string" then return v end
    return (v:gsub("%$DIR", dir))
end

for _, row in ipairs(matrix) do
    t.case(row.what .. ": exit " .. row.exit, function()
        local dir = t.tmpdir()
        for rel, text in pairs(row.files or {}) do
            local path = dir .. "/" .. rel
            sys.mkdir(path:match("^(.*)/[^/]*$"))
            t.write_file(path, text)
        end
        local argv, env = {}, { ATLAS_STATE_DIR = dir .. "/state" }
        for i, a in ipairs(row.argv) do
            argv[i] = expand(a, dir)
        end
        for k, v in pairs(row.env or {}) do
            env[k] = expand(v, dir)
        end
        local r = t.run(argv, { env = env, timeout = 30 })
        local out = r.stderr .. r.stdout
        t.eq(r.code, row.exit, out)
        t.match(out, row.message)
        t.no_match(out, "stack traceback")
    end)
end
