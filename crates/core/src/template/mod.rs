//! Templates: files of the mount rendered from several secrets when they are read, never
//! written to disk (`[[template]]` entries).
//!
//! This module is pure: it compiles template text, says which selectors a template reads
//! (`Template::inputs`, known before rendering so that they can be fetched and judged by the
//! policy first), and renders over values handed in. Fetching, access checks and the mount
//! are the callers'.
//!
//! The language is minijinja's (Jinja2) without loaders, includes or macros, auto-escaping
//! off, undefined values strict and a bound on work (`env::FUEL`). It adds:
//!
//! - `secret("NAME[:KEY[:STAGE[:VERSION_ID]]]")`: the value, as text when it is UTF-8, else
//!   as bytes (which must go through `|base64` to be written);
//! - `secret_json("NAME[::STAGE[:VERSION_ID]]")`: the whole secret parsed as JSON (`.host`);
//! - filters `base64` (standard, padded), `b64decode`, `shell` (one POSIX single-quoted word),
//!   and minijinja's `tojson` (the JSON string filter: `"text"` with its quotes; it also
//!   escapes `<`, `>`, `&` and `'` as `\u003c` etc., still valid JSON) and `urlencode`.
//!
//! Arguments of `secret` and `secret_json` are string literals, found by `scan` at compile
//! time. No error, compile or render, ever holds a value.

mod env;
mod scan;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::selector::Selector;
use scan::Func;

/// What a read of a template gets when one of its inputs (a secret, a version, a JSON key)
/// does not exist.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnMissing {
    /// An I/O error: the file exists, its content cannot be made.
    #[default]
    Eio,
    /// No such file: for readers that treat an absent file as "not configured".
    Enoent,
}

/// A template as a front end presents it: where, as whom, and what a missing input is. The
/// binary builds it from the config file's `[[template]]` entry; the core knows no file.
#[derive(Debug, Clone)]
pub struct TemplateFile {
    /// Relative to the front end's root, without a leading or trailing '/'.
    pub path: String,
    pub template: Template,
    pub attrs: crate::policy::Attrs,
    pub on_missing: OnMissing,
}

/// A render's values: each input selector and the bytes it names.
pub type Inputs = HashMap<Selector, Zeroizing<Vec<u8>>>;

/// A compiled template; cheap to clone, shareable across threads.
#[derive(Clone)]
pub struct Template(Arc<Inner>);

struct Inner {
    name: String,
    source: String,
    env: minijinja::Environment<'static>,
    inputs: Vec<Selector>,
    /// Each call's literal and the selector it reads.
    declared: HashMap<(Func, String), Selector>,
}

/// Why a render failed. Never holds a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderError {
    /// The selector as the template writes it, when one input is to blame.
    pub input: Option<String>,
    pub cause: String,
    /// An input (a secret, a version, a JSON key) does not exist (`OnMissing` applies).
    pub missing: bool,
}

impl RenderError {
    fn cause(cause: String) -> Self {
        RenderError {
            input: None,
            cause,
            missing: false,
        }
    }
}

impl fmt::Display for RenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.input {
            Some(input) => write!(f, "input {input:?}: {}", self.cause),
            None => f.write_str(&self.cause),
        }
    }
}

impl std::error::Error for RenderError {}

impl Template {
    /// Compiles template text. Errors are `Error::config("template NAME: line L, column C:
    /// MESSAGE")`, NAME quoted.
    pub fn compile(name: &str, text: &str) -> Result<Template> {
        let at = |offset: usize, message: &str| {
            let (line, col) = scan::line_col(text, offset);
            Error::config(format!(
                "template {name:?}: line {line}, column {col}: {message}"
            ))
        };
        let mut env = env::environment();
        env.add_template_owned(name.to_owned(), text.to_owned())
            .map_err(|e| {
                let message = syntax_message(&e);
                match e.line() {
                    Some(line) => at(syntax_offset(text, line, &message), &message),
                    None => Error::config(format!("template {name:?}: {message}")),
                }
            })?;
        let calls = scan::calls(text).map_err(|e| at(e.offset, &e.message))?;
        let mut inputs: Vec<Selector> = Vec::new();
        let mut declared = HashMap::new();
        for call in calls {
            let selector =
                Selector::parse(&call.literal).map_err(|e| at(call.offset, e.message()))?;
            if call.func == Func::SecretJson && selector.json_key.is_some() {
                return Err(at(
                    call.offset,
                    &format!(
                        "secret_json({:?}) names a JSON key: it takes the whole secret (read the key with .KEY)",
                        call.literal
                    ),
                ));
            }
            if !inputs.contains(&selector) {
                inputs.push(selector.clone());
            }
            declared.insert((call.func, call.literal), selector);
        }
        Ok(Template(Arc::new(Inner {
            name: name.to_owned(),
            source: text.to_owned(),
            env,
            inputs,
            declared,
        })))
    }

    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// Every selector the template reads, once each, in order of first appearance;
    /// `secret_json("x")` reads the whole secret `x`.
    pub fn inputs(&self) -> &[Selector] {
        &self.0.inputs
    }

    /// Renders over `values` (a selector absent from them does not exist). Synchronous and
    /// without I/O; the output is zeroed on drop, though minijinja's own intermediate strings
    /// are not.
    pub fn render(&self, values: &Inputs) -> std::result::Result<Zeroizing<Vec<u8>>, RenderError> {
        let template = self
            .0
            .env
            .get_template(&self.0.name)
            .map_err(|e| RenderError::cause(e.kind().to_string()))?;
        let session = env::Session::new(&self.0.declared, values);
        let mut out = env::ZeroizingWriter::default();
        match template.render_captured_to(session.root(), &mut out) {
            Ok(_) => Ok(out.0),
            Err(e) => Err(session.error(&e, &self.0.source)),
        }
    }
}

fn syntax_message(e: &minijinja::Error) -> String {
    match e.detail() {
        Some(detail) => format!("{}: {detail}", e.kind()),
        None => e.kind().to_string(),
    }
}

/// Where on `line` a syntax error is. minijinja tells the column only with its `debug`
/// feature, left out because its errors would carry values; so prefixes of the line are
/// compiled: the offending token starts after the longest prefix that still compiles or
/// fails only for ending early, and before the shortest that fails the same way.
fn syntax_offset(text: &str, line: usize, message: &str) -> usize {
    let start: usize = text
        .split_inclusive('\n')
        .take(line - 1)
        .map(str::len)
        .sum();
    let end = text[start..].find('\n').map_or(text.len(), |n| start + n);
    let ends_early = |m: &str| m.starts_with("syntax error: unexpected end of input");
    if ends_early(message) {
        return start + text[start..end].trim_end().len();
    }
    let env = env::environment();
    let mut before = start;
    for cut in (start..=end).filter(|cut| text.is_char_boundary(*cut)) {
        // A prefix ending in '{' would read as text what may start a tag.
        if text[..cut].ends_with('{') {
            continue;
        }
        match env.template_from_str(&text[..cut]) {
            Ok(_) => before = cut,
            Err(e) if ends_early(&syntax_message(&e)) => before = cut,
            Err(e) if e.line() == Some(line) && syntax_message(&e) == message => break,
            Err(_) => {}
        }
    }
    before + text[before..end].len() - text[before..end].trim_start().len()
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Template")
            .field("name", &self.0.name)
            .field("inputs", &self.0.inputs)
            .finish_non_exhaustive()
    }
}
