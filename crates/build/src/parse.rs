//! Lexing a Dockerfile into raw instructions ([`Node`]s) with their source lines, as
//! BuildKit's `parser` package does it.
//!
//! - **Directives** (`# syntax=`, `# escape=`, `# check=`) are read only from the very top:
//!   the first line that is not a directive (an instruction, a blank line, an ordinary
//!   comment, or an unknown directive, which BuildKit treats as a comment) ends them. A
//!   directive may appear once; `escape` is `\` or `` ` ``.
//! - **Comments** are lines whose first non-blank character is `#`; they are dropped, also in
//!   the middle of a continued instruction.
//! - **Continuations**: a line ending in the escape character (optionally followed by blanks,
//!   and not itself escaped) continues on the next line; the escape is removed and lines are
//!   joined without a newline. Blank continuation lines are skipped (with a warning).
//! - **Forms**: `RUN`/`CMD`/`ENTRYPOINT`/`SHELL` take a JSON array (exec form) or the rest of
//!   the line (shell form); `ADD`/`COPY`/`VOLUME` a JSON array or whitespace-separated words;
//!   `ENV`/`LABEL` `k=v` pairs (quotes and escapes kept for expansion later) or the legacy
//!   `k v`; `ARG` words; `FROM`/`EXPOSE` whitespace-separated words; `USER`, `WORKDIR`,
//!   `STOPSIGNAL`, `MAINTAINER` the rest of the line; `HEALTHCHECK` a type then a command;
//!   `ONBUILD` a nested instruction.
//! - **Flags**: leading `--name[=value]` words (quotes and escapes understood, `--` ends
//!   them) are split off every instruction; which flags are allowed is decided per
//!   instruction in [`crate::ast`].
//! - **Heredocs**: on `RUN`, `COPY`, `ADD` (and those under `ONBUILD`) in non-JSON form, each
//!   `<<WORD`, `<<-WORD`, `<<"WORD"`, `<<'WORD'` (optionally with a file-descriptor number)
//!   takes the following lines up to a line equal to `WORD` (leading tabs ignored for `<<-`).
//!   A quoted delimiter turns expansion of the content off.

use crate::error::{Error, ErrorKind};
use crate::expand::{Lexer, NoEnv};

/// The largest Dockerfile the parser accepts (bytes).
pub const MAX_DOCKERFILE_SIZE: usize = 16 * 1024 * 1024;

/// The parser directives at the top of a Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directives {
    /// The escape character: `\` by default, or `` ` ``.
    pub escape: char,
    /// `# syntax=` (a frontend image reference; Berth parses the Dockerfile itself).
    pub syntax: Option<String>,
    /// `# check=` (lint configuration, kept as written).
    pub check: Option<String>,
    /// Every directive as `(name, value, line)`, names lower-cased.
    pub all: Vec<(String, String, usize)>,
}

impl Default for Directives {
    fn default() -> Self {
        Directives {
            escape: '\\',
            syntax: None,
            check: None,
            all: Vec::new(),
        }
    }
}

/// A heredoc attached to an instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter word with quotes removed (`EOF`).
    pub name: String,
    /// The file descriptor written before `<<` (`3<<EOF`), 0 when none.
    pub file_descriptor: u32,
    /// Whether variables in the content are expanded (the delimiter was not quoted).
    pub expand: bool,
    /// `<<-`: leading tabs are stripped from content lines.
    pub chomp: bool,
    /// The lines between the instruction and the delimiter, each with its line ending.
    pub content: String,
}

impl Heredoc {
    /// The content with leading tabs removed from every line when `chomp` is set
    /// (BuildKit `ChompHeredocContent`).
    pub fn chomped_content(&self) -> String {
        if self.chomp {
            chomp_heredoc_content(&self.content)
        } else {
            self.content.clone()
        }
    }
}

/// Removes leading tabs from every line.
pub fn chomp_heredoc_content(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for line in s.split_inclusive('\n') {
        out.push_str(line.trim_start_matches('\t'));
    }
    out
}

/// The arguments of a raw instruction, in the shape its instruction's line parser gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeArgs {
    /// No arguments.
    None,
    /// A JSON array (exec form). May be empty (`CMD []`).
    Json(Vec<String>),
    /// The rest of the line as written (shell form, or a single-string instruction).
    Text(String),
    /// Words (whitespace-separated, or quote-aware for `ARG`).
    Words(Vec<String>),
    /// `ENV`/`LABEL` pairs; `legacy` marks the `KEY value` form.
    KeyValues {
        /// `(key, value)` as written (quotes and escapes kept).
        pairs: Vec<(String, String)>,
        /// The legacy space-separated form was used.
        legacy: bool,
    },
    /// `HEALTHCHECK TYPE <command>`.
    Healthcheck {
        /// `CMD`, `NONE`, ... as written.
        kind: String,
        /// The command (`Json`, `Text` or `None`).
        command: Box<NodeArgs>,
    },
    /// `ONBUILD <instruction>`.
    Sub(Box<Node>),
}

