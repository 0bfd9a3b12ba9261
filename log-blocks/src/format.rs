//! The block's bytes: a versioned container of compressed columns.
//!
//! ```text
//! block   = magic "LGB" · version (1 byte) · event count (varint) · column count (varint) · column*
//! column  = tag (1 byte) · codec (1 byte: 0 stored, 1 zstd, 2 parts) · raw length (varint)
//!           · stored length (varint) · stored bytes
//! ```
//!
//! Since version 3 a text column of more than [`crate::parts::PART_EVENTS`] events is
//! stored in parts (codec 2, [`crate::parts`]), each compressed on its own, so a reader
//! inflates only the parts holding the events it hands over.
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
use crate::parts::{self, PartedTexts, PART_EVENTS};
use crate::varint::{self, Reader};
use crate::FormatError;
use std::cell::RefCell;

const MAGIC: &[u8; 3] = b"LGB";
/// The version this code writes. [`decode`] reads it, version 2 (text columns always
/// whole, never in [`crate::parts`]) and version 1 (which also stored each id as 16 raw
/// bytes), and refuses every other.
pub const VERSION: u8 = 3;
const READABLE_VERSIONS: [u8; 3] = [1, 2, 3];
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

    /// The columns of text that version 3 stores in parts.
    fn is_text(self) -> bool {
        matches!(
            self,
            Column::Messages
                | Column::Metadata
                | Column::CorrelationIds
                | Column::RequestIds
                | Column::TraceIds
        )
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
        if column.is_text() && events.len() > PART_EVENTS {
            let parts: Vec<(usize, Vec<u8>)> = events
                .chunks(PART_EVENTS)
                .map(|part| (part.len(), column.encode(part)))
                .collect();
            let raw_len: usize = parts.iter().map(|(_, raw)| raw.len()).sum();
            if raw_len > MAX_COLUMN_BYTES {
                return Err(FormatError::TooLarge(column.name()));
            }
            let stored = parts::encode(parts.into_iter(), |raw| compress(raw).ok());
            put_column(&mut out, column, parts::CODEC_PARTS, raw_len, &stored);
            continue;
        }
        let raw = column.encode(events);
        if raw.len() > MAX_COLUMN_BYTES {
            return Err(FormatError::TooLarge(column.name()));
        }
        let compressed = compress(&raw)
            .map_err(|_| FormatError::Corrupt(column.name(), "zstd could not compress"))?;
        if compressed.len() < raw.len() {
            put_column(&mut out, column, CODEC_ZSTD, raw.len(), &compressed);
        } else {
            put_column(&mut out, column, CODEC_STORED, raw.len(), &raw);
        }
    }
    Ok(out)
}

fn put_column(out: &mut Vec<u8>, column: Column, codec: u8, raw_len: usize, stored: &[u8]) {
    out.push(column as u8);
    out.push(codec);
    varint::put_u64(out, raw_len as u64);
    varint::put_u64(out, stored.len() as u64);
    out.extend_from_slice(stored);
}

/// Where a column sits in a block, as its framing says: codec, length once inflated,
/// and the range of its stored bytes.
#[derive(Debug, Clone)]
pub(crate) struct Framed {
    pub(crate) codec: u8,
    pub(crate) raw_len: usize,
    pub(crate) stored: std::ops::Range<usize>,
}

impl Framed {
    /// The bytes it frames in `block`, inflated; `what` names them for the error.
    pub(crate) fn inflate(&self, block: &[u8], what: &'static str) -> Result<Vec<u8>, FormatError> {
        let stored = block
            .get(self.stored.clone())
            .ok_or(FormatError::Truncated(what))?;
        inflate(what, self.codec, self.raw_len, stored)
    }
}

/// A block's framing: (format version, event count, each column present), every length
/// checked against the bytes and the bounds, nothing inflated.
type Frames = (u8, usize, [Option<Framed>; COLUMNS.len()]);

fn frame(bytes: &[u8]) -> Result<Frames, FormatError> {
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
    let mut frames: [Option<Framed>; COLUMNS.len()] = Default::default();
    for _ in 0..column_count {
        let tag = reader.u8()?;
        let column = Column::from_tag(tag).ok_or(FormatError::UnknownColumn(tag))?;
        let codec = reader.u8()?;
        let raw_len = reader.len(MAX_COLUMN_BYTES)?;
        let stored_len = reader.len(MAX_COLUMN_BYTES)?;
        let start = bytes.len() - reader.remaining();
        reader.bytes(stored_len)?;
        let slot = &mut frames[column.slot()];
        if slot.is_some() {
            return Err(FormatError::Corrupt(column.name(), "column repeated"));
        }
        *slot = Some(Framed {
            codec,
            raw_len,
            stored: start..start + stored_len,
        });
    }
    if !reader.is_empty() {
        return Err(FormatError::Corrupt("block", "bytes after the last column"));
    }
    Ok((version, count, frames))
}

