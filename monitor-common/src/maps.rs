//! Keys and values of the maps the XDP program shares with the controller.
//!
//! All `#[repr(C)]`, `Copy`, with explicit padding and integer flags. Field order and
//! sizes are the pinned-map layout: [`LAYOUT_VERSION`] changes whenever they do.

use crate::{FrameClass, VERDICTS_ENTRIES, parse::Addr};

/// Bumped whenever a map's key or value layout, or a map's size, changes. Stored in
/// `CONFIG` so that a controller can refuse pinned maps of another layout.
pub const LAYOUT_VERSION: u32 = 18;

/// BPF map types the datapath uses, by their kernel number.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MapKind {
    Hash = 1,
    Array = 2,
    PerCpuArray = 6,
    LruHash = 9,
    LpmTrie = 11,
    RingBuf = 27,
}

impl MapKind {
    pub const fn name(self) -> &'static str {
        match self {
            MapKind::Hash => "hash",
            MapKind::Array => "array",
            MapKind::PerCpuArray => "percpu_array",
            MapKind::LruHash => "lru_hash",
            MapKind::LpmTrie => "lpm_trie",
            MapKind::RingBuf => "ringbuf",
        }
    }

    /// The kind with kernel number `raw`.
    pub const fn from_raw(raw: u32) -> Option<MapKind> {
        Some(match raw {
            1 => MapKind::Hash,
            2 => MapKind::Array,
            6 => MapKind::PerCpuArray,
            9 => MapKind::LruHash,
            11 => MapKind::LpmTrie,
            27 => MapKind::RingBuf,
            _ => return None,
        })
    }

    /// Whether every CPU has its own copy of each value.
    pub const fn per_cpu(self) -> bool {
        matches!(self, MapKind::PerCpuArray)
    }
}

/// `BPF_F_NO_PREALLOC`: entries are allocated when inserted (hash maps, tries).
pub const MAP_NO_PREALLOC: u32 = 1 << 0;
/// `BPF_F_MMAPABLE`: an array the controller reads through a shared mapping.
pub const MAP_MMAPABLE: u32 = 1 << 10;

/// One map of the datapath: everything the XDP program declares it with, the controller
/// opens and checks it by, and its kernel memory is computed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapDef {
    /// The name in the object, and of its pin.
    pub name: &'static str,
    pub kind: MapKind,
    /// Key and value sizes as the kernel sees them (an LPM trie's key includes its prefix
    /// length; a ring buffer has neither).
    pub key_size: u32,
    pub value_size: u32,
    /// Entries, or a ring buffer's size in bytes.
    pub max_entries: u32,
    /// `MAP_*` flags.
    pub flags: u32,
    /// Pinned beside the programs and adopted by the next controller; the others are the
    /// program's scratch space and caches, made fresh with each load.
    pub pinned: bool,
    /// What it holds, for the memory table.
    pub what: &'static str,
}

const fn def<K, V>(
    name: &'static str,
    kind: MapKind,
    max_entries: u32,
    flags: u32,
    pinned: bool,
    what: &'static str,
) -> MapDef {
    MapDef {
        name,
        kind,
        key_size: core::mem::size_of::<K>() as u32,
        value_size: core::mem::size_of::<V>() as u32,
        max_entries,
        flags,
        pinned,
        what,
    }
}

/// The datapath's maps: the one list the XDP program's statics are checked against at
/// compile time (`monitor-ebpf/src/maps.rs`), the controller pins, opens and checks
/// pinned maps by (`names`, `monitor::datapath::expected_layout`), and the benchmark
/// computes kernel memory from ([`crate::memory`]).
pub mod defs {
    use super::*;
    use crate::{VERDICT_SLOTS, judge::Work, parse::ParsedFrame};

