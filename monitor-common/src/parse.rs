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
    [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, v4[0], v4[1], v4[2], v4[3],
    ]
}

/// Writes `v4` IPv4-mapped into `addr`, which holds zeros (the parser's slot starts
/// empty): only the six bytes that are not zero. Written whole, the address compiles for
/// BPF to a call to a byte-by-byte `memset` for its ten zeros, a call and return per
/// address on the path of every IPv4 frame.
#[inline(always)]
fn map_ipv4_into(addr: &mut Addr, v4: [u8; 4]) {
    addr[10] = 0xff;
    addr[11] = 0xff;
    addr[12] = v4[0];
    addr[13] = v4[1];
    addr[14] = v4[2];
    addr[15] = v4[3];
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
/// rejects. Laid out in C order with the addresses first and 8-byte aligned, so that the
/// XDP program copies them into keys 8 bytes at a time.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpPacket {
    pub src: Addr,
    pub dst: Addr,
    /// IPv4 identification or IPv6 fragment identification; 0 when whole.
    pub fragment_id: u32,
    pub src_port: u16,
    pub dst_port: u16,
    /// Upper-layer protocol (after IPv6 extension headers). A later fragment has no
    /// upper-layer header: for IPv6 this is then its fragment header's next header.
    pub protocol: u8,
    /// What all fragments of a packet carry alike, for their `FRAGMENTS` key: IPv4's
    /// protocol field; for IPv6 the fragment header's next header, which names the first
    /// header of the fragmentable part in every fragment (RFC 8200, 4.5), whereas the
    /// first fragment's `protocol` is what follows any extension headers there
    /// (destination options, say). 0 when not fragmented.
    pub fragment_protocol: u8,
    pub is_ipv6: bool,
    pub fragment: FragmentKind,
    pub transport: TransportKind,
    pub tcp_flags: u8,
    pub icmp_type: u8,
    pub icmp_code: u8,
}

// The addresses lie at 8-byte boundaries of the 8-byte aligned packet (`src_halves`).
const _: () = assert!(
    core::mem::offset_of!(IpPacket, src) % 8 == 0 && core::mem::offset_of!(IpPacket, dst) % 8 == 0
);

impl IpPacket {
    /// The source address as two u64 words (`flowtable::addr_halves` of it), read with
    /// two loads: BPF has no unaligned loads, so the halves of an address whose alignment
    /// LLVM cannot see (anything reached through a map value) are built byte by byte.
    #[inline(always)]
    pub fn src_halves(&self) -> (u64, u64) {
        // SAFETY: at an 8-byte boundary (asserted above) of a struct aligned to 8.
        unsafe { crate::flowtable::aligned_addr_halves(&self.src) }
    }

    /// The destination address as two u64 words, as [`IpPacket::src_halves`].
    #[inline(always)]
    pub fn dst_halves(&self) -> (u64, u64) {
        // SAFETY: at an 8-byte boundary (asserted above) of a struct aligned to 8.
        unsafe { crate::flowtable::aligned_addr_halves(&self.dst) }
    }

    /// All zero: the starting point the parser fills in.
    pub const EMPTY: IpPacket = IpPacket {
        src: [0; 16],
        dst: [0; 16],
        fragment_id: 0,
        src_port: 0,
        dst_port: 0,
        protocol: 0,
        fragment_protocol: 0,
        is_ipv6: false,
        fragment: FragmentKind::Whole,
        transport: TransportKind::Opaque,
        tcp_flags: 0,
        icmp_type: 0,
        icmp_code: 0,
    };
}

/// What the parser made of a frame. Flat and fully defined, for the same reason as
/// [`IpPacket`]; `fault` is one byte (a niche in [`Reason`]). The packet comes first, at
/// the 8-byte aligned start of the XDP program's scratch slot.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParsedFrame {
    /// `ip.src` and `ip.dst` hold the outermost IP header's addresses (set as soon as the
    /// fixed IP header was readable, so a malformed packet is still charged to its
    /// devices); the other fields of `ip` are valid only when `fault` is `None`.
    pub ip: IpPacket,
    pub class: FrameClass,
    /// Why the frame is malformed, or `None` when it parsed.
    pub fault: Option<Reason>,
    pub vlan_tags: u8,
    pub has_ip: bool,
    /// VLAN IDs, outer first; 0 where absent.
    pub vlan_ids: [u16; MAX_VLAN_TAGS],
    /// The Ethernet source address (all zero when the frame is shorter than a header).
    pub src_mac: [u8; 6],
}

impl ParsedFrame {
    pub const EMPTY: ParsedFrame = ParsedFrame {
        ip: IpPacket::EMPTY,
        class: FrameClass::Malformed,
        fault: None,
        vlan_tags: 0,
        has_ip: false,
        vlan_ids: [0; MAX_VLAN_TAGS],
        src_mac: [0; 6],
    };
}

#[inline(always)]
fn be16(b: [u8; 2]) -> u16 {
    u16::from_be_bytes(b)
}

