-- `atlas-run check`: finds what would break a playbook before it runs.
--
-- Syntax errors come from the compiler. Undefined globals are found in the
-- compiled bytecode: every global read or write is a GETTABUP/SETTABUP on
-- the _ENV upvalue with a constant name, in every nested function, so a typo
-- inside a step that only runs during an outage is found now, with its line.
-- Declarations are checked by loading the playbook, which runs no step.
local M = {}

-- Lua 5.4 opcodes (lopcodes.h). A global whose name is a short string
-- constant with an index below 256 is one GETTABUP/SETTABUP. Any other
-- global (a name over 40 characters, or a function with more than 255
-- constants) is _ENV loaded into a register (GETUPVAL), its name loaded
-- (LOADK/LOADKX) or taken as a constant, and GETTABLE/GETFIELD or
-- SETTABLE/SETFIELD on that register.
local OP = {
    LOADK = 3, LOADKX = 4, GETUPVAL = 9, GETTABUP = 11, GETTABLE = 12, GETFIELD = 14,
    SETTABUP = 15, SETTABLE = 16, SETFIELD = 18, EXTRAARG = 82,
}
-- Opcodes whose A operand is not a register they write.
local KEEPS_A = {
    [10] = true, [15] = true, [16] = true, [17] = true, [18] = true, -- SETUPVAL, SET*
    [46] = true, [47] = true, [48] = true, [54] = true, [55] = true, [56] = true, -- MMBIN*, CLOSE, TBC, JMP
    [57] = true, [58] = true, [59] = true, [60] = true, [61] = true, [62] = true, -- EQ, LT, LE, EQK, EQI, LTI
    [63] = true, [64] = true, [65] = true, [66] = true, -- LEI, GTI, GEI, TEST
    [70] = true, [71] = true, [72] = true, [78] = true, [82] = true, -- RETURN*, SETLIST, EXTRAARG
}

-- A reader over the string.dump format of Lua 5.4 (ldump.c).
local Reader = {}
Reader.__index = Reader

function Reader:byte()
    local b = self.s:byte(self.pos)
    self.pos = self.pos + 1
    return b
end

function Reader:bytes(n)
    local s = self.s:sub(self.pos, self.pos + n - 1)
    self.pos = self.pos + n
    return s
end

-- Sizes are written most significant group first, 7 bits a byte, the last
-- byte marked with 0x80.
function Reader:size()
    local x = 0
    repeat
        local b = self:byte()
        x = x * 128 + (b & 0x7f)
    until b & 0x80 ~= 0
    return x
end

function Reader:string()
    local size = self:size()
    if size == 0 then return nil end
    return self:bytes(size - 1)
end

local CONSTANT_READERS = {
    [0x00] = function() return nil end,
    [0x01] = function() return false end,
    [0x11] = function() return true end,
    [0x03] = function(r) return string.unpack("<i8", r:bytes(8)) end,
    [0x13] = function(r) return string.unpack("<d", r:bytes(8)) end,
    [0x04] = function(r) return r:string() end,
    [0x14] = function(r) return r:string() end,
}

function Reader:func()
    local f = {}
    f.source = self:string()
    f.linedefined = self:size()
    f.lastlinedefined = self:size()
    self:bytes(3) -- numparams, is_vararg, maxstacksize
    local ncode = self:size()
    f.code = {}
    for i = 1, ncode do
        f.code[i] = string.unpack("<I4", self:bytes(4))
    end
    f.constants = {}
    for i = 1, self:size() do
        local tag = self:byte()
        local read = CONSTANT_READERS[tag]
        if not read then error(string.format("unknown constant tag 0x%02x", tag)) end
        f.constants[i] = { value = read(self) }
    end
    local nupvalues = self:size()
    self:bytes(3 * nupvalues)
    f.protos = {}
    for i = 1, self:size() do
        f.protos[i] = self:func()
    end
    f.lineinfo = {}
    for i = 1, self:size() do
        f.lineinfo[i] = string.unpack("<i1", self:bytes(1))
    end
    f.abslineinfo = {}
    for _ = 1, self:size() do
        local pc = self:size()
        f.abslineinfo[pc] = self:size()
    end
    for _ = 1, self:size() do
        self:string()
        self:size()
        self:size()
    end
    f.upvalue_names = {}
    for i = 1, self:size() do
        f.upvalue_names[i] = self:string()
    end
    return f
end

local function parse_dump(dump)
    local r = setmetatable({ s = dump, pos = 1 }, Reader)
    if r:bytes(4) ~= "\27Lua" or r:byte() ~= 0x54 then error("not Lua 5.4 bytecode") end
    -- format, LUAC_DATA(6), three sizes, LUAC_INT(8), LUAC_NUM(8), upvalue count
    r:bytes(1 + 6 + 3 + 8 + 8 + 1)
    return r:func()
end

-- Line of each instruction, decoded from the relative line info.
local function lines_of(f)
    local lines, line = {}, f.linedefined
    for pc = 0, #f.code - 1 do
        local delta = f.lineinfo[pc + 1]
        if delta == -128 then
            line = f.abslineinfo[pc] or line
        elseif delta then
            line = line + delta
        end
        lines[pc] = line
    end
    return lines
end