/// A column of a framed block, inflated; an error if the block has none.
fn inflate_column(
    bytes: &[u8],
    frames: &[Option<Framed>; COLUMNS.len()],
    column: Column,
) -> Result<Vec<u8>, FormatError> {
    frames[column.slot()]
        .as_ref()
        .ok_or(FormatError::Corrupt(column.name(), "column missing"))?
        .inflate(bytes, column.name())
}

/// A column's (or a part's) stored bytes as written (`raw_len` of them), per its codec;
/// `what` names the column for the error.
fn inflate(
    what: &'static str,
    codec: u8,
    raw_len: usize,
    stored: &[u8],
) -> Result<Vec<u8>, FormatError> {
    let inflated = match codec {
        CODEC_STORED => stored.to_vec(),
        CODEC_ZSTD => decompress(stored, raw_len)
            .map_err(|_| FormatError::Corrupt(what, "zstd could not inflate"))?,
        _ => return Err(FormatError::Corrupt(what, "unknown codec")),
    };
    if inflated.len() != raw_len {
        return Err(FormatError::Corrupt(what, "length mismatch"));
    }
    Ok(inflated)
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
        let raw = inflate(column.name(), codec, raw_len, stored)?;
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
    let (_, count, frames) = frame(bytes)?;
    let times = columns::read_deltas(
        &inflate_column(bytes, &frames, Column::Times)?,
        count,
        "times",
    )?;
    let levels = columns::read_levels(&inflate_column(bytes, &frames, Column::Levels)?, count)?;
    Ok((times, levels))
}

/// The events of a block, or why its bytes are not a block this code can read. Never
/// panics, whatever the bytes.
pub fn decode(bytes: &[u8]) -> Result<Vec<BlockEvent>, FormatError> {
    OpenBlock::open(bytes.to_vec())?.events()
}

/// A block opened for reading a few of its events: the framing is checked and the
/// small columns a scan orders and filters by (times, levels, ids) are inflated at
/// once; the Kafka offsets with the first event made whole; the text columns (sources, messages, metadata and the three
/// correlating ids, nine tenths of a block inflated) only when an event's text is
/// first asked for, and then only the part holding it ([`crate::parts`]). A part that
/// does not decode fails every event it holds, whenever asked; events of other parts
/// read as they are. Never panics, whatever the bytes.
pub struct OpenBlock {
    bytes: Vec<u8>,
    times: Vec<i64>,
    levels: Vec<u8>,
    ids: Vec<u128>,
    /// Inflated with the first event made whole ([`OpenBlock::event`]).
    offsets: Option<Result<Vec<i64>, FormatError>>,
    offsets_frame: Framed,
    /// Whole (a dictionary is small), inflated at the first text asked for.
    sources: Option<Result<columns::Dictionary, FormatError>>,
    sources_frame: Framed,
    messages: PartedTexts,
    metadata: PartedTexts,
    correlation_ids: PartedTexts,
    request_ids: PartedTexts,
    trace_ids: PartedTexts,
}

/// One event's text, borrowed from its opened block: what a scan's filters ask about.
#[derive(Debug, Clone, Copy)]
pub struct TextFields<'a> {
    pub source: &'a str,
    pub message: &'a str,
    pub correlation_id: Option<&'a str>,
    pub trace_id: Option<&'a str>,
}

