//! The per-CPU decision cache (`DECISIONS`): a direct-mapped array of [`Decision`]s by
//! the hash of the packet's key. An established flow, or a repeated violating one, is
//! decided by this one lookup: the cached decision stands while the CONFIG epoch, mode
//! and hour of the week (schedules' verdicts and learning change with it) it was made
//! under do, until its `valid_until_ns`. A stale or missing entry sends the packet to the
//! full judge, which caches what it decides. A hit reads nothing of the flow tables (a
//! random line of a large shared table per packet): a flow whose slot was given to
//! another is placed again when its decision is next judged, within `DECISION_TTL_NS`, and
//! what the entry held for it is dropped with the flow (`charge_pending` checks the tag).

use monitor_common::{
    Action, Reason,
    flow::{self, ServiceHint},
    flowtable::{
        DecisionPlace, decision_place, decision_place_of_words, decision_words, packet_key_words,
        request_bit, request_words,
    },
    maps::{
        DECISION_ICMP, DECISION_LOW_REQUEST, DECISION_OTHER, DECISION_PORTS, DECISION_REPLY,
        DECISION_SLOTS, DECISION_TCP, Decision, DecisionKey, RequestKey,
    },
    parse::{FragmentKind, IpPacket, TransportKind},
};

use crate::{
    Packet,
    account::{apply_held, charge_pending, note_station},
    maps::{DECISION_TAGS, DECISIONS, REQUEST_FILTER, REQUESTS},
};

/// A TCP handshake packet (it records the connection's server): judged every time.
pub const KIND_TCP_HANDSHAKE: u8 = 7;

/// No cached decision stands for the packet.
pub const MISS: u32 = u32::MAX;

/// What decided the packet's service, as its [`DecisionKey::kind`]. For UDP and SCTP from
/// the lower port to the higher this looks REQUESTS up (one lookup per such packet, as the
/// judge does), so that a cached decision never outlives the request it relied on.
#[inline(always)]
pub fn kind(packet: &Packet, ip: &IpPacket) -> u8 {
    match flow::service_hint(ip) {
        ServiceHint::Known(_) if ip.transport == TransportKind::Icmp => DECISION_ICMP,
        ServiceHint::Known(_) if ip.transport == TransportKind::Ports => DECISION_PORTS,
        ServiceHint::Known(_) => DECISION_OTHER,
        ServiceHint::Request(_) => DECISION_PORTS,
        ServiceHint::MaybeReply { .. } => {
            let key = flow::reply_key(ip);
            let seen = match may_be_requested(packet, &key)
                .then(|| REQUESTS.get_ptr(&key))
                .flatten()
            {
                // SAFETY: one field of a map value, read at once.
                Some(entry) => flow::request_is_fresh(unsafe { (*entry).seen_ns }, packet.now),
                None => false,
            };
            if seen {
                DECISION_REPLY
            } else {
                DECISION_LOW_REQUEST
            }
        }
        ServiceHint::TcpHandshake(_) => KIND_TCP_HANDSHAKE,
        ServiceHint::TcpEstablished { .. } => DECISION_TCP,
    }
}

/// Whether REQUESTS may hold a fresh entry for `key`: its mark in this period's or the
/// last period's generation of REQUEST_FILTER (both clear: it holds none, and the lookup,
/// a miss for every probe of a scan from the lower port, is skipped).
#[inline(always)]
fn may_be_requested(packet: &Packet, key: &RequestKey) -> bool {
    let (word, mask) = request_bit(key);
    let marked = |index: u32| match REQUEST_FILTER.get(index) {
        Some(bits) => bits & mask != 0,
        None => true,
    };
    let [now, last] = request_words(word, packet.now);
    marked(now) || marked(last)
}

/// Marks the request `key` in this period's generation of REQUEST_FILTER: before its
/// REQUESTS entry is written, so that no reader finds the entry without the mark.
#[inline(always)]
pub fn mark_request(packet: &Packet, key: &RequestKey) {
    let (word, mask) = request_bit(key);
    if let Some(bits) = REQUEST_FILTER.get_ptr_mut(request_words(word, packet.now)[0]) {
        crate::account::atomic_or(bits, mask);
    }
}

/// Whether the packet's decision may be cached: whole packets (fragments keep their first
/// fragment's record), not TCP handshakes (they record the connection), not frames a
/// capture cut (their verdict is no prediction).
#[inline(always)]
pub fn cacheable(packet: &Packet, ip: &IpPacket, kind: u8) -> bool {
    packet.judged() && ip.fragment == FragmentKind::Whole && kind != KIND_TCP_HANDSHAKE
}

