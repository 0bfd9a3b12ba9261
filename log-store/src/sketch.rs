//! A DDSketch of `metadata.duration`: counts in logarithmically spaced buckets, so any
//! quantile is known within 1% of its value however many values went in, and sketches
//! of different minutes, hours and partitions add up exactly (they are only counts).
//!
//! Stored as an `int8[]` of key-count pairs by ascending key, read and written in
//! PostgreSQL's binary form (a JSON object per sketch cost the gateway ~50 ms of parsing
//! for a week of hours; BENCHMARKS.md). Keys:
//! - `k` counts the positive values in `(g^(k-1), g^k]`, `g = 1.01/0.99`;
//! - `NEGATIVE_BASE + k` the negative values of those magnitudes;
//! - `ZERO_KEY` the values within 1e-9 of zero.
//!
//! The `sketch_arrays` migration has the same encoding, and `log_sketch_add`, which
//! adds two sketches in SQL (upserts and folds).

use std::collections::BTreeMap;

/// Added to a negative value's bucket index (which stays within ±100,000 for any f64).
const NEGATIVE_BASE: i64 = 1_000_000_000_000;
const ZERO_KEY: i64 = 2_000_000_000_000;

/// A quantile is within this fraction of the true value.
pub const RELATIVE_ACCURACY: f64 = 0.01;
const ZERO: f64 = 1e-9;

