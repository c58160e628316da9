-- The playbooks that probe health endpoints take endpoint_timeout from
-- env.endpoint_timeout_param: one range (0.1 to 60 s) for all of them.
local t = require "atlas.test"
local playbook = require "atlas.run.playbook"
local params = require "atlas.run.params"

local DEFAULTS = {
    diag_health = 5,
    verify_deployment = 5,
    dr_readiness = 5,
    diag_failover_not_triggering = 5,
    initial_deploy = 10,
}

-- What each playbook requires besides.
local REQUIRED = { initial_deploy = { terraform_dir = "/tmp" } }

local function parse(specs, name, value)
    local args = { endpoint_timeout = value }
    for k, v in pairs(REQUIRED[name] or {}) do
        args[k] = v
    end
    return params.parse(specs, args).endpoint_timeout
end

local function specs(name) return playbook.load(assert(playbook.find("playbooks/" .. name .. ".lua"))).param_specs end

for name, default in pairs(DEFAULTS) do
    t.case(name .. ": endpoint_timeout defaults to " .. default .. " s and keeps to 0.1 to 60 s", function()
        local s = specs(name)
        t.eq(parse(s, name), default)
        t.eq(parse(s, name, "0.1"), 0.1)
        t.eq(parse(s, name, "60"), 60)
        t.raises(function() parse(s, name, "0.05") end, "endpoint_timeout")
        t.raises(function() parse(s, name, "61") end, "endpoint_timeout")
    end)
end
