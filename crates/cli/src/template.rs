//! A subset of Go's `text/template`, enough for Docker's `--format`: `{{.Field.Sub}}`,
//! `{{json .}}`, `{{index .Labels "k"}}`, pipelines (`{{.Names | upper}}`), `if`/`else`,
//! `range`, `with`, and the helpers Docker adds (`join`, `split`, `upper`, `lower`, `title`,
//! `truncate`, `pad`, `println`, `printf`). Templates run over `serde_json::Value`s; fields
//! are looked up by their exact JSON key (then case-insensitively).

use serde_json::Value;

/// A template that failed to parse or run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("template parsing error: {0}")]
    Parse(String),
    #[error("template: {0}")]
    Exec(String),
}

type Result<T> = std::result::Result<T, TemplateError>;

fn perr<T>(msg: impl Into<String>) -> Result<T> {
    Err(TemplateError::Parse(msg.into()))
}

fn xerr<T>(msg: impl Into<String>) -> Result<T> {
    Err(TemplateError::Exec(msg.into()))
}

#[derive(Debug, Clone, PartialEq)]
enum Arg {
    /// `.A.B` (empty for `.`).
    Field(Vec<String>),
    /// `$` or `$.A.B`: fields of the root value.
    Root(Vec<String>),
    /// `$name` or `$name.A.B`: a variable and fields of it.
    Var(String, Vec<String>),
    Str(String),
    Num(serde_json::Number),
    Bool(bool),
    Nil,
    Ident(String),
    Sub(Pipeline),
}

type Command = Vec<Arg>;
type Pipeline = Vec<Command>;

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Text(String),
    Action(Pipeline),
    If {
        cond: Pipeline,
        then: Vec<Node>,
        els: Vec<Node>,
    },
    Range {
        /// `range $v := ...` (element) or `range $k, $v := ...` (key or index, element).
        vars: Vec<String>,
        pipe: Pipeline,
        body: Vec<Node>,
        els: Vec<Node>,
    },
    With {
        var: Option<String>,
        pipe: Pipeline,
        body: Vec<Node>,
        els: Vec<Node>,
    },
    /// `{{$x := pipeline}}` (declare) or `{{$x = pipeline}}` (assign); prints nothing.
    Set {
        name: String,
        pipe: Pipeline,
        declare: bool,
    },
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    nodes: Vec<Node>,
}

/// Docker's `--format` preprocessing: the `table` prefix, `json` shorthand, `\t`/`\n`
/// escapes. Returns the template text and whether the output is a table.
pub fn preprocess(format: &str) -> (String, bool) {
    let trimmed = format.trim_start();
    let (rest, table) = match trimmed.strip_prefix("table") {
        Some(rest) if rest.is_empty() || rest.starts_with(char::is_whitespace) => (rest, true),
        _ => (trimmed, false),
    };
    let rest = rest.trim_matches(' ');
    let text = if rest == "json" {
        "{{json .}}".to_owned()
    } else {
        rest.to_owned()
    };
    (text.replace("\\t", "\t").replace("\\n", "\n"), table)
}

/// One piece of the source: text or the inside of `{{ }}`.
enum Piece {
    Text(String),
    Action(String),
}

fn split_pieces(src: &str) -> Result<Vec<Piece>> {
    let mut pieces = Vec::new();
    let mut rest = src;
    while let Some(start) = rest.find("{{") {
        let mut text = rest[..start].to_owned();
        let after = &rest[start + 2..];
        let Some(end) = find_action_end(after) else {
            return perr("unclosed action");
        };
        let mut inner = &after[..end];
        let mut next = &after[end + 2..];
        if let Some(s) = inner.strip_prefix("- ") {
            text = text.trim_end().to_owned();
            inner = s;
        }
        if let Some(s) = inner.strip_suffix(" -") {
            next = next.trim_start();
            inner = s;
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        pieces.push(Piece::Action(inner.trim().to_owned()));
        rest = next;
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest.to_owned()));
    }
    Ok(pieces)
}

/// Finds the closing `}}` of an action, skipping string literals.
fn find_action_end(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'`' => {
                i += 1;
                while i < b.len() && b[i] != b'`' {
                    i += 1;
                }
            }
            b'}' if b.get(i + 1) == Some(&b'}') => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Arg(Arg),
    Pipe,
    Open,
    Close,
}

