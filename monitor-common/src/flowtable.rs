//! Where a flow lives in a flow table, and where a packet's decision lives in the
//! per-CPU decision cache: hashes of keys, computed the same way by the XDP program and
//! by the controller that reads the tables.
//!
//! A flow table (`FLOWS`, `UNENROLLED_FLOWS`) is an array of [`FlowSet`]s of
//! [`FLOW_WAYS`](crate::maps::FLOW_WAYS) slots: a key's hash picks the set, and its [`tag`] (the hash, never 0)
//! marks the slot it took there. A new flow takes an empty slot of its set, else the one
//! judged least recently: an LRU within four slots, where the kernel's LRU hash evicts
//! across the whole table. A flow is known by its index, `set * FLOW_WAYS + way`. The tag, 64 bits of a hash seeded per datapath, tells flows apart without
//! comparing their keys: nobody without the seed can choose a key whose tag is another's.

use crate::{
    maps::{
        DECISION_TAGS_PER_ENTRY, DecisionKey, ENROLLED_ADDRS_WORDS, FlowKey, FlowSet,
        REQUEST_FILTER_GENERATIONS, REQUEST_FILTER_PERIOD_SHIFT, REQUEST_FILTER_WORDS, RequestKey,
        SERVICE_FILTER_BITS, SERVICE_FILTERS_ENTRIES, ServiceFilter,
    },
    parse::Addr,
};

const K1: u64 = 0x9e37_79b9_7f4a_7c15;
const K2: u64 = 0xc2b2_ae3d_27d4_eb4f;

#[inline(always)]
fn mix(h: u64, word: u64) -> u64 {
    (h ^ word).wrapping_mul(K1)
}

#[inline(always)]
fn finish(h: u64) -> u64 {
    let h = (h ^ (h >> 31)).wrapping_mul(K2);
    h ^ (h >> 29)
}

/// An address as two u64 words, to compare it without a byte loop. Built from its bytes
/// (not an unaligned read, which BPF can only do byte by byte): where the address lies at
/// an 8-byte boundary of an aligned struct (the parsed frame, a map value) LLVM loads each
/// half whole.
#[inline(always)]
pub fn addr_halves(addr: &Addr) -> (u64, u64) {
    (addr_word(addr, 0), addr_word(addr, 8))
}

/// The eight bytes of `addr` from `at` (0 or 8) as a native-endian u64.
#[inline(always)]
fn addr_word(addr: &Addr, at: usize) -> u64 {
    let mut bytes = [0u8; 8];
    let mut i = 0;
    while i < 8 {
        bytes[i] = addr[at + i];
        i += 1;
    }
    u64::from_ne_bytes(bytes)
}

/// [`addr_halves`] of an address known to be 8-byte aligned, in two loads (BPF has no
/// unaligned loads: where LLVM cannot see an address's alignment, which is anywhere
/// behind a map value, `addr_halves` reads it byte by byte).
///
/// # Safety
/// `addr` must lie at an 8-byte aligned address.
#[inline(always)]
pub unsafe fn aligned_addr_halves(addr: &Addr) -> (u64, u64) {
    // SAFETY: 16 bytes, aligned to 8 as the caller promises.
    let words = unsafe { *(addr.as_ptr() as *const [u64; 2]) };
    (words[0], words[1])
}

/// The word of `ENROLLED_ADDRS` and the bit in it that mark `addr` as enrolled: set by
/// the controller before the address's DEVICES entry is written (and cleared only when a
/// new policy replaces the whole set), so a clear bit proves the address is not enrolled
/// and a spoofed flood's or a scan's new addresses skip the DEVICES lookup (a miss).
#[inline(always)]
pub fn enrolled_bit(addr: &Addr) -> (usize, u64) {
    enrolled_bit_of_halves(addr_halves(addr))
}

/// [`enrolled_bit`] of an address given as its [`addr_halves`].
#[inline(always)]
pub fn enrolled_bit_of_halves((low, high): (u64, u64)) -> (usize, u64) {
    let mut h = mix(K1, low);
    h = finish(mix(h, high));
    (
        ((h >> 6) % u64::from(ENROLLED_ADDRS_WORDS)) as usize,
        1 << (h & 63),
    )
}