/// The cache key of a packet of `kind`.
#[inline(always)]
pub fn key(ip: &IpPacket, kind: u8) -> DecisionKey {
    let (src_port, dst_port) = if ip.transport == TransportKind::Icmp {
        (u16::from(ip.icmp_type), 0)
    } else {
        (ip.src_port, ip.dst_port)
    };
    DecisionKey {
        src: ip.src,
        dst: ip.dst,
        src_port,
        dst_port,
        protocol: ip.protocol,
        kind,
        _pad: 0,
    }
}

/// The words of a packet's decision key (`DecisionKey` as five u64), read straight from
/// the parsed packet: the key itself is built only when the judge needs it.
#[inline(always)]
pub fn key_words(ip: &IpPacket, kind: u8) -> [u64; 5] {
    let (src_port, dst_port) = if ip.transport == TransportKind::Icmp {
        (u16::from(ip.icmp_type), 0)
    } else {
        (ip.src_port, ip.dst_port)
    };
    packet_key_words(&ip.src, &ip.dst, src_port, dst_port, ip.protocol, kind)
}

/// The cached decision for the key with words `key`, applied when it stands: events and
/// unenrolled addresses charged as the judge charges them, the packet held in the entry
/// itself for its flows, devices and reasons (`Decision::pending_packets`: this CPU's
/// cache line, no atomic adds to the shared flow tables and no writes to two more lines of
/// device counters; `account::charge_pending` charges them when the entry is replaced).
/// Its action and reason as `action | reason << 8`, else [`MISS`].
#[inline(always)]
pub fn decided(packet: &Packet, ip: &IpPacket, key: &[u64; 5]) -> u32 {
    let place = decision_place_of_words(key, packet.seed, DECISION_SLOTS);
    if tag(&place) != Some(place.tag) {
        return MISS;
    }
    let Some(entry) = DECISIONS.get_ptr_mut(place.slot) else {
        return MISS;
    };
    // SAFETY: this CPU's slot, written only by this CPU while the program runs.
    let entry: &mut Decision = unsafe { &mut *entry };
    let stored = decision_words(&entry.key);
    let same = ((stored[0] ^ key[0])
        | (stored[1] ^ key[1])
        | (stored[2] ^ key[2])
        | (stored[3] ^ key[3])
        | (stored[4] ^ key[4]))
        == 0;
    if !(same
        && entry.source_id == packet.source_id
        && entry.epoch == packet.epoch_tag
        && entry.config == packet.config_bits
        && entry.hour_of_week == packet.hour_of_week
        && packet.now < entry.valid_until_ns)
    {
        return MISS;
    }
    apply_held(packet, ip, entry);
    entry.pending_packets += 1;
    entry.pending_bytes += packet.len;
    entry.pending_last_ns = packet.now;
    // Spoof decisions are never cached: a cached source is enrolled only when it is its own.
    note_station(packet, &ip.src, entry.sides[0].slot, false);
    u32::from(entry.action) | u32::from(entry.reason) << 8
}

/// A hit's action and reason.
#[inline(always)]
pub fn verdict(found: u32) -> (Action, Reason) {
    (
        Action::try_from(found as u8).unwrap_or(Action::Pass),
        Reason::try_from((found >> 8) as u8).unwrap_or(Reason::Unenrolled),
    )
}

/// Caches `decision` (whose key is set, nothing pending) for the next packets with its
/// key, after charging what the entry it replaces held.
#[inline(always)]
pub fn remember(packet: &Packet, decision: &Decision) {
    let place = decision_place(&decision.key, packet.seed, DECISION_SLOTS);
    if let Some(entry) = DECISIONS.get_ptr_mut(place.slot) {
        // SAFETY: this CPU's slot.
        unsafe {
            charge_pending(&*entry);
            *entry = *decision;
        }
        set_tag(&place);
    }
}

/// The tag this CPU's decision cache holds for `place`'s slot.
#[inline(always)]
fn tag(place: &DecisionPlace) -> Option<u16> {
    let (entry, index) = place.tag_at();
    let tags = DECISION_TAGS.get(entry)?;
    tags.tags.get(index).copied()
}

/// Records that `place`'s slot now holds an entry with its tag.
#[inline(always)]
fn set_tag(place: &DecisionPlace) {
    let (entry, index) = place.tag_at();
    if let Some(tags) = DECISION_TAGS.get_ptr_mut(entry) {
        // SAFETY: this CPU's slot, written only by this CPU while the program runs.
        if let Some(tag) = unsafe { (*tags).tags.get_mut(index) } {
            *tag = place.tag;
        }
    }
}
