//! The malformed and adversarial frames of the XDP case tables, built in one place: the
//! tables (tests/tests/xdp_cases.rs) judge each of them with BPF_PROG_TEST_RUN, and
//! replay.rs sends all of them through a live enforcing monitor and through
//! `monitor replay` and compares the two verdicts frame by frame. The addresses the
//! tables use (the cast) and their small frame helpers live here too.

use std::net::Ipv4Addr;

use monitor_common::parse::{MAX_HEADER_OFFSET, MAX_IPV6_EXTENSIONS};

use crate::packet::{
    ETH_MIN_FRAME, ETHERTYPE_IPV4, Ethernet, Ext, IPPROTO_FRAGMENT, IPPROTO_HOPOPTS, IPPROTO_ICMP,
    IPPROTO_ICMPV6, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP, Ipv4, Ipv6, TCP_ACK, TCP_SYN,
    TPID_8021AD, TPID_8021Q, Transport, padded, truncated,
};

/// The addresses of the case tables.
pub mod cast {
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// Workstation (enrolled, slot 3).
    pub const WS: Ipv4Addr = Ipv4Addr::new(10, 3, 0, 20);
    /// PACS server (enrolled in the cases that need two devices, slot 5).
    pub const PACS: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 5);
    /// Infusion pump (life-critical, slot 10).
    pub const PUMP: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 10);
    /// Unenrolled server, DNS resolvers, NTP server, and two unknown hosts.
    pub const SRV: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 80);
    pub const DNS: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 53);
    pub const DNS2: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 53);
    pub const NTP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 123);
    pub const HOST_X: Ipv4Addr = Ipv4Addr::new(192, 168, 7, 1);
    pub const HOST_Y: Ipv4Addr = Ipv4Addr::new(192, 168, 7, 2);
    /// IPv6 workstation (enrolled, slot 6) and unenrolled IPv6 peers.
    pub const WS6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 3, 0, 0, 0, 0x20);
    pub const SRV6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 9, 0, 0, 0, 0x80);
    pub const DNS6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x53);
}

use cast::{DNS, DNS6, HOST_X, HOST_Y, PACS, PUMP, SRV, SRV6, WS, WS6};

pub fn tcp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, flags: u8) -> Vec<u8> {
    Ipv4::new(src, dst).frame(&Transport::tcp(sport, dport, flags))
}

pub fn udp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> Vec<u8> {
    Ipv4::new(src, dst).frame(&Transport::udp(sport, dport, b"0123456789abcdef"))
}

/// A UDP datagram long enough to fragment at 16 bytes: [first, later].
pub fn udp_fragments(src: Ipv4Addr, dst: Ipv4Addr, dport: u16, id: u16) -> [Vec<u8>; 2] {
    Ipv4::new(src, dst)
        .id(id)
        .fragments(&Transport::udp(40000, dport, &[0x5a; 48]), 16)
}

/// `n` extension headers (cycling through the kinds, fragment header atomic).
pub fn ext_chain(n: usize) -> Vec<Ext> {
    (0..n)
        .map(|i| match i % 4 {
            0 => Ext::hop_by_hop(),
            1 => Ext::dest_opts(),
            2 => Ext::routing(),
            _ => Ext::fragment(0, false, 0),
        })
        .collect()
}

pub fn with_exts(mut ip: Ipv6, exts: Vec<Ext>) -> Ipv6 {
    ip.ext.extend(exts);
    ip
}

/// The TCP SYN the truncation rows cut.
fn syn() -> Vec<u8> {
    tcp(WS, 40000, SRV, 443, TCP_SYN)
}

const L3: usize = 14;
const L4: usize = L3 + 20;

/// A UDP datagram to syslog split after destination options that follow the fragment
/// header: [first, later].
fn v6_fragments_with_dest_opts(id: u32) -> [Vec<u8>; 2] {
    Ipv6::new(WS6, SRV6).ext(Ext::hop_by_hop()).fragments_after(
        &[Ext::dest_opts()],
        &Transport::udp(40000, 514, &[0x44; 48]),
        24,
        id,
    )
}

