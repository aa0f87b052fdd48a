//! The packet path: parse, count, learn and enforce, for every frame at XDP.
//!
//! Read top to bottom: maps, the one bounds-checked `ptr_at`, the program entry that maps
//! errors and verdicts to an XDP action in one place, then the decision for IP packets.
//! Layouts, reasons, the parser and the service-port rule live in `monitor-common`.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::{BPF_F_NO_PREALLOC, BPF_NOEXIST, xdp_action},
    helpers::bpf_ktime_get_coarse_ns,
    macros::{map, xdp},
    maps::{Array, HashMap, LruHashMap, LruPerCpuHashMap, PerCpuArray},
    programs::XdpContext,
};
use monitor_common::{
    Action, FrameClass, Mode, Reason, VERDICT_SLOTS,
    flow::{self, Initiator, Service, ServiceHint},
    maps::{
        BaselineEntry, CONFIG_CAPTURE_MAY_BE_CUT, CONFIG_JUDGE_UNENROLLED, CONFIG_UNENROLLED_DROP,
        Config, ConnEntry, Counter, DEVICE_ENFORCE_CONFIRMED, DEVICE_LIFE_CRITICAL, DeviceEntry,
        DeviceStats, Direction, FlowKey, FlowStats, FragmentEntry, FragmentKey, LAYOUT_VERSION,
        MAX_BASELINE, MAX_CONNTRACK, MAX_DEVICES, MAX_FLOWS, MAX_FRAGMENTS, MAX_UNENROLLED,
        MAX_UNENROLLED_FLOWS, MODE_INHERIT, ORIGIN_LEARNED,
    },
    parse::{self, Addr, FragmentKind, FrameBytes, IpPacket, Snaplen},
    verdict_index,
};

#[map]
static CONFIG: Array<Config> = Array::with_max_entries(1, 0);
#[map]
static DEVICES: HashMap<Addr, DeviceEntry> = HashMap::with_max_entries(MAX_DEVICES, 0);
#[map]
static DEVICE_STATS: PerCpuArray<DeviceStats> = PerCpuArray::with_max_entries(MAX_DEVICES, 0);
#[map]
static UNENROLLED_STATS: LruPerCpuHashMap<Addr, DeviceStats> =
    LruPerCpuHashMap::with_max_entries(MAX_UNENROLLED, 0);
#[map]
static FLOWS: LruPerCpuHashMap<FlowKey, FlowStats> = LruPerCpuHashMap::with_max_entries(MAX_FLOWS, 0);
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
#[map]
static VERDICTS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(VERDICT_SLOTS, 0);
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
};
static ZERO_FLOW_STATS: FlowStats = FlowStats {
    packets_sent: 0,
    bytes_sent: 0,
    packets_received: 0,
    bytes_received: 0,
    last_seen_ns: 0,
    dropped_packets: 0,
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
    let class = match parse::parse_frame(&frame, Snaplen::Strict) {
        Ok(parsed) => parsed.class,
        Err(error) => error.class,
    };
    add_counter(&CLASSES, class as u32, len);
    xdp_action::XDP_PASS
}

/// Per-packet context shared by the helpers below.
struct Packet {
    len: u64,
    now: u64,
    global: Mode,
    flags: u8,
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
    };
    let snaplen = if packet.flags & CONFIG_CAPTURE_MAY_BE_CUT != 0 {
        Snaplen::CaptureMayBeCut
    } else {
        Snaplen::Strict
    };
    let (action, reason) = match parse::parse_frame(&frame, snaplen) {
        Ok(parsed) => {
            add_counter(&CLASSES, parsed.class as u32, packet.len);
            match parsed.ip {
                Some(ip) => {
                    stash(&ip)?;
                    judge_ip(&packet)
                }
                None => (Action::Pass, Reason::NotIp),
            }
        }
        Err(error) => {
            add_counter(&CLASSES, error.class as u32, packet.len);
            let action = match error.addrs {
                Some((src, dst)) => judge_malformed(&packet, src, dst),
                None if packet.global == Mode::Enforce => Action::Drop,
                None => Action::Pass,
            };
            (action, error.reason)
        }
    };
    add_counter(&VERDICTS, verdict_index(action, reason), packet.len);
    Ok(action)
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

/// How a device is treated now.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Treatment {
    /// Not judged: an unenrolled address (unless CONFIG_JUDGE_UNENROLLED).
    Unjudged,
    Learn,
    Audit,
    Enforce,
    /// Enforce asked for, but the device is life-critical without its own confirmation.
    Spared,
}

