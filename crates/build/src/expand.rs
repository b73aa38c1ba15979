//! Docker's shell-word variable expansion, as BuildKit's `shell.Lex` does it, and the variable
//! scopes it runs in.
//!
//! - [`Lexer::process_word`] (BuildKit `ProcessWord`): the whole input becomes one string;
//!   whitespace is kept, quotes are removed, escapes resolved, variables substituted. Used for
//!   `ENV`/`LABEL` keys and values, `ADD`/`COPY` sources, destination, `--chown`, `--chmod`,
//!   `WORKDIR`, `USER`, `VOLUME`, `STOPSIGNAL`, `ARG` defaults, `FROM` (global scope only) and
//!   `RUN --mount` option values.
//! - [`Lexer::process_words`] (BuildKit `ProcessWords`): the input is split into words at
//!   unquoted whitespace, including whitespace that comes out of a variable's value. Used for
//!   `EXPOSE`.
//! - Not expanded at all: `RUN`, `CMD`, `ENTRYPOINT` (the shell does it at run time), `SHELL`,
//!   `HEALTHCHECK`, `ONBUILD` (expanded when triggered), `MAINTAINER`, `COPY --from`,
//!   `--exclude`.
//!
//! Supported forms: `$VAR`, `${VAR}`, `${VAR:-word}`, `${VAR-word}`, `${VAR:+word}`,
//! `${VAR+word}`, `${VAR:?msg}`, `${VAR?msg}`, `${VAR#pat}`, `${VAR##pat}`, `${VAR%pat}`,
//! `${VAR%%pat}`, `${VAR/pat/repl}`, `${VAR//pat/repl}`; words nest (`${A:-${B:-x}}`).
//!
//! Scopes: [`GlobalScope`] holds the `ARG`s before the first `FROM` (usable in `FROM` lines
//! only) plus BuildKit's automatic platform args; [`StageScope`] is one stage's view: `ARG`s
//! re-declared in the stage, `ENV`s, the base image's environment, last write wins (an `ENV`
//! after an `ARG` of the same name overrides it, and an `ARG` declared after an inherited
//! `ENV` overrides that, as in BuildKit). The predefined proxy args reach `RUN` without an
//! `ARG` ([`StageScope::run_env`]) but are not expanded in instructions and stay out of
//! history unless declared.

use std::collections::BTreeMap;

use crate::error::go_quote;

/// A failure while expanding a word.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    /// An opening quote without its closing quote.
    #[error("unexpected end of statement while looking for matching {0}")]
    Unterminated(&'static str),
    /// `${` without `}`.
    #[error("syntax error: missing '}}'")]
    MissingBrace,
    /// `${}`, `${:x}`, `${{x}`.
    #[error("syntax error: bad substitution")]
    BadSubstitution,
    /// `${VAR/pat` without the second `/`.
    #[error("syntax error: missing '/' in ${{}}")]
    MissingSlash,
    /// A modifier BuildKit does not support (`${VAR:#x}`, `${VAR!}`).
    #[error("unsupported modifier ({0}) in substitution")]
    UnsupportedModifier(String),
    /// A pattern in `#`, `%` or `/` substitution that does not compile.
    #[error("invalid pattern ({pattern}) in substitution: invalid escape '\\{escaped}'")]
    InvalidPattern {
        /// The pattern as written.
        pattern: String,
        /// The escaped character that is not allowed.
        escaped: char,
    },
    /// `${VAR?msg}` / `${VAR:?msg}` on an unset (or empty) variable.
    #[error("{name}: {message}")]
    Required {
        /// The variable.
        name: String,
        /// The message given in the word, or Docker's default.
        message: String,
    },
    /// Substitutions nested deeper than [`MAX_NESTING`].
    #[error("syntax error: substitutions nested more than {MAX_NESTING} deep")]
    TooDeep,
    /// A quoted word being processed (BuildKit wraps lexing errors this way).
    #[error("failed to process {}: {inner}", go_quote(.word))]
    InWord {
        /// The word being processed.
        word: String,
        /// What went wrong.
        inner: Box<ExpandError>,
    },
}

/// How deep `${A:-${B:-...}}` may nest (Go's growable stacks have no such limit; ours do).
pub const MAX_NESTING: usize = 64;

/// Variables visible to an expansion.
pub trait Env {
    /// The value of `name`, or `None` when it is not set (set-but-empty is `Some("")`).
    fn get(&self, name: &str) -> Option<&str>;
}

/// No variables at all.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEnv;

impl Env for NoEnv {
    fn get(&self, _: &str) -> Option<&str> {
        None
    }
}

impl Env for BTreeMap<String, String> {
    fn get(&self, name: &str) -> Option<&str> {
        BTreeMap::get(self, name).map(String::as_str)
    }
}

impl Env for std::collections::HashMap<String, String> {
    fn get(&self, name: &str) -> Option<&str> {
        std::collections::HashMap::get(self, name).map(String::as_str)
    }
}

