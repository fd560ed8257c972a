//! Signals by name, as `[[hook]]` entries and `watch --signal` write them.

use std::str::FromStr;

use nix::sys::signal::Signal;

/// "HUP", "SIGHUP" and "hup" all name SIGHUP.
pub fn parse(name: &str) -> Option<Signal> {
    let upper = name.trim().to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&full).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_or_without_sig_in_any_case() {
        assert_eq!(parse("HUP"), Some(Signal::SIGHUP));
        assert_eq!(parse("SIGHUP"), Some(Signal::SIGHUP));
        assert_eq!(parse("usr1"), Some(Signal::SIGUSR1));
        assert_eq!(parse("TERM"), Some(Signal::SIGTERM));
        assert_eq!(parse("SIG"), None);
        assert_eq!(parse("1"), None);
    }
}
