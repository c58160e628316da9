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
