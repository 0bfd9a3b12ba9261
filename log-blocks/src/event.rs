//! What a block holds for each event, and what a query reads about a block without
//! opening it.

/// One event as a block stores it. Times are microseconds since the Unix epoch (what a
/// PostgreSQL `timestamptz` holds); the level is its index in [`LEVELS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockEvent {
    pub id: u128,
    pub timestamp_micros: i64,
    pub level: u8,
    pub source: String,
    pub message: String,
    /// A JSON object, serialised.
    pub metadata: Option<String>,
    pub correlation_id: Option<String>,
    pub request_id: Option<String>,
    pub trace_id: Option<String>,
    /// Where in its Kafka partition the event was read; the partition and lane are the
    /// block's, not the event's.
    pub kafka_offset: i64,
}

/// The levels in their stored order: a level's code is its index.
pub const LEVELS: [&str; 6] = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"];

/// The code of a level name, if it is one of [`LEVELS`].
pub fn level_code(name: &str) -> Option<u8> {
    LEVELS.iter().position(|l| *l == name).map(|i| i as u8)
}

/// What a query reads of a block without opening it (kept in the block's row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockSummary {
    pub events: u32,
    pub min_time_micros: i64,
    pub max_time_micros: i64,
    pub min_offset: i64,
    pub max_offset: i64,
    /// Events per level code.
    pub level_counts: [u32; 6],
    /// The distinct sources, sorted.
    pub sources: Vec<String>,
}

impl BlockSummary {
    /// The summary of a non-empty slice of events; `None` for an empty one.
    pub fn of(events: &[BlockEvent]) -> Option<BlockSummary> {
        let first = events.first()?;
        let mut summary = BlockSummary {
            events: 0,
            min_time_micros: first.timestamp_micros,
            max_time_micros: first.timestamp_micros,
            min_offset: first.kafka_offset,
            max_offset: first.kafka_offset,
            level_counts: [0; 6],
            sources: Vec::new(),
        };
        for event in events {
            summary.events += 1;
            summary.min_time_micros = summary.min_time_micros.min(event.timestamp_micros);
            summary.max_time_micros = summary.max_time_micros.max(event.timestamp_micros);
            summary.min_offset = summary.min_offset.min(event.kafka_offset);
            summary.max_offset = summary.max_offset.max(event.kafka_offset);
            if let Some(count) = summary.level_counts.get_mut(usize::from(event.level)) {
                *count += 1;
            }
            if !summary.sources.contains(&event.source) {
                summary.sources.push(event.source.clone());
            }
        }
        summary.sources.sort();
        Some(summary)
    }
}
