//! The packet path: parse, count, learn and enforce, for every frame at XDP.
//!
//! Read top to bottom: maps, the one bounds-checked `ptr_at`, the program entry that maps
//! errors and verdicts to an XDP action in one place, then the decision for IP packets.
//! Layouts, reasons, the parser and the service-port rule live in `monitor-common`.
#![no_std]
#![no_main]

use core::ptr::NonNull;

use aya_ebpf::{
    bindings::{BPF_F_NO_PREALLOC, BPF_NOEXIST, xdp_action},
    helpers::bpf_ktime_get_coarse_ns,
    macros::{map, xdp},
    maps::{
        Array, HashMap, LpmTrie, LruHashMap, LruPerCpuHashMap, PerCpuArray, RingBuf,
        lpm_trie::Key as LpmKey,
    },
    programs::XdpContext,
};
use monitor_common::{
    Action, CUT_VERDICTS, FrameClass, Mode, Reason, VERDICT_SLOTS, VERDICTS_ENTRIES,
    flow::{self, Initiator, Service, ServiceHint},
    maps::{
        BaselineEntry, CONFIG_CAPTURE_MAY_BE_CUT, CONFIG_JUDGE_UNENROLLED, CONFIG_UNENROLLED_DROP,
        Config, ConnEntry, Counter, DEVICE_ENFORCE_CONFIRMED, DEVICE_HAS_RULES,
        DEVICE_LIFE_CRITICAL, DEVICE_REASON_SLOTS, DeviceEntry, DeviceKey, DeviceStats, Direction,
        EVENT_STATS_SLOTS, EVENTS_BYTES, EVENTS_LOST, EVENTS_PER_DEVICE_PER_SECOND, EVENTS_SENT,
        EVENTS_SUPPRESSED, Event, EventRate, FlowKey, FlowStats, FragmentEntry, FragmentKey,
        LAYOUT_VERSION, MAX_BASELINE, MAX_CONNTRACK, MAX_DEVICE_ADDRESSES, MAX_DEVICES, MAX_FLOWS,
        MAX_FRAGMENTS, MAX_IFACES, MAX_IFINDEX, MAX_REQUESTS, MAX_RULE_SETS, MAX_RULES_PER_SET,
        MAX_UNENROLLED, MAX_UNENROLLED_FLOWS, MODE_INHERIT, ORIGIN_LEARNED, RULE_ALLOW, RULE_ANY,
        RULE_DENY, RULE_PREFIX_BASE, RequestEntry, RequestKey, RuleKeyData, RuleSet,
        UNENROLLED_RATE_SLOT, active_generation, device_reason_index,
    },
    parse::{self, Addr, FragmentKind, FrameBytes, IpPacket, ParsedFrame, Snaplen},
    verdict_index,
};

#[map]
static CONFIG: Array<Config> = Array::with_max_entries(1, 0);
#[map]
static DEVICES: HashMap<DeviceKey, DeviceEntry> =
    HashMap::with_max_entries(MAX_DEVICE_ADDRESSES, 0);
#[map]
static RULES: LpmTrie<RuleKeyData, RuleSet> = LpmTrie::with_max_entries(MAX_RULE_SETS, 0);
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_BYTES, 0);
#[map]
static EVENT_RATE: PerCpuArray<EventRate> = PerCpuArray::with_max_entries(MAX_DEVICES + 1, 0);
#[map]
static EVENT_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(EVENT_STATS_SLOTS, 0);
#[map]
static DEVICE_STATS: PerCpuArray<DeviceStats> = PerCpuArray::with_max_entries(MAX_DEVICES, 0);
#[map]
static UNENROLLED_STATS: LruPerCpuHashMap<Addr, DeviceStats> =
    LruPerCpuHashMap::with_max_entries(MAX_UNENROLLED, 0);
#[map]
static FLOWS: LruPerCpuHashMap<FlowKey, FlowStats> =
    LruPerCpuHashMap::with_max_entries(MAX_FLOWS, 0);
#[map]
static UNENROLLED_FLOWS: LruPerCpuHashMap<FlowKey, FlowStats> =
    LruPerCpuHashMap::with_max_entries(MAX_UNENROLLED_FLOWS, 0);
#[map]
static BASELINE: HashMap<FlowKey, BaselineEntry> =
    HashMap::with_max_entries(MAX_BASELINE, BPF_F_NO_PREALLOC);
#[map]
static CONNTRACK: LruHashMap<monitor_common::maps::ConnKey, ConnEntry> =
    LruHashMap::with_max_entries(MAX_CONNTRACK, 0);
#[map]
static FRAGMENTS: LruHashMap<FragmentKey, FragmentEntry> =
    LruHashMap::with_max_entries(MAX_FRAGMENTS, 0);
/// UDP and SCTP requests the policy allowed, so that their replies are known as replies.
#[map]
static REQUESTS: LruHashMap<RequestKey, RequestEntry> =
    LruHashMap::with_max_entries(MAX_REQUESTS, 0);
/// Verdicts of whole frames, then (from CUT_VERDICTS) of frames a capture cut short.
#[map]
static VERDICTS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(VERDICTS_ENTRIES, 0);
/// Interface index → 1 + its IFACE_VERDICTS block (0: not counted apart), set by the
/// controller for the interfaces it attaches to.
#[map]
static IFACE_SLOTS: Array<u32> = Array::with_max_entries(MAX_IFINDEX, 0);
#[map]
static IFACE_VERDICTS: PerCpuArray<Counter> =
    PerCpuArray::with_max_entries(MAX_IFACES * VERDICT_SLOTS, 0);
/// Packets per enrolled device and reason of its own verdict (4 MiB per CPU).
#[map]
static DEVICE_REASONS: PerCpuArray<u64> =
    PerCpuArray::with_max_entries(MAX_DEVICES * DEVICE_REASON_SLOTS, 0);
/// The frame being judged, parsed straight into a per-CPU slot: it does not fit the stack
/// beside everything else.
#[map]
static SCRATCH: PerCpuArray<ParsedFrame> = PerCpuArray::with_max_entries(1, 0);
#[map]
static CLASSES: PerCpuArray<Counter> = PerCpuArray::with_max_entries(FrameClass::COUNT as u32, 0);