    pub const CONFIG: MapDef = def::<u32, Config>(
        "CONFIG",
        MapKind::Array,
        1,
        0,
        true,
        "mode, flags, policy generation and cache epoch",
    );
    pub const DEVICES: MapDef = def::<DeviceKey, DeviceEntry>(
        "DEVICES",
        MapKind::Hash,
        MAX_DEVICE_ADDRESSES,
        0,
        true,
        "enrolled addresses, both policy generations",
    );
    pub const DEVICE_STATS: MapDef = def::<u32, DeviceStats>(
        "DEVICE_STATS",
        MapKind::PerCpuArray,
        MAX_DEVICES,
        0,
        true,
        "per-device counters: every packet of a device, from any CPU",
    );
    pub const UNENROLLED_STATS: MapDef = def::<Addr, DeviceStats>(
        "UNENROLLED_STATS",
        MapKind::LruHash,
        MAX_UNENROLLED,
        0,
        true,
        "counters of addresses outside the inventory (talking to each other)",
    );
    pub const FLOWS: MapDef = def::<u32, FlowSet>(
        "FLOWS",
        MapKind::Array,
        MAX_FLOWS / FLOW_WAYS,
        MAP_MMAPABLE,
        true,
        "enrolled devices' flows (set-associative)",
    );
    pub const UNENROLLED_FLOWS: MapDef = def::<u32, FlowSet>(
        "UNENROLLED_FLOWS",
        MapKind::Array,
        MAX_UNENROLLED_FLOWS / FLOW_WAYS,
        MAP_MMAPABLE,
        true,
        "flows between unenrolled addresses, and devices' violating flows",
    );
    pub const SERVICE_FILTERS: MapDef = def::<u32, ServiceFilter>(
        "SERVICE_FILTERS",
        MapKind::Array,
        SERVICE_FILTERS_ENTRIES,
        MAP_MMAPABLE,
        true,
        "per device address: the services its baseline may hold (a scan skips the baseline)",
    );
    pub const ENROLLED_ADDRS: MapDef = def::<u32, u64>(
        "ENROLLED_ADDRS",
        MapKind::Array,
        ENROLLED_ADDRS_WORDS,
        MAP_MMAPABLE,
        true,
        "a bit per enrolled address (by hash): a clear bit skips the DEVICES lookup",
    );
    pub const REQUEST_FILTER: MapDef = def::<u32, u64>(
        "REQUEST_FILTER",
        MapKind::Array,
        REQUEST_FILTER_WORDS * REQUEST_FILTER_GENERATIONS,
        MAP_MMAPABLE,
        true,
        "a bit per request remembered lately (by hash): a clear bit skips the REQUESTS lookup",
    );
    pub const BASELINE: MapDef = def::<FlowKey, BaselineEntry>(
        "BASELINE",
        MapKind::Hash,
        MAX_BASELINE,
        MAP_NO_PREALLOC,
        true,
        "learned and imported flows (allocated as they are added)",
    );
    pub const CONNTRACK: MapDef = def::<ConnKey, ConnEntry>(
        "CONNTRACK",
        MapKind::LruHash,
        MAX_CONNTRACK,
        0,
        true,
        "server side of TCP connections",
    );
    pub const FRAGMENTS: MapDef = def::<FragmentKey, FragmentEntry>(
        "FRAGMENTS",
        MapKind::LruHash,
        MAX_FRAGMENTS,
        0,
        true,
        "first fragments' verdicts",
    );
    pub const FRAME_COUNTS: MapDef = def::<u32, FrameCounts>(
        "FRAME_COUNTS",
        MapKind::PerCpuArray,
        1,
        0,
        true,
        "frames by class, by action and reason, and by path (cache or judge), per CPU",
    );
    pub const RULES: MapDef = MapDef {
        key_size: 4 + core::mem::size_of::<RuleKeyData>() as u32,
        ..def::<(), RuleSet>(
            "RULES",
            MapKind::LpmTrie,
            MAX_RULE_SETS,
            MAP_NO_PREALLOC,
            true,
            "policy rules by device and peer prefix, both generations",
        )
    };
    pub const EVENTS: MapDef = MapDef {
        key_size: 0,
        value_size: 0,
        ..def::<(), ()>(
            "EVENTS",
            MapKind::RingBuf,
            EVENTS_BYTES,
            0,
            true,
            "violation events to the controller (bytes)",
        )
    };
    pub const EVENT_RATE: MapDef = def::<u32, EventRate>(
        "EVENT_RATE",
        MapKind::PerCpuArray,
        MAX_DEVICES + 1,
        0,
        true,
        "event rate limit and new-flow budget per device and CPU",
    );
    pub const EVENT_STATS: MapDef = def::<u32, u64>(
        "EVENT_STATS",
        MapKind::PerCpuArray,
        EVENT_STATS_SLOTS,
        0,
        true,
        "events sent, suppressed, lost",
    );
    pub const IFACE_SLOTS: MapDef = def::<u32, u32>(
        "IFACE_SLOTS",
        MapKind::Array,
        MAX_IFINDEX,
        0,
        true,
        "interfaces whose verdicts are counted apart",
    );
    pub const IFACE_VERDICTS: MapDef = def::<u32, Counter>(
        "IFACE_VERDICTS",
        MapKind::PerCpuArray,
        MAX_IFACES * VERDICT_SLOTS,
        0,
        true,
        "verdicts per attached interface",
    );
    pub const DEVICE_REASONS: MapDef = def::<u32, u64>(
        "DEVICE_REASONS",
        MapKind::PerCpuArray,
        MAX_DEVICES * DEVICE_REASON_SLOTS,
        0,
        true,
        "packets per device by its own verdict's reason",
    );
    pub const REQUESTS: MapDef = def::<RequestKey, RequestEntry>(
        "REQUESTS",
        MapKind::LruHash,
        MAX_REQUESTS,
        0,
        true,
        "allowed UDP/SCTP requests, for their replies",
    );
    pub const MAC_BINDINGS: MapDef = def::<MacBindingKey, MacBinding>(
        "MAC_BINDINGS",
        MapKind::Hash,
        MAX_MAC_BINDINGS,
        MAP_NO_PREALLOC,
        true,
        "MACs each MAC-bound address may be sent from on a ward leg",
    );
    pub const STATIONS: MapDef = def::<StationKey, StationStats>(
        "STATIONS",
        MapKind::LruHash,
        MAX_STATIONS,
        0,
        true,
        "source MACs and addresses on ward legs outside the inventory (discovery)",
    );
    pub const LEARNED_MACS: MapDef = def::<u32, LearnedMacs>(
        "LEARNED_MACS",
        MapKind::Array,
        MAX_DEVICES,
        0,
        true,
        "source MACs each device sent from on a ward leg while it learned",
    );
    pub const DECISIONS: MapDef = def::<u32, Decision>(
        "DECISIONS",
        MapKind::PerCpuArray,
        DECISION_SLOTS,
        0,
        true,
        "decision cache, per CPU (holds its hits' flow packets until charged)",
    );
    pub const PROBE_MEMO: MapDef = def::<u32, crate::judge::ProbeMemo>(
        "PROBE_MEMO",
        MapKind::PerCpuArray,
        1,
        0,
        true,
        "a scan's device as its last probe judged it, per CPU (holds its probes' counts until charged)",
    );
    pub const DECISION_TAGS: MapDef = def::<u32, DecisionTags>(
        "DECISION_TAGS",
        MapKind::PerCpuArray,
        DECISION_SLOTS / DECISION_TAGS_PER_ENTRY,
        0,
        false,
        "a tag per decision cache slot, per CPU: a new flow's miss reads no entry",
    );
    pub const DEVICE_MEMO: MapDef = def::<u32, DeviceMemo>(
        "DEVICE_MEMO",
        MapKind::PerCpuArray,
        DEVICE_MEMO_SLOTS,
        0,
        false,
        "device entries looked up lately, per CPU",
    );
    pub const SCRATCH: MapDef = def::<u32, ParsedFrame>(
        "SCRATCH",
        MapKind::PerCpuArray,
        1,
        0,
        false,
        "the frame being judged",
    );
    pub const WORK: MapDef = def::<u32, Work>(
        "WORK",
        MapKind::PerCpuArray,
        1,
        0,
        false,
        "the judge's working state",
    );
    pub const SPOOFED_FLOWS: MapDef = def::<FlowKey, u64>(
        "SPOOFED_FLOWS",
        MapKind::LruHash,
        MAX_SPOOFED_FLOWS,
        0,
        false,
        "flows an impostor used lately: their replies teach no baseline",
    );

    /// Every map of the object: the pinned ones first, in the order they are pinned.
    pub const ALL: [MapDef; 31] = [
        CONFIG,
        DEVICES,
        DEVICE_STATS,
        UNENROLLED_STATS,
        FLOWS,
        UNENROLLED_FLOWS,
        BASELINE,
        SERVICE_FILTERS,
        ENROLLED_ADDRS,
        CONNTRACK,
        FRAGMENTS,
        FRAME_COUNTS,
        RULES,
        EVENTS,
        EVENT_RATE,
        EVENT_STATS,
        IFACE_SLOTS,
        IFACE_VERDICTS,
        DEVICE_REASONS,
        REQUESTS,
        REQUEST_FILTER,
        MAC_BINDINGS,
        STATIONS,
        LEARNED_MACS,
        DECISIONS,
        PROBE_MEMO,
        DECISION_TAGS,
        DEVICE_MEMO,
        SCRATCH,
        WORK,
        SPOOFED_FLOWS,
    ];

    /// How many of [`ALL`] are pinned (they come first).
    pub const PINNED: usize = {
        let mut n = 0;
        while n < ALL.len() && ALL[n].pinned {
            n += 1;
        }
        let mut i = n;
        while i < ALL.len() {
            assert!(!ALL[i].pinned, "pinned maps come first in defs::ALL");
            i += 1;
        }
        n
    };

    /// The definition named `name`.
    pub fn by_name(name: &str) -> Option<&'static MapDef> {
        ALL.iter().find(|d| d.name.as_bytes() == name.as_bytes())
    }

    const fn same(a: &str, b: &str) -> bool {
        let (a, b) = (a.as_bytes(), b.as_bytes());
        if a.len() != b.len() {
            return false;
        }
        let mut i = 0;
        while i < a.len() {
            if a[i] != b[i] {
                return false;
            }
            i += 1;
        }
        true
    }

    /// Whether `name` is the name of `def` (for compile-time checks).
    pub const fn named(def: &MapDef, name: &str) -> bool {
        same(def.name, name)
    }

    const _: () = {
        let mut i = 0;
        while i < ALL.len() {
            let mut j = i + 1;
            while j < ALL.len() {
                assert!(!same(ALL[i].name, ALL[j].name), "two maps with one name");
                j += 1;
            }
            i += 1;
        }
    };
}

/// Map names, as the XDP object declares them and as they are pinned (from [`defs`]).
pub mod names {
    use super::defs;

