-- Event blocks (log-blocks' format): many events in one row, column by column, zstd
-- compressed, with the filters a query asks before it opens a block. One block holds
-- the events of one stream: one lane, one Kafka partition, one source, one UTC day;
-- its row keeps what a query reads without opening it (time and offset ranges, level
-- counts, the format version) and the two filters. Partitioned by day like log_events,
-- created and dropped by the same functions (log-store/src/partitions.rs).
CREATE TABLE log_blocks (
    block_id        bigint      NOT NULL,
    lane            smallint    NOT NULL,
    kafka_partition integer     NOT NULL,
    source          varchar(100) NOT NULL,
    min_time        timestamptz NOT NULL,
    max_time        timestamptz NOT NULL,
    min_offset      bigint      NOT NULL,
    max_offset      bigint      NOT NULL,
    events          integer     NOT NULL CHECK (events > 0),
    -- Events per level, in log-blocks' order: TRACE, DEBUG, INFO, WARN, ERROR, FATAL.
    level_counts    integer[]   NOT NULL CHECK (cardinality(level_counts) = 6),
    format_version  smallint    NOT NULL,
    token_filter    bytea       NOT NULL,
    key_filter      bytea       NOT NULL,
    payload         bytea       NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
) PARTITION BY RANGE (min_time);

CREATE SEQUENCE log_blocks_block_id_seq AS bigint OWNED BY log_blocks.block_id;
ALTER TABLE log_blocks ALTER COLUMN block_id SET DEFAULT nextval('log_blocks_block_id_seq');

-- The payload is zstd already: PostgreSQL's own compression would only spend CPU on
-- it. EXTERNAL keeps it out of line (TOAST) uncompressed, so reading a block's summary
-- and filters never reads its payload.
ALTER TABLE log_blocks ALTER COLUMN payload SET STORAGE EXTERNAL;
ALTER TABLE log_blocks ALTER COLUMN token_filter SET STORAGE EXTERNAL;
ALTER TABLE log_blocks ALTER COLUMN key_filter SET STORAGE EXTERNAL;

-- Newest first over every block, and per source; a block is found by its id. One
-- index entry a block, not an event.
CREATE INDEX log_blocks_max_time_idx ON log_blocks (max_time DESC);
CREATE INDEX log_blocks_source_max_time_idx ON log_blocks (source, max_time DESC);
CREATE INDEX log_blocks_block_id_idx ON log_blocks (block_id);
-- The live tail and compaction walk a partition's blocks by offset.
CREATE INDEX log_blocks_offsets_idx ON log_blocks (lane, kafka_partition, max_offset);

-- Every day log_events has a partition for, so the consumer finds them all here.
SELECT log_create_day_partition('log_blocks', to_date(right(c.relname, 8), 'YYYYMMDD'))
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'log_events'::regclass AND c.relname ~ '^log_events_p[0-9]{8}$';
