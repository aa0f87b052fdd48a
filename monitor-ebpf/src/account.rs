//! Accounting: what a decision charges to whom (devices, reasons, flows, events), and the
//! flow tables' slots. The cached path and the full judge apply a decision through the
//! same [`apply`], so a packet is charged the same whichever path decided it.

use core::ptr::{NonNull, read_volatile, write_volatile};

use aya_ebpf::maps::PerCpuArray;
use monitor_common::{
    Action,
    flowtable::set_of,
    judge::{
        CHARGE_COUNT, CHARGE_DROPPED, CHARGE_REASON, CHARGE_SENT, CHARGE_VIOLATION, LEARN, NO_SLOT,
        ProbeMemo, SIDE_SPOOFED, Side, TABLE_FLOWS, TABLE_NONE, binding_allows, device_charge,
        flow_charge, roll_window,
    },
    maps::{
        Counter, DEVICE_MAC_BOUND, Decision, DecisionSide, DeviceKey, DeviceStats, EVENTS_LOST,
        EVENTS_PER_DEVICE_PER_SECOND, EVENTS_SENT, EVENTS_SUPPRESSED, Event, EventRate, FLOW_WAYS,
        FlowKey, FlowSet, FlowStats, LEARNED_MACS_HELD, MacBindingKey, StationKey, StationStats,
        UNENROLLED_RATE_SLOT, defs, device_reason_index, source_mac,
    },
    parse::{Addr, IpPacket},
};

use crate::{
    Packet,
    maps::{
        DEVICE_REASONS, DEVICE_STATS, DEVICES, EVENT_RATE, EVENT_STATS, EVENTS, FLOWS,
        LEARNED_MACS, MAC_BINDINGS, STATIONS, UNENROLLED_FLOWS, UNENROLLED_STATS,
    },
};

/// Adds `value` to a counter shared by CPUs (a flow's, an unenrolled address's). Rust's
/// atomics are plain loads and stores on this single-threaded target, so the BPF atomic
/// add is written out.
#[inline(always)]
pub fn atomic_add(counter: *mut u64, value: u64) {
    // SAFETY: `counter` points at a u64 in map memory that outlives the program run; the
    // instruction adds to it atomically and touches nothing else.
    unsafe {
        core::arch::asm!(
            "lock *(u64 *)({counter} + 0) += {value}",
            counter = in(reg) counter,
            value = in(reg) value,
            options(nostack),
        );
    }
}

/// ORs `mask` into `word` atomically (BPF_ATOMIC | BPF_OR).
#[inline(always)]
pub fn atomic_or(word: *mut u64, mask: u64) {
    // SAFETY: `word` points at a u64 in map memory that outlives the program run; the
    // instruction ORs into it atomically and touches nothing else.
    unsafe {
        core::arch::asm!(
            "lock *(u64 *)({word} + 0) |= {mask}",
            word = in(reg) word,
            mask = in(reg) mask,
            options(nostack),
        );
    }
}

#[inline(always)]
pub fn add_counter(map: &PerCpuArray<Counter>, index: u32, len: u64) {
    // SAFETY: per-CPU slot, only this CPU writes it while the program runs.
    count_frame(map.get_ptr_mut(index).map(|c| unsafe { &mut *c }), len);
}

/// Adds a frame of `len` bytes to `counter` (a place in this CPU's `FrameCounts`).
#[inline(always)]
pub fn count_frame(counter: Option<&mut Counter>, len: u64) {
    if let Some(counter) = counter {
        counter.packets += 1;
        counter.bytes += len;
    }
}

#[inline(always)]
fn add_u64(map: &PerCpuArray<u64>, index: u32) {
    if let Some(counter) = map.get_ptr_mut(index) {
        // SAFETY: per-CPU slot.
        unsafe { *counter += 1 };
    }
}

