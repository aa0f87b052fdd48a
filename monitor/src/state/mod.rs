//! The state directory (`/var/lib/monitor`): the files the daemon writes for the CLI and
//! for its own restarts, written atomically, and the locks that keep one daemon per
//! datapath and order the writes of the daemon and the CLI.

pub mod activity;
pub mod baseline;
pub mod inventory;
pub mod lock;
pub mod modes;