    pub const CONFIG: &str = defs::CONFIG.name;
    pub const DEVICES: &str = defs::DEVICES.name;
    pub const DEVICE_STATS: &str = defs::DEVICE_STATS.name;
    pub const UNENROLLED_STATS: &str = defs::UNENROLLED_STATS.name;
    pub const FLOWS: &str = defs::FLOWS.name;
    pub const UNENROLLED_FLOWS: &str = defs::UNENROLLED_FLOWS.name;
    pub const BASELINE: &str = defs::BASELINE.name;
    pub const SERVICE_FILTERS: &str = defs::SERVICE_FILTERS.name;
    pub const ENROLLED_ADDRS: &str = defs::ENROLLED_ADDRS.name;
    pub const CONNTRACK: &str = defs::CONNTRACK.name;
    pub const FRAGMENTS: &str = defs::FRAGMENTS.name;
    pub const FRAME_COUNTS: &str = defs::FRAME_COUNTS.name;
    pub const RULES: &str = defs::RULES.name;
    pub const EVENTS: &str = defs::EVENTS.name;
    pub const EVENT_RATE: &str = defs::EVENT_RATE.name;
    pub const EVENT_STATS: &str = defs::EVENT_STATS.name;
    pub const IFACE_SLOTS: &str = defs::IFACE_SLOTS.name;
    pub const IFACE_VERDICTS: &str = defs::IFACE_VERDICTS.name;
    pub const DEVICE_REASONS: &str = defs::DEVICE_REASONS.name;
    pub const REQUESTS: &str = defs::REQUESTS.name;
    pub const REQUEST_FILTER: &str = defs::REQUEST_FILTER.name;
    pub const MAC_BINDINGS: &str = defs::MAC_BINDINGS.name;
    pub const STATIONS: &str = defs::STATIONS.name;
    pub const LEARNED_MACS: &str = defs::LEARNED_MACS.name;
    pub const DECISIONS: &str = defs::DECISIONS.name;
    pub const PROBE_MEMO: &str = defs::PROBE_MEMO.name;

    /// Every pinned map, in a fixed order (pinning, adoption, layout checks).
    pub const ALL: [&str; defs::PINNED] = {
        let mut out = [""; defs::PINNED];
        let mut i = 0;
        while i < defs::PINNED {
            out[i] = defs::ALL[i].name;
            i += 1;
        }
        out
    };
}

/// Names of the XDP programs in the object.
pub mod programs {
    /// The monitor and enforcer.
    pub const MONITOR: &str = "monitor_xdp";
    /// Parses and counts frame classes only: the benchmark baseline.
    pub const PARSE_ONLY: &str = "parse_only_xdp";
    /// Returns XDP_TX for every frame: the benchmark's live-frames traffic generator.
    pub const TX: &str = "tx_xdp";
    /// Drops every frame: the benchmark's floor.
    pub const DROP: &str = "drop_xdp";
    /// The monitor on a frame whose UDP destination it counts up first, so that each
    /// BPF_PROG_TEST_RUN repetition is a new flow (benchmark only).
    pub const SCAN: &str = "scan_xdp";
    /// As TX, each frame to a random destination port and address (benchmark scan).
    pub const TX_SCAN: &str = "tx_scan_xdp";
    /// As TX, each frame from a random source address (benchmark flood).
    pub const TX_FLOOD: &str = "tx_flood_xdp";
    /// Loaded with every datapath; the others only when the benchmark asks for them.
    pub const ALWAYS: [&str; 3] = [MONITOR, PARSE_ONLY, TX];
}

/// Enrolled devices (inventory size).
pub const MAX_DEVICES: u32 = 16_384;
/// Addresses enrolled at once, in both policy generations (a device may have several).
pub const MAX_DEVICE_ADDRESSES: u32 = 2 * 32_768;
/// Rule sets (device × peer prefix) in both policy generations.
pub const MAX_RULE_SETS: u32 = 2 * 32_768;
/// Rules that can apply to one device toward one peer prefix.
pub const MAX_RULES_PER_SET: usize = 16;
/// Size of the violation event ring buffer.
pub const EVENTS_BYTES: u32 = 256 * 1024;
/// Violation events per device per CPU per second; the rest are counted as suppressed.
pub const EVENTS_PER_DEVICE_PER_SECOND: u32 = 20;
/// Violations of a device judged in full (new violating flows: a repeated one is decided
/// from the decision cache) per CPU per second that get a flow entry and a cached
/// decision. Beyond it, in the rest of the second, a violation (a scan's probe, a frame of
/// a spoofed flood) is still decided, dropped, counted per device and reason and reported
/// within the event limit, but probes no flow table and caches nothing: a scan costs one
/// judgement per probe and cannot churn the flow tables or the decision cache.
pub const VIOLATING_FLOWS_PER_DEVICE_PER_SECOND: u32 = 32;
/// Interface indexes IFACE_SLOTS covers (ifindex below this).
pub const MAX_IFINDEX: u32 = 4096;
/// Interfaces whose verdicts are counted apart (`IFACE_VERDICTS`).
pub const MAX_IFACES: u32 = 16;
/// Reason counters per device in `DEVICE_REASONS`: one for each reason a device's own
/// verdict can have ([`DEVICE_REASON_ORDER`]) and one that is never counted
/// (where every other reason points), so that a reader may ask for any reason.
pub const DEVICE_REASON_SLOTS: u32 = 13;

/// The reasons a device's own verdict can have, in the order of their `DEVICE_REASONS`
/// slots (`SpoofedSource`: frames that used the device's address from another MAC;
/// `OffSchedule`: baseline flows at an hour their schedule never saw). A per-CPU counter
/// for each of the 32 reason numbers cost 268 MB on 64 CPUs; these are the ones the judge gives an enrolled side (see `judge`).
pub const DEVICE_REASON_ORDER: [crate::Reason; 12] = [
    crate::Reason::Learned,
    crate::Reason::InBaseline,
    crate::Reason::NotInBaseline,
    crate::Reason::LifeCriticalSpared,
    crate::Reason::FragmentUnmatched,
    crate::Reason::BaselineFull,
    crate::Reason::PolicyAllow,
    crate::Reason::PolicyDeny,
    crate::Reason::BreakGlass,
    crate::Reason::NeighborDiscovery,
    crate::Reason::SpoofedSource,
    crate::Reason::OffSchedule,
];

/// The slot of `DEVICE_REASONS` no reason is counted in.
pub const DEVICE_REASON_UNCOUNTED: u32 = DEVICE_REASON_SLOTS - 1;

/// Each reason number's counter within a device's block of `DEVICE_REASONS`.
const DEVICE_REASON_SLOT_OF: [u8; 32] = {
    let mut table = [DEVICE_REASON_UNCOUNTED as u8; 32];
    let mut i = 0;
    while i < DEVICE_REASON_ORDER.len() {
        table[DEVICE_REASON_ORDER[i] as usize % 32] = i as u8;
        i += 1;
    }
    table
};

/// A reason's counter within a device's block of `DEVICE_REASONS`.
#[inline(always)]
pub const fn device_reason_slot(reason: u8) -> u32 {
    DEVICE_REASON_SLOT_OF[reason as usize % 32] as u32
}

/// Index of a device's reason counter in `DEVICE_REASONS`.
#[inline(always)]
pub const fn device_reason_index(slot: u32, reason: u8) -> u32 {
    slot * DEVICE_REASON_SLOTS + device_reason_slot(reason)
}

const _: () = assert!(DEVICE_REASON_ORDER.len() as u32 <= DEVICE_REASON_UNCOUNTED);
// Reason numbers index a 32-entry table.
const _: () = assert!(crate::Reason::COUNT <= 32);

/// Slot of EVENT_RATE shared by addresses outside the inventory.
pub const UNENROLLED_RATE_SLOT: u32 = MAX_DEVICES;
/// Addresses outside the inventory tracked at once (least recently seen evicted).
pub const MAX_UNENROLLED: u32 = 65_536;
/// Flows of enrolled devices tracked at once (least recently seen evicted).
pub const MAX_FLOWS: u32 = 262_144;
/// Flows between unenrolled addresses, and enrolled devices' new flows that violate the
/// policy, tracked at once in their own table: a flood of spoofed sources or a scan
/// churns this table, never an enrolled device's legitimate flows.
pub const MAX_UNENROLLED_FLOWS: u32 = 65_536;
/// Baseline entries (allocated on use, not up front).
pub const MAX_BASELINE: u32 = 1_048_576;
/// TCP connections whose server side is remembered.
pub const MAX_CONNTRACK: u32 = 131_072;
/// UDP and SCTP requests remembered at once (least recently seen evicted): with the
/// 60-second [`crate::flow::REQUEST_TIMEOUT_NS`] about 2,000 new allowed client ports a
/// second before a remembered request is evicted early.
pub const MAX_REQUESTS: u32 = 131_072;
/// IP packets whose first fragment's verdict is remembered.
pub const MAX_FRAGMENTS: u32 = 8_192;