/// Initial values for new table entries. Statics (in .rodata) rather than literals, which
/// LLVM would build with a byte-wise `memset` loop on the stack.
static ZERO_DEVICE_STATS: DeviceStats = DeviceStats {
    packets_sent: 0,
    bytes_sent: 0,
    packets_received: 0,
    bytes_received: 0,
    first_seen_ns: 0,
    last_seen_ns: 0,
    dropped_packets: 0,
    would_drop_packets: 0,
    learned_flows: 0,
    break_glass_packets: 0,
};
static ZERO_FLOW_STATS: FlowStats = FlowStats {
    packets_sent: 0,
    bytes_sent: 0,
    packets_received: 0,
    bytes_received: 0,
    last_seen_ns: 0,
    dropped_packets: 0,
    would_drop_packets: 0,
    in_baseline_tag: 0,
    devices_tag: 0,
    own_slot: 0,
    peer_slot: 0,
    own_mode: 0,
    own_flags: 0,
    peer_mode: 0,
    peer_flags: 0,
    _pad: 0,
};

/// The one bounds check every packet read goes through.
#[inline(always)]
fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*const T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + core::mem::size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *const T)
}

struct XdpFrame<'a>(&'a XdpContext);

impl FrameBytes for XdpFrame<'_> {
    #[inline(always)]
    fn frame_len(&self) -> usize {
        self.0.data_end() - self.0.data()
    }

    #[inline(always)]
    fn read<const N: usize>(&self, offset: usize) -> Option<&[u8; N]> {
        // SAFETY: ptr_at checked that the N bytes lie inside the packet, which outlives
        // the program run; [u8; N] has alignment 1.
        ptr_at::<[u8; N]>(self.0, offset).map(|p| unsafe { &*p })
    }
}

/// Internal faults (a missing map slot). Mapped to XDP_PASS: the enforcer fails open,
/// since a surprise drop of a life-critical device is the worse failure.
struct Fault;

#[xdp]
pub fn monitor_xdp(ctx: XdpContext) -> u32 {
    match try_monitor(&ctx) {
        Ok(Action::Drop) => xdp_action::XDP_DROP,
        Ok(Action::Pass) | Err(Fault) => xdp_action::XDP_PASS,
    }
}

/// Parses and counts frame classes, nothing more: the benchmark's reference point.
#[xdp]
pub fn parse_only_xdp(ctx: XdpContext) -> u32 {
    let frame = XdpFrame(&ctx);
    let len = frame.frame_len() as u64;
    let Some(parsed) = SCRATCH.get_ptr_mut(0) else {
        return xdp_action::XDP_PASS;
    };
    // SAFETY: this CPU's slot, used only within this program run.
    let parsed = unsafe { &mut *parsed };
    parse::parse_frame_into(&frame, Snaplen::Strict, parsed);
    add_counter(&CLASSES, parsed.class as u32, len);
    xdp_action::XDP_PASS
}

/// Bounces every frame back out of the interface it came in on: the benchmark's traffic
/// generator (`cargo xtask bench`). Run in BPF_PROG_TEST_RUN's live-frames mode on one end
/// of a veth pair, it pushes the test frame into the peer at millions of packets per
/// second, far beyond what a socket sender reaches. Never attached to an interface.
#[xdp]
pub fn tx_xdp(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_TX
}

/// Per-packet facts every stage needs.
struct Packet {
    len: u64,
    now: u64,
    global: Mode,
    flags: u8,
    /// Which copy of the policy maps this packet reads (see `Config::generation`).
    generation: u8,
    /// `Config::cache_epoch + 1`: the tag of what flow entries cache.
    cache_tag: u32,
    /// `Config::learn_window`, recorded in what this packet teaches the baseline.
    learn_window: u32,
}

#[inline(always)]
fn try_monitor(ctx: &XdpContext) -> Result<Action, Fault> {
    let frame = XdpFrame(ctx);
    let config = CONFIG.get(0).ok_or(Fault)?;
    let layout_ok = config.layout_version == LAYOUT_VERSION;
    let packet = Packet {
        len: frame.frame_len() as u64,
        // SAFETY: a helper without arguments.
        now: unsafe { bpf_ktime_get_coarse_ns() },
        // A CONFIG written by another layout is ignored: learn mode drops nothing.
        global: if layout_ok {
            Mode::try_from(config.mode).unwrap_or(Mode::Learn)
        } else {
            Mode::Learn
        },
        flags: if layout_ok { config.flags } else { 0 },
        generation: active_generation(config),
        cache_tag: config.cache_epoch.wrapping_add(1),
        learn_window: config.learn_window,
    };
    let snaplen = if packet.flags & CONFIG_CAPTURE_MAY_BE_CUT != 0 {
        Snaplen::CaptureMayBeCut
    } else {
        Snaplen::Strict
    };
    let parsed = SCRATCH.get_ptr_mut(0).ok_or(Fault)?;
    // SAFETY: this CPU's slot, used only within this program run.
    let parsed = unsafe { &mut *parsed };
    parse::parse_frame_into(&frame, snaplen, parsed);
    add_counter(&CLASSES, parsed.class as u32, packet.len);
    let (action, reason) = match (parsed.fault, parsed.has_ip) {
        // Without it an enforced IPv6 device loses its neighbours, as an IPv4 one would
        // without ARP (which, not being IP, always passes).
        (None, true) if is_neighbor_discovery(&parsed.ip) => {
            count_unjudged(&packet)?;
            (Action::Pass, Reason::NeighborDiscovery)
        }
        (None, true) => judge_ip(&packet)?,
        (None, false) => (Action::Pass, Reason::NotIp),
        (Some(fault), true) => (judge_malformed(&packet)?, fault),
        (Some(fault), false) if packet.global == Mode::Enforce => (Action::Drop, fault),
        (Some(fault), false) => (Action::Pass, fault),
    };
    let index = verdict_index(action, reason);
    // A cut frame's verdict is not a prediction replay may show (CONFIG_CAPTURE_MAY_BE_CUT).
    let block = if packet.flags & CONFIG_CAPTURE_MAY_BE_CUT != 0 {
        CUT_VERDICTS
    } else {
        0
    };
    add_counter(&VERDICTS, block + index, packet.len);
    if let Some(slot) = IFACE_SLOTS.get(ctx.ingress_ifindex() as u32) {
        if *slot != 0 {
            add_counter(
                &IFACE_VERDICTS,
                (*slot - 1) * VERDICT_SLOTS + index,
                packet.len,
            );
        }
    }
    Ok(action)
}

