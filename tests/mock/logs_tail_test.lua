-- playbooks/logs_tail.lua in the mock world.
local t = require "atlas.test"
local sys = require "atlas.sys"

local PLAYBOOK = "playbooks/logs_tail.lua"

local function lines(events)
    local out = {}
    for _, e in ipairs(events) do
        if e.type == "log" then out[#out + 1] = e.message end
    end
    return out
end

t.case("the region's application log group, the last 10 minutes by default", function()
    local result, events = t.run_playbook(PLAYBOOK, {})
    t.eq(result.status, "ok", tostring(result.error))
    t.eq(result.journal.state.group, "/ecs/atlas-crm-production-eu-west-1")
    t.eq(result.journal.state.shown, 10)
    local shown = lines(events)
    t.match(shown[2], "^2025%-11%-18T09:20:00.000Z  ecs/app/%x+  INFO  %[http%-nio%-8080%-exec%-10%]")
    t.eq(shown[#shown], "10 event(s)")
    t.eq(t.run_playbook(PLAYBOOK, { since = "5m" }).journal.state.shown, 5)
end)

t.case("a filter pattern, and the failover Lambda's group", function()
    local world = t.world("healthy")
    world:add_log("us-east-1", "/ecs/atlas-crm-production-us-east-1", "ERROR c.a.crm.db : connection refused")
    local result, events = t.run_playbook(PLAYBOOK, { region = "us-east-1", filter = "ERROR" }, { world = world })
    t.eq(result.journal.state.shown, 1)
    t.match(table.concat(lines(events), "\n"), "ERROR c.a.crm.db : connection refused")
    world:aws_invoke("lambda", "Invoke", "eu-west-1", { FunctionName = "atlas-production-failover-orchestrator" })
    result, events = t.run_playbook(PLAYBOOK, { group = "lambda" }, { world = world })
    t.eq(result.journal.state.group, "/aws/lambda/atlas-production-failover-orchestrator")
    t.eq(result.journal.state.shown, 4)
    t.match(table.concat(lines(events), "\n"), "START RequestId: ")
end)

t.case("a missing group fails naming it; bad parameters are bad input", function()
    local result = t.run_playbook(PLAYBOOK, { group = "/ecs/nope" })
    t.eq(result.status, "failed")
    t.eq(result.exit, 1)
    t.match(tostring(result.error), 'step "tail": logs FilterLogEvents %(eu%-west%-1%): ResourceNotFoundException')
    t.raises(
        function() t.run_playbook(PLAYBOOK, { group = "lambda", region = "us-east-1" }) end,
        "the failover Lambda logs in eu%-west%-1, not us%-east%-1"
    )
    t.raises(function() t.run_playbook(PLAYBOOK, { since = "yesterday" }) end, "parameter since")
end)

t.case("follow=true streams new events until Ctrl-C, then exits 0", function()
    local dir = t.tmpdir()
    -- New application lines every 30 virtual seconds while the tail follows.
    local scenario = t.write_file(
        dir .. "/busy.lua",
        [[return { description = "a chatty service", apply = function(world)
            local n = 0
            local function tick(w)
                n = n + 1
                w:add_log("eu-west-1", "/ecs/atlas-crm-production-eu-west-1", "WARN pool busy " .. n)
                if n < 3 then w:after(30, tick) end
            end
            world:after(30, tick)
        end }]]
    )
    local out = dir .. "/out"
    local pid = assert(sys.spawn({ t.binary(), "--scenario", scenario, PLAYBOOK, "follow=true", "filter=WARN" }, {
        stdout = out,
        stderr = out,
        stdin = "/dev/null",
    }))
    local deadline = sys.monotime() + 20
    while not (t.read_file(out) or ""):find("pool busy 3", 1, true) and sys.monotime() < deadline do
        sys.sleep(0.05)
    end
    sys.kill(pid, "INT")
    local exited, code
    repeat
        exited, code = sys.wait(pid, true)
        if not exited then sys.sleep(0.02) end
    until exited or sys.monotime() > deadline + 5
    if not exited then
        sys.kill(pid, "KILL")
        sys.wait(pid)
    end
    local text = t.read_file(out)
    t.eq(code, 0, text)
    t.match(text, "WARN pool busy 1.*WARN pool busy 2.*WARN pool busy 3")
    t.match(text, "stopped after 3 event%(s%)")
    t.no_match(text, "pool busy 4")
end)

t.case("recent_errors: the ERROR events of a window, capped, saying when there were more", function()
    local world = t.world("eu-west-1-outage")
    local logs = require "atlas.logs"
    local group = "/ecs/atlas-crm-production-eu-west-1"
    local events, more = logs.recent_errors { region = "eu-west-1", logGroupName = group }
    t.eq(#events, 5, "the outage's five errors, no INFO line")
    t.eq(more, false)
    t.match(events[1].message, "^ERROR %[main%] o%.s%.boot%.SpringApplication")
    events, more = logs.recent_errors { region = "eu-west-1", logGroupName = group, limit = 3 }
    t.eq(#events, 3)
    t.eq(more, true)
    world:advance(2 * 3600)
    t.eq(#logs.recent_errors { region = "eu-west-1", logGroupName = group }, 0, "older than the hour")
end)