/// Flags of [`Config::flags`].
pub const CONFIG_UNENROLLED_DROP: u8 = 1 << 0;
/// Judge unenrolled addresses like devices in the global mode: they learn a baseline and
/// are enforced against it (replay of a capture before any inventory exists).
pub const CONFIG_JUDGE_UNENROLLED: u8 = 1 << 1;
/// The frame being run was cut by a capture's snapshot length (replay sets it for such
/// frames only, never a live datapath): the parser lets IP lengths run past the captured
/// bytes, and since what was cut could have changed the verdict, the frame's verdict is
/// counted apart (`FrameCounts::verdicts` from [`crate::CUT_VERDICTS`]) and charges no drop, would-drop
/// or event to anyone. It is still counted and learned from.
pub const CONFIG_CAPTURE_MAY_BE_CUT: u8 = 1 << 2;
/// Every violation takes a flow entry: no per-second budget (replay sets it, never a live
/// datapath). A capture's frames run far faster than they were captured, so a budget per
/// second of the replay would keep some violating flows out of the flow tables at random,
/// by how fast the machine ran them, and the report could not show what the capture holds.
pub const CONFIG_EVERY_FLOW: u8 = 1 << 3;

/// Global settings, the single entry of `CONFIG`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// [`crate::Mode`] as u8.
    pub mode: u8,
    /// `CONFIG_*` flags.
    pub flags: u8,
    /// The site's local hour of the week (`crate::schedule`, 0 = Monday 00:00), written
    /// by the controller every minute; [`crate::schedule::HOUR_UNKNOWN`] until one does.
    /// Read with the rest of CONFIG, so no packet reads a clock for it.
    pub hour_of_week: u8,
    /// Hours either side of `hour_of_week` that count as on schedule (the policy's
    /// `schedule-tolerance`).
    pub schedule_tolerance: u8,
    /// Policy generation, bumped by the controller on every policy load. Its low bit
    /// selects which copy of the policy maps (`DEVICES`, `RULES`) packets read: a reload
    /// writes the other copy and then flips this, so every packet sees the whole old or
    /// the whole new policy.
    pub generation: u32,
    /// [`LAYOUT_VERSION`] of the controller that wrote it.
    pub layout_version: u32,
    /// Bumped by the controller whenever it changes a device entry or the policy, or
    /// removes baseline entries: what flow entries cache (their devices' entries, being
    /// in the baseline) under an older epoch is looked up again.
    pub cache_epoch: u32,
    /// PID of the controller (`monitor run`) that owns this datapath, 0 when none runs.
    /// Informational: the single-instance guarantee is the lock file beside the pins.
    pub owner_pid: u32,
    /// The learning window in force: the number of the last operator `monitor mode learn`
    /// command (0: the first start). Every baseline entry the datapath learns records it
    /// ([`BaselineEntry::window`]), so `baseline diff` can say what a window added.
    pub learn_window: u32,
    /// Seed of the hashes that place flows in the flow tables and decisions in the
    /// decision cache ([`crate::flowtable`]), random for each datapath: a sender cannot
    /// choose addresses whose flows land on another's.
    pub hash_seed: u32,
    pub _pad2: u32,
}

/// Value of [`DeviceEntry::mode`] when the device follows the global mode.
pub const MODE_INHERIT: u8 = 0xff;
/// The device is life-critical: never enforced unless [`DEVICE_ENFORCE_CONFIRMED`].
pub const DEVICE_LIFE_CRITICAL: u8 = 1 << 0;
/// The device's own policy entry confirms enforcement although it is life-critical.
pub const DEVICE_ENFORCE_CONFIRMED: u8 = 1 << 1;
/// Policy rules apply to the device: look up `RULES`.
pub const DEVICE_HAS_RULES: u8 = 1 << 2;
/// `schedule: enforce`: a baseline flow off its learned schedule is dropped where the
/// device is enforced (else it is a would-drop). High bits, apart from flags other
/// changes add.
pub const DEVICE_SCHEDULE_ENFORCE: u8 = 1 << 6;
/// `schedule: ignore`: the device's schedule is not checked (it runs round the clock).
pub const DEVICE_SCHEDULE_IGNORE: u8 = 1 << 7;
/// The device's addresses are bound to its MACs: a frame from a ward leg with one of them
/// must come from a MAC `MAC_BINDINGS` holds for that address.
pub const DEVICE_MAC_BOUND: u8 = 1 << 3;

/// Bit of an `IFACE_SLOTS` value: the interface is a ward leg, where devices are attached
/// and source MACs say who sent a frame. The other bits are 1 + the interface's
/// `IFACE_VERDICTS` block (0: not counted apart).
pub const IFACE_WARD: u32 = 1 << 31;

/// Key of `MAC_BINDINGS`: an enrolled address and a MAC it may be sent from.
#[repr(C, align(4))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacBindingKey {
    pub addr: Addr,
    pub mac: [u8; 6],
    pub _pad: u16,
}

/// Value of `MAC_BINDINGS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MacBinding {
    /// 0: the inventory's (lasting); else the `CLOCK_MONOTONIC` time an operator's timed
    /// `monitor allow --mac` ends (it expires in the datapath, as break-glass does).
    pub until_ns: u64,
}

/// Address–MAC bindings at once.
pub const MAX_MAC_BINDINGS: u32 = 32_768;
/// A source MAC seen on a ward leg with a source address that is no enrolled device's (or
/// an impostor's MAC with one that is): key of `STATIONS`, the discovery table.
#[repr(C, align(4))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StationKey {
    pub mac: [u8; 6],
    pub _pad: u16,
    pub addr: Addr,
}

/// What a station sent: value of `STATIONS`, shared by CPUs (added atomically).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StationStats {
    /// `CLOCK_MONOTONIC` (coarse) ns.
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
    pub packets: u64,
    pub bytes: u64,
    /// The interface it was last seen on.
    pub ifindex: u32,
    pub _pad: u32,
}

/// MACs `LEARNED_MACS` holds per device.
pub const LEARNED_MACS_HELD: usize = 4;

/// The source MACs an enrolled device sent from on a ward leg while it learned: value of
/// `LEARNED_MACS`, by the device's slot. The controller binds a device the inventory gives
/// no `mac:` to them when it leaves learn mode. A per-device array, not STATIONS: a flood
/// of random MACs cannot evict what a device's learning saw.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LearnedMacs {
    /// [`source_id`]s of the MACs, in the order first seen; 0: free.
    pub ids: [u64; LEARNED_MACS_HELD],
    /// Judged frames from further MACs, beyond those held.
    pub more: u64,
}

impl LearnedMacs {
    /// The MACs held, in the order first seen.
    pub fn macs(&self) -> impl Iterator<Item = [u8; 6]> + '_ {
        self.ids
            .iter()
            .filter(|id| **id != 0)
            .map(|id| source_mac(*id))
    }
}

/// (MAC, address) pairs the discovery table holds at once, least recently seen evicted: a
/// flood of random MACs churns this table only.
pub const MAX_STATIONS: u32 = 8_192;

/// Flows of spoofed frames remembered at once (`SPOOFED_FLOWS`, least recently used
/// evicted).
pub const MAX_SPOOFED_FLOWS: u32 = 8_192;
/// How long a spoofed frame's flow keeps its replies from being learned: a spoofed flow
/// is judged (and remembered again) with every frame, never cached.
pub const SPOOF_MEMORY_NS: u64 = 60_000_000_000;

