//! A small frame builder for the XDP test runs.
//!
//! Ethernet with any number of VLAN tags, IPv4 (options, fragments), IPv6 (hop-by-hop,
//! routing, destination-options, fragment and AH extension headers), TCP, UDP, SCTP,
//! ICMP, ICMPv6, ARP, LLDP and 802.3/LLC. Lengths (IPv4 total length, IPv6 payload length,
//! UDP length, SCTP chunk length) and checksums (IPv4 header, TCP, UDP, ICMP, ICMPv6 with
//! their pseudo-headers, SCTP CRC32c) are right unless a test overrides them on purpose;
//! [`truncated`] cuts a frame at any byte and [`padded`] adds Ethernet padding.
//!
//! ```
//! use monitor_tests::packet::{Ethernet, Ipv4, Transport, TCP_SYN};
//! let frame = Ipv4::new([10, 0, 0, 1], [10, 0, 0, 2])
//!     .frame_in(&Ethernet::new().dot1ad(100).dot1q(10), &Transport::tcp(40000, 443, TCP_SYN));
//! assert_eq!(frame.len(), 14 + 8 + 20 + 20);
//! ```

use std::net::{Ipv4Addr, Ipv6Addr};

pub use monitor_common::parse::{
    ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETHERTYPE_LLDP, ETHERTYPE_QINQ,
    ETHERTYPE_QINQ_OLD, ETHERTYPE_VLAN, IPPROTO_AH, IPPROTO_DSTOPTS, IPPROTO_FRAGMENT,
    IPPROTO_HOPOPTS, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_NONE, IPPROTO_ROUTING, IPPROTO_SCTP,
    IPPROTO_TCP, IPPROTO_UDP, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN,
};

pub const TCP_PSH: u8 = 0x08;
/// 802.1Q customer tag.
pub const TPID_8021Q: u16 = ETHERTYPE_VLAN;
/// 802.1ad service tag (QinQ outer tag).
pub const TPID_8021AD: u16 = ETHERTYPE_QINQ;
/// Pre-standard QinQ outer tag.
pub const TPID_QINQ_OLD: u16 = ETHERTYPE_QINQ_OLD;
/// EAPOL: an ethertype the monitor does not know.
pub const ETHERTYPE_EAPOL: u16 = 0x888e;
/// Smallest Ethernet frame on the wire, without the FCS.
pub const ETH_MIN_FRAME: usize = 60;
pub const ETH_HEADER_LEN: usize = 14;
pub const VLAN_TAG_LEN: usize = 4;
pub const IPV4_HEADER_LEN: usize = 20;
pub const IPV6_HEADER_LEN: usize = 40;
pub const TCP_HEADER_LEN: usize = 20;
pub const UDP_HEADER_LEN: usize = 8;
pub const SCTP_COMMON_HEADER_LEN: usize = 12;
pub const ICMP_HEADER_LEN: usize = 8;

pub const ICMP_ECHO_REPLY: u8 = 0;
pub const ICMP_ECHO_REQUEST: u8 = 8;
pub const ICMPV6_ECHO_REQUEST: u8 = 128;
pub const ICMPV6_ECHO_REPLY: u8 = 129;
pub const ICMPV6_NEIGHBOR_SOLICITATION: u8 = 135;
pub const ICMPV6_NEIGHBOR_ADVERTISEMENT: u8 = 136;

/// `frame` cut to its first `len` bytes (or whole, if shorter). Lengths inside are left
/// as they were, as a snapshot length or a broken NIC would leave them.
pub fn truncated(frame: &[u8], len: usize) -> Vec<u8> {
    frame[..len.min(frame.len())].to_vec()
}

/// `frame` padded with zeros to at least `min` bytes (Ethernet pads to [`ETH_MIN_FRAME`]).
pub fn padded(frame: &[u8], min: usize) -> Vec<u8> {
    let mut out = frame.to_vec();
    if out.len() < min {
        out.resize(min, 0);
    }
    out
}