fn gamma() -> f64 {
    (1.0 + RELATIVE_ACCURACY) / (1.0 - RELATIVE_ACCURACY)
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct DurationSketch {
    positive: BTreeMap<i32, i64>,
    negative: BTreeMap<i32, i64>,
    zero: i64,
}

fn key_of(magnitude: f64) -> i32 {
    // Values far outside f64's usual range saturate to the end buckets.
    (magnitude.ln() / gamma().ln()).ceil() as i32
}

/// The value a bucket stands for: the point of its range with the smallest worst
/// relative error.
fn value_of(key: i32) -> f64 {
    2.0 * gamma().powi(key) / (gamma() + 1.0)
}

impl DurationSketch {
    pub fn add(&mut self, value: f64) {
        self.add_n(value, 1);
    }

    /// Adds `n` (negative: removes) occurrences of `value`. NaN and infinities are
    /// ignored: they have no place on the scale.
    pub fn add_n(&mut self, value: f64, n: i64) {
        if !value.is_finite() {
            return;
        }
        if value.abs() <= ZERO {
            self.zero += n;
        } else if value > 0.0 {
            *self.positive.entry(key_of(value)).or_insert(0) += n;
        } else {
            *self.negative.entry(key_of(-value)).or_insert(0) += n;
        }
    }

    pub fn merge(&mut self, other: &DurationSketch) {
        for (k, n) in &other.positive {
            *self.positive.entry(*k).or_insert(0) += n;
        }
        for (k, n) in &other.negative {
            *self.negative.entry(*k).or_insert(0) += n;
        }
        self.zero += other.zero;
    }

    /// How many values it holds.
    pub fn count(&self) -> i64 {
        self.positive.values().sum::<i64>() + self.negative.values().sum::<i64>() + self.zero
    }

    /// The `q` quantile (0..=1): the value of rank `q·(count−1)` among the values in
    /// ascending order, within [`RELATIVE_ACCURACY`]; None when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let count = self.count();
        if count <= 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * (count - 1) as f64).floor() as i64;
        let mut seen = 0;
        // Ascending: the most negative first, then zero, then the positives.
        for (k, n) in self.negative.iter().rev() {
            seen += n;
            if seen > rank {
                return Some(-value_of(*k));
            }
        }
        seen += self.zero;
        if seen > rank {
            return Some(0.0);
        }
        for (k, n) in &self.positive {
            seen += n;
            if seen > rank {
                return Some(value_of(*k));
            }
        }
        self.positive.keys().next_back().map(|k| value_of(*k))
    }

    /// The stored form: `[key, count, key, count, …]` by ascending key.
    pub fn to_pairs(&self) -> Vec<i64> {
        let mut pairs = Vec::new();
        let mut push = |key: i64, n: i64| {
            if n != 0 {
                pairs.extend([key, n]);
            }
        };
        for (k, n) in &self.positive {
            push(i64::from(*k), *n);
        }
        for (k, n) in &self.negative {
            push(NEGATIVE_BASE + i64::from(*k), *n);
        }
        push(ZERO_KEY, self.zero);
        pairs
    }

    /// Reads the stored form back.
    pub fn from_pairs(pairs: &[i64]) -> Result<DurationSketch, String> {
        if !pairs.len().is_multiple_of(2) {
            return Err(format!(
                "a sketch holds key-count pairs, not {} numbers",
                pairs.len()
            ));
        }
        let mut sketch = DurationSketch::default();
        for pair in pairs.chunks_exact(2) {
            let (key, n) = (pair[0], pair[1]);
            let index = |k: i64| i32::try_from(k).map_err(|_| format!("bad sketch key {key}"));
            if key == ZERO_KEY {
                sketch.zero += n;
            } else if key > NEGATIVE_BASE / 2 {
                *sketch
                    .negative
                    .entry(index(key - NEGATIVE_BASE)?)
                    .or_insert(0) += n;
            } else {
                *sketch.positive.entry(index(key)?).or_insert(0) += n;
            }
        }
        Ok(sketch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The value of rank `q·(n−1)`, as the sketch defines its quantiles.
    fn exact(sorted: &[f64], q: f64) -> f64 {
        sorted[(q * (sorted.len() - 1) as f64).floor() as usize]
    }

    fn within(estimate: f64, truth: f64, accuracy: f64) -> bool {
        (estimate - truth).abs() <= accuracy * truth.abs() + 1e-12
    }

    proptest! {
        #[test]
        fn every_quantile_is_within_the_relative_accuracy(
            values in prop::collection::vec(
                prop_oneof![1e-6f64..1e-3, 0.5f64..2000.0, 1e3f64..1e9, -1e4f64..-1e-3, Just(0.0)],
                1..2000),
            q in 0.0f64..=1.0,
        ) {
            let mut sketch = DurationSketch::default();
            for v in &values {
                sketch.add(*v);
            }
            let mut sorted = values.clone();
            sorted.sort_by(f64::total_cmp);
            let estimate = sketch.quantile(q).expect("not empty");
            prop_assert!(within(estimate, exact(&sorted, q), RELATIVE_ACCURACY),
                "q {q}: {estimate} vs {}", exact(&sorted, q));
        }

        #[test]
        fn merged_sketches_equal_one_sketch_of_all_values(
            a in prop::collection::vec(-1e6f64..1e6, 0..300),
            b in prop::collection::vec(-1e6f64..1e6, 0..300),
        ) {
            let (mut left, mut right, mut all) = Default::default();
            for v in &a { DurationSketch::add(&mut left, *v); DurationSketch::add(&mut all, *v); }
            for v in &b { DurationSketch::add(&mut right, *v); DurationSketch::add(&mut all, *v); }
            let mut merged: DurationSketch = left;
            merged.merge(&right);
            prop_assert_eq!(&merged, &all);
            // And the stored form reads back as the same sketch.
            prop_assert_eq!(DurationSketch::from_pairs(&all.to_pairs()).expect("reads"), all);
        }
    }

    #[test]
    fn an_empty_sketch_has_no_quantiles_and_removing_undoes_adding() {
        let mut sketch = DurationSketch::default();
        assert_eq!(sketch.quantile(0.5), None);
        sketch.add(12.5);
        sketch.add_n(12.5, -1);
        assert_eq!(sketch.count(), 0);
        assert_eq!(sketch.to_pairs(), Vec::<i64>::new());
        sketch.add(f64::NAN);
        assert_eq!(sketch.count(), 0);
    }

    #[test]
    fn the_stored_keys_are_the_ones_the_migrations_compute() {
        // log_sketch_key(x) in SQL: ceil(ln(x) / ln(1.01 / 0.99)); 'n…' and 'z' become
        // NEGATIVE_BASE + k and ZERO_KEY in the `sketch_arrays` migration.
        let mut sketch = DurationSketch::default();
        for v in [1.0, 100.0, 100.0, -100.0, -0.5, 0.0] {
            sketch.add(v);
        }
        let pairs = [
            (0, 1),
            (231, 2),
            (NEGATIVE_BASE - 34, 1),
            (NEGATIVE_BASE + 231, 1),
            (ZERO_KEY, 1),
        ];
        let flat: Vec<i64> = pairs.into_iter().flat_map(|(k, n)| [k, n]).collect();
        assert_eq!(sketch.to_pairs(), flat);
        assert!(DurationSketch::from_pairs(&[1, 2, 3]).is_err());
    }
}
