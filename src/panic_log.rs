//! A panic is also a log line where the log is not stderr (a daemon's stderr is /dev/null): a
//! worker thread that dies must leave its cause where the operator looks.

/// Chains a hook before the current one that logs each panic at error, on one line. The message
/// is our own code's, which never puts a value in one.
pub fn install() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(no message)");
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let thread = std::thread::current();
        tracing::error!(thread = thread.name().unwrap_or("unnamed"), location,
            message = %crate::error::one_line(message), "a thread panicked");
        previous(info);
    }));
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    #[test]
    fn a_panic_leaves_one_log_line_with_its_cause_and_place() {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(captured.clone())
            .with_ansi(false)
            .finish();
        super::install();
        // On this thread: the subscriber is this thread's alone, so other tests' panics (which
        // pass through the hook too) cannot write here.
        let caught = tracing::subscriber::with_default(subscriber, || {
            std::panic::catch_unwind(|| panic!("the table is\nbroken"))
        });
        assert!(caught.is_err());
        let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = log.lines().filter(|l| l.contains("panicked")).collect();
        assert_eq!(lines.len(), 1, "{log}");
        for part in [
            "a_panic_leaves_one_log_line",
            "src/panic_log.rs",
            "the table is\\nbroken",
        ] {
            assert!(lines[0].contains(part), "{part} missing: {}", lines[0]);
        }
    }
}
