//! Data plugins compute in PreFilter/PreScore and read back in Filter/Score for the same
//! pod, keyed by plugin name. Preemption clones it to simulate removing victims.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

/// State a plugin keeps for one cycle. `clone_state` lets preemption fork the cycle.
pub trait StateData: Any + Send + Sync {
    fn clone_state(&self) -> Box<dyn StateData>;
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl<T: Any + Clone + Send + Sync> StateData for T {
    fn clone_state(&self) -> Box<dyn StateData> {
        Box::new(self.clone())
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

#[derive(Default)]
pub struct CycleState {
    data: HashMap<&'static str, Box<dyn StateData>>,
    /// Plugins whose PreFilter returned Skip: their Filter is not called this cycle.
    pub skip_filter: std::collections::HashSet<&'static str>,
    /// Plugins whose PreScore returned Skip: their Score is not called this cycle.
    pub skip_score: std::collections::HashSet<&'static str>,
}

impl Clone for CycleState {
    fn clone(&self) -> Self {
        CycleState {
            data: self
                .data
                .iter()
                .map(|(k, v)| (*k, (**v).clone_state()))
                .collect(),
            skip_filter: self.skip_filter.clone(),
            skip_score: self.skip_score.clone(),
        }
    }
}

impl CycleState {
    pub fn write<T: StateData>(&mut self, key: &'static str, value: T) {
        self.data.insert(key, Box::new(value));
    }

    pub fn read<T: 'static>(&self, key: &'static str) -> Option<&T> {
        (**self.data.get(key)?).as_any().downcast_ref()
    }

    pub fn read_mut<T: 'static>(&mut self, key: &'static str) -> Option<&mut T> {
        (**self.data.get_mut(key)?).as_any_mut().downcast_mut()
    }
}

/// Shared, immutable data some plugins keep across a cycle without cloning on fork.
pub type Shared<T> = Arc<T>;