/// An ordered list of `(name, value)`; the last entry of a name wins.
impl Env for [(String, String)] {
    fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Env for Vec<(String, String)> {
    fn get(&self, name: &str) -> Option<&str> {
        Env::get(self.as_slice(), name)
    }
}

/// BuildKit's shell lexer with its switches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lexer {
    /// The escape character: `\` or, after `# escape=\``, a backtick.
    pub escape: char,
    /// Keep quote characters in the output (used to detect quoted heredoc delimiters).
    pub raw_quotes: bool,
    /// Keep escape characters in the output.
    pub raw_escapes: bool,
    /// Leave references to unset variables as written instead of expanding them to "".
    pub skip_unset: bool,
    /// Treat quotes as ordinary characters (used for `COPY <<EOF` contents).
    pub skip_quotes: bool,
}

impl Lexer {
    /// A lexer with `escape` and every switch off.
    pub fn new(escape: char) -> Self {
        Lexer {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_unset: false,
            skip_quotes: false,
        }
    }

    /// Expands `word` into one string (BuildKit `ProcessWord`).
    pub fn process_word(&self, word: &str, env: &dyn Env) -> Result<String, ExpandError> {
        self.process(word, env).map(|(w, _)| w)
    }

    /// Expands `word` and splits it into words (BuildKit `ProcessWords`).
    pub fn process_words(&self, word: &str, env: &dyn Env) -> Result<Vec<String>, ExpandError> {
        self.process(word, env).map(|(_, ws)| ws)
    }

    fn process(&self, word: &str, env: &dyn Env) -> Result<(String, Vec<String>), ExpandError> {
        let mut sw = ShellWord {
            chars: word.chars().collect(),
            pos: 0,
            env,
            lex: *self,
            depth: 0,
        };
        let raw = self.raw_escapes;
        sw.process_stop_on(None, raw)
            .map_err(|e| ExpandError::InWord {
                word: word.to_owned(),
                inner: Box::new(e),
            })
    }
}

/// Expands the contents of a `COPY <<EOF` heredoc whose delimiter was not quoted, as BuildKit
/// does: variables and backslash escapes, quotes left alone.
pub fn expand_heredoc(content: &str, env: &dyn Env) -> Result<String, ExpandError> {
    let mut lex = Lexer::new('\\');
    lex.skip_quotes = true;
    lex.process_word(content, env)
}

/// Collects words the way BuildKit's `wordsStruct` does.
#[derive(Default)]
struct Words {
    buf: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, c: char) {
        if c.is_whitespace() {
            if self.in_word && !self.buf.is_empty() {
                self.words.push(std::mem::take(&mut self.buf));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(c);
        }
    }

    fn add_raw_char(&mut self, c: char) {
        self.buf.push(c);
        self.in_word = true;
    }

    fn add_string(&mut self, s: &str) {
        for c in s.chars() {
            self.add_char(c);
        }
    }

    fn add_raw_string(&mut self, s: &str) {
        self.buf.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.buf.is_empty() {
            self.words.push(std::mem::take(&mut self.buf));
        }
        self.words
    }
}

struct ShellWord<'a> {
    chars: Vec<char>,
    pos: usize,
    env: &'a dyn Env,
    lex: Lexer,
    depth: usize,
}

