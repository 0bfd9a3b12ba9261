//! Text columns in parts (format version 3): a block's messages, metadata and
//! correlating ids are most of what it holds inflated, and a query hands over a few
//! events of a block, the newest ones most often. Cut into parts of [`PART_EVENTS`]
//! events, each compressed on its own, a column is inflated only in the parts that hold
//! the events asked for.
//!
//! ```text
//! parted column (codec 2) = part count (varint) · part*
//! part                    = events (varint) · codec (1 byte: 0 stored, 1 zstd)
//!                           · raw length (varint) · stored length (varint) · stored bytes
//! ```
//!
//! A part's raw bytes are the column's own layout ([`crate::columns`]) for its events.
//! The parts' events add up to the block's, and their raw lengths to the column's.
//! A column of at most [`PART_EVENTS`] events is written whole, as before version 3.

use crate::columns::Texts;
use crate::format::Framed;
use crate::varint::{self, Reader};
use crate::FormatError;
use std::ops::Range;

/// Events a part of a text column holds (the last part of a column may hold fewer).
/// Large enough that zstd still finds a part's repeats (~130 KiB of messages), small
/// enough that a block of 16,384 events inflates a sixteenth of its text per part.
pub const PART_EVENTS: usize = 1_024;

/// The codec of a column stored in parts.
pub(crate) const CODEC_PARTS: u8 = 2;

/// The stored bytes of a column in parts: `raw` is each part's raw bytes, in order,
/// with its event count; each is compressed by `compress` unless that does not shrink
/// it.
pub(crate) fn encode(
    parts: impl Iterator<Item = (usize, Vec<u8>)>,
    compress: impl Fn(&[u8]) -> Option<Vec<u8>>,
) -> Vec<u8> {
    let parts: Vec<(usize, Vec<u8>)> = parts.collect();
    let mut out = Vec::new();
    varint::put_u64(&mut out, parts.len() as u64);
    for (events, raw) in parts {
        let (codec, stored) = match compress(&raw) {
            Some(compressed) if compressed.len() < raw.len() => (1, compressed),
            _ => (0, raw.clone()),
        };
        varint::put_u64(&mut out, events as u64);
        out.push(codec);
        varint::put_u64(&mut out, raw.len() as u64);
        varint::put_u64(&mut out, stored.len() as u64);
        out.extend_from_slice(&stored);
    }
    out
}

/// Where one part of a column sits in the block's bytes, and which events it holds.
#[derive(Debug, Clone)]
struct Part {
    first: usize,
    events: usize,
    framed: Framed,
}

/// A text column opened for reading part by part: each part is inflated and checked
/// the first time one of its events is asked for, and a part that fails stays failed.
pub(crate) struct PartedTexts {
    what: &'static str,
    optional: bool,
    parts: Vec<Part>,
    read: Vec<Option<Result<Texts, FormatError>>>,
}

impl PartedTexts {
    /// A column `framed` in `block`, holding `count` events: one part when written
    /// whole, else its part table, checked against the block (nothing is inflated yet).
    pub(crate) fn open(
        block: &[u8],
        framed: Framed,
        count: usize,
        (what, optional): (&'static str, bool),
    ) -> Result<PartedTexts, FormatError> {
        let parts = if framed.codec == CODEC_PARTS {
            part_table(block, framed.stored, count, framed.raw_len, what)?
        } else {
            vec![Part {
                first: 0,
                events: count,
                framed,
            }]
        };
        Ok(PartedTexts {
            what,
            optional,
            read: parts.iter().map(|_| None).collect(),
            parts,
        })
    }

    fn part_of(&self, index: usize) -> Option<usize> {
        let after = self.parts.partition_point(|p| p.first <= index);
        let part = after.checked_sub(1)?;
        (index < self.parts[part].first + self.parts[part].events).then_some(part)
    }

    /// Inflates the part holding event `index` (once). Nothing to do past the end.
    pub(crate) fn load(&mut self, block: &[u8], index: usize) -> Result<(), FormatError> {
        let Some(i) = self.part_of(index) else {
            return Ok(());
        };
        if self.read[i].is_none() {
            let part = &self.parts[i];
            let read = part
                .framed
                .inflate(block, self.what)
                .and_then(|raw| Texts::read(raw, part.events, self.optional, self.what));
            self.read[i] = Some(read);
        }
        match &self.read[i] {
            Some(Err(e)) => Err(e.clone()),
            _ => Ok(()),
        }
    }

    /// Event `index`'s value, once its part is loaded ([`Self::load`]); `None` when
    /// left out, past the end, or not loaded.
    pub(crate) fn get(&self, index: usize) -> Option<&str> {
        let i = self.part_of(index)?;
        match &self.read[i] {
            Some(Ok(texts)) => texts.get(index - self.parts[i].first),
            _ => None,
        }
    }
}

/// The parts of a column stored at `stored` in `block`: their events must add up to
/// `count`, their raw lengths to `raw_len`, and their bytes fill `stored` exactly.
fn part_table(
    block: &[u8],
    stored: Range<usize>,
    count: usize,
    raw_len: usize,
    what: &'static str,
) -> Result<Vec<Part>, FormatError> {
    let bytes = block
        .get(stored.clone())
        .ok_or(FormatError::Truncated(what))?;
    let mut reader = Reader::new(bytes, what);
    let part_count = reader.len(count.max(1))?;
    let mut parts = Vec::with_capacity(part_count);
    let (mut first, mut raw_total) = (0usize, 0usize);
    for _ in 0..part_count {
        let events = reader.len(count - first)?;
        let codec = reader.u8()?;
        let part_raw = reader.len(raw_len - raw_total)?;
        let stored_len = reader.len(bytes.len())?;
        let start = stored.start + bytes.len() - reader.remaining();
        reader.bytes(stored_len)?;
        parts.push(Part {
            first,
            events,
            framed: Framed {
                codec,
                raw_len: part_raw,
                stored: start..start + stored_len,
            },
        });
        first += events;
        raw_total += part_raw;
    }
    if first != count || raw_total != raw_len {
        return Err(FormatError::Corrupt(
            what,
            "parts do not add up to the column",
        ));
    }
    if !reader.is_empty() {
        return Err(FormatError::Corrupt(what, "bytes after the last part"));
    }
    Ok(parts)
}
