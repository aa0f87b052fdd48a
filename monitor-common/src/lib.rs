//! Shared between the XDP program (`no_std`, bpfel) and the controller: map layouts,
//! the verdict reasons, the frame parser and the service-port rule.
#![no_std]

pub mod flow;
pub mod flowtable;
pub mod judge;
pub mod maps;
pub mod memory;
pub mod parse;
pub mod schedule;
pub mod verdict;

pub use verdict::{
    Action, CUT_VERDICTS, FrameClass, Mode, Reason, VERDICT_SLOTS, VERDICTS_ENTRIES, verdict_index,
};
