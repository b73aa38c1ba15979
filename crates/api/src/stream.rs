//! Docker's multiplexed stdio framing (`application/vnd.docker.multiplexed-stream`): each frame
//! is `[stream, 0, 0, 0, len_be_u32]` followed by `len` bytes; stream 0 stdin, 1 stdout, 2 stderr.

/// The stream a frame belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StdStream {
    Stdin = 0,
    Stdout = 1,
    Stderr = 2,
}

/// Encodes one frame header + payload.
pub fn encode_frame(stream: StdStream, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + payload.len());
    out.push(stream as u8);
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Incremental decoder of multiplexed frames.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
}

impl FrameDecoder {
    /// Feeds bytes; returns every complete frame decoded so far.
    pub fn push(&mut self, data: &[u8]) -> Vec<(u8, Vec<u8>)> {
        self.buf.extend_from_slice(data);
        let mut frames = Vec::new();
        loop {
            if self.buf.len() < 8 {
                break;
            }
            let len =
                u32::from_be_bytes([self.buf[4], self.buf[5], self.buf[6], self.buf[7]]) as usize;
            if self.buf.len() < 8 + len {
                break;
            }
            let stream = self.buf[0];
            let payload = self.buf[8..8 + len].to_vec();
            self.buf.drain(..8 + len);
            frames.push((stream, payload));
        }
        frames
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_across_split_reads() {
        let mut wire = encode_frame(StdStream::Stdout, b"hello");
        wire.extend(encode_frame(StdStream::Stderr, b""));
        wire.extend(encode_frame(StdStream::Stderr, b"err"));
        let mut dec = FrameDecoder::default();
        let mut got = Vec::new();
        for chunk in wire.chunks(3) {
            got.extend(dec.push(chunk));
        }
        assert_eq!(
            got,
            vec![(1, b"hello".to_vec()), (2, vec![]), (2, b"err".to_vec())]
        );
    }
}
