-- `make package`: the .deb holds what an SRE's machine needs, and it runs
-- from where it is unpacked: the binary, each loadable module, the
-- playbooks, the man page and the bash completion.
local t = require "atlas.test"
local sys = require "atlas.sys"

local function sh(command)
    local p = io.popen(command .. " 2>&1")
    local out = p:read("a")
    local ok, _, code = p:close()
    return ok and 0 or code, out
end

t.case("the .deb unpacks into a root that runs, with runtime Depends only", function()
    local build = t.binary():match("^(.*)/[^/]+$")
    local out = t.tmpdir()
    local code, text = sh(string.format("cpack --config %q -G DEB -B %q", build .. "/CPackConfig.cmake", out))
    t.eq(code, 0, text)
    local deb = text:match("package: (%S+%.deb) generated")
    t.ok(deb, text)

    code, text = sh(string.format("dpkg-deb -f %q Depends", deb))
    t.eq(code, 0, text)
    t.no_match(text, "-dev")
    for package in text:gmatch("([%w%.%-]+)") do
        local installed = sh("dpkg -s " .. package .. " >/dev/null")
        t.eq(installed, 0, "Depends names " .. package .. ", which is not an installed package here")
    end

    local root = out .. "/root"
    code, text = sh(string.format("dpkg-deb -x %q %q", deb, root))
    t.eq(code, 0, text)
    local bin = root .. "/usr/bin/atlas-run"
    local env = { ATLAS_LUA_PATH = false, ATLAS_PLAYBOOK_PATH = false, ATLAS_STATE_DIR = out .. "/state" }
    local function run(args)
        local argv = { "/bin/sh", "-c", "cd / && exec \"$0\" \"$@\"", bin }
        for _, a in ipairs(args) do
            argv[#argv + 1] = a
        end
        return t.spawn(argv, { env = env })
    end
    local r = run { "-e", "for _, m in ipairs { 'atlas.curl', 'atlas.pq', 'atlas.sigv4' } do "
        .. "assert(type(require(m)) == 'table', m) end print('modules ok')" }
    t.eq(r.code, 0, r.stderr)
    t.match(r.stdout, "modules ok")
    r = run { "list" }
    t.eq(r.code, 0, r.stderr)
    t.match(r.stdout, "dr_region_outage  %(" .. root:gsub("%p", "%%%0") .. "/usr/share/atlas%-run/playbooks/")
    r = run { "--scenario", "eu-west-1-outage", "--yes", "--quiet", "dr_region_outage" }
    t.eq(r.code, 0, r.stdout .. r.stderr)

    local man = root .. "/usr/share/man/man1/atlas-run.1"
    t.ok(sys.stat(man), "man page")
    code, text = sh(string.format("groff -man -Tutf8 -ww -z %q", man))
    t.eq(code, 0, text)
    t.eq(text, "", "groff warnings")
    local page = t.read_file(man)
    for _, section in ipairs { "SYNOPSIS", "OPTIONS", "EXIT STATUS", "ENVIRONMENT", "FILES" } do
        t.match(page, "\n%.SH " .. section .. "\n")
    end
    t.match(page, "\\%-\\%-scenario")
    local completion = root .. "/usr/share/bash-completion/completions/atlas-run"
    t.ok(sys.stat(completion), "bash completion")
end)
