//! What the running daemon tells the world: Prometheus metrics, violation and controller
//! events, the HTTP server of `/metrics` and `/map`.

pub mod events;
pub mod live;
pub mod metrics;
pub mod stats;