/// What a decision made on a ward leg is tied to (`Decision::source_id`): the frame's
/// source MAC and a ward marker; 0 on any other interface, where MACs are not judged.
#[inline(always)]
pub const fn source_id(mac: &[u8; 6]) -> u64 {
    u64::from_le_bytes([mac[0], mac[1], mac[2], mac[3], mac[4], mac[5], 1, 0])
}

/// The MAC of a [`source_id`].
#[inline(always)]
pub const fn source_mac(id: u64) -> [u8; 6] {
    let b = id.to_le_bytes();
    [b[0], b[1], b[2], b[3], b[4], b[5]]
}

/// The policy generation (0 or 1) a [`Config`] makes packets read.
#[inline(always)]
pub const fn active_generation(config: &Config) -> u8 {
    (config.generation & 1) as u8
}

/// Key of `DEVICES`: an address in one policy generation.
#[repr(C, align(4))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceKey {
    pub addr: Addr,
    /// 0 or 1, see [`Config::generation`].
    pub generation: u8,
    pub _pad1: u8,
    pub _pad2: u16,
}

/// An enrolled device: value of `DEVICES`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceEntry {
    /// Break-glass: until this `CLOCK_MONOTONIC` time enforcement is lifted for the device
    /// (it expires in the datapath, even without the controller); 0 when not in force.
    pub break_glass_until_ns: u64,
    /// Index into `DEVICE_STATS`; the controller keeps it stable per device name.
    pub slot: u32,
    /// [`crate::Mode`] as u8, or [`MODE_INHERIT`].
    pub mode: u8,
    /// `DEVICE_*` flags.
    pub flags: u8,
    pub _pad: u16,
}

impl DeviceEntry {
    pub const fn new(slot: u32, mode: u8, flags: u8) -> DeviceEntry {
        DeviceEntry {
            break_glass_until_ns: 0,
            slot,
            mode,
            flags,
            _pad: 0,
        }
    }
}

/// Entries of the per-CPU `DEVICE_MEMO` (a power of two).
pub const DEVICE_MEMO_SLOTS: u32 = 256;

/// A DEVICES entry this CPU read lately (per-CPU `DEVICE_MEMO`, by a hash of the
/// address): it stands while the CONFIG epoch and policy generation it was read under do,
/// and the controller moves the epoch with every DEVICES write. A device's frames that the
/// decision cache cannot decide (a scan's probes, each a new flow) find its entry here
/// instead of in the hash table.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceMemo {
    pub entry: DeviceEntry,
    pub addr: Addr,
    /// `Config::cache_epoch + 1` when read (0: empty).
    pub epoch: u32,
    pub generation: u8,
    pub _pad1: u8,
    pub _pad2: u16,
}

// The address lies at an 8-byte boundary of the memo, which is aligned to 8 (`addr_halves`).
const _: () = assert!(
    core::mem::offset_of!(DeviceMemo, addr) % 8 == 0 && core::mem::align_of::<DeviceMemo>() >= 8
);

impl DeviceMemo {
    /// The memo's address as two u64 words, in two loads (see
    /// [`crate::flowtable::aligned_addr_halves`]).
    #[inline(always)]
    pub fn addr_halves(&self) -> (u64, u64) {
        // SAFETY: at an 8-byte boundary (asserted above) of a struct aligned to 8.
        unsafe { crate::flowtable::aligned_addr_halves(&self.addr) }
    }
}

/// Values of [`Rule::action`].
pub const RULE_ALLOW: u8 = 1;
pub const RULE_DENY: u8 = 2;
/// [`Rule::protocol`] and [`Rule::direction`] value that matches any.
pub const RULE_ANY: u8 = 0;

/// One compiled allow or deny rule.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rule {
    /// Service port range, inclusive (0..=65535 for protocols without ports).
    pub port_low: u16,
    pub port_high: u16,
    /// IP protocol, or [`RULE_ANY`].
    pub protocol: u8,
    /// [`RULE_ANY`], or `Direction::Outbound`/`Inbound` as u8 seen from the device. A
    /// rule matches a flow when this is any or equals the flow's direction, so symmetric
    /// flows (NTP 123↔123, GRE) match only "any direction" rules.
    pub direction: u8,
    /// [`RULE_ALLOW`] or [`RULE_DENY`].
    pub action: u8,
    pub _pad: u8,
    /// The rule's number in the compiled policy (for events and `policy explain`).
    pub rule_id: u32,
}

/// Key data of `RULES` (an LPM trie): generation, device address, peer address. The
/// prefix covers the generation and device fully (8 + 128 bits) and the peer's prefix.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleKeyData {
    pub generation: u8,
    pub device: Addr,
    pub peer: Addr,
}

/// Bits of a [`RuleKeyData`] prefix before the peer's.
pub const RULE_PREFIX_BASE: u32 = 8 + 128;

/// The rules that apply to a device toward the peers of one prefix: every rule whose
/// peer prefix contains it (the compiler folds shorter prefixes into longer ones, since
/// an LPM lookup returns only the longest match).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleSet {
    pub count: u32,
    pub _pad: u32,
    pub rules: [Rule; MAX_RULES_PER_SET],
}

/// A violation (dropped or would-drop), sent to the controller through `EVENTS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    pub timestamp_ns: u64,
    pub device: Addr,
    pub peer: Addr,
    /// The device's DEVICE_STATS slot, or u32::MAX when unenrolled.
    pub slot: u32,
    /// Events of this device dropped by the rate limit since its previous event.
    pub suppressed: u32,
    pub service_port: u16,
    pub protocol: u8,
    /// [`Direction`] as u8, seen from the device.
    pub direction: u8,
    /// [`crate::Action`] and [`crate::Reason`] as u8.
    pub action: u8,
    pub reason: u8,
    pub _pad: u16,
    /// The frame's source MAC when it came from a ward leg (all zero otherwise): for a
    /// spoofed source, the impostor's.
    pub source_mac: [u8; 6],
    pub _pad2: u16,
}

/// Per-device, per-CPU rate limits of one-second windows: value of `EVENT_RATE` by slot.
/// Events sent ([`EVENTS_PER_DEVICE_PER_SECOND`]) and violations given a flow entry
/// ([`VIOLATING_FLOWS_PER_DEVICE_PER_SECOND`]) in the window that began at
/// `window_start_ns` (see [`crate::judge::roll_window`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventRate {
    pub window_start_ns: u64,
    pub sent_in_window: u32,
    pub suppressed: u32,
    /// Violations judged in full that took a flow entry in this window.
    pub flows_in_window: u32,
    pub _pad: u32,
}

/// Indexes of `EVENT_STATS` (per-CPU u64 counters).
pub const EVENTS_LOST: u32 = 0;
pub const EVENTS_SUPPRESSED: u32 = 1;
pub const EVENTS_SENT: u32 = 2;
pub const EVENT_STATS_SLOTS: u32 = 3;

/// Per-device counters, per CPU (`DEVICE_STATS` by slot, `UNENROLLED_STATS` by address).
/// Times are `CLOCK_MONOTONIC` nanoseconds (coarse).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceStats {
    pub packets_sent: u64,
    pub bytes_sent: u64,
    pub packets_received: u64,
    pub bytes_received: u64,
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
    /// Packets dropped because of this device's policy.
    pub dropped_packets: u64,
    /// Packets that enforcement would have dropped (audit mode, life-critical spared).
    pub would_drop_packets: u64,
    /// Flows added to this device's baseline.
    pub learned_flows: u64,
    /// Packets passed because break-glass lifted enforcement.
    pub break_glass_packets: u64,
}