impl ShellWord<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    fn process_stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), ExpandError> {
        let saved = self.lex.raw_escapes;
        self.lex.raw_escapes = raw_escapes;
        let r = self.stop_on_inner(stop);
        self.lex.raw_escapes = saved;
        r
    }

    fn stop_on_inner(&mut self, stop: Option<char>) -> Result<(String, Vec<String>), ExpandError> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.next();
                return Ok((result, words.finish()));
            }
            if ch == '$' {
                let tmp = self.process_dollar()?;
                result.push_str(&tmp);
                words.add_string(&tmp);
            } else if ch == '\'' && !self.lex.skip_quotes {
                let tmp = self.process_single_quote()?;
                result.push_str(&tmp);
                words.add_raw_string(&tmp);
            } else if ch == '"' && !self.lex.skip_quotes {
                let tmp = self.process_double_quote()?;
                result.push_str(&tmp);
                words.add_raw_string(&tmp);
            } else {
                self.next();
                if ch == self.lex.escape {
                    if self.lex.raw_escapes {
                        words.add_raw_char(ch);
                        result.push(ch);
                    }
                    let Some(escaped) = self.next() else { break };
                    words.add_raw_char(escaped);
                    result.push(escaped);
                } else {
                    words.add_char(ch);
                    result.push(ch);
                }
            }
        }
        if let Some(s) = stop {
            return Err(match s {
                '}' => ExpandError::Unterminated("}"),
                '/' => ExpandError::Unterminated("/"),
                _ => ExpandError::Unterminated("delimiter"),
            });
        }
        Ok((result, words.finish()))
    }

    fn process_single_quote(&mut self) -> Result<String, ExpandError> {
        let mut out = String::new();
        let q = self.next().unwrap_or('\'');
        if self.lex.raw_quotes {
            out.push(q);
        }
        loop {
            match self.next() {
                None => return Err(ExpandError::Unterminated("single-quote")),
                Some('\'') => {
                    if self.lex.raw_quotes {
                        out.push('\'');
                    }
                    return Ok(out);
                }
                Some(c) => out.push(c),
            }
        }
    }

    fn process_double_quote(&mut self) -> Result<String, ExpandError> {
        let mut out = String::new();
        let q = self.next().unwrap_or('"');
        if self.lex.raw_quotes {
            out.push(q);
        }
        loop {
            match self.peek() {
                None => return Err(ExpandError::Unterminated("double-quote")),
                Some('"') => {
                    self.next();
                    if self.lex.raw_quotes {
                        out.push('"');
                    }
                    return Ok(out);
                }
                Some('$') => {
                    let v = self.process_dollar()?;
                    out.push_str(&v);
                }
                Some(_) => {
                    let mut ch = self.next().unwrap_or_default();
                    if ch == self.lex.escape {
                        if self.lex.raw_escapes {
                            out.push(ch);
                        }
                        match self.peek() {
                            None => continue,
                            Some(n) if n == '"' || n == '$' || n == self.lex.escape => {
                                ch = n;
                                self.next();
                            }
                            Some(_) => {}
                        }
                    }
                    out.push(ch);
                }
            }
        }
    }

    fn lookup(&self, name: &str) -> Option<String> {
        self.env.get(name).map(str::to_owned)
    }

    fn process_dollar(&mut self) -> Result<String, ExpandError> {
        if self.depth >= MAX_NESTING {
            return Err(ExpandError::TooDeep);
        }
        self.depth += 1;
        let r = self.process_dollar_inner();
        self.depth -= 1;
        r
    }

    fn process_dollar_inner(&mut self) -> Result<String, ExpandError> {
        self.next(); // '$'
        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".to_owned());
            }
            return Ok(match self.lookup(&name) {
                Some(v) => v,
                None if self.lex.skip_unset => format!("${name}"),
                None => String::new(),
            });
        }
        self.next(); // '{'
        match self.peek() {
            None => return Err(ExpandError::MissingBrace),
            Some('{' | '}' | ':') => return Err(ExpandError::BadSubstitution),
            Some(_) => {}
        }
        let name = self.process_name();
        let Some(ch) = self.next() else {
            return Err(ExpandError::MissingBrace);
        };
        match ch {
            '}' => Ok(match self.lookup(&name) {
                Some(v) => v,
                None if self.lex.skip_unset => format!("${{{name}}}"),
                None => String::new(),
            }),
            ':' | '+' | '-' | '?' | '#' | '%' => {
                let mut chs = ch.to_string();
                let mut op = ch;
                let null_is_unset = ch == ':';
                if null_is_unset {
                    op = self.next().ok_or(ExpandError::MissingBrace)?;
                    chs.push(op);
                }
                let raw = op == '#' || op == '%';
                if null_is_unset && raw {
                    return Err(ExpandError::UnsupportedModifier(chs));
                }
                let (word, _) = self.process_stop_on(Some('}'), raw).map_err(|e| {
                    if self.peek().is_none() {
                        ExpandError::MissingBrace
                    } else {
                        e
                    }
                })?;
                let value = self.lookup(&name);
                if self.lex.skip_unset && value.is_none() {
                    return Ok(format!("${{{name}{chs}{word}}}"));
                }
                let unset_or_null = match &value {
                    None => true,
                    Some(v) => null_is_unset && v.is_empty(),
                };
                match op {
                    '-' => Ok(if unset_or_null {
                        word
                    } else {
                        value.unwrap_or_default()
                    }),
                    '+' => Ok(if unset_or_null { String::new() } else { word }),
                    '?' => match value {
                        None => Err(ExpandError::Required {
                            name,
                            message: if word.is_empty() {
                                "is not allowed to be unset".to_owned()
                            } else {
                                word
                            },
                        }),
                        Some(v) if null_is_unset && v.is_empty() => Err(ExpandError::Required {
                            name,
                            message: if word.is_empty() {
                                "is not allowed to be empty".to_owned()
                            } else {
                                word
                            },
                        }),
                        Some(v) => Ok(v),
                    },
                    '#' | '%' => {
                        let value = value.unwrap_or_default();
                        let (greedy, pat) = match word.strip_prefix(op) {
                            Some(rest) => (true, rest.to_owned()),
                            None => (false, word),
                        };
                        let pattern = ShellPattern::compile(&pat)?;
                        Ok(if op == '#' {
                            pattern.trim_prefix(&value, greedy)
                        } else {
                            pattern.trim_suffix(&value, greedy)
                        })
                    }
                    _ => Err(ExpandError::UnsupportedModifier(chs)),
                }
            }
            '/' => {
                let all = self.peek() == Some('/');
                if all {
                    self.next();
                }
                let (pat, _) = self.process_stop_on(Some('/'), true).map_err(|e| {
                    if self.peek().is_none() {
                        ExpandError::MissingSlash
                    } else {
                        e
                    }
                })?;
                let (repl, _) = self.process_stop_on(Some('}'), true).map_err(|e| {
                    if self.peek().is_none() {
                        ExpandError::MissingBrace
                    } else {
                        e
                    }
                })?;
                let value = self.lookup(&name);
                if self.lex.skip_unset && value.is_none() {
                    return Ok(format!("${{{name}/{pat}/{repl}}}"));
                }
                let pattern = ShellPattern::compile(&pat)?;
                Ok(pattern.replace(&value.unwrap_or_default(), &repl, all))
            }
            other => Err(ExpandError::UnsupportedModifier(other.to_string())),
        }
    }

    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_numeric() {
                while let Some(d) = self.peek() {
                    if !d.is_numeric() {
                        break;
                    }
                    name.push(d);
                    self.next();
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.next();
                return ch.to_string();
            }
            if !(ch.is_alphabetic() || ch.is_numeric() || ch == '_') {
                break;
            }
            name.push(ch);
            self.next();
        }
        name
    }
}

