//! The kubelet: registers its Node, runs the pods bound to it through a container runtime
//! (containerd over CRI, or the in-memory hollow runtime), and reports their status.

pub mod agent;
pub mod cni;
pub mod config;
pub mod container;
pub mod events;
pub mod eviction;
pub mod hooks;
pub mod image_gc;
pub mod images;
pub mod log_rotation;
pub mod logs;
pub mod node;
pub mod pods;
pub mod prober;
pub mod runtime;
pub mod server;
pub mod stats;
pub mod volumes;
