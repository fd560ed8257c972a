//! The bodies of the cargo-fuzz targets (`fuzz/`), one function per target taking the
//! fuzzer's bytes. They live here rather than in `fuzz/` so that they reach the few internals
//! they drive without those becoming public, are linted with the rest, and so that
//! `cargo test` replays the committed seeds through them on the stable toolchain
//! (`tests.rs`).
//!
//! A panic is a finding. Besides "never panics", the targets check what the project promises
//! of every input: errors are one line, and no error, of parsing or of rendering, quotes a
//! secret value. Their own panic messages never show the value either, only where it was.
//!
//! Compiled for tests and with the `fuzzing` feature (which the fuzz crate turns on), never
//! into a release build.

mod config;
mod http;
mod sdk;
mod template;

#[cfg(test)]
mod tests;

pub use config::config;
pub use http::http;
pub use sdk::sdk_answer;
pub use template::{template_compile, template_render};

use crate::selector::Selector;

/// Values shorter than this are not looked for in errors: a two-letter value is in every
/// message by chance.
const MIN_VALUE_LEN: usize = 6;

/// Panics when `message` spans several lines, or quotes one of `values` (each at least
/// [`MIN_VALUE_LEN`] bytes). `public` is text an error may name: what the input gave
/// elsewhere (a secret's name, a version id) and the message's own words; a value inside one of
/// them is not looked for, and they are cut out of the message first, so that a value that
/// happens to match a name plus the words after it is not taken for a quote. `what` says
/// which message, for the panic.
fn check_message(what: &str, message: &str, values: &[String], public: &[String]) {
    assert!(
        !message.contains('\n'),
        "{what}: the message spans several lines"
    );
    let mut cut: Vec<&String> = public.iter().filter(|p| p.len() >= MIN_VALUE_LEN).collect();
    cut.sort_by_key(|p| std::cmp::Reverse(p.len()));
    let mut rest = message.to_owned();
    for p in cut {
        rest = rest.replace(p.as_str(), "\0");
    }
    for (i, value) in values.iter().enumerate() {
        if value.len() >= MIN_VALUE_LEN
            && !public.iter().any(|p| p.contains(value.as_str()))
            && rest.contains(value.as_str())
        {
            panic!(
                "{what}: the message quotes secret value {i} ({} bytes)",
                value.len()
            );
        }
    }
}

/// `public` and the fixed words of a target's messages.
fn with_words(mut public: Vec<String>, words: &[&str]) -> Vec<String> {
    public.extend(words.iter().map(|w| (*w).to_owned()));
    public
}

/// Every string under one of `keys` anywhere in `json` (the values), and every other string
/// and object key (what errors may name).
fn strings_under(json: &serde_json::Value, keys: &[&str]) -> (Vec<String>, Vec<String>) {
    fn walk(
        v: &serde_json::Value,
        under_key: bool,
        keys: &[&str],
        out: &mut (Vec<String>, Vec<String>),
    ) {
        match v {
            serde_json::Value::String(s) if under_key => out.0.push(s.clone()),
            serde_json::Value::String(s) => out.1.push(s.clone()),
            serde_json::Value::Array(items) => {
                items.iter().for_each(|i| walk(i, under_key, keys, out));
            }
            serde_json::Value::Object(map) => {
                for (k, item) in map {
                    out.1.push(k.clone());
                    walk(item, keys.contains(&k.as_str()), keys, out);
                }
            }
            _ => {}
        }
    }
    let mut out = (Vec::new(), Vec::new());
    walk(json, false, keys, &mut out);
    out
}

/// The selector grammar: whatever parses formats to a canonical text that parses to the same
/// selector, and formats the same again; parts that are each valid format to a text that
/// parses back to them; every refusal is an invalid-selector error of one line.
pub fn selector(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Selector::parse(text) {
        Ok(parsed) => {
            let canonical = parsed.to_string();
            let again = Selector::parse(&canonical)
                .unwrap_or_else(|e| panic!("the canonical form does not parse: {e}"));
            assert_eq!(
                again, parsed,
                "parse -> format -> parse changed the selector"
            );
            assert_eq!(
                again.to_string(),
                canonical,
                "the canonical form is not stable"
            );
            let _ = parsed.version_ref();
        }
        Err(e) => {
            assert_eq!(e.kind(), crate::ErrorKind::InvalidSelector);
            check_message("Selector::parse", e.message(), &[], &[]);
        }
    }
    // The other direction: parts given separately (NUL between them), each valid on its own.
    let mut parts = text.split('\0');
    let secret_id = parts.next().unwrap_or_default().to_owned();
    let mut part = || parts.next().filter(|p| !p.is_empty()).map(str::to_owned);
    let built = Selector {
        secret_id,
        json_key: part(),
        version_stage: part(),
        version_id: part(),
    };
    if parts_are_valid(&built) {
        let text = built.to_string();
        let again = Selector::parse(&text)
            .unwrap_or_else(|e| panic!("a selector of valid parts formats unparsably: {e}"));
        assert_eq!(again, built, "format -> parse changed the selector");
    }
    // The mount's other two grammars, `NAME:3` / `NAME:label` files and `NAME/STAGE` files.
    if let Some((name, suffix)) = text.rsplit_once(':') {
        if let Err(e) = Selector::of_parameter(name, suffix) {
            check_message("Selector::of_parameter", e.message(), &[], &[]);
        }
        if let Err(e) = Selector::of_stage(name, suffix) {
            check_message("Selector::of_stage", e.message(), &[], &[]);
        }
    }
}

