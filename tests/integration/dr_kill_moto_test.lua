-- The failover against moto, killed with SIGKILL after each journal write in
-- turn (ATLAS_TEST_KILL_AFTER_WRITES, a test-only hook of atlas.journal),
-- then resumed. Each time boto3 finds the right end state, the journal holds
-- what an undo needs, and the mutating calls of the killed run and the
-- resume together are those of one clean run: none completed is repeated.
--
-- Where the state lives is one function (`placement`, see
-- tests/support/kill_resume.lua), so the same proof runs with the resume on
-- another machine and a shared store.
local t = require "atlas.test"
local proof = dofile("tests/support/kill_resume.lua")(t)

t.case("a failover killed after each journal write in turn resumes to the right state, no mutation repeated", function()
    local world = proof.setup()
    proof.kill_at_every_write(world, proof.same_machine(world))
end)
