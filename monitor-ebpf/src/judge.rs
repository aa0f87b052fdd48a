//! The full judge of an IP packet, in stages (see `main.rs` on the verifier): the
//! service and flow keys (`prepare`), both sides' device entries (`identify`), on a ward
//! leg whether the source's MAC may use its address (`bind_source`), each
//! side's verdict and flow slot (`judge_side`), then the combined verdict, what it
//! charges, and the decision cached for the next packets (`finish`). The logic between
//! the lookups is `monitor_common::judge`.

use core::ptr::{read_volatile, write_volatile};

use aya_ebpf::{bindings::BPF_NOEXIST, maps::lpm_trie::Key as LpmKey};
use monitor_common::{
    Action, Reason,
    flow::{self, Initiator, Service, ServiceHint},
    flowtable::{self, flow_hash, tag},
    judge::{
        self, CHARGE_COUNT, CHARGE_SENT, CHARGE_VIOLATION, NO_SLOT, PlanSide, ProbeMemo,
        SIDE_BREAK_GLASS, SIDE_MAC_BOUND, Side, SideVerdict, TABLE_FLOWS, TABLE_NONE,
        TABLE_UNENROLLED, UNJUDGED, Work,
    },
    maps::{
        BaselineEntry, CONFIG_EVERY_FLOW, ConnEntry, DECISION_ICMP, DECISION_LOW_REQUEST,
        DECISION_OTHER, DECISION_PORTS, DECISION_REPLY, DECISION_TTL_NS, DECISION_UNENROLLED_PAIR,
        DEVICE_MEMO_SLOTS, DecisionSide, DeviceEntry, DeviceKey, Direction, FlowKey, FragmentEntry,
        FragmentKey, MAX_RULES_PER_SET, MacBindingKey, ORIGIN_LEARNED, RULE_ALLOW, RULE_ANY,
        RULE_DENY, RULE_PREFIX_BASE, RequestEntry, RuleKeyData, SPOOF_MEMORY_NS,
    },
    parse::{Addr, FragmentKind, IpPacket, ParsedFrame},
    schedule,
};

use crate::{
    Fault, Packet,
    account::{
        NO_FLOW, apply, charge_memo, count_device, count_reason, find_flow, flow_slots,
        note_source, note_station, place_flow, suppress_event,
    },
    cache,
    maps::{
        BASELINE, CONNTRACK, DEVICE_MEMO, DEVICE_STATS, DEVICES, ENROLLED_ADDRS, EVENT_RATE,
        FRAGMENTS, MAC_BINDINGS, PROBE_MEMO, REQUESTS, RULES, SCRATCH, SERVICE_FILTERS,
        SPOOFED_FLOWS, WORK,
    },
};

/// This CPU's working state, looked up once per frame by the program and handed down.
#[inline(always)]
pub fn work() -> Result<&'static mut Work, Fault> {
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

/// Keeps the packet's kind in WORK and returns it as read back from there: the value the
/// verifier sees after this is the same unknown on every path (see `Work::kind`).
#[inline(always)]
pub fn set_kind(work: &mut Work, kind: u8) -> u8 {
    // SAFETY: a field of this CPU's slot; the volatile read is not folded into the write.
    unsafe {
        write_volatile(&raw mut work.kind, kind);
        read_volatile(&raw const work.kind)
    }
}

/// Fills `side` for the address `addr`: its inventory entry, if any, decides treatment.
#[inline(always)]
fn enroll_side(packet: &Packet, side: &mut Side, addr: &Addr, halves: (u64, u64)) {
    let key = DeviceKey {
        addr: *addr,
        generation: packet.generation,
        _pad1: 0,
        _pad2: 0,
    };
    let (marked, word) = enrolled_mark(halves);
    let found = if marked {
        device_entry(packet, &key, halves, word)
    } else {
        None
    };
    match found {
        Some(entry) => {
            // SAFETY: a map value or this CPU's memo of one, copied out at once.
            let entry = unsafe { *entry };
            let treatment = judge::treatment(entry.mode, entry.flags, packet.global);
            side.slot = entry.slot;
            side.treatment = treatment;
            side.flags = judge::side_flags(
                packet.now,
                entry.break_glass_until_ns,
                entry.flags,
                treatment,
            );
            side.break_glass_until_ns = entry.break_glass_until_ns;
        }
        None => {
            side.slot = NO_SLOT;
            side.treatment = judge::unenrolled_treatment(packet.global, packet.flags);
            side.flags = 0;
            side.break_glass_until_ns = 0;
        }
    }
    side.flow_known = 0;
    side.table = TABLE_NONE;
    side.over_budget = 0;
    side.flow_index = NO_FLOW;
    side.flow_tag = 0;
}

