//! What an agent checks in the untrusted input a task brings before it spends anything on
//! it: a module's shape before compiling ([`admission`]), a tar archive of inputs
//! ([`archive`]), and the paths inputs, preopens and file reads name inside a sandbox
//! ([`paths`]). Pure functions over bytes and strings, each fuzzed (`fuzz/`).

pub mod admission;
pub mod archive;
pub mod paths;
