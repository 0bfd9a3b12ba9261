-- The dead-letter index: every record the consumer sent to the dead-letter topic, with
-- its whole payload, so an operator can list, inspect and replay dead letters from the
-- gateway without a Kafka consumer, also after Kafka's retention deleted the topic's
-- entries. Written by the consumer after Kafka acknowledged the dead letter and before
-- the batch's offsets commit; a crash in between sends the record again, and the unique
-- origin keeps one row. Purged after DEAD_LETTER_RETENTION_DAYS by the consumer's upkeep.
CREATE TABLE dead_letters (
    id                 bigserial   PRIMARY KEY,
    original_topic     text        NOT NULL,
    original_partition int         NOT NULL,
    original_offset    bigint      NOT NULL,
    -- empty, not_json, invalid_event, too_old, rejected_by_database
    reason_kind        text        NOT NULL,
    reason             text        NOT NULL,
    failed_at          timestamptz NOT NULL DEFAULT now(),
    kafka_key          bytea,
    payload            bytea       NOT NULL,
    -- The last successful replay, and how many there were.
    replayed_at        timestamptz,
    replay_count       int         NOT NULL DEFAULT 0,
    UNIQUE (original_topic, original_partition, original_offset)
);

CREATE INDEX dead_letters_failed_at_idx ON dead_letters (failed_at);
CREATE INDEX dead_letters_kind_failed_at_idx ON dead_letters (reason_kind, failed_at);
-- What the gateway's gauges read every 15 s (unreplayed per kind, the oldest one):
-- only the entries still waiting for a replay.
CREATE INDEX dead_letters_unreplayed_idx ON dead_letters (reason_kind, failed_at)
    WHERE replayed_at IS NULL;

-- One row per replay attempt: who (a fingerprint of the API key, never the key), when,
-- what was sent and how the producer answered.
CREATE TABLE dead_letter_replays (
    id                 bigserial   PRIMARY KEY,
    dead_letter_id     bigint      NOT NULL REFERENCES dead_letters (id) ON DELETE CASCADE,
    replayed_at        timestamptz NOT NULL DEFAULT now(),
    key_fingerprint    text        NOT NULL,
    original_topic     text        NOT NULL,
    original_partition int         NOT NULL,
    original_offset    bigint      NOT NULL,
    corrected          boolean     NOT NULL,
    event_id           uuid        NOT NULL,
    -- published, rejected, failed
    outcome            text        NOT NULL,
    detail             text        NOT NULL
);

CREATE INDEX dead_letter_replays_dead_letter_idx ON dead_letter_replays (dead_letter_id, id);
CREATE INDEX dead_letter_replays_replayed_at_idx ON dead_letter_replays (replayed_at);
