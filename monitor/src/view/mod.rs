//! What people read: the CLI's tables, the device map (table, HTML, JSON, DOT) and the
//! vendors of MAC addresses.

pub mod baseline_policy;
pub mod devmap;
pub mod discovered;
pub mod oui;
pub mod report;
