//! The policy model: what the policy files in `policies/` say, checked and compiled into
//! the flat form the XDP program reads.
//!
//! A policy directory holds YAML (or JSON) files. Each may list `devices` (the inventory)
//! and one may set `defaults`. Files are read in name order; every problem is reported with
//! its file, line and column.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    net::IpAddr,
    path::{Path, PathBuf},
};

use monitor_common::{
    Mode,
    maps::{DEVICE_ENFORCE_CONFIRMED, DEVICE_LIFE_CRITICAL, DeviceEntry, MODE_INHERIT},
};
use serde::{Deserialize, Serialize};

/// Policy files larger than this are refused before they are parsed.
pub const MAX_POLICY_FILE_BYTES: u64 = 4 * 1024 * 1024;
/// Devices one policy may enroll (the size of the XDP program's device table).
pub const MAX_DEVICES: usize = monitor_common::maps::MAX_DEVICES as usize;

/// One policy file as written.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PolicyFile {
    #[serde(default)]
    pub defaults: Option<Defaults>,
    #[serde(default)]
    pub devices: Vec<DeviceSpec>,
}

/// What applies where no device entry says otherwise.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Defaults {
    /// Global mode at start (the CLI's `monitor mode` changes it later).
    #[serde(default)]
    pub mode: Option<ModeSpec>,
    /// Traffic between addresses outside the inventory, in enforce mode.
    #[serde(default)]
    pub unenrolled: UnenrolledSpec,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum UnenrolledSpec {
    /// Counted and reported, passed.
    #[default]
    Pass,
    /// Counted and reported, dropped in enforce mode.
    Drop,
}

/// A mode as written in policy files and on the command line.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ModeSpec {
    Learn,
    Audit,
    Enforce,
}

impl From<ModeSpec> for Mode {
    fn from(spec: ModeSpec) -> Mode {
        match spec {
            ModeSpec::Learn => Mode::Learn,
            ModeSpec::Audit => Mode::Audit,
            ModeSpec::Enforce => Mode::Enforce,
        }
    }
}

impl From<Mode> for ModeSpec {
    fn from(mode: Mode) -> ModeSpec {
        match mode {
            Mode::Learn => ModeSpec::Learn,
            Mode::Audit => ModeSpec::Audit,
            Mode::Enforce => ModeSpec::Enforce,
        }
    }
}

/// How much harm losing the device's traffic does.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Criticality {
    /// Never enforced unless its own entry says `mode: enforce` and `confirm-enforce: true`.
    LifeCritical,
    High,
    #[default]
    Normal,
    Low,
}

impl Criticality {
    pub fn name(self) -> &'static str {
        match self {
            Criticality::LifeCritical => "life-critical",
            Criticality::High => "high",
            Criticality::Normal => "normal",
            Criticality::Low => "low",
        }
    }
}

/// Where a device is.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Location {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub building: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ward: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
}

impl Location {
    /// "site / building / floor / ward / room", skipping what is unknown.
    pub fn label(&self) -> String {
        let parts: Vec<&str> = [&self.site, &self.building, &self.floor, &self.ward, &self.room]
            .into_iter()
            .filter_map(|p| p.as_deref())
            .collect();
        if parts.is_empty() {
            "(no location)".into()
        } else {
            parts.join(" / ")
        }
    }
}

/// One device of the inventory.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DeviceSpec {
    /// Unique name, e.g. `pump-icu-07`.
    pub name: String,
    /// infusion-pump, patient-monitor, modality, pacs, badge-reader, workstation, ...
    pub kind: String,
    /// The device's IPv4/IPv6 addresses.
    pub addresses: Vec<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(default)]
    pub location: Location,
    #[serde(default)]
    pub criticality: Criticality,
    /// Overrides the global mode for this device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<ModeSpec>,
    /// Required, with `mode: enforce`, to enforce a life-critical device.
    #[serde(default)]
    pub confirm_enforce: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
}

