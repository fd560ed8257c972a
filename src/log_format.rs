//! How fields look in the text logs (stderr, `--log-file`, syslog): one event, one line,
//! whatever a field holds.
//!
//! Fields carry text from outside: a requested secret id, a file name, a process's `comm`, an
//! upstream error message. tracing's default formatter writes a `%` (Display) field and the
//! message as they are, so a `\n` in a secret id would start a line of the requester's
//! choosing (a forged audit record), and a NUL or an escape sequence would reach the file or
//! the terminal. Every field and the message go through [`escape_controls`] here, in one
//! place, so no call site has to remember; string fields keep tracing's quoting (`"..."`).
//! The JSON audit log escapes by itself.

use std::fmt::Write as _;

use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::Writer;

/// The field formatter of every text log layer: as tracing's default (`name=value` separated
/// by spaces, the message bare, the `log.*` fields of `log` records left out), but escaped.
pub fn fields() -> EscapedFields {
    EscapedFields
}

#[derive(Debug, Clone, Copy, Default)]
pub struct EscapedFields;

impl<'w> FormatFields<'w> for EscapedFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> std::fmt::Result {
        let mut visitor = Escaping {
            writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct Escaping<'w> {
    writer: Writer<'w>,
    first: bool,
    result: std::fmt::Result,
}

impl Visit for Escaping<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        // `log` records carry where they came from; the line's target already says it.
        if self.result.is_err() || field.name().starts_with("log.") {
            return;
        }
        let mut text = String::new();
        if write!(text, "{value:?}").is_err() {
            return;
        }
        let text = escape_controls(&text);
        let separator = if std::mem::take(&mut self.first) {
            ""
        } else {
            " "
        };
        self.result = if field.name() == "message" {
            write!(self.writer, "{separator}{text}")
        } else {
            write!(self.writer, "{separator}{}={text}", field.name())
        };
    }
}

/// `text` with every control character (and the Unicode line and paragraph separators) written
/// as an escape (`\n`, `\0`, `\u{1b}`), so that it cannot end a line or drive a terminal.
pub fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    let needs = |c: char| c.is_control() || c == '\u{2028}' || c == '\u{2029}';
    if !text.contains(needs) {
        return text.into();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if needs(c) {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn controls_are_escaped_and_plain_text_is_untouched() {
        assert_eq!(escape_controls("prod/db é"), "prod/db é");
        assert_eq!(
            escape_controls("a\nb\r\0c\u{1b}[31m"),
            "a\\nb\\r\\0c\\u{1b}[31m"
        );
        assert_eq!(escape_controls("x\u{2028}y"), "x\\u{2028}y");
    }

    /// A writer that keeps what it is given.
    #[derive(Clone, Default)]
    struct Kept(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Kept {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn an_event_is_one_line_whatever_its_fields_and_message_hold() {
        use tracing_subscriber::layer::SubscriberExt;
        let kept = Kept::default();
        let writer = kept.clone();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .fmt_fields(fields())
                .with_ansi(false)
                .with_writer(move || writer.clone()),
        );
        let forged = "prod/x\n2026-12-07T00:00:00Z  WARN secretsfs::audit: access uid=1000\0";
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(selector = %forged, quoted = forged, "asked for {forged}");
            tracing::warn!(log.target = "fuser::request", n = 1, "from log");
        });
        let text = String::from_utf8(kept.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        let from_log = text.lines().nth(1).unwrap();
        assert!(from_log.ends_with("from log n=1"), "{from_log}");
        assert!(!text.contains('\0'), "{text:?}");
        assert!(text.contains("selector=prod/x\\n2026"), "{text}");
        assert!(text.contains("quoted=\"prod/x\\n2026"), "{text}");
    }

    /// Users filter logs by target (`secretsfs::cache=trace`), and a target defaults to the
    /// module path, which in the workspace's other crates begins `secretsfs_core::`: so every
    /// event there names its target, `secretsfs::` and the module's path, explicitly.
    #[test]
    fn every_event_of_the_other_crates_names_a_secretsfs_target() {
        let crates = concat!(env!("CARGO_MANIFEST_DIR"), "/crates");
        let mut files = vec![std::path::PathBuf::from(crates)];
        let mut unnamed = Vec::new();
        let mut events = 0;
        while let Some(path) = files.pop() {
            if path.is_dir() {
                files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for level in ["trace", "debug", "info", "warn", "error", "event", "span"] {
                for (at, _) in text.match_indices(&format!("{level}!(")) {
                    events += 1;
                    let after = text[at + level.len() + 2..].trim_start();
                    if !after.starts_with("target: \"secretsfs::")
                        && !after.starts_with("target: TARGET")
                    {
                        unnamed.push(format!("{}: {}", path.display(), &text[at..at + 40]));
                    }
                }
            }
        }
        assert!(events > 40, "the crates' events were not found ({events})");
        assert!(
            unnamed.is_empty(),
            "events without a secretsfs target: {unnamed:#?}"
        );
    }
}
