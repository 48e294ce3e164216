//! Machinery several controllers share: ownership (controller references, adoption and
//! release), creation expectations, and pods stamped from templates.

pub mod expectations;
pub mod history;
pub mod informer;
pub mod ownership;
pub mod pods;
pub mod retry;
