-- Every process atlas-run starts has a timeout: a credential_process and
-- the commands of atlas.proc are stopped, with a message, never waited for.
local t = require "atlas.test"
local sys = require "atlas.sys"

t.case("a credential_process that hangs ends the lookup after PROCESS_TIMEOUT, naming the profile", function()
    local credentials = require "atlas.aws.credentials"
    local home = t.tmpdir()
    sys.mkdir(home .. "/.aws")
    t.write_file(home .. "/.aws/config", "[profile slow]\ncredential_process = sleep 30\n")
    local env = { HOME = home, AWS_EC2_METADATA_DISABLED = "true" }
    local saved_env, saved_timeout = credentials.getenv, credentials.PROCESS_TIMEOUT
    credentials.getenv = function(name) return env[name] end
    credentials.PROCESS_TIMEOUT = 0.3
    credentials.reset()
    t.defer(function()
        credentials.getenv, credentials.PROCESS_TIMEOUT = saved_env, saved_timeout
        credentials.reset()
    end)
    local started = sys.monotime()
    local err = t.raises(function() credentials.resolve { profile = "slow" } end)
    t.ok(sys.monotime() - started < 5, "stopped, not waited for")
    t.match(tostring(err), "credential_process of profile slow: .*did not finish within 0%.3 s")
end)

t.case("a command of atlas.proc that hangs is stopped at its timeout, its children too", function()
    local proc = require "atlas.proc"
    local dir = t.tmpdir()
    local started = sys.monotime()
    local err = t.raises(function()
        proc.run({ "/bin/sh", "-c", "sleep 30 & echo $! > " .. dir .. "/child; wait" }, { mutates = false, timeout = 0.3 })
    end)
    t.ok(sys.monotime() - started < 5, "stopped, not waited for")
    t.eq(err.kind, "proc")
    t.eq(err.code, "timeout")
    t.match(err.message, "/bin/sh did not finish within 0%.3 s; it was stopped")
    local child = tonumber(t.read_file(dir .. "/child"))
    t.ok(child, "the child wrote its pid")
    sys.sleep(0.1)
    t.ok(not sys.stat("/proc/" .. child .. "/stat") or t.read_file("/proc/" .. child .. "/stat"):match("^%d+ %b() Z"),
        "the shell's child was stopped with it")
end)

t.case("a command that finishes in time is unchanged by the timeout", function()
    local proc = require "atlas.proc"
    local r = proc.run({ "/bin/sh", "-c", "echo out; echo err >&2; exit 0" }, { mutates = false, timeout = 5 })
    t.eq({ r.code, r.stdout, r.stderr }, { 0, "out\n", "err\n" })
    t.eq(require("atlas.proc.real").DEFAULT_TIMEOUT, 3600)
end)