/// ICMPv6 router solicitation/advertisement, neighbour solicitation/advertisement and
/// redirect (types 133 to 137).
#[inline(always)]
fn is_neighbor_discovery(ip: &IpPacket) -> bool {
    ip.protocol == parse::IPPROTO_ICMPV6
        && ip.transport == parse::TransportKind::Icmp
        && (133..=137).contains(&ip.icmp_type)
}

#[inline(always)]
fn add_counter(map: &PerCpuArray<Counter>, index: u32, len: u64) {
    if let Some(counter) = map.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, only this CPU writes it while the program runs.
        unsafe {
            (*counter).packets += 1;
            (*counter).bytes += len;
        }
    }
}

// How a side of a packet is treated (`Side::treatment`).
/// An unenrolled address (unless CONFIG_JUDGE_UNENROLLED): counted, not judged.
const UNJUDGED: u8 = 0;
const LEARN: u8 = 1;
const AUDIT: u8 = 2;
const ENFORCE: u8 = 3;
/// Enforce asked for, but the device is life-critical without its own confirmation.
const SPARED: u8 = 4;

const NO_SLOT: u32 = u32::MAX;

/// One side of the packet being judged: source (index 0) or destination (index 1).
#[repr(C)]
#[derive(Clone, Copy)]
struct Side {
    /// The flow as seen from this side (`key.device` is this side's address).
    key: FlowKey,
    /// DEVICE_STATS slot, or NO_SLOT when unenrolled.
    slot: u32,
    treatment: u8,
    /// The verdict for this side ([`Action`] and [`Reason`] as u8).
    action: u8,
    reason: u8,
    /// `SIDE_*` flags.
    flags: u8,
    /// The device entry's mode and flags as DEVICES has them (for the flow's cache).
    entry_mode: u8,
    entry_flags: u8,
    _pad: u16,
}

/// Break-glass is in force for this side's device.
const SIDE_BREAK_GLASS: u8 = 1 << 0;
/// Policy rules apply to this side's device.
const SIDE_HAS_RULES: u8 = 1 << 1;
/// A life-critical device not confirmed for enforcement: no verdict may drop its traffic,
/// not even its peer's.
const SIDE_PROTECTED: u8 = 1 << 2;

/// The judge's working state, in a per-CPU slot rather than on the stack.
///
/// The judge runs in stages (`prepare`, `judge_side` ×2, `finish`), each a BPF function
/// that reads its inputs from here. Read back from a map, the inputs are unknown to the
/// verifier, so each stage is checked a handful of times instead of once for every
/// combination of the earlier stages' outcomes (which made the program "too large").
/// For the same reason nothing here is an `Option` or an enum with payload: LLVM may fill
/// undefined bytes from any register, and the verifier rejects that.
#[repr(C)]
#[derive(Clone, Copy)]
struct Work {
    sides: [Side; 2],
    /// What the first fragment got, for later fragments.
    inherited_action: u8,
    inherited_reason: u8,
    is_later_fragment: u8,
    /// The packet is a UDP or SCTP request (to the lower port): remembered in REQUESTS if
    /// its verdict allows it.
    request: u8,
    /// The combined verdict.
    action: u8,
    reason: u8,
    _pad: [u8; 2],
}

#[map]
static WORK: PerCpuArray<Work> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
fn work() -> Result<&'static mut Work, Fault> {
    let work = WORK.get_ptr_mut(0).ok_or(Fault)?;
    // SAFETY: this CPU's slot, used only within this program run.
    Ok(unsafe { &mut *work })
}

#[inline(always)]
fn parsed() -> Result<&'static ParsedFrame, Fault> {
    let parsed = SCRATCH.get_ptr(0).ok_or(Fault)?;
    // SAFETY: this CPU's slot, written by the parser in this program run.
    Ok(unsafe { &*parsed })
}

/// How `entry` is treated under the global mode.
#[inline(always)]
fn treatment_of(entry: &DeviceEntry, global: Mode) -> u8 {
    let mode = if entry.mode == MODE_INHERIT {
        global
    } else {
        Mode::try_from(entry.mode).unwrap_or(global)
    };
    match mode {
        Mode::Learn => LEARN,
        Mode::Audit => AUDIT,
        Mode::Enforce
            if entry.flags & DEVICE_LIFE_CRITICAL != 0
                && entry.flags & DEVICE_ENFORCE_CONFIRMED == 0 =>
        {
            SPARED
        }
        Mode::Enforce => ENFORCE,
    }
}

/// Fills `side` for the address `addr`: its inventory entry, if any, decides treatment.
#[inline(always)]
fn enroll_side(packet: &Packet, side: &mut Side, addr: &Addr) {
    let key = DeviceKey {
        addr: *addr,
        generation: packet.generation,
        _pad1: 0,
        _pad2: 0,
    };
    match DEVICES.get_ptr(&key) {
        // SAFETY: a map value, copied out at once.
        Some(entry) => fill_side(packet, side, Some(unsafe { *entry })),
        None => fill_side(packet, side, None),
    }
}

/// Fills `side` from its device entry (or the lack of one): how it is treated now.
#[inline(always)]
fn fill_side(packet: &Packet, side: &mut Side, entry: Option<DeviceEntry>) {
    match entry {
        Some(entry) => {
            side.entry_mode = entry.mode;
            side.entry_flags = entry.flags;
            side.slot = entry.slot;
            side.treatment = treatment_of(&entry, packet.global);
            side.flags = 0;
            if packet.now < entry.break_glass_until_ns {
                side.flags |= SIDE_BREAK_GLASS;
            }
            if entry.flags & DEVICE_HAS_RULES != 0 {
                side.flags |= SIDE_HAS_RULES;
            }
            if entry.flags & DEVICE_LIFE_CRITICAL != 0 && side.treatment != ENFORCE {
                side.flags |= SIDE_PROTECTED;
            }
        }
        None => {
            side.slot = NO_SLOT;
            side.flags = 0;
            side.entry_mode = MODE_INHERIT;
            side.entry_flags = 0;
            side.treatment = if packet.flags & CONFIG_JUDGE_UNENROLLED == 0 {
                UNJUDGED
            } else {
                match packet.global {
                    Mode::Learn => LEARN,
                    Mode::Audit => AUDIT,
                    Mode::Enforce => ENFORCE,
                }
            };
        }
    }
}

#[inline(always)]
fn unenrolled_action(packet: &Packet) -> Action {
    if packet.global == Mode::Enforce && packet.flags & CONFIG_UNENROLLED_DROP != 0 {
        Action::Drop
    } else {
        Action::Pass
    }
}

