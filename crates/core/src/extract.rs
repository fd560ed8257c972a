//! Taking one top-level JSON key out of a secret value
//! (docs/ARCHITECTURE.md#selector-grammar): a JSON string gives its raw text, any other JSON
//! value its compact JSON.
//!
//! The value is parsed in place (`RawValue` borrows from it) and the result goes straight
//! into a zeroing buffer, so extraction leaves no stray copy of the secret behind.

use std::collections::HashMap;

use serde_json::value::RawValue;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::source::Payload;

/// The bytes of `key` in the JSON object `payload`; `secret` names it in errors.
pub fn json_key(payload: &Payload, key: &str, secret: &str) -> Result<Zeroizing<Vec<u8>>> {
    let text = match payload {
        Payload::String(s) => s.as_str(),
        Payload::Binary(_) => {
            return Err(Error::not_found(format!(
                "secret {secret} is binary, so it has no JSON key {key:?}"
            )));
        }
    };
    // Errors of serde_json quote no input, but say nothing of its own: the value stays out.
    let object: HashMap<String, &RawValue> = serde_json::from_str(text).map_err(|_| {
        Error::not_found(format!(
            "secret {secret} is not a JSON object, so it has no key {key:?}"
        ))
    })?;
    let raw = object
        .get(key)
        .ok_or_else(|| Error::not_found(format!("secret {secret} has no JSON key {key:?}")))?
        .get();
    if raw.starts_with('"') {
        let text: String = serde_json::from_str(raw)
            .map_err(|_| Error::new(crate::error::ErrorKind::Internal, "JSON string unreadable"))?;
        Ok(Zeroizing::new(text.into_bytes()))
    } else {
        Ok(compact(raw))
    }
}

/// Drops the insignificant whitespace of valid JSON: outside strings, JSON whitespace is only
/// space, tab, CR and LF, and within strings nothing changes.
fn compact(json: &str) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(json.len()));
    let (mut in_string, mut escaped) = (false, false);
    for &b in json.as_bytes() {
        if in_string {
            out.push(b);
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            if b == b'"' {
                in_string = true;
            }
            out.push(b);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn s(text: &str) -> Payload {
        Payload::String(Zeroizing::new(text.into()))
    }

    fn key(payload: &Payload, k: &str) -> Result<String> {
        json_key(payload, k, "t").map(|b| String::from_utf8(b.to_vec()).unwrap())
    }

    #[test]
    fn strings_are_raw_text_and_the_rest_compact_json() {
        let p = s(r#"{ "user": "admin", "pass": "a\"b\\c\u00e9", "port": 5432,
                      "tags": [ "x", { "k" : "a b" } ], "on": true, "none": null }"#);
        assert_eq!(key(&p, "user").unwrap(), "admin");
        assert_eq!(key(&p, "pass").unwrap(), "a\"b\\cé");
        assert_eq!(key(&p, "port").unwrap(), "5432");
        assert_eq!(key(&p, "tags").unwrap(), r#"["x",{"k":"a b"}]"#);
        assert_eq!(key(&p, "on").unwrap(), "true");
        assert_eq!(key(&p, "none").unwrap(), "null");
    }

    #[test]
    fn keys_with_any_characters() {
        let p = s(r#"{"a:b/c%d": "v"}"#);
        assert_eq!(key(&p, "a:b/c%d").unwrap(), "v");
    }

    #[test]
    fn missing_keys_and_non_objects_are_not_found_without_the_value() {
        let cases = [
            (s(r#"{"a": 1}"#), "b", "no JSON key"),
            (s("plain-secret-text"), "a", "not a JSON object"),
            (s(r#"["plain-secret-text"]"#), "a", "not a JSON object"),
            (Payload::Binary(Zeroizing::new(vec![1, 2])), "a", "binary"),
        ];
        for (payload, k, needle) in cases {
            let e = json_key(&payload, k, "t").unwrap_err();
            assert_eq!(e.kind(), ErrorKind::NotFound);
            assert!(e.message().contains(needle), "{e}");
            assert!(!e.message().contains("plain-secret-text"));
        }
    }
}