/// The bit of `REQUEST_FILTER` that marks the request `key` (the word within a
/// generation, and the mask).
#[inline(always)]
pub fn request_bit(key: &RequestKey) -> (u32, u64) {
    // SAFETY: RequestKey is repr(C), 40 bytes with explicit padding, 8-byte aligned.
    let w = unsafe { *(key as *const RequestKey as *const [u64; 5]) };
    let mut h = mix(K2, w[0]);
    h = mix(h, w[1]);
    h = mix(h, w[2]);
    h = mix(h, w[3]);
    h = finish(mix(h, w[4]));
    (
        ((h >> 6) % u64::from(REQUEST_FILTER_WORDS)) as u32,
        1 << (h & 63),
    )
}

/// The period of `REQUEST_FILTER` at `now_ns` (coarse monotonic).
#[inline(always)]
pub const fn request_period(now_ns: u64) -> u64 {
    now_ns >> REQUEST_FILTER_PERIOD_SHIFT
}

/// The generation period `period` marks, as the index of its first word.
#[inline(always)]
pub const fn request_generation(period: u64) -> u32 {
    (period % REQUEST_FILTER_GENERATIONS as u64) as u32 * REQUEST_FILTER_WORDS
}

/// The words of `REQUEST_FILTER` that say whether a request of word `word` may have been
/// remembered within a request's freshness of `now_ns`: this period's generation's and
/// the last one's. Both clear: REQUESTS holds no fresh entry for it, and a packet that
/// may be its reply skips the lookup. A request is marked (this period's generation)
/// before its REQUESTS entry is written.
#[inline(always)]
pub const fn request_words(word: u32, now_ns: u64) -> [u32; 2] {
    let period = request_period(now_ns);
    [
        request_generation(period) + word,
        request_generation(period.wrapping_sub(1)) + word,
    ]
}

/// The generation the controller clears at `now_ns` (its first word), if any: the next
/// period's, in the first half of a period only, so that no CPU (whose coarse clock may
/// be a tick behind or ahead) marks or reads it meanwhile. Its marks were made two
/// periods ago at least, by requests no longer fresh.
#[inline(always)]
pub const fn stale_request_generation(now_ns: u64) -> Option<(u64, u32)> {
    let half = 1u64 << (REQUEST_FILTER_PERIOD_SHIFT - 1);
    let period = request_period(now_ns);
    if now_ns & ((1u64 << REQUEST_FILTER_PERIOD_SHIFT) - 1) >= half {
        return None;
    }
    Some((period, request_generation(period + 1)))
}

/// Where a device's baseline services are marked: the `SERVICE_FILTERS` entry of the
/// device address of `key` (addresses that share an entry share their marks).
#[inline(always)]
pub fn service_filter_index(key: &FlowKey) -> u32 {
    let w = flow_words(key);
    service_filter_index_of_words(w[0], w[1], w[2], w[3])
}

/// [`service_filter_index`] of the keys of the device at `addr`.
#[inline(always)]
pub fn device_service_filter_index(addr: &Addr) -> u32 {
    let word = |at: usize| u32::from_ne_bytes([addr[at], addr[at + 1], addr[at + 2], addr[at + 3]]);
    service_filter_index_of_words(word(0), word(4), word(8), word(12))
}

#[inline(always)]
fn service_filter_index_of_words(w0: u32, w1: u32, w2: u32, w3: u32) -> u32 {
    let mut h = mix(K2, u64::from(w0) | u64::from(w1) << 32);
    h = mix(h, u64::from(w2) | u64::from(w3) << 32);
    (finish(h) % u64::from(SERVICE_FILTERS_ENTRIES)) as u32
}

/// The word of a flow key that holds its service (`flow_words(key)[8]`: its service port,
/// protocol and direction, as `FlowKey` lays them out), without the key.
#[inline(always)]
pub fn service_word(service_port: u16, protocol: u8, direction: u8) -> u32 {
    let [low, high] = service_port.to_ne_bytes();
    u32::from_ne_bytes([low, high, protocol, direction])
}