/// A malformed IP packet: counted against its devices, dropped only where enforcement
/// applies to one of them (or, with no device involved, under the unenrolled default).
#[inline(never)]
fn judge_malformed(packet: &Packet) -> Result<Action, Fault> {
    let parsed = parsed()?;
    let work = work()?;
    enroll_side(packet, &mut work.sides[0], &parsed.ip.src);
    enroll_side(packet, &mut work.sides[1], &parsed.ip.dst);
    let [src, dst] = &work.sides;
    // An address judged without a device entry (CONFIG_JUDGE_UNENROLLED: replay's
    // --learn-all) enforces like a device, as in `judge_ip`.
    let src_enforces = src.treatment == ENFORCE;
    let dst_enforces = dst.treatment == ENFORCE;
    let unjudged_pair = src.treatment == UNJUDGED && dst.treatment == UNJUDGED;
    let action = if unjudged_pair {
        unenrolled_action(packet)
    } else if (src_enforces || dst_enforces) && (src.flags | dst.flags) & SIDE_PROTECTED == 0 {
        Action::Drop
    } else {
        Action::Pass
    };
    // A frame a capture cut charges no drop (CONFIG_CAPTURE_MAY_BE_CUT).
    let dropped = action == Action::Drop && packet.flags & CONFIG_CAPTURE_MAY_BE_CUT == 0;
    // As in `finish`: a side is charged the drop its own policy made; an unenrolled
    // address is counted on its own only beside another.
    let unenrolled_pair = src.slot == NO_SLOT && dst.slot == NO_SLOT;
    if src.slot != NO_SLOT || unenrolled_pair {
        let charge = charge(true, dropped && (src_enforces || unjudged_pair), false);
        count_device(packet, &parsed.ip.src, src.slot, charge);
    }
    if dst.slot != NO_SLOT || unenrolled_pair {
        let charge = charge(false, dropped && (dst_enforces || unjudged_pair), false);
        count_device(packet, &parsed.ip.dst, dst.slot, charge);
    }
    Ok(action)
}

/// Charges a packet that is passed without judgement (neighbour discovery) to its sides,
/// as any packet is: devices by slot, unenrolled addresses beside one another.
#[inline(never)]
fn count_unjudged(packet: &Packet) -> Result<(), Fault> {
    let parsed = parsed()?;
    let work = work()?;
    enroll_side(packet, &mut work.sides[0], &parsed.ip.src);
    enroll_side(packet, &mut work.sides[1], &parsed.ip.dst);
    let [src, dst] = &work.sides;
    let both_unenrolled = src.slot == NO_SLOT && dst.slot == NO_SLOT;
    count_reason(src.slot, Reason::NeighborDiscovery as u8);
    count_reason(dst.slot, Reason::NeighborDiscovery as u8);
    if src.slot != NO_SLOT || both_unenrolled {
        count_device(packet, &parsed.ip.src, src.slot, CHARGE_SENT);
    }
    if dst.slot != NO_SLOT || both_unenrolled {
        count_device(packet, &parsed.ip.dst, dst.slot, 0);
    }
    Ok(())
}

/// Judges an IP packet that parsed: one stage at a time (see [`Work`]).
#[inline(never)]
fn judge_ip(packet: &Packet) -> Result<(Action, Reason), Fault> {
    // The per-CPU slots are looked up once and handed down: the stages read their inputs
    // from map memory, which the verifier does not track (see `Work`).
    let ip = &parsed()?.ip;
    let work = work()?;
    // The stages return a scalar the caller uses: LLVM drops unused return values, and a
    // subprogram whose R0 is left holding a stack pointer is rejected by the verifier
    // ("cannot return stack pointer to the caller").
    let later_fragment = prepare(packet, ip, work) != 0;
    // An established flow's entry caches both devices' entries: one FLOWS lookup then
    // stands for two DEVICES lookups (see `FlowStats::devices_tag`). Later fragments,
    // rare, take the plain path.
    let src_flow = if later_fragment {
        None
    } else {
        FLOWS.get_ptr_mut(&work.sides[0].key).and_then(NonNull::new)
    };
    let mut dst_flow = None;
    if later_fragment {
        enroll_side(packet, &mut work.sides[0], &ip.src);
        enroll_side(packet, &mut work.sides[1], &ip.dst);
    } else if !identify_from_cache(packet, work, src_flow, true) {
        dst_flow = FLOWS.get_ptr_mut(&work.sides[1].key).and_then(NonNull::new);
        if !identify_from_cache(packet, work, dst_flow, false) {
            enroll_side(packet, &mut work.sides[0], &ip.src);
            enroll_side(packet, &mut work.sides[1], &ip.dst);
        }
    }
    let src_action = judge_side(packet, work, true, src_flow);
    let dst_action = judge_side(packet, work, false, dst_flow);
    let action = finish(packet, ip, work);
    if action != work.action || (src_action | dst_action) > Action::Drop as u8 {
        return Err(Fault);
    }
    Ok((
        Action::try_from(work.action).unwrap_or(Action::Pass),
        Reason::try_from(work.reason).unwrap_or(Reason::Unenrolled),
    ))
}

/// Fills both sides from the device entries `flow` caches, if it does under the current
/// epoch; `flow` belongs to the source side when `source`. Returns whether it did.
#[inline(never)]
fn identify_from_cache(
    packet: &Packet,
    work: &mut Work,
    flow: Option<NonNull<FlowStats>>,
    source: bool,
) -> bool {
    let Some(flow) = flow else {
        return false;
    };
    // SAFETY: a per-CPU value of this CPU, copied out at once.
    let flow = unsafe { *flow.as_ptr() };
    if flow.devices_tag != packet.cache_tag {
        return false;
    }
    let own = DeviceEntry::new(flow.own_slot, flow.own_mode, flow.own_flags);
    let peer = DeviceEntry::new(flow.peer_slot, flow.peer_mode, flow.peer_flags);
    let peer = if flow.peer_slot == NO_SLOT {
        None
    } else {
        Some(peer)
    };
    let [src, dst] = &mut work.sides;
    if source {
        fill_side(packet, src, Some(own));
        fill_side(packet, dst, peer);
    } else {
        fill_side(packet, dst, Some(own));
        fill_side(packet, src, peer);
    }
    true
}

