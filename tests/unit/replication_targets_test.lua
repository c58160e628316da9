-- replication.targets_of: a run's connection targets, worked out once per run
-- and never in ctx.state (journaled: a conninfo may hold a password).
local t = require "atlas.test"
local replication = require "atlas.replication"

local function ctx(primary)
    return {
        params = { primary = primary, secondaries = { "host=us port=5433 password=s3cret" }, password_secret = "x" },
        state = {},
    }
end

t.case("one run resolves once; another run resolves its own parameters", function()
    local saved = replication.resolve_targets
    t.defer(function() replication.resolve_targets = saved end)
    local asked = 0
    replication.resolve_targets = function(options)
        asked = asked + 1
        return saved(options)
    end
    local run = ctx "host=eu port=5432 password=s3cret"
    local first = replication.targets_of(run)
    t.eq(first.primary.label, "eu:5432")
    t.eq(first.secondaries[1].label, "us:5433")
    t.ok(replication.targets_of(run) == first, "the same targets for the same run")
    t.eq(asked, 1)
    t.eq(run.state, {}, "nothing in the journaled state")
    t.eq(replication.targets_of(ctx "host=other port=6000").primary.label, "other:6000")
    t.eq(asked, 2)
end)