/// The Internet checksum (RFC 1071) of `chunks`, taken as one byte string.
pub fn internet_checksum(chunks: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    let mut odd: Option<u8> = None;
    for byte in chunks.iter().flat_map(|c| c.iter().copied()) {
        match odd.take() {
            Some(high) => sum += u32::from(u16::from_be_bytes([high, byte])),
            None => odd = Some(byte),
        }
    }
    if let Some(high) = odd {
        sum += u32::from(u16::from_be_bytes([high, 0]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// CRC32c (Castagnoli), as SCTP uses it.
pub fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// An Ethernet header with its VLAN tags (outer first).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ethernet {
    pub dst: [u8; 6],
    pub src: [u8; 6],
    /// (TPID, TCI) per tag, outer first.
    pub tags: Vec<(u16, u16)>,
}

impl Default for Ethernet {
    fn default() -> Self {
        Ethernet {
            dst: [0x02, 0, 0, 0, 0, 0x02],
            src: [0x02, 0, 0, 0, 0, 0x01],
            tags: Vec::new(),
        }
    }
}

impl Ethernet {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn dst(mut self, mac: [u8; 6]) -> Self {
        self.dst = mac;
        self
    }

    pub fn src(mut self, mac: [u8; 6]) -> Self {
        self.src = mac;
        self
    }

    /// Adds a tag inside the ones already there.
    pub fn tag(mut self, tpid: u16, vid: u16) -> Self {
        self.tags.push((tpid, vid & 0x0fff));
        self
    }

    /// An 802.1Q tag.
    pub fn dot1q(self, vid: u16) -> Self {
        self.tag(TPID_8021Q, vid)
    }

    /// An 802.1ad (QinQ service) tag.
    pub fn dot1ad(self, vid: u16) -> Self {
        self.tag(TPID_8021AD, vid)
    }

    /// Bytes before the payload: addresses, tags and the ethertype.
    pub fn header_len(&self) -> usize {
        ETH_HEADER_LEN + VLAN_TAG_LEN * self.tags.len()
    }

    /// The frame carrying `payload` as `ethertype` (no padding, no FCS).
    pub fn frame(&self, ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.header_len() + payload.len());
        out.extend_from_slice(&self.dst);
        out.extend_from_slice(&self.src);
        for &(tpid, tci) in &self.tags {
            out.extend_from_slice(&tpid.to_be_bytes());
            out.extend_from_slice(&tci.to_be_bytes());
        }
        out.extend_from_slice(&ethertype.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// An 802.3 frame: a length instead of the ethertype, then `llc` (LLC header and data).
    pub fn frame_802_3(&self, llc: &[u8]) -> Vec<u8> {
        let len = u16::try_from(llc.len()).expect("an 802.3 payload fits 16 bits");
        assert!(len < 0x0600, "an 802.3 length must stay below 0x0600");
        self.frame(len, llc)
    }
}

/// What a transport checksum's pseudo-header is built from.
#[derive(Clone, Debug)]
pub struct Pseudo {
    pub src: Vec<u8>,
    pub dst: Vec<u8>,
    pub is_ipv6: bool,
}

impl Pseudo {
    fn bytes(&self, protocol: u8, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(40);
        out.extend_from_slice(&self.src);
        out.extend_from_slice(&self.dst);
        if self.is_ipv6 {
            out.extend_from_slice(
                &u32::try_from(len)
                    .expect("upper-layer length fits 32 bits")
                    .to_be_bytes(),
            );
            out.extend_from_slice(&[0, 0, 0, protocol]);
        } else {
            out.extend_from_slice(&[0, protocol]);
            out.extend_from_slice(
                &u16::try_from(len)
                    .expect("IPv4 payload fits 16 bits")
                    .to_be_bytes(),
            );
        }
        out
    }
}

/// A TCP segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tcp {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    pub payload: Vec<u8>,
}

/// A transport header and its payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    Tcp(Tcp),
    Udp {
        src_port: u16,
        dst_port: u16,
        payload: Vec<u8>,
    },
    /// SCTP common header and one INIT chunk.
    Sctp {
        src_port: u16,
        dst_port: u16,
        verification_tag: u32,
    },
    /// ICMP (IPv4): type, code, checksum, then `rest` (identifier and sequence for echo).
    Icmp {
        icmp_type: u8,
        code: u8,
        rest: [u8; 4],
        payload: Vec<u8>,
    },
    /// ICMPv6: as [`Transport::Icmp`], with the IPv6 pseudo-header in the checksum.
    Icmpv6 {
        icmp_type: u8,
        code: u8,
        rest: [u8; 4],
        payload: Vec<u8>,
    },
    /// Any protocol, bytes as given.
    Raw {
        protocol: u8,
        bytes: Vec<u8>,
    },
}

impl Transport {
    pub fn tcp(src_port: u16, dst_port: u16, flags: u8) -> Transport {
        Transport::Tcp(Tcp {
            src_port,
            dst_port,
            seq: if flags & TCP_SYN != 0 { 1000 } else { 1001 },
            ack: if flags & TCP_ACK != 0 { 5001 } else { 0 },
            flags,
            window: 64240,
            payload: Vec::new(),
        })
    }

    pub fn tcp_with_payload(src_port: u16, dst_port: u16, flags: u8, payload: &[u8]) -> Transport {
        match Self::tcp(src_port, dst_port, flags) {
            Transport::Tcp(mut tcp) => {
                tcp.payload = payload.to_vec();
                Transport::Tcp(tcp)
            }
            _ => unreachable!("Transport::tcp builds TCP"),
        }
    }

    pub fn udp(src_port: u16, dst_port: u16, payload: &[u8]) -> Transport {
        Transport::Udp {
            src_port,
            dst_port,
            payload: payload.to_vec(),
        }
    }

    pub fn sctp(src_port: u16, dst_port: u16) -> Transport {
        Transport::Sctp {
            src_port,
            dst_port,
            verification_tag: 0,
        }
    }

    /// ICMP echo request (`request`) or reply, with identifier and sequence number.
    pub fn icmp_echo(request: bool, id: u16, seq: u16) -> Transport {
        let [i0, i1] = id.to_be_bytes();
        let [s0, s1] = seq.to_be_bytes();
        Transport::Icmp {
            icmp_type: if request {
                ICMP_ECHO_REQUEST
            } else {
                ICMP_ECHO_REPLY
            },
            code: 0,
            rest: [i0, i1, s0, s1],
            payload: b"abcdefghijklmnop".to_vec(),
        }
    }

    /// ICMPv6 echo request (`request`) or reply.
    pub fn icmpv6_echo(request: bool, id: u16, seq: u16) -> Transport {
        let [i0, i1] = id.to_be_bytes();
        let [s0, s1] = seq.to_be_bytes();
        Transport::Icmpv6 {
            icmp_type: if request {
                ICMPV6_ECHO_REQUEST
            } else {
                ICMPV6_ECHO_REPLY
            },
            code: 0,
            rest: [i0, i1, s0, s1],
            payload: b"abcdefghijklmnop".to_vec(),
        }
    }

    /// ICMPv6 neighbor solicitation for `target`.
    pub fn icmpv6_neighbor_solicitation(target: Ipv6Addr) -> Transport {
        Transport::Icmpv6 {
            icmp_type: ICMPV6_NEIGHBOR_SOLICITATION,
            code: 0,
            rest: [0; 4],
            payload: target.octets().to_vec(),
        }
    }

    /// ICMPv6 neighbour advertisement (override flag set) for `target`, with a target
    /// link-layer address option when given. Sent with hop limit 255
    /// ([`Ipv6::hop_limit`]) to count.
    pub fn icmpv6_neighbor_advertisement(target: Ipv6Addr, tlla: Option<[u8; 6]>) -> Transport {
        let mut payload = target.octets().to_vec();
        if let Some(mac) = tlla {
            payload.extend_from_slice(&[2, 1]);
            payload.extend_from_slice(&mac);
        }
        Transport::Icmpv6 {
            icmp_type: ICMPV6_NEIGHBOR_ADVERTISEMENT,
            code: 0,
            rest: [0x20, 0, 0, 0],
            payload,
        }
    }

    pub fn raw(protocol: u8, bytes: &[u8]) -> Transport {
        Transport::Raw {
            protocol,
            bytes: bytes.to_vec(),
        }
    }

    /// The IP protocol number.
    pub fn protocol(&self) -> u8 {
        match self {
            Transport::Tcp(_) => IPPROTO_TCP,
            Transport::Udp { .. } => IPPROTO_UDP,
            Transport::Sctp { .. } => IPPROTO_SCTP,
            Transport::Icmp { .. } => IPPROTO_ICMP,
            Transport::Icmpv6 { .. } => IPPROTO_ICMPV6,
            Transport::Raw { protocol, .. } => *protocol,
        }
    }

    /// Length of the transport header alone (of the whole bytes for [`Transport::Raw`]).
    pub fn header_len(&self) -> usize {
        match self {
            Transport::Tcp(_) => TCP_HEADER_LEN,
            Transport::Udp { .. } => UDP_HEADER_LEN,
            Transport::Sctp { .. } => SCTP_COMMON_HEADER_LEN,
            Transport::Icmp { .. } | Transport::Icmpv6 { .. } => ICMP_HEADER_LEN,
            Transport::Raw { bytes, .. } => bytes.len(),
        }
    }

    /// Header and payload, checksum computed over `pseudo`.
    pub fn encode(&self, pseudo: &Pseudo) -> Vec<u8> {
        match self {
            Transport::Tcp(tcp) => {
                let mut out = Vec::with_capacity(TCP_HEADER_LEN + tcp.payload.len());
                out.extend_from_slice(&tcp.src_port.to_be_bytes());
                out.extend_from_slice(&tcp.dst_port.to_be_bytes());
                out.extend_from_slice(&tcp.seq.to_be_bytes());
                out.extend_from_slice(&tcp.ack.to_be_bytes());
                out.push(5 << 4);
                out.push(tcp.flags);
                out.extend_from_slice(&tcp.window.to_be_bytes());
                out.extend_from_slice(&[0, 0, 0, 0]);
                out.extend_from_slice(&tcp.payload);
                let sum = internet_checksum(&[&pseudo.bytes(IPPROTO_TCP, out.len()), &out]);
                out[16..18].copy_from_slice(&sum.to_be_bytes());
                out
            }
            Transport::Udp {
                src_port,
                dst_port,
                payload,
            } => {
                let len = UDP_HEADER_LEN + payload.len();
                let mut out = Vec::with_capacity(len);
                out.extend_from_slice(&src_port.to_be_bytes());
                out.extend_from_slice(&dst_port.to_be_bytes());
                out.extend_from_slice(
                    &u16::try_from(len)
                        .expect("UDP length fits 16 bits")
                        .to_be_bytes(),
                );
                out.extend_from_slice(&[0, 0]);
                out.extend_from_slice(payload);
                let sum = match internet_checksum(&[&pseudo.bytes(IPPROTO_UDP, len), &out]) {
                    // Zero means "no checksum" in UDP over IPv4; a computed zero is sent as ones.
                    0 => 0xffff,
                    sum => sum,
                };
                out[6..8].copy_from_slice(&sum.to_be_bytes());
                out
            }
            Transport::Sctp {
                src_port,
                dst_port,
                verification_tag,
            } => {
                let mut out = Vec::with_capacity(SCTP_COMMON_HEADER_LEN + 20);
                out.extend_from_slice(&src_port.to_be_bytes());
                out.extend_from_slice(&dst_port.to_be_bytes());
                out.extend_from_slice(&verification_tag.to_be_bytes());
                out.extend_from_slice(&[0, 0, 0, 0]);
                // INIT chunk: type 1, flags 0, length 20, initiate tag, a_rwnd, outbound
                // and inbound streams, initial TSN.
                out.extend_from_slice(&[1, 0, 0, 20]);
                out.extend_from_slice(&0x1234_5678u32.to_be_bytes());
                out.extend_from_slice(&65_535u32.to_be_bytes());
                out.extend_from_slice(&[0, 10, 0, 10]);
                out.extend_from_slice(&1u32.to_be_bytes());
                let crc = crc32c(&out);
                out[8..12].copy_from_slice(&crc.to_le_bytes());
                out
            }
            Transport::Icmp {
                icmp_type,
                code,
                rest,
                payload,
            } => {
                let mut out = vec![*icmp_type, *code, 0, 0];
                out.extend_from_slice(rest);
                out.extend_from_slice(payload);
                let sum = internet_checksum(&[&out]);
                out[2..4].copy_from_slice(&sum.to_be_bytes());
                out
            }
            Transport::Icmpv6 {
                icmp_type,
                code,
                rest,
                payload,
            } => {
                let mut out = vec![*icmp_type, *code, 0, 0];
                out.extend_from_slice(rest);
                out.extend_from_slice(payload);
                let sum = internet_checksum(&[&pseudo.bytes(IPPROTO_ICMPV6, out.len()), &out]);
                out[2..4].copy_from_slice(&sum.to_be_bytes());
                out
            }
            Transport::Raw { bytes, .. } => bytes.clone(),
        }
    }
}

/// An IPv4 header. The `Option` fields override computed values to build broken packets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ipv4 {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub id: u16,
    pub ttl: u8,
    pub tos: u8,
    pub dont_fragment: bool,
    pub more_fragments: bool,
    /// In 8-byte units.
    pub fragment_offset: u16,
    /// Option bytes; padded with zeros (end of options) to a multiple of 4.
    pub options: Vec<u8>,
    /// The version nibble (4 unless a test breaks it).
    pub version: u8,
    /// Header length in 32-bit words, instead of the computed one.
    pub ihl: Option<u8>,
    /// Total length instead of the computed one.
    pub total_len: Option<u16>,
    /// Protocol instead of the payload's.
    pub protocol: Option<u8>,
}

impl Ipv4 {
    pub fn new(src: impl Into<Ipv4Addr>, dst: impl Into<Ipv4Addr>) -> Ipv4 {
        Ipv4 {
            src: src.into(),
            dst: dst.into(),
            id: 0x1c46,
            ttl: 64,
            tos: 0,
            dont_fragment: false,
            more_fragments: false,
            fragment_offset: 0,
            options: Vec::new(),
            version: 4,
            ihl: None,
            total_len: None,
            protocol: None,
        }
    }

    pub fn id(mut self, id: u16) -> Self {
        self.id = id;
        self
    }

    pub fn dont_fragment(mut self) -> Self {
        self.dont_fragment = true;
        self
    }

    /// Sets the MF flag and the fragment offset (in 8-byte units).
    pub fn fragment(mut self, offset_units: u16, more_fragments: bool) -> Self {
        self.fragment_offset = offset_units;
        self.more_fragments = more_fragments;
        self
    }

    pub fn options(mut self, options: &[u8]) -> Self {
        self.options = options.to_vec();
        self
    }

    pub fn version(mut self, version: u8) -> Self {
        self.version = version;
        self
    }

    pub fn ihl(mut self, words: u8) -> Self {
        self.ihl = Some(words);
        self
    }

    pub fn total_len(mut self, len: u16) -> Self {
        self.total_len = Some(len);
        self
    }

    pub fn protocol(mut self, protocol: u8) -> Self {
        self.protocol = Some(protocol);
        self
    }

    /// Header length with the options, padded.
    pub fn header_len(&self) -> usize {
        IPV4_HEADER_LEN + self.options.len().div_ceil(4) * 4
    }

    pub fn pseudo(&self) -> Pseudo {
        Pseudo {
            src: self.src.octets().to_vec(),
            dst: self.dst.octets().to_vec(),
            is_ipv6: false,
        }
    }

    /// The packet: this header (checksum computed) and `payload` as `protocol`.
    pub fn packet(&self, protocol: u8, payload: &[u8]) -> Vec<u8> {
        let header_len = self.header_len();
        let ihl = self
            .ihl
            .unwrap_or(u8::try_from(header_len / 4).expect("IPv4 header fits"));
        let total = self.total_len.unwrap_or_else(|| {
            u16::try_from(header_len + payload.len()).expect("IPv4 packet fits 16 bits")
        });
        let flags_offset = (u16::from(self.dont_fragment) << 14)
            | (u16::from(self.more_fragments) << 13)
            | (self.fragment_offset & 0x1fff);
        let mut out = Vec::with_capacity(header_len + payload.len());
        out.push((self.version << 4) | (ihl & 0x0f));
        out.push(self.tos);
        out.extend_from_slice(&total.to_be_bytes());
        out.extend_from_slice(&self.id.to_be_bytes());
        out.extend_from_slice(&flags_offset.to_be_bytes());
        out.push(self.ttl);
        out.push(self.protocol.unwrap_or(protocol));
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&self.src.octets());
        out.extend_from_slice(&self.dst.octets());
        out.extend_from_slice(&self.options);
        out.resize(header_len, 0);
        let sum = internet_checksum(&[&out]);
        out[10..12].copy_from_slice(&sum.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// The packet carrying `transport`.
    pub fn with(&self, transport: &Transport) -> Vec<u8> {
        self.packet(transport.protocol(), &transport.encode(&self.pseudo()))
    }

    /// The frame carrying `transport` in a plain Ethernet header.
    pub fn frame(&self, transport: &Transport) -> Vec<u8> {
        self.frame_in(&Ethernet::new(), transport)
    }

    /// The frame carrying `transport` in `eth`.
    pub fn frame_in(&self, eth: &Ethernet, transport: &Transport) -> Vec<u8> {
        eth.frame(ETHERTYPE_IPV4, &self.with(transport))
    }

    /// `transport` in two fragments: the first carries `split` bytes of it (a multiple of
    /// 8) with MF set, the second the rest at offset `split / 8`. Plain Ethernet frames.
    pub fn fragments(&self, transport: &Transport, split: usize) -> [Vec<u8>; 2] {
        assert!(
            split.is_multiple_of(8),
            "fragment offsets count 8-byte units"
        );
        let bytes = transport.encode(&self.pseudo());
        assert!(
            split < bytes.len(),
            "the split must leave bytes for the second fragment"
        );
        let protocol = transport.protocol();
        let first = self
            .clone()
            .fragment(0, true)
            .packet(protocol, &bytes[..split]);
        let units = u16::try_from(split / 8).expect("fragment offset fits 13 bits");
        let later = self
            .clone()
            .fragment(units, false)
            .packet(protocol, &bytes[split..]);
        let eth = Ethernet::new();
        [
            eth.frame(ETHERTYPE_IPV4, &first),
            eth.frame(ETHERTYPE_IPV4, &later),
        ]
    }
}

/// An IPv6 extension header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ext {
    /// Hop-by-hop options, `(len8 + 1) * 8` bytes (PadN-filled).
    HopByHop { len8: u8 },
    /// Routing header type 0 with no addresses left, `(len8 + 1) * 8` bytes.
    Routing { len8: u8 },
    /// Destination options, `(len8 + 1) * 8` bytes.
    DestOpts { len8: u8 },
    /// Fragment header: offset in 8-byte units, M flag, identification.
    Fragment { offset: u16, more: bool, id: u32 },
    /// Authentication header, `(len4 + 2) * 4` bytes.
    Ah { len4: u8 },
}

impl Ext {
    pub fn hop_by_hop() -> Ext {
        Ext::HopByHop { len8: 0 }
    }

    pub fn routing() -> Ext {
        Ext::Routing { len8: 0 }
    }

    pub fn dest_opts() -> Ext {
        Ext::DestOpts { len8: 0 }
    }

    pub fn fragment(offset: u16, more: bool, id: u32) -> Ext {
        Ext::Fragment { offset, more, id }
    }

    /// AH with a 96-bit ICV (the usual HMAC-SHA1-96): 24 bytes.
    pub fn ah() -> Ext {
        Ext::Ah { len4: 4 }
    }

    pub fn protocol(&self) -> u8 {
        match self {
            Ext::HopByHop { .. } => IPPROTO_HOPOPTS,
            Ext::Routing { .. } => IPPROTO_ROUTING,
            Ext::DestOpts { .. } => IPPROTO_DSTOPTS,
            Ext::Fragment { .. } => IPPROTO_FRAGMENT,
            Ext::Ah { .. } => IPPROTO_AH,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Ext::HopByHop { len8 } | Ext::Routing { len8 } | Ext::DestOpts { len8 } => {
                (usize::from(*len8) + 1) * 8
            }
            Ext::Fragment { .. } => 8,
            Ext::Ah { len4 } => (usize::from(*len4) + 2) * 4,
        }
    }

    /// Never empty; here for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        false
    }

    fn encode(&self, next: u8) -> Vec<u8> {
        let mut out = vec![0u8; self.len()];
        out[0] = next;
        match self {
            Ext::HopByHop { len8 } | Ext::DestOpts { len8 } => {
                out[1] = *len8;
                // PadN options (at most 255 data bytes each) filling the rest; a single
                // byte left over is a Pad1 (already zero).
                let mut at = 2;
                while out.len() - at >= 2 {
                    let n = (out.len() - at - 2).min(255);
                    out[at] = 1;
                    out[at + 1] = u8::try_from(n).expect("at most 255");
                    at += n + 2;
                }
            }
            Ext::Routing { len8 } => {
                out[1] = *len8;
                // Routing type 0, segments left 0.
            }
            Ext::Fragment { offset, more, id } => {
                let field = (offset << 3) | u16::from(*more);
                out[2..4].copy_from_slice(&field.to_be_bytes());
                out[4..8].copy_from_slice(&id.to_be_bytes());
            }
            Ext::Ah { len4 } => {
                out[1] = *len4;
                out[4..8].copy_from_slice(&0x100u32.to_be_bytes()); // SPI
                out[8..12].copy_from_slice(&1u32.to_be_bytes()); // sequence
            }
        }
        out
    }
}