/// One raw instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The keyword as written (`RUN`, `run`, `Copy`).
    pub keyword: String,
    /// The `--flags` (without the instruction's arguments), as written after unquoting.
    pub flags: Vec<String>,
    /// The arguments.
    pub args: NodeArgs,
    /// Heredocs, in the order their delimiters appear.
    pub heredocs: Vec<Heredoc>,
    /// The logical line (continuations joined, comments dropped).
    pub original: String,
    /// First source line, 1-based.
    pub start_line: usize,
    /// Last source line (after heredoc bodies).
    pub end_line: usize,
    /// The comment lines right before the instruction.
    pub comments: Vec<String>,
}

impl Node {
    /// The keyword in lower case.
    pub fn keyword_lower(&self) -> String {
        self.keyword.to_lowercase()
    }

    fn can_contain_heredoc(&self) -> bool {
        let node = match (&self.keyword_lower()[..], &self.args) {
            ("onbuild", NodeArgs::Sub(inner)) => inner,
            _ => self,
        };
        matches!(&node.keyword_lower()[..], "run" | "copy" | "add")
            && !matches!(node.args, NodeArgs::Json(_))
    }
}

/// A lexed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lexed {
    /// The directives.
    pub directives: Directives,
    /// The instructions in order.
    pub nodes: Vec<Node>,
    /// BuildKit-style warnings (empty continuation lines).
    pub warnings: Vec<String>,
}

/// Lexes `src` (the bytes of the file named `file`) into raw instructions.
pub fn lex(file: &str, src: &[u8]) -> Result<Lexed, Error> {
    if src.len() > MAX_DOCKERFILE_SIZE {
        return Err(Error::new(
            file,
            0,
            0,
            ErrorKind::TooLarge {
                size: src.len(),
                limit: MAX_DOCKERFILE_SIZE,
            },
        ));
    }
    let text = String::from_utf8_lossy(src);
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(&text);
    let lines: Vec<&str> = text.split_inclusive('\n').collect();

    let mut dp = DirectiveParser::default();
    let mut directives = Directives::default();
    let mut nodes = Vec::new();
    let mut warnings = Vec::new();
    let mut comments: Vec<String> = Vec::new();
    let mut current = 0usize; // lines consumed
    let mut idx = 0usize;

    while idx < lines.len() {
        let raw = lines[idx];
        idx += 1;
        if is_comment(raw) {
            let t = trim_newline(raw).trim_start();
            comments.push(t[1..].trim().to_owned());
        }
        let processed = process_line(&mut dp, &mut directives, raw, true)
            .map_err(|k| Error::new(file, current + 1, current + 1, k))?;
        current += 1;
        let start_line = current;
        let (mut line, mut eol) = trim_continuation(&processed, directives.escape);
        if eol && line.is_empty() {
            continue;
        }
        let mut empty_continuation = false;
        while !eol && idx < lines.len() {
            let raw = lines[idx];
            idx += 1;
            let processed = process_line(&mut dp, &mut directives, raw, false)
                .map_err(|k| Error::new(file, current + 1, current + 1, k))?;
            current += 1;
            if is_comment(raw) {
                continue;
            }
            if processed.trim_start().is_empty() {
                empty_continuation = true;
                continue;
            }
            let (cont, e) = trim_continuation(&processed, directives.escape);
            line.push_str(&cont);
            eol = e;
        }
        if empty_continuation {
            warnings.push(format!(
                "{file}:{start_line}: empty continuation line found in: {line}"
            ));
        }

        let mut node = new_node_from_line(&line, directives.escape, 0).map_err(|k| {
            let e = Error::new(file, start_line, current, k);
            let kw = line
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_uppercase();
            if crate::ast::INSTRUCTIONS.contains(&kw.as_str()) {
                e.with_instruction(&kw)
            } else {
                e
            }
        })?;
        node.comments = std::mem::take(&mut comments);

        if node.can_contain_heredoc() {
            for mut h in
                heredocs_from_line(&line).map_err(|k| Error::new(file, start_line, current, k))?
            {
                let mut terminated = false;
                while idx < lines.len() {
                    let raw = lines[idx];
                    idx += 1;
                    current += 1;
                    let mut candidate = trim_newline(raw);
                    if h.chomp {
                        candidate = candidate.trim_start_matches('\t');
                    }
                    if candidate == h.name {
                        terminated = true;
                        break;
                    }
                    h.content.push_str(raw);
                }
                if !terminated {
                    return Err(Error::new(
                        file,
                        start_line,
                        current,
                        ErrorKind::Heredoc("unterminated heredoc".into()),
                    )
                    .with_instruction(&node.keyword));
                }
                node.heredocs.push(h);
            }
        }
        node.start_line = start_line;
        node.end_line = current;
        nodes.push(node);
    }

    if nodes.is_empty() {
        return Err(Error::new(file, 0, 0, ErrorKind::NoInstructions));
    }
    Ok(Lexed {
        directives,
        nodes,
        warnings,
    })
}

