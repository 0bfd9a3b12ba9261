//! Ids that name their event's time.
//!
//! An event's id is what makes two copies of it one stored event. Most ids the pipeline
//! makes itself, and it makes them begin with the event's own millisecond:
//! - the producer mints a v7 UUID at the event's time ([`mint_event_id`]), not at the
//!   time it mints it;
//! - an agent's record that carries its own time gets an id derived from its content
//!   with that time in front ([`timed_content_id`], a v8 UUID laid out as a v7).
//!
//! The consumer's event blocks use that: a copy of such an event can only be in a
//! block of the same source whose time range holds the id's millisecond, so it is
//! found there, by the block's id filter and then exactly, with no index entry per
//! event. Only an id that does not name its time (a client's own UUID, a shipper's
//! line id, a record timed on receipt) has to be remembered on its own
//! ([`id_names_its_time`]).

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// The largest millisecond a UUID's 48-bit time field holds (the year 10889).
const MAX_ID_MILLIS: i64 = (1 << 48) - 1;

/// The event's millisecond, when a UUID's time field can hold it.
fn id_millis(timestamp: DateTime<Utc>) -> Option<u64> {
    let millis = timestamp.timestamp_millis();
    (0..=MAX_ID_MILLIS)
        .contains(&millis)
        .then_some(millis as u64)
}

/// A fresh id for the event at `timestamp`: a v7 UUID whose time is the event's
/// millisecond, random after it. (An event dated before 1970 gets one at the time of
/// minting, which is still unique but does not name its time.)
pub fn mint_event_id(timestamp: DateTime<Utc>) -> Uuid {
    match id_millis(timestamp) {
        Some(millis) => {
            let random = Uuid::new_v4();
            let mut bytes = [0u8; 10];
            bytes.copy_from_slice(&random.as_bytes()[6..]);
            uuid::Builder::from_unix_timestamp_millis(millis, &bytes).into_uuid()
        }
        None => Uuid::now_v7(),
    }
}

/// An id derived from a record's content (`digest`, a name-based UUID) with the
/// record's own time in front: the first 48 bits are its millisecond, the rest the
/// digest's, as a v8 UUID. A record without a time of its own (timed on receipt)
/// keeps the digest as it is: a copy of it would be timed differently.
pub fn timed_content_id(digest: Uuid, timestamp: Option<DateTime<Utc>>) -> Uuid {
    let Some(millis) = timestamp.and_then(id_millis) else {
        return digest;
    };
    let mut bytes = *digest.as_bytes();
    bytes[..6].copy_from_slice(&millis.to_be_bytes()[2..]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// The millisecond an id names, when it is laid out as the ids above are (v7 or v8).
pub fn id_time_millis(id: Uuid) -> Option<i64> {
    matches!(id.get_version_num(), 7 | 8).then(|| (id.as_u128() >> 80) as i64)
}

/// Whether `id` begins with `timestamp`'s millisecond, as the ids the pipeline mints
/// and derives do. A copy of such an event is found by its time; any other id must be
/// remembered on its own to be stored once.
pub fn id_names_its_time(id: Uuid, timestamp: DateTime<Utc>) -> bool {
    id_time_millis(id) == Some(timestamp.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(millis: i64) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(millis).single().expect("time")
    }

    #[test]
    fn a_minted_id_is_a_v7_of_the_event_time_and_random_after_it() {
        let time = at(1_765_000_000_123) + chrono::Duration::microseconds(456);
        let (a, b) = (mint_event_id(time), mint_event_id(time));
        assert_eq!(a.get_version_num(), 7);
        assert_ne!(a, b);
        assert!(id_names_its_time(a, time));
        assert_eq!(id_time_millis(a), Some(1_765_000_000_123));
        assert!(!id_names_its_time(
            a,
            time + chrono::Duration::milliseconds(1)
        ));
    }

    #[test]
    fn an_event_before_1970_gets_an_id_that_does_not_name_its_time() {
        let time = at(-5_000);
        let id = mint_event_id(time);
        assert_eq!(id.get_version_num(), 7);
        assert!(!id_names_its_time(id, time));
    }

    #[test]
    fn a_content_id_takes_the_record_time_in_front_and_keeps_the_digest_after() {
        let digest = Uuid::new_v5(&Uuid::NAMESPACE_OID, b"record");
        let time = at(1_765_000_000_123);
        let id = timed_content_id(digest, Some(time));
        assert_eq!(id.get_version_num(), 8);
        assert!(id_names_its_time(id, time));
        assert_eq!(id, timed_content_id(digest, Some(time)), "deterministic");
        assert_ne!(
            id,
            timed_content_id(Uuid::new_v5(&Uuid::NAMESPACE_OID, b"other"), Some(time))
        );
        assert_eq!(id.as_bytes()[8..], digest.as_bytes()[8..]);
        assert_eq!(timed_content_id(digest, None), digest);
    }

    #[test]
    fn ids_of_other_shapes_do_not_name_a_time() {
        let time = at(1_765_000_000_123);
        assert_eq!(id_time_millis(Uuid::new_v4()), None);
        assert_eq!(
            id_time_millis(Uuid::new_v5(&Uuid::NAMESPACE_OID, b"x")),
            None
        );
        assert!(!id_names_its_time(Uuid::now_v7(), at(0)));
        assert!(!id_names_its_time(Uuid::nil(), time));
    }
}
