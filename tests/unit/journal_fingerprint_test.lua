-- journal.fingerprint is FNV-1a (64 bits) of the parameters' sorted JSON. A
-- resume compares it with what an earlier run (perhaps an older atlas-run)
-- recorded, so its value must never change; these vectors come from an
-- independent implementation (Python), for every remainder of eight bytes.
local t = require "atlas.test"
local journal = require "atlas.run.journal"
local json = require "atlas.json"

local VECTORS = {
    { {}, "08f44b07b5901a25" },
    { { a = 1 }, "9c3e82dd6fcae8b1" },
    { { Name = "x", List = { 1, 2, 3 }, S = string.rep("q", 77) }, "416ab71149b2fbb0" },
}

local function fnv1a(text)
    local hash = -3750763034362895579
    for i = 1, #text do
        hash = (hash ~ text:byte(i)) * 1099511628211
    end
    return string.format("%016x", hash)
end

t.case("the fingerprint is FNV-1a of the sorted JSON, whatever its length", function()
    for _, v in ipairs(VECTORS) do
        t.eq(journal.fingerprint(v[1]), v[2], json.encode(v[1], { sort = true }))
    end
    for n = 0, 40 do
        local params = { Value = string.rep("z", n) }
        t.eq(journal.fingerprint(params), fnv1a(json.encode(params, { sort = true })), "length " .. n)
    end
end)
