//! Checkpoints: per file, its identity and the offset up to which every line has been
//! acknowledged by the producer (a 2xx covering it). One JSON file in the state
//! directory, replaced atomically: written to a temporary file, flushed to disk, then
//! renamed over the old one, so a crash leaves either the old or the new, never half.

use crate::identity::FileKey;
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

const FILE_NAME: &str = "checkpoints.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    #[serde(flatten)]
    pub key: FileKey,
    /// Bumped each time the file is found truncated in place (copytruncate) with the
    /// same first line, so the new lines get ids of their own.
    pub generation: u32,
    /// Every line before this byte is acknowledged.
    pub offset: u64,
    /// Where the file was last seen (a rotated file is looked for beside it).
    pub path: PathBuf,
}

#[derive(Debug, Serialize, Deserialize)]
struct OnDisk {
    version: u32,
    files: Vec<Entry>,
}

/// The checkpoints, in memory and on disk.
#[derive(Debug)]
pub struct Checkpoints {
    dir: PathBuf,
    entries: BTreeMap<FileKey, Entry>,
}

impl Checkpoints {
    /// Loads the state directory's checkpoints (none on a first start), creating it.
    pub fn load(dir: &Path) -> anyhow::Result<Checkpoints> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the state directory {}", dir.display()))?;
        let file = dir.join(FILE_NAME);
        let entries = match std::fs::read(&file) {
            Ok(bytes) => {
                let on_disk: OnDisk = serde_json::from_slice(&bytes)
                    .with_context(|| format!("reading the checkpoints in {}", file.display()))?;
                on_disk.files.into_iter().map(|e| (e.key, e)).collect()
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => {
                return Err(e).with_context(|| format!("reading {}", file.display()));
            }
        };
        Ok(Checkpoints {
            dir: dir.to_owned(),
            entries,
        })
    }

    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    /// Moves a file's checkpoint on (never back within one generation).
    pub fn advance(&mut self, entry: Entry) {
        match self.entries.get_mut(&entry.key) {
            Some(old) if old.generation == entry.generation && old.offset > entry.offset => {
                old.path = entry.path;
            }
            _ => {
                self.entries.insert(entry.key, entry);
            }
        }
    }

    /// Forgets a file the shipper has left (deleted, or rotated away and finished).
    pub fn release(&mut self, key: &FileKey) {
        self.entries.remove(key);
    }

    /// Writes the checkpoints atomically (temporary file, fsync, rename).
    pub fn save(&self) -> anyhow::Result<()> {
        let on_disk = OnDisk {
            version: 1,
            files: self.entries.values().cloned().collect(),
        };
        let bytes = serde_json::to_vec_pretty(&on_disk)?;
        let target = self.dir.join(FILE_NAME);
        let temporary = self.dir.join(format!("{FILE_NAME}.tmp"));
        let mut file = std::fs::File::create(&temporary)
            .with_context(|| format!("creating {}", temporary.display()))?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, &target)
            .with_context(|| format!("replacing {}", target.display()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(ino: u64, offset: u64) -> Entry {
        Entry {
            key: FileKey {
                dev: 1,
                ino,
                fingerprint: 7,
            },
            generation: 0,
            offset,
            path: PathBuf::from("/var/log/app.log"),
        }
    }

    #[test]
    fn checkpoints_survive_a_restart_and_never_move_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut checkpoints = Checkpoints::load(dir.path()).expect("load");
        checkpoints.advance(entry(2, 100));
        checkpoints.advance(entry(2, 50));
        checkpoints.advance(entry(3, 10));
        checkpoints.release(&entry(3, 0).key);
        checkpoints.save().expect("save");
        let loaded = Checkpoints::load(dir.path()).expect("reload");
        assert_eq!(
            loaded.entries().cloned().collect::<Vec<_>>(),
            vec![entry(2, 100)]
        );
        assert!(!dir.path().join("checkpoints.json.tmp").exists());
    }
}
