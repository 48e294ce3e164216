//! The labels and annotations the kubelet puts on CRI sandboxes and containers (upstream's
//! `pkg/kubelet/types/labels.go` and `kuberuntime/labels.go`), by which it finds them again.

pub const POD_NAME: &str = "io.kubernetes.pod.name";
pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const POD_UID: &str = "io.kubernetes.pod.uid";
pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";
pub const CONTAINER_HASH: &str = "io.kubernetes.container.hash";
pub const CONTAINER_RESTART_COUNT: &str = "io.kubernetes.container.restartCount";
pub const TERMINATION_MESSAGE_PATH: &str = "io.kubernetes.container.terminationMessagePath";
pub const TERMINATION_MESSAGE_POLICY: &str = "io.kubernetes.container.terminationMessagePolicy";
/// Marks ferrokube's sandboxes apart from anything else the runtime runs.
pub const KUBELET_MANAGED: &str = "io.ferrokube.kubelet.managed";