/// Counts a packet under `reason` for the device in `slot` (nothing when unenrolled).
#[inline(always)]
pub fn count_reason(slot: u32, reason: u8) {
    count_reasons(slot, reason, 1);
}

/// Counts `packets` packets under `reason` for the device in `slot` (nothing when
/// unenrolled).
#[inline(always)]
fn count_reasons(slot: u32, reason: u8, packets: u64) {
    if slot == NO_SLOT {
        return;
    }
    if let Some(count) = DEVICE_REASONS.get_ptr_mut(device_reason_index(slot, reason)) {
        // SAFETY: per-CPU slot.
        unsafe { *count += packets };
    }
}

/// Charges a packet to one side's counters (`charge`: `CHARGE_*`): an enrolled device by
/// slot (per CPU, never evicted), another address in the shared table of unenrolled
/// addresses.
#[inline(always)]
pub fn count_device(packet: &Packet, addr: &Addr, slot: u32, charge: u8) {
    if slot != NO_SLOT {
        charge_device(slot, charge, 1, packet.len, packet.now);
    } else {
        count_unenrolled(packet, addr, charge);
    }
}

/// Adds `packets` packets of `bytes` bytes, the last at `last_ns`, to this CPU's counters
/// of the device in `slot`, as its side's charge `charge` says (`judge::device_charge`).
#[inline(always)]
fn charge_device(slot: u32, charge: u8, packets: u64, bytes: u64, last_ns: u64) {
    let Some(stats) = DEVICE_STATS.get_ptr_mut(slot) else {
        return;
    };
    // SAFETY: a per-CPU value, written only by this CPU while the program runs.
    let stats = unsafe { &mut *stats };
    let add = device_charge(charge, packets, bytes, last_ns);
    stats.packets_sent += add.packets_sent;
    stats.bytes_sent += add.bytes_sent;
    stats.packets_received += add.packets_received;
    stats.bytes_received += add.bytes_received;
    if stats.first_seen_ns == 0 {
        stats.first_seen_ns = last_ns;
    }
    if stats.last_seen_ns < last_ns {
        stats.last_seen_ns = last_ns;
    }
    stats.dropped_packets += add.dropped_packets;
    stats.would_drop_packets += add.would_drop_packets;
    stats.break_glass_packets += add.break_glass_packets;
}

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

#[inline(never)]
fn count_unenrolled(packet: &Packet, addr: &Addr, charge: u8) -> u8 {
    let stats = match UNENROLLED_STATS.get_ptr_mut(addr) {
        Some(stats) => Some(stats),
        None => {
            let _ = UNENROLLED_STATS.insert(addr, &ZERO_DEVICE_STATS, 0);
            UNENROLLED_STATS.get_ptr_mut(addr)
        }
    };
    let Some(stats) = stats else { return 0 };
    // SAFETY: a value shared by CPUs: counters are added atomically, times stored whole.
    unsafe {
        if charge & CHARGE_SENT != 0 {
            atomic_add(&raw mut (*stats).packets_sent, 1);
            atomic_add(&raw mut (*stats).bytes_sent, packet.len);
        } else {
            atomic_add(&raw mut (*stats).packets_received, 1);
            atomic_add(&raw mut (*stats).bytes_received, packet.len);
        }
        if (*stats).first_seen_ns == 0 {
            (*stats).first_seen_ns = packet.now;
        }
        (*stats).last_seen_ns = packet.now;
        if charge & CHARGE_DROPPED != 0 {
            atomic_add(&raw mut (*stats).dropped_packets, 1);
        } else if charge & CHARGE_VIOLATION != 0 {
            atomic_add(&raw mut (*stats).would_drop_packets, 1);
        }
    }
    1
}

static ZERO_STATION: StationStats = StationStats {
    first_seen_ns: 0,
    last_seen_ns: 0,
    packets: 0,
    bytes: 0,
    ifindex: 0,
    _pad: 0,
};

