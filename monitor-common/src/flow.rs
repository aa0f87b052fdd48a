//! Which port is the service, and the flow keys a packet belongs to.
//!
//! The baseline records the *service* side of a conversation so that clients' ephemeral
//! ports never enter it, and a request and its reply share one key:
//! - TCP: the port that received the SYN (SYN without ACK: destination; SYN-ACK: source).
//!   Packets after the handshake use the server side remembered in `CONNTRACK`; when the
//!   handshake was not seen (the connection predates the monitor, or its entry was
//!   evicted) the UDP rule below applies.
//! - UDP and SCTP: the lower of the two ports is the service port, and the side that owns
//!   it is the server (DNS 53, NTP 123, syslog 514, DICOM 104 all sit below the ephemeral
//!   range). Equal ports (NTP 123↔123) make a symmetric flow.
//! - ICMP/ICMPv6 echo: the request type (8 or 128) with the requester as client; other
//!   ICMP types are symmetric with their type as the "port".
//! - Other protocols (GRE, ESP, OSPF, ...): port 0, symmetric.

use crate::maps::{ConnKey, Direction, FlowKey, SERVER_HIGH, SERVER_LOW};
use crate::parse::{Addr, IPPROTO_TCP, IpPacket, TCP_ACK, TCP_SYN, TransportKind};

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
}

const ICMP_ECHO_REPLY: u8 = 0;
const ICMP_ECHO_REQUEST: u8 = 8;
const ICMPV6_ECHO_REQUEST: u8 = 128;
const ICMPV6_ECHO_REPLY: u8 = 129;

/// The lower-port rule (UDP, SCTP, and TCP without a seen handshake).
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
        TransportKind::Ports => ServiceHint::Known(by_ports(src, dst)),
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

#[inline(always)]
fn addr_words(addr: &Addr) -> (u64, u64) {
    let [a0, a1, a2, a3, a4, a5, a6, a7, b0, b1, b2, b3, b4, b5, b6, b7] = *addr;
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
