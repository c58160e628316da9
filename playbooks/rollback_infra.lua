-- Runbook "Infrastructure rollback": the Terraform state as it is
-- (`terraform state list`), an optional `terraform import` of one address
-- and id, and a full rollback to a git ref. The ref is checked out into a
-- temporary git worktree, never into the operator's own tree, then
-- planned, shown, confirmed and applied there; the worktree is removed
-- afterwards, whatever happened.
-- The import and the apply ask for confirmation themselves (atlas.confirm)
-- naming what they change, and only when they were asked for.
-- --dry-run lists, plans, and changes nothing.
local atlas = require "atlas"
local proc = require "atlas.proc"
local sys = require "atlas.sys"
local terraform = require "atlas.terraform"

local function show_output(text)
    for line in (text or ""):gmatch("[^\n]+") do
        atlas.log("  %s", line)
    end
end

local function git(args)
    local argv = { "git" }
    for _, a in ipairs(args) do
        argv[#argv + 1] = a
    end
    return proc.run(argv, { mutates = false })
end

local function trimmed(text) return (text or ""):gsub("%s+$", "") end

-- Removes the temporary worktree; a failure to remove it is said, not raised,
-- so it never hides the error that brought us here.
local function remove_worktree(ctx)
    local w = ctx.state.worktree
    if not w then return end
    local ok, err = pcall(git, { "-C", w.root, "worktree", "remove", "--force", w.path })
    if ok then
        atlas.log("removed the temporary checkout %s", w.path)
    else
        atlas.warn("could not remove the temporary checkout %s: %s (git worktree prune)", w.path, tostring(err))
    end
    ctx.state.worktree = nil
end

return atlas.playbook {
    name = "rollback_infra",
    description = "Infrastructure rollback: terraform state list, an optional import, and a rollback to a git ref planned in a temporary checkout, shown, confirmed, applied",
    lock = "atlas-crm-production",
    requires = { "terraform", "git" },
    params = {
        terraform_dir = {
            type = "string",
            required = true,
            description = "the Terraform configuration's directory, inside a git repository",
        },
        ref = { type = "string", pattern = "^[%w][%w%._/%-~^]*$", description = "the git ref (tag, branch, commit) to roll back to" },
        import_address = { type = "string", description = "a resource address to import into the state" },
        import_id = { type = "string", description = "the id of the resource to import" },
    },
    validate = function(p)
        local st = sys.stat(p.terraform_dir)
        if not st or st.type ~= "directory" then
            return string.format("parameter terraform_dir: %s is not a directory", p.terraform_dir)
        end
        if (p.import_address == nil) ~= (p.import_id == nil) then
            return "import_address and import_id go together: give both or neither"
        end
    end,
    steps = {
        {
            name = "state list",
            run = function(ctx)
                local r = terraform.run(ctx.params.terraform_dir, { "state", "list" }, { mutates = false })
                local addresses = {}
                for line in r.stdout:gmatch("[^\n]+") do
                    addresses[#addresses + 1] = line
                    atlas.log("  %s", line)
                end
                ctx.state.addresses = addresses
                atlas.log("%d resource(s) in the state", #addresses)
            end,
        },
        {
            name = "import",
            mutates = true,
            confirm = true, -- asks itself below (atlas.confirm), naming the address and id, only when asked to import
            run = function(ctx)
                local address, id = ctx.params.import_address, ctx.params.import_id
                if not address then
                    atlas.log("nothing to import")
                    return
                end
                for _, known in ipairs(ctx.state.addresses or {}) do
                    if known == address then ctx.fail("%s is already in the state: nothing to import", address) end
                end
                atlas.confirm(string.format("Import %s as %s into the Terraform state?", id, address))
                local r = terraform.run(ctx.params.terraform_dir, { "import", "-input=false", "-no-color", address, id }, { mutates = true })
                show_output(r.stdout)
            end,
        },
        {
            name = "plan the rollback",
            run = function(ctx)
                local ref = ctx.params.ref
                if not ref then
                    atlas.log("no ref: no rollback")
                    return
                end
                local dir = ctx.params.terraform_dir
                if sys.stat(dir .. "/terraform.tfstate") then
                    ctx.fail(
                        "%s keeps its state locally (terraform.tfstate): a checkout elsewhere would not see it; roll back with a remote backend",
                        dir
                    )
                end
                local root = trimmed(git({ "-C", dir, "rev-parse", "--show-toplevel" }).stdout)
                local prefix = trimmed(git({ "-C", dir, "rev-parse", "--show-prefix" }).stdout)
                local commit = trimmed(git({ "-C", root, "rev-parse", "--verify", ref .. "^{commit}" }).stdout)
                local path = os.tmpname()
                os.remove(path)
                git { "-C", root, "worktree", "add", "--detach", path, commit }
                ctx.state.worktree = { root = root, path = path }
                ctx.state.rollback_dir = prefix ~= "" and (path .. "/" .. prefix:gsub("/$", "")) or path
                atlas.log("checked out %s (%s) into %s", ref, commit:sub(1, 12), path)
                local ok, err = pcall(function()
                    terraform.run(ctx.state.rollback_dir, { "init", "-input=false", "-no-color" }, { mutates = false })
                    local changes, output = terraform.plan(ctx.state.rollback_dir)
                    show_output(output)
                    ctx.state.changes = changes
                    ctx.state.summary = terraform.plan_summary(output) or ("plan: " .. changes)
                    atlas.log("%s", ctx.state.summary)
                end)
                if not ok then
                    remove_worktree(ctx)
                    error(err, 0)
                end
                if ctx.dry_run or ctx.state.changes == "none" then remove_worktree(ctx) end
            end,
        },
        {
            name = "apply the rollback",
            mutates = true,
            confirm = true, -- asks itself below (atlas.confirm), naming the ref and the plan, only with a ref
            run = function(ctx)
                if not ctx.params.ref then return end
                if ctx.dry_run then
                    atlas.log("dry run: the plan above is not applied")
                    return
                end
                if ctx.state.changes == "none" then
                    atlas.log("the infrastructure already matches %s: nothing to apply", ctx.params.ref)
                    return
                end
                if not ctx.state.worktree then
                    ctx.fail("the checkout of %s planned earlier is gone: run rollback_infra again to plan afresh", ctx.params.ref)
                end
                local ok, err = pcall(function()
                    atlas.confirm(string.format("Roll the infrastructure back to %s (%s)?", ctx.params.ref, ctx.state.summary))
                    local r = terraform.run(
                        ctx.state.rollback_dir,
                        { "apply", "-input=false", "-no-color", terraform.PLAN_FILE },
                        { mutates = true }
                    )
                    show_output(r.stdout)
                end)
                remove_worktree(ctx)
                if not ok then error(err, 0) end
            end,
        },
    },
}