/// Stage 1: the service, and for later fragments what their first fragment got.
#[inline(never)]
fn prepare(packet: &Packet, ip: &IpPacket, work: &mut Work) -> u8 {
    work.is_later_fragment = 0;
    work.request = 0;
    let mut protocol = ip.protocol;
    let service = if ip.fragment == FragmentKind::Later {
        work.is_later_fragment = 1;
        match FRAGMENTS.get_ptr(&fragment_key(ip)) {
            Some(entry) => {
                // SAFETY: a map value, copied out at once.
                let entry = unsafe { *entry };
                work.inherited_action = entry.action;
                work.inherited_reason = entry.reason;
                // Its own header names at most the first header of the fragmentable
                // part (destination options, say), not the first fragment's protocol.
                protocol = entry.protocol;
                let initiator = match Direction::try_from(entry.src_direction) {
                    Ok(Direction::Outbound) => Initiator::Src,
                    Ok(Direction::Inbound) => Initiator::Dst,
                    _ => Initiator::Neither,
                };
                Service {
                    port: entry.service_port,
                    initiator,
                }
            }
            None => {
                work.inherited_action = Action::Pass as u8;
                work.inherited_reason = Reason::FragmentUnmatched as u8;
                Service {
                    port: 0,
                    initiator: Initiator::Neither,
                }
            }
        }
    } else {
        resolve_service(packet, ip, work)
    };
    let src_direction = flow::src_direction(service.initiator);
    work.sides[0].key = flow::flow_key(ip.src, ip.dst, protocol, service.port, src_direction);
    work.sides[1].key = flow::flow_key(
        ip.dst,
        ip.src,
        protocol,
        service.port,
        src_direction.reversed(),
    );
    work.is_later_fragment
}

/// The service port and initiator, remembering TCP handshakes in CONNTRACK and looking
/// up UDP and SCTP requests in REQUESTS (`finish` remembers them).
#[inline(always)]
fn resolve_service(packet: &Packet, ip: &IpPacket, work: &mut Work) -> Service {
    match flow::service_hint(ip) {
        ServiceHint::Known(service) => service,
        ServiceHint::Request(service) => {
            work.request = 1;
            service
        }
        // One lookup per packet from a lower port to a higher: without a fresh request
        // it is a request to the higher port, so a server's port opens nothing by itself.
        ServiceHint::MaybeReply { src_port, dst_port } => {
            let seen = match REQUESTS.get_ptr(&flow::reply_key(ip)) {
                // SAFETY: one field of a map value, read at once.
                Some(entry) => flow::request_is_fresh(unsafe { (*entry).seen_ns }, packet.now),
                None => false,
            };
            flow::reply_or_request(src_port, dst_port, seen)
        }
        ServiceHint::TcpHandshake(service) => {
            let (key, src_is_low) = flow::conn_key(ip, ip.src_port, ip.dst_port);
            let entry = ConnEntry {
                server: flow::conn_server(service, src_is_low),
                _pad1: 0,
                _pad2: 0,
                _pad3: 0,
            };
            // A lost entry falls back to the lower-port rule, which agrees for ordinary
            // clients.
            let _ = CONNTRACK.insert(&key, &entry, 0);
            service
        }
        ServiceHint::TcpEstablished { src_port, dst_port } => {
            let (key, src_is_low) = flow::conn_key(ip, src_port, dst_port);
            match CONNTRACK.get_ptr(&key) {
                Some(entry) => {
                    // SAFETY: one byte of a map value, read at once.
                    let server = unsafe { (*entry).server };
                    flow::service_from_conn(server, src_is_low, src_port, dst_port)
                }
                None => flow::by_ports(src_port, dst_port),
            }
        }
    }
}

#[inline(always)]
fn fragment_key(ip: &IpPacket) -> FragmentKey {
    FragmentKey {
        src: ip.src,
        dst: ip.dst,
        id: ip.fragment_id,
        protocol: ip.fragment_protocol,
        _pad1: 0,
        _pad2: 0,
    }
}

/// What a later fragment inherits from its first fragment (copied out of `Work` so the
/// side can be borrowed mutably).
struct Inherited {
    later: bool,
    action: u8,
    reason: u8,
}

/// Stage 2, once per side: the verdict of this side's policy, learning as it goes.
///
/// An enrolled device's flow is counted here too: its FLOWS entry caches whether the flow
/// is in the baseline, so an established flow costs one hash lookup instead of two. New
/// flows that violate the policy (scans, spoofed sources) are counted in the separate
/// UNENROLLED_FLOWS table instead, so that a flood of them cannot evict the device's
/// legitimate flows. `sent` is CHARGE_SENT for the packet's source side.
#[inline(never)]
fn judge_side(
    packet: &Packet,
    work: &mut Work,
    source: bool,
    looked_up: Option<NonNull<FlowStats>>,
) -> u8 {
    let fragment = Inherited {
        later: work.is_later_fragment != 0,
        action: work.inherited_action,
        reason: work.inherited_reason,
    };
    let [src, dst] = &mut work.sides;
    let (side, other, sent) = if source {
        (src, &*dst, CHARGE_SENT)
    } else {
        (dst, &*src, 0)
    };
    let enrolled = side.slot != NO_SLOT;
    // NonNull, not a raw pointer: `Option<*mut T>` has no niche, and its undefined payload
    // when `None` is what the verifier rejects (see `Work`).
    let known = match looked_up {
        Some(flow) => Some(flow),
        None if enrolled => FLOWS.get_ptr_mut(&side.key).and_then(NonNull::new),
        None => None,
    };
    // SAFETY: a per-CPU value of this CPU.
    let cached =
        known.is_some_and(|flow| unsafe { flow.as_ref().in_baseline_tag } == packet.cache_tag);
    let (action, reason, in_baseline) = side_verdict(packet, side, &fragment, cached);
    side.action = action as u8;
    side.reason = reason as u8;
    if !enrolled {
        return side.action;
    }
    let flow = match known {
        Some(flow) => Some(flow),
        None if rank(side.action, side.reason) >= 3 => flow_entry(&UNENROLLED_FLOWS, &side.key),
        None => flow_entry(&FLOWS, &side.key),
    };
    if let Some(mut flow) = flow {
        // SAFETY: a per-CPU value, written only by this CPU while the program runs.
        let flow = unsafe { flow.as_mut() };
        // Whether the packet is dropped is known only when both sides are judged:
        // `finish` counts that.
        add_flow_packet(packet, flow, sent);
        if in_baseline {
            flow.in_baseline_tag = packet.cache_tag;
        }
        if flow.devices_tag != packet.cache_tag {
            // Break-glass entries are not cached: their deadline must be compared.
            if (side.flags | other.flags) & SIDE_BREAK_GLASS == 0 {
                flow.devices_tag = packet.cache_tag;
                flow.own_slot = side.slot;
                flow.own_mode = side.entry_mode;
                flow.own_flags = side.entry_flags;
                flow.peer_slot = other.slot;
                flow.peer_mode = other.entry_mode;
                flow.peer_flags = other.entry_flags;
            }
        }
    }
    side.action
}

