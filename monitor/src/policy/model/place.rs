//! Where a problem is: [`Place`] (file, line, column) and [`Problem`], and the finders that
//! give a policy text's entries their line and column (serde gives none for values that
//! parse).

use std::{fmt, path::PathBuf};

/// Where in which file a problem is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Place {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub column: Option<usize>,
}

impl Place {
    /// A problem of the policy as a whole (no one file holds it).
    pub fn whole_policy() -> Place {
        Place {
            file: PathBuf::from("(policy)"),
            line: None,
            column: None,
        }
    }
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        Ok(())
    }
}

/// A problem in the policy, with where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub place: Place,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.place, self.message)
    }
}

/// A device or group entry's text position: serde does not give one, so the loader finds
/// the `nth` (0-based) `name: NAME` line in the file's text.
pub fn find_name(text: &str, name: &str, nth: usize) -> (Option<usize>, Option<usize>) {
    text.lines()
        .enumerate()
        .filter_map(|(index, line)| {
            let col = line.find("name:")?;
            let value = line[col + 5..].trim().trim_matches(['"', '\'']);
            (value == name).then_some((Some(index + 1), Some(col + 1)))
        })
        .nth(nth)
        .unwrap_or((None, None))
}

/// Where a top-level `key` is written: `key:` in YAML, `"key"` in JSON.
pub fn find_key(text: &str, key: &str) -> (Option<usize>, Option<usize>) {
    let (yaml, json) = (format!("{key}:"), format!("\"{key}\""));
    text.lines()
        .enumerate()
        .find_map(|(index, line)| {
            let col = if line.starts_with(&yaml) {
                Some(0)
            } else {
                line.find(&json)
            }?;
            Some((Some(index + 1), Some(col + 1)))
        })
        .unwrap_or((None, None))
}

/// 1-based line numbers of the items of the top-level list `key:` in a YAML text.
pub fn list_item_lines(text: &str, key: &str) -> Vec<usize> {
    let mut lines = text.lines().enumerate();
    let header = format!("{key}:");
    if !lines.any(|(_, l)| l.trim_end() == header) {
        return Vec::new();
    }
    let mut items = Vec::new();
    let mut indent = None;
    for (index, line) in lines {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let depth = line.len() - trimmed.len();
        match indent {
            None if trimmed.starts_with("- ") => {
                indent = Some(depth);
                items.push(index + 1);
            }
            Some(d) if depth == d && trimmed.starts_with("- ") => items.push(index + 1),
            Some(d) if depth < d || (depth == 0 && !trimmed.starts_with('-')) => break,
            None if depth == 0 => break,
            _ => {}
        }
    }
    items
}
