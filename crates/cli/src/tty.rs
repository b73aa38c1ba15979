//! The local terminal: detection, raw mode (restored on drop, so on every exit path) and size.

use std::io::IsTerminal;
use std::os::fd::AsFd;

use rustix::termios::{OptionalActions, Termios, tcgetattr, tcgetwinsize, tcsetattr};

/// True when our stdin is a terminal.
pub fn stdin_is_tty() -> bool {
    std::io::stdin().is_terminal()
}

/// True when our stdout is a terminal.
pub fn stdout_is_tty() -> bool {
    std::io::stdout().is_terminal()
}

/// The terminal size as (rows, columns), from stdout then stdin.
pub fn size() -> Option<(u16, u16)> {
    let from = |ws: rustix::termios::Winsize| (ws.ws_row, ws.ws_col);
    let out = std::io::stdout();
    let size = tcgetwinsize(out.as_fd()).map(from).or_else(|_| {
        let inp = std::io::stdin();
        tcgetwinsize(inp.as_fd()).map(from)
    });
    size.ok().filter(|&(h, w)| h > 0 && w > 0)
}

/// Raw mode on stdin while alive; the saved settings come back on drop.
#[derive(Debug)]
pub struct RawMode {
    saved: Termios,
}

impl RawMode {
    /// Puts stdin in raw mode (no echo, no line editing, no signals from keys).
    pub fn enable() -> std::io::Result<Self> {
        let stdin = std::io::stdin();
        let saved = tcgetattr(stdin.as_fd())?;
        let mut raw = saved.clone();
        raw.make_raw();
        tcsetattr(stdin.as_fd(), OptionalActions::Now, &raw)?;
        Ok(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let stdin = std::io::stdin();
        let _ = tcsetattr(stdin.as_fd(), OptionalActions::Now, &self.saved);
    }
}
