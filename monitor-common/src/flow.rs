//! Which port is the service, and the flow keys a packet belongs to.
//!
//! The baseline records the *service* side of a conversation so that clients' ephemeral
//! ports never enter it, and a request and its reply share one key:
//! - TCP: the port that received the SYN (SYN without ACK: destination; SYN-ACK: source).
//!   Packets after the handshake use the server side remembered in `CONNTRACK`; when the
//!   handshake was not seen (the connection predates the monitor, or its entry was
//!   evicted) the lower of the two ports is the service ([`by_ports`]).
//! - UDP and SCTP: a packet from the higher port to the lower is a *request* to the lower
//!   port (DNS 53, NTP 123, syslog 514, DICOM 104 all sit below the ephemeral range), and
//!   is remembered in `REQUESTS` for [`REQUEST_TIMEOUT_NS`]. A packet from the lower port
//!   to the higher is a *reply* only while such a request is remembered; otherwise it is a
//!   request to the higher port, so a server's port alone opens nothing. Equal ports (NTP
//!   123↔123) make a symmetric flow, request or reply alike.
//! - ICMP/ICMPv6 echo: the request type (8 or 128) with the requester as client; other
//!   ICMP types are symmetric with their type as the "port".
//! - Other protocols (GRE, ESP, OSPF, ...): port 0, symmetric.

use crate::maps::{ConnKey, Direction, FlowKey, RequestKey, SERVER_HIGH, SERVER_LOW};
use crate::parse::{Addr, IPPROTO_TCP, IpPacket, TCP_ACK, TCP_SYN, TransportKind};

/// How long a UDP or SCTP request is remembered: replies may come until then. Twice
/// Linux conntrack's 30 s for an unreplied UDP flow; every further request refreshes it,
/// so a client that keeps talking keeps its replies.
pub const REQUEST_TIMEOUT_NS: u64 = 60_000_000_000;

/// Which address of a packet opened the conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Initiator {
    Src,
    Dst,
    Neither,
}

/// The service a packet belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Service {
    pub port: u16,
    pub initiator: Initiator,
}

/// What the packet alone tells about its service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceHint {
    /// Decided by this packet.
    Known(Service),
    /// A TCP handshake packet: decided, and worth remembering in `CONNTRACK`.
    TcpHandshake(Service),
    /// A TCP packet after the handshake: look up `CONNTRACK`, else [`by_ports`].
    TcpEstablished { src_port: u16, dst_port: u16 },
    /// UDP or SCTP from the higher port to the lower: a request to the lower port,
    /// remembered in `REQUESTS` (under [`request_key`]) when its verdict allows it.
    Request(Service),
    /// UDP or SCTP from the lower port to the higher: a reply if `REQUESTS` holds a fresh
    /// request under [`reply_key`], else a request to the higher port
    /// ([`reply_or_request`]).
    MaybeReply { src_port: u16, dst_port: u16 },
}

const ICMP_ECHO_REPLY: u8 = 0;
const ICMP_ECHO_REQUEST: u8 = 8;
const ICMPV6_ECHO_REQUEST: u8 = 128;
const ICMPV6_ECHO_REPLY: u8 = 129;

/// The lower-port rule: TCP without a seen handshake (and the request direction of UDP
/// and SCTP).
#[inline(always)]
pub fn by_ports(src_port: u16, dst_port: u16) -> Service {
    if src_port == dst_port {
        Service {
            port: src_port,
            initiator: Initiator::Neither,
        }
    } else if dst_port < src_port {
        Service {
            port: dst_port,
            initiator: Initiator::Src,
        }
    } else {
        Service {
            port: src_port,
            initiator: Initiator::Dst,
        }
    }
}

