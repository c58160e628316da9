-- The seeded fault campaign (docs/faults.md): for each seed, a fresh moto
-- seeded by boto3, tests/support/fault_proxy.py in front of it injecting
-- faults at a rate from that seed, then dr_region_outage and
-- dr_region_recovery as an SRE runs them, each resumed while it ends failed
-- or interrupted. boto3 checks the world after every run that exits 0 and
-- at the end of each playbook; the proxy's log of what reached moto shows any
-- mutating request that arrived twice.
-- Usage: local campaign = dofile("tests/support/fault_campaign.lua")(t)
--   campaign.seed(seed, rate) -> result; campaign.summary(results) -> text
return function(t)
    local json = require "atlas.json"
    local http = require "atlas.http"
    local runtime = require "atlas.run.runtime"

    -- An attempt waits AWS_TIMEOUT s; a stalled request is held STALL s, past it.
    local AWS_TIMEOUT, STALL = "3", "4"
    -- A run and up to this many --resume: each resume meets faults at the same rate.
    local MAX_RESUMES = 5
    local FAILOVER = { "playbooks/dr_region_outage.lua", "force=true", "desired_count=6" }
    local RECOVERY = { "playbooks/dr_region_recovery.lua" }

    local function get(url)
        local r = http.request { method = "GET", url = url, timeout = 120 }
        assert(r.status == 200, url .. ": " .. r.status .. " " .. r.body)
        return json.decode(r.body)
    end

    local function post(url, doc)
        local r = http.request { method = "POST", url = url, body = json.encode(doc), timeout = 30 }
        assert(r.status == 200, url .. ": " .. r.status .. " " .. r.body)
    end

    -- One moto seeded by boto3 for the whole campaign (seeding costs 20 s of
    -- CPU here), boto3 in one long-lived process, and a health endpoint that
    -- answers 200 for every region (moto's health checks always pass: force=true).
    -- Each seed starts from the seeded world again: boto3 puts back what a
    -- failover changes and checks that it sees the seeded world.
    -- Started when the file loads, so they outlive each seed's case.
    local endpoint = t.moto()
    local seeded = t.spawn({ "python3", "tests/support/seed_moto.py", endpoint }, { timeout = 300 })
    assert(seeded.code == 0, "seeding moto failed: " .. seeded.stderr)
    local boto3 = "http://127.0.0.1:"
        .. t.server({ "python3", "tests/support/failover_server.py", "PORT", endpoint }, { ready_timeout = 60 })
    local function boto3_view() return get(boto3 .. "/view") end
    local seeded_view = boto3_view()
    local health_dir = t.tmpdir()
    local replies = t.write_file(health_dir .. "/ok.json", '[{"status": 200, "body": "{\\"status\\":\\"UP\\"}"}]')
    local health = "health_url=http://127.0.0.1:"
        .. t.server { "python3", "tests/support/canned_server.py", "PORT", replies }
        .. "/{region}/actuator/health"

    local function by_id(records)
        local out = {}
        for _, r in ipairs(records) do
            out[r.id] = r
        end
        return out
    end

    -- What docs/failover.md promises after the failover: the backup runs
    -- desired_count tasks; the eu-west-1 record points at us-east-1 with its
    -- health check, keeping its TTL and location; nothing else moved.
    -- -> list of differences (empty when right)
    local function failover_wrong(before, now)
        local wrong = {}
        local old, new = by_id(before.records), by_id(now.records)
        local function want(ok, what)
            if not ok then wrong[#wrong + 1] = what end
        end
        local moved = new["eu-west-1"] or {}
        want(moved.value == "us-east-1.atlas-crm.com", "eu-west-1 record -> " .. tostring(moved.value))
        want(moved.health_check == "us-east-1.atlas-crm.com", "eu-west-1 record checks " .. tostring(moved.health_check))
        want(moved.ttl == old["eu-west-1"].ttl, "eu-west-1 record TTL " .. tostring(moved.ttl))
        want(json.encode(moved.location) == json.encode(old["eu-west-1"].location), "eu-west-1 record location")
        for _, id in ipairs { "us-east-1", "ap-southeast-1", "default" } do
            want(json.encode(new[id]) == json.encode(old[id]), "record " .. id .. " changed")
        end
        local us = now.ecs["us-east-1"]
        want(us.desired == 6 and us.running == 6, string.format("us-east-1 runs %d/%d, not 6/6", us.running, us.desired))
        want(
            json.encode(now.ecs["eu-west-1"]) == json.encode(before.ecs["eu-west-1"]),
            "eu-west-1 service changed"
        )
        return wrong
    end

    -- After the recovery: the records exactly as before the failover, the backup at 2.
    local function recovery_wrong(before, now)
        local wrong = {}
        if json.encode(now.records) ~= json.encode(before.records) then
            wrong[#wrong + 1] = "records not as before the failover: " .. json.encode(now.records)
        end
        local us = now.ecs["us-east-1"]
        if not (us.desired == 2 and us.running == 2) then
            wrong[#wrong + 1] = string.format("us-east-1 runs %d/%d, not 2/2", us.running, us.desired)
        end
        return wrong
    end

    -- The attempts a run's JSON log shows, by operation: what atlas itself sent.
    local function attempts_of(stdout)
        local count = {}
        for line in stdout:gmatch("[^\n]+") do
            local ok, e = pcall(json.decode, line)
            if ok and type(e) == "table" and e.type == "call" and e.module == "aws" then
                if e.outcome == "ok" or e.outcome == "retry" or e.outcome == "error" then
                    count[e.op] = (count[e.op] or 0) + 1
                end
            end
        end
        return count
    end

    local function is_mutating(r)
        local action = r.op:match("^[%w-]+%.(%w+)$")
        if action then return runtime.is_mutating(r.service, action) end
        return http.is_mutating(r.method)
    end

    -- Duplicated mutating calls: the same request (op and digest) reached moto
    -- twice in one atlas-run process, and the proxy received more requests of
    -- that operation than atlas made attempts: something below atlas (libcurl)
    -- sent again what atlas sent once. atlas's own retries are attempts in its
    -- log, and repeat only calls declared idempotent (docs/aws.md).
    -- -> list of descriptions, transport resends of any call (reads included)
    local function duplicates(requests, attempts)
        local received, reached, dups, resends = {}, {}, {}, 0
        for _, r in ipairs(requests) do
            local key = r.run .. " " .. r.op
            received[key] = (received[key] or 0) + 1
        end
        for key, n in pairs(received) do
            local run, op = key:match("^(%S+) (.*)$")
            local sent = (attempts[run] or {})[op] or 0
            if n > sent then resends = resends + (n - sent) end
        end
        for _, r in ipairs(requests) do
            local key = r.run .. " " .. r.op
            local sent = (attempts[r.run] or {})[r.op] or 0
            if r.forwarded and is_mutating(r) and received[key] > sent then
                local same = key .. " " .. r.digest
                local first = reached[same]
                if first then
                    dups[#dups + 1] = string.format(
                        "%s: %s reached moto twice, atlas sent it %d time(s): fault %s on connection %d "
                            .. "(request %d on it), then %s on %d (%d)",
                        r.run,
                        r.op,
                        sent,
                        first.fault,
                        first.conn,
                        first.nth,
                        r.fault,
                        r.conn,
                        r.nth
                    )
                end
                reached[same] = r
            end
        end
        return dups, resends
    end

    local function has_traceback(r) return (r.stdout .. r.stderr):find("stack traceback", 1, true) ~= nil end

    -- The last n lines of a run's output; JSON events shortened to what a reader needs.
    local function last_lines(text, n)
        local lines = {}
        for line in text:gmatch("[^\n]+") do
            local ok, e = pcall(json.decode, line)
            if ok and type(e) == "table" and e.type then
                local parts = { e.type }
                for _, k in ipairs { "step", "op", "region", "outcome", "code", "message", "error" } do
                    if e[k] ~= nil and type(e[k]) ~= "table" then parts[#parts + 1] = tostring(e[k]) end
                end
                line = table.concat(parts, " ")
            end
            lines[#lines + 1] = line
        end
        return table.concat(lines, "\n", math.max(1, #lines - n + 1))
    end

    -- Runs a playbook, then --resume while it ends failed or interrupted.
    -- Checks the world with boto3 after every exit 0 (wrong(before, view) -> differences).
    local function until_done(world, result, phase, args, before, wrong)
        local argv = { "--yes", "--log-format", "json" }
        for _, a in ipairs(args) do
            argv[#argv + 1] = a
        end
        argv[#argv + 1] = world.health
        for n = 0, MAX_RESUMES do
            local label = phase .. "-" .. n
            post(world.proxy .. "/__faults/run", { run = label })
            local this = n == 0 and argv or { "--resume", table.unpack(argv) }
            local r = t.run(this, { env = world.env, timeout = 600 })
            get(world.proxy .. "/__faults/idle") -- a stalled request lands before anything is read
            result.attempts[label] = attempts_of(r.stdout)
            result.runs[#result.runs + 1] = string.format("%s: exit %s (%.1fs)", label, tostring(r.code), r.elapsed)
            if has_traceback(r) or (r.code ~= 0 and r.code ~= 1 and r.code ~= 3) then
                result.unclean[#result.unclean + 1] =
                    string.format("%s: exit %s\n%s", label, tostring(r.code), last_lines(r.stdout .. r.stderr, 12))
            end
            if r.code == 0 then
                local differences = wrong(before, boto3_view())
                if #differences > 0 then
                    result.wrong_exit0 = result.wrong_exit0 + 1
                    result.problems[#result.problems + 1] = string.format(
                        "%s exited 0 in a wrong state: %s\n%s",
                        label,
                        table.concat(differences, "; "),
                        last_lines(r.stdout .. r.stderr, 12)
                    )
                end
                return true
            end
            result.last_failure = label .. ":\n" .. last_lines(r.stdout .. r.stderr, 8)
            if r.code ~= 1 and r.code ~= 3 then return false end
        end
        result.problems[#result.problems + 1] = phase
            .. " did not complete after "
            .. MAX_RESUMES
            .. " resumes; last:\n"
            .. tostring(result.last_failure)
        return false
    end

    -- seed(seed, rate) -> {seed, rate, correct, duplicates, resends, wrong_exit0, runs, problems, unclean}
    local function seed(n, rate)
        local result = {
            seed = n,
            rate = rate,
            runs = {},
            problems = {},
            unclean = {},
            duplicates = {},
            resends = 0,
            attempts = {},
            wrong_exit0 = 0,
        }
        post(boto3 .. "/reset", {})
        local before = boto3_view()
        assert(json.encode(before) == json.encode(seeded_view), "the reset world is not the seeded one: " .. json.encode(before))
        local dir = t.tmpdir()
        local proxy_port = t.server {
            "python3",
            "tests/support/fault_proxy.py",
            "PORT",
            endpoint,
            "--seed",
            tostring(n),
            "--rate",
            tostring(rate),
            "--stall",
            STALL,
        }
        local world = {
            endpoint = endpoint,
            proxy = "http://127.0.0.1:" .. proxy_port,
            health = health,
            env = {
                AWS_ENDPOINT_URL = "http://127.0.0.1:" .. proxy_port,
                AWS_ACCESS_KEY_ID = "testing",
                AWS_SECRET_ACCESS_KEY = "testing",
                AWS_EC2_METADATA_DISABLED = "true",
                AWS_PROFILE = false,
                ATLAS_AWS_TIMEOUT = AWS_TIMEOUT,
                ATLAS_STATE_DIR = dir .. "/state",
            },
        }
        local done = until_done(world, result, "failover", FAILOVER, before, failover_wrong)
        if done then
            local differences = failover_wrong(before, boto3_view())
            if #differences > 0 then
                result.problems[#result.problems + 1] = "after the failover: " .. table.concat(differences, "; ")
                done = false
            end
        end
        if done then
            done = until_done(world, result, "recovery", RECOVERY, before, recovery_wrong)
            if done then
                local differences = recovery_wrong(before, boto3_view())
                if #differences > 0 then
                    result.problems[#result.problems + 1] = "after the recovery: " .. table.concat(differences, "; ")
                    done = false
                end
            end
        end
        local requests = get(world.proxy .. "/__faults/requests").requests
        result.requests = #requests
        result.duplicates, result.resends = duplicates(requests, result.attempts)
        result.correct = done and #result.problems == 0
        return result
    end

    -- How to run one seed alone.
    local function rerun(n, rate) return string.format("make faults FAULT_SEED=%d FAULT_RATE=%s", n, tostring(rate)) end

    -- The lines a seed's failure prints.
    local function explain(r)
        local lines = { string.format("seed %d (rate %s): %s", r.seed, tostring(r.rate), table.concat(r.runs, ", ")) }
        for _, list in ipairs { r.problems, r.duplicates, r.unclean } do
            for _, p in ipairs(list) do
                lines[#lines + 1] = "  " .. p:gsub("\n", "\n    ")
            end
        end
        lines[#lines + 1] = "  rerun it alone: " .. rerun(r.seed, r.rate)
        return table.concat(lines, "\n")
    end

    local function ok(r) return r.correct and #r.duplicates == 0 and r.wrong_exit0 == 0 and #r.unclean == 0 end

    -- summary(results, seconds) -> the figures, one line each
    local function summary(results, seconds)
        local correct, dups, wrong0, unclean, resends, resumes, requests = 0, 0, 0, 0, 0, 0, 0
        for _, r in ipairs(results) do
            if r.correct then correct = correct + 1 end
            dups = dups + #r.duplicates
            wrong0 = wrong0 + r.wrong_exit0
            unclean = unclean + #r.unclean
            resends = resends + r.resends
            resumes = resumes + #r.runs - 2
            requests = requests + (r.requests or 0)
        end
        return string.format(
            "fault campaign: %d seeds at rate %s: %d/%d correct end states, %d duplicated mutating calls, "
                .. "%d runs exited 0 in a wrong state, %d unclean exits, %d resumes, %d AWS requests, "
                .. "%d sent again by the transport without an attempt of atlas, %.0f s",
            #results,
            tostring(results[1] and results[1].rate),
            correct,
            #results,
            dups,
            wrong0,
            unclean,
            resumes,
            requests,
            resends,
            seconds or 0
        )
    end

    return { seed = seed, ok = ok, explain = explain, summary = summary, rerun = rerun }
end