/// The verdict of one side, and whether its flow is in the baseline. `cached`: the flow
/// is known to be in the baseline already.
#[inline(always)]
fn side_verdict(
    packet: &Packet,
    side: &Side,
    fragment: &Inherited,
    cached: bool,
) -> (Action, Reason, bool) {
    let (decided, action, reason) = side_rules(packet, side, fragment);
    if !decided {
        return baseline_verdict(packet, side, cached);
    }
    (action, reason, false)
}

/// What decides before the baseline: treatment, break-glass, rules, fragments. The first
/// field says whether it decided (no `Option`: see [`Work`] on undefined bytes).
#[inline(always)]
fn side_rules(packet: &Packet, side: &Side, fragment: &Inherited) -> (bool, Action, Reason) {
    let treatment = side.treatment;
    if treatment == UNJUDGED {
        return (true, Action::Pass, Reason::Unenrolled);
    }
    // Before the device's own rules: break-glass lifts them with its baseline (and
    // `finish` lifts the peer's drop).
    if side.flags & SIDE_BREAK_GLASS != 0 {
        return (true, Action::Pass, Reason::BreakGlass);
    }
    if side.flags & SIDE_HAS_RULES != 0 {
        match match_rules(packet, &side.key) {
            RULE_DENY => {
                return match treatment {
                    ENFORCE => (true, Action::Drop, Reason::PolicyDeny),
                    SPARED => (true, Action::Pass, Reason::LifeCriticalSpared),
                    _ => (true, Action::Pass, Reason::PolicyDeny),
                };
            }
            RULE_ALLOW => return (true, Action::Pass, Reason::PolicyAllow),
            _ => {}
        }
    }
    if fragment.later {
        // A later fragment shares its first fragment's fate; unmatched ones are dropped
        // where enforced.
        if fragment.reason != Reason::FragmentUnmatched as u8 {
            return (
                true,
                Action::try_from(fragment.action).unwrap_or(Action::Pass),
                Reason::try_from(fragment.reason).unwrap_or(Reason::FragmentUnmatched),
            );
        }
        // Learn mode has nothing to learn from it: counted as unmatched, so operators see
        // it before they enforce.
        return match treatment {
            ENFORCE => (true, Action::Drop, Reason::FragmentUnmatched),
            _ => (true, Action::Pass, Reason::FragmentUnmatched),
        };
    }
    (false, Action::Pass, Reason::Unenrolled)
}

/// The baseline's verdict (learning in learn mode), and whether the flow is in it.
#[inline(always)]
fn baseline_verdict(packet: &Packet, side: &Side, cached: bool) -> (Action, Reason, bool) {
    let treatment = side.treatment;
    let key = &side.key;
    if cached || BASELINE.get_ptr(key).is_some() {
        let reason = if treatment == LEARN {
            Reason::Learned
        } else {
            Reason::InBaseline
        };
        return (Action::Pass, reason, true);
    }
    let (action, reason) = match treatment {
        LEARN => {
            let entry = BaselineEntry {
                learned_ns: packet.now,
                origin: ORIGIN_LEARNED,
                _pad1: 0,
                _pad2: 0,
                window: packet.learn_window,
            };
            match BASELINE.insert(key, &entry, u64::from(BPF_NOEXIST)) {
                Ok(()) => {
                    if let Some(stats) = DEVICE_STATS.get_ptr_mut(side.slot) {
                        // SAFETY: per-CPU slot.
                        unsafe { (*stats).learned_flows += 1 };
                    }
                    return (Action::Pass, Reason::Learned, true);
                }
                // Another CPU learned it first.
                Err(_) if BASELINE.get_ptr(key).is_some() => {
                    return (Action::Pass, Reason::Learned, true);
                }
                Err(_) => (Action::Pass, Reason::BaselineFull),
            }
        }
        ENFORCE => (Action::Drop, Reason::NotInBaseline),
        SPARED => (Action::Pass, Reason::LifeCriticalSpared),
        _ => (Action::Pass, Reason::NotInBaseline),
    };
    (action, reason, false)
}

/// The action of the policy rules for `key`: RULE_DENY if any deny rule matches (deny
/// wins), else RULE_ALLOW if an allow rule does, else 0.
#[inline(always)]
fn match_rules(packet: &Packet, key: &FlowKey) -> u8 {
    let lookup = LpmKey::new(
        RULE_PREFIX_BASE + 128,
        RuleKeyData {
            generation: packet.generation,
            device: key.device,
            peer: key.peer,
        },
    );
    let Some(set) = RULES.get(&lookup) else {
        return 0;
    };
    let mut verdict = 0;
    for i in 0..MAX_RULES_PER_SET {
        if i as u32 >= set.count {
            break;
        }
        let rule = &set.rules[i];
        let matches = (rule.protocol == RULE_ANY || rule.protocol == key.protocol)
            && (rule.direction == RULE_ANY || rule.direction == key.direction)
            && rule.port_low <= key.service_port
            && key.service_port <= rule.port_high;
        if matches {
            if rule.action == RULE_DENY {
                return RULE_DENY;
            }
            verdict = RULE_ALLOW;
        }
    }
    verdict
}

/// Drop wins; among passes, a violation (would-drop) says most, then learning.
#[inline(always)]
fn rank(action: u8, reason: u8) -> u8 {
    if action == Action::Drop as u8 {
        4
    } else if reason == Reason::NotInBaseline as u8
        || reason == Reason::LifeCriticalSpared as u8
        || reason == Reason::FragmentUnmatched as u8
        || reason == Reason::PolicyDeny as u8
    {
        3
    } else if reason == Reason::Learned as u8
        || reason == Reason::BaselineFull as u8
        || reason == Reason::BreakGlass as u8
    {
        2
    } else {
        1
    }
}

