//! Verdicts, the reasons behind them, and the enforcement modes.
//!
//! One numbered list, used by the XDP program (as the index of its counters), by the
//! controller (as metric labels and table columns) and by the docs (`monitor reasons`).
//! Numbers are part of the pinned-map layout: append, never renumber.

/// What the XDP program does with a frame.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    Pass = 0,
    Drop = 1,
}

impl Action {
    pub const COUNT: usize = 2;
    pub const ALL: [Action; Self::COUNT] = [Action::Pass, Action::Drop];

    pub const fn name(self) -> &'static str {
        match self {
            Action::Pass => "pass",
            Action::Drop => "drop",
        }
    }
}

impl TryFrom<u8> for Action {
    type Error = u8;
    fn try_from(raw: u8) -> Result<Self, u8> {
        match raw {
            0 => Ok(Action::Pass),
            1 => Ok(Action::Drop),
            other => Err(other),
        }
    }
}

macro_rules! reasons {
    ($( $(#[doc = $doc:literal])* $variant:ident = $num:literal, $label:literal; )*) => {
        /// Why a frame got its action. `Reason as usize` indexes the verdict counters.
        #[repr(u8)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Reason {
            $( $(#[doc = $doc])* $variant = $num, )*
        }

        impl Reason {
            pub const ALL: &'static [Reason] = &[$(Reason::$variant),*];
            /// One past the highest reason number: the counter slots per action. Numbers
            /// may leave gaps (one kept for another branch's reason), so this is not
            /// `ALL.len()`; a gap's slots are never counted.
            pub const COUNT: usize = {
                let mut highest = 0;
                let mut i = 0;
                while i < Self::ALL.len() {
                    if Self::ALL[i] as usize > highest {
                        highest = Self::ALL[i] as usize;
                    }
                    i += 1;
                }
                highest + 1
            };

            /// Stable snake_case name, used as the `reason` metric label.
            pub const fn label(self) -> &'static str {
                match self { $(Reason::$variant => $label,)* }
            }

            /// One-line explanation for operators (the docs table is built from this).
            pub fn description(self) -> &'static str {
                let doc = match self { $(Reason::$variant => concat!($($doc),*),)* };
                doc.trim_start()
            }
        }

        impl Reason {
            /// Bit `n` set when `n` is a reason's number (`COUNT` ≤ 64, asserted below).
            const NUMBERS: u64 = 0 $( | 1u64 << $num )*;
        }

        const _: () = assert!(Reason::COUNT <= 64, "Reason::NUMBERS holds 64 numbers");

        /// A mask test, not a `match`: on BPF a `match` over the reasons compiles to a
        /// tree of branches in an out-of-line function, a call and return on the path of
        /// every frame the XDP program decides.
        impl TryFrom<u8> for Reason {
            type Error = u8;
            #[inline(always)]
            fn try_from(raw: u8) -> Result<Self, u8> {
                if raw < 64 && Self::NUMBERS >> raw & 1 == 1 {
                    // SAFETY: `Reason` is `repr(u8)` and `raw` is one of its variants'
                    // numbers (its bit in NUMBERS).
                    Ok(unsafe { core::mem::transmute::<u8, Reason>(raw) })
                } else {
                    Err(raw)
                }
            }
        }
    };
}

reasons! {
    /// Learn mode: the flow is (now) in the device's baseline.
    Learned = 0, "learned";
    /// Audit or enforce mode: the flow is in the device's baseline.
    InBaseline = 1, "in_baseline";
    /// The flow is not in the device's baseline: dropped in enforce mode, counted as would-drop in audit mode.
    NotInBaseline = 2, "not_in_baseline";
    /// Would be dropped (by its own or its peer's policy), but a life-critical device is involved whose own entry does not confirm enforcement.
    LifeCriticalSpared = 3, "life_critical_spared";
    /// Neither address is an enrolled device; the policy default for unenrolled traffic applies.
    Unenrolled = 4, "unenrolled";
    /// A non-first IP fragment whose first fragment was not seen; dropped where enforcement applies.
    FragmentUnmatched = 5, "fragment_unmatched";
    /// Not IP (ARP, LLDP, STP, LLC and other ethertypes): always passed, counted by class.
    NotIp = 6, "not_ip";
    /// Frame shorter than an Ethernet header.
    TruncatedEthernet = 7, "truncated_ethernet";
    /// VLAN tag cut short, or more than two stacked tags.
    BadVlan = 8, "bad_vlan";
    /// IPv4 header cut short, wrong version, header length below 20 bytes or total length out of range.
    MalformedIpv4 = 9, "malformed_ipv4";
    /// IPv6 header or extension header cut short, wrong version or payload length out of range.
    MalformedIpv6 = 10, "malformed_ipv6";
    /// IPv6 extension header chain longer than the parser walks.
    Ipv6ChainTooLong = 11, "ipv6_chain_too_long";
    /// TCP, UDP, SCTP or ICMP header cut short.
    TruncatedTransport = 12, "truncated_transport";
    /// Learn mode, but the baseline table is full: the flow was passed and not recorded.
    BaselineFull = 13, "baseline_full";
    /// An allow rule of the policy matches: passed in every mode, baseline or not.
    PolicyAllow = 14, "policy_allow";
    /// A deny rule of the policy matches (deny wins over allow rules and the baseline): dropped in enforce mode, would-drop otherwise.
    PolicyDeny = 15, "policy_deny";
    /// Break-glass in force on the device or on its peer lifts enforcement of their traffic until it expires: passed and counted.
    BreakGlass = 16, "break_glass";
    /// IPv6 neighbour and router discovery (ICMPv6 types 133 to 137), IPv6's ARP: always passed, never learned.
    NeighborDiscovery = 17, "neighbor_discovery";
    /// A frame on a ward leg with an enrolled device's address but not one of the device's MACs (an impostor, or a replaced NIC not accepted yet): dropped in enforce mode (life-critical devices too: it is not their traffic), would-drop otherwise; never learned.
    SpoofedSource = 18, "spoofed_source";
    /// Audit or enforce mode: the flow is in the device's baseline, but its learned schedule never saw it at this hour of the week (nor within the tolerance): dropped only where the device's policy says `schedule: enforce`, would-drop otherwise.
    OffSchedule = 19, "off_schedule";
}

impl Reason {
    /// Malformed and unparseable frames: never dropped in learn or audit mode.
    pub const fn is_malformed(self) -> bool {
        matches!(
            self,
            Reason::TruncatedEthernet
                | Reason::BadVlan
                | Reason::MalformedIpv4
                | Reason::MalformedIpv6
                | Reason::Ipv6ChainTooLong
                | Reason::TruncatedTransport
        )
    }

    /// Reasons that mean "enforcement would drop this" (dropped or, outside enforce, would-drop).
    pub const fn is_violation(self) -> bool {
        matches!(
            self,
            Reason::NotInBaseline
                | Reason::LifeCriticalSpared
                | Reason::FragmentUnmatched
                | Reason::PolicyDeny
                | Reason::SpoofedSource
                | Reason::OffSchedule
        )
    }
}

/// Index of the (action, reason) counter in `FrameCounts::verdicts` (per CPU).
#[inline(always)]
pub const fn verdict_index(action: Action, reason: Reason) -> u32 {
    (reason as u32) * (Action::COUNT as u32) + action as u32
}

/// Number of (action, reason) slots: one block of `FrameCounts::verdicts` (and of each
/// interface's `IFACE_VERDICTS`).
pub const VERDICT_SLOTS: u32 = (Reason::COUNT * Action::COUNT) as u32;

/// First slot of the second block of `FrameCounts::verdicts`: frames a capture cut short
/// (`CONFIG_CAPTURE_MAY_BE_CUT`), whose verdicts replay must not present as predictions.
pub const CUT_VERDICTS: u32 = VERDICT_SLOTS;

/// Entries of `FrameCounts::verdicts`: the verdicts of whole frames, then of cut ones.
pub const VERDICTS_ENTRIES: u32 = 2 * VERDICT_SLOTS;

/// Enforcement mode, global or per device.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mode {
    /// Record every flow into the device's baseline; drop nothing.
    Learn = 0,
    /// Compare with the baseline and count what enforce would drop; drop nothing.
    Audit = 1,
    /// Drop what is not in the baseline.
    Enforce = 2,
}

