//! The scheduler against a real apiserver: each plugin's filter and score behaviour,
//! preemption, and the events and conditions upstream writes.

mod affinity;
mod basics;
mod node_plugins;
mod preemption;
mod support;
mod volumes;
