//! The maps, declared from `monitor_common::maps::defs` (the one list of the datapath's
//! maps) and checked against it at compile time: name, kind, key and value sizes. Their
//! sizes and flags come from the list, so the program, the controller's pinned-layout
//! check and the benchmark's memory table cannot disagree.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf, lpm_trie::Key as LpmKey},
};
use monitor_common::{
    judge::{ProbeMemo, Work},
    maps::{
        BaselineEntry, Config, ConnEntry, ConnKey, Counter, Decision, DecisionTags, DeviceEntry,
        DeviceKey, DeviceMemo, DeviceStats, EventRate, FlowKey, FlowSet, FragmentEntry,
        FragmentKey, FrameCounts, LearnedMacs, MacBinding, MacBindingKey, MapDef, MapKind,
        RequestEntry, RequestKey, RuleKeyData, RuleSet, ServiceFilter, StationKey, StationStats,
        defs,
    },
    parse::{Addr, ParsedFrame},
};

/// What a map type of aya-ebpf is to the kernel.
trait Shape {
    const KIND: MapKind;
    const KEY: usize;
    const VALUE: usize;
}

impl<V> Shape for Array<V> {
    const KIND: MapKind = MapKind::Array;
    const KEY: usize = 4;
    const VALUE: usize = size_of::<V>();
}

impl<V> Shape for PerCpuArray<V> {
    const KIND: MapKind = MapKind::PerCpuArray;
    const KEY: usize = 4;
    const VALUE: usize = size_of::<V>();
}

impl<K, V> Shape for HashMap<K, V> {
    const KIND: MapKind = MapKind::Hash;
    const KEY: usize = size_of::<K>();
    const VALUE: usize = size_of::<V>();
}

impl<K, V> Shape for LruHashMap<K, V> {
    const KIND: MapKind = MapKind::LruHash;
    const KEY: usize = size_of::<K>();
    const VALUE: usize = size_of::<V>();
}

impl<K, V> Shape for LpmTrie<K, V> {
    const KIND: MapKind = MapKind::LpmTrie;
    const KEY: usize = size_of::<LpmKey<K>>();
    const VALUE: usize = size_of::<V>();
}

impl Shape for RingBuf {
    const KIND: MapKind = MapKind::RingBuf;
    const KEY: usize = 0;
    const VALUE: usize = 0;
}

/// Whether a map declared as `M` named `name` is the one `def` describes.
const fn declared_as<M: Shape>(name: &str, def: &MapDef) -> bool {
    defs::named(def, name)
        && M::KIND as u32 == def.kind as u32
        && M::KEY == def.key_size as usize
        && M::VALUE == def.value_size as usize
}