/// The DEVICES entry of `key` (whose address's halves are `halves`): from this CPU's memo
/// when it read it under the same epoch and generation, else from the table (and
/// remembered).
#[inline(always)]
fn device_entry(
    packet: &Packet,
    key: &DeviceKey,
    halves: (u64, u64),
    hash: u32,
) -> Option<*const DeviceEntry> {
    let Some(memo) = DEVICE_MEMO.get_ptr_mut(hash & (DEVICE_MEMO_SLOTS - 1)) else {
        return DEVICES.get_ptr(key);
    };
    // SAFETY: this CPU's slot, used only within this program run.
    let memo = unsafe { &mut *memo };
    let (a, b) = (memo.addr_halves(), halves);
    if memo.epoch == packet.epoch_tag
        && memo.generation == key.generation
        && ((a.0 ^ b.0) | (a.1 ^ b.1)) == 0
    {
        return Some(&raw const memo.entry);
    }
    let entry = DEVICES.get_ptr(key)?;
    // SAFETY: a map value, copied at once.
    memo.entry = unsafe { *entry };
    memo.addr = key.addr;
    memo.epoch = packet.epoch_tag;
    memo.generation = key.generation;
    Some(entry)
}

/// Stage 2: both sides' device entries.
#[inline(never)]
fn identify(packet: &Packet, ip: &IpPacket, work: &mut Work) -> u8 {
    enroll_side(packet, &mut work.sides[0], &ip.src, ip.src_halves());
    enroll_side(packet, &mut work.sides[1], &ip.dst, ip.dst_halves());
    work.sides[0].treatment | work.sides[1].treatment
}

/// A malformed IP packet: counted against its devices, dropped only where enforcement
/// applies to one of them (or, with no device involved, under the unenrolled default).
#[inline(never)]
pub fn judge_malformed(packet: &Packet) -> Result<Action, Fault> {
    let parsed = parsed()?;
    let work = work()?;
    identify(packet, &parsed.ip, work);
    let [src, dst] = &work.sides;
    let unenrolled_action = judge::unenrolled_action(packet.global, packet.flags);
    let action = judge::malformed_action(
        src.treatment,
        dst.treatment,
        src.flags | dst.flags,
        unenrolled_action,
    );
    // A frame a capture cut charges no drop (CONFIG_CAPTURE_MAY_BE_CUT).
    let dropped = action == Action::Drop as u8 && packet.judged();
    // As in `finish`: a side is charged the drop its own policy made (an address judged
    // without a device entry, replay's --learn-all, enforces like a device); an
    // unenrolled address is counted on its own only beside another.
    let unjudged_pair = src.treatment == UNJUDGED && dst.treatment == UNJUDGED;
    let unenrolled_pair = src.slot == NO_SLOT && dst.slot == NO_SLOT;
    let charge = |treatment: u8, sent: bool| {
        let own = dropped && (treatment == judge::ENFORCE || unjudged_pair);
        (if sent { CHARGE_SENT } else { 0 }) | if own { judge::CHARGE_DROPPED } else { 0 }
    };
    if src.slot != NO_SLOT || unenrolled_pair {
        count_device(
            packet,
            &parsed.ip.src,
            src.slot,
            charge(src.treatment, true),
        );
    }
    if dst.slot != NO_SLOT || unenrolled_pair {
        count_device(
            packet,
            &parsed.ip.dst,
            dst.slot,
            charge(dst.treatment, false),
        );
    }
    Ok(if action == Action::Drop as u8 {
        Action::Drop
    } else {
        Action::Pass
    })
}

