//! Cron schedules as upstream parses them (robfig/cron's standard parser): five fields or a
//! descriptor, an optional `TZ=`/`CRON_TZ=` prefix, and the time zone given by the CronJob.

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan, Zoned};

#[derive(Debug, Clone)]
pub struct Schedule {
    minute: u64,
    hour: u64,
    dom: u64,
    month: u64,
    dow: u64,
    /// Whether day-of-month or day-of-week was a wildcard: then both must match, otherwise
    /// either may (the classic cron rule).
    dom_star: bool,
    dow_star: bool,
    tz: Option<TimeZone>,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

pub fn parse(text: &str) -> Result<Schedule, String> {
    let text = text.trim();
    let (tz, rest) = match text
        .strip_prefix("TZ=")
        .or_else(|| text.strip_prefix("CRON_TZ="))
    {
        Some(r) => {
            let (zone, rest) = r.split_once(' ').ok_or("missing fields after time zone")?;
            (
                Some(
                    TimeZone::get(zone)
                        .map_err(|e| format!("provided bad location {zone}: {e}"))?,
                ),
                rest.trim(),
            )
        }
        None => (None, text),
    };
    let expanded = match rest {
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * 0",
        "@daily" | "@midnight" => "0 0 * * *",
        "@hourly" => "0 * * * *",
        other if other.starts_with('@') => return Err(format!("unrecognized descriptor: {other}")),
        other => other,
    };
    let f: Vec<&str> = expanded.split_whitespace().collect();
    if f.len() != 5 {
        return Err(format!(
            "expected exactly 5 fields, found {}: {expanded}",
            f.len()
        ));
    }
    let star = |s: &str| s.starts_with('*') || s.starts_with('?');
    Ok(Schedule {
        minute: field(f[0], 0, 59, &[])?,
        hour: field(f[1], 0, 23, &[])?,
        dom: field(f[2], 1, 31, &[])?,
        month: field(f[3], 1, 12, &MONTHS)?,
        // Sunday may be written as 7.
        dow: {
            let b = field(f[4], 0, 6, &DAYS)?;
            (b & 0x7f) | ((b >> 7) & 1)
        },
        dom_star: star(f[2]),
        dow_star: star(f[4]),
        tz,
    })
}

/// A field as a bit set of allowed values; names count from `lo`.
fn field(text: &str, lo: u64, hi: u64, names: &[&str]) -> Result<u64, String> {
    let mut bits = 0u64;
    let hi = if names == DAYS { 7 } else { hi };
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<u64>()
                    .map_err(|_| format!("bad step in {part}"))?,
            ),
            None => (part, 1),
        };
        if step == 0 {
            return Err(format!("step of range should be a positive number: {part}"));
        }
        let value = |s: &str| -> Result<u64, String> {
            if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
                return Ok(i as u64 + lo);
            }
            s.parse::<u64>()
                .map_err(|_| format!("failed to parse int from {s}"))
        };
        let (a, b) = if range == "*" || range == "?" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a)?, value(b)?)
        } else {
            let v = value(range)?;
            (v, if part.contains('/') { hi } else { v })
        };
        if a < lo || b > hi || a > b {
            return Err(format!("value out of range ({lo} - {hi}): {part}"));
        }
        let mut v = a;
        while v <= b {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok(bits)
}

