//! Structure-aware fuzzing of the shared frame parser on the host, against an independent
//! reference parser (`etherparse`).
//!
//! A generator builds Ethernet frames with zero to two VLAN tags (802.1Q, 802.1ad, the old
//! 0x9100 QinQ), IPv4 (options, fragments), IPv6 (extension-header chains: hop-by-hop,
//! destination options, routing, fragment, authentication), TCP (with options), UDP, SCTP,
//! ICMP/ICMPv6 and other protocols, plus Ethernet padding. Three properties:
//!
//! 1. Valid frames: `parse_frame` reports no fault and the same VLAN ids, addresses,
//!    protocol, fragment offset/flags/id, ports, TCP flags and ICMP type/code as
//!    `etherparse` — except where the two legitimately differ (see below).
//! 2. Mutated frames (truncations, byte flips, random bytes written anywhere): no panic,
//!    and whenever the strict parse finds no fault the capture-may-be-cut parse agrees
//!    with it exactly (the two only differ when a length field runs past the frame).
//! 3. Random bytes: no panic.
//!
//! Legitimate differences, handled explicitly:
//! - The parser walks at most `MAX_IPV6_EXTENSIONS` IPv6 extension headers and looks no
//!   further than `MAX_HEADER_OFFSET` bytes into a frame; beyond either it reports
//!   `Ipv6ChainTooLong` where etherparse (unbounded) parses on. Such frames are generated
//!   on purpose and must get exactly that fault.
//! - etherparse parses no transport header for any fragmented packet; the parser reads the
//!   first fragment's (offset 0, more-fragments set) transport header, which it needs for
//!   port rules. For first fragments the reference reads the transport header with
//!   etherparse's header slicers from etherparse's IP payload slice.
//! - The parser stops at an IPv6 fragment header of a later fragment (what follows is
//!   data); etherparse keeps walking. The generator puts a later fragment's fragment header
//!   last in the chain, so both name the same upper protocol.
//! - etherparse has no SCTP; for SCTP the reference ports are the first four bytes of
//!   etherparse's IP payload slice.
//! - etherparse understands an IPv4 authentication header (protocol 51) and reports the
//!   protocol after it; the parser reports 51 (opaque). IPv4 frames use other protocols.
//!
//! CI runs a few thousand cases per property (seconds). A long run:
//!
//! ```sh
//! FUZZ_PARSER_CASES=1000000 cargo test --release -p monitor-common --test fuzz_parser
//! ```
//!
//! `FUZZ_PARSER_SEED` (a number) picks another random sequence; a failure prints the
//! minimal (shrunk) input.

use etherparse::{Ipv6ExtensionSlice, LinkExtSlice, NetSlice, SlicedPacket};
use monitor_common::{
    FrameClass, Reason,
    parse::{
        FragmentKind, IPPROTO_AH, IPPROTO_DSTOPTS, IPPROTO_FRAGMENT, IPPROTO_HOPOPTS, IPPROTO_ICMP,
        IPPROTO_ICMPV6, IPPROTO_ROUTING, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP, MAX_HEADER_OFFSET,
        MAX_IPV6_EXTENSIONS, ParsedFrame, Snaplen, TransportKind, ipv4_mapped, parse_frame,
    },
};
use proptest::{
    prelude::*,
    test_runner::{Config, RngAlgorithm, TestRng, TestRunner},
};

// --- The generator -------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Transport {
    Tcp {
        sport: u16,
        dport: u16,
        flags: u8,
        option_words: u8,
    },
    Udp {
        sport: u16,
        dport: u16,
    },
    Sctp {
        sport: u16,
        dport: u16,
    },
    Icmp {
        kind: u8,
        code: u8,
    },
    Other(u8),
}

#[derive(Clone, Debug)]
struct Fragment {
    offset: u16,
    more: bool,
    id: u32,
}

