//! Audit records: one per access decision that reaches secretsfs (a lookup or open through
//! the mount, a request to the HTTP API), at the tracing target `secretsfs::audit`, which
//! `--audit-log` also writes as JSON lines. A record names who asked and what, never a value.

/// The tracing target of audit records.
pub const TARGET: &str = "secretsfs::audit";

/// Which front end took the decision.
#[derive(Debug, Clone, Copy)]
pub enum Front {
    Mount,
    HttpTcp,
    HttpSocket,
}

impl Front {
    fn name(self) -> &'static str {
        match self {
            Front::Mount => "mount",
            Front::HttpTcp => "http-tcp",
            Front::HttpSocket => "http-socket",
        }
    }
}

/// What became of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The policy allowed it (or none applies, as on TCP with the token).
    Allowed,
    /// The policy, or a bad token, refused it.
    Denied,
    /// The request was malformed (a bad selector, version or stage): refused before the
    /// policy was asked.
    Invalid,
}

impl Decision {
    fn name(self) -> &'static str {
        match self {
            Decision::Allowed => "allowed",
            Decision::Denied => "denied",
            Decision::Invalid => "invalid",
        }
    }
}

/// One access decision.
#[derive(Debug)]
pub struct Access<'a> {
    pub front: Front,
    pub uid: Option<u32>,
    pub pid: Option<u32>,
    pub selector: &'a str,
    pub decision: Decision,
    /// The version served, when a value was served.
    pub version: Option<&'a str>,
    /// Whether the value served was stale (past its TTL, refresh failing).
    pub stale: bool,
    /// Why it was denied or failed, when it was.
    pub reason: Option<&'a str>,
}

/// Whether a record of this decision would be written: what a caller checks before building
/// one, so that an unlogged access costs nothing.
pub fn enabled(decision: Decision) -> bool {
    if decision != Decision::Denied {
        tracing::enabled!(target: TARGET, tracing::Level::INFO)
    } else {
        tracing::enabled!(target: TARGET, tracing::Level::WARN)
    }
}

impl Access<'_> {
    pub fn log(&self) {
        let process = self.pid.and_then(process_name);
        let decision = self.decision.name();
        let served = match (self.version, self.stale) {
            (Some(_), false) => "fresh",
            (Some(_), true) => "stale",
            (None, _) => "none",
        };
        // Denials reach the default log level too: they are what an operator looks for.
        macro_rules! record {
            ($level:ident) => {
                tracing::$level!(
                    target: TARGET,
                    front = self.front.name(),
                    uid = self.uid,
                    pid = self.pid,
                    process = process.as_deref(),
                    // A string field: quoted, so it cannot pass for other fields.
                    selector = &*bounded(self.selector),
                    version = self.version,
                    decision,
                    served,
                    reason = self.reason,
                    "access"
                )
            };
        }
        if self.decision != Decision::Denied {
            record!(info);
        } else {
            record!(warn);
        }
    }
}

/// The longest selector a record carries whole: the service's own bound on a secret ID (an ARN)
/// is 2,048 characters, so anything longer cannot name a secret, and one client sending 60 KB
/// ids must not write 60 KB lines.
const SELECTOR_SHOWN: usize = 2048;

/// `selector`, or its first [`SELECTOR_SHOWN`] bytes and its length when it is longer.
fn bounded(selector: &str) -> std::borrow::Cow<'_, str> {
    if selector.len() <= SELECTOR_SHOWN {
        return selector.into();
    }
    let mut end = SELECTOR_SHOWN;
    while !selector.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes in all)", &selector[..end], selector.len()).into()
}

/// The caller's command name, from /proc (gone or in another pid namespace: none).
fn process_name(pid: u32) -> Option<String> {
    if pid == 0 {
        return None;
    }
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim_end().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_selector_past_any_secret_id_is_cut_with_its_length() {
        let id = "a".repeat(SELECTOR_SHOWN);
        assert_eq!(bounded(&id), id.as_str());
        let long = format!(
            "{}\u{e9}{}",
            "b".repeat(SELECTOR_SHOWN - 1),
            "c".repeat(60_000)
        );
        let shown = bounded(&long);
        assert!(
            shown.starts_with(&"b".repeat(SELECTOR_SHOWN - 1)),
            "{shown}"
        );
        assert!(shown.ends_with(&format!("... ({} bytes in all)", long.len())));
        assert!(shown.len() < SELECTOR_SHOWN + 40);
    }
}
