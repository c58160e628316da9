-- Scenario 1 of the runbook: eu-west-1 went down ten minutes ago. Its ECS
-- service runs no task and cannot start one, the ALB answers 503, and the
-- Route53 health check has been failing long enough to count.
local env = require "atlas.env"
local REGION = "eu-west-1"

return {
    description = "eu-west-1 down: ECS service 0/2 and not recovering, endpoint 503, health check failing",
    apply = function(world)
        local began = world:now() - 600
        world:stall_service(REGION)
        world:set_service(REGION, { running = 0, desired = 2 })
        world:set_endpoint(REGION, { changed_at = began })
        local ecs = require "atlas.mock.ecs"
        ecs.add_service_event(
            world,
            REGION,
            "(service " .. env.service(REGION) .. ") is unable to consistently start tasks successfully.",
            began + 60
        )
        local group = env.log_group(REGION)
        local logs = require "atlas.mock.logs"
        for i = 0, 4 do
            logs.append(
                world,
                REGION,
                group,
                "ERROR [main] o.s.boot.SpringApplication : Application run failed: java.net.ConnectException: Connection timed out",
                nil,
                began + i * 30
            )
        end
    end,
}
