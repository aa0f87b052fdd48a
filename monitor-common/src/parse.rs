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

impl IpPacket {
    /// All zero: the starting point the parser fills in.
    pub const EMPTY: IpPacket = IpPacket {
        src: [0; 16],
        dst: [0; 16],
        fragment_id: 0,
        src_port: 0,
        dst_port: 0,
        protocol: 0,
        is_ipv6: false,
        fragment: FragmentKind::Whole,
        transport: TransportKind::Opaque,
        tcp_flags: 0,
        icmp_type: 0,
        icmp_code: 0,
    };
}

/// What the parser made of a frame. Flat and fully defined, for the same reason as
/// [`IpPacket`]; `fault` is one byte (a niche in [`Reason`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParsedFrame {
    pub class: FrameClass,
    /// Why the frame is malformed, or `None` when it parsed.
    pub fault: Option<Reason>,
    pub vlan_tags: u8,
    /// VLAN IDs, outer first; 0 where absent.
    pub vlan_ids: [u16; MAX_VLAN_TAGS],
    /// `ip.src` and `ip.dst` hold the outermost IP header's addresses (set as soon as the
    /// fixed IP header was readable, so a malformed packet is still charged to its
    /// devices); the other fields of `ip` are valid only when `fault` is `None`.
    pub has_ip: bool,
    pub ip: IpPacket,
}

