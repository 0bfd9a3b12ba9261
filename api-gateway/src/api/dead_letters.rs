//! The admin dead-letter endpoints' answers, with their OpenAPI schemas.

use chrono::{DateTime, Utc};
use log_store::dead_letters::{DeadLetter, DeadLetterSummary, KindCount, ReasonKind, Replay};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

/// How a payload (or its preview) is written as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PayloadEncoding {
    /// Valid UTF-8, shown as it is.
    Utf8,
    /// Not UTF-8: two lowercase hex digits a byte.
    Hex,
}

/// `bytes` as text: as they are when valid UTF-8, else hex. `cut` says `bytes` is the
/// start of a longer payload, so an incomplete character at its end is dropped rather
/// than making the whole preview hex.
pub fn as_text(bytes: &[u8], cut: bool) -> (String, PayloadEncoding) {
    match std::str::from_utf8(bytes) {
        Ok(text) => (text.to_owned(), PayloadEncoding::Utf8),
        Err(e) if cut && e.error_len().is_none() => (
            String::from_utf8_lossy(&bytes[..e.valid_up_to()]).into_owned(),
            PayloadEncoding::Utf8,
        ),
        Err(_) => (
            bytes.iter().map(|b| format!("{b:02x}")).collect(),
            PayloadEncoding::Hex,
        ),
    }
}

/// One dead letter in a list: where it came from, why it failed, what became of it, and
/// the start of its payload.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterEntry {
    pub id: i64,
    /// empty, not_json, invalid_event, too_old or rejected_by_database.
    #[schema(example = "invalid_event")]
    pub reason_kind: String,
    /// The consumer's reason, e.g. `invalid event: level: unknown level 'LOUD'`.
    pub reason: String,
    pub original_topic: String,
    pub original_partition: i32,
    pub original_offset: i64,
    pub failed_at: DateTime<Utc>,
    /// At most the first 512 bytes of the payload: as text when they are UTF-8 (cut at
    /// a character boundary), else hex (`payloadEncoding: "hex"`).
    pub payload_preview: String,
    pub payload_encoding: PayloadEncoding,
    /// The whole payload's size.
    pub payload_bytes: i32,
    /// Replayed with success at least once.
    pub replayed: bool,
    /// Successful replays.
    pub replay_count: i32,
    /// The last successful replay.
    pub last_replayed_at: Option<DateTime<Utc>>,
}

impl From<DeadLetterSummary> for DeadLetterEntry {
    fn from(row: DeadLetterSummary) -> Self {
        let cut = i64::from(row.payload_bytes) > row.preview.len() as i64;
        let (payload_preview, payload_encoding) = as_text(&row.preview, cut);
        DeadLetterEntry {
            id: row.id,
            reason_kind: row.reason_kind,
            reason: row.reason,
            original_topic: row.original_topic,
            original_partition: row.original_partition,
            original_offset: row.original_offset,
            failed_at: row.failed_at,
            payload_preview,
            payload_encoding,
            payload_bytes: row.payload_bytes,
            replayed: row.replayed_at.is_some(),
            replay_count: row.replay_count,
            last_replayed_at: row.replayed_at,
        }
    }
}

/// One dead letter whole: the list entry's fields with the whole payload and key.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterDetail {
    pub id: i64,
    pub reason_kind: String,
    pub reason: String,
    pub original_topic: String,
    pub original_partition: i32,
    pub original_offset: i64,
    pub failed_at: DateTime<Utc>,
    /// The whole payload: text when UTF-8, else hex (`payloadEncoding`).
    pub payload: String,
    pub payload_encoding: PayloadEncoding,
    pub payload_bytes: usize,
    /// The record's Kafka key, written like the payload; absent when it had none.
    pub kafka_key: Option<String>,
    pub replayed: bool,
    pub replay_count: i32,
    pub last_replayed_at: Option<DateTime<Utc>>,
}

impl From<DeadLetter> for DeadLetterDetail {
    fn from(row: DeadLetter) -> Self {
        let (payload, payload_encoding) = as_text(&row.payload, false);
        DeadLetterDetail {
            id: row.id,
            reason_kind: row.reason_kind,
            reason: row.reason,
            original_topic: row.original_topic,
            original_partition: row.original_partition,
            original_offset: row.original_offset,
            failed_at: row.failed_at,
            payload,
            payload_encoding,
            payload_bytes: row.payload.len(),
            kafka_key: row.kafka_key.map(|k| as_text(&k, false).0),
            replayed: row.replayed_at.is_some(),
            replay_count: row.replay_count,
            last_replayed_at: row.replayed_at,
        }
    }
}

/// A page of dead letters, newest first, in Spring Data's shape.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterPage {
    pub content: Vec<DeadLetterEntry>,
    pub number: i64,
    pub size: i64,
    pub total_elements: i64,
    pub total_pages: i64,
    pub number_of_elements: usize,
    pub first: bool,
    pub last: bool,
    pub empty: bool,
}

