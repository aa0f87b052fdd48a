//! The verdict logic that is plain integer logic: how a side of a packet is treated, what
//! decides before the baseline, how two sides' verdicts combine, and what a verdict
//! charges to whom. The XDP program calls these (its stages only look maps up around
//! them); the host tests them by the table below.
//!
//! Everything here takes and returns integers (`Action` and `Reason` as u8): the XDP
//! program keeps its working state in map memory, where an enum or `Option` with payload
//! could hold undefined bytes that the verifier rejects.

use crate::{
    Action, Mode, Reason,
    maps::{
        CONFIG_JUDGE_UNENROLLED, CONFIG_UNENROLLED_DROP, DEVICE_ENFORCE_CONFIRMED,
        DEVICE_HAS_RULES, DEVICE_LIFE_CRITICAL, DEVICE_MAC_BOUND, DEVICE_SCHEDULE_ENFORCE,
        DEVICE_SCHEDULE_IGNORE, Decision, DecisionSide, DeviceKey, DeviceStats, EventRate, FlowKey,
        FlowStats, MODE_INHERIT, RULE_ALLOW, RULE_DENY, VIOLATING_FLOWS_PER_DEVICE_PER_SECOND,
    },
    schedule,
};

// How a side of a packet is treated.
/// An unenrolled address (unless CONFIG_JUDGE_UNENROLLED): counted, not judged.
pub const UNJUDGED: u8 = 0;
pub const LEARN: u8 = 1;
pub const AUDIT: u8 = 2;
pub const ENFORCE: u8 = 3;
/// Enforce asked for, but the device is life-critical without its own confirmation.
pub const SPARED: u8 = 4;

/// The DEVICE_STATS slot of a side that is not an enrolled device.
pub const NO_SLOT: u32 = u32::MAX;

// `side_flags`.
/// Break-glass is in force for this side's device.
pub const SIDE_BREAK_GLASS: u8 = 1 << 0;
/// Policy rules apply to this side's device.
pub const SIDE_HAS_RULES: u8 = 1 << 1;
/// A life-critical device not confirmed for enforcement: no verdict may drop its traffic,
/// not even its peer's.
pub const SIDE_PROTECTED: u8 = 1 << 2;
/// The device's addresses are bound to its MACs (`DEVICE_MAC_BOUND`).
pub const SIDE_MAC_BOUND: u8 = 1 << 3;
/// The frame came from a ward leg with this device's address but not one of its MACs:
/// not the device's traffic ([`mark_spoofed`]).
pub const SIDE_SPOOFED: u8 = 1 << 4;
/// The device's policy says `schedule: enforce` (`DEVICE_SCHEDULE_ENFORCE`).
pub const SIDE_SCHEDULE_ENFORCE: u8 = 1 << 5;
/// The device's policy says `schedule: ignore` (`DEVICE_SCHEDULE_IGNORE`).
pub const SIDE_SCHEDULE_IGNORE: u8 = 1 << 6;

/// How a device entry is treated under the global mode.
#[inline(always)]
pub fn treatment(entry_mode: u8, entry_flags: u8, global: Mode) -> u8 {
    let mode = if entry_mode == MODE_INHERIT {
        global
    } else {
        Mode::try_from(entry_mode).unwrap_or(global)
    };
    match mode {
        Mode::Learn => LEARN,
        Mode::Audit => AUDIT,
        Mode::Enforce
            if entry_flags & DEVICE_LIFE_CRITICAL != 0
                && entry_flags & DEVICE_ENFORCE_CONFIRMED == 0 =>
        {
            SPARED
        }
        Mode::Enforce => ENFORCE,
    }
}

/// How an address without a device entry is treated: not judged, unless the CONFIG asks
/// to judge such addresses like devices in the global mode (replay's `--learn-all`).
#[inline(always)]
pub fn unenrolled_treatment(global: Mode, config_flags: u8) -> u8 {
    if config_flags & CONFIG_JUDGE_UNENROLLED == 0 {
        return UNJUDGED;
    }
    match global {
        Mode::Learn => LEARN,
        Mode::Audit => AUDIT,
        Mode::Enforce => ENFORCE,
    }
}

/// The `SIDE_*` flags of an enrolled side at `now_ns`.
#[inline(always)]
pub fn side_flags(now_ns: u64, break_glass_until_ns: u64, entry_flags: u8, treatment: u8) -> u8 {
    let mut flags = 0;
    if now_ns < break_glass_until_ns {
        flags |= SIDE_BREAK_GLASS;
    }
    if entry_flags & DEVICE_HAS_RULES != 0 {
        flags |= SIDE_HAS_RULES;
    }
    if entry_flags & DEVICE_LIFE_CRITICAL != 0 && treatment != ENFORCE {
        flags |= SIDE_PROTECTED;
    }
    if entry_flags & DEVICE_MAC_BOUND != 0 {
        flags |= SIDE_MAC_BOUND;
    }
    if entry_flags & DEVICE_SCHEDULE_ENFORCE != 0 {
        flags |= SIDE_SCHEDULE_ENFORCE;
    }
    if entry_flags & DEVICE_SCHEDULE_IGNORE != 0 {
        flags |= SIDE_SCHEDULE_IGNORE;
    }
    flags
}

/// Whether a `MAC_BINDINGS` lookup lets the frame's MAC use the address: found, and
/// lasting (`until_ns` 0) or an operator's timed acceptance still running at `now_ns`.
#[inline(always)]
pub fn binding_allows(found: bool, until_ns: u64, now_ns: u64) -> bool {
    found && (until_ns == 0 || now_ns < until_ns)
}

/// A frame whose source (side 0) is a MAC-bound device's address sent from another MAC:
/// it is not the device's traffic, so neither the device's life-critical protection nor
/// its break-glass covers it, and the destination's policy is not consulted (nothing of
/// it is learned into any baseline: the spoof alone decides, in `before_baseline`).
#[inline(always)]
pub fn mark_spoofed(sides: &mut [Side; 2]) {
    let src = &mut sides[0];
    src.flags = (src.flags & !(SIDE_PROTECTED | SIDE_BREAK_GLASS)) | SIDE_SPOOFED;
    let dst = &mut sides[1];
    dst.treatment = UNJUDGED;
    dst.flags = 0;
}

/// What traffic between two addresses nobody judges gets: the policy's default for
/// unenrolled traffic, which drops only in enforce mode.
#[inline(always)]
pub fn unenrolled_action(global: Mode, config_flags: u8) -> u8 {
    if global == Mode::Enforce && config_flags & CONFIG_UNENROLLED_DROP != 0 {
        Action::Drop as u8
    } else {
        Action::Pass as u8
    }
}

/// A side's verdict so far: whether something decided it, and what.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ruling {
    pub decided: bool,
    pub action: u8,
    pub reason: u8,
}

const fn ruled(action: Action, reason: Reason) -> Ruling {
    Ruling {
        decided: true,
        action: action as u8,
        reason: reason as u8,
    }
}

/// Whether the side's verdict needs the policy rules looked up (`before_baseline`'s
/// `rules` argument is ignored otherwise).
#[inline(always)]
pub fn needs_rules(treatment: u8, side_flags: u8) -> bool {
    treatment != UNJUDGED
        && side_flags & (SIDE_BREAK_GLASS | SIDE_SPOOFED) == 0
        && side_flags & SIDE_HAS_RULES != 0
}

/// What decides before the baseline: treatment, break-glass, the policy rules (`rules`:
/// RULE_DENY, RULE_ALLOW or 0, the result of the lookup `needs_rules` asks for), and for a
/// later fragment what its first fragment got (`inherited_reason` FragmentUnmatched when
/// the first was not seen).
#[inline(always)]
pub fn before_baseline(
    treatment: u8,
    side_flags: u8,
    rules: u8,
    later_fragment: bool,
    inherited_action: u8,
    inherited_reason: u8,
) -> Ruling {
    if treatment == UNJUDGED {
        return ruled(Action::Pass, Reason::Unenrolled);
    }
    // Someone else's frame: dropped wherever enforcement is asked for, life-critical or
    // not (`mark_spoofed` took the protection away), never learned.
    if side_flags & SIDE_SPOOFED != 0 {
        return match treatment {
            ENFORCE | SPARED => ruled(Action::Drop, Reason::SpoofedSource),
            _ => ruled(Action::Pass, Reason::SpoofedSource),
        };
    }
    // Before the device's own rules: break-glass lifts them with its baseline (and
    // `combine` lifts the peer's drop).
    if side_flags & SIDE_BREAK_GLASS != 0 {
        return ruled(Action::Pass, Reason::BreakGlass);
    }
    if side_flags & SIDE_HAS_RULES != 0 {
        if rules == RULE_DENY {
            return match treatment {
                ENFORCE => ruled(Action::Drop, Reason::PolicyDeny),
                SPARED => ruled(Action::Pass, Reason::LifeCriticalSpared),
                _ => ruled(Action::Pass, Reason::PolicyDeny),
            };
        }
        if rules == RULE_ALLOW {
            return ruled(Action::Pass, Reason::PolicyAllow);
        }
    }
    if later_fragment {
        // A later fragment shares its first fragment's fate; unmatched ones are dropped
        // where enforced. Learn mode has nothing to learn from it: counted as unmatched,
        // so operators see it before they enforce.
        if inherited_reason != Reason::FragmentUnmatched as u8 {
            return Ruling {
                decided: true,
                action: if inherited_action == Action::Drop as u8 {
                    Action::Drop as u8
                } else {
                    Action::Pass as u8
                },
                reason: inherited_reason,
            };
        }
        return match treatment {
            ENFORCE => ruled(Action::Drop, Reason::FragmentUnmatched),
            _ => ruled(Action::Pass, Reason::FragmentUnmatched),
        };
    }
    Ruling {
        decided: false,
        action: Action::Pass as u8,
        reason: Reason::Unenrolled as u8,
    }
}

