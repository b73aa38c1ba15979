//! Copying bytes between the local stdio and an attach/exec connection: stdin from a reader
//! thread, output demultiplexed (Docker's stdio frames) onto stdout/stderr, signal proxying
//! and terminal resizes.

use std::io::Write;
use std::time::Duration;

use berth_api::client::{Client, HijackReader, HijackWriter, Hijacked, RequestBody, query};
use berth_api::detach::{DEFAULT_DETACH_KEYS, DetachMatcher, parse_detach_keys};
use berth_api::models::{ContainerInspect, WaitResponse};
use berth_api::stream::FrameDecoder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::error::Result;

/// Reads our stdin on a plain thread (a blocked read must never hold the runtime up at exit)
/// and hands the chunks over; the channel closes at end of input.
pub fn spawn_stdin() -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel::<Vec<u8>>(16);
    let spawned = std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            use std::io::Read;
            let mut stdin = std::io::stdin();
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => {
                        if tx.blocking_send(buf[..n].to_vec()).is_err() {
                            return;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => return,
                }
            }
        });
    if spawned.is_err() {
        // Without a reader thread, stdin behaves as empty.
        let (_tx, rx) = mpsc::channel(1);
        return rx;
    }
    rx
}

/// Writes one chunk to our stdout or stderr.
fn write_local(stream: u8, data: &[u8]) -> std::io::Result<()> {
    if stream == 2 {
        let mut e = std::io::stderr().lock();
        e.write_all(data)?;
        e.flush()
    } else {
        let mut o = std::io::stdout().lock();
        o.write_all(data)?;
        o.flush()
    }
}

/// A demultiplexer of Docker's stdio frames onto our stdout/stderr (or raw copy to stdout).
#[derive(Debug)]
pub struct OutputSink {
    decoder: Option<FrameDecoder>,
}

impl OutputSink {
    /// A sink for a multiplexed (`true`) or raw (`false`, tty) stream.
    pub fn new(multiplexed: bool) -> Self {
        OutputSink {
            decoder: multiplexed.then(FrameDecoder::default),
        }
    }

    /// Writes what `data` completes.
    pub fn push(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self.decoder.as_mut() {
            None => write_local(1, data),
            Some(d) => {
                for (stream, payload) in d.push(data) {
                    write_local(stream, &payload)?;
                }
                Ok(())
            }
        }
    }
}

/// Copies the connection's output to our stdout/stderr until it ends.
async fn pump_output(mut reader: HijackReader, multiplexed: bool) -> std::io::Result<()> {
    let mut sink = OutputSink::new(multiplexed);
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        sink.push(&buf[..n])?;
    }
}

/// How an attached session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    /// The daemon closed the output: the process ended (or the daemon detached us).
    Closed,
    /// The user typed the detach keys; the process goes on.
    Detached,
}

/// Copies our stdin into the connection, then half-closes it; stops without forwarding them
/// when the detach keys are typed (returns `true` then).
async fn pump_input(
    mut rx: mpsc::Receiver<Vec<u8>>,
    writer: &mut HijackWriter,
    mut detach: Option<DetachMatcher>,
) -> bool {
    while let Some(chunk) = rx.recv().await {
        let (data, detached) = match detach.as_mut() {
            Some(m) => m.feed(&chunk),
            None => (chunk, false),
        };
        if writer.write_all(&data).await.is_err() || writer.flush().await.is_err() {
            return false;
        }
        if detached {
            return true;
        }
    }
    let _ = writer.close_write().await;
    false
}

/// Runs an attach/exec session until the daemon closes the output or the user detaches: copies
/// stdin in (when `stdin`), output out (demultiplexed unless `tty`). As Docker's CLI, the
/// detach keys are watched here only with a tty (the daemon watches them in every case).
pub async fn session(
    h: Hijacked,
    tty: bool,
    stdin: bool,
    detach_keys: Option<&str>,
) -> std::io::Result<SessionEnd> {
    let multiplexed = h.multiplexed.unwrap_or(!tty);
    let Hijacked {
        reader, mut writer, ..
    } = h;
    let output = pump_output(reader, multiplexed);
    if !stdin || !writer.is_writable() {
        return output.await.map(|()| SessionEnd::Closed);
    }
    let detach = if tty {
        parse_detach_keys(
            detach_keys
                .filter(|k| !k.is_empty())
                .unwrap_or(DEFAULT_DETACH_KEYS),
        )
        .ok()
        .map(DetachMatcher::new)
    } else {
        None
    };
    let rx = spawn_stdin();
    tokio::pin!(output);
    tokio::select! {
        r = &mut output => return r.map(|()| SessionEnd::Closed),
        detached = pump_input(rx, &mut writer, detach) => {
            if detached {
                return Ok(SessionEnd::Detached);
            }
        }
    }
    output.await.map(|()| SessionEnd::Closed)
}