/// Where in which file a problem is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Place {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub column: Option<usize>,
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

/// Why a policy could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("reading policy directory {0}")]
    ReadDir(PathBuf, #[source] std::io::Error),
    #[error("{} problem(s) in the policy:\n{}", .0.len(), .0.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

/// The policy of a directory, checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    pub defaults: Defaults,
    pub devices: Vec<DeviceSpec>,
    /// Where each device was defined (for messages), by name.
    pub origins: BTreeMap<String, Place>,
}

/// A device entry's text position: serde does not give one, so the loader finds the
/// `nth` (0-based) `name: NAME` line in the file's text.
fn find_name(text: &str, name: &str, nth: usize) -> (Option<usize>, Option<usize>) {
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

impl Policy {
    /// Loads and checks every `*.yaml`, `*.yml` and `*.json` file of `dir`.
    pub fn load_dir(dir: &Path) -> Result<Policy, PolicyError> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| PolicyError::ReadDir(dir.to_path_buf(), e))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| {
                matches!(
                    path.extension().and_then(|e| e.to_str()),
                    Some("yaml" | "yml" | "json")
                )
            })
            .collect();
        files.sort();
        let mut sources = Vec::new();
        let mut problems = Vec::new();
        for file in files {
            let place = Place {
                file: file.clone(),
                line: None,
                column: None,
            };
            match std::fs::metadata(&file) {
                Ok(meta) if meta.len() > MAX_POLICY_FILE_BYTES => {
                    problems.push(Problem {
                        place,
                        message: format!(
                            "file is {} bytes, over the {MAX_POLICY_FILE_BYTES}-byte limit; refused unread",
                            meta.len()
                        ),
                    });
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    problems.push(Problem {
                        place,
                        message: format!("cannot read: {e}"),
                    });
                    continue;
                }
            }
            match std::fs::read_to_string(&file) {
                Ok(text) => sources.push((file, text)),
                Err(e) => problems.push(Problem {
                    place,
                    message: format!("cannot read: {e}"),
                }),
            }
        }
        match Policy::from_sources(&sources) {
            Ok(policy) if problems.is_empty() => Ok(policy),
            Ok(_) => Err(PolicyError::Invalid(problems)),
            Err(PolicyError::Invalid(more)) => {
                problems.extend(more);
                Err(PolicyError::Invalid(problems))
            }
            Err(other) => Err(other),
        }
    }

    /// Parses and checks policy texts, each named by its file.
    pub fn from_sources(sources: &[(PathBuf, String)]) -> Result<Policy, PolicyError> {
        let mut problems = Vec::new();
        let mut policy = Policy::default();
        let mut defaults_from: Option<PathBuf> = None;
        let mut addresses: BTreeMap<IpAddr, String> = BTreeMap::new();
        for (file, text) in sources {
            let parsed: Result<PolicyFile, Problem> =
                if file.extension().and_then(|e| e.to_str()) == Some("json") {
                    serde_json::from_str(text).map_err(|e| Problem {
                        place: Place {
                            file: file.clone(),
                            line: Some(e.line()),
                            column: Some(e.column()),
                        },
                        message: e.to_string(),
                    })
                } else {
                    serde_yaml_ng::from_str::<Option<PolicyFile>>(text)
                        .map(Option::unwrap_or_default)
                        .map_err(|e| {
                            let location = e.location();
                            Problem {
                                place: Place {
                                    file: file.clone(),
                                    line: location.as_ref().map(|l| l.line()),
                                    column: location.as_ref().map(|l| l.column()),
                                },
                                message: e.to_string(),
                            }
                        })
                };
            let parsed = match parsed {
                Ok(parsed) => parsed,
                Err(problem) => {
                    problems.push(problem);
                    continue;
                }
            };
            if let Some(defaults) = parsed.defaults {
                if let Some(first) = &defaults_from {
                    problems.push(Problem {
                        place: Place {
                            file: file.clone(),
                            line: None,
                            column: None,
                        },
                        message: format!(
                            "`defaults` is already set in {}; only one file may set it",
                            first.display()
                        ),
                    });
                } else {
                    defaults_from = Some(file.clone());
                    policy.defaults = defaults;
                }
            }
            let mut seen: BTreeMap<String, usize> = BTreeMap::new();
            for device in parsed.devices {
                let nth = seen.entry(device.name.clone()).or_default();
                let (line, column) = find_name(text, &device.name, *nth);
                *nth += 1;
                let place = Place {
                    file: file.clone(),
                    line,
                    column,
                };
                let mut problem = |message: String| {
                    problems.push(Problem {
                        place: place.clone(),
                        message,
                    })
                };
                if device.name.is_empty()
                    || !device
                        .name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                {
                    problem(format!(
                        "device name `{}` must be non-empty and use only letters, digits, '-', '_' and '.'",
                        device.name
                    ));
                }
                if let Some(first) = policy.origins.get(&device.name) {
                    problem(format!(
                        "device `{}` is already defined at {first}",
                        device.name
                    ));
                }
                if device.addresses.is_empty() {
                    problem(format!("device `{}` has no addresses", device.name));
                }
                for address in &device.addresses {
                    if let Some(owner) = addresses.get(address) {
                        problem(format!(
                            "address {address} of `{}` is already the address of `{owner}`",
                            device.name
                        ));
                    } else {
                        addresses.insert(*address, device.name.clone());
                    }
                }
                if device.criticality == Criticality::LifeCritical
                    && device.mode == Some(ModeSpec::Enforce)
                    && !device.confirm_enforce
                {
                    problem(format!(
                        "device `{}` is life-critical and set to `mode: enforce` without \
                         `confirm-enforce: true`; add it to enforce this device, or remove the mode",
                        device.name
                    ));
                }
                if device.confirm_enforce && device.mode != Some(ModeSpec::Enforce) {
                    problem(format!(
                        "device `{}` has `confirm-enforce: true` but its mode is not `enforce`",
                        device.name
                    ));
                }
                if let Some(mac) = &device.mac {
                    if parse_mac(mac).is_none() {
                        problem(format!(
                            "device `{}`: MAC `{mac}` is not six hex bytes like 00:1b:44:11:3a:b7",
                            device.name
                        ));
                    }
                }
                policy.origins.entry(device.name.clone()).or_insert(place.clone());
                policy.devices.push(device);
            }
        }
        if policy.devices.len() > MAX_DEVICES {
            problems.push(Problem {
                place: Place {
                    file: PathBuf::from("(policy)"),
                    line: None,
                    column: None,
                },
                message: format!(
                    "{} devices, more than the {MAX_DEVICES} the datapath holds",
                    policy.devices.len()
                ),
            });
        }
        if problems.is_empty() {
            policy.devices.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(policy)
        } else {
            Err(PolicyError::Invalid(problems))
        }
    }

    /// Names of all devices.
    pub fn device_names(&self) -> BTreeSet<&str> {
        self.devices.iter().map(|d| d.name.as_str()).collect()
    }
}

