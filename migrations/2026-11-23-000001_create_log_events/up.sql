-- The stored log events. Column names follow the seed, so its troubleshooting
-- queries (SELECT COUNT(*) FROM log_events …) keep working.
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
    -- Where the row came from, for tracing a row back to its Kafka record.
    kafka_partition integer     NOT NULL,
    kafka_offset    bigint      NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    -- Full-text search over the message ('english': stems, drops stop words).
    search_vector   tsvector    GENERATED ALWAYS AS (to_tsvector('english', message)) STORED
);

-- Every page is "newest first, ties broken by id": one index per filter shape,
-- each ending in (timestamp, id) so the ORDER BY … LIMIT walks the index.
CREATE INDEX log_events_timestamp_idx ON log_events ("timestamp" DESC, id DESC);
CREATE INDEX log_events_level_timestamp_idx ON log_events (level, "timestamp" DESC, id DESC);
CREATE INDEX log_events_source_timestamp_idx ON log_events (source, "timestamp" DESC, id DESC);
CREATE INDEX log_events_correlation_id_idx ON log_events (correlation_id) WHERE correlation_id IS NOT NULL;
CREATE INDEX log_events_search_idx ON log_events USING gin (search_vector);

-- Exactly-once: the consumer writes its rows and the next offset of each partition
-- in the same transaction, and seeks to these offsets when it is given a partition.
CREATE TABLE consumer_offsets (
    consumer_group text        NOT NULL,
    topic          text        NOT NULL,
    "partition"    integer     NOT NULL,
    next_offset    bigint      NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, topic, "partition")
);
