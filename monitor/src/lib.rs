//! The controller of the hospital XDP flow monitor: loads the datapath, keeps the
//! inventory and baseline, and answers the CLI.
//!
//! The packet path is `monitor-ebpf/src/main.rs`; the policy model is [`policy`].
//!
//! Each folder is one concern, and imports go only downward this ladder (a test checks
//! it: `tests/tests/layout.rs`):
//!
//! | layer | module | owns |
//! |---|---|---|
//! | 9 | `cli` (in `main.rs`) | the command line |
//! | 8 | [`daemon`] | `monitor run`: start, attach or adopt, reload, the run loop |
//! | 7 | [`lab`] | the namespace lab and the demo |
//! | 7 | [`replay`] | captures through the XDP program |
//! | 6 | [`observe`] | metrics, events, the HTTP server, the activity sampler |
//! | 5 | [`view`] | what people read: CLI tables, the device map, vendors |
//! | 4 | [`control`] | operator actions on a datapath: break-glass, modes, detach |
//! | 3 | [`state`] | the state directory: every file, atomic writes, locks |
//! | 2 | [`policy`] | policy files: model, checks, compilation, MUD |
//! | 1 | [`datapath`] | the loaded XDP object and typed access to its maps |
//! | 0 | [`support`] | clocks, protocol names, error text, logging, sd_notify |
//!
//! Below all of it, `monitor-common` holds what the XDP program shares.

pub mod control;
pub mod daemon;
pub mod datapath;
pub mod lab;
pub mod observe;
pub mod policy;
pub mod replay;
pub mod state;
pub mod support;
pub mod view;

pub use datapath::{Datapath, DatapathError, MapSet, Maps};
