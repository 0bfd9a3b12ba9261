//! The gateway's reads, one module per query family. Each takes a connection and
//! returns [`QueryError`](crate::error::QueryError); the caller owns the pool, the
//! blocking thread and the circuit breaker.
//!
//! - [`budget`]: a statement with a time budget of its own, given up past it.
//! - [`cover`]: how a window is counted from rollups and edge rows, exactly.
//! - [`filter`]: the filter every page shares, as one boxed diesel predicate.
//! - [`search`]: the full-text condition over the generated `search_vector`.
//! - [`layouts`]: which tables hold events (rows, blocks or both while rows move
//!   into blocks); the page and the lookup by id over them.
//! - [`page`]: a page of rows newest first (offset or keyset), several levels merged.
//! - [`total`]: the total of a page's filter, exact or bounded.
//! - [`stats`]: the window's hourly counts, busiest sources and duration sketch, from
//!   the rollups (and the events of the partial minutes at its edges).
//! - [`histogram`]: events per bucket and level, from the rollups (or, with full text,
//!   from the matching events, capped).
//! - [`tail`]: the events stored since a cursor of per-partition offsets (the live tail).
//! - [`by_id`]: one event, and the health probe.

pub mod budget;
pub mod by_id;
pub mod cover;
pub mod filter;
pub mod histogram;
pub mod layouts;
pub mod page;
pub mod search;
pub mod stats;
pub mod tail;
pub mod total;

pub use by_id::ping;
pub use filter::{Conditions, EventFilter};
pub use histogram::{histogram, BucketCounts, TEXT_MATCH_CAP};
pub use layouts::{find, page};
pub use page::{Budgets, Cursor, PageResult, Paging};
pub use stats::{stats, HourLevelCount, SourceCount, StatsRows};
pub use tail::{TailCursor, TailEvent, TailPoll, TailTopics, TopicPartition};
pub use total::COUNT_CAP;
