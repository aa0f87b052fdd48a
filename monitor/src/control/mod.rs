//! Operator actions on a running datapath and its state: what the CLI does to enforcement
//! (break-glass, modes, detach, the site's clock), also when no daemon runs.

pub mod breakglass;
pub mod clock;
pub mod detach;
pub mod identity;
pub mod mode;
pub mod reload;