/// What the packet alone says about its service.
#[inline(always)]
pub fn service_hint(ip: &IpPacket) -> ServiceHint {
    let (src, dst) = (ip.src_port, ip.dst_port);
    match ip.transport {
        TransportKind::Ports if ip.protocol == IPPROTO_TCP => {
            if ip.tcp_flags & TCP_SYN == 0 {
                ServiceHint::TcpEstablished {
                    src_port: src,
                    dst_port: dst,
                }
            } else if ip.tcp_flags & TCP_ACK == 0 {
                ServiceHint::TcpHandshake(Service {
                    port: dst,
                    initiator: Initiator::Src,
                })
            } else {
                ServiceHint::TcpHandshake(Service {
                    port: src,
                    initiator: Initiator::Dst,
                })
            }
        }
        TransportKind::Ports if src == dst => ServiceHint::Known(by_ports(src, dst)),
        TransportKind::Ports if dst < src => ServiceHint::Request(Service {
            port: dst,
            initiator: Initiator::Src,
        }),
        TransportKind::Ports => ServiceHint::MaybeReply {
            src_port: src,
            dst_port: dst,
        },
        TransportKind::Icmp => ServiceHint::Known(match ip.icmp_type {
            ICMP_ECHO_REQUEST | ICMPV6_ECHO_REQUEST => Service {
                port: u16::from(ip.icmp_type),
                initiator: Initiator::Src,
            },
            ICMP_ECHO_REPLY => Service {
                port: u16::from(ICMP_ECHO_REQUEST),
                initiator: Initiator::Dst,
            },
            ICMPV6_ECHO_REPLY => Service {
                port: u16::from(ICMPV6_ECHO_REQUEST),
                initiator: Initiator::Dst,
            },
            other => Service {
                port: u16::from(other),
                initiator: Initiator::Neither,
            },
        }),
        TransportKind::Opaque => ServiceHint::Known(Service {
            port: 0,
            initiator: Initiator::Neither,
        }),
    }
}

/// The `REQUESTS` key of a request packet (its source is the client).
#[inline(always)]
pub fn request_key(ip: &IpPacket) -> RequestKey {
    RequestKey {
        client: ip.src,
        server: ip.dst,
        client_port: ip.src_port,
        server_port: ip.dst_port,
        protocol: ip.protocol,
        _pad1: 0,
        _pad2: 0,
    }
}

/// The `REQUESTS` key of the request a possible reply answers (its destination would be
/// the client).
#[inline(always)]
pub fn reply_key(ip: &IpPacket) -> RequestKey {
    RequestKey {
        client: ip.dst,
        server: ip.src,
        client_port: ip.dst_port,
        server_port: ip.src_port,
        protocol: ip.protocol,
        _pad1: 0,
        _pad2: 0,
    }
}

/// The service of a packet whose service needs no table: told by the packet itself, a
/// request to the lower port, or from the lower port without a fresh request (a request
/// to the higher port). `None` for TCP (CONNTRACK) and for UDP or SCTP from the lower
/// port with a fresh request (`request_seen`: a reply).
#[inline(always)]
pub fn untracked_service(ip: &IpPacket, request_seen: bool) -> Option<Service> {
    match service_hint(ip) {
        ServiceHint::Known(service) | ServiceHint::Request(service) => Some(service),
        ServiceHint::MaybeReply { src_port, dst_port } if !request_seen => {
            Some(reply_or_request(src_port, dst_port, false))
        }
        _ => None,
    }
}

/// Whether a request last seen at `seen_ns` still admits replies at `now_ns` (a time a
/// little ahead of `now_ns`, from another CPU's coarse clock, counts as fresh).
#[inline(always)]
pub fn request_is_fresh(seen_ns: u64, now_ns: u64) -> bool {
    now_ns.saturating_sub(seen_ns) < REQUEST_TIMEOUT_NS
}

/// The service of a UDP or SCTP packet from the lower port to the higher: the reply of
/// the request to `src_port` if one was seen (and is fresh), else a request to `dst_port`.
#[inline(always)]
pub fn reply_or_request(src_port: u16, dst_port: u16, request_seen: bool) -> Service {
    if request_seen {
        Service {
            port: src_port,
            initiator: Initiator::Dst,
        }
    } else {
        Service {
            port: dst_port,
            initiator: Initiator::Src,
        }
    }
}

