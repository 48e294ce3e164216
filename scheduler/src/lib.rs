//! ferrokube's kube-scheduler: upstream's scheduling framework with its default plugins.
//!
//! `informers` feed watch events to the loop in `scheduler`, which applies them (`apply`) to
//! the `cache` and the `queue`, then runs one scheduling cycle at a time through the
//! `framework` of the pod's profile (`profile`, built from `config`) and its `plugins`;
//! `failure` writes back what happened when a pod did not fit.

pub mod apply;
pub mod cache;
pub mod config;
pub mod events;
pub mod failure;
pub mod framework;
pub mod informers;
pub mod metrics;
pub mod plugins;
pub mod profile;
pub mod queue;
pub mod recorder;
pub mod scheduler;
