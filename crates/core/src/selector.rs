//! The selector grammar, `NAME[:JSON_KEY[:VERSION_STAGE[:VERSION_ID]]]`
//! (docs/ARCHITECTURE.md#selector-grammar).
//!
//! Names may not contain `:`, so the colon separates the parts, in the order ECS `valueFrom`
//! and CloudFormation dynamic references already use. An ARN is accepted in place of the name;
//! its own colons are recognised by its fixed shape. Key and stage are percent-decoded so that
//! any JSON key can be named, even one with `:` or `/` in it.
//!
//! Parsing is pure and total: every input yields a selector or an error that says what is
//! wrong, and nothing invalid ever reaches the network.

use std::fmt;

use percent_encoding::percent_decode_str;

use crate::error::{Error, Result};

/// The stage a selector without stage or version id reads.
pub const AWSCURRENT: &str = "AWSCURRENT";

const MAX_NAME_LEN: usize = 512;
const MAX_STAGE_LEN: usize = 256;
const VERSION_ID_LEN: std::ops::RangeInclusive<usize> = 32..=64;
/// `arn:PARTITION:secretsmanager:REGION:ACCOUNT:secret:NAME` has seven colon-separated fields.
const ARN_FIELDS: usize = 7;

/// A parsed selector. `secret_id` is a name or an ARN; the other parts are decoded.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Selector {
    pub secret_id: String,
    pub json_key: Option<String>,
    pub version_stage: Option<String>,
    pub version_id: Option<String>,
}

/// Which version of a secret to fetch: what GetSecretValue is asked for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VersionRef {
    pub stage: Option<String>,
    pub version_id: Option<String>,
}

impl VersionRef {
    pub fn current() -> Self {
        Self::stage(AWSCURRENT)
    }

    pub fn stage(stage: &str) -> Self {
        VersionRef {
            stage: Some(stage.to_owned()),
            version_id: None,
        }
    }

    /// What GetSecretValue is asked for with a stage and a version id, either optional:
    /// neither is AWSCURRENT; both are sent together.
    pub fn of(stage: Option<String>, version_id: Option<String>) -> Self {
        match (stage, version_id) {
            (None, None) => VersionRef::current(),
            (stage, version_id) => VersionRef { stage, version_id },
        }
    }

    pub fn is_current(&self) -> bool {
        self.version_id.is_none() && self.stage.as_deref() == Some(AWSCURRENT)
    }
}

impl fmt::Display for VersionRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.stage, &self.version_id) {
            (Some(s), Some(v)) => write!(f, "stage {s}, version {v}"),
            (Some(s), None) => write!(f, "stage {s}"),
            (None, Some(v)) => write!(f, "version {v}"),
            (None, None) => write!(f, "stage {AWSCURRENT}"),
        }
    }
}

impl Selector {
    /// A selector for the AWSCURRENT value of a whole secret.
    pub fn whole(secret_id: impl Into<String>) -> Self {
        Selector {
            secret_id: secret_id.into(),
            json_key: None,
            version_stage: None,
            version_id: None,
        }
    }

    /// The whole value of one stage of a secret (the stages layout's `NAME/STAGE` files).
    pub fn of_stage(secret_id: &str, stage: &str) -> Result<Self> {
        validate_stage(stage)
            .and_then(|()| {
                (!stage.is_empty())
                    .then_some(())
                    .ok_or("the stage is empty".into())
            })
            .map_err(|why| Error::invalid_selector(format!("invalid stage {stage:?}: {why}")))?;
        Ok(Selector {
            secret_id: secret_id.to_owned(),
            json_key: None,
            version_stage: Some(stage.to_owned()),
            version_id: None,
        })
    }