#[inline(always)]
fn addr_words(addr: &Addr) -> (u64, u64) {
    let [
        a0,
        a1,
        a2,
        a3,
        a4,
        a5,
        a6,
        a7,
        b0,
        b1,
        b2,
        b3,
        b4,
        b5,
        b6,
        b7,
    ] = *addr;
    (
        u64::from_be_bytes([a0, a1, a2, a3, a4, a5, a6, a7]),
        u64::from_be_bytes([b0, b1, b2, b3, b4, b5, b6, b7]),
    )
}

/// The connection-tracking key of a TCP packet, and whether its source is the `low` side.
#[inline(always)]
pub fn conn_key(ip: &IpPacket, src_port: u16, dst_port: u16) -> (ConnKey, bool) {
    // Compared as integers: a byte-array comparison becomes a memcmp loop in BPF.
    let src_is_low = (addr_words(&ip.src), src_port) <= (addr_words(&ip.dst), dst_port);
    let key = if src_is_low {
        ConnKey {
            low: ip.src,
            high: ip.dst,
            low_port: src_port,
            high_port: dst_port,
        }
    } else {
        ConnKey {
            low: ip.dst,
            high: ip.src,
            low_port: dst_port,
            high_port: src_port,
        }
    };
    (key, src_is_low)
}

/// The `CONNTRACK` value that records `service`'s server side.
#[inline(always)]
pub fn conn_server(service: Service, src_is_low: bool) -> u8 {
    let server_is_src = service.initiator == Initiator::Dst;
    if server_is_src == src_is_low {
        SERVER_LOW
    } else {
        SERVER_HIGH
    }
}

/// The service of an established TCP packet whose connection entry says `server`.
#[inline(always)]
pub fn service_from_conn(server: u8, src_is_low: bool, src_port: u16, dst_port: u16) -> Service {
    let server_is_src = (server == SERVER_LOW) == src_is_low;
    if server_is_src {
        Service {
            port: src_port,
            initiator: Initiator::Dst,
        }
    } else {
        Service {
            port: dst_port,
            initiator: Initiator::Src,
        }
    }
}

/// Direction of the flow seen from the packet's source.
#[inline(always)]
pub fn src_direction(initiator: Initiator) -> Direction {
    match initiator {
        Initiator::Src => Direction::Outbound,
        Initiator::Dst => Direction::Inbound,
        Initiator::Neither => Direction::Symmetric,
    }
}

/// The flow key of `device` talking to `peer`, where `direction` is seen from the device.
#[inline(always)]
pub fn flow_key(
    device: Addr,
    peer: Addr,
    protocol: u8,
    service_port: u16,
    direction: Direction,
) -> FlowKey {
    FlowKey {
        device,
        peer,
        service_port,
        protocol,
        direction: direction as u8,
    }
}

#[cfg(test)]
mod tests {
    //! The service-port rule and the keys built from it.

    extern crate std;

    use super::*;
    use crate::parse::{
        IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_SCTP, IPPROTO_UDP, TCP_FIN, TCP_RST, ipv4_mapped,
    };
    use std::vec::Vec;

    const A: Addr = ipv4_mapped([10, 3, 0, 20]);
    const B: Addr = ipv4_mapped([10, 9, 0, 80]);

    fn ports(protocol: u8, src: Addr, sport: u16, dst: Addr, dport: u16, flags: u8) -> IpPacket {
        IpPacket {
            src,
            dst,
            src_port: sport,
            dst_port: dport,
            protocol,
            transport: TransportKind::Ports,
            tcp_flags: flags,
            ..IpPacket::EMPTY
        }
    }

    fn icmp(protocol: u8, src: Addr, dst: Addr, icmp_type: u8) -> IpPacket {
        IpPacket {
            src,
            dst,
            protocol,
            transport: TransportKind::Icmp,
            icmp_type,
            ..IpPacket::EMPTY
        }
    }