/// Parses `aa:bb:cc:dd:ee:ff` (or with '-').
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let parts: Vec<&str> = text.split([':', '-']).collect();
    if parts.len() != 6 {
        return None;
    }
    let mut mac = [0u8; 6];
    for (byte, part) in mac.iter_mut().zip(parts) {
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    Some(mac)
}

/// A device as the XDP program sees it, given the slot its counters live in.
impl DeviceSpec {
    pub fn entry(&self, slot: u32) -> DeviceEntry {
        let mut flags = 0;
        if self.criticality == Criticality::LifeCritical {
            flags |= DEVICE_LIFE_CRITICAL;
        }
        if self.confirm_enforce && self.mode == Some(ModeSpec::Enforce) {
            flags |= DEVICE_ENFORCE_CONFIRMED;
        }
        DeviceEntry {
            slot,
            mode: self.mode.map_or(MODE_INHERIT, |m| Mode::from(m) as u8),
            flags,
            _pad: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<Policy, Vec<Problem>> {
        Policy::from_sources(&[(PathBuf::from("ward.yaml"), text.to_string())]).map_err(|e| match e {
            PolicyError::Invalid(problems) => problems,
            other => panic!("unexpected error {other}"),
        })
    }

    #[test]
    fn a_ward_parses_and_compiles_to_device_entries() {
        let policy = check(
            "defaults:\n  mode: audit\n  unenrolled: drop\ndevices:\n  - name: pump-1\n    kind: infusion-pump\n    addresses: [10.1.0.11, 'fd00::11']\n    criticality: life-critical\n  - name: ws-1\n    kind: workstation\n    addresses: [10.1.0.50]\n    mode: enforce\n",
        )
        .expect("valid policy");
        assert_eq!(policy.defaults.mode, Some(ModeSpec::Audit));
        assert_eq!(policy.defaults.unenrolled, UnenrolledSpec::Drop);
        let pump = &policy.devices[0];
        assert_eq!(pump.addresses.len(), 2);
        let entry = pump.entry(3);
        assert_eq!(entry.slot, 3);
        assert_eq!(entry.mode, MODE_INHERIT);
        assert_eq!(entry.flags, DEVICE_LIFE_CRITICAL);
        assert_eq!(policy.devices[1].entry(0).mode, Mode::Enforce as u8);
    }

    #[test]
    fn problems_name_file_line_and_column() {
        let problems = check("devices:\n  - name: pump-1\n    kind: infusion-pump\n    adresses: [10.1.0.11]\n")
            .expect_err("unknown field");
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].place.file, PathBuf::from("ward.yaml"));
        assert_eq!(problems[0].place.line, Some(4));
        assert!(problems[0].message.contains("adresses"), "{}", problems[0].message);
    }

