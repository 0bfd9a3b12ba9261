//! The answers of the query API, with their OpenAPI schemas, and how they are put
//! together from what the store returns.
//!
//! - [`page`]: [`LogPage`], a page in Spring Data's shape plus the keyset cursor.
//! - [`stats`]: [`Stats`] and its parts, assembled from the store's aggregates.
//! - [`dead_letters`]: the admin dead-letter endpoints' answers (entries with a
//!   payload preview, counts, replay results, the audit).
//! - [`histogram`]: [`Histogram`], every bucket of the window with its counts per level.

pub mod dead_letters;
pub mod histogram;
pub mod page;
pub mod stats;

pub use histogram::{Histogram, HistogramBucket};
pub use page::LogPage;
pub use stats::{DurationPercentiles, HourlyCount, SourceCount, Stats, TimeRange};