    /// A Parameter Store selector file name's parts (`NAME:3`, `NAME:label`), `name` the
    /// parameter's name: digits are a version number (the version id), anything else a label
    /// (the stage). Only labels Parameter Store accepts pass (1-100 letters, digits, `.`, `-`,
    /// `_`, not starting with a digit, `aws` or `ssm`), so nothing invalid is ever asked for.
    pub fn of_parameter(name: &str, suffix: &str) -> Result<Self> {
        // Quoted: a file name may hold a newline, and the message goes to the log.
        let invalid = |why: &str| {
            Error::invalid_selector(format!(
                "invalid parameter selector {:?}: {why}",
                format!("{name}:{suffix}")
            ))
        };
        validate_parameter_name(name).map_err(|why| invalid(&why))?;
        let mut selector = Selector::whole(name);
        if !suffix.is_empty() && suffix.bytes().all(|b| b.is_ascii_digit()) {
            match suffix.parse::<u64>() {
                Ok(n) if n >= 1 && n <= i64::MAX as u64 => {
                    selector.version_id = Some(n.to_string());
                }
                Ok(0) => return Err(invalid("a version number is 1 or more")),
                _ => {
                    return Err(invalid(&format!(
                        "a version number is at most {}",
                        i64::MAX
                    )));
                }
            }
            return Ok(selector);
        }
        let lower = suffix.to_ascii_lowercase();
        let allowed = |c: char| c.is_ascii_alphanumeric() || ".-_".contains(c);
        if suffix.is_empty() || suffix.len() > 100 || !suffix.chars().all(allowed) {
            return Err(invalid(
                "a label is 1 to 100 letters, digits, '.', '-' or '_'",
            ));
        }
        if suffix.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(invalid("a label cannot begin with a digit"));
        }
        if lower.starts_with("aws") || lower.starts_with("ssm") {
            return Err(invalid("a label cannot begin with aws or ssm"));
        }
        selector.version_stage = Some(suffix.to_owned());
        Ok(selector)
    }

    pub fn parse(input: &str) -> Result<Self> {
        parse(input)
            .map_err(|why| Error::invalid_selector(format!("invalid selector {input:?}: {why}")))
    }

    /// The version to fetch: a selector that names neither stage nor version reads AWSCURRENT,
    /// so `db`, `db:key` and `db::AWSCURRENT` share one cache entry and one upstream call.
    pub fn version_ref(&self) -> VersionRef {
        VersionRef::of(self.version_stage.clone(), self.version_id.clone())
    }

    pub fn is_arn(&self) -> bool {
        self.secret_id.starts_with("arn:")
    }
}

fn parse(input: &str) -> std::result::Result<Selector, String> {
    let (secret_id, rest) = split_secret_id(input)?;
    let mut parts = rest
        .map(|r| r.split(':').collect::<Vec<_>>())
        .unwrap_or_default();
    if parts.len() > 3 {
        return Err("too many ':' separated parts (at most NAME:KEY:STAGE:VERSION_ID)".into());
    }
    parts.resize(3, "");
    let json_key = non_empty(parts[0])
        .map(|k| decode(k, "JSON key"))
        .transpose()?;
    let version_stage = non_empty(parts[1])
        .map(|s| decode(s, "version stage"))
        .transpose()?;
    if let Some(stage) = &version_stage {
        validate_stage(stage)?;
    }
    let version_id = non_empty(parts[2]).map(str::to_owned);
    if let Some(id) = &version_id {
        validate_version_id(id)?;
    }
    Ok(Selector {
        secret_id: secret_id.to_owned(),
        json_key,
        version_stage,
        version_id,
    })
}