impl DeviceStats {
    /// Adds another CPU's counters (times: earliest first seen, latest last seen).
    pub fn merge(&mut self, other: &DeviceStats) {
        self.packets_sent += other.packets_sent;
        self.bytes_sent += other.bytes_sent;
        self.packets_received += other.packets_received;
        self.bytes_received += other.bytes_received;
        self.first_seen_ns = match (self.first_seen_ns, other.first_seen_ns) {
            (0, t) | (t, 0) => t,
            (a, b) => a.min(b),
        };
        self.last_seen_ns = self.last_seen_ns.max(other.last_seen_ns);
        self.dropped_packets += other.dropped_packets;
        self.would_drop_packets += other.would_drop_packets;
        self.learned_flows += other.learned_flows;
        self.break_glass_packets += other.break_glass_packets;
    }
}

/// Who opened the conversation, seen from the device: [`FlowKey::direction`].
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// Both sides use the same port, or the protocol has none (NTP 123↔123, GRE, ESP).
    Symmetric = 0,
    /// The device is the client: it reaches the peer's service port.
    Outbound = 1,
    /// The peer is the client: it reaches the device's service port.
    Inbound = 2,
}

impl Direction {
    pub const fn name(self) -> &'static str {
        match self {
            Direction::Symmetric => "both",
            Direction::Outbound => "out",
            Direction::Inbound => "in",
        }
    }

    pub const fn reversed(self) -> Direction {
        match self {
            Direction::Symmetric => Direction::Symmetric,
            Direction::Outbound => Direction::Inbound,
            Direction::Inbound => Direction::Outbound,
        }
    }
}

impl TryFrom<u8> for Direction {
    type Error = u8;
    fn try_from(raw: u8) -> Result<Self, u8> {
        match raw {
            0 => Ok(Direction::Symmetric),
            1 => Ok(Direction::Outbound),
            2 => Ok(Direction::Inbound),
            other => Err(other),
        }
    }
}

/// One conversation of one device: the key of `BASELINE`, and of the flow tables' slots.
/// A request and its reply have the same key, so replies of allowed flows pass.
///
/// Aligned to 4 bytes (without padding: 36 is a multiple of 4), so that the XDP program
/// copies and compares its addresses a word at a time rather than byte by byte.
#[repr(C, align(4))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    pub device: Addr,
    pub peer: Addr,
    /// The server's port (TCP, UDP, SCTP), the request type (ICMP echo), else 0.
    pub service_port: u16,
    pub protocol: u8,
    /// [`Direction`] as u8.
    pub direction: u8,
}

/// Words of `ENROLLED_ADDRS`: 1,048,576 bits, about 1.6% of them set at the most
/// addresses an inventory may enroll ([`MAX_DEVICE_ADDRESSES`]).
pub const ENROLLED_ADDRS_WORDS: u32 = 16_384;

/// Words of each generation of `REQUEST_FILTER`: 1,048,576 bits, about 12% of them set
/// when all [`MAX_REQUESTS`] requests REQUESTS holds were made in one period.
pub const REQUEST_FILTER_WORDS: u32 = 16_384;
/// Generations of `REQUEST_FILTER`: the period's (marked and read), the last period's
/// (read), and the next one's (cleared by the controller meanwhile).
pub const REQUEST_FILTER_GENERATIONS: u32 = 3;
/// A `REQUEST_FILTER` period is `1 << REQUEST_FILTER_PERIOD_SHIFT` ns of the coarse
/// monotonic clock (68.7 s): no shorter than a request stays fresh, so a fresh request's
/// mark is in the period's generation or the last one's.
pub const REQUEST_FILTER_PERIOD_SHIFT: u32 = 36;
const _: () = assert!(1u64 << REQUEST_FILTER_PERIOD_SHIFT >= crate::flow::REQUEST_TIMEOUT_NS);

/// Entries of `SERVICE_FILTERS` (device addresses hash into them).
pub const SERVICE_FILTERS_ENTRIES: u32 = 16_384;
/// Bits of a [`ServiceFilter`].
pub const SERVICE_FILTER_BITS: u64 = 1024;

/// The services (protocol, service port, direction) a device's baseline may hold, one bit
/// each by hash (`flowtable::service_bit`): value of `SERVICE_FILTERS`, at the device
/// address's index (`flowtable::service_filter_index`). A bit is set, atomically, before
/// an entry with its service is added to the baseline (by the XDP program as it learns,
/// by the controller as it restores or imports) and never cleared, so a clear bit proves
/// the flow is not in the baseline: a scan's probes to new ports skip the baseline's
/// lookup (a random cache line of a 16 MB bucket array) instead of missing in it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServiceFilter {
    pub words: [u64; (SERVICE_FILTER_BITS / 64) as usize],
}

/// Counters of one flow (in a [`FlowSlot`] of `FLOWS` or `UNENROLLED_FLOWS`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowStats {
    /// Device to peer.
    pub packets_sent: u64,
    pub bytes_sent: u64,
    /// Peer to device.
    pub packets_received: u64,
    pub bytes_received: u64,
    pub last_seen_ns: u64,
    pub dropped_packets: u64,
    /// Packets its device's own policy would have dropped but did not (audit, spared,
    /// lifted by break-glass): moves exactly when the device's `would_drop_packets` does.
    pub would_drop_packets: u64,
}

impl FlowStats {
    pub fn merge(&mut self, other: &FlowStats) {
        self.packets_sent += other.packets_sent;
        self.bytes_sent += other.bytes_sent;
        self.packets_received += other.packets_received;
        self.bytes_received += other.bytes_received;
        self.last_seen_ns = self.last_seen_ns.max(other.last_seen_ns);
        self.dropped_packets += other.dropped_packets;
        self.would_drop_packets += other.would_drop_packets;
    }
}

/// Ways of a flow table's set: a flow lives in one of the `FLOW_WAYS` slots of the set
/// its key hashes to; a new flow takes an empty slot of the set or the least recently
/// judged one.
pub const FLOW_WAYS: u32 = 4;

/// One set of a flow table (`FLOWS`, `UNENROLLED_FLOWS`): arrays shared by all CPUs,
/// managed by the XDP program as set-associative tables (see [`crate::flowtable`]), so
/// that a flow's slot is found without a kernel hash lookup and its counters cost no
/// per-CPU copy (a per-CPU hash of 262,144 flows took 1.3 GB on 64 CPUs). The set's tags
/// and times share its first cache line: finding a flow, or a slot for a new one, reads
/// one line whatever the set holds.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowSet {
    /// [`crate::flowtable::tag`] of each slot's key, 0 while the slot is empty. Written
    /// last when a slot is taken: a reader that finds the tag of another key skips it.
    pub tags: [u64; FLOW_WAYS as usize],
    /// When each slot's flow was last judged in full (`CLOCK_MONOTONIC` ns, at least once
    /// a second per CPU while it has packets): a new flow takes the oldest.
    pub judged_ns: [u64; FLOW_WAYS as usize],
    pub slots: [FlowSlot; FLOW_WAYS as usize],
}

/// One flow of a [`FlowSet`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowSlot {
    pub key: FlowKey,
    pub _pad: u32,
    pub stats: FlowStats,
}

/// Values of [`BaselineEntry::origin`].
pub const ORIGIN_LEARNED: u8 = 1;
pub const ORIGIN_POLICY: u8 = 2;
pub const ORIGIN_IMPORTED: u8 = 3;

/// A flow the device is allowed: value of `BASELINE`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BaselineEntry {
    /// When it was learned (`CLOCK_MONOTONIC` ns), 0 for entries loaded from disk/policy.
    pub learned_ns: u64,
    /// `ORIGIN_*`.
    pub origin: u8,
    pub _pad1: u8,
    pub _pad2: u16,
    /// [`Config::learn_window`] when it was learned (0 for the first start's learning and
    /// for entries that were not learned).
    pub window: u32,
    /// The hours of the week it was seen in while its device learned
    /// ([`crate::schedule`]); all zero when none were recorded (never checked then).
    pub schedule: crate::schedule::Schedule,
}