#[derive(Clone, Debug)]
enum Network {
    V4 {
        src: [u8; 4],
        dst: [u8; 4],
        option_words: u8,
        dont_fragment: bool,
        fragment: Fragment,
    },
    V6 {
        src: [u8; 16],
        dst: [u8; 16],
        /// (next-header value of this extension, its length field), in order.
        extensions: Vec<(u8, u8)>,
        fragment: Option<Fragment>,
    },
}

#[derive(Clone, Debug)]
struct IpFrame {
    tags: Vec<(u16, u16)>,
    network: Network,
    transport: Transport,
    payload: Vec<u8>,
    padding: usize,
}

fn transport() -> impl Strategy<Value = Transport> {
    prop_oneof![
        (any::<u16>(), any::<u16>(), any::<u8>(), 0u8..=10).prop_map(
            |(sport, dport, flags, option_words)| {
                Transport::Tcp {
                    sport,
                    dport,
                    flags,
                    option_words,
                }
            }
        ),
        (any::<u16>(), any::<u16>()).prop_map(|(sport, dport)| Transport::Udp { sport, dport }),
        (any::<u16>(), any::<u16>()).prop_map(|(sport, dport)| Transport::Sctp { sport, dport }),
        (any::<u8>(), any::<u8>()).prop_map(|(kind, code)| Transport::Icmp { kind, code }),
        // Protocols without a header the parser reads (not 51: see the module docs; not
        // IGMP, which etherparse reads).
        prop::sample::select(vec![4u8, 41, 47, 50, 89, 103, 112, 115, 200, 255])
            .prop_map(Transport::Other),
    ]
}

fn tags() -> impl Strategy<Value = Vec<(u16, u16)>> {
    prop::collection::vec(
        (
            prop::sample::select(vec![0x8100u16, 0x88a8, 0x9100]),
            any::<u16>(),
        ),
        0..=2,
    )
}

fn fragment() -> impl Strategy<Value = Fragment> {
    prop_oneof![
        2 => Just(Fragment { offset: 0, more: false, id: 0 }),
        1 => (any::<u32>(),).prop_map(|(id,)| Fragment { offset: 0, more: true, id }),
        1 => (1u16..0x1fff, any::<bool>(), any::<u32>()).prop_map(|(offset, more, id)| Fragment { offset, more, id }),
    ]
}

/// An IPv6 extension chain in an order both parsers accept: hop-by-hop first, then
/// destination options / routing / authentication in any order.
fn extensions() -> impl Strategy<Value = Vec<(u8, u8)>> {
    let length = prop_oneof![8 => 0u8..4, 1 => any::<u8>()];
    (
        any::<bool>(),
        prop::collection::vec(
            (
                prop::sample::select(vec![IPPROTO_DSTOPTS, IPPROTO_ROUTING, IPPROTO_AH]),
                length.clone(),
            ),
            0..=7,
        ),
        length,
    )
        .prop_map(|(hop, rest, hop_len)| {
            let mut chain = Vec::new();
            if hop {
                chain.push((IPPROTO_HOPOPTS, hop_len));
            }
            chain.extend(rest.into_iter().map(|(kind, len)| {
                // etherparse refuses an authentication header with payload length 0.
                if kind == IPPROTO_AH {
                    (kind, len.max(1))
                } else {
                    (kind, len)
                }
            }));
            chain
        })
}

fn network() -> impl Strategy<Value = Network> {
    prop_oneof![
        (
            any::<[u8; 4]>(),
            any::<[u8; 4]>(),
            0u8..=10,
            any::<bool>(),
            fragment()
        )
            .prop_map(
                |(src, dst, option_words, dont_fragment, fragment)| Network::V4 {
                    src,
                    dst,
                    option_words,
                    dont_fragment,
                    fragment,
                }
            ),
        (
            any::<[u8; 16]>(),
            any::<[u8; 16]>(),
            extensions(),
            prop::option::of(fragment())
        )
            .prop_map(|(src, dst, extensions, fragment)| Network::V6 {
                src,
                dst,
                extensions,
                fragment
            }),
    ]
}

