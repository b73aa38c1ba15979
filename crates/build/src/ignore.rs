//! `.dockerignore`: which context paths a build leaves out, with Docker's rules
//! (`moby/patternmatcher` and its `ignorefile` reader).
//!
//! - A line whose first character is `#` is a comment; lines are trimmed; blank lines are
//!   skipped; a UTF-8 BOM is dropped.
//! - `!pattern` is an exception (re-includes what earlier patterns excluded).
//! - Patterns are cleaned like Go's `filepath.Clean` (`./a//b/` → `a/b`), and a leading `/`
//!   is dropped: patterns are relative to the context root.
//! - `*` matches any run of characters except `/`, `?` one character except `/`, `[...]` a
//!   character class (`[^...]` negated, ranges), `\` escapes the next character, `**` any
//!   number of directories (`**/x`, `a/**/b`, `a/**`).
//! - A path is excluded when the *last* pattern that matches it, or one of its parent
//!   directories, is not an exception: later rules override earlier ones, and a pattern that
//!   matches a directory covers everything under it.
//!
//! [`Ignore::can_skip_dir`] tells a context walker when a whole excluded directory can be
//! skipped because no exception could re-include anything inside it.
//!
//! The Dockerfile and `.dockerignore` are still sent to the builder when excluded (the CLI
//! adds exceptions for them, [`Ignore::keep_build_files`]), but an excluded Dockerfile is not
//! copied by `COPY .`: the builder's own matcher is the one without those exceptions.

use crate::ast::clean_path;
use crate::error::ErrorKind;

/// A parsed `.dockerignore`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ignore {
    patterns: Vec<Pattern>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    exclusion: bool,
    cleaned: String,
    kind: MatchKind,
    items: Vec<Item>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MatchKind {
    Exact,
    Prefix,
    Suffix,
    Glob,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    Lit(char),
    /// `?`
    One,
    /// `*`
    Star,
    /// `**` at the end: anything.
    AnyRun,
    /// `**/` or `**` inside: empty, or anything ending in `/`.
    Dirs,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Ignore {
    /// Reads a `.dockerignore` file.
    pub fn parse(contents: &[u8]) -> Result<Ignore, ErrorKind> {
        Self::from_patterns(read_patterns(contents))
    }

    /// Builds a matcher from patterns as `.dockerignore` lines would give them (after the
    /// reader's cleaning), e.g. `["*.log", "!keep.log"]`.
    pub fn from_patterns<I, S>(patterns: I) -> Result<Ignore, ErrorKind>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut out = Vec::new();
        for p in patterns {
            let p = p.as_ref().trim();
            if p.is_empty() {
                continue;
            }
            let mut p = clean_path(p);
            let mut exclusion = false;
            if let Some(rest) = p.strip_prefix('!') {
                if rest.is_empty() {
                    return Err(ErrorKind::Ignore("illegal exclusion pattern: \"!\"".into()));
                }
                exclusion = true;
                p = rest.to_owned();
            }
            validate(&p)?;
            let (kind, items) = compile(&p);
            out.push(Pattern {
                exclusion,
                cleaned: p,
                kind,
                items,
            });
        }
        Ok(Ignore { patterns: out })
    }

    /// The patterns, exceptions with their `!`.
    pub fn patterns(&self) -> Vec<String> {
        self.patterns
            .iter()
            .map(|p| {
                if p.exclusion {
                    format!("!{}", p.cleaned)
                } else {
                    p.cleaned.clone()
                }
            })
            .collect()
    }

    /// Whether there are no patterns.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether there is at least one `!` exception.
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| p.exclusion)
    }

    /// Whether `rel_path` (relative to the context, `/`-separated, clean) is excluded
    /// (patternmatcher `MatchesOrParentMatches`).
    pub fn matches(&self, rel_path: &str) -> bool {
        let parent = dir(rel_path);
        let parents: Vec<&str> = parent.split('/').collect();
        let mut matched = false;
        for p in &self.patterns {
            if p.exclusion != matched {
                continue;
            }
            let mut hit = p.matches(rel_path);
            if !hit && parent != "." {
                for i in 0..parents.len() {
                    if p.matches(&parents[..=i].join("/")) {
                        hit = true;
                        break;
                    }
                }
            }
            if hit {
                matched = !p.exclusion;
            }
        }
        matched
    }

    /// Whether a walker may skip the directory `rel_dir` entirely: it is excluded and no
    /// exception could match anything under it.
    pub fn can_skip_dir(&self, rel_dir: &str) -> bool {
        if !self.matches(rel_dir) {
            return false;
        }
        let prefix = format!("{rel_dir}/");
        !self
            .patterns
            .iter()
            .any(|p| p.exclusion && p.could_match_under(&prefix))
    }

    /// Adds exceptions so that `.dockerignore` and the Dockerfile (`dockerfile`, relative to
    /// the context) are sent even when excluded, as the docker CLI does
    /// (`TrimBuildFilesFromExcludes`).
    pub fn keep_build_files(&mut self, dockerfile: &str) {
        for f in [".dockerignore", dockerfile] {
            if self.matches(f) {
                let cleaned = clean_path(f);
                let (kind, items) = compile(&cleaned);
                self.patterns.push(Pattern {
                    exclusion: true,
                    cleaned,
                    kind,
                    items,
                });
            }
        }
    }
}