impl Mode {
    pub const ALL: [Mode; 3] = [Mode::Learn, Mode::Audit, Mode::Enforce];

    pub const fn name(self) -> &'static str {
        match self {
            Mode::Learn => "learn",
            Mode::Audit => "audit",
            Mode::Enforce => "enforce",
        }
    }
}

impl TryFrom<u8> for Mode {
    type Error = u8;
    fn try_from(raw: u8) -> Result<Self, u8> {
        match raw {
            0 => Ok(Mode::Learn),
            1 => Ok(Mode::Audit),
            2 => Ok(Mode::Enforce),
            other => Err(other),
        }
    }
}

impl core::str::FromStr for Mode {
    type Err = UnknownMode;
    fn from_str(s: &str) -> Result<Self, UnknownMode> {
        Mode::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(s))
            .ok_or(UnknownMode)
    }
}

/// A mode name that is not learn, audit or enforce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownMode;

impl core::fmt::Display for UnknownMode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("mode must be one of learn, audit, enforce")
    }
}

/// Frame classes counted for every frame, IP or not.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FrameClass {
    Ipv4 = 0,
    Ipv6 = 1,
    Arp = 2,
    /// 802.3 frames with a length instead of an ethertype (STP, CDP, LLC/SNAP, ...).
    Llc = 3,
    Lldp = 4,
    /// Any other ethertype (PPPoE, MPLS, EAPOL, ...).
    OtherEthertype = 5,
    /// Could not be classified (truncated Ethernet or VLAN header).
    Malformed = 6,
}

