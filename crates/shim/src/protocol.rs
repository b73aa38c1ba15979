//! The engine <-> shim protocol over the shim's unix socket.
//!
//! The engine sends one JSON [`Request`] line; the shim answers one JSON [`Response`] line.
//! After an `attach` or `exec` answer the connection carries frames both ways: shim -> engine
//! frames are Docker's multiplexed framing (`[stream, 0, 0, 0, len_be_u32] payload`) with stream
//! 1 stdout, 2 stderr and [`FRAME_EXIT`] carrying a JSON [`ExitStatus`] as the last frame;
//! engine -> shim bytes are raw stdin, and closing the write half is stdin EOF.

use serde::{Deserialize, Serialize};

/// The frame stream id of the final exit-status frame.
pub const FRAME_EXIT: u8 = 3;

/// One request from the engine. `P` is how an exec's process spec is held: the engine builds a
/// typed one; the shim reads it as plain JSON and leaves decoding it to the runtime helper, so
/// that the long-lived shim never carries the spec's validating deserializers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request<P = Box<oci_spec::runtime::Process>> {
    /// The init's pid and whether it still runs.
    State,
    /// Starts the created container (after the engine connected its attach streams).
    Start,
    /// Sends a signal to the init (or with `all`, to every process of the container).
    Kill {
        signal: i32,
        all: bool,
    },
    Pause,
    Resume,
    /// Resizes the container's pty (or an exec's, with `exec_id`).
    Resize {
        height: u16,
        width: u16,
        exec_id: Option<String>,
    },
    /// Streams output (and takes stdin) until the container exits; the last frame is the exit.
    /// With no streams it is a plain wait.
    Attach {
        stdin: bool,
        stdout: bool,
        stderr: bool,
    },
    /// Runs a process in the container and streams it like `attach`.
    Exec {
        exec_id: String,
        process: P,
        tty: bool,
        stdin: bool,
    },
}

/// The answer line.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Response {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    #[serde(default)]
    pub running: bool,
    #[serde(default)]
    pub paused: bool,
}

impl Response {
    pub fn ok() -> Self {
        Self::default()
    }
    pub fn err(msg: impl Into<String>) -> Self {
        Self {
            error: Some(msg.into()),
            ..Self::default()
        }
    }
}

/// How a container (or exec process) ended.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExitStatus {
    pub exit_code: i32,
    #[serde(default)]
    pub oom_killed: bool,
    /// RFC 3339 time of the exit.
    #[serde(default)]
    pub finished_at: String,
}

/// What the shim reports on its ready pipe once the container runs (or failed to).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Ready {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Encodes one frame.
pub fn frame(stream: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + payload.len());
    out.push(stream);
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_tagged_json() {
        let r: Request = serde_json::from_str(r#"{"op":"kill","signal":9,"all":false}"#).unwrap();
        assert!(matches!(
            r,
            Request::Kill {
                signal: 9,
                all: false
            }
        ));
        let attach: Request = Request::Attach {
            stdin: false,
            stdout: true,
            stderr: true,
        };
        let line = serde_json::to_string(&attach).unwrap();
        assert_eq!(
            line,
            r#"{"op":"attach","stdin":false,"stdout":true,"stderr":true}"#
        );
    }

    #[test]
    fn the_shim_reads_exec_processes_as_plain_json() {
        let process: oci_spec::runtime::Process = serde_json::from_str(
            r#"{"args":["sh"],"cwd":"/","user":{"uid":0,"gid":0},"terminal":true}"#,
        )
        .unwrap();
        let line = serde_json::to_string(&Request::Exec {
            exec_id: "e1".into(),
            process: Box::new(process.clone()),
            tty: true,
            stdin: false,
        })
        .unwrap();
        let r: Request<serde_json::Value> = serde_json::from_str(&line).unwrap();
        let Request::Exec { process: raw, .. } = r else {
            panic!("not an exec: {line}");
        };
        let back: oci_spec::runtime::Process = serde_json::from_value(raw).unwrap();
        assert_eq!(back, process);
    }

    #[test]
    fn frame_header_is_dockers() {
        assert_eq!(frame(2, b"ab"), vec![2, 0, 0, 0, 0, 0, 0, 2, b'a', b'b']);
    }
}
