//! What the running daemon tells the world, from what it holds in memory ([`live`]):
//! Prometheus metrics (the families defined once in [`families`], collected by [`scrape`]
//! into the text of [`exposition`], the large tables counted in the background by
//! [`counter`]), the activity history ([`sampler`]), violation and controller events
//! ([`events`]), and the HTTP server of `/metrics` and `/map` ([`metrics`]).

pub mod counter;
pub mod events;
pub mod exposition;
pub mod families;
pub mod live;
pub mod metrics;
pub mod sampler;
pub mod scrape;
pub mod stats;