/// The baseline's verdict on a flow of a side treated `treatment`: `learn` says the flow
/// is to be learned (learn mode, not in the baseline yet), and then `action` and `reason`
/// are what learning it gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BaselineRuling {
    pub action: u8,
    pub reason: u8,
    pub learn: bool,
}

#[inline(always)]
pub fn baseline_verdict(treatment: u8, in_baseline: bool) -> BaselineRuling {
    scheduled_baseline_verdict(treatment, 0, in_baseline, true)
}

/// Whether a side's baseline hit is checked against its entry's schedule at `hour`:
/// audited or enforced (spared too: it still reports), not `schedule: ignore`, and the
/// controller told the datapath the hour.
#[inline(always)]
pub fn checks_schedule(treatment: u8, side_flags: u8, hour: u8) -> bool {
    (treatment == AUDIT || treatment == ENFORCE || treatment == SPARED)
        && side_flags & SIDE_SCHEDULE_IGNORE == 0
        && schedule::is_slot(hour)
}

/// Whether a side's baseline hit records `hour` in its entry's schedule: while learning.
#[inline(always)]
pub fn learns_schedule(treatment: u8, hour: u8) -> bool {
    treatment == LEARN && schedule::is_slot(hour)
}

/// [`baseline_verdict`] with the schedule: `on_schedule` is false for a baseline flow at
/// an hour its entry never saw (`schedule::on_schedule`, asked only where
/// [`checks_schedule`]). Off schedule it is `off_schedule`, dropped only where the
/// device is enforced and its policy says `schedule: enforce`; a spared life-critical
/// device with `schedule: enforce` gets `life_critical_spared`, as any verdict that
/// would drop it.
#[inline(always)]
pub fn scheduled_baseline_verdict(
    treatment: u8,
    side_flags: u8,
    in_baseline: bool,
    on_schedule: bool,
) -> BaselineRuling {
    if in_baseline && !on_schedule && treatment != LEARN && treatment != UNJUDGED {
        let enforced = side_flags & SIDE_SCHEDULE_ENFORCE != 0;
        let (action, reason) = match treatment {
            ENFORCE if enforced => (Action::Drop, Reason::OffSchedule),
            SPARED if enforced => (Action::Pass, Reason::LifeCriticalSpared),
            _ => (Action::Pass, Reason::OffSchedule),
        };
        return BaselineRuling {
            action: action as u8,
            reason: reason as u8,
            learn: false,
        };
    }
    let (action, reason, learn) = if in_baseline {
        let reason = if treatment == LEARN {
            Reason::Learned
        } else {
            Reason::InBaseline
        };
        (Action::Pass, reason, false)
    } else {
        match treatment {
            LEARN => (Action::Pass, Reason::Learned, true),
            ENFORCE => (Action::Drop, Reason::NotInBaseline, false),
            SPARED => (Action::Pass, Reason::LifeCriticalSpared, false),
            _ => (Action::Pass, Reason::NotInBaseline, false),
        }
    };
    BaselineRuling {
        action: action as u8,
        reason: reason as u8,
        learn,
    }
}

/// What a failed learning insert gives: the table is full (a race lost to another CPU
/// that learned the same flow counts as learned; the caller checks).
pub const BASELINE_FULL: BaselineRuling = BaselineRuling {
    action: Action::Pass as u8,
    reason: Reason::BaselineFull as u8,
    learn: false,
};

/// Severity of a side's verdict: a drop wins; among passes, a violation (would-drop)
/// says most, then learning.
#[inline(always)]
pub fn rank(action: u8, reason: u8) -> u8 {
    if action == Action::Drop as u8 {
        4
    } else if reason == Reason::NotInBaseline as u8
        || reason == Reason::LifeCriticalSpared as u8
        || reason == Reason::FragmentUnmatched as u8
        || reason == Reason::PolicyDeny as u8
        || reason == Reason::OffSchedule as u8
        || reason == Reason::SpoofedSource as u8
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

/// A verdict enforcement would drop (dropped, or would-drop outside enforce).
#[inline(always)]
pub fn is_violation(action: u8, reason: u8) -> bool {
    rank(action, reason) >= 3
}

/// One side's verdict as `combine` needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SideVerdict {
    pub treatment: u8,
    pub action: u8,
    pub reason: u8,
    /// `SIDE_*`.
    pub flags: u8,
}

/// The packet's verdict from its two sides' (source first).
#[inline(always)]
pub fn combine(src: SideVerdict, dst: SideVerdict, unenrolled_action: u8) -> (u8, u8) {
    let (mut action, mut reason) = if src.treatment == UNJUDGED && dst.treatment == UNJUDGED {
        (unenrolled_action, Reason::Unenrolled as u8)
    } else if src.treatment == UNJUDGED {
        (dst.action, dst.reason)
    } else if dst.treatment == UNJUDGED
        || rank(dst.action, dst.reason) <= rank(src.action, src.reason)
    {
        (src.action, src.reason)
    } else {
        (dst.action, dst.reason)
    };
    // Break-glass lifts enforcement for its device's traffic: a drop by the peer's policy
    // is lifted too, whether by the peer's baseline or by its deny rule. The device's own
    // rules were never consulted (`before_baseline`), and a rule between two devices is
    // compiled onto both sides, so keeping the peer's deny would keep the device's own
    // rule through its mirror. The peer's violation is still counted (its would-drop and
    // event): operators see what break-glass let through.
    if action == Action::Drop as u8 && (src.flags | dst.flags) & SIDE_BREAK_GLASS != 0 {
        action = Action::Pass as u8;
        reason = Reason::BreakGlass as u8;
    }
    // A life-critical device's traffic is never dropped by surprise, not even by its
    // peer's policy: only its own confirmed entry can enforce it.
    if action == Action::Drop as u8 && (src.flags | dst.flags) & SIDE_PROTECTED != 0 {
        action = Action::Pass as u8;
        reason = Reason::LifeCriticalSpared as u8;
    }
    (action, reason)
}

/// A malformed IP packet's action: dropped only where enforcement applies to one of its
/// addresses and no protected device is involved (with no device at all, under the
/// unenrolled default).
#[inline(always)]
pub fn malformed_action(
    src_treatment: u8,
    dst_treatment: u8,
    flags: u8,
    unenrolled_action: u8,
) -> u8 {
    if src_treatment == UNJUDGED && dst_treatment == UNJUDGED {
        unenrolled_action
    } else if (src_treatment == ENFORCE || dst_treatment == ENFORCE) && flags & SIDE_PROTECTED == 0
    {
        Action::Drop as u8
    } else {
        Action::Pass as u8
    }
}

// How a packet is charged to a side's device counters (`SidePlan::device`).
/// The side sent the packet (else it received it).
pub const CHARGE_SENT: u8 = 1 << 0;
/// Dropped by this side's own policy.
pub const CHARGE_DROPPED: u8 = 1 << 1;
/// A violation of this side's policy (an event is reported; a would-drop unless dropped).
pub const CHARGE_VIOLATION: u8 = 1 << 2;
/// Let through by this side's break-glass.
pub const CHARGE_BREAK_GLASS: u8 = 1 << 3;
/// Count the packet in the side's device counters (its slot, or its address's entry of
/// the unenrolled table).
pub const CHARGE_COUNT: u8 = 1 << 4;
/// Count the packet under the side's reason (`DEVICE_REASONS`).
pub const CHARGE_REASON: u8 = 1 << 5;

// How a packet is charged to a side's flow (`SidePlan::flow`).
/// The packet went from the flow's device to its peer (else the other way).
pub const FLOW_SENT: u8 = 1 << 0;
pub const FLOW_DROPPED: u8 = 1 << 1;
pub const FLOW_WOULD_DROP: u8 = 1 << 2;

/// What `packets` packets of `bytes` bytes, the last at `last_ns`, add to a side's flow
/// whose charge is `flow` (`FLOW_*`): the one judged packet, and the packets a cached
/// decision held (`Decision::pending_packets`), whether the XDP program adds them to the
/// flow slot or a reader adds them to what it read.
pub const fn flow_charge(flow: u8, packets: u64, bytes: u64, last_ns: u64) -> FlowStats {
    let sent = flow & FLOW_SENT != 0;
    FlowStats {
        packets_sent: if sent { packets } else { 0 },
        bytes_sent: if sent { bytes } else { 0 },
        packets_received: if sent { 0 } else { packets },
        bytes_received: if sent { 0 } else { bytes },
        last_seen_ns: last_ns,
        dropped_packets: if flow & FLOW_DROPPED != 0 { packets } else { 0 },
        would_drop_packets: if flow & FLOW_WOULD_DROP != 0 {
            packets
        } else {
            0
        },
    }
}