/// Counts a frame from a ward leg in the discovery table when its source is no enrolled
/// device (`src_slot` NO_SLOT) or an impostor's (`spoofed`): by its MAC and address. Frames
/// of enrolled devices, and every frame off ward legs, cost one comparison.
#[inline(always)]
pub fn note_station(packet: &Packet, src: &Addr, src_slot: u32, spoofed: bool) {
    if packet.source_id == 0 || (src_slot != NO_SLOT && !spoofed) {
        return;
    }
    record_station(packet, src);
}

/// `note_station` for a judged frame's source side, and on a ward leg the MAC an enrolled
/// source sent from while it learns (`learn_source_mac`). Only the full judge calls this:
/// a decision made on a ward leg is cached for its MAC alone, so each MAC a device uses
/// is judged (and learned) at least once, and the cached path stays as it was.
#[inline(always)]
pub fn note_source(packet: &Packet, src: &Addr, side: &Side) {
    let spoofed = side.flags & SIDE_SPOOFED != 0;
    note_station(packet, src, side.slot, spoofed);
    if packet.source_id != 0 && side.slot != NO_SLOT && !spoofed && side.treatment == LEARN {
        learn_source_mac(packet.source_id, side.slot);
    }
}

/// Keeps `source_id`'s MAC among those the device in `slot` sent from while it learned
/// (`LEARNED_MACS`): the first LEARNED_MACS_HELD, then frames from more are counted.
/// Shared by CPUs: each MAC is stored whole; two CPUs taking the same free place at once
/// keep one MAC, and the other's next judged frame takes the next place.
#[inline(never)]
fn learn_source_mac(source_id: u64, slot: u32) -> u8 {
    let Some(seen) = LEARNED_MACS.get_ptr_mut(slot) else {
        return 0;
    };
    for i in 0..LEARNED_MACS_HELD {
        // SAFETY: a value of a shared array; each place is read and written whole.
        unsafe {
            let held = read_volatile(&raw const (*seen).ids[i]);
            if held == source_id {
                return 0;
            }
            if held == 0 {
                write_volatile(&raw mut (*seen).ids[i], source_id);
                return 1;
            }
        }
    }
    // SAFETY: as above, added atomically.
    atomic_add(unsafe { &raw mut (*seen).more }, 1);
    1
}

/// Counts a neighbour's claim of `addr` (ARP, neighbour advertisement) from a ward leg in
/// the discovery table, under the rule `note_station` applies to source addresses: when
/// `addr` is no enrolled device's, or a MAC-bound device's that this MAC may not use.
#[inline(never)]
pub fn note_claim(packet: &Packet, addr: &Addr) -> u8 {
    let key = DeviceKey {
        addr: *addr,
        generation: packet.generation,
        _pad1: 0,
        _pad2: 0,
    };
    let flags = match DEVICES.get_ptr(&key) {
        // SAFETY: one field of a map value, read at once.
        Some(entry) => unsafe { (*entry).flags },
        None => return record_station(packet, addr),
    };
    if flags & DEVICE_MAC_BOUND == 0 {
        return 0;
    }
    let binding = MacBindingKey {
        addr: *addr,
        mac: source_mac(packet.source_id),
        _pad: 0,
    };
    let (found, until_ns) = match MAC_BINDINGS.get_ptr(&binding) {
        // SAFETY: one field of a map value, read at once.
        Some(binding) => (true, unsafe { (*binding).until_ns }),
        None => (false, 0),
    };
    if binding_allows(found, until_ns, packet.now) {
        return 0;
    }
    record_station(packet, addr)
}

