//! Docker's JSON progress stream (`pull`, `push`): one message per JSON object, shown the way
//! the docker CLI shows it.
//!
//! Messages with an `id` (a layer) are lines that change in place: on a terminal each is an
//! `indicatif` bar (`<id>: Downloading [====>     ] 1.2MB/3.4MB`); elsewhere each status
//! change is a plain `<id>: <status>` line and byte-count updates are left out, as Docker
//! does. Messages without an `id` are printed as they come. An `error` ends the stream.

use std::collections::HashMap;
use std::io::Write;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Deserialize;

/// Byte counts of a progress message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct ProgressDetail {
    #[serde(default)]
    pub current: i64,
    #[serde(default)]
    pub total: i64,
}

/// The error of a failed stream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ErrorDetail {
    #[serde(default)]
    pub message: String,
}

/// One message of the stream.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ProgressMessage {
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub id: Option<String>,
    /// The daemon's own rendering of the bar (ignored: we draw our own).
    #[serde(default)]
    pub progress: Option<String>,
    #[serde(default, rename = "progressDetail")]
    pub progress_detail: Option<ProgressDetail>,
    /// Build-style output, printed as is.
    #[serde(default)]
    pub stream: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default, rename = "errorDetail")]
    pub error_detail: Option<ErrorDetail>,
    /// Machine-readable results (a push's `{"Tag","Digest","Size"}`); not shown.
    #[serde(default)]
    pub aux: Option<serde_json::Value>,
}

impl ProgressMessage {
    /// The error this message reports, if any.
    pub fn error_message(&self) -> Option<String> {
        self.error_detail
            .as_ref()
            .map(|d| d.message.clone())
            .filter(|m| !m.is_empty())
            .or_else(|| self.error.clone().filter(|m| !m.is_empty()))
    }

    /// `(current, total)` when this message carries byte counts Docker would draw as a bar.
    fn bytes(&self) -> Option<(u64, u64)> {
        let d = self.progress_detail?;
        (d.current > 0 || d.total > 0).then(|| (d.current.max(0) as u64, d.total.max(0) as u64))
    }
}

/// Where progress messages go.
pub trait ProgressOutput {
    /// Shows one message (never an error or an `aux` one).
    fn message(&mut self, m: &ProgressMessage);
    /// Leaves the display in its final state.
    fn finish(&mut self);
}

/// Shows `m` on `out`, or returns the stream's error message.
pub fn display(out: &mut dyn ProgressOutput, m: &ProgressMessage) -> Result<(), String> {
    if let Some(e) = m.error_message() {
        out.finish();
        return Err(e);
    }
    if m.aux.is_some() {
        return Ok(());
    }
    out.message(m);
    Ok(())
}

/// The output for stdout: bars on a terminal, plain lines otherwise, nothing when `quiet`.
pub fn stdout_output(quiet: bool) -> Box<dyn ProgressOutput> {
    if quiet {
        Box::new(Discard)
    } else if crate::tty::stdout_is_tty() {
        Box::new(Bars::new(ProgressDrawTarget::stdout, Box::new(StdoutLines)))
    } else {
        Box::new(Plain::new(StdoutLines))
    }
}

/// The output for stderr (the pull that `run` and `create` make), as [`stdout_output`].
pub fn stderr_output(quiet: bool) -> Box<dyn ProgressOutput> {
    if quiet {
        Box::new(Discard)
    } else if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        Box::new(Bars::new(
            ProgressDrawTarget::stderr,
            Box::new(std::io::stderr()),
        ))
    } else {
        Box::new(Plain::new(std::io::stderr()))
    }
}

/// Shows nothing (`-q`).
#[derive(Debug, Default)]
pub struct Discard;

impl ProgressOutput for Discard {
    fn message(&mut self, _: &ProgressMessage) {}
    fn finish(&mut self) {}
}

/// stdout that ignores a closed pipe.
struct StdoutLines;

impl Write for StdoutLines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut o = std::io::stdout().lock();
        let _ = o.write_all(buf);
        let _ = o.flush();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Plain lines, as `docker pull | cat` prints them.
#[derive(Debug)]
pub struct Plain<W: Write> {
    out: W,
}

impl<W: Write> Plain<W> {
    /// Writes to `out`.
    pub fn new(out: W) -> Self {
        Plain { out }
    }

    /// The writer back (tests read what was written).
    pub fn into_inner(self) -> W {
        self.out
    }
}

impl<W: Write> ProgressOutput for Plain<W> {
    fn message(&mut self, m: &ProgressMessage) {
        let status = m.status.as_deref().unwrap_or("");
        let _ = match (&m.id, &m.stream) {
            // Byte-count updates are for bars only.
            (Some(_), _) if m.bytes().is_some() => Ok(()),
            (Some(id), _) => match m.progress.as_deref().filter(|p| !p.is_empty()) {
                Some(p) if m.progress_detail.is_none() => writeln!(self.out, "{id}: {status} {p}"),
                _ => writeln!(self.out, "{id}: {status}"),
            },
            (None, Some(s)) => write!(self.out, "{s}"),
            (None, None) => writeln!(self.out, "{status}"),
        };
    }

