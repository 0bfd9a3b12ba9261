//! How a time window is counted exactly without reading its rows: whole days, hours
//! and minutes from the rollups, and only the partial minutes at its edges from the
//! rows. `/stats` and the totals of `/logs` both count this way.
//!
//! Each edge reads at most half a minute of rows: a partial minute that holds more
//! than half of its minute is taken as the whole minute's rollup less the rows outside
//! the window. A window that ends now takes its last bucket from the rollup less the
//! rows dated after its end (events from a clock a little ahead: few), instead of
//! finer buckets.
//!
//! The spans are only exact read together in one snapshot: the caller runs them in one
//! `REPEATABLE READ` transaction (the gateway runs every query so).

use chrono::{DateTime, DurationRound, TimeDelta, Utc};

/// A part of a window and where its events are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Span {
    /// Daily rollup buckets from `.0` (inclusive) to `.1` (exclusive).
    Days(DateTime<Utc>, DateTime<Utc>),
    /// Hourly rollup buckets, likewise.
    Hours(DateTime<Utc>, DateTime<Utc>),
    /// Minute rollup buckets, likewise.
    Minutes(DateTime<Utc>, DateTime<Utc>),
    /// Rows with `.0 <= timestamp < .1`.
    Rows(DateTime<Utc>, DateTime<Utc>),
    /// Rows with `.0 <= timestamp < .1`, taken away.
    LessRows(DateTime<Utc>, DateTime<Utc>),
}

pub(crate) fn floor(t: DateTime<Utc>, width: TimeDelta) -> DateTime<Utc> {
    t.duration_trunc(width).unwrap_or(t)
}

fn ceil(t: DateTime<Utc>, width: TimeDelta) -> DateTime<Utc> {
    let down = floor(t, width);
    if down == t {
        t
    } else {
        down + width
    }
}

/// Makes the span of one grain.
type SpanOf = fn(DateTime<Utc>, DateTime<Utc>) -> Span;

const MINUTE: TimeDelta = TimeDelta::minutes(1);

/// The rollup grains, coarsest first, and the span each makes.
const GRAINS: [(TimeDelta, SpanOf); 3] = [
    (TimeDelta::days(1), Span::Days),
    (TimeDelta::hours(1), Span::Hours),
    (MINUTE, Span::Minutes),
];

/// The spans that count `since <= timestamp < end` exactly, given the time `now`.
pub fn cover(since: DateTime<Utc>, end: DateTime<Utc>, now: DateTime<Utc>) -> Vec<Span> {
    cover_from(since, end, now, 0)
}

/// [`cover`] with no span coarser than an hour: for answers broken down by hour (a
/// day's rollup cannot say which hour its events fell in).
pub fn cover_by_hour(since: DateTime<Utc>, end: DateTime<Utc>, now: DateTime<Utc>) -> Vec<Span> {
    cover_from(since, end, now, 1)
}

/// Covers with grain `coarsest` of [`GRAINS`] and finer.
fn cover_from(
    since: DateTime<Utc>,
    end: DateTime<Utc>,
    now: DateTime<Utc>,
    coarsest: usize,
) -> Vec<Span> {
    let mut spans = Vec::new();
    if since < end {
        fill(since, end, now, coarsest, &mut spans);
    }
    // Adjacent spans of one grain become one (one statement instead of two).
    let mut merged: Vec<Span> = Vec::with_capacity(spans.len());
    for span in spans {
        match (merged.last_mut(), span) {
            (Some(Span::Days(_, end)), Span::Days(from, to)) if *end == from => *end = to,
            (Some(Span::Hours(_, end)), Span::Hours(from, to)) if *end == from => *end = to,
            (Some(Span::Minutes(_, end)), Span::Minutes(from, to)) if *end == from => *end = to,
            _ => merged.push(span),
        }
    }
    merged
}

