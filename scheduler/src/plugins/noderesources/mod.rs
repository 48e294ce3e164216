//! The node resource plugins: NodeResourcesFit (filtering on requests against allocatable,
//! and scoring by a configurable strategy) and NodeResourcesBalancedAllocation (scoring by
//! how evenly resources would be used).

mod args;
pub mod balanced_allocation;
pub mod fit;
mod scoring;