/// What `packets` packets of `bytes` bytes, the last at `last_ns`, add to a side's device
/// counters (`DEVICE_STATS`, or an unenrolled address's entry) whose charge is `device`
/// (`CHARGE_*`, with `CHARGE_COUNT`): the one judged packet (which also sets the first
/// time seen), and the packets a cached decision held (`Decision::pending_packets`),
/// whether the XDP program adds them to the slot or a reader adds them to what it read.
pub const fn device_charge(device: u8, packets: u64, bytes: u64, last_ns: u64) -> DeviceStats {
    let sent = device & CHARGE_SENT != 0;
    let dropped = device & CHARGE_DROPPED != 0;
    DeviceStats {
        packets_sent: if sent { packets } else { 0 },
        bytes_sent: if sent { bytes } else { 0 },
        packets_received: if sent { 0 } else { packets },
        bytes_received: if sent { 0 } else { bytes },
        first_seen_ns: 0,
        last_seen_ns: last_ns,
        dropped_packets: if dropped { packets } else { 0 },
        would_drop_packets: if !dropped && device & CHARGE_VIOLATION != 0 {
            packets
        } else {
            0
        },
        learned_flows: 0,
        break_glass_packets: if device & CHARGE_BREAK_GLASS != 0 {
            packets
        } else {
            0
        },
    }
}

// Which flow table a side's flow is counted in (`SidePlan::table`).
pub const TABLE_NONE: u8 = 0;
/// `FLOWS`: enrolled devices' flows.
pub const TABLE_FLOWS: u8 = 1;
/// `UNENROLLED_FLOWS`: flows between unenrolled addresses, and enrolled devices' new
/// flows that violate the policy (a flood of them cannot evict the legitimate ones).
pub const TABLE_UNENROLLED: u8 = 2;

/// The flow table an enrolled device's flow is counted in: FLOWS when it is there already
/// (`flow_known`) or does not violate the policy, else apart in the unenrolled table, so
/// that a flood of new violating flows (a scan, spoofed sources) cannot evict the device's
/// legitimate ones.
#[inline(always)]
pub fn enrolled_flow_table(flow_known: bool, action: u8, reason: u8) -> u8 {
    if flow_known || !is_violation(action, reason) {
        TABLE_FLOWS
    } else {
        TABLE_UNENROLLED
    }
}

/// Starts a new one-second window of a device's rate limits when the last one is over.
#[inline(always)]
pub fn roll_window(rate: &mut EventRate, now_ns: u64) {
    if now_ns.wrapping_sub(rate.window_start_ns) >= 1_000_000_000 {
        rate.window_start_ns = now_ns;
        rate.sent_in_window = 0;
        rate.flows_in_window = 0;
    }
}

/// Whether a violation of the device judged in full at `now_ns` may take a flow entry (and
/// have its decision cached): at most [`VIOLATING_FLOWS_PER_DEVICE_PER_SECOND`] a window.
/// Beyond that the violation is charged to the device alone (`PlanSide::over_budget`).
#[inline(always)]
pub fn take_flow_budget(rate: &mut EventRate, now_ns: u64) -> bool {
    roll_window(rate, now_ns);
    if rate.flows_in_window >= VIOLATING_FLOWS_PER_DEVICE_PER_SECOND {
        return false;
    }
    rate.flows_in_window += 1;
    true
}

/// Whether the device's budget of flow entries for violations is spent in this window
/// (what [`take_flow_budget`] would refuse), taking nothing.
#[inline(always)]
pub fn flow_budget_spent(rate: &mut EventRate, now_ns: u64) -> bool {
    roll_window(rate, now_ns);
    rate.flows_in_window >= VIOLATING_FLOWS_PER_DEVICE_PER_SECOND
}

/// Whether an enrolled source's new flow may be judged in one stage (`judge::probe` in
/// the XDP program) when its service is not in its baseline: its verdict then follows
/// from its treatment and flags alone ([`unlisted_verdict`]). Not while it learns (the
/// flow is learned), not with break-glass, rules (a rule may match the peer) or a spoofed
/// frame, and not on a ward leg when it is MAC-bound (its binding is checked first).
#[inline(always)]
pub fn judged_in_one_stage(treatment: u8, side_flags: u8, ward_leg: bool) -> bool {
    (treatment == AUDIT || treatment == ENFORCE || treatment == SPARED)
        && side_flags & (SIDE_BREAK_GLASS | SIDE_HAS_RULES | SIDE_SPOOFED) == 0
        && !(ward_leg && side_flags & SIDE_MAC_BOUND != 0)
}

/// The verdict of a side whose flow is not in its baseline, where nothing decides before
/// the baseline ([`before_baseline`] of a whole packet without rules): what the staged
/// judge gets for it.
#[inline(always)]
pub fn unlisted_verdict(treatment: u8, side_flags: u8) -> (u8, u8) {
    let ruling = before_baseline(treatment, side_flags, 0, false, 0, 0);
    if ruling.decided {
        return (ruling.action, ruling.reason);
    }
    let ruling = scheduled_baseline_verdict(treatment, side_flags, false, true);
    (ruling.action, ruling.reason)
}

/// What a packet charges to one side.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SidePlan {
    /// `CHARGE_*`.
    pub device: u8,
    /// `TABLE_*`.
    pub table: u8,
    /// `FLOW_*`.
    pub flow: u8,
}

/// A side as `plan` needs it: its verdict, whether it is an enrolled device, and for an
/// enrolled device whether its flow is in `FLOWS` already.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlanSide {
    pub verdict: SideVerdict,
    pub enrolled: bool,
    pub flow_known: bool,
    /// An enrolled side's violation beyond its device's budget of flow entries
    /// (`take_flow_budget`): counted in no flow table.
    pub over_budget: bool,
}

/// What the packet (whose combined action is `action`) charges to its two sides.
/// `judged` is false for a frame a capture cut: it is counted, but charges no drop,
/// would-drop, break-glass packet, reason or event.
#[inline(always)]
pub fn plan(src: PlanSide, dst: PlanSide, action: u8, judged: bool) -> [SidePlan; 2] {
    let unjudged_pair = src.verdict.treatment == UNJUDGED && dst.verdict.treatment == UNJUDGED;
    let both_unenrolled = !src.enrolled && !dst.enrolled;
    let dropped = judged && action == Action::Drop as u8;
    let side = |s: PlanSide, sent: bool| -> SidePlan {
        let violation = judged && is_violation(s.verdict.action, s.verdict.reason);
        // A side is charged the drop its own verdict made (both, when neither is judged);
        // a side that only audits is charged a would-drop.
        let own_drop = dropped && (s.verdict.action == Action::Drop as u8 || unjudged_pair);
        let mut device = 0;
        // An address outside the inventory is counted on its own only when it talks to
        // another such address: next to an enrolled device it is that device's peer,
        // counted in the device's flow (and a spoofing flood fills only its own tables).
        if s.enrolled || both_unenrolled {
            device |= CHARGE_COUNT;
            if sent {
                device |= CHARGE_SENT;
            }
            if own_drop {
                device |= CHARGE_DROPPED;
            }
            if violation {
                device |= CHARGE_VIOLATION;
            }
            if judged && s.verdict.flags & SIDE_BREAK_GLASS != 0 {
                device |= CHARGE_BREAK_GLASS;
            }
            if judged && s.enrolled {
                device |= CHARGE_REASON;
            }
        } else if violation {
            // An unjudged address never violates; a judged one without a device entry
            // (CONFIG_JUDGE_UNENROLLED) beside a device reports its event all the same.
            device |= CHARGE_VIOLATION;
        }
        let (table, would_drop) = if s.enrolled && s.over_budget {
            (TABLE_NONE, false)
        } else if s.enrolled {
            let table = enrolled_flow_table(s.flow_known, s.verdict.action, s.verdict.reason);
            (table, violation && !own_drop)
        } else if both_unenrolled {
            (TABLE_UNENROLLED, violation && !dropped)
        } else {
            (TABLE_NONE, false)
        };
        let mut flow = 0;
        if table != TABLE_NONE {
            if sent {
                flow |= FLOW_SENT;
            }
            if dropped {
                flow |= FLOW_DROPPED;
            }
            if would_drop {
                flow |= FLOW_WOULD_DROP;
            }
        }
        SidePlan {
            device,
            table,
            flow,
        }
    };
    [side(src, true), side(dst, false)]
}

/// Whether a UDP or SCTP request is remembered (so that its replies are known as
/// replies): only when no side's policy objects to it, the same in every mode but learn,
/// so audit and enforce key its replies alike. A flood of refused requests cannot evict
/// allowed ones, and traffic between addresses nobody judges leaves no trace. A request
/// off its schedule that passed is remembered: it is a baseline flow, and its reply
/// must not become a new flow that enforce drops where the policy asked for no drop.
#[inline(always)]
pub fn remember_request(src: SideVerdict, dst: SideVerdict) -> bool {
    let unjudged_pair = src.treatment == UNJUDGED && dst.treatment == UNJUDGED;
    let objects = |s: SideVerdict| {
        is_violation(s.action, s.reason)
            && !(s.reason == Reason::OffSchedule as u8 && s.action == Action::Pass as u8)
    };
    !unjudged_pair && !objects(src) && !objects(dst)
}

