//! The frame parser, shared by the XDP program and the host (unit tests, fuzzing,
//! reference checks).
//!
//! It reads through [`FrameBytes`], which the XDP program implements with its one
//! bounds-checked `ptr_at`, and the host implements for byte slices. Every offset it
//! computes is capped by [`MAX_HEADER_OFFSET`] before use, so the verifier sees a bounded
//! range, and no read can go past the frame.

use crate::verdict::{FrameClass, Reason};

/// Bytes the parser will look into. A header starting beyond this is "chain too long".
pub const MAX_HEADER_OFFSET: usize = 512;
/// IPv6 extension headers walked before giving up with [`Reason::Ipv6ChainTooLong`].
pub const MAX_IPV6_EXTENSIONS: usize = 6;
/// VLAN tags accepted (802.1Q inside 802.1ad, or two 802.1Q).
pub const MAX_VLAN_TAGS: usize = 2;

pub const ETH_HEADER_LEN: usize = 14;
pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const ETHERTYPE_LLDP: u16 = 0x88cc;
pub const ETHERTYPE_VLAN: u16 = 0x8100;
pub const ETHERTYPE_QINQ: u16 = 0x88a8;
/// Pre-standard QinQ outer tag, still sent by some switches.
pub const ETHERTYPE_QINQ_OLD: u16 = 0x9100;

pub const IPPROTO_HOPOPTS: u8 = 0;
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ROUTING: u8 = 43;
pub const IPPROTO_FRAGMENT: u8 = 44;
pub const IPPROTO_AH: u8 = 51;
pub const IPPROTO_ICMPV6: u8 = 58;
pub const IPPROTO_NONE: u8 = 59;
pub const IPPROTO_DSTOPTS: u8 = 60;
pub const IPPROTO_SCTP: u8 = 132;

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// Read access to a frame's bytes.
pub trait FrameBytes {
    /// Frame length in bytes.
    fn frame_len(&self) -> usize;
    /// The `N` bytes at `offset`, or `None` when the frame ends before them. A reference,
    /// not a copy: in XDP each field is then one load from the packet.
    fn read<const N: usize>(&self, offset: usize) -> Option<&[u8; N]>;
}

impl FrameBytes for [u8] {
    #[inline(always)]
    fn frame_len(&self) -> usize {
        self.len()
    }

    #[inline(always)]
    fn read<const N: usize>(&self, offset: usize) -> Option<&[u8; N]> {
        let end = offset.checked_add(N)?;
        self.get(offset..end)?.try_into().ok()
    }
}

/// An IPv4 or IPv6 address; IPv4 is stored IPv4-mapped (`::ffff:a.b.c.d`) so that one
/// key type serves both families.
pub type Addr = [u8; 16];

#[inline(always)]
pub const fn ipv4_mapped(v4: [u8; 4]) -> Addr {
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, v4[0], v4[1], v4[2], v4[3]]
}

/// Where a frame stands among the fragments of its IP packet.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FragmentKind {
    /// Not fragmented.
    Whole = 0,
    /// Offset 0 with more fragments to come: carries the transport header.
    First = 1,
    /// Offset > 0: no transport header; it shares the first fragment's fate.
    Later = 2,
}

/// Which transport fields of an [`IpPacket`] are meaningful.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportKind {
    /// Another protocol, or a later fragment (no transport header to read).
    Opaque = 0,
    /// TCP, UDP or SCTP: `src_port`, `dst_port` (and `tcp_flags` for TCP).
    Ports = 1,
    /// ICMP or ICMPv6: `icmp_type`, `icmp_code`.
    Icmp = 2,
}

/// An IP packet as the policy sees it.
///
/// Flat, with every field always set (zero where meaningless): an enum with payloads would
/// leave undefined bytes that LLVM may fill from any register, which the BPF verifier
/// rejects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpPacket {
    pub src: Addr,
    pub dst: Addr,
    /// IPv4 identification or IPv6 fragment identification; 0 when whole.
    pub fragment_id: u32,
    pub src_port: u16,
    pub dst_port: u16,
    /// Upper-layer protocol (after IPv6 extension headers).
    pub protocol: u8,
    pub is_ipv6: bool,
    pub fragment: FragmentKind,
    pub transport: TransportKind,
    pub tcp_flags: u8,
    pub icmp_type: u8,
    pub icmp_code: u8,
}