/// Forwards the signals a user can send to the container (`--sig-proxy`); never returns.
pub async fn proxy_signals(client: &Client, id: &str) {
    use tokio::signal::unix::{SignalKind, signal};
    let kinds = [
        (SignalKind::interrupt(), "SIGINT"),
        (SignalKind::terminate(), "SIGTERM"),
        (SignalKind::hangup(), "SIGHUP"),
        (SignalKind::quit(), "SIGQUIT"),
        (SignalKind::user_defined1(), "SIGUSR1"),
        (SignalKind::user_defined2(), "SIGUSR2"),
    ];
    let (tx, mut rx) = mpsc::unbounded_channel::<&'static str>();
    let mut tasks = Vec::new();
    for (kind, name) in kinds {
        if let Ok(mut s) = signal(kind) {
            let tx = tx.clone();
            tasks.push(AbortOnDrop(tokio::spawn(async move {
                while s.recv().await.is_some() {
                    if tx.send(name).is_err() {
                        return;
                    }
                }
            })));
        }
    }
    drop(tx);
    while let Some(name) = rx.recv().await {
        let path = format!(
            "/containers/{}/kill?{}",
            crate::commands::seg(id),
            query(&[("signal", name)])
        );
        let _ = client.post_empty(&path).await;
    }
    drop(tasks);
    std::future::pending::<()>().await
}

/// Aborts a spawned task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Sends the terminal size to `resize_path` (`/containers/{id}/resize` or
/// `/exec/{id}/resize`) now and on every `SIGWINCH`; never returns.
pub async fn track_resize(client: &Client, resize_path: &str) {
    use tokio::signal::unix::{SignalKind, signal};
    let send = |path: String| async move {
        let _ = client.post_empty(&path).await;
    };
    let path_now = || {
        crate::tty::size().map(|(h, w)| {
            format!(
                "{resize_path}?{}",
                query(&[("h", &h.to_string()), ("w", &w.to_string())])
            )
        })
    };
    if let Some(p) = path_now() {
        send(p).await;
    }
    let Ok(mut winch) = signal(SignalKind::window_change()) else {
        return std::future::pending().await;
    };
    while winch.recv().await.is_some() {
        if let Some(p) = path_now() {
            send(p).await;
        }
    }
    std::future::pending().await
}

/// After an attached session's output ended: the container's exit status from the `wait`
/// answer, or `None` if the user detached (the container still runs).
pub async fn finish(
    client: &Client,
    id: &str,
    wait: Option<berth_api::client::BodyStream>,
) -> Result<Option<i64>> {
    let Some(mut wait) = wait else {
        return Ok(Some(0));
    };
    let first = tokio::time::timeout(Duration::from_secs(2), wait.next_json::<WaitResponse>());
    let resp = match first.await {
        Ok(r) => r?,
        Err(_) => {
            // No exit yet: either the user detached, or the process is still winding down.
            let path = format!("/containers/{}/json", crate::commands::seg(id));
            match client.get::<ContainerInspect>(&path).await {
                Ok(c) if c.state.running && !c.state.restarting => return Ok(None),
                _ => wait.next_json::<WaitResponse>().await?,
            }
        }
    };
    let Some(resp) = resp else {
        return Ok(Some(0));
    };
    if let Some(err) = resp.error.filter(|e| !e.message.is_empty()) {
        return Err(crate::error::CliError::Stream(err.message));
    }
    Ok(Some(resp.status_code))
}

/// Starts the empty-bodied request used for `wait`: issued before `start` so a fast exit is
/// not missed.
pub async fn begin_wait(
    client: &Client,
    id: &str,
    condition: &str,
) -> Result<berth_api::client::BodyStream> {
    let path = format!(
        "/containers/{}/wait?{}",
        crate::commands::seg(id),
        query(&[("condition", condition)])
    );
    Ok(client
        .stream(hyper::Method::POST, &path, RequestBody::Empty)
        .await?)
}
