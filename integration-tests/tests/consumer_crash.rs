//! kill -9 of the stack's consumer, twice, in the middle of a stream on both topics
//! (INFO on the normal one, ERROR on the priority one): afterwards the table holds
//! every acknowledged event exactly once.
//!
//! Its own test binary, so no other test runs while the consumer is being killed.

#[path = "api/helpers.rs"]
mod helpers;

use helpers::{eventually, require_infrastructure, setup, stack, unique};
use std::collections::HashSet;
use std::process::Command;
use std::time::Duration;

fn kill_consumer() {
    let pid = setup(&["pid", "consumer"]);
    let status = Command::new("kill")
        .args(["-9", &pid])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -9 {pid}");
}

#[tokio::test]
async fn every_event_is_stored_exactly_once_across_two_kill_9s() {
    require_infrastructure();
    let source = unique("crash");
    let mut acked: HashSet<String> = HashSet::new();
    for round in 0..30 {
        // Every third batch is ERROR: both topics are in flight at each kill.
        let level = if round % 3 == 0 { "ERROR" } else { "INFO" };
        let body = stack::ingest_batch(&source, level, 200, |i| format!("r{round} e{i}")).await;
        assert_eq!(body["failureCount"], 0, "{body}");
        for i in 0..200 {
            acked.insert(format!("r{round} e{i}"));
        }
        if round == 10 || round == 20 {
            kill_consumer();
            // Keep producing while it is dead, then bring it back mid-stream.
            tokio::time::sleep(Duration::from_millis(300)).await;
            if round == 20 {
                setup(&["start", "consumer"]);
            }
        }
        if round == 12 {
            setup(&["start", "consumer"]);
        }
    }
    let expected = acked.len();
    eventually(
        &format!("{expected} rows"),
        Duration::from_secs(120),
        || {
            let source = source.clone();
            async move { (stack::rows_for_source(&source).len() >= expected).then_some(()) }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rows = stack::rows_for_source(&source);
    assert_eq!(rows.len(), expected, "exactly once: no loss, no duplicate");
    assert_eq!(
        rows.iter().map(|r| r.id).collect::<HashSet<_>>().len(),
        expected
    );
    let errors = rows.iter().filter(|r| r.level == "ERROR").count();
    assert_eq!(errors, 10 * 200, "every ERROR batch stored");
    assert!(
        rows.iter().all(|r| (r.level == "ERROR") == (r.lane == 1)),
        "ERROR came through the priority topic, INFO through the normal one"
    );
    // The minute counts moved with the rows, in the same transactions: the batches
    // read again after each kill -9 counted nothing twice.
    assert_eq!(
        stack::counted_events(&source),
        expected as i64,
        "per-minute counts equal the rows"
    );
}