/// A shell pattern of `${VAR#pat}` / `${VAR%pat}` / `${VAR/pat/r}`: `*` any run, `?` any
/// character, `\*` `\?` `\\` literal, everything else literal.
#[derive(Debug, Clone)]
struct ShellPattern {
    items: Vec<PatItem>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum PatItem {
    Lit(char),
    Any,
    Star,
}

impl ShellPattern {
    fn compile(pat: &str) -> Result<Self, ExpandError> {
        let mut items = Vec::new();
        let mut it = pat.chars().peekable();
        while let Some(c) = it.next() {
            match c {
                '*' => items.push(PatItem::Star),
                '?' => items.push(PatItem::Any),
                '\\' => {
                    if it.peek() == Some(&'}') {
                        continue;
                    }
                    match it.next() {
                        Some(e @ ('*' | '?' | '\\')) => items.push(PatItem::Lit(e)),
                        other => {
                            return Err(ExpandError::InvalidPattern {
                                pattern: pat.to_owned(),
                                escaped: other.unwrap_or('\u{FFFD}'),
                            });
                        }
                    }
                }
                c => items.push(PatItem::Lit(c)),
            }
        }
        Ok(ShellPattern { items })
    }

    /// The lengths of the prefixes of `s` the pattern matches, shortest first (one NFA run,
    /// linear in `s` times the pattern length).
    fn prefix_matches(&self, s: &[char]) -> Vec<usize> {
        let n = self.items.len();
        let mut out = Vec::new();
        let mut cur = vec![false; n + 1];
        self.close(&mut cur, 0);
        if cur[n] {
            out.push(0);
        }
        for (k, &c) in s.iter().enumerate() {
            let mut next = vec![false; n + 1];
            for (i, item) in self.items.iter().enumerate() {
                if !cur[i] {
                    continue;
                }
                match *item {
                    PatItem::Lit(l) if l == c => self.close(&mut next, i + 1),
                    PatItem::Any => self.close(&mut next, i + 1),
                    PatItem::Star => self.close(&mut next, i),
                    PatItem::Lit(_) => {}
                }
            }
            cur = next;
            if cur[n] {
                out.push(k + 1);
            }
            if !cur.iter().any(|b| *b) {
                break;
            }
        }
        out
    }

    fn close(&self, set: &mut [bool], mut i: usize) {
        loop {
            if set[i] {
                return;
            }
            set[i] = true;
            if i < self.items.len() && self.items[i] == PatItem::Star {
                i += 1;
            } else {
                return;
            }
        }
    }

    fn reversed(&self) -> ShellPattern {
        ShellPattern {
            items: self.items.iter().rev().copied().collect(),
        }
    }

    fn trim_prefix(&self, value: &str, longest: bool) -> String {
        let chars: Vec<char> = value.chars().collect();
        let ends = self.prefix_matches(&chars);
        let end = if longest { ends.last() } else { ends.first() };
        match end {
            Some(&e) => chars[e..].iter().collect(),
            None => value.to_owned(),
        }
    }

    fn trim_suffix(&self, value: &str, longest: bool) -> String {
        let rev: String = value.chars().rev().collect();
        self.reversed()
            .trim_prefix(&rev, longest)
            .chars()
            .rev()
            .collect()
    }

    /// Leftmost match, longest at that position (greedy `*`), replaced once or everywhere;
    /// an empty match right after a match is skipped, as Go's regexp does.
    fn replace(&self, value: &str, repl: &str, all: bool) -> String {
        let chars: Vec<char> = value.chars().collect();
        let mut out = String::new();
        let mut i = 0;
        let mut last_end = None;
        let mut done = false;
        while i <= chars.len() {
            if done {
                out.extend(&chars[i..]);
                break;
            }
            if let Some(&e) = self.prefix_matches(&chars[i..]).last() {
                let e = i + e;
                if !(e == i && last_end == Some(i)) {
                    out.push_str(repl);
                    last_end = Some(e);
                    done = !all;
                    if e > i {
                        i = e;
                        continue;
                    }
                }
            }
            if let Some(c) = chars.get(i) {
                out.push(*c);
            }
            i += 1;
        }
        out
    }
}

/// The build args every build accepts without an `ARG`: proxies. They reach `RUN` but not
/// the image history.
pub const PROXY_ARGS: [&str; 10] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// Whether `name` is one of the predefined proxy args.
pub fn is_proxy_arg(name: &str) -> bool {
    PROXY_ARGS.contains(&name)
}

/// An OCI platform, `os/arch[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// `linux`, `windows`, ...
    pub os: String,
    /// GOARCH style: `amd64`, `arm64`, `arm`, `386`, `ppc64le`, `s390x`, `riscv64`.
    pub arch: String,
    /// `v7`, `v8`, ... or empty.
    pub variant: String,
}

