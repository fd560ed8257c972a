//! The minijinja environment a template runs in, and one render's inputs (`Session`).
//!
//! minijinja values are `'static`, so a render copies the bytes of its declared inputs into a
//! `Session` (zeroed on drop) that the template reaches as its context root. Errors raised by
//! our own functions, filters and formatter record why in the session (`blame`), because a
//! minijinja error's detail can quote values and is never shown.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use minijinja::value::{Enumerator, Object, ObjectRepr, Value, ValueKind};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, State, UndefinedBehavior};
use parking_lot::Mutex;
use zeroize::Zeroizing;

use super::RenderError;
use super::scan::Func;
use crate::selector::Selector;

/// Instructions a render may run: plenty for any configuration file, and a bound on a loop
/// that would otherwise never end.
pub const FUEL: u64 = 100_000;

/// Not an identifier, so no template can name the session.
const CONTEXT_KEY: &str = "secretsfs inputs";

pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    // minijinja escapes by file extension (.yml, .json, .html) unless told not to: a
    // configuration file needs the value as it is.
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    let syntax = minijinja::syntax::SyntaxConfig::builder()
        .keep_trailing_newline(true)
        .build()
        .expect("the default syntax builds");
    env.set_syntax(syntax);
    env.add_function("secret", |state: &State, literal: &str| {
        let bytes = Session::of(state)?.value(Func::Secret, literal)?;
        Ok(match std::str::from_utf8(&bytes) {
            Ok(text) => Value::from(text),
            Err(_) => Value::from_bytes(bytes.to_vec()),
        })
    });
    env.add_function("secret_json", |state: &State, literal: &str| {
        let session = Session::of(state)?;
        let bytes = session.value(Func::SecretJson, literal)?;
        let json: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|_| session.fail(Some(literal), "not JSON", false))?;
        Ok(from_json(json, &Arc::from(literal), &session))
    });
    env.add_filter("base64", |state: &State, value: &Value| {
        match value.as_bytes() {
            Some(bytes) => Ok(base64::engine::general_purpose::STANDARD.encode(bytes)),
            None => Err(Session::of(state)?.fail(None, "base64 takes a string or bytes", false)),
        }
    });
    env.add_filter("b64decode", |state: &State, text: &str| {
        match base64::engine::general_purpose::STANDARD.decode(text.trim()) {
            Ok(bytes) => Ok(match String::from_utf8(bytes) {
                Ok(text) => Value::from(text),
                Err(e) => Value::from_bytes(e.into_bytes()),
            }),
            Err(_) => Err(Session::of(state)?.fail(None, "b64decode: not base64", false)),
        }
    });
    env.add_filter("shell", |state: &State, value: &Value| {
        let text = match value.kind() {
            ValueKind::String | ValueKind::Number | ValueKind::Bool => value.to_string(),
            _ => {
                return Err(Session::of(state)?.fail(None, "shell takes text", false));
            }
        };
        if text.contains('\0') {
            return Err(Session::of(state)?.fail(None, "shell: text with a NUL byte", false));
        }
        Ok(format!("'{}'", text.replace('\'', "'\\''")))
    });
    env.set_formatter(|out, state, value| {
        if value.kind() == ValueKind::Bytes {
            let session = Session::of(state)?;
            let input = session.input_holding(value.as_bytes().unwrap_or_default());
            return Err(session.fail(input.as_deref(), "binary value; use |base64", false));
        }
        minijinja::escape_formatter(out, state, value)
    });
    env
}

/// One render's view of its inputs: each declared literal with its bytes (None: it does not
/// exist), and why the render failed, when our code decided it.
pub struct Session {
    values: HashMap<(Func, String), Option<Zeroizing<Vec<u8>>>>,
    blame: Mutex<Option<RenderError>>,
    /// The last JSON key looked up and not found, with its input: a strict-undefined error is
    /// raised by the engine later, far from the lookup.
    undefined: Mutex<Option<(Arc<str>, String)>>,
}

impl Session {
    pub fn new(declared: &HashMap<(Func, String), Selector>, values: &super::Inputs) -> Arc<Self> {
        let values = declared
            .iter()
            .map(|(call, selector)| (call.clone(), values.get(selector).cloned()))
            .collect();
        Arc::new(Session {
            values,
            blame: Mutex::new(None),
            undefined: Mutex::new(None),
        })
    }

    pub fn root(self: &Arc<Self>) -> Value {
        Value::from_dyn_object(self.clone())
    }

    fn of(state: &State) -> Result<Arc<Session>, Error> {
        state
            .lookup(CONTEXT_KEY)
            .and_then(|v| v.downcast_object::<Session>())
            .ok_or_else(|| Error::new(ErrorKind::InvalidOperation, "no inputs"))
    }