impl OpenBlock {
    pub fn open(bytes: Vec<u8>) -> Result<OpenBlock, FormatError> {
        let (version, count, frames) = frame(&bytes)?;
        let inflated = |column| inflate_column(&bytes, &frames, column);
        let times = columns::read_deltas(&inflated(Column::Times)?, count, "times")?;
        let ids = match version {
            1 => columns::read_ids_v1(&inflated(Column::Ids)?, count)?,
            _ => columns::read_ids(&inflated(Column::Ids)?, &times)?,
        };
        let levels = columns::read_levels(&inflated(Column::Levels)?, count)?;
        let framed = |column: Column| {
            frames[column.slot()]
                .clone()
                .ok_or(FormatError::Corrupt(column.name(), "column missing"))
        };
        let texts = |column: Column, optional: bool| {
            let framed = framed(column)?;
            if framed.codec == parts::CODEC_PARTS && version < 3 {
                return Err(FormatError::Corrupt(column.name(), "unknown codec"));
            }
            PartedTexts::open(&bytes, framed, count, (column.name(), optional))
        };
        Ok(OpenBlock {
            sources_frame: framed(Column::Sources)?,
            messages: texts(Column::Messages, false)?,
            metadata: texts(Column::Metadata, true)?,
            correlation_ids: texts(Column::CorrelationIds, true)?,
            request_ids: texts(Column::RequestIds, true)?,
            trace_ids: texts(Column::TraceIds, true)?,
            bytes,
            times,
            levels,
            ids,
            offsets: None,
            offsets_frame: framed(Column::Offsets)?,
            sources: None,
        })
    }

    /// How many events the block holds.
    pub fn len(&self) -> usize {
        self.times.len()
    }

    pub fn is_empty(&self) -> bool {
        self.times.is_empty()
    }

    /// Each event's time, µs since the epoch.
    pub fn times(&self) -> &[i64] {
        &self.times
    }

    /// Each event's level code.
    pub fn levels(&self) -> &[u8] {
        &self.levels
    }

    pub fn ids(&self) -> &[u128] {
        &self.ids
    }

    /// The Kafka offsets, inflated once (a failure stays the answer).
    fn offsets(&mut self) -> Result<&[i64], FormatError> {
        if self.offsets.is_none() {
            let read = self
                .offsets_frame
                .inflate(&self.bytes, "offsets")
                .and_then(|raw| columns::read_deltas(&raw, self.times.len(), "offsets"));
            self.offsets = Some(read);
        }
        match self.offsets.as_ref().expect("set above") {
            Ok(offsets) => Ok(offsets),
            Err(e) => Err(e.clone()),
        }
    }

    /// Inflates the sources and every text column's part holding event `index`.
    fn load_text(&mut self, index: usize) -> Result<(), FormatError> {
        if self.sources.is_none() {
            let read = self
                .sources_frame
                .inflate(&self.bytes, "sources")
                .and_then(|raw| columns::Dictionary::read(&raw, self.times.len(), "sources"));
            self.sources = Some(read);
        }
        if let Some(Err(e)) = &self.sources {
            return Err(e.clone());
        }
        for column in [
            &mut self.messages,
            &mut self.metadata,
            &mut self.correlation_ids,
            &mut self.request_ids,
            &mut self.trace_ids,
        ] {
            column.load(&self.bytes, index)?;
        }
        Ok(())
    }

    fn source(&self, index: usize) -> &str {
        match &self.sources {
            Some(Ok(sources)) => sources.get(index),
            _ => "",
        }
    }

    /// The `index`th event's text a scan's filters ask about; `None` past the end.
    pub fn text_fields(&mut self, index: usize) -> Result<Option<TextFields<'_>>, FormatError> {
        if index >= self.len() {
            return Ok(None);
        }
        self.load_text(index)?;
        Ok(Some(TextFields {
            source: self.source(index),
            message: self.messages.get(index).unwrap_or_default(),
            correlation_id: self.correlation_ids.get(index),
            trace_id: self.trace_ids.get(index),
        }))
    }

    /// The `index`th event whole; `None` past the end.
    pub fn event(&mut self, index: usize) -> Result<Option<BlockEvent>, FormatError> {
        if index >= self.len() {
            return Ok(None);
        }
        self.load_text(index)?;
        let kafka_offset = self.offsets()?[index];
        let owned = |column: &PartedTexts| column.get(index).map(str::to_owned);
        Ok(Some(BlockEvent {
            id: self.ids[index],
            timestamp_micros: self.times[index],
            level: self.levels[index],
            source: self.source(index).to_owned(),
            message: self.messages.get(index).unwrap_or_default().to_owned(),
            metadata: owned(&self.metadata),
            correlation_id: owned(&self.correlation_ids),
            request_id: owned(&self.request_ids),
            trace_id: owned(&self.trace_ids),
            kafka_offset,
        }))
    }

    /// Every event, in the block's order; an error if any part fails.
    pub fn events(mut self) -> Result<Vec<BlockEvent>, FormatError> {
        (0..self.len())
            .map(|i| self.event(i).map(|e| e.expect("an index below the count")))
            .collect()
    }
}