fn ip_frame() -> impl Strategy<Value = IpFrame> {
    (
        tags(),
        network(),
        transport(),
        prop::collection::vec(any::<u8>(), 0..64),
        prop_oneof![3 => Just(0usize), 1 => 0usize..24],
    )
        .prop_map(|(tags, network, transport, payload, padding)| IpFrame {
            tags,
            network,
            transport,
            payload,
            padding,
        })
}

impl Transport {
    fn protocol(&self, v6: bool) -> u8 {
        match self {
            Transport::Tcp { .. } => IPPROTO_TCP,
            Transport::Udp { .. } => IPPROTO_UDP,
            Transport::Sctp { .. } => IPPROTO_SCTP,
            Transport::Icmp { .. } if v6 => IPPROTO_ICMPV6,
            Transport::Icmp { .. } => IPPROTO_ICMP,
            Transport::Other(p) => *p,
        }
    }

    fn bytes(&self, payload: &[u8]) -> Vec<u8> {
        let mut t = match self {
            Transport::Tcp {
                sport,
                dport,
                flags,
                option_words,
            } => {
                let mut t = vec![0u8; 20 + 4 * usize::from(*option_words)];
                t[0..2].copy_from_slice(&sport.to_be_bytes());
                t[2..4].copy_from_slice(&dport.to_be_bytes());
                t[12] = (5 + option_words) << 4;
                t[13] = *flags;
                // Options: NOPs (valid for any parser).
                t[20..].fill(1);
                t
            }
            Transport::Udp { sport, dport } => {
                let mut t = vec![0u8; 8];
                t[0..2].copy_from_slice(&sport.to_be_bytes());
                t[2..4].copy_from_slice(&dport.to_be_bytes());
                let len = u16::try_from(8 + payload.len()).unwrap_or(u16::MAX);
                t[4..6].copy_from_slice(&len.to_be_bytes());
                t
            }
            Transport::Sctp { sport, dport } => {
                let mut t = vec![0u8; 12];
                t[0..2].copy_from_slice(&sport.to_be_bytes());
                t[2..4].copy_from_slice(&dport.to_be_bytes());
                t
            }
            Transport::Icmp { kind, code } => vec![*kind, *code, 0, 0, 0, 0, 0, 0],
            // One byte at least: an IPv6 payload length of 0 announces a jumbogram.
            Transport::Other(_) => vec![0x5a],
        };
        t.extend_from_slice(payload);
        t
    }
}

impl IpFrame {
    fn is_v6(&self) -> bool {
        matches!(self.network, Network::V6 { .. })
    }