/// Every malformed or adversarial frame of the case tables, named as the rows that judge
/// them, in the order replay.rs sends them (a first fragment before its later one).
pub fn frames() -> Vec<(&'static str, Vec<u8>)> {
    let [v6_first, v6_later] = v6_fragments_with_dest_opts(0x0bad_f00d);
    vec![
        (
            "ethernet header only, ipv4 ethertype",
            truncated(&syn(), L3),
        ),
        (
            "ipv4 fixed header cut (19 of 20 bytes)",
            truncated(&syn(), L3 + 19),
        ),
        (
            "ipv4 cut inside the options",
            truncated(
                &Ipv4::new(WS, SRV)
                    .options(&[1; 8])
                    .frame(&Transport::tcp(40000, 443, TCP_SYN)),
                L3 + 22,
            ),
        ),
        ("ipv4 cut at the end of its header", truncated(&syn(), L4)),
        ("ipv4 tcp cut inside tcp", truncated(&syn(), L4 + 10)),
        (
            "ipv4 tcp payload cut",
            truncated(
                &Ipv4::new(WS, SRV)
                    .frame(&Transport::tcp_with_payload(40000, 443, TCP_ACK, &[7; 100])),
                L4 + 20 + 4,
            ),
        ),
        (
            "tcp header cut by the ipv4 total length",
            Ipv4::new(WS, SRV).frame(&Transport::raw(IPPROTO_TCP, &syn()[L4..L4 + 10])),
        ),
        (
            "udp header cut by the ipv4 total length",
            Ipv4::new(WS, DNS).frame(&Transport::raw(IPPROTO_UDP, &[0xcf, 0x04, 0, 53])),
        ),
        (
            "icmp header cut by the ipv4 total length",
            Ipv4::new(WS, SRV).frame(&Transport::raw(IPPROTO_ICMP, &[8, 0])),
        ),
        (
            "sctp header cut by the ipv4 total length",
            Ipv4::new(WS, SRV).frame(&Transport::raw(
                IPPROTO_SCTP,
                &[0x9c, 0x41, 0x0b, 0x59, 0, 0, 0, 0],
            )),
        ),
        (
            "ipv6 fixed header cut (39 of 40 bytes)",
            truncated(
                &Ipv6::new(WS6, SRV6).frame(&Transport::udp(1, 2, &[])),
                L3 + 39,
            ),
        ),
        (
            "ipv6 cut at the end of its fixed header",
            truncated(
                &Ipv6::new(WS6, SRV6).frame(&Transport::udp(40000, 53, &[])),
                L3 + 40,
            ),
        ),
        (
            "ipv6 hop-by-hop header longer than the payload",
            Ipv6::new(WS6, SRV6).frame(&Transport::raw(
                IPPROTO_HOPOPTS,
                &[IPPROTO_UDP, 1, 1, 4, 0, 0, 0, 0],
            )),
        ),
        (
            "ipv6 fragment header cut",
            Ipv6::new(WS6, SRV6).frame(&Transport::raw(IPPROTO_FRAGMENT, &[IPPROTO_UDP, 0, 0, 1])),
        ),
        (
            "ipv6 extension header cut",
            truncated(
                &Ipv6::new(WS6, SRV6)
                    .ext(Ext::DestOpts { len8: 2 })
                    .frame(&Transport::udp(40000, 53, b"q")),
                L3 + 40 + 12,
            ),
        ),
        (
            "ipv6 tcp header cut by the payload length",
            Ipv6::new(WS6, SRV6).frame(&Transport::raw(
                IPPROTO_TCP,
                &[0x9c, 0x40, 0x01, 0xbb, 0, 0, 0, 1, 0, 0],
            )),
        ),
        (
            "ipv6 udp after an extension header, cut by the payload length",
            Ipv6::new(WS6, DNS6)
                .ext(Ext::hop_by_hop())
                .frame(&Transport::raw(IPPROTO_UDP, &[0x9c, 0x40, 0, 53])),
        ),
        (
            "icmpv6 header cut by the payload length",
            Ipv6::new(WS6, SRV6).frame(&Transport::raw(IPPROTO_ICMPV6, &[128])),
        ),
        (
            "ipv4 header length below 20 bytes (ihl 4)",
            Ipv4::new(WS, SRV)
                .ihl(4)
                .frame(&Transport::udp(40000, 53, b"q")),
        ),
        (
            "ipv4 header length beyond the total length (ihl 15, total 28)",
            Ipv4::new(WS, SRV)
                .ihl(15)
                .frame(&Transport::udp(40000, 53, &[])),
        ),
        (
            "ipv4 total length below the header length",
            Ipv4::new(WS, SRV)
                .total_len(10)
                .frame(&Transport::udp(40000, 53, b"q")),
        ),
        (
            "ipv4 total length beyond the frame",
            Ipv4::new(WS, SRV)
                .total_len(1000)
                .frame(&Transport::udp(40000, 53, b"q")),
        ),
        (
            "ipv6 payload length beyond the frame",
            Ipv6::new(WS6, SRV6)
                .payload_len(600)
                .frame(&Transport::udp(40000, 53, b"q")),
        ),
        (
            "ip version 6 under the ipv4 ethertype",
            Ipv4::new(WS, SRV)
                .version(6)
                .frame(&Transport::udp(40000, 53, b"q")),
        ),
        (
            "ip version 4 under the ipv6 ethertype",
            Ipv6::new(WS6, SRV6)
                .version(4)
                .frame(&Transport::udp(40000, 53, b"q")),
        ),
        (
            "ethernet padding after a short ipv4 udp packet",
            padded(
                &Ipv4::new(WS, DNS).frame(&Transport::udp(53124, 53, &[])),
                ETH_MIN_FRAME,
            ),
        ),
        (
            "ethernet padding after a short tagged ipv4 icmp packet",
            padded(
                &Ipv4::new(WS, SRV).frame_in(
                    &Ethernet::new().dot1q(30),
                    &Transport::Icmp {
                        icmp_type: 8,
                        code: 0,
                        rest: [0, 1, 0, 1],
                        payload: Vec::new(),
                    },
                ),
                ETH_MIN_FRAME,
            ),
        ),
        (
            "trailing bytes after an ipv6 packet",
            padded(
                &Ipv6::new(WS6, DNS6).frame(&Transport::udp(40123, 53, &[])),
                62 + 16,
            ),
        ),
        (
            "tcp header of 4 bytes",
            Ipv4::new(WS, SRV).frame(&Transport::raw(IPPROTO_TCP, &[0x9c, 0x40, 0x01, 0xbb])),
        ),
        (
            "ipv4 header length below 20 bytes (ihl 3) between two devices",
            Ipv4::new(WS, PACS)
                .ihl(3)
                .frame(&Transport::udp(40000, 104, b"q")),
        ),
        (
            "udp header of 2 bytes from the pump",
            Ipv4::new(PUMP, SRV).frame(&Transport::raw(IPPROTO_UDP, &[0x9c, 0x40])),
        ),
        (
            "udp header of 2 bytes to the pump",
            Ipv4::new(WS, PUMP).frame(&Transport::raw(IPPROTO_UDP, &[0x9c, 0x40])),
        ),
        (
            "ipv4 total length 9",
            Ipv4::new(WS, SRV)
                .total_len(9)
                .frame(&Transport::udp(40000, 53, b"q")),
        ),
        (
            "ipv4 header length below 20 bytes between unenrolled hosts",
            Ipv4::new(HOST_X, HOST_Y)
                .ihl(4)
                .frame(&Transport::udp(40000, 53, b"q")),
        ),
        (
            "three stacked vlan tags",
            Ipv4::new(WS, SRV).frame_in(
                &Ethernet::new().dot1ad(100).dot1q(10).dot1q(11),
                &Transport::tcp(40000, 443, TCP_SYN),
            ),
        ),
        (
            "three stacked vlan tags around udp",
            Ipv4::new(WS, SRV).frame_in(
                &Ethernet::new()
                    .tag(TPID_8021AD, 100)
                    .tag(TPID_8021Q, 10)
                    .tag(TPID_8021Q, 11),
                &Transport::udp(40000, 53, b"q"),
            ),
        ),
        (
            "vlan tag cut short",
            truncated(&Ethernet::new().dot1q(10).frame(ETHERTYPE_IPV4, &[]), 16),
        ),
        (
            "second vlan tag cut short",
            truncated(
                &Ethernet::new()
                    .dot1ad(100)
                    .dot1q(10)
                    .frame(ETHERTYPE_IPV4, &[]),
                20,
            ),
        ),
        (
            "ipv6 chain one header longer than MAX_IPV6_EXTENSIONS",
            with_exts(Ipv6::new(WS6, SRV6), ext_chain(MAX_IPV6_EXTENSIONS + 1))
                .frame(&Transport::udp(40000, 514, b"x")),
        ),
        (
            "ipv6 chain two headers longer than MAX_IPV6_EXTENSIONS",
            with_exts(Ipv6::new(WS6, SRV6), ext_chain(MAX_IPV6_EXTENSIONS + 2))
                .frame(&Transport::udp(40000, 514, b"x")),
        ),
        (
            "ipv6 chain of ten extension headers",
            with_exts(Ipv6::new(WS6, SRV6), ext_chain(10)).frame(&Transport::udp(40000, 514, b"x")),
        ),
        ("ipv6 headers past MAX_HEADER_OFFSET", {
            // One destination-options header long enough that the UDP header starts past
            // the bytes the parser looks into.
            let len8 = u8::try_from(MAX_HEADER_OFFSET / 8).expect("fits");
            let frame = Ipv6::new(WS6, SRV6)
                .ext(Ext::DestOpts { len8 })
                .frame(&Transport::udp(40000, 514, b"x"));
            assert!(frame.len() - 9 > MAX_HEADER_OFFSET);
            frame
        }),
        (
            "ipv4 later fragment without a first",
            udp_fragments(WS, SRV, 514, 0x4242)[1].clone(),
        ),
        (
            "ipv4 later fragment without a first between unenrolled hosts",
            udp_fragments(HOST_X, HOST_Y, 514, 3)[1].clone(),
        ),
        (
            "ipv4 later fragment without a first from the pump",
            udp_fragments(PUMP, SRV, 514, 3)[1].clone(),
        ),
        (
            "ipv4 later fragment without a first to the pump",
            udp_fragments(WS, PUMP, 514, 3)[1].clone(),
        ),
        (
            "ipv6 later fragment without a first",
            Ipv6::new(WS6, SRV6).fragments(&Transport::udp(40000, 514, &[0x33; 48]), 16, 5)[1]
                .clone(),
        ),
        (
            "ipv6 later fragment with destination options after the fragment header, without a first",
            v6_fragments_with_dest_opts(0x0bad_f00f)[1].clone(),
        ),
        (
            "ipv6 first fragment with destination options after the fragment header",
            v6_first,
        ),
        (
            "ipv6 later fragment with destination options after the fragment header",
            v6_later,
        ),
        (
            "udp from a server's port 53 without a request",
            udp(DNS, 53, WS, 53999),
        ),
    ]
}

/// The frame of [`frames`] named `name`.
pub fn frame(name: &str) -> Vec<u8> {
    frames()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, f)| f)
        .unwrap_or_else(|| panic!("no adversarial frame named {name:?}"))
}
