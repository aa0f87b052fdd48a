//! Modes in policy and state files by the names [`Mode::name`] gives them (`learn`,
//! `audit`, `enforce`): the one list of modes serves the files, the CLI and the datapath.

use monitor_common::Mode;
use serde::{Deserialize, Deserializer, Serializer};

const NAMES: [&str; 3] = [Mode::Learn.name(), Mode::Audit.name(), Mode::Enforce.name()];

pub fn serialize<S: Serializer>(mode: &Mode, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(mode.name())
}

pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Mode, D::Error> {
    // Refused inside the visitor, so that the error points at the value (line and column).
    deserializer.deserialize_str(ModeVisitor)
}

struct ModeVisitor;

impl serde::de::Visitor<'_> for ModeVisitor {
    type Value = Mode;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "one of {}", NAMES.join(", "))
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Mode, E> {
        text.parse().map_err(|_| E::unknown_variant(text, &NAMES))
    }
}

pub fn serialize_option<S: Serializer>(
    mode: &Option<Mode>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match mode {
        Some(mode) => serialize(mode, serializer),
        None => serializer.serialize_none(),
    }
}

pub fn deserialize_option<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Mode>, D::Error> {
    #[derive(Deserialize)]
    struct Named(#[serde(deserialize_with = "deserialize")] Mode);
    Ok(Option::<Named>::deserialize(deserializer)?.map(|Named(mode)| mode))
}

#[cfg(test)]
mod tests {
    use monitor_common::Mode;
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct Entry {
        #[serde(with = "super")]
        mode: Mode,
        #[serde(
            default,
            serialize_with = "super::serialize_option",
            deserialize_with = "super::deserialize_option"
        )]
        maybe: Option<Mode>,
    }

    #[test]
    fn every_mode_is_written_and_read_by_its_name() {
        for mode in Mode::ALL {
            let entry = Entry {
                mode,
                maybe: Some(mode),
            };
            let text = serde_json::to_string(&entry).unwrap_or_default();
            assert_eq!(
                text,
                format!("{{\"mode\":\"{0}\",\"maybe\":\"{0}\"}}", mode.name())
            );
            assert_eq!(serde_json::from_str::<Entry>(&text).ok(), Some(entry));
        }
        let absent: Entry =
            serde_yaml_ng::from_str("mode: audit").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(absent.maybe, None);
        let err = serde_yaml_ng::from_str::<Entry>("mode: sometimes")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains(
                "unknown variant `sometimes`, expected one of `learn`, `audit`, `enforce`"
            ),
            "{err}"
        );
    }
}
