//! Data plugins compute in PreFilter/PreScore and read back in Filter/Score for the same
//! pod, keyed by plugin name. Preemption clones it to simulate removing victims.

use std::any::Any;
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
    /// A handful of entries read once per node per plugin: a short list scanned by key is
    /// cheaper than hashing the key each time.
    data: Vec<(&'static str, Box<dyn StateData>)>,
    /// Plugins whose PreFilter returned Skip: their Filter is not called this cycle.
    pub skip_filter: Vec<&'static str>,
    /// Plugins whose PreScore returned Skip: their Score is not called this cycle.
    pub skip_score: Vec<&'static str>,
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
        match self.data.iter_mut().find(|(k, _)| *k == key) {
            Some((_, slot)) => *slot = Box::new(value),
            None => self.data.push((key, Box::new(value))),
        }
    }

    pub fn read<T: 'static>(&self, key: &'static str) -> Option<&T> {
        let (_, v) = self.data.iter().find(|(k, _)| *k == key)?;
        (**v).as_any().downcast_ref()
    }

    pub fn read_mut<T: 'static>(&mut self, key: &'static str) -> Option<&mut T> {
        let (_, v) = self.data.iter_mut().find(|(k, _)| *k == key)?;
        (**v).as_any_mut().downcast_mut()
    }
}

/// Shared, immutable data some plugins keep across a cycle without cloning on fork.
pub type Shared<T> = Arc<T>;
