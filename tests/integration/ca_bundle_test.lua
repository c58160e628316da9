-- Behind a corporate TLS proxy: moto served through TLS with a certificate
-- from a private CA, on loopback. Without the CA bundle the call fails
-- certificate verification; with AWS_CA_BUNDLE, or a profile's ca_bundle,
-- it succeeds.
local t = require "atlas.test"

local function sh(command)
    local ok = os.execute(command .. " >/dev/null 2>&1")
    assert(ok, "failed: " .. command)
end

-- A private CA and a certificate for 127.0.0.1 it signed.
local function private_ca(dir)
    t.write_file(dir .. "/ext.cnf", "subjectAltName=IP:127.0.0.1\n")
    sh(string.format("cd %q && openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 "
        .. "-subj /CN=atlas-test-private-ca", dir))
    sh(string.format("cd %q && openssl req -newkey rsa:2048 -nodes -keyout srv.key -out srv.csr -subj /CN=127.0.0.1", dir))
    sh(string.format("cd %q && openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
        .. "-out srv.pem -days 2 -extfile ext.cnf", dir))
    return dir .. "/ca.pem"
end

local PLAYBOOK = [[
local atlas = require "atlas"
local aws = require "atlas.aws"
return atlas.playbook {
    name = "clusters", description = "lists the ECS clusters", params = {},
    steps = { { name = "list", run = function()
        local r = aws.call { service = "ecs", action = "ListClusters", region = "us-east-1", params = {} }
        atlas.log("clusters: %d", #r.clusterArns)
    end } },
}
]]

t.case("AWS_CA_BUNDLE and a profile's ca_bundle reach the transport", function()
    local dir = t.tmpdir()
    local ca = private_ca(dir)
    local moto = t.moto()
    local port = t.server { "python3", "tests/support/tls_proxy.py", "PORT", moto, dir .. "/srv.pem", dir .. "/srv.key" }
    t.write_file(dir .. "/pb.lua", PLAYBOOK)
    local home = dir .. "/home"
    os.execute("mkdir -p " .. home .. "/.aws")
    t.write_file(home .. "/.aws/config", "[profile proxied]\nca_bundle = " .. ca .. "\nregion = us-east-1\n")
    local base = {
        AWS_ENDPOINT_URL = "https://127.0.0.1:" .. port,
        AWS_ACCESS_KEY_ID = "testing",
        AWS_SECRET_ACCESS_KEY = "testing",
        AWS_EC2_METADATA_DISABLED = "true",
        AWS_CA_BUNDLE = false,
        AWS_PROFILE = false,
        HOME = home,
        ATLAS_STATE_DIR = dir .. "/state",
    }
    local function run(extra)
        local env = {}
        for k, v in pairs(base) do
            env[k] = v
        end
        for k, v in pairs(extra) do
            env[k] = v
        end
        return t.run({ dir .. "/pb.lua" }, { env = env, timeout = 60 })
    end
    local r = run {}
    t.eq(r.code, 1, r.stdout .. r.stderr)
    t.match(r.stdout .. r.stderr, "[Cc]ertificate")
    r = run { AWS_CA_BUNDLE = ca }
    t.eq(r.code, 0, r.stdout .. r.stderr)
    t.match(r.stdout, "clusters: %d+")
    r = run { AWS_PROFILE = "proxied" }
    t.eq(r.code, 0, r.stdout .. r.stderr)
end)