/// Stage 3: the combined verdict, the first fragment's record, the request memory, and
/// the counters.
#[inline(never)]
fn finish(packet: &Packet, ip: &IpPacket, work: &mut Work) -> u8 {
    let [src, dst] = work.sides;
    if src.treatment == UNJUDGED && dst.treatment == UNJUDGED {
        work.action = unenrolled_action(packet) as u8;
        work.reason = Reason::Unenrolled as u8;
    } else if src.treatment == UNJUDGED {
        work.action = dst.action;
        work.reason = dst.reason;
    } else if dst.treatment == UNJUDGED {
        work.action = src.action;
        work.reason = src.reason;
    } else if rank(dst.action, dst.reason) > rank(src.action, src.reason) {
        work.action = dst.action;
        work.reason = dst.reason;
    } else {
        work.action = src.action;
        work.reason = src.reason;
    }
    // Break-glass lifts enforcement for its device's traffic: a drop by the peer's policy
    // is lifted too, whether by the peer's baseline or by its deny rule. The device's own
    // rules were never consulted (`side_rules`), and a rule between two devices is
    // compiled onto both sides, so keeping the peer's deny would keep the device's own
    // rule through its mirror. The peer's violation is still counted (its would-drop and
    // event below): operators see what break-glass let through.
    if work.action == Action::Drop as u8 && (src.flags | dst.flags) & SIDE_BREAK_GLASS != 0 {
        work.action = Action::Pass as u8;
        work.reason = Reason::BreakGlass as u8;
    }
    // A life-critical device's traffic is never dropped by surprise, not even by its
    // peer's policy: only its own confirmed entry can enforce it.
    if work.action == Action::Drop as u8 && (src.flags | dst.flags) & SIDE_PROTECTED != 0 {
        work.action = Action::Pass as u8;
        work.reason = Reason::LifeCriticalSpared as u8;
    }
    if ip.fragment == FragmentKind::First {
        let entry = FragmentEntry {
            service_port: src.key.service_port,
            src_direction: src.key.direction,
            action: work.action,
            reason: work.reason,
            protocol: ip.protocol,
            _pad: 0,
        };
        // Losing this entry only makes later fragments unmatched: fails closed where
        // enforced.
        let _ = FRAGMENTS.insert(&fragment_key(ip), &entry, 0);
    }
    let src_violation = rank(src.action, src.reason) >= 3;
    let dst_violation = rank(dst.action, dst.reason) >= 3;
    let unjudged_pair = src.treatment == UNJUDGED && dst.treatment == UNJUDGED;
    // A request is remembered only when no side's policy objects to it (the same in
    // every mode but learn, so audit and enforce key its replies alike): a flood of
    // refused requests cannot evict allowed ones, and traffic between addresses nobody
    // judges leaves no trace. A reply to a refused request is judged as a request to the
    // client's port, which whatever let the request pass (audit, a spared life-critical
    // device, break-glass) lets pass as well. One insert per allowed request.
    if work.request != 0 && !unjudged_pair && !src_violation && !dst_violation {
        let entry = RequestEntry {
            seen_ns: packet.now,
        };
        let _ = REQUESTS.insert(&flow::request_key(ip), &entry, 0);
    }
    // A frame a capture cut (replay) is counted, but charges no drop, would-drop,
    // break-glass packet or event: what was cut could have changed its verdict.
    let judged = packet.flags & CONFIG_CAPTURE_MAY_BE_CUT == 0;
    let dropped = judged && work.action == Action::Drop as u8;
    let src_violation = judged && src_violation;
    let dst_violation = judged && dst_violation;
    if src_violation {
        emit_event(packet, &work.sides[0], dropped);
    }
    if dst_violation {
        emit_event(packet, &work.sides[1], dropped);
    }
    // A side is charged the drop its own verdict made (both, when neither is judged);
    // a side that only audits is charged a would-drop.
    let src_dropped = dropped && (src.action == Action::Drop as u8 || unjudged_pair);
    let dst_dropped = dropped && (dst.action == Action::Drop as u8 || unjudged_pair);
    let mut src_charge = charge(true, src_dropped, src_violation);
    if judged && src.flags & SIDE_BREAK_GLASS != 0 {
        src_charge |= CHARGE_BREAK_GLASS;
    }
    let mut dst_charge = charge(false, dst_dropped, dst_violation);
    if judged && dst.flags & SIDE_BREAK_GLASS != 0 {
        dst_charge |= CHARGE_BREAK_GLASS;
    }
    // An address outside the inventory is counted on its own only when it talks to
    // another such address: next to an enrolled device it is that device's peer, counted
    // in the device's flow (and a spoofing flood fills only its own tables).
    if judged {
        count_reason(src.slot, src.reason);
        count_reason(dst.slot, dst.reason);
    }
    let both_unenrolled = src.slot == NO_SLOT && dst.slot == NO_SLOT;
    if src.slot != NO_SLOT || both_unenrolled {
        count_device(packet, &ip.src, src.slot, src_charge);
    }
    if dst.slot != NO_SLOT || both_unenrolled {
        count_device(packet, &ip.dst, dst.slot, dst_charge);
    }
    if both_unenrolled {
        count_flow(
            packet,
            &UNENROLLED_FLOWS,
            &work.sides[0].key,
            charge(true, dropped, src_violation),
        );
        count_flow(
            packet,
            &UNENROLLED_FLOWS,
            &work.sides[1].key,
            charge(false, dropped, dst_violation),
        );
    } else if dropped || src_violation || dst_violation {
        // judge_side counted the packet in the enrolled sides' flows (in FLOWS, or in the
        // separate table for a new violating flow); whether it was dropped is known only
        // now. A flow's would-drop moves with its device's.
        charge_flow(&work.sides[0].key, src.slot, dropped, src_charge);
        charge_flow(&work.sides[1].key, dst.slot, dropped, dst_charge);
    }
    work.action
}

/// Charges the verdict of a packet to an enrolled side's flow (nothing when `slot` is
/// NO_SLOT): the packet's drop, or its device's would-drop (`charge` as for the device).
#[inline(always)]
fn charge_flow(key: &FlowKey, slot: u32, dropped: bool, charge: u8) {
    let would_drop = charge & CHARGE_DROPPED == 0 && charge & CHARGE_VIOLATION != 0;
    if slot == NO_SLOT || !(dropped || would_drop) {
        return;
    }
    let flow = match FLOWS.get_ptr_mut(key) {
        Some(flow) => Some(flow),
        None => UNENROLLED_FLOWS.get_ptr_mut(key),
    };
    if let Some(flow) = flow {
        // SAFETY: a per-CPU value of this CPU.
        unsafe {
            if dropped {
                (*flow).dropped_packets += 1;
            }
            if would_drop {
                (*flow).would_drop_packets += 1;
            }
        }
    }
}

