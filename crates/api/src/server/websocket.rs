//! Attach over a WebSocket (`GET /containers/{id}/attach/ws`), as browser consoles use it:
//! the RFC 6455 handshake, then every byte the container writes goes out as one data frame
//! (binary from API 1.28, text before, as moby), and the payload of every frame the client
//! sends goes to the container's stdin. Only the framing lives here: the attach itself is the
//! same hijacked session as `POST /attach`, run on an in-memory pipe this module bridges.
//!
//! Frames from the client are read as a stream, a chunk at a time, so a frame's declared
//! length never decides how much is buffered; control frames are limited to 125 bytes as the
//! RFC says.

use std::sync::Arc;

use base64::Engine as _;
use hyper::{Response, StatusCode};
use sha1::{Digest, Sha1};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::sync::Mutex;

use super::ApiError;
use super::body::Body;

/// The RFC's fixed key suffix for `Sec-WebSocket-Accept`.
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// Close codes sent: normal end, and a protocol error by the client.
const CLOSE_NORMAL: u16 = 1000;
const CLOSE_PROTOCOL: u16 = 1002;

/// How long the client has to answer a close the server sent.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The `Sec-WebSocket-Accept` answer to a client's `Sec-WebSocket-Key`.
pub(super) fn accept_key(key: &str) -> String {
    let mut h = Sha1::new();
    h.update(key.trim().as_bytes());
    h.update(ACCEPT_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

/// Checks the handshake request and gives the accept key, or moby's answer to a request that
/// is not a WebSocket one (a plain 400 with `not websocket protocol`).
pub(super) fn handshake_key(headers: &hyper::HeaderMap) -> Result<String, ApiError> {
    let has = |name: hyper::header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    let key = headers
        .get(hyper::header::SEC_WEBSOCKET_KEY)
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.trim().is_empty());
    match key {
        Some(k)
            if has(hyper::header::UPGRADE, "websocket")
                && has(hyper::header::CONNECTION, "upgrade") =>
        {
            if headers
                .get(hyper::header::SEC_WEBSOCKET_VERSION)
                .is_some_and(|v| v.as_bytes() != b"13")
            {
                return Err(ApiError::bad("unsupported websocket version: 13 is spoken"));
            }
            Ok(accept_key(k))
        }
        _ => Err(ApiError::bad("not websocket protocol")),
    }
}

/// The `101 Switching Protocols` answer for an accepted handshake.
pub(super) fn switching(accept: &str) -> Response<Body> {
    let mut resp = Response::new(Body::Full(None));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(
        hyper::header::UPGRADE,
        hyper::header::HeaderValue::from_static("websocket"),
    );
    h.insert(
        hyper::header::CONNECTION,
        hyper::header::HeaderValue::from_static("Upgrade"),
    );
    if let Ok(v) = hyper::header::HeaderValue::from_str(accept) {
        h.insert(hyper::header::SEC_WEBSOCKET_ACCEPT, v);
    }
    resp
}

/// One unmasked server frame (FIN set) carrying `payload`.
fn frame(op: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 10);
    out.push(0x80 | op);
    match payload.len() {
        n @ 0..=125 => out.push(n as u8),
        n @ 126..=0xFFFF => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out
}

fn close_frame(code: u16) -> Vec<u8> {
    frame(OP_CLOSE, &code.to_be_bytes())
}

/// Carries the bytes between the client's WebSocket and `pipe` (the other end of which the
/// attach session uses as its connection) until either side ends. Output the session writes
/// goes out as `text` or binary frames; the session's end is a normal close.
pub(super) async fn bridge<S>(ws: S, pipe: DuplexStream, text: bool)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut ws_rd, ws_wr) = tokio::io::split(ws);
    let ws_wr = Arc::new(Mutex::new(ws_wr));
    let (mut pipe_rd, mut pipe_wr) = tokio::io::split(pipe);
    let data_op = if text { OP_TEXT } else { OP_BINARY };
    let outbound = {
        let ws_wr = ws_wr.clone();
        async move {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                let n = match pipe_rd.read(&mut buf).await {
                    Ok(0) | Err(_) => return CLOSE_NORMAL,
                    Ok(n) => n,
                };
                if ws_wr
                    .lock()
                    .await
                    .write_all(&frame(data_op, &buf[..n]))
                    .await
                    .is_err()
                {
                    return CLOSE_NORMAL;
                }
            }
        }
    };
    let inbound = async {
        let code = read_frames(&mut ws_rd, &mut pipe_wr, &ws_wr).await;
        let _ = pipe_wr.shutdown().await;
        code
    };
    let (code, ours_first) = tokio::select! {
        c = outbound => (c, true),
        c = inbound => (c, false),
    };
    let _ = ws_wr.lock().await.write_all(&close_frame(code)).await;
    if ours_first {
        // The closing handshake: the client answers with its own close before the
        // connection goes (websocket clients fail their reply on a connection already shut).
        let _ = tokio::time::timeout(
            CLOSE_WAIT,
            read_frames(&mut ws_rd, &mut tokio::io::sink(), &ws_wr),
        )
        .await;
    }
    let _ = ws_wr.lock().await.shutdown().await;
}

