//! kube-lb: Service load balancing in BPF in place of kube-proxy. ClusterIPs are translated
//! at the socket layer (cgroup connect/sendmsg/recvmsg/getpeername), node ports and external
//! addresses at TC ingress; the maps follow Services and EndpointSlices.

pub mod controller;
pub mod datapath;
pub mod maps;
pub mod model;
pub mod node;
pub mod tables;