/// An IPv6 header and its extension headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ipv6 {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub hop_limit: u8,
    pub flow_label: u32,
    pub ext: Vec<Ext>,
    /// The version nibble (6 unless a test breaks it).
    pub version: u8,
    /// Payload length instead of the computed one.
    pub payload_len: Option<u16>,
}

impl Ipv6 {
    pub fn new(src: impl Into<Ipv6Addr>, dst: impl Into<Ipv6Addr>) -> Ipv6 {
        Ipv6 {
            src: src.into(),
            dst: dst.into(),
            hop_limit: 64,
            flow_label: 0x12345,
            ext: Vec::new(),
            version: 6,
            payload_len: None,
        }
    }

    /// Appends an extension header (after those already there).
    pub fn ext(mut self, ext: Ext) -> Self {
        self.ext.push(ext);
        self
    }

    pub fn version(mut self, version: u8) -> Self {
        self.version = version;
        self
    }

    pub fn payload_len(mut self, len: u16) -> Self {
        self.payload_len = Some(len);
        self
    }

    /// The fixed header and the extension headers.
    pub fn header_len(&self) -> usize {
        IPV6_HEADER_LEN + self.ext.iter().map(Ext::len).sum::<usize>()
    }

    pub fn pseudo(&self) -> Pseudo {
        Pseudo {
            src: self.src.octets().to_vec(),
            dst: self.dst.octets().to_vec(),
            is_ipv6: true,
        }
    }

