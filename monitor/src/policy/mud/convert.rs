//! A MUD file's text to the rules it asks for ([`parse`]): the JSON read strictly (problems
//! with their JSON pointer, line and column), the `ietf-mud:mud` container checked, and every
//! ACE of the ACLs the device's policies name converted into flow rules, or refused with
//! the reason the monitor cannot enforce it exactly.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use serde_json::Value;

use crate::policy::{
    compile::Prefix,
    model::{
        Diagnostic, Family, MudFile, MudInfo, MudPeer, MudRule, PortsSpec, RuleAction,
        RuleDirection,
    },
    mud::schema::{
        Ace, Acl, DevicePolicy, Document, IcmpMatch, Initiated, Ipv4Match, Ipv6Match, Matches,
        MudContainer, MudMatch, PortMatch, TcpMatch,
    },
};

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

/// Problems refuse the file; warnings do not.
#[derive(Default)]
struct Findings {
    problems: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
}

fn convert(document: Document, local_networks: &[String]) -> Result<MudFile, Vec<Diagnostic>> {
    let mut findings = Findings::default();
    let root = Pointer(String::new());
    let mud_at = root.key("ietf-mud:mud");
    let acls_at = root.key("ietf-access-control-list:acls").key("acl");
    let Document { mut mud, acls } = document;
    let policies = [
        (Side::FromDevice, mud.from_device_policy.take()),
        (Side::ToDevice, mud.to_device_policy.take()),
    ];
    let info = check_info(mud, &mud_at, &mut findings);
    let acls: Vec<Acl> = acls.map(|a| a.acl).unwrap_or_default();
    let used = used_acls(&acls, &policies, &mud_at, &acls_at, &mut findings);
    let rules = acl_rules(&acls, used, &acls_at, local_networks, &mut findings);
    if findings.problems.is_empty() {
        Ok(MudFile {
            info,
            rules,
            warnings: findings.warnings,
        })
    } else {
        Err(findings.problems)
    }
}

/// What the `ietf-mud:mud` container says about the device, checked.
fn check_info(mud: MudContainer, mud_at: &Pointer, findings: &mut Findings) -> MudInfo {
    let problems = &mut findings.problems;
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
        findings.warnings.push(
            mud_at
                .key("is-supported")
                .diag("the manufacturer no longer supports this device (is-supported: false)"),
        );
    }
    MudInfo {
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
    }
}

/// The ACLs the device's policies name (by index into `acls`) with the policy naming them,
/// in the order the policies name them: from-device first.
fn used_acls(
    acls: &[Acl],
    policies: &[(Side, Option<DevicePolicy>)],
    mud_at: &Pointer,
    acls_at: &Pointer,
    findings: &mut Findings,
) -> Vec<(usize, Side)> {
    let problems = &mut findings.problems;
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
    let mut used: BTreeMap<usize, Side> = BTreeMap::new();
    let mut order: Vec<usize> = Vec::new();
    for (side, policy) in policies {
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
                Some(&i) => match used.insert(i, *side) {
                    Some(other) if other != *side => problems.push(at.diag(format!(
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
            findings
                .warnings
                .push(acls_at.index(i).key("name").diag(format!(
                    "ACL `{}` is used by neither from-device-policy nor to-device-policy; ignored",
                    acl.name
                )));
        }
    }
    order
        .into_iter()
        .filter_map(|i| used.get(&i).map(|side| (i, *side)))
        .collect()
}

/// The rules of the used ACLs' ACEs; rules that differ only in their ACEs are one rule
/// (the from-device ACE of a flow and the to-device ACE of its replies).
fn acl_rules(
    acls: &[Acl],
    used: Vec<(usize, Side)>,
    acls_at: &Pointer,
    local_networks: &[String],
    findings: &mut Findings,
) -> Vec<MudRule> {
    let problems = &mut findings.problems;
    let mut rules: Vec<MudRule> = Vec::new();
    for (i, side) in used {
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
                        merge_rule(&mut rules, rule);
                    }
                }
                Err(diag) => problems.push(diag),
            }
        }
    }
    rules
}