    fn known(ip: &IpPacket) -> Service {
        match service_hint(ip) {
            ServiceHint::Known(s) => s,
            other => panic!("{ip:?} gave {other:?}, expected a known service"),
        }
    }

    /// The service of a TCP packet, given what CONNTRACK holds (as the XDP program does).
    fn tcp_service(ip: &IpPacket, conntrack: &mut Option<(ConnKey, u8)>) -> Service {
        match service_hint(ip) {
            ServiceHint::TcpHandshake(service) => {
                let (key, src_is_low) = conn_key(ip, ip.src_port, ip.dst_port);
                *conntrack = Some((key, conn_server(service, src_is_low)));
                service
            }
            ServiceHint::TcpEstablished { src_port, dst_port } => {
                let (key, src_is_low) = conn_key(ip, src_port, dst_port);
                match conntrack {
                    Some((k, server)) if *k == key => {
                        service_from_conn(*server, src_is_low, src_port, dst_port)
                    }
                    _ => by_ports(src_port, dst_port),
                }
            }
            other => panic!("TCP packet {ip:?} gave {other:?}"),
        }
    }

    /// The key of the packet's flow seen from `device`, as the XDP program builds it.
    fn key_from(device: Addr, ip: &IpPacket, service: Service) -> FlowKey {
        let dir = src_direction(service.initiator);
        if device == ip.src {
            flow_key(ip.src, ip.dst, ip.protocol, service.port, dir)
        } else {
            flow_key(ip.dst, ip.src, ip.protocol, service.port, dir.reversed())
        }
    }

    #[test]
    fn lower_port_is_the_service() {
        assert_eq!(
            by_ports(53124, 53),
            Service {
                port: 53,
                initiator: Initiator::Src
            }
        );
        assert_eq!(
            by_ports(53, 53124),
            Service {
                port: 53,
                initiator: Initiator::Dst
            }
        );
        assert_eq!(
            by_ports(123, 123),
            Service {
                port: 123,
                initiator: Initiator::Neither
            }
        );
        assert_eq!(
            by_ports(0, 1),
            Service {
                port: 0,
                initiator: Initiator::Dst
            }
        );
        assert_eq!(
            by_ports(65535, 65534),
            Service {
                port: 65534,
                initiator: Initiator::Src
            }
        );
    }

    #[test]
    fn tcp_syn_and_syn_ack_decide_the_server() {
        // SYN to a port above the client's: still the destination's.
        let syn = ports(IPPROTO_TCP, A, 1000, B, 50000, TCP_SYN);
        assert_eq!(
            service_hint(&syn),
            ServiceHint::TcpHandshake(Service {
                port: 50000,
                initiator: Initiator::Src
            })
        );
        let syn_ack = ports(IPPROTO_TCP, B, 50000, A, 1000, TCP_SYN | TCP_ACK);
        assert_eq!(
            service_hint(&syn_ack),
            ServiceHint::TcpHandshake(Service {
                port: 50000,
                initiator: Initiator::Dst
            })
        );
        for flags in [TCP_ACK, TCP_ACK | TCP_FIN, TCP_RST, TCP_RST | TCP_ACK, 0] {
            let p = ports(IPPROTO_TCP, A, 1000, B, 50000, flags);
            assert_eq!(
                service_hint(&p),
                ServiceHint::TcpEstablished {
                    src_port: 1000,
                    dst_port: 50000
                },
                "flags {flags:#x}"
            );
        }
    }