fn lex(s: &str) -> Result<Vec<Tok>> {
    let chars: Vec<char> = s.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '|' {
            toks.push(Tok::Pipe);
            i += 1;
        } else if c == '(' {
            toks.push(Tok::Open);
            i += 1;
        } else if c == ')' {
            toks.push(Tok::Close);
            i += 1;
        } else if c == '"' {
            let mut out = String::new();
            i += 1;
            loop {
                let Some(&c) = chars.get(i) else {
                    return perr("unterminated quoted string");
                };
                i += 1;
                match c {
                    '"' => break,
                    '\\' => {
                        let Some(&e) = chars.get(i) else {
                            return perr("unterminated quoted string");
                        };
                        i += 1;
                        out.push(match e {
                            'n' => '\n',
                            't' => '\t',
                            'r' => '\r',
                            other => other,
                        });
                    }
                    c => out.push(c),
                }
            }
            toks.push(Tok::Arg(Arg::Str(out)));
        } else if c == '`' {
            let start = i + 1;
            let Some(len) = chars[start..].iter().position(|&c| c == '`') else {
                return perr("unterminated raw quoted string");
            };
            toks.push(Tok::Arg(Arg::Str(
                chars[start..start + len].iter().collect(),
            )));
            i = start + len + 1;
        } else {
            let start = i;
            while i < chars.len() && !chars[i].is_whitespace() && !"|()".contains(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            toks.push(Tok::Arg(word_arg(&word)?));
        }
    }
    Ok(toks)
}

fn field_path(s: &str) -> Result<Vec<String>> {
    if s == "." {
        return Ok(Vec::new());
    }
    let parts: Vec<String> = s.split('.').skip(1).map(str::to_owned).collect();
    if parts.iter().any(String::is_empty) {
        return perr(format!("bad field {s:?}"));
    }
    Ok(parts)
}

fn word_arg(w: &str) -> Result<Arg> {
    if w.starts_with('.') {
        return Ok(Arg::Field(field_path(w)?));
    }
    if let Some(rest) = w.strip_prefix('$') {
        if rest.is_empty() {
            return Ok(Arg::Root(Vec::new()));
        }
        if rest.starts_with('.') {
            return Ok(Arg::Root(field_path(rest)?));
        }
        let (name, fields) = match rest.find('.') {
            Some(i) => (&rest[..i], field_path(&rest[i..])?),
            None => (rest, Vec::new()),
        };
        if !name.chars().all(|c| c.is_alphanumeric() || c == '_') {
            return perr(format!("bad variable name {w:?}"));
        }
        return Ok(Arg::Var(name.to_owned(), fields));
    }
    match w {
        "true" => return Ok(Arg::Bool(true)),
        "false" => return Ok(Arg::Bool(false)),
        "nil" => return Ok(Arg::Nil),
        _ => {}
    }
    if w.starts_with(|c: char| c.is_ascii_digit() || c == '-') {
        return match serde_json::from_str::<serde_json::Number>(w) {
            Ok(n) => Ok(Arg::Num(n)),
            Err(_) => perr(format!("bad number syntax: {w:?}")),
        };
    }
    if w.chars().all(|c| c.is_alphanumeric() || c == '_') {
        return Ok(Arg::Ident(w.to_owned()));
    }
    perr(format!("unexpected {w:?} in command"))
}

fn parse_pipeline(toks: &[Tok], pos: &mut usize, nested: bool) -> Result<Pipeline> {
    let mut pipe = Vec::new();
    let mut cmd: Command = Vec::new();
    while let Some(t) = toks.get(*pos) {
        *pos += 1;
        match t {
            Tok::Arg(a) => cmd.push(a.clone()),
            Tok::Pipe => {
                if cmd.is_empty() {
                    return perr("missing command before |");
                }
                pipe.push(std::mem::take(&mut cmd));
            }
            Tok::Open => cmd.push(Arg::Sub(parse_pipeline(toks, pos, true)?)),
            Tok::Close if nested => {
                if !cmd.is_empty() {
                    pipe.push(cmd);
                }
                return if pipe.is_empty() {
                    perr("empty parenthesized pipeline")
                } else {
                    Ok(pipe)
                };
            }
            Tok::Close => return perr("unexpected )"),
        }
    }
    if nested {
        return perr("unclosed left paren");
    }
    if !cmd.is_empty() {
        pipe.push(cmd);
    }
    if pipe.is_empty() {
        return perr("missing value for command");
    }
    Ok(pipe)
}

