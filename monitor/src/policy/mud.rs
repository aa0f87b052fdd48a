//! Manufacturer Usage Descriptions (RFC 8520) as the starting policy of a device kind.
//!
//! A policy file names the MUD file a manufacturer publishes for a kind of device:
//!
//! ```yaml
//! mud:
//!   - kind: badge-reader                        # every device of this kind
//!     file: mud/rfc8520-lightbulb2000.json      # relative to the policy directory
//!     dns-servers: ["10.20.0.53"]               # optional; default: /etc/resolv.conf
//!     local-networks: [10.10.0.0/16]            # optional: what `local-networks` means here
//! ```
//!
//! Every ACE of the ACLs that the file's `from-device-policy` and `to-device-policy` name
//! becomes a rule for the devices of that kind: `accept` an allow rule, `drop` a deny rule.
//! The rules are flow rules like all others ([`crate::policy`]): an ACE's port on the peer's
//! side is the service port and the device is the client (`direction: out`), a port on the
//! device's side makes the peer the client (`direction: in`); `ietf-mud:direction-initiated`
//! says it outright for TCP. The from-device ACE of a flow and the to-device ACE of its
//! replies therefore become one rule.
//!
//! Parsing is strict: unknown members, wrong JSON types, references to ACLs that do not
//! exist, and matches the monitor cannot enforce exactly are refused with the JSON pointer
//! (RFC 6901) of the problem and, where the JSON parser knows it, line and column. Real MUD
//! files break the specification; the monitor reports what is wrong rather than guessing.
//! Not supported, and refused with a reason: Ethernet matches, `manufacturer`,
//! `same-manufacturer`, `model`, `controller` and `my-controller` (they need other devices'
//! MUD URLs or a controller registry the monitor does not have), IP header fields other than
//! addresses and protocol, TCP flags and sequence numbers, a client's (ephemeral) port, ICMP
//! codes, `reject`, declared MUD extensions, and IPv6 ACEs that would match every IPv6 peer
//! (IPv4 lives inside the monitor's IPv6 address space, so such a rule would also open IPv4).
//! `local-networks` works when the policy entry says which blocks it means.
//!
//! DNS names (`ietf-acldns:dst-dnsname` / `src-dnsname`) are resolved by the controller
//! ([`Names`], with hickory-resolver): A records for IPv4 ACEs, AAAA for IPv6. Each answer
//! is kept for its TTL (at least [`MIN_TTL`]); the daemon re-resolves names whose TTL has
//! run out and re-applies the policy when an address changed. A name that does not exist
//! has no addresses (its rules open nothing) until it is asked again after the negative TTL;
//! a server that does not answer leaves the last known addresses in force and is asked
//! again after [`RETRY_AFTER_FAILURE`].

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    io::Read,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::policy::{
    EndpointSpec, MAX_POLICY_FILE_BYTES, Place, Policy, PortsSpec, Prefix, Problem, RuleAction,
    RuleDirection, RuleSpec,
};

/// Answers are kept at least this long, whatever their TTL (the daemon looks once a second).
pub const MIN_TTL: Duration = Duration::from_secs(1);
/// Answers are kept at most this long.
pub const MAX_TTL: Duration = Duration::from_secs(24 * 3600);
/// A name without addresses, when the answer gives no negative TTL, is asked again after this.
pub const DEFAULT_NEGATIVE_TTL: Duration = Duration::from_secs(30);
/// A name whose servers did not answer is asked again after this; its last addresses stay.
/// (Asking blocks the daemon's loop for at most the resolver's 2 s timeout.)
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(10);
/// How long one question may take, all servers and attempts included.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(4);

/// A `mud:` entry of a policy file.
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

/// IPv4 or IPv6: which ACL container an ACE uses, and which records a name needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// The DNS record type of the family.
    pub fn record(self) -> &'static str {
        match self {
            Family::V4 => "A",
            Family::V6 => "AAAA",
        }
    }

    fn holds(self, ip: &IpAddr) -> bool {
        matches!(
            (self, ip),
            (Family::V4, IpAddr::V4(_)) | (Family::V6, IpAddr::V6(_))
        )
    }
}

/// The other side of a MUD rule.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum MudPeer {
    /// An address block (`10.0.0.0/8`, `2001:db8::/32`).
    Cidr(String),
    /// A DNS name, resolved by the controller.
    Name { name: String, family: Family },
}

impl fmt::Display for MudPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MudPeer::Cidr(cidr) => write!(f, "{cidr}"),
            MudPeer::Name { name, family } => write!(f, "{name} ({})", family.record()),
        }
    }
}

/// One rule a MUD file asks for, for every device of the entry's kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MudRule {
    pub peer: MudPeer,
    /// As policy rules write it: tcp, udp, icmp, icmpv6, any or a number.
    pub protocol: String,
    pub ports: Option<PortsSpec>,
    pub direction: RuleDirection,
    pub action: RuleAction,
    /// The ACEs it comes from, `acl/ace`.
    pub aces: Vec<String>,
}

impl MudRule {
    /// `out`, `in` or `any`, as policy files write it.
    pub fn direction_name(&self) -> &'static str {
        match self.direction {
            RuleDirection::Out => "out",
            RuleDirection::In => "in",
            RuleDirection::Any => "any",
        }
    }
}

/// What the `ietf-mud:mud` container says about the device.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MudInfo {
    pub mud_url: String,
    pub last_update: String,
    pub cache_validity_hours: u8,
    pub is_supported: bool,
    pub systeminfo: Option<String>,
    pub mfg_name: Option<String>,
    pub model_name: Option<String>,
    pub firmware_rev: Option<String>,
    pub software_rev: Option<String>,
    pub documentation: Option<String>,
    pub mud_signature: Option<String>,
}

/// A problem in a MUD file: where (JSON pointer, and line and column when the JSON parser
/// gave them) and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// RFC 6901 JSON pointer; empty for the whole document.
    pub pointer: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.pointer.is_empty() {
            write!(f, "at the top level: {}", self.message)
        } else {
            write!(f, "at {}: {}", self.pointer, self.message)
        }
    }
}

/// A MUD file, checked: what it says and the rules it asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MudFile {
    pub info: MudInfo,
    pub rules: Vec<MudRule>,
    /// Problems that do not stop the file from being used.
    pub warnings: Vec<Diagnostic>,
}

/// A MUD file as a policy entry uses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MudImport {
    /// The policy entry.
    pub place: Place,
    pub kind: String,
    /// The MUD file's path.
    pub file: PathBuf,
    /// Empty: the system's resolver configuration.
    pub dns_servers: Vec<SocketAddr>,
    pub mud: MudFile,
}

impl MudImport {
    fn rule_spec(&self, rule: &MudRule, cidr: String, note: &str) -> (Place, RuleSpec) {
        let file = self.file.file_name().map_or_else(
            || self.file.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        (
            self.place.clone(),
            RuleSpec {
                description: Some(format!(
                    "MUD {file} ({}): {}{note}",
                    self.mud.info.mud_url,
                    rule.aces.join(", ")
                )),
                devices: EndpointSpec {
                    kind: Some(self.kind.clone()),
                    ..EndpointSpec::default()
                },
                peer: EndpointSpec {
                    cidr: Some(cidr),
                    ..EndpointSpec::default()
                },
                protocol: rule.protocol.clone(),
                ports: rule.ports.clone(),
                direction: rule.direction,
                action: rule.action,
            },
        )
    }

    /// The policy rules of the ACEs whose peers are address blocks.
    pub fn fixed_rules(&self) -> Vec<(Place, RuleSpec)> {
        self.mud
            .rules
            .iter()
            .filter_map(|rule| match &rule.peer {
                MudPeer::Cidr(cidr) => Some(self.rule_spec(rule, cidr.clone(), "")),
                MudPeer::Name { .. } => None,
            })
            .collect()
    }

    /// The DNS questions of the ACEs whose peers are names.
    pub fn questions(&self) -> impl Iterator<Item = Question> + '_ {
        self.mud.rules.iter().filter_map(|rule| match &rule.peer {
            MudPeer::Name { name, family } => Some(Question {
                name: name.clone(),
                family: *family,
                servers: self.dns_servers.clone(),
            }),
            MudPeer::Cidr(_) => None,
        })
    }

