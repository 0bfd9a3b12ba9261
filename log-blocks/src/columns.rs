//! How each field is laid out as a column, before compression. Every column starts
//! from the events in block order; decoding checks every count, length, code and UTF-8
//! sequence against the block's event count.
//!
//! | column | layout |
//! |---|---|
//! | ids | version 2: each id's first 48 bits (a v7 id's milliseconds) as a zigzag varint of their distance from the event's milliseconds, then the last 10 bytes of each; version 1: 16 bytes each, big-endian |
//! | times, offsets | the first value, then each one's difference from the one before, zigzag varints |
//! | levels | one byte each, the level's code |
//! | sources | a dictionary (count, then length and bytes of each), then each event's index as a varint |
//! | messages | each length as a varint, then all the bytes |
//! | metadata, correlation, request and trace ids | each length plus one as a varint (0 for none), then all the bytes |

use crate::event::{BlockEvent, LEVELS};
use crate::varint::{self, Reader};
use crate::FormatError;
use std::collections::HashMap;

/// Version 1: each id as its 16 bytes, big-endian.
pub fn read_ids_v1(bytes: &[u8], count: usize) -> Result<Vec<u128>, FormatError> {
    if bytes.len() != count * 16 {
        return Err(FormatError::Corrupt(
            "ids",
            "length is not 16 bytes an event",
        ));
    }
    Ok(bytes
        .chunks_exact(16)
        .map(|chunk| {
            let mut id = [0u8; 16];
            id.copy_from_slice(chunk);
            u128::from_be_bytes(id)
        })
        .collect())
}

/// The 80 bits of an id after its first 48.
const ID_TAIL_BYTES: usize = 10;

/// Version 2: an id's first 48 bits, which in a UUIDv7 are its milliseconds, as a
/// zigzag varint of their distance from the event's own milliseconds (0 for an id the
/// producer minted when it stamped the event), all of them first; then the other 10
/// bytes of each. Any UUID round-trips; a v7 one costs its 74 random bits and little
/// more, where 16 raw bytes left zstd ~12.
pub fn ids(events: &[BlockEvent]) -> Vec<u8> {
    let mut out = Vec::with_capacity(events.len() * (ID_TAIL_BYTES + 1));
    for event in events {
        let head = (event.id >> 80) as i64;
        varint::put_i64(&mut out, head.wrapping_sub(millis(event.timestamp_micros)));
    }
    for event in events {
        out.extend_from_slice(&event.id.to_be_bytes()[16 - ID_TAIL_BYTES..]);
    }
    out
}

pub fn read_ids(bytes: &[u8], times: &[i64]) -> Result<Vec<u128>, FormatError> {
    let mut reader = Reader::new(bytes, "ids");
    let heads = times
        .iter()
        .map(|&t| {
            let head = reader.i64()?.wrapping_add(millis(t));
            if (0..1 << 48).contains(&head) {
                Ok(head)
            } else {
                Err(FormatError::Corrupt(
                    "ids",
                    "an id's first 48 bits out of range",
                ))
            }
        })
        .collect::<Result<Vec<i64>, FormatError>>()?;
    let tails = reader.bytes(times.len() * ID_TAIL_BYTES)?;
    if !reader.is_empty() {
        return Err(FormatError::Corrupt("ids", "bytes after the last id"));
    }
    Ok(heads
        .iter()
        .zip(tails.chunks_exact(ID_TAIL_BYTES))
        .map(|(&head, tail)| {
            let mut id = [0u8; 16];
            id[..6].copy_from_slice(&(head as u64).to_be_bytes()[2..]);
            id[6..].copy_from_slice(tail);
            u128::from_be_bytes(id)
        })
        .collect())
}

fn millis(timestamp_micros: i64) -> i64 {
    timestamp_micros.div_euclid(1_000)
}

pub fn deltas(values: impl Iterator<Item = i64>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut previous = 0i64;
    for value in values {
        varint::put_i64(&mut out, value.wrapping_sub(previous));
        previous = value;
    }
    out
}

pub fn read_deltas(
    bytes: &[u8],
    count: usize,
    what: &'static str,
) -> Result<Vec<i64>, FormatError> {
    let mut reader = Reader::new(bytes, what);
    let mut values = Vec::with_capacity(count);
    let mut previous = 0i64;
    for _ in 0..count {
        previous = previous.wrapping_add(reader.i64()?);
        values.push(previous);
    }
    finished(&reader, what)?;
    Ok(values)
}

pub fn levels(events: &[BlockEvent]) -> Vec<u8> {
    events.iter().map(|e| e.level).collect()
}

pub fn read_levels(bytes: &[u8], count: usize) -> Result<Vec<u8>, FormatError> {
    if bytes.len() != count {
        return Err(FormatError::Corrupt("levels", "not one byte an event"));
    }
    if bytes.iter().any(|&code| usize::from(code) >= LEVELS.len()) {
        return Err(FormatError::Corrupt("levels", "unknown level code"));
    }
    Ok(bytes.to_vec())
}