/// Adds `rule`, or its ACEs to the rule that says the same.
fn merge_rule(rules: &mut Vec<MudRule>, mut rule: MudRule) {
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

/// The rules of one ACE (several when `local-networks` stands for several blocks). Each
/// step refuses what the monitor cannot enforce exactly, in the order the ACE is read:
/// action, the matches it cannot make, the IP match, the peer, the protocol and the ports.
fn convert_ace(
    ace: &Ace,
    side: Side,
    acl_family: Option<Family>,
    at: &Pointer,
    local_networks: &[String],
) -> Result<Vec<MudRule>, Diagnostic> {
    let action = ace_action(ace, at)?;
    let empty = Matches::default();
    let matches = ace.matches.as_ref().unwrap_or(&empty);
    let matches_at = at.key("matches");
    refuse_unmatchable(matches, &matches_at)?;
    let l3 = ip_match(matches, &matches_at)?;
    let family = ace_family(acl_family, l3.as_ref())?;
    let mut peers: Vec<MudPeer> = Vec::new();
    if let Some(l3) = &l3 {
        peers.extend(ip_peer(l3, side)?);
    }
    if let Some(mud) = &matches.mud {
        peers = mud_peers(mud, &matches_at.key("ietf-mud:mud"), peers, local_networks)?;
    }
    if peers.is_empty() {
        peers.push(every_peer(family, at)?);
    }
    let protocol = ace_protocol(matches, l3.as_ref(), family, &matches_at)?;
    let (ports, direction) = ace_ports(matches, side, family, &matches_at)?;
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

/// `accept` or `drop` (`reject` cannot be done: the monitor drops silently), and a logging
/// action RFC 8519 knows.
fn ace_action(ace: &Ace, at: &Pointer) -> Result<RuleAction, Diagnostic> {
    let forwarding_at = at.key("actions").key("forwarding");
    let forwarding = ace.actions.forwarding.as_str();
    let action = match forwarding
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
    Ok(action)
}

/// Ethernet and interface matches: the monitor's rules have no such fields.
fn refuse_unmatchable(matches: &Matches, matches_at: &Pointer) -> Result<(), Diagnostic> {
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
    Ok(())
}

/// The ACE's `ipv4` or `ipv6` match, if any (not both).
fn ip_match<'a>(matches: &'a Matches, matches_at: &Pointer) -> Result<Option<L3<'a>>, Diagnostic> {
    match (&matches.ipv4, &matches.ipv6) {
        (Some(_), Some(_)) => {
            Err(matches_at
                .diag("has both `ipv4` and `ipv6`; an ACE matches one of them (RFC 8519)"))
        }
        (Some(m), None) => Ok(Some(L3::v4(m, matches_at.key("ipv4")))),
        (None, Some(m)) => Ok(Some(L3::v6(m, matches_at.key("ipv6")))),
        (None, None) => Ok(None),
    }
}

/// The ACE's address family: its IP match's, which must agree with the ACL's type, or the
/// ACL's. An IP match may use only the fields the monitor matches.
fn ace_family(acl: Option<Family>, l3: Option<&L3<'_>>) -> Result<Option<Family>, Diagnostic> {
    let family = match (acl, l3) {
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
    if let Some((l3, field)) = l3.and_then(|l3| l3.unsupported.first().map(|f| (l3, f))) {
        return Err(l3.at.key(field).diag(format!(
            "matching the IP header's `{field}` is not supported: the monitor's rules match addresses, protocol and service ports"
        )));
    }
    Ok(family)
}

/// The peer an IP match names: the destination of the device's packets, or the source of
/// those to it; an address block or a DNS name. The device's own side must not be narrowed.
fn ip_peer(l3: &L3<'_>, side: Side) -> Result<Option<MudPeer>, Diagnostic> {
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
        (Some(_), Some(_)) => Err(l3.at.diag(format!(
            "has both `{peer_network_key}` and `{peer_name_key}`; they are alternatives (RFC 8520, ietf-acldns)"
        ))),
        (Some(network), None) => Ok(Some(MudPeer::Cidr(
            check_network(network, l3.family).map_err(|m| l3.at.key(&peer_network_key).diag(m))?,
        ))),
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
            Ok(Some(MudPeer::Name {
                name: name.trim_end_matches('.').to_ascii_lowercase(),
                family: l3.family,
            }))
        }
        (None, None) => Ok(None),
    }
}

