-- atlas.pq without a PostgreSQL server: offline quoting, conninfo parsing,
-- and the asynchronous connect (refused, timeout, Ctrl-C, bad options)
-- against a socket that accepts and never answers.
local t = require "atlas.test"
local pq = require "atlas.pq"
local sys = require "atlas.sys"

-- A port that accepts TCP (the kernel completes the handshake) and never
-- answers, so libpq waits for the server's first reply.
local function silent_port()
    return t.server {
        "python3",
        "-c",
        [[
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(64)
held = []
while True:
    held.append(s.accept()[0])
]],
        "PORT",
    }
end

t.case("quote_ident and quote_literal need no connection", function()
    t.eq(pq.quote_ident('a"b'), '"a""b"')
    t.eq(pq.quote_literal("it's"), "'it''s'")
    t.eq(pq.quote_literal([[a\b]]), [[ E'a\\b']])
end)

t.case("conninfo_parse returns only what the string sets", function()
    t.eq(pq.conninfo_parse("host=h port=5 password='p w'"), { host = "h", port = "5", password = "p w" })
    t.eq(
        pq.conninfo_parse("postgresql://u@h:7/db?sslmode=require"),
        { user = "u", host = "h", port = "7", dbname = "db", sslmode = "require" }
    )
    local parsed, err = pq.conninfo_parse("host=h nope=1")
    t.eq(parsed, nil)
    t.eq(err, 'invalid connection option "nope"')
end)

t.case("connect: misuse raises, an unknown keyword returns nil, err", function()
    t.raises(function() pq.connect { host = 1 } end, "must be strings")
    local conn, err = pq.connect { host = "127.0.0.1", nope = "x" }
    t.eq(conn, nil)
    t.eq(err.sqlstate, "08001")
    t.match(err.message, 'invalid connection option "nope"')
end)

t.case("connect: a refused connection names the host", function()
    local port = assert(sys.free_port())
    local conn, err = pq.connect({ host = "127.0.0.1", port = tostring(port), user = "x" }, 5)
    t.eq(conn, nil)
    t.eq(err.sqlstate, "08001")
    t.eq(err.host, "127.0.0.1")
    t.match(err.message, "refused")
end)

t.case("connect: gives up at the timeout", function()
    local port = silent_port()
    local started = sys.monotime()
    local conn, err = pq.connect({ host = "127.0.0.1", port = tostring(port), user = "x", sslmode = "disable" }, 0.3)
    local elapsed = sys.monotime() - started
    t.eq(conn, nil)
    t.eq(err.timeout, true)
    t.eq(err.sqlstate, "08001")
    t.match(err.message, "connect_timeout")
    t.ok(elapsed >= 0.29 and elapsed < 2, "took " .. elapsed .. " s")
end)

t.case("connect: Ctrl-C abandons a connect in progress", function()
    local port = silent_port()
    local base = os.tmpname()
    local pid = assert(sys.spawn({
        t.binary(),
        "-e",
        string.format(
            [[require("atlas.sql").connect{host="127.0.0.1", port=%d, user="x", sslmode="disable", connect_timeout=60}]],
            port
        ),
    }, { stdout = base .. ".out", stderr = base .. ".err", stdin = "/dev/null" }))
    t.defer(function()
        sys.kill(pid, "KILL")
        sys.wait(pid, true)
        for _, suffix in ipairs { "", ".out", ".err" } do
            os.remove(base .. suffix)
        end
    end)
    sys.sleep(0.5)
    local started = sys.monotime()
    sys.kill(pid, "INT")
    local exited, code
    repeat
        exited, code = sys.wait(pid, true)
        sys.sleep(0.01)
    until exited or sys.monotime() - started > 5
    t.ok(exited, "exited after Ctrl-C")
    t.ok(sys.monotime() - started < 1, "promptly")
    t.eq(code, 3)
end)
