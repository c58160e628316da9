-- Logical replication from the eu-west-1 publication is 45 s behind on both
-- subscribers: over the runbook's critical threshold of 10 s. The lag shows
-- in CloudWatch (AtlasCRM/Production ReplicationLag, and its alarms) and in
-- the mock database (w.db) when that model is loaded.
return {
    description = "replication lag of 45 s on us-east-1 and ap-southeast-1 (critical above 10 s)",
    apply = function(world)
        world:set_replication_lag("us-east-1", 45)
        world:set_replication_lag("ap-southeast-1", 45)
    end,
}