/// The word and bit of a [`ServiceFilter`] that mark `key`'s protocol, service port and
/// direction (not its peer: a scan to new ports misses, one over new peers does not).
#[inline(always)]
pub fn service_bit(key: &FlowKey) -> (usize, u64) {
    service_bit_of_word(flow_words(key)[8])
}

/// [`service_bit`] of the keys whose service word ([`service_word`]) is `service`.
#[inline(always)]
pub fn service_bit_of_word(service: u32) -> (usize, u64) {
    let bit = (u64::from(service).wrapping_mul(K1) >> 32) % SERVICE_FILTER_BITS;
    ((bit / 64) as usize, 1 << (bit % 64))
}

/// Whether the baseline may hold `key`, by its device's filter: false means it does not
/// (every entry's bit is set before the entry is added, and bits are never cleared), so
/// the baseline need not be looked up.
#[inline(always)]
pub fn may_be_in_baseline(filter: &ServiceFilter, key: &FlowKey) -> bool {
    may_have_service(filter, flow_words(key)[8])
}

/// [`may_be_in_baseline`] of the device's keys whose service word is `service`.
#[inline(always)]
pub fn may_have_service(filter: &ServiceFilter, service: u32) -> bool {
    let (word, mask) = service_bit_of_word(service);
    match filter.words.get(word) {
        Some(bits) => bits & mask != 0,
        None => true,
    }
}

/// The hash of a flow key, with the datapath's seed (`Config::hash_seed`).
#[inline(always)]
pub fn flow_hash(key: &FlowKey, seed: u32) -> u64 {
    let w = flow_words(key);
    let mut h = u64::from(seed).wrapping_mul(K2);
    h = mix(h, u64::from(w[0]) | u64::from(w[1]) << 32);
    h = mix(h, u64::from(w[2]) | u64::from(w[3]) << 32);
    h = mix(h, u64::from(w[4]) | u64::from(w[5]) << 32);
    h = mix(h, u64::from(w[6]) | u64::from(w[7]) << 32);
    h = mix(h, u64::from(w[8]));
    finish(h)
}

/// A flow key as the nine 32-bit words it is made of: compared and hashed a word at a
/// time (in BPF a byte-array comparison is a byte loop, or a `memcmp` call it has not).
#[inline(always)]
pub fn flow_words(key: &FlowKey) -> [u32; 9] {
    const _: () = assert!(core::mem::size_of::<FlowKey>() == 36);
    const _: () = assert!(core::mem::align_of::<FlowKey>() == 4);
    // SAFETY: FlowKey is repr(C), 36 bytes without padding and 4-byte aligned.
    unsafe { *(key as *const FlowKey as *const [u32; 9]) }
}

/// Whether two flow keys are equal, compared a word at a time.
#[inline(always)]
pub fn same_flow(a: &FlowKey, b: &FlowKey) -> bool {
    let (a, b) = (flow_words(a), flow_words(b));
    let mut diff = 0;
    for i in 0..9 {
        diff |= a[i] ^ b[i];
    }
    diff == 0
}

/// A decision key as its five 64-bit words.
#[inline(always)]
pub fn decision_words(key: &DecisionKey) -> [u64; 5] {
    const _: () = assert!(core::mem::size_of::<DecisionKey>() == 40);
    const _: () = assert!(core::mem::align_of::<DecisionKey>() == 8);
    // SAFETY: DecisionKey is repr(C), 40 bytes with explicit padding, 8-byte aligned.
    unsafe { *(key as *const DecisionKey as *const [u64; 5]) }
}

/// Whether two decision keys are equal, compared a word at a time.
#[inline(always)]
pub fn same_decision_key(a: &DecisionKey, b: &DecisionKey) -> bool {
    let (a, b) = (decision_words(a), decision_words(b));
    ((a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3]) | (a[4] ^ b[4])) == 0
}

/// The tag a flow with hash `hash` marks its slot with: never 0 (an empty slot).
#[inline(always)]
pub const fn tag(hash: u64) -> u64 {
    hash | 1
}

/// The set a flow with hash `hash` lives in, in a table of `sets` (a power of two).
#[inline(always)]
pub const fn set_of(hash: u64, sets: u32) -> u32 {
    (hash >> 32) as u32 & (sets - 1)
}

