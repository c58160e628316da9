-- The bad-input matrix, as data: every kind of bad input a user or the world
-- can send, with the exit code and the message it must give. Run by
-- tests/unit/bad_input_test.lua; each row is one `atlas-run` process.
--
--   what     the input, in words
--   argv     the command line; "$DIR" is a fresh directory holding `files`
--   files    { [relative path] = text } written under $DIR first
--   env      extra environment (false unsets); ATLAS_STATE_DIR is $DIR/state
--   exit     the expected exit code
--   message  a Lua pattern the output (stderr, then stdout) must match
--
-- Whatever the row, the output never holds a traceback and the exit is never
-- 70 (an internal error).

local CALLS_AWS = [[
local atlas = require "atlas"
local aws = require "atlas.aws"
return atlas.playbook {
    name = "calls_aws", description = "one read-only AWS call", params = {},
    steps = { { name = "who am I", run = function()
        aws.call { service = "ecs", action = "ListClusters", region = "us-east-1", params = {} }
    end } },
}
]]

local function scenario(body)
    return "return { description = 'bad input', apply = function(w) " .. body .. " end }\n"
end

-- No credentials from the developer's machine: only what a row gives.
local NO_AWS_ENV = {
    AWS_ACCESS_KEY_ID = false,
    AWS_SECRET_ACCESS_KEY = false,
    AWS_SESSION_TOKEN = false,
    AWS_PROFILE = false,
    AWS_CONFIG_FILE = false,
    AWS_SHARED_CREDENTIALS_FILE = false,
    AWS_EC2_METADATA_DISABLED = "true",
    AWS_CONTAINER_CREDENTIALS_RELATIVE_URI = false,
    AWS_CONTAINER_CREDENTIALS_FULL_URI = false,
    AWS_WEB_IDENTITY_TOKEN_FILE = false,
}

local function with(base, extra)
    local out = {}
    for k, v in pairs(base) do
        out[k] = v
    end
    for k, v in pairs(extra or {}) do
        out[k] = v
    end
    return out
end

local KEYS = { AWS_ACCESS_KEY_ID = "AKIDBADINPUT", AWS_SECRET_ACCESS_KEY = "badinput-secret-key" }

