-- Events per minute, level, source and Kafka partition, kept by the consumer in the
-- same transaction as the rows it counts (so a replay, which inserts nothing, adds
-- nothing). The partition is part of the key so that two writers, which own disjoint
-- partitions, never update the same row; readers sum over it.
CREATE TABLE log_counts_minute (
    minute timestamptz NOT NULL,
    level varchar(5) NOT NULL,
    source varchar(100) NOT NULL,
    kafka_partition int NOT NULL,
    events bigint NOT NULL,
    PRIMARY KEY (minute, level, source, kafka_partition)
);

-- The rows already stored.
INSERT INTO log_counts_minute (minute, level, source, kafka_partition, events)
SELECT date_trunc('minute', "timestamp"), level, source, kafka_partition, count(*)
FROM log_events
GROUP BY 1, 2, 3, 4;
