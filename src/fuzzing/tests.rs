//! Every committed seed of every fuzz target (fuzz/corpus/TARGET/), replayed through the
//! target's body: the seeds stay valid inputs, and the bodies run on the stable toolchain.

use std::path::Path;

fn replay(target: &str, body: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut seeds = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        body(&std::fs::read(&path).unwrap());
        seeds += 1;
    }
    assert!(seeds >= 3, "{target}: {seeds} seeds; keep a handful");
}

#[test]
fn selector_seeds() {
    replay("selector", super::selector);
}

#[test]
fn http_seeds() {
    replay("http", super::http);
}

#[test]
fn config_seeds() {
    replay("config", super::config);
}

#[test]
fn secrets_file_seeds() {
    replay("secrets_file", super::secrets_file);
}

#[test]
fn template_compile_seeds() {
    replay("template_compile", super::template_compile);
}

#[test]
fn template_render_seeds() {
    replay("template_render", super::template_render);
}

#[test]
fn sdk_answer_seeds() {
    replay("sdk_answer", super::sdk_answer);
}

/// The SDK target's answers reach the client through its server, not some shortcut.
#[test]
fn the_sdk_target_serves_its_input_to_the_client() {
    use crate::selector::VersionRef;
    use crate::source::SecretSource;
    let body = br#"{"Name":"app/db","VersionId":"v1","SecretString":"from-the-server"}"#;
    let value = super::sdk::answered(200, body, |source| async move {
        source
            .get_secret_value("app/db", &VersionRef::current())
            .await
    })
    .unwrap();
    assert_eq!(value.payload.as_bytes(), b"from-the-server");
    assert_eq!(value.version_id, "v1");
    let err = super::sdk::answered(
        400,
        br#"{"__type":"ResourceNotFoundException"}"#,
        |source| async move { source.describe_secret("app/db").await },
    )
    .unwrap_err();
    assert_eq!(err.kind(), crate::ErrorKind::NotFound, "{err}");
}

/// Found by the sdk_answer target: an error answer whose `__type` or message holds a newline
/// (a proxy's, a fake's) made the source's error, and so its log line, two lines.
#[test]
fn an_error_code_with_a_newline_from_the_service_is_one_line() {
    use crate::selector::VersionRef;
    use crate::source::SecretSource;
    let body = br#"{"__type":"Odd\nCode","message":"line one\nline two"}"#;
    let err = super::sdk::answered(404, body, |source| async move {
        source
            .get_secret_value("app/db", &VersionRef::current())
            .await
    })
    .unwrap_err();
    let shown = err.to_string();
    assert!(!shown.contains('\n'), "{shown:?}");
    assert!(
        shown.contains(r"Odd\nCode: line one\nline two"),
        "{shown:?}"
    );
    let body = br#"{"Errors":[{"SecretId":"app/db","ErrorCode":"A\nB","Message":"c\nd"}]}"#;
    let items = super::sdk::answered(200, body, |source| async move {
        source.batch_get_secret_value(&["app/db".into()]).await
    })
    .unwrap();
    let shown = items[0].1.as_ref().unwrap_err().to_string();
    assert_eq!(shown, r"BatchGetSecretValue app/db: A\nB: c\nd");
}
