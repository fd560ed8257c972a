//! Compilation: the inputs a template declares, and compile errors with line and column.

use super::*;

#[test]
fn inputs_are_the_literals_deduplicated_in_order() {
    let text = r#"{# secret("in/a/comment") #}
text secret("outside/tags") {{ "secret('in/a/string')" }}
{{ secret("b:key") }}{{ secret('a') }}
{% if secret_json("b") %}{{ secret( "a" ) }}{% endif %}
{% raw %}{{ secret("in/raw") }}{% endraw %}
{{- secret_json("c::AWSPREVIOUS") -}} {{ x.secret }} {{ {"k": secret("d")} }}
"#;
    let t = Template::compile("t", text).unwrap();
    assert_eq!(
        t.inputs(),
        [
            sel("b:key"),
            sel("a"),
            sel("b"),
            sel("c::AWSPREVIOUS"),
            sel("d")
        ]
    );
    // secret_json of a secret also read whole by secret() is one input.
    let t = Template::compile("t", "{{ secret('a') }}{{ secret_json('a') }}").unwrap();
    assert_eq!(t.inputs(), [sel("a")]);
    assert!(Template::compile("t", "plain").unwrap().inputs().is_empty());
}

#[test]
fn escapes_in_a_selector_literal() {
    let t = Template::compile("t", r#"{{ secret("a:it\"s") }}{{ secret('a:it\'s') }}"#).unwrap();
    assert_eq!(t.inputs(), [sel("a:it\"s"), sel("a:it's")]);
    let values = inputs(&[("a:it\"s", b"v"), ("a:it's", b"w")]);
    assert_eq!(&t.render(&values).unwrap()[..], b"vw");
    assert_eq!(
        compile_err(r#"{{ secret("a\n") }}"#),
        "template \"app/test.yml\": line 1, column 4: secret() selector literal: \
         only \\\\, \\\", \\' and \\/ escapes are allowed"
    );
}

#[test]
fn a_syntax_error_says_line_and_column() {
    assert_eq!(
        compile_err("a\nb {{ x y }}\n"),
        "template \"app/test.yml\": line 2, column 8: syntax error: \
         unexpected identifier, expected end of variable block"
    );
    assert_eq!(
        compile_err("ok\n\n  {% if %}"),
        "template \"app/test.yml\": line 3, column 9: syntax error: \
         unexpected end of block"
    );
    let err = compile_err("é {{ 'unterminated }}");
    assert!(
        err.starts_with("template \"app/test.yml\": line 1, column 6: syntax error"),
        "{err}"
    );
}

#[test]
fn a_call_without_a_literal_is_refused() {
    for (text, column) in [
        ("{{ secret(name) }}", 4),
        ("{{ secret('a' ~ 'b') }}", 4),
        ("{{ secret() }}", 4),
        ("{% set f = secret %}", 12),
        ("x\n{{ 'a' | map(secret) }}", 14),
        ("{{ secret(selector='a') }}", 4),
    ] {
        assert_eq!(
            compile_err(text),
            format!(
                "template \"app/test.yml\": line {}, column {column}: secret() takes a string literal selector",
                text.matches('\n').count() + 1
            ),
            "{text}"
        );
    }
    assert_eq!(
        compile_err("{{ secret_json(x) }}"),
        "template \"app/test.yml\": line 1, column 4: secret_json() takes a string literal selector"
    );
}

#[test]
fn an_invalid_selector_is_named() {
    assert_eq!(
        compile_err("\n  {{ secret(\"a:b:c:d:e\") }}"),
        "template \"app/test.yml\": line 2, column 6: invalid selector \"a:b:c:d:e\": \
         too many ':' separated parts (at most NAME:KEY:STAGE:VERSION_ID)"
    );
    let err = compile_err("{{ secret('') }}");
    assert!(err.contains("invalid selector \"\""), "{err}");
}

#[test]
fn secret_json_takes_the_whole_secret() {
    assert_eq!(
        compile_err("{{ secret_json(\"prod/db:host\") }}"),
        "template \"app/test.yml\": line 1, column 4: secret_json(\"prod/db:host\") names a JSON key: \
         it takes the whole secret (read the key with .KEY)"
    );
}

#[test]
fn no_include_import_or_extends() {
    for text in [
        "{% include 'x' %}",
        "{% import 'x' as y %}",
        "{% extends 'x' %}",
        "{% macro m() %}{% endmacro %}",
    ] {
        let err = compile_err(text);
        assert!(err.contains("syntax error"), "{text}: {err}");
    }
}

#[test]
fn syntax_errors_point_at_the_token() {
    for (text, want) in [
        (
            "{{ x }}\n{% for %}",
            "line 2, column 8: syntax error: unexpected end of block, expected in",
        ),
        (
            "{{ 1 + }}",
            "line 1, column 8: syntax error: unexpected end of variable block",
        ),
        (
            "{{ f(a,, b) }}",
            "line 1, column 8: syntax error: unexpected `,`",
        ),
        (
            "x {# never closed",
            "line 1, column 3: syntax error: unexpected end of comment",
        ),
        // minijinja places an unclosed block on its line; the column is that line's end.
        (
            "{% if x %}\nabc\n",
            "line 1, column 11: syntax error: unexpected end of input",
        ),
    ] {
        let err = compile_err(text);
        let want = format!("template \"app/test.yml\": {want}");
        assert!(err.starts_with(&want), "{text:?}: {err}");
    }
}