    fn bytes(&self) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
        for (tpid, tci) in &self.tags {
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&tci.to_be_bytes());
        }
        let protocol = self.transport.protocol(self.is_v6());
        let upper = self.transport.bytes(&self.payload);
        match &self.network {
            Network::V4 {
                src,
                dst,
                option_words,
                dont_fragment,
                fragment,
            } => {
                f.extend_from_slice(&0x0800u16.to_be_bytes());
                let header_len = 20 + 4 * usize::from(*option_words);
                let mut h = vec![0u8; header_len];
                h[0] = 0x40 | (5 + option_words);
                let total = u16::try_from(header_len + upper.len()).unwrap_or(u16::MAX);
                h[2..4].copy_from_slice(&total.to_be_bytes());
                h[4..6].copy_from_slice(&(fragment.id as u16).to_be_bytes());
                let flags = fragment.offset
                    | if fragment.more { 0x2000 } else { 0 }
                    | if *dont_fragment { 0x4000 } else { 0 };
                h[6..8].copy_from_slice(&flags.to_be_bytes());
                h[8] = 64;
                h[9] = protocol;
                h[12..16].copy_from_slice(src);
                h[16..20].copy_from_slice(dst);
                // Options: NOPs then end-of-list.
                h[20..].fill(1);
                if header_len > 20 {
                    h[header_len - 1] = 0;
                }
                f.extend_from_slice(&h);
                f.extend_from_slice(&upper);
            }
            Network::V6 {
                src,
                dst,
                extensions,
                fragment,
            } => {
                f.extend_from_slice(&0x86ddu16.to_be_bytes());
                let mut chain: Vec<(u8, Vec<u8>)> = extensions
                    .iter()
                    .map(|&(kind, len)| {
                        let size = if kind == IPPROTO_AH {
                            (usize::from(len) + 2) * 4
                        } else {
                            (usize::from(len) + 1) * 8
                        };
                        let mut e = vec![0u8; size];
                        e[1] = len;
                        (kind, e)
                    })
                    .collect();
                if let Some(fr) = fragment {
                    let mut e = vec![0u8; 8];
                    let field = (fr.offset << 3) | u16::from(fr.more);
                    e[2..4].copy_from_slice(&field.to_be_bytes());
                    e[4..8].copy_from_slice(&fr.id.to_be_bytes());
                    chain.push((IPPROTO_FRAGMENT, e));
                }
                let first = chain.first().map_or(protocol, |(kind, _)| *kind);
                let mut body = Vec::new();
                for i in 0..chain.len() {
                    let next = chain.get(i + 1).map_or(protocol, |(kind, _)| *kind);
                    let (_, e) = &mut chain[i];
                    e[0] = next;
                    body.extend_from_slice(e);
                }
                body.extend_from_slice(&upper);
                let mut h = vec![0u8; 40];
                h[0] = 0x60;
                let len = u16::try_from(body.len()).unwrap_or(u16::MAX);
                h[4..6].copy_from_slice(&len.to_be_bytes());
                h[6] = first;
                h[7] = 64;
                h[8..24].copy_from_slice(src);
                h[24..40].copy_from_slice(dst);
                f.extend_from_slice(&h);
                f.extend_from_slice(&body);
            }
        }
        f.extend(std::iter::repeat_n(0u8, self.padding));
        f
    }

    /// More IPv6 extension headers than the parser walks (`MAX_IPV6_EXTENSIONS`): before
    /// the upper protocol, or before a later fragment's fragment header, where the walk
    /// stops.
    fn too_many_extensions(&self) -> bool {
        let Network::V6 {
            extensions,
            fragment,
            ..
        } = &self.network
        else {
            return false;
        };
        let later = fragment.as_ref().is_some_and(|f| f.offset != 0);
        let walked = extensions.len() + usize::from(fragment.is_some());
        // The walk takes up to MAX_IPV6_EXTENSIONS extension headers (a later fragment's
        // header ends it early) and then reads the upper protocol.
        let _ = later;
        walked > MAX_IPV6_EXTENSIONS
    }

    /// Where each header the parser reads starts (IPv6 extensions, fragment header, the
    /// transport header when there is one to read).
    fn header_starts(&self) -> Vec<usize> {
        let Network::V6 {
            extensions,
            fragment,
            ..
        } = &self.network
        else {
            return Vec::new();
        };
        let later = fragment.as_ref().is_some_and(|f| f.offset != 0);
        let mut offset = 14 + 4 * self.tags.len() + 40;
        let mut starts = Vec::new();
        for &(kind, len) in extensions {
            starts.push(offset);
            offset += if kind == IPPROTO_AH {
                (usize::from(len) + 2) * 4
            } else {
                (usize::from(len) + 1) * 8
            };
        }
        if fragment.is_some() {
            starts.push(offset);
            offset += 8;
        }
        if !later && !matches!(self.transport, Transport::Other(_)) {
            starts.push(offset);
        }
        starts
    }

    /// A header within 20 bytes of `MAX_HEADER_OFFSET` or past it: checked by
    /// `headers_near_max_header_offset_follow_the_documented_bound`, not compared here.
    fn near_the_offset_bound(&self) -> bool {
        self.header_starts()
            .iter()
            .any(|&s| s + 20 > MAX_HEADER_OFFSET)
    }
}