/// The transport fields of an [`IpPacket`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Transport {
    kind: TransportKind,
    src_port: u16,
    dst_port: u16,
    tcp_flags: u8,
    icmp_type: u8,
    icmp_code: u8,
}

const OPAQUE: Transport = Transport {
    kind: TransportKind::Opaque,
    src_port: 0,
    dst_port: 0,
    tcp_flags: 0,
    icmp_type: 0,
    icmp_code: 0,
};

/// What the parser made of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParsedFrame {
    pub class: FrameClass,
    pub vlan_tags: u8,
    /// VLAN IDs, outer first; 0 where absent.
    pub vlan_ids: [u16; MAX_VLAN_TAGS],
    pub ip: Option<IpPacket>,
}

/// A frame the parser refused: its class (for the class counters) and the reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub class: FrameClass,
    pub reason: Reason,
    /// Outermost IP addresses, when the fixed IP header was readable before the fault
    /// (so that a malformed packet can still be charged to its device).
    pub addrs: Option<(Addr, Addr)>,
}

#[inline(always)]
fn be16(b: [u8; 2]) -> u16 {
    u16::from_be_bytes(b)
}

#[inline(always)]
fn read_at<F: FrameBytes + ?Sized, const N: usize>(frame: &F, offset: usize) -> Option<&[u8; N]> {
    if offset > MAX_HEADER_OFFSET {
        return None;
    }
    frame.read::<N>(offset)
}

#[inline(always)]
fn fail(class: FrameClass, reason: Reason) -> ParseError {
    ParseError {
        class,
        reason,
        addrs: None,
    }
}

/// How strictly IP lengths are checked against the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Snaplen {
    /// Live traffic: an IP length beyond the frame is malformed.
    Strict,
    /// Captures cut by a snapshot length: the IP length may run past the captured bytes;
    /// headers that were captured are still read.
    CaptureMayBeCut,
}

/// Parses Ethernet, up to two VLAN tags, IPv4/IPv6 (with extension headers) and the
/// transport header.
#[inline(always)]
pub fn parse_frame<F: FrameBytes + ?Sized>(
    frame: &F,
    snaplen: Snaplen,
) -> Result<ParsedFrame, ParseError> {
    let Some(eth) = read_at::<F, ETH_HEADER_LEN>(frame, 0) else {
        return Err(fail(FrameClass::Malformed, Reason::TruncatedEthernet));
    };
    let mut ethertype = be16([eth[12], eth[13]]);
    let mut offset = ETH_HEADER_LEN;
    let mut vlan_ids = [0u16; MAX_VLAN_TAGS];
    let mut vlan_tags = 0u8;
    for slot in vlan_ids.iter_mut() {
        if !matches!(
            ethertype,
            ETHERTYPE_VLAN | ETHERTYPE_QINQ | ETHERTYPE_QINQ_OLD
        ) {
            break;
        }
        let Some(tag) = read_at::<F, 4>(frame, offset) else {
            return Err(fail(FrameClass::Malformed, Reason::BadVlan));
        };
        *slot = be16([tag[0], tag[1]]) & 0x0fff;
        ethertype = be16([tag[2], tag[3]]);
        offset += 4;
        vlan_tags += 1;
    }
    if matches!(
        ethertype,
        ETHERTYPE_VLAN | ETHERTYPE_QINQ | ETHERTYPE_QINQ_OLD
    ) {
        return Err(fail(FrameClass::Malformed, Reason::BadVlan));
    }
    let (class, ip) = match ethertype {
        ETHERTYPE_IPV4 => (FrameClass::Ipv4, Some(parse_ipv4(frame, offset, snaplen)?)),
        ETHERTYPE_IPV6 => (FrameClass::Ipv6, Some(parse_ipv6(frame, offset, snaplen)?)),
        ETHERTYPE_ARP => (FrameClass::Arp, None),
        ETHERTYPE_LLDP => (FrameClass::Lldp, None),
        t if t < 0x0600 => (FrameClass::Llc, None),
        _ => (FrameClass::OtherEthertype, None),
    };
    Ok(ParsedFrame {
        class,
        vlan_tags,
        vlan_ids,
        ip,
    })
}