impl Platform {
    /// The platform this process runs on, in Go's names.
    pub fn host() -> Self {
        let (arch, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", ""),
            "aarch64" => ("arm64", ""),
            "arm" => ("arm", "v7"),
            "x86" => ("386", ""),
            "powerpc64" => ("ppc64le", ""),
            "s390x" => ("s390x", ""),
            "riscv64" => ("riscv64", ""),
            "mips64" => ("mips64le", ""),
            other => (other, ""),
        };
        Platform {
            os: "linux".to_owned(),
            arch: arch.to_owned(),
            variant: variant.to_owned(),
        }
    }

    /// Parses `os[/arch[/variant]]` (`linux/arm64`, `linux/arm/v7`), normalising common
    /// aliases as containerd does (`x86_64` → `amd64`, `aarch64` → `arm64`, `armhf` → `arm/v7`).
    pub fn parse(s: &str) -> Result<Self, String> {
        let lower = s.trim().to_lowercase();
        let parts: Vec<&str> = lower.split('/').collect();
        if parts.is_empty() || parts.len() > 3 || parts.iter().any(|p| p.is_empty()) {
            return Err(format!("\"{s}\": unknown operating system or architecture"));
        }
        let os = parts[0].to_owned();
        let (mut arch, mut variant) = match parts.len() {
            1 => (Platform::host().arch, String::new()),
            _ => (
                parts[1].to_owned(),
                parts.get(2).copied().unwrap_or("").to_owned(),
            ),
        };
        match arch.as_str() {
            "x86_64" | "x86-64" => arch = "amd64".into(),
            "aarch64" => {
                arch = "arm64".into();
                if variant == "v8" {
                    variant.clear();
                }
            }
            "arm64" if variant == "v8" => variant.clear(),
            "armhf" => {
                arch = "arm".into();
                variant = "v7".into();
            }
            "armel" => {
                arch = "arm".into();
                variant = "v6".into();
            }
            "arm" if variant.is_empty() => variant = "v7".into(),
            "i386" => arch = "386".into(),
            _ => {}
        }
        Ok(Platform { os, arch, variant })
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        if !self.variant.is_empty() {
            write!(f, "/{}", self.variant)?;
        }
        Ok(())
    }
}

/// BuildKit's automatic platform args for a build on `build` targeting `target`:
/// `BUILDPLATFORM BUILDOS BUILDARCH BUILDVARIANT TARGETPLATFORM TARGETOS TARGETARCH
/// TARGETVARIANT`.
pub fn platform_args(build: &Platform, target: &Platform) -> Vec<(String, String)> {
    let mut out = Vec::with_capacity(8);
    for (prefix, p) in [("BUILD", build), ("TARGET", target)] {
        out.push((format!("{prefix}PLATFORM"), p.to_string()));
        out.push((format!("{prefix}OS"), p.os.clone()));
        out.push((format!("{prefix}ARCH"), p.arch.clone()));
        out.push((format!("{prefix}VARIANT"), p.variant.clone()));
    }
    out
}

/// One `ARG` declaration: a name and an optional default (as written, unexpanded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDecl {
    /// The name.
    pub name: String,
    /// The default after `=`, if any.
    pub default: Option<String>,
}

/// The variables of `FROM` lines: the platform args, then the global (`ARG` before the first
/// `FROM`) args with `--build-arg` overrides.
#[derive(Debug, Clone, Default)]
pub struct GlobalScope {
    /// Everything set, in order; later entries win.
    vars: Vec<(String, String)>,
    /// Global args declared without a value and not given by `--build-arg`.
    declared_unset: Vec<String>,
}

impl GlobalScope {
    /// Resolves the global args in order: a `--build-arg` wins, else the default expanded
    /// with the args before it (and the platform args).
    ///
    /// On failure returns the index (into `meta_args`) of the declaration that failed.
    pub fn new(
        lexer: &Lexer,
        meta_args: &[ArgDecl],
        build_args: &BTreeMap<String, String>,
        platform: &[(String, String)],
    ) -> Result<Self, (usize, ExpandError)> {
        let mut vars: Vec<(String, String)> = platform.to_vec();
        let mut declared_unset = Vec::new();
        for (i, a) in meta_args.iter().enumerate() {
            let value = if let Some(v) = build_args.get(&a.name) {
                Some(v.clone())
            } else if let Some(d) = &a.default {
                Some(lexer.process_word(d, &vars).map_err(|e| (i, e))?)
            } else {
                None
            };
            match value {
                Some(v) => {
                    declared_unset.retain(|n| n != &a.name);
                    vars.push((a.name.clone(), v));
                }
                None => {
                    if vars.get(&a.name).is_none() {
                        declared_unset.push(a.name.clone());
                    }
                }
            }
        }
        Ok(GlobalScope {
            vars,
            declared_unset,
        })
    }

