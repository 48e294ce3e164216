//! Upstream's printer columns, kind by kind.

mod core;

use super::Printer;

pub(super) fn lookup(group: &str, kind: &str) -> Option<&'static dyn Printer> {
    core::lookup(group, kind)
}
