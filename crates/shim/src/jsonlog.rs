//! Docker's `json-file` log format: one JSON object per line,
//! `{"log":"text\n","stream":"stdout","time":"2024-01-02T03:04:05.123456789Z"}`, with
//! `max-size`/`max-file` rotation (`<log>`, `<log>.1`, ... oldest last).
//!
//! The shim writes ([`LogWriter`]); the engine reads ([`read_all`], [`Follower`]).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

/// A partial line longer than this is written out as is, as Docker does (16 KiB).
const MAX_PARTIAL: usize = 16 * 1024;

/// Which output stream a log entry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One line of the log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub log: String,
    pub stream: Stream,
    /// The container's log attributes (`--log-opt labels/env/tag`), on every line as moby
    /// writes them; none without such options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attrs: Option<BTreeMap<String, String>>,
    pub time: DateTime<Utc>,
}

impl Entry {
    fn to_line(&self, attrs: &BTreeMap<String, String>) -> Vec<u8> {
        #[derive(Serialize)]
        struct Wire<'a> {
            log: &'a str,
            stream: Stream,
            #[serde(skip_serializing_if = "BTreeMap::is_empty")]
            attrs: &'a BTreeMap<String, String>,
            time: String,
        }
        let wire = Wire {
            log: &self.log,
            stream: self.stream,
            attrs,
            time: self.time.to_rfc3339_opts(SecondsFormat::Nanos, true),
        };
        let mut line = serde_json::to_vec(&wire).unwrap_or_default();
        line.push(b'\n');
        line
    }
}

/// Appends entries to the log, splitting output into lines and rotating.
pub struct LogWriter {
    path: PathBuf,
    file: File,
    size: u64,
    max_size: u64,
    max_file: u32,
    partial: [Vec<u8>; 2],
    attrs: BTreeMap<String, String>,
}

