//! The apiserver integration tests in one binary: one link instead of one per file.

mod admission;
mod api;
mod etcd_backend;
mod eviction;
mod kubectl;
mod kubelet_proxy;
mod openapi;
mod restart;
mod serviceaccount_token;
