//! Follows the files: finds them by glob, reads their new lines, joins stack traces,
//! builds events and hands batches to the sender. Runs on a thread of its own (file
//! reads block); when the sender's channel is full it blocks too, so reading pauses
//! while the producer is away.
//!
//! Rotation:
//! - rename and create: the renamed file is kept open and read to its end; it is left
//!   once it is no longer matched by the globs (or is deleted), has been quiet for the
//!   rotation grace (a scan interval, at least 1 s), and all of it is in a batch. The new
//!   file is found by the next scan (or at once by `notify`) and read from its start.
//! - copytruncate: a file shorter than the position reached was truncated; it is read
//!   again from its start under a new identity (its new first line) or, when the first
//!   line is the same, a new generation, so the new lines get new ids. Lines written
//!   between the shipper's last read and the truncation are lost: copytruncate itself
//!   cannot avoid that (logrotate's manual says so).
//! - a deleted file is read to its end, then released (its checkpoint is dropped).
//! - after a restart, a checkpointed file no glob matches any more (rotated while the
//!   shipper was down) is looked for by device and inode beside its last path, and
//!   finished from its checkpoint.

use crate::checkpoint::Entry;
use crate::identity::{event_id, fingerprint, FileKey};
use crate::metrics::Metrics;
use crate::multiline::{Joined, Joiner};
use crate::parse::{self, RawFlags};
use crate::sender::{Acked, Batch};
use crate::settings::{Settings, StartAt};
use log_common::domain::MAX_MESSAGE_BYTES;
use regex::Regex;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Bytes of a line kept; the rest of a longer line is skipped up to its newline, so a
/// line of any length costs bounded memory. (+1 for a `\r` before the newline.)
const LINE_CAP: usize = MAX_MESSAGE_BYTES + 1;
/// Read per file per pass, so one busy file does not starve the others.
const READ_PER_PASS: usize = 4 << 20;
/// Room kept in a batch for one more event (32 KiB message, 16 KiB metadata, fields).
const EVENT_ROOM: usize = 64 << 10;

pub struct Reader {
    globs: Vec<String>,
    start_at: StartAt,
    settings: Settings,
    host: String,
    level_regex: Option<Regex>,
    metrics: Metrics,
    acked: Acked,
    files: Vec<Tracked>,
    /// Latest known position of every file identity: the loaded checkpoints, then what
    /// this reader has marked. Says where a (re)discovered file resumes.
    known: HashMap<FileKey, Entry>,
    outbox: Outbox,
    wake: Receiver<()>,
    scan_requested: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    buffer: Vec<u8>,
}

struct Outbox {
    batch: Batch,
    started: Option<Instant>,
    out: mpsc::Sender<Batch>,
    max_events: usize,
    max_bytes: usize,
    wait: Duration,
    stopped: bool,
}

struct Tracked {
    key: FileKey,
    generation: u32,
    path: PathBuf,
    path_label: String,
    source: String,
    file: File,
    /// Position of the next byte to read.
    read_pos: u64,
    /// The line being read (at most LINE_CAP bytes of it), where it starts, and its
    /// length so far including what was skipped.
    line: Vec<u8>,
    line_start: u64,
    line_len: u64,
    joiner: Joiner,
    /// The offset last put in a batch mark.
    marked: u64,
    last_data: Instant,
    in_glob: bool,
    size: u64,
}

pub struct Channels {
    pub out: mpsc::Sender<Batch>,
    pub wake: Receiver<()>,
    pub scan_requested: Arc<AtomicBool>,
    pub stop: Arc<AtomicBool>,
}

impl Reader {
    pub fn new(
        settings: &Settings,
        host: String,
        known: Vec<Entry>,
        metrics: Metrics,
        acked: Acked,
        channels: Channels,
    ) -> anyhow::Result<Reader> {
        let level_regex = settings
            .level_regex
            .as_deref()
            .map(Regex::new)
            .transpose()
            .map_err(|e| anyhow::anyhow!("--level-regex / SHIPPER_LEVEL_REGEX: {e}"))?;
        for glob in &settings.paths {
            glob::Pattern::new(glob).map_err(|e| anyhow::anyhow!("--path {glob}: {e}"))?;
        }
        Ok(Reader {
            globs: settings.paths.clone(),
            start_at: settings.start_at,
            settings: settings.clone(),
            host,
            level_regex,
            metrics,
            acked,
            files: Vec::new(),
            known: known.into_iter().map(|e| (e.key, e)).collect(),
            outbox: Outbox {
                batch: Batch::default(),
                started: None,
                out: channels.out,
                max_events: settings.batch_max_events as usize,
                max_bytes: (settings.batch_max_kib as usize) << 10,
                wait: Duration::from_millis(settings.batch_wait_ms),
                stopped: false,
            },
            wake: channels.wake,
            scan_requested: channels.scan_requested,
            stop: channels.stop,
            buffer: vec![0; 64 << 10],
        })
    }

