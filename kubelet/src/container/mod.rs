//! Turning a pod's spec into CRI sandbox and container configs (being written).
