//! The block's bytes: a versioned container of compressed columns.
//!
//! ```text
//! block   = magic "LGB" · version (1 byte) · event count (varint) · column count (varint) · column*
//! column  = tag (1 byte) · codec (1 byte: 0 stored, 1 zstd) · raw length (varint)
//!           · stored length (varint) · stored bytes
//! ```
//!
//! Every column of [`Column`] is present exactly once in a block of a version this code reads, in any order;
//! an unknown tag is an error (a newer writer's block is refused, never half read). Each
//! column is compressed on its own (zstd level 3), so a reader could open one column
//! without the others, and a column zstd does not shrink is stored as it is. Lengths are
//! checked before anything is allocated: a raw column is at most [`MAX_COLUMN_BYTES`],
//! a block at most [`MAX_EVENTS`] events, and zstd may not inflate past the stated raw
//! length.

use crate::columns;
use crate::event::BlockEvent;
use crate::varint::{self, Reader};
use crate::FormatError;
use std::cell::RefCell;

const MAGIC: &[u8; 3] = b"LGB";
/// The version this code writes. [`decode`] reads it and version 1 (which stored each
/// id as 16 raw bytes), and refuses every other.
pub const VERSION: u8 = 2;
const READABLE_VERSIONS: [u8; 2] = [1, 2];
/// The most events one block holds (the writer and compaction cut there).
pub const MAX_EVENTS: usize = 65_536;
/// The most bytes one column holds before compression.
pub const MAX_COLUMN_BYTES: usize = 64 << 20;
const ZSTD_LEVEL: i32 = 3;

const CODEC_STORED: u8 = 0;
const CODEC_ZSTD: u8 = 1;

/// The columns of a block (versions 1 and 2 have the same), by tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Column {
    Ids = 1,
    Times = 2,
    Levels = 3,
    Sources = 4,
    Messages = 5,
    Metadata = 6,
    CorrelationIds = 7,
    RequestIds = 8,
    TraceIds = 9,
    Offsets = 10,
}

const COLUMNS: [Column; 10] = [
    Column::Ids,
    Column::Times,
    Column::Levels,
    Column::Sources,
    Column::Messages,
    Column::Metadata,
    Column::CorrelationIds,
    Column::RequestIds,
    Column::TraceIds,
    Column::Offsets,
];

/// The order columns are written in: times and levels first, so that a count of a
/// time window reads a prefix of the block ([`times_and_levels_of_prefix`]), not all of
/// it. Readers take columns in any order, by tag (blocks written before this order
/// had ids first and read as well).
const WRITE_ORDER: [Column; 10] = [
    Column::Times,
    Column::Levels,
    Column::Offsets,
    Column::Ids,
    Column::Sources,
    Column::CorrelationIds,
    Column::RequestIds,
    Column::TraceIds,
    Column::Metadata,
    Column::Messages,
];

impl Column {
    fn from_tag(tag: u8) -> Option<Column> {
        COLUMNS.into_iter().find(|c| *c as u8 == tag)
    }

    /// Its place in [`COLUMNS`].
    fn slot(self) -> usize {
        self as usize - 1
    }

    fn name(self) -> &'static str {
        match self {
            Column::Ids => "ids",
            Column::Times => "times",
            Column::Levels => "levels",
            Column::Sources => "sources",
            Column::Messages => "messages",
            Column::Metadata => "metadata",
            Column::CorrelationIds => "correlation ids",
            Column::RequestIds => "request ids",
            Column::TraceIds => "trace ids",
            Column::Offsets => "offsets",
        }
    }

    fn encode(self, events: &[BlockEvent]) -> Vec<u8> {
        let optional =
            |f: fn(&BlockEvent) -> Option<&str>| columns::optional_strings(events.iter().map(f));
        match self {
            Column::Ids => columns::ids(events),
            Column::Times => columns::deltas(events.iter().map(|e| e.timestamp_micros)),
            Column::Levels => columns::levels(events),
            Column::Sources => columns::dictionary(events.iter().map(|e| e.source.as_str())),
            Column::Messages => columns::strings(events.iter().map(|e| e.message.as_str())),
            Column::Metadata => optional(|e| e.metadata.as_deref()),
            Column::CorrelationIds => optional(|e| e.correlation_id.as_deref()),
            Column::RequestIds => optional(|e| e.request_id.as_deref()),
            Column::TraceIds => optional(|e| e.trace_id.as_deref()),
            Column::Offsets => columns::deltas(events.iter().map(|e| e.kafka_offset)),
        }
    }
}

thread_local! {
    // A zstd context costs more to make than a small column does to compress: one per
    // thread, kept.
    static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

fn compress(raw: &[u8]) -> std::io::Result<Vec<u8>> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        match &mut *slot {
            Some(compressor) => compressor.compress(raw),
            None => {
                let mut compressor = zstd::bulk::Compressor::new(ZSTD_LEVEL)?;
                let compressed = compressor.compress(raw);
                *slot = Some(compressor);
                compressed
            }
        }
    })
}

