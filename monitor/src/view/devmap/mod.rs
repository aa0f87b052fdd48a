//! The device map: every enrolled device with who made it, where it is, how critical it
//! is, what protects it, whom it talks to (grouped by role), when it is used, and what it
//! did wrong — grouped by ward, with the devices that need a person's attention first.
//!
//! [`build`] ([`model`]) makes the model from [`Inputs`] ([`inputs`]: read from the state
//! directory by the CLI, or handed over in memory by the daemon); [`render`] turns it into
//! a self-contained HTML page ([`html`]: no script, font or picture fetched from
//! anywhere) that opens with a drawing of the architecture ([`drawing`]: inline SVG), the
//! drawing alone as an SVG file, JSON for scripts, Graphviz DOT ([`dot`]), or a terminal
//! table ([`text`]).
//! `monitor map` and the metrics server's `/map` show the same thing.

pub mod dot;
pub mod drawing;
pub mod html;
pub mod inputs;
pub mod markup;
pub mod model;
#[cfg(test)]
mod tests;
pub mod text;

pub use inputs::{DEFAULT_MAX_LEARNING_DAYS, DevMapError, Inputs};
pub use model::{DeviceMap, NO_LOCATION, Protection, build, ward_of};

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
    /// The drawing of the architecture alone, as one SVG file.
    Svg,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Table | Format::Dot => "text/plain; charset=utf-8",
            Format::Html => "text/html; charset=utf-8",
            Format::Json => "application/json",
            Format::Svg => "image/svg+xml; charset=utf-8",
        }
    }
}

/// Renders the map in `format`.
pub fn render(map: &DeviceMap, format: Format) -> Result<String, DevMapError> {
    Ok(match format {
        Format::Json => serde_json::to_string_pretty(map)? + "\n",
        Format::Html => html::page(map),
        Format::Dot => dot::graph(map),
        Format::Table => text::table(map),
        Format::Svg => drawing::svg::svg(
            &drawing::build(map, &drawing::identity_of(map)),
            drawing::svg::Target::File,
        ),
    })
}
