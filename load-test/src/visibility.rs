//! e2e mode: how long sampled events take from their request being due to their row
//! being committed in PostgreSQL, which is where the gateway reads them from.
//!
//! One query per interval looks up every outstanding sample at once, so measuring adds
//! about 20 small queries a second to PostgreSQL instead of a poll per sample to the
//! gateway (which, with hundreds of samples outstanding, loaded the stack it measured).

use diesel::prelude::*;
use diesel::sql_types::{Array, Uuid as SqlUuid};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// How often the outstanding samples are looked up: the resolution of the figures.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// A sample not stored this long after it was due counts as never visible.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(30);

#[derive(Default)]
pub struct Outcome {
    /// Milliseconds from due to stored, one entry per sample found.
    pub visible_after_ms: Vec<u64>,
    pub never_visible: u64,
}

/// Samples handed over by the ingest workers, looked up by one background thread.
#[derive(Clone)]
pub struct Tracker {
    outstanding: Arc<Mutex<HashMap<Uuid, Instant>>>,
}

impl Tracker {
    pub fn new() -> Self {
        Tracker {
            outstanding: Arc::default(),
        }
    }

    /// Follows `id`, whose request was due at `due`.
    pub fn track(&self, id: Uuid, due: Instant) {
        if let Ok(mut outstanding) = self.outstanding.lock() {
            outstanding.insert(id, due);
        }
    }

    /// Looks the samples up until `load_done` is set and none is left (or the last
    /// ones have waited `GIVE_UP_AFTER`). Runs on a thread of its own: diesel blocks.
    pub fn spawn(
        &self,
        postgres_url: String,
        load_done: Arc<std::sync::atomic::AtomicBool>,
    ) -> std::thread::JoinHandle<anyhow::Result<Outcome>> {
        let outstanding = self.outstanding.clone();
        std::thread::spawn(move || {
            let mut conn = PgConnection::establish(&postgres_url)?;
            let mut outcome = Outcome::default();
            loop {
                let started = Instant::now();
                let pending: Vec<Uuid> = match outstanding.lock() {
                    Ok(o) => o.keys().copied().collect(),
                    Err(_) => anyhow::bail!("sample list poisoned"),
                };
                if pending.is_empty() && load_done.load(std::sync::atomic::Ordering::SeqCst) {
                    return Ok(outcome);
                }
                let stored: Vec<Uuid> = if pending.is_empty() {
                    Vec::new()
                } else {
                    diesel::sql_query("SELECT id FROM log_events WHERE id = ANY($1)")
                        .bind::<Array<SqlUuid>, _>(&pending)
                        .load::<StoredId>(&mut conn)?
                        .into_iter()
                        .map(|r| r.id)
                        .collect()
                };
                let seen = Instant::now();
                if let Ok(mut o) = outstanding.lock() {
                    for id in stored {
                        if let Some(due) = o.remove(&id) {
                            outcome
                                .visible_after_ms
                                .push(seen.duration_since(due).as_millis().max(1) as u64);
                        }
                    }
                    let before = o.len();
                    o.retain(|_, due| seen.duration_since(*due) < GIVE_UP_AFTER);
                    outcome.never_visible += (before - o.len()) as u64;
                }
                if let Some(rest) = POLL_INTERVAL.checked_sub(started.elapsed()) {
                    std::thread::sleep(rest);
                }
            }
        })
    }
}

#[derive(QueryableByName)]
struct StoredId {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
}
