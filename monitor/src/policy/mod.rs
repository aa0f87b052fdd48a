//! The policy model: what the policy files in `policies/` say, checked and compiled into
//! the flat form the XDP program reads.
//!
//! A policy directory holds YAML (or JSON) files. Each may list `devices` (the inventory)
//! and one may set `defaults`. Files are read in name order; every problem is reported with
//! its file, line and column.

pub mod guard;
pub mod mud;

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    net::IpAddr,
    path::{Path, PathBuf},
    time::Duration,
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
    #[serde(default)]
    pub groups: Vec<GroupSpec>,
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
    /// Manufacturer Usage Description files (RFC 8520) as rules for a device kind
    /// ([`crate::policy::mud`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mud: Vec<crate::policy::mud::MudEntry>,
}

/// A named set of devices sharing rules ("every pump ...").
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct GroupSpec {
    pub name: String,
    /// Devices by name.
    #[serde(default)]
    pub members: Vec<String>,
    /// Every device of these kinds.
    #[serde(default)]
    pub kinds: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Devices a rule is about, or a peer: exactly one of its fields, as written
/// `{device: NAME}`, `{group: NAME}`, `{kind: KIND}`, `{cidr: BLOCK}` or `{any: true}`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct EndpointSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Peers only: an address block (`10.20.0.0/16`, `fd00::/8`, or one address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr: Option<String>,
    /// Peers only: anyone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub any: Option<bool>,
}

/// What an [`EndpointSpec`] names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Device(String),
    Group(String),
    Kind(String),
    Cidr(String),
    Any(bool),
}

impl TryFrom<&EndpointSpec> for Endpoint {
    type Error = String;
    fn try_from(spec: &EndpointSpec) -> Result<Endpoint, String> {
        let named: Vec<Endpoint> = [
            spec.device.clone().map(Endpoint::Device),
            spec.group.clone().map(Endpoint::Group),
            spec.kind.clone().map(Endpoint::Kind),
            spec.cidr.clone().map(Endpoint::Cidr),
            spec.any.map(Endpoint::Any),
        ]
        .into_iter()
        .flatten()
        .collect();
        match <[Endpoint; 1]>::try_from(named) {
            Ok([one]) => Ok(one),
            Err(v) if v.is_empty() => {
                Err("names nothing: give one of device, group, kind, cidr, any".into())
            }
            Err(_) => Err(
                "names more than one of device, group, kind, cidr, any; give exactly one".into(),
            ),
        }
    }
}

impl From<Endpoint> for EndpointSpec {
    fn from(endpoint: Endpoint) -> EndpointSpec {
        let mut spec = EndpointSpec::default();
        match endpoint {
            Endpoint::Device(n) => spec.device = Some(n),
            Endpoint::Group(n) => spec.group = Some(n),
            Endpoint::Kind(n) => spec.kind = Some(n),
            Endpoint::Cidr(n) => spec.cidr = Some(n),
            Endpoint::Any(b) => spec.any = Some(b),
        }
        spec
    }
}

/// Whether a rule lets the flow through or stops it. Deny wins.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum RuleAction {
    Allow,
    Deny,
}

/// Who opens the flow, seen from the rule's devices.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum RuleDirection {
    /// The devices reach the peer's service (they are the client).
    #[default]
    Out,
    /// The peer reaches the devices' service.
    In,
    Any,
}

/// Ports as written: `443`, `"8000-8100"`, or a list of those.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum PortsSpec {
    One(u16),
    Text(String),
    List(Vec<PortsSpec>),
}

/// An allow or deny rule.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RuleSpec {
    /// Why the rule exists, for the people who review it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The devices the rule is about: `{device: NAME}`, `{group: NAME}` or `{kind: KIND}`.
    pub devices: EndpointSpec,
    /// The other side: `{device: ..}`, `{group: ..}`, `{kind: ..}`, `{cidr: ..}` or `{any: true}`.
    pub peer: EndpointSpec,
    /// tcp, udp, sctp, icmp, icmpv6, any, or a protocol number.
    #[serde(default = "any_protocol")]
    pub protocol: String,
    /// Service ports (for ICMP echo: 8 or 128). Omitted: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<PortsSpec>,
    #[serde(default)]
    pub direction: RuleDirection,
    pub action: RuleAction,
}

