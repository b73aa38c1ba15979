//! The one error type of the Dockerfile front end: what went wrong ([`ErrorKind`], with
//! Docker's wording where Docker has one) and where (file, 1-based line range, instruction).

use std::fmt;

use crate::expand::ExpandError;

/// A Dockerfile (or `.dockerignore`) error with its location.
///
/// Displays as `Dockerfile:7: unknown instruction: RUNN (did you mean RUN?)`; when the message
/// itself does not name the instruction, the instruction is put before it:
/// `Dockerfile:3: COPY: unknown flag: form (did you mean from?)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// The file name as given to the parser (`Dockerfile`, `build/Dockerfile.dev`).
    pub file: String,
    /// First line of the offending instruction, 1-based; 0 when the error has no line.
    pub line: usize,
    /// Last line of the offending instruction (continuations, heredocs); equals `line` for
    /// one-line instructions.
    pub end_line: usize,
    /// The instruction keyword in upper case, when the error belongs to one.
    pub instruction: Option<String>,
    /// What went wrong (boxed to keep `Result<_, Error>` small).
    pub kind: Box<ErrorKind>,
}

impl Error {
    /// An error at lines `line..=end_line` of `file`.
    pub fn new(file: &str, line: usize, end_line: usize, kind: ErrorKind) -> Self {
        Error {
            file: file.to_owned(),
            line,
            end_line: end_line.max(line),
            instruction: None,
            kind: Box::new(kind),
        }
    }

    /// The same error, attributed to `instruction` (upper-cased).
    pub fn with_instruction(mut self, instruction: &str) -> Self {
        self.instruction = Some(instruction.to_ascii_uppercase());
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}: ", self.file, self.line)?;
        } else {
            write!(f, "{}: ", self.file)?;
        }
        if let Some(instr) = &self.instruction {
            let msg = self.kind.to_string();
            let named = msg
                .split(|c: char| !c.is_ascii_alphanumeric())
                .any(|w| w == instr);
            if !named && !matches!(*self.kind, ErrorKind::UnknownInstruction { .. }) {
                write!(f, "{instr}: ")?;
            }
        }
        write!(f, "{}", self.kind)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &*self.kind {
            ErrorKind::Expand(e) => Some(e),
            _ => None,
        }
    }
}

