//! Blocks written by older versions still decode, to the same events:
//! `fixtures/version_1.hex` (ids stored as 16 raw bytes) and `fixtures/version_2.hex`
//! (text columns always whole) were written by those versions' encoders from
//! [`sample_events`].

use log_blocks::{decode, BlockEvent, OpenBlock};

fn from_hex(hex: &str) -> Vec<u8> {
    let hex = hex.trim();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("fixture is hex"))
        .collect()
}

fn sample_events() -> Vec<BlockEvent> {
    (0..5u32)
        .map(|i| BlockEvent {
            id: 0x0193_a5b2_c3d4_7e5f_8a6b_1c2d_3e4f_5a00 + u128::from(i),
            timestamp_micros: 1_765_000_000_000_000 + i64::from(i) * 1_250,
            level: (i % 6) as u8,
            source: if i % 2 == 0 { "api" } else { "db-01" }.into(),
            message: format!("GET /api/orders/{i} answered 200 in {}ms", 10 + i),
            metadata: (i % 2 == 1).then(|| format!(r#"{{"duration":{i}.5}}"#)),
            correlation_id: Some(format!("corr-{}", i / 2)),
            request_id: (i == 3).then(|| "req-3".into()),
            trace_id: (i == 4).then(|| "4bf92f3577b34da6a3ce929d0e0e4736".into()),
            kafka_offset: 1_000 + i64::from(i),
        })
        .collect()
}

#[test]
fn a_version_1_block_decodes_to_its_events() {
    let bytes = from_hex(include_str!("fixtures/version_1.hex"));
    assert_eq!(bytes[3], 1, "the fixture is a version 1 block");
    assert_eq!(decode(&bytes), Ok(sample_events()));
}

#[test]
fn a_version_2_block_decodes_to_its_events_and_opens_event_by_event() {
    let bytes = from_hex(include_str!("fixtures/version_2.hex"));
    assert_eq!(bytes[3], 2, "the fixture is a version 2 block");
    assert_eq!(decode(&bytes), Ok(sample_events()));
    let mut block = OpenBlock::open(bytes).expect("opens");
    for (i, event) in sample_events().into_iter().enumerate().rev() {
        assert_eq!(block.event(i), Ok(Some(event)));
    }
}
