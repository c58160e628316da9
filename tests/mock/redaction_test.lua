-- Secrets never leak: not in the timeline, JSON events, errors, reports or journals.
local t = require "atlas.test"
local World = require "atlas.mock.world"

local function master_password()
    -- The mock world derives its password from its fixed start time, so a
    -- fresh world in this process has the same one as the subprocess.
    return World.new { scenario = "healthy" }.master_password
end

t.case("the master password appears nowhere in any output", function()
    local secret = master_password()
    t.ok(type(secret) == "string" and #secret >= 8, "the mock world has a master password")
    local dir = t.tmpdir()
    for _, format in ipairs({ "text", "json" }) do
        local report = dir .. "/report-" .. format .. ".md"
        local r = t.run(
            { "--mock", "--dry-run", "--log-format", format, "--report", report, "tests/fixtures/playbooks/leaky.lua" },
            { env = { ATLAS_STATE_DIR = dir } }
        )
        t.eq(r.code, 1, r.stderr)
        local everything = r.stdout .. r.stderr .. (t.read_file(report) or "")
        t.no_match(everything, secret, format .. " output")
        t.no_match(everything, "hunter2-typed", format .. " output")
        t.match(everything, "%[REDACTED%]")
        t.match(r.stderr, "connection failed for password %[REDACTED%]")
    end
end)

t.case("the journal of a real (non-dry) run holds no secret either", function()
    local secret = master_password()
    local dir = t.tmpdir()
    local r = t.run({ "--mock", "tests/fixtures/playbooks/leaky.lua" }, { env = { ATLAS_STATE_DIR = dir } })
    t.eq(r.code, 1)
    local run_id = t.read_file(dir .. "/mock/leaky.last")
    local journal = t.read_file(dir .. "/mock/runs/" .. run_id .. ".json")
    t.ok(journal and #journal > 0, "journal written")
    t.no_match(journal, secret, "journal")
    t.no_match(r.stdout .. r.stderr, secret, "output")
end)

-- log.redact remembers the strings that held no secret (events and journal writes
-- pass the same ones again and again). A secret registered later must still be masked.
t.case("a string redacted before its secret was registered is masked once it is", function()
    local log = require "atlas.run.log"
    log.secret("first-secret-value")
    local text = "connect with hunter2-late-secret please"
    t.eq(log.redact(text), text)
    t.eq(log.redact_table({ note = text }).note, text)
    log.secret("hunter2-late-secret")
    t.eq(log.redact(text), "connect with [REDACTED] please")
    t.eq(log.redact_table({ note = text }).note, "connect with [REDACTED] please")
end)