    /// The value of a global (or platform) arg.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name)
    }

    /// Whether `name` was declared globally without a value (and no `--build-arg`).
    pub fn is_declared_unset(&self, name: &str) -> bool {
        self.declared_unset.iter().any(|n| n == name)
    }
}

impl Env for GlobalScope {
    fn get(&self, name: &str) -> Option<&str> {
        GlobalScope::get(self, name)
    }
}

/// Where a stage variable came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarOrigin {
    /// The base image's `Env`.
    Image,
    /// An `ENV` instruction.
    Env,
    /// An `ARG` instruction (build-time only, not in the image config).
    Arg,
}

/// One stage's variables, in the order they were set; the last setting of a name wins.
#[derive(Debug, Clone, Default)]
pub struct StageScope {
    vars: Vec<(String, String, VarOrigin)>,
    /// Names declared by `ARG` in this stage (with or without a value), in order.
    declared: Vec<String>,
}

impl StageScope {
    /// A scope starting from the base image's environment (`KEY=value` strings; an entry
    /// without `=` is a name with an empty value, as Docker reads it).
    pub fn new(image_env: &[String]) -> Self {
        let vars = image_env
            .iter()
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
                (k.to_owned(), v.to_owned(), VarOrigin::Image)
            })
            .collect();
        StageScope {
            vars,
            declared: Vec::new(),
        }
    }

    /// Sets `name` from an `ENV` instruction.
    pub fn set_env(&mut self, name: &str, value: &str) {
        self.vars
            .push((name.to_owned(), value.to_owned(), VarOrigin::Env));
    }

    /// Declares an `ARG` in this stage, as BuildKit's `dispatchArg`: a `--build-arg` value
    /// wins; else the default, expanded in the current scope; else the global arg of that
    /// name (including the platform args); else the arg is declared but unset. Returns the
    /// value it took.
    pub fn declare_arg(
        &mut self,
        lexer: &Lexer,
        decl: &ArgDecl,
        build_args: &BTreeMap<String, String>,
        globals: &GlobalScope,
    ) -> Result<Option<String>, ExpandError> {
        let value = if let Some(v) = build_args.get(&decl.name) {
            Some(v.clone())
        } else if let Some(d) = &decl.default {
            Some(lexer.process_word(d, self)?)
        } else {
            globals.get(&decl.name).map(str::to_owned)
        };
        self.declared.retain(|n| n != &decl.name);
        self.declared.push(decl.name.clone());
        if let Some(v) = &value {
            self.vars
                .push((decl.name.clone(), v.clone(), VarOrigin::Arg));
        }
        Ok(value)
    }

    /// The names declared by `ARG` in this stage.
    pub fn declared_args(&self) -> &[String] {
        &self.declared
    }

    /// The current value of `name` and where it came from.
    pub fn lookup(&self, name: &str) -> Option<(&str, VarOrigin)> {
        self.vars
            .iter()
            .rev()
            .find(|(k, _, _)| k == name)
            .map(|(_, v, o)| (v.as_str(), *o))
    }

    /// The image config `Env` this stage produces: image and `ENV` variables (not `ARG`s),
    /// one entry per name in first-set order with the latest value.
    pub fn image_env(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for (k, v, o) in &self.vars {
            if *o == VarOrigin::Arg {
                continue;
            }
            match out.iter_mut().find(|(ek, _)| ek == k) {
                Some(e) => e.1 = v.clone(),
                None => out.push((k.clone(), v.clone())),
            }
        }
        out
    }

    /// The environment of a `RUN`: every variable in scope (last write wins), plus the
    /// predefined proxy args given by `--build-arg` that the stage did not set itself.
    pub fn run_env(&self, build_args: &BTreeMap<String, String>) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for (k, v, _) in &self.vars {
            match out.iter_mut().find(|(ek, _)| ek == k) {
                Some(e) => e.1 = v.clone(),
                None => out.push((k.clone(), v.clone())),
            }
        }
        for p in PROXY_ARGS {
            if let Some(v) = build_args.get(p) {
                if !out.iter().any(|(k, _)| k == p) {
                    out.push((p.to_owned(), v.clone()));
                }
            }
        }
        out
    }

    /// The `ARG`s a `RUN` records in history (`RUN |2 A=1 B=2 ...`): declared args with a
    /// value whose current value still comes from the `ARG`, proxies left out.
    pub fn history_args(&self) -> Vec<(String, String)> {
        self.declared
            .iter()
            .filter(|n| !is_proxy_arg(n))
            .filter_map(|n| match self.lookup(n) {
                Some((v, VarOrigin::Arg)) => Some((n.clone(), v.to_owned())),
                _ => None,
            })
            .collect()
    }
}

