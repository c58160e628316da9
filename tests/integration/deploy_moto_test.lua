-- initial_deploy and rollback_infra with a stand-in terraform on PATH that
-- records its arguments (tests/support/terraform-standin); initial_deploy
-- verifies against the reference environment boto3 built in moto.
local t = require "atlas.test"

-- Absolute: the test changes PATH for atlas-run, and the cwd is the source tree.
local STANDIN = require("atlas.sys").realpath("tests/support/terraform-standin")

local function records(path)
    local out = {}
    for line in (t.read_file(path) or ""):gmatch("[^\n]+") do
        out[#out + 1] = line
    end
    return out
end

t.case("initial_deploy: init, validate, plan, apply through the stand-in, then verified against moto", function()
    local endpoint = t.moto()
    local seeded = t.spawn({ "python3", "tests/support/seed_moto.py", endpoint }, { timeout = 120 })
    t.eq(seeded.code, 0, seeded.stderr)
    local port = t.server { "python3", "tests/support/http_test_server.py", "PORT" }
    local base = "http://127.0.0.1:" .. port
    local dir = t.tmpdir()
    local tf = dir .. "/infra"
    os.execute("mkdir -p " .. tf)
    local record = dir .. "/terraform.log"
    local env = {
        AWS_ENDPOINT_URL = endpoint,
        AWS_ACCESS_KEY_ID = "testing",
        AWS_SECRET_ACCESS_KEY = "testing",
        AWS_EC2_METADATA_DISABLED = "true",
        AWS_PROFILE = false,
        ATLAS_STATE_DIR = dir,
        ATLAS_TF_RECORD = record,
        PATH = STANDIN .. ":" .. os.getenv("PATH"),
    }
    local args = {
        "terraform_dir=" .. tf,
        "health_url=" .. base .. "/status?code=200&region={region}",
        "api_url=" .. base .. "/status?code=200&name=api",
        "cdn_url=" .. base .. "/status?code=200&name=cdn",
    }
    local r = t.run({ "--dry-run", "playbooks/initial_deploy.lua", table.unpack(args) }, { env = env })
    t.eq(r.code, 0, r.stdout .. r.stderr)
    t.eq(#records(record), 3, "the dry run stops after the plan")
    t.match(r.stdout, "Plan: 0 to add, 1 to change, 0 to destroy%.")

    os.remove(record)
    r = t.run({ "--yes", "playbooks/initial_deploy.lua", table.unpack(args) }, { env = env })
    t.eq(r.code, 0, r.stdout .. r.stderr)
    local calls = records(record)
    t.eq(#calls, 4, table.concat(calls, "\n"))
    t.match(calls[1], "^%-chdir=" .. tf:gsub("%p", "%%%0") .. "\tinit\t%-input=false")
    t.match(calls[2], "\tvalidate\t")
    t.match(calls[3], "\tplan\t.*%-out=atlas.tfplan")
    t.match(calls[4], "\tapply\t%-input=false\t%-no%-color\tatlas.tfplan\t$")
    t.match(r.stdout, "us%-east%-1: atlas%-crm%-production%-service%-us%-east%-1 runs 2/2")
    t.match(r.stdout, "point the registrar of atlas%-crm.com at these name servers:")
    t.match(r.stdout, "\n%s+ns%-[%w%.%-]+\n")

    -- The CDN answers 522: the deployment is not verified.
    os.remove(record)
    args[4] = "cdn_url=" .. base .. "/status?code=522&name=cdn"
    r = t.run({ "--yes", "playbooks/initial_deploy.lua", table.unpack(args) }, { env = env })
    t.eq(r.code, 1, r.stdout .. r.stderr)
    t.match(r.stderr, "1 endpoint%(s%) not healthy: CDN .* %-> 522")

    -- No terraform on PATH: said at start, nothing runs.
    os.remove(record)
    env.PATH = "/usr/bin:/bin"
    r = t.run({ "--yes", "playbooks/initial_deploy.lua", table.unpack(args) }, { env = env })
    t.eq(r.code, 2, r.stdout .. r.stderr)
    t.match(r.stderr, "initial_deploy needs terraform, which is not on PATH")
    t.eq(records(record), {})
end)

-- A git repository with infra/main.tf at v1 and at v2 (HEAD), and an
-- uncommitted edit on top: the operator's own tree, which must stay as it is.
local function operator_repo(dir)
    local repo = dir .. "/repo"
    local script = table.concat({
        "set -e",
        "mkdir -p " .. repo .. "/infra && cd " .. repo,
        "git init -q -b main .",
        "git config user.email sre@atlas-crm.com && git config user.name SRE",
        "echo 'resource \"x\" \"v1\" {}' > infra/main.tf && git add . && git commit -qm v1 && git tag v1",
        "echo 'resource \"x\" \"v2\" {}' > infra/main.tf && git commit -qam v2",
        "echo '# work in progress' >> infra/main.tf",
    }, "\n")
    local r = t.spawn { "sh", "-c", script }
    t.eq(r.code, 0, r.stderr)
    return repo
end

local function git_out(repo, ...)
    local r = t.spawn { "git", "-C", repo, ... }
    t.eq(r.code, 0, r.stderr)
    return r.stdout
end

t.case("rollback_infra: state list, import, and a rollback planned and applied in a temporary checkout of the ref", function()
    local dir = t.tmpdir()
    local repo = operator_repo(dir)
    local head = git_out(repo, "rev-parse", "HEAD")
    local before = t.read_file(repo .. "/infra/main.tf")
    local v1_sha = t.spawn({ "sh", "-c", "git -C " .. repo .. " show v1:infra/main.tf | sha256sum | cut -c1-12" }).stdout:gsub("%s+$", "")
    local record = dir .. "/terraform.log"
    local env = { ATLAS_STATE_DIR = dir, ATLAS_TF_RECORD = record, PATH = STANDIN .. ":" .. os.getenv("PATH") }
    local tf = repo .. "/infra"

    local r = t.run({
        "--yes",
        "playbooks/rollback_infra.lua",
        "terraform_dir=" .. tf,
        "ref=v1",
        "import_address=aws_route53_health_check.eu",
        "import_id=4c0b1f19",
    }, { env = env })
    t.eq(r.code, 0, r.stdout .. r.stderr)
    local calls = records(record)
    t.eq(#calls, 5, table.concat(calls, "\n"))
    t.eq(calls[1], "-chdir=" .. tf .. "\tstate\tlist\t")
    t.eq(calls[2], "-chdir=" .. tf .. "\timport\t-input=false\t-no-color\taws_route53_health_check.eu\t4c0b1f19\t")
    local checkout = calls[3]:match("^%-chdir=([^\t]+)\tinit\t")
    t.ok(checkout and checkout ~= tf and checkout:match("/infra$"), calls[3])
    -- The plan ran on v1's configuration, in the checkout.
    t.match(calls[4], "^%-chdir=" .. checkout:gsub("%p", "%%%0") .. "\tplan\t.*\t" .. v1_sha .. "$")
    t.match(calls[5], "^%-chdir=" .. checkout:gsub("%p", "%%%0") .. "\tapply\t")
    t.match(r.stdout, "checked out v1 %(")
    -- The operator's tree is untouched, and the checkout is gone.
    t.eq(git_out(repo, "rev-parse", "HEAD"), head)
    t.eq(t.read_file(repo .. "/infra/main.tf"), before)
    t.eq(select(2, git_out(repo, "worktree", "list"):gsub("\n", "")), 1)
    t.ok(not require("atlas.sys").stat(checkout), "the temporary checkout is removed")

    -- Without --yes (cron, no terminal) the apply is refused after the plan; the checkout still goes.
    os.remove(record)
    r = t.run({ "playbooks/rollback_infra.lua", "terraform_dir=" .. tf, "ref=v1" }, { env = env })
    t.eq(r.code, 3, r.stdout .. r.stderr)
    t.eq(#records(record), 3) -- state list, init, plan
    t.eq(select(2, git_out(repo, "worktree", "list"):gsub("\n", "")), 1)

    -- A ref that does not exist fails before anything is checked out.
    os.remove(record)
    r = t.run({ "--yes", "playbooks/rollback_infra.lua", "terraform_dir=" .. tf, "ref=v9" }, { env = env })
    t.eq(r.code, 1, r.stdout .. r.stderr)
    t.match(r.stderr, 'step "plan the rollback": proc: git %-C .* rev%-parse %-%-verify v9%^{commit} exited with')
    t.eq(#records(record), 1)
    t.eq(select(2, git_out(repo, "worktree", "list"):gsub("\n", "")), 1)
end)
