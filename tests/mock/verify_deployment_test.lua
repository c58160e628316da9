-- verify_deployment in the mock world.
local t = require "atlas.test"

local PLAYBOOK = "playbooks/verify_deployment.lua"

t.case("the reference world verifies with no mismatch", function()
    local result = t.run_playbook(PLAYBOOK, {})
    t.eq(result.status, "ok", tostring(result.error))
    t.eq(result.journal.state.mismatches, {})
    t.ok(result.journal.state.passed >= 70, "checks ran: " .. tostring(result.journal.state.passed))
end)

t.case("a failover leaves a mismatch that names the moved record", function()
    local world = t.world("eu-west-1-outage")
    t.eq(t.run_playbook("playbooks/dr_region_outage.lua", {}, { world = world }).status, "ok")
    local result = t.run_playbook(PLAYBOOK, {}, { world = world })
    t.eq(result.status, "failed")
    t.eq(result.journal.state.mismatches, {
        "eu-west-1: tasks running as desired (0 of 2 running)",
        "eu-west-1: geo record -> eu-west-1.atlas-crm.com (is us-east-1.atlas-crm.com)",
        "eu-west-1: health check HTTPS eu-west-1.atlas-crm.com/actuator/health (is HTTPS us-east-1.atlas-crm.com/actuator/health)",
        "eu-west-1: https://eu-west-1.atlas-crm.com/actuator/health answers 2xx (503)",
    })
end)

t.case("a service on an older revision is a mismatch", function()
    local world = t.world("healthy")
    t.eq(t.run_playbook("playbooks/rollback_application.lua", { region = "us-east-1" }, { world = world }).status, "ok")
    local result = t.run_playbook(PLAYBOOK, { regions = "us-east-1" }, { world = world })
    t.eq(result.status, "failed")
    t.eq(#result.journal.state.mismatches, 1)
    t.match(result.journal.state.mismatches[1], "^us%-east%-1: the service runs the newest revision")
end)

t.case("a region that runs 0 of 2 tasks fails the verification", function()
    local world = t.world("healthy")
    world:set_service("ap-southeast-1", { desired = 2, running = 0 })
    world:stall_service("ap-southeast-1", true)
    local result = t.run_playbook(PLAYBOOK, { regions = "ap-southeast-1" }, { world = world })
    t.eq(result.status, "failed")
    t.eq(result.exit, 1)
    t.eq(result.journal.state.mismatches, {
        "ap-southeast-1: tasks running as desired (0 of 2 running)",
        "ap-southeast-1: https://ap-southeast-1.atlas-crm.com/actuator/health answers 2xx (503)",
    })
end)

t.case("a database that is not available, or an endpoint that does not answer, is a mismatch", function()
    local world = t.world("eu-west-1-db-failure")
    local result = t.run_playbook(PLAYBOOK, { regions = "eu-west-1" }, { world = world })
    t.eq(result.status, "failed")
    local text = table.concat(result.journal.state.mismatches, "\n")
    t.match(text, "eu%-west%-1: database available %(is failed%)")
    t.match(text, "eu%-west%-1: https://eu%-west%-1.atlas%-crm.com/actuator/health answers 2xx %(503%)")

    world = t.world("healthy")
    world:set_endpoint("us-east-1", { mode = "unreachable" })
    result = t.run_playbook(PLAYBOOK, {}, { world = world })
    t.eq(result.status, "failed")
    t.eq(#result.journal.state.mismatches, 1)
    t.match(result.journal.state.mismatches[1], "^us%-east%-1: https://us%-east%-1.atlas%-crm.com/actuator/health answers 2xx %(.*Failed to connect to us%-east%-1%.atlas%-crm%.com port 443.*%)")
end)