/// A TCP connection, addresses in canonical order (`low` < `high` by (addr, port)).
#[repr(C, align(4))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnKey {
    pub low: Addr,
    pub high: Addr,
    pub low_port: u16,
    pub high_port: u16,
}

/// Which side of a [`ConnKey`] is the server (sent the SYN-ACK / received the SYN).
pub const SERVER_LOW: u8 = 0;
pub const SERVER_HIGH: u8 = 1;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnEntry {
    /// `SERVER_LOW` or `SERVER_HIGH`.
    pub server: u8,
    pub _pad1: u8,
    pub _pad2: u16,
    pub _pad3: u32,
}

/// An IP packet being fragmented: key of `FRAGMENTS`.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragmentKey {
    pub src: Addr,
    pub dst: Addr,
    /// IPv4 identification (16 bits) or IPv6 fragment identification.
    pub id: u32,
    /// What every fragment of the packet carries alike:
    /// [`crate::parse::IpPacket::fragment_protocol`].
    pub protocol: u8,
    pub _pad1: u8,
    pub _pad2: u16,
}

/// What the first fragment decided, applied to the later ones.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragmentEntry {
    pub service_port: u16,
    /// Direction of the flow as seen from the packet's source.
    pub src_direction: u8,
    /// [`crate::Action`] as u8.
    pub action: u8,
    /// [`crate::Reason`] as u8.
    pub reason: u8,
    /// The first fragment's upper-layer protocol (after any extension headers), which the
    /// later fragments' flow keys use: they carry no such header themselves.
    pub protocol: u8,
    pub _pad: u16,
}

/// A UDP or SCTP request (from the client's higher port to the server's lower one):
/// key of `REQUESTS`, as the request travelled.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestKey {
    pub client: Addr,
    pub server: Addr,
    pub client_port: u16,
    pub server_port: u16,
    pub protocol: u8,
    pub _pad1: u8,
    pub _pad2: u16,
}

/// When a request of a [`RequestKey`] was last seen: value of `REQUESTS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestEntry {
    /// `CLOCK_MONOTONIC` ns (coarse).
    pub seen_ns: u64,
}

/// What the per-CPU decision cache (`DECISIONS`) is keyed by: a packet's addresses,
/// ports and protocol, and what else decided its service (`DECISION_*`). Built from the
/// parsed packet alone, before any table is read: an established TCP connection or a
/// repeated violating flow is decided by this one lookup.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecisionKey {
    pub src: Addr,
    pub dst: Addr,
    /// TCP, UDP and SCTP ports; ICMP type and code.
    pub src_port: u16,
    pub dst_port: u16,
    pub protocol: u8,
    /// `DECISION_*`: the packet's kind; 0 for packets that are never cached.
    pub kind: u8,
    pub _pad: u16,
}

/// [`DecisionKey::kind`]: TCP after the handshake (its server side from CONNTRACK).
pub const DECISION_TCP: u8 = 1;
/// UDP or SCTP whose service the ports alone decide (a request to the lower port, or
/// equal ports).
pub const DECISION_PORTS: u8 = 2;
/// UDP or SCTP from the lower port with a fresh request in REQUESTS: a reply (looked up
/// for every such packet before the cache).
pub const DECISION_REPLY: u8 = 3;
/// UDP or SCTP from the lower port without a fresh request: a request to the higher port.
pub const DECISION_LOW_REQUEST: u8 = 4;
pub const DECISION_ICMP: u8 = 5;
/// Other protocols (service port 0).
pub const DECISION_OTHER: u8 = 6;

/// How long, at most, a cached decision stands (`Decision::valid_until_ns`): what it read
/// from tables the controller does not version (the server side of a TCP connection,
/// the REQUESTS entry an allowed request refreshes) is read again at least this often.
pub const DECISION_TTL_NS: u64 = 1_000_000_000;

/// [`Decision::flags`]: both addresses are unenrolled; each is counted by address.
pub const DECISION_UNENROLLED_PAIR: u8 = 1 << 0;

/// What a decision charges to one side of the packet.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecisionSide {
    /// DEVICE_STATS slot, or u32::MAX for an address outside the inventory.
    pub slot: u32,
    /// Index of the side's flow in its table (`table`).
    pub flow_index: u32,
    /// The low half of that slot's tag ([`FlowSet::tags`]) when the decision was made: what
    /// the entry holds for the flow is charged to the slot (and added by readers) only
    /// while the slot's tag is still this.
    pub flow_tag: u32,
    /// The side's own verdict's reason.
    pub reason: u8,
    /// `judge::CHARGE_*`.
    pub device: u8,
    /// `judge::TABLE_*`.
    pub table: u8,
    /// `judge::FLOW_*`.
    pub flow: u8,
}

/// A packet's verdict and everything it charges, cached per CPU in `DECISIONS` (a
/// direct-mapped cache indexed by the hash of its key) and applied to every later packet
/// with the same key while it stands: same CONFIG epoch, mode and hour of the week, before
/// `valid_until_ns`.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    pub key: DecisionKey,
    /// `CLOCK_MONOTONIC` (coarse) time until which the decision stands: at most
    /// [`DECISION_TTL_NS`] after it was made, and no later than a break-glass it relies
    /// on expires.
    pub valid_until_ns: u64,
    /// `Config::cache_epoch + 1` when it was made (0: an empty slot).
    pub epoch: u32,
    /// The global mode and CONFIG flags it was made under (`mode | flags << 8`).
    pub config: u16,
    /// [`crate::Action`] and [`crate::Reason`] of the packet.
    pub action: u8,
    pub reason: u8,
    /// The flow's service port and direction seen from the packet's source (for events).
    pub service_port: u16,
    pub src_direction: u8,
    /// `DECISION_UNENROLLED_PAIR`.
    pub flags: u8,
    /// The protocol of the flow's key (for a later fragment, its first fragment's).
    pub protocol: u8,
    /// `Config::hour_of_week` it was made in: a schedule's verdict, and what learning
    /// records, change with the hour.
    pub hour_of_week: u8,
    pub _pad: [u8; 2],
    pub sides: [DecisionSide; 2],
    /// [`source_id`] of the frame it was made for (0 off ward legs): a frame from another
    /// MAC, or from another leg, is judged again, so a MAC binding is never bypassed.
    pub source_id: u64,
    /// Packets decided by this entry since it was made, their bytes and the time of the
    /// last: a cached hit charges its flow slots and its enrolled sides' device counters and
    /// reasons here, on this CPU's own cache line, instead of with atomic adds to the shared
    /// flow tables and writes to DEVICE_STATS and DEVICE_REASONS. They reach those when the
    /// entry is replaced (`judge::flow_charge`, while the slot still holds the flow;
    /// `judge::device_charge`), and their readers add what entries hold (the controller's
    /// `Datapath::flows`, `HeldDeviceCharges`).
    pub pending_packets: u64,
    pub pending_bytes: u64,
    pub pending_last_ns: u64,
}

/// Entries of the per-CPU decision cache (a power of two).
pub const DECISION_SLOTS: u32 = 4096;

/// Tags of decision cache slots per `DECISION_TAGS` entry: a cache line of them.
pub const DECISION_TAGS_PER_ENTRY: u32 = 32;

/// The tags of [`DECISION_TAGS_PER_ENTRY`] consecutive slots of the per-CPU decision
/// cache (`DECISION_TAGS`): 16 bits of the hash of the key each slot's entry was written
/// with (never 0), 0 for a slot this program instance has not written. A lookup whose tag
/// differs is a miss without reading the entry: a scan's or a flood's frames, each a new
/// key, would otherwise read a random line of the cache (128 bytes × 4,096 per CPU) each,
/// where the tags are 8 KB. A tag that matches is only a hint: the entry's key decides.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecisionTags {
    pub tags: [u16; DECISION_TAGS_PER_ENTRY as usize],
}

