//! ferrokube's kube-controller-manager.
//!
//! Every controller is a kube-runtime reconciler (level-triggered, idempotent, fed by shared
//! watches). `registry` lists them by upstream name; leader election and /healthz + /metrics
//! come from `ferrokube-component`.

pub mod clusterroleaggregation;
pub mod context;
pub mod cronjob;
pub mod csrapproving;
pub mod csrsigning;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod endpoint;
pub mod endpointslice;
pub mod endpointslicemirroring;
pub mod garbagecollector;
pub mod job;
pub mod metrics;
pub mod namespace;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod podgc;
pub mod pvbinder;
pub mod registry;
pub mod replicaset;
pub mod replication;
pub mod resourcequota;
pub mod rootcacertpublisher;
pub mod serviceaccount;
pub mod shared;
pub mod statefulset;
pub mod tainteviction;
pub mod ttlafterfinished;
