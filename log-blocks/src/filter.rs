//! The filters stored beside a block: which tokens its messages hold, and which ids,
//! correlation, request and trace ids its events carry. A query asks a filter first and
//! opens the block only on a "maybe"; a "no" is always right, a "maybe" is wrong for
//! about 1% of absent keys (10 bits and 7 probes a key).
//!
//! A key is hashed once with xxh3 (a published, fixed algorithm) under a seed per kind
//! of key, and fastbloom (pinned to one version: its probe sequence is what the stored
//! bits mean) sets and probes the bits from that hash.
//!
//! ```text
//! filter = version (1 byte) · probes (1 byte, 1..=16) · words (u64 little-endian)*, at least one
//! ```

use crate::FormatError;
use fastbloom::BloomFilter;
use xxhash_rust::xxh3::xxh3_64_with_seed;

const VERSION: u8 = 1;
const BITS_PER_KEY: usize = 10;
const PROBES: u32 = 7;
const MAX_PROBES: u8 = 16;

/// What a key names, so the same bytes as an id and as a word never collide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Token = 1,
    Id = 2,
    CorrelationId = 3,
    RequestId = 4,
    TraceId = 5,
}

/// The hash a filter stores for a key of a kind.
pub fn key_hash(kind: KeyKind, key: &[u8]) -> u64 {
    xxh3_64_with_seed(key, kind as u64)
}

/// A filter, built from the hashes of its keys or read back from its bytes.
#[derive(Debug, Clone)]
pub struct Filter {
    bloom: BloomFilter<IdentityHasher>,
}

impl Filter {
    /// A filter holding `hashes` (duplicates are fine): about 10 bits a distinct key.
    pub fn build(hashes: &[u64]) -> Filter {
        let mut distinct = hashes.to_vec();
        distinct.sort_unstable();
        distinct.dedup();
        let words = (distinct.len() * BITS_PER_KEY).div_ceil(64).max(1);
        let mut bloom = BloomFilter::from_vec(vec![0; words])
            .hasher(IdentityHasher)
            .hashes(PROBES);
        for hash in distinct {
            bloom.insert_hash(hash);
        }
        Filter { bloom }
    }

    /// Whether a key with this hash may be in the set (false: it is certainly not).
    pub fn may_contain(&self, hash: u64) -> bool {
        self.bloom.contains_hash(hash)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let words = self.bloom.as_slice();
        let mut out = Vec::with_capacity(2 + words.len() * 8);
        out.push(VERSION);
        // At most 16 by construction and by decoding.
        out.push(self.bloom.num_hashes() as u8);
        for word in words {
            out.extend_from_slice(&word.to_le_bytes());
        }
        out
    }

    /// Reads a filter back. Never panics, whatever the bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Filter, FormatError> {
        let [version, probes, words @ ..] = bytes else {
            return Err(FormatError::Truncated("filter"));
        };
        if *version != VERSION {
            return Err(FormatError::UnknownVersion(*version));
        }
        if *probes == 0 || *probes > MAX_PROBES {
            return Err(FormatError::Corrupt("filter", "probe count out of range"));
        }
        if words.is_empty() || words.len() % 8 != 0 {
            return Err(FormatError::Corrupt("filter", "not whole 64-bit words"));
        }
        let words = words
            .chunks_exact(8)
            .map(|chunk| {
                let mut word = [0u8; 8];
                word.copy_from_slice(chunk);
                u64::from_le_bytes(word)
            })
            .collect();
        let bloom = BloomFilter::from_vec(words)
            .hasher(IdentityHasher)
            .hashes(u32::from(*probes));
        Ok(Filter { bloom })
    }
}

/// fastbloom hashes what it is given through a `BuildHasher`; every key here is hashed
/// already (xxh3, [`key_hash`]) and only the `_hash` methods are called, so this one is
/// never asked to hash anything: it only satisfies the type.
#[derive(Debug, Clone, Copy, Default)]
struct IdentityHasher;

impl std::hash::BuildHasher for IdentityHasher {
    type Hasher = std::hash::DefaultHasher;

    fn build_hasher(&self) -> Self::Hasher {
        std::hash::DefaultHasher::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hashes(keys: &[&str]) -> Vec<u64> {
        keys.iter()
            .map(|k| key_hash(KeyKind::Token, k.as_bytes()))
            .collect()
    }

    #[test]
    fn holds_every_key_and_few_others() {
        let keys: Vec<String> = (0..5_000).map(|i| format!("key{i}")).collect();
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let filter = Filter::build(&hashes(&refs));
        assert!(hashes(&refs).iter().all(|h| filter.may_contain(*h)));
        let false_positives = (0..10_000)
            .map(|i| key_hash(KeyKind::Token, format!("absent{i}").as_bytes()))
            .filter(|h| filter.may_contain(*h))
            .count();
        // 10 bits and 7 probes a key: about 0.8%.
        assert!(false_positives < 200, "{false_positives} of 10,000");
    }

    #[test]
    fn kinds_do_not_collide() {
        let filter = Filter::build(&[key_hash(KeyKind::Id, b"abc")]);
        assert!(filter.may_contain(key_hash(KeyKind::Id, b"abc")));
        assert_ne!(
            key_hash(KeyKind::Id, b"abc"),
            key_hash(KeyKind::Token, b"abc")
        );
    }

    /// The bits of a stored filter must keep their meaning: if fastbloom or xxh3 ever
    /// probed differently, every stored filter would answer "no" for keys it holds.
    /// Change these bytes only together with the filter's VERSION.
    #[test]
    fn a_stored_filter_keeps_its_meaning() {
        let keys = [
            "timeout",
            "db-01.example.com",
            "503",
            "user_id",
            "10.0.0.12",
            "panic",
        ];
        let stored = Filter::build(&hashes(&keys)).to_bytes();
        assert_eq!(hex(&stored), GOLDEN);
        let read = Filter::from_bytes(&stored).expect("test value");
        assert!(hashes(&keys).iter().all(|h| read.may_contain(*h)));
    }

    const GOLDEN: &str = "010796c664768a81c648";

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn bad_bytes_are_errors() {
        for bytes in [
            &[][..],
            &[1],
            &[2, 7, 0, 0, 0, 0, 0, 0, 0, 0],
            &[1, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            &[1, 7, 0, 0, 0],
        ] {
            assert!(Filter::from_bytes(bytes).is_err(), "{bytes:?}");
        }
    }

    proptest! {
        #[test]
        fn round_trips_through_bytes(keys: Vec<u64>, probe: u64) {
            let filter = Filter::build(&keys);
            let read = Filter::from_bytes(&filter.to_bytes()).expect("test value");
            for key in &keys {
                prop_assert!(read.may_contain(*key));
            }
            prop_assert_eq!(filter.may_contain(probe), read.may_contain(probe));
        }

        #[test]
        fn any_bytes_never_panic(bytes: Vec<u8>, probe: u64) {
            if let Ok(filter) = Filter::from_bytes(&bytes) {
                let _ = filter.may_contain(probe);
            }
        }
    }
}