// --- The reference ---------------------------------------------------------------------

/// What etherparse makes of a frame, in the parser's terms.
#[derive(Debug, PartialEq, Eq)]
struct Reference {
    vlan_ids: Vec<u16>,
    src: [u8; 16],
    dst: [u8; 16],
    protocol: u8,
    fragment: FragmentKind,
    fragment_id: u32,
    transport: TransportKind,
    ports: (u16, u16),
    tcp_flags: u8,
    icmp: (u8, u8),
}

fn reference(frame: &[u8]) -> Reference {
    let sliced = SlicedPacket::from_ethernet(frame)
        .unwrap_or_else(|e| panic!("etherparse refused a generated frame: {e:?}\n{frame:02x?}"));
    let vlan_ids = sliced
        .link_exts
        .iter()
        .map(|ext| match ext {
            LinkExtSlice::Vlan(v) => v.vlan_identifier().value(),
            LinkExtSlice::Macsec(_) => panic!("no MACsec generated"),
        })
        .collect();
    let (src, dst, protocol, offset, more, id, payload) = match sliced.net {
        Some(NetSlice::Ipv4(ip)) => {
            let h = ip.header();
            (
                ipv4_mapped(h.source()),
                ipv4_mapped(h.destination()),
                ip.payload().ip_number.0,
                h.fragments_offset().value(),
                h.more_fragments(),
                u32::from(h.identification()),
                ip.payload().payload,
            )
        }
        Some(NetSlice::Ipv6(ip)) => {
            let h = ip.header();
            let mut fragment = (0, false, 0);
            for ext in ip.extensions().clone().into_iter() {
                if let Ipv6ExtensionSlice::Fragment(f) = ext {
                    fragment = (
                        f.fragment_offset().value(),
                        f.more_fragments(),
                        f.identification(),
                    );
                }
            }
            (
                h.source(),
                h.destination(),
                ip.payload().ip_number.0,
                fragment.0,
                fragment.1,
                fragment.2,
                ip.payload().payload,
            )
        }
        other => panic!("etherparse found no IP packet: {other:?}"),
    };
    let fragment = match (offset, more) {
        (0, false) => FragmentKind::Whole,
        (0, true) => FragmentKind::First,
        _ => FragmentKind::Later,
    };
    let mut r = Reference {
        vlan_ids,
        src,
        dst,
        protocol,
        fragment,
        fragment_id: if fragment == FragmentKind::Whole {
            0
        } else {
            id
        },
        transport: TransportKind::Opaque,
        ports: (0, 0),
        tcp_flags: 0,
        icmp: (0, 0),
    };
    if fragment == FragmentKind::Later {
        return r;
    }
    match protocol {
        IPPROTO_TCP => {
            let t = etherparse::TcpHeaderSlice::from_slice(payload)
                .unwrap_or_else(|e| panic!("etherparse: tcp {e:?}"));
            r.transport = TransportKind::Ports;
            r.ports = (t.source_port(), t.destination_port());
            let bits = [
                t.fin(),
                t.syn(),
                t.rst(),
                t.psh(),
                t.ack(),
                t.urg(),
                t.ece(),
                t.cwr(),
            ];
            r.tcp_flags = bits
                .iter()
                .enumerate()
                .map(|(i, b)| u8::from(*b) << i)
                .sum();
        }
        IPPROTO_UDP => {
            let u = etherparse::UdpHeaderSlice::from_slice(payload)
                .unwrap_or_else(|e| panic!("etherparse: udp {e:?}"));
            r.transport = TransportKind::Ports;
            r.ports = (u.source_port(), u.destination_port());
        }
        IPPROTO_SCTP => {
            assert!(payload.len() >= 12, "sctp payload {payload:?}");
            r.transport = TransportKind::Ports;
            r.ports = (
                u16::from_be_bytes([payload[0], payload[1]]),
                u16::from_be_bytes([payload[2], payload[3]]),
            );
        }
        IPPROTO_ICMP => {
            let i = etherparse::Icmpv4Slice::from_slice(payload)
                .unwrap_or_else(|e| panic!("etherparse: icmp {e:?}"));
            r.transport = TransportKind::Icmp;
            r.icmp = (i.type_u8(), i.code_u8());
        }
        IPPROTO_ICMPV6 => {
            let i = etherparse::Icmpv6Slice::from_slice(payload)
                .unwrap_or_else(|e| panic!("etherparse: icmpv6 {e:?}"));
            r.transport = TransportKind::Icmp;
            r.icmp = (i.type_u8(), i.code_u8());
        }
        _ => {}
    }
    r
}

