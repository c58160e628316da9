-- Every form of a secret is masked: the value, its %q, JSON and conninfo
-- forms, each item of a secret list, a short secret as a word, a secret in
-- an AWS reply however it was asked for, and the environment's AWS secret.
-- Each canary appears nowhere else.
local t = require "atlas.test"
local log = require "atlas.run.log"
local json = require "atlas.json"

t.case("each form of a secret is masked: as given, %q, JSON and conninfo-escaped", function()
    local canary = "Zq7'canary\"w\\x\n9"
    log.secret(canary)
    for _, form in ipairs {
        canary,
        string.format("%q", canary),
        json.encode { password_hint = canary },
        "password='" .. canary:gsub("[\\']", "\\%0") .. "'",
    } do
        local out = log.redact("before " .. form .. " after")
        t.no_match(out, "canary", form)
        t.match(out, "%[REDACTED%]")
    end
end)

t.case("a secret that is not UTF-8 is masked, and --log-format json writes such bytes as U+FFFD", function()
    -- Found by the fuzzer: its JSON form raised, and parse_conninfo with it.
    local canary = "pw\255\254canary"
    log.secret(canary)
    t.no_match(log.redact("x " .. canary .. " y"), "canary")
    local parsed = require("atlas.sql").parse_conninfo("host=db.example password=" .. canary)
    t.ok(type(parsed) == "table", "the conninfo parses")
    local r = t.run({ "--log-format", "json", "-e", 'require("atlas.run.log").info("bytes %s here", "\255\254ok")' })
    t.eq(r.code, 0, r.stderr)
    t.eq(json.decode(r.stdout).message, "bytes \u{FFFD}\u{FFFD}ok here")
end)

t.case("a short secret is masked as a word, not inside other words", function()
    log.secret("k9")
    t.eq(log.redact("password=k9 host=db"), "password=[REDACTED] host=db")
    t.eq(log.redact("k9"), "[REDACTED]")
    t.eq(log.redact("tk9x and k9x"), "tk9x and k9x")
end)