/// Whether way `way` of a set read from a table holds a whole flow: taken (tag not 0)
/// and its key is the one its tag was made from (the XDP program writes the tag last, so
/// a slot being taken while it is read shows the tag of another key, or 0).
pub fn way_holds_flow(set: &FlowSet, way: usize, seed: u32) -> bool {
    let tag_now = set.tags[way];
    tag_now != 0 && tag_now == tag(flow_hash(&set.slots[way].key, seed))
}

/// The slot of the per-CPU decision cache a packet with `key` uses, in a cache of
/// `slots` (a power of two).
#[inline(always)]
pub fn decision_slot(key: &DecisionKey, seed: u32, slots: u32) -> u32 {
    decision_place(key, seed, slots).slot
}

/// The [`DecisionPlace`] of `key`, in a cache of `slots` (a power of two).
#[inline(always)]
pub fn decision_place(key: &DecisionKey, seed: u32, slots: u32) -> DecisionPlace {
    decision_place_of_words(&decision_words(key), seed, slots)
}

/// The words of the decision key a packet has (as [`decision_words`] gives them for the
/// key built from the same fields), without building the key.
#[inline(always)]
pub fn packet_key_words(
    src: &crate::parse::Addr,
    dst: &crate::parse::Addr,
    src_port: u16,
    dst_port: u16,
    protocol: u8,
    kind: u8,
) -> [u64; 5] {
    [
        addr_word(src, 0),
        addr_word(src, 8),
        addr_word(dst, 0),
        addr_word(dst, 8),
        // Little-endian, as the key is laid out: ports, protocol, kind, padding.
        u64::from(src_port)
            | u64::from(dst_port) << 16
            | u64::from(protocol) << 32
            | u64::from(kind) << 40,
    ]
}

/// Where a packet's decision is cached: its slot of the per-CPU decision cache and its
/// tag there (`DecisionTags`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecisionPlace {
    pub slot: u32,
    /// Never 0 (the tag of a slot not written).
    pub tag: u16,
}

impl DecisionPlace {
    /// The `DECISION_TAGS` entry holding this slot's tag, and the tag's index in it.
    #[inline(always)]
    pub const fn tag_at(&self) -> (u32, usize) {
        (
            self.slot / DECISION_TAGS_PER_ENTRY,
            (self.slot % DECISION_TAGS_PER_ENTRY) as usize,
        )
    }
}

/// The [`DecisionPlace`] of a key's words, in a cache of `slots` (a power of two).
#[inline(always)]
pub fn decision_place_of_words(w: &[u64; 5], seed: u32, slots: u32) -> DecisionPlace {
    let h = decision_hash_of_words(w, seed);
    DecisionPlace {
        slot: (h >> 32) as u32 & (slots - 1),
        tag: (h as u16).max(1),
    }
}

/// The hash of a decision key, with the datapath's seed.
#[inline(always)]
pub fn decision_hash(key: &DecisionKey, seed: u32) -> u64 {
    decision_hash_of_words(&decision_words(key), seed)
}

