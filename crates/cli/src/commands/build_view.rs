//! How `berth build` shows a build: Docker's legacy log as the daemon streams it
//! (`--progress=auto` off a terminal), BuildKit-style numbered lines (`--progress=plain`), or
//! a live view (`--progress=tty`, the default on a terminal): finished steps with their time
//! or `CACHED`, and the running step with a timer and its last lines of output, redrawn in
//! place. The views read the daemon's log lines (`Step N/M : ...`, ` ---> Using cache`...).

use std::io::Write;
use std::time::{Duration, Instant};

/// Lines of a running step's output the live view shows.
const TAIL: usize = 6;
/// Lines of a step's output kept (to show a failed step's); older ones are dropped.
const KEEP_LINES: usize = 1000;
/// Output without a newline past this is shown as a line of its own.
const MAX_LINE: usize = 64 * 1024;

/// The chosen view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Legacy,
    Plain,
    Tty,
}

impl Mode {
    /// `--progress` with `auto` resolved against the terminal (stderr, where views go).
    pub fn from_flag(flag: &str) -> Result<Mode, String> {
        use std::io::IsTerminal;
        match flag {
            "auto" if std::io::stderr().is_terminal() => Ok(Mode::Tty),
            "auto" => Ok(Mode::Legacy),
            "plain" => Ok(Mode::Plain),
            "tty" => Ok(Mode::Tty),
            "rawjson" | "quiet" => Err(format!("--progress={flag} is not supported")),
            other => Err(format!(
                "invalid --progress value {other:?} (auto, plain, tty)"
            )),
        }
    }
}

struct Step {
    label: String,
    started: Instant,
    cached: bool,
    finished: Option<Duration>,
    output: Vec<String>,
}

/// The state of a view over one build's log.
pub struct View {
    mode: Mode,
    steps: Vec<Step>,
    partial: String,
    /// Lines of the live area drawn last (tty), to redraw over.
    drawn: usize,
    width: usize,
}

impl View {
    pub fn new(mode: Mode) -> View {
        let width = crate::tty::size().map_or(100, |(_, w)| w as usize).max(20);
        View {
            mode,
            steps: Vec::new(),
            partial: String::new(),
            drawn: 0,
            width,
        }
    }

    /// Feeds a `stream` text of the build log.
    pub fn feed(&mut self, text: &str) {
        if self.mode == Mode::Legacy {
            out!("{text}");
            return;
        }
        self.partial.push_str(text);
        while let Some(i) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=i).collect();
            self.line(line.trim_end_matches('\n'));
        }
        if self.partial.len() > MAX_LINE {
            let line = std::mem::take(&mut self.partial);
            self.line(&line);
        }
        self.redraw();
    }

    fn current(&mut self) -> Option<&mut Step> {
        self.steps.last_mut().filter(|s| s.finished.is_none())
    }

    fn line(&mut self, line: &str) {
        let plain = self.mode == Mode::Plain;
        let n = self.steps.len();
        if let Some(rest) = line.strip_prefix("Step ") {
            self.finish();
            let (count, text) = rest.split_once(" : ").unwrap_or((rest, ""));
            let label = format!("[{count}] {text}");
            if plain {
                self.print(&format!("#{} {label}", n + 1));
            }
            self.steps.push(Step {
                label,
                started: Instant::now(),
                cached: false,
                finished: None,
                output: Vec::new(),
            });
        } else if line == " ---> Using cache" {
            if let Some(s) = self.current() {
                s.cached = true;
            }
            if plain {
                self.print(&format!("#{n} CACHED"));
            }
        } else if line.starts_with(" ---> Running in ") {
        } else if line.starts_with(" ---> ") {
            self.finish();
        } else if line.starts_with("Successfully ") || line.starts_with("[Warning]") {
            self.finish();
            self.print(line);
        } else if let Some(s) = self.current() {
            let t = s.started.elapsed().as_secs_f64();
            if s.output.len() == KEEP_LINES {
                s.output.drain(..KEEP_LINES / 2);
            }
            s.output.push(line.to_owned());
            if plain {
                self.print(&format!("#{n} {t:.3} {line}"));
            }
        } else {
            self.print(line);
        }
    }

    /// Ends the running step (printing it for good in the tty view).
    fn finish(&mut self) {
        let mode = self.mode;
        let n = self.steps.len();
        let Some(s) = self.current() else { return };
        let took = s.started.elapsed();
        s.finished = Some(took);
        let text = match (mode, s.cached) {
            (Mode::Plain, true) => return,
            (Mode::Plain, false) => format!("#{n} DONE {:.1}s", took.as_secs_f64()),
            (_, true) => format!(" => CACHED {}", s.label),
            (_, false) => format!(" => {}  {:.1}s", s.label, took.as_secs_f64()),
        };
        self.print(&text);
    }

    /// Prints a permanent line (above the live area in the tty view).
    fn print(&mut self, line: &str) {
        let mut err = std::io::stderr().lock();
        if self.mode == Mode::Tty {
            self.clear(&mut err);
        }
        let _ = writeln!(err, "{}", self.fit(line));
    }

    fn fit(&self, line: &str) -> String {
        if self.mode != Mode::Tty {
            return line.to_owned();
        }
        line.chars().take(self.width.saturating_sub(1)).collect()
    }

    fn clear(&mut self, err: &mut impl Write) {
        if self.drawn > 0 {
            let _ = write!(err, "\x1b[{}F\x1b[J", self.drawn);
            self.drawn = 0;
        }
    }

    /// Redraws the running step and the tail of its output (tty view only).
    pub fn redraw(&mut self) {
        if self.mode != Mode::Tty {
            return;
        }
        let mut lines = Vec::new();
        if let Some(s) = self.steps.last().filter(|s| s.finished.is_none()) {
            lines.push(format!(
                " => {}  {:.1}s",
                s.label,
                s.started.elapsed().as_secs_f64()
            ));
            let from = s.output.len().saturating_sub(TAIL);
            for l in &s.output[from..] {
                lines.push(format!("\x1b[2m => > {l}\x1b[0m"));
            }
        }
        let mut err = std::io::stderr().lock();
        self.clear(&mut err);
        for l in &lines {
            let _ = writeln!(err, "{}", self.fit(l));
        }
        self.drawn = lines.len();
        let _ = err.flush();
    }

    /// The build failed: in the views that hide output, show all of the failing step's.
    pub fn failed(&mut self) {
        if self.mode != Mode::Tty {
            return;
        }
        let mut err = std::io::stderr().lock();
        self.clear(&mut err);
        if let Some(s) = self.steps.last().filter(|s| s.finished.is_none()) {
            let _ = writeln!(err, " => ERROR {}", s.label);
            for l in &s.output {
                let _ = writeln!(err, " => > {l}");
            }
        }
    }

    /// The build ended well: close the last step.
    pub fn done(&mut self) {
        if !self.partial.is_empty() {
            let rest = std::mem::take(&mut self.partial);
            self.line(&rest);
        }
        self.finish();
        if self.mode == Mode::Tty {
            let mut err = std::io::stderr().lock();
            self.clear(&mut err);
        }
    }
}