/// One side of the packet being judged: source (index 0) or destination (index 1).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Side {
    /// The flow as seen from this side (`key.device` is this side's address).
    pub key: FlowKey,
    /// DEVICE_STATS slot, or [`NO_SLOT`] when unenrolled.
    pub slot: u32,
    /// Where the side's flow is counted: index in its table, and that slot's tag.
    pub flow_index: u32,
    pub _pad1: u32,
    pub flow_tag: u64,
    pub treatment: u8,
    /// The verdict for this side ([`Action`] and [`Reason`] as u8).
    pub action: u8,
    pub reason: u8,
    /// `SIDE_*` flags.
    pub flags: u8,
    /// The side's flow was found in `FLOWS` (1) or not (0).
    pub flow_known: u8,
    /// `TABLE_*` the flow was placed in (`TABLE_NONE`: not counted in a flow table).
    pub table: u8,
    /// A violation beyond the device's budget of flow entries (1): no flow table looked
    /// up, no decision cached (`take_flow_budget`).
    pub over_budget: u8,
    pub _pad2: u8,
    /// The break-glass deadline of the side's device entry (0: none).
    pub break_glass_until_ns: u64,
}

/// The judge's working state, in a per-CPU slot (`WORK`) rather than on the stack.
///
/// The judge runs in stages (`prepare`, `judge_side` ×2, `finish`), each a BPF function
/// that reads its inputs from here. Read back from a map, the inputs are unknown to the
/// verifier, so each stage is checked a handful of times instead of once for every
/// combination of the earlier stages' outcomes (which made the program "too large").
/// For the same reason nothing here is an `Option` or an enum with payload: LLVM may fill
/// undefined bytes from any register, and the verifier rejects that.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Work {
    pub sides: [Side; 2],
    /// The packet's decision, applied by the same code as a cached one.
    pub decision: Decision,
    /// What the first fragment got, for later fragments.
    pub inherited_action: u8,
    pub inherited_reason: u8,
    pub is_later_fragment: u8,
    /// The packet is a UDP or SCTP request (to the lower port): remembered in REQUESTS if
    /// its verdict allows it.
    pub request: u8,
    /// The combined verdict.
    pub action: u8,
    pub reason: u8,
    /// What decided the packet's service (`DecisionKey::kind`), kept here so that the
    /// stages read it from map memory: as a register it would be a different constant on
    /// each path that computed it, and each stage would be verified once per kind.
    pub kind: u8,
    /// The packet came from a ward leg from a MAC its MAC-bound source may send from:
    /// what it teaches is the device's own, whatever an impostor did before.
    pub source_verified: u8,
    /// `jiffies` when `clock_ns` was read: the coarse clock only moves with the tick, so
    /// a packet in the same tick reuses the time read for an earlier one instead of
    /// calling the clock helper (inlined, jiffies cost a load).
    pub clock_jiffies: u64,
    /// `CLOCK_MONOTONIC` (coarse) time read at `clock_jiffies`.
    pub clock_ns: u64,
    /// When the timed `MAC_BINDINGS` entry that let the source's MAC through ends (0: none
    /// or a lasting one): the decision stands no longer.
    pub binding_until_ns: u64,
}

/// What `judge::probe` in the XDP program decided for a device, kept for its next probe
/// (`PROBE_MEMO`, one per CPU): a scan's probes come from one device (a flood's frames go
/// to one), and all that differs between them is the peer and the service. Those are
/// checked for every probe (the peer is no enrolled address, the service is not in the
/// device's baseline, the device's budget of flow entries is spent); the device's entry,
/// treatment, verdict and charges are taken from here while everything they were derived
/// from holds ([`ProbeMemo::holds`]). Nothing else that they depend on moves without a new
/// cache epoch: a policy, a device's mode or a break-glass bumps it, and a probe is never
/// judged with break-glass running (`judged_in_one_stage`), so none can end under it.
///
/// The memo also holds what its probes charged the device (`pending_*`, as a cached
/// decision holds its hits': `Decision::pending_packets`), when that is all they charge
/// ([`ProbeMemo::hold`]) and their events are suppressed by the device's rate: the XDP
/// program charges it to DEVICE_STATS and DEVICE_REASONS when another device's probe
/// replaces the memo, and every reader of those adds it meanwhile
/// ([`ProbeMemo::charges_current`]; the controller's `HeldSources::read` applies the same
/// slot check as the XDP program's `charge_held`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProbeMemo {
    /// The device's DEVICES key, in the policy copy the memo was made under: its address,
    /// and the key its slot is checked by before held charges from another epoch go to it.
    pub key: DeviceKey,
    /// The `cache_epoch + 1` the probe read the device's entry under.
    pub epoch: u32,
    /// `source_id` of the frame the probe judged (a ward leg's source MAC, 0 elsewhere).
    pub source_id: u64,
    /// Probes charged here and not yet to the device's counters: how many, their bytes,
    /// when the last came.
    pub pending_packets: u64,
    pub pending_bytes: u64,
    pub pending_last_ns: u64,
    /// What the probe charges to the packet's source and destination.
    pub sides: [DecisionSide; 2],
    /// The device's DEVICE_STATS slot.
    pub slot: u32,
    /// The global mode and CONFIG flags (as `Decision::config`).
    pub config: u16,
    pub hour_of_week: u8,
    /// The device was the packet's source (1) or destination (0).
    pub source: u8,
    pub action: u8,
    pub reason: u8,
    /// Written by a probe (1); a zeroed memo holds nothing.
    pub filled: u8,
    /// The probe charges the device's counters, reason and event alone (1: its charges
    /// may be held here), nothing of the peer's.
    pub hold: u8,
    /// The device address's SERVICE_FILTERS entry (`flowtable::device_service_filter_index`).
    pub filter: u32,
}

// Every byte a named field: no padding for LLVM to fill from a register.
const _: () = assert!(core::mem::size_of::<ProbeMemo>() == 104);

impl ProbeMemo {
    /// Whether the memo was made under the packet's context: the same cache epoch, mode
    /// and flags, policy copy, hour of the week and source MAC.
    #[inline(always)]
    pub fn holds(
        &self,
        epoch: u32,
        config: u16,
        generation: u8,
        hour_of_week: u8,
        source_id: u64,
    ) -> bool {
        self.filled == 1
            && self.epoch == epoch
            && self.config == config
            && self.key.generation == generation
            && self.hour_of_week == hour_of_week
            && self.source_id == source_id
    }

    /// Whether the memo is of the device whose address has the halves `device` (the
    /// caller picks the packet's side that `source` names).
    #[inline(always)]
    pub fn is_of(&self, device: (u64, u64)) -> bool {
        let own = crate::flowtable::addr_halves(&self.key.addr);
        ((device.0 ^ own.0) | (device.1 ^ own.1)) == 0
    }

    /// Whether the memo holds charges that are its slot's under the cache epoch `epoch`:
    /// it was made under that epoch. A slot changes hands only with a policy switch,
    /// which moves the epoch; charges held from before it are the slot's only if the
    /// device still has it (the XDP program checks its DEVICES entry before charging
    /// them), and readers leave them out until then.
    #[inline(always)]
    pub fn charges_current(&self, epoch: u32) -> bool {
        self.pending_packets != 0 && self.epoch == epoch
    }
}

#[cfg(test)]
mod tests {
    //! The judge's decision tables, row by row.

    extern crate std;

    use super::*;
    use std::{vec, vec::Vec};

    const PASS: u8 = Action::Pass as u8;
    const DROP: u8 = Action::Drop as u8;
    const LC: u8 = DEVICE_LIFE_CRITICAL;
    const CONFIRMED: u8 = DEVICE_LIFE_CRITICAL | DEVICE_ENFORCE_CONFIRMED;

    fn r(reason: Reason) -> u8 {
        reason as u8
    }

    /// A probe's memo serves only the context it was made in: any one of the cache
    /// epoch, mode and flags, policy copy, hour or source MAC differing, or a memo never
    /// written, and the device is judged afresh.
    #[test]
    fn a_probe_memo_holds_only_in_its_own_context() {
        let mut addr = [0u8; 16];
        addr[..8].copy_from_slice(&7u64.to_ne_bytes());
        addr[8..].copy_from_slice(&9u64.to_ne_bytes());
        let memo = ProbeMemo {
            key: DeviceKey {
                addr,
                generation: 1,
                ..DeviceKey::default()
            },
            source_id: 0x0200_0000_0002,
            epoch: 5,
            config: 2,
            hour_of_week: 30,
            source: 1,
            filled: 1,
            ..ProbeMemo::default()
        };
        let made = (5, 2, 1, 30, 0x0200_0000_0002);
        let rows = [
            ("the same context", memo, made, true),
            (
                "another cache epoch",
                memo,
                (6, 2, 1, 30, 0x0200_0000_0002),
                false,
            ),
            (
                "another mode or flags",
                memo,
                (5, 3, 1, 30, 0x0200_0000_0002),
                false,
            ),
            (
                "the other policy copy",
                memo,
                (5, 2, 0, 30, 0x0200_0000_0002),
                false,
            ),
            ("another hour", memo, (5, 2, 1, 31, 0x0200_0000_0002), false),
            ("another source MAC", memo, (5, 2, 1, 30, 0), false),
            (
                "never written",
                ProbeMemo { filled: 0, ..memo },
                made,
                false,
            ),
            ("zeroed", ProbeMemo::default(), (0, 0, 0, 0, 0), false),
        ];
        for (name, memo, (epoch, config, generation, hour, source_id), holds) in rows {
            assert_eq!(
                memo.holds(epoch, config, generation, hour, source_id),
                holds,
                "{name}"
            );
        }
        assert!(memo.is_of((7, 9)));
        assert!(!memo.is_of((7, 8)) && !memo.is_of((6, 9)));
    }

