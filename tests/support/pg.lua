-- Throwaway PostgreSQL 15 clusters for the SQL tests, on free loopback
-- ports, stopped and removed by t.defer even when the test file fails.
--
--   local pg = dofile(root .. "tests/support/pg.lua")
--   local clusters = pg.start(t, { "eu", "us", "ap" })
--   clusters.eu.port, clusters.eu.conninfo, pg.psql(clusters.eu, "SELECT 1")
local sys = require "atlas.sys"

local pg = {}

-- The repository root, from this file's own path.
local here = debug.getinfo(1, "S").source:match("^@(.*)$") or "tests/support/pg.lua"
pg.root = here:match("^(.*)tests/support/pg%.lua$") or "./"
if pg.root == "" then pg.root = "./" end
pg.script = pg.root .. "tests/support/pgcluster.sh"
pg.schema = pg.root .. "tests/support/atlas_schema.sql"

local function shell_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
pg.shell_quote = shell_quote

local serial = 0

-- Clusters left behind by a test process that was killed (SIGKILL skips
-- t.defer): stopped and removed when their owner is gone.
local function reap_orphans()
    local pipe = io.popen("ls -d /tmp/atlas-pg-*-* 2>/dev/null")
    for dir in pipe:lines() do
        local pid = tonumber(dir:match("^/tmp/atlas%-pg%-(%d+)%-%d+$"))
        if pid and pid ~= sys.getpid() and not os.execute("kill -0 " .. pid .. " 2>/dev/null") then
            os.execute(pg.script .. " stop " .. shell_quote(dir) .. " >/dev/null 2>&1")
        end
    end
    pipe:close()
end

-- pg.start(t, names) -> {name = {name=, port=, conninfo=}, dir=}
function pg.start(t, names)
    reap_orphans()
    serial = serial + 1
    local dir = string.format("/tmp/atlas-pg-%d-%d", sys.getpid(), serial)
    -- Registered first: a start that fails half-way is cleaned up too.
    t.defer(function() os.execute(pg.script .. " stop " .. shell_quote(dir) .. " >/dev/null 2>&1") end)
    local clusters, specs, used = { dir = dir }, {}, {}
    for _, name in ipairs(names) do
        local port
        repeat
            port = assert(sys.free_port())
        until not used[port]
        used[port] = true
        clusters[name] = {
            name = name,
            port = port,
            conninfo = string.format("host=127.0.0.1 port=%d dbname=atlas user=atlas_admin", port),
        }
        specs[#specs + 1] = name .. ":" .. port
    end
    local log = os.tmpname()
    local ok = os.execute(
        pg.script .. " start " .. shell_quote(dir) .. " " .. table.concat(specs, " ") .. " >" .. log .. " 2>&1"
    )
    local f = io.open(log)
    local output = f and f:read("a") or ""
    if f then f:close() end
    os.remove(log)
    if not ok then error("could not start PostgreSQL clusters: " .. output, 2) end
    return clusters
end

-- pg.standby(clusters, name, source) -> {name=, port=, conninfo=}: a physical
-- standby of clusters[source] (pg_basebackup), streaming, stopped with the rest
function pg.standby(clusters, name, source)
    local port = assert(sys.free_port())
    local log = os.tmpname()
    local ok = os.execute(
        string.format(
            "%s standby %s %s:%d %d >%s 2>&1",
            pg.script,
            shell_quote(clusters.dir),
            name,
            port,
            clusters[source].port,
            log
        )
    )
    local f = io.open(log)
    local output = f and f:read("a") or ""
    if f then f:close() end
    os.remove(log)
    if not ok then error("could not start the standby: " .. output, 2) end
    clusters[name] = {
        name = name,
        port = port,
        conninfo = string.format("host=127.0.0.1 port=%d dbname=atlas user=atlas_admin", port),
    }
    return clusters[name]
end

-- pg.psql(cluster, sql) -> output of psql -At (trimmed); raises on error
function pg.psql(cluster, sql)
    local file = os.tmpname()
    local f = assert(io.open(file, "w"))
    f:write(sql)
    f:close()
    local pipe = io.popen(
        string.format(
            'psql -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p %d -U atlas_admin -d atlas -f %s 2>&1; echo "rc=$?"',
            cluster.port,
            file
        )
    )
    local out = pipe:read("a")
    pipe:close()
    os.remove(file)
    local body, rc = out:match("^(.-)\n?rc=(%d+)%s*$")
    if rc ~= "0" then error("psql failed: " .. tostring(body), 2) end
    return (body:gsub("%s+$", ""))
end

-- pg.create_schema(cluster): the five global tables and flyway_schema_history
function pg.create_schema(cluster)
    local f = assert(io.open(pg.schema))
    local text = f:read("a")
    f:close()
    pg.psql(cluster, text)
end

-- pg.wait_for(fn, seconds) -> the first truthy fn() or nil after seconds
function pg.wait_for(fn, seconds)
    local deadline = sys.monotime() + seconds
    repeat
        local v = fn()
        if v then return v end
        sys.sleep(0.05)
    until sys.monotime() > deadline
    return nil
end

return pg