    /// Follows the files until told to stop (or the sender is gone).
    pub fn run(mut self) {
        let scan_every = Duration::from_millis(self.settings.scan_interval_ms.max(10));
        let poll = Duration::from_millis(self.settings.poll_interval_ms.max(1));
        let multiline_timeout = Duration::from_millis(self.settings.multiline_timeout_ms);
        let grace = scan_every.max(Duration::from_secs(1));
        self.scan(true);
        let mut last_scan = Instant::now();
        while !self.stop.load(Ordering::Relaxed) && !self.outbox.stopped {
            if last_scan.elapsed() >= scan_every
                || self.scan_requested.swap(false, Ordering::Relaxed)
            {
                self.scan(false);
                last_scan = Instant::now();
            }
            let mut progressed = false;
            let mut index = 0;
            while index < self.files.len() {
                match self.pass(index, multiline_timeout, grace) {
                    Ok(Step::Kept(p)) => {
                        progressed |= p;
                        index += 1;
                    }
                    Ok(Step::Truncated) => {
                        let file = self.files.swap_remove(index);
                        self.truncated(file);
                        progressed = true;
                    }
                    Ok(Step::Left) => {
                        let file = self.files.swap_remove(index);
                        self.metrics
                            .file_lag_bytes
                            .remove_label_values(&[&file.path_label])
                            .ok();
                    }
                    Err(e) => {
                        let file = self.files.swap_remove(index);
                        tracing::warn!(path = %file.path.display(), error = %e,
                            "cannot read the file; it is looked for again at the next scan");
                        self.metrics
                            .file_lag_bytes
                            .remove_label_values(&[&file.path_label])
                            .ok();
                    }
                }
            }
            if self
                .outbox
                .started
                .is_some_and(|s| s.elapsed() >= self.outbox.wait)
            {
                self.outbox.flush();
            }
            self.update_lag();
            if !progressed {
                // A batch waiting to be sent bounds the nap, so its wait is kept.
                let nap = if self.outbox.started.is_some() {
                    poll.min(Duration::from_millis(20))
                } else {
                    poll
                };
                let _ = self.wake.recv_timeout(nap);
            }
        }
        // What is in the batch is complete: send it. A stack trace still being joined
        // is not: its lines are read again at the next start.
        self.outbox.flush();
    }

    /// Expands the globs: opens new files, notes which tracked ones are still matched.
    fn scan(&mut self, first: bool) {
        let mut seen = HashSet::new();
        for pattern in self.globs.clone() {
            let Ok(paths) = glob::glob(&pattern) else {
                continue;
            };
            for path in paths.flatten() {
                let Ok(meta) = std::fs::metadata(&path) else {
                    continue;
                };
                if !meta.is_file() || !seen.insert((meta.dev(), meta.ino())) {
                    continue;
                }
                if let Some(t) = self
                    .files
                    .iter_mut()
                    .find(|t| (t.key.dev, t.key.ino) == (meta.dev(), meta.ino()))
                {
                    t.path.clone_from(&path);
                    continue;
                }
                if let Err(e) = self.open(&path, first, true, false) {
                    tracing::warn!(path = %path.display(), error = %e, "cannot open the file");
                }
            }
        }
        for t in &mut self.files {
            t.in_glob = seen.contains(&(t.key.dev, t.key.ino));
        }
        if first {
            self.find_rotated_while_down();
        }
    }

