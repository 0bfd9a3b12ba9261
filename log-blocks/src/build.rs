//! From a slice of events to everything a block's row stores: the payload, the two
//! filters and the summary.

use crate::event::{BlockEvent, BlockSummary};
use crate::filter::{key_hash, Filter, KeyKind};
use crate::{format, tokens, FormatError};

/// A block ready to store.
#[derive(Debug, Clone)]
pub struct BuiltBlock {
    pub summary: BlockSummary,
    /// [`format::encode`] of the events.
    pub payload: Vec<u8>,
    /// The words of every message and their neighbouring pairs ([`tokens::filter_keys`]).
    pub token_filter: Vec<u8>,
    /// Every id, correlation id, request id and trace id.
    pub key_filter: Vec<u8>,
}

/// Builds the block of `events` (not empty, within [`format::MAX_EVENTS`]).
pub fn build(events: &[BlockEvent]) -> Result<BuiltBlock, FormatError> {
    let summary = BlockSummary::of(events).ok_or(FormatError::Corrupt("block", "no events"))?;
    let payload = format::encode(events)?;

    let mut token_hashes = Vec::new();
    for event in events {
        tokens::for_each_filter_key(&event.message, |key| {
            token_hashes.push(key_hash(KeyKind::Token, key.as_bytes()));
        });
    }

    let mut key_hashes = Vec::with_capacity(events.len() * 2);
    for event in events {
        key_hashes.push(key_hash(KeyKind::Id, &event.id.to_be_bytes()));
        for (kind, value) in [
            (KeyKind::CorrelationId, &event.correlation_id),
            (KeyKind::RequestId, &event.request_id),
            (KeyKind::TraceId, &event.trace_id),
        ] {
            if let Some(value) = value {
                key_hashes.push(key_hash(kind, value.as_bytes()));
            }
        }
    }

    Ok(BuiltBlock {
        summary,
        payload,
        token_filter: Filter::build(&token_hashes).to_bytes(),
        key_filter: Filter::build(&key_hashes).to_bytes(),
    })
}
