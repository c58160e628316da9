-- A busy account: the first two calls of every ECS and Route53 operation are
-- throttled, as the APIs do under a burst. The SDK retry policy must absorb it.
return {
    description = "the first 2 calls of each ECS and Route53 operation are throttled",
    apply = function(world)
        world:inject {
            service = "ecs",
            code = "ThrottlingException",
            status = 400,
            message = "Rate exceeded",
            times = 2,
            each_action = true,
        }
        world:inject {
            service = "route53",
            code = "Throttling",
            status = 400,
            message = "Rate exceeded",
            times = 2,
            each_action = true,
        }
    end,
}