/// Splits off the secret id (a name, or an ARN with its own colons) from the selector parts.
fn split_secret_id(input: &str) -> std::result::Result<(&str, Option<&str>), String> {
    if input.starts_with("arn:") {
        let mut end = 0;
        let mut fields = 0;
        for (i, c) in input.char_indices() {
            if c == ':' {
                fields += 1;
                if fields == ARN_FIELDS {
                    end = i;
                    break;
                }
            }
        }
        let (arn, rest) = if fields == ARN_FIELDS {
            (&input[..end], Some(&input[end + 1..]))
        } else {
            (input, None)
        };
        validate_arn(arn)?;
        Ok((arn, rest))
    } else {
        let (name, rest) = match input.split_once(':') {
            Some((name, rest)) => (name, Some(rest)),
            None => (input, None),
        };
        validate_name(name)?;
        Ok((name, rest))
    }
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

/// Checks a secret name against the Secrets Manager character set and length.
pub fn validate_name(name: &str) -> std::result::Result<(), String> {
    validate_name_of(name, "secret")
}

/// [`validate_name`] for a Parameter Store name, with its errors saying so.
pub fn validate_parameter_name(name: &str) -> std::result::Result<(), String> {
    validate_name_of(name, "parameter")
}

fn validate_name_of(name: &str, what: &str) -> std::result::Result<(), String> {
    if name.is_empty() {
        return Err(format!("the {what} name is empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "the {what} name is {} characters long; the limit is {MAX_NAME_LEN}",
            name.len()
        ));
    }
    validate_chars_of(name, what)
}

/// The characters of [`validate_name`] alone: what a name from upstream must hold to be
/// presented, a path or a selector (a `:` would be read as a JSON key, a newline split a log
/// or a `watch` line).
pub fn validate_name_chars(name: &str) -> std::result::Result<(), String> {
    validate_chars_of(name, "secret")
}

fn validate_chars_of(name: &str, what: &str) -> std::result::Result<(), String> {
    if let Some((pos, c)) = name.char_indices().find(|&(_, c)| !is_name_char(c)) {
        return Err(format!(
            "character {c:?} at position {pos} is not allowed in a {what} name \
             (allowed: A-Z a-z 0-9 / _ + = . @ -)"
        ));
    }
    Ok(())
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "/_+=.@-".contains(c)
}

fn validate_arn(arn: &str) -> std::result::Result<(), String> {
    let fields: Vec<&str> = arn.splitn(ARN_FIELDS, ':').collect();
    let shape = "an ARN must look like arn:PARTITION:secretsmanager:REGION:ACCOUNT:secret:NAME";
    if fields.len() != ARN_FIELDS {
        return Err(shape.into());
    }
    let lower_dash = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    if !lower_dash(fields[1]) || fields[2] != "secretsmanager" || !lower_dash(fields[3]) {
        return Err(shape.into());
    }
    if fields[4].len() != 12 || !fields[4].chars().all(|c| c.is_ascii_digit()) {
        return Err("the account id in an ARN is 12 digits".into());
    }
    if fields[5] != "secret" {
        return Err(shape.into());
    }
    validate_name(fields[6])
}

/// A stage label as a selector may name it: at most 256 characters, no control characters.
pub fn validate_stage(stage: &str) -> std::result::Result<(), String> {
    if stage.chars().count() > MAX_STAGE_LEN {
        return Err(format!(
            "a version stage is at most {MAX_STAGE_LEN} characters"
        ));
    }
    if stage.chars().any(char::is_control) {
        return Err("a version stage may not contain control characters".into());
    }
    Ok(())
}

fn validate_version_id(id: &str) -> std::result::Result<(), String> {
    if !VERSION_ID_LEN.contains(&id.len()) {
        return Err(format!(
            "a version id is {} to {} characters; this one has {}",
            VERSION_ID_LEN.start(),
            VERSION_ID_LEN.end(),
            id.len()
        ));
    }
    if !id.chars().all(|c| c.is_ascii_graphic()) {
        return Err("a version id is printable ASCII without spaces".into());
    }
    Ok(())
}

/// Strict percent-decoding: a `%` must start a two-digit hex escape, and the result must be
/// UTF-8 (JSON keys and stage labels are text).
fn decode(raw: &str, what: &str) -> std::result::Result<String, String> {
    let bytes = raw.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3);
            if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                return Err(format!(
                    "the {what} has a '%' that does not start an escape like %3A (write %25 for '%')"
                ));
            }
        }
    }
    percent_decode_str(raw)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| format!("the {what} does not decode to UTF-8"))
}

/// Encodes what `decode` would misread or what cannot stand in a file name.
fn encode(part: &str, out: &mut String) {
    for c in part.chars() {
        if matches!(c, '%' | ':' | '/') || c.is_control() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
}

/// Formats the canonical selector: `parse(format(s)) == s` for every valid selector.
impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = self.secret_id.clone();
        let parts = [&self.json_key, &self.version_stage];
        let last = if self.version_id.is_some() {
            3
        } else if self.version_stage.is_some() {
            2
        } else if self.json_key.is_some() {
            1
        } else {
            0
        };
        for part in parts.iter().take(last.min(2)) {
            out.push(':');
            if let Some(p) = part {
                encode(p, &mut out);
            }
        }
        if let Some(id) = &self.version_id {
            out.push(':');
            out.push_str(id);
        }
        f.write_str(&out)
    }
}