/// The peers after the ACE's `ietf-mud:mud` match: only `local-networks` is supported
/// (as the blocks the policy entry gives), and only instead of an address or name.
fn mud_peers(
    mud: &MudMatch,
    mud_at: &Pointer,
    peers: Vec<MudPeer>,
    local_networks: &[String],
) -> Result<Vec<MudPeer>, Diagnostic> {
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
    let Some(value) = &mud.local_networks else {
        return Ok(peers);
    };
    let at = mud_at.key("local-networks");
    if *value != Value::Array(vec![Value::Null]) {
        return Err(at.diag(format!(
            "is {value}; an empty leaf is written [null] (RFC 7951)"
        )));
    }
    if !peers.is_empty() {
        return Err(
            at.diag("`local-networks` and an address or name in the same ACE are alternatives")
        );
    }
    if local_networks.is_empty() {
        return Err(at.diag(
            "`local-networks` is not supported unless the policy's mud entry says which blocks it means: add `local-networks: [10.10.0.0/16, ...]` to it",
        ));
    }
    Ok(local_networks.iter().cloned().map(MudPeer::Cidr).collect())
}

/// The peer of an ACE that names none: every IPv4 peer. Every IPv6 peer cannot be written
/// without opening IPv4 too.
fn every_peer(family: Option<Family>, at: &Pointer) -> Result<MudPeer, Diagnostic> {
    match family {
        Some(Family::V4) => Ok(MudPeer::Cidr("0.0.0.0/0".into())),
        Some(Family::V6) => Err(at.key("matches").diag(
            "an IPv6 ACE without a peer address or name would match every IPv6 peer; the monitor cannot limit a rule to IPv6 alone (IPv4 lives in its IPv6 address space), so it would open IPv4 too",
        )),
        None => Err(at.key("matches").diag(
            "names no peer and its ACL has no type: cannot tell whether it means every IPv4 or every IPv6 peer",
        )),
    }
}

/// The protocol number: the IP match's `protocol`, which must agree with the transport
/// match (`tcp`, `udp` or `icmp`, at most one of them); `None` for any.
fn ace_protocol(
    matches: &Matches,
    l3: Option<&L3<'_>>,
    family: Option<Family>,
    matches_at: &Pointer,
) -> Result<Option<u8>, Diagnostic> {
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
    let written = l3.and_then(|l3| l3.protocol.map(|p| (p, l3.at.key("protocol"))));
    match (written, implied) {
        (Some((0, at)), _) => Err(at.diag("protocol 0 is not a transport protocol")),
        (Some((p, at)), Some((q, name))) if p != q => Err(at.diag(format!(
            "protocol is {p}, but the ACE matches `{name}` (protocol {q})"
        ))),
        (Some((p, _)), _) => Ok(Some(p)),
        (None, Some((q, _))) => Ok(Some(q)),
        (None, None) => Ok(None),
    }
}

/// Service ports and direction of the transport match; header fields other than ports
/// (and ICMP types) are refused.
fn ace_ports(
    matches: &Matches,
    side: Side,
    family: Option<Family>,
    matches_at: &Pointer,
) -> Result<(Option<PortsSpec>, RuleDirection), Diagnostic> {
    if let Some(tcp) = &matches.tcp {
        tcp_ports(tcp, side, &matches_at.key("tcp"))
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
        )
    } else if let Some(icmp) = &matches.icmp {
        icmp_match_ports(icmp, side, family, &matches_at.key("icmp"))
    } else {
        Ok((None, RuleDirection::Any))
    }
}

fn tcp_ports(
    tcp: &TcpMatch,
    side: Side,
    tcp_at: &Pointer,
) -> Result<(Option<PortsSpec>, RuleDirection), Diagnostic> {
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
        tcp_at,
    )
}

fn icmp_match_ports(
    icmp: &IcmpMatch,
    side: Side,
    family: Option<Family>,
    icmp_at: &Pointer,
) -> Result<(Option<PortsSpec>, RuleDirection), Diagnostic> {
    if icmp.code.is_some() {
        return Err(icmp_at
            .key("code")
            .diag("matching ICMP codes is not supported: the monitor's rules match ICMP types"));
    }
    if icmp.rest_of_header.is_some() {
        return Err(icmp_at
            .key("rest-of-header")
            .diag("matching the rest of the ICMP header is not supported"));
    }
    Ok(icmp_ports(side, family, icmp.icmp_type))
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

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_EXAMPLE: &str = include_str!("../../../../policies/mud/rfc8520-lightbulb2000.json");

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
        let text = include_str!("../../../../policies/mud/infusion-pump.json");
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
}
