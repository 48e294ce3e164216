//! Kubelet integration tests: one binary, one module per area.

mod cri;
mod pods;
mod pull;
mod support;