#[derive(Default)]
struct DirectiveParser {
    done: bool,
    line: usize,
}

impl DirectiveParser {
    fn parse_line(&mut self, d: &mut Directives, line: &str) -> Result<(), ErrorKind> {
        self.line += 1;
        if self.done {
            return Ok(());
        }
        let Some(rest) = line.strip_prefix('#') else {
            self.done = true;
            return Ok(());
        };
        let rest = rest.trim_start();
        let Some((name, value)) = match_directive(rest) else {
            self.done = true;
            return Ok(());
        };
        let key = name.to_lowercase();
        if !matches!(&key[..], "syntax" | "escape" | "check") {
            self.done = true;
            return Ok(());
        }
        if d.all.iter().any(|(k, _, _)| *k == key) {
            return Err(ErrorKind::Directive(format!(
                "only one {key} parser directive can be used"
            )));
        }
        match &key[..] {
            "escape" => {
                if value != "`" && value != "\\" {
                    return Err(ErrorKind::Directive(format!(
                        "invalid escape token '{value}' does not match ` or \\"
                    )));
                }
                d.escape = value.chars().next().unwrap_or('\\');
            }
            "syntax" => d.syntax = Some(value.to_owned()),
            _ => d.check = Some(value.to_owned()),
        }
        d.all.push((key, value.to_owned(), self.line));
        Ok(())
    }
}

/// `^([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$` on the text after `#` and blanks.
fn match_directive(s: &str) -> Option<(&str, &str)> {
    let first = s.chars().next()?;
    if !first.is_ascii_alphabetic() {
        return None;
    }
    let name_end = s
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(s.len());
    let name = &s[..name_end];
    let rest = s[name_end..].trim_start_matches(is_go_regex_space);
    let rest = rest.strip_prefix('=')?;
    let value = rest
        .trim_start_matches(is_go_regex_space)
        .trim_end_matches(is_go_regex_space);
    if value.is_empty() || value.contains('\n') {
        return None;
    }
    Some((name, value))
}

fn is_go_regex_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0c' | '\r')
}

fn trim_newline(s: &str) -> &str {
    s.trim_end_matches(['\r', '\n'])
}

fn is_comment(raw: &str) -> bool {
    trim_newline(raw).trim_start().starts_with('#')
}

fn process_line(
    dp: &mut DirectiveParser,
    d: &mut Directives,
    raw: &str,
    strip_left: bool,
) -> Result<String, ErrorKind> {
    let mut token = trim_newline(raw);
    if strip_left {
        token = token.trim_start();
    }
    dp.parse_line(d, token)?;
    if token.starts_with('#') {
        Ok(String::new())
    } else {
        Ok(token.to_owned())
    }
}

/// BuildKit's continuation rule: the escape character, then only blanks, at the end of the
/// line, not preceded by another escape character (or alone on the line).
fn trim_continuation(line: &str, escape: char) -> (String, bool) {
    let body = line.trim_end_matches([' ', '\t']);
    if let Some(before) = body.strip_suffix(escape) {
        let prev = before.chars().next_back();
        if prev != Some(escape) {
            return (before.to_owned(), false);
        }
    }
    (line.to_owned(), true)
}

fn is_split_space(c: char) -> bool {
    matches!(c, '\t' | '\x0b' | '\x0c' | '\r' | ' ')
}