#[inline(always)]
fn parse_ipv4<F: FrameBytes + ?Sized>(
    frame: &F,
    l3: usize,
    snaplen: Snaplen,
) -> Result<IpPacket, ParseError> {
    let class = FrameClass::Ipv4;
    let Some(h) = read_at::<F, 20>(frame, l3) else {
        return Err(fail(class, Reason::MalformedIpv4));
    };
    let src = ipv4_mapped([h[12], h[13], h[14], h[15]]);
    let dst = ipv4_mapped([h[16], h[17], h[18], h[19]]);
    let bad = |reason| ParseError {
        class,
        reason,
        addrs: Some((src, dst)),
    };
    if h[0] >> 4 != 4 {
        return Err(bad(Reason::MalformedIpv4));
    }
    let header_len = usize::from(h[0] & 0x0f) * 4;
    let total_len = usize::from(be16([h[2], h[3]]));
    if header_len < 20 || total_len < header_len {
        return Err(bad(Reason::MalformedIpv4));
    }
    let end = packet_end(frame, l3 + total_len, snaplen).ok_or(bad(Reason::MalformedIpv4))?;
    let protocol = h[9];
    let flags_offset = be16([h[6], h[7]]);
    let more_fragments = flags_offset & 0x2000 != 0;
    let fragment = match (flags_offset & 0x1fff, more_fragments) {
        (0, false) => FragmentKind::Whole,
        (0, true) => FragmentKind::First,
        _ => FragmentKind::Later,
    };
    let fragment_id = match fragment {
        FragmentKind::Whole => 0,
        _ => u32::from(be16([h[4], h[5]])),
    };
    let transport = match fragment {
        FragmentKind::Later => OPAQUE,
        _ => parse_transport(frame, l3 + header_len, end, protocol).map_err(bad)?,
    };
    Ok(ip_packet(src, dst, false, protocol, fragment, fragment_id, transport))
}

#[inline(always)]
fn parse_ipv6<F: FrameBytes + ?Sized>(
    frame: &F,
    l3: usize,
    snaplen: Snaplen,
) -> Result<IpPacket, ParseError> {
    let class = FrameClass::Ipv6;
    let Some(h) = read_at::<F, 40>(frame, l3) else {
        return Err(fail(class, Reason::MalformedIpv6));
    };
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    src.copy_from_slice(&h[8..24]);
    dst.copy_from_slice(&h[24..40]);
    let bad = |reason| ParseError {
        class,
        reason,
        addrs: Some((src, dst)),
    };
    if h[0] >> 4 != 6 {
        return Err(bad(Reason::MalformedIpv6));
    }
    let payload_len = usize::from(be16([h[4], h[5]]));
    // Payload length 0 announces a jumbogram (RFC 2675); the frame bounds it then.
    let claimed_end = if payload_len == 0 {
        frame.frame_len()
    } else {
        l3 + 40 + payload_len
    };
    let end = packet_end(frame, claimed_end, snaplen).ok_or(bad(Reason::MalformedIpv6))?;
    let mut next = h[6];
    let mut offset = l3 + 40;
    let mut fragment = FragmentKind::Whole;
    let mut fragment_id = 0;
    let mut upper = None;
    for _ in 0..MAX_IPV6_EXTENSIONS {
        match next {
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS | IPPROTO_AH => {
                let Some(ext) = read_at::<F, 2>(frame, offset) else {
                    return Err(bad(Reason::MalformedIpv6));
                };
                let len = if next == IPPROTO_AH {
                    (usize::from(ext[1]) + 2) * 4
                } else {
                    (usize::from(ext[1]) + 1) * 8
                };
                next = ext[0];
                offset += len;
                if offset > end {
                    return Err(bad(Reason::MalformedIpv6));
                }
            }
            IPPROTO_FRAGMENT => {
                let Some(ext) = read_at::<F, 8>(frame, offset) else {
                    return Err(bad(Reason::MalformedIpv6));
                };
                next = ext[0];
                offset += 8;
                if offset > end {
                    return Err(bad(Reason::MalformedIpv6));
                }
                let offset_flags = be16([ext[2], ext[3]]);
                fragment = match (offset_flags >> 3, offset_flags & 1 != 0) {
                    (0, false) => FragmentKind::Whole,
                    (0, true) => FragmentKind::First,
                    _ => FragmentKind::Later,
                };
                if fragment != FragmentKind::Whole {
                    fragment_id = u32::from_be_bytes([ext[4], ext[5], ext[6], ext[7]]);
                }
                if fragment == FragmentKind::Later {
                    upper = Some(next);
                    break;
                }
            }
            _ => {
                upper = Some(next);
                break;
            }
        }
    }
    let Some(protocol) = upper else {
        return Err(bad(Reason::Ipv6ChainTooLong));
    };
    let transport = match (fragment, protocol) {
        (FragmentKind::Later, _) | (_, IPPROTO_NONE) => OPAQUE,
        _ => parse_transport(frame, offset, end, protocol).map_err(bad)?,
    };
    Ok(ip_packet(src, dst, true, protocol, fragment, fragment_id, transport))
}