    fn finish(&mut self) {
        let _ = self.out.flush();
    }
}

/// How a bar is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Look {
    /// `<id>: <status>`.
    Status,
    /// `<id>: <status> [=====>    ] 1.2MB/3.4MB`.
    Bar,
    /// `<id>: <status> 1.2MB` (a size without a total).
    Count,
}

impl Look {
    fn style(self) -> ProgressStyle {
        let template = match self {
            Look::Status => "{prefix}: {msg}",
            Look::Bar => "{prefix}: {msg} [{bar:50}] {decimal_bytes}/{decimal_total_bytes}",
            Look::Count => "{prefix}: {msg} {decimal_bytes}",
        };
        ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ")
    }
}

/// One group of bars: the layers shown since the last line without an `id`.
struct Group {
    multi: MultiProgress,
    bars: HashMap<String, (ProgressBar, Look)>,
    order: Vec<String>,
}

/// Terminal bars, one per layer, updated in place.
pub struct Bars {
    target: fn() -> ProgressDrawTarget,
    /// Where lines that are not bars go (below the bars drawn so far).
    lines: Box<dyn Write>,
    group: Option<Group>,
}

impl std::fmt::Debug for Bars {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bars")
            .field("layers", &self.group.as_ref().map_or(0, |g| g.order.len()))
            .finish()
    }
}

impl Bars {
    /// Bars drawn on the targets `target` makes (stdout on a terminal), other lines written
    /// to `lines`.
    pub fn new(target: fn() -> ProgressDrawTarget, lines: Box<dyn Write>) -> Self {
        Bars {
            target,
            lines,
            group: None,
        }
    }

    /// Ends the current group: its bars stay on screen as they last were, and what is printed
    /// next goes below them (Docker starts new lines for a layer id seen again after that).
    fn close_group(&mut self) {
        if let Some(g) = self.group.take() {
            for id in &g.order {
                if let Some((bar, _)) = g.bars.get(id) {
                    bar.abandon();
                }
            }
        }
    }

    fn layer(&mut self, id: &str, status: &str, bytes: Option<(u64, u64)>) {
        let target = self.target;
        let group = self.group.get_or_insert_with(|| Group {
            multi: MultiProgress::with_draw_target(target()),
            bars: HashMap::new(),
            order: Vec::new(),
        });
        let look = match bytes {
            Some((_, total)) if total > 0 => Look::Bar,
            Some(_) => Look::Count,
            None => Look::Status,
        };
        let (bar, shown) = group.bars.entry(id.to_owned()).or_insert_with(|| {
            group.order.push(id.to_owned());
            let bar = group.multi.add(ProgressBar::new(0));
            bar.set_style(Look::Status.style());
            bar.set_prefix(id.to_owned());
            (bar, Look::Status)
        });
        if *shown != look {
            bar.set_style(look.style());
            *shown = look;
        }
        if let Some((current, total)) = bytes {
            bar.set_length(total.max(current));
            bar.set_position(current);
        }
        bar.set_message(status.to_owned());
    }
}

impl ProgressOutput for Bars {
    fn message(&mut self, m: &ProgressMessage) {
        let status = m.status.as_deref().unwrap_or("");
        // Like Docker, only messages with progress fields are layer lines that change in
        // place; `latest: Pulling from ...` is an ordinary line.
        let tracked =
            m.progress_detail.is_some() || m.progress.as_ref().is_some_and(|p| !p.is_empty());
        match (&m.id, &m.stream) {
            (Some(id), _) if tracked => self.layer(id, status, m.bytes()),
            (Some(id), _) => {
                self.close_group();
                let _ = writeln!(self.lines, "{id}: {status}");
            }
            (None, Some(s)) => {
                self.close_group();
                let _ = write!(self.lines, "{s}");
            }
            (None, None) => {
                self.close_group();
                let _ = writeln!(self.lines, "{status}");
            }
        }
    }

