//! Every encoding of a canary, the search of the logs for them, and the self-check that the
//! search finds what it looks for.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::GeneralPurpose;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use serde_json::json;

use super::seed::{BINARY, Canary, ESCAPED, main_canaries, text_of};

/// Needles shorter than this are not searched: even the shortest form of a canary is longer,
/// and a short needle could match by chance.
const MIN_NEEDLE: usize = 12;

/// Every form in which a careless log line could carry `value`, labelled.
fn encodings(value: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = vec![("raw bytes".to_owned(), value.to_vec())];
    if value.len() >= 32 {
        out.push(("raw, its first 16 bytes".to_owned(), value[..16].to_vec()));
        out.push((
            "raw, its last 16 bytes".to_owned(),
            value[value.len() - 16..].to_vec(),
        ));
    }
    let runs: Vec<&[u8]> = value
        .split(|b| !b.is_ascii_alphanumeric())
        .filter(|run| run.len() >= MIN_NEEDLE)
        .collect();
    if runs.len() > 1 {
        for (k, run) in runs.iter().enumerate() {
            out.push((format!("raw, its alphanumeric run #{k}"), run.to_vec()));
        }
    }
    let engines: [(&str, &GeneralPurpose, &GeneralPurpose); 2] = [
        ("standard base64", &STANDARD, &STANDARD_NO_PAD),
        ("URL-safe base64", &URL_SAFE, &URL_SAFE_NO_PAD),
    ];
    for (name, padded, unpadded) in engines {
        out.push((name.to_owned(), padded.encode(value).into_bytes()));
        out.push((
            format!("{name}, unpadded"),
            unpadded.encode(value).into_bytes(),
        ));
        // Inside the base64 of a longer payload the canary's bytes fall on any of three
        // alignments; for each, the groups that lie wholly within the canary are fixed.
        for offset in 0..3 {
            let tail = &value[offset..];
            let whole = tail.len() / 3 * 3;
            out.push((
                format!("{name} inside a longer payload (alignment {offset})"),
                unpadded.encode(&tail[..whole]).into_bytes(),
            ));
        }
    }
    let hex: String = value.iter().map(|b| format!("{b:02x}")).collect();
    out.push(("hex".to_owned(), hex.clone().into_bytes()));
    out.push((
        "hex, upper case".to_owned(),
        hex.to_uppercase().into_bytes(),
    ));
    // `[12, 34, ..]` without the brackets, so that it is found inside a longer array too.
    let debug_bytes = format!("{value:?}");
    out.push(("Rust Debug of the bytes".to_owned(), inner(&debug_bytes)));
    let json_array = serde_json::to_string(value).unwrap();
    out.push(("a JSON array of the bytes".to_owned(), inner(&json_array)));
    match std::str::from_utf8(value) {
        Ok(text) => {
            let json = serde_json::to_string(text).unwrap();
            out.push(("JSON-escaped".to_owned(), inner(&json)));
            let debug = format!("{text:?}");
            out.push(("Rust Debug of the string".to_owned(), inner(&debug)));
        }
        Err(_) => {
            if let Cow::Owned(lossy) = String::from_utf8_lossy(value) {
                out.push(("lossy UTF-8".to_owned(), lossy.into_bytes()));
            }
        }
    }
    out.push((
        "Rust Debug of bytes::Bytes (b\"..\" escapes)".to_owned(),
        value.escape_ascii().to_string().into_bytes(),
    ));
    out.push((
        "percent-encoded".to_owned(),
        percent_encoding::percent_encode(value, percent_encoding::NON_ALPHANUMERIC)
            .to_string()
            .into_bytes(),
    ));
    out
}

/// `text` without its first and last character (brackets or quotes).
fn inner(text: &str) -> Vec<u8> {
    text.as_bytes()[1..text.len() - 1].to_vec()
}

/// One form of one canary, as the search looks for it.
pub(super) struct Needle {
    canary: usize,
    encoding: String,
    /// The bytes, one char per byte (see [`latin1`]).
    text: String,
}

/// Bytes as a string of one char per byte (U+0000..U+00FF): a byte string occurs in another
/// exactly when their images do, and `str::contains` (std's optimised two-way search) finds
/// it even in a debug build and in logs that are not UTF-8.
fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

pub(super) fn needles(canaries: &[Canary]) -> Vec<Needle> {
    let mut out: Vec<Needle> = Vec::new();
    for (i, canary) in canaries.iter().enumerate() {
        for (encoding, bytes) in encodings(&canary.bytes) {
            if bytes.len() < MIN_NEEDLE {
                continue;
            }
            let text = latin1(&bytes);
            if !out.iter().any(|n| n.canary == i && n.text == text) {
                out.push(Needle {
                    canary: i,
                    encoding,
                    text,
                });
            }
        }
    }
    out
}

#[derive(Debug, PartialEq, Eq)]
struct Hit {
    log: String,
    canary: usize,
    encoding: String,
}