#[inline(always)]
fn treatment(entry: &DeviceEntry, global: Mode) -> Treatment {
    let mode = if entry.mode == MODE_INHERIT {
        global
    } else {
        Mode::try_from(entry.mode).unwrap_or(global)
    };
    match mode {
        Mode::Learn => Treatment::Learn,
        Mode::Audit => Treatment::Audit,
        Mode::Enforce
            if entry.flags & DEVICE_LIFE_CRITICAL != 0
                && entry.flags & DEVICE_ENFORCE_CONFIRMED == 0 =>
        {
            Treatment::Spared
        }
        Mode::Enforce => Treatment::Enforce,
    }
}

/// One side of a packet: its address and, if enrolled, its inventory entry.
#[derive(Clone, Copy)]
struct Endpoint {
    addr: Addr,
    /// Valid when `enrolled` (zeroed otherwise; no `Option`, see [`Case`]).
    device: DeviceEntry,
    enrolled: bool,
}

impl Endpoint {
    #[inline(always)]
    fn lookup(addr: Addr) -> Endpoint {
        match DEVICES.get_ptr(&addr) {
            // SAFETY: the entry is copied out at once.
            Some(entry) => Endpoint {
                addr,
                device: unsafe { *entry },
                enrolled: true,
            },
            None => Endpoint {
                addr,
                device: DeviceEntry {
                    slot: NO_SLOT,
                    mode: MODE_INHERIT,
                    flags: 0,
                    _pad: 0,
                },
                enrolled: false,
            },
        }
    }

    #[inline(always)]
    fn slot(&self) -> u32 {
        if self.enrolled { self.device.slot } else { NO_SLOT }
    }

    /// How this endpoint is judged: enrolled devices by their entry, unenrolled
    /// addresses only when CONFIG_JUDGE_UNENROLLED asks for it.
    #[inline(always)]
    fn treatment(&self, packet: &Packet) -> Treatment {
        if self.enrolled {
            treatment(&self.device, packet.global)
        } else if packet.flags & CONFIG_JUDGE_UNENROLLED != 0 {
            match packet.global {
                Mode::Learn => Treatment::Learn,
                Mode::Audit => Treatment::Audit,
                Mode::Enforce => Treatment::Enforce,
            }
        } else {
            Treatment::Unjudged
        }
    }
}

/// A malformed IP packet: counted against its devices, dropped only where enforcement
/// applies to one of them (or, with no device involved, in global enforce mode).
#[inline(never)]
fn judge_malformed(packet: &Packet, src: Addr, dst: Addr) -> Action {
    let src = Endpoint::lookup(src);
    let dst = Endpoint::lookup(dst);
    let mut action = if !src.enrolled && !dst.enrolled {
        unenrolled_action(packet)
    } else {
        Action::Pass
    };
    for endpoint in [&src, &dst] {
        if endpoint.enrolled && endpoint.treatment(packet) == Treatment::Enforce {
            action = Action::Drop;
        }
    }
    let dropped = action == Action::Drop;
    count_device(packet, &src, charge(true, dropped, false));
    count_device(packet, &dst, charge(false, dropped, false));
    action
}

#[inline(always)]
fn unenrolled_action(packet: &Packet) -> Action {
    if packet.global == Mode::Enforce && packet.flags & CONFIG_UNENROLLED_DROP != 0 {
        Action::Drop
    } else {
        Action::Pass
    }
}

/// A verdict for one endpoint, before the two sides are combined.
#[derive(Clone, Copy)]
struct Judgement {
    action: Action,
    reason: Reason,
}

impl Judgement {
    /// Drop wins; among passes, a violation (would-drop) says most, then learning.
    #[inline(always)]
    fn rank(&self) -> u8 {
        match (self.action, self.reason) {
            (Action::Drop, _) => 4,
            (_, Reason::NotInBaseline | Reason::LifeCriticalSpared | Reason::FragmentUnmatched) => 3,
            (_, Reason::Learned | Reason::BaselineFull) => 2,
            _ => 1,
        }
    }
}

/// The parsed IP packet, handed from the parser to [`judge_ip`] through a per-CPU slot.
/// Read back from a map, its fields are unknown to the verifier, so it checks the judge
/// once instead of once per path through the parser (which made the program "too large").
#[map]
static SCRATCH: PerCpuArray<IpPacket> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
fn stash(ip: &IpPacket) -> Result<(), Fault> {
    let slot = SCRATCH.get_ptr_mut(0).ok_or(Fault)?;
    // SAFETY: this CPU's slot, used only within this program run.
    unsafe { *slot = *ip };
    Ok(())
}