fn any_protocol() -> String {
    "any".into()
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
    /// The longest break-glass `monitor allow --for` may grant, as written (`8h`, `90m`):
    /// [`DEFAULT_BREAK_GLASS_MAX`] when not set; at least [`BREAK_GLASS_MAX_FLOOR`], at most
    /// [`BREAK_GLASS_MAX_CEILING`].
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "break_glass_max"
    )]
    pub break_glass_max: Option<Duration>,
    /// The file these defaults were read from (set by the loader; for messages).
    #[serde(skip)]
    pub file: Option<PathBuf>,
}

/// The longest break-glass when the policy sets no `break-glass-max`: a shift's incident or
/// a vendor's repair visit fits; one forgotten ends within the same shift.
pub const DEFAULT_BREAK_GLASS_MAX: Duration = Duration::from_secs(4 * 60 * 60);
/// The most a policy may set `break-glass-max` to. An exception needed for longer than a
/// week is no emergency: it belongs in the policy as an allow rule, where it is reviewed.
pub const BREAK_GLASS_MAX_CEILING: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// The least a policy may set `break-glass-max` to (0 would make break-glass impossible in
/// the emergency it exists for).
pub const BREAK_GLASS_MAX_FLOOR: Duration = Duration::from_secs(60);

/// Reads `break-glass-max` (humantime syntax) and checks it is within bounds.
pub fn parse_break_glass_max(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text.trim()).map_err(|e| {
        format!("`break-glass-max: {text}` is not a duration such as 8h or 90m ({e})")
    })?;
    if duration < BREAK_GLASS_MAX_FLOOR {
        return Err(format!(
            "`break-glass-max: {text}` is shorter than {}: break-glass must stay possible in an emergency",
            humantime::format_duration(BREAK_GLASS_MAX_FLOOR)
        ));
    }
    if duration > BREAK_GLASS_MAX_CEILING {
        return Err(format!(
            "`break-glass-max: {text}` is longer than the {} a policy may allow; an exception for longer belongs in an allow rule",
            humantime::format_duration(BREAK_GLASS_MAX_CEILING)
        ));
    }
    Ok(duration)
}

/// `break-glass-max` as humantime text, checked while parsing, so that a bad value is
/// reported with its file, line and column like any other field.
mod break_glass_max {
    use std::{fmt, time::Duration};

    use serde::{Deserializer, Serializer, de};

    pub fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        struct Text;
        impl de::Visitor<'_> for Text {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as 8h or 90m")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
                super::parse_break_glass_max(text).map_err(E::custom)
            }
        }
        d.deserialize_str(Text).map(Some)
    }
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
        let parts: Vec<&str> = [
            &self.site,
            &self.building,
            &self.floor,
            &self.ward,
            &self.room,
        ]
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
    /// No policy at all is never what an operator means: applied, it would enroll
    /// nothing and so enforce nothing.
    #[error(
        "policy directory {0} holds no policy files (*.yaml, *.yml, *.json); \
         an empty policy would enforce nothing, so it is refused"
    )]
    Empty(PathBuf),
    #[error("{} problem(s) in the policy:\n{}", .0.len(), .0.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

/// The policy of a directory, checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    pub defaults: Defaults,
    pub devices: Vec<DeviceSpec>,
    pub groups: Vec<GroupSpec>,
    pub rules: Vec<(Place, RuleSpec)>,
    /// Where each device was defined (for messages), by name.
    pub origins: BTreeMap<String, Place>,
    /// Problems that do not stop the policy from loading (printed by `policy check`).
    pub warnings: Vec<Problem>,
    /// MUD files in use; their rules with fixed peers are in `rules`, those with DNS names
    /// are added once resolved ([`crate::policy::mud::Names::apply`]).
    pub mud: Vec<crate::policy::mud::MudImport>,
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

