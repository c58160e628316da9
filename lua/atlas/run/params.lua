-- Typed playbook parameters: declared by the playbook, given on the command
-- line as name=value, checked before any step runs. A bad value names the
-- parameter and says what it accepts.
local errors = require "atlas.errors"

local M = {}

M.REGIONS = require("atlas.env").REGIONS

local function usage(fmt, ...) errors.raise { kind = "usage", message = string.format(fmt, ...) } end

local TRUE_WORDS = { ["true"] = true, yes = true, ["1"] = true, on = true }
local FALSE_WORDS = { ["false"] = true, no = true, ["0"] = true, off = true }

-- Each type converts a string (from argv) or a Lua value (a default) and
-- returns value, or nil and what it accepts.
local TYPES = {}

function TYPES.string(v)
    if type(v) == "string" then return v end
    return nil, "a string"
end

-- Text from argv is decimal only: Lua's tonumber would also take "0x8",
-- "5e0" and " 5", which nobody means as a task count.
local function decimal(v, pattern)
    if type(v) == "string" and not v:find(pattern) then return nil end
    return tonumber(v)
end

function TYPES.integer(v)
    local n = math.tointeger(decimal(v, "^[-+]?%d+$"))
    if n then return n end
    return nil, "an integer"
end

function TYPES.number(v)
    local n = decimal(v, "^[-+]?%d*%.?%d+$")
    if n and n == n and n ~= math.huge and n ~= -math.huge then return n end
    return nil, "a number"
end

function TYPES.boolean(v)
    if type(v) == "boolean" then return v end
    local word = tostring(v):lower()
    if TRUE_WORDS[word] then
        return true
    elseif FALSE_WORDS[word] then
        return false
    end
    return nil, "true or false"
end

TYPES.region = TYPES.string

-- "90s", "10m", "24h", "2d" or a bare number of seconds -> seconds
local DURATION_UNITS = { s = 1, m = 60, h = 3600, d = 86400 }
function TYPES.duration(v)
    if type(v) == "number" then return v end
    if type(v) ~= "string" then return nil end
    local n, unit = v:match("^%s*(%d+%.?%d*)%s*([smhd]?)%s*$")
    if not n then return nil end
    return tonumber(n) * DURATION_UNITS[unit ~= "" and unit or "s"]
end

