//! What the running daemon tells the world, from what it holds in memory ([`live`]):
//! Prometheus metrics (the families defined once in [`families`], collected by [`scrape`]
//! into the text of [`exposition`], the large tables counted in the background by
//! [`counter`]), the activity history ([`sampler`]), violation, controller and operator
//! events ([`events`]) and their copy for a SIEM ([`syslog`]), and the HTTP server of
//! `/metrics` and `/map` ([`metrics`]).

pub mod counter;
pub mod discovery;
pub mod events;
pub mod exposition;
pub mod families;
pub mod live;
pub mod metrics;
pub mod monotonic;
pub mod sampler;
pub mod scrape;
pub mod stats;
pub mod syslog;
