//! Rendering: exact output, filters, and render errors that never hold a value.

use super::*;

const DB: &[u8] =
    br#"{"host":"db.internal","port":5432,"username":"app","password":"p'w:d@1","dbname":"prod"}"#;

#[test]
fn three_inputs_render_exactly() {
    let values = inputs(&[
        ("prod/db", DB),
        ("prod/db:password", b"p'w:d@1"),
        ("prod/api-key", b"k-123"),
        ("prod/cert", &[0xff, 0x00, 0x10]),
    ]);
    let text = "{% set db = secret_json(\"prod/db\") %}\
host={{ db.host }}:{{ db.port }}\n\
pw={{ secret(\"prod/db:password\") }}\n\
api={{ secret('prod/api-key') }}\n\
cert={{ secret(\"prod/cert\") | base64 }}\n";
    assert_eq!(
        render(text, &values).unwrap(),
        "host=db.internal:5432\npw=p'w:d@1\napi=k-123\ncert=/wAQ\n"
    );
}

#[test]
fn a_database_yml() {
    let values = inputs(&[("prod/db", DB)]);
    let text = r#"{% set db = secret_json("prod/db") -%}
production:
  adapter: postgresql
  host: {{ db.host }}
  port: {{ db.port }}
  username: {{ db.username | tojson }}
  password: {{ db.password | tojson }}
"#;
    assert_eq!(
        render(text, &values).unwrap(),
        "production:\n  adapter: postgresql\n  host: db.internal\n  port: 5432\n  \
         username: \"app\"\n  password: \"p\\u0027w:d@1\"\n"
    );
}

#[test]
fn a_pgpass_and_a_url_and_a_shell_line() {
    let values = inputs(&[("prod/db", DB)]);
    let text = "{% set db = secret_json(\"prod/db\") %}\
{{ db.host }}:{{ db.port }}:{{ db.dbname }}:{{ db.username }}:{{ db.password | replace(\"\\\\\", \"\\\\\\\\\") | replace(\":\", \"\\\\:\") }}\n\
postgres://{{ db.username | urlencode }}:{{ db.password | urlencode }}@{{ db.host }}/{{ db.dbname }}\n\
PGPASSWORD={{ db.password | shell }}\n";
    assert_eq!(
        render(text, &values).unwrap(),
        "db.internal:5432:prod:app:p'w\\:d@1\n\
         postgres://app:p%27w%3Ad%401@db.internal/prod\n\
         PGPASSWORD='p'\\''w:d@1'\n"
    );
}

#[test]
fn filters_on_text_and_bytes() {
    let values = inputs(&[("t", b"a b"), ("b", &[0xc3, 0x28])]);
    let out = render(
        "{{ secret('t') | base64 }} {{ secret('t') | base64 | b64decode }} {{ secret('t') | tojson }} \
         {{ secret('t') | shell }} {{ secret('b') | base64 | b64decode | base64 }}",
        &values,
    )
    .unwrap();
    assert_eq!(out, "YSBi a b \"a b\" 'a b' wyg=");
}

#[test]
fn no_escaping_whatever_the_file_name_and_the_trailing_newline_kept() {
    let values = inputs(&[("t", b"<a href='x'>&\"")]);
    for name in ["x.html", "x.json", "x.yml", "x"] {
        let t = Template::compile(name, "{{ secret('t') }}\n").unwrap();
        assert_eq!(
            &t.render(&values).unwrap()[..],
            b"<a href='x'>&\"\n",
            "{name}"
        );
    }
}

#[test]
fn a_missing_input_is_missing_and_named() {
    let err = render_err("a\n{{ secret(\"prod/db:password\") }}", &Inputs::new());
    assert!(err.missing);
    assert_eq!(err.input.as_deref(), Some("prod/db:password"));
    assert_eq!(
        err.to_string(),
        "input \"prod/db:password\": line 2: does not exist"
    );
}

