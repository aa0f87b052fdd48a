//! Keys and values of the maps the XDP program shares with the controller.
//!
//! All `#[repr(C)]`, `Copy`, with explicit padding and integer flags. Field order and
//! sizes are the pinned-map layout: [`LAYOUT_VERSION`] changes whenever they do.

use crate::parse::Addr;

/// Bumped whenever a map's key or value layout, or a map's size, changes. Stored in
/// `CONFIG` so that a controller can refuse pinned maps of another layout.
pub const LAYOUT_VERSION: u32 = 7;

/// Map names, as the XDP object declares them and as they are pinned.
pub mod names {
    pub const CONFIG: &str = "CONFIG";
    pub const DEVICES: &str = "DEVICES";
    pub const DEVICE_STATS: &str = "DEVICE_STATS";
    pub const UNENROLLED_STATS: &str = "UNENROLLED_STATS";
    pub const FLOWS: &str = "FLOWS";
    pub const UNENROLLED_FLOWS: &str = "UNENROLLED_FLOWS";
    pub const BASELINE: &str = "BASELINE";
    pub const CONNTRACK: &str = "CONNTRACK";
    pub const FRAGMENTS: &str = "FRAGMENTS";
    pub const VERDICTS: &str = "VERDICTS";
    pub const CLASSES: &str = "CLASSES";
    pub const RULES: &str = "RULES";
    pub const EVENTS: &str = "EVENTS";
    pub const EVENT_RATE: &str = "EVENT_RATE";
    pub const EVENT_STATS: &str = "EVENT_STATS";
    pub const IFACE_SLOTS: &str = "IFACE_SLOTS";
    pub const IFACE_VERDICTS: &str = "IFACE_VERDICTS";
    pub const DEVICE_REASONS: &str = "DEVICE_REASONS";
    pub const REQUESTS: &str = "REQUESTS";
    /// Every map, in a fixed order (pinning, adoption, layout checks).
    pub const ALL: [&str; 19] = [
        CONFIG,
        DEVICES,
        DEVICE_STATS,
        UNENROLLED_STATS,
        FLOWS,
        UNENROLLED_FLOWS,
        BASELINE,
        CONNTRACK,
        FRAGMENTS,
        VERDICTS,
        CLASSES,
        RULES,
        EVENTS,
        EVENT_RATE,
        EVENT_STATS,
        IFACE_SLOTS,
        IFACE_VERDICTS,
        DEVICE_REASONS,
        REQUESTS,
    ];
}

/// Names of the XDP programs in the object.
pub mod programs {
    /// The monitor and enforcer.
    pub const MONITOR: &str = "monitor_xdp";
    /// Parses and counts frame classes only: the benchmark baseline.
    pub const PARSE_ONLY: &str = "parse_only_xdp";
    /// Returns XDP_TX for every frame: the benchmark's live-frames traffic generator.
    pub const TX: &str = "tx_xdp";
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
/// Interface indexes IFACE_SLOTS covers (ifindex below this).
pub const MAX_IFINDEX: u32 = 4096;
/// Interfaces whose verdicts are counted apart (`IFACE_VERDICTS`).
pub const MAX_IFACES: u32 = 16;
/// Reason counters per device in `DEVICE_REASONS` (room for the list to grow).
pub const DEVICE_REASON_SLOTS: u32 = 32;

/// Index of a device's reason counter in `DEVICE_REASONS`.
#[inline(always)]
pub const fn device_reason_index(slot: u32, reason: u8) -> u32 {
    slot * DEVICE_REASON_SLOTS + (reason as u32 % DEVICE_REASON_SLOTS)
}

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
/// counted apart (`VERDICTS` from [`crate::CUT_VERDICTS`]) and charges no drop, would-drop
/// or event to anyone. It is still counted and learned from.
pub const CONFIG_CAPTURE_MAY_BE_CUT: u8 = 1 << 2;

/// Global settings, the single entry of `CONFIG`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// [`crate::Mode`] as u8.
    pub mode: u8,
    /// `CONFIG_*` flags.
    pub flags: u8,
    pub _pad: u16,
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
}

