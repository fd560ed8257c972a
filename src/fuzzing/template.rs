//! The template targets: arbitrary template text compiled (and rendered over fixed values),
//! and a fixed set of templates rendered over arbitrary values.

use zeroize::Zeroizing;

use super::{check_message, strings_under, with_words};
use crate::template::{Inputs, RenderError, Template};

/// A value no template text of the fixed set holds, so that it can be looked for in errors.
const MARKER: &str = "Zq7-s3cret-MARKER";

/// Compiles the text; a compile error is one line. What compiles is rendered with every input
/// bound, in turn, to a JSON object holding [`MARKER`] and to the marker as plain text, and
/// with every input missing: a render error never quotes the marker (unless the template's own
/// text holds it, which an error may name).
pub fn template_compile(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let template = match Template::compile("fuzz/t.conf", &text) {
        Ok(t) => t,
        Err(e) => return check_message("Template::compile", e.message(), &[], &[]),
    };
    let json = format!(
        r#"{{"host":"{MARKER}","port":5432,"list":["{MARKER}",1],"o":{{"k":"{MARKER}"}}}}"#
    );
    let bindings: [Option<&[u8]>; 3] = [Some(json.as_bytes()), Some(MARKER.as_bytes()), None];
    let values = [MARKER.to_owned()];
    for bound in bindings {
        let inputs: Inputs = match bound {
            Some(bytes) => template
                .inputs()
                .iter()
                .map(|s| (s.clone(), Zeroizing::new(bytes.to_vec())))
                .collect(),
            None => Inputs::new(),
        };
        if let Err(e) = template.render(&inputs) {
            check_render_error(&e, &text, &values);
        }
    }
}

/// Templates as configurations write them: a database.yml, a pgpass line, a URL, a shell
/// line, binary and base64 round trips, a loop over a JSON object.
const TEMPLATES: [&str; 5] = [
    r#"{% set db = secret_json("app/db") -%}
production:
  host: {{ db.host }}
  port: {{ db.port }}
  username: {{ db.username | tojson }}
  password: {{ db.password | tojson }}
"#,
    r#"{% set db = secret_json("app/db") %}{{ db.host }}:{{ db.port }}:*:{{ db.username }}:{{ db.password | replace("\\", "\\\\") | replace(":", "\\:") }}
postgres://{{ db.username | urlencode }}:{{ db.password | urlencode }}@{{ db.host }}/{{ db.dbname }}
PGPASSWORD={{ db.password | shell }}
"#,
    r#"API_KEY={{ secret("app/api-key") | shell }}
KEY_B64={{ secret("app/api-key") | base64 }}
CERT={{ secret("app/cert") | base64 }}
ROUND={{ secret("app/cert") | base64 | b64decode | base64 }}
"#,
    r#"{% for k in secret_json("app/db") %}{{ k }}={{ secret_json("app/db")[k] | tojson }}
{% endfor %}"#,
    r#"{{ secret("app/db:password") }} {{ secret("app/db:nested") | tojson }} {{ secret("app/cert") }}
"#,
];

/// The causes a render error gives (crates/core/src/template/env.rs): its own, and minijinja's
/// error kinds, which it passes on as they are (`kind => ...` there). A value that happens to
/// be part of one ("lid operatio" of "invalid operation", found by the smoke run) is not a quote.
const WORDS: [&str; 29] = [
    "does not exist",
    "not JSON",
    "base64 takes a string or bytes",
    "b64decode: not base64",
    "shell takes text",
    "shell: text with a NUL byte",
    "binary value; use |base64",
    "a key does not exist",
    "undefined value",
    "not a primitive",
    "not a key type",
    "invalid operation",
    "syntax error",
    "template not found",
    "too many arguments",
    "missing argument",
    "unknown filter",
    "unknown function",
    "unknown test",
    "unknown method",
    "bad string escape",
    "could not serialize to value",
    "could not render include",
    "could not render block",
    "cannot unpack",
    "failed to write output",
    "cannot deserialize",
    "invalid custom delimiters",
    "unknown block",
];

/// Renders each of [`TEMPLATES`] over the fuzzer's values: `app/db`, `app/api-key` and
/// `app/cert` in turn, separated by 0x1E (the ASCII record separator), with `app/db`'s
/// `password` and `nested` keys taken from it as JSON where it is. A render error never quotes
/// a value, nor a string inside a JSON value, the template's own text aside.
pub fn template_render(data: &[u8]) {
    let mut parts = data.split(|b| *b == 0x1e);
    let mut next = || parts.next().map(<[u8]>::to_vec);
    let (db, api_key, cert) = (next(), next(), next());
    let mut values: Vec<String> = [&db, &api_key, &cert]
        .into_iter()
        .flatten()
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    let mut named: Vec<(&str, Vec<u8>)> = Vec::new();
    if let Some(db) = &db {
        named.push(("app/db", db.clone()));
        if let Ok(json) = serde_json::from_slice::<serde_json::Value>(db) {
            values.extend(strings_under(&json, &[]).1);
            for key in ["password", "nested"] {
                if let Some(v) = json.get(key) {
                    let bytes = match v {
                        serde_json::Value::String(s) => s.clone().into_bytes(),
                        other => other.to_string().into_bytes(),
                    };
                    named.push((
                        if key == "password" {
                            "app/db:password"
                        } else {
                            "app/db:nested"
                        },
                        bytes,
                    ));
                }
            }
        }
    }
    if let Some(v) = api_key {
        named.push(("app/api-key", v));
    }
    if let Some(v) = cert {
        named.push(("app/cert", v));
    }
    for text in TEMPLATES {
        let template = Template::compile("fuzz/t.conf", text).expect("the fixed templates compile");
        let inputs: Inputs = named
            .iter()
            .filter_map(|(s, v)| {
                let selector = crate::Selector::parse(s).ok()?;
                template
                    .inputs()
                    .contains(&selector)
                    .then(|| (selector, Zeroizing::new(v.clone())))
            })
            .collect();
        if let Err(e) = template.render(&inputs) {
            check_render_error(&e, text, &values);
        }
    }
}

/// A render error names an input the template's text writes, and a cause that is one of its
/// own words, a key the text writes, or else one that quotes no value.
fn check_render_error(e: &RenderError, text: &str, values: &[String]) {
    // Literals and keys are checked against the text only where no escape can stand between
    // how the text writes them and how an error quotes them.
    let plain = !text.contains('\\');
    if let Some(input) = e.input.as_ref().filter(|_| plain) {
        assert!(
            text.contains(input.as_str()),
            "a render error names an input the template does not write"
        );
    }
    check_message("Template::render", &e.to_string(), &[], &[]);
    // `line N: ` and the cause.
    let cause = e
        .cause
        .strip_prefix("line ")
        .and_then(|r| r.split_once(": "))
        .map_or(e.cause.as_str(), |(_, cause)| cause);
    if WORDS.contains(&cause) {
        return;
    }
    if let Some(key) = cause
        .strip_prefix("key \"")
        .and_then(|r| r.strip_suffix("\" does not exist"))
    {
        assert!(
            !plain || key.contains('\\') || text.contains(key),
            "a render error names a key the template does not write"
        );
        return;
    }
    let public = with_words(vec![text.to_owned()], &WORDS);
    check_message("Template::render's cause", cause, values, &public);
}