    #[test]
    fn treatment_by_mode_override_and_criticality() {
        let learn = Mode::Learn as u8;
        let enforce = Mode::Enforce as u8;
        let rows = [
            // (entry mode, entry flags, global) -> treatment
            (MODE_INHERIT, 0, Mode::Learn, LEARN),
            (MODE_INHERIT, 0, Mode::Audit, AUDIT),
            (MODE_INHERIT, 0, Mode::Enforce, ENFORCE),
            (learn, 0, Mode::Enforce, LEARN),
            (enforce, 0, Mode::Learn, ENFORCE),
            (Mode::Audit as u8, 0, Mode::Enforce, AUDIT),
            // A mode byte that is no mode follows the global one.
            (7, 0, Mode::Audit, AUDIT),
            (MODE_INHERIT, LC, Mode::Enforce, SPARED),
            (enforce, LC, Mode::Learn, SPARED),
            (MODE_INHERIT, LC, Mode::Audit, AUDIT),
            (MODE_INHERIT, LC, Mode::Learn, LEARN),
            (MODE_INHERIT, CONFIRMED, Mode::Enforce, ENFORCE),
            (enforce, CONFIRMED, Mode::Learn, ENFORCE),
            // Confirmation alone (not life-critical) changes nothing.
            (
                MODE_INHERIT,
                DEVICE_ENFORCE_CONFIRMED,
                Mode::Enforce,
                ENFORCE,
            ),
        ];
        for (mode, flags, global, want) in rows {
            assert_eq!(
                treatment(mode, flags, global),
                want,
                "{mode} {flags:#x} {global:?}"
            );
        }
        assert_eq!(unenrolled_treatment(Mode::Enforce, 0), UNJUDGED);
        assert_eq!(
            unenrolled_treatment(Mode::Enforce, CONFIG_UNENROLLED_DROP),
            UNJUDGED
        );
        for (global, want) in [
            (Mode::Learn, LEARN),
            (Mode::Audit, AUDIT),
            (Mode::Enforce, ENFORCE),
        ] {
            assert_eq!(unenrolled_treatment(global, CONFIG_JUDGE_UNENROLLED), want);
        }
        assert_eq!(
            unenrolled_action(Mode::Enforce, CONFIG_UNENROLLED_DROP),
            DROP
        );
        assert_eq!(unenrolled_action(Mode::Audit, CONFIG_UNENROLLED_DROP), PASS);
        assert_eq!(unenrolled_action(Mode::Enforce, 0), PASS);
    }

    #[test]
    fn side_flags_break_glass_rules_and_protection() {
        // (now, until, entry flags, treatment) -> flags
        let rows = [
            (10, 0, 0, ENFORCE, 0),
            (10, 11, 0, ENFORCE, SIDE_BREAK_GLASS),
            (10, 10, 0, ENFORCE, 0),
            (10, 0, DEVICE_HAS_RULES, AUDIT, SIDE_HAS_RULES),
            (10, 0, LC, SPARED, SIDE_PROTECTED),
            (10, 0, LC, AUDIT, SIDE_PROTECTED),
            (10, 0, LC, LEARN, SIDE_PROTECTED),
            (10, 0, CONFIRMED, ENFORCE, 0),
            (
                10,
                u64::MAX,
                LC | DEVICE_HAS_RULES,
                SPARED,
                SIDE_BREAK_GLASS | SIDE_HAS_RULES | SIDE_PROTECTED,
            ),
        ];
        for (now, until, flags, treatment, want) in rows {
            assert_eq!(side_flags(now, until, flags, treatment), want);
        }
    }

    #[test]
    fn a_spoofed_source_is_decided_by_the_spoof_alone() {
        // The binding: found and lasting, found and timed (before/after its end), absent.
        assert!(binding_allows(true, 0, 5));
        assert!(binding_allows(true, 10, 5));
        assert!(!binding_allows(true, 10, 10));
        assert!(!binding_allows(false, 0, 5));
        // A life-critical device spared in enforce, with break-glass, and rules; its peer
        // an enforced server with rules.
        let src_flags = side_flags(5, 100, LC | DEVICE_HAS_RULES | DEVICE_MAC_BOUND, SPARED);
        assert_eq!(
            src_flags,
            SIDE_BREAK_GLASS | SIDE_HAS_RULES | SIDE_PROTECTED | SIDE_MAC_BOUND
        );
        let mut sides = [Side::default(); 2];
        sides[0].treatment = SPARED;
        sides[0].flags = src_flags;
        sides[1].treatment = ENFORCE;
        sides[1].flags = SIDE_HAS_RULES;
        mark_spoofed(&mut sides);
        assert_eq!(
            sides[0].flags,
            SIDE_HAS_RULES | SIDE_MAC_BOUND | SIDE_SPOOFED
        );
        assert_eq!((sides[1].treatment, sides[1].flags), (UNJUDGED, 0));
        assert!(!needs_rules(sides[0].treatment, sides[0].flags));
        let spoof =
            |treatment: u8| before_baseline(treatment, SIDE_SPOOFED, RULE_ALLOW, false, PASS, 0);
        let ruled_spoof = |action: u8| Ruling {
            decided: true,
            action,
            reason: r(Reason::SpoofedSource),
        };
        assert_eq!(spoof(ENFORCE), ruled_spoof(DROP));
        assert_eq!(
            spoof(SPARED),
            ruled_spoof(DROP),
            "life-critical: dropped too"
        );
        assert_eq!(spoof(AUDIT), ruled_spoof(PASS));
        assert_eq!(
            spoof(LEARN),
            ruled_spoof(PASS),
            "learn: passed, never learned"
        );
        // Combined with the (now unjudged) destination: the spoof's verdict stands, no
        // protection or break-glass turns the drop into a pass.
        let src = SideVerdict {
            treatment: SPARED,
            action: DROP,
            reason: r(Reason::SpoofedSource),
            flags: sides[0].flags,
        };
        let dst = SideVerdict {
            treatment: UNJUDGED,
            action: PASS,
            reason: r(Reason::Unenrolled),
            flags: 0,
        };
        assert_eq!(combine(src, dst, PASS), (DROP, r(Reason::SpoofedSource)));
        assert!(is_violation(PASS, r(Reason::SpoofedSource)));
    }