    /// A checkpointed file no glob matches: rotated (renamed) while the shipper was not
    /// running. Found beside its last path by device and inode, it is finished; a file
    /// that cannot be found is forgotten.
    fn find_rotated_while_down(&mut self) {
        let tracked: HashSet<FileKey> = self.files.iter().map(|t| t.key).collect();
        let missing: Vec<Entry> = self
            .known
            .values()
            .filter(|e| !tracked.contains(&e.key))
            .cloned()
            .collect();
        for entry in missing {
            let found = entry
                .path
                .parent()
                .and_then(|dir| std::fs::read_dir(dir).ok())
                .and_then(|dir| {
                    dir.flatten().map(|d| d.path()).find(|p| {
                        std::fs::metadata(p).is_ok_and(|m| {
                            m.is_file() && m.dev() == entry.key.dev && m.ino() == entry.key.ino
                        })
                    })
                });
            let opened = match found {
                Some(path) => self.open(&path, false, false, true).is_ok(),
                None => false,
            };
            if opened && self.files.iter().any(|t| t.key == entry.key) {
                tracing::info!(path = %entry.path.display(), "finishing a file rotated while the shipper was stopped");
            } else if self.known.remove(&entry.key).is_some() {
                tracing::info!(path = %entry.path.display(), "forgetting the checkpoint of a file that is gone");
                self.outbox.batch.releases.push(entry.key);
            }
        }
    }

    /// Starts following a file; `only_known`: only if its identity has a checkpoint.
    fn open(
        &mut self,
        path: &Path,
        first_scan: bool,
        in_glob: bool,
        only_known: bool,
    ) -> std::io::Result<()> {
        let mut file = File::open(path)?;
        let meta = file.metadata()?;
        if self
            .files
            .iter()
            .any(|t| (t.key.dev, t.key.ino) == (meta.dev(), meta.ino()))
        {
            return Ok(());
        }
        let Some(fp) = fingerprint(&mut file)? else {
            // No complete first line yet: looked at again at the next scan.
            return Ok(());
        };
        let key = FileKey {
            dev: meta.dev(),
            ino: meta.ino(),
            fingerprint: fp,
        };
        let size = meta.len();
        if only_known && !self.known.contains_key(&key) {
            return Ok(());
        }
        let (generation, offset, how) = if let Some(known) = self.known.get(&key) {
            if size < known.offset {
                (
                    known.generation + 1,
                    0,
                    "truncated since its checkpoint: from its start",
                )
            } else {
                (known.generation, known.offset, "from its checkpoint")
            }
        } else {
            let stale: Vec<FileKey> = self
                .known
                .keys()
                .filter(|k| (k.dev, k.ino) == (key.dev, key.ino))
                .copied()
                .collect();
            for k in &stale {
                self.known.remove(k);
                self.outbox.batch.releases.push(*k);
            }
            if first_scan && stale.is_empty() && self.start_at == StartAt::End {
                (0, size, "from its end (--start-at end)")
            } else {
                (0, 0, "from its start")
            }
        };
        file.seek(SeekFrom::Start(offset))?;
        tracing::info!(path = %path.display(), file = %key, generation, offset, "following {how}");
        let path_label = path.display().to_string();
        let entry = Entry {
            key,
            generation,
            offset,
            path: path.to_owned(),
        };
        self.known.insert(key, entry.clone());
        // Persisted with the next batch: a restart resumes here, not at a new end.
        self.outbox.batch.mark(entry);
        self.outbox.started.get_or_insert_with(Instant::now);
        self.files.push(Tracked {
            key,
            generation,
            source: self.settings.source_for(path),
            path: path.to_owned(),
            path_label,
            file,
            read_pos: offset,
            line: Vec::new(),
            line_start: offset,
            line_len: 0,
            joiner: Joiner::default(),
            marked: offset,
            last_data: Instant::now(),
            in_glob,
            size,
        });
        Ok(())
    }

