//! Docker's time values in filters and query parameters: Go durations (`1h30m`), Unix times
//! and RFC 3339 times. Shared by the server (filters) and the CLI (flags).

use chrono::{DateTime, Utc};

/// Parses a Go duration (`300ms`, `1.5h`, `2h45m`); `None` if it is not one.
pub fn parse_go_duration(s: &str) -> Option<std::time::Duration> {
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if n == 0 {
            return None;
        }
        let value: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..u] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += value * scale;
        rest = &rest[u..];
    }
    Some(std::time::Duration::from_secs_f64(total))
}

/// A Unix time ("seconds[.fraction]", parsed exactly: as f64 it would lose the nanoseconds
/// the docker CLI sends and miss the very entry a timestamp names) or an RFC 3339 time.
pub fn parse_time(v: &str) -> Option<DateTime<Utc>> {
    let (secs, frac) = v.split_once('.').unwrap_or((v, ""));
    if !secs.is_empty()
        && secs.bytes().all(|b| b.is_ascii_digit())
        && frac.len() <= 9
        && frac.bytes().all(|b| b.is_ascii_digit())
    {
        let s: i64 = secs.parse().ok()?;
        let nanos: u32 = format!("{frac:0<9}").parse().unwrap_or(0);
        return DateTime::from_timestamp(s, nanos);
    }
    DateTime::parse_from_rfc3339(v)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// A filter time (`until`, `since`): a time as [`parse_time`] reads it, or a Go duration
/// counted back from `now`.
pub fn parse_filter_time(v: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if let Some(t) = parse_time(v) {
        return Some(t);
    }
    let d = chrono::Duration::from_std(parse_go_duration(v)?).ok()?;
    Some(now - d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_times_like_docker() {
        let now = DateTime::parse_from_rfc3339("2026-11-23T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let t = |v: &str| parse_filter_time(v, now).map(|t| t.to_rfc3339());
        assert_eq!(t("1h30m").unwrap(), "2026-11-23T10:30:00+00:00");
        assert_eq!(t("90s").unwrap(), "2026-11-23T11:58:30+00:00");
        assert_eq!(t("1795348800").unwrap(), "2026-11-22T12:00:00+00:00");
        assert_eq!(
            t("2026-11-01T00:00:00Z").unwrap(),
            "2026-11-01T00:00:00+00:00"
        );
        assert_eq!(
            parse_filter_time("1795348800.000000001", now)
                .unwrap()
                .timestamp_subsec_nanos(),
            1
        );
        assert!(t("soon").is_none());
        assert!(t("5x").is_none());
    }
}