/// Where a top-level `key` is written: `key:` in YAML, `"key"` in JSON.
fn find_key(text: &str, key: &str) -> (Option<usize>, Option<usize>) {
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
        if files.is_empty() {
            return Err(PolicyError::Empty(dir.to_path_buf()));
        }
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
        let mut group_places: BTreeMap<String, Place> = BTreeMap::new();
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
                    let (line, column) = find_key(text, "defaults");
                    problems.push(Problem {
                        place: Place {
                            file: file.clone(),
                            line,
                            column,
                        },
                        message: format!(
                            "`defaults` is already set in {}; only one file may set it",
                            first.display()
                        ),
                    });
                } else {
                    defaults_from = Some(file.clone());
                    policy.defaults = Defaults {
                        file: Some(file.clone()),
                        ..defaults
                    };
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
                policy
                    .origins
                    .entry(device.name.clone())
                    .or_insert(place.clone());
                policy.devices.push(device);
            }
            for group in parsed.groups {
                let nth = seen.entry(group.name.clone()).or_default();
                let (line, column) = find_name(text, &group.name, *nth);
                *nth += 1;
                if policy.groups.iter().any(|g| g.name == group.name) {
                    problems.push(Problem {
                        place: Place {
                            file: file.clone(),
                            line,
                            column,
                        },
                        message: format!("group `{}` is already defined", group.name),
                    });
                }
                group_places.entry(group.name.clone()).or_insert(Place {
                    file: file.clone(),
                    line,
                    column,
                });
                policy.groups.push(group);
            }
            let rule_lines = list_item_lines(text, "rules");
            for (index, rule) in parsed.rules.into_iter().enumerate() {
                let place = Place {
                    file: file.clone(),
                    line: rule_lines.get(index).copied(),
                    column: None,
                };
                policy.rules.push((place, rule));
            }
            crate::policy::mud::load_entries(file, text, parsed.mud, &mut policy, &mut problems);
        }
        // Members are checked at their group, also when no rule uses the group.
        for group in &policy.groups {
            for member in &group.members {
                if !policy.devices.iter().any(|d| &d.name == member) {
                    problems.push(Problem {
                        place: group_places
                            .get(&group.name)
                            .cloned()
                            .unwrap_or_else(|| Place {
                                file: PathBuf::from("(policy)"),
                                line: None,
                                column: None,
                            }),
                        message: format!(
                            "group `{}` lists `{member}`, which is no device",
                            group.name
                        ),
                    });
                }
            }
        }
        crate::policy::mud::check_kinds(&policy, &mut problems);
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
        policy.devices.sort_by(|a, b| a.name.cmp(&b.name));
        if problems.is_empty() {
            policy.check_rules(&mut problems);
        }
        if problems.is_empty() {
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

/// 1-based line numbers of the items of the top-level list `key:` in a YAML text.
pub(crate) fn list_item_lines(text: &str, key: &str) -> Vec<usize> {
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

/// An address block in the maps' 128-bit space (IPv4 is IPv4-mapped).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Prefix {
    pub addr: [u8; 16],
    /// 0..=128 bits.
    pub len: u8,
}

impl Prefix {
    pub fn host(ip: IpAddr) -> Prefix {
        Prefix {
            addr: crate::datapath::addr_key(ip),
            len: 128,
        }
    }

    pub const ANY: Prefix = Prefix {
        addr: [0; 16],
        len: 0,
    };

    /// Parses `10.20.0.0/16`, `fd00::/8` or a single address.
    pub fn parse(text: &str) -> Option<Prefix> {
        let (addr, len) = match text.split_once('/') {
            Some((a, l)) => (a, Some(l.parse::<u8>().ok()?)),
            None => (text, None),
        };
        let ip: IpAddr = addr.trim().parse().ok()?;
        let len = match (ip, len) {
            (IpAddr::V4(_), Some(l)) if l <= 32 => 96 + l,
            (IpAddr::V6(_), Some(l)) if l <= 128 => l,
            (_, Some(_)) => return None,
            (_, None) => 128,
        };
        Some(Prefix::host(ip).truncated(len))
    }

    fn truncated(mut self, len: u8) -> Prefix {
        for bit in usize::from(len)..128 {
            self.addr[bit / 8] &= !(0x80 >> (bit % 8));
        }
        self.len = len;
        self
    }

    /// Whether `other` lies within this block.
    pub fn contains(&self, other: &Prefix) -> bool {
        other.len >= self.len && other.truncated(self.len).addr == self.addr
    }
}

/// One rule compiled for one device address toward one peer prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompiledRule {
    pub device: IpAddr,
    pub peer: Prefix,
    pub rule: monitor_common::maps::Rule,
}