fn search(logs: &[(String, Vec<u8>)], needles: &[Needle]) -> Vec<Hit> {
    let mut hits = Vec::new();
    for (log, bytes) in logs {
        let haystack = latin1(bytes);
        for n in needles {
            if haystack.contains(n.text.as_str()) {
                hits.push(Hit {
                    log: log.clone(),
                    canary: n.canary,
                    encoding: n.encoding.clone(),
                });
            }
        }
    }
    hits
}

/// `bytes` for a failure message, every canary form replaced by a placeholder.
pub(super) fn redacted(bytes: &[u8], needles: &[Needle]) -> String {
    let mut text = latin1(bytes);
    let mut by_length: Vec<&Needle> = needles.iter().collect();
    by_length.sort_by_key(|n| std::cmp::Reverse(n.text.len()));
    for n in by_length {
        text = text.replace(
            n.text.as_str(),
            &format!("<canary #{} as {}>", n.canary, n.encoding),
        );
    }
    text
}

/// The logs of one test: captured outputs and files written by the processes.
#[derive(Default)]
pub(super) struct Logs {
    captured: Vec<(String, Vec<u8>)>,
    files: Vec<(String, PathBuf)>,
}

impl Logs {
    pub(super) fn capture(&mut self, label: impl Into<String>, bytes: &[u8]) {
        self.captured.push((label.into(), bytes.to_vec()));
    }

    pub(super) fn file(&mut self, label: impl Into<String>, path: &Path) {
        self.files.push((label.into(), path.to_owned()));
    }

    /// Everything to search; every log file must have been written.
    fn load(&self) -> Vec<(String, Vec<u8>)> {
        let mut all = self.captured.clone();
        for (label, path) in &self.files {
            let bytes = std::fs::read(path)
                .unwrap_or_else(|e| panic!("{label} ({}) was not written: {e}", path.display()));
            all.push((format!("{label} ({})", path.display()), bytes));
        }
        all
    }