return {
    -- Playbooks -------------------------------------------------------------
    { what = "a playbook that does not exist", argv = { "no_such_playbook" }, exit = 2, message = "no playbook no_such_playbook" },
    {
        what = "a playbook with a syntax error",
        argv = { "--mock", "tests/fixtures/playbooks/syntax_error.lua" },
        exit = 2,
        message = "syntax_error%.lua:%d+:",
    },
    {
        what = "a file that is not a playbook",
        files = { ["pb.lua"] = "return 42\n" },
        argv = { "--mock", "$DIR/pb.lua" },
        exit = 2,
        message = "does not return atlas%.playbook",
    },
    {
        what = "a playbook that raises while loading",
        files = { ["pb.lua"] = "error('kaboom at load')\n" },
        argv = { "--mock", "$DIR/pb.lua" },
        exit = 2,
        message = "kaboom at load",
    },
    {
        what = "a playbook reading an undefined global at load",
        files = { ["pb.lua"] = "local x = undefined_thing.field\n" },
        argv = { "--mock", "$DIR/pb.lua" },
        exit = 2,
        message = "undefined_thing",
    },
    {
        what = "a mutating step with neither confirm nor unattended",
        files = {
            ["pb.lua"] = [[
local atlas = require "atlas"
return atlas.playbook { name = "pb", description = "d", params = {},
    steps = { { name = "change", mutates = true, run = function() end } } }
]],
        },
        argv = { "--mock", "$DIR/pb.lua" },
        exit = 2,
        message = 'step 1 %(change%): changes the world %(mutates = true%) but has neither a confirm nor an unattended reason',
    },
    {
        what = "check on a playbook with an undefined global in a step",
        files = {
            ["pb.lua"] = [[
local atlas = require "atlas"
return atlas.playbook { name = "pb", description = "d", params = {},
    steps = { { name = "s", run = function() return no_such_helper_function() end } } }
]],
        },
        argv = { "check", "$DIR/pb.lua" },
        exit = 2,
        message = "undefined global 'no_such_helper_function'",
    },

    -- Parameters ------------------------------------------------------------
    {
        what = "an unknown parameter",
        argv = { "--mock", "dr_region_outage", "colour=red" },
        exit = 2,
        message = 'unknown parameter "colour"',
    },
    {
        what = "a hexadecimal integer",
        argv = { "--mock", "dr_region_outage", "min_backup_tasks=0x8" },
        exit = 2,
        message = '"0x8" is not an integer',
    },
    {
        what = "an integer with a space",
        argv = { "--mock", "dr_region_outage", "min_backup_tasks= 5" },
        exit = 2,
        message = 'is not an integer',
    },
    {
        what = "a region that is not one of the three",
        argv = { "--mock", "dr_region_outage", "failed_region=mars-west-1" },
        exit = 2,
        message = "is not one of eu%-west%-1",
    },
    {
        what = "an argument without name=value",
        argv = { "--mock", "dr_region_outage", "eu-west-1" },
        exit = 2,
        message = "expected name=value",
    },
    {
        what = "a parameter given twice",
        argv = { "--mock", "dr_region_outage", "failed_region=eu-west-1", "failed_region=us-east-1" },
        exit = 2,
        message = "given twice",
    },

    -- Options ---------------------------------------------------------------
    { what = "an unknown option", argv = { "--frobnicate", "dr_region_outage" }, exit = 2, message = "%-%-frobnicate" },
    {
        what = "an unknown log format",
        argv = { "--log-format", "xml", "--mock", "dr_region_outage" },
        exit = 2,
        message = "xml",
    },

    -- Scenarios -------------------------------------------------------------
    {
        what = "an unknown scenario name",
        argv = { "--scenario", "no-such-scenario", "diag_health" },
        exit = 2,
        message = 'unknown scenario "no%-such%-scenario"',
    },
    {
        what = "a scenario file with a syntax error",
        files = { ["s.lua"] = "return { description = 'x', apply = function(w) end\n" },
        argv = { "--scenario", "$DIR/s.lua", "diag_health" },
        exit = 2,
        message = "s%.lua",
    },

    {
        what = "a scenario file whose apply is not a function",
        files = { ["s.lua"] = "return { description = 'x', apply = 5 }\n" },
        argv = { "--scenario", "$DIR/s.lua", "diag_health" },
        exit = 2,
        message = "apply",
    },
    {
        what = "a scenario file with an unknown field",
        files = { ["s.lua"] = "return { description = 'x', aply = function(w) end }\n" },
        argv = { "--scenario", "$DIR/s.lua", "diag_health" },
        exit = 2,
        message = "aply",
    },
    {
        what = "a scenario whose apply raises",
        files = { ["s.lua"] = scenario("error('scenario exploded')") },
        argv = { "--scenario", "$DIR/s.lua", "diag_health" },
        exit = 2,
        message = "scenario exploded",
    },
    {
        what = "a scenario with a misspelt latency",
        files = { ["s.lua"] = "return { description = 'x', apply = function(w) end, latencies = { route53_in_sync = 90 } }\n" },
        argv = { "--scenario", "$DIR/s.lua", "diag_health" },
        exit = 2,
        message = 'unknown latency "route53_in_sync"',
    },
    {
        what = "a scenario with a negative latency",
        files = { ["s.lua"] = "return { description = 'x', apply = function(w) end, latencies = { ecs_task_start = -5 } }\n" },
        argv = { "--scenario", "$DIR/s.lua", "--predict", "dr_region_outage" },
        exit = 2,
        message = "ecs_task_start must be a number of seconds, 0 or more",
    },
    {
        what = "--predict with a report to write",
        argv = { "--scenario", "eu-west-1-outage", "--predict", "--report", "$DIR/r.md", "dr_region_outage" },
        exit = 2,
        message = "%-%-predict runs nothing outside this process: drop %-%-report",
    },
    {
        what = "--predict of a playbook without a recovery point",
        argv = { "--mock", "--predict", "diag_health" },
        exit = 2,
        message = "declares no recovery point",
    },
    -- ~/.aws files and credentials -------------------------------------------
    {
        what = "a profile that is not in ~/.aws/config",
        files = { ["home/.aws/config"] = "[default]\nregion = us-east-1\n", ["pb.lua"] = CALLS_AWS },
        env = with(NO_AWS_ENV, { HOME = "$DIR/home", AWS_PROFILE = "nosuchprofile", AWS_ENDPOINT_URL = "http://127.0.0.1:9" }),
        argv = { "$DIR/pb.lua" },
        exit = 1,
        message = "nosuchprofile",
    },
    {
        what = "a config file with a broken section header",
        files = { ["home/.aws/config"] = "[profile broken\naws_access_key_id = x\n", ["pb.lua"] = CALLS_AWS },
        env = with(NO_AWS_ENV, { HOME = "$DIR/home", AWS_PROFILE = "broken", AWS_ENDPOINT_URL = "http://127.0.0.1:9" }),
        argv = { "$DIR/pb.lua" },
        exit = 1,
        message = "broken",
    },
    {
        what = "a credential_process that fails",
        files = {
            ["home/.aws/config"] = "[profile p]\ncredential_process = /bin/false\n",
            ["pb.lua"] = CALLS_AWS,
        },
        env = with(NO_AWS_ENV, { HOME = "$DIR/home", AWS_PROFILE = "p", AWS_ENDPOINT_URL = "http://127.0.0.1:9" }),
        argv = { "$DIR/pb.lua" },
        exit = 1,
        message = "credential_process",
    },
    {
        what = "a credential_process that prints no JSON",
        files = {
            ["home/.aws/config"] = "[profile p]\ncredential_process = /bin/echo not json\n",
            ["pb.lua"] = CALLS_AWS,
        },
        env = with(NO_AWS_ENV, { HOME = "$DIR/home", AWS_PROFILE = "p", AWS_ENDPOINT_URL = "http://127.0.0.1:9" }),
        argv = { "$DIR/pb.lua" },
        exit = 1,
        message = "credential_process",
    },

    {
        what = "a credential_process that never finishes",
        files = {
            ["home/.aws/config"] = "[profile p]\ncredential_process = sleep 600\n",
            ["pb.lua"] = CALLS_AWS,
        },
        env = with(NO_AWS_ENV, { HOME = "$DIR/home", AWS_PROFILE = "p", AWS_ENDPOINT_URL = "http://127.0.0.1:9" }),
        argv = { "-e", "require('atlas.aws.credentials').PROCESS_TIMEOUT = 0.5; "
            .. "os.exit(require('atlas.run.cli').main { '$DIR/pb.lua' })" },
        exit = 1,
        message = "credential_process of profile p: .*did not finish within 0%.5 s",
    },

    -- The network and the endpoint ---------------------------------------------
    {
        what = "an AWS endpoint nobody listens on",
        files = { ["pb.lua"] = CALLS_AWS },
        env = with(NO_AWS_ENV, with(KEYS, { AWS_ENDPOINT_URL = "http://127.0.0.1:9" })),
        argv = { "$DIR/pb.lua" },
        exit = 1,
        message = "ecs ListClusters %(us%-east%-1%).*[Cc]onnect",
    },

    {
        what = "a malformed endpoint URL",
        files = { ["pb.lua"] = CALLS_AWS },
        env = with(NO_AWS_ENV, with(KEYS, { AWS_ENDPOINT_URL = "http://[::1" })),
        argv = { "$DIR/pb.lua" },
        exit = 2,
        message = "AWS_ENDPOINT_URL=http://%[::1 is not a valid endpoint URL",
    },
    {
        what = "a service endpoint URL with no host",
        files = { ["pb.lua"] = CALLS_AWS },
        env = with(NO_AWS_ENV, with(KEYS, { AWS_ENDPOINT_URL_ECS = "http:///path" })),
        argv = { "$DIR/pb.lua" },
        exit = 2,
        message = "AWS_ENDPOINT_URL_ECS=http:///path is not a valid endpoint URL",
    },

    -- AWS replies (the mock world answers as AWS would) --------------------------
    {
        what = "an AWS error reply to a read call",
        files = {
            ["s.lua"] = scenario(
                "w:inject { service = 'ecs', action = 'DescribeServices', code = 'AccessDeniedException', status = 400 }"
            ),
        },
        argv = { "--scenario", "$DIR/s.lua", "verify_deployment" },
        exit = 1,
        message = "ecs DescribeServices %(.-%): AccessDeniedException",
    },
    {
        what = "a change that Route53 acknowledges without a change id",
        files = {
            ["s.lua"] = scenario(
                "w:inject { service = 'route53', action = 'ChangeResourceRecordSets', reply = {} }; "
                    .. "require('atlas.mock.scenarios.eu-west-1-outage').apply(w)"
            ),
        },
        argv = { "--yes", "--scenario", "$DIR/s.lua", "dr_region_outage" },
        exit = 1,
        message = "ChangeResourceRecordSets",
    },
    {
        what = "a connection reset on a mutating call",
        files = {
            ["s.lua"] = scenario(
                "w:inject { service = 'ecs', action = 'UpdateService', network = 'reset' }; "
                    .. "require('atlas.mock.scenarios.eu-west-1-outage').apply(w)"
            ),
        },
        argv = { "--yes", "--scenario", "$DIR/s.lua", "dr_region_outage" },
        exit = 1,
        message = "ecs UpdateService %(us%-east%-1%)",
    },

    -- SQL errors --------------------------------------------------------------
    {
        what = "a database that takes no connection",
        argv = { "--scenario", "eu-west-1-db-failure", "diag_connection_pool", "region=eu-west-1" },
        exit = 1,
        message = "sql .*eu%-west%-1",
    },
    {
        what = "a malformed conninfo",
        argv = { "--mock", "diag_replication_lag", "primary=host='unterminated" },
        exit = 2,
        message = "primary",
    },
}