    #[test]
    fn what_decides_before_the_baseline() {
        let unmatched = r(Reason::FragmentUnmatched);
        let undecided = Ruling {
            decided: false,
            action: PASS,
            reason: r(Reason::Unenrolled),
        };
        let rule = |a: u8, reason: Reason| Ruling {
            decided: true,
            action: a,
            reason: r(reason),
        };
        // (treatment, flags, rules, later fragment, inherited action, reason) -> ruling
        let rows = [
            (
                UNJUDGED,
                0,
                0,
                false,
                PASS,
                unmatched,
                rule(PASS, Reason::Unenrolled),
            ),
            (
                UNJUDGED,
                SIDE_HAS_RULES,
                RULE_DENY,
                true,
                DROP,
                unmatched,
                rule(PASS, Reason::Unenrolled),
            ),
            (
                ENFORCE,
                SIDE_BREAK_GLASS,
                0,
                false,
                PASS,
                unmatched,
                rule(PASS, Reason::BreakGlass),
            ),
            // Break-glass lifts the device's own deny rule (never looked up).
            (
                ENFORCE,
                SIDE_BREAK_GLASS | SIDE_HAS_RULES,
                RULE_DENY,
                false,
                PASS,
                unmatched,
                rule(PASS, Reason::BreakGlass),
            ),
            (
                ENFORCE,
                SIDE_HAS_RULES,
                RULE_DENY,
                false,
                PASS,
                unmatched,
                rule(DROP, Reason::PolicyDeny),
            ),
            (
                AUDIT,
                SIDE_HAS_RULES,
                RULE_DENY,
                false,
                PASS,
                unmatched,
                rule(PASS, Reason::PolicyDeny),
            ),
            (
                LEARN,
                SIDE_HAS_RULES,
                RULE_DENY,
                false,
                PASS,
                unmatched,
                rule(PASS, Reason::PolicyDeny),
            ),
            (
                SPARED,
                SIDE_HAS_RULES,
                RULE_DENY,
                false,
                PASS,
                unmatched,
                rule(PASS, Reason::LifeCriticalSpared),
            ),
            (
                ENFORCE,
                SIDE_HAS_RULES,
                RULE_ALLOW,
                false,
                PASS,
                unmatched,
                rule(PASS, Reason::PolicyAllow),
            ),
            (
                AUDIT,
                SIDE_HAS_RULES,
                RULE_ALLOW,
                true,
                DROP,
                r(Reason::NotInBaseline),
                rule(PASS, Reason::PolicyAllow),
            ),
            // A rule result without SIDE_HAS_RULES is ignored.
            (ENFORCE, 0, RULE_DENY, false, PASS, unmatched, undecided),
            (
                ENFORCE,
                SIDE_HAS_RULES,
                0,
                false,
                PASS,
                unmatched,
                undecided,
            ),
            // Later fragments: the first fragment's verdict, or unmatched.
            (
                ENFORCE,
                0,
                0,
                true,
                DROP,
                r(Reason::NotInBaseline),
                rule(DROP, Reason::NotInBaseline),
            ),
            (
                AUDIT,
                0,
                0,
                true,
                PASS,
                r(Reason::InBaseline),
                rule(PASS, Reason::InBaseline),
            ),
            (
                ENFORCE,
                0,
                0,
                true,
                PASS,
                unmatched,
                rule(DROP, Reason::FragmentUnmatched),
            ),
            (
                AUDIT,
                0,
                0,
                true,
                PASS,
                unmatched,
                rule(PASS, Reason::FragmentUnmatched),
            ),
            (
                LEARN,
                0,
                0,
                true,
                PASS,
                unmatched,
                rule(PASS, Reason::FragmentUnmatched),
            ),
            (
                SPARED,
                0,
                0,
                true,
                PASS,
                unmatched,
                rule(PASS, Reason::FragmentUnmatched),
            ),
        ];
        for (i, (treatment, flags, rules, later, action, reason, want)) in
            rows.into_iter().enumerate()
        {
            assert_eq!(
                before_baseline(treatment, flags, rules, later, action, reason),
                want,
                "row {i}"
            );
        }
        assert!(needs_rules(ENFORCE, SIDE_HAS_RULES));
        assert!(!needs_rules(ENFORCE, SIDE_HAS_RULES | SIDE_BREAK_GLASS));
        assert!(!needs_rules(UNJUDGED, SIDE_HAS_RULES));
        assert!(!needs_rules(AUDIT, 0));
    }

    #[test]
    fn the_baselines_verdict_by_treatment() {
        let b = |action: u8, reason: Reason, learn: bool| BaselineRuling {
            action,
            reason: r(reason),
            learn,
        };
        let rows = [
            (LEARN, true, b(PASS, Reason::Learned, false)),
            (AUDIT, true, b(PASS, Reason::InBaseline, false)),
            (ENFORCE, true, b(PASS, Reason::InBaseline, false)),
            (SPARED, true, b(PASS, Reason::InBaseline, false)),
            (LEARN, false, b(PASS, Reason::Learned, true)),
            (AUDIT, false, b(PASS, Reason::NotInBaseline, false)),
            (ENFORCE, false, b(DROP, Reason::NotInBaseline, false)),
            (SPARED, false, b(PASS, Reason::LifeCriticalSpared, false)),
        ];
        for (treatment, in_baseline, want) in rows {
            assert_eq!(baseline_verdict(treatment, in_baseline), want);
        }
        assert_eq!(BASELINE_FULL.reason, r(Reason::BaselineFull));
    }

    /// A baseline flow inside and outside its learned hours, by treatment and the
    /// device's `schedule:` setting.
    #[test]
    fn the_schedules_verdict() {
        let b = |action: u8, reason: Reason| BaselineRuling {
            action,
            reason: r(reason),
            learn: false,
        };
        let enforce = SIDE_SCHEDULE_ENFORCE;
        // (treatment, side flags, in baseline, on schedule) -> ruling
        let rows = [
            (AUDIT, 0, true, true, b(PASS, Reason::InBaseline)),
            (AUDIT, 0, true, false, b(PASS, Reason::OffSchedule)),
            (AUDIT, enforce, true, false, b(PASS, Reason::OffSchedule)),
            (ENFORCE, 0, true, true, b(PASS, Reason::InBaseline)),
            (ENFORCE, 0, true, false, b(PASS, Reason::OffSchedule)),
            (ENFORCE, enforce, true, false, b(DROP, Reason::OffSchedule)),
            (ENFORCE, enforce, true, true, b(PASS, Reason::InBaseline)),
            // Life-critical without confirmation: never dropped.
            (SPARED, 0, true, false, b(PASS, Reason::OffSchedule)),
            (
                SPARED,
                enforce | SIDE_PROTECTED,
                true,
                false,
                b(PASS, Reason::LifeCriticalSpared),
            ),
            // Learning has no schedule to break; a flow not in the baseline is judged as
            // before, whatever the hour.
            (LEARN, enforce, true, false, b(PASS, Reason::Learned)),
            (
                ENFORCE,
                enforce,
                false,
                false,
                b(DROP, Reason::NotInBaseline),
            ),
            (AUDIT, 0, false, false, b(PASS, Reason::NotInBaseline)),
        ];
        for (i, (treatment, flags, in_baseline, on, want)) in rows.into_iter().enumerate() {
            assert_eq!(
                scheduled_baseline_verdict(treatment, flags, in_baseline, on),
                want,
                "row {i}"
            );
        }
        let hour = 30;
        assert!(checks_schedule(AUDIT, 0, hour));
        assert!(checks_schedule(ENFORCE, SIDE_SCHEDULE_ENFORCE, hour));
        assert!(checks_schedule(SPARED, SIDE_PROTECTED, hour));
        assert!(!checks_schedule(ENFORCE, SIDE_SCHEDULE_IGNORE, hour));
        assert!(!checks_schedule(LEARN, 0, hour));
        assert!(!checks_schedule(UNJUDGED, 0, hour));
        assert!(!checks_schedule(AUDIT, 0, schedule::HOUR_UNKNOWN));
        assert!(learns_schedule(LEARN, hour));
        assert!(!learns_schedule(LEARN, schedule::HOUR_UNKNOWN));
        assert!(!learns_schedule(AUDIT, hour));
        assert_eq!(
            side_flags(
                0,
                0,
                DEVICE_SCHEDULE_ENFORCE | DEVICE_SCHEDULE_IGNORE,
                AUDIT
            ),
            SIDE_SCHEDULE_ENFORCE | SIDE_SCHEDULE_IGNORE
        );
    }

    /// A protected life-critical device off schedule beside a peer that drops: the
    /// peer's drop is lifted, as for any verdict.
    #[test]
    fn off_schedule_beside_the_life_critical_rule() {
        let spared_off = v(SPARED, PASS, Reason::OffSchedule, SIDE_PROTECTED);
        let enforced_off = v(ENFORCE, DROP, Reason::OffSchedule, SIDE_SCHEDULE_ENFORCE);
        let hit = v(ENFORCE, PASS, Reason::InBaseline, 0);
        assert_eq!(
            combine(enforced_off, spared_off, PASS),
            (PASS, r(Reason::LifeCriticalSpared))
        );
        assert_eq!(
            combine(hit, spared_off, PASS),
            (PASS, r(Reason::OffSchedule))
        );
        assert_eq!(
            combine(enforced_off, hit, PASS),
            (DROP, r(Reason::OffSchedule))
        );
        // A passed off-schedule request is remembered (its reply is no new flow); a
        // dropped one is not.
        let audit_off = v(AUDIT, PASS, Reason::OffSchedule, 0);
        assert!(remember_request(audit_off, hit));
        assert!(!remember_request(enforced_off, hit));
    }

    /// `rank`, the severity order `combine` picks by: a drop, then violations, then
    /// learning and break-glass, then the rest.
    #[test]
    fn severity_of_every_reason() {
        for &reason in Reason::ALL {
            let want = match reason {
                Reason::NotInBaseline
                | Reason::LifeCriticalSpared
                | Reason::FragmentUnmatched
                | Reason::PolicyDeny
                | Reason::SpoofedSource
                | Reason::OffSchedule => 3,
                Reason::Learned | Reason::BaselineFull | Reason::BreakGlass => 2,
                _ => 1,
            };
            assert_eq!(rank(PASS, r(reason)), want, "{reason:?}");
            assert_eq!(rank(DROP, r(reason)), 4, "{reason:?}");
            assert_eq!(
                is_violation(PASS, r(reason)),
                reason.is_violation(),
                "{reason:?}"
            );
        }
    }

    fn v(treatment: u8, action: u8, reason: Reason, flags: u8) -> SideVerdict {
        SideVerdict {
            treatment,
            action,
            reason: r(reason),
            flags,
        }
    }