/// The ignore files BuildKit looks for, in order: `<Dockerfile>.dockerignore` next to the
/// Dockerfile, then `.dockerignore` at the context root.
pub fn ignore_file_candidates(dockerfile: &str) -> Vec<String> {
    vec![
        format!("{dockerfile}.dockerignore"),
        ".dockerignore".to_owned(),
    ]
}

/// The `ignorefile.ReadAll` step: comments, trimming, `!`, cleaning, leading `/`.
fn read_patterns(contents: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(contents);
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(&text);
    let mut out = Vec::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.starts_with('#') {
            continue;
        }
        let mut p = line.trim();
        if p.is_empty() {
            continue;
        }
        let invert = p.starts_with('!');
        if invert {
            p = p[1..].trim();
        }
        let mut pat = String::new();
        if !p.is_empty() {
            pat = clean_path(p);
            if pat.len() > 1 && pat.starts_with('/') {
                pat.remove(0);
            }
        }
        if invert {
            pat.insert(0, '!');
        }
        out.push(pat);
    }
    out
}

/// Go's `filepath.Dir`.
fn dir(p: &str) -> String {
    match p.rfind('/') {
        Some(i) => clean_path(&p[..=i]),
        None => ".".to_owned(),
    }
}

/// The syntax check `filepath.Match(pattern, ".")` performs.
fn validate(p: &str) -> Result<(), ErrorKind> {
    let bad = || ErrorKind::Ignore(format!("syntax error in pattern: {p}"));
    let chars: Vec<char> = p.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' => {
                if i + 1 >= chars.len() {
                    return Err(bad());
                }
                i += 2;
            }
            '[' => {
                i += 1;
                if chars.get(i) == Some(&'^') {
                    i += 1;
                }
                let mut n = 0;
                loop {
                    match chars.get(i) {
                        None => return Err(bad()),
                        Some(']') if n > 0 => {
                            i += 1;
                            break;
                        }
                        _ => {}
                    }
                    let lo = class_char(&chars, &mut i).ok_or_else(bad)?;
                    if chars.get(i) == Some(&'-') {
                        i += 1;
                        let hi = class_char(&chars, &mut i).ok_or_else(bad)?;
                        if hi < lo {
                            return Err(bad());
                        }
                    }
                    n += 1;
                }
            }
            _ => i += 1,
        }
    }
    Ok(())
}

fn class_char(chars: &[char], i: &mut usize) -> Option<char> {
    let c = *chars.get(*i)?;
    if c == '-' || c == ']' {
        return None;
    }
    if c == '\\' {
        let e = *chars.get(*i + 1)?;
        *i += 2;
        return Some(e);
    }
    *i += 1;
    Some(c)
}