/// Indexes of [`FrameCounts::paths`]: IP packets decided from the decision cache, and
/// judged in full.
pub const PATH_CACHED: u32 = 0;
pub const PATH_JUDGED: u32 = 1;
pub const PATH_SLOTS: u32 = 2;

/// What every frame adds to, per CPU (`FRAME_COUNTS`, one entry): its class, its action
/// and reason, and for an IP packet the path that decided it. One value, so that a frame
/// costs one lookup for them where three maps cost three.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameCounts {
    /// By [`crate::FrameClass`].
    pub classes: [Counter; FrameClass::COUNT],
    /// By [`crate::verdict_index`]; from [`crate::CUT_VERDICTS`], frames a capture cut.
    pub verdicts: [Counter; VERDICTS_ENTRIES as usize],
    /// By `PATH_*`.
    pub paths: [u64; PATH_SLOTS as usize],
}

/// Packet and byte counter: [`FrameCounts`]' classes and verdicts, and `IFACE_VERDICTS`
/// (by [`crate::verdict_index`]), per CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: all are repr(C), Copy, made of integers and byte arrays with explicit padding,
    // so every bit pattern is valid and none has implicit padding.
    unsafe impl aya::Pod for Config {}
    unsafe impl aya::Pod for DeviceEntry {}
    unsafe impl aya::Pod for DecisionTags {}
    unsafe impl aya::Pod for FrameCounts {}
    unsafe impl aya::Pod for DeviceKey {}
    unsafe impl aya::Pod for Rule {}
    unsafe impl aya::Pod for RuleKeyData {}
    unsafe impl aya::Pod for RuleSet {}
    unsafe impl aya::Pod for Event {}
    unsafe impl aya::Pod for EventRate {}
    unsafe impl aya::Pod for DeviceStats {}
    unsafe impl aya::Pod for FlowKey {}
    unsafe impl aya::Pod for FlowStats {}
    unsafe impl aya::Pod for BaselineEntry {}
    unsafe impl aya::Pod for ConnKey {}
    unsafe impl aya::Pod for ConnEntry {}
    unsafe impl aya::Pod for FragmentKey {}
    unsafe impl aya::Pod for FragmentEntry {}
    unsafe impl aya::Pod for RequestKey {}
    unsafe impl aya::Pod for RequestEntry {}
    unsafe impl aya::Pod for Counter {}
    unsafe impl aya::Pod for FlowSlot {}
    unsafe impl aya::Pod for FlowSet {}
    unsafe impl aya::Pod for ServiceFilter {}
    unsafe impl aya::Pod for DecisionKey {}
    unsafe impl aya::Pod for Decision {}
    unsafe impl aya::Pod for MacBindingKey {}
    unsafe impl aya::Pod for MacBinding {}
    unsafe impl aya::Pod for StationKey {}
    unsafe impl aya::Pod for StationStats {}
    unsafe impl aya::Pod for LearnedMacs {}
    unsafe impl aya::Pod for crate::judge::ProbeMemo {}
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use core::mem::{align_of, size_of};

    /// Implicit padding would make the kernel's hash keys depend on garbage bytes.
    #[test]
    fn map_types_have_no_implicit_padding() {
        assert_eq!(size_of::<Config>(), 32);
        assert_eq!(size_of::<DeviceEntry>(), 16);
        assert_eq!(size_of::<DeviceKey>(), 20);
        assert_eq!(size_of::<DeviceStats>(), 10 * 8);
        assert_eq!(size_of::<Rule>(), 12);
        assert_eq!(size_of::<RuleKeyData>(), 33);
        assert_eq!(size_of::<RuleSet>(), 8 + 12 * MAX_RULES_PER_SET);
        assert_eq!(size_of::<Event>(), 64);
        assert_eq!(size_of::<MacBindingKey>(), 24);
        assert_eq!(size_of::<MacBinding>(), 8);
        assert_eq!(size_of::<StationKey>(), 24);
        assert_eq!(size_of::<StationStats>(), 40);
        assert_eq!(size_of::<LearnedMacs>(), 40);
        assert_eq!(size_of::<EventRate>(), 24);
        assert_eq!(size_of::<FlowKey>(), 16 + 16 + 2 + 1 + 1);
        assert_eq!(align_of::<FlowKey>(), 4);
        assert_eq!(size_of::<FlowStats>(), 7 * 8);
        assert_eq!(size_of::<FlowSlot>(), 36 + 4 + 7 * 8);
        assert_eq!(size_of::<FlowSet>(), 64 + 4 * 96);
        assert_eq!(size_of::<DecisionKey>(), 40);
        assert_eq!(size_of::<DecisionSide>(), 16);
        assert_eq!(size_of::<DecisionTags>(), 64);
        assert_eq!(
            size_of::<Decision>(),
            40 + 8 + 4 + 2 + 2 + 2 + 1 + 1 + 1 + 1 + 2 + 2 * 16 + 8 + 3 * 8
        );
        assert_eq!(size_of::<BaselineEntry>(), 16 + 24);
        assert_eq!(size_of::<ConnKey>(), 36);
        assert_eq!(size_of::<ConnEntry>(), 8);
        assert_eq!(size_of::<FragmentKey>(), 40);
        assert_eq!(size_of::<FragmentEntry>(), 8);
        assert_eq!(size_of::<RequestKey>(), 16 + 16 + 2 + 2 + 1 + 1 + 2);
        assert_eq!(size_of::<RequestEntry>(), 8);
        assert_eq!(size_of::<Counter>(), 16);
        assert_eq!(
            size_of::<FrameCounts>(),
            16 * (crate::FrameClass::COUNT + VERDICTS_ENTRIES as usize) + 8 * PATH_SLOTS as usize
        );
        assert_eq!(size_of::<crate::judge::Side>(), 72);
        assert_eq!(
            size_of::<crate::judge::Work>(),
            2 * 72 + size_of::<Decision>() + 8 + 16 + 8
        );
    }

    #[test]
    fn every_reason_of_a_devices_own_verdict_has_its_own_counter() {
        let mut slots = std::collections::BTreeSet::new();
        for reason in DEVICE_REASON_ORDER {
            let slot = device_reason_slot(reason as u8);
            assert!(slot < DEVICE_REASON_UNCOUNTED, "{reason:?}");
            assert!(slots.insert(slot), "{reason:?} shares a slot");
        }
        for &reason in crate::Reason::ALL {
            if !DEVICE_REASON_ORDER.contains(&reason) {
                assert_eq!(device_reason_slot(reason as u8), DEVICE_REASON_UNCOUNTED);
            }
        }
        assert_eq!(
            device_reason_index(3, crate::Reason::InBaseline as u8),
            3 * DEVICE_REASON_SLOTS + 1
        );
    }

    #[test]
    fn the_map_table_names_every_pinned_map_once() {
        assert_eq!(names::ALL.len(), defs::PINNED);
        assert!(names::ALL.contains(&names::FRAME_COUNTS));
        assert!(!names::ALL.contains(&defs::DECISION_TAGS.name));
        assert!(names::ALL.contains(&names::DECISIONS));
        assert!(names::ALL.contains(&names::PROBE_MEMO));
        assert!(!names::ALL.contains(&defs::DEVICE_MEMO.name));
        for name in names::ALL {
            let def = defs::by_name(name).expect("in the table");
            assert!(def.pinned);
        }
        assert_eq!(defs::RULES.key_size, 4 + 33);
        assert_eq!(defs::EVENTS.key_size, 0);
    }
}