t.case("a secret list parameter masks each item and the text it came from", function()
    local params = require "atlas.run.params"
    local specs = params.check_specs("p", { tokens = { type = "list", secret = true } })
    local values = params.parse(specs, { tokens = "Yv3listcanaryA,Yv3listcanaryB" })
    t.eq(#values.tokens, 2)
    t.no_match(log.redact("got Yv3listcanaryB"), "listcanary")
    t.no_match(log.redact("got Yv3listcanaryA,Yv3listcanaryB"), "listcanary")
end)

t.case("list and --help mask a secret parameter's default", function()
    local dir = t.tmpdir()
    t.write_file(
        dir .. "/pb.lua",
        [[
local atlas = require "atlas"
return atlas.playbook {
    name = "pb", description = "a secret default",
    params = { api_key = { type = "string", secret = true, default = "Wd5defaultcanary" } },
    steps = { { name = "nothing", run = function() end } },
}
]]
    )
    for _, argv in ipairs { { "list", dir }, { "--help", dir .. "/pb.lua" } } do
        local r = t.run(argv)
        t.eq(r.code, 0, r.stderr)
        t.no_match(r.stdout .. r.stderr, "defaultcanary", argv[1])
        t.match(r.stdout, "api_key=.*%[default %[REDACTED%]%]")
    end
end)

t.case("a secret in an AWS reply stays masked, even from a raw aws.call", function()
    local world = t.world("healthy")
    local aws = require "atlas.aws"
    local env = require "atlas.env"
    local reply = aws.call {
        service = "secretsmanager",
        action = "GetSecretValue",
        region = "eu-west-1",
        params = { SecretId = env.PASSWORD_SECRET },
    }
    t.ok(type(reply.SecretString) == "string" and #reply.SecretString > 0)
    t.eq(log.redact("printed: " .. reply.SecretString), "printed: [REDACTED]")
    t.ok(world)
end)

t.case("secret-named fields of a reply are registered at any depth and case, every time the name comes back", function()
    -- field names are remembered per key (log.secret_fields): a second reply
    -- with the same names must still register its own values
    for _, value in ipairs { "Zq7replycanaryOne", "Zq7replycanaryTwo" } do
        log.secret_fields {
            DBInstances = { { MasterUserPassword = value, Endpoint = { Address = "db.example" } } },
            Credentials = { sessiontoken = value .. "-tok" },
        }
        t.eq(log.redact("got " .. value), "got [REDACTED]")
        t.eq(log.redact("got " .. value .. "-tok"), "got [REDACTED]")
    end
    log.secret_fields { Passwords = "Zq7replycanaryPlain", Other = { "Zq7replycanaryList" } }
    t.eq(log.redact("Zq7replycanaryPlain Zq7replycanaryList"), "Zq7replycanaryPlain Zq7replycanaryList")
end)

t.case("AWS_SECRET_ACCESS_KEY from the environment is masked before any AWS call", function()
    local dir = t.tmpdir()
    t.write_file(
        dir .. "/pb.lua",
        [[
local atlas = require "atlas"
return atlas.playbook {
    name = "pb", description = "prints the environment",
    params = {},
    steps = { { name = "print", run = function()
        atlas.log("key %s token %s", os.getenv("AWS_SECRET_ACCESS_KEY"),
            os.getenv("AWS_SESSION_TOKEN"))
    end } },
}
]]
    )
    local r = t.run(
        { dir .. "/pb.lua" },
        { env = { ATLAS_STATE_DIR = dir, AWS_SECRET_ACCESS_KEY = "Qm2envcanarykey", AWS_SESSION_TOKEN = "Qm2envcanarytok" } }
    )
    t.eq(r.code, 0, r.stderr)
    t.no_match(r.stdout .. r.stderr, "envcanary")
    t.match(r.stdout, "key %[REDACTED%] token %[REDACTED%]")
end)

t.case("a password written in a conninfo or a URI is masked by its place, before anything parsed it", function()
    for _, case in ipairs {
        { "primary=host=db password=Vx8inlinecanary dbname=x", "password=[REDACTED] dbname=x" },
        { "host=db password='Vx8 inline\\'canary' dbname=x", "password=[REDACTED] dbname=x" },
        { "PASSWORD = Vx8inlinecanary", "PASSWORD = [REDACTED]" },
        { "postgresql://atlas:Vx8inlinecanary@db.example:5432/atlas", "postgresql://atlas:[REDACTED]@db.example" },
        { "master_password=Vx8inlinecanary", "master_password=[REDACTED]" },
    } do
        local out = log.redact(case[1])
        t.no_match(out, "canary", case[1])
        t.no_match(out, "Vx8", case[1])
        t.match(out, case[2]:gsub("%p", "%%%0"), case[1])
    end
    t.eq(log.redact("password_secret=atlas-db-master-password"), "password_secret=atlas-db-master-password")
end)

t.case("a conninfo password given as a parameter shows nowhere: events, journal, report, errors", function()
    local dir = t.tmpdir()
    local canary = "Kp4conninfocanary'x"
    local quoted = canary:gsub("[\\']", "\\%0")
    local r = t.run({
        "--mock", "--log-format", "json", "--report", dir .. "/report.json", "diag_replication_lag",
        "primary=host=no-such-host.invalid dbname=atlas user=atlas password='" .. quoted .. "'",
    }, { env = { ATLAS_STATE_DIR = dir } })
    t.ok(r.code ~= 0 and r.code ~= 70, r.stderr)
    local journal = ""
    for _, name in ipairs(require("atlas.sys").readdir(dir .. "/mock/runs") or {}) do
        journal = journal .. t.read_file(dir .. "/mock/runs/" .. name)
    end
    t.ok(#journal > 0, "a journal was written")
    local everything = r.stdout .. r.stderr .. (t.read_file(dir .. "/report.json") or "") .. journal
    t.no_match(everything, "conninfocanary")
end)

t.case("a malformed conninfo's error does not echo its password", function()
    t.world("healthy")
    local sql = require "atlas.sql"
    local err = t.raises(function() sql.parse_conninfo("postgresql://u:Zt6uricanary%zz@h/db") end)
    t.no_match(require("atlas.errors").message(err), "uricanary")
    err = t.raises(function() sql.parse_conninfo("host=h password=Zt6kvcanary bogus_keyword=1") end)
    t.no_match(require("atlas.errors").message(err), "kvcanary")
end)

t.case("TLS is required for every address that is not loopback, however it is given", function()
    local sys = require "atlas.sys"
    local sql = require "atlas.sql"
    local world = t.world("healthy")
    local saved = {}
    for _, k in ipairs { "PGHOST", "PGHOSTADDR", "PGSSLMODE" } do
        saved[k] = os.getenv(k)
    end
    t.defer(function()
        for k, v in pairs(saved) do
            sys.setenv(k, v)
        end
        for _, k in ipairs { "PGHOST", "PGHOSTADDR", "PGSSLMODE" } do
            if saved[k] == nil then sys.setenv(k, nil) end
        end
    end)
    local function sslmode_of(spec)
        pcall(sql.connect, spec)
        local last
        for _, c in ipairs(world.calls) do
            if c.module == "sql" and c.op == "connect" then last = c end
        end
        return last and last.sslmode
    end
    t.eq(sslmode_of "hostaddr=10.1.2.3 dbname=atlas", "require")
    t.eq(sslmode_of "postgresql://atlas@10.1.2.3/atlas", "require")
    t.eq(sslmode_of "host=127.0.0.1 dbname=atlas", nil)
    t.eq(sslmode_of "host=127.0.0.1 hostaddr=10.1.2.3 dbname=atlas", "require")
    sys.setenv("PGHOST", "db.example.com")
    t.eq(sslmode_of "dbname=atlas", "require")
    sys.setenv("PGHOST", nil)
    sys.setenv("PGHOSTADDR", "10.9.9.9")
    t.eq(sslmode_of "dbname=atlas", "require")
    sys.setenv("PGHOSTADDR", nil)
    sys.setenv("PGSSLMODE", "disable")
    t.eq(sslmode_of "host=db.example.com dbname=atlas", "require")
    sys.setenv("PGSSLMODE", "verify-full")
    t.eq(sslmode_of "host=db.example.com dbname=atlas", nil, "a stronger mode from the environment is kept")
    t.eq(sslmode_of "host=db.example.com dbname=atlas sslmode=disable", "disable", "an explicit choice is the caller's")
end)
