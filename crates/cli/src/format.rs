//! Docker's human formatting helpers: durations ("About a minute"), sizes ("4.26MB"),
//! ellipsis truncation and a small `text/tabwriter` equivalent for tables.

use std::time::Duration;

/// Docker's `units.HumanDuration`: "Less than a second", "3 seconds", "About an hour"...
pub fn human_duration(d: Duration) -> String {
    let seconds = d.as_secs();
    let hours_f = d.as_secs_f64() / 3600.0;
    if seconds < 1 {
        return "Less than a second".to_owned();
    }
    if seconds == 1 {
        return "1 second".to_owned();
    }
    if seconds < 60 {
        return format!("{seconds} seconds");
    }
    let minutes = seconds / 60;
    if minutes == 1 {
        return "About a minute".to_owned();
    }
    if minutes < 60 {
        return format!("{minutes} minutes");
    }
    let hours = (hours_f + 0.5) as u64;
    if hours == 1 {
        return "About an hour".to_owned();
    }
    if hours < 48 {
        return format!("{hours} hours");
    }
    if hours < 24 * 7 * 2 {
        return format!("{} days", hours / 24);
    }
    if hours < 24 * 30 * 2 {
        return format!("{} weeks", hours / 24 / 7);
    }
    if hours < 24 * 365 * 2 {
        return format!("{} months", hours / 24 / 30);
    }
    format!("{} years", (hours_f as u64) / 24 / 365)
}

/// "N units ago" for a unix timestamp (seconds), relative to now.
pub fn since_unix(ts: i64) -> String {
    let now = chrono::Utc::now().timestamp();
    let secs = u64::try_from(now.saturating_sub(ts)).unwrap_or(0);
    format!("{} ago", human_duration(Duration::from_secs(secs)))
}

/// Go's `%.{prec}g` formatting of a float (shortest form, exponent for large/small values).
pub fn format_g(value: f64, prec: usize) -> String {
    if value == 0.0 || !value.is_finite() {
        return if value == 0.0 {
            "0".to_owned()
        } else {
            value.to_string()
        };
    }
    let prec = prec.max(1);
    // Round to `prec` significant digits via scientific formatting, then read the exponent.
    let sci = format!("{:.*e}", prec - 1, value);
    let (mantissa, exp) = match sci.split_once('e') {
        Some((m, e)) => (m.to_owned(), e.parse::<i32>().unwrap_or(0)),
        None => return sci,
    };
    if exp < -4 || exp >= prec as i32 {
        let m = trim_zeros(&mantissa);
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{m}e{sign}{:02}", exp.abs());
    }
    let decimals = (prec as i32 - 1 - exp).max(0) as usize;
    trim_zeros(&format!("{value:.decimals$}"))
}

fn trim_zeros(s: &str) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s.to_owned()
    }
}

/// Docker's `units.HumanSizeWithPrecision`: decimal units ("4.26MB").
pub fn human_size_prec(size: f64, prec: usize) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let (v, unit) = size_and_unit(size, 1000.0, &UNITS);
    format!("{}{unit}", format_g(v, prec))
}

/// Docker's `units.HumanSize` (4 significant digits).
pub fn human_size(size: f64) -> String {
    human_size_prec(size, 4)
}

/// Docker's `units.BytesSize`: binary units ("7.628GiB").
pub fn bytes_size(size: f64) -> String {
    const UNITS: [&str; 9] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];
    let (v, unit) = size_and_unit(size, 1024.0, &UNITS);
    format!("{}{unit}", format_g(v, 4))
}

fn size_and_unit<'a>(mut size: f64, base: f64, units: &[&'a str]) -> (f64, &'a str) {
    let mut i = 0;
    while size >= base && i + 1 < units.len() {
        size /= base;
        i += 1;
    }
    (size, units.get(i).copied().unwrap_or("B"))
}