    /// The packet: header, extension headers, then `payload` as `protocol`.
    pub fn packet(&self, protocol: u8, payload: &[u8]) -> Vec<u8> {
        let mut body = Vec::new();
        for (i, ext) in self.ext.iter().enumerate() {
            let next = self.ext.get(i + 1).map_or(protocol, Ext::protocol);
            body.extend_from_slice(&ext.encode(next));
        }
        body.extend_from_slice(payload);
        let payload_len = self
            .payload_len
            .unwrap_or_else(|| u16::try_from(body.len()).expect("IPv6 payload fits 16 bits"));
        let first_next = self.ext.first().map_or(protocol, Ext::protocol);
        let word = (u32::from(self.version) << 28) | (self.flow_label & 0x000f_ffff);
        let mut out = Vec::with_capacity(IPV6_HEADER_LEN + body.len());
        out.extend_from_slice(&word.to_be_bytes());
        out.extend_from_slice(&payload_len.to_be_bytes());
        out.push(first_next);
        out.push(self.hop_limit);
        out.extend_from_slice(&self.src.octets());
        out.extend_from_slice(&self.dst.octets());
        out.extend_from_slice(&body);
        out
    }

    pub fn with(&self, transport: &Transport) -> Vec<u8> {
        self.packet(transport.protocol(), &transport.encode(&self.pseudo()))
    }