    /// Panics, naming log, canary and encoding, if any canary is in any log.
    pub(super) fn assert_clean(&self, canaries: &[Canary], needles: &[Needle]) {
        let all = self.load();
        let searched: usize = all.iter().map(|(_, b)| b.len()).sum();
        assert!(searched > 0, "no log was written at all");
        // Shown with the test's output: what was searched, the larger logs by name.
        println!("searched {} logs, {searched} bytes", all.len());
        for (label, bytes) in all.iter().filter(|(_, b)| b.len() > 2000) {
            println!("  {label}: {} bytes", bytes.len());
        }
        let hits = search(&all, needles);
        if hits.is_empty() {
            return;
        }
        let lines: Vec<String> = hits
            .iter()
            .map(|h| {
                format!(
                    "  {}: canary #{} ({}) as {}",
                    h.log, h.canary, canaries[h.canary].kind, h.encoding
                )
            })
            .collect();
        panic!(
            "{} canary hit(s) in {} logs ({searched} bytes searched; the canaries are not \
             shown):\n{}",
            hits.len(),
            all.len(),
            lines.join("\n")
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The search itself: it must find what it looks for.

/// A scratch log line carrying `payload` amid ordinary log text.
fn scratch_line(payload: &[u8]) -> Vec<u8> {
    let mut line = b"2026-06-01T09:30:00.000000Z TRACE secretsfs::scratch: value=".to_vec();
    line.extend_from_slice(payload);
    line.extend_from_slice(b" selector=canary/json\n");
    line
}

/// Forms made independently of [`encodings`]: how a canary would look inside the longer
/// things a log line could print (a response body, a struct, a buffer).
fn independent_leaks(value: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for prefix in ["", "x", "xy", "xyz"] {
        let mut payload = format!("{{\"{prefix}\":\"").into_bytes();
        payload.extend_from_slice(value);
        payload.extend_from_slice(b"\"}");
        out.push((
            format!("standard base64 of a body, {} byte prefix", payload.len()),
            STANDARD.encode(&payload).into_bytes(),
        ));
        out.push((
            format!("URL-safe base64 of a body, {} byte prefix", payload.len()),
            URL_SAFE_NO_PAD.encode(&payload).into_bytes(),
        ));
        out.push((
            "Rust Debug of a longer buffer".to_owned(),
            format!("{payload:?}").into_bytes(),
        ));
        out.push((
            "hex of a longer buffer".to_owned(),
            payload
                .iter()
                .map(|b| format!("{b:02X}"))
                .collect::<String>()
                .into_bytes(),
        ));
        out.push((
            "a JSON array of a longer buffer".to_owned(),
            serde_json::to_vec(&payload).unwrap(),
        ));
        out.push((
            "b\"..\" escapes of a longer buffer".to_owned(),
            format!("b\"{}\"", payload.escape_ascii()).into_bytes(),
        ));
        out.push((
            "lossy UTF-8 of a longer buffer".to_owned(),
            String::from_utf8_lossy(&payload).into_owned().into_bytes(),
        ));
    }
    if let Ok(text) = std::str::from_utf8(value) {
        #[derive(Debug)]
        #[allow(dead_code)]
        struct Leaky<'a> {
            value: &'a str,
        }
        out.push((
            "a JSON body".to_owned(),
            json!({ "SecretString": text }).to_string().into_bytes(),
        ));
        out.push((
            "a JSON body inside a JSON log line".to_owned(),
            json!({ "fields": { "body": json!({ "SecretString": text }).to_string() } })
                .to_string()
                .into_bytes(),
        ));
        out.push((
            "Rust Debug of a struct".to_owned(),
            format!("{:?}", Leaky { value: text }).into_bytes(),
        ));
        out.push((
            "a query string".to_owned(),
            format!(
                "a=b&c={}",
                percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC)
            )
            .into_bytes(),
        ));
    }
    out
}

#[test]
fn the_search_finds_every_canary_in_every_encoding() {
    let canaries = main_canaries();
    let needles = needles(&canaries);
    let dir = tempfile::tempdir().unwrap();
    let scratch = dir.path().join("scratch.log");
    let mut missed = Vec::new();
    for (i, canary) in canaries.iter().enumerate() {
        let mut forms = encodings(&canary.bytes);
        forms.extend(independent_leaks(&canary.bytes));
        for (encoding, bytes) in forms {
            if bytes.len() < MIN_NEEDLE {
                continue;
            }
            std::fs::write(&scratch, scratch_line(&bytes)).unwrap();
            let mut logs = Logs::default();
            logs.file("scratch", &scratch);
            let hits = search(&logs.load(), &needles);
            if !hits.iter().any(|h| h.canary == i) {
                missed.push(format!("canary #{i} as {encoding}"));
            }
            if hits.iter().any(|h| h.canary != i) {
                missed.push(format!("canary #{i} as {encoding} was taken for another"));
            }
        }
        // Every canary has its distinct forms among the needles, each found by its name.
        for encoding in [
            "raw bytes",
            "standard base64",
            "hex",
            "Rust Debug of the bytes",
        ] {
            let needle = needles
                .iter()
                .find(|n| n.canary == i && n.encoding == encoding);
            match needle {
                Some(n) => {
                    let log = vec![("scratch".to_owned(), scratch_line(&latin1_bytes(&n.text)))];
                    let hit = Hit {
                        log: "scratch".to_owned(),
                        canary: i,
                        encoding: encoding.to_owned(),
                    };
                    if !search(&log, &needles).contains(&hit) {
                        missed.push(format!("canary #{i} as {encoding}, by name"));
                    }
                }
                None => missed.push(format!("canary #{i} has no {encoding} needle")),
            }
        }
    }
    // The escaping canary: its JSON escape and Debug differ from its raw form, and each is
    // among the needles (under whichever name came first, when two forms are the same).
    let text = text_of(&canaries, ESCAPED);
    let json = serde_json::to_string(text).unwrap();
    let debug = format!("{text:?}");
    for (form, bytes) in [
        ("JSON-escaped", &json[1..json.len() - 1]),
        ("Rust Debug of the string", &debug[1..debug.len() - 1]),
        ("an alphanumeric run", &text[text.len() - 12..]),
    ] {
        assert_ne!(bytes, text);
        if !needles
            .iter()
            .any(|n| n.canary == ESCAPED && n.text == latin1(bytes.as_bytes()))
        {
            missed.push(format!("the escaping canary has no {form} needle"));
        }
    }
    assert!(
        missed.is_empty(),
        "the search missed:\n{}",
        missed.join("\n")
    );

    // Another run's canaries, in every form, are not taken for these.
    let mut clean = Vec::new();
    for other in main_canaries() {
        for (_, bytes) in encodings(&other.bytes) {
            clean.extend(scratch_line(&bytes));
        }
    }
    let hits = search(&[("clean".to_owned(), clean)], &needles);
    assert!(hits.is_empty(), "false positives: {hits:?}");

    // A hit fails the check, and the failure names the log, the canary and the encoding but
    // shows no canary.
    std::fs::write(
        &scratch,
        scratch_line(&STANDARD.encode(&canaries[BINARY].bytes).into_bytes()),
    )
    .unwrap();
    let mut logs = Logs::default();
    logs.file("scratch", &scratch);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        logs.assert_clean(&canaries, &needles)
    }));
    let payload = outcome.expect_err("a canary in a log must fail the check");
    let message = payload
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(
        message.contains("scratch") && message.contains("canary #2") && message.contains("base64"),
        "the failure names log, canary and encoding: {message}"
    );
    let shown = search(&[("message".to_owned(), message.into_bytes())], &needles);
    assert!(
        shown.is_empty(),
        "the failure message shows a canary: {shown:?}"
    );
}

/// The inverse of [`latin1`].
fn latin1_bytes(text: &str) -> Vec<u8> {
    text.chars().map(|c| c as u8).collect()
}
