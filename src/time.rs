//! Wall-clock time as oc-sync records it: milliseconds since the Unix epoch, shown in UTC.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Milliseconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format_ms(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Milliseconds since the epoch in this machine's local time, `YYYY-MM-DD HH:MM` (UTC, marked so,
/// where the local offset cannot be known).
pub fn format_local(ms: u64) -> String {
    match local_offset_secs(ms) {
        Some(offset) => {
            let shifted = (ms as i64 + offset * 1000).max(0) as u64;
            format_ms(shifted)[..16].replace('T', " ")
        }
        None => format!("{} UTC", &format_ms(ms)[..16].replace('T', " ")),
    }
}

/// How long ago `ms` was, as a person says it: "just now", "5 min ago", "3 h ago", "2 days ago".
pub fn ago(ms: u64, now: u64) -> String {
    let secs = now.saturating_sub(ms) / 1000;
    match secs {
        0..=59 => "just now".into(),
        60..=3_599 => format!("{} min ago", secs / 60),
        3_600..=172_799 => format!("{} h ago", secs / 3_600),
        _ => format!("{} days ago", secs / 86_400),
    }
}

/// The local UTC offset at `ms`, in seconds (the C library's view: `TZ`, else /etc/localtime).
#[cfg(unix)]
fn local_offset_secs(ms: u64) -> Option<i64> {
    let t: libc::time_t = (ms / 1000).try_into().ok()?;
    // SAFETY: localtime_r only writes the `tm` we own; both pointers are valid for the call.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = unsafe { !libc::localtime_r(&t, &mut tm).is_null() };
    ok.then_some(tm.tm_gmtoff as i64)
}

#[cfg(not(unix))]
fn local_offset_secs(_ms: u64) -> Option<i64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc() {
        assert_eq!(format_ms(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_ms(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(format_ms(1_796_558_399_999), "2026-12-06T11:59:59Z");
    }

    #[test]
    fn says_how_long_ago() {
        let now = 1_796_558_400_000;
        assert_eq!(ago(now - 5_000, now), "just now");
        assert_eq!(ago(now - 5 * 60_000, now), "5 min ago");
        assert_eq!(ago(now - 3 * 3_600_000, now), "3 h ago");
        assert_eq!(ago(now - 3 * 86_400_000, now), "3 days ago");
        assert_eq!(ago(now + 1_000, now), "just now", "a clock ahead is not in the future");
    }

    #[test]
    fn local_time_has_minutes() {
        let s = format_local(1_796_558_400_000);
        assert!(s.starts_with("2026-12-0") && s.len() >= 16, "{s}");
    }
}