/// What went wrong. Each variant is a class of error; the strings inside are Docker's (or
/// BuildKit's) messages where they have one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    /// The input is larger than the parser accepts.
    #[error("dockerfile is {size} bytes, more than the {limit} bytes allowed")]
    TooLarge {
        /// Size of the input in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// Only comments, directives and blank lines.
    #[error("file with no instructions")]
    NoInstructions,
    /// Instructions, but no `FROM` (only global `ARG`s).
    #[error("dockerfile contains no stages to build")]
    NoStages,
    /// An instruction other than `ARG` before the first `FROM`.
    #[error("no build stage in current context")]
    NoBuildStage,
    /// A bad parser directive (`# escape=x`, a repeated directive).
    #[error("{0}")]
    Directive(String),
    /// An instruction keyword Docker does not know.
    #[error("unknown instruction: {name}{}", suggestion_suffix(.suggestion))]
    UnknownInstruction {
        /// The keyword as written.
        name: String,
        /// The closest known instruction, if one is close.
        suggestion: Option<String>,
    },
    /// A `--flag` the instruction does not take.
    #[error("unknown flag: {flag}{}", suggestion_suffix(.suggestion))]
    UnknownFlag {
        /// The flag name without `--`.
        flag: String,
        /// The closest flag the instruction takes, if one is close.
        suggestion: Option<String>,
    },
    /// A flag given twice, without its value, or with a bad value.
    #[error("{0}")]
    Flag(String),
    /// Malformed syntax: JSON arrays of non-strings, `ENV` without `=`, bad stage names.
    #[error("{0}")]
    Syntax(String),
    /// Wrong number of arguments (`COPY requires at least two arguments, ...`).
    #[error("{0}")]
    Arguments(String),
    /// A heredoc problem (`unterminated heredoc`, a heredoc as a destination).
    #[error("{0}")]
    Heredoc(String),
    /// A value that does not parse: durations, ports, signals, mount options, platforms.
    #[error("{0}")]
    Value(String),
    /// Variable expansion failed (`${VAR:?}`, an unterminated quote, a bad substitution).
    #[error(transparent)]
    Expand(#[from] ExpandError),
    /// A `--from`, `FROM` or `--mount=from=` reference that cannot be used.
    #[error("{0}")]
    Reference(String),
    /// `--target` names no stage.
    #[error("target stage {target:?} could not be found{}; stages: {}", suggestion_suffix(.suggestion), list_or_none(.stages))]
    TargetNotFound {
        /// The requested target.
        target: String,
        /// The closest stage name, if one is close.
        suggestion: Option<String>,
        /// Names of all stages (unnamed ones as `stage-N`).
        stages: Vec<String>,
    },
    /// Stages that depend on each other in a loop.
    #[error("circular dependency detected on stage: {0}")]
    Cycle(String),
    /// A bad `.dockerignore` pattern.
    #[error("{0}")]
    Ignore(String),
}

fn suggestion_suffix(s: &Option<String>) -> String {
    match s {
        Some(s) => format!(" (did you mean {s}?)"),
        None => String::new(),
    }
}

fn list_or_none(v: &[String]) -> String {
    if v.is_empty() {
        "none".to_owned()
    } else {
        v.join(", ")
    }
}

/// The closest of `options` to `value` within an edit distance of 2 (BuildKit's `suggest`
/// rule); `None` when nothing is close or when `value` is itself an option.
pub(crate) fn suggest<'a>(
    value: &str,
    options: impl IntoIterator<Item = &'a str>,
    case_sensitive: bool,
) -> Option<String> {
    if value.is_empty() {
        return None;
    }
    let norm = |s: &str| {
        if case_sensitive {
            s.to_owned()
        } else {
            s.to_lowercase()
        }
    };
    let v = norm(value);
    let mut best: Option<(usize, &str)> = None;
    for opt in options {
        let o = norm(opt);
        if o == v {
            return None;
        }
        let d = levenshtein(&v, &o);
        if d < 3 && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, opt));
        }
    }
    best.map(|(_, o)| o.to_owned())
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// Go's `%q` for a string: double-quoted with Go escapes.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let n = c as u32;
                if n < 0x100 {
                    out.push_str(&format!("\\x{n:02x}"));
                } else {
                    out.push_str(&format!("\\u{n:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_file_line_and_instruction() {
        let cases: &[(Error, &str)] = &[
            (
                Error::new(
                    "Dockerfile",
                    7,
                    7,
                    ErrorKind::UnknownInstruction {
                        name: "RUNN".into(),
                        suggestion: Some("RUN".into()),
                    },
                ),
                "Dockerfile:7: unknown instruction: RUNN (did you mean RUN?)",
            ),
            (
                Error::new(
                    "Dockerfile",
                    3,
                    3,
                    ErrorKind::UnknownFlag {
                        flag: "form".into(),
                        suggestion: Some("from".into()),
                    },
                )
                .with_instruction("copy"),
                "Dockerfile:3: COPY: unknown flag: form (did you mean from?)",
            ),
            (
                Error::new(
                    "Dockerfile",
                    2,
                    2,
                    ErrorKind::Arguments("ENV must have two arguments".into()),
                )
                .with_instruction("env"),
                "Dockerfile:2: ENV must have two arguments",
            ),
            (
                Error::new("Dockerfile", 0, 0, ErrorKind::NoInstructions),
                "Dockerfile: file with no instructions",
            ),
        ];
        for (e, want) in cases {
            assert_eq!(e.to_string(), *want);
        }
    }

    #[test]
    fn suggestions_follow_buildkit() {
        let names = ["run", "copy", "from"];
        assert_eq!(suggest("RUNN", names, false).as_deref(), Some("run"));
        assert_eq!(suggest("RUN", names, false), None);
        assert_eq!(suggest("WHATEVER", names, false), None);
        assert_eq!(
            suggest("form", ["from", "chown"], true).as_deref(),
            Some("from")
        );
    }

    #[test]
    fn go_quote_escapes() {
        assert_eq!(go_quote("a\"b\\c\n"), r#""a\"b\\c\n""#);
    }
}