impl std::str::FromStr for Selector {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Selector::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_or_a_stage_is_asked_for_as_given_and_neither_is_awscurrent() {
        assert_eq!(VersionRef::of(None, None), VersionRef::current());
        assert_eq!(
            VersionRef::of(Some("AWSPREVIOUS".into()), None),
            VersionRef::stage("AWSPREVIOUS")
        );
        let both = VersionRef::of(Some(AWSCURRENT.into()), Some("v1".into()));
        assert_eq!(both.version_id.as_deref(), Some("v1"));
        assert_eq!(both.stage.as_deref(), Some(AWSCURRENT));
    }

    const VID: &str = "0a1b2c3d-1111-2222-3333-444455556666";

    fn p(s: &str) -> Selector {
        Selector::parse(s).unwrap()
    }

    #[test]
    fn parameter_selectors_are_version_numbers_or_labels() {
        let sel = Selector::of_parameter("/app/db-url", "3").unwrap();
        assert_eq!(sel.version_id.as_deref(), Some("3"));
        assert_eq!(sel.version_stage, None);
        let sel = Selector::of_parameter("/app/db-url", "prod").unwrap();
        assert_eq!(sel.version_stage.as_deref(), Some("prod"));
        assert_eq!(sel.version_id, None);
        assert_eq!(sel.version_ref(), VersionRef::stage("prod"));
        for bad in [
            "",
            "0",
            "99999999999999999999",
            "3a",
            "awsx",
            "SSM1",
            "a:b",
            "a b",
        ] {
            assert!(
                Selector::of_parameter("/app/db-url", bad).is_err(),
                "{bad:?}"
            );
        }
        assert!(Selector::of_parameter("/app/d b", "3").is_err());
        // Each refusal says what was wrong, in Parameter Store's words.
        let message = |suffix: &str| {
            Selector::of_parameter("/app/db-url", suffix)
                .unwrap_err()
                .message()
                .to_owned()
        };
        assert!(message("0").contains("1 or more"));
        assert!(message("99999999999999999999").contains("at most 9223372036854775807"));
        let name = Selector::of_parameter("/app/d b", "3").unwrap_err();
        assert!(name.message().contains("a parameter name"), "{name:?}");
        assert!(
            validate_parameter_name("")
                .unwrap_err()
                .contains("parameter name is empty")
        );
        // The secrets grammar is unchanged: `x:3` is still a JSON key there.
        assert_eq!(
            Selector::parse("x:3").unwrap().json_key.as_deref(),
            Some("3")
        );
    }

    /// Found by the fuzzer (selector target): the name was written raw into the message.
    #[test]
    fn a_parameter_selector_with_a_newline_is_refused_on_one_line() {
        for (name, suffix) in [("prod/db\0a", "b\n2"), ("/app\nx", "3"), ("/app", "x\ny")] {
            let err = Selector::of_parameter(name, suffix).unwrap_err();
            assert!(!err.message().contains('\n'), "{err:?}");
            assert!(err.message().contains("\\n"), "{err:?}");
        }
    }

    #[test]
    fn parts_in_order() {
        assert_eq!(p("prod/db"), Selector::whole("prod/db"));
        let s = p("prod/db:password");
        assert_eq!(s.json_key.as_deref(), Some("password"));
        let s = p("prod/db::AWSPREVIOUS");
        assert_eq!(s.json_key, None);
        assert_eq!(s.version_stage.as_deref(), Some("AWSPREVIOUS"));
        let s = p("prod/db:password:AWSPREVIOUS");
        assert_eq!(s.json_key.as_deref(), Some("password"));
        assert_eq!(s.version_stage.as_deref(), Some("AWSPREVIOUS"));
        let s = p(&format!("prod/db:::{VID}"));
        assert_eq!(s.version_id.as_deref(), Some(VID));
        assert_eq!(
            s.version_ref(),
            VersionRef {
                stage: None,
                version_id: Some(VID.into())
            }
        );
    }

    #[test]
    fn all_current_forms_share_one_version_ref() {
        for s in [
            "db",
            "db:user",
            "db::AWSCURRENT",
            "db:password:AWSCURRENT",
            "db:",
            "db:::",
        ] {
            assert_eq!(p(s).version_ref(), VersionRef::current(), "{s}");
        }
    }