/// Compiles a cleaned pattern the way patternmatcher does, including its fast paths
/// (exact, prefix `a/**`, suffix `**/a`).
fn compile(p: &str) -> (MatchKind, Vec<Item>) {
    let chars: Vec<char> = p.chars().collect();
    let mut kind = MatchKind::Exact;
    let mut items = Vec::new();
    let mut i = 0;
    let mut iter = 0;
    while i < chars.len() {
        let ch = chars[i];
        i += 1;
        match ch {
            '*' if chars.get(i) == Some(&'*') => {
                i += 1;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                if i >= chars.len() {
                    if kind == MatchKind::Exact {
                        kind = MatchKind::Prefix;
                    } else {
                        kind = MatchKind::Glob;
                    }
                    items.push(Item::AnyRun);
                } else {
                    items.push(Item::Dirs);
                    kind = MatchKind::Glob;
                }
                if iter == 0 {
                    kind = MatchKind::Suffix;
                }
            }
            '*' => {
                items.push(Item::Star);
                kind = MatchKind::Glob;
            }
            '?' => {
                items.push(Item::One);
                kind = MatchKind::Glob;
            }
            '\\' => match chars.get(i) {
                Some(&e) => {
                    items.push(Item::Lit(e));
                    i += 1;
                }
                None => items.push(Item::Lit('\\')),
            },
            '[' => {
                kind = MatchKind::Glob;
                let mut negated = false;
                if chars.get(i) == Some(&'^') {
                    negated = true;
                    i += 1;
                }
                let mut ranges = Vec::new();
                let mut first = true;
                while i < chars.len() {
                    let c = chars[i];
                    if c == ']' && !first {
                        i += 1;
                        break;
                    }
                    first = false;
                    let lo = if c == '\\' && i + 1 < chars.len() {
                        i += 2;
                        chars[i - 1]
                    } else {
                        i += 1;
                        c
                    };
                    if chars.get(i) == Some(&'-') && chars.get(i + 1).is_some_and(|c| *c != ']') {
                        let mut hi = chars[i + 1];
                        i += 2;
                        if hi == '\\' {
                            if let Some(&e) = chars.get(i) {
                                hi = e;
                                i += 1;
                            }
                        }
                        ranges.push((lo, hi));
                    } else {
                        ranges.push((lo, lo));
                    }
                }
                items.push(Item::Class { negated, ranges });
            }
            c => items.push(Item::Lit(c)),
        }
        iter += 1;
    }
    (kind, items)
}

impl Pattern {
    fn matches(&self, path: &str) -> bool {
        match self.kind {
            MatchKind::Exact => path == self.cleaned,
            MatchKind::Prefix => {
                let pre = &self.cleaned[..self.cleaned.len().saturating_sub(2)];
                path.starts_with(pre)
            }
            MatchKind::Suffix => {
                let suffix = self.cleaned.get(2..).unwrap_or("");
                path.ends_with(suffix) || suffix.strip_prefix('/').is_some_and(|s| path == s)
            }
            MatchKind::Glob => {
                let chars: Vec<char> = path.chars().collect();
                let states = self.run(&chars);
                states[self.items.len()].0
            }
        }
    }

    /// Whether some path starting with `prefix` (a directory and `/`) could match.
    fn could_match_under(&self, prefix: &str) -> bool {
        match self.kind {
            MatchKind::Exact => self.cleaned.starts_with(prefix),
            MatchKind::Prefix => {
                let pre = &self.cleaned[..self.cleaned.len().saturating_sub(2)];
                pre.starts_with(prefix) || prefix.starts_with(pre)
            }
            MatchKind::Suffix => true,
            MatchKind::Glob => {
                let chars: Vec<char> = prefix.chars().collect();
                self.run(&chars).iter().any(|(a, b)| *a || *b)
            }
        }
    }

    /// Runs the pattern's NFA over `s`; state `i` is "before item `i`", with a second flag
    /// for being inside a `Dirs` item.
    fn run(&self, s: &[char]) -> Vec<(bool, bool)> {
        let n = self.items.len();
        let mut cur = vec![(false, false); n + 1];
        self.close(&mut cur, 0);
        for &c in s {
            let mut next = vec![(false, false); n + 1];
            for i in 0..n {
                let (at, inside) = cur[i];
                if !at && !inside {
                    continue;
                }
                match &self.items[i] {
                    Item::Lit(l) => {
                        if at && *l == c {
                            self.close(&mut next, i + 1);
                        }
                    }
                    Item::One => {
                        if at && c != '/' {
                            self.close(&mut next, i + 1);
                        }
                    }
                    Item::Class { negated, ranges } => {
                        let hit = ranges.iter().any(|(lo, hi)| *lo <= c && c <= *hi);
                        if at && hit != *negated {
                            self.close(&mut next, i + 1);
                        }
                    }
                    Item::Star => {
                        if at && c != '/' {
                            self.close(&mut next, i);
                        }
                    }
                    Item::AnyRun => {
                        if at {
                            self.close(&mut next, i);
                        }
                    }
                    Item::Dirs => {
                        next[i].1 = true;
                        if c == '/' {
                            self.close(&mut next, i + 1);
                        }
                    }
                }
            }
            cur = next;
            if !cur.iter().any(|(a, b)| *a || *b) {
                break;
            }
        }
        cur
    }

