//! Keeping the shim's (and the daemon's) resident set small.
//!
//! The shim starts like any dynamically linked program: the loader, libc's start-up code and
//! the shim's own set-up (configuration, the runtime helper) fault in code and constant data
//! that its supervise loop never touches again; so do runtime operations (an exec, a pause)
//! later. Those pages would stay mapped, and counted in its RSS, for the container's whole
//! life. [`release_clean_file_pages`] drops them from the page tables. It releases only clean,
//! read-only, private file mappings (code and constant data: the kernel maps the same
//! page-cache pages back on the next touch), never a page the process wrote (relocated data,
//! heap, stack), so nothing can be lost.

/// The resident set an idle shim keeps under: past it, it releases its clean file pages at an
/// idle tick. The idle supervise loop's own working set is about 0.6 to 0.9 MiB.
pub const IDLE_BUDGET: u64 = 1 << 20;

/// The resident set a busy shim keeps under: past it, it releases them at the first idle moment
/// after a runtime operation (always so after the start, which leaves about 2.4 MiB). Below it,
/// repeated operations keep the pages they use rather than fault them back in every time:
/// everything the shim ever does (exec with and without a tty, pause, attach, logs) fits in
/// about 1.35 MiB.
pub const BUSY_BUDGET: u64 = (1 << 20) * 7 / 5;

/// The process's resident set in bytes (`/proc/self/statm`). Read with raw system calls into
/// a stack buffer: the shim checks it at every idle tick, and this keeps the check itself from
/// holding code pages resident.
pub fn resident_bytes() -> Option<u64> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::open(
        "/proc/self/statm",
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let mut buf = [0u8; 128];
    let n = rustix::io::read(&fd, &mut buf).ok()?;
    let statm = std::str::from_utf8(&buf[..n]).ok()?;
    let pages: u64 = statm.split_ascii_whitespace().nth(1)?.parse().ok()?;
    Some(pages * rustix::param::page_size() as u64)
}

/// Drops the clean file-backed pages the shim mapped so far, and returns free heap to the
/// kernel. Whatever the loop still needs faults back in from the page cache.
pub fn release_clean_file_pages() {
    if let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") {
        for (start, end) in clean_file_mappings(&smaps) {
            // SAFETY: `start..end` is a whole private, read-only file mapping of this process
            // without a single anonymous (copied-on-write) page, so its pages are exactly the
            // file's page-cache pages: dropping them from the page tables loses nothing, and the
            // next access maps the same contents back. Nothing in the shim (single-threaded)
            // or the daemon (no code that changes mapping protections) makes the mapping
            // writable between reading smaps and this call.
            let _ = unsafe {
                rustix::mm::madvise(
                    start as *mut std::ffi::c_void,
                    end - start,
                    rustix::mm::Advice::LinuxDontNeed,
                )
            };
        }
    }
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only hands free memory of the allocator back to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The `start..end` ranges of the private, non-writable file mappings in `smaps` (the format of
/// `/proc/<pid>/smaps`) that hold no anonymous pages.
fn clean_file_mappings(smaps: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    // The last header's range, while it is a candidate waiting for its `Anonymous:` line.
    let mut candidate = None;
    for line in smaps.lines() {
        if let Some(header) = mapping_header(line) {
            candidate = header;
        } else if let Some(anon) = line.strip_prefix("Anonymous:") {
            if let Some(range) = candidate.take() {
                if anon.trim() == "0 kB" {
                    out.push(range);
                }
            }
        }
    }
    out
}

/// Parses a mapping header (`start-end perms offset dev inode [path]`): `None` when `line` is
/// not one; `Some(Some(range))` for a private, non-writable mapping of a file.
fn mapping_header(line: &str) -> Option<Option<(usize, usize)>> {
    let mut fields = line.split_ascii_whitespace();
    let (start, end) = fields.next()?.split_once('-')?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    let perms = fields.next()?.as_bytes();
    let _offset = fields.next()?;
    let _dev = fields.next()?;
    let inode = fields.next()?;
    let path = fields.next();
    if perms.len() != 4 || end <= start {
        return None;
    }
    let clean_file = perms[1] != b'w'
        && perms[3] == b'p'
        && inode != "0"
        && path.is_some_and(|p| p.starts_with('/'));
    Some(clean_file.then_some((start, end)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55d0c5a00000-55d0c5a10000 r--p 00000000 fe:00 5653919                    /usr/bin/berth-shim
Size:                 64 kB
Rss:                  64 kB
Anonymous:             0 kB
VmFlags: rd mr mw me dw sd
55d0c5a10000-55d0c5a80000 r-xp 00010000 fe:00 5653919                    /usr/bin/berth-shim
Size:                448 kB
Anonymous:             0 kB
55d0c5a80000-55d0c5a90000 r--p 00080000 fe:00 5653919                    /usr/bin/berth-shim
Size:                 64 kB
Anonymous:            64 kB
55d0c5a90000-55d0c5a92000 rw-p 00090000 fe:00 5653919                    /usr/bin/berth-shim
Anonymous:             8 kB
55d0c6000000-55d0c6021000 rw-p 00000000 00:00 0                          [heap]
Anonymous:           132 kB
7f0000000000-7f0000010000 r--s 00000000 00:05 1234                       /memfd:x (deleted)
Anonymous:             0 kB
7f0000100000-7f0000200000 r-xp 00026000 fe:00 326279                     /usr/lib/x86_64-linux-gnu/libc.so.6
Anonymous:             0 kB
7ffd00000000-7ffd00002000 r-xp 00000000 00:00 0                          [vdso]
Anonymous:             0 kB
";

    #[test]
    fn only_clean_private_read_only_file_mappings() {
        assert_eq!(
            clean_file_mappings(SMAPS),
            vec![
                (0x55d0c5a00000, 0x55d0c5a10000),
                (0x55d0c5a10000, 0x55d0c5a80000),
                (0x7f0000100000, 0x7f0000200000),
            ]
        );
    }

    #[test]
    fn reads_its_own_resident_set() {
        let rss = resident_bytes().unwrap();
        assert!(
            rss > 0 && rss.is_multiple_of(rustix::param::page_size() as u64),
            "{rss}"
        );
    }

    #[test]
    fn attribute_lines_are_not_headers() {
        assert_eq!(mapping_header("Rss:                  64 kB"), None);
        assert_eq!(mapping_header("VmFlags: rd mr mw me dw sd"), None);
        assert_eq!(mapping_header("THPeligible:    0"), None);
    }

    #[test]
    fn releasing_keeps_the_process_working() {
        let written: Vec<u64> = (0..10_000).collect();
        let before = clean_file_mappings(SMAPS);
        release_clean_file_pages();
        // Code and constants fault back in; data the process wrote is untouched.
        assert_eq!(clean_file_mappings(SMAPS), before);
        assert_eq!(written.iter().sum::<u64>(), 49_995_000);
    }
}
