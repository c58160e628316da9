-- The reference environment as it is on a quiet morning.
return {
    description = "every region healthy: 2/2 tasks, health checks passing, replication current",
    apply = function(world) end,
}
