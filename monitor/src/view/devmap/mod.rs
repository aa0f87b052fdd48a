//! The device map: every enrolled device with who made it, where it is, how critical it
//! is, what protects it, whom it talks to (grouped by role), when it is used, and what it
//! did wrong — grouped by ward, with the devices that need a person's attention first.
//!
//! [`build`] ([`model`]) makes the model from [`Inputs`] ([`inputs`]: read from the state
//! directory by the CLI, or handed over in memory by the daemon); [`render`] turns it into
//! a self-contained HTML page ([`html`]: no script, font or picture fetched from
//! anywhere), JSON for scripts, Graphviz DOT ([`dot`]), or a terminal table ([`text`]).
//! `monitor map` and the metrics server's `/map` show the same thing.

pub mod dot;
pub mod html;
pub mod inputs;
pub mod model;
#[cfg(test)]
mod tests;
pub mod text;

use crate::{
    datapath::DatapathError,
    policy::DeviceSpec,
    state::{StateError, activity::ActivityError},
};

pub use inputs::Inputs;
pub use model::{DeviceMap, Protection, build};

/// A device learning for longer than this stands out: a baseline is meant to be learned
/// and then enforced, and an endless learn phase protects nothing.
pub const DEFAULT_MAX_LEARNING_DAYS: u64 = 7;
/// The group of devices whose policy entry says nothing about where they are.
pub const NO_LOCATION: &str = "(no location)";

#[derive(Debug, thiserror::Error)]
pub enum DevMapError {
    #[error("reading the datapath maps")]
    Datapath(#[from] DatapathError),
    #[error("reading the state directory")]
    State(#[from] StateError),
    #[error("reading the activity history")]
    Activity(#[source] Box<ActivityError>),
    #[error("encoding JSON")]
    Json(#[from] serde_json::Error),
}

impl From<ActivityError> for DevMapError {
    fn from(e: ActivityError) -> Self {
        DevMapError::Activity(Box::new(e))
    }
}

/// Output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A table for a terminal.
    Table,
    /// One self-contained page.
    Html,
    Json,
    /// Graphviz: `dot -Tsvg`.
    Dot,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Table | Format::Dot => "text/plain; charset=utf-8",
            Format::Html => "text/html; charset=utf-8",
            Format::Json => "application/json",
        }
    }
}

/// The ward a device is grouped (and labelled in metrics) by: its location's ward, else
/// its whole location, else [`NO_LOCATION`].
pub fn ward_of(spec: &DeviceSpec) -> String {
    match &spec.location.ward {
        Some(ward) => ward.clone(),
        None => spec.location.label(),
    }
}

/// Renders the map in `format`.
pub fn render(map: &DeviceMap, format: Format) -> Result<String, DevMapError> {
    Ok(match format {
        Format::Json => serde_json::to_string_pretty(map)? + "\n",
        Format::Html => html::page(map),
        Format::Dot => dot::graph(map),
        Format::Table => text::table(map),
    })
}