impl DeadLetterPage {
    pub fn new(rows: Vec<DeadLetterSummary>, total: i64, page: i64, size: i64) -> Self {
        let content: Vec<DeadLetterEntry> = rows.into_iter().map(Into::into).collect();
        let total_pages = (total + size - 1) / size;
        DeadLetterPage {
            number: page,
            size,
            total_elements: total,
            total_pages,
            number_of_elements: content.len(),
            first: page == 0,
            last: page + 1 >= total_pages,
            empty: content.is_empty(),
            content,
        }
    }
}

/// Dead letters of one reason kind.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReasonKindCount {
    #[schema(example = "not_json")]
    pub reason_kind: String,
    pub total: i64,
    /// Never replayed with success.
    pub unreplayed: i64,
}

/// `GET /admin/dead-letters/counts`: every reason kind, with zeros.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterCounts {
    pub kinds: Vec<ReasonKindCount>,
    pub total: i64,
    pub unreplayed: i64,
}

impl DeadLetterCounts {
    pub fn new(rows: Vec<KindCount>) -> Self {
        let mut kinds: Vec<ReasonKindCount> = ReasonKind::ALL
            .iter()
            .map(|kind| ReasonKindCount {
                reason_kind: kind.as_str().to_owned(),
                total: 0,
                unreplayed: 0,
            })
            .collect();
        for row in rows {
            match kinds.iter_mut().find(|k| k.reason_kind == row.reason_kind) {
                Some(kind) => {
                    kind.total = row.total;
                    kind.unreplayed = row.unreplayed;
                }
                // A kind this gateway does not know (written by a newer consumer).
                None => kinds.push(ReasonKindCount {
                    reason_kind: row.reason_kind,
                    total: row.total,
                    unreplayed: row.unreplayed,
                }),
            }
        }
        DeadLetterCounts {
            total: kinds.iter().map(|k| k.total).sum(),
            unreplayed: kinds.iter().map(|k| k.unreplayed).sum(),
            kinds,
        }
    }
}

/// What a replay sent and how the producer answered.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplayResult {
    pub dead_letter_id: i64,
    /// The id the event was sent with (the original's own, or derived from its origin).
    pub event_id: Uuid,
    /// published, rejected or failed.
    #[schema(example = "published")]
    pub outcome: String,
    /// A corrected event was sent instead of the original payload.
    pub corrected: bool,
    /// The producer's message (its reason when it rejected the event).
    pub detail: String,
    /// The audit row of this attempt.
    pub replay_id: i64,
}

/// `POST /admin/dead-letters/replay`: how many of each outcome, and each attempt.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BulkReplayResult {
    /// Unreplayed dead letters that matched (at most `limit`).
    pub matched: usize,
    pub published: usize,
    pub rejected: usize,
    pub failed: usize,
    /// True when the producer failed and the rest were left for a later call.
    pub stopped_early: bool,
    pub results: Vec<ReplayResult>,
}

/// One replay attempt, as the audit keeps it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplayAudit {
    pub id: i64,
    pub dead_letter_id: i64,
    pub replayed_at: DateTime<Utc>,
    /// The first 12 hex characters of the SHA-256 of the caller's API key, or
    /// `anonymous` when API keys are off.
    pub key_fingerprint: String,
    pub original_topic: String,
    pub original_partition: i32,
    pub original_offset: i64,
    pub corrected: bool,
    pub event_id: Uuid,
    /// published, rejected or failed.
    pub outcome: String,
    pub detail: String,
}

impl From<Replay> for ReplayAudit {
    fn from(row: Replay) -> Self {
        ReplayAudit {
            id: row.id,
            dead_letter_id: row.dead_letter_id,
            replayed_at: row.replayed_at,
            key_fingerprint: row.key_fingerprint,
            original_topic: row.original_topic,
            original_partition: row.original_partition,
            original_offset: row.original_offset,
            corrected: row.corrected,
            event_id: row.event_id,
            outcome: row.outcome,
            detail: row.detail,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_is_shown_as_is_and_a_cut_character_is_dropped() {
        assert_eq!(
            as_text("zoë".as_bytes(), false),
            ("zoë".to_owned(), PayloadEncoding::Utf8)
        );
        // "zoë" cut inside the ë (0xc3 0xab): the preview stops before it.
        let cut = &"zoë".as_bytes()[..3];
        assert_eq!(as_text(cut, true), ("zo".to_owned(), PayloadEncoding::Utf8));
        // The same bytes as a whole payload are not UTF-8.
        assert_eq!(
            as_text(cut, false),
            ("7a6fc3".to_owned(), PayloadEncoding::Hex)
        );
    }

    #[test]
    fn binary_is_hex() {
        assert_eq!(
            as_text(b"\xff\xfe\x00a", true),
            ("fffe0061".to_owned(), PayloadEncoding::Hex)
        );
    }

    #[test]
    fn counts_list_every_kind_with_zeros() {
        let counts = DeadLetterCounts::new(vec![KindCount {
            reason_kind: "not_json".into(),
            total: 3,
            unreplayed: 2,
        }]);
        assert_eq!(counts.kinds.len(), 5);
        assert_eq!((counts.total, counts.unreplayed), (3, 2));
        let empty = counts.kinds.iter().find(|k| k.reason_kind == "empty");
        assert_eq!(empty.map(|k| k.total), Some(0));
    }
}