    #[test]
    fn key_and_stage_are_percent_decoded() {
        let s = p("db:a%3Ab%2Fc%25d:my%3Astage");
        assert_eq!(s.json_key.as_deref(), Some("a:b/c%d"));
        assert_eq!(s.version_stage.as_deref(), Some("my:stage"));
        assert_eq!(s.to_string(), "db:a%3Ab%2Fc%25d:my%3Astage");
    }

    #[test]
    fn arns_are_accepted_with_their_colons() {
        let arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-AbCdEf";
        assert_eq!(p(arn).secret_id, arn);
        let s = p(&format!("{arn}:password::{VID}"));
        assert_eq!(s.secret_id, arn);
        assert!(s.is_arn());
        assert_eq!(s.json_key.as_deref(), Some("password"));
        assert_eq!(s.version_id.as_deref(), Some(VID));
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let cases = [
            ("", "empty"),
            ("bad name", "' '"),
            ("db:k:s:v:extra", "too many"),
            ("db:100%", "'%'"),
            ("db:%zz", "'%'"),
            ("db:%FF", "UTF-8"),
            ("db:::short", "version id"),
            ("arn:aws:s3:us-east-1:123456789012:secret:x", "ARN"),
            (
                "arn:aws:secretsmanager:us-east-1:12345:secret:x",
                "12 digits",
            ),
            ("arn:aws:secretsmanager", "ARN"),
        ];
        for (input, needle) in cases {
            let err = Selector::parse(input).unwrap_err();
            assert_eq!(err.kind(), crate::error::ErrorKind::InvalidSelector);
            assert!(err.message().contains(needle), "{input:?}: {err}");
        }
        let long = "a".repeat(513);
        assert!(
            Selector::parse(&long)
                .unwrap_err()
                .message()
                .contains("512")
        );
        assert!(Selector::parse(&"a".repeat(512)).is_ok());
    }

    #[test]
    fn canonical_format_drops_trailing_empty_parts() {
        assert_eq!(p("db:").to_string(), "db");
        assert_eq!(p("db:k:").to_string(), "db:k");
        assert_eq!(p("db::AWSPREVIOUS:").to_string(), "db::AWSPREVIOUS");
        assert_eq!(p(&format!("db:::{VID}")).to_string(), format!("db:::{VID}"));
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;
    use proptest::string::string_regex;

    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            string_regex("[A-Za-z0-9/_+=.@-]{1,80}").unwrap(),
            string_regex("[A-Za-z0-9/_+=.@-]{1,40}")
                .unwrap()
                .prop_map(|n| format!("arn:aws:secretsmanager:us-east-1:123456789012:secret:{n}")),
        ]
    }

    /// Any text at all, weighted towards the characters the grammar treats specially.
    fn tricky_text() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            string_regex("[:%/a-zA-Z0-9 é\\x00\\t]{0,30}").unwrap(),
        ]
    }

    fn selector() -> impl Strategy<Value = Selector> {
        let key = proptest::option::of(tricky_text().prop_filter("non-empty", |s| !s.is_empty()));
        let stage = proptest::option::of(
            "[^\\p{Cc}]{1,40}".prop_filter("no control", |s| !s.chars().any(char::is_control)),
        );
        let id = proptest::option::of(string_regex("[a-f0-9-]{32,64}").unwrap());
        (name(), key, stage, id).prop_map(|(secret_id, json_key, version_stage, version_id)| {
            Selector {
                secret_id,
                json_key,
                version_stage,
                version_id,
            }
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn format_then_parse_is_identity(s in selector()) {
            let text = s.to_string();
            prop_assert_eq!(Selector::parse(&text).unwrap(), s);
        }

        #[test]
        fn parse_never_panics(input in tricky_text()) {
            let _ = Selector::parse(&input);
        }

        #[test]
        fn parse_then_format_is_stable(input in tricky_text()) {
            if let Ok(s) = Selector::parse(&input) {
                let again = Selector::parse(&s.to_string()).unwrap();
                prop_assert_eq!(again, s);
            }
        }
    }
}
