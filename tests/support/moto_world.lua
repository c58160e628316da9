-- Shared by the moto tests and the benchmark: a moto_server seeded with the
-- reference environment by boto3, and atlas pointed at it (credentials
-- "testing"). Usage: local moto = dofile("tests/support/moto_world.lua")(t)
return function(t)
    local json = require "atlas.json"
    local endpoint = t.moto()
    local seeded = t.spawn({ "python3", "tests/support/seed_moto.py", endpoint }, { timeout = 120 })
    assert(seeded.code == 0, "seeding moto failed: " .. seeded.stderr)
    -- The environment atlas.aws sees (t.aws_environment).
    local env = {
        AWS_ENDPOINT_URL = endpoint,
        AWS_ACCESS_KEY_ID = "testing",
        AWS_SECRET_ACCESS_KEY = "testing",
        AWS_EC2_METADATA_DISABLED = "true",
    }
    t.aws_environment(env)
    local summary = json.decode(seeded.stdout)
    summary.endpoint = endpoint
    summary.env = env -- the environment atlas sees; a test may add to it
    return summary
end
