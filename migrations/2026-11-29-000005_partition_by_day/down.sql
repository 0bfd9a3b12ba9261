DROP TABLE log_event_id_generation;
DROP TABLE log_event_ids;

ALTER TABLE log_counts_minute RENAME TO log_counts_minute_partitioned;
CREATE TABLE log_counts_minute (
    minute timestamptz NOT NULL,
    level varchar(5) NOT NULL,
    source varchar(100) NOT NULL,
    kafka_partition int NOT NULL,
    events bigint NOT NULL,
    PRIMARY KEY (minute, level, source, kafka_partition)
);
INSERT INTO log_counts_minute SELECT * FROM log_counts_minute_partitioned;
DROP TABLE log_counts_minute_partitioned;

ALTER TABLE log_events RENAME TO log_events_partitioned;
DROP INDEX log_events_timestamp_idx, log_events_id_idx, log_events_level_timestamp_not_info_idx,
    log_events_source_timestamp_idx, log_events_correlation_timestamp_idx, log_events_search_idx;
CREATE TABLE log_events (
    id              uuid        PRIMARY KEY,
    level           varchar(5)  NOT NULL
                    CHECK (level IN ('TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR', 'FATAL')),
    message         text        NOT NULL,
    source          varchar(100) NOT NULL,
    "timestamp"     timestamptz NOT NULL,
    metadata        jsonb,
    correlation_id  varchar(128),
    request_id      varchar(128),
    trace_id        varchar(128),
    kafka_partition integer     NOT NULL,
    kafka_offset    bigint      NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    search_vector   tsvector    GENERATED ALWAYS AS (to_tsvector('english', message)) STORED
);
INSERT INTO log_events (id, level, message, source, "timestamp", metadata, correlation_id,
                        request_id, trace_id, kafka_partition, kafka_offset, created_at)
SELECT DISTINCT ON (id) id, level, message, source, "timestamp", metadata, correlation_id,
       request_id, trace_id, kafka_partition, kafka_offset, created_at
FROM log_events_partitioned ORDER BY id, created_at;
DROP TABLE log_events_partitioned;
CREATE INDEX log_events_timestamp_idx ON log_events ("timestamp" DESC, id DESC);
CREATE INDEX log_events_level_timestamp_not_info_idx
    ON log_events (level, "timestamp" DESC, id DESC) WHERE level <> 'INFO';
CREATE INDEX log_events_source_timestamp_idx ON log_events (source, "timestamp" DESC, id DESC);
CREATE INDEX log_events_correlation_timestamp_idx
    ON log_events (correlation_id, "timestamp" DESC, id DESC) WHERE correlation_id IS NOT NULL;
CREATE INDEX log_events_search_idx ON log_events USING gin (search_vector);

DROP FUNCTION log_drop_day_partitions(text, date);
DROP FUNCTION log_create_day_partition(text, date);