/// Charges a packet that is passed without judgement (neighbour discovery) to its sides,
/// as any packet is: devices by slot, unenrolled addresses beside one another.
#[inline(never)]
pub fn count_unjudged(packet: &Packet) -> Result<(), Fault> {
    let parsed = parsed()?;
    let work = work()?;
    identify(packet, &parsed.ip, work);
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

/// Judges an IP packet that parsed, one stage at a time, and caches the decision when
/// its kind allows (`cache::cacheable`). Inlined into the program: a frame of its own
/// would put the deepest chain of stages (`judge_side`, `place_flow`) over the 512 bytes
/// of stack BPF allows.
#[inline(always)]
pub fn judge_ip(
    packet: &Packet,
    parsed: &ParsedFrame,
    work: &mut Work,
) -> Result<(Action, Reason), Fault> {
    // The per-CPU slots are looked up once and handed down: the stages read their inputs
    // from map memory, which the verifier does not track.
    let ip = &parsed.ip;
    work.decision.key = cache::key(ip, work.kind);
    // The stages return a scalar the caller uses (see main.rs).
    prepare(ip, work);
    identify(packet, ip, work);
    let spoofed = bind_source(packet, ip, &parsed.src_mac, work);
    let src_action = judge_side(packet, work, true);
    let dst_action = judge_side(packet, work, false);
    let action = finish(packet, ip, work);
    let applied = charge(packet, ip, work);
    if action != work.action
        || applied != action
        || (src_action | dst_action | spoofed) > Action::Drop as u8
    {
        return Err(Fault);
    }
    Ok((
        Action::try_from(work.action).unwrap_or(Action::Pass),
        Reason::try_from(work.reason).unwrap_or(Reason::Unenrolled),
    ))
}

/// A new flow of an enrolled device beyond its budget of flow entries for violations (a
/// scan's probe from it, a spoofed flood's frame toward it), judged in one stage when
/// nothing but that device's treatment decides it: its service needs no table
/// (`flow::untracked_service`), the other address is no enrolled one (ENROLLED_ADDRS) and
/// is not judged, the device may be judged in one stage (`judge::judged_in_one_stage`),
/// the service is not in its baseline (SERVICE_FILTERS) and the verdict is a violation.
/// It is then what the staged judge would give, by the same functions
/// (`unlisted_verdict`, `combine`, `plan`), with nothing cached or put in a flow table (as
/// the staged judge does beyond the budget). The device's part of that is judged once and
/// kept for its next probes (PROBE_MEMO, see `ProbeMemo`): a scan's later probes check
/// only their peer, service and budget.
///
/// What the probe charges is held in the memo ([`PROBE_HELD`] in the result) when that is
/// the device's counters and reason alone and its event is suppressed by the device's
/// rate (nearly every probe of a scan or flood: 20 events a second are sent); otherwise
/// the decision is put in WORK for `charge_probe`, which charges it by the same `apply` and
/// `note_station` as the staged judge. `action | reason << 8` (with [`PROBE_HELD`]), or
/// `cache::MISS` for the staged judge.
#[inline(never)]
pub fn probe(packet: &Packet, ip: &IpPacket, work: &mut Work, kind: u8) -> u32 {
    let untracked = kind == DECISION_PORTS
        || kind == DECISION_LOW_REQUEST
        || kind == DECISION_ICMP
        || kind == DECISION_OTHER;
    if !untracked || packet.flags & CONFIG_EVERY_FLOW != 0 {
        return cache::MISS;
    }
    let Some(service) = flow::untracked_service(ip, false) else {
        return cache::MISS;
    };
    let other_treatment = judge::unenrolled_treatment(packet.global, packet.flags);
    if other_treatment != UNJUDGED {
        return cache::MISS;
    }
    let Some(memo) = PROBE_MEMO.get_ptr_mut(0) else {
        return cache::MISS;
    };
    // SAFETY: this CPU's slot, written only by this CPU while the program runs.
    let memo = unsafe { &mut *memo };
    let (src_halves, dst_halves) = (ip.src_halves(), ip.dst_halves());
    // The device of the last probe again (the peer no enrolled address), or judged afresh.
    let remembered = memo.holds(
        packet.epoch_tag,
        packet.config_bits,
        packet.generation,
        packet.hour_of_week,
        packet.source_id,
    ) && if memo.source != 0 {
        memo.is_of(src_halves) && !enrolled_mark(dst_halves).0
    } else {
        memo.is_of(dst_halves) && !enrolled_mark(src_halves).0
    };
    if !remembered && judge_device(packet, ip, memo, src_halves, dst_halves, other_treatment) == 0 {
        return cache::MISS;
    }
    let source = memo.source != 0;
    let src_direction = flow::src_direction(service.initiator);
    let direction = if source {
        src_direction
    } else {
        src_direction.reversed()
    };
    // The device's baseline filter, found once for the memo: by the service alone.
    let may_be_listed = match SERVICE_FILTERS.get(memo.filter) {
        Some(filter) => flowtable::may_have_service(
            filter,
            flowtable::service_word(service.port, ip.protocol, direction as u8),
        ),
        None => true,
    };
    if may_be_listed {
        return cache::MISS;
    }
    let Some(rate) = EVENT_RATE.get_ptr_mut(memo.slot) else {
        return cache::MISS;
    };
    // SAFETY: per-CPU slot, used only within this program run.
    let rate = unsafe { &mut *rate };
    if !judge::flow_budget_spent(rate, packet.now) {
        return cache::MISS;
    }
    let (action, reason) = (memo.action, memo.reason);
    let verdict = u32::from(action) | u32::from(reason) << 8;
    let own = if source {
        &memo.sides[0]
    } else {
        &memo.sides[1]
    };
    // `charge_probe` would count the device and reason, and send or suppress its event
    // (the rate's window is rolled to now); `note_station` does nothing for a packet whose
    // source is the device, or off a ward leg.
    if memo.hold != 0
        && (source || packet.source_id == 0)
        && (own.device & CHARGE_VIOLATION == 0 || suppress_event(rate))
    {
        memo.pending_packets += 1;
        memo.pending_bytes += packet.len;
        memo.pending_last_ns = packet.now;
        return verdict | PROBE_HELD;
    }
    let decision = &mut work.decision;
    decision.epoch = packet.epoch_tag;
    decision.config = packet.config_bits;
    decision.action = action;
    decision.reason = reason;
    decision.service_port = service.port;
    decision.src_direction = src_direction as u8;
    decision.flags = 0;
    decision.protocol = ip.protocol;
    decision.hour_of_week = packet.hour_of_week;
    decision.sides = memo.sides;
    decision.source_id = packet.source_id;
    verdict
}

/// In `probe`'s result: what the packet charges is held in the probe memo (nothing is
/// left for `charge_probe`). Above the action and reason bytes.
pub const PROBE_HELD: u32 = 1 << 16;

/// Charges what the probe memo holds to its device, and empties it: before the memo is
/// replaced. Held under another cache epoch, the charges are the slot's only if the device
/// still has it (a slot changes hands with a policy switch, which moves the epoch): else
/// they go with the device's old slot. Out of line (a memo is replaced once per device a
/// scan or flood comes from or goes to), and with a small frame: the program, `probe` and
/// this are within 32 bytes of the 512 BPF allows a chain of calls.
#[inline(never)]
fn charge_held(packet: &Packet, memo: &mut ProbeMemo) -> u8 {
    if memo.pending_packets == 0 {
        return 0;
    }
    if memo.charges_current(packet.epoch_tag) || holds_slot(packet, memo) {
        charge_memo(memo);
    }
    memo.pending_packets = 0;
    memo.pending_bytes = 0;
    1
}

/// Whether the memo's device has the memo's slot in the active policy. The memo's key is
/// moved to the active policy copy for the lookup (the memo is about to be replaced).
#[inline(always)]
fn holds_slot(packet: &Packet, memo: &mut ProbeMemo) -> bool {
    memo.key.generation = packet.generation;
    match DEVICES.get_ptr(&memo.key) {
        // SAFETY: one field of a map value, read at once.
        Some(entry) => (unsafe { (*entry).slot }) == memo.slot,
        None => false,
    }
}

/// `probe`'s judgement of the device, when the packet's service and peer leave one to
/// make: exactly one of the two addresses may be enrolled (the device), it may be judged
/// in one stage and its verdict is a violation. Kept in PROBE_MEMO for the device's next
/// probes (1; what the memo held for the device it replaces is charged first), else 0:
/// the staged judge decides the packet.
#[inline(always)]
fn judge_device(
    packet: &Packet,
    ip: &IpPacket,
    memo: &mut ProbeMemo,
    src_halves: (u64, u64),
    dst_halves: (u64, u64),
    other_treatment: u8,
) -> u8 {
    let ((src_marked, src_word), (dst_marked, dst_word)) =
        (enrolled_mark(src_halves), enrolled_mark(dst_halves));
    let (source, word, halves) = match (src_marked, dst_marked) {
        (true, false) => (true, src_word, src_halves),
        (false, true) => (false, dst_word, dst_halves),
        _ => return 0,
    };
    let key = DeviceKey {
        addr: if source { ip.src } else { ip.dst },
        generation: packet.generation,
        _pad1: 0,
        _pad2: 0,
    };
    let Some(entry) = device_entry(packet, &key, halves, word) else {
        return 0;
    };
    // SAFETY: a map value or this CPU's memo of one, copied out at once.
    let entry = unsafe { *entry };
    let treatment = judge::treatment(entry.mode, entry.flags, packet.global);
    let flags = judge::side_flags(
        packet.now,
        entry.break_glass_until_ns,
        entry.flags,
        treatment,
    );
    if !judge::judged_in_one_stage(treatment, flags, source && packet.source_id != 0) {
        return 0;
    }
    let (action, reason) = judge::unlisted_verdict(treatment, flags);
    if !judge::is_violation(action, reason) {
        return 0;
    }
    let device = PlanSide {
        verdict: SideVerdict {
            treatment,
            action,
            reason,
            flags,
        },
        enrolled: true,
        flow_known: false,
        over_budget: true,
    };
    let unjudged = judge::before_baseline(other_treatment, 0, 0, false, 0, 0);
    let other = PlanSide {
        verdict: SideVerdict {
            treatment: other_treatment,
            action: unjudged.action,
            reason: unjudged.reason,
            flags: 0,
        },
        enrolled: false,
        flow_known: false,
        over_budget: false,
    };
    let (src, dst) = if source {
        (device, other)
    } else {
        (other, device)
    };
    let (action, reason) = judge::combine(
        src.verdict,
        dst.verdict,
        judge::unenrolled_action(packet.global, packet.flags),
    );
    let plans = judge::plan(src, dst, action, packet.judged());
    let slots = if source {
        [entry.slot, NO_SLOT]
    } else {
        [NO_SLOT, entry.slot]
    };
    let side = |index: usize, side: &PlanSide| DecisionSide {
        slot: slots[index],
        flow_index: NO_FLOW,
        flow_tag: 0,
        reason: side.verdict.reason,
        device: plans[index].device,
        table: plans[index].table,
        flow: plans[index].flow,
    };
    charge_held(packet, memo);
    memo.sides = [side(0, &src), side(1, &dst)];
    let other = if source {
        &memo.sides[1]
    } else {
        &memo.sides[0]
    };
    memo.hold = u8::from(other.device & (CHARGE_COUNT | CHARGE_VIOLATION) == 0);
    memo.filter = flowtable::device_service_filter_index(&key.addr);
    memo.key = key;
    memo.source_id = packet.source_id;
    memo.epoch = packet.epoch_tag;
    memo.slot = entry.slot;
    memo.config = packet.config_bits;
    memo.hour_of_week = packet.hour_of_week;
    memo.source = u8::from(source);
    memo.action = action;
    memo.reason = reason;
    memo.filled = 1;
    1
}

/// Charges what `probe` decided (in WORK), as the staged judge charges it. A stage of its
/// own: `probe`'s keys are off the stack by the time events are sent (BPF allows 512
/// bytes for the whole chain of calls).
#[inline(never)]
pub fn charge_probe(packet: &Packet, ip: &IpPacket, work: &Work) -> u8 {
    apply(packet, ip, &work.decision, &[None, None]);
    note_station(packet, &ip.src, work.decision.sides[0].slot, false);
    work.decision.action
}

/// Whether the address with halves `halves` may be enrolled (its ENROLLED_ADDRS bit;
/// clear: it is not), and the word of its bit (which also picks its DEVICE_MEMO slot).
#[inline(always)]
fn enrolled_mark(halves: (u64, u64)) -> (bool, u32) {
    let (word, mask) = flowtable::enrolled_bit_of_halves(halves);
    let marked = match ENROLLED_ADDRS.get(word as u32) {
        Some(bits) => bits & mask != 0,
        None => true,
    };
    (marked, word as u32)
}

/// Stage 2b, on a ward leg: whether the source's MAC may send with its address, when the
/// source is a MAC-bound device; a frame from another MAC is marked spoofed
/// (`judge::mark_spoofed`), which decides its verdict. Returns 1 for a spoofed frame.
#[inline(never)]
fn bind_source(packet: &Packet, ip: &IpPacket, mac: &[u8; 6], work: &mut Work) -> u8 {
    work.binding_until_ns = 0;
    work.source_verified = 0;
    if packet.source_id == 0 || work.sides[0].flags & SIDE_MAC_BOUND == 0 {
        return 0;
    }
    let key = MacBindingKey {
        addr: ip.src,
        mac: *mac,
        _pad: 0,
    };
    let (found, until_ns) = match MAC_BINDINGS.get_ptr(&key) {
        // SAFETY: one field of a map value, read at once.
        Some(binding) => (true, unsafe { (*binding).until_ns }),
        None => (false, 0),
    };
    if judge::binding_allows(found, until_ns, packet.now) {
        work.binding_until_ns = until_ns;
        work.source_verified = 1;
        return 0;
    }
    judge::mark_spoofed(&mut work.sides);
    // Its replies come back on the core leg, where no MAC says who asked.
    let _ = SPOOFED_FLOWS.insert(&work.sides[0].key, &packet.now, 0);
    1
}

/// Stage 1: the service and both sides' flow keys, and for later fragments what their
/// first fragment got.
#[inline(never)]
fn prepare(ip: &IpPacket, work: &mut Work) -> u8 {
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
        resolve_service(ip, work)
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

/// The service port and initiator, remembering TCP handshakes in CONNTRACK; for UDP and
/// SCTP from the lower port, whether a request was seen is in `kind` (`cache::kind`
/// looked REQUESTS up), and `finish` remembers allowed requests.
#[inline(always)]
fn resolve_service(ip: &IpPacket, work: &mut Work) -> Service {
    match flow::service_hint(ip) {
        ServiceHint::Known(service) => service,
        ServiceHint::Request(service) => {
            work.request = 1;
            service
        }
        // Without a fresh request it is a request to the higher port, so a server's port
        // opens nothing by itself.
        ServiceHint::MaybeReply { src_port, dst_port } => {
            flow::reply_or_request(src_port, dst_port, work.kind == DECISION_REPLY)
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

/// The action of the policy rules for `key`: RULE_DENY if any deny rule matches (deny
/// wins), else RULE_ALLOW if an allow rule does, else 0. Out of line: its trie key would
/// add to the stack of every stage below `judge_side`.
#[inline(never)]
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

/// Stage 3, once per side: the verdict of this side's policy (learning as it goes), and
/// for an enrolled device the slot its flow is counted in: its slot of FLOWS, else a new
/// one, apart in UNENROLLED_FLOWS for a new flow that violates the policy (scans,
/// spoofed sources), so that a flood of them cannot evict the device's legitimate flows.
#[inline(never)]
fn judge_side(packet: &Packet, work: &mut Work, source: bool) -> u8 {
    let later = work.is_later_fragment != 0;
    let verified = work.source_verified != 0;
    let (inherited_action, inherited_reason) = (work.inherited_action, work.inherited_reason);
    // The slot the source side took, which the destination side must not take too.
    let (other_table, other_index) = if source {
        (TABLE_NONE, NO_FLOW)
    } else {
        (work.sides[0].table, work.sides[0].flow_index)
    };
    let side = if source {
        &mut work.sides[0]
    } else {
        &mut work.sides[1]
    };
    let rules = if judge::needs_rules(side.treatment, side.flags) {
        match_rules(packet, &side.key)
    } else {
        0
    };
    let ruling = judge::before_baseline(
        side.treatment,
        side.flags,
        rules,
        later,
        inherited_action,
        inherited_reason,
    );
    let (action, reason) = if ruling.decided {
        (ruling.action, ruling.reason)
    } else {
        baseline_verdict(packet, side, verified)
    };
    side.action = action;
    side.reason = reason;
    if side.slot == NO_SLOT {
        return side.action;
    }
    // A scan or a spoofed flood is a new violating flow in every frame: beyond the
    // device's budget it is charged to the device alone, without the flow tables' lookups
    // and writes (random cache lines of large arrays) or a cached decision.
    if judge::is_violation(action, reason)
        && packet.flags & CONFIG_EVERY_FLOW == 0
        && !flow_budget(side.slot, packet.now)
    {
        side.over_budget = 1;
        return side.action;
    }
    let tag = tag(flow_hash(&side.key, packet.seed));
    let known = find_flow(TABLE_FLOWS, tag, packet.now);
    let table = judge::enrolled_flow_table(known != NO_FLOW, action, reason);
    side.flow_index = if known != NO_FLOW {
        known
    } else {
        let taken_by_other = if other_table == table {
            other_index
        } else {
            NO_FLOW
        };
        place_flow(table, &side.key, tag, packet.now, taken_by_other)
    };
    side.flow_known = u8::from(known != NO_FLOW);
    side.table = table;
    side.flow_tag = tag;
    side.action
}

/// Whether the device in `slot` may give one more violation a flow entry in this second
/// (`judge::take_flow_budget`, in its per-CPU slot of EVENT_RATE).
#[inline(always)]
fn flow_budget(slot: u32, now: u64) -> bool {
    match EVENT_RATE.get_ptr_mut(slot) {
        // SAFETY: per-CPU slot, used only within this program run.
        Some(rate) => judge::take_flow_budget(unsafe { &mut *rate }, now),
        None => true,
    }
}

/// The baseline's verdict, learning the flow in learn mode (`verified`: the packet's
/// source MAC was checked and is the device's); for a flow in the baseline, its schedule:
/// the hour recorded while learning, checked in audit and enforce.
#[inline(always)]
fn baseline_verdict(packet: &Packet, side: &Side, verified: bool) -> (u8, u8) {
    let entry = if may_be_in_baseline(&side.key) {
        BASELINE.get_ptr_mut(&side.key)
    } else {
        None
    };
    let on_schedule = match entry {
        Some(entry) => schedule_of(packet, side, entry),
        None => true,
    };
    let ruling =
        judge::scheduled_baseline_verdict(side.treatment, side.flags, entry.is_some(), on_schedule);
    if !ruling.learn {
        return (ruling.action, ruling.reason);
    }
    (ruling.action, learn(packet, side, ruling.reason, verified))
}

/// Whether the baseline may hold `key`, by its device address's service filter (a clear
/// bit: it does not, and the lookup, a miss in a large table, is skipped).
#[inline(always)]
fn may_be_in_baseline(key: &FlowKey) -> bool {
    match SERVICE_FILTERS.get(flowtable::service_filter_index(key)) {
        Some(filter) => flowtable::may_be_in_baseline(filter, key),
        None => true,
    }
}

/// Marks `key`'s service in its device address's filter, before the entry is added: the
/// filter never says "not in the baseline" of an entry that is.
#[inline(always)]
fn mark_service(key: &FlowKey) {
    let (word, mask) = flowtable::service_bit(key);
    if let Some(filter) = SERVICE_FILTERS.get_ptr_mut(flowtable::service_filter_index(key)) {
        // SAFETY: a map value shared by CPUs; the word is ORed atomically.
        if let Some(bits) = unsafe { (*filter).words.get_mut(word) } {
            crate::account::atomic_or(bits, mask);
        }
    }
}

/// Whether an impostor used the flow `key` (seen from either side) within
/// SPOOF_MEMORY_NS.
#[inline(always)]
fn spoofed_lately(packet: &Packet, key: &FlowKey) -> bool {
    let fresh = |key: &FlowKey| match SPOOFED_FLOWS.get_ptr(key) {
        // SAFETY: a map value, read at once.
        Some(seen) => packet.now.wrapping_sub(unsafe { *seen }) < SPOOF_MEMORY_NS,
        None => false,
    };
    let reversed = FlowKey {
        device: key.peer,
        peer: key.device,
        service_port: key.service_port,
        protocol: key.protocol,
        direction: crate::account::reversed(key.direction),
    };
    fresh(key) || fresh(&reversed)
}

/// For a side's baseline entry: records the hour while its device learns, and says whether
/// the flow is on schedule (always, where the schedule is not checked).
#[inline(always)]
fn schedule_of(packet: &Packet, side: &Side, entry: *mut BaselineEntry) -> bool {
    let hour = packet.hour_of_week;
    if judge::learns_schedule(side.treatment, hour) {
        // SAFETY: a map value; its schedule words are read and, when the hour is new,
        // written back, not atomically. Two CPUs recording hours of one entry at the same
        // moment may lose one of them: the flow's next judged packet (a decision stands at most
        // DECISION_TTL_NS) records it again; the words are written only when the hour is
        // new, not by every packet.
        unsafe {
            if !schedule::has(&(*entry).schedule, hour) {
                schedule::record(&mut (*entry).schedule, hour);
            }
        }
        return true;
    }
    if !judge::checks_schedule(side.treatment, side.flags, hour) {
        return true;
    }
    // SAFETY: a map value's schedule, read in place.
    schedule::on_schedule(
        unsafe { &(*entry).schedule },
        hour,
        packet.schedule_tolerance,
    )
}

/// Learns the side's flow into the baseline: the reason its verdict gets (`learned`, or
/// `baseline_full`; `spoofed_source` for a reply to an impostor's frame, unless the
/// packet came from the device's own MAC). Out of line, as `match_rules`.
#[inline(never)]
fn learn(packet: &Packet, side: &Side, learned: u8, verified: bool) -> u8 {
    let key = &side.key;
    if !verified && spoofed_lately(packet, key) {
        return Reason::SpoofedSource as u8;
    }
    let entry = BaselineEntry {
        learned_ns: packet.now,
        origin: ORIGIN_LEARNED,
        _pad1: 0,
        _pad2: 0,
        window: packet.learn_window,
        schedule: learned_schedule(packet.hour_of_week),
    };
    mark_service(key);
    match BASELINE.insert(key, &entry, u64::from(BPF_NOEXIST)) {
        Ok(()) => {
            if let Some(stats) = DEVICE_STATS.get_ptr_mut(side.slot) {
                // SAFETY: per-CPU slot.
                unsafe { (*stats).learned_flows += 1 };
            }
            learned
        }
        // Another CPU learned it first.
        Err(_) if BASELINE.get_ptr(key).is_some() => learned,
        // Both a pass.
        Err(_) => judge::BASELINE_FULL.reason,
    }
}

/// The schedule of an entry learned at `hour`.
#[inline(always)]
fn learned_schedule(hour: u8) -> schedule::Schedule {
    let mut words = [0; schedule::SCHEDULE_WORDS];
    schedule::record(&mut words, hour);
    words
}

#[inline(always)]
fn side_verdict(side: &Side) -> SideVerdict {
    SideVerdict {
        treatment: side.treatment,
        action: side.action,
        reason: side.reason,
        flags: side.flags,
    }
}

#[inline(always)]
fn decision_side(side: &Side, plan: &judge::SidePlan) -> DecisionSide {
    DecisionSide {
        slot: side.slot,
        flow_index: side.flow_index,
        flow_tag: side.flow_tag as u32,
        reason: side.reason,
        device: plan.device,
        table: plan.table,
        flow: plan.flow,
    }
}

/// Stage 4: the combined verdict, the first fragment's record, the request memory, and
/// the decision: what the packet charges to whom.
#[inline(never)]
fn finish(packet: &Packet, ip: &IpPacket, work: &mut Work) -> u8 {
    let (src, dst) = (side_verdict(&work.sides[0]), side_verdict(&work.sides[1]));
    let unenrolled_action = judge::unenrolled_action(packet.global, packet.flags);
    let (action, reason) = judge::combine(src, dst, unenrolled_action);
    work.action = action;
    work.reason = reason;
    let key0 = work.sides[0].key;
    if ip.fragment == FragmentKind::First {
        let entry = FragmentEntry {
            service_port: key0.service_port,
            src_direction: key0.direction,
            action,
            reason,
            protocol: ip.protocol,
            _pad: 0,
        };
        // Losing this entry only makes later fragments unmatched: fails closed where
        // enforced.
        let _ = FRAGMENTS.insert(&fragment_key(ip), &entry, 0);
    }
    // One insert per allowed request, at most once a DECISION_TTL_NS per CPU and flow
    // while its decision is cached.
    if work.request != 0 && judge::remember_request(src, dst) {
        let entry = RequestEntry {
            seen_ns: packet.now,
        };
        let key = flow::request_key(ip);
        cache::mark_request(packet, &key);
        let _ = REQUESTS.insert(&key, &entry, 0);
    }
    let both_unenrolled = work.sides[0].slot == NO_SLOT && work.sides[1].slot == NO_SLOT;
    let plans = judge::plan(
        PlanSide {
            verdict: src,
            enrolled: work.sides[0].slot != NO_SLOT,
            flow_known: work.sides[0].flow_known != 0,
            over_budget: work.sides[0].over_budget != 0,
        },
        PlanSide {
            verdict: dst,
            enrolled: work.sides[1].slot != NO_SLOT,
            flow_known: work.sides[1].flow_known != 0,
            over_budget: work.sides[1].over_budget != 0,
        },
        action,
        packet.judged(),
    );
    if both_unenrolled {
        // Traffic between unenrolled addresses: both flows in their own table.
        let mut taken_by_other = NO_FLOW;
        for side in &mut work.sides {
            let tag = tag(flow_hash(&side.key, packet.seed));
            side.table = TABLE_UNENROLLED;
            side.flow_index =
                place_flow(TABLE_UNENROLLED, &side.key, tag, packet.now, taken_by_other);
            side.flow_tag = tag;
            taken_by_other = side.flow_index;
        }
    }
    let mut valid_until = packet.now.saturating_add(DECISION_TTL_NS);
    // A decision that relies on an operator's timed MAC acceptance stands until it ends.
    if work.binding_until_ns != 0 && work.binding_until_ns < valid_until {
        valid_until = work.binding_until_ns;
    }
    for side in &work.sides {
        // A decision that relies on a break-glass stands until it expires.
        if side.flags & SIDE_BREAK_GLASS != 0 && side.break_glass_until_ns < valid_until {
            valid_until = side.break_glass_until_ns;
        }
    }
    let decision = &mut work.decision;
    decision.valid_until_ns = valid_until;
    decision.epoch = packet.epoch_tag;
    decision.config = packet.config_bits;
    decision.action = action;
    decision.reason = reason;
    decision.service_port = key0.service_port;
    decision.src_direction = key0.direction;
    decision.flags = if both_unenrolled {
        DECISION_UNENROLLED_PAIR
    } else {
        0
    };
    decision.protocol = key0.protocol;
    decision.hour_of_week = packet.hour_of_week;
    decision._pad = [0; 2];
    decision.sides = [
        decision_side(&work.sides[0], &plans[0]),
        decision_side(&work.sides[1], &plans[1]),
    ];
    decision.source_id = packet.source_id;
    decision.pending_packets = 0;
    decision.pending_bytes = 0;
    decision.pending_last_ns = 0;
    work.action
}

/// Stage 5: charges what `finish` decided, by the code that charges cached decisions,
/// and caches the decision for the next packets with its key (not a violation beyond its
/// device's budget: a scan's probes would only evict decisions that are used again).
#[inline(never)]
fn charge(packet: &Packet, ip: &IpPacket, work: &mut Work) -> u8 {
    let slots = flow_slots(&work.decision);
    apply(packet, ip, &work.decision, &slots);
    note_source(packet, &ip.src, &work.sides[0]);
    let over_budget = (work.sides[0].over_budget | work.sides[1].over_budget) != 0;
    // A spoofed flow is judged with every frame, so that SPOOFED_FLOWS keeps it while it
    // lasts; a violation beyond its device's budget caches nothing (a scan would churn
    // the cache).
    if !over_budget
        && cache::cacheable(packet, ip, work.kind)
        && work.reason != Reason::SpoofedSource as u8
    {
        cache::remember(packet, &work.decision);
    }
    work.decision.action
}