/// Splits `$a, $b := pipeline` (or `$a = pipeline` when `assign_ok`) into the variable
/// names, the pipeline text and whether it declares; `None` when the text declares nothing.
fn split_decl(s: &str, assign_ok: bool) -> Result<Option<(Vec<String>, &str, bool)>> {
    let t = s.trim_start();
    if !t.starts_with('$') {
        return Ok(None);
    }
    let (lhs, rhs, declare) = match (t.find(":="), t.find('=')) {
        (Some(i), _) => (&t[..i], &t[i + 2..], true),
        (None, Some(i)) if assign_ok => (&t[..i], &t[i + 1..], false),
        _ => return Ok(None),
    };
    // `$x.Field ...` without `:=` is a plain pipeline; a quote before the `=` too.
    if lhs.contains('"') || lhs.contains('`') || lhs.contains('(') {
        return Ok(None);
    }
    let mut names = Vec::new();
    for v in lhs.split(',') {
        let v = v.trim();
        let name = v.strip_prefix('$').unwrap_or_default();
        if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || c == '_') {
            return perr(format!("bad variable declaration {lhs:?}"));
        }
        names.push(name.to_owned());
    }
    Ok(Some((names, rhs, declare)))
}

fn parse_expr(s: &str) -> Result<Pipeline> {
    let toks = lex(s)?;
    let mut pos = 0;
    parse_pipeline(&toks, &mut pos, false)
}

/// What ended a list of nodes.
enum End {
    Eof,
    Close,
    Else,
}

fn parse_nodes(
    pieces: &mut std::iter::Peekable<std::vec::IntoIter<Piece>>,
) -> Result<(Vec<Node>, End)> {
    let mut nodes = Vec::new();
    while let Some(p) = pieces.next() {
        match p {
            Piece::Text(t) => nodes.push(Node::Text(t)),
            Piece::Action(a) => {
                let (kw, rest) = match a.split_once(char::is_whitespace) {
                    Some((k, r)) => (k, r.trim()),
                    None => (a.as_str(), ""),
                };
                match kw {
                    "" => {}
                    _ if a.starts_with("/*") => {}
                    "end" => return Ok((nodes, End::Close)),
                    "else" => return Ok((nodes, End::Else)),
                    "if" | "range" | "with" => {
                        let (vars, expr) = match split_decl(rest, false)? {
                            Some((vars, expr, _)) => (vars, expr),
                            None => (Vec::new(), rest),
                        };
                        if vars.len() > if kw == "range" { 2 } else { 1 } {
                            return perr(format!("too many declarations in {kw}"));
                        }
                        let pipe = parse_expr(expr)?;
                        let (body, end) = parse_nodes(pieces)?;
                        let els = match end {
                            End::Eof => return perr(format!("unexpected EOF in {kw}")),
                            End::Close => Vec::new(),
                            End::Else => match parse_nodes(pieces)? {
                                (els, End::Close) => els,
                                _ => return perr(format!("expected end after else in {kw}")),
                            },
                        };
                        nodes.push(match kw {
                            "if" => {
                                let mut then = body;
                                if let Some(name) = vars.into_iter().next() {
                                    // `if $x := p`: $x is set for the branches.
                                    then.insert(
                                        0,
                                        Node::Set {
                                            name,
                                            pipe: pipe.clone(),
                                            declare: true,
                                        },
                                    );
                                }
                                Node::If {
                                    cond: pipe,
                                    then,
                                    els,
                                }
                            }
                            "range" => Node::Range {
                                vars,
                                pipe,
                                body,
                                els,
                            },
                            _ => Node::With {
                                var: vars.into_iter().next(),
                                pipe,
                                body,
                                els,
                            },
                        });
                    }
                    _ => match split_decl(&a, true)? {
                        Some((names, expr, declare)) if names.len() == 1 => nodes.push(Node::Set {
                            name: names.into_iter().next().unwrap_or_default(),
                            pipe: parse_expr(expr)?,
                            declare,
                        }),
                        Some(_) => return perr("too many declarations"),
                        None => nodes.push(Node::Action(parse_expr(&a)?)),
                    },
                }
            }
        }
    }
    Ok((nodes, End::Eof))
}

