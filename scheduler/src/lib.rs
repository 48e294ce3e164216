//! ferrokube's kube-scheduler: upstream's scheduling framework with its default plugins.
//!
//! `cache` holds the cluster as the scheduler sees it, `queue` the pods waiting for a node,
//! `framework` the extension points and `plugins` upstream's default plugins; `scheduler`
//! is the loop that pops a pod, runs one scheduling cycle and binds it.

pub mod cache;
pub mod events;
pub mod framework;
pub mod plugins;
