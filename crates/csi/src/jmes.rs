//! jmesPath entries: a file cut out of a JSON value by a JMESPath expression, whose result
//! must be a string (the AWS provider's rule). Only JMESPath's own 26 functions are there, as
//! in go-jmespath.

use zeroize::Zeroizing;

use crate::failure::{self, Failure};

/// The string `path` selects in `value`. The failures quote the path and the alias, never the
/// value.
pub fn extract(value: &[u8], path: &str, alias: &str) -> Result<Zeroizing<Vec<u8>>, Failure> {
    let expression = jpx_core::compile(path).map_err(|e| {
        Failure::new(
            failure::JMES_INVALID,
            format!("Invalid JMES Path: {path}: {}", e.reason),
        )
    })?;
    let document: serde_json::Value = serde_json::from_slice(value).map_err(|_| {
        Failure::new(
            failure::JMES_NOT_JSON,
            "Invalid JSON used with jmesPath in secret (the value is not JSON)",
        )
    })?;
    let found = expression.search(&document).map_err(|e| {
        Failure::new(
            failure::JMES_INVALID,
            format!("Invalid JMES Path: {path}: {}", e.reason),
        )
    })?;
    match found {
        serde_json::Value::String(s) => Ok(Zeroizing::new(s.into_bytes())),
        serde_json::Value::Null => Err(Failure::new(
            failure::JMES_NO_MATCH,
            format!(
                "JMES Path - {path} for object alias - {alias} does not point to a valid object."
            ),
        )),
        _ => Err(Failure::new(
            failure::JMES_NOT_STRING,
            format!("Invalid JMES search result type for path:{path}. Only string is allowed."),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALUE: &[u8] =
        br#"{"username": "app", "port": 5432, "nested": {"key": "k-1"}, "list": ["a", "b"]}"#;

    #[test]
    fn a_string_result_is_the_file() {
        assert_eq!(&*extract(VALUE, "username", "u").unwrap(), b"app");
        assert_eq!(&*extract(VALUE, "nested.key", "k").unwrap(), b"k-1");
        assert_eq!(&*extract(VALUE, "list[1]", "l").unwrap(), b"b");
        assert_eq!(&*extract(VALUE, "to_string(port)", "p").unwrap(), b"5432");
    }

    #[test]
    fn anything_else_is_refused_with_a_code_and_no_value() {
        let code = |path: &str, value: &[u8]| {
            let f = extract(value, path, "alias").unwrap_err();
            assert!(!f.cause.contains("app"), "{}", f.cause);
            f.code.into_owned()
        };
        assert_eq!(code("port", VALUE), failure::JMES_NOT_STRING);
        assert_eq!(code("nested", VALUE), failure::JMES_NOT_STRING);
        assert_eq!(code("missing", VALUE), failure::JMES_NO_MATCH);
        assert_eq!(code("username[", VALUE), failure::JMES_INVALID);
        assert_eq!(code("username", b"app-password"), failure::JMES_NOT_JSON);
    }
}
