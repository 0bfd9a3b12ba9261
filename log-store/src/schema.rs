// The tables of `migrations/`, for diesel. Keep in step with the SQL there.

diesel::table! {
    log_events (id) {
        id -> Uuid,
        #[max_length = 5]
        level -> Varchar,
        message -> Text,
        #[max_length = 100]
        source -> Varchar,
        timestamp -> Timestamptz,
        metadata -> Nullable<Jsonb>,
        #[max_length = 128]
        correlation_id -> Nullable<Varchar>,
        #[max_length = 128]
        request_id -> Nullable<Varchar>,
        #[max_length = 128]
        trace_id -> Nullable<Varchar>,
        kafka_partition -> Int4,
        kafka_offset -> Int8,
        created_at -> Timestamptz,
        lane -> Int2,
    }
}

diesel::table! {
    consumer_offsets (consumer_group, topic, partition) {
        consumer_group -> Text,
        topic -> Text,
        partition -> Int4,
        next_offset -> Nullable<Int8>,
        updated_at -> Timestamptz,
        owner_epoch -> Int8,
    }
}

diesel::table! {
    dead_letters (id) {
        id -> Int8,
        original_topic -> Text,
        original_partition -> Int4,
        original_offset -> Int8,
        reason_kind -> Text,
        reason -> Text,
        failed_at -> Timestamptz,
        kafka_key -> Nullable<Bytea>,
        payload -> Bytea,
        replayed_at -> Nullable<Timestamptz>,
        replay_count -> Int4,
    }
}

diesel::table! {
    dead_letter_replays (id) {
        id -> Int8,
        dead_letter_id -> Int8,
        replayed_at -> Timestamptz,
        key_fingerprint -> Text,
        original_topic -> Text,
        original_partition -> Int4,
        original_offset -> Int8,
        corrected -> Bool,
        event_id -> Uuid,
        outcome -> Text,
        detail -> Text,
    }
}

diesel::table! {
    log_blocks (block_id) {
        block_id -> Int8,
        lane -> Int2,
        kafka_partition -> Int4,
        #[max_length = 100]
        source -> Varchar,
        min_time -> Timestamptz,
        max_time -> Timestamptz,
        min_offset -> Int8,
        max_offset -> Int8,
        events -> Int4,
        level_counts -> Array<Int4>,
        format_version -> Int2,
        token_filter -> Bytea,
        key_filter -> Bytea,
        payload -> Bytea,
        created_at -> Timestamptz,
    }
}
