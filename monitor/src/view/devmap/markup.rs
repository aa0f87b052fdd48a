//! What the page and the drawing share: text escaped for HTML and SVG, and the ids of the
//! devices' cards that the drawing links to.

/// Text escaped for HTML (and SVG).
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A stable HTML id for a name.
fn slug(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

/// The HTML id of a device's card (`dev-` and its name made safe).
pub fn card_id(name: &str) -> String {
    format!("dev-{}", slug(name))
}
