//! The controller of the hospital XDP flow monitor: loads the datapath, keeps the
//! inventory and baseline, and answers the CLI.

pub mod datapath;

pub use datapath::{Datapath, DatapathError, Maps};