#[inline(never)]
fn record_station(packet: &Packet, src: &Addr) -> u8 {
    let key = StationKey {
        mac: source_mac(packet.source_id),
        _pad: 0,
        addr: *src,
    };
    let stats = match STATIONS.get_ptr_mut(&key) {
        Some(stats) => Some(stats),
        None => {
            let _ = STATIONS.insert(&key, &ZERO_STATION, 0);
            STATIONS.get_ptr_mut(&key)
        }
    };
    let Some(stats) = stats else { return 0 };
    // SAFETY: a value shared by CPUs: counters added atomically, times stored whole.
    unsafe {
        atomic_add(&raw mut (*stats).packets, 1);
        atomic_add(&raw mut (*stats).bytes, packet.len);
        if (*stats).first_seen_ns == 0 {
            (*stats).first_seen_ns = packet.now;
        }
        (*stats).last_seen_ns = packet.now;
        (*stats).ifindex = packet.ifindex;
    }
    1
}

/// The reversed [`monitor_common::maps::Direction`] (as u8): a flow seen from its peer.
#[inline(always)]
pub fn reversed(direction: u8) -> u8 {
    match direction {
        1 => 2,
        2 => 1,
        other => other,
    }
}

/// Reports a violation of side `side` (0: the packet's source, 1: its destination) to the
/// controller, at most EVENTS_PER_DEVICE_PER_SECOND per device and CPU: a flood cannot
/// drown the controller, and what the limit holds back is counted and reported with the
/// device's next event.
#[inline(always)]
fn emit_event(packet: &Packet, ip: &IpPacket, decision: &Decision, side: u8, slot: u32) {
    let rate_slot = if slot == NO_SLOT {
        UNENROLLED_RATE_SLOT
    } else {
        slot
    };
    let Some(rate) = EVENT_RATE.get_ptr_mut(rate_slot) else {
        return;
    };
    // SAFETY: per-CPU slot.
    let rate = unsafe { &mut *rate };
    roll_window(rate, packet.now);
    if suppress_event(rate) {
        return;
    }
    if send_event(packet, ip, decision, side, rate.suppressed) != 0 {
        rate.sent_in_window += 1;
        rate.suppressed = 0;
    }
}

/// Whether the rate `rate` (its window rolled to now) allows no more events in its
/// window: the event is then counted as suppressed (reported with the next one sent, and
/// in EVENT_STATS).
#[inline(always)]
pub fn suppress_event(rate: &mut EventRate) -> bool {
    if rate.sent_in_window < EVENTS_PER_DEVICE_PER_SECOND {
        return false;
    }
    rate.suppressed += 1;
    add_u64(&EVENT_STATS, EVENTS_SUPPRESSED);
    true
}

/// Writes an event into the ring (the rare part of `emit_event`, kept out of line).
#[inline(never)]
fn send_event(
    packet: &Packet,
    ip: &IpPacket,
    decision: &Decision,
    side: u8,
    suppressed: u32,
) -> u8 {
    let Some(mut entry) = EVENTS.reserve::<Event>(0) else {
        add_u64(&EVENT_STATS, EVENTS_LOST);
        return 0;
    };
    let source = side == 0;
    let own = if source {
        &decision.sides[0]
    } else {
        &decision.sides[1]
    };
    let dropped = packet.judged() && decision.action == Action::Drop as u8;
    entry.write(Event {
        timestamp_ns: packet.now,
        device: if source { ip.src } else { ip.dst },
        peer: if source { ip.dst } else { ip.src },
        slot: own.slot,
        suppressed,
        service_port: decision.service_port,
        protocol: decision.protocol,
        direction: if source {
            decision.src_direction
        } else {
            reversed(decision.src_direction)
        },
        action: if dropped {
            Action::Drop as u8
        } else {
            Action::Pass as u8
        },
        reason: own.reason,
        _pad: 0,
        source_mac: if source {
            source_mac(decision.source_id)
        } else {
            [0; 6]
        },
        _pad2: 0,
    });
    entry.submit(0);
    add_u64(&EVENT_STATS, EVENTS_SENT);
    1
}

/// No flow slot.
pub const NO_FLOW: u32 = u32::MAX;

/// Where a flow's slot is: its set, and its way in the set.
#[derive(Clone, Copy)]
pub struct FlowRef {
    set: NonNull<FlowSet>,
    way: usize,
}