impl Schedule {
    fn day_matches(&self, d: DateTime) -> bool {
        let dom = self.dom & (1 << d.day()) != 0;
        let dow = self.dow & (1 << d.weekday().to_sunday_zero_offset()) != 0;
        if self.dom_star || self.dow_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The first activation strictly after `after`, in the schedule's zone (a `TZ=` prefix wins
    /// over `zone`); None when nothing matches within five years (e.g. February 30th).
    ///
    /// The walk mirrors robfig/cron, upstream's parser: hours and minutes advance in absolute
    /// time while days and months advance on the calendar. So a wall time inside a
    /// spring-forward gap never fires that day, and one inside a fall-back fold fires twice,
    /// exactly as upstream's CronJobs behave.
    pub fn next(&self, after: Timestamp, zone: &TimeZone) -> Option<Timestamp> {
        let tz = self.tz.clone().unwrap_or_else(|| zone.clone());
        let whole = after.as_second().checked_add(1)?;
        let mut t = Timestamp::from_second(whole).ok()?.to_zoned(tz.clone());
        let year_limit = t.year() + 5;
        // Once anything moved, lower fields restart from zero; before, they start from `t`.
        let mut added = false;
        let at = |z: &Zoned, day: i8, hour: i8| -> Option<Zoned> {
            let dt = DateTime::new(z.year(), z.month(), day, hour, 0, 0, 0).ok()?;
            tz.to_zoned(dt).ok()
        };
        'wrap: loop {
            if t.year() > year_limit {
                return None;
            }
            while self.month & (1 << t.month()) == 0 {
                if !added {
                    added = true;
                    t = at(&t, 1, 0)?;
                }
                t = t.checked_add(1.month()).ok()?;
                if t.month() == 1 {
                    continue 'wrap;
                }
            }
            while !self.day_matches(t.datetime()) {
                if !added {
                    added = true;
                    t = at(&t, t.day(), 0)?;
                }
                t = t.checked_add(1.day()).ok()?;
                // Landing on a DST transition can shift midnight; pull back to it.
                let h = i64::from(t.hour());
                if h > 12 {
                    t = t.checked_add((24 - h).hours()).ok()?;
                } else if h > 0 {
                    t = t.checked_sub(h.hours()).ok()?;
                }
                if t.day() == 1 {
                    continue 'wrap;
                }
            }
            while self.hour & (1 << t.hour()) == 0 {
                if !added {
                    added = true;
                    t = at(&t, t.day(), t.hour())?;
                }
                t = t.checked_add(1.hour()).ok()?;
                if t.hour() == 0 {
                    continue 'wrap;
                }
            }
            while self.minute & (1 << t.minute()) == 0 {
                if !added {
                    added = true;
                    t = t.checked_sub(i64::from(t.second()).seconds()).ok()?;
                }
                t = t.checked_add(1.minute()).ok()?;
                if t.minute() == 0 {
                    continue 'wrap;
                }
            }
            // Standard schedules fire at second zero only.
            if t.second() != 0 {
                added = true;
                t = t.checked_add((60 - i64::from(t.second())).seconds()).ok()?;
                continue 'wrap;
            }
            return Some(t.timestamp());
        }
    }
}

/// The latest activation in `(earliest, now]`, and how many fell in that window (upstream
/// warns past 100 missed starts).
pub fn most_recent(
    s: &Schedule,
    earliest: Timestamp,
    now: Timestamp,
    zone: &TimeZone,
) -> (Option<Timestamp>, usize) {
    let mut last = None;
    let mut count = 0;
    let mut t = earliest;
    while let Some(n) = s.next(t, zone) {
        if n > now {
            break;
        }
        last = Some(n);
        count += 1;
        t = n;
        if count > 1000 {
            // Past this the exact count no longer matters; jump to the end of the window.
            if let Some(prev) = last_before(s, now, zone) {
                last = Some(prev);
            }
            break;
        }
    }
    (last, count)
}

