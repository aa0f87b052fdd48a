//! The controller of the hospital XDP flow monitor: loads the datapath, keeps the
//! inventory and baseline, and answers the CLI.
//!
//! The packet path is `monitor-ebpf/src/main.rs`; the policy model is [`policy`].

pub mod activity;
pub mod baseline;
pub mod breakglass;
pub mod daemon;
pub mod datapath;
pub mod demo;
pub mod devmap;
pub mod events;
pub mod inventory;
pub mod lab;
pub mod lock;
pub mod metrics;
pub mod modes;
pub mod mud;
pub mod oui;
pub mod policy;
pub mod policy_guard;
pub mod replay;
pub mod report;

pub use datapath::{Datapath, DatapathError, MapSet, Maps};
