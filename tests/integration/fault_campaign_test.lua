-- Three fixed seeds of the fault campaign (docs/faults.md; `make faults` runs
-- 100): failover then recovery through the seeded fault proxy, resumed until
-- done, each end state checked with boto3, no mutating call reaching moto
-- twice, no run that exits 0 in a wrong state.
local t = require "atlas.test"

local campaign = dofile("tests/support/fault_campaign.lua")(t)

for _, seed in ipairs { 1, 2, 3 } do
    t.case("fault campaign seed " .. seed .. " at 20 %", function()
        local r = campaign.seed(seed, 0.2)
        t.ok(campaign.ok(r), campaign.explain(r))
    end)
end