    /// Reads what is new in one file; says whether anything was, or that it was left.
    fn pass(
        &mut self,
        index: usize,
        multiline_timeout: Duration,
        grace: Duration,
    ) -> std::io::Result<Step> {
        let meta = self.files[index].file.metadata()?;
        let t = &mut self.files[index];
        t.size = meta.len();
        if meta.len() < t.read_pos {
            return Ok(Step::Truncated);
        }
        let mut read = 0;
        while read < READ_PER_PASS && !self.outbox.stopped {
            let n = match t.file.read(&mut self.buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            read += n;
            self.metrics.bytes_read.inc_by(n as u64);
            let ctx = EventContext {
                host: &self.host,
                regex: self.level_regex.as_ref(),
                metrics: &self.metrics,
            };
            t.consume(&self.buffer[..n], &ctx, &mut self.outbox);
        }
        let t = &mut self.files[index];
        let ctx = EventContext {
            host: &self.host,
            regex: self.level_regex.as_ref(),
            metrics: &self.metrics,
        };
        if read > 0 {
            t.last_data = Instant::now();
        } else if t.joiner.has_pending() && t.last_data.elapsed() >= multiline_timeout {
            if let Some(joined) = t.joiner.flush() {
                t.emit(joined, &ctx, &mut self.outbox);
            }
        }
        let gone = !t.in_glob || meta.nlink() == 0;
        if gone && read == 0 && t.last_data.elapsed() >= grace {
            // Finished: a last line without a newline is complete now.
            if !t.line.is_empty() || t.line_len > 0 {
                let end = t.read_pos;
                t.complete_line(end, &ctx, &mut self.outbox);
            }
            if let Some(joined) = t.joiner.flush() {
                t.emit(joined, &ctx, &mut self.outbox);
            }
            t.mark_safe(&mut self.outbox);
            tracing::info!(path = %t.path.display(), file = %t.key, offset = t.read_pos,
                "left the file: rotated away or deleted, and read to its end");
            self.outbox.batch.releases.push(t.key);
            self.outbox.started.get_or_insert_with(Instant::now);
            self.known.remove(&t.key);
            return Ok(Step::Left);
        }
        t.mark_safe(&mut self.outbox);
        if let Some(entry) = self.outbox.batch.marks.iter().find(|m| m.key == t.key) {
            self.known.insert(t.key, entry.clone());
        }
        Ok(Step::Kept(read > 0))
    }

    /// The file is shorter than what was read: truncated in place (copytruncate).
    fn truncated(&mut self, mut t: Tracked) {
        let ctx = EventContext {
            host: &self.host,
            regex: self.level_regex.as_ref(),
            metrics: &self.metrics,
        };
        // The trace being joined was read before the truncation: it is complete.
        if let Some(joined) = t.joiner.flush() {
            t.emit(joined, &ctx, &mut self.outbox);
        }
        tracing::info!(path = %t.path.display(), file = %t.key, was = t.read_pos, now = t.size,
            "file truncated (copytruncate): reading it again from its start");
        // Where it resumes, persisted with the batch: the next generation, from 0. If
        // its first line is new, it is opened as a new identity instead.
        let entry = Entry {
            key: t.key,
            generation: t.generation + 1,
            offset: 0,
            path: t.path.clone(),
        };
        self.outbox.batch.mark(entry.clone());
        self.outbox.started.get_or_insert_with(Instant::now);
        self.known.insert(t.key, entry);
        self.metrics
            .file_lag_bytes
            .remove_label_values(&[&t.path_label])
            .ok();
        if let Err(e) = self.open(&t.path, false, t.in_glob, false) {
            tracing::warn!(path = %t.path.display(), error = %e, "cannot reopen the truncated file");
        }
    }

    fn update_lag(&self) {
        let acked = self.acked.lock().unwrap_or_else(|e| e.into_inner());
        for t in &self.files {
            let done = acked
                .get(&t.key)
                .copied()
                .unwrap_or(t.marked.min(t.read_pos));
            let lag = t.size.saturating_sub(done);
            self.metrics
                .file_lag_bytes
                .with_label_values(&[&t.path_label])
                .set(i64::try_from(lag).unwrap_or(i64::MAX));
        }
    }
}

enum Step {
    Kept(bool),
    Left,
    Truncated,
}

struct EventContext<'a> {
    host: &'a str,
    regex: Option<&'a Regex>,
    metrics: &'a Metrics,
}

impl Tracked {
    /// Splits new bytes into lines; a line past LINE_CAP keeps its start only.
    fn consume(&mut self, bytes: &[u8], ctx: &EventContext<'_>, outbox: &mut Outbox) {
        let mut rest = bytes;
        while !rest.is_empty() {
            let newline = rest.iter().position(|&b| b == b'\n');
            let segment = &rest[..newline.unwrap_or(rest.len())];
            let room = LINE_CAP.saturating_sub(self.line.len());
            self.line
                .extend_from_slice(&segment[..segment.len().min(room)]);
            self.line_len += segment.len() as u64;
            self.read_pos += segment.len() as u64;
            match newline {
                Some(_) => {
                    self.read_pos += 1;
                    let end = self.read_pos;
                    self.complete_line(end, ctx, outbox);
                    rest = &rest[segment.len() + 1..];
                }
                None => rest = &[],
            }
        }
    }