impl FrameClass {
    pub const ALL: [FrameClass; 7] = [
        FrameClass::Ipv4,
        FrameClass::Ipv6,
        FrameClass::Arp,
        FrameClass::Llc,
        FrameClass::Lldp,
        FrameClass::OtherEthertype,
        FrameClass::Malformed,
    ];
    pub const COUNT: usize = Self::ALL.len();

    pub const fn label(self) -> &'static str {
        match self {
            FrameClass::Ipv4 => "ipv4",
            FrameClass::Ipv6 => "ipv6",
            FrameClass::Arp => "arp",
            FrameClass::Llc => "llc",
            FrameClass::Lldp => "lldp",
            FrameClass::OtherEthertype => "other_ethertype",
            FrameClass::Malformed => "malformed",
        }
    }
}

impl TryFrom<u8> for FrameClass {
    type Error = u8;
    fn try_from(raw: u8) -> Result<Self, u8> {
        FrameClass::ALL
            .into_iter()
            .find(|c| *c as u8 == raw)
            .ok_or(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reason numbers may leave a gap (a number is never reused): the counters are indexed
    /// by number, so they run to the highest one, and a number without a reason is none.
    #[test]
    fn counters_run_to_the_highest_reason_number() {
        let highest = Reason::ALL.iter().map(|r| *r as usize).max().unwrap_or(0);
        assert_eq!(Reason::COUNT, highest + 1);
        for number in 0..=u8::MAX {
            match Reason::try_from(number) {
                Ok(reason) => {
                    assert_eq!(reason as u8, number);
                    assert!(Reason::ALL.contains(&reason));
                }
                Err(n) => {
                    assert_eq!(n, number);
                    assert!(!Reason::ALL.iter().any(|r| *r as u8 == number));
                }
            }
        }
        for &reason in Reason::ALL {
            assert!((reason as usize) < Reason::COUNT);
            assert!(verdict_index(Action::Drop, reason) < VERDICT_SLOTS);
        }
        assert!(Reason::OffSchedule.is_violation());
        assert!(Reason::SpoofedSource.is_violation());
    }
}
