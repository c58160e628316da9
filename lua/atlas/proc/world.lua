-- The mock proc backend: the mock world scripts command results.
local M = {}

function M.run(argv, options) return require("atlas.runtime").world:proc_run(argv, options) end

return M
