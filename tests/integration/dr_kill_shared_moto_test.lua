-- The SIGKILL proof of tests/integration/dr_kill_moto_test.lua with the
-- resume on another machine: the killed run and its resume have separate
-- state directories and share the team's store (journal in S3, run lock in
-- DynamoDB, on the same moto). The killed machine's lock is still held; its
-- operator releases it (`atlas-run unlock RUN`) before resuming elsewhere.
local t = require "atlas.test"
local json = require "atlas.json"
local proof = dofile("tests/support/kill_resume.lua")(t)
local make_shared = dofile("tests/support/shared_state.lua")

t.case("a failover killed after each journal write in turn is resumed on another machine through S3", function()
    local world = proof.setup()
    local shared = make_shared(t, { endpoint = world.endpoint, prefix = "kill" })
    proof.kill_at_every_write(world, function(n)
        local url = shared.url .. "-" .. n
        local store = shared.store { url = url }
        local resumed = shared.machine(world.dir .. "/b-" .. n, { ATLAS_STATE = url })
        return {
            killed = shared.machine(world.dir .. "/a-" .. n, { ATLAS_STATE = url }),
            resumed = resumed,
            journal = function()
                local run_id = assert(store:get("dr_region_outage.last"))
                return json.decode(assert(store:get("runs/" .. run_id .. ".json")))
            end,
            before_resume = function(record)
                local r = t.run({ "--yes", "unlock", record.run_id }, { env = resumed })
                t.eq(r.code, 0, r.stdout .. r.stderr)
                t.match(r.stdout, "released the run lock atlas%-crm%-production")
            end,
        }
    end)
end)
