-- atlas.mock.scenarios: where the mock world's scenarios are found and how
-- one is loaded. The one owner of that rule: the command line (`--scenario`,
-- `atlas-run scenarios`), the runtime and the world all ask here.
--
-- A scenario is a table {description=, apply=function(world) end,
-- latencies={name=seconds}}: latencies change how long AWS takes (the
-- names and defaults are World.LATENCIES in atlas.mock.world). It is
-- named by a module atlas.mock.scenarios.<name> (compiled in, or a file in
-- $ATLAS_LUA_PATH/atlas/mock/scenarios/ during development), or given as a
-- file path (it has a "/" or ends in .lua), a table or a function.
local errors = require "atlas.errors"

local M = {}

local PREFIX = "atlas.mock.scenarios."
local FIELDS = { description = "string", apply = "function", latencies = "table" }

local function usage(fmt, ...) errors.raise { kind = "usage", code = "scenario", message = string.format(fmt, ...) } end

local known -- name -> true, found once per process (each test case names a scenario)

-- scenarios.names() -> the sorted names of the scenarios that can be named
function M.names()
    local names = {}
    for _, module in ipairs(require("atlas.mock.util").modules_under("atlas.mock.scenarios")) do
        names[#names + 1] = module:sub(#PREFIX + 1)
    end
    return names
end

-- scenarios.is_path(s) -> true when s names a scenario file rather than a scenario
function M.is_path(s) return type(s) == "string" and (s:find("/", 1, true) ~= nil or s:match("%.lua$") ~= nil) end

-- scenarios.check(s): raises the usage error for a name no scenario has;
-- lets a path, a table or a function through (load checks those).
function M.check(s)
    if type(s) ~= "string" or M.is_path(s) then return end
    if not known then
        known = {}
        for _, name in ipairs(M.names()) do
            known[name] = true
        end
    end
    if known[s] then return end
    usage("unknown scenario %q (scenarios: %s; or a path to a scenario file)", s, table.concat(M.names(), ", "))
end

local function from_file(path)
    local chunk, err = loadfile(path)
    if not chunk then usage("cannot load scenario: %s", err) end
    local ok, value = pcall(chunk)
    if not ok then usage("scenario %s failed: %s", path, errors.message(value)) end
    return value
end

-- scenarios.load(name | path | table | function) -> {description=, apply=}
-- Raises a usage error (exit 2) for a scenario that is unknown, does not
-- load or has the wrong shape.
function M.load(s)
    local scenario
    if type(s) == "function" then
        return { description = "inline scenario", apply = s }
    elseif type(s) == "table" then
        scenario = s
    elseif M.is_path(s) then
        scenario = from_file(s)
    elseif type(s) == "string" then
        M.check(s)
        scenario = require(PREFIX .. s)
    else
        error("a scenario is a name, a file, a table or a function", 2)
    end
    if type(scenario) ~= "table" then
        usage("scenario %s must return {description=..., apply=function(world) end}", tostring(s))
    end
    -- Checked like a playbook's declaration: a misspelt field would
    -- otherwise be ignored, and the drill would run in a world nobody meant.
    for k, v in pairs(scenario) do
        local want = FIELDS[k]
        if not want then
            usage("scenario %s: unknown field %q (a scenario has description, apply and latencies)", tostring(s), tostring(k))
        elseif type(v) ~= want then
            usage("scenario %s: field %s must be a %s, not a %s", tostring(s), k, want, type(v))
        end
    end
    if type(scenario.apply) ~= "function" then
        usage("scenario %s must return {description=..., apply=function(world) end}", tostring(s))
    end
    return scenario
end

-- scenarios.apply(scenario, world): sets the world up. A scenario that raises
-- is bad input (exit 2) naming it, not an internal error.
function M.apply(scenario, world)
    local ok, err = pcall(scenario.apply, world)
    if not ok then
        if errors.is(err, "usage") then error(err, 0) end
        usage("scenario %s failed while setting up the world: %s", scenario.description or "?", errors.message(err))
    end
end

-- scenarios.description(name) -> its one-line description ("" when it has none)
function M.description(name)
    local ok, scenario = pcall(M.load, name)
    return ok and type(scenario.description) == "string" and scenario.description or ""
end

return M