/// At most `raw_len` bytes: zstd stops there, whatever the frame claims.
fn decompress(stored: &[u8], raw_len: usize) -> std::io::Result<Vec<u8>> {
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        match &mut *slot {
            Some(decompressor) => decompressor.decompress(stored, raw_len),
            None => {
                let mut decompressor = zstd::bulk::Decompressor::new()?;
                let inflated = decompressor.decompress(stored, raw_len);
                *slot = Some(decompressor);
                inflated
            }
        }
    })
}

/// The block of `events`, in their order. Fails only past the size bounds, which the
/// caller is to cut blocks within.
pub fn encode(events: &[BlockEvent]) -> Result<Vec<u8>, FormatError> {
    if events.len() > MAX_EVENTS {
        return Err(FormatError::TooLarge("events"));
    }
    let mut out = Vec::with_capacity(64 + events.len() * 32);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    varint::put_u64(&mut out, events.len() as u64);
    varint::put_u64(&mut out, WRITE_ORDER.len() as u64);
    for column in WRITE_ORDER {
        let raw = column.encode(events);
        if raw.len() > MAX_COLUMN_BYTES {
            return Err(FormatError::TooLarge(column.name()));
        }
        let compressed = compress(&raw)
            .map_err(|_| FormatError::Corrupt(column.name(), "zstd could not compress"))?;
        let (codec, stored) = if compressed.len() < raw.len() {
            (CODEC_ZSTD, compressed.as_slice())
        } else {
            (CODEC_STORED, raw.as_slice())
        };
        out.push(column as u8);
        out.push(codec);
        varint::put_u64(&mut out, raw.len() as u64);
        varint::put_u64(&mut out, stored.len() as u64);
        out.extend_from_slice(stored);
    }
    Ok(out)
}

/// The inflated columns of a block: (format version, event count, each column that
/// `wanted` selects). The header and every column's framing are checked; a column not
/// wanted is passed over without being inflated.
type RawColumns = (u8, usize, [Option<Vec<u8>>; COLUMNS.len()]);

fn read_columns(bytes: &[u8], wanted: impl Fn(Column) -> bool) -> Result<RawColumns, FormatError> {
    let mut reader = Reader::new(bytes, "block header");
    if reader.bytes(MAGIC.len())? != MAGIC {
        return Err(FormatError::Corrupt("block header", "not a block (magic)"));
    }
    let version = reader.u8()?;
    if !READABLE_VERSIONS.contains(&version) {
        return Err(FormatError::UnknownVersion(version));
    }
    let count = reader.len(MAX_EVENTS)?;
    let column_count = reader.len(COLUMNS.len())?;
    let mut raw: [Option<Vec<u8>>; COLUMNS.len()] = Default::default();
    let mut seen = [false; COLUMNS.len()];
    for _ in 0..column_count {
        let tag = reader.u8()?;
        let column = Column::from_tag(tag).ok_or(FormatError::UnknownColumn(tag))?;
        let codec = reader.u8()?;
        let raw_len = reader.len(MAX_COLUMN_BYTES)?;
        let stored_len = reader.len(MAX_COLUMN_BYTES)?;
        let stored = reader.bytes(stored_len)?;
        if std::mem::replace(&mut seen[column.slot()], true) {
            return Err(FormatError::Corrupt(column.name(), "column repeated"));
        }
        if !wanted(column) {
            continue;
        }
        raw[column.slot()] = Some(inflate(column, codec, raw_len, stored)?);
    }
    if !reader.is_empty() {
        return Err(FormatError::Corrupt("block", "bytes after the last column"));
    }
    Ok((version, count, raw))
}

/// A column's stored bytes as written (`raw_len` of them), per its codec.
fn inflate(
    column: Column,
    codec: u8,
    raw_len: usize,
    stored: &[u8],
) -> Result<Vec<u8>, FormatError> {
    let inflated = match codec {
        CODEC_STORED => stored.to_vec(),
        CODEC_ZSTD => decompress(stored, raw_len)
            .map_err(|_| FormatError::Corrupt(column.name(), "zstd could not inflate"))?,
        _ => return Err(FormatError::Corrupt(column.name(), "unknown codec")),
    };
    if inflated.len() != raw_len {
        return Err(FormatError::Corrupt(column.name(), "length mismatch"));
    }
    Ok(inflated)
}

fn take_column(
    raw: &mut [Option<Vec<u8>>; COLUMNS.len()],
    column: Column,
) -> Result<Vec<u8>, FormatError> {
    raw[column.slot()]
        .take()
        .ok_or(FormatError::Corrupt(column.name(), "column missing"))
}

/// Each event's time (µs since the epoch) and level code, in the block's order.
pub type TimesAndLevels = (Vec<i64>, Vec<u8>);

