//! Kubelet integration tests: one binary, one module per area.

mod cri;
mod hollow;
mod node;
mod pods;
mod pull;
mod streaming;
mod support;
mod volumes;