/// The last activation at or before `now`, searched backwards a day at a time.
fn last_before(s: &Schedule, now: Timestamp, zone: &TimeZone) -> Option<Timestamp> {
    let mut from = now.checked_sub(jiff::SignedDuration::from_hours(24)).ok()?;
    for _ in 0..400 {
        let mut best = None;
        let mut t = from;
        while let Some(n) = s.next(t, zone) {
            if n > now {
                break;
            }
            best = Some(n);
            t = n;
        }
        if best.is_some() {
            return best;
        }
        from = from
            .checked_sub(jiff::SignedDuration::from_hours(24))
            .ok()?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    #[test]
    fn standard_fields_and_descriptors() {
        let utc = TimeZone::UTC;
        let s = parse("*/15 9-17 * * mon-fri").expect("parse");
        // Saturday 2024-06-01: next is Monday 09:00.
        assert_eq!(
            s.next(ts("2024-06-01T10:07:00Z"), &utc),
            Some(ts("2024-06-03T09:00:00Z"))
        );
        assert_eq!(
            s.next(ts("2024-06-03T09:00:00Z"), &utc),
            Some(ts("2024-06-03T09:15:00Z"))
        );
        let h = parse("@hourly").expect("parse");
        assert_eq!(
            h.next(ts("2024-01-01T00:59:59Z"), &utc),
            Some(ts("2024-01-01T01:00:00Z"))
        );
        assert!(parse("* * *").is_err());
        assert!(parse("61 * * * *").is_err());
        assert!(parse("TZ=Not/AZone * * * * *").is_err());
        assert_eq!(
            parse("0 0 30 2 *")
                .expect("parse")
                .next(ts("2024-01-01T00:00:00Z"), &utc),
            None
        );
    }

    #[test]
    fn day_of_month_or_week() {
        // Both restricted: the 13th or any Friday.
        let s = parse("0 0 13 * 5").expect("parse");
        assert_eq!(
            s.next(ts("2024-09-01T00:00:00Z"), &TimeZone::UTC),
            Some(ts("2024-09-06T00:00:00Z"))
        );
        assert_eq!(
            s.next(ts("2024-09-06T00:00:00Z"), &TimeZone::UTC),
            Some(ts("2024-09-13T00:00:00Z"))
        );
    }

    #[test]
    fn time_zones_from_prefix_and_field() {
        let ny = TimeZone::get("America/New_York").expect("tzdb");
        let s = parse("0 9 * * *").expect("parse");
        // 09:00 in New York in summer is 13:00 UTC.
        assert_eq!(
            s.next(ts("2024-07-01T00:00:00Z"), &ny),
            Some(ts("2024-07-01T13:00:00Z"))
        );
        let p = parse("TZ=Asia/Tokyo 0 9 * * *").expect("parse");
        assert_eq!(
            p.next(ts("2024-07-01T00:00:00Z"), &TimeZone::UTC),
            Some(ts("2024-07-02T00:00:00Z"))
        );
        // The spring-forward gap: 02:30 does not exist on 2024-03-10, so (as with upstream's
        // robfig/cron) that day has no run and the next is 02:30 EDT on the 11th.
        let gap = parse("30 2 * * *").expect("parse");
        assert_eq!(
            gap.next(ts("2024-03-10T05:00:00Z"), &ny),
            Some(ts("2024-03-11T06:30:00Z"))
        );
        // The fall-back fold: 01:30 happens twice on 2024-11-03 and runs both times.
        let fold = parse("30 1 * * *").expect("parse");
        assert_eq!(
            fold.next(ts("2024-11-03T04:00:00Z"), &ny),
            Some(ts("2024-11-03T05:30:00Z"))
        );
        assert_eq!(
            fold.next(ts("2024-11-03T05:30:00Z"), &ny),
            Some(ts("2024-11-03T06:30:00Z"))
        );
        let every = parse("* * * * *").expect("parse");
        assert_eq!(
            every.next(ts("2024-11-03T05:59:00Z"), &ny),
            Some(ts("2024-11-03T06:00:00Z"))
        );
    }

    #[test]
    fn missed_schedules() {
        let s = parse("* * * * *").expect("parse");
        let (last, n) = most_recent(
            &s,
            ts("2024-01-01T00:00:30Z"),
            ts("2024-01-01T00:05:10Z"),
            &TimeZone::UTC,
        );
        assert_eq!(last, Some(ts("2024-01-01T00:05:00Z")));
        assert_eq!(n, 5);
        let (none, zero) = most_recent(
            &s,
            ts("2024-01-01T00:05:00Z"),
            ts("2024-01-01T00:05:59Z"),
            &TimeZone::UTC,
        );
        assert_eq!((none, zero), (None, 0));
        let (far, many) = most_recent(
            &s,
            ts("2024-01-01T00:00:00Z"),
            ts("2024-01-03T00:00:30Z"),
            &TimeZone::UTC,
        );
        assert_eq!(far, Some(ts("2024-01-03T00:00:00Z")));
        assert!(many > 100);
    }
}