/// How a missing field renders.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Normal,
    /// Header rows of tables: a missing field renders as its upper-cased name.
    Header,
}

struct Exec<'a> {
    root: &'a Value,
    mode: Mode,
    /// Variables in scope, innermost last; a block drops what it declared when it ends.
    vars: std::cell::RefCell<Vec<(String, Value)>>,
}

/// A value during evaluation: `Missing` is Go's "<no value>".
#[derive(Debug, Clone)]
enum Val {
    Missing,
    V(Value),
}

impl Val {
    fn value(&self) -> Value {
        match self {
            Val::Missing => Value::Null,
            Val::V(v) => v.clone(),
        }
    }
}

impl Template {
    /// Parses `src` (already preprocessed, see [`preprocess`]).
    pub fn parse(src: &str) -> Result<Self> {
        let mut pieces = split_pieces(src)?.into_iter().peekable();
        match parse_nodes(&mut pieces)? {
            (nodes, End::Eof) => Ok(Template { nodes }),
            (_, End::Close) => perr("unexpected {{end}}"),
            (_, End::Else) => perr("unexpected {{else}}"),
        }
    }

    /// Runs the template over `data`.
    pub fn render(&self, data: &Value) -> Result<String> {
        let mut out = String::new();
        Exec {
            root: data,
            mode: Mode::Normal,
            vars: Default::default(),
        }
        .nodes(&self.nodes, data, &mut out)?;
        Ok(out)
    }

    /// Runs the template over a table's header names (`{"ID": "CONTAINER ID", ...}`); fields
    /// without a name render as their upper-cased key.
    pub fn render_header(&self, headers: &Value) -> Result<String> {
        let mut out = String::new();
        Exec {
            root: headers,
            mode: Mode::Header,
            vars: Default::default(),
        }
        .nodes(&self.nodes, headers, &mut out)?;
        Ok(out)
    }
}

/// Go's truthiness.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// Prints a value as Go's `fmt.Print` would print its typed counterpart.
pub fn go_print(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Array(a) => {
            let items: Vec<String> = a.iter().map(go_print).collect();
            format!("[{}]", items.join(" "))
        }
        Value::Object(o) => {
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort();
            let items: Vec<String> = keys
                .iter()
                .map(|k| format!("{k}:{}", go_print(&o[k.as_str()])))
                .collect();
            format!("map[{}]", items.join(" "))
        }
    }
}

fn print_val(v: &Val) -> String {
    match v {
        Val::Missing => "<no value>".to_owned(),
        Val::V(v) => go_print(v),
    }
}

fn lookup<'v>(v: &'v Value, key: &str) -> Option<&'v Value> {
    let obj = v.as_object()?;
    obj.get(key).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

fn as_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => go_print(other),
    }
}

fn index_value(v: &Value, key: &Value) -> Result<Val> {
    match (v, key) {
        (Value::Object(o), k) => {
            let k = as_str(k);
            Ok(Val::V(
                o.get(&k).cloned().unwrap_or(Value::String(String::new())),
            ))
        }
        (Value::Array(a), Value::Number(n)) => {
            let i = n.as_u64().and_then(|i| usize::try_from(i).ok());
            match i.and_then(|i| a.get(i)) {
                Some(x) => Ok(Val::V(x.clone())),
                None => xerr(format!("error calling index: index out of range: {n}")),
            }
        }
        (Value::Null, _) => Ok(Val::Missing),
        _ => xerr(format!(
            "error calling index: cannot index {} with {}",
            kind(v),
            kind(key)
        )),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nil",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "slice",
        Value::Object(_) => "map",
    }
}

