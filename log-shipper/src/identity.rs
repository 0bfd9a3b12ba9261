//! Which file a line came from, and the event id derived from where it was read.
//!
//! A file is known by its device and inode, plus a fingerprint of its first line (at
//! most [`FINGERPRINT_BYTES`]): an inode the file system hands out again to a new file
//! gets a new fingerprint, so the new file neither inherits the old one's checkpoint
//! nor its ids. The id of an event is a UUID v5 of the host, that identity, the
//! file's truncation generation and the byte offset of the event's first line: the
//! same line read twice (after a crash) gets the same id, and the pipeline stores it once.

use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use uuid::Uuid;

/// Bytes of the start of a file that make its fingerprint (or up to the first newline).
pub const FINGERPRINT_BYTES: usize = 64;

/// The shipper's own UUID v5 namespace ("log-shipper" in the project's namespace family).
const NAMESPACE: Uuid = Uuid::from_u128(0x6c6f_6773_6869_7070_6572_0000_0000_0001);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FileKey {
    pub dev: u64,
    pub ino: u64,
    /// FNV-1a of the file's first line, or of its first 64 bytes when that line is longer.
    pub fingerprint: u64,
}

impl std::fmt::Display for FileKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{:016x}", self.dev, self.ino, self.fingerprint)
    }
}

/// The fingerprint of the start of `file`, or None while the file is too short to have
/// a stable one (no newline in fewer than 64 bytes: the first line is still being written).
pub fn fingerprint(file: &mut File) -> std::io::Result<Option<u64>> {
    let mut head = [0u8; FINGERPRINT_BYTES];
    file.seek(SeekFrom::Start(0))?;
    let mut filled = 0;
    while filled < head.len() {
        match file.read(&mut head[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(fingerprint_of(&head[..filled]))
}

pub fn fingerprint_of(head: &[u8]) -> Option<u64> {
    let end = match head.iter().position(|&b| b == b'\n') {
        Some(newline) => newline + 1,
        None if head.len() >= FINGERPRINT_BYTES => FINGERPRINT_BYTES,
        None => return None,
    };
    Some(fnv1a(&head[..end]))
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The id of the event whose first line starts at `offset`.
pub fn event_id(host: &str, key: &FileKey, generation: u32, offset: u64) -> Uuid {
    let name = format!("{host}\n{key}\n{generation}\n{offset}");
    Uuid::new_v5(&NAMESPACE, name.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_waits_for_a_first_line_or_64_bytes() {
        assert_eq!(fingerprint_of(b"partial line"), None);
        assert_eq!(
            fingerprint_of(b"first\nsecond"),
            fingerprint_of(b"first\nother")
        );
        assert_ne!(fingerprint_of(b"first\n"), fingerprint_of(b"frist\n"));
        let long = [b'x'; 100];
        assert_eq!(fingerprint_of(&long[..64]), fingerprint_of(&long));
    }

    #[test]
    fn ids_are_deterministic_and_differ_by_every_part() {
        let key = FileKey {
            dev: 1,
            ino: 2,
            fingerprint: 3,
        };
        let id = event_id("h", &key, 0, 10);
        assert_eq!(id, event_id("h", &key, 0, 10));
        assert_eq!(id.get_version_num(), 5);
        assert_ne!(id, event_id("h2", &key, 0, 10));
        assert_ne!(id, event_id("h", &key, 1, 10));
        assert_ne!(id, event_id("h", &key, 0, 11));
        let other = FileKey { ino: 9, ..key };
        assert_ne!(id, event_id("h", &other, 0, 10));
    }
}