fn parse_protocol(text: &str) -> Option<u8> {
    if text.eq_ignore_ascii_case("any") {
        return Some(monitor_common::maps::RULE_ANY);
    }
    crate::support::proto::number(text)
}

fn parse_ports(spec: &PortsSpec, out: &mut Vec<(u16, u16)>) -> Result<(), String> {
    match spec {
        PortsSpec::One(port) => out.push((*port, *port)),
        PortsSpec::Text(text) => {
            let range = match text.split_once('-') {
                Some((lo, hi)) => (lo.trim().parse::<u16>(), hi.trim().parse::<u16>()),
                None => (text.trim().parse::<u16>(), text.trim().parse::<u16>()),
            };
            match range {
                (Ok(lo), Ok(hi)) if lo <= hi => out.push((lo, hi)),
                (Ok(lo), Ok(hi)) => {
                    return Err(format!("port range `{text}` runs backwards ({lo} > {hi})"));
                }
                _ => {
                    return Err(format!(
                        "`{text}` is not a port or a port range like 8000-8100"
                    ));
                }
            }
        }
        PortsSpec::List(list) => {
            for item in list {
                parse_ports(item, out)?;
            }
        }
    }
    Ok(())
}

impl Policy {
    fn problem_at(place: &Place, message: String) -> Problem {
        Problem {
            place: place.clone(),
            message,
        }
    }

    /// The devices an endpoint names, or why it names none.
    fn resolve_devices(&self, endpoint: &Endpoint) -> Result<Vec<&DeviceSpec>, String> {
        match endpoint {
            Endpoint::Device(name) => self
                .devices
                .iter()
                .find(|d| &d.name == name)
                .map(|d| vec![d])
                .ok_or_else(|| format!("no device is named `{name}`")),
            Endpoint::Group(name) => {
                let group = self
                    .groups
                    .iter()
                    .find(|g| &g.name == name)
                    .ok_or_else(|| format!("no group is named `{name}`"))?;
                let mut members = Vec::new();
                for member in &group.members {
                    members.push(self.devices.iter().find(|d| &d.name == member).ok_or_else(
                        || format!("group `{name}` lists `{member}`, which is no device"),
                    )?);
                }
                for kind in &group.kinds {
                    members.extend(self.devices.iter().filter(|d| &d.kind == kind));
                }
                members.sort_by(|a, b| a.name.cmp(&b.name));
                members.dedup_by(|a, b| a.name == b.name);
                Ok(members)
            }
            Endpoint::Kind(kind) => {
                let members: Vec<&DeviceSpec> =
                    self.devices.iter().filter(|d| &d.kind == kind).collect();
                if members.is_empty() {
                    Err(format!("no device is of kind `{kind}`"))
                } else {
                    Ok(members)
                }
            }
            Endpoint::Cidr(_) | Endpoint::Any(_) => {
                Err("`devices` must name devices: {device: ..}, {group: ..} or {kind: ..}".into())
            }
        }
    }