impl LogWriter {
    /// Opens (appends to) the log at `path`.
    pub fn open(path: &Path, max_size: u64, max_file: u32) -> io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path: path.to_owned(),
            file,
            size,
            max_size,
            max_file: max_file.max(1),
            partial: [Vec::new(), Vec::new()],
            attrs: BTreeMap::new(),
        })
    }

    /// Writes these attributes into every line (moby's `attrs`).
    pub fn with_attrs(mut self, attrs: BTreeMap<String, String>) -> Self {
        self.attrs = attrs;
        self
    }

    /// Logs output bytes from `stream`: each complete line becomes an entry; a trailing partial
    /// line waits for its end (or for [`LogWriter::flush`]).
    pub fn write(&mut self, stream: Stream, data: &[u8]) -> io::Result<()> {
        let idx = stream as usize;
        let mut buf = std::mem::take(&mut self.partial[idx]);
        buf.extend_from_slice(data);
        let mut start = 0;
        while let Some(pos) = buf[start..].iter().position(|&b| b == b'\n') {
            let end = start + pos + 1;
            self.append(stream, &buf[start..end])?;
            start = end;
        }
        let rest = &buf[start..];
        if rest.len() >= MAX_PARTIAL {
            self.append(stream, rest)?;
        } else {
            self.partial[idx] = rest.to_vec();
        }
        Ok(())
    }

    /// Writes out pending partial lines (at exit).
    pub fn flush(&mut self) -> io::Result<()> {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let rest = std::mem::take(&mut self.partial[stream as usize]);
            if !rest.is_empty() {
                self.append(stream, &rest)?;
            }
        }
        self.file.flush()
    }

    fn append(&mut self, stream: Stream, text: &[u8]) -> io::Result<()> {
        let entry = Entry {
            log: String::from_utf8_lossy(text).into_owned(),
            stream,
            attrs: None,
            time: Utc::now(),
        };
        let line = entry.to_line(&self.attrs);
        // As moby's: a file is rotated once it has reached `max-size`, before the next entry,
        // so the entry that crosses the size stays in it.
        if self.max_size > 0 && self.size >= self.max_size {
            self.rotate()?;
        }
        self.file.write_all(&line)?;
        self.size += line.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        if self.max_file <= 1 {
            self.file.set_len(0)?;
            self.size = 0;
            return Ok(());
        }
        for n in (1..self.max_file).rev() {
            let from = if n == 1 {
                self.path.clone()
            } else {
                rotated(&self.path, n - 1)
            };
            let to = rotated(&self.path, n);
            match std::fs::rename(&from, &to) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

fn parse_lines(reader: impl Read, out: &mut Vec<Entry>) {
    for line in BufReader::new(reader).split(b'\n').map_while(Result::ok) {
        if let Ok(entry) = serde_json::from_slice::<Entry>(&line) {
            out.push(entry);
        }
    }
}

/// Reads every entry of the log and its rotated files, oldest first. A missing log is empty.
pub fn read_all(path: &Path) -> io::Result<Vec<Entry>> {
    let mut out = Vec::new();
    let mut n = 1;
    let mut olds = Vec::new();
    while rotated(path, n).exists() {
        olds.push(rotated(path, n));
        n += 1;
    }
    for old in olds.iter().rev() {
        if let Ok(f) = File::open(old) {
            parse_lines(f, &mut out);
        }
    }
    match File::open(path) {
        Ok(f) => parse_lines(f, &mut out),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    Ok(out)
}

/// Follows the live log file from a position, across rotations.
pub struct Follower {
    path: PathBuf,
    offset: u64,
    inode: u64,
    pending: Vec<u8>,
}

impl Follower {
    /// Starts following at the current end of the log.
    pub fn at_end(path: &Path) -> Self {
        let (offset, inode) = match std::fs::metadata(path) {
            Ok(m) => (m.len(), m.ino()),
            Err(_) => (0, 0),
        };
        Self {
            path: path.to_owned(),
            offset,
            inode,
            pending: Vec::new(),
        }
    }

    /// Entries written since the last call.
    pub fn read_new(&mut self) -> io::Result<Vec<Entry>> {
        let mut out = Vec::new();
        let meta = match std::fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e),
        };
        if meta.ino() != self.inode || meta.len() < self.offset {
            // Rotated or truncated: finish the old file if it is still there, then start over.
            if meta.ino() != self.inode {
                let old = rotated(&self.path, 1);
                if let Ok(mut f) = File::open(&old) {
                    if f.metadata().map(|m| m.ino()).unwrap_or(0) == self.inode {
                        self.drain(&mut f, &mut out)?;
                    }
                }
            }
            self.inode = meta.ino();
            self.offset = 0;
            self.pending.clear();
        }
        if meta.len() > self.offset {
            let mut f = File::open(&self.path)?;
            self.drain(&mut f, &mut out)?;
        }
        Ok(out)
    }

    fn drain(&mut self, f: &mut File, out: &mut Vec<Entry>) -> io::Result<()> {
        f.seek(SeekFrom::Start(self.offset))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)?;
        self.offset += buf.len() as u64;
        self.pending.extend_from_slice(&buf);
        let mut start = 0;
        while let Some(pos) = self.pending[start..].iter().position(|&b| b == b'\n') {
            if let Ok(e) = serde_json::from_slice::<Entry>(&self.pending[start..start + pos]) {
                out.push(e);
            }
            start += pos + 1;
        }
        self.pending.drain(..start);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_dockers_format_and_splits_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let mut w = LogWriter::open(&path, 0, 1).unwrap();
        w.write(Stream::Stdout, b"hello\nwor").unwrap();
        w.write(Stream::Stderr, b"oops\n").unwrap();
        w.write(Stream::Stdout, b"ld\ntail").unwrap();
        w.flush().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(first["log"], "hello\n");
        assert_eq!(first["stream"], "stdout");
        assert!(first["time"].as_str().unwrap().ends_with('Z'));
        let logs: Vec<_> = read_all(&path)
            .unwrap()
            .into_iter()
            .map(|e| e.log)
            .collect();
        assert_eq!(logs, ["hello\n", "oops\n", "world\n", "tail"]);
    }

    #[test]
    fn rotation_keeps_max_file_and_reads_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.log");
        let mut w = LogWriter::open(&path, 200, 3).unwrap();
        for i in 0..20 {
            w.write(Stream::Stdout, format!("line {i}\n").as_bytes())
                .unwrap();
        }
        assert!(rotated(&path, 2).exists());
        assert!(!rotated(&path, 3).exists());
        let logs: Vec<_> = read_all(&path)
            .unwrap()
            .into_iter()
            .map(|e| e.log)
            .collect();
        assert_eq!(logs.last().unwrap(), "line 19\n");
        let nums: Vec<u32> = logs
            .iter()
            .map(|l| l.trim().trim_start_matches("line ").parse().unwrap())
            .collect();
        assert!(nums.windows(2).all(|w| w[1] == w[0] + 1), "{nums:?}");
    }

    #[test]
    fn a_file_rotates_once_it_has_reached_max_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.log");
        let mut w = LogWriter::open(&path, 1024, 2).unwrap();
        for i in 0..200 {
            w.write(Stream::Stdout, format!("line-{i}\n").as_bytes())
                .unwrap();
        }
        // The entry that crosses 1024 bytes stays in its file (dockerd's `.1` is 1026 bytes
        // of 13 such lines), so a full file is at least max-size and less than one entry more.
        let full = std::fs::read(rotated(&path, 1)).unwrap();
        let last_entry = full[..full.len() - 1]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(full.len(), |p| full.len() - p - 1);
        assert!(full.len() >= 1024, "{}", full.len());
        assert!(full.len() - last_entry < 1024, "{}", full.len());
        assert!(std::fs::metadata(&path).unwrap().len() < 1024 + last_entry as u64);
    }

    #[test]
    fn follower_sees_new_lines_across_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.log");
        let mut w = LogWriter::open(&path, 150, 2).unwrap();
        w.write(Stream::Stdout, b"before\n").unwrap();
        let mut f = Follower::at_end(&path);
        let mut seen = Vec::new();
        for i in 0..10 {
            w.write(Stream::Stdout, format!("n{i}\n").as_bytes())
                .unwrap();
            seen.extend(f.read_new().unwrap().into_iter().map(|e| e.log));
        }
        let want: Vec<String> = (0..10).map(|i| format!("n{i}\n")).collect();
        assert_eq!(seen, want);
    }
}
