-- The eu-west-1 primary database failed five minutes ago. The instance
-- shows "failed" and takes no connection; its read replica is available
-- (replication from the failed source has stopped) and can be promoted.
-- The eu-west-1 application keeps its tasks but reports DOWN. The mock
-- database (w.db) follows the RDS instance, so SQL connections fail too,
-- and work again once an instance answers at the primary's name. The last
-- writes before the failure (3 organizations, 5 users) reached the replica
-- but not the logical subscribers.
local env = require "atlas.env"
local REGION = "eu-west-1"

return {
    description = "eu-west-1 primary RDS instance failed and unreachable; the read replica is fine",
    apply = function(world)
        local began = world:now() - 300
        world.db:write("eu-west-1", "organization", 3, { to = { "eu-west-1-replica" } })
        world.db:write("eu-west-1", "app_user", 5, { to = { "eu-west-1-replica" } })
        world:set_db_instance(env.db_instance(REGION), {
            status = "failed",
            reachable = false,
            replication = {
                StatusType = "read replication",
                Normal = false,
                Status = "error",
                Message = "Replication has stopped: the source DB instance is unreachable.",
            },
        })
        world:set_endpoint("eu-west-1", { changed_at = began })
        local logs = require "atlas.mock.logs"
        for i = 0, 4 do
            logs.append(
                world,
                "eu-west-1",
                env.log_group(REGION),
                "ERROR [HikariPool-1 housekeeper] com.zaxxer.hikari.pool.HikariPool : HikariPool-1 - Connection is not available, request timed out after 30000ms.",
                nil,
                began + i * 30
            )
        end
    end,
}