    pub fn frame(&self, transport: &Transport) -> Vec<u8> {
        self.frame_in(&Ethernet::new(), transport)
    }

    pub fn frame_in(&self, eth: &Ethernet, transport: &Transport) -> Vec<u8> {
        eth.frame(ETHERTYPE_IPV6, &self.with(transport))
    }

    /// `transport` in two fragments (a fragment header appended to this header's
    /// extension headers): the first carries `split` bytes (a multiple of 8) with M set.
    pub fn fragments(&self, transport: &Transport, split: usize, id: u32) -> [Vec<u8>; 2] {
        self.fragments_after(&[], transport, split, id)
    }

    /// Like [`Ipv6::fragments`], with `fragmentable` extension headers (destination
    /// options, say) after the fragment header: they and `transport` make the fragmentable
    /// part that is split, so only the first fragment carries them (RFC 8200, 4.5), while
    /// every fragment header names the first of them as its next header.
    pub fn fragments_after(
        &self,
        fragmentable: &[Ext],
        transport: &Transport,
        split: usize,
        id: u32,
    ) -> [Vec<u8>; 2] {
        assert!(
            split.is_multiple_of(8),
            "fragment offsets count 8-byte units"
        );
        let mut bytes = Vec::new();
        for (i, ext) in fragmentable.iter().enumerate() {
            let next = fragmentable
                .get(i + 1)
                .map_or(transport.protocol(), Ext::protocol);
            bytes.extend_from_slice(&ext.encode(next));
        }
        bytes.extend_from_slice(&transport.encode(&self.pseudo()));
        assert!(
            split < bytes.len(),
            "the split must leave bytes for the second fragment"
        );
        let protocol = fragmentable
            .first()
            .map_or(transport.protocol(), Ext::protocol);
        let first = self
            .clone()
            .ext(Ext::fragment(0, true, id))
            .packet(protocol, &bytes[..split]);
        let units = u16::try_from(split / 8).expect("fragment offset fits 13 bits");
        let later = self
            .clone()
            .ext(Ext::fragment(units, false, id))
            .packet(protocol, &bytes[split..]);
        let eth = Ethernet::new();
        [
            eth.frame(ETHERTYPE_IPV6, &first),
            eth.frame(ETHERTYPE_IPV6, &later),
        ]
    }
}