/// Set `set` of flow table `table` (`TABLE_FLOWS` or `TABLE_UNENROLLED`).
#[inline(always)]
fn flow_set(table: u8, set: u32) -> Option<NonNull<FlowSet>> {
    let set = if table == TABLE_FLOWS {
        FLOWS.get_ptr_mut(set)
    } else {
        UNENROLLED_FLOWS.get_ptr_mut(set)
    };
    set.and_then(NonNull::new)
}

/// The slot with index `index` (`set * FLOW_WAYS + way`) of `table`.
#[inline(always)]
pub fn flow_ref(table: u8, index: u32) -> Option<FlowRef> {
    Some(FlowRef {
        set: flow_set(table, index / FLOW_WAYS)?,
        way: (index % FLOW_WAYS) as usize,
    })
}

#[inline(always)]
fn table_sets(table: u8) -> u32 {
    if table == TABLE_FLOWS {
        defs::FLOWS.max_entries
    } else {
        defs::UNENROLLED_FLOWS.max_entries
    }
}

/// Where the flow tagged `tag` lives in `table`: its slot index, or NO_FLOW. A flow
/// found is marked judged at `now` (what a new flow's choice of a slot to take goes by).
#[inline(never)]
pub fn find_flow(table: u8, tag: u64, now: u64) -> u32 {
    let set_index = set_of(tag, table_sets(table));
    let Some(set) = flow_set(table, set_index) else {
        return NO_FLOW;
    };
    let set = set.as_ptr();
    let mut found = NO_FLOW;
    for way in 0..FLOW_WAYS as usize {
        // SAFETY: a set of a shared array; each tag is read whole.
        if unsafe { read_volatile(&raw const (*set).tags[way]) } == tag {
            found = way as u32;
        }
    }
    if found == NO_FLOW {
        return NO_FLOW;
    }
    // SAFETY: as above; the time is stored whole.
    unsafe { (*set).judged_ns[(found & (FLOW_WAYS - 1)) as usize] = now };
    set_index * FLOW_WAYS + found
}

/// The slot of the flow `key` (tagged `tag`) in `table`: its own, or one it takes in its
/// set (an empty one, else the one judged least recently, whose flow is forgotten).
/// NO_FLOW if none could be had. The set's tags and times are one cache line: the choice
/// reads nothing else. `taken` is a slot the packet's other side took in this table this
/// very moment (else NO_FLOW): it is never the one given up, however recently the set's
/// other flows were judged (all of them in this clock tick, when frames come fast), or the
/// two sides' flows would share one slot.
#[inline(never)]
pub fn place_flow(table: u8, key: &FlowKey, tag: u64, now: u64, taken_by_other: u32) -> u32 {
    let set_index = set_of(tag, table_sets(table));
    let Some(set) = flow_set(table, set_index) else {
        return NO_FLOW;
    };
    let set = set.as_ptr();
    let mut found = NO_FLOW;
    let mut victim = 0;
    let mut oldest = u64::MAX;
    for way in 0..FLOW_WAYS as usize {
        // SAFETY: a set of a shared array, read while another CPU may take a slot: each
        // tag and time is read whole.
        let (taken, judged) = unsafe {
            (
                read_volatile(&raw const (*set).tags[way]),
                (*set).judged_ns[way],
            )
        };
        if taken == tag {
            found = way as u32;
        }
        let age = if set_index * FLOW_WAYS + way as u32 == taken_by_other {
            u64::MAX
        } else if taken == 0 {
            0
        } else {
            judged.saturating_add(1)
        };
        if age < oldest {
            oldest = age;
            victim = way;
        }
    }
    let way = if found == NO_FLOW {
        victim & (FLOW_WAYS as usize - 1)
    } else {
        found as usize & (FLOW_WAYS as usize - 1)
    };
    // SAFETY: a set of a shared array. A taken slot's tag is cleared first and written
    // last, so a reader sees the old flow, no flow, or the new one whole; two CPUs taking
    // the same slot at once leave one of them (the other's packet counts in it).
    unsafe {
        (*set).judged_ns[way] = now;
        if found == NO_FLOW {
            write_volatile(&raw mut (*set).tags[way], 0);
            (*set).slots[way].key = *key;
            (*set).slots[way].stats = FlowStats {
                last_seen_ns: now,
                ..ZERO_FLOW_STATS
            };
            write_volatile(&raw mut (*set).tags[way], tag);
        }
    }
    set_index * FLOW_WAYS + way as u32
}

