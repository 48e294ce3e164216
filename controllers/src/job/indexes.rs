//! Completion-index sets in the compressed text form the Job API uses ("1,3-5,7").

use std::collections::BTreeSet;

/// Parses an interval list, keeping only indexes below `completions`; malformed parts are
/// skipped, since a status written by an older controller must not wedge this one.
pub fn parse(text: Option<&str>, completions: i32) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    for part in text.unwrap_or("").split(',').filter(|p| !p.is_empty()) {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<i32>(), b.parse::<i32>()),
            None => (part.parse::<i32>(), part.parse::<i32>()),
        };
        if let (Ok(lo), Ok(hi)) = (lo, hi) {
            for i in lo.max(0)..=hi.min(completions - 1) {
                out.insert(i);
            }
        }
    }
    out
}

/// Formats a set as upstream does: ascending, every run of consecutive indexes (even of two)
/// as a range, so that the status text matches what upstream clients parse and compare.
pub fn format(set: &BTreeSet<i32>) -> String {
    let mut parts = Vec::new();
    let mut iter = set.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end += 1;
            iter.next();
        }
        if end == start {
            parts.push(start.to_string());
        } else {
            parts.push(format!("{start}-{end}"));
        }
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let s = parse(Some("0,2-4,9,11"), 10);
        assert_eq!(s.iter().copied().collect::<Vec<_>>(), vec![0, 2, 3, 4, 9]);
        assert_eq!(format(&s), "0,2-4,9");
        assert_eq!(format(&parse(Some("1,2"), 5)), "1-2");
        assert!(parse(None, 3).is_empty());
    }
}
