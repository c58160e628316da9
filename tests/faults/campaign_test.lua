-- `make faults`: the seeded fault campaign (docs/faults.md), FAULT_SEEDS seeds
-- (1..N, default 100) at FAULT_RATE (default 0.2), or the one seed FAULT_SEED.
-- Each seed prints one line; a seed that goes wrong prints what went wrong
-- and the command that runs it alone; the last line is the campaign's figures.
local t = require "atlas.test"
local sys = require "atlas.sys"

local function setting(name, default, pattern)
    local v = os.getenv(name)
    if v == nil or v == "" then return default end
    if not v:match(pattern) then error(string.format("%s=%q: expected %s", name, v, pattern), 0) end
    return tonumber(v)
end

local rate = setting("FAULT_RATE", 0.2, "^[01]?%.?%d+$")
local seeds = {}
local only = setting("FAULT_SEED", nil, "^%d+$")
if only then
    seeds[1] = only
else
    for n = 1, setting("FAULT_SEEDS", 100, "^%d+$") do
        seeds[n] = n
    end
end

local campaign = dofile("tests/support/fault_campaign.lua")(t)
local results, started = {}, sys.monotime()

for _, n in ipairs(seeds) do
    t.case("seed " .. n, function()
        local r = campaign.seed(n, rate)
        results[#results + 1] = r
        print(string.format("seed %3d: %-5s %s", n, campaign.ok(r) and "ok" or "WRONG", table.concat(r.runs, ", ")))
        t.ok(campaign.ok(r), campaign.explain(r))
    end)
end

t.case("figures", function()
    print(campaign.summary(results, sys.monotime() - started))
    t.eq(#results, #seeds, "every seed ran to its end")
end)
