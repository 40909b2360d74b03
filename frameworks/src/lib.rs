//! Corral's built-in job frameworks and their job spec.
pub mod spec;