static ZERO_FLOW_STATS: FlowStats = FlowStats {
    packets_sent: 0,
    bytes_sent: 0,
    packets_received: 0,
    bytes_received: 0,
    last_seen_ns: 0,
    dropped_packets: 0,
    would_drop_packets: 0,
};

/// Charges `packets` packets of `bytes` bytes, the last at `last_ns`, to a flow's slot
/// (`flow`: `FLOW_*`), atomically: a flow's packets may come from several CPUs. The time
/// only moves forward (what a cache entry held may be older than another CPU's packet).
#[inline(always)]
fn charge_flow(flow: u8, slot: Option<FlowRef>, packets: u64, bytes: u64, last_ns: u64) {
    let Some(slot) = slot else {
        return;
    };
    let charge = flow_charge(flow, packets, bytes, last_ns);
    // SAFETY: a slot of a set of a shared array: counters are added atomically, the time
    // stored whole.
    unsafe {
        let stats = &raw mut (*slot.set.as_ptr()).slots[slot.way & (FLOW_WAYS as usize - 1)];
        if charge.packets_sent != 0 {
            atomic_add(&raw mut (*stats).stats.packets_sent, charge.packets_sent);
            atomic_add(&raw mut (*stats).stats.bytes_sent, charge.bytes_sent);
        }
        if charge.packets_received != 0 {
            atomic_add(
                &raw mut (*stats).stats.packets_received,
                charge.packets_received,
            );
            atomic_add(
                &raw mut (*stats).stats.bytes_received,
                charge.bytes_received,
            );
        }
        if charge.dropped_packets != 0 {
            atomic_add(
                &raw mut (*stats).stats.dropped_packets,
                charge.dropped_packets,
            );
        }
        if charge.would_drop_packets != 0 {
            atomic_add(
                &raw mut (*stats).stats.would_drop_packets,
                charge.would_drop_packets,
            );
        }
        if (*stats).stats.last_seen_ns < last_ns {
            (*stats).stats.last_seen_ns = last_ns;
        }
    }
}

/// The flow slots a decision charges (none for a side counted in no flow table).
#[inline(always)]
pub fn flow_slots(decision: &Decision) -> [Option<FlowRef>; 2] {
    let slot = |side: &DecisionSide| {
        if side.table == TABLE_NONE {
            None
        } else {
            flow_ref(side.table, side.flow_index)
        }
    };
    [slot(&decision.sides[0]), slot(&decision.sides[1])]
}

/// Whether `slot` still holds the flow of `side` (what a decision held for a flow whose
/// slot was taken by another since is dropped with the flow).
#[inline(always)]
fn side_holds(side: &DecisionSide, slot: Option<FlowRef>) -> bool {
    match slot {
        // SAFETY: a set of a shared array; the tag is read whole.
        Some(slot) => {
            (unsafe {
                read_volatile(
                    &raw const (*slot.set.as_ptr()).tags[slot.way & (FLOW_WAYS as usize - 1)],
                )
            }) as u32
                == side.flow_tag
        }
        None => side.table == TABLE_NONE,
    }
}