#[inline(always)]
fn decision_hash_of_words(w: &[u64; 5], seed: u32) -> u64 {
    let mut h = u64::from(seed).wrapping_mul(K2);
    h = mix(h, w[0]);
    h = mix(h, w[1]);
    h = mix(h, w[2]);
    h = mix(h, w[3]);
    h = mix(h, w[4]);
    finish(h)
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use crate::{maps::FLOW_WAYS, parse::ipv4_mapped};
    use std::{collections::BTreeMap, vec};

    fn key(device: [u8; 4], peer: [u8; 4], port: u16) -> FlowKey {
        FlowKey {
            device: ipv4_mapped(device),
            peer: ipv4_mapped(peer),
            service_port: port,
            protocol: 6,
            direction: 1,
        }
    }

    #[test]
    fn every_field_of_a_flow_key_moves_its_hash() {
        let base = key([10, 1, 0, 1], [10, 2, 0, 1], 443);
        let mut variants = vec![
            key([10, 1, 0, 2], [10, 2, 0, 1], 443),
            key([10, 1, 0, 1], [10, 2, 0, 2], 443),
            key([10, 1, 0, 1], [10, 2, 0, 1], 444),
        ];
        variants.push(FlowKey {
            protocol: 17,
            ..base
        });
        variants.push(FlowKey {
            direction: 2,
            ..base
        });
        variants.push(FlowKey {
            device: [0xfd; 16],
            ..base
        });
        for v in variants {
            assert_ne!(flow_hash(&v, 7), flow_hash(&base, 7), "{v:?}");
        }
        assert_ne!(tag(flow_hash(&base, 7)), 0);
        assert_ne!(
            flow_hash(&base, 7),
            flow_hash(&base, 8),
            "the seed moves the hash"
        );
        assert_eq!(tag(0), 1, "a hash of 0 still tags its slot");
    }

    /// A ward's flows (10,000 devices × 10 servers and ports) spread over the sets of a
    /// full-size table: no set gets more than a handful, so four ways hold them.
    #[test]
    fn a_wards_flows_spread_over_the_sets() {
        let slots = crate::maps::MAX_FLOWS;
        let sets = slots / FLOW_WAYS;
        let mut per_set: BTreeMap<u32, u32> = BTreeMap::new();
        for d in 0..10_000u32 {
            for s in 0..10u8 {
                let k = key(
                    [10, 100, (d >> 8) as u8, d as u8],
                    [10, 20, 0, 10 + s],
                    443 + u16::from(s),
                );
                let set = set_of(flow_hash(&k, 0x1234_5678), sets);
                assert!(set < sets);
                *per_set.entry(set).or_default() += 1;
            }
        }
        let used = per_set.len() as u32;
        let fullest = per_set.values().copied().max().unwrap_or(0);
        let overfull: u32 = per_set.values().filter(|n| **n > FLOW_WAYS).count() as u32;
        // 100,000 flows in 65,536 sets: Poisson(1.5) per set; about 1.9% of sets get
        // more than four.
        assert!(used > sets * 3 / 4, "only {used} of {sets} sets used");
        assert!(fullest <= 12, "a set got {fullest} flows");
        assert!(overfull < sets / 25, "{overfull} sets overfull");
    }

    #[test]
    fn a_slot_holds_a_flow_only_with_its_own_tag() {
        let k = key([10, 1, 0, 1], [10, 2, 0, 1], 443);
        let mut set = FlowSet::default();
        set.tags[2] = tag(flow_hash(&k, 3));
        set.slots[2].key = k;
        assert!(way_holds_flow(&set, 2, 3));
        assert!(!way_holds_flow(&set, 2, 4), "read with another seed");
        assert!(!way_holds_flow(&set, 1, 3), "an empty slot");
        set.slots[2].key.service_port = 80;
        assert!(
            !way_holds_flow(&set, 2, 3),
            "a key written over another's tag"
        );
    }

    #[test]
    fn keys_compare_whole() {
        let a = key([10, 1, 0, 1], [10, 2, 0, 1], 443);
        assert!(same_flow(&a, &a));
        for b in [
            key([10, 1, 0, 1], [10, 2, 0, 1], 444),
            key([10, 1, 0, 1], [10, 2, 0, 2], 443),
            FlowKey { direction: 2, ..a },
        ] {
            assert!(!same_flow(&a, &b), "{b:?}");
        }
        let d = DecisionKey {
            src: ipv4_mapped([10, 1, 0, 1]),
            kind: 1,
            ..DecisionKey::default()
        };
        assert!(same_decision_key(&d, &d));
        assert!(!same_decision_key(&d, &DecisionKey { kind: 2, ..d }));
        assert!(!same_decision_key(&d, &DecisionKey { dst_port: 1, ..d }));
    }

    #[test]
    fn a_packets_key_words_are_its_built_keys() {
        let key = DecisionKey {
            src: ipv4_mapped([10, 1, 0, 1]),
            dst: [0xfd, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0x80],
            src_port: 40_000,
            dst_port: 443,
            protocol: 17,
            kind: 3,
            _pad: 0,
        };
        assert_eq!(
            packet_key_words(&key.src, &key.dst, 40_000, 443, 17, 3),
            decision_words(&key)
        );
        let place = decision_place_of_words(&decision_words(&key), 5, 4096);
        assert_eq!(place, decision_place(&key, 5, 4096));
        assert_eq!(place.slot, decision_slot(&key, 5, 4096));
    }

    /// Tags tell keys that share a slot apart: a scan's keys falling on a slot held by
    /// another flow are nearly always refused by the tag alone, and no key has the tag of
    /// a slot never written (0).
    #[test]
    fn keys_sharing_a_decision_slot_nearly_always_differ_in_tag() {
        let slots = crate::maps::DECISION_SLOTS;
        let mut by_slot: BTreeMap<u32, vec::Vec<u16>> = BTreeMap::new();
        for port in 0..=u16::MAX {
            let key = DecisionKey {
                src: ipv4_mapped([10, 1, 0, 1]),
                dst: ipv4_mapped([10, 2, 0, 1]),
                src_port: 40_000,
                dst_port: port,
                protocol: 17,
                kind: 2,
                _pad: 0,
            };
            let place = decision_place(&key, 7, slots);
            assert_ne!(place.tag, 0, "port {port}");
            let (entry, index) = place.tag_at();
            assert!(entry < slots / DECISION_TAGS_PER_ENTRY && index < 32);
            by_slot.entry(place.slot).or_default().push(place.tag);
        }
        // 65,536 keys, 16 a slot: ~120 pairs a slot, about one in 65,535 equal by chance.
        let (mut pairs, mut equal) = (0u64, 0u64);
        for tags in by_slot.values() {
            for (i, a) in tags.iter().enumerate() {
                for b in &tags[i + 1..] {
                    pairs += 1;
                    equal += u64::from(a == b);
                }
            }
        }
        assert!(pairs > 400_000, "{pairs} pairs");
        assert!(equal < 30, "{equal} of {pairs} pairs in a slot share a tag");
    }

    #[test]
    fn decision_slots_use_every_part_of_the_key() {
        let base = DecisionKey {
            src: ipv4_mapped([10, 1, 0, 1]),
            dst: ipv4_mapped([10, 2, 0, 1]),
            src_port: 40_000,
            dst_port: 443,
            protocol: 17,
            kind: 2,
            _pad: 0,
        };
        let slots = crate::maps::DECISION_SLOTS;
        let mut seen = std::collections::BTreeSet::new();
        for port in 0..2048u16 {
            let slot = decision_slot(
                &DecisionKey {
                    dst_port: port,
                    ..base
                },
                99,
                slots,
            );
            assert!(slot < slots);
            seen.insert(slot);
        }
        // 2,048 keys into 4,096 slots: about 1,600 distinct slots if spread at random.
        assert!(seen.len() > 1_400, "{} distinct slots", seen.len());
        for other in [
            DecisionKey { kind: 3, ..base },
            DecisionKey {
                protocol: 6,
                ..base
            },
            DecisionKey {
                src: ipv4_mapped([10, 1, 0, 2]),
                ..base
            },
        ] {
            assert_ne!(
                decision_hash(&other, 9),
                decision_hash(&base, 9),
                "{other:?}"
            );
        }
    }

    #[test]
    fn a_service_filter_passes_every_marked_service_and_rules_out_most_others() {
        let mut filter = ServiceFilter::default();
        let learned = [
            key([10, 0, 0, 1], [10, 0, 9, 1], 443),
            key([10, 0, 0, 1], [10, 0, 9, 2], 53),
        ];
        for k in &learned {
            assert!(
                !may_be_in_baseline(&filter, k),
                "an empty filter holds nothing"
            );
            let (word, mask) = service_bit(k);
            filter.words[word] |= mask;
        }
        for k in &learned {
            assert!(may_be_in_baseline(&filter, k), "{k:?} marked");
        }
        // The peer is not in the bit: another server on a learned port may be in it.
        assert!(may_be_in_baseline(
            &filter,
            &key([10, 0, 0, 1], [10, 9, 9, 9], 443)
        ));
        // A scan over new ports: nearly every probe is ruled out.
        let through = (1024..11024u16)
            .filter(|p| may_be_in_baseline(&filter, &key([10, 0, 0, 1], [10, 0, 9, 1], *p)))
            .count();
        assert!(
            through < 200,
            "{through} of 10000 probes would look the baseline up"
        );
        // A device whose baseline holds a hundred services (a PACS, a workstation) still
        // keeps most of a scan's probes from the baseline: each that passes is judged in
        // full instead of in one stage.
        let mut rich = ServiceFilter::default();
        for port in (2000..2100u16).map(|p| p * 7) {
            let (word, mask) = service_bit(&key([10, 0, 0, 1], [10, 0, 9, 1], port));
            rich.words[word] |= mask;
        }
        let scan = |port: u16| FlowKey {
            protocol: 17,
            ..key([10, 0, 0, 1], [10, 0, 9, 1], port)
        };
        let through = (1024..11024u16)
            .filter(|p| may_be_in_baseline(&rich, &scan(*p)))
            .count();
        assert!(
            through < 1_500,
            "{through} of 10000 probes would look a rich baseline up"
        );
        // Device addresses spread over the filters.
        let indexes: std::collections::BTreeSet<u32> = (0..1000u16)
            .map(|i| service_filter_index(&key([10, 1, (i >> 8) as u8, i as u8], [0; 4], 0)))
            .collect();
        assert!(
            indexes.len() > 950,
            "{} of 1000 addresses in distinct filters",
            indexes.len()
        );
        assert!(indexes.iter().all(|i| *i < SERVICE_FILTERS_ENTRIES));
    }

    #[test]
    fn enrolled_marks_spread_and_stay_in_the_bitmap() {
        let mut marks = std::collections::BTreeSet::new();
        for i in 0..10_000u32 {
            let b = i.to_be_bytes();
            let (word, mask) = enrolled_bit(&ipv4_mapped([10, b[1], b[2], b[3]]));
            assert!(word < ENROLLED_ADDRS_WORDS as usize && mask.count_ones() == 1);
            marks.insert((word, mask));
        }
        assert!(
            marks.len() > 9_900,
            "{} distinct marks of 10000 addresses",
            marks.len()
        );
        // The other family's form of an address is another address.
        assert_ne!(
            enrolled_bit(&ipv4_mapped([10, 0, 0, 1])),
            enrolled_bit(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 10, 0, 0, 1])
        );
    }

    /// The XDP program marks and looks addresses up through the aligned halves of the
    /// parsed packet and of its device memo; the controller sets marks from the address
    /// bytes. Both must name the same bit, for IPv4 and IPv6 addresses alike.
    #[test]
    fn an_addresss_aligned_halves_name_the_bit_its_bytes_do() {
        use crate::{
            maps::{DeviceEntry, DeviceMemo},
            parse::IpPacket,
        };
        let v6 = [
            0x20, 0x01, 0x0d, 0xb8, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
        ];
        for (src, dst) in [
            (ipv4_mapped([10, 1, 2, 3]), v6),
            (v6, ipv4_mapped([192, 168, 0, 9])),
        ] {
            let ip = IpPacket {
                src,
                dst,
                ..IpPacket::EMPTY
            };
            assert_eq!(ip.src_halves(), addr_halves(&src));
            assert_eq!(ip.dst_halves(), addr_halves(&dst));
            assert_ne!(ip.src_halves(), ip.dst_halves());
            assert_eq!(enrolled_bit_of_halves(ip.src_halves()), enrolled_bit(&src));
            assert_eq!(enrolled_bit_of_halves(ip.dst_halves()), enrolled_bit(&dst));
            let memo = DeviceMemo {
                entry: DeviceEntry::new(3, 0, 0),
                addr: dst,
                epoch: 1,
                generation: 0,
                _pad1: 0,
                _pad2: 0,
            };
            assert_eq!(memo.addr_halves(), ip.dst_halves());
        }
    }

    /// A model of REQUEST_FILTER driven through time: requests marked as the XDP program
    /// marks them, generations cleared as the controller clears them (at every chance it
    /// gets, the worst case), replies looked for within and after a request's freshness,
    /// with CPU clocks a tick apart. A reply to a fresh request always finds its mark.
    #[test]
    fn a_fresh_requests_mark_is_never_cleared_or_missed() {
        use crate::flow::REQUEST_TIMEOUT_NS;
        const TICK: u64 = 4_000_000;
        let period = 1u64 << REQUEST_FILTER_PERIOD_SHIFT;
        let key = |i: u32| RequestKey {
            client: ipv4_mapped([10, 0, (i >> 8) as u8, i as u8]),
            server: ipv4_mapped([10, 9, 0, 80]),
            client_port: 40_000 + (i % 1000) as u16,
            server_port: 53,
            protocol: 17,
            _pad1: 0,
            _pad2: 0,
        };
        let words = (REQUEST_FILTER_WORDS * REQUEST_FILTER_GENERATIONS) as usize;
        let mut filter = std::vec![0u64; words];
        let mut made: std::vec::Vec<(u64, RequestKey)> = std::vec::Vec::new();
        let mut cleared = 0;
        // Four periods in steps of 1.7 s, starting mid-period, one request per step.
        let start = 5 * period + period / 3;
        let mut now = start;
        let mut i = 0;
        while now < start + 4 * period {
            // The controller, on its own (precise) clock.
            if let Some((_, first)) = stale_request_generation(now) {
                filter[first as usize..(first + REQUEST_FILTER_WORDS) as usize].fill(0);
                cleared += 1;
            }
            // A CPU a tick behind marks a request.
            let k = key(i);
            let (word, mask) = request_bit(&k);
            filter[request_words(word, now - TICK)[0] as usize] |= mask;
            made.push((now - TICK, k));
            i += 1;
            // Replies to every request still fresh, seen by a CPU a tick ahead.
            let seen_at = now + TICK;
            for (at, k) in &made {
                if seen_at - at < REQUEST_TIMEOUT_NS {
                    let (word, mask) = request_bit(k);
                    let found = request_words(word, seen_at)
                        .iter()
                        .any(|&w| filter[w as usize] & mask != 0);
                    assert!(found, "a request made at {at} is fresh at {seen_at}");
                }
            }
            now += 1_700_000_000;
        }
        assert!(
            cleared > 20,
            "the controller cleared generations {cleared} times"
        );
        // Marks of requests made long ago are gone: most later lookups skip REQUESTS.
        let old: std::vec::Vec<&RequestKey> = made
            .iter()
            .filter(|(at, _)| now - at > 3 * period)
            .map(|(_, k)| k)
            .collect();
        let (word, mask) = request_bit(old[0]);
        assert!(
            request_words(word, now)
                .iter()
                .all(|&w| filter[w as usize] & mask == 0),
            "a request three periods old is forgotten"
        );
        // The controller never clears in the second half of a period.
        assert_eq!(stale_request_generation(6 * period + period / 2), None);
        assert_eq!(
            stale_request_generation(6 * period + 1),
            Some((6, request_generation(7)))
        );
    }

    /// The service filter's index and bit, taken from a device's address and a service
    /// word (a probe's, without building its key), are those of the flow key they come
    /// from.
    #[test]
    fn a_filter_place_from_the_address_and_service_word_is_the_keys() {
        let keys = [
            key([10, 0, 0, 1], [10, 0, 9, 1], 443),
            key([10, 200, 3, 7], [192, 168, 1, 1], 7),
            FlowKey {
                device: [
                    0x20, 0x01, 0x0d, 0xb8, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
                ],
                peer: [0xfe; 16],
                service_port: 0xbeef,
                protocol: 132,
                direction: 1,
            },
        ];
        for k in &keys {
            assert_eq!(
                device_service_filter_index(&k.device),
                service_filter_index(k),
                "{k:?}"
            );
            let word = service_word(k.service_port, k.protocol, k.direction);
            assert_eq!(word, flow_words(k)[8], "{k:?}");
            assert_eq!(service_bit_of_word(word), service_bit(k), "{k:?}");
        }
        let mut filter = ServiceFilter::default();
        let (word, mask) = service_bit(&keys[0]);
        filter.words[word] |= mask;
        assert!(may_have_service(&filter, flow_words(&keys[0])[8]));
        let other = service_word(444, 6, 0);
        assert_eq!(
            may_have_service(&filter, other),
            service_bit_of_word(other) == (word, mask),
            "another service is marked only if it has the same bit"
        );
    }
}
