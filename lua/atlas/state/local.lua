-- atlas.state.local: the run state in a directory on this machine.
-- Keys are relative paths; each value is one file, replaced atomically.
-- A version is the SHA-256 of the contents. Conditional writes hold a
-- flock on <root>/.store.lock for the compare and the rename, so two
-- processes on this machine cannot both win one.
local sys = require "atlas.sys"

local Store = {}
Store.__index = Store

local M = {}

-- local.new(root, {durable=true}) -> store. durable=false skips fsync, for
-- state nobody needs after a power cut (mock-world journals), where it would
-- dominate the run time.
function M.new(root, options)
    options = options or {}
    return setmetatable({ root = root, durable = options.durable ~= false, kind = "local" }, Store)
end

local function version_of(text) return require("atlas.sigv4").sha256_hex(text) end

function Store:where(key)
    if key then return self.root .. "/" .. key end
    return self.root
end

local function read_file(path)
    local f, err, errno = io.open(path, "rb")
    if not f then
        if errno == 2 then return nil, path .. ": no such file", "NotFound" end
        return nil, err, errno
    end
    local text, read_err = f:read("a")
    f:close()
    if not text then return nil, path .. ": " .. tostring(read_err), "ReadFailed" end
    return text
end

-- store:get(key) -> text, version | nil, message, code
function Store:get(key)
    local text, err, code = read_file(self:where(key))
    if not text then return nil, err, code end
    return text, version_of(text)
end

local function parent(path) return path:match("^(.*)/[^/]*$") end

-- Holds the store's write lock while fn runs; a holder keeps it for a
-- compare and a rename, so a short wait is enough.
local function with_write_lock(self, fn)
    local path = self.root .. "/.store.lock"
    local lock, err, code
    for _ = 1, 500 do
        lock, err, code = sys.lock(path, "pid " .. sys.getpid())
        if lock or code ~= "held" then break end
        sys.sleep(0.01)
    end
    if not lock then
        if code == "held" then return nil, path .. ": held for more than 5 s by " .. tostring(err), "LockTimeout" end
        return nil, err, code
    end
    local result = table.pack(fn())
    lock:release()
    return table.unpack(result, 1, result.n)
end

-- store:put(key, text, {if_absent=, if_version=}) -> version | nil, message, code
function Store:put(key, text, options)
    options = options or {}
    local path = self:where(key)
    local ok, err, code = sys.mkdir(parent(path), 448)
    if not ok then return nil, err, code end
    local function write()
        if options.if_absent or options.if_version then
            local current, _, read_code = read_file(path)
            if current == nil and read_code ~= "NotFound" then return nil, _, read_code end
            if options.if_absent and current ~= nil then
                return nil, path .. ": exists already", "PreconditionFailed"
            end
            if options.if_version and (current == nil or version_of(current) ~= options.if_version) then
                return nil, path .. ": changed since it was read", "PreconditionFailed"
            end
        end
        local written, write_err, write_code = sys.write_atomic(path, text, 384, self.durable)
        if not written then return nil, write_err, write_code end
        return version_of(text)
    end
    if options.if_absent or options.if_version then return with_write_lock(self, write) end
    return write()
end

-- store:list(prefix) -> {{key=, modified=}, ...} sorted by key | nil, message, code
-- An absent directory lists as empty.
function Store:list(prefix)
    prefix = prefix or ""
    local dir_part, name_prefix = prefix:match("^(.*/)([^/]*)$")
    dir_part, name_prefix = dir_part or "", name_prefix or prefix
    local dir = self.root .. "/" .. dir_part
    local names, err, code = sys.readdir(dir)
    if not names then
        if code == 2 then return {} end
        return nil, err, code
    end
    local out = {}
    for _, name in ipairs(names) do
        if name:sub(1, #name_prefix) == name_prefix and not name:match("%.tmp%.%d+$") and name:sub(1, 1) ~= "." then
            local st = sys.stat(dir .. name)
            if st and st.type == "file" then out[#out + 1] = { key = dir_part .. name, modified = st.mtime } end
        end
    end
    return out
end

-- store:delete(key) -> true | nil, message, code
function Store:delete(key)
    local path = self:where(key)
    local ok, err, errno = os.remove(path)
    if ok or errno == 2 then return true end
    return nil, err, errno
end

-- store:lock(name, {run_id=}) -> lock | nil, holder, "LockHeld" | nil, message, code
-- flock dies with the process, so a crashed run never leaves a stale lock.
function Store:lock(name, info)
    local ok, err, code = sys.mkdir(self.root, 448)
    if not ok then return nil, err, code end
    local note =
        string.format("pid %d on %s since %s", sys.getpid(), sys.hostname() or "?", os.date("!%Y-%m-%dT%H:%M:%SZ"))
    if info and info.run_id then note = note .. ", run " .. info.run_id end
    local lock, holder, lock_code = sys.lock(self.root .. "/" .. name .. ".lock", note)
    if lock then return lock end
    if lock_code == "held" then return nil, holder, "LockHeld" end
    return nil, holder, lock_code
end

-- store:check() -> true | nil, message, code: the directory exists or can be made
function Store:check() return sys.mkdir(self.root, 448) end

-- store:find_lock(run_or_name) -> {name=, holder=text, live=bool} | nil (none)
-- By lock name, else by the run id its holder wrote.
function Store:find_lock(what)
    local names = sys.readdir(self.root) or {}
    for _, file in ipairs(names) do
        local name = file:match("^(.+)%.lock$")
        if name and file:sub(1, 1) ~= "." then
            local path = self.root .. "/" .. file
            local f = io.open(path, "r")
            local note = f and f:read("a") or ""
            if f then f:close() end
            if name == what or note:find(", run " .. what, 1, true) then
                local probe = sys.lock(path, note)
                if probe then
                    probe:release()
                    return { name = name, holder = note, live = false }
                end
                return { name = name, holder = note, live = true }
            end
        end
    end
    return nil
end

-- store:unlock(found) -> true | nil, message, code. A local lock belongs to
-- a live process and ends with it: it cannot be taken from it.
function Store:unlock(found)
    if not found.live then return true end
    return nil,
        string.format(
            "the lock %s is held by a live process on this machine (%s); it is released when that process ends",
            found.name,
            found.holder
        ),
        "LiveHolder"
end

return M
