-- Bash completion: options, playbook names from the search path, scenario
-- names and each playbook's name= parameters, all asked of atlas-run itself.
local t = require "atlas.test"

local function complete(...)
    local words = { t.binary(), ... }
    local quoted = {}
    for i, w in ipairs(words) do
        quoted[i] = string.format("%q", w)
    end
    local script = table.concat({
        "source scripts/atlas-run.bash-completion",
        "COMP_WORDS=(" .. table.concat(quoted, " ") .. ")",
        "COMP_CWORD=$((${#COMP_WORDS[@]} - 1))",
        "_atlas_run",
        'printf "%s\\n" "${COMPREPLY[@]}"',
    }, "\n")
    local r = t.spawn { "bash", "-c", script }
    t.eq(r.code, 0, r.stderr)
    return r.stdout
end

t.case("completion offers options, playbooks, scenarios and parameters", function()
    t.eq(complete("--sce"), "--scenario\n")
    t.eq(complete("--scenario", "eu-west-1-o"), "eu-west-1-outage\n")
    t.match(complete("dr_region_o"), "^dr_region_outage\n")
    t.eq(complete("--yes", "dr_region_outage", "failed_"), "failed_region=\n")
    t.match(complete("--scenario", "healthy", "dr_region_outage", "force"), "force=\nforce_backup=\n")
    t.match(complete("li"), "list")
end)

t.case("complete lists come from their owners", function()
    local r = t.run { "complete", "options" }
    t.eq(r.code, 0)
    for _, option in ipairs { "--dry-run", "--rollback", "--scenario", "--state", "--yes" } do
        t.match("\n" .. r.stdout, "\n" .. option:gsub("%-", "%%-") .. "\n")
    end
    r = t.run { "complete", "scenarios" }
    t.match(r.stdout, "^eu%-west%-1%-db%-failure\n")
    t.eq(t.run({ "complete", "bogus" }).code, 2)
end)
