//! Machinery shared by ferrokube components: label and field selectors, resource quantities,
//! the three patch formats the apiserver accepts, and the Kubernetes protobuf encoding.

pub mod fields;
pub mod gofmt;
pub mod labels;
pub mod patch;
pub mod protobuf;
pub mod quantity;
pub mod schema;
pub mod tls;