    fn finish(&mut self) {
        self.close_group();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(out: &mut dyn ProgressOutput, lines: &str) -> Result<(), String> {
        for l in lines.lines().filter(|l| !l.trim().is_empty()) {
            let m: ProgressMessage = serde_json::from_str(l).unwrap();
            display(out, &m)?;
        }
        out.finish();
        Ok(())
    }

    const PULL: &str = r#"
{"status":"Pulling from library/busybox","id":"latest"}
{"status":"Pulling fs layer","progressDetail":{},"id":"9ad63333ebc9"}
{"status":"Pulling fs layer","progressDetail":{},"id":"1f2e3d4c5b6a"}
{"status":"Waiting","progressDetail":{},"id":"1f2e3d4c5b6a"}
{"status":"Downloading","progressDetail":{"current":32768,"total":2152262},"progress":"[>    ]  32.77kB/2.152MB","id":"9ad63333ebc9"}
{"status":"Downloading","progressDetail":{"current":2152262,"total":2152262},"progress":"[=====>]  2.152MB/2.152MB","id":"9ad63333ebc9"}
{"status":"Verifying Checksum","progressDetail":{},"id":"9ad63333ebc9"}
{"status":"Download complete","progressDetail":{},"id":"9ad63333ebc9"}
{"status":"Extracting","progressDetail":{"current":65536,"total":2152262},"id":"9ad63333ebc9"}
{"status":"Pull complete","progressDetail":{},"id":"9ad63333ebc9"}
{"status":"Already exists","progressDetail":{},"id":"1f2e3d4c5b6a"}
{"status":"Digest: sha256:3fbc632167424a6d997e74f52b878d7cc478225cffac6bc977eedfe51c7f4e79"}
{"status":"Status: Downloaded newer image for busybox:latest"}
"#;

    #[test]
    fn plain_pull_like_docker() {
        let mut out = Plain::new(Vec::new());
        feed(&mut out, PULL).unwrap();
        let text = String::from_utf8(out.into_inner()).unwrap();
        assert_eq!(
            text,
            "latest: Pulling from library/busybox\n\
             9ad63333ebc9: Pulling fs layer\n\
             1f2e3d4c5b6a: Pulling fs layer\n\
             1f2e3d4c5b6a: Waiting\n\
             9ad63333ebc9: Verifying Checksum\n\
             9ad63333ebc9: Download complete\n\
             9ad63333ebc9: Pull complete\n\
             1f2e3d4c5b6a: Already exists\n\
             Digest: sha256:3fbc632167424a6d997e74f52b878d7cc478225cffac6bc977eedfe51c7f4e79\n\
             Status: Downloaded newer image for busybox:latest\n"
        );
    }

    #[test]
    fn plain_push_hides_aux_and_stops_at_errors() {
        let push = r#"
{"status":"The push refers to repository [localhost:5000/app]"}
{"status":"Preparing","progressDetail":{},"id":"aaa"}
{"status":"Preparing","progressDetail":{},"id":"bbb"}
{"status":"Waiting","progressDetail":{},"id":"bbb"}
{"status":"Pushing","progressDetail":{"current":512,"total":1024},"id":"aaa"}
{"status":"Pushed","progressDetail":{},"id":"aaa"}
{"status":"Mounted from library/base","progressDetail":{},"id":"bbb"}
{"status":"v1: digest: sha256:abc size: 527"}
{"progressDetail":{},"aux":{"Tag":"v1","Digest":"sha256:abc","Size":527}}
"#;
        let mut out = Plain::new(Vec::new());
        feed(&mut out, push).unwrap();
        assert_eq!(
            String::from_utf8(out.into_inner()).unwrap(),
            "The push refers to repository [localhost:5000/app]\n\
             aaa: Preparing\n\
             bbb: Preparing\n\
             bbb: Waiting\n\
             aaa: Pushed\n\
             bbb: Mounted from library/base\n\
             v1: digest: sha256:abc size: 527\n"
        );

        let failing = r#"
{"status":"Preparing","progressDetail":{},"id":"aaa"}
{"errorDetail":{"message":"denied: requested access to the resource is denied"},"error":"denied: requested access to the resource is denied"}
{"status":"never shown"}
"#;
        let mut out = Plain::new(Vec::new());
        assert_eq!(
            feed(&mut out, failing),
            Err("denied: requested access to the resource is denied".to_owned())
        );
        assert_eq!(
            String::from_utf8(out.into_inner()).unwrap(),
            "aaa: Preparing\n"
        );
        // `error` alone is enough.
        let m: ProgressMessage = serde_json::from_str(r#"{"error":"boom"}"#).unwrap();
        assert_eq!(display(&mut Discard, &m), Err("boom".into()));
    }

    #[test]
    fn plain_streams_and_old_progress_strings() {
        let lines = r#"
{"stream":"Step 1/2\n"}
{"status":"Loading","progress":"[==>  ] 1/4","id":"x"}
"#;
        let mut out = Plain::new(Vec::new());
        feed(&mut out, lines).unwrap();
        assert_eq!(
            String::from_utf8(out.into_inner()).unwrap(),
            "Step 1/2\nx: Loading [==>  ] 1/4\n"
        );
    }

    #[test]
    fn bars_follow_layers() {
        let mut bars = Bars::new(ProgressDrawTarget::hidden, Box::new(std::io::sink()));
        let lines: Vec<ProgressMessage> = PULL
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        // Up to the first line without an id: one bar per layer.
        for m in &lines[..10] {
            display(&mut bars, m).unwrap();
        }
        let g = bars.group.as_ref().unwrap();
        assert_eq!(g.order, ["9ad63333ebc9", "1f2e3d4c5b6a"]);
        let (bar, look) = &g.bars["9ad63333ebc9"];
        assert_eq!(*look, Look::Status);
        assert_eq!(bar.message(), "Pull complete");
        assert_eq!(bar.length(), Some(2152262));
        bars.layer("9ad63333ebc9", "Extracting", Some((10, 20)));
        let (bar, look) = &bars.group.as_ref().unwrap().bars["9ad63333ebc9"];
        assert_eq!((*look, bar.position()), (Look::Bar, 10));
        bars.finish();
        assert!(bars.group.is_none());
    }
}
