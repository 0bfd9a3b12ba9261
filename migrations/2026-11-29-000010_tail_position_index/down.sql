DROP INDEX IF EXISTS log_events_kafka_position_idx;