/// An ARP request (Ethernet/IPv4) from `sender` asking for `target`: the ethertype
/// 0x0806 payload.
pub fn arp_request(sender_mac: [u8; 6], sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut out = Vec::with_capacity(28);
    out.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    out.extend_from_slice(&sender_mac);
    out.extend_from_slice(&sender.octets());
    out.extend_from_slice(&[0; 6]);
    out.extend_from_slice(&target.octets());
    out
}

/// An ARP packet (Ethernet/IPv4, opcode `op`: 1 request, 2 reply) from `sender_mac` and
/// `sender` to `target_mac` and `target`: the ethertype 0x0806 payload.
pub fn arp_packet(
    op: u16,
    sender_mac: [u8; 6],
    sender: Ipv4Addr,
    target_mac: [u8; 6],
    target: Ipv4Addr,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(28);
    out.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4]);
    out.extend_from_slice(&op.to_be_bytes());
    out.extend_from_slice(&sender_mac);
    out.extend_from_slice(&sender.octets());
    out.extend_from_slice(&target_mac);
    out.extend_from_slice(&target.octets());
    out
}

/// A whole ARP frame sent from `eth_src` carrying `arp` (an [`arp_packet`]), broadcast,
/// padded to the Ethernet minimum.
pub fn arp_frame_from(eth_src: [u8; 6], arp: &[u8]) -> Vec<u8> {
    let eth = Ethernet::new().src(eth_src).dst([0xff; 6]);
    padded(&eth.frame(ETHERTYPE_ARP, arp), ETH_MIN_FRAME)
}

