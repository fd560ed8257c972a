//! Templates without the engine: compile, inputs, render over values handed in.

mod compile;
mod render;

use super::*;

const SECRET: &str = "hunter2-value-x";

fn sel(s: &str) -> Selector {
    Selector::parse(s).unwrap()
}

fn inputs(pairs: &[(&str, &[u8])]) -> Inputs {
    pairs
        .iter()
        .map(|(s, v)| (sel(s), Zeroizing::new(v.to_vec())))
        .collect()
}

fn render(text: &str, values: &Inputs) -> std::result::Result<String, RenderError> {
    let t = Template::compile("app/test.yml", text).unwrap();
    t.render(values)
        .map(|bytes| String::from_utf8(bytes.to_vec()).unwrap())
}

fn render_err(text: &str, values: &Inputs) -> RenderError {
    let err = render(text, values).unwrap_err();
    let shown = err.to_string();
    assert!(!shown.contains(SECRET), "{shown}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(!format!("{err:?}").contains("hunter2"), "{err:?}");
    err
}

fn compile_err(text: &str) -> String {
    let err = Template::compile("app/test.yml", text).unwrap_err();
    assert_eq!(err.kind(), crate::error::ErrorKind::Config);
    err.message().to_owned()
}