fn ours(p: &ParsedFrame) -> Reference {
    Reference {
        vlan_ids: p.vlan_ids[..usize::from(p.vlan_tags)].to_vec(),
        src: p.ip.src,
        dst: p.ip.dst,
        protocol: p.ip.protocol,
        fragment: p.ip.fragment,
        fragment_id: p.ip.fragment_id,
        transport: p.ip.transport,
        ports: (p.ip.src_port, p.ip.dst_port),
        tcp_flags: p.ip.tcp_flags,
        icmp: (p.ip.icmp_type, p.ip.icmp_code),
    }
}

// --- The runs --------------------------------------------------------------------------

fn cases(default: u32) -> u32 {
    std::env::var("FUZZ_PARSER_CASES")
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("FUZZ_PARSER_CASES={v} is not a number"))
        })
        .unwrap_or(default)
}

fn runner(default_cases: u32) -> TestRunner {
    let config = Config {
        cases: cases(default_cases),
        failure_persistence: None,
        ..Config::default()
    };
    let seed = std::env::var("FUZZ_PARSER_SEED").ok().map(|v| {
        v.parse::<u64>()
            .unwrap_or_else(|_| panic!("FUZZ_PARSER_SEED={v} is not a number"))
    });
    match seed {
        Some(seed) => {
            let mut bytes = [0u8; 32];
            bytes[..8].copy_from_slice(&seed.to_le_bytes());
            TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &bytes))
        }
        // Deterministic by default: CI sees the same cases each run.
        None => TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha)),
    }
}

fn run<S: Strategy>(
    name: &str,
    default_cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S::Value: std::fmt::Debug,
{
    let start = std::time::Instant::now();
    let mut runner = runner(default_cases);
    if let Err(e) = runner.run(&strategy, test) {
        panic!("{name}: {e}");
    }
    eprintln!(
        "{name}: {} cases in {:?}",
        runner.config().cases,
        start.elapsed()
    );
}

#[test]
fn valid_frames_parse_like_etherparse() {
    run("valid frames", 4000, ip_frame(), |spec| {
        let frame = spec.bytes();
        let strict = parse_frame(frame.as_slice(), Snaplen::Strict);
        let cut = parse_frame(frame.as_slice(), Snaplen::CaptureMayBeCut);
        prop_assert_eq!(strict, cut, "a whole frame parses the same in both modes");
        let class = if spec.is_v6() {
            FrameClass::Ipv6
        } else {
            FrameClass::Ipv4
        };
        prop_assert_eq!(strict.class, class);
        prop_assert!(strict.has_ip);
        if spec.near_the_offset_bound() {
            return Ok(());
        }
        if spec.too_many_extensions() {
            // The documented bound: etherparse walks on, the parser gives up.
            prop_assert_eq!(
                strict.fault,
                Some(Reason::Ipv6ChainTooLong),
                "{:02x?}",
                frame
            );
            return Ok(());
        }
        prop_assert_eq!(strict.fault, None, "a valid frame: {:02x?}", frame);
        prop_assert_eq!(ours(&strict), reference(&frame), "frame {:02x?}", frame);
        Ok(())
    });
}

#[derive(Clone, Debug)]
enum Mutation {
    Truncate(usize),
    Set(usize, u8),
    Flip(usize, u8),
    Insert(usize, u8),
    Remove(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<usize>(), 0u8..8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Remove),
    ]
}

