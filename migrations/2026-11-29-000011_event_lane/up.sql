-- Which topic a row was read from: 0 the normal topic (KAFKA_TOPIC), 1 the priority
-- topic (KAFKA_PRIORITY_TOPIC, FATAL and ERROR). Kafka offsets are per topic, so the
-- live tail's cursor keys on (lane, kafka_partition). A constant default is a catalog
-- change only: no table rewrite, existing rows read as lane 0.
ALTER TABLE log_events ADD COLUMN lane smallint NOT NULL DEFAULT 0;