    #[test]
    fn duplicate_names_and_addresses_are_refused() {
        let problems = check(
            "devices:\n  - name: a\n    kind: pacs\n    addresses: [10.0.0.1]\n  - name: a\n    kind: pacs\n    addresses: [10.0.0.1]\n",
        )
        .expect_err("duplicates");
        assert!(problems.iter().any(|p| p.message.contains("already defined")));
        assert!(problems.iter().any(|p| p.message.contains("already the address")));
        assert_eq!(problems[0].place.line, Some(5));
    }

    #[test]
    fn life_critical_enforce_needs_confirmation() {
        let problems = check(
            "devices:\n  - name: pump\n    kind: infusion-pump\n    addresses: [10.0.0.1]\n    criticality: life-critical\n    mode: enforce\n",
        )
        .expect_err("unconfirmed");
        assert!(problems[0].message.contains("confirm-enforce"));
        let policy = check(
            "devices:\n  - name: pump\n    kind: infusion-pump\n    addresses: [10.0.0.1]\n    criticality: life-critical\n    mode: enforce\n    confirm-enforce: true\n",
        )
        .expect("confirmed");
        assert_eq!(
            policy.devices[0].entry(0).flags,
            DEVICE_LIFE_CRITICAL | DEVICE_ENFORCE_CONFIRMED
        );
    }

    #[test]
    fn macs_are_checked() {
        assert_eq!(parse_mac("00:1b:44:11:3a:b7"), Some([0, 0x1b, 0x44, 0x11, 0x3a, 0xb7]));
        assert_eq!(parse_mac("00-1B-44-11-3A-B7"), Some([0, 0x1b, 0x44, 0x11, 0x3a, 0xb7]));
        assert_eq!(parse_mac("00:1b:44:11:3a"), None);
        assert_eq!(parse_mac("zz:1b:44:11:3a:b7"), None);
    }
}
