//! Machinery shared by ferrokube components: label and field selectors, resource quantities,
//! and the three patch formats the apiserver accepts.

pub mod fields;
pub mod labels;
pub mod patch;
pub mod quantity;
pub mod schema;
