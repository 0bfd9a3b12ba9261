//! A DDSketch of `metadata.duration`: counts in logarithmically spaced buckets, so any
//! quantile is known within 1% of its value however many values went in, and sketches
//! of different minutes, hours and partitions add up exactly (they are only counts).
//!
//! Stored as a JSON object from bucket key to count (see the `rollups` migration, which
//! has the same key function for its backfill):
//! - `"k"` (an integer) counts the positive values in `(g^(k-1), g^k]`, `g = 1.01/0.99`;
//! - `"n<k>"` the negative values of those magnitudes;
//! - `"z"` the values within 1e-9 of zero.

use serde_json::{Map, Value};
use std::collections::BTreeMap;

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

    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        for (k, n) in self.positive.iter().filter(|(_, n)| **n != 0) {
            map.insert(k.to_string(), Value::from(*n));
        }
        for (k, n) in self.negative.iter().filter(|(_, n)| **n != 0) {
            map.insert(format!("n{k}"), Value::from(*n));
        }
        if self.zero != 0 {
            map.insert("z".into(), Value::from(self.zero));
        }
        Value::Object(map)
    }

    /// Reads the stored form; a key or count it does not know is skipped (and
    /// reported), so one damaged row cannot fail a whole `/stats`.
    pub fn from_json(value: &Value) -> Result<DurationSketch, String> {
        let mut sketch = DurationSketch::default();
        let Value::Object(map) = value else {
            return Err(format!("a sketch is a JSON object, not {value}"));
        };
        for (key, n) in map {
            let n = n
                .as_i64()
                .ok_or_else(|| format!("count of {key} is not an integer: {n}"))?;
            if key == "z" {
                sketch.zero += n;
            } else if let Some(k) = key.strip_prefix('n') {
                let k: i32 = k.parse().map_err(|_| format!("bad sketch key {key}"))?;
                *sketch.negative.entry(k).or_insert(0) += n;
            } else {
                let k: i32 = key.parse().map_err(|_| format!("bad sketch key {key}"))?;
                *sketch.positive.entry(k).or_insert(0) += n;
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
            prop_assert_eq!(DurationSketch::from_json(&all.to_json()).expect("reads"), all);
        }
    }

    #[test]
    fn an_empty_sketch_has_no_quantiles_and_removing_undoes_adding() {
        let mut sketch = DurationSketch::default();
        assert_eq!(sketch.quantile(0.5), None);
        sketch.add(12.5);
        sketch.add_n(12.5, -1);
        assert_eq!(sketch.count(), 0);
        assert_eq!(sketch.to_json(), serde_json::json!({}));
        sketch.add(f64::NAN);
        assert_eq!(sketch.count(), 0);
    }

    #[test]
    fn the_stored_keys_are_the_ones_the_migration_computes() {
        // log_sketch_key(x) in SQL: ceil(ln(x) / ln(1.01 / 0.99)).
        let mut sketch = DurationSketch::default();
        for v in [1.0, 100.0, -100.0, 0.0] {
            sketch.add(v);
        }
        assert_eq!(
            sketch.to_json(),
            serde_json::json!({"0": 1, "231": 1, "n231": 1, "z": 1})
        );
        assert!(DurationSketch::from_json(&serde_json::json!({"x": 1})).is_err());
    }
}