    /// The policy rules of the ACEs whose peers are names, one per address `names` knows.
    pub fn named_rules(&self, names: &Names) -> Vec<(Place, RuleSpec)> {
        let mut out = Vec::new();
        for rule in &self.mud.rules {
            let MudPeer::Name { name, family } = &rule.peer else {
                continue;
            };
            let question = Question {
                name: name.clone(),
                family: *family,
                servers: self.dns_servers.clone(),
            };
            for address in names.addresses(&question) {
                out.push(self.rule_spec(
                    rule,
                    address.to_string(),
                    &format!(" [{name} {} = {address}]", family.record()),
                ));
            }
        }
        out
    }

    /// Reads and checks the MUD file of `entry` (relative to `dir`); problems are placed in
    /// the MUD file, or at the policy entry (`place`) when they are the entry's.
    pub fn load(
        entry: MudEntry,
        dir: &Path,
        place: &Place,
    ) -> Result<(MudImport, Vec<Problem>), Vec<Problem>> {
        let at_entry = |message: String| Problem {
            place: place.clone(),
            message: format!("mud entry: {message}"),
        };
        let mut problems = Vec::new();
        if entry.kind.trim().is_empty() {
            problems.push(at_entry(
                "`kind` is empty; name the device kind the MUD file describes".into(),
            ));
        }
        let mut dns_servers = Vec::new();
        for server in &entry.dns_servers {
            match parse_server(server) {
                Some(addr) => dns_servers.push(addr),
                None => problems.push(at_entry(format!(
                    "dns-servers: `{server}` is not IP or IP:PORT like 10.20.0.53 or [fd00::53]:53"
                ))),
            }
        }
        for block in &entry.local_networks {
            if Prefix::parse(block).is_none() {
                problems.push(at_entry(format!(
                    "local-networks: `{block}` is not an address block like 10.10.0.0/16"
                )));
            }
        }
        let path = dir.join(&entry.file);
        let text = match read_limited(&path) {
            Ok(text) => text,
            Err(message) => {
                problems.push(at_entry(format!("MUD file {}: {message}", path.display())));
                return Err(problems);
            }
        };
        let in_file = |d: Diagnostic| Problem {
            place: Place {
                file: path.clone(),
                line: d.line,
                column: d.column,
            },
            message: d.to_string(),
        };
        match parse(&text, &entry.local_networks) {
            Ok(mud) if problems.is_empty() => {
                let warnings = mud.warnings.iter().cloned().map(in_file).collect();
                Ok((
                    MudImport {
                        place: place.clone(),
                        kind: entry.kind,
                        file: path.clone(),
                        dns_servers,
                        mud,
                    },
                    warnings,
                ))
            }
            Ok(_) => Err(problems),
            Err(found) => {
                problems.extend(found.into_iter().map(in_file));
                Err(problems)
            }
        }
    }
}

/// Loads the `mud:` entries of one policy file (`file`, its `text`): the rules with fixed
/// peers join the policy's rules at once; those with names wait for [`Names::apply`].
pub fn load_entries(
    file: &Path,
    text: &str,
    entries: Vec<MudEntry>,
    policy: &mut Policy,
    problems: &mut Vec<Problem>,
) {
    let lines = crate::policy::list_item_lines(text, "mud");
    let dir = file.parent().unwrap_or(Path::new(""));
    for (index, entry) in entries.into_iter().enumerate() {
        let place = Place {
            file: file.to_path_buf(),
            line: lines.get(index).copied(),
            column: None,
        };
        match MudImport::load(entry, dir, &place) {
            Ok((import, warnings)) => {
                policy.warnings.extend(warnings);
                policy.rules.extend(import.fixed_rules());
                policy.mud.push(import);
            }
            Err(mut found) => problems.append(&mut found),
        }
    }
}

/// A MUD entry for a kind no device has is a mistake (a misspelt kind), also when its
/// rules wait for names.
pub fn check_kinds(policy: &Policy, problems: &mut Vec<Problem>) {
    for import in &policy.mud {
        if !policy.devices.iter().any(|d| d.kind == import.kind) {
            problems.push(Problem {
                place: import.place.clone(),
                message: format!("mud entry: no device is of kind `{}`", import.kind),
            });
        }
    }
}

/// The policy's MUD files and the rules each becomes, for people to review (`monitor mud
/// show`); with `names`, the addresses each name has.
pub fn describe(policy: &Policy, names: Option<&Names>) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    if policy.mud.is_empty() {
        out.push_str("no MUD files in this policy\n");
    }
    for import in &policy.mud {
        let info = &import.mud.info;
        let _ = writeln!(
            out,
            "{} for every device of kind `{}` ({})",
            import.file.display(),
            import.kind,
            import.place
        );
        let about: Vec<&str> = [
            &info.systeminfo,
            &info.mfg_name,
            &info.model_name,
            &info.firmware_rev,
        ]
        .into_iter()
        .filter_map(|v| v.as_deref())
        .collect();
        let _ = writeln!(
            out,
            "  {} ({}), last update {}",
            info.mud_url,
            about.join(", "),
            info.last_update
        );
        if !info.is_supported {
            let _ = writeln!(out, "  the manufacturer no longer supports this device");
        }
        for rule in &import.mud.rules {
            let action = match rule.action {
                RuleAction::Allow => "allow",
                RuleAction::Deny => "deny",
            };
            let direction = rule.direction_name();
            let ports = match &rule.ports {
                None => String::new(),
                Some(p) => format!("/{}", ports_text(p)),
            };
            let _ = writeln!(
                out,
                "  {action} {direction} {}{ports} peer {}   [{}]",
                rule.protocol,
                rule.peer,
                rule.aces.join(", ")
            );
            if let (Some(names), MudPeer::Name { name, family }) = (names, &rule.peer) {
                let question = Question {
                    name: name.clone(),
                    family: *family,
                    servers: import.dns_servers.clone(),
                };
                let _ = writeln!(
                    out,
                    "      {question}: {}",
                    join(&names.addresses(&question))
                );
            }
        }
    }
    out
}

fn ports_text(ports: &PortsSpec) -> String {
    match ports {
        PortsSpec::One(p) => p.to_string(),
        PortsSpec::Text(t) => t.clone(),
        PortsSpec::List(list) => list.iter().map(ports_text).collect::<Vec<_>>().join(","),
    }
}

fn parse_server(text: &str) -> Option<SocketAddr> {
    text.parse::<SocketAddr>().ok().or_else(|| {
        text.parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, 53))
    })
}

/// A regular file's text, refused unread when it is over the policy size limit.
fn read_limited(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    if !meta.is_file() {
        return Err("is not a regular file".into());
    }
    if meta.len() > MAX_POLICY_FILE_BYTES {
        return Err(format!(
            "file is {} bytes, over the {MAX_POLICY_FILE_BYTES}-byte limit; refused unread",
            meta.len()
        ));
    }
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_POLICY_FILE_BYTES + 1).read_to_string(&mut text))
        .map_err(|e| format!("cannot read: {e}"))?;
    Ok(text)
}

