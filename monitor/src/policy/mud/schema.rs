//! The JSON of a MUD file (RFC 8520) and the ACLs it carries (RFC 8519), read as strictly as
//! their YANG allows: unknown members are refused by serde, and every match the monitor
//! cannot enforce is kept as a `Value` so that `convert` can refuse it by name.

use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Document {
    #[serde(rename = "ietf-mud:mud")]
    pub(super) mud: MudContainer,
    #[serde(rename = "ietf-access-control-list:acls")]
    pub(super) acls: Option<AclsContainer>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct MudContainer {
    pub(super) mud_version: u8,
    pub(super) mud_url: String,
    pub(super) last_update: String,
    pub(super) mud_signature: Option<String>,
    pub(super) cache_validity: Option<u8>,
    pub(super) is_supported: bool,
    pub(super) systeminfo: Option<String>,
    pub(super) mfg_name: Option<String>,
    pub(super) model_name: Option<String>,
    pub(super) firmware_rev: Option<String>,
    pub(super) software_rev: Option<String>,
    pub(super) documentation: Option<String>,
    #[serde(default)]
    pub(super) extensions: Vec<String>,
    pub(super) from_device_policy: Option<DevicePolicy>,
    pub(super) to_device_policy: Option<DevicePolicy>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct DevicePolicy {
    pub(super) access_lists: AccessLists,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct AccessLists {
    pub(super) access_list: Vec<AccessListRef>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AccessListRef {
    pub(super) name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AclsContainer {
    pub(super) acl: Vec<Acl>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Acl {
    pub(super) name: String,
    #[serde(rename = "type")]
    pub(super) acl_type: Option<String>,
    pub(super) aces: Option<Aces>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Aces {
    pub(super) ace: Vec<Ace>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Ace {
    pub(super) name: String,
    pub(super) matches: Option<Matches>,
    pub(super) actions: Actions,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Matches {
    pub(super) eth: Option<Value>,
    pub(super) ipv4: Option<Ipv4Match>,
    pub(super) ipv6: Option<Ipv6Match>,
    pub(super) tcp: Option<TcpMatch>,
    pub(super) udp: Option<UdpMatch>,
    pub(super) icmp: Option<IcmpMatch>,
    #[serde(rename = "egress-interface")]
    pub(super) egress_interface: Option<Value>,
    #[serde(rename = "ingress-interface")]
    pub(super) ingress_interface: Option<Value>,
    #[serde(rename = "ietf-mud:mud")]
    pub(super) mud: Option<MudMatch>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct Ipv4Match {
    pub(super) destination_ipv4_network: Option<String>,
    pub(super) source_ipv4_network: Option<String>,
    #[serde(rename = "ietf-acldns:dst-dnsname")]
    pub(super) dst_dnsname: Option<String>,
    #[serde(rename = "ietf-acldns:src-dnsname")]
    pub(super) src_dnsname: Option<String>,
    pub(super) protocol: Option<u8>,
    pub(super) dscp: Option<Value>,
    pub(super) ecn: Option<Value>,
    pub(super) length: Option<Value>,
    pub(super) ttl: Option<Value>,
    pub(super) ihl: Option<Value>,
    pub(super) flags: Option<Value>,
    pub(super) offset: Option<Value>,
    pub(super) identification: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct Ipv6Match {
    pub(super) destination_ipv6_network: Option<String>,
    pub(super) source_ipv6_network: Option<String>,
    #[serde(rename = "ietf-acldns:dst-dnsname")]
    pub(super) dst_dnsname: Option<String>,
    #[serde(rename = "ietf-acldns:src-dnsname")]
    pub(super) src_dnsname: Option<String>,
    pub(super) protocol: Option<u8>,
    pub(super) dscp: Option<Value>,
    pub(super) ecn: Option<Value>,
    pub(super) length: Option<Value>,
    pub(super) ttl: Option<Value>,
    pub(super) flow_label: Option<Value>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub(super) enum Initiated {
    FromDevice,
    ToDevice,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct TcpMatch {
    #[serde(rename = "ietf-mud:direction-initiated")]
    pub(super) direction_initiated: Option<Initiated>,
    pub(super) source_port: Option<PortMatch>,
    pub(super) destination_port: Option<PortMatch>,
    pub(super) sequence_number: Option<Value>,
    pub(super) acknowledgement_number: Option<Value>,
    pub(super) data_offset: Option<Value>,
    pub(super) reserved: Option<Value>,
    pub(super) flags: Option<Value>,
    pub(super) window_size: Option<Value>,
    pub(super) urgent_pointer: Option<Value>,
    pub(super) options: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct UdpMatch {
    pub(super) source_port: Option<PortMatch>,
    pub(super) destination_port: Option<PortMatch>,
    pub(super) length: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct IcmpMatch {
    #[serde(rename = "type")]
    pub(super) icmp_type: Option<u8>,
    pub(super) code: Option<Value>,
    pub(super) rest_of_header: Option<Value>,
}

/// `port-range-or-operator` of RFC 8519: a range, or an operator and a port.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct PortMatch {
    pub(super) lower_port: Option<u16>,
    pub(super) upper_port: Option<u16>,
    pub(super) operator: Option<String>,
    pub(super) port: Option<u16>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct MudMatch {
    pub(super) manufacturer: Option<Value>,
    pub(super) same_manufacturer: Option<Value>,
    pub(super) model: Option<Value>,
    pub(super) local_networks: Option<Value>,
    pub(super) controller: Option<Value>,
    pub(super) my_controller: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Actions {
    pub(super) forwarding: String,
    pub(super) logging: Option<String>,
}
