-- helper.wait: the service helpers' waiters share how a caller's table is
-- split between the wait (delay, timeout) and each poll (region, profile,
-- endpoint and the describe helper's parameters).
local t = require "atlas.test"
local aws = require "atlas.aws"
local helper = require "atlas.aws.helper"

-- Runs helper.wait with aws.wait recorded; returns aws.wait's table and what each poll was given.
local function run(args, waiter)
    local saved = aws.wait
    t.defer(function() aws.wait = saved end)
    local seen
    aws.wait = function(opts)
        seen = opts
        return opts.poll()
    end
    local polls = {}
    waiter.describe = function(call)
        polls[#polls + 1] = call
        return "value"
    end
    local got = helper.wait(args, waiter)
    return got, seen, polls
end

t.case("the caller's delay and timeout go to the wait, the control keys and params to each poll", function()
    local got, opts, polls = run({
        region = "eu-west-1",
        profile = "atlas",
        endpoint = "http://127.0.0.1:9",
        delay = 2,
        timeout = 30,
        cluster = "ignored: not a waiter parameter",
    }, {
        name = "thing ready",
        service = "rds",
        action = "DescribeDBInstances",
        timeout = 1800,
        params = { DBInstanceIdentifier = "atlas-production-db" },
        acceptors = {},
    })
    t.eq(got, "value")
    t.eq(
        { opts.name, opts.service, opts.action, opts.region, opts.delay, opts.timeout },
        { "thing ready", "rds", "DescribeDBInstances", "eu-west-1", 2, 30 }
    )
    t.eq(opts.describe, nil, "describe is helper.wait's, not aws.wait's")
    t.eq(opts.params, nil, "params are helper.wait's, not aws.wait's")
    -- A poll given timeout would read it as its own call's.
    t.eq(polls, {
        { region = "eu-west-1", profile = "atlas", endpoint = "http://127.0.0.1:9", DBInstanceIdentifier = "atlas-production-db" },
    })
end)

t.case("without delay or timeout: the service's pace (nil) and the waiter's own timeout", function()
    local _, opts = run({ region = "us-east-1" }, {
        name = "x",
        service = "ecs",
        action = "DescribeServices",
        timeout = 600,
        params = {},
    })
    t.eq({ opts.delay, opts.timeout }, { nil, 600 })
end)