#[test]
fn a_missing_json_key_is_missing_and_named() {
    let values = inputs(&[(
        "prod/db",
        format!("{{\"password\":\"{SECRET}\"}}").as_bytes(),
    )]);
    let err = render_err("{{ secret_json(\"prod/db\").hots }}", &values);
    assert!(err.missing);
    assert_eq!(
        err.to_string(),
        "input \"prod/db\": line 1: key \"hots\" does not exist"
    );
    // Deeper, and through a variable.
    let err = render_err(
        "{% set d = secret_json(\"prod/db\") %}\n{{ d.a.b }}",
        &values,
    );
    assert_eq!(
        err.to_string(),
        "input \"prod/db\": line 2: key \"a\" does not exist"
    );
    // A key that the template does not spell is not named (it could be a value).
    let values = inputs(&[("prod/db", br#"{"a":1}"#), ("k", SECRET.as_bytes())]);
    let err = render_err("{{ secret_json('prod/db')[secret('k')] }}", &values);
    assert_eq!(
        err.to_string(),
        "input \"prod/db\": line 1: a key does not exist"
    );
    // `is defined` and `default` still work in strict mode.
    let out = render(
        "{% if secret_json('prod/db').b is defined %}y{% else %}n{% endif %} {{ secret_json('prod/db').b | default('x') }}",
        &values,
    );
    assert_eq!(out.unwrap(), "n x");
}

#[test]
fn a_secret_that_is_not_json() {
    let values = inputs(&[("prod/db", SECRET.as_bytes())]);
    let err = render_err("{{ secret_json(\"prod/db\").host }}", &values);
    assert!(!err.missing);
    assert_eq!(err.to_string(), "input \"prod/db\": line 1: not JSON");
}

#[test]
fn binary_without_base64() {
    let values = inputs(&[("prod/cert", &[0xff, 0xfe, b'h', b'u'])]);
    let err = render_err("x\n\n{{ secret(\"prod/cert\") }}", &values);
    assert_eq!(
        err.to_string(),
        "input \"prod/cert\": line 3: binary value; use |base64"
    );
}

#[test]
fn engine_errors_say_their_kind_and_line_never_the_value() {
    let values = inputs(&[("s", SECRET.as_bytes())]);
    // A type error.
    let err = render_err("{{ secret('s') + 1 }}", &values);
    assert_eq!(err.to_string(), "line 1: invalid operation");
    assert!(!err.missing && err.input.is_none());
    // A bad filter argument.
    let err = render_err("{{ secret('s') | truncate(secret('s')) }}", &values);
    assert!(err.to_string().starts_with("line 1: "), "{err}");
    let err = render_err("{{ secret('s') | int }}", &values);
    assert!(err.to_string().starts_with("line 1: "), "{err}");
    // Our filters on the wrong kind.
    let err = render_err("{{ [secret('s')] | shell }}", &values);
    assert_eq!(err.to_string(), "line 1: shell takes text");
    let err = render_err("{{ secret('s') | b64decode }}", &values);
    assert_eq!(err.to_string(), "line 1: b64decode: not base64");
    // An undefined variable is not a missing input.
    let err = render_err("{{ nope }}", &values);
    assert_eq!(err.to_string(), "line 1: undefined value");
    assert!(!err.missing);
    // An unknown filter names the filter.
    let err = render_err("{{ secret('s') | nofilter }}", &values);
    assert_eq!(err.to_string(), "line 1: filter nofilter is unknown");
}

#[test]
fn a_loop_runs_out_of_fuel() {
    let values = inputs(&[("s", SECRET.as_bytes())]);
    let err = render_err(
        "{% for i in range(1000) %}{% for j in range(1000) %}{% for c in secret('s') %}{{ c }}{% endfor %}{% endfor %}{% endfor %}",
        &values,
    );
    assert!(err.to_string().starts_with("line 1: out of fuel"), "{err}");
    assert!(!err.missing);
}

#[test]
fn templates_are_send_sync_and_reusable() {
    fn shared<T: Send + Sync + Clone>(_: &T) {}
    let t = Template::compile("x", "{{ secret('a') }}").unwrap();
    shared(&t);
    assert_eq!(&t.render(&inputs(&[("a", b"1")])).unwrap()[..], b"1");
    assert_eq!(&t.render(&inputs(&[("a", b"2")])).unwrap()[..], b"2");
    assert!(t.render(&Inputs::new()).unwrap_err().missing);
    assert_eq!(t.name(), "x");
}