/// Charges the packets a cache entry decided since it was made (`Decision::pending_*`) to
/// its enrolled sides' device counters and reasons (this CPU's, as the hits would have),
/// and to the flow slots that still hold its flows: before the entry is replaced.
#[inline(always)]
pub fn charge_pending(decision: &Decision) {
    if decision.pending_packets == 0 {
        return;
    }
    charge_devices(
        &decision.sides,
        decision.pending_packets,
        decision.pending_bytes,
        decision.pending_last_ns,
    );
    let slots = flow_slots(decision);
    for (side, slot) in decision.sides.iter().zip(slots) {
        if side.table != TABLE_NONE && side_holds(side, slot) {
            charge_flow(
                side.flow,
                slot,
                decision.pending_packets,
                decision.pending_bytes,
                decision.pending_last_ns,
            );
        }
    }
}

/// Charges what a probe memo holds to its device's counters and reason (this CPU's, as
/// the probes would have), as `charge_pending` does a decision's.
#[inline(always)]
pub fn charge_memo(memo: &ProbeMemo) {
    charge_devices(
        &memo.sides,
        memo.pending_packets,
        memo.pending_bytes,
        memo.pending_last_ns,
    );
}

/// Charges `packets` held packets (`bytes`, the last at `last_ns`) to the device counters
/// and reasons of the enrolled sides among `sides`, as each side's charges say.
#[inline(always)]
fn charge_devices(sides: &[DecisionSide; 2], packets: u64, bytes: u64, last_ns: u64) {
    for side in sides {
        if side.slot == NO_SLOT {
            continue;
        }
        if side.device & CHARGE_COUNT != 0 {
            charge_device(side.slot, side.device, packets, bytes, last_ns);
        }
        if side.device & CHARGE_REASON != 0 {
            count_reasons(side.slot, side.reason, packets);
        }
    }
}

/// Charges one side (0: source, 1: destination) of a packet as its decision says.
#[inline(always)]
fn apply_side(
    packet: &Packet,
    ip: &IpPacket,
    decision: &Decision,
    side: u8,
    slot: Option<FlowRef>,
) {
    let own = if side == 0 {
        &decision.sides[0]
    } else {
        &decision.sides[1]
    };
    if own.device & CHARGE_REASON != 0 {
        count_reason(own.slot, own.reason);
    }
    if own.device & CHARGE_COUNT != 0 {
        let addr = if side == 0 { &ip.src } else { &ip.dst };
        count_device(packet, addr, own.slot, own.device);
    }
    if own.device & CHARGE_VIOLATION != 0 {
        emit_event(packet, ip, decision, side, own.slot);
    }
    charge_flow(own.flow, slot, 1, packet.len, packet.now);
}

/// Charges a packet decided from the cache entry `decision`: what cannot wait for the entry
/// to be replaced. An enrolled side's device counters and reason, and the flows, are held
/// in the entry (`Decision::pending_*`, counted by the caller) and charged by
/// [`charge_pending`]; a violation's event is reported now (or counted as suppressed),
/// and an unenrolled address's counters, shared by CPUs, are charged now.
#[inline(always)]
pub fn apply_held(packet: &Packet, ip: &IpPacket, decision: &Decision) {
    for side in 0..2u8 {
        let own = if side == 0 {
            &decision.sides[0]
        } else {
            &decision.sides[1]
        };
        if own.device & CHARGE_COUNT != 0 && own.slot == NO_SLOT {
            let addr = if side == 0 { &ip.src } else { &ip.dst };
            count_unenrolled(packet, addr, own.device);
        }
        if own.device & CHARGE_VIOLATION != 0 {
            emit_event(packet, ip, decision, side, own.slot);
        }
    }
}

/// Charges a packet as `decision` says, to both sides (`slots`: its flow slots, from
/// [`flow_slots`]).
#[inline(always)]
pub fn apply(packet: &Packet, ip: &IpPacket, decision: &Decision, slots: &[Option<FlowRef>; 2]) {
    apply_side(packet, ip, decision, 0, slots[0]);
    apply_side(packet, ip, decision, 1, slots[1]);
}
