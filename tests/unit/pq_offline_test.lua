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
    t.eq(table.pack(pq.conninfo_parse("host=h nope=1")), {
        n = 4,
        nil,
        'invalid connection option "nope"',
        "conninfo",
        {},
    })
end)

-- Lua's convention: misuse raises; the outside world's failure is
-- nil, message, code, fields, and nothing else.
t.case("connect: misuse raises, an unknown keyword returns nil, message, code", function()
    t.raises(function() pq.connect { host = 1 } end, "must be strings")
    t.raises(function() pq.connect "host=h" end, "table expected")
    local conn, message, code, fields = pq.connect { host = "127.0.0.1", nope = "x" }
    t.eq(conn, nil)
    t.eq(message, 'invalid connection option "nope"')
    t.eq(code, "connect")
    t.eq(fields, {})
end)

t.case("connect: a refused connection names the host in libpq's message", function()
    local port = assert(sys.free_port())
    local conn, message, code = pq.connect({ host = "127.0.0.1", port = tostring(port), user = "x" }, 5)
    t.eq(conn, nil)
    t.eq(code, "connect")
    t.match(message, '"127.0.0.1"')
    t.match(message, "refused")
    t.no_match(message, "\n$")
end)

t.case("connect: gives up at the timeout", function()
    local port = silent_port()
    local started = sys.monotime()
    local conn, message, code, fields =
        pq.connect({ host = "127.0.0.1", port = tostring(port), user = "x", sslmode = "disable" }, 0.3)
    local elapsed = sys.monotime() - started
    t.eq(conn, nil)
    t.eq(code, "timeout")
    t.eq(message, "could not connect within the 0.3 s connect_timeout")
    t.eq(fields, {})
    t.ok(elapsed >= 0.29 and elapsed < 2, "took " .. elapsed .. " s")
end)

t.case("atlas.sql makes the one error object of the native failure", function()
    local sql = require "atlas.sql"
    local port = silent_port()
    local err = t.raises(
        function()
            sql.connect { host = "127.0.0.1", port = port, dbname = "atlas", user = "x", connect_timeout = 0.3 }
        end
    )
    t.eq(getmetatable(err).__name, "atlas.error")
    t.eq({ err.kind, err.sqlstate, err.code, err.timeout, err.retryable, err.host, err.dbname }, {
        "sql",
        "08001",
        "08001",
        true,
        true,
        "127.0.0.1",
        "atlas",
    })
    t.eq(tostring(err), "sql atlas@127.0.0.1: 08001: could not connect within the 0.3 s connect_timeout")
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