/// Counts a packet under `reason` for the device in `slot` (nothing when unenrolled).
#[inline(always)]
fn count_reason(slot: u32, reason: u8) {
    if slot == NO_SLOT {
        return;
    }
    if let Some(counter) = DEVICE_REASONS.get_ptr_mut(device_reason_index(slot, reason)) {
        // SAFETY: per-CPU slot, only this CPU writes it while the program runs.
        unsafe { *counter += 1 };
    }
}

const CHARGE_SENT: u8 = 1 << 0;
const CHARGE_DROPPED: u8 = 1 << 1;
const CHARGE_VIOLATION: u8 = 1 << 2;
const CHARGE_BREAK_GLASS: u8 = 1 << 3;

#[inline(always)]
fn add_event_stat(index: u32) {
    if let Some(counter) = EVENT_STATS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot.
        unsafe { *counter += 1 };
    }
}

/// Reports a violation to the controller, at most EVENTS_PER_DEVICE_PER_SECOND per
/// device and CPU: a flood cannot drown the controller, and what the limit holds back is
/// counted and reported with the device's next event.
#[inline(never)]
fn emit_event(packet: &Packet, side: &Side, dropped: bool) {
    let slot = if side.slot == NO_SLOT {
        UNENROLLED_RATE_SLOT
    } else {
        side.slot
    };
    let Some(rate) = EVENT_RATE.get_ptr_mut(slot) else {
        return;
    };
    // SAFETY: per-CPU slot.
    let rate = unsafe { &mut *rate };
    if packet.now.wrapping_sub(rate.window_start_ns) >= 1_000_000_000 {
        rate.window_start_ns = packet.now;
        rate.sent_in_window = 0;
    }
    if rate.sent_in_window >= EVENTS_PER_DEVICE_PER_SECOND {
        rate.suppressed += 1;
        add_event_stat(EVENTS_SUPPRESSED);
        return;
    }
    let Some(mut entry) = EVENTS.reserve::<Event>(0) else {
        add_event_stat(EVENTS_LOST);
        return;
    };
    entry.write(Event {
        timestamp_ns: packet.now,
        device: side.key.device,
        peer: side.key.peer,
        slot: side.slot,
        suppressed: rate.suppressed,
        service_port: side.key.service_port,
        protocol: side.key.protocol,
        direction: side.key.direction,
        action: if dropped {
            Action::Drop as u8
        } else {
            Action::Pass as u8
        },
        reason: side.reason,
        _pad: 0,
    });
    entry.submit(0);
    rate.sent_in_window += 1;
    rate.suppressed = 0;
    add_event_stat(EVENTS_SENT);
}

/// How a packet is charged to a side's counters, as `CHARGE_*` flags.
#[inline(always)]
fn charge(sent: bool, dropped: bool, violation: bool) -> u8 {
    (if sent { CHARGE_SENT } else { 0 })
        | (if dropped { CHARGE_DROPPED } else { 0 })
        | (if violation { CHARGE_VIOLATION } else { 0 })
}

/// Charges a packet to one side: enrolled devices by slot (never evicted), other
/// addresses in their own LRU table.
#[inline(never)]
fn count_device(packet: &Packet, addr: &Addr, slot: u32, charge: u8) {
    let stats = if slot != NO_SLOT {
        DEVICE_STATS.get_ptr_mut(slot)
    } else {
        match UNENROLLED_STATS.get_ptr_mut(addr) {
            Some(stats) => Some(stats),
            None => {
                let _ = UNENROLLED_STATS.insert(addr, &ZERO_DEVICE_STATS, 0);
                UNENROLLED_STATS.get_ptr_mut(addr)
            }
        }
    };
    let Some(stats) = stats else { return };
    // SAFETY: a per-CPU value, written only by this CPU while the program runs.
    let stats = unsafe { &mut *stats };
    if charge & CHARGE_SENT != 0 {
        stats.packets_sent += 1;
        stats.bytes_sent += packet.len;
    } else {
        stats.packets_received += 1;
        stats.bytes_received += packet.len;
    }
    if stats.first_seen_ns == 0 {
        stats.first_seen_ns = packet.now;
    }
    stats.last_seen_ns = packet.now;
    if charge & CHARGE_DROPPED != 0 {
        stats.dropped_packets += 1;
    } else if charge & CHARGE_VIOLATION != 0 {
        stats.would_drop_packets += 1;
    }
    if charge & CHARGE_BREAK_GLASS != 0 {
        stats.break_glass_packets += 1;
    }
}

/// The flow's entry in `table`, created when missing.
#[inline(always)]
fn flow_entry(
    table: &LruPerCpuHashMap<FlowKey, FlowStats>,
    key: &FlowKey,
) -> Option<NonNull<FlowStats>> {
    match table.get_ptr_mut(key).and_then(NonNull::new) {
        Some(stats) => Some(stats),
        None => {
            let _ = table.insert(key, &ZERO_FLOW_STATS, 0);
            table.get_ptr_mut(key).and_then(NonNull::new)
        }
    }
}

#[inline(always)]
fn add_flow_packet(packet: &Packet, stats: &mut FlowStats, charge: u8) {
    if charge & CHARGE_SENT != 0 {
        stats.packets_sent += 1;
        stats.bytes_sent += packet.len;
    } else {
        stats.packets_received += 1;
        stats.bytes_received += packet.len;
    }
    stats.last_seen_ns = packet.now;
    if charge & CHARGE_DROPPED != 0 {
        stats.dropped_packets += 1;
    } else if charge & CHARGE_VIOLATION != 0 {
        stats.would_drop_packets += 1;
    }
}

#[inline(never)]
fn count_flow(
    packet: &Packet,
    table: &LruPerCpuHashMap<FlowKey, FlowStats>,
    key: &FlowKey,
    charge: u8,
) {
    if let Some(mut stats) = flow_entry(table, key) {
        // SAFETY: a per-CPU value, written only by this CPU while the program runs.
        add_flow_packet(packet, unsafe { stats.as_mut() }, charge);
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any reachable path here; the code has none.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