// ---- The JSON of RFC 8520 and RFC 8519, as strictly as their YANG allows. ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    #[serde(rename = "ietf-mud:mud")]
    mud: MudContainer,
    #[serde(rename = "ietf-access-control-list:acls")]
    acls: Option<AclsContainer>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct MudContainer {
    mud_version: u8,
    mud_url: String,
    last_update: String,
    mud_signature: Option<String>,
    cache_validity: Option<u8>,
    is_supported: bool,
    systeminfo: Option<String>,
    mfg_name: Option<String>,
    model_name: Option<String>,
    firmware_rev: Option<String>,
    software_rev: Option<String>,
    documentation: Option<String>,
    #[serde(default)]
    extensions: Vec<String>,
    from_device_policy: Option<DevicePolicy>,
    to_device_policy: Option<DevicePolicy>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct DevicePolicy {
    access_lists: AccessLists,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct AccessLists {
    access_list: Vec<AccessListRef>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AccessListRef {
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AclsContainer {
    acl: Vec<Acl>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Acl {
    name: String,
    #[serde(rename = "type")]
    acl_type: Option<String>,
    aces: Option<Aces>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Aces {
    ace: Vec<Ace>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Ace {
    name: String,
    matches: Option<Matches>,
    actions: Actions,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Matches {
    eth: Option<Value>,
    ipv4: Option<Ipv4Match>,
    ipv6: Option<Ipv6Match>,
    tcp: Option<TcpMatch>,
    udp: Option<UdpMatch>,
    icmp: Option<IcmpMatch>,
    #[serde(rename = "egress-interface")]
    egress_interface: Option<Value>,
    #[serde(rename = "ingress-interface")]
    ingress_interface: Option<Value>,
    #[serde(rename = "ietf-mud:mud")]
    mud: Option<MudMatch>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Ipv4Match {
    destination_ipv4_network: Option<String>,
    source_ipv4_network: Option<String>,
    #[serde(rename = "ietf-acldns:dst-dnsname")]
    dst_dnsname: Option<String>,
    #[serde(rename = "ietf-acldns:src-dnsname")]
    src_dnsname: Option<String>,
    protocol: Option<u8>,
    dscp: Option<Value>,
    ecn: Option<Value>,
    length: Option<Value>,
    ttl: Option<Value>,
    ihl: Option<Value>,
    flags: Option<Value>,
    offset: Option<Value>,
    identification: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Ipv6Match {
    destination_ipv6_network: Option<String>,
    source_ipv6_network: Option<String>,
    #[serde(rename = "ietf-acldns:dst-dnsname")]
    dst_dnsname: Option<String>,
    #[serde(rename = "ietf-acldns:src-dnsname")]
    src_dnsname: Option<String>,
    protocol: Option<u8>,
    dscp: Option<Value>,
    ecn: Option<Value>,
    length: Option<Value>,
    ttl: Option<Value>,
    flow_label: Option<Value>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum Initiated {
    FromDevice,
    ToDevice,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct TcpMatch {
    #[serde(rename = "ietf-mud:direction-initiated")]
    direction_initiated: Option<Initiated>,
    source_port: Option<PortMatch>,
    destination_port: Option<PortMatch>,
    sequence_number: Option<Value>,
    acknowledgement_number: Option<Value>,
    data_offset: Option<Value>,
    reserved: Option<Value>,
    flags: Option<Value>,
    window_size: Option<Value>,
    urgent_pointer: Option<Value>,
    options: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct UdpMatch {
    source_port: Option<PortMatch>,
    destination_port: Option<PortMatch>,
    length: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct IcmpMatch {
    #[serde(rename = "type")]
    icmp_type: Option<u8>,
    code: Option<Value>,
    rest_of_header: Option<Value>,
}

/// `port-range-or-operator` of RFC 8519: a range, or an operator and a port.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct PortMatch {
    lower_port: Option<u16>,
    upper_port: Option<u16>,
    operator: Option<String>,
    port: Option<u16>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct MudMatch {
    manufacturer: Option<Value>,
    same_manufacturer: Option<Value>,
    model: Option<Value>,
    local_networks: Option<Value>,
    controller: Option<Value>,
    my_controller: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Actions {
    forwarding: String,
    logging: Option<String>,
}

// ---- Checking and converting. ----

/// A JSON pointer under construction.
#[derive(Clone)]
struct Pointer(String);

impl Pointer {
    fn key(&self, key: &str) -> Pointer {
        Pointer(format!(
            "{}/{}",
            self.0,
            key.replace('~', "~0").replace('/', "~1")
        ))
    }
    fn index(&self, index: usize) -> Pointer {
        Pointer(format!("{}/{index}", self.0))
    }
    fn diag(&self, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            pointer: self.0.clone(),
            line: None,
            column: None,
            message: message.into(),
        }
    }
}

/// The policy of the device's own packets, or of the packets to it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    FromDevice,
    ToDevice,
}

impl Side {
    fn key(self) -> &'static str {
        match self {
            Side::FromDevice => "from-device-policy",
            Side::ToDevice => "to-device-policy",
        }
    }
}

/// serde's message without serde_json's " at line L column C" (the place says it).
fn bare_message(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(at) if error.line() > 0 => text[..at].to_string(),
        _ => text,
    }
}

/// Parses and checks a MUD file's text. `local_networks` is what `local-networks` stands
/// for (empty: refused).
pub fn parse(text: &str, local_networks: &[String]) -> Result<MudFile, Vec<Diagnostic>> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let document: Document = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let mut pointer = Pointer(String::new());
        for segment in e.path().iter() {
            pointer = match segment {
                serde_path_to_error::Segment::Seq { index } => pointer.index(*index),
                serde_path_to_error::Segment::Map { key } => pointer.key(key),
                serde_path_to_error::Segment::Enum { variant } => pointer.key(variant),
                // Between members (a syntax error): the container is the place.
                serde_path_to_error::Segment::Unknown => break,
            };
        }
        let inner = e.inner();
        vec![Diagnostic {
            pointer: pointer.0,
            line: Some(inner.line()).filter(|l| *l > 0),
            column: Some(inner.column()).filter(|_| inner.line() > 0),
            message: bare_message(inner),
        }]
    })?;
    deserializer.end().map_err(|e| {
        vec![Diagnostic {
            pointer: String::new(),
            line: Some(e.line()),
            column: Some(e.column()),
            message: bare_message(&e),
        }]
    })?;
    convert(document, local_networks)
}

fn convert(document: Document, local_networks: &[String]) -> Result<MudFile, Vec<Diagnostic>> {
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let root = Pointer(String::new());
    let mud_at = root.key("ietf-mud:mud");
    let mud = document.mud;
    if mud.mud_version != 1 {
        problems.push(mud_at.key("mud-version").diag(format!(
            "mud-version is {}; this monitor reads version 1 (RFC 8520)",
            mud.mud_version
        )));
    }
    if !mud.mud_url.starts_with("https://") || mud.mud_url.len() <= "https://".len() {
        problems.push(mud_at.key("mud-url").diag(format!(
            "`{}` is not an https URL; RFC 8520 requires MUD URLs to use https",
            mud.mud_url
        )));
    }
    if !is_date_and_time(&mud.last_update) {
        problems.push(mud_at.key("last-update").diag(format!(
            "`{}` is not a yang:date-and-time like 2019-01-28T11:20:51+01:00",
            mud.last_update
        )));
    }
    let cache_validity = mud.cache_validity.unwrap_or(48);
    if !(1..=168).contains(&cache_validity) {
        problems.push(mud_at.key("cache-validity").diag(format!(
            "{cache_validity} hours is outside 1..168 (RFC 8520)"
        )));
    }
    if !mud.extensions.is_empty() {
        problems.push(mud_at.key("extensions").diag(format!(
            "declares the MUD extension(s) {}, which this monitor does not implement; \
             it cannot tell what they change, so it does not use the file",
            mud.extensions.iter().map(|e| format!("`{e}`")).collect::<Vec<_>>().join(", ")
        )));
    }
    if !mud.is_supported {
        warnings.push(
            mud_at
                .key("is-supported")
                .diag("the manufacturer no longer supports this device (is-supported: false)"),
        );
    }
    let info = MudInfo {
        mud_url: mud.mud_url,
        last_update: mud.last_update,
        cache_validity_hours: cache_validity,
        is_supported: mud.is_supported,
        systeminfo: mud.systeminfo,
        mfg_name: mud.mfg_name,
        model_name: mud.model_name,
        firmware_rev: mud.firmware_rev,
        software_rev: mud.software_rev,
        documentation: mud.documentation,
        mud_signature: mud.mud_signature,
    };

    // The ACLs by name.
    let acls_at = root.key("ietf-access-control-list:acls").key("acl");
    let acls: Vec<Acl> = document.acls.map(|a| a.acl).unwrap_or_default();
    let mut by_name: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, acl) in acls.iter().enumerate() {
        if by_name.insert(acl.name.as_str(), i).is_some() {
            problems.push(
                acls_at
                    .index(i)
                    .key("name")
                    .diag(format!("ACL `{}` is defined twice", acl.name)),
            );
        }
    }
    // Which ACL each policy names.
    let mut used: BTreeMap<usize, Side> = BTreeMap::new();
    let mut order: Vec<usize> = Vec::new();
    for (side, policy) in [
        (Side::FromDevice, &mud.from_device_policy),
        (Side::ToDevice, &mud.to_device_policy),
    ] {
        let Some(policy) = policy else { continue };
        let list_at = mud_at
            .key(side.key())
            .key("access-lists")
            .key("access-list");
        for (j, reference) in policy.access_lists.access_list.iter().enumerate() {
            let at = list_at.index(j).key("name");
            match by_name.get(reference.name.as_str()) {
                None => problems.push(at.diag(format!(
                    "names ACL `{}`, which `ietf-access-control-list:acls` does not define",
                    reference.name
                ))),
                Some(&i) => match used.insert(i, side) {
                    Some(other) if other != side => problems.push(at.diag(format!(
                        "ACL `{}` is used by both from-device-policy and to-device-policy; \
                         one ACL cannot say both which packets leave and which reach the device",
                        reference.name
                    ))),
                    Some(_) => {}
                    None => order.push(i),
                },
            }
        }
    }
    for (i, acl) in acls.iter().enumerate() {
        if !used.contains_key(&i) {
            warnings.push(acls_at.index(i).key("name").diag(format!(
                "ACL `{}` is used by neither from-device-policy nor to-device-policy; ignored",
                acl.name
            )));
        }
    }
    // In the order the policies name them: from-device first.
    let mut rules: Vec<MudRule> = Vec::new();
    for (i, side) in order
        .into_iter()
        .filter_map(|i| used.get(&i).map(|side| (i, *side)))
    {
        let acl = &acls[i];
        let acl_at = acls_at.index(i);
        let family = match acl_family(acl.acl_type.as_deref()) {
            Ok(family) => family,
            Err(message) => {
                problems.push(acl_at.key("type").diag(message));
                continue;
            }
        };
        let aces: &[Ace] = acl.aces.as_ref().map_or(&[], |a| a.ace.as_slice());
        let mut names = BTreeSet::new();
        for (k, ace) in aces.iter().enumerate() {
            let ace_at = acl_at.key("aces").key("ace").index(k);
            if !names.insert(ace.name.as_str()) {
                problems.push(ace_at.key("name").diag(format!(
                    "ACE `{}` is defined twice in ACL `{}`",
                    ace.name, acl.name
                )));
                continue;
            }
            match convert_ace(ace, side, family, &ace_at, local_networks) {
                Ok(found) => {
                    for mut rule in found {
                        rule.aces = vec![format!("{}/{}", acl.name, ace.name)];
                        match rules.iter_mut().find(|r| {
                            (&r.peer, &r.protocol, &r.ports, r.direction, r.action)
                                == (
                                    &rule.peer,
                                    &rule.protocol,
                                    &rule.ports,
                                    rule.direction,
                                    rule.action,
                                )
                        }) {
                            Some(same) => same.aces.append(&mut rule.aces),
                            None => rules.push(rule),
                        }
                    }
                }
                Err(diag) => problems.push(diag),
            }
        }
    }
    if problems.is_empty() {
        Ok(MudFile {
            info,
            rules,
            warnings,
        })
    } else {
        Err(problems)
    }
}

fn acl_family(acl_type: Option<&str>) -> Result<Option<Family>, String> {
    let Some(text) = acl_type else {
        return Ok(None);
    };
    match text
        .strip_prefix("ietf-access-control-list:")
        .unwrap_or(text)
    {
        "ipv4-acl-type" => Ok(Some(Family::V4)),
        "ipv6-acl-type" => Ok(Some(Family::V6)),
        "eth-acl-type"
        | "mixed-eth-ipv4-acl-type"
        | "mixed-eth-ipv6-acl-type"
        | "mixed-eth-ipv4-ipv6-acl-type" => Err(format!(
            "ACL type `{text}` matches Ethernet headers, which the monitor's rules do not (they match IP addresses, protocols and service ports)"
        )),
        _ => Err(format!(
            "`{text}` is not an ACL type of RFC 8519 (ipv4-acl-type, ipv6-acl-type, ...)"
        )),
    }
}

/// The address parts of an `ipv4` or `ipv6` match.
struct L3<'a> {
    family: Family,
    at: Pointer,
    destination_network: Option<&'a str>,
    source_network: Option<&'a str>,
    dst_dnsname: Option<&'a str>,
    src_dnsname: Option<&'a str>,
    protocol: Option<u8>,
    /// Header fields the monitor cannot match, by name.
    unsupported: Vec<&'static str>,
}

impl<'a> L3<'a> {
    fn v4(m: &'a Ipv4Match, at: Pointer) -> L3<'a> {
        let unsupported = [
            ("dscp", &m.dscp),
            ("ecn", &m.ecn),
            ("length", &m.length),
            ("ttl", &m.ttl),
            ("ihl", &m.ihl),
            ("flags", &m.flags),
            ("offset", &m.offset),
            ("identification", &m.identification),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.as_ref().map(|_| name))
        .collect();
        L3 {
            family: Family::V4,
            at,
            destination_network: m.destination_ipv4_network.as_deref(),
            source_network: m.source_ipv4_network.as_deref(),
            dst_dnsname: m.dst_dnsname.as_deref(),
            src_dnsname: m.src_dnsname.as_deref(),
            protocol: m.protocol,
            unsupported,
        }
    }

    fn v6(m: &'a Ipv6Match, at: Pointer) -> L3<'a> {
        let unsupported = [
            ("dscp", &m.dscp),
            ("ecn", &m.ecn),
            ("length", &m.length),
            ("ttl", &m.ttl),
            ("flow-label", &m.flow_label),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.as_ref().map(|_| name))
        .collect();
        L3 {
            family: Family::V6,
            at,
            destination_network: m.destination_ipv6_network.as_deref(),
            source_network: m.source_ipv6_network.as_deref(),
            dst_dnsname: m.dst_dnsname.as_deref(),
            src_dnsname: m.src_dnsname.as_deref(),
            protocol: m.protocol,
            unsupported,
        }
    }

    fn network_key(&self, destination: bool) -> String {
        let family = match self.family {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        };
        format!(
            "{}-{family}-network",
            if destination { "destination" } else { "source" }
        )
    }
}

/// The rules of one ACE (several when `local-networks` stands for several blocks).
fn convert_ace(
    ace: &Ace,
    side: Side,
    acl_family: Option<Family>,
    at: &Pointer,
    local_networks: &[String],
) -> Result<Vec<MudRule>, Diagnostic> {
    let action = {
        let forwarding_at = at.key("actions").key("forwarding");
        let forwarding = ace.actions.forwarding.as_str();
        match forwarding
            .strip_prefix("ietf-access-control-list:")
            .unwrap_or(forwarding)
        {
            "accept" => RuleAction::Allow,
            "drop" => RuleAction::Deny,
            "reject" => {
                return Err(forwarding_at.diag(
                    "`reject` is not supported: the monitor drops silently and cannot send the rejection; use `drop` or `accept`",
                ));
            }
            other => {
                return Err(forwarding_at.diag(format!("`{other}` is not accept, drop or reject")));
            }
        }
    };
    if let Some(logging) = &ace.actions.logging {
        let bare = logging
            .strip_prefix("ietf-access-control-list:")
            .unwrap_or(logging);
        if !matches!(bare, "log-action" | "no-log") {
            return Err(at
                .key("actions")
                .key("logging")
                .diag(format!("`{logging}` is not log-action or no-log")));
        }
    }
    let empty = Matches::default();
    let matches = ace.matches.as_ref().unwrap_or(&empty);
    let matches_at = at.key("matches");
    for (name, value, why) in [
        (
            "eth",
            &matches.eth,
            "Ethernet matches (MAC addresses, ethertypes) are not supported: the monitor's rules match IP addresses, protocols and service ports",
        ),
        (
            "egress-interface",
            &matches.egress_interface,
            "interface matches are not supported: the monitor's rules apply on every interface it watches",
        ),
        (
            "ingress-interface",
            &matches.ingress_interface,
            "interface matches are not supported: the monitor's rules apply on every interface it watches",
        ),
    ] {
        if value.is_some() {
            return Err(matches_at.key(name).diag(why));
        }
    }
    let l3 = match (&matches.ipv4, &matches.ipv6) {
        (Some(_), Some(_)) => {
            return Err(matches_at
                .diag("has both `ipv4` and `ipv6`; an ACE matches one of them (RFC 8519)"));
        }
        (Some(m), None) => Some(L3::v4(m, matches_at.key("ipv4"))),
        (None, Some(m)) => Some(L3::v6(m, matches_at.key("ipv6"))),
        (None, None) => None,
    };
    let family = match (acl_family, &l3) {
        (Some(acl), Some(l3)) if acl != l3.family => {
            return Err(l3.at.diag(format!(
                "an {} match in an ACL of type {}-acl-type",
                if l3.family == Family::V4 {
                    "ipv4"
                } else {
                    "ipv6"
                },
                if acl == Family::V4 { "ipv4" } else { "ipv6" }
            )));
        }
        (_, Some(l3)) => Some(l3.family),
        (acl, None) => acl,
    };
    if let Some((l3, field)) = l3
        .as_ref()
        .and_then(|l3| l3.unsupported.first().map(|f| (l3, f)))
    {
        return Err(l3.at.key(field).diag(format!(
            "matching the IP header's `{field}` is not supported: the monitor's rules match addresses, protocol and service ports"
        )));
    }

    // The peer: the destination of the device's packets, or the source of those to it.
    let mut peers: Vec<MudPeer> = Vec::new();
    if let Some(l3) = &l3 {
        let (peer_network, peer_name, own_network, own_name) = match side {
            Side::FromDevice => (
                l3.destination_network,
                l3.dst_dnsname,
                l3.source_network,
                l3.src_dnsname,
            ),
            Side::ToDevice => (
                l3.source_network,
                l3.src_dnsname,
                l3.destination_network,
                l3.dst_dnsname,
            ),
        };
        let own_network_key = l3.network_key(side == Side::ToDevice);
        let own_name_key = if side == Side::FromDevice {
            "ietf-acldns:src-dnsname"
        } else {
            "ietf-acldns:dst-dnsname"
        };
        let peer_network_key = l3.network_key(side == Side::FromDevice);
        let peer_name_key = if side == Side::FromDevice {
            "ietf-acldns:dst-dnsname"
        } else {
            "ietf-acldns:src-dnsname"
        };
        for (key, present) in [
            (own_network_key.as_str(), own_network.is_some()),
            (own_name_key, own_name.is_some()),
        ] {
            if present {
                return Err(l3.at.key(key).diag(format!(
                    "in a {} ACL this is the device's own address; the monitor applies the file to every device of the kind and cannot narrow it",
                    side.key()
                )));
            }
        }
        match (peer_network, peer_name) {
            (Some(_), Some(_)) => {
                return Err(l3.at.diag(format!(
                    "has both `{peer_network_key}` and `{peer_name_key}`; they are alternatives (RFC 8520, ietf-acldns)"
                )));
            }
            (Some(network), None) => {
                peers.push(MudPeer::Cidr(
                    check_network(network, l3.family)
                        .map_err(|m| l3.at.key(&peer_network_key).diag(m))?,
                ));
            }
            (None, Some(name)) => {
                if name.parse::<IpAddr>().is_ok() {
                    return Err(l3.at.key(peer_name_key).diag(format!(
                        "`{name}` is an IP address, not a DNS name; use `{peer_network_key}`"
                    )));
                }
                if !is_dns_name(name) {
                    return Err(l3
                        .at
                        .key(peer_name_key)
                        .diag(format!("`{name}` is not a DNS name")));
                }
                peers.push(MudPeer::Name {
                    name: name.trim_end_matches('.').to_ascii_lowercase(),
                    family: l3.family,
                });
            }
            (None, None) => {}
        }
    }
    if let Some(mud) = &matches.mud {
        let mud_at = matches_at.key("ietf-mud:mud");
        for (name, value, why) in [
            (
                "manufacturer",
                &mud.manufacturer,
                "needs the MUD URLs of other devices, which the monitor does not learn",
            ),
            (
                "same-manufacturer",
                &mud.same_manufacturer,
                "needs the MUD URLs of other devices, which the monitor does not learn",
            ),
            (
                "model",
                &mud.model,
                "needs the MUD URLs of other devices, which the monitor does not learn",
            ),
            (
                "controller",
                &mud.controller,
                "needs a registry of controller classes and their addresses, which the monitor does not have",
            ),
            (
                "my-controller",
                &mud.my_controller,
                "needs a registry of controller classes and their addresses, which the monitor does not have",
            ),
        ] {
            if value.is_some() {
                return Err(mud_at.key(name).diag(format!(
                    "`{name}` is not supported: it {why}; write the peers as networks or DNS names instead"
                )));
            }
        }
        if let Some(value) = &mud.local_networks {
            let at = mud_at.key("local-networks");
            if *value != Value::Array(vec![Value::Null]) {
                return Err(at.diag(format!(
                    "is {value}; an empty leaf is written [null] (RFC 7951)"
                )));
            }
            if !peers.is_empty() {
                return Err(at.diag(
                    "`local-networks` and an address or name in the same ACE are alternatives",
                ));
            }
            if local_networks.is_empty() {
                return Err(at.diag(
                    "`local-networks` is not supported unless the policy's mud entry says which blocks it means: add `local-networks: [10.10.0.0/16, ...]` to it",
                ));
            }
            peers.extend(local_networks.iter().cloned().map(MudPeer::Cidr));
        }
    }
    if peers.is_empty() {
        match family {
            Some(Family::V4) => peers.push(MudPeer::Cidr("0.0.0.0/0".into())),
            Some(Family::V6) => {
                return Err(at.key("matches").diag(
                    "an IPv6 ACE without a peer address or name would match every IPv6 peer; the monitor cannot limit a rule to IPv6 alone (IPv4 lives in its IPv6 address space), so it would open IPv4 too",
                ));
            }
            None => {
                return Err(at.key("matches").diag(
                    "names no peer and its ACL has no type: cannot tell whether it means every IPv4 or every IPv6 peer",
                ));
            }
        }
    }

    // Protocol and service ports.
    let l4_count = [
        matches.tcp.is_some(),
        matches.udp.is_some(),
        matches.icmp.is_some(),
    ]
    .into_iter()
    .filter(|present| *present)
    .count();
    if l4_count > 1 {
        return Err(matches_at.diag(
            "has more than one of `tcp`, `udp` and `icmp`; an ACE matches one of them (RFC 8519)",
        ));
    }
    let implied = if matches.tcp.is_some() {
        Some((6, "tcp"))
    } else if matches.udp.is_some() {
        Some((17, "udp"))
    } else if matches.icmp.is_some() {
        Some(if family == Some(Family::V6) {
            (58, "icmp")
        } else {
            (1, "icmp")
        })
    } else {
        None
    };
    let written = l3
        .as_ref()
        .and_then(|l3| l3.protocol.map(|p| (p, l3.at.key("protocol"))));
    let protocol: Option<u8> = match (written, implied) {
        (Some((0, at)), _) => return Err(at.diag("protocol 0 is not a transport protocol")),
        (Some((p, at)), Some((q, name))) if p != q => {
            return Err(at.diag(format!(
                "protocol is {p}, but the ACE matches `{name}` (protocol {q})"
            )));
        }
        (Some((p, _)), _) => Some(p),
        (None, Some((q, _))) => Some(q),
        (None, None) => None,
    };
    let (ports, direction) = if let Some(tcp) = &matches.tcp {
        let tcp_at = matches_at.key("tcp");
        for (name, value) in [
            ("sequence-number", &tcp.sequence_number),
            ("acknowledgement-number", &tcp.acknowledgement_number),
            ("data-offset", &tcp.data_offset),
            ("reserved", &tcp.reserved),
            ("flags", &tcp.flags),
            ("window-size", &tcp.window_size),
            ("urgent-pointer", &tcp.urgent_pointer),
            ("options", &tcp.options),
        ] {
            if value.is_some() {
                return Err(tcp_at.key(name).diag(format!(
                    "matching TCP `{name}` is not supported: the monitor's rules match service ports and who opened the connection"
                )));
            }
        }
        flow_ports(
            side,
            tcp.direction_initiated,
            tcp.source_port.as_ref(),
            tcp.destination_port.as_ref(),
            &tcp_at,
        )?
    } else if let Some(udp) = &matches.udp {
        let udp_at = matches_at.key("udp");
        if udp.length.is_some() {
            return Err(udp_at
                .key("length")
                .diag("matching the UDP length is not supported"));
        }
        flow_ports(
            side,
            None,
            udp.source_port.as_ref(),
            udp.destination_port.as_ref(),
            &udp_at,
        )?
    } else if let Some(icmp) = &matches.icmp {
        let icmp_at = matches_at.key("icmp");
        if icmp.code.is_some() {
            return Err(icmp_at.key("code").diag(
                "matching ICMP codes is not supported: the monitor's rules match ICMP types",
            ));
        }
        if icmp.rest_of_header.is_some() {
            return Err(icmp_at
                .key("rest-of-header")
                .diag("matching the rest of the ICMP header is not supported"));
        }
        icmp_ports(side, family, icmp.icmp_type)
    } else {
        (None, RuleDirection::Any)
    };
    let protocol = protocol.map_or_else(|| "any".to_string(), crate::support::proto::name);
    Ok(peers
        .into_iter()
        .map(|peer| MudRule {
            peer,
            protocol: protocol.clone(),
            ports: ports.clone(),
            direction,
            action,
            aces: Vec::new(),
        })
        .collect())
}

/// Service ports and direction of a TCP or UDP ACE. The port on the peer's side is the
/// service port when the device is the client; the port on the device's side when the peer
/// is. A client's port is ephemeral and never part of a rule.
fn flow_ports(
    side: Side,
    initiated: Option<Initiated>,
    source: Option<&PortMatch>,
    destination: Option<&PortMatch>,
    at: &Pointer,
) -> Result<(Option<PortsSpec>, RuleDirection), Diagnostic> {
    // Which port is whose, for this side.
    let (device_port, device_key, peer_port, peer_key) = match side {
        Side::FromDevice => (source, "source-port", destination, "destination-port"),
        Side::ToDevice => (destination, "destination-port", source, "source-port"),
    };
    let device = device_port
        .map(|p| port_ranges(p, &at.key(device_key)))
        .transpose()?;
    let peer = peer_port
        .map(|p| port_ranges(p, &at.key(peer_key)))
        .transpose()?;
    let client_port = |key: &str, whose: &str| {
        at.key(key).diag(format!(
            "this is the {whose}'s port, and the {whose} opens the connection: a client's port is ephemeral, and the monitor's rules match only the service (server) port"
        ))
    };
    match (initiated, device, peer) {
        (Some(Initiated::FromDevice), Some(_), _) => Err(client_port(device_key, "device")),
        (Some(Initiated::ToDevice), _, Some(_)) => Err(client_port(peer_key, "peer")),
        (Some(Initiated::FromDevice), None, peer) => Ok((peer, RuleDirection::Out)),
        (Some(Initiated::ToDevice), device, None) => Ok((device, RuleDirection::In)),
        (None, Some(_), Some(_)) => Err(at.diag(
            "gives both the device's and the peer's port; the monitor's rules match only the service (server) port, so say which side serves with one of them",
        )),
        (None, None, Some(peer)) => Ok((Some(peer), RuleDirection::Out)),
        (None, Some(device), None) => Ok((Some(device), RuleDirection::In)),
        (None, None, None) => Ok((None, RuleDirection::Any)),
    }
}

/// ICMP types as the monitor's service ports: echo request and reply share the request's
/// type, and the requester is the client.
fn icmp_ports(
    side: Side,
    family: Option<Family>,
    icmp_type: Option<u8>,
) -> (Option<PortsSpec>, RuleDirection) {
    let (request, reply) = if family == Some(Family::V6) {
        (128, 129)
    } else {
        (8, 0)
    };
    let (out, into) = match side {
        Side::FromDevice => (RuleDirection::Out, RuleDirection::In),
        Side::ToDevice => (RuleDirection::In, RuleDirection::Out),
    };
    match icmp_type {
        None => (None, RuleDirection::Any),
        Some(t) if t == request => (Some(PortsSpec::One(u16::from(request))), out),
        Some(t) if t == reply => (Some(PortsSpec::One(u16::from(request))), into),
        Some(t) => (Some(PortsSpec::One(u16::from(t))), RuleDirection::Any),
    }
}

/// A `port-range-or-operator` as policy ports.
fn port_ranges(port: &PortMatch, at: &Pointer) -> Result<PortsSpec, Diagnostic> {
    let range = |low: u16, high: u16| {
        if low == high {
            PortsSpec::One(low)
        } else {
            PortsSpec::Text(format!("{low}-{high}"))
        }
    };
    match (port.lower_port, port.upper_port, port.operator.as_deref(), port.port) {
        (Some(low), Some(high), None, None) if low <= high => Ok(range(low, high)),
        (Some(low), Some(high), None, None) => Err(at.key("upper-port").diag(format!(
            "the range runs backwards: lower-port {low} is above upper-port {high}"
        ))),
        (None, None, operator, Some(p)) => match operator.unwrap_or("eq") {
            "eq" => Ok(PortsSpec::One(p)),
            "lte" => Ok(range(0, p)),
            "gte" => Ok(range(p, u16::MAX)),
            "neq" => {
                let mut list = Vec::new();
                if p > 0 {
                    list.push(range(0, p - 1));
                }
                if p < u16::MAX {
                    list.push(range(p + 1, u16::MAX));
                }
                Ok(PortsSpec::List(list))
            }
            other => Err(at.key("operator").diag(format!("`{other}` is not lte, gte, eq or neq"))),
        },
        (None, None, Some(_), None) => Err(at.diag("has an `operator` but no `port`")),
        (Some(_), None, None, None) | (None, Some(_), None, None) => Err(at.diag(
            "a port range needs both `lower-port` and `upper-port`",
        )),
        (None, None, None, None) => Err(at.diag("names no port: give `port` (with `operator`) or `lower-port` and `upper-port`")),
        _ => Err(at.diag("mixes a range (`lower-port`, `upper-port`) with an operator (`operator`, `port`); they are alternatives")),
    }
}

/// An `ipv4-prefix` or `ipv6-prefix` of the ACE's family, as a policy cidr.
fn check_network(text: &str, family: Family) -> Result<String, String> {
    let Some((address, length)) = text.split_once('/') else {
        return Err(format!(
            "`{text}` is not a prefix like 192.0.2.0/24 (the length is required)"
        ));
    };
    let ip: IpAddr = address.parse().map_err(|_| {
        format!(
            "`{address}` is not an {} address",
            if family == Family::V4 { "IPv4" } else { "IPv6" }
        )
    })?;
    if !family.holds(&ip) {
        return Err(format!(
            "`{text}` is an {} prefix in an {} match",
            if family == Family::V4 { "IPv6" } else { "IPv4" },
            if family == Family::V4 { "ipv4" } else { "ipv6" }
        ));
    }
    let max = if family == Family::V4 { 32 } else { 128 };
    match length.parse::<u8>() {
        Ok(l) if l <= max => {}
        _ => return Err(format!("`{length}` is not a prefix length from 0 to {max}")),
    }
    let prefix = Prefix::parse(text).ok_or_else(|| format!("`{text}` is not a prefix"))?;
    let mapped_v4 = Prefix::parse("::ffff:0.0.0.0/96").unwrap_or(Prefix::ANY);
    if family == Family::V6 && prefix.contains(&mapped_v4) {
        return Err(format!(
            "`{text}` covers all of IPv4 in the monitor's address space (IPv4 lives there as ::ffff:0:0/96); a rule for it would open IPv4 too; use narrower prefixes"
        ));
    }
    Ok(text.to_string())
}

/// `inet:domain-name` (RFC 6991), with an optional final dot.
fn is_dns_name(name: &str) -> bool {
    let bare = name.strip_suffix('.').unwrap_or(name);
    !bare.is_empty()
        && bare.len() <= 253
        && bare.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// `yang:date-and-time` (RFC 6991): `2019-01-28T11:20:51+01:00`, fractions and `Z` allowed.
fn is_date_and_time(text: &str) -> bool {
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        b.get(range)
            .is_some_and(|s| s.iter().all(u8::is_ascii_digit))
    };
    if b.len() < 20
        || !(digits(0..4) && b[4] == b'-' && digits(5..7) && b[7] == b'-' && digits(8..10))
    {
        return false;
    }
    if !(matches!(b[10], b'T' | b't')
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19))
    {
        return false;
    }
    let mut rest = &b[19..];
    if let Some(fraction) = rest.strip_prefix(b".") {
        let n = fraction.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return false;
        }
        rest = &fraction[n..];
    }
    match rest {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => [h1, h2, m1, m2].iter().all(|c| c.is_ascii_digit()),
        _ => false,
    }
}

// ---- Names, resolved by the controller and refreshed by TTL. ----

/// A name a MUD file uses, the records it needs and the servers to ask (empty: the
/// system's resolver configuration).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Question {
    pub name: String,
    pub family: Family,
    pub servers: Vec<SocketAddr>,
}

impl fmt::Display for Question {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.name, self.family.record())
    }
}

/// What asking gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Addresses and the smallest TTL among them (seconds).
    Found(BTreeSet<IpAddr>, u32),
    /// The name has no such records, or does not exist; the negative TTL when the answer
    /// carried one.
    NoAddresses {
        nxdomain: bool,
        negative_ttl: Option<u32>,
    },
    /// No usable answer (timeout, refused, server failure).
    Failed(String),
}

#[derive(Clone, Debug)]
struct Known {
    addresses: BTreeSet<IpAddr>,
    expires: Instant,
}

/// The controller's answers to the policy's MUD names, each kept for its TTL.
#[derive(Debug, Default)]
pub struct Names {
    known: BTreeMap<Question, Known>,
}

impl Names {
    /// The addresses known for `question`.
    pub fn addresses(&self, question: &Question) -> BTreeSet<IpAddr> {
        self.known
            .get(question)
            .map(|k| k.addresses.clone())
            .unwrap_or_default()
    }

    /// When the next answer runs out.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.known.values().map(|k| k.expires).min()
    }

    /// Resolves the policy's names that are new or whose TTL has run out (and forgets
    /// names the policy no longer uses), then adds the rules of the named peers to the
    /// policy: one rule per address.
    pub fn apply(&mut self, policy: &mut Policy) {
        let wanted: BTreeSet<Question> = policy.mud.iter().flat_map(MudImport::questions).collect();
        self.known.retain(|q, _| wanted.contains(q));
        let now = Instant::now();
        let due: Vec<Question> = wanted
            .into_iter()
            .filter(|q| self.known.get(q).is_none_or(|k| k.expires <= now))
            .collect();
        self.record(lookup_all(&due));
        let named: Vec<_> = policy
            .mud
            .iter()
            .flat_map(|import| import.named_rules(self))
            .collect();
        policy.rules.extend(named);
    }

    /// Re-resolves the names whose TTL has run out; true when any address changed (the
    /// policy must then be applied again).
    pub fn refresh_expired(&mut self) -> bool {
        let now = Instant::now();
        let due: Vec<Question> = self
            .known
            .iter()
            .filter(|(_, k)| k.expires <= now)
            .map(|(q, _)| q.clone())
            .collect();
        !due.is_empty() && self.record(lookup_all(&due))
    }

    /// Takes answers in; true when an address set changed.
    pub fn record(&mut self, answers: Vec<(Question, Lookup)>) -> bool {
        let now = Instant::now();
        let mut changed = false;
        for (question, lookup) in answers {
            let previous = self.known.get(&question).map(|k| k.addresses.clone());
            let (addresses, keep) = match lookup {
                Lookup::Found(addresses, ttl) => {
                    let keep = Duration::from_secs(u64::from(ttl)).clamp(MIN_TTL, MAX_TTL);
                    let list = join(&addresses);
                    match &previous {
                        None => log::info!("MUD name {question}: {list} (TTL {ttl} s)"),
                        Some(old) if *old != addresses => {
                            log::info!(
                                "MUD name {question} changed: {} → {list} (TTL {ttl} s)",
                                join(old)
                            );
                        }
                        Some(_) => {
                            log::debug!("MUD name {question}: {list} unchanged (TTL {ttl} s)")
                        }
                    }
                    (addresses, keep)
                }
                Lookup::NoAddresses {
                    nxdomain,
                    negative_ttl,
                } => {
                    let keep = negative_ttl
                        .map_or(DEFAULT_NEGATIVE_TTL, |t| Duration::from_secs(u64::from(t)))
                        .clamp(MIN_TTL, Duration::from_secs(300));
                    if previous.as_ref().is_none_or(|old| !old.is_empty()) {
                        log::warn!(
                            "MUD name {question}: {}; its rules open nothing until it resolves (asked again in {} s)",
                            if nxdomain {
                                "no such name"
                            } else {
                                "no such records"
                            },
                            keep.as_secs()
                        );
                    }
                    (BTreeSet::new(), keep)
                }
                Lookup::Failed(why) => {
                    let kept = previous.clone().unwrap_or_default();
                    log::warn!(
                        "MUD name {question}: {why}; {} (asked again in {} s)",
                        if kept.is_empty() {
                            "its rules open nothing".to_string()
                        } else {
                            format!("keeping {}", join(&kept))
                        },
                        RETRY_AFTER_FAILURE.as_secs()
                    );
                    (kept, RETRY_AFTER_FAILURE)
                }
            };
            if previous.as_ref().is_some_and(|old| *old != addresses) {
                changed = true;
            }
            self.known.insert(
                question,
                Known {
                    addresses,
                    expires: now + keep,
                },
            );
        }
        changed
    }
}

fn join(addresses: &BTreeSet<IpAddr>) -> String {
    if addresses.is_empty() {
        return "no addresses".into();
    }
    addresses
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Asks every question at once (on a thread of its own with its own runtime, so that the
/// daemon's loop can call it), each within [`LOOKUP_TIMEOUT`].
pub fn lookup_all(questions: &[Question]) -> Vec<(Question, Lookup)> {
    if questions.is_empty() {
        return Vec::new();
    }
    let failed = |why: String| {
        questions
            .iter()
            .map(|q| (q.clone(), Lookup::Failed(why.clone())))
            .collect()
    };
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime.block_on(lookup_async(questions)),
                    Err(e) => failed(format!("starting the resolver: {e}")),
                }
            })
            .join()
            .unwrap_or_else(|_| failed("the resolver thread panicked".into()))
    })
}