    fn value(&self, func: Func, literal: &str) -> Result<Zeroizing<Vec<u8>>, Error> {
        match self.values.get(&(func, literal.to_owned())) {
            Some(Some(bytes)) => Ok(bytes.clone()),
            Some(None) => Err(self.fail(Some(literal), "does not exist", true)),
            // The scan found every call; this would be a call it missed.
            None => Err(self.fail(
                Some(literal),
                &format!("{}() of a selector not found in the template", func.name()),
                false,
            )),
        }
    }

    /// Records why the render fails and answers the error to raise, which says nothing.
    fn fail(&self, input: Option<&str>, cause: &str, missing: bool) -> Error {
        *self.blame.lock() = Some(RenderError {
            input: input.map(str::to_owned),
            cause: cause.to_owned(),
            missing,
        });
        Error::new(ErrorKind::InvalidOperation, "see the render's blame")
    }

    fn input_holding(&self, bytes: &[u8]) -> Option<String> {
        self.values.iter().find_map(|((_, literal), value)| {
            (value.as_deref().map(Vec::as_slice) == Some(bytes)).then(|| literal.clone())
        })
    }

    /// The error a failed render answers, built from what our code recorded and from the
    /// engine error's kind and line, never its detail (which can quote values).
    pub fn error(&self, err: &Error, source: &str) -> RenderError {
        let at = err
            .line()
            .map(|l| format!("line {l}: "))
            .unwrap_or_default();
        if let Some(mut blame) = self.blame.lock().take() {
            blame.cause = format!("{at}{}", blame.cause);
            return blame;
        }
        match err.kind() {
            ErrorKind::UndefinedError => match self.undefined.lock().take() {
                Some((input, key)) => {
                    // The key is named only when the template's own text holds it: a key
                    // computed from a value must not be shown.
                    let what = if source.contains(key.as_str()) {
                        format!("key {key:?} does not exist")
                    } else {
                        "a key does not exist".to_owned()
                    };
                    RenderError {
                        input: Some(input.to_string()),
                        cause: format!("{at}{what}"),
                        missing: true,
                    }
                }
                None => RenderError::cause(format!("{at}undefined value")),
            },
            ErrorKind::OutOfFuel => RenderError::cause(format!(
                "{at}out of fuel: the template ran more than {FUEL} steps"
            )),
            // These details name a filter, test, function or method of the template's text.
            ErrorKind::UnknownFilter
            | ErrorKind::UnknownTest
            | ErrorKind::UnknownFunction
            | ErrorKind::UnknownMethod => RenderError::cause(format!(
                "{at}{}",
                err.detail().map_or(err.kind().to_string(), str::to_owned)
            )),
            kind => RenderError::cause(format!("{at}{kind}")),
        }
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Session(..)")
    }
}

impl Object for Session {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        (key.as_str() == Some(CONTEXT_KEY)).then(|| self.root())
    }
}

/// A JSON object of a `secret_json` input: a map that notes which key was missing.
struct JsonMap {
    input: Arc<str>,
    entries: BTreeMap<String, Value>,
    session: Arc<Session>,
}

impl fmt::Debug for JsonMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JsonMap({:?}, {} keys)", self.input, self.entries.len())
    }
}

impl Object for JsonMap {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let found = key.as_str().and_then(|k| self.entries.get(k)).cloned();
        if found.is_none() {
            let key = key.as_str().map_or_else(String::new, str::to_owned);
            *self.session.undefined.lock() = Some((self.input.clone(), key));
        }
        found
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(
            self.entries
                .keys()
                .map(|k| Value::from(k.as_str()))
                .collect(),
        )
    }
}

fn from_json(json: serde_json::Value, input: &Arc<str>, session: &Arc<Session>) -> Value {
    use serde_json::Value as J;
    match json {
        J::Null => Value::from(()),
        J::Bool(b) => Value::from(b),
        J::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::from(i),
            (None, Some(u)) => Value::from(u),
            _ => Value::from(n.as_f64().unwrap_or(f64::NAN)),
        },
        J::String(s) => Value::from(s),
        J::Array(items) => items
            .into_iter()
            .map(|item| from_json(item, input, session))
            .collect(),
        J::Object(map) => Value::from_object(JsonMap {
            input: input.clone(),
            entries: map
                .into_iter()
                .map(|(k, v)| (k, from_json(v, input, session)))
                .collect(),
            session: session.clone(),
        }),
    }
}

/// Output that leaves no copy behind when it grows: the old buffer is zeroed as it is dropped.
#[derive(Default)]
pub struct ZeroizingWriter(pub Zeroizing<Vec<u8>>);

impl std::io::Write for ZeroizingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let needed = self.0.len() + buf.len();
        if needed > self.0.capacity() {
            let mut bigger = Zeroizing::new(Vec::with_capacity(needed.max(self.0.capacity() * 2)));
            bigger.extend_from_slice(&self.0);
            self.0 = bigger;
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