    /// The service of a UDP or SCTP packet given the requests remembered so far (and
    /// remembering this one if it is a request), as the XDP program does with REQUESTS
    /// for requests its verdict allows. Times in seconds.
    fn udp_service(ip: &IpPacket, requests: &mut Vec<(RequestKey, u64)>, now_s: u64) -> Service {
        let now = now_s * 1_000_000_000;
        match service_hint(ip) {
            ServiceHint::Known(service) => service,
            ServiceHint::Request(service) => {
                let key = request_key(ip);
                requests.retain(|(k, _)| *k != key);
                requests.push((key, now));
                service
            }
            ServiceHint::MaybeReply { src_port, dst_port } => {
                let key = reply_key(ip);
                let seen = requests
                    .iter()
                    .any(|(k, at)| *k == key && request_is_fresh(*at, now));
                reply_or_request(src_port, dst_port, seen)
            }
            other => panic!("{ip:?} gave {other:?}, expected a UDP or SCTP hint"),
        }
    }

    #[test]
    fn udp_and_sctp_requests_go_to_the_lower_port() {
        for protocol in [IPPROTO_UDP, IPPROTO_SCTP] {
            // SYN bits mean nothing outside TCP.
            let p = ports(protocol, A, 40000, B, 2905, TCP_SYN);
            assert_eq!(
                service_hint(&p),
                ServiceHint::Request(Service {
                    port: 2905,
                    initiator: Initiator::Src
                })
            );
            let back = ports(protocol, B, 2905, A, 40000, 0);
            assert_eq!(
                service_hint(&back),
                ServiceHint::MaybeReply {
                    src_port: 2905,
                    dst_port: 40000
                }
            );
            assert_eq!(reply_key(&back), request_key(&p), "{protocol}");
            // Equal ports: symmetric, no request needed.
            let ntp = ports(protocol, A, 123, B, 123, 0);
            assert_eq!(
                service_hint(&ntp),
                ServiceHint::Known(Service {
                    port: 123,
                    initiator: Initiator::Neither
                })
            );
        }
    }

    #[test]
    fn udp_from_a_service_port_is_a_reply_only_after_a_request() {
        for protocol in [IPPROTO_UDP, IPPROTO_SCTP] {
            let mut requests = Vec::new();
            let reply = ports(protocol, B, 53, A, 53124, 0);
            // No request seen: a request to the device's (high) port 53124.
            assert_eq!(
                udp_service(&reply, &mut requests, 100),
                Service {
                    port: 53124,
                    initiator: Initiator::Src
                }
            );
            let request = ports(protocol, A, 53124, B, 53, 0);
            assert_eq!(
                udp_service(&request, &mut requests, 100),
                Service {
                    port: 53,
                    initiator: Initiator::Src
                }
            );
            let as_reply = Service {
                port: 53,
                initiator: Initiator::Dst,
            };
            assert_eq!(udp_service(&reply, &mut requests, 100), as_reply);
            assert_eq!(udp_service(&reply, &mut requests, 159), as_reply);
            // Another client port, another server, another protocol: no request of theirs.
            for other in [
                ports(protocol, B, 53, A, 53125, 0),
                ports(protocol, A, 53, A, 53124, 0),
                ports(
                    if protocol == IPPROTO_UDP {
                        IPPROTO_SCTP
                    } else {
                        IPPROTO_UDP
                    },
                    B,
                    53,
                    A,
                    53124,
                    0,
                ),
            ] {
                assert_eq!(
                    udp_service(&other, &mut requests, 100).initiator,
                    Initiator::Src,
                    "{other:?}"
                );
            }
            // The request expires after REQUEST_TIMEOUT_NS; a new one renews it.
            assert_eq!(
                udp_service(&reply, &mut requests, 160),
                Service {
                    port: 53124,
                    initiator: Initiator::Src
                }
            );
            udp_service(&request, &mut requests, 200);
            assert_eq!(udp_service(&reply, &mut requests, 259), as_reply);
        }
    }

    #[test]
    fn request_freshness() {
        let s = 1_000_000_000;
        assert_eq!(REQUEST_TIMEOUT_NS, 60 * s);
        assert!(request_is_fresh(10 * s, 10 * s));
        assert!(request_is_fresh(10 * s, 70 * s - 1));
        assert!(!request_is_fresh(10 * s, 70 * s));
        // Seen by a CPU whose coarse clock is a little ahead.
        assert!(request_is_fresh(10 * s + 5, 10 * s));
        assert!(!request_is_fresh(0, u64::MAX));
    }

