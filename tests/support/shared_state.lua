-- A team's shared state on moto: a bucket and a lock table (hash key
-- LockID, as Terraform's), and the environment an atlas-run process needs
-- to use them. Usage:
--   local shared = dofile("tests/support/shared_state.lua")(t, {moto=, endpoint=, prefix=})
-- moto is a tests/support/moto_world.lua summary. Without it, atlas in this
-- process is pointed at endpoint (a moto_server the file started; cases
-- keep apart by prefix), or at a fresh moto_server.
local created = {}

return function(t, options)
    options = options or {}
    local moto = options.moto
    local env
    if moto then
        env = moto.env
    else
        env = {
            AWS_ENDPOINT_URL = options.endpoint or t.moto(),
            AWS_ACCESS_KEY_ID = "testing",
            AWS_SECRET_ACCESS_KEY = "testing",
            AWS_EC2_METADATA_DISABLED = "true",
        }
        t.aws_environment(env)
    end
    local region = "us-east-1"
    if not created[env.AWS_ENDPOINT_URL] then
        require("atlas.s3").create_bucket { region = region, Bucket = "atlas-state" }
        require("atlas.dynamodb").create_table {
            region = region,
            TableName = "atlas-locks",
            KeySchema = { { AttributeName = "LockID", KeyType = "HASH" } },
            AttributeDefinitions = { { AttributeName = "LockID", AttributeType = "S" } },
            BillingMode = "PAY_PER_REQUEST",
        }
        created[env.AWS_ENDPOINT_URL] = true
    end
    local shared = {
        endpoint = env.AWS_ENDPOINT_URL,
        url = "s3://atlas-state/" .. (options.prefix or "team"),
        lock_table = "atlas-locks",
        region = region,
    }
    -- machine(dir) -> the environment of an atlas-run on a machine whose
    -- own state directory is dir, sharing the team's store
    function shared.machine(dir, extra)
        local e = {}
        for k, v in pairs(env) do
            e[k] = v
        end
        e.AWS_PROFILE = false
        e.AWS_REGION = region
        e.ATLAS_STATE_DIR = dir
        e.ATLAS_STATE = shared.url
        e.ATLAS_LOCK_TABLE = shared.lock_table
        for k, v in pairs(extra or {}) do
            e[k] = v
        end
        return e
    end
    -- store() -> the shared store, opened in this process
    function shared.store(options)
        options = options or {}
        options.lock_table = options.lock_table or shared.lock_table
        options.region = region
        return require("atlas.state.s3").new(options.url or shared.url, options)
    end
    return shared
end
