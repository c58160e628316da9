-- The mock proc backend: the mock world scripts command results.
local M = {}

function M.run(argv, options) return require("atlas.run.runtime").world:proc_run(argv, options) end

-- The world has every program, unless a test took one away (w.missing_programs).
function M.available(name) return require("atlas.run.runtime").world:proc_available(name) end

return M