fn mutate(frame: &mut Vec<u8>, m: &Mutation) {
    let len = frame.len().max(1);
    match *m {
        Mutation::Truncate(i) => frame.truncate(i % (len + 1)),
        Mutation::Set(i, b) if !frame.is_empty() => frame[i % len] = b,
        Mutation::Flip(i, bit) if !frame.is_empty() => frame[i % len] ^= 1 << bit,
        Mutation::Insert(i, b) => frame.insert(i % (frame.len() + 1), b),
        Mutation::Remove(i) if !frame.is_empty() => {
            frame.remove(i % len);
        }
        _ => {}
    }
}

/// The invariants every parse must hold, whatever the bytes.
fn check_any(frame: &[u8]) -> Result<(), TestCaseError> {
    let strict = parse_frame(frame, Snaplen::Strict);
    let cut = parse_frame(frame, Snaplen::CaptureMayBeCut);
    for p in [&strict, &cut] {
        prop_assert!(usize::from(p.vlan_tags) <= 2);
        prop_assert!(p.vlan_ids.iter().all(|id| *id <= 0x0fff));
        if frame.len() < 14 {
            prop_assert_eq!(p.fault, Some(Reason::TruncatedEthernet));
        }
        if p.fault.is_none() && p.has_ip {
            prop_assert!(matches!(p.class, FrameClass::Ipv4 | FrameClass::Ipv6));
            if p.ip.fragment == FragmentKind::Later {
                prop_assert_eq!(p.ip.transport, TransportKind::Opaque);
            }
            if p.ip.fragment == FragmentKind::Whole {
                prop_assert_eq!(p.ip.fragment_id, 0);
            }
        }
        if let Some(reason) = p.fault {
            prop_assert!(
                matches!(
                    reason,
                    Reason::TruncatedEthernet
                        | Reason::BadVlan
                        | Reason::MalformedIpv4
                        | Reason::MalformedIpv6
                        | Reason::Ipv6ChainTooLong
                        | Reason::TruncatedTransport
                ),
                "a parse fault must be a malformed-frame reason, got {:?}",
                reason
            );
        }
    }
    if strict.fault.is_none() {
        // Strict and cut only differ where a length runs past the frame.
        prop_assert_eq!(strict, cut);
    }
    Ok(())
}

#[test]
fn mutated_frames_never_panic_and_stay_consistent() {
    let strategy = (ip_frame(), prop::collection::vec(mutation(), 1..6));
    run("mutated frames", 4000, strategy, |(spec, mutations)| {
        let mut frame = spec.bytes();
        for m in &mutations {
            mutate(&mut frame, m);
        }
        check_any(&frame)
    });
}

#[test]
fn every_prefix_of_generated_frames_never_panics() {
    run("prefixes", 300, ip_frame(), |spec| {
        let frame = spec.bytes();
        for len in 0..=frame.len() {
            check_any(&frame[..len])?;
        }
        Ok(())
    });
}

#[test]
fn random_bytes_never_panic() {
    // Mostly Ethernet-looking: a plausible ethertype at 12 makes the bytes reach the IP
    // and transport code.
    let strategy = (
        prop::collection::vec(any::<u8>(), 0..700),
        prop::sample::select(vec![
            0x0800u16, 0x86dd, 0x8100, 0x88a8, 0x9100, 0x0806, 0x1234,
        ]),
        any::<bool>(),
    );
    run(
        "random bytes",
        4000,
        strategy,
        |(mut bytes, ethertype, set)| {
            if set && bytes.len() >= 14 {
                bytes[12..14].copy_from_slice(&ethertype.to_be_bytes());
            }
            check_any(&bytes)
        },
    );
}

