//! log-blocks: many events in one stored value, column by column, compressed, with the
//! filters that let a query skip the blocks that cannot hold what it asks for.
//!
//! Pure: bytes in, bytes out, no database and no I/O, so every part is tested alone
//! and a corrupt block is an error value, never a panic. `log-store` keeps the blocks
//! in PostgreSQL; this crate knows only their bytes.
//!
//! # Layout (the path a block takes)
//! - [`event`]: [`BlockEvent`], what a block holds per event, and [`BlockSummary`],
//!   what a query reads of a block without opening it.
//! - [`columns`]: each field's layout as a column.
//! - [`format`]: the versioned container of zstd-compressed columns ([`encode`],
//!   [`decode`]).
//! - [`parts`]: text columns in parts, so a reader inflates only the parts it needs.
//! - [`filter`]: the token and key filters stored beside a block.
//! - [`tokens`]: how a message is cut into the terms search matches and filters hold.
//! - [`search`]: the search syntax, matched in Rust, and the filter question it asks.
//! - [`build`]: one call from events to everything a block's row stores.
//! - [`varint`]: bounds-checked varints under all of the above.

pub mod build;
pub mod columns;
pub mod event;
pub mod filter;
pub mod format;
pub mod parts;
pub mod search;
pub mod tokens;
pub mod varint;

pub use build::{build, BuiltBlock};
pub use event::{level_code, BlockEvent, BlockSummary, LEVELS};
pub use filter::{key_hash, Filter, KeyKind};
pub use format::{
    decode, decode_times_and_levels, encode, times_and_levels_of_prefix, OpenBlock, TextFields,
    TimesAndLevels, MAX_EVENTS, VERSION,
};
pub use search::Query;

/// Why bytes are not a block (or a filter) this code can read, or why events cannot
/// be one block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("{0}: the bytes end too early")]
    Truncated(&'static str),
    #[error("{0}: {1}")]
    Corrupt(&'static str, &'static str),
    #[error("format version {0} is not one this build reads")]
    UnknownVersion(u8),
    #[error("unknown column tag {0}")]
    UnknownColumn(u8),
    #[error("{0}: past the block's size bound")]
    TooLarge(&'static str),
}
