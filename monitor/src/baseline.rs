//! The learned baseline on disk: a versioned, reviewable JSON file, written atomically.
//!
//! Used by the daemon (saved every few seconds, restored at start), by `monitor replay`
//! (`--baseline-out`/`--baseline-in`) and by `monitor baseline export|diff|import`.

use std::{collections::BTreeSet, net::IpAddr, path::Path};

use monitor_common::maps::{
    BaselineEntry, Direction, FlowKey, ORIGIN_IMPORTED, ORIGIN_LEARNED, ORIGIN_POLICY,
};
use serde::{Deserialize, Serialize};

use crate::datapath::{addr_key, addr_of};

pub const FORMAT: &str = "monitor-baseline";
pub const VERSION: u32 = 1;
/// The daemon's baseline file in the state directory.
pub const STATE_FILE: &str = "baseline.json";

#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error("reading {0}")]
    Read(String, #[source] std::io::Error),
    #[error("{0} is not a baseline file")]
    Parse(String, #[source] serde_json::Error),
    #[error(
        "{file} has format `{format}` version {version}; this monitor reads `{FORMAT}` version {VERSION}"
    )]
    Version {
        file: String,
        format: String,
        version: u32,
    },
    #[error("{file}: entry {index}: {what}")]
    Entry {
        file: String,
        index: usize,
        what: String,
    },
}

/// One allowed flow, as people read it.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Record {
    pub device: IpAddr,
    pub peer: IpAddr,
    pub protocol: u8,
    pub service_port: u16,
    /// `out` (the device is the client), `in` (the peer is), or `both`.
    pub direction: String,
    #[serde(default = "learned")]
    pub origin: String,
}

fn learned() -> String {
    "learned".into()
}

/// A baseline file.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BaselineFile {
    pub format: String,
    pub version: u32,
    pub entries: Vec<Record>,
}

impl Record {
    pub fn from_map(key: &FlowKey, entry: &BaselineEntry) -> Record {
        Record {
            device: addr_of(&key.device),
            peer: addr_of(&key.peer),
            protocol: key.protocol,
            service_port: key.service_port,
            direction: Direction::try_from(key.direction)
                .map_or("both", Direction::name)
                .into(),
            origin: match entry.origin {
                ORIGIN_POLICY => "policy",
                ORIGIN_IMPORTED => "imported",
                _ => "learned",
            }
            .into(),
        }
    }

    /// The map key, or what is wrong with the record.
    pub fn key(&self) -> Result<FlowKey, String> {
        let direction = match self.direction.as_str() {
            "out" => Direction::Outbound,
            "in" => Direction::Inbound,
            "both" => Direction::Symmetric,
            other => return Err(format!("direction `{other}` is not out, in or both")),
        };
        Ok(FlowKey {
            device: addr_key(self.device),
            peer: addr_key(self.peer),
            service_port: self.service_port,
            protocol: self.protocol,
            direction: direction as u8,
        })
    }

    pub fn entry(&self) -> BaselineEntry {
        BaselineEntry {
            learned_ns: 0,
            origin: match self.origin.as_str() {
                "policy" => ORIGIN_POLICY,
                "imported" => ORIGIN_IMPORTED,
                _ => ORIGIN_LEARNED,
            },
            _pad1: 0,
            _pad2: 0,
            window: 0,
        }
    }
}

impl BaselineFile {
    pub fn from_map(entries: &[(FlowKey, BaselineEntry)]) -> BaselineFile {
        let mut records: Vec<Record> = entries
            .iter()
            .map(|(k, e)| Record::from_map(k, e))
            .collect();
        records.sort();
        BaselineFile {
            format: FORMAT.into(),
            version: VERSION,
            entries: records,
        }
    }

    /// Parses and checks a baseline file's text; `name` names it in errors.
    pub fn parse(name: &str, bytes: &[u8]) -> Result<BaselineFile, BaselineError> {
        #[derive(Deserialize)]
        struct Header {
            format: String,
            version: u32,
        }
        let header: Header =
            serde_json::from_slice(bytes).map_err(|e| BaselineError::Parse(name.into(), e))?;
        if header.format != FORMAT || header.version != VERSION {
            return Err(BaselineError::Version {
                file: name.into(),
                format: header.format,
                version: header.version,
            });
        }
        let file: BaselineFile =
            serde_json::from_slice(bytes).map_err(|e| BaselineError::Parse(name.into(), e))?;
        for (index, record) in file.entries.iter().enumerate() {
            record.key().map_err(|what| BaselineError::Entry {
                file: name.into(),
                index,
                what,
            })?;
        }
        Ok(file)
    }

    pub fn read(path: &Path) -> Result<BaselineFile, BaselineError> {
        let name = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| BaselineError::Read(name.clone(), e))?;
        BaselineFile::parse(&name, &bytes)
    }

    /// The map entries (checked by `parse`).
    pub fn map_entries(&self) -> Vec<(FlowKey, BaselineEntry)> {
        self.entries
            .iter()
            .filter_map(|r| r.key().ok().map(|k| (k, r.entry())))
            .collect()
    }

    /// Entries of `self` not in `older` (what a device learned since a snapshot), and
    /// entries of `older` no longer in `self`.
    pub fn diff<'a>(&'a self, older: &'a BaselineFile) -> (Vec<&'a Record>, Vec<&'a Record>) {
        let strip = |r: &Record| {
            (
                r.device,
                r.peer,
                r.protocol,
                r.service_port,
                r.direction.clone(),
            )
        };
        let old: BTreeSet<_> = older.entries.iter().map(strip).collect();
        let new: BTreeSet<_> = self.entries.iter().map(strip).collect();
        (
            self.entries
                .iter()
                .filter(|r| !old.contains(&strip(r)))
                .collect(),
            older
                .entries
                .iter()
                .filter(|r| !new.contains(&strip(r)))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_map_keys() {
        let record = Record {
            device: "10.10.1.11".parse().unwrap_or_else(|e| panic!("{e}")),
            peer: "fd00:20::10".parse().unwrap_or_else(|e| panic!("{e}")),
            protocol: 6,
            service_port: 443,
            direction: "out".into(),
            origin: "learned".into(),
        };
        let key = record.key().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(key.direction, Direction::Outbound as u8);
        assert_eq!(Record::from_map(&key, &record.entry()), record);
    }

    #[test]
    fn wrong_versions_and_bad_entries_are_named() {
        let err = BaselineFile::parse(
            "b.json",
            br#"{"format":"monitor-baseline","version":9,"entries":[]}"#,
        )
        .expect_err("version 9");
        assert!(err.to_string().contains("version 9"), "{err}");
        let err = BaselineFile::parse(
            "b.json",
            br#"{"format":"monitor-baseline","version":1,"entries":[{"device":"10.0.0.1","peer":"10.0.0.2","protocol":6,"service-port":80,"direction":"sideways"}]}"#,
        )
        .expect_err("bad direction");
        assert!(
            err.to_string().contains("entry 0") && err.to_string().contains("sideways"),
            "{err}"
        );
    }
}
