//! Joins a stack trace's lines into the event they continue.
//!
//! A line continues the event before it when it starts with whitespace, `at `,
//! `Caused by:`, `...` (Java), is a Java exception's header (`java.io.IOException: …`,
//! printed unindented under the logger's line), or belongs to a Python traceback: `Traceback (most recent
//! call last):`, the chained-exception sentences, and the exception line that ends a
//! traceback (the first line after its indented frames). A JSON line never continues
//! anything and is never continued. The joined text is bounded like a line.

use crate::parse::RawFlags;

/// Most bytes of one event's text (the producer's message limit).
pub const MAX_EVENT_BYTES: usize = log_common::domain::MAX_MESSAGE_BYTES;

/// A complete event: its text, where its first line starts and where its last ends.
#[derive(Debug, Clone)]
pub struct Joined {
    pub text: String,
    pub start: u64,
    pub end: u64,
    pub flags: RawFlags,
}

#[derive(Debug, Default)]
pub struct Joiner {
    pending: Option<Joined>,
    /// In a Python traceback: the next non-indented line is its exception line.
    in_traceback: bool,
}

impl Joiner {
    /// Offers one line (without its newline), which starts at `start` and whose newline
    /// ends at `end`. Returns the event the line completed, if any.
    pub fn push(&mut self, line: String, start: u64, end: u64, flags: RawFlags) -> Option<Joined> {
        if let Some(pending) = &mut self.pending {
            if continues(&mut self.in_traceback, &line, &pending.text) {
                pending.end = end;
                pending.flags.invalid_utf8 |= flags.invalid_utf8;
                if flags.truncated {
                    pending.flags.truncated = true;
                }
                let room = MAX_EVENT_BYTES.saturating_sub(pending.text.len() + 1);
                let cut = crate::parse::floor_char_boundary(&line, room);
                if cut < line.len() || flags.truncated {
                    pending.flags.truncated = true;
                }
                if room > 0 {
                    pending.text.push('\n');
                    pending.text.push_str(&line[..cut]);
                }
                // The newline ending the last line is not counted, as for one line.
                pending.flags.original_bytes = end - pending.start - 1;
                return None;
            }
        }
        let done = self.pending.take();
        self.in_traceback = is_traceback_start(&line);
        if line.trim().is_empty() {
            // A blank line is no event; it only moves the reading position on.
            return done;
        }
        self.pending = Some(Joined {
            text: line,
            start,
            end,
            flags,
        });
        done
    }

    /// The event being joined, handed out because its file went quiet or is left.
    pub fn flush(&mut self) -> Option<Joined> {
        self.in_traceback = false;
        self.pending.take()
    }

    pub fn has_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Where the pending event starts: nothing before it is waiting.
    pub fn pending_start(&self) -> Option<u64> {
        self.pending.as_ref().map(|p| p.start)
    }
}

fn continues(in_traceback: &mut bool, line: &str, pending: &str) -> bool {
    if pending.starts_with('{') || line.starts_with('{') {
        return false;
    }
    if is_traceback_start(line)
        || line.starts_with("During handling of the above exception")
        || line.starts_with("The above exception was the direct cause")
    {
        *in_traceback = true;
        return true;
    }
    let indented = line.starts_with([' ', '\t']);
    if indented
        || line.starts_with("at ")
        || line.starts_with("Caused by:")
        || line.starts_with("...")
        || is_java_exception_header(line)
    {
        return true;
    }
    if *in_traceback && !line.trim().is_empty() {
        // `ZeroDivisionError: division by zero` ends the traceback.
        *in_traceback = false;
        return true;
    }
    false
}

/// `java.lang.IllegalStateException: boom`: the unindented line a Java logger prints
/// under its message, before the trace's `at` lines.
fn is_java_exception_header(line: &str) -> bool {
    let name = line.split(':').next().unwrap_or("");
    name.contains('.')
        && !name.contains(char::is_whitespace)
        && ["Exception", "Error", "Throwable"]
            .iter()
            .any(|s| name.ends_with(s))
}

fn is_traceback_start(line: &str) -> bool {
    line.starts_with("Traceback (most recent call last)")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(lines: &[&str]) -> Vec<Joined> {
        let mut joiner = Joiner::default();
        let mut out = Vec::new();
        let mut at = 0u64;
        for line in lines {
            let end = at + line.len() as u64 + 1;
            out.extend(joiner.push((*line).to_owned(), at, end, RawFlags::default()));
            at = end;
        }
        out.extend(joiner.flush());
        out
    }

    #[test]
    fn a_java_trace_is_one_event() {
        let out = feed(&[
            "2026-01-01T00:00:00Z ERROR request failed",
            "java.lang.IllegalStateException: boom",
            "\tat com.example.A.run(A.java:10)",
            "Caused by: java.io.IOException: closed",
            "\tat com.example.B.read(B.java:5)",
            "\t... 12 more",
            "2026-01-01T00:00:01Z INFO next",
        ]);
        assert_eq!(out.len(), 2, "{out:#?}");
        assert!(out[0]
            .text
            .contains("\njava.lang.IllegalStateException: boom\n"));
        assert!(out[0].text.ends_with("... 12 more"));
        assert_eq!(out[1].text, "2026-01-01T00:00:01Z INFO next");
    }

    #[test]
    fn a_python_traceback_is_one_event_with_its_exception_line() {
        let out = feed(&[
            "2026-01-01T00:00:00Z ERROR job crashed",
            "Traceback (most recent call last):",
            "  File \"job.py\", line 3, in <module>",
            "    1 / 0",
            "ZeroDivisionError: division by zero",
            "2026-01-01T00:00:01Z INFO next",
        ]);
        assert_eq!(out.len(), 2, "{out:#?}");
        assert!(out[0].text.ends_with("ZeroDivisionError: division by zero"));
        assert_eq!(out[0].start, 0);
        assert_eq!(out[1].start, out[0].end);
    }

    #[test]
    fn json_lines_are_never_joined_and_blank_lines_are_skipped() {
        let out = feed(&[
            "{\"message\":\"a\"}",
            "  {\"message\":\"b\"}",
            "",
            "{\"message\":\"c\"}",
        ]);
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn a_joined_event_is_bounded() {
        let long = format!(" {}", "x".repeat(20_000));
        let out = feed(&["start", &long, &long, &long]);
        assert_eq!(out.len(), 1);
        assert!(out[0].text.len() <= MAX_EVENT_BYTES);
        assert!(out[0].flags.truncated);
    }
}