    #[test]
    fn how_two_sides_combine() {
        let unjudged = v(UNJUDGED, PASS, Reason::Unenrolled, 0);
        let hit = v(ENFORCE, PASS, Reason::InBaseline, 0);
        let miss = v(ENFORCE, DROP, Reason::NotInBaseline, 0);
        let audit_miss = v(AUDIT, PASS, Reason::NotInBaseline, 0);
        let learned = v(LEARN, PASS, Reason::Learned, 0);
        let glass = v(ENFORCE, PASS, Reason::BreakGlass, SIDE_BREAK_GLASS);
        let spared = v(SPARED, PASS, Reason::LifeCriticalSpared, SIDE_PROTECTED);
        let protected_hit = v(SPARED, PASS, Reason::InBaseline, SIDE_PROTECTED);
        let deny = v(ENFORCE, DROP, Reason::PolicyDeny, 0);
        let rows: Vec<(SideVerdict, SideVerdict, u8, (u8, Reason))> = vec![
            (unjudged, unjudged, PASS, (PASS, Reason::Unenrolled)),
            (unjudged, unjudged, DROP, (DROP, Reason::Unenrolled)),
            (hit, unjudged, DROP, (PASS, Reason::InBaseline)),
            (unjudged, miss, PASS, (DROP, Reason::NotInBaseline)),
            (hit, miss, PASS, (DROP, Reason::NotInBaseline)),
            (miss, hit, PASS, (DROP, Reason::NotInBaseline)),
            (hit, audit_miss, PASS, (PASS, Reason::NotInBaseline)),
            (learned, hit, PASS, (PASS, Reason::Learned)),
            // Ties go to the source.
            (miss, deny, PASS, (DROP, Reason::NotInBaseline)),
            (deny, miss, PASS, (DROP, Reason::PolicyDeny)),
            // Break-glass lifts the peer's drop, by baseline or deny rule.
            (glass, miss, PASS, (PASS, Reason::BreakGlass)),
            (deny, glass, PASS, (PASS, Reason::BreakGlass)),
            (glass, audit_miss, PASS, (PASS, Reason::NotInBaseline)),
            // A protected life-critical device is never dropped by its peer.
            (miss, spared, PASS, (PASS, Reason::LifeCriticalSpared)),
            (
                protected_hit,
                deny,
                PASS,
                (PASS, Reason::LifeCriticalSpared),
            ),
            (
                deny,
                protected_hit,
                PASS,
                (PASS, Reason::LifeCriticalSpared),
            ),
            // Beside break-glass, a spared device's own verdict shows.
            (glass, spared, PASS, (PASS, Reason::LifeCriticalSpared)),
        ];
        for (i, (src, dst, unenrolled, (action, reason))) in rows.into_iter().enumerate() {
            assert_eq!(
                combine(src, dst, unenrolled),
                (action, r(reason)),
                "row {i}: {src:?} + {dst:?}"
            );
        }
    }

    #[test]
    fn malformed_packets_drop_only_where_enforced_and_unprotected() {
        let rows = [
            (UNJUDGED, UNJUDGED, 0, PASS, PASS),
            (UNJUDGED, UNJUDGED, 0, DROP, DROP),
            (ENFORCE, UNJUDGED, 0, PASS, DROP),
            (UNJUDGED, ENFORCE, 0, PASS, DROP),
            (AUDIT, LEARN, 0, DROP, PASS),
            (SPARED, UNJUDGED, SIDE_PROTECTED, PASS, PASS),
            (ENFORCE, SPARED, SIDE_PROTECTED, PASS, PASS),
        ];
        for (src, dst, flags, unenrolled, want) in rows {
            assert_eq!(malformed_action(src, dst, flags, unenrolled), want);
        }
    }

    fn side(verdict: SideVerdict, enrolled: bool, flow_known: bool) -> PlanSide {
        PlanSide {
            verdict,
            enrolled,
            flow_known,
            over_budget: false,
        }
    }

    fn over_budget(verdict: SideVerdict) -> PlanSide {
        PlanSide {
            over_budget: true,
            ..side(verdict, true, false)
        }
    }

    fn sp(device: u8, table: u8, flow: u8) -> SidePlan {
        SidePlan {
            device,
            table,
            flow,
        }
    }

    #[test]
    fn what_a_verdict_charges_to_each_side() {
        let count = CHARGE_COUNT | CHARGE_REASON;
        let unjudged = v(UNJUDGED, PASS, Reason::Unenrolled, 0);
        let hit = v(ENFORCE, PASS, Reason::InBaseline, 0);
        let miss = v(ENFORCE, DROP, Reason::NotInBaseline, 0);
        let audit_miss = v(AUDIT, PASS, Reason::NotInBaseline, 0);
        let glass = v(ENFORCE, PASS, Reason::BreakGlass, SIDE_BREAK_GLASS);
        let spared = v(SPARED, PASS, Reason::LifeCriticalSpared, SIDE_PROTECTED);
        let judged_unenrolled = v(ENFORCE, DROP, Reason::NotInBaseline, 0);
        // (src, dst, action, judged) -> [src plan, dst plan]
        let rows: Vec<(PlanSide, PlanSide, u8, bool, [SidePlan; 2])> = vec![
            // A device's allowed packet to an unenrolled server: the device and its flow.
            (
                side(hit, true, true),
                side(unjudged, false, false),
                PASS,
                true,
                [
                    sp(count | CHARGE_SENT, TABLE_FLOWS, FLOW_SENT),
                    SidePlan::default(),
                ],
            ),
            // Its new violating flow, dropped: apart, in the unenrolled table.
            (
                side(miss, true, false),
                side(unjudged, false, false),
                DROP,
                true,
                [
                    sp(
                        count | CHARGE_SENT | CHARGE_DROPPED | CHARGE_VIOLATION,
                        TABLE_UNENROLLED,
                        FLOW_SENT | FLOW_DROPPED,
                    ),
                    SidePlan::default(),
                ],
            ),
            // A violation beyond the device's budget of flow entries (a scan's probe):
            // dropped, counted, reported, but in no flow table.
            (
                over_budget(miss),
                side(unjudged, false, false),
                DROP,
                true,
                [
                    sp(
                        count | CHARGE_SENT | CHARGE_DROPPED | CHARGE_VIOLATION,
                        TABLE_NONE,
                        0,
                    ),
                    SidePlan::default(),
                ],
            ),
            // Audited beyond the budget: the would-drop on the device only.
            (
                side(unjudged, false, false),
                over_budget(audit_miss),
                PASS,
                true,
                [
                    SidePlan::default(),
                    sp(count | CHARGE_VIOLATION, TABLE_NONE, 0),
                ],
            ),
            // A known flow that now violates stays in FLOWS.
            (
                side(miss, true, true),
                side(unjudged, false, false),
                DROP,
                true,
                [
                    sp(
                        count | CHARGE_SENT | CHARGE_DROPPED | CHARGE_VIOLATION,
                        TABLE_FLOWS,
                        FLOW_SENT | FLOW_DROPPED,
                    ),
                    SidePlan::default(),
                ],
            ),
            // Audit: a would-drop on the device and its flow.
            (
                side(unjudged, false, false),
                side(audit_miss, true, false),
                PASS,
                true,
                [
                    SidePlan::default(),
                    sp(count | CHARGE_VIOLATION, TABLE_UNENROLLED, FLOW_WOULD_DROP),
                ],
            ),
            // Dropped by the peer: the device that only audits gets a would-drop, both
            // flows the drop.
            (
                side(audit_miss, true, false),
                side(miss, true, false),
                DROP,
                true,
                [
                    sp(
                        count | CHARGE_SENT | CHARGE_VIOLATION,
                        TABLE_UNENROLLED,
                        FLOW_SENT | FLOW_DROPPED | FLOW_WOULD_DROP,
                    ),
                    sp(
                        count | CHARGE_DROPPED | CHARGE_VIOLATION,
                        TABLE_UNENROLLED,
                        FLOW_DROPPED,
                    ),
                ],
            ),
            // Break-glass: its packet, and the peer's lifted violation as a would-drop.
            (
                side(glass, true, true),
                side(miss, true, false),
                PASS,
                true,
                [
                    sp(
                        count | CHARGE_SENT | CHARGE_BREAK_GLASS,
                        TABLE_FLOWS,
                        FLOW_SENT,
                    ),
                    sp(count | CHARGE_VIOLATION, TABLE_UNENROLLED, FLOW_WOULD_DROP),
                ],
            ),
            // Spared life-critical device beside an enforced peer: both would-drop.
            (
                side(miss, true, false),
                side(spared, true, false),
                PASS,
                true,
                [
                    sp(
                        count | CHARGE_SENT | CHARGE_VIOLATION,
                        TABLE_UNENROLLED,
                        FLOW_SENT | FLOW_WOULD_DROP,
                    ),
                    sp(count | CHARGE_VIOLATION, TABLE_UNENROLLED, FLOW_WOULD_DROP),
                ],
            ),
            // Two unenrolled addresses: each counted on its own, both flows apart; a
            // default drop is charged to both.
            (
                side(unjudged, false, false),
                side(unjudged, false, false),
                DROP,
                true,
                [
                    sp(
                        CHARGE_COUNT | CHARGE_SENT | CHARGE_DROPPED,
                        TABLE_UNENROLLED,
                        FLOW_SENT | FLOW_DROPPED,
                    ),
                    sp(
                        CHARGE_COUNT | CHARGE_DROPPED,
                        TABLE_UNENROLLED,
                        FLOW_DROPPED,
                    ),
                ],
            ),
            // Judged without a device entry (replay's --learn-all), beside a device: an
            // event, no counters of its own.
            (
                side(judged_unenrolled, false, false),
                side(hit, true, true),
                DROP,
                true,
                [
                    sp(CHARGE_VIOLATION, TABLE_NONE, 0),
                    sp(count, TABLE_FLOWS, FLOW_DROPPED),
                ],
            ),
            // A frame a capture cut: counted (a violating flow apart, as when judged),
            // nothing else.
            (
                side(miss, true, false),
                side(unjudged, false, false),
                DROP,
                false,
                [
                    sp(CHARGE_COUNT | CHARGE_SENT, TABLE_UNENROLLED, FLOW_SENT),
                    SidePlan::default(),
                ],
            ),
            (
                side(hit, true, false),
                side(unjudged, false, false),
                PASS,
                false,
                [
                    sp(CHARGE_COUNT | CHARGE_SENT, TABLE_FLOWS, FLOW_SENT),
                    SidePlan::default(),
                ],
            ),
        ];
        for (i, (src, dst, action, judged, want)) in rows.into_iter().enumerate() {
            assert_eq!(plan(src, dst, action, judged), want, "row {i}");
        }
    }

