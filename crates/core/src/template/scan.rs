//! Finds the `secret("...")` and `secret_json("...")` calls of a template before it runs, so
//! that its inputs can be fetched (and judged by the policy) before rendering starts.
//!
//! This follows minijinja's own lexer for the default syntax (comments, `{% raw %}` blocks,
//! whitespace control, strings, bracket balance deciding where a tag ends), and runs only on
//! text minijinja has already compiled, so it never meets a lexically broken template. It is
//! deliberately strict: the names `secret` and `secret_json` may appear in code only as a call
//! with one string literal, so no call can hide behind a variable, a `set` or an argument.
//! The render functions check again that every selector they are asked for was found here.

/// Which function a call is to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Func {
    Secret,
    SecretJson,
}

impl Func {
    pub fn name(self) -> &'static str {
        match self {
            Func::Secret => "secret",
            Func::SecretJson => "secret_json",
        }
    }
}

/// One call with its literal argument (unescaped), and where its name starts (byte offset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub func: Func,
    pub literal: String,
    pub offset: usize,
}

/// A call the scan refuses, and where (byte offset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanError {
    pub offset: usize,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok<'s> {
    Ident(&'s str),
    /// A string literal's raw text between its quotes.
    Str(&'s str),
    Open(u8),
    Close(u8),
    Dot,
    Other,
}

/// Every call in `source`, in order of appearance.
pub fn calls(source: &str) -> Result<Vec<Call>, ScanError> {
    let bytes = source.as_bytes();
    let mut calls = Vec::new();
    let mut pos = 0;
    while let Some(found) = find_from(bytes, pos, b"{") {
        let start = found;
        let kind = bytes.get(start + 1).copied();
        let mut after = start + 2;
        if matches!(bytes.get(after), Some(b'-' | b'+')) {
            after += 1;
        }
        pos = match kind {
            Some(b'#') => find_from(bytes, after, b"#}").map_or(bytes.len(), |e| e + 2),
            Some(b'%') => match basic_tag(&source[after..], "raw") {
                Some(len) => skip_raw(source, after + len),
                None => expression(source, after, "%}", &mut calls)?,
            },
            Some(b'{') => expression(source, after, "}}", &mut calls)?,
            _ => start + 1,
        };
    }
    Ok(calls)
}

fn find_from(bytes: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    bytes
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// The length of `  NAME  -%}` (the rest of a `{% NAME %}` tag) at the start of `s`.
fn basic_tag(s: &str, name: &str) -> Option<usize> {
    let rest = s.trim_start_matches(|c: char| c.is_ascii_whitespace());
    let rest = rest.strip_prefix(name)?;
    let rest = rest.trim_start_matches(|c: char| c.is_ascii_whitespace());
    let rest = rest.strip_prefix(['-', '+']).unwrap_or(rest);
    let rest = rest.strip_prefix("%}")?;
    Some(s.len() - rest.len())
}

/// Past the `{% endraw %}` that closes a raw block opened just before `from`.
fn skip_raw(source: &str, from: usize) -> usize {
    let bytes = source.as_bytes();
    let mut pos = from;
    while let Some(open) = find_from(bytes, pos, b"{%") {
        let mut after = open + 2;
        if matches!(bytes.get(after), Some(b'-' | b'+')) {
            after += 1;
        }
        if let Some(len) = basic_tag(&source[after..], "endraw") {
            return after + len;
        }
        pos = open + 2;
    }
    bytes.len()
}

/// Reads the code of one tag from `from` to its `end` (at bracket balance 0), records its
/// calls, and answers the offset past the tag.
fn expression(
    source: &str,
    from: usize,
    end: &str,
    calls: &mut Vec<Call>,
) -> Result<usize, ScanError> {
    let bytes = source.as_bytes();
    let mut toks: Vec<(Tok, usize)> = Vec::new();
    let mut balance = 0usize;
    let mut i = from;
    let close = loop {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= bytes.len() {
            break bytes.len();
        }
        let rest = &source[i..];
        if balance == 0 {
            if rest.starts_with(end) {
                break i + end.len();
            }
            if rest.starts_with(['-', '+']) && rest[1..].starts_with(end) {
                break i + 1 + end.len();
            }
        }
        let c = bytes[i];
        let start = i;
        let tok = match c {
            b'"' | b'\'' => {
                let mut j = i + 1;
                while j < bytes.len() && bytes[j] != c {
                    j += if bytes[j] == b'\\' { 2 } else { 1 };
                }
                let text = &source[i + 1..j.min(bytes.len())];
                i = (j + 1).min(bytes.len());
                Tok::Str(text)
            }
            b'a'..=b'z' | b'A'..=b'Z' | b'_' => {
                let len = rest
                    .bytes()
                    .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
                    .count();
                i += len;
                Tok::Ident(&rest[..len])
            }
            b'(' | b'[' | b'{' => {
                balance += 1;
                i += 1;
                Tok::Open(c)
            }
            b')' | b']' | b'}' => {
                balance = balance.saturating_sub(1);
                i += 1;
                Tok::Close(c)
            }
            b'.' => {
                i += 1;
                Tok::Dot
            }
            _ => {
                // Numbers, operators, non-ASCII: one character at a time is enough, since
                // none of them can start an identifier or a string.
                i += rest.chars().next().map_or(1, char::len_utf8);
                Tok::Other
            }
        };
        toks.push((tok, start));
    };
    for (k, (tok, offset)) in toks.iter().enumerate() {
        let func = match tok {
            Tok::Ident("secret") => Func::Secret,
            Tok::Ident("secret_json") => Func::SecretJson,
            _ => continue,
        };
        // An attribute of something else (`x.secret`) is not the function.
        if k > 0 && toks[k - 1].0 == Tok::Dot {
            continue;
        }
        let refuse = |message: String| ScanError {
            offset: *offset,
            message,
        };
        let literal = match toks.get(k + 1..k + 4).map(|t| [&t[0].0, &t[1].0, &t[2].0]) {
            Some([Tok::Open(b'('), Tok::Str(raw), Tok::Close(b')')]) => {
                unescape(raw).ok_or_else(|| {
                    refuse(format!(
                        "{}() selector literal: only \\\\, \\\", \\' and \\/ escapes are allowed",
                        func.name()
                    ))
                })?
            }
            _ => {
                return Err(refuse(format!(
                    "{}() takes a string literal selector",
                    func.name()
                )));
            }
        };
        calls.push(Call {
            func,
            literal,
            offset: *offset,
        });
    }
    Ok(close)
}

/// The escapes a selector could need; minijinja's others (`\n`, `\x41`, `\u...`) are refused
/// rather than reimplemented, so the literal seen here is always the one the call receives.
fn unescape(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next()? {
                d @ ('\\' | '"' | '\'' | '/') => out.push(d),
                _ => return None,
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let before = &source[..offset.min(source.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}
