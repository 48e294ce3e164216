//! Go's `%q` quoting for the downward API files; the one implementation lives in `common`.

pub(crate) use ferrokube_common::gofmt::quote as go_quote;
