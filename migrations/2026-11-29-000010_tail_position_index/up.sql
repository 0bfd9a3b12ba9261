-- The live tail reads the rows a partition stored past a cursor of Kafka offsets
-- (log-store/src/queries/tail.rs): this index makes that read touch only the new
-- rows. Offsets grow per partition, so inserts land at a few right-hand edges.
CREATE INDEX log_events_kafka_position_idx ON log_events (kafka_partition, kafka_offset);