    #[test]
    fn icmp_echo_request_and_reply_share_the_request_type() {
        assert_eq!(
            known(&icmp(IPPROTO_ICMP, A, B, 8)),
            Service {
                port: 8,
                initiator: Initiator::Src
            }
        );
        assert_eq!(
            known(&icmp(IPPROTO_ICMP, B, A, 0)),
            Service {
                port: 8,
                initiator: Initiator::Dst
            }
        );
        assert_eq!(
            known(&icmp(IPPROTO_ICMPV6, A, B, 128)),
            Service {
                port: 128,
                initiator: Initiator::Src
            }
        );
        assert_eq!(
            known(&icmp(IPPROTO_ICMPV6, B, A, 129)),
            Service {
                port: 128,
                initiator: Initiator::Dst
            }
        );
        // Other types are symmetric, by type.
        assert_eq!(
            known(&icmp(IPPROTO_ICMP, A, B, 3)),
            Service {
                port: 3,
                initiator: Initiator::Neither
            }
        );
        assert_eq!(
            known(&icmp(IPPROTO_ICMPV6, A, B, 135)),
            Service {
                port: 135,
                initiator: Initiator::Neither
            }
        );
    }

    #[test]
    fn opaque_packets_are_symmetric_port_0() {
        let gre = IpPacket {
            src: A,
            dst: B,
            protocol: 47,
            ..IpPacket::EMPTY
        };
        assert_eq!(
            known(&gre),
            Service {
                port: 0,
                initiator: Initiator::Neither
            }
        );
    }

    #[test]
    fn conn_key_is_the_same_both_ways() {
        let out = ports(IPPROTO_TCP, A, 1000, B, 50000, TCP_ACK);
        let back = ports(IPPROTO_TCP, B, 50000, A, 1000, TCP_ACK);
        let (k1, low1) = conn_key(&out, 1000, 50000);
        let (k2, low2) = conn_key(&back, 50000, 1000);
        assert_eq!(k1, k2);
        assert_ne!(low1, low2);
        assert!(low1, "10.3.0.20 sorts below 10.9.0.80");
        assert_eq!(
            (k1.low, k1.low_port, k1.high, k1.high_port),
            (A, 1000, B, 50000)
        );
        // The same address on both sides (a host talking to itself): ports decide.
        let own = ports(IPPROTO_TCP, A, 6000, A, 5000, TCP_ACK);
        let (k, src_is_low) = conn_key(&own, 6000, 5000);
        assert!(!src_is_low);
        assert_eq!((k.low_port, k.high_port), (5000, 6000));
    }

    #[test]
    fn established_tcp_follows_the_handshake_in_every_order() {
        // Client on either side of the address order, server port above or below the client's.
        for (client, server) in [(A, B), (B, A)] {
            for (cport, sport) in [(1000u16, 50000u16), (51000, 443)] {
                let mut conntrack = None;
                let syn = ports(IPPROTO_TCP, client, cport, server, sport, TCP_SYN);
                let syn_ack = ports(IPPROTO_TCP, server, sport, client, cport, TCP_SYN | TCP_ACK);
                let ack = ports(IPPROTO_TCP, client, cport, server, sport, TCP_ACK);
                let data = ports(IPPROTO_TCP, server, sport, client, cport, TCP_ACK);
                let expected = key_from(client, &syn, tcp_service(&syn, &mut conntrack));
                assert_eq!(expected.service_port, sport);
                assert_eq!(expected.direction, Direction::Outbound as u8);
                for p in [syn_ack, ack, data] {
                    let service = tcp_service(&p, &mut conntrack);
                    assert_eq!(service.port, sport, "{p:?}");
                    assert_eq!(key_from(client, &p, service), expected, "{p:?}");
                }
                // Without the handshake, the lower-port rule: right only for low server ports.
                let mut empty = None;
                let guessed = tcp_service(&ack, &mut empty);
                assert_eq!(guessed.port, sport.min(cport));
            }
        }
    }