pub fn dictionary<'a>(values: impl Iterator<Item = &'a str>) -> Vec<u8> {
    let mut entries: Vec<&str> = Vec::new();
    let mut index: HashMap<&str, u64> = HashMap::new();
    let mut codes = Vec::new();
    for value in values {
        let code = *index.entry(value).or_insert_with(|| {
            entries.push(value);
            entries.len() as u64 - 1
        });
        varint::put_u64(&mut codes, code);
    }
    let mut out = Vec::new();
    varint::put_u64(&mut out, entries.len() as u64);
    for entry in entries {
        varint::put_u64(&mut out, entry.len() as u64);
        out.extend_from_slice(entry.as_bytes());
    }
    out.extend(codes);
    out
}

/// A dictionary column as read: its entries and each event's code, every code checked
/// to be in range.
pub struct Dictionary {
    entries: Vec<String>,
    codes: Vec<u32>,
}

impl Dictionary {
    pub fn read(bytes: &[u8], count: usize, what: &'static str) -> Result<Dictionary, FormatError> {
        let mut reader = Reader::new(bytes, what);
        let entries = reader.len(count)?;
        let mut dictionary = Vec::with_capacity(entries);
        for _ in 0..entries {
            let len = reader.len(bytes.len())?;
            dictionary.push(utf8(reader.bytes(len)?, what)?);
        }
        let mut codes = Vec::with_capacity(count);
        for _ in 0..count {
            let code = reader.len(usize::MAX)?;
            if code >= dictionary.len() {
                return Err(FormatError::Corrupt(what, "dictionary index out of range"));
            }
            codes.push(code as u32);
        }
        finished(&reader, what)?;
        Ok(Dictionary {
            entries: dictionary,
            codes,
        })
    }

    /// The `index`th event's value (`""` past the end).
    pub fn get(&self, index: usize) -> &str {
        self.codes
            .get(index)
            .and_then(|&code| self.entries.get(code as usize))
            .map_or("", String::as_str)
    }
}

pub fn strings<'a>(values: impl Iterator<Item = &'a str> + Clone) -> Vec<u8> {
    let mut out = Vec::new();
    for value in values.clone() {
        varint::put_u64(&mut out, value.len() as u64);
    }
    for value in values {
        out.extend_from_slice(value.as_bytes());
    }
    out
}

/// A column of strings (optional or not) as read: all its text in one `String`, each
/// event's value a span of it. What a reader that hands over a few events of a block
/// needs, without a `String` for each of its events. Every span is checked when read:
/// within the text and on character boundaries, so each value is valid UTF-8.
pub struct Texts {
    text: String,
    /// Each event's `[start, end)` in `text`; `None` for an optional value left out.
    spans: Vec<Option<(u32, u32)>>,
}

impl Texts {
    /// `bytes` as [`strings`] (`optional` false) or [`optional_strings`] lay them out.
    pub fn read(
        mut bytes: Vec<u8>,
        count: usize,
        optional: bool,
        what: &'static str,
    ) -> Result<Texts, FormatError> {
        let mut reader = Reader::new(&bytes, what);
        let mut spans = Vec::with_capacity(count);
        let mut end = 0usize;
        for _ in 0..count {
            let len = reader.len(bytes.len())?;
            let len = match (optional, len) {
                (true, 0) => {
                    spans.push(None);
                    continue;
                }
                (true, n) => n - 1,
                (false, n) => n,
            };
            let start = end;
            end = start
                .checked_add(len)
                .filter(|&e| e <= bytes.len())
                .ok_or(FormatError::Truncated(what))?;
            spans.push(Some((start as u32, end as u32)));
        }
        let lengths = bytes.len() - reader.remaining();
        if bytes.len() - lengths != end {
            return Err(if bytes.len() - lengths < end {
                FormatError::Truncated(what)
            } else {
                FormatError::Corrupt(what, "bytes left over")
            });
        }
        bytes.drain(..lengths);
        let text =
            String::from_utf8(bytes).map_err(|_| FormatError::Corrupt(what, "invalid UTF-8"))?;
        let on_boundaries = spans.iter().flatten().all(|&(start, end)| {
            text.is_char_boundary(start as usize) && text.is_char_boundary(end as usize)
        });
        if !on_boundaries {
            return Err(FormatError::Corrupt(what, "invalid UTF-8"));
        }
        Ok(Texts { text, spans })
    }

    /// The `index`th event's value: `None` when left out (or past the end).
    pub fn get(&self, index: usize) -> Option<&str> {
        let (start, end) = (*self.spans.get(index)?)?;
        self.text.get(start as usize..end as usize)
    }
}

pub fn optional_strings<'a>(values: impl Iterator<Item = Option<&'a str>> + Clone) -> Vec<u8> {
    let mut out = Vec::new();
    for value in values.clone() {
        varint::put_u64(&mut out, value.map_or(0, |v| v.len() as u64 + 1));
    }
    for value in values.flatten() {
        out.extend_from_slice(value.as_bytes());
    }
    out
}

fn utf8(bytes: &[u8], what: &'static str) -> Result<String, FormatError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| FormatError::Corrupt(what, "invalid UTF-8"))
}

fn finished(reader: &Reader<'_>, what: &'static str) -> Result<(), FormatError> {
    if reader.is_empty() {
        Ok(())
    } else {
        Err(FormatError::Corrupt(what, "bytes left over"))
    }
}