/// Docker's `Ellipsis`: at most `max` characters, the last one `…` when cut.
pub fn ellipsis(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    if max == 0 {
        return String::new();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

/// The first 12 hex digits of an id, without its `sha256:` prefix.
pub fn short_id(id: &str) -> String {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    id.chars().take(12).collect()
}

/// Go's `strconv.Quote` for the characters that matter in commands.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A `text/tabwriter` with Docker's settings: cells are separated by `\t`, every column but
/// the last is padded to its widest cell plus `padding`, and at least `min_width`.
#[derive(Debug)]
pub struct TabWriter {
    min_width: usize,
    padding: usize,
    rows: Vec<Vec<String>>,
}

impl Default for TabWriter {
    fn default() -> Self {
        TabWriter::new(10, 3)
    }
}

impl TabWriter {
    /// A writer with Go's `minwidth` and `padding`.
    pub fn new(min_width: usize, padding: usize) -> Self {
        TabWriter {
            min_width,
            padding,
            rows: Vec::new(),
        }
    }

    /// Adds text; each line is a row, each `\t` ends a cell.
    pub fn write_text(&mut self, text: &str) {
        for line in text.split_terminator('\n') {
            self.rows
                .push(line.split('\t').map(str::to_owned).collect());
        }
    }

    /// Adds one row of cells.
    pub fn row<I: IntoIterator<Item = S>, S: Into<String>>(&mut self, cells: I) {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }

    /// The aligned text, one `\n`-terminated line per row.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = Vec::new();
        for row in &self.rows {
            // The last cell of a row is not terminated by a tab: it does not size a column.
            for (i, cell) in row.iter().enumerate().take(row.len().saturating_sub(1)) {
                let w = cell.chars().count() + self.padding;
                if widths.len() <= i {
                    widths.resize(i + 1, 0);
                }
                widths[i] = widths[i].max(w).max(self.min_width);
            }
        }
        let mut out = String::new();
        for row in &self.rows {
            let last = row.len().saturating_sub(1);
            for (i, cell) in row.iter().enumerate() {
                out.push_str(cell);
                if i < last {
                    let pad = widths
                        .get(i)
                        .copied()
                        .unwrap_or(0)
                        .saturating_sub(cell.chars().count());
                    out.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_like_docker() {
        let s = Duration::from_secs;
        assert_eq!(
            human_duration(Duration::from_millis(300)),
            "Less than a second"
        );
        assert_eq!(human_duration(s(1)), "1 second");
        assert_eq!(human_duration(s(45)), "45 seconds");
        assert_eq!(human_duration(s(90)), "About a minute");
        assert_eq!(human_duration(s(600)), "10 minutes");
        assert_eq!(human_duration(s(3600)), "About an hour");
        assert_eq!(human_duration(s(5 * 3600)), "5 hours");
        assert_eq!(human_duration(s(3 * 86400)), "3 days");
        assert_eq!(human_duration(s(21 * 86400)), "3 weeks");
        assert_eq!(human_duration(s(90 * 86400)), "3 months");
        assert_eq!(human_duration(s(3 * 365 * 86400)), "3 years");
    }

    #[test]
    fn sizes_like_docker() {
        assert_eq!(human_size_prec(4_257_000.0, 3), "4.26MB");
        assert_eq!(human_size_prec(0.0, 3), "0B");
        assert_eq!(human_size_prec(512.0, 3), "512B");
        assert_eq!(human_size_prec(1000.0, 3), "1kB");
        assert_eq!(human_size_prec(999_500.0, 3), "1e+03kB");
        assert_eq!(human_size(1_234_567.0), "1.235MB");
        assert_eq!(bytes_size(8_000_000_000.0), "7.451GiB");
        assert_eq!(format_g(0.5, 3), "0.5");
        assert_eq!(format_g(12.0, 3), "12");
    }

    #[test]
    fn ellipsis_and_quote() {
        assert_eq!(ellipsis("short", 20), "short");
        assert_eq!(
            ellipsis("sh -c 'while true; do sleep 1; done'", 20),
            "sh -c 'while true; …"
        );
        assert_eq!(go_quote("echo \"hi\""), "\"echo \\\"hi\\\"\"");
        assert_eq!(short_id("sha256:0123456789abcdef"), "0123456789ab");
    }

    #[test]
    fn tabwriter_like_docker() {
        let mut tw = TabWriter::default();
        tw.write_text("CONTAINER ID\tIMAGE\tNAMES\n0123456789ab\tbusybox\tx\n");
        assert_eq!(
            tw.render(),
            "CONTAINER ID   IMAGE     NAMES\n0123456789ab   busybox   x\n"
        );
    }
}