impl Env for StageScope {
    fn get(&self, name: &str) -> Option<&str> {
        self.lookup(name).map(|(v, _)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn process_word_table() {
        let e = env(&[
            ("A", "a"),
            ("EMPTY", ""),
            ("SP", "x y"),
            ("PATHV", "/usr/local/bin:/usr/bin"),
            ("FILE", "archive.tar.gz"),
        ]);
        let lex = Lexer::new('\\');
        let cases: &[(&str, &str)] = &[
            ("$A", "a"),
            ("${A}", "a"),
            ("$A$A", "aa"),
            ("pre${A}post", "preapost"),
            ("$UNSET", ""),
            ("${UNSET}", ""),
            ("${UNSET:-def}", "def"),
            ("${EMPTY:-def}", "def"),
            ("${EMPTY-def}", ""),
            ("${UNSET-def}", "def"),
            ("${A:-def}", "a"),
            ("${A:+alt}", "alt"),
            ("${EMPTY:+alt}", ""),
            ("${EMPTY+alt}", "alt"),
            ("${UNSET+alt}", ""),
            ("${UNSET:-${A}}", "a"),
            ("${UNSET:-${ALSO:-deep}}", "deep"),
            ("${UNSET:-\"x y\"}", "x y"),
            ("'$A'", "$A"),
            ("\"$A\"", "a"),
            ("\"'$A'\"", "'a'"),
            ("\\$A", "$A"),
            ("a\\ b", "a b"),
            ("\"a\\\"b\"", "a\"b"),
            ("\"a\\nb\"", "a\\nb"),
            ("$", "$"),
            ("a$", "a$"),
            ("$1", ""),
            ("${FILE%.gz}", "archive.tar"),
            ("${FILE%%.*}", "archive"),
            ("${FILE#*.}", "tar.gz"),
            ("${FILE##*.}", "gz"),
            ("${PATHV/usr/opt}", "/opt/local/bin:/usr/bin"),
            ("${PATHV//usr/opt}", "/opt/local/bin:/opt/bin"),
            ("${SP}", "x y"),
            ("trailing\\", "trailing"),
        ];
        for (input, want) in cases {
            assert_eq!(
                lex.process_word(input, &e).as_deref(),
                Ok(*want),
                "input {input:?}"
            );
        }
    }

    #[test]
    fn process_words_splits_on_unquoted_and_expanded_space() {
        let e = env(&[("SP", "80 443"), ("A", "a")]);
        let lex = Lexer::new('\\');
        let cases: &[(&str, &[&str])] = &[
            ("80 443", &["80", "443"]),
            ("$SP", &["80", "443"]),
            ("\"$SP\"", &["80 443"]),
            ("a\\ b c", &["a b", "c"]),
            ("'x y' z", &["x y", "z"]),
            ("\"\" a", &["a"]),
            ("  ", &[]),
        ];
        for (input, want) in cases {
            let got = lex.process_words(input, &e).expect("ok");
            assert_eq!(got, *want, "input {input:?}");
        }
    }

    #[test]
    fn expansion_errors_use_buildkit_words() {
        let e = env(&[("EMPTY", "")]);
        let lex = Lexer::new('\\');
        let cases: &[(&str, &str)] = &[
            (
                "\"abc",
                "failed to process \"\\\"abc\": unexpected end of statement while looking for matching double-quote",
            ),
            (
                "'abc",
                "failed to process \"'abc\": unexpected end of statement while looking for matching single-quote",
            ),
            (
                "${A",
                "failed to process \"${A\": syntax error: missing '}'",
            ),
            (
                "${}",
                "failed to process \"${}\": syntax error: bad substitution",
            ),
            (
                "${:a}",
                "failed to process \"${:a}\": syntax error: bad substitution",
            ),
            (
                "${X:?}",
                "failed to process \"${X:?}\": X: is not allowed to be unset",
            ),
            (
                "${EMPTY:?must be set}",
                "failed to process \"${EMPTY:?must be set}\": EMPTY: must be set",
            ),
            (
                "${A:#x}",
                "failed to process \"${A:#x}\": unsupported modifier (:#) in substitution",
            ),
            (
                "${A!x}",
                "failed to process \"${A!x}\": unsupported modifier (!) in substitution",
            ),
        ];
        for (input, want) in cases {
            let err = lex.process_word(input, &e).expect_err(input);
            assert_eq!(err.to_string(), *want, "input {input:?}");
        }
        // `${VAR?}` accepts an empty value.
        assert_eq!(lex.process_word("${EMPTY?}", &e).as_deref(), Ok(""));
    }

    #[test]
    fn backtick_escape() {
        let lex = Lexer::new('`');
        let e = env(&[("A", "a")]);
        assert_eq!(
            lex.process_word(r"C:\Windows\$A", &e).as_deref(),
            Ok(r"C:\Windows\a")
        );
        assert_eq!(lex.process_word("`$A", &e).as_deref(), Ok("$A"));
        assert_eq!(lex.process_word("a` b", &e).as_deref(), Ok("a b"));
    }

    #[test]
    fn raw_quotes_and_skip_unset() {
        let mut lex = Lexer::new('\\');
        lex.raw_quotes = true;
        lex.skip_unset = true;
        assert_eq!(
            lex.process_words("cat <<\"EOF\" $X ${Y:-z}", &NoEnv)
                .expect("ok"),
            vec!["cat", "<<\"EOF\"", "$X", "${Y:-z}"]
        );
    }

    #[test]
    fn heredoc_contents_keep_quotes() {
        let e = env(&[("NAME", "berth")]);
        assert_eq!(
            expand_heredoc("hello \"$NAME\" '\\$x'\n", &e).as_deref(),
            Ok("hello \"berth\" '$x'\n")
        );
    }

    #[test]
    fn global_args_resolve_in_order_with_build_arg_overrides() {
        let lex = Lexer::new('\\');
        let metas = vec![
            ArgDecl {
                name: "VERSION".into(),
                default: Some("1.0".into()),
            },
            ArgDecl {
                name: "IMAGE".into(),
                default: Some("alpine:${VERSION}".into()),
            },
            ArgDecl {
                name: "NOVAL".into(),
                default: None,
            },
        ];
        let mut ba = BTreeMap::new();
        ba.insert("VERSION".to_owned(), "3.19".to_owned());
        let plat = platform_args(
            &Platform::parse("linux/amd64").expect("p"),
            &Platform::parse("linux/arm64").expect("p"),
        );
        let g = GlobalScope::new(&lex, &metas, &ba, &plat).expect("ok");
        assert_eq!(g.get("IMAGE"), Some("alpine:3.19"));
        assert_eq!(g.get("NOVAL"), None);
        assert!(g.is_declared_unset("NOVAL"));
        assert_eq!(g.get("TARGETARCH"), Some("arm64"));
        assert_eq!(g.get("BUILDPLATFORM"), Some("linux/amd64"));
    }

    #[test]
    fn stage_scope_arg_rules() {
        let lex = Lexer::new('\\');
        let g = GlobalScope::new(
            &lex,
            &[ArgDecl {
                name: "G".into(),
                default: Some("global".into()),
            }],
            &BTreeMap::new(),
            &platform_args(&Platform::host(), &Platform::host()),
        )
        .expect("ok");
        let mut ba = BTreeMap::new();
        ba.insert("B".to_owned(), "from-cli".to_owned());
        ba.insert("HTTP_PROXY".to_owned(), "http://proxy:3128".to_owned());
        let mut s = StageScope::new(&["PATH=/bin".to_owned(), "X=image".to_owned()]);
        // Global args are invisible until re-declared.
        assert_eq!(s.get("G"), None);
        let decl = |n: &str, d: Option<&str>| ArgDecl {
            name: n.into(),
            default: d.map(Into::into),
        };
        assert_eq!(
            s.declare_arg(&lex, &decl("G", None), &ba, &g)
                .expect("ok")
                .as_deref(),
            Some("global")
        );
        assert_eq!(
            s.declare_arg(&lex, &decl("B", Some("default")), &ba, &g)
                .expect("ok")
                .as_deref(),
            Some("from-cli")
        );
        assert_eq!(
            s.declare_arg(&lex, &decl("D", Some("${G}-x")), &ba, &g)
                .expect("ok")
                .as_deref(),
            Some("global-x")
        );
        assert_eq!(
            s.declare_arg(&lex, &decl("U", None), &ba, &g).expect("ok"),
            None
        );
        assert_eq!(s.get("U"), None);
        assert_eq!(
            s.declare_arg(&lex, &decl("TARGETOS", None), &ba, &g)
                .expect("ok")
                .as_deref(),
            Some("linux")
        );
        // An ARG declared after an inherited ENV overrides it; a later ENV overrides the ARG.
        s.declare_arg(&lex, &decl("X", Some("arg")), &ba, &g)
            .expect("ok");
        assert_eq!(s.get("X"), Some("arg"));
        s.set_env("X", "env");
        assert_eq!(s.get("X"), Some("env"));
        // Proxies reach RUN, not expansion, not history.
        assert_eq!(s.get("HTTP_PROXY"), None);
        let run = s.run_env(&ba);
        assert!(run.contains(&("HTTP_PROXY".to_owned(), "http://proxy:3128".to_owned())));
        assert!(run.contains(&("X".to_owned(), "env".to_owned())));
        let hist = s.history_args();
        assert!(hist.iter().all(|(k, _)| k != "HTTP_PROXY" && k != "X"));
        assert!(hist.contains(&("B".to_owned(), "from-cli".to_owned())));
        assert_eq!(
            s.image_env(),
            vec![
                ("PATH".to_owned(), "/bin".to_owned()),
                ("X".to_owned(), "env".to_owned())
            ]
        );
    }

    #[test]
    fn platform_parse() {
        assert_eq!(
            Platform::parse("linux/arm/v7").expect("ok").to_string(),
            "linux/arm/v7"
        );
        assert_eq!(
            Platform::parse("linux/aarch64").expect("ok").to_string(),
            "linux/arm64"
        );
        assert_eq!(
            Platform::parse("linux/x86_64").expect("ok").to_string(),
            "linux/amd64"
        );
        assert!(Platform::parse("linux//").is_err());
    }
}
