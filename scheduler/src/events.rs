//! Cluster events, as the queue uses them to move pods a plugin rejected back to the
//! active queue once something that plugin cares about has changed.

use std::ops::BitOr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventResource {
    /// A pod bound (or assumed) to a node.
    AssignedPod,
    Node,
    PersistentVolume,
    PersistentVolumeClaim,
    StorageClass,
    CSINode,
    Namespace,
    /// Every resource: used for periodic flushes and for plugins that cannot tell.
    Wildcard,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ActionType(pub u32);

impl ActionType {
    pub const ADD: ActionType = ActionType(1);
    pub const DELETE: ActionType = ActionType(1 << 1);
    pub const UPDATE_NODE_ALLOCATABLE: ActionType = ActionType(1 << 2);
    pub const UPDATE_NODE_LABEL: ActionType = ActionType(1 << 3);
    pub const UPDATE_NODE_TAINT: ActionType = ActionType(1 << 4);
    pub const UPDATE_NODE_CONDITION: ActionType = ActionType(1 << 5);
    pub const UPDATE_NODE_ANNOTATION: ActionType = ActionType(1 << 6);
    pub const UPDATE_POD_LABEL: ActionType = ActionType(1 << 7);
    /// A bound pod's requests went down (in-place resize).
    pub const UPDATE_POD_SCALE_DOWN: ActionType = ActionType(1 << 8);
    /// Any other update.
    pub const UPDATE_OTHER: ActionType = ActionType(1 << 9);
    pub const UPDATE: ActionType = ActionType(
        Self::UPDATE_NODE_ALLOCATABLE.0
            | Self::UPDATE_NODE_LABEL.0
            | Self::UPDATE_NODE_TAINT.0
            | Self::UPDATE_NODE_CONDITION.0
            | Self::UPDATE_NODE_ANNOTATION.0
            | Self::UPDATE_POD_LABEL.0
            | Self::UPDATE_POD_SCALE_DOWN.0
            | Self::UPDATE_OTHER.0,
    );
    pub const ALL: ActionType = ActionType(Self::ADD.0 | Self::DELETE.0 | Self::UPDATE.0);
}

impl BitOr for ActionType {
    type Output = ActionType;
    fn bitor(self, rhs: ActionType) -> ActionType {
        ActionType(self.0 | rhs.0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClusterEvent {
    pub resource: EventResource,
    pub action: ActionType,
}

impl ClusterEvent {
    pub const fn new(resource: EventResource, action: ActionType) -> ClusterEvent {
        ClusterEvent { resource, action }
    }

    /// Whether a plugin registered for `self` should hear about `happened`.
    pub fn covers(&self, happened: &ClusterEvent) -> bool {
        (self.resource == EventResource::Wildcard
            || happened.resource == EventResource::Wildcard
            || self.resource == happened.resource)
            && self.action.0 & happened.action.0 != 0
    }

    /// Unschedulable pods are retried after this, whatever their plugins asked for.
    pub const UNSCHEDULABLE_TIMEOUT: ClusterEvent =
        ClusterEvent::new(EventResource::Wildcard, ActionType::ALL);
}