/// [`decode_times_and_levels`] from the first bytes of a block: `None` when they end
/// before both columns do (a block written with ids first, or a very large one): then
/// the whole block is needed. Never panics, whatever the bytes; damage past what it
/// reads is for [`decode`] to find.
pub fn times_and_levels_of_prefix(prefix: &[u8]) -> Result<Option<TimesAndLevels>, FormatError> {
    let mut reader = Reader::new(prefix, "block header");
    // Running out of bytes anywhere means the prefix was too short, not that the block
    // is damaged: the whole block answers that.
    let Ok(magic) = reader.bytes(MAGIC.len()) else {
        return Ok(None);
    };
    if magic != MAGIC {
        return Err(FormatError::Corrupt("block header", "not a block (magic)"));
    }
    let (Ok(version), Ok(count), Ok(column_count)) = (
        reader.u8(),
        reader.len(MAX_EVENTS),
        reader.len(COLUMNS.len()),
    ) else {
        return Ok(None);
    };
    if !READABLE_VERSIONS.contains(&version) {
        return Err(FormatError::UnknownVersion(version));
    }
    let (mut times, mut levels) = (None, None);
    for _ in 0..column_count {
        let (Ok(tag), Ok(codec), Ok(raw_len), Ok(stored_len)) = (
            reader.u8(),
            reader.u8(),
            reader.len(MAX_COLUMN_BYTES),
            reader.len(MAX_COLUMN_BYTES),
        ) else {
            return Ok(None);
        };
        let Ok(stored) = reader.bytes(stored_len) else {
            return Ok(None);
        };
        let column = Column::from_tag(tag).ok_or(FormatError::UnknownColumn(tag))?;
        if !matches!(column, Column::Times | Column::Levels) {
            continue;
        }
        let raw = inflate(column, codec, raw_len, stored)?;
        match column {
            Column::Times => times = Some(columns::read_deltas(&raw, count, "times")?),
            _ => levels = Some(columns::read_levels(&raw, count)?),
        }
        if let (Some(_), Some(_)) = (&times, &levels) {
            return Ok(times.zip(levels));
        }
    }
    Ok(None)
}

/// Each event's time (µs since the epoch) and level code, in the block's order: what a
/// count of a time window needs, read without inflating the other columns (messages
/// are most of a block). Never panics, whatever the bytes.
pub fn decode_times_and_levels(bytes: &[u8]) -> Result<TimesAndLevels, FormatError> {
    let (_, count, mut raw) = read_columns(bytes, |c| matches!(c, Column::Times | Column::Levels))?;
    let times = columns::read_deltas(&take_column(&mut raw, Column::Times)?, count, "times")?;
    let levels = columns::read_levels(&take_column(&mut raw, Column::Levels)?, count)?;
    Ok((times, levels))
}

/// The events of a block, or why its bytes are not a block this code can read. Never
/// panics, whatever the bytes.
pub fn decode(bytes: &[u8]) -> Result<Vec<BlockEvent>, FormatError> {
    let (version, count, mut raw) = read_columns(bytes, |_| true)?;
    let mut take = |column: Column| take_column(&mut raw, column);
    let times = columns::read_deltas(&take(Column::Times)?, count, "times")?;
    let ids = match version {
        1 => columns::read_ids_v1(&take(Column::Ids)?, count)?,
        _ => columns::read_ids(&take(Column::Ids)?, &times)?,
    };
    let levels = columns::read_levels(&take(Column::Levels)?, count)?;
    let sources = columns::read_dictionary(&take(Column::Sources)?, count, "sources")?;
    let messages = columns::read_strings(&take(Column::Messages)?, count, "messages")?;
    let optional = |bytes: Vec<u8>, what| columns::read_optional_strings(&bytes, count, what);
    let metadata = optional(take(Column::Metadata)?, "metadata")?;
    let correlation_ids = optional(take(Column::CorrelationIds)?, "correlation ids")?;
    let request_ids = optional(take(Column::RequestIds)?, "request ids")?;
    let trace_ids = optional(take(Column::TraceIds)?, "trace ids")?;
    let offsets = columns::read_deltas(&take(Column::Offsets)?, count, "offsets")?;

    let mut sources = sources.into_iter();
    let mut messages = messages.into_iter();
    let mut metadata = metadata.into_iter();
    let mut correlation_ids = correlation_ids.into_iter();
    let mut request_ids = request_ids.into_iter();
    let mut trace_ids = trace_ids.into_iter();
    // Every column was checked to hold `count` values, so the zips below are whole.
    Ok(ids
        .into_iter()
        .zip(times)
        .zip(levels)
        .zip(offsets)
        .map(
            |(((id, timestamp_micros), level), kafka_offset)| BlockEvent {
                id,
                timestamp_micros,
                level,
                source: sources.next().unwrap_or_default(),
                message: messages.next().unwrap_or_default(),
                metadata: metadata.next().flatten(),
                correlation_id: correlation_ids.next().flatten(),
                request_id: request_ids.next().flatten(),
                trace_id: trace_ids.next().flatten(),
                kafka_offset,
            },
        )
        .collect())
}