async fn lookup_async(questions: &[Question]) -> Vec<(Question, Lookup)> {
    use hickory_resolver::TokioResolver;
    let mut resolvers: BTreeMap<Vec<SocketAddr>, Result<TokioResolver, String>> = BTreeMap::new();
    let mut tasks = tokio::task::JoinSet::new();
    for question in questions {
        let resolver = resolvers
            .entry(question.servers.clone())
            .or_insert_with(|| build_resolver(&question.servers))
            .clone();
        let question = question.clone();
        tasks.spawn(async move {
            let lookup = match resolver {
                Ok(resolver) => lookup_one(&resolver, &question).await,
                Err(why) => Lookup::Failed(why),
            };
            (question, lookup)
        });
    }
    let mut out = Vec::new();
    while let Some(done) = tasks.join_next().await {
        if let Ok(answer) = done {
            out.push(answer);
        }
    }
    out
}

fn build_resolver(servers: &[SocketAddr]) -> Result<hickory_resolver::TokioResolver, String> {
    use hickory_resolver::{
        Resolver, TokioResolver,
        config::{NameServerConfig, ResolveHosts, ResolverConfig},
        net::runtime::TokioRuntimeProvider,
    };
    let mut builder = if servers.is_empty() {
        TokioResolver::builder_tokio()
            .map_err(|e| format!("reading the system's resolver configuration: {e}"))?
    } else {
        let name_servers = servers
            .iter()
            .map(|server| {
                let mut config = NameServerConfig::udp_and_tcp(server.ip());
                for connection in &mut config.connections {
                    connection.port = server.port();
                }
                config
            })
            .collect();
        Resolver::builder_with_config(
            ResolverConfig::from_name_servers(name_servers),
            TokioRuntimeProvider::default(),
        )
    };
    let options = builder.options_mut();
    options.timeout = Duration::from_secs(2);
    options.attempts = 1;
    // DNS names only: /etc/hosts has no TTLs to follow.
    options.use_hosts_file = ResolveHosts::Never;
    builder
        .build()
        .map_err(|e| format!("setting up the resolver: {e}"))
}

