//! log-store: everything that talks to PostgreSQL, for the consumer and the gateway.
//!
//! Synchronous diesel over an r2d2 pool; callers run it on a blocking thread.
//!
//! # Layout
//! - [`schema`]: diesel's view of the tables in `migrations/` (keep in step with them).
//! - [`models`]: the event row as written ([`NewLogEvent`]) and as read ([`EventRow`],
//!   which turns back into a `LogEvent` or says why it cannot).
//! - [`error`]: [`StoreError`], transient or permanent by SQLSTATE, with the diesel
//!   error as its source.
//! - [`pool`]: the connection pool and its per-connection `statement_timeout`.
//! - Writing (the consumer):
//!   - [`store`]: [`Store`], migrations, the fenced batch transaction;
//!   - [`offsets`]: partition claims (owner epochs), the fence check, stored offsets;
//!   - [`insert`]: the statement that stores a batch's new rows and remembers their ids;
//!   - [`blocks`]: the same batch stored as event blocks ([`Layout::Blocks`]), and the
//!     scan that reads them;
//!   - [`partitions`]: day partitions created ahead and on demand, dropped for
//!     retention, and the id generations;
//!   - [`dead_letters`]: the dead-letter index (payloads, reason kinds) and its replay
//!     audit; the gateway's admin endpoints read and replay from it;
//!   - [`rollups`]: events per minute and hour by level and source, and the duration
//!     [`sketch`], added in the same transaction as the rows; folded when settled.
//! - Reading (the gateway), one module per query family under [`queries`]: filters,
//!   pages with their totals, full-text search, stats, one event by id.

pub mod blocks;
pub mod dead_letters;
pub mod error;
pub mod insert;
pub mod models;
pub mod offsets;
pub mod partitions;
pub mod pool;
pub mod queries;
pub mod rollups;
pub mod schema;
pub mod sketch;
pub mod store;

pub use error::StoreError;
pub use models::{EventRow, JsonText, NewLogEvent};
pub use offsets::{PartitionClaim, PartitionCommit};
pub use partitions::{Upkeep, UpkeepReport};
pub use pool::{PgPool, QuerySession};
pub use store::{Layout, Store, MIGRATIONS};
