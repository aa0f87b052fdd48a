//! What a MUD file contributes to a policy, once read and checked: the file's description
//! ([`MudInfo`]), the rules it asks for ([`MudRule`]) and where it is used ([`MudImport`]).
//! Reading MUD files and resolving their names is `crate::policy::mud`.

use std::{fmt, net::IpAddr, net::SocketAddr, path::PathBuf};

use super::{
    place::Place,
    spec::{PortsSpec, RuleAction, RuleDirection},
};

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

    /// Whether `ip` is of this family.
    pub fn holds(self, ip: &IpAddr) -> bool {
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