/// `#[map] static NAME: Type = ...` for each map, sized from `defs::NAME`, with
/// compile-time checks that each declaration is the table's and that every map of the
/// table is declared.
macro_rules! datapath_maps {
    ($($(#[$doc:meta])* $name:ident: $ty:ty = $ctor:ident;)*) => {
        $(
            $(#[$doc])*
            #[map]
            pub static $name: $ty = <$ty>::$ctor(defs::$name.max_entries, defs::$name.flags);
            const _: () = assert!(
                declared_as::<$ty>(stringify!($name), &defs::$name),
                concat!(
                    "the declaration of ",
                    stringify!($name),
                    " is not the one in monitor_common::maps::defs"
                )
            );
        )*
        const DECLARED: &[&str] = &[$(stringify!($name)),*];
        const _: () = {
            assert!(DECLARED.len() == defs::ALL.len(), "a map of defs::ALL is not declared");
            let mut i = 0;
            while i < defs::ALL.len() {
                let mut found = false;
                let mut j = 0;
                while j < DECLARED.len() {
                    found = found || defs::named(&defs::ALL[i], DECLARED[j]);
                    j += 1;
                }
                assert!(found, "a map of defs::ALL is not declared");
                i += 1;
            }
        };
    };
}

datapath_maps! {
    CONFIG: Array<Config> = with_max_entries;
    DEVICES: HashMap<DeviceKey, DeviceEntry> = with_max_entries;
    RULES: LpmTrie<RuleKeyData, RuleSet> = with_max_entries;
    /// Violation events to the controller.
    EVENTS: RingBuf = with_byte_size;
    EVENT_RATE: PerCpuArray<EventRate> = with_max_entries;
    EVENT_STATS: PerCpuArray<u64> = with_max_entries;
    DEVICE_STATS: PerCpuArray<DeviceStats> = with_max_entries;
    /// Addresses outside the inventory, counted when they talk to one another: shared by
    /// all CPUs (a per-CPU table took 335 MB on 64 CPUs), counted with atomic adds.
    UNENROLLED_STATS: LruHashMap<Addr, DeviceStats> = with_max_entries;
    /// Enrolled devices' flows: a set-associative table the program manages
    /// (`account::place_flow`).
    FLOWS: Array<FlowSet> = with_max_entries;
    /// Flows between unenrolled addresses, and devices' new violating flows, apart.
    UNENROLLED_FLOWS: Array<FlowSet> = with_max_entries;
    BASELINE: HashMap<FlowKey, BaselineEntry> = with_max_entries;
    /// Per device address, the services its baseline may hold: a clear bit skips the
    /// baseline's lookup.
    SERVICE_FILTERS: Array<ServiceFilter> = with_max_entries;
    /// A bit per enrolled address: a clear bit skips the DEVICES lookup.
    ENROLLED_ADDRS: Array<u64> = with_max_entries;
    CONNTRACK: LruHashMap<ConnKey, ConnEntry> = with_max_entries;
    FRAGMENTS: LruHashMap<FragmentKey, FragmentEntry> = with_max_entries;
    /// UDP and SCTP requests the policy allowed, so that their replies are known as
    /// replies.
    REQUESTS: LruHashMap<RequestKey, RequestEntry> = with_max_entries;
    /// A bit per request remembered lately, in three generations by time: clear bits skip
    /// the REQUESTS lookup.
    REQUEST_FILTER: Array<u64> = with_max_entries;
    /// Frames by class, by verdict (whole frames, then from CUT_VERDICTS frames a capture
    /// cut short) and by path: one entry, one lookup per frame.
    FRAME_COUNTS: PerCpuArray<FrameCounts> = with_max_entries;
    /// Interface index → 1 + its IFACE_VERDICTS block (0: not counted apart), set by the
    /// controller for the interfaces it attaches to.
    IFACE_SLOTS: Array<u32> = with_max_entries;
    IFACE_VERDICTS: PerCpuArray<Counter> = with_max_entries;
    /// Packets per enrolled device and reason of its own verdict.
    DEVICE_REASONS: PerCpuArray<u64> = with_max_entries;
    /// The MACs each MAC-bound address may be sent from on a ward leg (`judge::bind_source`).
    MAC_BINDINGS: HashMap<MacBindingKey, MacBinding> = with_max_entries;
    /// Discovery: source MACs on ward legs with addresses outside the inventory
    /// (`account::record_station`).
    STATIONS: LruHashMap<StationKey, StationStats> = with_max_entries;
    /// The source MACs each device sent from on a ward leg while it learned, by slot
    /// (`account::learn_source_mac`).
    LEARNED_MACS: Array<LearnedMacs> = with_max_entries;
    /// The per-CPU decision cache (`cache`).
    DECISIONS: PerCpuArray<Decision> = with_max_entries;
    /// The device of this CPU's last one-stage probe, and what its probes hold for it
    /// (`judge::probe`).
    PROBE_MEMO: PerCpuArray<ProbeMemo> = with_max_entries;
    /// A tag per DECISIONS slot: a miss reads no entry (`cache::decided`).
    DECISION_TAGS: PerCpuArray<DecisionTags> = with_max_entries;
    /// DEVICES entries this CPU read lately, valid under the epoch.
    DEVICE_MEMO: PerCpuArray<DeviceMemo> = with_max_entries;
    /// The frame being judged, parsed straight into a per-CPU slot: it does not fit the
    /// stack beside everything else.
    SCRATCH: PerCpuArray<ParsedFrame> = with_max_entries;
    /// The judge's working state (`monitor_common::judge::Work`).
    WORK: PerCpuArray<Work> = with_max_entries;
    /// Flows spoofed frames used lately (`judge::bind_source`), by the impersonated
    /// device's flow key, with when: their replies teach no baseline (`judge::learn`).
    SPOOFED_FLOWS: LruHashMap<FlowKey, u64> = with_max_entries;
}
