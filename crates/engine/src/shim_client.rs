//! The engine's side of the shim protocol: spawning a shim and talking to it over its socket.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use berth_shim::ShimConfig;
use berth_shim::protocol::{ExitStatus, FRAME_EXIT, Ready, Request, Response};
use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use crate::error::{EngineError, Result};

/// Spawns `berth-shim` for a container, in its own session so it outlives the daemon, and
/// waits for its ready line. Returns the container's init pid.
pub async fn spawn(
    shim_bin: &Path,
    cfg: &ShimConfig,
    config_path: &Path,
    shim_log: &Path,
) -> Result<i32> {
    let data = serde_json::to_vec_pretty(cfg).map_err(|e| EngineError::Shim(e.to_string()))?;
    crate::fsutil::write_replace(config_path, &data)?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(shim_log)
        .map_err(EngineError::io(format!("open {}", shim_log.display())))?;
    let mut cmd = tokio::process::Command::new(shim_bin);
    cmd.arg(config_path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log);
    // No pre-exec hook (the shim calls setsid itself), so the spawn can use vfork.
    let mut child = cmd
        .spawn()
        .map_err(|e| EngineError::Shim(format!("spawning {}: {e}", shim_bin.display())))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| EngineError::Shim("no stdout".into()))?;
    let mut line = String::new();
    let read = tokio::time::timeout(
        Duration::from_secs(60),
        BufReader::new(stdout).read_line(&mut line),
    )
    .await;
    // The shim lives on; reap it whenever it exits so it never lingers as a zombie.
    tokio::spawn(async move {
        let _ = child.wait().await;
    });
    match read {
        Err(_) => return Err(EngineError::Shim("timed out waiting for the shim".into())),
        Ok(Err(e)) => return Err(EngineError::Shim(format!("reading shim: {e}"))),
        Ok(Ok(_)) => {}
    }
    let ready: Ready = serde_json::from_str(line.trim()).map_err(|_| {
        let tail = std::fs::read_to_string(shim_log).unwrap_or_default();
        let tail: String = tail.lines().rev().take(5).collect::<Vec<_>>().join("; ");
        EngineError::Shim(format!("shim failed to start: {tail}"))
    })?;
    match (ready.pid, ready.error) {
        (_, Some(err)) => Err(EngineError::Runtime(runtime_message(&err))),
        (Some(pid), None) => Ok(pid),
        (None, None) => Err(EngineError::Shim(
            "shim reported neither pid nor error".into(),
        )),
    }
}

/// Phrases a runtime failure the way Docker does, so clients map it to the same exit codes.
pub fn runtime_message(err: &str) -> String {
    format!("failed to create task for container: OCI runtime create failed: {err}: unknown")
}

/// A connection to a shim.
pub struct ShimConn {
    read: BufReader<OwnedReadHalf>,
    write: OwnedWriteHalf,
}

/// One frame from a streaming connection.
#[derive(Debug)]
pub enum Frame {
    /// Output: stream 1 stdout, 2 stderr.
    Output(u8, Bytes),
    /// The last frame: how the process ended.
    Exit(ExitStatus),
}

impl ShimConn {
    pub async fn connect(socket: &Path) -> Result<Self> {
        let s = UnixStream::connect(socket)
            .await
            .map_err(|e| EngineError::Shim(format!("connect {}: {e}", socket.display())))?;
        let (r, w) = s.into_split();
        Ok(Self {
            read: BufReader::new(r),
            write: w,
        })
    }

    /// Sends a request and reads the answer line.
    pub async fn request(&mut self, req: &Request) -> Result<Response> {
        let mut line = serde_json::to_vec(req).map_err(|e| EngineError::Shim(e.to_string()))?;
        line.push(b'\n');
        self.write
            .write_all(&line)
            .await
            .map_err(|e| EngineError::Shim(format!("send: {e}")))?;
        let mut answer = String::new();
        let n = self
            .read
            .read_line(&mut answer)
            .await
            .map_err(|e| EngineError::Shim(format!("receive: {e}")))?;
        if n == 0 {
            return Err(EngineError::Shim("shim closed the connection".into()));
        }
        serde_json::from_str(answer.trim())
            .map_err(|e| EngineError::Shim(format!("bad answer: {e}")))
    }

    /// Splits a streaming connection into its frame reader and stdin writer.
    pub fn into_stream(self) -> (FrameReader, OwnedWriteHalf) {
        (FrameReader { read: self.read }, self.write)
    }
}

/// Reads frames from a streaming shim connection.
pub struct FrameReader {
    read: BufReader<OwnedReadHalf>,
}

impl FrameReader {
    /// The next frame; `None` when the shim closed the stream without an exit frame.
    pub async fn next(&mut self) -> Option<Frame> {
        let mut header = [0u8; 8];
        self.read.read_exact(&mut header).await.ok()?;
        let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let mut payload = vec![0u8; len];
        self.read.read_exact(&mut payload).await.ok()?;
        if header[0] == FRAME_EXIT {
            let status = serde_json::from_slice(&payload).unwrap_or_default();
            Some(Frame::Exit(status))
        } else {
            Some(Frame::Output(header[0], Bytes::from(payload)))
        }
    }
}

/// Sends one request on a fresh connection.
pub async fn call(socket: &Path, req: &Request) -> Result<Response> {
    let mut conn = ShimConn::connect(socket).await?;
    let resp = conn.request(req).await?;
    match resp.error {
        Some(e) => Err(EngineError::Runtime(e)),
        None => Ok(resp),
    }
}

/// Paths of one container's runtime files under the exec root.
#[derive(Debug, Clone)]
pub struct RunPaths {
    pub dir: PathBuf,
    socket: PathBuf,
}

/// Longest path a unix socket address holds (`sun_path` is 108 bytes with its NUL).
pub const MAX_SOCKET_PATH: usize = 107;

impl RunPaths {
    pub fn new(exec_root: &Path, id: &str) -> Self {
        Self {
            dir: exec_root.join("containers").join(id),
            // Short and flat (`shims/<id>.sock`), since socket paths are limited to 107 bytes.
            socket: exec_root.join("shims").join(format!("{id}.sock")),
        }
    }
    pub fn socket(&self) -> PathBuf {
        self.socket.clone()
    }
    pub fn exit_file(&self) -> PathBuf {
        self.dir.join("exit.json")
    }
    pub fn shim_config(&self) -> PathBuf {
        self.dir.join("shim.json")
    }
    pub fn shim_log(&self) -> PathBuf {
        self.dir.join("shim.log")
    }
}

/// SIGKILLs every process of the container, then its init (which a frozen or half-created
/// container may need on its own); errors are ignored, as the container may already be gone.
pub async fn kill_all(socket: &Path) {
    for all in [true, false] {
        let _ = call(
            socket,
            &Request::Kill {
                signal: libc::SIGKILL,
                all,
            },
        )
        .await;
    }
}