#[inline(always)]
fn ip_packet(
    src: Addr,
    dst: Addr,
    is_ipv6: bool,
    protocol: u8,
    fragment: FragmentKind,
    fragment_id: u32,
    transport: Transport,
) -> IpPacket {
    IpPacket {
        src,
        dst,
        fragment_id,
        src_port: transport.src_port,
        dst_port: transport.dst_port,
        protocol,
        is_ipv6,
        fragment,
        transport: transport.kind,
        tcp_flags: transport.tcp_flags,
        icmp_type: transport.icmp_type,
        icmp_code: transport.icmp_code,
    }
}

/// Where the IP packet's bytes end in this frame, or `None` when its length field claims
/// more than a live frame holds.
#[inline(always)]
fn packet_end<F: FrameBytes + ?Sized>(frame: &F, claimed_end: usize, snaplen: Snaplen) -> Option<usize> {
    let frame_len = frame.frame_len();
    if claimed_end <= frame_len {
        Some(claimed_end)
    } else if snaplen == Snaplen::CaptureMayBeCut {
        Some(frame_len)
    } else {
        None
    }
}

/// Reads the transport header at `l4`, which must end before `end` (the IP packet's end,
/// not the frame's: Ethernet padding is not a header).
#[inline(always)]
fn parse_transport<F: FrameBytes + ?Sized>(
    frame: &F,
    l4: usize,
    end: usize,
    protocol: u8,
) -> Result<Transport, Reason> {
    let needed = match protocol {
        IPPROTO_TCP => 20,
        IPPROTO_UDP => 8,
        IPPROTO_SCTP => 12,
        IPPROTO_ICMP | IPPROTO_ICMPV6 => 4,
        _ => return Ok(OPAQUE),
    };
    if l4 + needed > end {
        return Err(Reason::TruncatedTransport);
    }
    let Some(t) = read_at::<F, 4>(frame, l4) else {
        return Err(Reason::TruncatedTransport);
    };
    match protocol {
        IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP => {
            let tcp_flags = if protocol == IPPROTO_TCP {
                let Some(flags) = read_at::<F, 1>(frame, l4 + 13) else {
                    return Err(Reason::TruncatedTransport);
                };
                flags[0]
            } else {
                0
            };
            Ok(Transport {
                kind: TransportKind::Ports,
                src_port: be16([t[0], t[1]]),
                dst_port: be16([t[2], t[3]]),
                tcp_flags,
                icmp_type: 0,
                icmp_code: 0,
            })
        }
        _ => Ok(Transport {
            kind: TransportKind::Icmp,
            src_port: 0,
            dst_port: 0,
            tcp_flags: 0,
            icmp_type: t[0],
            icmp_code: t[1],
        }),
    }
}