#[inline(always)]
fn read_at<F: FrameBytes + ?Sized, const N: usize>(frame: &F, offset: usize) -> Option<&[u8; N]> {
    // Headers start at or before MAX_HEADER_OFFSET (the callers check); their fields lie
    // within the largest header read, 64 bytes on. The bound also gives the verifier a
    // finite range for every packet offset.
    if offset > MAX_HEADER_OFFSET + 64 {
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
pub fn parse_frame_into<F: FrameBytes + ?Sized>(
    frame: &F,
    snaplen: Snaplen,
    out: &mut ParsedFrame,
) {
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
    out.src_mac = [eth[6], eth[7], eth[8], eth[9], eth[10], eth[11]];
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
    // A header of another version has no addresses where these would be.
    if h[0] >> 4 != 4 {
        return Err(bad);
    }
    map_ipv4_into(&mut out.ip.src, [h[12], h[13], h[14], h[15]]);
    map_ipv4_into(&mut out.ip.dst, [h[16], h[17], h[18], h[19]]);
    out.has_ip = true;
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
        out.ip.fragment_protocol = h[9];
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
    if h[0] >> 4 != 6 {
        return Err(bad);
    }
    out.ip.src.copy_from_slice(&h[8..24]);
    out.ip.dst.copy_from_slice(&h[24..40]);
    out.ip.is_ipv6 = true;
    out.has_ip = true;
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
    // One more round than extension headers: the last one may only find the upper
    // protocol.
    for walked in 0..=MAX_IPV6_EXTENSIONS {
        let extension = matches!(
            next,
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS | IPPROTO_AH | IPPROTO_FRAGMENT
        );
        if extension && (walked == MAX_IPV6_EXTENSIONS || offset > MAX_HEADER_OFFSET) {
            return Err(Reason::Ipv6ChainTooLong);
        }
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
                    out.ip.fragment_protocol = next;
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
    let has_transport = matches!(
        protocol,
        IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP | IPPROTO_ICMP | IPPROTO_ICMPV6
    );
    if has_transport && offset > MAX_HEADER_OFFSET {
        return Err(Reason::Ipv6ChainTooLong);
    }
    parse_transport(frame, offset, end, &mut out.ip)
}

/// Where the IP packet's bytes end in this frame, or `None` when its length field claims
/// more than a live frame holds.
#[inline(always)]
fn packet_end<F: FrameBytes + ?Sized>(
    frame: &F,
    claimed_end: usize,
    snaplen: Snaplen,
) -> Option<usize> {
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

/// ICMPv6 neighbour advertisement (RFC 4861, 4.4).
pub const ICMPV6_NEIGHBOR_ADVERTISEMENT: u8 = 136;
/// The NDP option carrying the link-layer address of an advertisement's target.
pub const NDP_OPTION_TARGET_LINK_LAYER: u8 = 2;

/// The address a neighbour announces for itself, for the discovery table: writes it into
/// `out` and returns true when the frame (parsed into `parsed`) is
/// - an ARP request or reply for IPv4 over Ethernet whose sender hardware address is the
///   frame's source MAC and whose sender address is not 0.0.0.0 (an ARP probe, RFC 5227,
///   claims nothing yet): the sender address;
/// - an ICMPv6 neighbour advertisement straight after the IPv6 header (no extension
///   headers, as hosts send them), with hop limit 255 (RFC 4861: from the link itself),
///   for a unicast target: the target address. When the first option is a target
///   link-layer address it must be the frame's source MAC (a proxy or forged advertisement
///   names another). Only the first option is looked at: NAs carry that one option, and a
///   walk over options would be a loop the verifier checks once per round for what no host
///   sends.
///
/// Whether the address may be recorded for that MAC (it is no enrolled device's, or the
/// MAC is not bound to it) is the caller's business.
#[inline(always)]
pub fn neighbor_claim_into<F: FrameBytes + ?Sized>(
    frame: &F,
    parsed: &ParsedFrame,
    out: &mut Addr,
) -> bool {
    if parsed.fault.is_some() {
        return false;
    }
    let l3 = ETH_HEADER_LEN + 4 * usize::from(parsed.vlan_tags & 3);
    match parsed.class {
        FrameClass::Arp => arp_claim(frame, l3, &parsed.src_mac, out),
        FrameClass::Ipv6
            if parsed.ip.protocol == IPPROTO_ICMPV6
                && parsed.ip.transport == TransportKind::Icmp
                && parsed.ip.icmp_type == ICMPV6_NEIGHBOR_ADVERTISEMENT =>
        {
            advertisement_claim(frame, l3, &parsed.src_mac, out)
        }
        _ => false,
    }
}

#[inline(always)]
fn arp_claim<F: FrameBytes + ?Sized>(frame: &F, l3: usize, mac: &[u8; 6], out: &mut Addr) -> bool {
    let Some(a) = read_at::<F, 28>(frame, l3) else {
        return false;
    };
    // Ethernet (1), IPv4, 6- and 4-byte addresses, request (1) or reply (2).
    let ethernet_ipv4 =
        a[0] == 0 && a[1] == 1 && a[2] == 0x08 && a[3] == 0 && a[4] == 6 && a[5] == 4;
    let op = be16([a[6], a[7]]);
    let sender_mac = [a[8], a[9], a[10], a[11], a[12], a[13]];
    let sender = [a[14], a[15], a[16], a[17]];
    if !ethernet_ipv4 || !(op == 1 || op == 2) || sender_mac != *mac || sender == [0; 4] {
        return false;
    }
    *out = ipv4_mapped(sender);
    true
}

#[inline(always)]
fn advertisement_claim<F: FrameBytes + ?Sized>(
    frame: &F,
    l3: usize,
    mac: &[u8; 6],
    out: &mut Addr,
) -> bool {
    let Some(h) = read_at::<F, 40>(frame, l3) else {
        return false;
    };
    if h[6] != IPPROTO_ICMPV6 || h[7] != 255 {
        return false;
    }
    let payload_end = l3 + 40 + usize::from(be16([h[4], h[5]]));
    // Type, code, checksum, flags, then the target.
    let Some(na) = read_at::<F, 24>(frame, l3 + 40) else {
        return false;
    };
    if na[1] != 0 || payload_end < l3 + 40 + 24 {
        return false;
    }
    let mut target = [0u8; 16];
    target.copy_from_slice(&na[8..24]);
    if target[0] == 0xff || target == [0; 16] {
        return false;
    }
    let option_at = l3 + 40 + 24;
    if option_at + 8 <= payload_end
        && let Some(option) = read_at::<F, 8>(frame, option_at)
        && option[0] == NDP_OPTION_TARGET_LINK_LAYER
        && option[1] == 1
        && [
            option[2], option[3], option[4], option[5], option[6], option[7],
        ] != *mac
    {
        return false;
    }
    *out = target;
    true
}

#[cfg(test)]
mod tests {
    //! Host tests of the parser: valid frames parse to the right fields, and every
    //! truncation point of several frames gives the right fault (never a panic).

    extern crate std;

    use super::*;
    use std::{format, string::String, vec, vec::Vec};

    const A: [u8; 4] = [10, 3, 0, 20];
    const B: [u8; 4] = [10, 9, 0, 80];
    const A6: Addr = [0xfd, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0x20];
    const B6: Addr = [0xfd, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0x80];

    // --- A few bytes-level builders (monitor-tests has the full one; this crate is
    // below it in the dependency graph). ---

    fn eth(tags: &[(u16, u16)], ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
        for (tpid, tci) in tags {
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&tci.to_be_bytes());
        }
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn tcp(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
        let mut t = vec![0u8; 20];
        t[0..2].copy_from_slice(&sport.to_be_bytes());
        t[2..4].copy_from_slice(&dport.to_be_bytes());
        t[12] = 5 << 4;
        t[13] = flags;
        t
    }

    fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut t = vec![0u8; 8];
        t[0..2].copy_from_slice(&sport.to_be_bytes());
        t[2..4].copy_from_slice(&dport.to_be_bytes());
        let len = u16::try_from(8 + payload.len()).expect("short");
        t[4..6].copy_from_slice(&len.to_be_bytes());
        t.extend_from_slice(payload);
        t
    }

    /// IPv4 header (with `options`, a multiple of 4) and `payload`; `frag` is the flags
    /// and offset field.
    fn ipv4(protocol: u8, options: &[u8], frag: u16, id: u16, payload: &[u8]) -> Vec<u8> {
        let hl = 20 + options.len();
        let mut h = vec![0u8; 20];
        h[0] = 0x40 | u8::try_from(hl / 4).expect("short");
        let total = u16::try_from(hl + payload.len()).expect("short");
        h[2..4].copy_from_slice(&total.to_be_bytes());
        h[4..6].copy_from_slice(&id.to_be_bytes());
        h[6..8].copy_from_slice(&frag.to_be_bytes());
        h[8] = 64;
        h[9] = protocol;
        h[12..16].copy_from_slice(&A);
        h[16..20].copy_from_slice(&B);
        h.extend_from_slice(options);
        h.extend_from_slice(payload);
        h
    }

    fn v4_frame(protocol: u8, payload: &[u8]) -> Vec<u8> {
        eth(&[], ETHERTYPE_IPV4, &ipv4(protocol, &[], 0, 1, payload))
    }

    /// An extension header: (kind, length field).
    type ExtSpec = (u8, u8);

    /// IPv6 header, extension headers and `payload` as `protocol`. Fragment headers get
    /// `frag` as their offset/flags field and id 0x01020304.
    fn ipv6(exts: &[ExtSpec], frag: u16, protocol: u8, payload: &[u8]) -> Vec<u8> {
        let mut body = Vec::new();
        for (i, &(kind, len)) in exts.iter().enumerate() {
            let next = exts.get(i + 1).map_or(protocol, |e| e.0);
            let size = match kind {
                IPPROTO_FRAGMENT => 8,
                IPPROTO_AH => (usize::from(len) + 2) * 4,
                _ => (usize::from(len) + 1) * 8,
            };
            let mut e = vec![0u8; size];
            e[0] = next;
            if kind == IPPROTO_FRAGMENT {
                e[2..4].copy_from_slice(&frag.to_be_bytes());
                e[4..8].copy_from_slice(&0x0102_0304u32.to_be_bytes());
            } else {
                e[1] = len;
            }
            body.extend_from_slice(&e);
        }
        body.extend_from_slice(payload);
        let mut h = vec![0u8; 40];
        h[0] = 0x60;
        let plen = u16::try_from(body.len()).expect("short");
        h[4..6].copy_from_slice(&plen.to_be_bytes());
        h[6] = exts.first().map_or(protocol, |e| e.0);
        h[7] = 64;
        h[8..24].copy_from_slice(&A6);
        h[24..40].copy_from_slice(&B6);
        h.extend_from_slice(&body);
        h
    }

    fn v6_frame(exts: &[ExtSpec], protocol: u8, payload: &[u8]) -> Vec<u8> {
        eth(&[], ETHERTYPE_IPV6, &ipv6(exts, 0, protocol, payload))
    }

    fn strict(frame: &[u8]) -> ParsedFrame {
        parse_frame(frame, Snaplen::Strict)
    }

    fn cut(frame: &[u8]) -> ParsedFrame {
        parse_frame(frame, Snaplen::CaptureMayBeCut)
    }

    /// Checks the parse of every prefix of `frame` against `expect(len)`: (fault, class,
    /// has_ip). Collects all mismatches into one message.
    fn every_prefix(
        name: &str,
        frame: &[u8],
        snaplen: Snaplen,
        expect: impl Fn(usize) -> (Option<Reason>, FrameClass, bool),
    ) {
        let mut errors: Vec<String> = Vec::new();
        for len in 0..=frame.len() {
            let got = parse_frame(&frame[..len], snaplen);
            let want = expect(len);
            if (got.fault, got.class, got.has_ip) != want {
                errors.push(format!(
                    "cut at {len}: got {:?}/{:?}/has_ip {}, expected {:?}/{:?}/has_ip {}",
                    got.fault, got.class, got.has_ip, want.0, want.1, want.2
                ));
            }
            if got.has_ip && got.ip.src == [0; 16] {
                errors.push(format!("cut at {len}: has_ip without the source address"));
            }
        }
        assert!(
            errors.is_empty(),
            "{name} ({snaplen:?}):\n{}",
            errors.join("\n")
        );
    }

    // --- Valid frames ---

    #[test]
    fn ipv4_tcp_parses_to_its_fields() {
        let p = strict(&v4_frame(IPPROTO_TCP, &tcp(40000, 443, TCP_SYN)));
        assert_eq!(p.fault, None);
        assert_eq!(p.class, FrameClass::Ipv4);
        assert_eq!(p.vlan_tags, 0);
        assert!(p.has_ip);
        assert_eq!(p.ip.src, ipv4_mapped(A));
        assert_eq!(p.ip.dst, ipv4_mapped(B));
        assert!(!p.ip.is_ipv6);
        assert_eq!(p.ip.protocol, IPPROTO_TCP);
        assert_eq!(p.ip.transport, TransportKind::Ports);
        assert_eq!((p.ip.src_port, p.ip.dst_port), (40000, 443));
        assert_eq!(p.ip.tcp_flags, TCP_SYN);
        assert_eq!(p.ip.fragment, FragmentKind::Whole);
        assert_eq!(p.ip.fragment_id, 0, "whole packets carry no fragment id");
    }

    #[test]
    fn ipv4_mapped_addresses() {
        assert_eq!(
            ipv4_mapped([192, 0, 2, 1]),
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1]
        );
    }

    #[test]
    fn udp_sctp_icmp_and_icmpv6_fields() {
        let p = strict(&v4_frame(IPPROTO_UDP, &udp(53124, 53, b"q")));
        assert_eq!((p.fault, p.ip.transport), (None, TransportKind::Ports));
        assert_eq!(
            (p.ip.src_port, p.ip.dst_port, p.ip.tcp_flags),
            (53124, 53, 0)
        );

        let mut sctp = vec![0x9c, 0x41, 0x0b, 0x59];
        sctp.extend_from_slice(&[0; 8]);
        let p = strict(&v4_frame(IPPROTO_SCTP, &sctp));
        assert_eq!((p.fault, p.ip.src_port, p.ip.dst_port), (None, 40001, 2905));

        let p = strict(&v4_frame(IPPROTO_ICMP, &[8, 0, 0, 0, 0, 1, 0, 1]));
        assert_eq!((p.fault, p.ip.transport), (None, TransportKind::Icmp));
        assert_eq!((p.ip.icmp_type, p.ip.icmp_code), (8, 0));
        assert_eq!((p.ip.src_port, p.ip.dst_port), (0, 0));

        let p = strict(&v6_frame(&[], IPPROTO_ICMPV6, &[129, 0, 0, 0, 0, 1, 0, 1]));
        assert_eq!(
            (p.fault, p.class, p.ip.transport),
            (None, FrameClass::Ipv6, TransportKind::Icmp)
        );
        assert_eq!((p.ip.icmp_type, p.ip.is_ipv6), (129, true));
        assert_eq!((p.ip.src, p.ip.dst), (A6, B6));
    }

    #[test]
    fn other_ip_protocols_are_opaque() {
        let p = strict(&v4_frame(47, &[0, 0, 0x08, 0]));
        assert_eq!(
            (p.fault, p.ip.protocol, p.ip.transport),
            (None, 47, TransportKind::Opaque)
        );
        let p = strict(&v6_frame(&[], IPPROTO_NONE, &[]));
        assert_eq!(
            (p.fault, p.ip.protocol, p.ip.transport),
            (None, IPPROTO_NONE, TransportKind::Opaque)
        );
        let p = strict(&v6_frame(&[(IPPROTO_HOPOPTS, 0)], IPPROTO_NONE, &[0xaa; 3]));
        assert_eq!((p.fault, p.ip.protocol), (None, IPPROTO_NONE));
    }

    #[test]
    fn vlan_tags_are_read_outer_first_without_priority_bits() {
        let payload = ipv4(IPPROTO_UDP, &[], 0, 1, &udp(1, 2, &[]));
        for outer in [ETHERTYPE_QINQ, ETHERTYPE_QINQ_OLD, ETHERTYPE_VLAN] {
            let p = strict(&eth(
                &[(outer, 0xa064), (ETHERTYPE_VLAN, 0xe00a)],
                ETHERTYPE_IPV4,
                &payload,
            ));
            assert_eq!(p.fault, None, "outer {outer:#x}");
            assert_eq!(
                (p.vlan_tags, p.vlan_ids),
                (2, [100, 10]),
                "outer {outer:#x}"
            );
            assert_eq!(p.class, FrameClass::Ipv4);
        }
        let p = strict(&eth(&[(ETHERTYPE_VLAN, 7)], ETHERTYPE_IPV4, &payload));
        assert_eq!((p.fault, p.vlan_tags, p.vlan_ids), (None, 1, [7, 0]));
    }

    #[test]
    fn a_third_vlan_tag_is_bad_vlan() {
        let payload = ipv4(IPPROTO_UDP, &[], 0, 1, &udp(1, 2, &[]));
        let tags = [
            (ETHERTYPE_QINQ, 100),
            (ETHERTYPE_VLAN, 10),
            (ETHERTYPE_VLAN, 11),
        ];
        let p = strict(&eth(&tags, ETHERTYPE_IPV4, &payload));
        assert_eq!(
            (p.fault, p.class, p.has_ip),
            (Some(Reason::BadVlan), FrameClass::Malformed, false)
        );
    }

    #[test]
    fn non_ip_frames_are_classified() {
        let cases = [
            (ETHERTYPE_ARP, FrameClass::Arp),
            (ETHERTYPE_LLDP, FrameClass::Lldp),
            (38, FrameClass::Llc),
            (0x05ff, FrameClass::Llc),
            (0x0600, FrameClass::OtherEthertype),
            (0x888e, FrameClass::OtherEthertype),
            (0x8847, FrameClass::OtherEthertype),
        ];
        for (ethertype, class) in cases {
            let p = strict(&eth(&[], ethertype, &[0; 46]));
            assert_eq!(
                (p.fault, p.class, p.has_ip),
                (None, class, false),
                "ethertype {ethertype:#x}"
            );
            let p = strict(&eth(&[(ETHERTYPE_VLAN, 5)], ethertype, &[0; 42]));
            assert_eq!(
                (p.fault, p.class, p.vlan_tags),
                (None, class, 1),
                "tagged {ethertype:#x}"
            );
        }
    }

    #[test]
    fn ipv6_extension_chain_is_walked() {
        let exts = [
            (IPPROTO_HOPOPTS, 0),
            (IPPROTO_ROUTING, 2),
            (IPPROTO_DSTOPTS, 1),
            (IPPROTO_AH, 4),
            (IPPROTO_FRAGMENT, 0),
        ];
        let p = strict(&v6_frame(
            &exts,
            IPPROTO_TCP,
            &tcp(40000, 443, TCP_SYN | TCP_ACK),
        ));
        assert_eq!(p.fault, None);
        assert_eq!(
            (p.ip.protocol, p.ip.src_port, p.ip.dst_port),
            (IPPROTO_TCP, 40000, 443)
        );
        assert_eq!(p.ip.tcp_flags, TCP_SYN | TCP_ACK);
        assert_eq!(
            p.ip.fragment,
            FragmentKind::Whole,
            "an atomic fragment is whole"
        );
    }

    #[test]
    fn ah_length_counts_32_bit_words() {
        // AH with payload length 4 is 24 bytes; read in 8-byte units it would be 40 and
        // the ports would come from the wrong place.
        let p = strict(&v6_frame(
            &[(IPPROTO_AH, 4)],
            IPPROTO_UDP,
            &udp(5000, 514, &[0xee; 24]),
        ));
        assert_eq!((p.fault, p.ip.src_port, p.ip.dst_port), (None, 5000, 514));
    }

    #[test]
    fn ipv6_chain_of_max_extensions_parses() {
        let exts: Vec<ExtSpec> = (0..MAX_IPV6_EXTENSIONS)
            .map(|i| {
                if i % 2 == 0 {
                    (IPPROTO_DSTOPTS, 0)
                } else {
                    (IPPROTO_ROUTING, 0)
                }
            })
            .collect();
        let p = strict(&v6_frame(&exts, IPPROTO_UDP, &udp(40000, 514, b"x")));
        assert_eq!(
            p.fault, None,
            "{MAX_IPV6_EXTENSIONS} extension headers are not too many"
        );
        assert_eq!((p.ip.protocol, p.ip.dst_port), (IPPROTO_UDP, 514));
    }

    #[test]
    fn ipv6_chain_longer_than_max_is_too_long() {
        for n in [MAX_IPV6_EXTENSIONS + 1, MAX_IPV6_EXTENSIONS + 3] {
            let exts: Vec<ExtSpec> = (0..n).map(|_| (IPPROTO_DSTOPTS, 0)).collect();
            let p = strict(&v6_frame(&exts, IPPROTO_UDP, &udp(40000, 514, b"x")));
            assert_eq!(
                p.fault,
                Some(Reason::Ipv6ChainTooLong),
                "{n} extension headers"
            );
            assert!(p.has_ip, "the addresses are known");
            assert_eq!(p.ip.src, A6);
        }
    }

    #[test]
    fn headers_past_max_header_offset_are_chain_too_long() {
        // One destination-options header long enough that the UDP header starts past
        // MAX_HEADER_OFFSET: the frame is fine, the parser just does not look that far.
        let len8 = u8::try_from(MAX_HEADER_OFFSET / 8).expect("fits");
        let frame = v6_frame(
            &[(IPPROTO_DSTOPTS, len8)],
            IPPROTO_UDP,
            &udp(40000, 514, b"x"),
        );
        assert!(frame.len() - 9 > MAX_HEADER_OFFSET);
        assert_eq!(strict(&frame).fault, Some(Reason::Ipv6ChainTooLong));
        // Two headers, the second starting past the limit.
        let frame = v6_frame(
            &[(IPPROTO_DSTOPTS, len8), (IPPROTO_ROUTING, 0)],
            IPPROTO_UDP,
            &udp(1, 2, b"x"),
        );
        assert_eq!(strict(&frame).fault, Some(Reason::Ipv6ChainTooLong));
    }

    #[test]
    fn ipv4_fragments() {
        let seg = udp(40000, 514, &[0x5a; 40]);
        let first = strict(&eth(
            &[],
            ETHERTYPE_IPV4,
            &ipv4(IPPROTO_UDP, &[], 0x2000, 0x4242, &seg[..16]),
        ));
        assert_eq!(first.fault, None);
        assert_eq!(
            (first.ip.fragment, first.ip.fragment_id),
            (FragmentKind::First, 0x4242)
        );
        assert_eq!(
            (first.ip.transport, first.ip.dst_port),
            (TransportKind::Ports, 514)
        );

        let later = strict(&eth(
            &[],
            ETHERTYPE_IPV4,
            &ipv4(IPPROTO_UDP, &[], 2, 0x4242, &seg[16..]),
        ));
        assert_eq!(later.fault, None);
        assert_eq!(
            (later.ip.fragment, later.ip.fragment_id),
            (FragmentKind::Later, 0x4242)
        );
        assert_eq!(later.ip.protocol, IPPROTO_UDP);
        assert_eq!(
            (first.ip.fragment_protocol, later.ip.fragment_protocol),
            (IPPROTO_UDP, IPPROTO_UDP)
        );
        assert_eq!(
            later.ip.transport,
            TransportKind::Opaque,
            "no transport header in a later fragment"
        );
        assert_eq!((later.ip.src_port, later.ip.dst_port), (0, 0));

        // The last fragment (offset set, MF clear) is a later one too; DF alone is whole.
        let last = strict(&eth(
            &[],
            ETHERTYPE_IPV4,
            &ipv4(IPPROTO_UDP, &[], 0x2000 | 5, 9, &[0; 8]),
        ));
        assert_eq!(last.ip.fragment, FragmentKind::Later);
        let df = strict(&eth(
            &[],
            ETHERTYPE_IPV4,
            &ipv4(IPPROTO_UDP, &[], 0x4000, 9, &seg),
        ));
        assert_eq!(
            (df.fault, df.ip.fragment, df.ip.fragment_id),
            (None, FragmentKind::Whole, 0)
        );
        // A later fragment shorter than any transport header is not truncated.
        let tiny = strict(&eth(
            &[],
            ETHERTYPE_IPV4,
            &ipv4(IPPROTO_TCP, &[], 3, 9, &[1]),
        ));
        assert_eq!((tiny.fault, tiny.ip.fragment), (None, FragmentKind::Later));
    }

    #[test]
    fn ipv6_fragments() {
        let seg = udp(40000, 514, &[0x33; 40]);
        let first = strict(&eth(
            &[],
            ETHERTYPE_IPV6,
            &ipv6(
                &[(IPPROTO_HOPOPTS, 0), (IPPROTO_FRAGMENT, 0)],
                1,
                IPPROTO_UDP,
                &seg[..16],
            ),
        ));
        assert_eq!(first.fault, None);
        assert_eq!(
            (first.ip.fragment, first.ip.fragment_id),
            (FragmentKind::First, 0x0102_0304)
        );
        assert_eq!((first.ip.protocol, first.ip.dst_port), (IPPROTO_UDP, 514));

        let later = strict(&eth(
            &[],
            ETHERTYPE_IPV6,
            &ipv6(&[(IPPROTO_FRAGMENT, 0)], 2 << 3, IPPROTO_UDP, &seg[16..]),
        ));
        assert_eq!(later.fault, None);
        assert_eq!(
            (later.ip.fragment, later.ip.fragment_id),
            (FragmentKind::Later, 0x0102_0304)
        );
        assert_eq!(
            (later.ip.protocol, later.ip.transport),
            (IPPROTO_UDP, TransportKind::Opaque)
        );

        assert_eq!(
            (first.ip.fragment_protocol, later.ip.fragment_protocol),
            (IPPROTO_UDP, IPPROTO_UDP)
        );

        // Headers after a later fragment's fragment header are not walked: they are data.
        let later = strict(&eth(
            &[],
            ETHERTYPE_IPV6,
            &ipv6(
                &[(IPPROTO_FRAGMENT, 0)],
                3 << 3,
                IPPROTO_DSTOPTS,
                &[0xff; 3],
            ),
        ));
        assert_eq!((later.fault, later.ip.protocol), (None, IPPROTO_DSTOPTS));
        // Destination options after the fragment header: the first fragment walks them to
        // the upper protocol, yet both fragments share the fragment header's next header.
        let first = strict(&eth(
            &[],
            ETHERTYPE_IPV6,
            &ipv6(
                &[(IPPROTO_FRAGMENT, 0), (IPPROTO_DSTOPTS, 0)],
                1,
                IPPROTO_UDP,
                &seg[..16],
            ),
        ));
        assert_eq!(
            (first.fault, first.ip.protocol, first.ip.fragment_protocol),
            (None, IPPROTO_UDP, IPPROTO_DSTOPTS)
        );
        assert_eq!(later.ip.fragment_protocol, first.ip.fragment_protocol);
    }

    #[test]
    fn ethernet_padding_is_not_a_header() {
        let mut frame = v4_frame(IPPROTO_UDP, &udp(53124, 53, &[]));
        assert_eq!(frame.len(), 42);
        frame.resize(60, 0);
        let p = strict(&frame);
        assert_eq!((p.fault, p.ip.dst_port), (None, 53));

        // A TCP header cut by the IP length stays cut even if padding follows.
        let mut frame = v4_frame(IPPROTO_TCP, &tcp(40000, 443, TCP_SYN)[..10]);
        frame.resize(60, 0);
        assert_eq!(strict(&frame).fault, Some(Reason::TruncatedTransport));
        let mut frame = v6_frame(&[], IPPROTO_UDP, &[0x9c, 0x40, 0, 53]);
        frame.resize(80, 0);
        assert_eq!(strict(&frame).fault, Some(Reason::TruncatedTransport));
        // An extension header the payload length does not hold, padding or not.
        let mut frame = v6_frame(&[], IPPROTO_HOPOPTS, &[IPPROTO_UDP, 1, 0, 0]);
        frame.resize(120, 0);
        assert_eq!(strict(&frame).fault, Some(Reason::MalformedIpv6));
    }

    #[test]
    fn broken_ipv4_headers_are_malformed() {
        let good = v4_frame(IPPROTO_UDP, &udp(1, 2, b"payload"));
        let l3 = ETH_HEADER_LEN;
        let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
        for ihl in [0u8, 1, 4] {
            let mut f = good.clone();
            f[l3] = 0x40 | ihl;
            cases.push(("ihl below 5", f));
        }
        let mut f = good.clone();
        f[l3] = 0x4f; // 60-byte header in a 35-byte packet
        cases.push(("ihl beyond total length", f));
        let mut f = good.clone();
        f[l3 + 2..l3 + 4].copy_from_slice(&19u16.to_be_bytes());
        cases.push(("total length below 20", f));
        let mut f = good.clone();
        f[l3 + 2..l3 + 4]
            .copy_from_slice(&(u16::try_from(good.len() - l3 + 1).expect("short")).to_be_bytes());
        cases.push(("total length one past the frame", f));
        for version in [0u8, 5, 6, 15] {
            let mut f = good.clone();
            f[l3] = (version << 4) | 5;
            let p = strict(&f);
            assert_eq!(p.fault, Some(Reason::MalformedIpv4), "version {version}");
            assert!(
                !p.has_ip,
                "version {version}: a header of another version has no addresses there"
            );
        }
        for (what, frame) in cases {
            let p = strict(&frame);
            assert_eq!(p.fault, Some(Reason::MalformedIpv4), "{what}");
            assert_eq!(
                (p.class, p.has_ip),
                (FrameClass::Ipv4, true),
                "{what}: addresses were readable"
            );
            assert_eq!(
                (p.ip.src, p.ip.dst),
                (ipv4_mapped(A), ipv4_mapped(B)),
                "{what}"
            );
        }
    }

    #[test]
    fn broken_ipv6_headers_are_malformed() {
        let good = v6_frame(&[], IPPROTO_UDP, &udp(1, 2, b"payload"));
        let l3 = ETH_HEADER_LEN;
        let mut f = good.clone();
        f[l3] = 0x40;
        let p = strict(&f);
        assert_eq!((p.fault, p.has_ip), (Some(Reason::MalformedIpv6), false));
        let mut f = good.clone();
        f[l3 + 4..l3 + 6].copy_from_slice(&16u16.to_be_bytes());
        assert_eq!(
            strict(&f).fault,
            Some(Reason::MalformedIpv6),
            "payload length past the frame"
        );
        assert_eq!(cut(&f).fault, None, "... which a cut capture allows");
    }

    #[test]
    fn ipv6_payload_length_zero_is_bounded_by_the_frame() {
        let mut f = v6_frame(&[], IPPROTO_UDP, &udp(5000, 53, b"q"));
        f[ETH_HEADER_LEN + 4..ETH_HEADER_LEN + 6].copy_from_slice(&[0, 0]);
        let p = strict(&f);
        assert_eq!((p.fault, p.ip.dst_port), (None, 53));
        let short = &f[..f.len() - 6];
        assert_eq!(strict(short).fault, Some(Reason::TruncatedTransport));
    }

    #[test]
    fn ip_lengths_past_the_frame_strict_versus_cut_capture() {
        let frame = v4_frame(IPPROTO_TCP, &tcp(40000, 443, TCP_ACK));
        let mut long = frame.clone();
        long[ETH_HEADER_LEN + 2..ETH_HEADER_LEN + 4].copy_from_slice(&1500u16.to_be_bytes());
        assert_eq!(strict(&long).fault, Some(Reason::MalformedIpv4));
        let p = cut(&long);
        assert_eq!(
            (p.fault, p.ip.src_port, p.ip.dst_port, p.ip.tcp_flags),
            (None, 40000, 443, TCP_ACK)
        );
        // The cut capture still bounds reads by the frame: a cut TCP header is truncated.
        assert_eq!(
            cut(&long[..long.len() - 1]).fault,
            Some(Reason::TruncatedTransport)
        );
        // Both agree on well-formed frames.
        assert_eq!(strict(&frame), cut(&frame));
    }

    // --- Every truncation point ---

    #[test]
    fn every_truncation_of_a_tagged_ipv4_tcp_frame_with_options() {
        let frame = eth(
            &[(ETHERTYPE_VLAN, 10)],
            ETHERTYPE_IPV4,
            &ipv4(
                IPPROTO_TCP,
                &[0x94, 4, 0, 0],
                0,
                7,
                &tcp(40000, 443, TCP_SYN),
            ),
        );
        let (tag_end, l3_fixed_end, l4) = (18, 38, 42);
        assert_eq!(frame.len(), l4 + 20);
        let prefix = |len: usize| match len {
            0..14 => Some((
                Some(Reason::TruncatedEthernet),
                FrameClass::Malformed,
                false,
            )),
            14..18 => Some((Some(Reason::BadVlan), FrameClass::Malformed, false)),
            _ if len < l3_fixed_end => Some((Some(Reason::MalformedIpv4), FrameClass::Ipv4, false)),
            _ if len == frame.len() => Some((None, FrameClass::Ipv4, true)),
            _ => None,
        };
        assert!(tag_end < l3_fixed_end);
        every_prefix("vlan/ipv4+options/tcp", &frame, Snaplen::Strict, |len| {
            prefix(len).unwrap_or((Some(Reason::MalformedIpv4), FrameClass::Ipv4, true))
        });
        every_prefix(
            "vlan/ipv4+options/tcp",
            &frame,
            Snaplen::CaptureMayBeCut,
            |len| prefix(len).unwrap_or((Some(Reason::TruncatedTransport), FrameClass::Ipv4, true)),
        );
    }

    #[test]
    fn every_truncation_of_a_qinq_ipv4_udp_frame() {
        let frame = eth(
            &[(ETHERTYPE_QINQ, 100), (ETHERTYPE_VLAN, 10)],
            ETHERTYPE_IPV4,
            &ipv4(IPPROTO_UDP, &[], 0, 7, &udp(53124, 53, b"abcd")),
        );
        let (l3, l4) = (22, 42);
        every_prefix(
            "qinq/ipv4/udp",
            &frame,
            Snaplen::CaptureMayBeCut,
            |len| match len {
                0..14 => (
                    Some(Reason::TruncatedEthernet),
                    FrameClass::Malformed,
                    false,
                ),
                14..22 => (Some(Reason::BadVlan), FrameClass::Malformed, false),
                _ if len < l3 + 20 => (Some(Reason::MalformedIpv4), FrameClass::Ipv4, false),
                _ if len < l4 + 8 => (Some(Reason::TruncatedTransport), FrameClass::Ipv4, true),
                // The UDP payload may be cut in a capture.
                _ => (None, FrameClass::Ipv4, true),
            },
        );
    }

    #[test]
    fn every_truncation_of_an_ipv6_extension_chain() {
        // hop-by-hop (8) + first fragment (8) + destination options (16) + UDP (8 + 4).
        let frame = eth(
            &[],
            ETHERTYPE_IPV6,
            &ipv6(
                &[
                    (IPPROTO_HOPOPTS, 0),
                    (IPPROTO_FRAGMENT, 0),
                    (IPPROTO_DSTOPTS, 1),
                ],
                1,
                IPPROTO_UDP,
                &udp(40000, 514, b"abcd"),
            ),
        );
        let l4 = 14 + 40 + 8 + 8 + 16;
        assert_eq!(frame.len(), l4 + 12);
        every_prefix("ipv6 chain/udp", &frame, Snaplen::Strict, |len| match len {
            0..14 => (
                Some(Reason::TruncatedEthernet),
                FrameClass::Malformed,
                false,
            ),
            14..54 => (Some(Reason::MalformedIpv6), FrameClass::Ipv6, false),
            _ if len < frame.len() => (Some(Reason::MalformedIpv6), FrameClass::Ipv6, true),
            _ => (None, FrameClass::Ipv6, true),
        });
        every_prefix(
            "ipv6 chain/udp",
            &frame,
            Snaplen::CaptureMayBeCut,
            |len| match len {
                0..14 => (
                    Some(Reason::TruncatedEthernet),
                    FrameClass::Malformed,
                    false,
                ),
                14..54 => (Some(Reason::MalformedIpv6), FrameClass::Ipv6, false),
                _ if len < l4 => (Some(Reason::MalformedIpv6), FrameClass::Ipv6, true),
                _ if len < l4 + 8 => (Some(Reason::TruncatedTransport), FrameClass::Ipv6, true),
                _ => (None, FrameClass::Ipv6, true),
            },
        );
    }

    #[test]
    fn every_transport_cut_by_the_ip_length_is_truncated() {
        let transports: [(u8, usize); 5] = [
            (IPPROTO_TCP, 20),
            (IPPROTO_UDP, 8),
            (IPPROTO_SCTP, 12),
            (IPPROTO_ICMP, 4),
            (IPPROTO_ICMPV6, 4),
        ];
        for (protocol, needed) in transports {
            let header: Vec<u8> = (1..=u8::try_from(needed).expect("short")).collect();
            for k in 0..=needed {
                let want = if k < needed {
                    Some(Reason::TruncatedTransport)
                } else {
                    None
                };
                for (family, frame) in [
                    ("ipv4", v4_frame(protocol, &header[..k])),
                    ("ipv6", v6_frame(&[], protocol, &header[..k])),
                ] {
                    let p = strict(&frame);
                    assert_eq!(
                        p.fault, want,
                        "{family} protocol {protocol} with {k} of {needed} header bytes"
                    );
                    assert!(p.has_ip);
                }
            }
        }
    }

    #[test]
    fn parse_into_a_used_slot_leaves_nothing_behind() {
        let mut slot = strict(&eth(
            &[(ETHERTYPE_VLAN, 9)],
            ETHERTYPE_IPV6,
            &ipv6(
                &[(IPPROTO_FRAGMENT, 0)],
                1,
                IPPROTO_TCP,
                &tcp(1, 2, TCP_SYN),
            ),
        ));
        assert!(slot.has_ip && slot.ip.fragment_id != 0 && slot.vlan_tags == 1);
        let arp = eth(&[], ETHERTYPE_ARP, &[0; 28]);
        parse_frame_into(arp.as_slice(), Snaplen::Strict, &mut slot);
        assert_eq!(slot, strict(&arp));
        assert_eq!(slot.ip, IpPacket::EMPTY);
    }

    #[test]
    fn slice_reads_stay_inside_the_frame() {
        let bytes = [1u8, 2, 3, 4];
        let frame: &[u8] = &bytes;
        assert_eq!(frame.read::<4>(0), Some(&[1, 2, 3, 4]));
        assert_eq!(frame.read::<2>(2), Some(&[3, 4]));
        assert_eq!(frame.read::<2>(3), None);
        assert_eq!(frame.read::<1>(usize::MAX), None, "offset overflow");
        assert_eq!(frame.frame_len(), 4);
    }

    // --- Neighbour claims (ARP, neighbour advertisements) ---

    /// The source MAC `eth` gives every frame.
    const SRC_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];

    fn arp(op: u16, sender_mac: [u8; 6], sender: [u8; 4]) -> Vec<u8> {
        let mut a = vec![0, 1, 0x08, 0, 6, 4];
        a.extend_from_slice(&op.to_be_bytes());
        a.extend_from_slice(&sender_mac);
        a.extend_from_slice(&sender);
        a.extend_from_slice(&[0; 6]);
        a.extend_from_slice(&B);
        a
    }

    /// A neighbour advertisement for `target`, with a target link-layer option when given.
    fn na(target: Addr, option: Option<[u8; 6]>, hop_limit: u8) -> Vec<u8> {
        let mut icmp = vec![ICMPV6_NEIGHBOR_ADVERTISEMENT, 0, 0, 0, 0x60, 0, 0, 0];
        icmp.extend_from_slice(&target);
        if let Some(mac) = option {
            icmp.extend_from_slice(&[NDP_OPTION_TARGET_LINK_LAYER, 1]);
            icmp.extend_from_slice(&mac);
        }
        let mut ip = ipv6(&[], 0, IPPROTO_ICMPV6, &icmp);
        ip[7] = hop_limit;
        eth(&[], ETHERTYPE_IPV6, &ip)
    }

    fn claim(frame: &[u8]) -> Option<Addr> {
        let parsed = strict(frame);
        let mut out = [0xaa; 16];
        neighbor_claim_into(frame, &parsed, &mut out).then_some(out)
    }

    #[test]
    fn arp_requests_and_replies_claim_their_sender_address_for_the_source_mac() {
        for op in [1, 2] {
            let frame = eth(&[], ETHERTYPE_ARP, &arp(op, SRC_MAC, A));
            assert_eq!(claim(&frame), Some(ipv4_mapped(A)), "op {op}");
        }
        // Tagged, and padded to the Ethernet minimum.
        let mut tagged = eth(&[(ETHERTYPE_VLAN, 10)], ETHERTYPE_ARP, &arp(2, SRC_MAC, A));
        tagged.resize(64, 0);
        assert_eq!(claim(&tagged), Some(ipv4_mapped(A)));
        // Another sender MAC than the frame's, a probe (0.0.0.0), another opcode (RARP's
        // 3), another hardware type: no claim.
        let other = eth(&[], ETHERTYPE_ARP, &arp(2, [2, 0, 0, 0, 0, 9], A));
        assert_eq!(claim(&other), None);
        let probe = eth(&[], ETHERTYPE_ARP, &arp(1, SRC_MAC, [0; 4]));
        assert_eq!(claim(&probe), None);
        let rarp = eth(&[], ETHERTYPE_ARP, &arp(3, SRC_MAC, A));
        assert_eq!(claim(&rarp), None);
        let mut token_ring = arp(2, SRC_MAC, A);
        token_ring[1] = 6;
        assert_eq!(claim(&eth(&[], ETHERTYPE_ARP, &token_ring)), None);
        // IP frames claim nothing.
        assert_eq!(claim(&v4_frame(IPPROTO_UDP, &udp(1, 2, b""))), None);
    }

    #[test]
    fn neighbour_advertisements_claim_their_target_for_the_source_mac() {
        assert_eq!(claim(&na(A6, Some(SRC_MAC), 255)), Some(A6));
        assert_eq!(claim(&na(A6, None, 255)), Some(A6), "no option to check");
        // The option names another MAC (a proxy's answer, or a forgery).
        assert_eq!(claim(&na(A6, Some([2, 0, 0, 0, 0, 9]), 255)), None);
        // Not from the link itself, a multicast or unspecified target, a solicitation.
        assert_eq!(claim(&na(A6, Some(SRC_MAC), 64)), None);
        let mut multicast = A6;
        multicast[0] = 0xff;
        assert_eq!(claim(&na(multicast, None, 255)), None);
        assert_eq!(claim(&na([0; 16], None, 255)), None);
        let mut solicitation = na(A6, None, 255);
        solicitation[ETH_HEADER_LEN + 40] = 135;
        assert_eq!(claim(&solicitation), None);
        // Behind an extension header: not looked at.
        let mut icmp = vec![ICMPV6_NEIGHBOR_ADVERTISEMENT, 0, 0, 0, 0x60, 0, 0, 0];
        icmp.extend_from_slice(&A6);
        let mut ip = ipv6(&[(IPPROTO_DSTOPTS, 0)], 0, IPPROTO_ICMPV6, &icmp);
        ip[7] = 255;
        assert_eq!(claim(&eth(&[], ETHERTYPE_IPV6, &ip)), None);
    }

    #[test]
    fn no_cut_of_a_claim_claims_anything() {
        for frame in [
            eth(&[], ETHERTYPE_ARP, &arp(2, SRC_MAC, A)),
            na(A6, Some(SRC_MAC), 255),
        ] {
            assert!(claim(&frame).is_some());
            for len in 0..frame.len() {
                // A cut NA is malformed (its length claims more); a cut ARP is short.
                assert_eq!(claim(&frame[..len]), None, "cut at {len}");
            }
        }
    }
}