    /// The line read so far is complete and ends (newline included) at `end`.
    fn complete_line(&mut self, end: u64, ctx: &EventContext<'_>, outbox: &mut Outbox) {
        let mut bytes = std::mem::take(&mut self.line);
        let original = self.line_len;
        let mut truncated = original > LINE_CAP as u64;
        if bytes.last() == Some(&b'\r') && !truncated {
            bytes.pop();
        }
        let (mut text, invalid_utf8) = decode(bytes, truncated);
        if text.len() > MAX_MESSAGE_BYTES {
            text.truncate(parse::floor_char_boundary(&text, MAX_MESSAGE_BYTES));
            truncated = true;
        }
        ctx.metrics.lines_read.inc();
        if truncated {
            ctx.metrics.lines_truncated.inc();
        }
        let flags = RawFlags {
            truncated,
            original_bytes: original,
            invalid_utf8,
        };
        let start = self.line_start;
        self.line_start = end;
        self.line_len = 0;
        self.line = Vec::with_capacity(256);
        if let Some(joined) = self.joiner.push(text, start, end, flags) {
            self.emit(joined, ctx, outbox);
        }
    }

    fn emit(&mut self, joined: Joined, ctx: &EventContext<'_>, outbox: &mut Outbox) {
        let id = event_id(ctx.host, &self.key, self.generation, joined.start);
        let context = parse::Context {
            source: &self.source,
            host: ctx.host,
            path: &self.path_label,
            level_regex: ctx.regex,
            now: chrono::Utc::now(),
        };
        let event = parse::build(&joined.text, &joined.flags, id, &context);
        if serde_json::to_writer(&mut outbox.batch.body, &event).is_ok() {
            outbox.batch.body.push(b'\n');
            outbox.batch.events += 1;
        }
        let entry = Entry {
            key: self.key,
            generation: self.generation,
            offset: joined.end,
            path: self.path.clone(),
        };
        self.marked = joined.end;
        outbox.batch.mark(entry);
        outbox.started.get_or_insert_with(Instant::now);
        if outbox.batch.events >= outbox.max_events
            || outbox.batch.body.len() + EVENT_ROOM > outbox.max_bytes
        {
            outbox.flush();
        }
    }

    /// Marks everything before the first byte not yet in a batch (the pending trace's
    /// start, or the partial line's), so skipped blank lines are acknowledged too.
    fn mark_safe(&mut self, outbox: &mut Outbox) {
        let safe = self.joiner.pending_start().unwrap_or(self.line_start);
        if safe > self.marked {
            self.marked = safe;
            outbox.batch.mark(Entry {
                key: self.key,
                generation: self.generation,
                offset: safe,
                path: self.path.clone(),
            });
            outbox.started.get_or_insert_with(Instant::now);
        }
    }
}

impl Outbox {
    /// Hands the batch to the sender; blocks while the sender has enough to do.
    fn flush(&mut self) {
        self.started = None;
        if self.batch.is_empty() || self.stopped {
            return;
        }
        let batch = std::mem::take(&mut self.batch);
        if self.out.blocking_send(batch).is_err() {
            self.stopped = true;
        }
    }
}

/// UTF-8 text from a line's bytes: invalid sequences become U+FFFD and are flagged. A
/// line cut at the cap may end inside a character; that is not flagged as invalid.
fn decode(bytes: Vec<u8>, cut: bool) -> (String, bool) {
    match String::from_utf8(bytes) {
        Ok(text) => (text, false),
        Err(e) => {
            let utf8 = e.utf8_error();
            let bytes = e.into_bytes();
            if cut && utf8.error_len().is_none() {
                let valid = utf8.valid_up_to();
                let text = String::from_utf8(bytes[..valid].to_vec()).unwrap_or_default();
                return (text, false);
            }
            (String::from_utf8_lossy(&bytes).into_owned(), true)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding_flags_invalid_bytes_but_not_a_cut_character() {
        assert_eq!(decode(b"ok".to_vec(), false), ("ok".to_owned(), false));
        assert_eq!(
            decode(b"a\xffb".to_vec(), false),
            ("a\u{FFFD}b".to_owned(), true)
        );
        let cut = "é".as_bytes()[..1].to_vec();
        assert_eq!(
            decode([b"x".to_vec(), cut].concat(), true),
            ("x".to_owned(), false)
        );
    }
}
