-- make mutants: a seeded mutation run over the safety-critical Lua.
--
-- Draws MUTANTS (default 40) mutants with MUTANT_SEED (default 1) from the
-- files below, each one small change on one line (a comparison flipped, and
-- <-> or, true <-> false, a `not` dropped, a number moved by one, a statement
-- removed). A mutant that does not compile is not valid and is replaced by the
-- next one drawn. Each valid mutant runs against a copy of the tree: first
-- the mock suite, then the unit suite; it is killed when either fails (or
-- hangs past MUTANT_TIMEOUT seconds). Prints the score and every survivor,
-- so a survivor can be turned into a test.
--
-- Run: make mutants [MUTANTS=40] [MUTANT_SEED=1]
local sys = require "atlas.sys"

local FILES = {
    "playbooks/dr_region_outage.lua",
    "playbooks/dr_region_recovery.lua",
    "playbooks/rollback_application.lua",
    "playbooks/diag_health.lua",
    "lua/atlas/services/dns.lua",
    "lua/atlas/services/ecs.lua",
    "lua/atlas/run/playbook.lua",
    "lua/atlas/run/journal.lua",
    "lua/atlas/run/params.lua",
    "lua/atlas/run/runtime.lua",
    "lua/atlas/run/log.lua",
    "lua/atlas/aws/init.lua",
}

local COUNT = tonumber(os.getenv("MUTANTS") or "") or 40
local SEED = tonumber(os.getenv("MUTANT_SEED") or "") or 1
local TIMEOUT = tonumber(os.getenv("MUTANT_TIMEOUT") or "") or 300
local BINARY = sys.realpath("/proc/self/exe")
-- MUTANTS_DRY=1 lists the mutants a seed draws, without running them.
local DRY = os.getenv("MUTANTS_DRY") == "1"

local function read(path)
    local f = assert(io.open(path, "rb"))
    local s = f:read("a")
    f:close()
    return s
end

local function write(path, s)
    local f = assert(io.open(path, "wb"))
    f:write(s)
    f:close()
end

local function sh_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- Where code starts being a comment or a string on this line: mutations are
-- only made before the first quote or comment, so no string or comment text
-- is ever "mutated" into an equivalent mutant.
local function code_end(line)
    local stop = #line + 1
    for _, mark in ipairs { "--", '"', "'", "[[" } do
        local at = line:find(mark, 1, true)
        if at and at < stop then stop = at end
    end
    return stop
end

-- The mutation operators: a pattern found in the code part of a line and
-- what replaces the match.
local OPERATORS = {
    { name = "<= to <", find = "<=", with = "<" },
    { name = ">= to >", find = ">=", with = ">" },
    { name = "< to <=", find = "<[^=<]", with = "<=", keep_tail = true },
    { name = "> to >=", find = ">[^=>]", with = ">=", keep_tail = true },
    { name = "== to ~=", find = "==", with = "~=" },
    { name = "~= to ==", find = "~=", with = "==" },
    { name = "and to or", find = "%f[%w]and%f[%W]", with = "or" },
    { name = "or to and", find = "%f[%w]or%f[%W]", with = "and" },
    { name = "true to false", find = "%f[%w]true%f[%W]", with = "false" },
    { name = "false to true", find = "%f[%w]false%f[%W]", with = "true" },
    { name = "drop not", find = "%f[%w]not ", with = "" },
    { name = "number + 1", find = "%f[%w%.]%d+%f[^%w%.]", number = true },
}

-- Statements whose removal a test must notice: a failure, a check, a call.
local DELETABLE = {
    "^%s*ctx%.fail%b()%s*$",
    "^%s*atlas%.fail%b()%s*$",
    "^%s*error%b()%s*$",
    "^%s*[%w_%.:]+%b()%s*$",
}

