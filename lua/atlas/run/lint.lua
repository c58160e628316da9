-- `atlas-run check`: finds what would break a playbook before it runs.
--
-- Syntax errors come from the compiler. Undefined globals are found in the
-- compiled bytecode: every global read or write is a GETTABUP/SETTABUP on
-- the _ENV upvalue with a constant name, in every nested function, so a typo
-- inside a step that only runs during an outage is found now, with its line.
-- Declarations are checked by loading the playbook, which runs no step.
local M = {}

local OP_GETTABUP, OP_SETTABUP = 11, 15

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
    for pc = 0, #f.code - 1 do
        local i = f.code[pc + 1]
        local op = i & 0x7f
        local a, b, c = (i >> 7) & 0xff, (i >> 16) & 0xff, (i >> 24) & 0xff
        if op == OP_GETTABUP and f.upvalue_names[b + 1] == "_ENV" then
            local k = f.constants[c + 1]
            found[#found + 1] = { name = k and k.value, line = lines[pc], write = false }
        elseif op == OP_SETTABUP and f.upvalue_names[a + 1] == "_ENV" then
            local k = f.constants[b + 1]
            found[#found + 1] = { name = k and k.value, line = lines[pc], write = true }
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
    for _, program in ipairs(playbook.missing_programs(pb)) do
        problems[#problems + 1] = string.format("%s: needs %s, which is not on PATH", path, program)
    end
    return problems
end

return M
