//! The text forms Go gives `metav1.Time` (RFC 3339, seconds), `metav1.MicroTime` (RFC 3339,
//! six fractional digits) and `metav1.Duration` (`time.Duration.String()`), both ways.

/// Seconds between 0001-01-01T00:00:00Z, Go's zero `time.Time`, and the Unix epoch.
pub(crate) const GO_ZERO_UNIX: i64 = -62_135_596_800;

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Formats Unix seconds (and, when `micros`, the microseconds of `nanos`) in UTC. Go refuses to
/// marshal years outside 0..=9999, so do we.
pub(crate) fn format_time(seconds: i64, nanos: i32, micros: bool) -> Option<String> {
    let days = seconds.div_euclid(86_400);
    let secs = seconds.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    if !(0..=9999).contains(&y) {
        return None;
    }
    let (hh, mm, ss) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut s = format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}");
    if micros {
        let us = nanos.clamp(0, 999_999_999) / 1000;
        s.push_str(&format!(".{us:06}"));
    }
    s.push('Z');
    Some(s)
}

/// Parses an RFC 3339 timestamp into Unix seconds and nanoseconds.
pub(crate) fn parse_time(s: &str) -> Option<(i64, i32)> {
    let b = s.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<u32> {
        let part = b.get(range)?;
        if part.iter().all(u8::is_ascii_digit) {
            std::str::from_utf8(part).ok()?.parse().ok()
        } else {
            None
        }
    };
    let year = i64::from(num(0..4)?);
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') || b.get(13) != Some(&b':') {
        return None;
    }
    if !matches!(b.get(10), Some(b'T' | b't')) || b.get(16) != Some(&b':') {
        return None;
    }
    let (month, day) = (num(5..7)?, num(8..10)?);
    let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || min > 59 || sec > 59 {
        return None;
    }
    let mut pos = 19;
    let mut nanos: i64 = 0;
    if b.get(pos) == Some(&b'.') {
        pos += 1;
        let start = pos;
        while b.get(pos).is_some_and(u8::is_ascii_digit) {
            if pos - start < 9 {
                nanos = nanos * 10 + i64::from(b[pos] - b'0');
            }
            pos += 1;
        }
        let digits = pos - start;
        if digits == 0 {
            return None;
        }
        for _ in digits..9 {
            nanos *= 10;
        }
    }
    let offset: i64 = match b.get(pos) {
        Some(b'Z' | b'z') if pos + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) if pos + 6 == b.len() && b[pos + 3] == b':' => {
            let (oh, om) = (num(pos + 1..pos + 3)?, num(pos + 4..pos + 6)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let off = i64::from(oh * 3600 + om * 60);
            if *sign == b'-' {
                -off
            } else {
                off
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let seconds =
        days * 86_400 + i64::from(hour) * 3600 + i64::from(min) * 60 + i64::from(sec) - offset;
    Some((seconds, nanos as i32))
}

/// Appends `value / 10^digits` with its fraction, trailing zeros trimmed, as Go prints.
fn push_fraction(out: &mut String, value: u64, digits: u32) {
    let scale = 10u64.pow(digits);
    out.push_str(&(value / scale).to_string());
    let frac = value % scale;
    if frac != 0 {
        let text = format!("{frac:0width$}", width = digits as usize);
        out.push('.');
        out.push_str(text.trim_end_matches('0'));
    }
}

/// Go's `time.Duration.String()`: "1h2m3.5s", "1m0s", "1.5ms", "0s".
pub(crate) fn format_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    if nanos < 0 {
        out.push('-');
    }
    let u = nanos.unsigned_abs();
    if u < 1_000_000_000 {
        let (digits, unit) = if u < 1_000 {
            (0, "ns")
        } else if u < 1_000_000 {
            (3, "\u{b5}s")
        } else {
            (6, "ms")
        };
        push_fraction(&mut out, u, digits);
        out.push_str(unit);
        return out;
    }
    let total_secs = u / 1_000_000_000;
    let hours = total_secs / 3600;
    let mins = total_secs / 60 % 60;
    if hours > 0 {
        out.push_str(&format!("{hours}h{mins}m"));
    } else if mins > 0 {
        out.push_str(&format!("{mins}m"));
    }
    push_fraction(&mut out, u % 60_000_000_000, 9);
    out.push('s');
    out
}

/// Go's `time.ParseDuration`: a sequence of decimal numbers with units ns, us, µs, ms, s, m, h.
pub(crate) fn parse_duration(s: &str) -> Option<i64> {
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let mut whole: u64 = 0;
        for c in rest[..int_len].bytes() {
            whole = whole.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
        }
        rest = &rest[int_len..];
        let mut frac: u64 = 0;
        let mut frac_scale: u64 = 1;
        let mut frac_len = 0;
        if let Some(after) = rest.strip_prefix('.') {
            frac_len = after.bytes().take_while(u8::is_ascii_digit).count();
            for c in after[..frac_len].bytes() {
                // Digits beyond nanosecond precision of the largest unit cannot matter.
                if frac_scale < 1_000_000_000_000_000 {
                    frac = frac * 10 + u64::from(c - b'0');
                    frac_scale *= 10;
                }
            }
            rest = &after[frac_len..];
        }
        if int_len == 0 && frac_len == 0 {
            return None;
        }
        let unit_len = rest
            .char_indices()
            .find(|(_, c)| *c == '.' || c.is_ascii_digit())
            .map_or(rest.len(), |(i, _)| i);
        let unit: u64 = match &rest[..unit_len] {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        rest = &rest[unit_len..];
        let mut value = whole.checked_mul(unit)?;
        if frac > 0 {
            let part = (frac as u128 * unit as u128 / frac_scale as u128) as u64;
            value = value.checked_add(part)?;
        }
        total = total.checked_add(value)?;
    }
    if neg {
        if total > i64::MAX as u64 + 1 {
            return None;
        }
        Some((total as i128).wrapping_neg() as i64)
    } else {
        i64::try_from(total).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip() {
        let (s, n) = parse_time("2024-01-02T03:04:05Z").unwrap();
        assert_eq!((s, n), (1_704_164_645, 0));
        assert_eq!(format_time(s, 0, false).unwrap(), "2024-01-02T03:04:05Z");
        assert_eq!(format_time(0, 0, false).unwrap(), "1970-01-01T00:00:00Z");
        assert_eq!(
            format_time(GO_ZERO_UNIX, 0, false).unwrap(),
            "0001-01-01T00:00:00Z"
        );
        let (s, n) = parse_time("2024-02-29T23:59:59.123456789+01:30").unwrap();
        assert_eq!(
            format_time(s, n, true).unwrap(),
            "2024-02-29T22:29:59.123456Z"
        );
        assert_eq!(parse_time("2023-02-29T00:00:00Z"), None);
        assert_eq!(parse_time("2023-01-01 00:00:00Z"), None);
        assert_eq!(parse_time("2023-01-01T00:00:00"), None);
        assert_eq!(parse_time(""), None);
        assert_eq!(parse_time("2023-01-01T00:00:00.Z"), None);
        assert_eq!(format_time(i64::MAX / 2, 0, false), None);
    }

    #[test]
    fn durations_print_like_go() {
        for (nanos, text) in [
            (0, "0s"),
            (1, "1ns"),
            (1_100, "1.1\u{b5}s"),
            (2_200_000, "2.2ms"),
            (1_000_000_000, "1s"),
            (1_500_000_000, "1.5s"),
            (60_000_000_000, "1m0s"),
            (3_600_000_000_000, "1h0m0s"),
            (3_723_000_000_000, "1h2m3s"),
            (-90_000_000_000, "-1m30s"),
            (i64::MIN, "-2562047h47m16.854775808s"),
        ] {
            assert_eq!(format_duration(nanos), text);
            assert_eq!(parse_duration(text), Some(nanos), "{text}");
        }
        assert_eq!(parse_duration("1h30m"), Some(5_400_000_000_000));
        assert_eq!(parse_duration("1.5h"), Some(5_400_000_000_000));
        assert_eq!(parse_duration("300us"), Some(300_000));
        assert_eq!(parse_duration("1\u{3bc}s"), Some(1_000));
        assert_eq!(parse_duration("1"), None);
        assert_eq!(parse_duration("h"), None);
        assert_eq!(parse_duration(""), None);
        assert_eq!(parse_duration("99999999999999999999h"), None);
    }
}
