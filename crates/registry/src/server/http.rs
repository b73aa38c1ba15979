//! HTTP plumbing shared by the handlers: the response body type, response building, error
//! responses, query strings, `Range` headers and streaming a file region as a body.

use std::io;

use bytes::{Bytes, BytesMut};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::Frame;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderName, HeaderValue};
use hyper::{Response, StatusCode};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::error::ApiError;

/// The body of every response.
pub(crate) type Body = UnsyncBoxBody<Bytes, io::Error>;

/// Read size when streaming a blob.
const CHUNK: usize = 64 * 1024;

pub(crate) fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub(crate) fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// A response under construction.
pub(crate) struct Reply(Response<Body>);

impl Reply {
    pub(crate) fn new(status: StatusCode) -> Reply {
        let mut r = Response::new(empty());
        *r.status_mut() = status;
        Reply(r)
    }

    /// Adds a header; values are built from validated names and digests, so an invalid value
    /// (which cannot happen) is dropped rather than panicking.
    pub(crate) fn header(mut self, name: HeaderName, value: impl AsRef<str>) -> Reply {
        if let Ok(v) = HeaderValue::from_str(value.as_ref()) {
            self.0.headers_mut().append(name, v);
        }
        self
    }

    pub(crate) fn named(self, name: &'static str, value: impl AsRef<str>) -> Reply {
        self.header(HeaderName::from_static(name), value)
    }

    pub(crate) fn status(mut self, status: StatusCode) -> Reply {
        *self.0.status_mut() = status;
        self
    }

    pub(crate) fn body(mut self, body: Body) -> Reply {
        *self.0.body_mut() = body;
        self
    }

    /// A JSON body with its length and content type.
    pub(crate) fn json(self, content_type: &str, bytes: Vec<u8>) -> Reply {
        let len = bytes.len();
        self.header(CONTENT_TYPE, content_type)
            .header(CONTENT_LENGTH, len.to_string())
            .body(full(bytes))
    }

    pub(crate) fn build(self) -> Response<Body> {
        self.0
    }
}

impl From<ApiError> for Response<Body> {
    fn from(e: ApiError) -> Response<Body> {
        let mut r = Reply::new(e.code.status()).json("application/json", e.body());
        if e.code == super::error::ErrorCode::Unauthorized {
            r = r.header(
                hyper::header::WWW_AUTHENTICATE,
                "Basic realm=\"berth-registry\"",
            );
        }
        r.build()
    }
}

/// The query string's pairs, percent-decoded; a malformed query reads as empty.
pub(crate) fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query
        .and_then(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(q).ok())
        .unwrap_or_default()
}

pub(crate) fn query_get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// The outcome of a `Range` header against a blob of a known size.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RangeRequest {
    /// No (usable) range: serve the whole blob.
    Full,
    /// Serve `start..=end`.
    Part { start: u64, end: u64 },
    /// The range lies outside the blob.
    Unsatisfiable,
}

/// Parses `bytes=a-b`, `bytes=a-` and `bytes=-n`. Multiple ranges and malformed headers are
/// ignored (the whole blob is served), as RFC 9110 allows.
pub(crate) fn parse_range(header: Option<&str>, size: u64) -> RangeRequest {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeRequest::Full;
    };
    if spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return RangeRequest::Full;
    };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        // Suffix range: the last n bytes.
        let Ok(n) = b.parse::<u64>() else {
            return RangeRequest::Full;
        };
        if n == 0 || size == 0 {
            return RangeRequest::Unsatisfiable;
        }
        return RangeRequest::Part {
            start: size.saturating_sub(n),
            end: size - 1,
        };
    }
    let Ok(start) = a.parse::<u64>() else {
        return RangeRequest::Full;
    };
    let end = if b.is_empty() {
        None
    } else {
        match b.parse::<u64>() {
            Ok(e) => Some(e),
            Err(_) => return RangeRequest::Full,
        }
    };
    if end.is_some_and(|e| e < start) {
        return RangeRequest::Full;
    }
    if start >= size {
        return RangeRequest::Unsatisfiable;
    }
    let end = end.map_or(size - 1, |e| e.min(size - 1));
    RangeRequest::Part { start, end }
}

/// Streams `len` bytes of `file` from `start`, a chunk at a time.
pub(crate) async fn file_body(mut file: tokio::fs::File, start: u64, len: u64) -> io::Result<Body> {
    if start > 0 {
        file.seek(io::SeekFrom::Start(start)).await?;
    }
    let stream = futures_util::stream::unfold((file, len), |(mut file, left)| async move {
        if left == 0 {
            return None;
        }
        let want = usize::try_from(left).unwrap_or(CHUNK).min(CHUNK);
        let mut buf = BytesMut::zeroed(want);
        match file.read(&mut buf).await {
            Ok(0) => Some((
                Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "blob shorter than recorded",
                )),
                (file, 0),
            )),
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Frame::data(buf.freeze())), (file, left - n as u64)))
            }
            Err(e) => Some((Err(e), (file, 0))),
        }
    });
    Ok(StreamBody::new(stream).boxed_unsync())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        use RangeRequest::*;
        assert_eq!(parse_range(None, 10), Full);
        assert_eq!(
            parse_range(Some("bytes=0-3"), 10),
            Part { start: 0, end: 3 }
        );
        assert_eq!(parse_range(Some("bytes=5-"), 10), Part { start: 5, end: 9 });
        assert_eq!(
            parse_range(Some("bytes=5-100"), 10),
            Part { start: 5, end: 9 }
        );
        assert_eq!(parse_range(Some("bytes=-3"), 10), Part { start: 7, end: 9 });
        assert_eq!(parse_range(Some("bytes=10-"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-1,3-4"), 10), Full);
        assert_eq!(parse_range(Some("bytes=x-"), 10), Full);
        assert_eq!(parse_range(Some("bytes=4-2"), 10), Full);
    }
}