local function candidates(path, source)
    local out, n = {}, 0
    for line in (source .. "\n"):gmatch("(.-)\n") do
        n = n + 1
        local code = line:sub(1, code_end(line) - 1)
        if not code:match("^%s*$") then
            for _, op in ipairs(OPERATORS) do
                local at = 1
                while true do
                    local i, j = code:find(op.find, at)
                    if not i then break end
                    local replacement
                    if op.number then
                        replacement = tostring(math.tointeger(tonumber(code:sub(i, j))) + 1)
                    elseif op.keep_tail then
                        replacement = op.with .. code:sub(j, j)
                    else
                        replacement = op.with
                    end
                    out[#out + 1] = {
                        path = path,
                        line = n,
                        op = op.name,
                        text = line:sub(1, i - 1) .. replacement .. line:sub(j + 1),
                        original = line,
                    }
                    at = j + 1
                end
            end
            for _, pattern in ipairs(DELETABLE) do
                if line:find(pattern) and not line:find("^%s*local ") then
                    out[#out + 1] = { path = path, line = n, op = "delete statement", text = "", original = line }
                    break
                end
            end
        end
    end
    return out
end

local function with_line(source, number, text)
    local lines, n = {}, 0
    for line in (source .. "\n"):gmatch("(.-)\n") do
        n = n + 1
        lines[n] = (n == number) and text or line
    end
    return table.concat(lines, "\n", 1, n - 1) .. (source:sub(-1) == "\n" and "\n" or "")
end

-- A seeded, platform-independent shuffle (xorshift32), so a seed draws the
-- same mutants on every machine.
local function shuffle(list, seed)
    local state = (seed * 2654435761) % 4294967296
    if state == 0 then state = 1 end
    local function next_random()
        state = state ~ ((state << 13) & 0xffffffff)
        state = state ~ (state >> 17)
        state = state ~ ((state << 5) & 0xffffffff)
        return state
    end
    for i = #list, 2, -1 do
        local j = next_random() % i + 1
        list[i], list[j] = list[j], list[i]
    end
    return list
end

local function run_suite(dir, suite)
    local command = string.format(
        "cd %s && ATLAS_LUA_PATH=%s/lua ATLAS_RUN=%s timeout %d %s test %s >/dev/null 2>&1",
        sh_quote(dir),
        sh_quote(dir),
        sh_quote(BINARY),
        TIMEOUT,
        sh_quote(BINARY),
        suite
    )
    local ok = os.execute(command)
    return ok == true
end

local function main()
    local all = {}
    local sources = {}
    for _, path in ipairs(FILES) do
        sources[path] = read(path)
        for _, c in ipairs(candidates(path, sources[path])) do
            all[#all + 1] = c
        end
    end
    shuffle(all, SEED)

    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. sh_quote(dir)))
    assert(os.execute("cp -r lua playbooks tests vendor README.md docs " .. sh_quote(dir)))

    print(string.format("mutants: %d candidates in %d files; drawing %d with seed %d", #all, #FILES, COUNT, SEED))
    local killed, survived, invalid, tried = 0, {}, 0, 0
    local started = sys.monotime()
    for _, m in ipairs(all) do
        if tried >= COUNT then break end
        local mutated = with_line(sources[m.path], m.line, m.text)
        if not load(mutated, "=" .. m.path, "t") then
            invalid = invalid + 1
        else
            tried = tried + 1
            local target = dir .. "/" .. m.path
            local alive = false
            if not DRY then
                write(target, mutated)
                alive = run_suite(dir, "tests/mock") and run_suite(dir, "tests/unit")
                write(target, sources[m.path])
            end
            if alive then
                survived[#survived + 1] = m
            else
                killed = killed + 1
            end
            io.write(
                string.format(
                    "%3d %-8s %s:%d %s\n",
                    tried,
                    DRY and "drawn" or alive and "SURVIVED" or "killed",
                    m.path,
                    m.line,
                    m.op
                )
            )
            if DRY then io.write("      - ", m.original, "\n      + ", m.text, "\n") end
            io.flush()
        end
    end
    os.execute("rm -rf " .. sh_quote(dir))
    if DRY then return 0, 0 end
    print(
        string.format(
            "\nscore: %d of %d valid mutants killed (%.0f %%), %d invalid skipped, seed %d, %.0f s",
            killed,
            tried,
            tried > 0 and 100 * killed / tried or 0,
            invalid,
            SEED,
            sys.monotime() - started
        )
    )
    for _, m in ipairs(survived) do
        print(string.format("survivor %s:%d (%s)\n  - %s\n  + %s", m.path, m.line, m.op, m.original, m.text))
    end
    return killed, tried
end

local killed, tried = main()
local goal = tonumber(os.getenv("MUTANT_GOAL") or "") or 90
if not DRY and tried > 0 and 100 * killed / tried < goal then
    io.stderr:write(string.format("mutants: below the goal of %d %%\n", goal))
    os.exit(1)
end