    #[test]
    fn a_devices_budget_of_violating_flow_entries_is_per_second() {
        let second = 1_000_000_000;
        let mut rate = EventRate::default();
        let start = 5 * second;
        for i in 0..VIOLATING_FLOWS_PER_DEVICE_PER_SECOND {
            assert!(
                take_flow_budget(&mut rate, start + u64::from(i)),
                "flow {i}"
            );
        }
        assert!(!take_flow_budget(&mut rate, start + 1_000), "one beyond");
        assert!(
            !take_flow_budget(&mut rate, start + second - 1),
            "same second"
        );
        assert_eq!(rate.flows_in_window, VIOLATING_FLOWS_PER_DEVICE_PER_SECOND);
        // Events sent in the window are not flows, and the reverse.
        rate.sent_in_window = 3;
        assert!(take_flow_budget(&mut rate, start + second), "a new second");
        assert_eq!(
            (rate.window_start_ns, rate.flows_in_window),
            (start + second, 1)
        );
        assert_eq!(rate.sent_in_window, 0, "the window is the events' too");
        // The clock of a CPU never runs back; a slot last used long ago starts afresh.
        let mut stale = EventRate {
            window_start_ns: 1,
            flows_in_window: u32::MAX,
            ..EventRate::default()
        };
        assert!(take_flow_budget(&mut stale, 10 * second));
    }

    #[test]
    fn requests_are_remembered_only_when_no_side_objects() {
        let unjudged = v(UNJUDGED, PASS, Reason::Unenrolled, 0);
        let hit = v(ENFORCE, PASS, Reason::InBaseline, 0);
        let learned = v(LEARN, PASS, Reason::Learned, 0);
        let audit_miss = v(AUDIT, PASS, Reason::NotInBaseline, 0);
        let rows = [
            (hit, unjudged, true),
            (learned, hit, true),
            (unjudged, unjudged, false),
            (audit_miss, unjudged, false),
            (hit, audit_miss, false),
        ];
        for (src, dst, want) in rows {
            assert_eq!(remember_request(src, dst), want, "{src:?} {dst:?}");
        }
    }

    #[test]
    fn device_charge_by_the_sides_charge_flags() {
        let charge = |device: u8| {
            let s = device_charge(device, 3, 180, 77);
            [
                s.packets_sent,
                s.bytes_sent,
                s.packets_received,
                s.bytes_received,
                s.first_seen_ns,
                s.last_seen_ns,
                s.dropped_packets,
                s.would_drop_packets,
                s.learned_flows,
                s.break_glass_packets,
            ]
        };
        let count = CHARGE_COUNT | CHARGE_REASON;
        let rows: [(u8, [u64; 10]); 6] = [
            (count | CHARGE_SENT, [3, 180, 0, 0, 0, 77, 0, 0, 0, 0]),
            (count, [0, 0, 3, 180, 0, 77, 0, 0, 0, 0]),
            (
                count | CHARGE_SENT | CHARGE_DROPPED | CHARGE_VIOLATION,
                [3, 180, 0, 0, 0, 77, 3, 0, 0, 0],
            ),
            (count | CHARGE_VIOLATION, [0, 0, 3, 180, 0, 77, 0, 3, 0, 0]),
            // The peer's policy dropped it: dropped here too, no violation of this side's.
            (count | CHARGE_DROPPED, [0, 0, 3, 180, 0, 77, 3, 0, 0, 0]),
            (
                count | CHARGE_SENT | CHARGE_BREAK_GLASS,
                [3, 180, 0, 0, 0, 77, 0, 0, 0, 3],
            ),
        ];
        for (device, expected) in rows {
            assert_eq!(charge(device), expected, "charge flags {device:#x}");
        }
        // One packet charged once, or held and charged later, adds up the same.
        let flags = count | CHARGE_SENT | CHARGE_VIOLATION | CHARGE_BREAK_GLASS;
        let mut once = DeviceStats::default();
        for _ in 0..3 {
            once.merge(&device_charge(flags, 1, 60, 77));
        }
        assert_eq!(once, device_charge(flags, 3, 180, 77));
    }

    #[test]
    fn flow_charge_by_the_sides_flow_flags() {
        let charge = |flow: u8| {
            let s = flow_charge(flow, 3, 180, 77);
            [
                s.packets_sent,
                s.bytes_sent,
                s.packets_received,
                s.bytes_received,
                s.last_seen_ns,
                s.dropped_packets,
                s.would_drop_packets,
            ]
        };
        let rows: [(u8, [u64; 7]); 5] = [
            (FLOW_SENT, [3, 180, 0, 0, 77, 0, 0]),
            (0, [0, 0, 3, 180, 77, 0, 0]),
            (FLOW_SENT | FLOW_DROPPED, [3, 180, 0, 0, 77, 3, 0]),
            (FLOW_WOULD_DROP, [0, 0, 3, 180, 77, 0, 3]),
            (
                FLOW_SENT | FLOW_DROPPED | FLOW_WOULD_DROP,
                [3, 180, 0, 0, 77, 3, 3],
            ),
        ];
        for (flow, expected) in rows {
            assert_eq!(charge(flow), expected, "flow flags {flow:#x}");
        }
        // One packet charged once, or pending and charged later, adds up the same.
        let mut once = FlowStats::default();
        for _ in 0..3 {
            once.merge(&flow_charge(FLOW_SENT | FLOW_DROPPED, 1, 60, 77));
        }
        assert_eq!(once, flow_charge(FLOW_SENT | FLOW_DROPPED, 3, 180, 77));
    }

    #[test]
    fn one_stage_judging_is_for_plain_audited_or_enforced_sources() {
        let rows: [(u8, u8, bool, bool); 12] = [
            (ENFORCE, 0, false, true),
            (AUDIT, 0, false, true),
            (SPARED, SIDE_PROTECTED, false, true),
            (ENFORCE, SIDE_SCHEDULE_ENFORCE, true, true),
            (ENFORCE, SIDE_MAC_BOUND, false, true),
            (ENFORCE, SIDE_MAC_BOUND, true, false),
            (LEARN, 0, false, false),
            (UNJUDGED, 0, false, false),
            (ENFORCE, SIDE_BREAK_GLASS, false, false),
            (ENFORCE, SIDE_HAS_RULES, false, false),
            (AUDIT, SIDE_SPOOFED, false, false),
            (SPARED, SIDE_PROTECTED | SIDE_HAS_RULES, false, false),
        ];
        for (treatment, flags, ward, want) in rows {
            assert_eq!(
                judged_in_one_stage(treatment, flags, ward),
                want,
                "treatment {treatment} flags {flags:#x} ward leg {ward}"
            );
        }
        // Its verdict is the staged judge's for a flow outside the baseline.
        for (treatment, flags) in [(ENFORCE, 0), (AUDIT, 0), (SPARED, SIDE_PROTECTED)] {
            let staged = before_baseline(treatment, flags, 0, false, 0, 0);
            assert!(!staged.decided);
            let baseline = scheduled_baseline_verdict(treatment, flags, false, true);
            assert_eq!(
                unlisted_verdict(treatment, flags),
                (baseline.action, baseline.reason)
            );
        }
        assert_eq!(
            unlisted_verdict(ENFORCE, 0),
            (DROP, Reason::NotInBaseline as u8)
        );
        assert_eq!(
            unlisted_verdict(SPARED, SIDE_PROTECTED),
            (PASS, Reason::LifeCriticalSpared as u8)
        );
        // The budget: spent once the window's flows are taken, renewed by the next window.
        let mut rate = EventRate::default();
        for _ in 0..VIOLATING_FLOWS_PER_DEVICE_PER_SECOND {
            assert!(!flow_budget_spent(&mut rate, 10));
            assert!(take_flow_budget(&mut rate, 10));
        }
        assert!(flow_budget_spent(&mut rate, 10));
        assert!(!take_flow_budget(&mut rate, 10));
        assert!(!flow_budget_spent(&mut rate, 10 + 1_000_000_000));
    }
}
