//! The checked policy compiled into the flat form the XDP program reads: every rule per
//! device address and peer block ([`CompiledRule`], [`Policy::compile_rules`]), folded into
//! the rule sets of the `RULES` LPM trie ([`fold_rules`]). Address blocks ([`Prefix`]) live
//! here, in the datapath's 128-bit address space.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use monitor_common::maps::{
    Direction, MAX_RULES_PER_SET, RULE_ALLOW, RULE_ANY, RULE_DENY, RULE_PREFIX_BASE, Rule,
    RuleKeyData, RuleSet,
};

use crate::policy::model::{
    DeviceSpec, Endpoint, Place, Policy, PortsSpec, Problem, RuleAction, RuleDirection, RuleSpec,
};

/// The `RULES` trie's entries: prefix length (with [`RULE_PREFIX_BASE`]), key and rule set.
pub type RuleSets = Vec<(u32, RuleKeyData, RuleSet)>;

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
    pub rule: Rule,
}

fn parse_protocol(text: &str) -> Option<u8> {
    if text.eq_ignore_ascii_case("any") {
        return Some(RULE_ANY);
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

/// What one rule names, resolved against the inventory.
struct Targets<'a> {
    /// The devices the rule is about.
    devices: Vec<&'a DeviceSpec>,
    /// The peer's address blocks.
    peers: Vec<Prefix>,
    /// The enrolled devices among the peers (they get the mirrored rule).
    peer_devices: Vec<&'a DeviceSpec>,
    protocol: u8,
    /// Inclusive port ranges.
    ports: Vec<(u16, u16)>,
}

impl Policy {
    fn problem_at(place: &Place, message: String) -> Problem {
        Problem {
            place: place.clone(),
            message,
        }
    }

    /// Every rule, compiled per device address and peer prefix (not yet folded).
    pub fn compile_rules(&self) -> Result<Vec<CompiledRule>, Vec<Problem>> {
        let mut problems = Vec::new();
        let mut out = Vec::new();
        for (id, (place, spec)) in self.rules.iter().enumerate() {
            match self.targets(spec) {
                Ok(targets) => expand(id, spec, &targets, &mut out),
                Err(message) => problems.push(Self::problem_at(place, message)),
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

    /// What a rule names, or the first reason it names nothing usable.
    fn targets(&self, spec: &RuleSpec) -> Result<Targets<'_>, String> {
        let subject = Endpoint::try_from(&spec.devices).map_err(|m| format!("devices: {m}"))?;
        let peer = Endpoint::try_from(&spec.peer).map_err(|m| format!("peer: {m}"))?;
        let devices = self
            .resolve_devices(&subject)
            .map_err(|m| format!("devices: {m}"))?;
        let (peers, peer_devices) = self.resolve_peer(&peer).map_err(|m| format!("peer: {m}"))?;
        let protocol = parse_protocol(&spec.protocol).ok_or_else(|| {
            format!(
                "protocol `{}` is not tcp, udp, sctp, icmp, icmpv6, any or a protocol number",
                spec.protocol
            )
        })?;
        let mut ports = Vec::new();
        match &spec.ports {
            None => ports.push((0, u16::MAX)),
            Some(p) => parse_ports(p, &mut ports).map_err(|m| format!("ports: {m}"))?,
        }
        Ok(Targets {
            devices,
            peers,
            peer_devices,
            protocol,
            ports,
        })
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
}

/// A rule's entries: one per device address, peer block and port range, and the mirrored
/// ones on the peer devices' side.
fn expand(id: usize, spec: &RuleSpec, targets: &Targets<'_>, out: &mut Vec<CompiledRule>) {
    let action = match spec.action {
        RuleAction::Allow => RULE_ALLOW,
        RuleAction::Deny => RULE_DENY,
    };
    let (direction, mirrored) = match spec.direction {
        RuleDirection::Out => (Direction::Outbound as u8, Direction::Inbound as u8),
        RuleDirection::In => (Direction::Inbound as u8, Direction::Outbound as u8),
        RuleDirection::Any => (RULE_ANY, RULE_ANY),
    };
    for (low, high) in &targets.ports {
        let rule = |direction| Rule {
            port_low: *low,
            port_high: *high,
            protocol: targets.protocol,
            direction,
            action,
            _pad: 0,
            rule_id: id as u32,
        };
        for device in &targets.devices {
            for addr in &device.addresses {
                for peer in &targets.peers {
                    out.push(CompiledRule {
                        device: *addr,
                        peer: *peer,
                        rule: rule(direction),
                    });
                }
            }
        }
        // The peer devices see the same flows from their side.
        for peer in &targets.peer_devices {
            for addr in &peer.addresses {
                for device in &targets.devices {
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

/// Rule sets for the `RULES` LPM trie: per device address and peer prefix, every rule
/// whose peer block contains that prefix (an LPM lookup finds only the longest match).
pub fn fold_rules(rules: &[CompiledRule]) -> Result<RuleSets, Vec<Problem>> {
    fold_rules_at(rules, &[])
}

/// [`fold_rules`], placing a rule set that is too big at the rule (by `rule_id`, an index
/// into `places`) that passes the limit.
fn fold_rules_at(rules: &[CompiledRule], places: &[&Place]) -> Result<RuleSets, Vec<Problem>> {
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
                    place: over.map_or_else(Place::whole_policy, |p| (*p).clone()),
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