/// Value of [`DeviceEntry::mode`] when the device follows the global mode.
pub const MODE_INHERIT: u8 = 0xff;
/// The device is life-critical: never enforced unless [`DEVICE_ENFORCE_CONFIRMED`].
pub const DEVICE_LIFE_CRITICAL: u8 = 1 << 0;
/// The device's own policy entry confirms enforcement although it is life-critical.
pub const DEVICE_ENFORCE_CONFIRMED: u8 = 1 << 1;
/// Policy rules apply to the device: look up `RULES`.
pub const DEVICE_HAS_RULES: u8 = 1 << 2;

/// The policy generation (0 or 1) a [`Config`] makes packets read.
#[inline(always)]
pub const fn active_generation(config: &Config) -> u8 {
    (config.generation & 1) as u8
}

/// Key of `DEVICES`: an address in one policy generation.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
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
}

/// Per-device, per-CPU event rate limit state: value of `EVENT_RATE` by slot.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventRate {
    pub window_start_ns: u64,
    pub sent_in_window: u32,
    pub suppressed: u32,
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

/// One conversation of one device: the key of `BASELINE`, `FLOWS` and `UNENROLLED_FLOWS`.
/// A request and its reply have the same key, so replies of allowed flows pass.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    pub device: Addr,
    pub peer: Addr,
    /// The server's port (TCP, UDP, SCTP), the request type (ICMP echo), else 0.
    pub service_port: u16,
    pub protocol: u8,
    /// [`Direction`] as u8.
    pub direction: u8,
}

/// Per-flow counters, per CPU (`FLOWS`, `UNENROLLED_FLOWS`).
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
    /// `cache_epoch + 1` of CONFIG when this flow was last found in the baseline, so
    /// that established flows skip the baseline lookup; 0 when not known to be in it.
    pub in_baseline_tag: u32,
    /// `cache_epoch + 1` when the device entries below were copied from DEVICES, so that
    /// established flows skip both DEVICES lookups; 0 when not cached (break-glass).
    pub devices_tag: u32,
    /// The flow's device (this entry's `FlowKey::device`): slot, mode and flags.
    pub own_slot: u32,
    /// The peer's slot, or u32::MAX when the peer is not enrolled.
    pub peer_slot: u32,
    pub own_mode: u8,
    pub own_flags: u8,
    pub peer_mode: u8,
    pub peer_flags: u8,
    pub _pad: u32,
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
        self.in_baseline_tag = self.in_baseline_tag.max(other.in_baseline_tag);
    }
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
}

/// A TCP connection, addresses in canonical order (`low` < `high` by (addr, port)).
#[repr(C)]
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
#[repr(C)]
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
#[repr(C)]
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

/// Packet and byte counter: `VERDICTS` (by [`crate::verdict_index`]) and `CLASSES` (by
/// [`crate::FrameClass`]), per CPU.
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{align_of, size_of};

    /// Implicit padding would make the kernel's hash keys depend on garbage bytes.
    #[test]
    fn map_types_have_no_implicit_padding() {
        assert_eq!(size_of::<Config>(), 24);
        assert_eq!(size_of::<DeviceEntry>(), 16);
        assert_eq!(size_of::<DeviceKey>(), 20);
        assert_eq!(size_of::<DeviceStats>(), 10 * 8);
        assert_eq!(size_of::<Rule>(), 12);
        assert_eq!(size_of::<RuleKeyData>(), 33);
        assert_eq!(size_of::<RuleSet>(), 8 + 12 * MAX_RULES_PER_SET);
        assert_eq!(size_of::<Event>(), 56);
        assert_eq!(size_of::<EventRate>(), 16);
        assert_eq!(size_of::<FlowKey>(), 16 + 16 + 2 + 1 + 1);
        assert_eq!(align_of::<FlowKey>(), 2);
        assert_eq!(size_of::<FlowStats>(), 7 * 8 + 6 * 4);
        assert_eq!(size_of::<BaselineEntry>(), 16);
        assert_eq!(size_of::<ConnKey>(), 36);
        assert_eq!(size_of::<ConnEntry>(), 8);
        assert_eq!(size_of::<FragmentKey>(), 40);
        assert_eq!(size_of::<FragmentEntry>(), 8);
        assert_eq!(size_of::<RequestKey>(), 16 + 16 + 2 + 2 + 1 + 1 + 2);
        assert_eq!(size_of::<RequestEntry>(), 8);
        assert_eq!(size_of::<Counter>(), 16);
    }
}
