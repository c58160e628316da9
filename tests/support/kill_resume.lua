-- The SIGKILL-at-every-journal-write proof of the failover against moto,
-- shared by tests/integration/dr_kill_moto_test.lua and variants that keep
-- the state elsewhere. Usage: local proof = dofile("tests/support/kill_resume.lua")(t)
--   proof.setup() -> world; proof.kill_at_every_write(world, placement)
--   placement(n) -> {killed = env, resumed = env, journal = fn() -> record, before_resume = fn(record)?}:
--   where the killed run and its resume keep their state, how to read the run's journal,
--   and what an operator does before resuming (proof.same_machine(world) is one: a local
--   directory shared by both).
return function(t)
    local json = require "atlas.json"
    local runtime = require "atlas.run.runtime"

    local PLAYBOOK = "playbooks/dr_region_outage.lua"

    -- boto3, in one long-lived process (tests/support/failover_server.py): what it sees, and the reset.
    local function boto3(world, method, path)
        local response = require("atlas.http").request { method = method, url = world.boto3 .. path, timeout = 120 }
        t.eq(response.status, 200, response.body)
        return json.decode(response.body)
    end
    local function boto3_view(world) return boto3(world, "GET", "/view") end

    -- The JSON log's mutating calls that reached AWS (replayed ones did not).
    local function mutations_sent(stdout)
        local sent = {}
        for line in stdout:gmatch("[^\n]+") do
            local ok, e = pcall(json.decode, line)
            if ok and type(e) == "table" and e.type == "call" and e.module == "aws" and e.outcome == "ok" then
                if runtime.is_mutating(e.service, e.action) then sent[#sent + 1] = e.op end
            end
        end
        return sent
    end

    local function count(list, value)
        local n = 0
        for _, v in ipairs(list) do
            if v == value then n = n + 1 end
        end
        return n
    end

    local function journal_of(dir)
        local run_id = t.read_file(dir .. "/dr_region_outage.last")
        return run_id and json.decode(t.read_file(dir .. "/runs/" .. run_id:match("^[^\n]*") .. ".json"))
    end

    -- A moto seeded by boto3, a health endpoint that answers 200 for every
    -- region, and the environment a run needs; moto's health checks always
    -- pass, so the region looks healthy: force=true (a planned drill).
    local function setup()
        local endpoint = t.moto()
        local seeded = t.spawn({ "python3", "tests/support/seed_moto.py", endpoint }, { timeout = 120 })
        t.eq(seeded.code, 0, seeded.stderr)
        local dir = t.tmpdir()
        local replies = t.write_file(dir .. "/ok.json", '[{"status": 200, "body": "{\\"status\\":\\"UP\\"}"}]')
        local port = t.server { "python3", "tests/support/canned_server.py", "PORT", replies }
        local boto3_port = t.server({ "python3", "tests/support/failover_server.py", "PORT", endpoint }, { ready_timeout = 60 })
        return {
            endpoint = endpoint,
            boto3 = "http://127.0.0.1:" .. boto3_port,
            dir = dir,
            env = {
                AWS_ENDPOINT_URL = endpoint,
                AWS_ACCESS_KEY_ID = "testing",
                AWS_SECRET_ACCESS_KEY = "testing",
                AWS_EC2_METADATA_DISABLED = "true",
                AWS_PROFILE = false,
            },
            args = {
                "--yes",
                "--log-format",
                "json",
                PLAYBOOK,
                "force=true",
                "desired_count=6",
                "health_url=http://127.0.0.1:" .. port .. "/{region}/actuator/health",
            },
        }
    end

    local function with_env(base, extra)
        local env = {}
        for k, v in pairs(base) do
            env[k] = v
        end
        for k, v in pairs(extra or {}) do
            env[k] = v
        end
        return env
    end

    -- placement(n) -> {killed = env, resumed = env, journal = fn}: where the
    -- killed run and its resume keep their state in iteration n.
    local function same_machine(world)
        return function(n)
            local dir = world.dir .. "/state-" .. n
            return {
                killed = { ATLAS_STATE_DIR = dir },
                resumed = { ATLAS_STATE_DIR = dir },
                journal = function() return journal_of(dir) end,
            }
        end
    end

    local function kill_at_every_write(world, placement)
        local before = boto3_view(world)
        -- A clean run: the mutations one failover makes, and what its journal keeps for undo.
        local clean_dir = world.dir .. "/clean"
        local clean = t.run(world.args, { env = with_env(world.env, { ATLAS_STATE_DIR = clean_dir }), timeout = 120 })
        t.eq(clean.code, 0, clean.stderr)
        local expected = mutations_sent(clean.stdout)
        t.eq(expected, { "ecs.UpdateService", "route53.ChangeResourceRecordSets" })
        local clean_state = journal_of(clean_dir).state
        local failed_over = boto3_view(world)
        t.eq(failed_over.ecs["us-east-1"], { desired = 6, running = 6 })

        local n, replayed_somewhere = 0, false
        while true do
            n = n + 1
            boto3(world, "POST", "/reset")
            local where = placement(n)
            local killed = t.run(
                world.args,
                { env = with_env(world.env, with_env(where.killed, { ATLAS_TEST_KILL_AFTER_WRITES = tostring(n) })), timeout = 120 }
            )
            if killed.code == 0 then break end -- the run has fewer than n journal writes
            local label = "killed after journal write " .. n
            t.ok(killed.code ~= 1 and killed.code ~= 2, label .. ": died of the signal, exit " .. tostring(killed.code))
            local sent = mutations_sent(killed.stdout)
            local record = where.journal()
            if record.status ~= "ok" then
                if where.before_resume then where.before_resume(record) end
                local resumed = t.run(
                    { "--resume", table.unpack(world.args) },
                    { env = with_env(world.env, where.resumed), timeout = 120 }
                )
                t.eq(resumed.code, 0, label .. ": " .. resumed.stdout .. resumed.stderr)
                for _, op in ipairs(mutations_sent(resumed.stdout)) do
                    sent[#sent + 1] = op
                end
                if resumed.stdout:find('"outcome":"replayed"', 1, true) then replayed_somewhere = true end
                record = where.journal()
            end
            -- No completed mutation is repeated: one of each, across both processes.
            for _, op in ipairs(expected) do
                t.eq(count(sent, op), 1, label .. ": " .. op .. " sent once")
            end
            t.eq(#sent, #expected, label .. ": mutating calls " .. table.concat(sent, ", "))
            -- The end state, as boto3 sees it, is the clean run's.
            t.eq(boto3_view(world), failed_over, label .. ": end state")
            -- What --rollback or recovery would need is what the clean run saw.
            t.eq(record.state.backup_previous_count, clean_state.backup_previous_count, label)
            t.eq(record.state.dns_previous, clean_state.dns_previous, label)
        end
        t.ok(n > 12, "a journal write before and after each mutation and at each step boundary, got " .. (n - 1))
        t.ok(replayed_somewhere, "some resumes replayed recorded calls instead of sending them")
        t.ok(before.ecs["us-east-1"].desired == 2, "the seeded backup ran 2 tasks")
    end

    return { setup = setup, kill_at_every_write = kill_at_every_write, same_machine = same_machine }
end
