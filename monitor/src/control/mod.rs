//! Operator actions on a running datapath and its state: what the CLI does to enforcement
//! (break-glass, modes, detach), also when no daemon runs.

pub mod breakglass;
pub mod detach;
pub mod identity;
pub mod mode;
pub mod reload;