async fn lookup_one(resolver: &hickory_resolver::TokioResolver, question: &Question) -> Lookup {
    use hickory_resolver::{
        net::{DnsError, NetError},
        proto::{op::ResponseCode, rr::RecordType},
    };
    let record = match question.family {
        Family::V4 => RecordType::A,
        Family::V6 => RecordType::AAAA,
    };
    // Fully qualified: no search domains, one question.
    let name = format!("{}.", question.name.trim_end_matches('.'));
    match tokio::time::timeout(LOOKUP_TIMEOUT, resolver.lookup(name.as_str(), record)).await {
        Err(_) => Lookup::Failed(format!("no answer within {} s", LOOKUP_TIMEOUT.as_secs())),
        Ok(Ok(lookup)) => {
            let answers: Vec<_> = lookup
                .answers()
                .iter()
                .filter_map(|r| {
                    r.data
                        .ip_addr()
                        .filter(|ip| question.family.holds(ip))
                        .map(|ip| (ip, r.ttl))
                })
                .collect();
            match answers.iter().map(|(_, ttl)| *ttl).min() {
                Some(ttl) => Lookup::Found(answers.iter().map(|(ip, _)| *ip).collect(), ttl),
                None => Lookup::NoAddresses {
                    nxdomain: false,
                    negative_ttl: None,
                },
            }
        }
        Ok(Err(NetError::Dns(DnsError::NoRecordsFound(none)))) => Lookup::NoAddresses {
            nxdomain: none.response_code == ResponseCode::NXDomain,
            negative_ttl: none.negative_ttl,
        },
        Ok(Err(e)) => Lookup::Failed(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_EXAMPLE: &str = include_str!("../../../policies/mud/rfc8520-lightbulb2000.json");

    fn problems(text: &str) -> Vec<Diagnostic> {
        parse(text, &[]).expect_err("the file is malformed")
    }

    #[test]
    fn the_rfc_example_becomes_one_outbound_https_rule() {
        let mud = parse(RFC_EXAMPLE, &[]).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            mud.info.mud_url,
            "https://lighting.example.com/lightbulb2000"
        );
        assert_eq!(
            mud.info.systeminfo.as_deref(),
            Some("The BMS Example Light Bulb")
        );
        assert_eq!(mud.info.cache_validity_hours, 48);
        assert_eq!(
            mud.rules,
            vec![MudRule {
                peer: MudPeer::Name {
                    name: "test.example.com".into(),
                    family: Family::V6
                },
                protocol: "tcp".into(),
                ports: Some(PortsSpec::One(443)),
                direction: RuleDirection::Out,
                action: RuleAction::Allow,
                aces: vec![
                    "mud-76100-v6fr/cl0-frdev".into(),
                    "mud-76100-v6to/cl0-todev".into()
                ],
            }],
            "the request ACE and the reply ACE are one flow rule"
        );
        assert!(mud.warnings.is_empty(), "{:?}", mud.warnings);
    }

    #[test]
    fn the_pump_example_allows_its_server_and_time_and_nothing_more() {
        let text = include_str!("../../../policies/mud/infusion-pump.json");
        let mud = parse(text, &[]).unwrap_or_else(|e| panic!("{e:?}"));
        let summary: Vec<String> = mud
            .rules
            .iter()
            .map(|r| {
                format!(
                    "{:?} {} {} {:?} {}",
                    r.action,
                    r.direction_name(),
                    r.protocol,
                    r.ports,
                    r.peer
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                "Allow out tcp Some(One(443)) pump-server.icu.example (A)",
                "Allow out udp Some(One(123)) 10.20.0.123/32",
            ]
        );
        assert_eq!(
            mud.rules[1].aces,
            ["pump-v4fr/time", "pump-v4to/time-replies"]
        );
    }

    #[test]
    fn ports_and_directions_follow_the_service_port() {
        let text = r#"{
          "ietf-mud:mud": {"mud-version": 1, "mud-url": "https://x.example/m", "last-update": "2024-05-01T10:00:00Z", "is-supported": true,
            "from-device-policy": {"access-lists": {"access-list": [{"name": "out"}]}},
            "to-device-policy": {"access-lists": {"access-list": [{"name": "in"}]}}},
          "ietf-access-control-list:acls": {"acl": [
            {"name": "out", "type": "ipv4-acl-type", "aces": {"ace": [
              {"name": "ntp", "matches": {"ipv4": {"destination-ipv4-network": "10.20.0.123/32", "protocol": 17}, "udp": {"destination-port": {"operator": "eq", "port": 123}}}, "actions": {"forwarding": "accept"}},
              {"name": "hi", "matches": {"ipv4": {"destination-ipv4-network": "10.20.0.0/24"}, "tcp": {"destination-port": {"lower-port": 8000, "upper-port": 8100}}}, "actions": {"forwarding": "accept"}},
              {"name": "not-telnet", "matches": {"tcp": {"ietf-mud:direction-initiated": "from-device", "destination-port": {"operator": "neq", "port": 23}}}, "actions": {"forwarding": "drop"}},
              {"name": "ping", "matches": {"ipv4": {"ietf-acldns:dst-dnsname": "Gw.Example.COM."}, "icmp": {"type": 8}}, "actions": {"forwarding": "accept"}}
            ]}},
            {"name": "in", "type": "ipv4-acl-type", "aces": {"ace": [
              {"name": "admin", "matches": {"ipv4": {"source-ipv4-network": "10.30.0.0/16"}, "tcp": {"ietf-mud:direction-initiated": "to-device", "destination-port": {"operator": "lte", "port": 1023}}}, "actions": {"forwarding": "accept"}}
            ]}}
          ]}
        }"#;
        let mud = parse(text, &[]).unwrap_or_else(|e| panic!("{e:?}"));
        let summary: Vec<String> = mud
            .rules
            .iter()
            .map(|r| {
                format!(
                    "{} {} {:?} {:?} {:?}",
                    r.peer, r.protocol, r.ports, r.direction, r.action
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                "10.20.0.123/32 udp Some(One(123)) Out Allow",
                "10.20.0.0/24 tcp Some(Text(\"8000-8100\")) Out Allow",
                "0.0.0.0/0 tcp Some(List([Text(\"0-22\"), Text(\"24-65535\")])) Out Deny",
                "gw.example.com (A) icmp Some(One(8)) Out Allow",
                "10.30.0.0/16 tcp Some(Text(\"0-1023\")) In Allow",
            ]
        );
    }

    #[test]
    fn local_networks_need_the_entry_to_say_what_they_are() {
        let text = r#"{"ietf-mud:mud": {"mud-version": 1, "mud-url": "https://x.example/m", "last-update": "2024-05-01T10:00:00Z", "is-supported": true,
            "from-device-policy": {"access-lists": {"access-list": [{"name": "a"}]}}},
          "ietf-access-control-list:acls": {"acl": [{"name": "a", "type": "ipv4-acl-type", "aces": {"ace": [
            {"name": "local", "matches": {"ietf-mud:mud": {"local-networks": [null]}, "udp": {"destination-port": {"port": 514}}}, "actions": {"forwarding": "accept"}}]}}]}}"#;
        let refused = problems(text);
        assert_eq!(
            refused[0].pointer,
            "/ietf-access-control-list:acls/acl/0/aces/ace/0/matches/ietf-mud:mud/local-networks"
        );
        assert!(
            refused[0].message.contains("local-networks: ["),
            "{}",
            refused[0].message
        );
        let mud = parse(text, &["10.10.0.0/16".into(), "fd00:10::/64".into()])
            .unwrap_or_else(|e| panic!("{e:?}"));
        let peers: Vec<String> = mud.rules.iter().map(|r| r.peer.to_string()).collect();
        assert_eq!(peers, ["10.10.0.0/16", "fd00:10::/64"]);
    }

    #[test]
    fn syntax_errors_carry_line_column_and_pointer() {
        let broken = RFC_EXAMPLE.replacen("\"mud-version\": 1,", "\"mud-version\": 1", 1);
        let found = problems(&broken);
        assert_eq!(found.len(), 1);
        assert!(
            found[0].line.is_some() && found[0].column.is_some(),
            "{found:?}"
        );
        let wrong_type = RFC_EXAMPLE.replacen("\"port\": 443", "\"port\": \"443\"", 1);
        let found = problems(&wrong_type);
        assert!(
            found[0].pointer.ends_with("/tcp/source-port/port"),
            "{found:?}"
        );
        assert!(found[0].message.contains("invalid type"), "{found:?}");
    }

    #[test]
    fn dates_and_names_are_checked() {
        assert!(is_date_and_time("2019-01-28T11:20:51+01:00"));
        assert!(is_date_and_time("2019-01-28T11:20:51.25Z"));
        assert!(!is_date_and_time("2019-01-28 11:20:51"));
        assert!(!is_date_and_time("yesterday"));
        assert!(is_dns_name("test.example.com"));
        assert!(is_dns_name("_ntp._udp.example.com."));
        assert!(!is_dns_name("bad..example.com"));
        assert!(!is_dns_name("-bad.example.com"));
        assert!(!is_dns_name("bad name.example.com"));
    }

    #[test]
    fn answers_follow_their_ttl_and_failures_keep_the_last_addresses() {
        let question = Question {
            name: "test.example.com".into(),
            family: Family::V6,
            servers: vec![],
        };
        let a: IpAddr = "fd00:20::10".parse().unwrap_or_else(|e| panic!("{e}"));
        let b: IpAddr = "fd00:20::20".parse().unwrap_or_else(|e| panic!("{e}"));
        let mut names = Names::default();
        assert!(
            !names.record(vec![(question.clone(), Lookup::Found([a].into(), 0))]),
            "the first answer is no change"
        );
        let expiry = names.next_expiry().unwrap_or_else(|| panic!("no expiry"));
        assert!(
            expiry >= Instant::now() + MIN_TTL - Duration::from_millis(100),
            "TTL 0 is kept MIN_TTL"
        );
        assert!(!names.record(vec![(question.clone(), Lookup::Failed("timeout".into()))]));
        assert_eq!(
            names.addresses(&question),
            [a].into(),
            "a failure keeps the last addresses"
        );
        assert!(names.record(vec![(question.clone(), Lookup::Found([b].into(), 60))]));
        assert_eq!(names.addresses(&question), [b].into());
        assert!(names.record(vec![(
            question.clone(),
            Lookup::NoAddresses {
                nxdomain: true,
                negative_ttl: Some(5)
            }
        )]));
        assert!(names.addresses(&question).is_empty());
    }
}