/// Whether each part of `s` is one the parser could have produced: a name or ARN the parser
/// takes alone, a stage it takes, a version id of its shape.
fn parts_are_valid(s: &Selector) -> bool {
    // `arn:` starts an ARN (a mistyped one is refused as such), so a secret named `arn` is
    // read whole only: `arn:KEY` is not a selector of it.
    let has_parts = s.json_key.is_some() || s.version_stage.is_some() || s.version_id.is_some();
    let whole_ok = Selector::parse(&s.secret_id).is_ok_and(|w| w == Selector::whole(&s.secret_id))
        && !(s.secret_id == "arn" && has_parts);
    let stage_ok = s
        .version_stage
        .as_deref()
        .is_none_or(|st| Selector::of_stage("x", st).is_ok());
    let id_ok = s.version_id.as_deref().is_none_or(|id| {
        Selector::parse(&format!("x:::{id}")).is_ok_and(|p| p.version_id.as_deref() == Some(id))
    });
    whole_ok && stage_ok && id_ok
}

/// The file source's JSON (`--source file`): every file parses or is refused with a one-line
/// error; every version of a file that loads is found again by each of its stages and by its
/// id. Whether an error quotes a value is checked on the same file with each value replaced
/// by a marker that no message's own words or names can spell by chance.
pub fn secrets_file(data: &[u8]) {
    match crate::source::file::parse_and_read_back(data) {
        Ok(lookups) => {
            for (want, found) in lookups {
                let found = found.unwrap_or_else(|| panic!("a version is not found by {want}"));
                if let Some(id) = &want.version_id {
                    assert_eq!(&found.version_id, id, "looked up by id, found another");
                }
                if let Some(stage) = &want.stage {
                    assert!(
                        found.stages.contains(stage),
                        "looked up by stage, found another"
                    );
                }
            }
        }
        Err(why) => check_message("the secrets file's error", &why, &[], &[]),
    }
    if data
        .windows(VALUE_MARKER.len())
        .any(|w| w == VALUE_MARKER.as_bytes())
    {
        return;
    }
    let Ok(mut json) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let mut markers = Vec::new();
    mark_values(&mut json, false, &mut markers);
    let marked = serde_json::to_vec(&json).expect("a JSON value serializes");
    if let Err(why) = crate::source::file::parse_and_read_back(&marked) {
        // Keys and other strings are the input's own words, which an error may quote (an
        // unknown key): one that holds a marker's text is not a value.
        let (_, public) = strings_under(&json, &["SecretString", "SecretBinary"]);
        check_message("the secrets file's error", &why, &markers, &public);
    }
}

const VALUE_MARKER: &str = "Zq7mark";

/// Replaces each `SecretString` with a marker, and each `SecretBinary` with one in base64 when
/// it was base64 (so that the file fails, or not, as before), else with one that is not.
fn mark_values(v: &mut serde_json::Value, under: bool, markers: &mut Vec<String>) {
    use base64::Engine as _;
    match v {
        serde_json::Value::String(s) if under => {
            let marker = format!("{VALUE_MARKER}{}", markers.len());
            let b64 = base64::engine::general_purpose::STANDARD;
            *s = if b64.decode(s.as_bytes()).is_ok() {
                b64.encode(&marker)
            } else {
                format!("{marker}!")
            };
            markers.push(s.clone());
            markers.push(marker);
        }
        serde_json::Value::Array(items) => {
            items
                .iter_mut()
                .for_each(|i| mark_values(i, under, markers));
        }
        serde_json::Value::Object(map) => {
            for (k, item) in map.iter_mut() {
                let values = k == "SecretString" || k == "SecretBinary";
                mark_values(item, values, markers);
            }
        }
        _ => {}
    }
}