/// A whole ARP request frame, broadcast, padded to the Ethernet minimum.
pub fn arp_frame(sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let eth = Ethernet::new().dst([0xff; 6]);
    let frame = eth.frame(ETHERTYPE_ARP, &arp_request(eth.src, sender, target));
    padded(&frame, ETH_MIN_FRAME)
}

fn lldp_tlv(out: &mut Vec<u8>, tlv_type: u8, value: &[u8]) {
    let len = u16::try_from(value.len()).expect("an LLDP TLV is short");
    assert!(len < 512, "an LLDP TLV length has 9 bits");
    out.extend_from_slice(&((u16::from(tlv_type) << 9) | len).to_be_bytes());
    out.extend_from_slice(value);
}

/// An LLDPDU (chassis ID by MAC, port ID by name, TTL, end): the ethertype 0x88cc payload.
pub fn lldpdu(chassis_mac: [u8; 6], port: &str, ttl: u16) -> Vec<u8> {
    let mut out = Vec::new();
    let mut chassis = vec![4u8];
    chassis.extend_from_slice(&chassis_mac);
    lldp_tlv(&mut out, 1, &chassis);
    let mut port_id = vec![5u8];
    port_id.extend_from_slice(port.as_bytes());
    lldp_tlv(&mut out, 2, &port_id);
    lldp_tlv(&mut out, 3, &ttl.to_be_bytes());
    lldp_tlv(&mut out, 0, &[]);
    out
}

/// A whole LLDP frame to the nearest-bridge group address, padded.
pub fn lldp_frame() -> Vec<u8> {
    let eth = Ethernet::new().dst([0x01, 0x80, 0xc2, 0, 0, 0x0e]);
    padded(
        &eth.frame(ETHERTYPE_LLDP, &lldpdu(eth.src, "ge-0/0/1", 120)),
        ETH_MIN_FRAME,
    )
}

