//! Every field through a block and back, and bad bytes never panicking.

use log_blocks::parts::PART_EVENTS;
use log_blocks::{
    build, decode, decode_times_and_levels, encode, key_hash, times_and_levels_of_prefix,
    BlockEvent, Filter, KeyKind, OpenBlock, Query,
};
use proptest::prelude::*;

fn optional_text() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(".{0,40}")
}

fn event() -> impl Strategy<Value = BlockEvent> {
    (
        any::<u128>(),
        any::<i64>(),
        0u8..6,
        "[a-z-]{1,12}",
        ".{0,200}",
        optional_text(),
        (optional_text(), optional_text(), optional_text()),
        any::<i64>(),
    )
        .prop_map(
            |(id, timestamp_micros, level, source, message, metadata, ids, kafka_offset)| {
                BlockEvent {
                    id,
                    timestamp_micros,
                    level,
                    source,
                    message,
                    metadata,
                    correlation_id: ids.0,
                    request_id: ids.1,
                    trace_id: ids.2,
                    kafka_offset,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Pruning never drops a block holding a match: whatever a query matches in a
    /// message, the block's token filter lets the query in. (A small alphabet of
    /// words and joiners, so queries often match.)
    #[test]
    fn a_query_that_matches_a_message_is_let_into_its_block(
        message in "[a-c0-2 .:/@-]{0,40}",
        query in "[a-c0-2 .:/@-]{1,12}",
    ) {
        let query = Query::parse(&query);
        if query.matches(&message) {
            let event = BlockEvent {
                id: 1,
                timestamp_micros: 0,
                level: 2,
                source: "s".into(),
                message: message.clone(),
                metadata: None,
                correlation_id: None,
                request_id: None,
                trace_id: None,
                kafka_offset: 0,
            };
            let block = build(&[event]).expect("test value");
            let tokens = Filter::from_bytes(&block.token_filter).expect("test value");
            prop_assert!(query.may_match(|k| tokens.may_contain(key_hash(KeyKind::Token, k.as_bytes()))));
        }
    }

    #[test]
    fn every_field_round_trips(events in proptest::collection::vec(event(), 0..60)) {
        let bytes = encode(&events).expect("test value");
        prop_assert_eq!(decode(&bytes).expect("test value"), events);
    }

    #[test]
    fn times_and_levels_read_alone_are_the_whole_decode_s(
        events in proptest::collection::vec(event(), 0..60)
    ) {
        let bytes = encode(&events).expect("test value");
        let (times, levels) = decode_times_and_levels(&bytes).expect("test value");
        prop_assert_eq!(times, events.iter().map(|e| e.timestamp_micros).collect::<Vec<_>>());
        prop_assert_eq!(levels, events.iter().map(|e| e.level).collect::<Vec<_>>());
        // And from any prefix: the same, or `None` when it is too short.
        let whole = decode_times_and_levels(&bytes).expect("test value");
        for cut in [bytes.len(), bytes.len() / 2, 16, 3, 0] {
            match times_and_levels_of_prefix(&bytes[..cut]).expect("a prefix is no error") {
                Some(found) => prop_assert_eq!(&found, &whole),
                None => prop_assert!(cut < bytes.len(), "the whole block is enough"),
            }
        }
    }

    /// An opened block read event by event, in any order, gives what the whole decode
    /// gives, and its text fields are those events' own.
    #[test]
    fn an_opened_block_read_in_any_order_is_the_whole_decode(
        events in proptest::collection::vec(event(), 0..40),
        order in proptest::collection::vec(any::<prop::sample::Index>(), 0..40),
    ) {
        let bytes = encode(&events).expect("test value");
        let mut block = OpenBlock::open(bytes).expect("test value");
        prop_assert_eq!(block.len(), events.len());
        prop_assert_eq!(block.times(), events.iter().map(|e| e.timestamp_micros).collect::<Vec<_>>());
        prop_assert_eq!(block.levels(), events.iter().map(|e| e.level).collect::<Vec<_>>());
        prop_assert_eq!(block.ids(), events.iter().map(|e| e.id).collect::<Vec<_>>());
        if events.is_empty() {
            prop_assert_eq!(block.event(0).expect("test value"), None);
            return Ok(());
        }
        for at in order {
            let i = at.index(events.len());
            let fields = block.text_fields(i).expect("test value").expect("in range");
            prop_assert_eq!(fields.source, events[i].source.as_str());
            prop_assert_eq!(fields.message, events[i].message.as_str());
            prop_assert_eq!(fields.correlation_id, events[i].correlation_id.as_deref());
            prop_assert_eq!(fields.trace_id, events[i].trace_id.as_deref());
            prop_assert_eq!(block.event(i).expect("test value"), Some(events[i].clone()));
        }
        prop_assert!(block.text_fields(events.len()).expect("test value").is_none());
    }

    #[test]
    fn the_filters_hold_every_key_of_the_block(events in proptest::collection::vec(event(), 1..40)) {
        let block = build(&events).expect("test value");
        let keys = Filter::from_bytes(&block.key_filter).expect("test value");
        let tokens = Filter::from_bytes(&block.token_filter).expect("test value");
        for event in &events {
            prop_assert!(keys.may_contain(key_hash(KeyKind::Id, &event.id.to_be_bytes())));
            if let Some(c) = &event.correlation_id {
                prop_assert!(keys.may_contain(key_hash(KeyKind::CorrelationId, c.as_bytes())));
            }
            if let Some(t) = &event.trace_id {
                prop_assert!(keys.may_contain(key_hash(KeyKind::TraceId, t.as_bytes())));
            }
            // No false negative: a query for any of the message's own terms is let in.
            for term in log_blocks::tokens::terms(&event.message) {
                let query = Query::parse(&format!("\"{}\"", term.text));
                prop_assert!(query.may_match(|k| tokens.may_contain(key_hash(KeyKind::Token, k.as_bytes()))));
            }
        }
        prop_assert_eq!(block.summary.events as usize, events.len());
    }

    #[test]
    fn any_bytes_decode_to_an_error_or_events(bytes: Vec<u8>) {
        let _ = decode(&bytes);
        let _ = decode_times_and_levels(&bytes);
        let _ = times_and_levels_of_prefix(&bytes);
        if let Ok(mut block) = OpenBlock::open(bytes) {
            let _ = block.text_fields(0);
            let _ = block.event(0);
        }
    }

    /// Damage of a real block: flipped bytes, cut short, or extended.
    #[test]
    fn a_damaged_block_is_an_error_never_a_panic(
        events in proptest::collection::vec(event(), 1..20),
        at: prop::sample::Index,
        xor in 1u8..=255,
        cut: prop::sample::Index,
    ) {
        let bytes = encode(&events).expect("test value");
        let mut flipped = bytes.clone();
        let i = at.index(flipped.len());
        flipped[i] ^= xor;
        let _ = decode(&flipped);
        let _ = decode_times_and_levels(&flipped);
        let _ = times_and_levels_of_prefix(&flipped);
        if let Ok(mut block) = OpenBlock::open(flipped) {
            // A part that fails stays failed: every later ask agrees.
            for i in 0..events.len() {
                let (event, text) = (block.event(i).is_ok(), block.text_fields(i).is_ok());
                prop_assert_eq!(block.event(i).is_ok(), event);
                prop_assert_eq!(block.text_fields(i).is_ok(), text);
                // An event is whole only when its text is.
                prop_assert!(text || !event);
            }
        }
        prop_assert!(decode(&bytes[..cut.index(bytes.len())]).is_err());
        prop_assert!(decode_times_and_levels(&bytes[..cut.index(bytes.len())]).is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        prop_assert!(decode(&longer).is_err());
    }
}

/// Events enough for text columns in parts: short messages with a few repeats, every
/// optional field sometimes left out.
fn many_events() -> impl Strategy<Value = Vec<BlockEvent>> {
    (PART_EVENTS + 1..3 * PART_EVENTS + 7, any::<u64>()).prop_map(|(n, seed)| {
        (0..n)
            .map(|i| {
                let x = seed.wrapping_mul(i as u64 + 1).rotate_left(17);
                BlockEvent {
                    id: u128::from(x) << 64 | i as u128,
                    timestamp_micros: 1_765_000_000_000_000 + i as i64 * 997,
                    level: (x % 6) as u8,
                    source: format!("s{}", x % 3),
                    message: format!("GET /api/{} {} ü", x % 97, i),
                    metadata: (x % 4 == 0).then(|| format!(r#"{{"n":{i}}}"#)),
                    correlation_id: (x % 5 != 0).then(|| format!("c-{}", x % 1000)),
                    request_id: (x % 7 == 0).then(|| "r".into()),
                    trace_id: (i % 1000 == 3).then(|| format!("t{i}")),
                    kafka_offset: i as i64,
                }
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// Past PART_EVENTS the text columns are written in parts: the block round-trips,
    /// opens event by event in any order, and one damaged part fails its own events
    /// and no other's.
    #[test]
    fn a_block_with_text_in_parts_round_trips_and_opens_part_by_part(
        events in many_events(),
        picks in proptest::collection::vec(any::<prop::sample::Index>(), 1..30),
        xor in 1u8..=255,
    ) {
        let bytes = encode(&events).expect("test value");
        prop_assert_eq!(decode(&bytes).expect("test value"), events.clone());
        let mut block = OpenBlock::open(bytes.clone()).expect("test value");
        for pick in &picks {
            let i = pick.index(events.len());
            prop_assert_eq!(block.event(i).expect("test value"), Some(events[i].clone()));
        }
        // The last byte of the block is the last part of the messages column, written
        // last: damage it, and only that part's events fail.
        let mut damaged = bytes;
        let last = damaged.len() - 1;
        damaged[last] ^= xor;
        let mut block = OpenBlock::open(damaged).expect("the framing is whole");
        let last_part = (events.len() - 1) / PART_EVENTS * PART_EVENTS;
        for pick in &picks {
            let i = pick.index(events.len());
            let read = block.event(i);
            if i < last_part {
                prop_assert_eq!(read.expect("an undamaged part"), Some(events[i].clone()));
            } else if let Ok(Some(event)) = read {
                // zstd keeps no checksum: a flipped literal may still inflate, to
                // other text of the same length.
                prop_assert_eq!(event.id, events[i].id);
            }
        }
    }
}

#[test]
fn a_version_2_block_with_parts_is_refused() {
    let events: Vec<BlockEvent> = (0..PART_EVENTS as u32 + 1)
        .map(|i| BlockEvent {
            id: u128::from(i),
            timestamp_micros: i64::from(i),
            level: 2,
            source: "s".into(),
            message: format!("line {i}"),
            metadata: None,
            correlation_id: None,
            request_id: None,
            trace_id: None,
            kafka_offset: i64::from(i),
        })
        .collect();
    let mut bytes = encode(&events).expect("test value");
    assert_eq!(decode(&bytes).map(|e| e.len()), Ok(events.len()));
    bytes[3] = 2;
    assert!(decode(&bytes).is_err());
}

#[test]
fn a_block_of_another_version_is_refused() {
    let mut bytes = encode(&[]).expect("test value");
    bytes[3] = 4;
    assert_eq!(
        decode(&bytes),
        Err(log_blocks::FormatError::UnknownVersion(4))
    );
}