    /// The peer prefixes an endpoint names, and the enrolled devices among them (which get
    /// the mirrored rule, so that the peer's own policy does not undo it).
    fn resolve_peer(&self, endpoint: &Endpoint) -> Result<(Vec<Prefix>, Vec<&DeviceSpec>), String> {
        match endpoint {
            Endpoint::Cidr(text) => Prefix::parse(text)
                .map(|p| (vec![p], Vec::new()))
                .ok_or_else(|| {
                    format!("`{text}` is not an address or address block like 10.20.0.0/16")
                }),
            Endpoint::Any(true) => Ok((vec![Prefix::ANY], Vec::new())),
            Endpoint::Any(false) => Err("`any: false` names no peer; remove the rule".into()),
            other => {
                let devices = self.resolve_devices(other)?;
                let prefixes = devices
                    .iter()
                    .flat_map(|d| d.addresses.iter().map(|a| Prefix::host(*a)))
                    .collect();
                Ok((prefixes, devices))
            }
        }
    }

    /// Checks references, protocols, ports and contradictions of the rules; compiles them.
    fn check_rules(&mut self, problems: &mut Vec<Problem>) {
        for group in &self.groups {
            if group.members.is_empty() && group.kinds.is_empty() {
                self.warnings.push(Problem {
                    place: Place {
                        file: PathBuf::from("(policy)"),
                        line: None,
                        column: None,
                    },
                    message: format!("group `{}` has no members and no kinds", group.name),
                });
            }
        }
        match self.compile_rules() {
            Ok(_) => {}
            Err(mut found) => problems.append(&mut found),
        }
        // Contradictions: an allow and a deny covering the same devices, peers and ports.
        let rules = &self.rules;
        for (i, (place_a, a)) in rules.iter().enumerate() {
            for (place_b, b) in rules.iter().skip(i + 1) {
                if a.action != b.action
                    && a.devices == b.devices
                    && a.peer == b.peer
                    && a.protocol == b.protocol
                    && a.ports == b.ports
                    && a.direction == b.direction
                {
                    self.warnings.push(Problem {
                        place: place_b.clone(),
                        message: format!(
                            "this rule contradicts the rule at {place_a} (same devices, peer, protocol and ports); deny wins"
                        ),
                    });
                }
            }
        }
    }

    /// Every rule, compiled per device address and peer prefix (not yet folded).
    pub fn compile_rules(&self) -> Result<Vec<CompiledRule>, Vec<Problem>> {
        use monitor_common::maps::{Direction, RULE_ALLOW, RULE_ANY, RULE_DENY, Rule};
        let mut problems = Vec::new();
        let mut out = Vec::new();
        for (id, (place, spec)) in self.rules.iter().enumerate() {
            let endpoints = Endpoint::try_from(&spec.devices)
                .map_err(|m| format!("devices: {m}"))
                .and_then(|d| {
                    Endpoint::try_from(&spec.peer)
                        .map(|p| (d, p))
                        .map_err(|m| format!("peer: {m}"))
                });
            let (subject, peer) = match endpoints {
                Ok(pair) => pair,
                Err(m) => {
                    problems.push(Self::problem_at(place, m));
                    continue;
                }
            };
            let devices = match self.resolve_devices(&subject) {
                Ok(d) => d,
                Err(m) => {
                    problems.push(Self::problem_at(place, format!("devices: {m}")));
                    continue;
                }
            };
            let (peers, peer_devices) = match self.resolve_peer(&peer) {
                Ok(p) => p,
                Err(m) => {
                    problems.push(Self::problem_at(place, format!("peer: {m}")));
                    continue;
                }
            };
            let Some(protocol) = parse_protocol(&spec.protocol) else {
                problems.push(Self::problem_at(
                    place,
                    format!("protocol `{}` is not tcp, udp, sctp, icmp, icmpv6, any or a protocol number", spec.protocol),
                ));
                continue;
            };
            let mut ports = Vec::new();
            match &spec.ports {
                None => ports.push((0, u16::MAX)),
                Some(p) => {
                    if let Err(m) = parse_ports(p, &mut ports) {
                        problems.push(Self::problem_at(place, format!("ports: {m}")));
                        continue;
                    }
                }
            }
            let action = match spec.action {
                RuleAction::Allow => RULE_ALLOW,
                RuleAction::Deny => RULE_DENY,
            };
            let (direction, mirrored) = match spec.direction {
                RuleDirection::Out => (Direction::Outbound as u8, Direction::Inbound as u8),
                RuleDirection::In => (Direction::Inbound as u8, Direction::Outbound as u8),
                RuleDirection::Any => (RULE_ANY, RULE_ANY),
            };
            for (low, high) in &ports {
                let rule = |direction| Rule {
                    port_low: *low,
                    port_high: *high,
                    protocol,
                    direction,
                    action,
                    _pad: 0,
                    rule_id: id as u32,
                };
                for device in &devices {
                    for addr in &device.addresses {
                        for peer in &peers {
                            out.push(CompiledRule {
                                device: *addr,
                                peer: *peer,
                                rule: rule(direction),
                            });
                        }
                    }
                }
                // The peer devices see the same flows from their side.
                for peer in &peer_devices {
                    for addr in &peer.addresses {
                        for device in &devices {
                            for subject in &device.addresses {
                                out.push(CompiledRule {
                                    device: *addr,
                                    peer: Prefix::host(*subject),
                                    rule: rule(mirrored),
                                });
                            }
                        }
                    }
                }
            }
        }
        if problems.is_empty() {
            let places: Vec<&Place> = self.rules.iter().map(|(place, _)| place).collect();
            if let Err(mut more) = fold_rules_at(&out, &places).map(|_| ()) {
                problems.append(&mut more);
            }
        }
        if problems.is_empty() {
            Ok(out)
        } else {
            Err(problems)
        }
    }
}