/// Splits on runs of `[\t\v\f\r ]`, dropping empties at the ends as Go's `regexp.Split` of a
/// trimmed string does.
fn split_whitespace_delimited(s: &str) -> Vec<String> {
    s.split(is_split_space)
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Builds a node from one logical line.
///
/// `depth` counts `ONBUILD` nesting: an `ONBUILD` inside an `ONBUILD` (refused later) is not
/// parsed further, which bounds recursion on hostile input.
pub(crate) fn new_node_from_line(
    line: &str,
    escape: char,
    depth: usize,
) -> Result<Node, ErrorKind> {
    let trimmed = line.trim();
    let (keyword, after) = match trimmed.find(is_split_space) {
        Some(i) => {
            let rest = trimmed[i..].trim_start_matches(is_split_space);
            (&trimmed[..i], Some(rest))
        }
        None => (trimmed, None),
    };
    let (rest, flags) = match after {
        Some(a) => extract_builder_flags(a, escape),
        None => (String::new(), Vec::new()),
    };
    let rest = rest.trim().to_owned();
    let args = match &keyword.to_lowercase()[..] {
        "add" | "copy" | "volume" => parse_maybe_json_to_list(&rest)?,
        "arg" => {
            let w = parse_words(&rest, escape);
            if w.is_empty() {
                NodeArgs::None
            } else {
                NodeArgs::Words(w)
            }
        }
        "cmd" | "entrypoint" | "run" | "shell" => parse_maybe_json(&rest)?,
        "env" => parse_name_val(&rest, "ENV", escape)?,
        "label" => parse_name_val(&rest, "LABEL", escape)?,
        "expose" | "from" => {
            if rest.is_empty() {
                NodeArgs::None
            } else {
                NodeArgs::Words(split_whitespace_delimited(&rest))
            }
        }
        "healthcheck" => parse_health_config(&rest)?,
        "maintainer" | "stopsignal" | "user" | "workdir" => {
            if rest.is_empty() {
                NodeArgs::None
            } else {
                NodeArgs::Text(rest.clone())
            }
        }
        "onbuild" => {
            if rest.is_empty() || depth > 1 {
                NodeArgs::None
            } else {
                NodeArgs::Sub(Box::new(new_node_from_line(&rest, escape, depth + 1)?))
            }
        }
        _ => NodeArgs::None,
    };
    Ok(Node {
        keyword: keyword.to_owned(),
        flags,
        args,
        heredocs: Vec::new(),
        original: line.to_owned(),
        start_line: 0,
        end_line: 0,
        comments: Vec::new(),
    })
}

/// Splits leading `--flag` words off `line` (BuildKit `extractBuilderFlags`). Returns the
/// remaining text and the flags.
fn extract_builder_flags(line: &str, escape: char) -> (String, Vec<String>) {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut pos = 0;
    while pos <= chars.len() {
        let at_end = pos == chars.len();
        let ch = chars.get(pos).map(|c| c.1).unwrap_or('\0');
        if phase == Phase::Spaces {
            if at_end {
                break;
            }
            if ch.is_whitespace() {
                pos += 1;
                continue;
            }
            let next = chars.get(pos + 1).map(|c| c.1);
            if ch != '-' || next != Some('-') {
                return (line[chars[pos].0..].to_owned(), words);
            }
            phase = Phase::Word;
        }
        if at_end {
            if word != "--" && (blank_ok || !word.is_empty()) {
                words.push(word);
            }
            break;
        }
        if phase == Phase::Word {
            if ch.is_whitespace() {
                phase = Phase::Spaces;
                if word == "--" {
                    return (line[chars[pos].0..].to_owned(), words);
                }
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                word.clear();
                blank_ok = false;
                pos += 1;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
                pos += 1;
                continue;
            }
            if ch == escape {
                if pos + 1 == chars.len() {
                    pos += 1;
                    continue;
                }
                pos += 1;
                word.push(chars[pos].1);
                pos += 1;
                continue;
            }
            word.push(ch);
            pos += 1;
            continue;
        }
        // Phase::Quote
        if ch == quote {
            phase = Phase::Word;
            pos += 1;
            continue;
        }
        if ch == escape {
            if pos + 1 == chars.len() {
                phase = Phase::Word;
                pos += 1;
                continue;
            }
            pos += 1;
            word.push(chars[pos].1);
            pos += 1;
            continue;
        }
        word.push(ch);
        pos += 1;
    }
    (String::new(), words)
}

/// Splits `rest` into words at unquoted whitespace, keeping quotes and escapes in the words
/// (BuildKit `parseWords`, used by `ARG`, `ENV`, `LABEL`).
fn parse_words(rest: &str, escape: char) -> Vec<String> {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let chars: Vec<char> = rest.chars().collect();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut pos = 0;
    while pos <= chars.len() {
        let at_end = pos == chars.len();
        let ch = chars.get(pos).copied().unwrap_or('\0');
        if phase == Phase::Spaces {
            if at_end {
                break;
            }
            if ch.is_whitespace() {
                pos += 1;
                continue;
            }
            phase = Phase::Word;
        }
        if at_end {
            if blank_ok || !word.is_empty() {
                words.push(word);
            }
            break;
        }
        if phase == Phase::Word {
            if ch.is_whitespace() {
                phase = Phase::Spaces;
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                blank_ok = false;
                pos += 1;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
            }
            if ch == escape {
                if pos + 1 == chars.len() {
                    pos += 1;
                    continue;
                }
                word.push(ch);
                pos += 1;
                word.push(chars[pos]);
                pos += 1;
                continue;
            }
            word.push(ch);
            pos += 1;
            continue;
        }
        // Phase::Quote
        if ch == quote {
            phase = Phase::Word;
        }
        if ch == escape && quote != '\'' {
            if pos + 1 == chars.len() {
                phase = Phase::Word;
                pos += 1;
                continue;
            }
            word.push(ch);
            pos += 1;
            word.push(chars[pos]);
            pos += 1;
            continue;
        }
        word.push(ch);
        pos += 1;
    }
    words
}

fn parse_name_val(rest: &str, key: &str, escape: char) -> Result<NodeArgs, ErrorKind> {
    let words = parse_words(rest, escape);
    let Some(first) = words.first() else {
        return Ok(NodeArgs::None);
    };
    if !first.contains('=') {
        let mut parts = rest.splitn(2, is_split_space);
        let k = parts.next().unwrap_or_default();
        let v = parts
            .next()
            .map(|v| v.trim_start_matches(is_split_space))
            .unwrap_or_default();
        if v.is_empty() && !rest.contains(is_split_space) {
            return Err(ErrorKind::Arguments(format!(
                "{key} must have two arguments"
            )));
        }
        return Ok(NodeArgs::KeyValues {
            pairs: vec![(k.to_owned(), v.to_owned())],
            legacy: true,
        });
    }
    let mut pairs = Vec::with_capacity(words.len());
    for w in &words {
        let Some((k, v)) = w.split_once('=') else {
            return Err(ErrorKind::Syntax(format!(
                "Syntax error - can't find = in {}. Must be of the form: name=value",
                crate::error::go_quote(w)
            )));
        };
        pairs.push((k.to_owned(), v.to_owned()));
    }
    Ok(NodeArgs::KeyValues {
        pairs,
        legacy: false,
    })
}

const NOT_STRING_ARRAY: &str =
    "when using JSON array syntax, arrays must be comprised of strings only";

/// `Ok(Some)` for a JSON array of strings, `Ok(None)` when `rest` is not a JSON array,
/// `Err` for an array with non-strings.
fn parse_json(rest: &str) -> Result<Option<Vec<String>>, ErrorKind> {
    let rest = rest.trim_start();
    if !rest.starts_with('[') {
        return Ok(None);
    }
    let Ok(values) = serde_json::from_str::<Vec<serde_json::Value>>(rest) else {
        return Ok(None);
    };
    let mut out = Vec::with_capacity(values.len());
    for v in values {
        match v {
            serde_json::Value::String(s) => out.push(s),
            _ => return Err(ErrorKind::Syntax(NOT_STRING_ARRAY.into())),
        }
    }
    Ok(Some(out))
}

fn parse_maybe_json(rest: &str) -> Result<NodeArgs, ErrorKind> {
    if rest.is_empty() {
        return Ok(NodeArgs::None);
    }
    Ok(match parse_json(rest)? {
        Some(v) => NodeArgs::Json(v),
        None => NodeArgs::Text(rest.to_owned()),
    })
}

fn parse_maybe_json_to_list(rest: &str) -> Result<NodeArgs, ErrorKind> {
    if let Some(v) = parse_json(rest)? {
        return Ok(NodeArgs::Json(v));
    }
    if rest.is_empty() {
        return Ok(NodeArgs::None);
    }
    Ok(NodeArgs::Words(split_whitespace_delimited(rest)))
}

fn parse_health_config(rest: &str) -> Result<NodeArgs, ErrorKind> {
    let sep = rest.find(char::is_whitespace).unwrap_or(rest.len());
    if sep == 0 {
        return Ok(NodeArgs::None);
    }
    let kind = &rest[..sep];
    let cmd = rest[sep..].trim_start();
    Ok(NodeArgs::Healthcheck {
        kind: kind.to_owned(),
        command: Box::new(parse_maybe_json(cmd)?),
    })
}

/// The heredocs a logical line opens, in order (BuildKit `heredocsFromLine`).
fn heredocs_from_line(line: &str) -> Result<Vec<Heredoc>, ErrorKind> {
    let mut lex = Lexer::new('\\');
    lex.raw_quotes = true;
    lex.raw_escapes = true;
    lex.skip_unset = true;
    let words = lex.process_words(line, &NoEnv).unwrap_or_default();
    let mut out = Vec::new();
    for w in words {
        if let Some(h) = parse_heredoc(&w)? {
            out.push(h);
        }
    }
    Ok(out)
}

/// Recognises one heredoc word (`<<EOF`, `<<-"EOF"`, `3<<EOF`); `Ok(None)` when `src` is
/// not one (BuildKit `ParseHeredoc`).
pub fn parse_heredoc(src: &str) -> Result<Option<Heredoc>, ErrorKind> {
    let digits_end = src.find(|c: char| !c.is_ascii_digit()).unwrap_or(src.len());
    let (digits, after) = src.split_at(digits_end);
    let Some(after) = after.strip_prefix("<<") else {
        return Ok(None);
    };
    let (chomp, rest) = match after.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, after),
    };
    if rest.contains('<') || rest.is_empty() {
        return Ok(None);
    }
    let fd: u32 = digits.parse().unwrap_or(0);
    let mut lex = Lexer::new('\\');
    lex.skip_unset = true;
    let words = lex.process_words(rest, &NoEnv)?;
    if words.len() != 1 {
        return Ok(None);
    }
    lex.raw_quotes = true;
    let raw_words = lex.process_words(rest, &NoEnv)?;
    if raw_words.len() != words.len() {
        return Err(ErrorKind::Heredoc(format!(
            "internal lexing of heredoc produced inconsistent results: {rest}"
        )));
    }
    let quotes = |s: &str| s.chars().filter(|c| *c == '\'' || *c == '"').count();
    let expand = quotes(&words[0]) == quotes(&raw_words[0]);
    Ok(Some(Heredoc {
        name: words[0].clone(),
        file_descriptor: fd,
        expand,
        chomp,
        content: String::new(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lex_ok(src: &str) -> Lexed {
        match lex("Dockerfile", src.as_bytes()) {
            Ok(l) => l,
            Err(e) => panic!("lex failed: {e}"),
        }
    }

    fn lex_err(src: &str) -> String {
        match lex("Dockerfile", src.as_bytes()) {
            Ok(l) => panic!("lexed: {l:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn directives_only_at_the_top() {
        let cases: &[(&str, char, Option<&str>, Option<&str>)] = &[
            ("# escape=`\nFROM x\n", '`', None, None),
            ("#escape = \\ \nFROM x\n", '\\', None, None),
            (
                "# syntax=docker/dockerfile:1\n# check=skip=all\nFROM x\n",
                '\\',
                Some("docker/dockerfile:1"),
                Some("skip=all"),
            ),
            // An ordinary comment ends directives.
            ("# hello\n# escape=`\nFROM x\n", '\\', None, None),
            // A blank line ends directives.
            ("\n# escape=`\nFROM x\n", '\\', None, None),
            // An unknown directive is a comment and ends directives.
            ("# foo=bar\n# escape=`\nFROM x\n", '\\', None, None),
            // After an instruction, a directive is a comment.
            ("FROM x\n# escape=`\nRUN a\n", '\\', None, None),
            // Upper-case names work.
            ("# ESCAPE=`\nFROM x\n", '`', None, None),
        ];
        for (src, esc, syntax, check) in cases {
            let l = lex_ok(src);
            assert_eq!(l.directives.escape, *esc, "{src:?}");
            assert_eq!(l.directives.syntax.as_deref(), *syntax, "{src:?}");
            assert_eq!(l.directives.check.as_deref(), *check, "{src:?}");
        }
        assert_eq!(
            lex_err("# escape=x\nFROM a\n"),
            "Dockerfile:1: invalid escape token 'x' does not match ` or \\"
        );
        assert_eq!(
            lex_err("# escape=`\n# escape=\\\nFROM a\n"),
            "Dockerfile:2: only one escape parser directive can be used"
        );
    }

    #[test]
    fn continuations_comments_and_lines() {
        let l = lex_ok(
            "FROM busybox\n\
             RUN echo a \\\n\
             # a comment inside\n\
             \x20\x20\x20\n\
             \x20 b \\\n\
             c\n\
             \n\
             # trailing\n\
             CMD [\"sh\"]\n",
        );
        assert_eq!(l.nodes.len(), 3);
        let run = &l.nodes[1];
        assert_eq!(run.args, NodeArgs::Text("echo a   b c".into()));
        assert_eq!((run.start_line, run.end_line), (2, 6));
        assert_eq!(l.nodes[2].start_line, 9);
        assert_eq!(l.nodes[2].comments, vec!["trailing".to_owned()]);
        assert_eq!(l.warnings.len(), 1);
    }

    #[test]
    fn escaped_escape_is_not_a_continuation() {
        let l = lex_ok("FROM a\nRUN echo \\\\\nRUN b\n");
        assert_eq!(l.nodes.len(), 3);
        assert_eq!(l.nodes[1].args, NodeArgs::Text("echo \\\\".into()));
        // A lone escape on its line continues.
        let l = lex_ok("FROM a\nRUN echo x \\\n\\\nrest\n");
        assert_eq!(l.nodes[1].args, NodeArgs::Text("echo x rest".into()));
    }

    #[test]
    fn backtick_escape_and_windows_paths() {
        let l = lex_ok(
            "# escape=`\nFROM mcr.microsoft.com/windows/servercore\n\
             COPY testfile.txt c:\\\n\
             RUN dir c:\\ `\n  /s\n",
        );
        assert_eq!(
            l.nodes[1].args,
            NodeArgs::Words(vec!["testfile.txt".into(), "c:\\".into()])
        );
        assert_eq!(l.nodes[2].args, NodeArgs::Text("dir c:\\   /s".into()));
        // With the default escape, `c:\` at the end would continue the line.
        let l = lex_ok("FROM a\nCOPY x c:\\\nRUN y\n");
        assert_eq!(l.nodes.len(), 2);
    }

    #[test]
    fn forms_per_instruction() {
        let l = lex_ok(concat!(
            "FROM --platform=$BUILDPLATFORM golang:1.22 AS build\n",
            "RUN [\"echo\", \"hi\"]\n",
            "RUN [\"echo\", \"hi\" oops\n",
            "CMD []\n",
            "ENV A=1 B=\"two words\" C=x\\ y\n",
            "ENV LEGACY some value here\n",
            "LABEL \"com.example.vendor\"=\"ACME Inc\"\n",
            "ARG NAME=\"a b\" OTHER\n",
            "VOLUME [\"/data\", \"/logs\"]\n",
            "VOLUME /a /b\n",
            "EXPOSE 80/tcp   443\n",
            "HEALTHCHECK --interval=5s CMD curl -f http://localhost/\n",
            "HEALTHCHECK NONE\n",
            "ONBUILD RUN make\n",
            "USER app:app\n",
            "WORKDIR /some path\n",
        ));
        let n = &l.nodes;
        assert_eq!(n[0].flags, vec!["--platform=$BUILDPLATFORM".to_owned()]);
        assert_eq!(
            n[0].args,
            NodeArgs::Words(vec!["golang:1.22".into(), "AS".into(), "build".into()])
        );
        assert_eq!(n[1].args, NodeArgs::Json(vec!["echo".into(), "hi".into()]));
        assert_eq!(n[2].args, NodeArgs::Text("[\"echo\", \"hi\" oops".into()));
        assert_eq!(n[3].args, NodeArgs::Json(vec![]));
        assert_eq!(
            n[4].args,
            NodeArgs::KeyValues {
                pairs: vec![
                    ("A".into(), "1".into()),
                    ("B".into(), "\"two words\"".into()),
                    ("C".into(), "x\\ y".into())
                ],
                legacy: false
            }
        );
        assert_eq!(
            n[5].args,
            NodeArgs::KeyValues {
                pairs: vec![("LEGACY".into(), "some value here".into())],
                legacy: true
            }
        );
        assert_eq!(
            n[6].args,
            NodeArgs::KeyValues {
                pairs: vec![("\"com.example.vendor\"".into(), "\"ACME Inc\"".into())],
                legacy: false
            }
        );
        assert_eq!(
            n[7].args,
            NodeArgs::Words(vec!["NAME=\"a b\"".into(), "OTHER".into()])
        );
        assert_eq!(
            n[8].args,
            NodeArgs::Json(vec!["/data".into(), "/logs".into()])
        );
        assert_eq!(n[9].args, NodeArgs::Words(vec!["/a".into(), "/b".into()]));
        assert_eq!(
            n[10].args,
            NodeArgs::Words(vec!["80/tcp".into(), "443".into()])
        );
        assert_eq!(n[11].flags, vec!["--interval=5s".to_owned()]);
        assert_eq!(
            n[11].args,
            NodeArgs::Healthcheck {
                kind: "CMD".into(),
                command: Box::new(NodeArgs::Text("curl -f http://localhost/".into()))
            }
        );
        assert_eq!(
            n[12].args,
            NodeArgs::Healthcheck {
                kind: "NONE".into(),
                command: Box::new(NodeArgs::None)
            }
        );
        match &n[13].args {
            NodeArgs::Sub(inner) => {
                assert_eq!(inner.keyword, "RUN");
                assert_eq!(inner.args, NodeArgs::Text("make".into()));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(n[14].args, NodeArgs::Text("app:app".into()));
        assert_eq!(n[15].args, NodeArgs::Text("/some path".into()));
    }

    #[test]
    fn flags_extraction() {
        let cases: &[(&str, &[&str], &str)] = &[
            ("--from=build /a /b", &["--from=build"], "/a /b"),
            ("--chown=\"a b\" x y", &["--chown=a b"], "x y"),
            ("--link --chmod=755 x y", &["--link", "--chmod=755"], "x y"),
            ("-- --notaflag x", &[], "--notaflag x"),
            (
                "--mount=type=cache,target=/root/.cache\\ x cmd",
                &["--mount=type=cache,target=/root/.cache x"],
                "cmd",
            ),
            ("x --late=1", &[], "x --late=1"),
            ("--only", &["--only"], ""),
        ];
        for (input, flags, rest) in cases {
            let (r, f) = extract_builder_flags(input, '\\');
            assert_eq!(f, *flags, "{input:?}");
            assert_eq!(r.trim(), *rest, "{input:?}");
        }
    }

    #[test]
    fn heredocs() {
        let l = lex_ok(concat!(
            "FROM a\n",
            "RUN <<EOF\n",
            "echo $HOME\n",
            "EOF\n",
            "RUN python3 <<'PY' > /out\n",
            "print('x')\n",
            "PY\n",
            "COPY <<-\"A\" <<B /dest/\n",
            "\t\tindented\n",
            "\tA\n",
            "b\n",
            "B\n",
            "RUN [\"echo\", \"<<NOT\"]\n",
            "RUN 3<<FD cat /dev/fd/3\n",
            "x\n",
            "FD\n",
            "RUN cat << EOF\n",
        ));
        let n = &l.nodes;
        assert_eq!(n[1].heredocs.len(), 1);
        assert_eq!(n[1].heredocs[0].name, "EOF");
        assert!(n[1].heredocs[0].expand);
        assert_eq!(n[1].heredocs[0].content, "echo $HOME\n");
        assert_eq!((n[1].start_line, n[1].end_line), (2, 4));
        assert_eq!(n[2].heredocs[0].name, "PY");
        assert!(!n[2].heredocs[0].expand);
        assert_eq!(n[3].heredocs.len(), 2);
        assert!(n[3].heredocs[0].chomp);
        assert!(!n[3].heredocs[0].expand);
        assert_eq!(n[3].heredocs[0].chomped_content(), "indented\n");
        assert_eq!(n[3].heredocs[1].content, "b\n");
        assert!(n[4].heredocs.is_empty());
        assert_eq!(n[5].heredocs[0].file_descriptor, 3);
        // `<< EOF` (with a space) is not a heredoc.
        assert!(n[6].heredocs.is_empty());
        assert_eq!(n[6].start_line, 17);

        assert_eq!(
            lex_err("FROM a\nRUN <<EOF\necho\n"),
            "Dockerfile:2: RUN: unterminated heredoc"
        );
    }

    #[test]
    fn empty_and_error_inputs() {
        assert_eq!(lex_err(""), "Dockerfile: file with no instructions");
        assert_eq!(
            lex_err("# just a comment\n\n"),
            "Dockerfile: file with no instructions"
        );
        assert_eq!(
            lex_err("FROM a\nCMD [\"a\", 1]\n"),
            "Dockerfile:2: CMD: when using JSON array syntax, arrays must be comprised of strings only"
        );
        assert_eq!(
            lex_err("FROM a\nENV A=1 B\n"),
            "Dockerfile:2: ENV: Syntax error - can't find = in \"B\". Must be of the form: name=value"
        );
        assert_eq!(
            lex_err("FROM a\nENV A\n"),
            "Dockerfile:2: ENV must have two arguments"
        );
    }

    #[test]
    fn bom_and_crlf() {
        let l = lex_ok("\u{FEFF}FROM a\r\nRUN b \\\r\n c\r\n");
        assert_eq!(l.nodes[0].keyword, "FROM");
        assert_eq!(l.nodes[1].args, NodeArgs::Text("b  c".into()));
    }
}
