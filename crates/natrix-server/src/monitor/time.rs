//! Time and duration text exactly as nats-server prints it: RFC 3339 UTC timestamps with
//! nanoseconds (Go's `time.RFC3339Nano`), Go's `Duration.String()` (used for `rtt`), and
//! nats-server's own coarse uptime format (`uptime`, `idle`).

use std::fmt::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `2024-03-01T12:34:56.123456789Z`; trailing zeros of the fraction dropped, and the fraction
/// omitted when it is zero, as Go does.
pub(crate) fn rfc3339_nano(t: SystemTime) -> String {
    // Times before 1970 do not occur in a running server; clamp rather than fail.
    let since_epoch = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since_epoch.as_secs();
    let nanos = since_epoch.subsec_nanos();
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    let mut out = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    );
    push_fraction(&mut out, u64::from(nanos), 9);
    out.push('Z');
    out
}

/// `2024/03/01 12:34:56.123456` (UTC, microseconds): the timestamp of nats-server's log lines.
pub fn log_timestamp(t: SystemTime) -> String {
    let since_epoch = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since_epoch.as_secs();
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{year:04}/{month:02}/{day:02} {:02}:{:02}:{:02}.{:06}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        since_epoch.subsec_micros()
    )
}

/// Proleptic Gregorian (year, month, day) of a day count since 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March-based
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Appends `.ddd` (`digits` wide, trailing zeros removed) unless `frac` is zero.
fn push_fraction(out: &mut String, frac: u64, digits: usize) {
    if frac == 0 {
        return;
    }
    let text = format!("{frac:0digits$}");
    out.push('.');
    out.push_str(text.trim_end_matches('0'));
}

/// Go's `time.Duration.String()`: `0s`, `750ns`, `530µs`, `1.5ms`, `2.25s`, `1m0.5s`, `2h0m0s`.
pub(crate) fn go_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    let mut out = String::new();
    if ns == 0 {
        return "0s".to_string();
    }
    if ns < 1_000 {
        let _ = write!(out, "{ns}ns");
    } else if ns < 1_000_000 {
        let _ = write!(out, "{}", ns / 1_000);
        push_fraction(&mut out, (ns % 1_000) as u64, 3);
        out.push_str("µs");
    } else if ns < 1_000_000_000 {
        let _ = write!(out, "{}", ns / 1_000_000);
        push_fraction(&mut out, (ns % 1_000_000) as u64, 6);
        out.push_str("ms");
    } else {
        let secs = d.as_secs();
        let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
        if h > 0 {
            let _ = write!(out, "{h}h");
        }
        if h > 0 || m > 0 {
            let _ = write!(out, "{m}m");
        }
        let _ = write!(out, "{s}");
        push_fraction(&mut out, u64::from(d.subsec_nanos()), 9);
        out.push('s');
    }
    out
}

/// nats-server's `myUptime`: whole seconds, with years, days, hours and minutes as needed
/// (`5s`, `1m2s`, `3h0m5s`, `2d1h0m0s`, `1y3d0h0m0s`).
pub(crate) fn uptime(d: Duration) -> String {
    let secs = d.as_secs();
    let (mins, hours) = (secs / 60, secs / 3600);
    let (days, years) = (hours / 24, hours / 24 / 365);
    if years > 0 {
        format!(
            "{years}y{}d{}h{}m{}s",
            days % 365,
            hours % 24,
            mins % 60,
            secs % 60
        )
    } else if days > 0 {
        format!("{days}d{}h{}m{}s", hours % 24, mins % 60, secs % 60)
    } else if hours > 0 {
        format!("{hours}h{}m{}s", mins % 60, secs % 60)
    } else if mins > 0 {
        format!("{mins}m{}s", secs % 60)
    } else {
        format!("{secs}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64, nanos: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, nanos)
    }

    #[test]
    fn log_timestamps_look_like_nats_server_log_lines() {
        assert_eq!(
            log_timestamp(at(1_709_296_496, 123_456_789)),
            "2024/03/01 12:34:56.123456"
        );
        assert_eq!(log_timestamp(at(0, 0)), "1970/01/01 00:00:00.000000");
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_trimmed_nanoseconds() {
        assert_eq!(rfc3339_nano(at(0, 0)), "1970-01-01T00:00:00Z");
        // Values cross-checked with `date -u -d @<secs>`.
        assert_eq!(
            rfc3339_nano(at(1_795_652_335, 61_374_355)),
            "2026-11-26T00:18:55.061374355Z"
        );
        assert_eq!(
            rfc3339_nano(at(1_795_652_335, 146_123_850)),
            "2026-11-26T00:18:55.14612385Z"
        );
        assert_eq!(
            rfc3339_nano(at(1_795_652_335, 500_000_000)),
            "2026-11-26T00:18:55.5Z"
        );
        assert_eq!(
            rfc3339_nano(at(951_782_400, 1)),
            "2000-02-29T00:00:00.000000001Z"
        );
        assert_eq!(rfc3339_nano(at(4_107_542_399, 0)), "2100-02-28T23:59:59Z");
        assert_eq!(rfc3339_nano(at(4_107_542_400, 0)), "2100-03-01T00:00:00Z");
        assert_eq!(
            rfc3339_nano(at(1_703_980_800 + 86_399, 0)),
            "2023-12-31T23:59:59Z"
        );
    }

    #[test]
    fn civil_dates_round_trip_every_day_for_four_centuries() {
        // Walk day by day from 1970 and compare against a naive calendar.
        let (mut y, mut m, mut d) = (1970i64, 1u32, 1u32);
        for days in 0..146_097 {
            assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let month_len = match m {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            d += 1;
            if d > month_len {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
    }

    #[test]
    fn durations_print_like_go() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_nanos(1), "1ns"),
            (Duration::from_nanos(999), "999ns"),
            (Duration::from_micros(530), "530µs"),
            (Duration::from_nanos(1_500), "1.5µs"),
            (Duration::from_micros(1_234), "1.234ms"),
            (Duration::from_nanos(1_234_567), "1.234567ms"),
            (Duration::from_millis(1_000), "1s"),
            (Duration::from_millis(2_250), "2.25s"),
            (Duration::from_millis(60_500), "1m0.5s"),
            (Duration::from_secs(3_600), "1h0m0s"),
            (Duration::from_secs(90_061), "25h1m1s"),
        ];
        for (d, text) in cases {
            assert_eq!(go_duration(d), text, "{d:?}");
        }
    }

    #[test]
    fn uptime_uses_the_largest_needed_unit() {
        assert_eq!(uptime(Duration::from_millis(999)), "0s");
        assert_eq!(uptime(Duration::from_secs(59)), "59s");
        assert_eq!(uptime(Duration::from_secs(62)), "1m2s");
        assert_eq!(uptime(Duration::from_secs(3_605)), "1h0m5s");
        assert_eq!(uptime(Duration::from_secs(2 * 86_400 + 3_600)), "2d1h0m0s");
        assert_eq!(uptime(Duration::from_secs(366 * 86_400)), "1y1d0h0m0s");
    }
}
