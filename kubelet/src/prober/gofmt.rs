//! Go's text for the values that end up in upstream's event and status messages (durations,
//! `%q` strings, gRPC errors, socket errors), so that ours read the same.

use std::time::Duration;

use tonic::{Code, Status};

/// Go's `time.Duration.String()`: `0s`, `250ms`, `1.5s`, `2m0s`, `1h0m3.2s`.
pub(crate) fn duration(d: Duration) -> String {
    let n = d.as_nanos();
    if n == 0 {
        return "0s".into();
    }
    if n < 1_000 {
        return format!("{n}ns");
    }
    if n < 1_000_000 {
        return format!("{}µs", decimal(n, 3));
    }
    if n < 1_000_000_000 {
        return format!("{}ms", decimal(n, 6));
    }
    let secs = n / 1_000_000_000;
    let s = decimal(n % 60_000_000_000, 9);
    let (h, m) = (secs / 3600, (secs / 60) % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

/// `v / 10^digits` with the fraction's trailing zeros (and a bare point) dropped.
fn decimal(v: u128, digits: u32) -> String {
    let unit = 10u128.pow(digits);
    let (int, frac) = (v / unit, v % unit);
    if frac == 0 {
        return int.to_string();
    }
    let frac = format!("{frac:0width$}", width = digits as usize);
    format!("{int}.{}", frac.trim_end_matches('0'))
}

pub(crate) use ferrokube_common::gofmt::quote;

/// grpc-go's name for a status code.
pub(crate) fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

/// A gRPC error as grpc-go prints it: `rpc error: code = NotFound desc = ...`.
pub(crate) fn grpc_error(status: &Status) -> String {
    format!(
        "rpc error: code = {} desc = {}",
        code_name(status.code()),
        status.message()
    )
}

/// Go's text for a socket error: the lower-case strerror (`connection refused`), without
/// Rust's ` (os error N)` suffix.
pub(crate) fn errno_text(e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::TimedOut {
        return "i/o timeout".into();
    }
    let text = match e.raw_os_error() {
        Some(code) => std::io::Error::from_raw_os_error(code).to_string(),
        None => e.to_string(),
    };
    let text = match text.find(" (os error") {
        Some(i) => &text[..i],
        None => &text,
    };
    text.to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_go_prints_them() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_nanos(15), "15ns"),
            (Duration::from_micros(1500), "1.5ms"),
            (Duration::from_millis(313), "313ms"),
            (Duration::from_millis(1234), "1.234s"),
            (Duration::from_secs(1), "1s"),
            (Duration::from_secs(120), "2m0s"),
            (Duration::from_millis(62_500), "1m2.5s"),
            (Duration::from_secs(3600), "1h0m0s"),
            (Duration::from_secs(3723), "1h2m3s"),
        ];
        for (d, want) in cases {
            assert_eq!(duration(d), want, "{d:?}");
        }
    }

    #[test]
    fn grpc_errors_read_as_grpc_go_prints_them() {
        let s = Status::not_found("no such container");
        assert_eq!(
            grpc_error(&s),
            "rpc error: code = NotFound desc = no such container"
        );
    }

    #[test]
    fn errno_text_is_go_like() {
        let e = std::io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(errno_text(&e), "connection refused");
        let e = std::io::Error::from_raw_os_error(libc::EHOSTUNREACH);
        assert_eq!(errno_text(&e), "no route to host");
    }
}