    fn close(&self, set: &mut [(bool, bool)], mut i: usize) {
        loop {
            if set[i].0 {
                return;
            }
            set[i].0 = true;
            match self.items.get(i) {
                Some(Item::Star | Item::AnyRun | Item::Dirs) => i += 1,
                _ => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ig(src: &str) -> Ignore {
        Ignore::parse(src.as_bytes()).expect("parse")
    }

    #[test]
    fn reader_rules() {
        let i = ig(
            "\u{FEFF}# comment\n  \n/abs/path\n./rel//x/\n !  neg \n  # not a comment\nfoo/../bar\n",
        );
        assert_eq!(
            i.patterns(),
            vec!["abs/path", "rel/x", "!neg", "# not a comment", "bar"]
        );
    }

    #[test]
    fn matching_table() {
        let cases: &[(&str, &[(&str, bool)])] = &[
            (
                "*.md\n!README.md\n",
                &[("a.md", true), ("README.md", false), ("docs/a.md", false)],
            ),
            (
                "**/*.go\n",
                &[("main.go", true), ("a/b/c.go", true), ("a/b/c.rs", false)],
            ),
            (
                "**/*.go\n!vendor/**/*.go\n",
                &[
                    ("x.go", true),
                    ("vendor/a/b.go", false),
                    ("vendor/b.go", false),
                ],
            ),
            (
                "node_modules\n",
                &[
                    ("node_modules", true),
                    ("node_modules/x/y.js", true),
                    ("a/node_modules", false),
                ],
            ),
            (
                "**/node_modules\n",
                &[("a/node_modules/x", true), ("node_modules", true)],
            ),
            (
                "build/**\n",
                &[("build/x", true), ("build", false), ("buildx", false)],
            ),
            (
                "a/**/b\n",
                &[
                    ("a/b", true),
                    ("a/x/y/b", true),
                    ("a/x/b/c", true),
                    ("ab", false),
                ],
            ),
            (
                "?.txt\n",
                &[("a.txt", true), ("ab.txt", false), ("/.txt", false)],
            ),
            ("[a-c]*.log\n", &[("b1.log", true), ("d.log", false)]),
            ("[^a]*\n", &[("b", true), ("a", false)]),
            (
                "*\n!src\n",
                &[("x", true), ("src", false), ("src/main.rs", false)],
            ),
            (
                "*\n!src\nsrc/target\n",
                &[("src/target/a", true), ("src/lib.rs", false)],
            ),
            (
                "docs\n!docs/keep.md\n",
                &[("docs/keep.md", false), ("docs/other.md", true)],
            ),
            ("\\*.txt\n", &[("*.txt", false), ("\\*.txt", true)]),
            ("a\\?b*\n", &[("a?bc", true), ("axbc", false)]),
            (
                "**\n!Dockerfile\n",
                &[("anything/deep", true), ("Dockerfile", false)],
            ),
            (
                "*/tmp\n",
                &[
                    ("a/tmp", true),
                    ("tmp", false),
                    ("a/b/tmp", false),
                    ("a/tmp/x", true),
                ],
            ),
            ("!../x\n", &[("x", false)]),
        ];
        for (src, checks) in cases {
            let i = ig(src);
            for (path, want) in *checks {
                assert_eq!(i.matches(path), *want, "patterns {src:?} path {path:?}");
            }
        }
    }

    #[test]
    fn skipping_directories() {
        let i = ig("vendor\nnode_modules\n!node_modules/keep/**\n");
        assert!(i.can_skip_dir("vendor"));
        assert!(!i.can_skip_dir("node_modules"));
        assert!(!i.can_skip_dir("src"));
        let i = ig("docs\n!**/*.md\n");
        assert!(!i.can_skip_dir("docs"));
        let i = ig("docs\n!src/*.md\n");
        assert!(i.can_skip_dir("docs"));
    }

    #[test]
    fn bad_patterns() {
        for p in ["[", "a[b", "[z-a]", "!", "x\\"] {
            assert!(Ignore::from_patterns([p]).is_err(), "{p:?}");
        }
    }

    #[test]
    fn build_files_are_kept() {
        let mut i = ig("*\n");
        assert!(i.matches("Dockerfile"));
        i.keep_build_files("Dockerfile");
        assert!(!i.matches("Dockerfile"));
        assert!(!i.matches(".dockerignore"));
        assert!(i.matches("other"));
        assert_eq!(
            ignore_file_candidates("build/Dockerfile"),
            vec!["build/Dockerfile.dockerignore", ".dockerignore"]
        );
    }
}