function TYPES.list(v)
    if type(v) == "table" then return v end
    if type(v) ~= "string" then return nil, "a comma-separated list" end
    local items = {}
    for item in v:gmatch("[^,]+") do
        item = item:match("^%s*(.-)%s*$")
        if item ~= "" then items[#items + 1] = item end
    end
    return items
end

local TYPE_WHAT = {
    string = "a string",
    integer = "an integer",
    number = "a number",
    boolean = "true or false",
    region = "a region",
    list = "a comma-separated list",
    duration = "a duration (90s, 10m, 24h, 2d; a bare number is seconds)",
}

local SPEC_FIELDS = {
    type = "string",
    description = "string",
    required = "boolean",
    choices = "table",
    min = "number",
    max = "number",
    pattern = "string",
    secret = "boolean",
    name = "string",
}

local function describe_type(spec)
    if spec.choices then return "one of " .. table.concat(spec.choices, ", ") end
    local what = TYPE_WHAT[spec.type]
    if spec.type == "integer" or spec.type == "number" or spec.type == "duration" then
        if spec.min and spec.max then
            what = string.format("%s from %s to %s", what, spec.min, spec.max)
        elseif spec.min then
            what = string.format("%s >= %s", what, spec.min)
        elseif spec.max then
            what = string.format("%s <= %s", what, spec.max)
        end
    end
    return what
end
M.describe_type = describe_type

-- Converts and checks one value; returns value or nil, message.
local function convert(spec, raw)
    local value, what = TYPES[spec.type](raw)
    if value == nil then
        return nil, string.format("parameter %s: %q is not %s", spec.name, tostring(raw), describe_type(spec))
    end
    local items = spec.type == "list" and value or { value }
    for _, item in ipairs(items) do
        if spec.choices then
            local found = false
            for _, choice in ipairs(spec.choices) do
                if choice == item then found = true end
            end
            if not found then
                return nil, string.format("parameter %s: %q is not %s", spec.name, tostring(item), describe_type(spec))
            end
        end
        if spec.pattern and type(item) == "string" and not item:find(spec.pattern) then
            return nil, string.format("parameter %s: %q does not match %s", spec.name, item, spec.pattern)
        end
    end
    -- On a list, min and max count its items: "regions=" names no region at all.
    if spec.type == "list" and ((spec.min and #value < spec.min) or (spec.max and #value > spec.max)) then
        return nil,
            string.format(
                "parameter %s: %q has %d item(s); it needs %s",
                spec.name,
                tostring(type(raw) == "table" and table.concat(raw, ",") or raw),
                #value,
                spec.max and string.format("%d to %d", spec.min or 0, spec.max) or string.format("at least %d", spec.min)
            )
    end
    if type(value) == "number" and ((spec.min and value < spec.min) or (spec.max and value > spec.max)) then
        return nil, string.format("parameter %s: %s is not %s", spec.name, tostring(raw), describe_type(spec))
    end
    return value
end

-- params.duration(text) -> seconds, or nil and what a duration looks like.
-- The one reading of a duration, for parameters and options (--rto) alike.
function M.duration(text)
    local seconds = TYPES.duration(text)
    if seconds == nil then return nil, TYPE_WHAT.duration end
    return seconds
end

-- params.check_specs(playbook_name, params) -> ordered list of specs.
-- Accepts a map name -> spec (listed alphabetically) or a list of specs
-- with names (listed in that order).
function M.check_specs(playbook, declared)
    if type(declared) ~= "table" then usage("playbook %s: params must be a table", playbook) end
    local specs = {}
    if #declared > 0 then
        for i, spec in ipairs(declared) do
            if type(spec) ~= "table" or type(spec.name) ~= "string" then
                usage("playbook %s: parameter %d needs a name", playbook, i)
            end
            specs[#specs + 1] = spec
        end
    else
        for name, spec in pairs(declared) do
            if type(name) ~= "string" or type(spec) ~= "table" then
                usage("playbook %s: parameter %s must be declared with a table", playbook, tostring(name))
            end
            spec.name = name
            specs[#specs + 1] = spec
        end
        table.sort(specs, function(a, b) return a.name < b.name end)
    end
    for _, spec in ipairs(specs) do
        for key, value in pairs(spec) do
            if key ~= "default" and SPEC_FIELDS[key] == nil then
                usage("playbook %s: parameter %s has an unknown field '%s'", playbook, spec.name, tostring(key))
            elseif SPEC_FIELDS[key] and type(value) ~= SPEC_FIELDS[key] then
                usage("playbook %s: parameter %s: field '%s' must be a %s", playbook, spec.name, key, SPEC_FIELDS[key])
            end
        end
        spec.type = spec.type or "string"
        if not TYPES[spec.type] then
            usage(
                "playbook %s: parameter %s has unknown type '%s' (types: boolean, duration, integer, list, number, region, string)",
                playbook,
                spec.name,
                spec.type
            )
        end
        if spec.type == "region" and not spec.choices then spec.choices = M.REGIONS end
        if spec.default ~= nil then
            local _, err = convert(spec, spec.default)
            if err then usage("playbook %s: the default of %s", playbook, err) end
        end
    end
    return specs
end

-- params.parse(specs, args) -> typed params table.
-- args: a map of name -> string from the command line.
function M.parse(specs, args, validate)
    local by_name, names = {}, {}
    for _, spec in ipairs(specs) do
        by_name[spec.name] = spec
        names[#names + 1] = spec.name
    end
    for name in pairs(args) do
        if not by_name[name] then
            usage(
                "unknown parameter %q (this playbook takes: %s)",
                name,
                #names > 0 and table.concat(names, ", ") or "no parameters"
            )
        end
    end
    local values = {}
    for _, spec in ipairs(specs) do
        local raw = args[spec.name]
        if raw == nil then raw = spec.default end
        if raw == nil then
            if spec.required then
                usage("parameter %s is required: %s", spec.name, spec.description or describe_type(spec))
            end
        else
            local value, err = convert(spec, raw)
            if err then usage("%s", err) end
            if spec.secret then M.register_secret(value, raw) end
            values[spec.name] = value
        end
    end
    if validate then
        local message = validate(values)
        if message then usage("%s", message) end
    end
    return values
end

-- params.register_secret(value, raw): a secret parameter's value, each item
-- of a list and the text it came from are never printed.
function M.register_secret(value, raw)
    local log = require "atlas.run.log"
    if type(raw) == "string" then log.secret(raw) end
    if type(value) == "table" then
        for _, item in ipairs(value) do
            log.secret(tostring(item))
        end
    elseif value ~= nil then
        log.secret(tostring(value))
    end
end

-- params.shown_default(spec) -> the default as `list` and --help print it:
-- a secret's default is masked like its value.
function M.shown_default(spec)
    if spec.default == nil then return nil end
    if spec.secret then return "[REDACTED]" end
    return type(spec.default) == "table" and table.concat(spec.default, ",") or tostring(spec.default)
end

-- params.display(specs, values) -> values safe to print (secrets masked)
function M.display(specs, values)
    local shown = {}
    for _, spec in ipairs(specs) do
        local v = values[spec.name]
        if v ~= nil then shown[spec.name] = spec.secret and "[REDACTED]" or v end
    end
    return shown
end

return M
