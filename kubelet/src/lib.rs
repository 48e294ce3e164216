//! The kubelet: registers its Node, runs the pods bound to it through a container runtime
//! (containerd over CRI, or the in-memory hollow runtime), and reports their status.

pub mod cni;
pub mod container;
pub mod logs;
pub mod runtime;
pub mod server;
pub mod volumes;