local function scan(f, found)
    local lines = lines_of(f)
    -- What each register holds, as far as globals go: "_ENV", or the
    -- constant index of a string loaded into it.
    local env, konst = {}, {}
    local function global(k, pc, write)
        local c = f.constants[k + 1]
        if c and type(c.value) == "string" then
            found[#found + 1] = { name = c.value, line = lines[pc], write = write }
        end
    end
    for pc = 0, #f.code - 1 do
        local i = f.code[pc + 1]
        local op = i & 0x7f
        local a, b, c = (i >> 7) & 0xff, (i >> 16) & 0xff, (i >> 24) & 0xff
        if op == OP.GETTABUP and f.upvalue_names[b + 1] == "_ENV" then
            global(c, pc, false)
        elseif op == OP.SETTABUP and f.upvalue_names[a + 1] == "_ENV" then
            global(b, pc, true)
        elseif op == OP.GETFIELD and env[b] then
            global(c, pc, false)
        elseif op == OP.GETTABLE and env[b] and konst[c] then
            global(konst[c], pc, false)
        elseif op == OP.SETFIELD and env[a] then
            global(b, pc, true)
        elseif op == OP.SETTABLE and env[a] and konst[b] then
            global(konst[b], pc, true)
        end
        if not KEEPS_A[op] then
            env[a], konst[a] = nil, nil
            if op == OP.GETUPVAL and f.upvalue_names[b + 1] == "_ENV" then
                env[a] = true
            elseif op == OP.LOADK then
                konst[a] = i >> 15
            elseif op == OP.LOADKX and f.code[pc + 2] and f.code[pc + 2] & 0x7f == OP.EXTRAARG then
                konst[a] = f.code[pc + 2] >> 7
            end
        end
    end
    for _, p in ipairs(f.protos) do
        scan(p, found)
    end
end

-- lint.globals(chunk) -> list of {name=, line=, write=} for every global access
function M.globals(chunk)
    local found = {}
    scan(parse_dump(string.dump(chunk)), found)
    return found
end

-- The code of each line, without its comment (a "--" inside a string cuts
-- the line short, which can only hide a finding, never invent one).
local function code_lines(path)
    local lines, n = {}, 0
    for line in io.lines(path) do
        n = n + 1
        lines[n] = line:gsub("%-%-.*$", "")
    end
    return lines
end

-- lint.context_fields(path, pb) -> problems with ctx.params and ctx.state:
-- a parameter the playbook does not declare, and a state field that a step
-- reads but no step writes (a typo such as ctx.state.befor would otherwise
-- read nil, send nothing and report ok). When the file reaches ctx.state any
-- other way (an alias, a computed key) its fields cannot be known, and only
-- the parameters are checked.
function M.context_fields(path, pb)
    local problems = {}
    local declared, names = {}, {}
    for _, spec in ipairs(pb.param_specs or {}) do
        declared[spec.name] = true
        names[#names + 1] = spec.name
    end
    table.sort(names)
    local lines = code_lines(path)
    local reads, written, opaque = {}, {}, false
    for n, line in ipairs(lines) do
        for name in line:gmatch("ctx%.params%.([%a_][%w_]*)") do
            if not declared[name] then
                problems[#problems + 1] = string.format(
                    "%s:%d: ctx.params.%s is not a declared parameter (declared: %s)",
                    path,
                    n,
                    name,
                    #names > 0 and table.concat(names, ", ") or "none"
                )
            end
        end
        if line:find("ctx%.state%f[^%.%w_]") then opaque = true end
        -- The targets of an assignment statement (`a, ctx.state.x = ...`) are
        -- writes; every other mention is a read.
        local targets = ""
        local eq = line:find("[^=~<>]=[^=]")
        if eq and line:sub(1, eq):find("^%s*[%w_%.%[%]\"', ]+$") then targets = line:sub(1, eq) end
        local at = 1
        while true do
            local i, j, name = line:find("ctx%.state%.([%a_][%w_]*)", at)
            if not i then break end
            if j <= #targets and line:sub(j + 1):find("^%s*[,=]") then
                written[name] = true
            else
                reads[#reads + 1] = { name = name, line = n }
            end
            at = j + 1
        end
    end
    if not opaque then
        local reported = {}
        for _, r in ipairs(reads) do
            if not written[r.name] and not reported[r.name] then
                reported[r.name] = true
                problems[#problems + 1] =
                    string.format("%s:%d: ctx.state.%s is read but no step writes it", path, r.line, r.name)
            end
        end
    end
    return problems
end

-- lint.check_file(path) -> list of problems, each "path:line: message"
function M.check_file(path)
    local problems = {}
    local chunk, err = loadfile(path, "t")
    if not chunk then return { err } end
    local ok, accesses = pcall(M.globals, chunk)
    if not ok then return { path .. ": cannot inspect bytecode: " .. tostring(accesses) } end
    local reported = {}
    for _, access in ipairs(accesses) do
        local key = tostring(access.name) .. ":" .. tostring(access.line)
        if access.write and not reported[key] then
            problems[#problems + 1] = string.format(
                "%s:%d: assignment to global '%s' (declare it local)",
                path,
                access.line,
                tostring(access.name)
            )
            reported[key] = true
        elseif not access.write and rawget(_G, access.name) == nil and not reported[key] then
            problems[#problems + 1] =
                string.format("%s:%d: undefined global '%s'", path, access.line, tostring(access.name))
            reported[key] = true
        end
    end
    if #problems > 0 then return problems end
    local playbook = require "atlas.run.playbook"
    local loaded, pb = pcall(playbook.load, path)
    if not loaded then
        -- SIGTERM or Ctrl-C during the load ends `check` as interrupted (exit 3).
        if require("atlas.errors").is(pb, "interrupted") then error(pb, 0) end
        problems[#problems + 1] = require("atlas.errors").message(pb)
        return problems
    end
    for _, problem in ipairs(M.context_fields(path, pb)) do
        problems[#problems + 1] = problem
    end
    for _, program in ipairs(playbook.missing_programs(pb)) do
        problems[#problems + 1] = string.format("%s: needs %s, which is not on PATH", path, program)
    end
    return problems
end

return M
