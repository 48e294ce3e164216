//! ferrokube's kube-controller-manager.
//!
//! Every controller is a kube-runtime reconciler (level-triggered, idempotent, fed by shared
//! watches). `registry` lists them by upstream name, `leader` keeps one active manager per
//! cluster through a Lease, and `health` serves /healthz and /metrics.

pub mod context;
pub mod health;
pub mod leader;
pub mod metrics;
pub mod registry;
pub mod shared;