impl ParsedFrame {
    pub const EMPTY: ParsedFrame = ParsedFrame {
        class: FrameClass::Malformed,
        fault: None,
        vlan_tags: 0,
        vlan_ids: [0; MAX_VLAN_TAGS],
        has_ip: false,
        ip: IpPacket::EMPTY,
    };
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
pub fn parse_frame<F: FrameBytes + ?Sized>(frame: &F, snaplen: Snaplen) -> ParsedFrame {
    let mut out = ParsedFrame::EMPTY;
    parse_frame_into(frame, snaplen, &mut out);
    out
}

/// [`parse_frame`] writing into `out` (the XDP program's per-CPU scratch slot: a parsed
/// frame does not fit its stack beside everything else).
#[inline(always)]
pub fn parse_frame_into<F: FrameBytes + ?Sized>(frame: &F, snaplen: Snaplen, out: &mut ParsedFrame) {
    *out = ParsedFrame::EMPTY;
    if let Err(reason) = parse_into(frame, snaplen, out) {
        out.fault = Some(reason);
    }
}

#[inline(always)]
fn is_vlan(ethertype: u16) -> bool {
    matches!(
        ethertype,
        ETHERTYPE_VLAN | ETHERTYPE_QINQ | ETHERTYPE_QINQ_OLD
    )
}

#[inline(always)]
fn parse_into<F: FrameBytes + ?Sized>(
    frame: &F,
    snaplen: Snaplen,
    out: &mut ParsedFrame,
) -> Result<(), Reason> {
    let eth = read_at::<F, ETH_HEADER_LEN>(frame, 0).ok_or(Reason::TruncatedEthernet)?;
    let mut ethertype = be16([eth[12], eth[13]]);
    let mut offset = ETH_HEADER_LEN;
    for slot in 0..MAX_VLAN_TAGS {
        if !is_vlan(ethertype) {
            break;
        }
        let tag = read_at::<F, 4>(frame, offset).ok_or(Reason::BadVlan)?;
        out.vlan_ids[slot] = be16([tag[0], tag[1]]) & 0x0fff;
        out.vlan_tags += 1;
        ethertype = be16([tag[2], tag[3]]);
        offset += 4;
    }
    if is_vlan(ethertype) {
        return Err(Reason::BadVlan);
    }
    out.class = match ethertype {
        ETHERTYPE_IPV4 => FrameClass::Ipv4,
        ETHERTYPE_IPV6 => FrameClass::Ipv6,
        ETHERTYPE_ARP => FrameClass::Arp,
        ETHERTYPE_LLDP => FrameClass::Lldp,
        t if t < 0x0600 => FrameClass::Llc,
        _ => FrameClass::OtherEthertype,
    };
    match ethertype {
        ETHERTYPE_IPV4 => parse_ipv4(frame, offset, snaplen, out),
        ETHERTYPE_IPV6 => parse_ipv6(frame, offset, snaplen, out),
        _ => Ok(()),
    }
}

#[inline(always)]
fn fragment_kind(offset: u16, more_fragments: bool) -> FragmentKind {
    match (offset, more_fragments) {
        (0, false) => FragmentKind::Whole,
        (0, true) => FragmentKind::First,
        _ => FragmentKind::Later,
    }
}

#[inline(always)]
fn parse_ipv4<F: FrameBytes + ?Sized>(
    frame: &F,
    l3: usize,
    snaplen: Snaplen,
    out: &mut ParsedFrame,
) -> Result<(), Reason> {
    let bad = Reason::MalformedIpv4;
    let h = read_at::<F, 20>(frame, l3).ok_or(bad)?;
    out.ip.src = ipv4_mapped([h[12], h[13], h[14], h[15]]);
    out.ip.dst = ipv4_mapped([h[16], h[17], h[18], h[19]]);
    out.has_ip = true;
    if h[0] >> 4 != 4 {
        return Err(bad);
    }
    let header_len = usize::from(h[0] & 0x0f) * 4;
    let total_len = usize::from(be16([h[2], h[3]]));
    if header_len < 20 || total_len < header_len {
        return Err(bad);
    }
    let end = packet_end(frame, l3 + total_len, snaplen).ok_or(bad)?;
    out.ip.protocol = h[9];
    let flags_offset = be16([h[6], h[7]]);
    out.ip.fragment = fragment_kind(flags_offset & 0x1fff, flags_offset & 0x2000 != 0);
    if out.ip.fragment != FragmentKind::Whole {
        out.ip.fragment_id = u32::from(be16([h[4], h[5]]));
    }
    if out.ip.fragment == FragmentKind::Later {
        return Ok(());
    }
    parse_transport(frame, l3 + header_len, end, &mut out.ip)
}

#[inline(always)]
fn parse_ipv6<F: FrameBytes + ?Sized>(
    frame: &F,
    l3: usize,
    snaplen: Snaplen,
    out: &mut ParsedFrame,
) -> Result<(), Reason> {
    let bad = Reason::MalformedIpv6;
    let h = read_at::<F, 40>(frame, l3).ok_or(bad)?;
    out.ip.src.copy_from_slice(&h[8..24]);
    out.ip.dst.copy_from_slice(&h[24..40]);
    out.ip.is_ipv6 = true;
    out.has_ip = true;
    if h[0] >> 4 != 6 {
        return Err(bad);
    }
    let payload_len = usize::from(be16([h[4], h[5]]));
    // Payload length 0 announces a jumbogram (RFC 2675); the frame bounds it then.
    let claimed_end = if payload_len == 0 {
        frame.frame_len()
    } else {
        l3 + 40 + payload_len
    };
    let end = packet_end(frame, claimed_end, snaplen).ok_or(bad)?;
    let mut next = h[6];
    let mut offset = l3 + 40;
    let mut upper = None;
    for _ in 0..MAX_IPV6_EXTENSIONS {
        match next {
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS | IPPROTO_AH => {
                let ext = read_at::<F, 2>(frame, offset).ok_or(bad)?;
                let len = if next == IPPROTO_AH {
                    (usize::from(ext[1]) + 2) * 4
                } else {
                    (usize::from(ext[1]) + 1) * 8
                };
                next = ext[0];
                offset += len;
                if offset > end {
                    return Err(bad);
                }
            }
            IPPROTO_FRAGMENT => {
                let ext = read_at::<F, 8>(frame, offset).ok_or(bad)?;
                next = ext[0];
                offset += 8;
                if offset > end {
                    return Err(bad);
                }
                let offset_flags = be16([ext[2], ext[3]]);
                out.ip.fragment = fragment_kind(offset_flags >> 3, offset_flags & 1 != 0);
                if out.ip.fragment != FragmentKind::Whole {
                    out.ip.fragment_id = u32::from_be_bytes([ext[4], ext[5], ext[6], ext[7]]);
                }
                if out.ip.fragment == FragmentKind::Later {
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
    let protocol = upper.ok_or(Reason::Ipv6ChainTooLong)?;
    out.ip.protocol = protocol;
    if out.ip.fragment == FragmentKind::Later || protocol == IPPROTO_NONE {
        return Ok(());
    }
    parse_transport(frame, offset, end, &mut out.ip)
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
    ip: &mut IpPacket,
) -> Result<(), Reason> {
    let needed = match ip.protocol {
        IPPROTO_TCP => 20,
        IPPROTO_UDP => 8,
        IPPROTO_SCTP => 12,
        IPPROTO_ICMP | IPPROTO_ICMPV6 => 4,
        _ => return Ok(()),
    };
    if l4 + needed > end {
        return Err(Reason::TruncatedTransport);
    }
    let t = read_at::<F, 4>(frame, l4).ok_or(Reason::TruncatedTransport)?;
    match ip.protocol {
        IPPROTO_ICMP | IPPROTO_ICMPV6 => {
            ip.transport = TransportKind::Icmp;
            ip.icmp_type = t[0];
            ip.icmp_code = t[1];
        }
        protocol => {
            ip.transport = TransportKind::Ports;
            ip.src_port = be16([t[0], t[1]]);
            ip.dst_port = be16([t[2], t[3]]);
            if protocol == IPPROTO_TCP {
                let flags = read_at::<F, 1>(frame, l4 + 13).ok_or(Reason::TruncatedTransport)?;
                ip.tcp_flags = flags[0];
            }
        }
    }
    Ok(())
}