impl Exec<'_> {
    /// Runs a block: variables it declares end with it.
    fn block(&self, nodes: &[Node], dot: &Value, out: &mut String) -> Result<()> {
        let depth = self.vars.borrow().len();
        let r = self.nodes(nodes, dot, out);
        self.vars.borrow_mut().truncate(depth);
        r
    }

    fn set_var(&self, name: &str, v: Value, declare: bool) -> Result<()> {
        let mut vars = self.vars.borrow_mut();
        if declare {
            vars.push((name.to_owned(), v));
            return Ok(());
        }
        match vars.iter_mut().rev().find(|(n, _)| n == name) {
            Some(slot) => {
                slot.1 = v;
                Ok(())
            }
            None => xerr(format!("undefined variable: ${name}")),
        }
    }

    fn nodes(&self, nodes: &[Node], dot: &Value, out: &mut String) -> Result<()> {
        for n in nodes {
            match n {
                Node::Text(t) => out.push_str(t),
                Node::Action(p) => {
                    let v = self.pipeline(p, dot)?;
                    out.push_str(&print_val(&v));
                }
                Node::Set {
                    name,
                    pipe,
                    declare,
                } => {
                    let v = self.pipeline(pipe, dot)?.value();
                    self.set_var(name, v, *declare)?;
                }
                Node::If { cond, then, els } => {
                    let v = self.pipeline(cond, dot)?.value();
                    self.block(if truthy(&v) { then } else { els }, dot, out)?;
                }
                Node::With {
                    var,
                    pipe,
                    body,
                    els,
                } => {
                    let v = self.pipeline(pipe, dot)?.value();
                    if truthy(&v) {
                        let depth = self.vars.borrow().len();
                        if let Some(name) = var {
                            self.set_var(name, v.clone(), true)?;
                        }
                        let r = self.block(body, &v, out);
                        self.vars.borrow_mut().truncate(depth);
                        r?;
                    } else {
                        self.block(els, dot, out)?;
                    }
                }
                Node::Range {
                    vars,
                    pipe,
                    body,
                    els,
                } => {
                    let v = self.pipeline(pipe, dot)?.value();
                    let items: Vec<(Value, Value)> = match v {
                        Value::Array(a) => a
                            .into_iter()
                            .enumerate()
                            .map(|(i, x)| (Value::from(i), x))
                            .collect(),
                        Value::Object(o) => {
                            let mut keys: Vec<String> = o.keys().cloned().collect();
                            keys.sort();
                            keys.iter()
                                .filter_map(|k| {
                                    o.get(k).map(|x| (Value::from(k.clone()), x.clone()))
                                })
                                .collect()
                        }
                        Value::Null => Vec::new(),
                        Value::Number(n) => {
                            let count = n.as_u64().unwrap_or(0);
                            (0..count)
                                .map(|i| (Value::from(i), Value::from(i)))
                                .collect()
                        }
                        other => {
                            return xerr(format!("range can't iterate over {}", go_print(&other)));
                        }
                    };
                    if items.is_empty() {
                        self.block(els, dot, out)?;
                    }
                    for (key, item) in &items {
                        let depth = self.vars.borrow().len();
                        match vars.as_slice() {
                            [v] => self.set_var(v, item.clone(), true)?,
                            [k, v] => {
                                self.set_var(k, key.clone(), true)?;
                                self.set_var(v, item.clone(), true)?;
                            }
                            _ => {}
                        }
                        let r = self.block(body, item, out);
                        self.vars.borrow_mut().truncate(depth);
                        r?;
                    }
                }
            }
        }
        Ok(())
    }

    fn pipeline(&self, p: &Pipeline, dot: &Value) -> Result<Val> {
        let mut prev: Option<Val> = None;
        for cmd in p {
            prev = Some(self.command(cmd, dot, prev)?);
        }
        Ok(prev.unwrap_or(Val::Missing))
    }

    fn field(&self, base: &Value, path: &[String]) -> Val {
        let mut cur = base;
        for (i, key) in path.iter().enumerate() {
            match lookup(cur, key) {
                Some(v) => cur = v,
                None if self.mode == Mode::Header => {
                    let name = path[i..].join(".");
                    return Val::V(Value::String(name.to_uppercase()));
                }
                None => return Val::Missing,
            }
        }
        Val::V(cur.clone())
    }

    fn arg(&self, a: &Arg, dot: &Value) -> Result<Val> {
        Ok(match a {
            Arg::Field(path) => self.field(dot, path),
            Arg::Root(path) => self.field(self.root, path),
            Arg::Var(name, path) => {
                let v = self
                    .vars
                    .borrow()
                    .iter()
                    .rev()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone());
                match v {
                    Some(v) => self.field(&v, path),
                    None => return xerr(format!("undefined variable: ${name}")),
                }
            }
            Arg::Str(s) => Val::V(Value::String(s.clone())),
            Arg::Num(n) => Val::V(Value::Number(n.clone())),
            Arg::Bool(b) => Val::V(Value::Bool(*b)),
            Arg::Nil => Val::V(Value::Null),
            Arg::Sub(p) => self.pipeline(p, dot)?,
            Arg::Ident(name) => self.call(name, Vec::new())?,
        })
    }

    fn command(&self, cmd: &Command, dot: &Value, piped: Option<Val>) -> Result<Val> {
        let Some(first) = cmd.first() else {
            return xerr("empty command");
        };
        let mut args = Vec::new();
        for a in &cmd[1..] {
            args.push(self.arg(a, dot)?);
        }
        if let Some(p) = piped {
            args.push(p);
        }
        match first {
            Arg::Ident(name) => self.call(name, args),
            // `.Label "k"`: a field followed by arguments indexes into it.
            Arg::Field(_) | Arg::Root(_) | Arg::Var(..) if !args.is_empty() => {
                let mut v = self.arg(first, dot)?;
                for a in args {
                    v = index_value(&v.value(), &a.value())?;
                }
                Ok(v)
            }
            other if args.is_empty() => self.arg(other, dot),
            _ => xerr("can't give argument to non-function"),
        }
    }

    fn call(&self, name: &str, args: Vec<Val>) -> Result<Val> {
        let vals: Vec<Value> = args.iter().map(Val::value).collect();
        let want = |n: usize| -> Result<()> {
            if vals.len() == n {
                Ok(())
            } else {
                xerr(format!(
                    "wrong number of args for {name}: want {n} got {}",
                    vals.len()
                ))
            }
        };
        let s = |v: Value| {
            Ok(Val::V(Value::String(
                v.as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| go_print(&v)),
            )))
        };
        match name {
            "json" => {
                want(1)?;
                let text = serde_json::to_string(&vals[0])
                    .map_err(|e| TemplateError::Exec(format!("error calling json: {e}")))?;
                Ok(Val::V(Value::String(text)))
            }
            "index" => {
                if vals.is_empty() {
                    return xerr("wrong number of args for index");
                }
                let mut cur = args[0].clone();
                for k in &vals[1..] {
                    cur = index_value(&cur.value(), k)?;
                }
                Ok(cur)
            }
            "join" => {
                want(2)?;
                let sep = as_str(&vals[1]);
                let items: Vec<String> = match &vals[0] {
                    Value::Array(a) => a.iter().map(as_str).collect(),
                    Value::Null => Vec::new(),
                    other => vec![as_str(other)],
                };
                s(Value::String(items.join(&sep)))
            }
            "split" => {
                want(2)?;
                let text = as_str(&vals[0]);
                let sep = as_str(&vals[1]);
                let parts: Vec<Value> = if sep.is_empty() {
                    text.chars().map(|c| Value::String(c.to_string())).collect()
                } else {
                    text.split(sep.as_str())
                        .map(|p| Value::String(p.to_owned()))
                        .collect()
                };
                Ok(Val::V(Value::Array(parts)))
            }
            "upper" => {
                want(1)?;
                s(Value::String(as_str(&vals[0]).to_uppercase()))
            }
            "lower" => {
                want(1)?;
                s(Value::String(as_str(&vals[0]).to_lowercase()))
            }
            "title" => {
                want(1)?;
                let t = as_str(&vals[0]);
                let mut out = String::new();
                let mut start = true;
                for c in t.chars() {
                    if start {
                        out.extend(c.to_uppercase());
                    } else {
                        out.push(c);
                    }
                    start = c.is_whitespace();
                }
                s(Value::String(out))
            }
            "truncate" => {
                want(2)?;
                let n = vals[1].as_u64().unwrap_or(0) as usize;
                s(Value::String(as_str(&vals[0]).chars().take(n).collect()))
            }
            "pad" => {
                want(3)?;
                let l = vals[1].as_u64().unwrap_or(0) as usize;
                let r = vals[2].as_u64().unwrap_or(0) as usize;
                s(Value::String(format!(
                    "{}{}{}",
                    " ".repeat(l),
                    as_str(&vals[0]),
                    " ".repeat(r)
                )))
            }
            "len" => {
                want(1)?;
                let n = match &vals[0] {
                    Value::String(t) => t.len(),
                    Value::Array(a) => a.len(),
                    Value::Object(o) => o.len(),
                    Value::Null => 0,
                    other => return xerr(format!("len of {}", kind(other))),
                };
                Ok(Val::V(Value::from(n)))
            }
            "print" | "println" => {
                let parts: Vec<String> = args.iter().map(print_val).collect();
                let mut text = parts.join(if name == "println" { " " } else { "" });
                if name == "println" {
                    text.push('\n');
                }
                s(Value::String(text))
            }
            "printf" => {
                let Some(fmt) = vals.first() else {
                    return xerr("printf needs a format");
                };
                s(Value::String(sprintf(&as_str(fmt), &args[1..])))
            }
            "not" => {
                want(1)?;
                Ok(Val::V(Value::Bool(!truthy(&vals[0]))))
            }
            "and" => Ok(Val::V(
                vals.iter()
                    .find(|v| !truthy(v))
                    .or(vals.last())
                    .cloned()
                    .unwrap_or(Value::Null),
            )),
            "or" => Ok(Val::V(
                vals.iter()
                    .find(|v| truthy(v))
                    .or(vals.last())
                    .cloned()
                    .unwrap_or(Value::Null),
            )),
            "eq" | "ne" => {
                if vals.len() < 2 {
                    return xerr(format!("missing argument for {name}"));
                }
                let eq = vals[1..].iter().any(|v| values_equal(&vals[0], v));
                Ok(Val::V(Value::Bool(if name == "eq" { eq } else { !eq })))
            }
            _ => xerr(format!("function {name:?} not defined")),
        }
    }
}

fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// A small `fmt.Sprintf`: `%s`, `%v`, `%d`, `%q`, `%%`.
fn sprintf(fmt: &str, args: &[Val]) -> String {
    let mut out = String::new();
    let mut it = fmt.chars().peekable();
    let mut args = args.iter();
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('%') => out.push('%'),
            Some(verb) => match args.next() {
                Some(a) => match verb {
                    'q' => out.push_str(&crate::format::go_quote(&print_val(a))),
                    _ => out.push_str(&print_val(a)),
                },
                None => out.push_str(&format!("%!{verb}(MISSING)")),
            },
            None => out.push_str("%!(NOVERB)"),
        }
    }
    out
}

/// Renders a `--format` over rows: a table (header + aligned columns) or one line per row.
pub fn render_rows(format: &str, headers: &Value, rows: &[Value]) -> Result<String> {
    let (src, table) = preprocess(format);
    let tmpl = Template::parse(&src)?;
    let mut text = String::new();
    if table {
        text.push_str(&tmpl.render_header(headers)?);
        text.push('\n');
    }
    for row in rows {
        text.push_str(&tmpl.render(row)?);
        text.push('\n');
    }
    if table {
        let mut tw = crate::format::TabWriter::default();
        tw.write_text(&text);
        return Ok(tw.render());
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(t: &str, v: &Value) -> String {
        let (src, _) = preprocess(t);
        Template::parse(&src)
            .and_then(|t| t.render(v))
            .unwrap_or_else(|e| format!("ERR {e}"))
    }

    #[test]
    fn fields_and_nesting() {
        let v = json!({"Id": "abc", "State": {"Status": "running", "ExitCode": 0, "Pid": 42}});
        assert_eq!(run("{{.Id}}", &v), "abc");
        assert_eq!(
            run("{{.State.Status}} {{.State.ExitCode}}", &v),
            "running 0"
        );
        assert_eq!(run("pid={{ .State.Pid }}!", &v), "pid=42!");
        assert_eq!(run("{{.Nope}}", &v), "<no value>");
        assert_eq!(run("{{.id}}", &v), "abc");
    }

    #[test]
    fn json_and_index() {
        let v = json!({"Config": {"Env": ["A=1"], "Labels": {"k": "v"}}, "N": null});
        assert_eq!(run("{{json .Config.Env}}", &v), r#"["A=1"]"#);
        assert_eq!(run("{{json .Config.Labels}}", &v), r#"{"k":"v"}"#);
        assert_eq!(run(r#"{{index .Config.Labels "k"}}"#, &v), "v");
        assert_eq!(run(r#"{{index .Config.Labels "zz"}}"#, &v), "");
        assert_eq!(run("{{index .Config.Env 0}}", &v), "A=1");
        assert_eq!(run("{{.Config.Env}}", &v), "[A=1]");
        assert_eq!(run("{{.N}}", &v), "<nil>");
        assert_eq!(run(r#"{{.Config.Labels "k"}}"#, &v), "v");
        assert_eq!(run("{{json .}}", &json!({"a": 1})), r#"{"a":1}"#);
    }

    #[test]
    fn pipes_functions_and_control() {
        let v = json!({"Names": ["a", "b"], "On": true, "Name": "web"});
        assert_eq!(run(r#"{{join .Names ","}}"#, &v), "a,b");
        assert_eq!(run("{{.Name | upper}}", &v), "WEB");
        assert_eq!(run("{{range .Names}}[{{.}}]{{end}}", &v), "[a][b]");
        assert_eq!(run("{{if .On}}yes{{else}}no{{end}}", &v), "yes");
        assert_eq!(run("{{if not .On}}yes{{else}}no{{end}}", &v), "no");
        assert_eq!(run(r#"{{if eq .Name "web"}}W{{end}}"#, &v), "W");
        assert_eq!(run(r#"{{printf "%s-%d" .Name 3}}"#, &v), "web-3");
        assert_eq!(run("{{len .Names}}", &v), "2");
        assert_eq!(run("{{with .Name}}<{{.}}>{{end}}", &v), "<web>");
        assert_eq!(run("a {{- .Name -}} b", &v), "awebb");
        assert_eq!(run("{{(index .Names 1) | upper}}", &v), "B");
    }

    #[test]
    fn variables_like_go() {
        let v = json!({"Labels": {"b": "2", "a": "1"}, "Names": ["x", "y"], "Name": "web",
                       "Nets": {"front": {"IP": "10.0.0.2"}}});
        assert_eq!(
            run("{{range $k, $v := .Labels}}{{$k}}={{$v}};{{end}}", &v),
            "a=1;b=2;"
        );
        assert_eq!(
            run("{{range $i, $n := .Names}}{{$i}}:{{$n}} {{end}}", &v),
            "0:x 1:y "
        );
        assert_eq!(run("{{range $n := .Names}}{{$n}}{{end}}", &v), "xy");
        assert_eq!(
            run(
                "{{range $name, $net := .Nets}}{{$name}} {{$net.IP}}{{end}}",
                &v
            ),
            "front 10.0.0.2"
        );
        assert_eq!(run("{{$x := .Name}}{{$x}}-{{$x | upper}}", &v), "web-WEB");
        assert_eq!(run(r#"{{$x := "a"}}{{$x = "b"}}{{$x}}"#, &v), "b");
        assert_eq!(run("{{with $n := .Name}}{{$n}}{{.}}{{end}}", &v), "webweb");
        assert_eq!(run("{{if $n := .Name}}{{$n}}{{end}}", &v), "web");
        // The root stays reachable inside a range; a block's variables end with it.
        assert_eq!(run("{{range .Names}}{{$.Name}}{{end}}", &v), "webweb");
        let t = Template::parse("{{range .Names}}{{$y := .}}{{end}}{{$y}}").unwrap();
        assert!(t.render(&v).is_err(), "$y is out of scope");
        assert!(Template::parse("{{range $a, $b, $c := .Names}}{{end}}").is_err());
    }

    #[test]
    fn parse_errors() {
        assert!(Template::parse("{{.A").is_err());
        assert!(Template::parse("{{if .A}}x").is_err());
        assert!(Template::parse("{{end}}").is_err());
        assert!(
            Template::parse("{{nosuch .A}}")
                .unwrap()
                .render(&json!({}))
                .is_err()
        );
    }

    #[test]
    fn tables_and_escapes() {
        let headers = json!({"ID": "CONTAINER ID", "Names": "NAMES"});
        let rows = vec![json!({"ID": "0123456789ab", "Names": "x"})];
        let out = render_rows("table {{.ID}}\\t{{.Names}}", &headers, &rows).unwrap();
        assert_eq!(out, "CONTAINER ID   NAMES\n0123456789ab   x\n");
        let out = render_rows("{{.ID}}\\t{{.Names}}", &headers, &rows).unwrap();
        assert_eq!(out, "0123456789ab\tx\n");
        let out = render_rows("table {{.Other}}", &headers, &rows).unwrap();
        assert_eq!(out, "OTHER\n<no value>\n");
        assert_eq!(preprocess("json"), ("{{json .}}".to_owned(), false));
    }
}