/// Rule sets for the `RULES` LPM trie: per device address and peer prefix, every rule
/// whose peer block contains that prefix (an LPM lookup finds only the longest match).
pub fn fold_rules(
    rules: &[CompiledRule],
) -> Result<
    Vec<(
        u32,
        monitor_common::maps::RuleKeyData,
        monitor_common::maps::RuleSet,
    )>,
    Vec<Problem>,
> {
    fold_rules_at(rules, &[])
}

/// [`fold_rules`], placing a rule set that is too big at the rule (by `rule_id`, an index
/// into `places`) that passes the limit.
fn fold_rules_at(
    rules: &[CompiledRule],
    places: &[&Place],
) -> Result<
    Vec<(
        u32,
        monitor_common::maps::RuleKeyData,
        monitor_common::maps::RuleSet,
    )>,
    Vec<Problem>,
> {
    use monitor_common::maps::{MAX_RULES_PER_SET, RULE_PREFIX_BASE, Rule, RuleKeyData, RuleSet};
    let mut by_device: BTreeMap<IpAddr, Vec<&CompiledRule>> = BTreeMap::new();
    for rule in rules {
        by_device.entry(rule.device).or_default().push(rule);
    }
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for (device, list) in by_device {
        let prefixes: BTreeSet<Prefix> = list.iter().map(|r| r.peer).collect();
        for prefix in prefixes {
            let mut applicable: Vec<Rule> = list
                .iter()
                .filter(|r| r.peer.contains(&prefix))
                .map(|r| r.rule)
                .collect();
            applicable.sort_by_key(|r| (r.rule_id, r.port_low, r.direction));
            applicable.dedup();
            if applicable.len() > MAX_RULES_PER_SET {
                let over = places.get(applicable[MAX_RULES_PER_SET].rule_id as usize);
                problems.push(Problem {
                    place: over.map_or_else(|| Place { file: PathBuf::from("(policy)"), line: None, column: None }, |p| (*p).clone()),
                    message: format!(
                        "{} rules apply to {device} toward {}/{}; at most {MAX_RULES_PER_SET} can (merge port lists into ranges or use groups)",
                        applicable.len(),
                        crate::datapath::addr_of(&prefix.addr),
                        prefix.len
                    ),
                });
                continue;
            }
            let mut set = RuleSet {
                count: applicable.len() as u32,
                _pad: 0,
                rules: [Rule::default(); MAX_RULES_PER_SET],
            };
            set.rules[..applicable.len()].copy_from_slice(&applicable);
            out.push((
                RULE_PREFIX_BASE + u32::from(prefix.len),
                RuleKeyData {
                    generation: 0,
                    device: crate::datapath::addr_key(device),
                    peer: prefix.addr,
                },
                set,
            ));
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
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
        DeviceEntry::new(
            slot,
            self.mode.map_or(MODE_INHERIT, |m| Mode::from(m) as u8),
            flags,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<Policy, Vec<Problem>> {
        Policy::from_sources(&[(PathBuf::from("ward.yaml"), text.to_string())]).map_err(|e| match e
        {
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
        let problems = check(
            "devices:\n  - name: pump-1\n    kind: infusion-pump\n    adresses: [10.1.0.11]\n",
        )
        .expect_err("unknown field");
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].place.file, PathBuf::from("ward.yaml"));
        assert_eq!(problems[0].place.line, Some(4));
        assert!(
            problems[0].message.contains("adresses"),
            "{}",
            problems[0].message
        );
    }

    #[test]
    fn duplicate_names_and_addresses_are_refused() {
        let problems = check(
            "devices:\n  - name: a\n    kind: pacs\n    addresses: [10.0.0.1]\n  - name: a\n    kind: pacs\n    addresses: [10.0.0.1]\n",
        )
        .expect_err("duplicates");
        assert!(
            problems
                .iter()
                .any(|p| p.message.contains("already defined"))
        );
        assert!(
            problems
                .iter()
                .any(|p| p.message.contains("already the address"))
        );
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
    fn break_glass_max_is_read_as_a_duration_and_kept_with_its_file() {
        let policy = check("defaults:\n  mode: audit\n  break-glass-max: 8h 30m\n").expect("valid");
        assert_eq!(
            policy.defaults.break_glass_max,
            Some(Duration::from_secs(8 * 3600 + 30 * 60))
        );
        assert_eq!(policy.defaults.file, Some(PathBuf::from("ward.yaml")));
        let unset = check("defaults:\n  mode: audit\n").expect("valid");
        assert_eq!(unset.defaults.break_glass_max, None);
    }

    #[test]
    fn a_bad_break_glass_max_is_refused_at_its_line_and_column() {
        for (value, column, reason) in [
            ("0s", 20, "is shorter than 1m"),
            ("30s", 20, "is shorter than 1m"),
            ("8d", 20, "is longer than the 7days a policy may allow"),
            ("100000d", 20, "is longer than the 7days a policy may allow"),
            ("soon", 20, "is not a duration such as 8h or 90m"),
            (
                "8",
                20,
                "is not a duration such as 8h or 90m (time unit needed",
            ),
        ] {
            let problems = check(&format!(
                "devices: []\ndefaults:\n  mode: audit\n  break-glass-max: {value}\n"
            ))
            .expect_err(value);
            assert_eq!(problems.len(), 1, "{value}: {problems:?}");
            let problem = &problems[0];
            assert_eq!(
                (problem.place.line, problem.place.column),
                (Some(4), Some(column)),
                "{value}: {problem}"
            );
            assert!(problem.message.contains(reason), "{value}: {problem}");
        }
    }

    #[test]
    fn macs_are_checked() {
        assert_eq!(
            parse_mac("00:1b:44:11:3a:b7"),
            Some([0, 0x1b, 0x44, 0x11, 0x3a, 0xb7])
        );
        assert_eq!(
            parse_mac("00-1B-44-11-3A-B7"),
            Some([0, 0x1b, 0x44, 0x11, 0x3a, 0xb7])
        );
        assert_eq!(parse_mac("00:1b:44:11:3a"), None);
        assert_eq!(parse_mac("zz:1b:44:11:3a:b7"), None);
    }
}