/// Reads the client's frames, writing data payloads to `stdin` and answering pings, until a
/// close (its code is echoed), the connection's end or a protocol error.
async fn read_frames<R, W, S>(rd: &mut R, stdin: &mut W, ws_wr: &Mutex<S>) -> u16
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    S: AsyncWrite + Unpin,
{
    let mut stdin_open = true;
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let mut head = [0u8; 2];
        if rd.read_exact(&mut head).await.is_err() {
            return CLOSE_NORMAL;
        }
        let op = head[0] & 0x0F;
        let masked = head[1] & 0x80 != 0;
        // Reserved bits without an extension, or an unmasked client frame, break the RFC.
        if head[0] & 0x70 != 0 || !masked {
            return CLOSE_PROTOCOL;
        }
        let len = match head[1] & 0x7F {
            126 => {
                let mut b = [0u8; 2];
                if rd.read_exact(&mut b).await.is_err() {
                    return CLOSE_NORMAL;
                }
                u64::from(u16::from_be_bytes(b))
            }
            127 => {
                let mut b = [0u8; 8];
                if rd.read_exact(&mut b).await.is_err() {
                    return CLOSE_NORMAL;
                }
                u64::from_be_bytes(b)
            }
            n => u64::from(n),
        };
        let mut mask = [0u8; 4];
        if rd.read_exact(&mut mask).await.is_err() {
            return CLOSE_NORMAL;
        }
        match op {
            OP_CONTINUATION | OP_TEXT | OP_BINARY => {
                let mut left = len;
                let mut at = 0usize;
                while left > 0 {
                    let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    let n = match rd.read(&mut buf[..want]).await {
                        Ok(0) | Err(_) => return CLOSE_NORMAL,
                        Ok(n) => n,
                    };
                    for b in &mut buf[..n] {
                        *b ^= mask[at % 4];
                        at += 1;
                    }
                    left -= n as u64;
                    // Input the session no longer takes is read and dropped, so pings and
                    // the close still get through.
                    if stdin_open && stdin.write_all(&buf[..n]).await.is_err() {
                        stdin_open = false;
                    }
                }
            }
            OP_CLOSE | OP_PING | OP_PONG => {
                if len > 125 {
                    return CLOSE_PROTOCOL;
                }
                let mut payload = vec![0u8; len as usize];
                if rd.read_exact(&mut payload).await.is_err() {
                    return CLOSE_NORMAL;
                }
                for (i, b) in payload.iter_mut().enumerate() {
                    *b ^= mask[i % 4];
                }
                match op {
                    OP_CLOSE => {
                        return payload
                            .get(..2)
                            .map_or(CLOSE_NORMAL, |c| u16::from_be_bytes([c[0], c[1]]));
                    }
                    OP_PING => {
                        let pong = frame(OP_PONG, &payload);
                        if ws_wr.lock().await.write_all(&pong).await.is_err() {
                            return CLOSE_NORMAL;
                        }
                    }
                    _ => {}
                }
            }
            _ => return CLOSE_PROTOCOL,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_is_the_rfc_example() {
        // RFC 6455, section 1.3.
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn frame_lengths_use_the_short_and_extended_forms() {
        assert_eq!(frame(OP_BINARY, b"hi"), vec![0x82, 2, b'h', b'i']);
        let mid = frame(OP_TEXT, &[0u8; 300]);
        assert_eq!(&mid[..4], &[0x81, 126, 1, 44]);
        assert_eq!(mid.len(), 304);
        let big = frame(OP_BINARY, &vec![0u8; 70_000]);
        assert_eq!(big[1], 127);
        assert_eq!(u64::from_be_bytes(big[2..10].try_into().unwrap()), 70_000);
    }

    fn client_frame(op: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1u8, 2, 3, 4];
        let mut out = vec![0x80 | op];
        assert!(payload.len() < 126);
        out.push(0x80 | payload.len() as u8);
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    #[tokio::test]
    async fn client_frames_reach_stdin_pings_are_answered_and_close_is_echoed() {
        let mut wire = client_frame(OP_TEXT, b"hello ");
        wire.extend(client_frame(OP_PING, b"p"));
        wire.extend(client_frame(OP_BINARY, b"world"));
        wire.extend(client_frame(OP_CLOSE, &1001u16.to_be_bytes()));
        wire.extend(client_frame(OP_BINARY, b"after close"));
        let mut stdin = Vec::new();
        let out = Mutex::new(Vec::new());
        let code = read_frames(&mut wire.as_slice(), &mut stdin, &out).await;
        assert_eq!(code, 1001);
        assert_eq!(stdin, b"hello world");
        assert_eq!(*out.lock().await, frame(OP_PONG, b"p"));
    }

    #[tokio::test]
    async fn unmasked_or_oversized_control_frames_are_protocol_errors() {
        let mut stdin = Vec::new();
        let out = Mutex::new(Vec::new());
        let unmasked = frame(OP_BINARY, b"x");
        assert_eq!(
            read_frames(&mut unmasked.as_slice(), &mut stdin, &out).await,
            CLOSE_PROTOCOL
        );
        let mut big_ping = vec![0x80 | OP_PING, 0x80 | 126, 0, 200, 0, 0, 0, 0];
        big_ping.extend(vec![0u8; 200]);
        assert_eq!(
            read_frames(&mut big_ping.as_slice(), &mut stdin, &out).await,
            CLOSE_PROTOCOL
        );
        let truncated = [0x80 | OP_BINARY, 0x80 | 127, 0xFF];
        assert_eq!(
            read_frames(&mut truncated.as_slice(), &mut stdin, &out).await,
            CLOSE_NORMAL
        );
        assert!(stdin.is_empty());
    }

    #[test]
    fn a_request_without_the_upgrade_is_not_websocket_protocol() {
        let mut h = hyper::HeaderMap::new();
        assert!(handshake_key(&h).is_err());
        h.insert(hyper::header::UPGRADE, "WebSocket".parse().unwrap());
        h.insert(
            hyper::header::CONNECTION,
            "keep-alive, Upgrade".parse().unwrap(),
        );
        assert!(handshake_key(&h).is_err(), "no key");
        h.insert(
            hyper::header::SEC_WEBSOCKET_KEY,
            "dGhlIHNhbXBsZSBub25jZQ==".parse().unwrap(),
        );
        h.insert(hyper::header::SEC_WEBSOCKET_VERSION, "13".parse().unwrap());
        assert_eq!(handshake_key(&h).unwrap(), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        h.insert(hyper::header::SEC_WEBSOCKET_VERSION, "8".parse().unwrap());
        assert!(handshake_key(&h).is_err());
    }
}
