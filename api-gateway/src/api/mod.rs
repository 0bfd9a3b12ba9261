//! The answers of the query API, with their OpenAPI schemas, and how they are put
//! together from what the store returns.
//!
//! - [`page`]: [`LogPage`], a page in Spring Data's shape plus the keyset cursor.
//! - [`stats`]: [`Stats`] and its parts, assembled from the store's aggregates.

pub mod page;
pub mod stats;

pub use page::LogPage;
pub use stats::{DurationPercentiles, HourlyCount, SourceCount, Stats, TimeRange};
