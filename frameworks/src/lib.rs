//! `corral-frameworks`: Corral's built-in job frameworks and their job spec.

pub mod jobs;
pub mod spec;