/// A spanning-tree configuration BPDU in an 802.3/LLC frame (DSAP = SSAP = 0x42), padded.
pub fn stp_frame() -> Vec<u8> {
    let mut llc = vec![0x42, 0x42, 0x03];
    // Protocol 0, version 0, type 0 (configuration), flags, root ID, path cost, bridge
    // ID, port ID, message age, max age, hello time, forward delay.
    llc.extend_from_slice(&[0, 0, 0, 0, 0]);
    llc.extend_from_slice(&[0x80, 0, 0x02, 0, 0, 0, 0, 0x01]);
    llc.extend_from_slice(&[0, 0, 0, 0]);
    llc.extend_from_slice(&[0x80, 0, 0x02, 0, 0, 0, 0, 0x01]);
    llc.extend_from_slice(&[0x80, 0x01, 0, 0, 0x14, 0, 0x02, 0, 0x0f, 0]);
    let eth = Ethernet::new().dst([0x01, 0x80, 0xc2, 0, 0, 0]);
    padded(&eth.frame_802_3(&llc), ETH_MIN_FRAME)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_header_checksum_verifies() {
        let packet = Ipv4::new([192, 168, 0, 1], [192, 168, 0, 199])
            .options(&[0x94, 0x04, 0, 0])
            .with(&Transport::udp(5000, 53, b"hello"));
        assert_eq!(packet.len(), 24 + 8 + 5);
        assert_eq!(packet[0], 0x46);
        assert_eq!(u16::from_be_bytes([packet[2], packet[3]]), 37);
        assert_eq!(internet_checksum(&[&packet[..24]]), 0, "header checksum");
        assert_eq!(
            u16::from_be_bytes([packet[28], packet[29]]),
            13,
            "UDP length"
        );
    }

    #[test]
    fn transport_checksums_verify_with_the_pseudo_header() {
        let v4 = Ipv4::new([10, 0, 0, 1], [10, 0, 0, 2]);
        let v6 = Ipv6::new(
            "fd00::1".parse::<Ipv6Addr>().expect("address"),
            "fd00::2".parse::<Ipv6Addr>().expect("address"),
        );
        for t in [
            Transport::tcp_with_payload(1, 2, TCP_ACK | TCP_PSH, b"odd"),
            Transport::udp(3, 4, b"x"),
        ] {
            let seg = t.encode(&v4.pseudo());
            let pseudo = v4.pseudo().bytes(t.protocol(), seg.len());
            assert_eq!(internet_checksum(&[&pseudo, &seg]), 0, "{t:?} over IPv4");
            let seg = t.encode(&v6.pseudo());
            let pseudo = v6.pseudo().bytes(t.protocol(), seg.len());
            assert_eq!(internet_checksum(&[&pseudo, &seg]), 0, "{t:?} over IPv6");
        }
        let icmp = Transport::icmp_echo(true, 7, 1).encode(&v4.pseudo());
        assert_eq!(internet_checksum(&[&icmp]), 0);
        let t = Transport::icmpv6_echo(false, 7, 1);
        let seg = t.encode(&v6.pseudo());
        assert_eq!(
            internet_checksum(&[&v6.pseudo().bytes(IPPROTO_ICMPV6, seg.len()), &seg]),
            0
        );
    }

    #[test]
    fn crc32c_matches_the_rfc_3720_vector() {
        assert_eq!(crc32c(&[0u8; 32]), 0x8a91_36aa);
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn ipv6_chain_links_next_headers_and_counts_payload() {
        let packet = Ipv6::new(Ipv6Addr::LOCALHOST, Ipv6Addr::LOCALHOST)
            .ext(Ext::hop_by_hop())
            .ext(Ext::ah())
            .ext(Ext::fragment(0, false, 9))
            .with(&Transport::udp(1, 2, &[]));
        assert_eq!(packet[6], IPPROTO_HOPOPTS);
        assert_eq!(packet[40], IPPROTO_AH);
        assert_eq!(packet[48], IPPROTO_FRAGMENT);
        assert_eq!(packet[48 + 24], IPPROTO_UDP);
        assert_eq!(
            usize::from(u16::from_be_bytes([packet[4], packet[5]])),
            8 + 24 + 8 + 8
        );
        assert_eq!(packet.len(), 40 + 8 + 24 + 8 + 8);
    }

    #[test]
    fn fragments_split_the_transport_bytes() {
        let ip = Ipv4::new([10, 0, 0, 1], [10, 0, 0, 2]).id(77);
        let [first, later] = ip.fragments(&Transport::udp(5000, 514, &[0x55; 40]), 16);
        assert_eq!(first.len(), 14 + 20 + 16);
        assert_eq!(later.len(), 14 + 20 + 32);
        assert_eq!(u16::from_be_bytes([first[20], first[21]]), 0x2000);
        assert_eq!(u16::from_be_bytes([later[20], later[21]]), 2);
        assert_eq!(&later[18..20], &77u16.to_be_bytes());
    }

    #[test]
    fn frames_of_other_protocols_have_their_ethertypes() {
        assert_eq!(
            &arp_frame([10, 0, 0, 1].into(), [10, 0, 0, 2].into())[12..14],
            &[0x08, 0x06]
        );
        assert_eq!(&lldp_frame()[12..14], &[0x88, 0xcc]);
        let stp = stp_frame();
        assert_eq!(usize::from(u16::from_be_bytes([stp[12], stp[13]])), 38);
        assert_eq!(stp.len(), ETH_MIN_FRAME);
        let tagged = Ethernet::new()
            .dot1ad(100)
            .dot1q(10)
            .frame(ETHERTYPE_ARP, &[]);
        assert_eq!(
            &tagged[12..22],
            &[0x88, 0xa8, 0, 100, 0x81, 0x00, 0, 10, 0x08, 0x06]
        );
    }

    #[test]
    fn truncation_and_padding() {
        let frame = Ipv4::new([1, 1, 1, 1], [2, 2, 2, 2]).frame(&Transport::udp(1, 2, &[]));
        assert_eq!(truncated(&frame, 20).len(), 20);
        assert_eq!(truncated(&frame, 500), frame);
        let pad = padded(&frame, ETH_MIN_FRAME);
        assert_eq!(pad.len(), ETH_MIN_FRAME);
        assert_eq!(&pad[..frame.len()], &frame[..]);
        assert!(pad[frame.len()..].iter().all(|&b| b == 0));
    }
}
