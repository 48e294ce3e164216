//! The kubelet's HTTPS server on 10250 (being written).
