//! Wake-ups from the file system: `notify` (inotify on Linux) wakes the reader as soon
//! as a watched directory changes, and asks for a scan when a file appears, moves or
//! goes. When it cannot watch (no inotify, out of watches, or `--watch poll`), the
//! reader polls every `--poll-interval-ms` and scans every `--scan-interval-ms` anyway.

use notify::event::ModifyKind;
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;

/// Watches the directories the globs start from; None (polling only) when it cannot.
pub fn start(
    globs: &[String],
    wake: SyncSender<()>,
    scan: Arc<AtomicBool>,
) -> Option<RecommendedWatcher> {
    let handler = move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            if matches!(
                event.kind,
                EventKind::Create(_)
                    | EventKind::Remove(_)
                    | EventKind::Modify(ModifyKind::Name(_))
            ) {
                scan.store(true, Ordering::Relaxed);
            }
            // Full means a wake-up is already pending: nothing is lost.
            let _ = wake.try_send(());
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "notify unavailable: polling only");
            return None;
        }
    };
    let mut watching = 0;
    for glob in globs {
        let (dir, recursive) = watch_root(glob);
        let mode = if recursive {
            RecursiveMode::Recursive
        } else {
            RecursiveMode::NonRecursive
        };
        match watcher.watch(&dir, mode) {
            Ok(()) => watching += 1,
            Err(e) => tracing::warn!(dir = %dir.display(), error = %e,
                "cannot watch the directory: polling it"),
        }
    }
    (watching > 0).then_some(watcher)
}

/// The deepest directory of a glob without pattern characters, and whether the rest of
/// the pattern goes deeper than one level (then the watch is recursive).
pub fn watch_root(glob: &str) -> (PathBuf, bool) {
    let path = Path::new(glob);
    let mut root = PathBuf::new();
    let mut rest = 0;
    for component in path.components() {
        let text = component.as_os_str().to_string_lossy();
        if rest > 0 || text.contains(['*', '?', '[']) {
            rest += 1;
        } else {
            root.push(component);
        }
    }
    if rest == 0 {
        // A plain file name: watch its directory.
        root.pop();
        rest = 1;
    }
    if root.as_os_str().is_empty() || root.components().all(|c| matches!(c, Component::CurDir)) {
        root = PathBuf::from(".");
    }
    (root, rest > 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watch_root_is_the_globs_literal_directory() {
        assert_eq!(
            watch_root("/var/log/app.log"),
            (PathBuf::from("/var/log"), false)
        );
        assert_eq!(
            watch_root("/var/log/*.log"),
            (PathBuf::from("/var/log"), false)
        );
        assert_eq!(
            watch_root("/var/log/**/*.log"),
            (PathBuf::from("/var/log"), true)
        );
        assert_eq!(watch_root("app.log"), (PathBuf::from("."), false));
    }
}
