//! What a policy file says, as written: devices, groups, rules, defaults and `mud:` entries,
//! with serde's strict reading of each (unknown fields refused, `break-glass-max` checked
//! while parsing so that a bad value has a line and column).

use std::{collections::BTreeMap, net::IpAddr, path::PathBuf, time::Duration};

use monitor_common::{
    Mode,
    maps::{
        DEVICE_ENFORCE_CONFIRMED, DEVICE_LIFE_CRITICAL, DEVICE_SCHEDULE_ENFORCE,
        DEVICE_SCHEDULE_IGNORE, DeviceEntry, MODE_INHERIT,
    },
};
use serde::{Deserialize, Serialize};

use crate::support::mode_name;

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
    /// (`crate::policy::mud`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mud: Vec<MudEntry>,
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
    #[serde(
        default,
        serialize_with = "mode_name::serialize_option",
        deserialize_with = "mode_name::deserialize_option"
    )]
    pub mode: Option<Mode>,
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
    /// The site's time zone (IANA name, e.g. `Europe/Berlin`): the hours of the week of
    /// the baseline's schedules are the site's local hours. Not set: the router's.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "time_zone")]
    pub time_zone: Option<String>,
    /// Hours either side of the current one that count as on schedule (0 to
    /// [`monitor_common::schedule::MAX_TOLERANCE`]; default
    /// [`monitor_common::schedule::DEFAULT_TOLERANCE`]).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "schedule_tolerance"
    )]
    pub schedule_tolerance: Option<u8>,
    /// What a schedule means for each device kind (`patient-monitor: ignore`); a
    /// device's own `schedule:` wins.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub schedule_by_kind: BTreeMap<String, ScheduleMode>,
    /// The file these defaults were read from (set by the loader; for messages).
    #[serde(skip)]
    pub file: Option<PathBuf>,
}

/// What a device's learned schedule means (`schedule:` of a device, or of its kind in
/// `defaults: schedule-by-kind`).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum ScheduleMode {
    /// A baseline flow off its schedule is reported (`off_schedule`: event, would-drop),
    /// never dropped.
    #[default]
    Audit,
    /// ... and dropped where the device is enforced (never a life-critical device
    /// without its confirmation).
    Enforce,
    /// The device runs round the clock: its schedule is not checked.
    Ignore,
}

impl ScheduleMode {
    pub fn name(self) -> &'static str {
        match self {
            ScheduleMode::Audit => "audit",
            ScheduleMode::Enforce => "enforce",
            ScheduleMode::Ignore => "ignore",
        }
    }

    /// The `DEVICE_SCHEDULE_*` flags of a device entry.
    pub fn device_flags(self) -> u8 {
        match self {
            ScheduleMode::Audit => 0,
            ScheduleMode::Enforce => DEVICE_SCHEDULE_ENFORCE,
            ScheduleMode::Ignore => DEVICE_SCHEDULE_IGNORE,
        }
    }
}

/// `time-zone`, checked against the time zone database while parsing, so that a bad name
/// is reported with its file, line and column.
mod time_zone {
    use std::fmt;

    use serde::{Deserializer, Serializer, de};

    pub fn serialize<S: Serializer>(value: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(name) => s.serialize_str(name),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        struct Text;
        impl de::Visitor<'_> for Text {
            type Value = String;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a time zone name such as Europe/Berlin")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<String, E> {
                crate::support::week::time_zone(text)
                    .map(|_| text.to_owned())
                    .map_err(E::custom)
            }
        }
        d.deserialize_str(Text).map(Some)
    }
}

/// `schedule-tolerance`: whole hours, at most `MAX_TOLERANCE`.
mod schedule_tolerance {
    use monitor_common::schedule::MAX_TOLERANCE;
    use serde::{Deserialize, Deserializer, Serializer, de};

    pub fn serialize<S: Serializer>(value: &Option<u8>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(hours) => s.serialize_u8(*hours),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u8>, D::Error> {
        let hours = u64::deserialize(d)?;
        if hours > u64::from(MAX_TOLERANCE) {
            return Err(de::Error::custom(format!(
                "`schedule-tolerance: {hours}` is more than {MAX_TOLERANCE} hours either side; a wider tolerance leaves the schedule meaningless (use `schedule: ignore` instead)"
            )));
        }
        Ok(Some(hours as u8))
    }
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
    /// The device's IPv4/IPv6 addresses. A device given by `mac:` alone has none here:
    /// its addresses are learned from what it sends on a ward leg, and followed.
    #[serde(default)]
    pub addresses: Vec<IpAddr>,
    /// The device's MAC, or several separated by commas (a device with two NICs). On a
    /// ward leg its addresses are bound to them: a frame with one of its addresses from
    /// another MAC is a spoof (`spoofed_source`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(default)]
    pub location: Location,
    #[serde(default)]
    pub criticality: Criticality,
    /// Overrides the global mode for this device.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "mode_name::serialize_option",
        deserialize_with = "mode_name::deserialize_option"
    )]
    pub mode: Option<Mode>,
    /// Required, with `mode: enforce`, to enforce a life-critical device.
    #[serde(default)]
    pub confirm_enforce: bool,
    /// What the device's learned schedule means; default: its kind's
    /// (`defaults: schedule-by-kind`), else `audit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<ScheduleMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
}

/// A `mud:` entry of a policy file: a manufacturer's MUD file (RFC 8520) as the rules of a
/// device kind (read by `crate::policy::mud`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct MudEntry {
    /// The device kind the file describes: its rules apply to every device of the kind.
    pub kind: String,
    /// The MUD file (JSON), relative to the policy directory.
    pub file: PathBuf,
    /// What `"ietf-mud:mud": {"local-networks": [null]}` means on this network: address
    /// blocks. Without them a file that uses `local-networks` is refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub local_networks: Vec<String>,
    /// DNS servers for the file's names, `IP` or `IP:PORT` (`[IPv6]:PORT`); default: the
    /// system's resolver configuration.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_servers: Vec<String>,
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

/// `aa:bb:cc:dd:ee:ff`, the way the inventory writes a MAC.
pub fn format_mac(mac: [u8; 6]) -> String {
    let [a, b, c, d, e, f] = mac;
    format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
}

/// The MACs of a `mac:` value: each comma-separated part that is a MAC (the policy check
/// reports those that are not).
pub fn parse_macs(text: &str) -> Vec<[u8; 6]> {
    text.split(',')
        .filter_map(|part| parse_mac(part.trim()))
        .collect()
}

/// A device as the XDP program sees it, given the slot its counters live in.
impl DeviceSpec {
    /// The MACs its addresses are bound to (none: not bound).
    pub fn macs(&self) -> Vec<[u8; 6]> {
        self.mac.as_deref().map(parse_macs).unwrap_or_default()
    }

    pub fn entry(&self, slot: u32) -> DeviceEntry {
        let mut flags = 0;
        if self.criticality == Criticality::LifeCritical {
            flags |= DEVICE_LIFE_CRITICAL;
        }
        if self.confirm_enforce && self.mode == Some(Mode::Enforce) {
            flags |= DEVICE_ENFORCE_CONFIRMED;
        }
        flags |= self.schedule.unwrap_or_default().device_flags();
        DeviceEntry::new(slot, self.mode.map_or(MODE_INHERIT, |m| m as u8), flags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