/// Covers `from..to` with grain `level` and finer.
fn fill(
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    now: DateTime<Utc>,
    level: usize,
    spans: &mut Vec<Span>,
) {
    let Some((width, span)) = GRAINS.get(level) else {
        edge(from, to, spans);
        return;
    };
    let (a, b) = (ceil(from, *width), floor(to, *width));
    // Ends now, inside a bucket that starts within the window: that bucket's rollup,
    // less what is dated after the end.
    if to > b && to > now - MINUTE && from <= b {
        if from < b {
            fill(from, b, now, level, spans);
        }
        spans.push(span(b, b + *width));
        spans.push(Span::LessRows(to, b + *width));
        return;
    }
    if a >= b {
        // No whole bucket of this grain inside: finer ones.
        fill(from, to, now, level + 1, spans);
        return;
    }
    if from < a {
        fill(from, a, now, level + 1, spans);
    }
    spans.push(span(a, b));
    if b < to {
        fill(b, to, now, level + 1, spans);
    }
}

/// Covers `from..to`, less than a whole minute bucket (it may straddle two), from
/// rows: those inside, or the minute less those outside when fewer seconds lie there.
fn edge(from: DateTime<Utc>, to: DateTime<Utc>, spans: &mut Vec<Span>) {
    let (lo, hi) = (floor(from, MINUTE), ceil(to, MINUTE));
    if hi - lo > MINUTE {
        let split = ceil(from, MINUTE);
        edge(from, split, spans);
        edge(split, to, spans);
        return;
    }
    if to - from <= MINUTE / 2 {
        spans.push(Span::Rows(from, to));
        return;
    }
    // Taken away first, so the minute can merge with minutes that follow.
    if lo < from {
        spans.push(Span::LessRows(lo, from));
    }
    spans.push(Span::Minutes(lo, hi));
    if to < hi {
        spans.push(Span::LessRows(to, hi));
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use Span::*;

    #[test]
    fn an_hourly_cover_never_uses_a_day() {
        let t = |s: &str| s.parse::<DateTime<Utc>>().expect("time");
        // Three hours across midnight, ending now: `cover` takes today's day rollup
        // less the rest of the day; by the hour, today's hours stay apart.
        let (since, now) = (t("2026-11-29T23:25:00Z"), t("2026-11-30T02:25:00Z"));
        assert!(cover(since, now, now).iter().any(|s| matches!(s, Days(..))));
        let hourly = cover_by_hour(since, now, now);
        assert!(!hourly.iter().any(|s| matches!(s, Days(..))), "{hourly:?}");
        // A week, too.
        let week = cover_by_hour(t("2026-11-20T00:00:00Z"), t("2026-11-27T00:00:00Z"), now);
        assert_eq!(
            week,
            vec![Hours(t("2026-11-20T00:00:00Z"), t("2026-11-27T00:00:00Z"))]
        );
    }

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().expect("timestamp")
    }

    #[test]
    fn a_week_ending_now_is_days_plus_edge_hours_minutes_and_rows() {
        let now = at("2026-11-29T15:42:10.5Z");
        let since = at("2026-11-22T15:42:10.5Z");
        assert_eq!(
            cover(since, now, now),
            [
                // 49.5 s of the first minute are inside: the minute less 10.5 s.
                LessRows(at("2026-11-22T15:42:00Z"), since),
                Minutes(at("2026-11-22T15:42:00Z"), at("2026-11-22T16:00:00Z")),
                Hours(at("2026-11-22T16:00:00Z"), at("2026-11-23T00:00:00Z")),
                Days(at("2026-11-23T00:00:00Z"), at("2026-11-30T00:00:00Z")),
                LessRows(now, at("2026-11-30T00:00:00Z")),
            ]
        );
        // Within today: the hour ending now, less what follows.
        let hour_ago = at("2026-11-29T14:42:10.5Z");
        assert_eq!(
            cover(hour_ago, now, now),
            [
                LessRows(at("2026-11-29T14:42:00Z"), hour_ago),
                Minutes(at("2026-11-29T14:42:00Z"), at("2026-11-29T15:00:00Z")),
                Hours(at("2026-11-29T15:00:00Z"), at("2026-11-29T16:00:00Z")),
                LessRows(now, at("2026-11-29T16:00:00Z")),
            ]
        );
        // Within the hour: the minutes before this one and the minute ending now, in
        // one span, less what follows.
        let minutes_ago = at("2026-11-29T15:30:30Z");
        assert_eq!(
            cover(minutes_ago, now, now),
            [
                Rows(minutes_ago, at("2026-11-29T15:31:00Z")),
                Minutes(at("2026-11-29T15:31:00Z"), at("2026-11-29T15:43:00Z")),
                LessRows(now, at("2026-11-29T15:43:00Z")),
            ]
        );
    }

    #[test]
    fn a_closed_window_takes_its_tail_from_minutes_and_rows() {
        let now = at("2026-11-29T15:42:10Z");
        let (since, end) = (at("2026-11-29T08:00:00Z"), at("2026-11-29T10:30:30Z"));
        assert_eq!(
            cover(since, end, now),
            [
                Hours(since, at("2026-11-29T10:00:00Z")),
                Minutes(at("2026-11-29T10:00:00Z"), at("2026-11-29T10:30:00Z")),
                Rows(at("2026-11-29T10:30:00Z"), end),
            ]
        );
        // Inside one minute: the rows when they are under half of it, else the
        // minute less the rows outside.
        let short = (at("2026-11-29T10:00:10Z"), at("2026-11-29T10:00:35Z"));
        assert_eq!(cover(short.0, short.1, now), [Rows(short.0, short.1)]);
        let long = (at("2026-11-29T10:00:10Z"), at("2026-11-29T10:00:50Z"));
        assert_eq!(
            cover(long.0, long.1, now),
            [
                LessRows(at("2026-11-29T10:00:00Z"), long.0),
                Minutes(at("2026-11-29T10:00:00Z"), at("2026-11-29T10:01:00Z")),
                LessRows(long.1, at("2026-11-29T10:01:00Z")),
            ]
        );
        assert_eq!(cover(short.1, short.0, now), []);
    }

    /// Where an instant is counted: +1 for each span holding it, -1 for each taking
    /// it away.
    fn weight(spans: &[Span], t: DateTime<Utc>) -> i64 {
        let day = |t: DateTime<Utc>| floor(t, TimeDelta::days(1));
        let hour = |t: DateTime<Utc>| floor(t, TimeDelta::hours(1));
        let minute = |t: DateTime<Utc>| floor(t, TimeDelta::minutes(1));
        spans
            .iter()
            .map(|span| match *span {
                Days(a, b) => i64::from(day(t) >= a && day(t) < b),
                Hours(a, b) => i64::from(hour(t) >= a && hour(t) < b),
                Minutes(a, b) => i64::from(minute(t) >= a && minute(t) < b),
                Rows(a, b) => i64::from(t >= a && t < b),
                LessRows(a, b) => -i64::from(t >= a && t < b),
            })
            .sum()
    }

    proptest! {
        #[test]
        fn every_instant_is_counted_once_inside_the_window_and_never_outside(
            start in 0i64..400_000_000,
            length in 0i64..700_000_000,
            now_after_end in prop_oneof![Just(0i64), 0i64..100_000_000],
            probe in -100_000_000i64..1_300_000_000,
        ) {
            let base = at("2026-11-20T00:00:00Z");
            let since = base + TimeDelta::milliseconds(start);
            let end = since + TimeDelta::milliseconds(length);
            let now = end + TimeDelta::milliseconds(now_after_end);
            let spans = cover(since, end, now);
            let t = base + TimeDelta::milliseconds(probe);
            prop_assert_eq!(weight(&spans, t), i64::from(t >= since && t < end), "{:?} at {}", spans, t);
            // Rows are read only at the edges, at most half a minute each, plus what
            // lies after a window that ends now.
            for span in &spans {
                let rows = match *span {
                    Rows(a, b) => b - a,
                    LessRows(a, b) if a != end => b - a,
                    _ => TimeDelta::zero(),
                };
                prop_assert!(rows <= TimeDelta::seconds(30), "{:?} of {:?}", span, spans);
            }
        }
    }
}