#[inline(never)]
fn judge_ip(packet: &Packet) -> (Action, Reason) {
    let Some(ip) = SCRATCH.get_ptr(0) else {
        return (Action::Pass, Reason::NotIp);
    };
    // SAFETY: this CPU's slot, written by `stash` in this program run.
    let ip = unsafe { &*ip };
    let src = Endpoint::lookup(ip.src);
    let dst = Endpoint::lookup(ip.dst);

    // The service, and for later fragments the fate of their first fragment.
    let mut inherited = Judgement {
        action: Action::Pass,
        reason: Reason::FragmentUnmatched,
    };
    let is_later_fragment = ip.fragment == FragmentKind::Later;
    let service = match ip.fragment {
        FragmentKind::Later => match FRAGMENTS.get_ptr(&fragment_key(ip)) {
            Some(entry) => {
                // SAFETY: copied out at once.
                let entry = unsafe { *entry };
                inherited = Judgement {
                    action: Action::try_from(entry.action).unwrap_or(Action::Pass),
                    reason: Reason::try_from(entry.reason).unwrap_or(Reason::FragmentUnmatched),
                };
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
            None => Service {
                    port: 0,
                    initiator: Initiator::Neither,
                },
        },
        _ => resolve_service(ip),
    };
    let src_direction = flow::src_direction(service.initiator);

    let mut src_case = Case {
        key: flow::flow_key(ip.src, ip.dst, ip.protocol, service.port, src_direction),
        treatment: Treatment::Learn,
        slot: src.slot(),
        inherited,
        is_later_fragment,
    };
    let mut dst_case = Case {
        key: flow::flow_key(ip.dst, ip.src, ip.protocol, service.port, src_direction.reversed()),
        treatment: Treatment::Learn,
        slot: dst.slot(),
        inherited,
        is_later_fragment,
    };

    let mut verdict = Judgement {
        action: unenrolled_action(packet),
        reason: Reason::Unenrolled,
    };
    src_case.treatment = src.treatment(packet);
    dst_case.treatment = dst.treatment(packet);
    let src_verdict = judge_endpoint(packet, &src_case);
    let dst_verdict = judge_endpoint(packet, &dst_case);
    if src_case.treatment != Treatment::Unjudged || dst_case.treatment != Treatment::Unjudged {
        verdict = if dst_verdict.rank() > src_verdict.rank() {
            dst_verdict
        } else {
            src_verdict
        };
    }

    if ip.fragment == FragmentKind::First {
        let entry = FragmentEntry {
            service_port: service.port,
            src_direction: src_direction as u8,
            action: verdict.action as u8,
            reason: verdict.reason as u8,
            _pad1: 0,
            _pad2: 0,
        };
        // Losing this entry only makes later fragments unmatched: fails closed where enforced.
        let _ = FRAGMENTS.insert(&fragment_key(ip), &entry, 0);
    }

    let dropped = verdict.action == Action::Drop;
    let src_violation = src_verdict.rank() >= 3;
    let dst_violation = dst_verdict.rank() >= 3;
    count_device(packet, &src, charge(true, dropped && src_violation, src_violation));
    count_device(packet, &dst, charge(false, dropped && dst_violation, dst_violation));
    count_flow(packet, src.enrolled, &src_case.key, charge(true, dropped, false));
    count_flow(packet, dst.enrolled, &dst_case.key, charge(false, dropped, false));
    (verdict.action, verdict.reason)
}

#[inline(always)]
fn fragment_key(ip: &IpPacket) -> FragmentKey {
    FragmentKey {
        src: ip.src,
        dst: ip.dst,
        id: ip.fragment_id,
        protocol: ip.protocol,
        _pad1: 0,
        _pad2: 0,
    }
}

/// The service port and initiator, remembering TCP handshakes in CONNTRACK.
#[inline(never)]
fn resolve_service(ip: &IpPacket) -> Service {
    match flow::service_hint(ip) {
        ServiceHint::Known(service) => service,
        ServiceHint::TcpHandshake(service) => {
            {
                let (key, src_is_low) = flow::conn_key(ip, ip.src_port, ip.dst_port);
                let entry = ConnEntry {
                    server: flow::conn_server(service, src_is_low),
                    _pad1: 0,
                    _pad2: 0,
                    _pad3: 0,
                };
                // A lost entry falls back to the lower-port rule, which agrees for
                // ordinary clients.
                let _ = CONNTRACK.insert(&key, &entry, 0);
            }
            service
        }
        ServiceHint::TcpEstablished { src_port, dst_port } => {
            let (key, src_is_low) = flow::conn_key(ip, src_port, dst_port);
            match CONNTRACK.get_ptr(&key) {
                // SAFETY: one byte copied out at once.
                Some(entry) => {
                    flow::service_from_conn(unsafe { (*entry).server }, src_is_low, src_port, dst_port)
                }
                None => flow::by_ports(src_port, dst_port),
            }
        }
    }
}

/// One endpoint to judge: its flow key, how it is treated, its stats slot, and for later
/// fragments what their first fragment got. Bundled because BPF calls take five arguments.
///
/// No `Option` fields: LLVM may store an uninitialised register for a `None` payload, and
/// the verifier rejects reads of uninitialised registers.
struct Case {
    key: FlowKey,
    treatment: Treatment,
    /// DEVICE_STATS slot, or [`NO_SLOT`].
    slot: u32,
    /// For later fragments: what the first fragment got (valid when `is_later_fragment`).
    inherited: Judgement,
    is_later_fragment: bool,
}

const NO_SLOT: u32 = u32::MAX;

#[inline(never)]
fn judge_endpoint(packet: &Packet, case: &Case) -> Judgement {
    let pass = |reason| Judgement {
        action: Action::Pass,
        reason,
    };
    if case.treatment == Treatment::Unjudged {
        return pass(Reason::Unenrolled);
    }
    if case.is_later_fragment {
        let first = case.inherited;
        // A later fragment: its first fragment's verdict, or "unmatched".
        if first.reason != Reason::FragmentUnmatched {
            return first;
        }
        return match case.treatment {
            Treatment::Enforce => Judgement {
                action: Action::Drop,
                reason: Reason::FragmentUnmatched,
            },
            Treatment::Learn => pass(Reason::Learned),
            Treatment::Audit | Treatment::Spared | Treatment::Unjudged => first,
        };
    }
    let key = &case.key;
    let known = BASELINE.get_ptr(key).is_some();
    match case.treatment {
        Treatment::Learn if known => pass(Reason::Learned),
        Treatment::Learn => {
            let entry = BaselineEntry {
                learned_ns: packet.now,
                origin: ORIGIN_LEARNED,
                _pad1: 0,
                _pad2: 0,
                _pad3: 0,
            };
            match BASELINE.insert(key, &entry, u64::from(BPF_NOEXIST)) {
                Ok(()) => {
                    if let Some(stats) = DEVICE_STATS.get_ptr_mut(case.slot) {
                        // SAFETY: per-CPU slot.
                        unsafe { (*stats).learned_flows += 1 };
                    }
                    pass(Reason::Learned)
                }
                // Another CPU learned it first.
                Err(_) if BASELINE.get_ptr(key).is_some() => pass(Reason::Learned),
                Err(_) => pass(Reason::BaselineFull),
            }
        }
        _ if known => pass(Reason::InBaseline),
        Treatment::Enforce => Judgement {
            action: Action::Drop,
            reason: Reason::NotInBaseline,
        },
        Treatment::Spared => pass(Reason::LifeCriticalSpared),
        Treatment::Audit => pass(Reason::NotInBaseline),
        Treatment::Unjudged => pass(Reason::Unenrolled),
    }
}

const CHARGE_SENT: u8 = 1 << 0;
const CHARGE_DROPPED: u8 = 1 << 1;
const CHARGE_VIOLATION: u8 = 1 << 2;

/// How a packet is charged to an endpoint's counters, as `CHARGE_*` flags.
#[inline(always)]
fn charge(sent: bool, dropped: bool, violation: bool) -> u8 {
    (if sent { CHARGE_SENT } else { 0 })
        | (if dropped { CHARGE_DROPPED } else { 0 })
        | (if violation { CHARGE_VIOLATION } else { 0 })
}

/// Charges a packet to one endpoint: enrolled devices by slot (never evicted), other
/// addresses in their own LRU table.
#[inline(never)]
fn count_device(packet: &Packet, endpoint: &Endpoint, charge: u8) {
    let stats = match endpoint.enrolled {
        true => DEVICE_STATS.get_ptr_mut(endpoint.device.slot),
        false => match UNENROLLED_STATS.get_ptr_mut(&endpoint.addr) {
            Some(stats) => Some(stats),
            None => {
                let _ = UNENROLLED_STATS.insert(&endpoint.addr, &ZERO_DEVICE_STATS, 0);
                UNENROLLED_STATS.get_ptr_mut(&endpoint.addr)
            }
        },
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
}

#[inline(never)]
fn count_flow(packet: &Packet, enrolled: bool, key: &FlowKey, charge: u8) {
    let table = if enrolled {
        &FLOWS
    } else {
        &UNENROLLED_FLOWS
    };
    let stats = match table.get_ptr_mut(key) {
        Some(stats) => stats,
        None => {
            let _ = table.insert(key, &ZERO_FLOW_STATS, 0);
            match table.get_ptr_mut(key) {
                Some(stats) => stats,
                None => return,
            }
        }
    };
    // SAFETY: a per-CPU value, written only by this CPU while the program runs.
    let stats = unsafe { &mut *stats };
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
