-- Storage that is dropped a day at a time instead of deleted a row at a time: the
-- events and their minute counts are range-partitioned by UTC day, and a table of
-- recently stored ids keeps "the same id is stored once" true across partitions.
-- One transaction (diesel's default): if anything fails, nothing has moved. It copies
-- every stored row, so it takes as long as rewriting the table; ingest waits meanwhile
-- (the consumer runs migrations before it consumes).

-- The day partitions, named <table>_pYYYYMMDD and bounded by UTC midnights. Created
-- by the consumer ahead of time and on demand (log-store/src/partitions.rs); a second
-- consumer racing to create the same one just finds it there.
CREATE FUNCTION log_create_day_partition(parent text, day date) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    partition text := parent || '_p' || to_char(day, 'YYYYMMDD');
BEGIN
    IF to_regclass(partition) IS NOT NULL THEN
        RETURN false;
    END IF;
    EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                   partition, parent,
                   day::text || ' 00:00:00+00', (day + 1)::text || ' 00:00:00+00');
    RETURN true;
EXCEPTION WHEN duplicate_table OR unique_violation THEN
    RETURN false;
END $$;

-- Drops the day partitions of `parent` for days before `keep_from`, oldest first, and
-- names them. A DROP is instant whatever the partition holds: no DELETE, no vacuum.
CREATE FUNCTION log_drop_day_partitions(parent text, keep_from date) RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
    partition text;
BEGIN
    FOR partition IN
        SELECT c.relname
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = parent::regclass
          AND c.relname ~ ('^' || parent || '_p[0-9]{8}$')
          AND to_date(right(c.relname, 8), 'YYYYMMDD') < keep_from
        ORDER BY c.relname
    LOOP
        EXECUTE format('DROP TABLE %I', partition);
        RETURN NEXT partition;
    END LOOP;
END $$;

-- The UTC days of existing rows, plus yesterday to the day after tomorrow.
CREATE TEMPORARY TABLE partition_days ON COMMIT DROP AS
SELECT DISTINCT ("timestamp" AT TIME ZONE 'UTC')::date AS day FROM log_events
UNION
SELECT (now() AT TIME ZONE 'UTC')::date + d FROM generate_series(-1, 2) AS d;

-- log_events: same columns, partitioned by day.
ALTER TABLE log_events RENAME TO log_events_unpartitioned;
ALTER TABLE log_events_unpartitioned DROP CONSTRAINT log_events_pkey;
DROP INDEX IF EXISTS log_events_timestamp_idx, log_events_source_timestamp_idx,
    log_events_level_timestamp_not_info_idx, log_events_correlation_timestamp_idx,
    log_events_search_idx;

CREATE TABLE log_events (
    id              uuid        NOT NULL,
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
) PARTITION BY RANGE ("timestamp");

SELECT log_create_day_partition('log_events', day) FROM partition_days;

INSERT INTO log_events (id, level, message, source, "timestamp", metadata, correlation_id,
                        request_id, trace_id, kafka_partition, kafka_offset, created_at)
SELECT id, level, message, source, "timestamp", metadata, correlation_id,
       request_id, trace_id, kafka_partition, kafka_offset, created_at
FROM log_events_unpartitioned;
DROP TABLE log_events_unpartitioned;

-- Built after the copy (faster than maintaining them row by row). A unique index must
-- contain the partition key, so the time index (which every page walks) is the one
-- that is unique: a Kafka replay of a stored record, same id and same timestamp, is
-- skipped by it forever. Ids with different timestamps are log_event_ids' job.
CREATE UNIQUE INDEX log_events_timestamp_idx ON log_events ("timestamp" DESC, id DESC);
-- GET /logs/{id}: one probe per partition.
CREATE INDEX log_events_id_idx ON log_events (id);
CREATE INDEX log_events_level_timestamp_not_info_idx
    ON log_events (level, "timestamp" DESC, id DESC) WHERE level <> 'INFO';
CREATE INDEX log_events_source_timestamp_idx ON log_events (source, "timestamp" DESC, id DESC);
CREATE INDEX log_events_correlation_timestamp_idx
    ON log_events (correlation_id, "timestamp" DESC, id DESC) WHERE correlation_id IS NOT NULL;
CREATE INDEX log_events_search_idx ON log_events USING gin (search_vector);

-- log_counts_minute: partitioned the same way, dropped with the events they count.
ALTER TABLE log_counts_minute RENAME TO log_counts_minute_unpartitioned;
CREATE TABLE log_counts_minute (
    minute timestamptz NOT NULL,
    level varchar(5) NOT NULL,
    source varchar(100) NOT NULL,
    kafka_partition int NOT NULL,
    events bigint NOT NULL,
    PRIMARY KEY (minute, level, source, kafka_partition)
) PARTITION BY RANGE (minute);
SELECT log_create_day_partition('log_counts_minute', day) FROM partition_days;
INSERT INTO log_counts_minute SELECT * FROM log_counts_minute_unpartitioned;
DROP TABLE log_counts_minute_unpartitioned;

-- The ids stored recently, whatever their timestamps: a client that retries without a
-- timestamp sends the same id with a new receive time, maybe on another day, so the
-- events' own unique index cannot see the copy. Partitioned by the UTC day the id was
-- stored (its generation); the consumer keeps the last ID_MEMORY_DAYS of them, and
-- every new id is checked against all that are kept.
CREATE TABLE log_event_ids (
    id uuid NOT NULL,
    stored_on timestamptz NOT NULL,
    PRIMARY KEY (id, stored_on)
) PARTITION BY RANGE (stored_on);

-- The generation new ids are written to. Writers read it under a shared advisory lock
-- held to commit; the consumer moves it to a new day under the exclusive lock, so no
-- two transactions in flight ever write the same id into two generations (where the
-- primary key could not see both).
CREATE TABLE log_event_id_generation (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    stored_on timestamptz NOT NULL
);
INSERT INTO log_event_id_generation (stored_on) VALUES (date_trunc('day', now(), 'UTC'));
SELECT log_create_day_partition('log_event_ids', (now() AT TIME ZONE 'UTC')::date);

-- The ids of the rows stored in the last two days join today's generation.
INSERT INTO log_event_ids (id, stored_on)
SELECT DISTINCT id, date_trunc('day', now(), 'UTC') FROM log_events
WHERE created_at >= now() - interval '2 days';