#[test]
fn three_vlan_tags_are_bad_vlan() {
    // etherparse accepts up to three link extensions; the parser takes two (documented).
    let spec = IpFrame {
        tags: vec![(0x88a8, 1), (0x8100, 2), (0x8100, 3)],
        network: Network::V4 {
            src: [10, 0, 0, 1],
            dst: [10, 0, 0, 2],
            option_words: 0,
            dont_fragment: false,
            fragment: Fragment {
                offset: 0,
                more: false,
                id: 0,
            },
        },
        transport: Transport::Udp { sport: 1, dport: 2 },
        payload: vec![],
        padding: 0,
    };
    let frame = spec.bytes();
    assert_eq!(
        reference(&frame).vlan_ids,
        vec![1, 2, 3],
        "etherparse takes three tags"
    );
    assert_eq!(
        parse_frame(frame.as_slice(), Snaplen::Strict).fault,
        Some(Reason::BadVlan)
    );
}

/// A frame whose single destination-options header (length field `len`) puts the next
/// header at `14 + 40 + (len + 1) * 8`.
fn v6_with_dstopts(len: u8, transport: Transport) -> Vec<u8> {
    IpFrame {
        tags: vec![],
        network: Network::V6 {
            src: [0xfd; 16],
            dst: [0xfe; 16],
            extensions: vec![(IPPROTO_DSTOPTS, len)],
            fragment: None,
        },
        transport,
        payload: vec![],
        padding: 0,
    }
    .bytes()
}

#[test]
fn headers_near_max_header_offset_follow_the_documented_bound() {
    // parse.rs: "Bytes the parser will look into. A header starting beyond this is
    // 'chain too long'." So a header starting at or before MAX_HEADER_OFFSET is read in
    // full (it is valid), and one starting past it is Ipv6ChainTooLong.
    let mut problems = Vec::new();
    for len in 50u8..=70 {
        let l4 = 14 + 40 + (usize::from(len) + 1) * 8;
        for transport in [
            Transport::Tcp {
                sport: 40000,
                dport: 443,
                flags: 0x12,
                option_words: 0,
            },
            Transport::Udp {
                sport: 40000,
                dport: 53,
            },
        ] {
            let frame = v6_with_dstopts(len, transport.clone());
            let p = parse_frame(frame.as_slice(), Snaplen::Strict);
            let want = if l4 <= MAX_HEADER_OFFSET {
                None
            } else {
                Some(Reason::Ipv6ChainTooLong)
            };
            if p.fault != want {
                problems.push(format!(
                    "{transport:?} at offset {l4}: fault {:?}, expected {want:?}",
                    p.fault
                ));
            } else if want.is_none() && ours(&p) != reference(&frame) {
                problems.push(format!(
                    "{transport:?} at offset {l4}: {:?} vs etherparse {:?}",
                    ours(&p),
                    reference(&frame)
                ));
            }
        }
        // An extension header starting past the bound.
        let ext_start = l4;
        let frame = IpFrame {
            tags: vec![],
            network: Network::V6 {
                src: [0xfd; 16],
                dst: [0xfe; 16],
                extensions: vec![(IPPROTO_DSTOPTS, len), (IPPROTO_ROUTING, 0)],
                fragment: None,
            },
            transport: Transport::Udp { sport: 1, dport: 2 },
            payload: vec![],
            padding: 0,
        }
        .bytes();
        let p = parse_frame(frame.as_slice(), Snaplen::Strict);
        if ext_start > MAX_HEADER_OFFSET && p.fault != Some(Reason::Ipv6ChainTooLong) {
            problems.push(format!(
                "routing header at offset {ext_start}: fault {:?}, expected Ipv6ChainTooLong",
                p.fault
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{} frames near MAX_HEADER_OFFSET:\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}
