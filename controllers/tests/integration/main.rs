//! Every controller integration test in one binary: one link instead of one per controller.

mod certificates;
mod clusterroleaggregation;
mod cronjob;
mod daemonset;
mod deployment;
mod disruption;
mod endpoints;
mod endpointslicemirroring;
mod garbagecollector;
mod job;
mod namespace;
mod nodeipam;
mod nodelifecycle;
mod podgc;
mod pvbinder;
mod resourcequota;
mod serviceaccount;
mod statefulset;
mod ttlafterfinished;
mod workload_support;
mod workloads_rs;
