//! Support code shared by the workspace's top-level examples, tests and benchmarks.
#![warn(missing_docs)]

pub mod server;
