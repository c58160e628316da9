-- One rule for every native wait (atlas.h, atlas_wait): only a Ctrl-C that arrives while a wait
-- runs cuts it short; a wait that starts after it (cleanup: an undo, a rollback) runs to its end.
local t = require "atlas.test"
local sys = require "atlas.sys"

-- Runs `script` in a child atlas-run, sends SIGINT once the child wrote "ready" to stderr,
-- and returns everything the child wrote.
local function interrupt_child(script)
    local out = os.tmpname()
    t.defer(function() os.remove(out) end)
    local pid = assert(sys.spawn({ t.binary(), "-e", script }, { stdout = out, stderr = out, stdin = "/dev/null" }))
    local deadline = sys.monotime() + 10
    while not (t.read_file(out) or ""):find("ready", 1, true) and sys.monotime() < deadline do
        sys.sleep(0.02)
    end
    sys.sleep(0.1)
    sys.kill(pid, "INT")
    local exited
    repeat
        exited = sys.wait(pid, true)
        if not exited then sys.sleep(0.02) end
    until exited or sys.monotime() > deadline
    if not exited then
        sys.kill(pid, "KILL")
        sys.wait(pid)
    end
    return t.read_file(out) or ""
end

t.case("sleep: cut short by a Ctrl-C during it, not by one that came before it", function()
    local output = interrupt_child [[
        local sys = require 'atlas.sys'
        io.stderr:write('ready\n')
        local t0 = sys.monotime()
        local ok = pcall(function() return sys.sleep(8) end)
        io.stderr:write('first=', tostring(ok), ' ', tostring(sys.monotime() - t0 < 4), '\n')
        t0 = sys.monotime()
        local full = sys.sleep(0.3)
        io.stderr:write('second=', tostring(full), ' ', tostring(sys.monotime() - t0 >= 0.3), '\n')
    ]]
    t.match(output, "first=false true")
    t.match(output, "second=true true")
end)