    #[test]
    fn conn_server_round_trips() {
        for server_is_src in [true, false] {
            for src_is_low in [true, false] {
                let initiator = if server_is_src {
                    Initiator::Dst
                } else {
                    Initiator::Src
                };
                let server = conn_server(Service { port: 1, initiator }, src_is_low);
                let back = service_from_conn(server, src_is_low, 7, 9);
                let want = if server_is_src {
                    Service {
                        port: 7,
                        initiator: Initiator::Dst,
                    }
                } else {
                    Service {
                        port: 9,
                        initiator: Initiator::Src,
                    }
                };
                assert_eq!(
                    back, want,
                    "server_is_src {server_is_src}, src_is_low {src_is_low}"
                );
                // The other direction of the same connection.
                let reverse = service_from_conn(server, !src_is_low, 9, 7);
                assert_eq!(reverse.port, want.port);
                assert_ne!(reverse.initiator, want.initiator);
            }
        }
        assert_ne!(SERVER_LOW, SERVER_HIGH);
    }

    #[test]
    fn request_and_reply_have_one_key_per_device() {
        let pairs = [
            (
                ports(IPPROTO_UDP, A, 53124, B, 53, 0),
                ports(IPPROTO_UDP, B, 53, A, 53124, 0),
            ),
            (
                ports(IPPROTO_UDP, A, 123, B, 123, 0),
                ports(IPPROTO_UDP, B, 123, A, 123, 0),
            ),
            (
                ports(IPPROTO_SCTP, A, 40001, B, 3868, 0),
                ports(IPPROTO_SCTP, B, 3868, A, 40001, 0),
            ),
            (icmp(IPPROTO_ICMP, A, B, 8), icmp(IPPROTO_ICMP, B, A, 0)),
            (
                icmp(IPPROTO_ICMPV6, A, B, 128),
                icmp(IPPROTO_ICMPV6, B, A, 129),
            ),
        ];
        let service = |ip: &IpPacket, requests: &mut Vec<(RequestKey, u64)>| {
            if ip.transport == TransportKind::Ports {
                udp_service(ip, requests, 1)
            } else {
                known(ip)
            }
        };
        for (request, reply) in pairs {
            for device in [A, B] {
                // The reply follows its request, as on the wire.
                let mut requests = Vec::new();
                let k1 = key_from(device, &request, service(&request, &mut requests));
                let k2 = key_from(device, &reply, service(&reply, &mut requests));
                assert_eq!(k1, k2, "{request:?} / {reply:?} seen from {device:?}");
                assert_eq!(k1.device, device);
                assert_ne!(
                    k1.service_port, 53124,
                    "the client's port never makes the key"
                );
                assert_ne!(
                    k1.service_port, 40001,
                    "the client's port never makes the key"
                );
            }
            // The two devices see opposite directions (or both symmetric).
            let mut requests = Vec::new();
            let from_a = key_from(A, &request, service(&request, &mut requests));
            let from_b = key_from(B, &request, service(&request, &mut requests));
            let dir_a = Direction::try_from(from_a.direction).expect("valid direction");
            assert_eq!(from_b.direction, dir_a.reversed() as u8);
        }
    }

    #[test]
    fn src_direction_and_flow_key() {
        assert_eq!(src_direction(Initiator::Src), Direction::Outbound);
        assert_eq!(src_direction(Initiator::Dst), Direction::Inbound);
        assert_eq!(src_direction(Initiator::Neither), Direction::Symmetric);
        let k = flow_key(A, B, IPPROTO_UDP, 514, Direction::Inbound);
        assert_eq!(
            k,
            FlowKey {
                device: A,
                peer: B,
                service_port: 514,
                protocol: IPPROTO_UDP,
                direction: Direction::Inbound as u8
            }
        );
    }
}
