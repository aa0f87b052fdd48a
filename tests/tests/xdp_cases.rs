//! Table-driven BPF_PROG_TEST_RUN cases for the XDP program.
//!
//! Each case has a setup (global mode and flags, enrolled devices, baseline entries) and
//! runs its frames in order. Every frame ("step") states the action and reason it must
//! get, its frame class and who it is charged to, and the runner checks the *whole*
//! change of the counters against that:
//! - verdicts (`FRAME_COUNTS`): exactly one (action, reason) counter moved, by one packet
//!   and the frame's length in bytes; classes: likewise for exactly one class;
//! - `DEVICE_STATS` of every enrolled slot and `UNENROLLED_STATS` of every address:
//!   packets/bytes sent and received, dropped, would-drop, learned flows, break-glass;
//! - `BASELINE`: exactly the entries the step learns are added, nothing is removed;
//! - `FLOWS`/`UNENROLLED_FLOWS`: for a parsed IP packet exactly the two entries of its
//!   flow key (one per side, in the table of that side) move; otherwise none.
//!
//! Loading the object takes about half a second, so cases with the same setup share a
//! datapath when they cannot see each other's state: every state the program keeps
//! between frames (baseline, conntrack, fragments) is keyed by the two addresses and the
//! protocol, so a case joins a datapath only if none of its frames shares an (address
//! pair, protocol) with a frame run there before. Since every check is a delta, what an
//! earlier case counted does not matter.
//!
//! Failures name the case and the frame; all failures of a table are reported together.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use monitor::{
    Datapath, Maps,
    datapath::{addr_key, addr_of},
    policy::{CompiledRule, Prefix, fold_rules},
};
use monitor_common::{
    Action, FrameClass, Mode, Reason,
    maps::{
        BaselineEntry, CONFIG_CAPTURE_MAY_BE_CUT, CONFIG_JUDGE_UNENROLLED, CONFIG_UNENROLLED_DROP,
        Counter, DEVICE_ENFORCE_CONFIRMED, DEVICE_HAS_RULES, DEVICE_LIFE_CRITICAL,
        DEVICE_MAC_BOUND, DEVICE_SCHEDULE_ENFORCE, DEVICE_SCHEDULE_IGNORE, DeviceEntry,
        DeviceStats, Direction, FlowKey, FlowStats, LAYOUT_VERSION, MODE_INHERIT, ORIGIN_LEARNED,
        ORIGIN_POLICY, RULE_ANY, RULE_DENY, Rule, VIOLATING_FLOWS_PER_DEVICE_PER_SECOND,
    },
    parse::{MAX_IPV6_EXTENSIONS, Snaplen, parse_frame},
    schedule::{self, DEFAULT_TOLERANCE, HOUR_UNKNOWN, Schedule},
};
use monitor_tests::adversarial::{
    self, cast::*, ext_chain, frame as adv, tcp, udp, udp_fragments, with_exts,
};
use monitor_tests::packet::{
    ETH_MIN_FRAME, ETHERTYPE_ARP, ETHERTYPE_EAPOL, Ethernet, Ext, IPPROTO_DSTOPTS, IPPROTO_ICMP,
    IPPROTO_ICMPV6, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP, Ipv4, Ipv6, TCP_ACK, TCP_PSH, TCP_SYN,
    TPID_QINQ_OLD, Transport, arp_frame, arp_frame_from, arp_packet, lldp_frame, padded, stp_frame,
    truncated,
};

// ---------------------------------------------------------------------------------------
// The cast (addresses in monitor_tests::adversarial::cast)
// ---------------------------------------------------------------------------------------

const SLOT_WS: u32 = 3;
const SLOT_PACS: u32 = 5;
const SLOT_WS6: u32 = 6;
const SLOT_PUMP: u32 = 10;

#[derive(Clone, Debug, PartialEq)]
struct Dev {
    addr: IpAddr,
    entry: DeviceEntry,
    /// Break-glass for this long from when the case's datapath is set up (the deadline is
    /// `CLOCK_MONOTONIC`, so it is made at load time).
    glass_for: Option<Duration>,
    /// Not enrolled when the case starts: a step's [`Change::Enroll`] enrolls it, as the
    /// controller enrolls a MAC-only device at the address it learned.
    later: bool,
}

impl Dev {
    fn new(addr: impl Into<IpAddr>, slot: u32) -> Dev {
        Dev {
            addr: addr.into(),
            entry: DeviceEntry::new(slot, MODE_INHERIT, 0),
            glass_for: None,
            later: false,
        }
    }

    /// Enrolled by a step's [`Change::Enroll`], not at the start.
    fn later(mut self) -> Dev {
        self.later = true;
        self
    }

    fn mode(mut self, mode: Mode) -> Dev {
        self.entry.mode = mode as u8;
        self
    }

    fn flags(mut self, flags: u8) -> Dev {
        self.entry.flags = flags;
        self
    }

    /// Break-glass until `until_ns` (`CLOCK_MONOTONIC`): [`GLASS_IN_FORCE`] or
    /// [`GLASS_EXPIRED`].
    fn break_glass(mut self, until_ns: u64) -> Dev {
        self.entry.break_glass_until_ns = until_ns;
        self
    }

    /// Break-glass that expires `for_` after the datapath is set up, with no controller
    /// to end it: [`Change::PastBreakGlass`] waits for that.
    fn break_glass_for(mut self, for_: Duration) -> Dev {
        self.glass_for = Some(for_);
        self
    }
}

/// `CLOCK_MONOTONIC_COARSE` now: the clock the datapath compares break-glass deadlines
/// with.
fn coarse_now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A break-glass deadline no test outlives, and one long past.
const GLASS_IN_FORCE: u64 = u64::MAX;
const GLASS_EXPIRED: u64 = 1;

fn ws() -> Dev {
    Dev::new(WS, SLOT_WS)
}

fn ws6() -> Dev {
    Dev::new(WS6, SLOT_WS6)
}

fn pacs() -> Dev {
    Dev::new(PACS, SLOT_PACS)
}

fn pump() -> Dev {
    Dev::new(PUMP, SLOT_PUMP).flags(DEVICE_LIFE_CRITICAL)
}

/// A flow key as the maps hold it.
fn key(
    device: impl Into<IpAddr>,
    peer: impl Into<IpAddr>,
    protocol: u8,
    port: u16,
    dir: Direction,
) -> FlowKey {
    FlowKey {
        device: addr_key(device.into()),
        peer: addr_key(peer.into()),
        service_port: port,
        protocol,
        direction: dir as u8,
    }
}

use Direction::{Inbound, Outbound, Symmetric};

// ---------------------------------------------------------------------------------------
// Cases and steps
// ---------------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
struct Setup {
    mode: Mode,
    flags: u8,
    devices: Vec<Dev>,
    baseline: Vec<FlowKey>,
    /// Policy rules: (device, peer host, rule), compiled as the controller compiles them.
    rules: Vec<(IpAddr, IpAddr, Rule)>,
    /// Overwrite CONFIG's layout version (a controller of another layout wrote it).
    layout_version: Option<u32>,
    /// Baseline entries learned with a schedule: the hours of the week they were seen in.
    scheduled: Vec<(FlowKey, Vec<u8>)>,
    /// The site's hour of the week (`CONFIG`) and the schedules' tolerance, written before
    /// each of the case's frames run.
    hour_of_week: u8,
    tolerance: u8,
    /// The test run's interface (loopback) is a ward leg: source MACs are judged.
    ward: bool,
    /// Address–MAC bindings: lasting (`None`), or timed from when the datapath is set up.
    bindings: Vec<(IpAddr, [u8; 6], Option<Duration>)>,
}

impl Setup {
    fn new(mode: Mode) -> Setup {
        Setup {
            mode,
            flags: 0,
            devices: Vec::new(),
            baseline: Vec::new(),
            rules: Vec::new(),
            layout_version: None,
            scheduled: Vec::new(),
            hour_of_week: HOUR_UNKNOWN,
            tolerance: DEFAULT_TOLERANCE,
            ward: false,
            bindings: Vec::new(),
        }
    }

    /// A baseline entry learned in `hours` of the week.
    fn scheduled(mut self, key: FlowKey, hours: &[u8]) -> Setup {
        self.scheduled.push((key, hours.to_vec()));
        self
    }

    /// The site's hour of the week when the case starts.
    fn at_hour(mut self, hour: u8) -> Setup {
        self.hour_of_week = hour;
        self
    }

    fn tolerance(mut self, hours: u8) -> Setup {
        self.tolerance = hours;
        self
    }

    /// Frames arrive on a ward leg.
    fn ward(mut self) -> Setup {
        self.ward = true;
        self
    }

    /// `addr` may be sent from `mac` (the device's entry must be MAC-bound).
    fn bind(mut self, addr: impl Into<IpAddr>, mac: [u8; 6]) -> Setup {
        self.bindings.push((addr.into(), mac, None));
        self
    }

    /// An operator's timed acceptance of `mac` for `addr`, for `for_` from the load.
    fn bind_for(mut self, addr: impl Into<IpAddr>, mac: [u8; 6], for_: Duration) -> Setup {
        self.bindings.push((addr.into(), mac, Some(for_)));
        self
    }

    fn rule(mut self, device: impl Into<IpAddr>, peer: impl Into<IpAddr>, rule: Rule) -> Setup {
        self.rules.push((device.into(), peer.into(), rule));
        self
    }

    fn dev(mut self, dev: Dev) -> Setup {
        self.devices.push(dev);
        self
    }

    fn flags(mut self, flags: u8) -> Setup {
        self.flags |= flags;
        self
    }

    fn baseline(mut self, key: FlowKey) -> Setup {
        self.baseline.push(key);
        self
    }

    fn slot_of(&self, addr: IpAddr) -> Option<u32> {
        self.devices
            .iter()
            .find(|d| d.addr == addr)
            .map(|d| d.entry.slot)
    }
}

#[derive(Clone, Debug)]
struct Step {
    frame: Vec<u8>,
    action: Action,
    reason: Reason,
    class: FrameClass,
    /// (source, destination) charged as sender and receiver; `None` when the frame has
    /// no readable IP addresses.
    ends: Option<(IpAddr, IpAddr)>,
    dropped: Vec<IpAddr>,
    would_drop: Vec<IpAddr>,
    /// Charged a packet let through by its break-glass.
    break_glass: Vec<IpAddr>,
    /// Switch the global mode to this before the frame (back to the setup's after the case).
    mode: Option<Mode>,
    /// (protocol, service port, direction seen from the source) of the flow entries.
    flow: Option<(u8, u16, Direction)>,
    /// Baseline entries this frame adds (learned_flows moves for enrolled devices).
    learns: Vec<FlowKey>,
    /// What changes before the frame runs, in order.
    before: Vec<Change>,
    /// How the frame must be decided; `None`: an IP frame by either path (exactly one
    /// moves), any other by neither.
    path: Option<Path>,
    /// Baseline entries whose schedule must be exactly these hours after the frame.
    schedules: Vec<(FlowKey, Vec<u8>)>,
    /// Enrolled devices whose violation is beyond their budget of flow entries: no flow
    /// entry, but counted under the step's reason and reported (sent or suppressed).
    over_budget: Vec<IpAddr>,
    /// The discovery table's (MAC, address) entries this frame counts, exactly; `None`:
    /// not checked.
    stations: Option<Vec<([u8; 6], IpAddr)>>,
}

/// Something that happens between frames.
#[derive(Clone, Debug)]
enum Change {
    /// The controller adds an entry to the baseline (an import, a promoted rule).
    Baseline(FlowKey),
    /// Time passes every break-glass deadline the setup made relative to its load
    /// ([`Dev::break_glass_for`]): the test sleeps, nothing touches the datapath.
    PastBreakGlass,
    /// The controller writes another hour of the week (and tolerance) into CONFIG.
    Clock { hour_of_week: u8, tolerance: u8 },
    /// Time passes every timed MAC acceptance ([`Setup::bind_for`]), likewise.
    PastMacAllow,
    /// A quiet second and a bit: every device's one-second rate-limit window ends, so the
    /// next violation opens a new one.
    Quiet,
    /// These frames run at once, unchecked (a burst that spends a device's budget of
    /// violating flow entries well within one window).
    Frames(Vec<Vec<u8>>),
    /// The controller enrolls a device of the setup made [`Dev::later`] at its address.
    Enroll(Dev),
}

/// Which path decided an IP packet (`FRAME_COUNTS`' paths).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    /// One lookup of the per-CPU decision cache.
    Cached,
    /// The full judge.
    Judged,
}

fn verdict(frame: Vec<u8>, action: Action, reason: Reason, class: FrameClass) -> Step {
    Step {
        frame,
        action,
        reason,
        class,
        ends: None,
        dropped: Vec::new(),
        would_drop: Vec::new(),
        break_glass: Vec::new(),
        mode: None,
        flow: None,
        learns: Vec::new(),
        before: Vec::new(),
        path: None,
        schedules: Vec::new(),
        over_budget: Vec::new(),
        stations: None,
    }
}

fn pass(frame: Vec<u8>, reason: Reason, class: FrameClass) -> Step {
    verdict(frame, Action::Pass, reason, class)
}

fn drop(frame: Vec<u8>, reason: Reason, class: FrameClass) -> Step {
    verdict(frame, Action::Drop, reason, class)
}

impl Step {
    fn between(mut self, src: impl Into<IpAddr>, dst: impl Into<IpAddr>) -> Step {
        self.ends = Some((src.into(), dst.into()));
        self
    }

    fn dropped(mut self, addr: impl Into<IpAddr>) -> Step {
        self.dropped.push(addr.into());
        self
    }

    fn would_drop(mut self, addr: impl Into<IpAddr>) -> Step {
        self.would_drop.push(addr.into());
        self
    }

    fn break_glass(mut self, addr: impl Into<IpAddr>) -> Step {
        self.break_glass.push(addr.into());
        self
    }

    /// Runs the frame under global `mode` (the case's later frames too).
    fn in_mode(mut self, mode: Mode) -> Step {
        self.mode = Some(mode);
        self
    }

    fn flow(mut self, protocol: u8, port: u16, dir: Direction) -> Step {
        self.flow = Some((protocol, port, dir));
        self
    }

    fn learns(mut self, key: FlowKey) -> Step {
        self.learns.push(key);
        self
    }

    fn after(mut self, change: Change) -> Step {
        self.before.push(change);
        self
    }

    /// Run when the site's clock says `hour_of_week`, with `tolerance`.
    fn at(mut self, hour_of_week: u8, tolerance: u8) -> Step {
        self.before.push(Change::Clock {
            hour_of_week,
            tolerance,
        });
        self
    }

    /// After the frame, the baseline entry `key` records exactly `hours`.
    fn schedule_is(mut self, key: FlowKey, hours: &[u8]) -> Step {
        self.schedules.push((key, hours.to_vec()));
        self
    }

    /// A violation of `addr` beyond its device's budget of flow entries.
    fn over_budget(mut self, addr: impl Into<IpAddr>) -> Step {
        self.over_budget.push(addr.into());
        self
    }

    /// Counted in the discovery table as sent by `mac` with `addr` (with no other entry
    /// counted, unless another `station` names it).
    fn station(mut self, mac: [u8; 6], addr: impl Into<IpAddr>) -> Step {
        self.stations
            .get_or_insert_with(Vec::new)
            .push((mac, addr.into()));
        self
    }

    /// Counted in no entry of the discovery table.
    fn no_station(mut self) -> Step {
        self.stations.get_or_insert_with(Vec::new);
        self
    }

    /// Decided by one lookup of the decision cache.
    fn cached(mut self) -> Step {
        self.path = Some(Path::Cached);
        self
    }

    /// Judged in full.
    fn judged(mut self) -> Step {
        self.path = Some(Path::Judged);
        self
    }
}

#[derive(Clone, Debug)]
struct Case {
    name: &'static str,
    setup: Setup,
    steps: Vec<Step>,
}

fn case(name: &'static str, setup: Setup, steps: Vec<Step>) -> Case {
    Case { name, setup, steps }
}

// ---------------------------------------------------------------------------------------
// The runner
// ---------------------------------------------------------------------------------------

/// Everything a step may change.
#[derive(Clone, Debug)]
struct Snapshot {
    /// By (counted as a cut frame's, action, reason).
    verdicts: BTreeMap<(bool, Action, Reason), Counter>,
    classes: BTreeMap<u8, Counter>,
    devices: BTreeMap<u32, DeviceStats>,
    unenrolled: BTreeMap<IpAddr, DeviceStats>,
    flows: BTreeMap<(bool, FlowKey), FlowStats>,
    baseline: BTreeSet<FlowKey>,
    /// IP packets decided from the cache, and judged.
    paths: (u64, u64),
    /// The discovery table's packet counts, by (MAC, address).
    stations: BTreeMap<([u8; 6], IpAddr), u64>,
}

fn snapshot(datapath: &Datapath, setup: &Setup) -> Snapshot {
    let maps = datapath.maps();
    let verdicts = must(maps.verdicts(), "VERDICTS")
        .into_iter()
        .map(|(a, r, c)| ((false, a, r), c))
        .chain(
            must(maps.cut_verdicts(), "VERDICTS")
                .into_iter()
                .map(|(a, r, c)| ((true, a, r), c)),
        )
        .collect();
    let mut devices = BTreeMap::new();
    for dev in &setup.devices {
        let stats = must(maps.device_stats(dev.entry.slot), "DEVICE_STATS");
        devices.insert(dev.entry.slot, stats);
    }
    let mut flows = BTreeMap::new();
    for enrolled in [true, false] {
        for (key, stats) in must(maps.flows(enrolled), "FLOWS") {
            flows.insert((enrolled, key), stats);
        }
    }
    let classes = must(maps.classes(), "CLASSES");
    Snapshot {
        verdicts,
        classes: classes
            .into_iter()
            .map(|(class, c)| (class as u8, c))
            .collect(),
        devices,
        unenrolled: must(maps.unenrolled_stats(), "UNENROLLED_STATS"),
        flows,
        baseline: must(maps.baseline(), "BASELINE")
            .into_iter()
            .map(|(k, _)| k)
            .collect(),
        paths: must(maps.paths(), "FRAME_COUNTS"),
        stations: must(maps.stations(), "STATIONS")
            .into_iter()
            .map(|(k, s)| ((k.mac, addr_of(&k.addr)), s.packets))
            .collect(),
    }
}

fn must<T>(result: Result<T, monitor::DatapathError>, map: &str) -> T {
    result.unwrap_or_else(|e| panic!("reading {map}: {e:?}"))
}

/// The counters of [`DeviceStats`] a step changes (times left out): packets sent, bytes
/// sent, packets received, bytes received, dropped, would-drop, learned flows, passed by
/// break-glass.
type StatCounts = [u64; 8];

fn counts(s: &DeviceStats) -> StatCounts {
    [
        s.packets_sent,
        s.bytes_sent,
        s.packets_received,
        s.bytes_received,
        s.dropped_packets,
        s.would_drop_packets,
        s.learned_flows,
        s.break_glass_packets,
    ]
}

fn delta<const N: usize>(after: [u64; N], before: [u64; N]) -> [u64; N] {
    std::array::from_fn(|i| after[i].wrapping_sub(before[i]))
}

fn flow_counts(s: &FlowStats) -> [u64; 6] {
    [
        s.packets_sent,
        s.bytes_sent,
        s.packets_received,
        s.bytes_received,
        s.dropped_packets,
        s.would_drop_packets,
    ]
}

fn describe_key(k: &FlowKey) -> String {
    format!(
        "{} -> {} proto {} port {} dir {:?}",
        addr_of(&k.device),
        addr_of(&k.peer),
        k.protocol,
        k.service_port,
        Direction::try_from(k.direction)
    )
}

/// The hash seed of every datapath a case loads.
const CASE_HASH_SEED: u32 = 0x5eed_ca5e;

fn load(case: &Case) -> Datapath {
    let name = case.name;
    let setup = &case.setup;
    let mut datapath = Datapath::load(&Maps::Private)
        .unwrap_or_else(|e| panic!("case `{name}`: loading failed: {e:?}"));
    let maps = datapath.maps_mut();
    let mut config = maps
        .config()
        .unwrap_or_else(|e| panic!("case `{name}`: reading CONFIG: {e:?}"));
    config.mode = setup.mode as u8;
    config.flags = setup.flags;
    // One seed for every run (a live datapath draws its own at random): which of a case's
    // flows share a decision cache entry or a flow table set, and so whether a step is a
    // hit, is the same in every run. A case that depends on a lucky placement fails
    // every time, not once in hundreds of runs.
    config.hash_seed = CASE_HASH_SEED;
    if let Some(version) = setup.layout_version {
        config.layout_version = version;
    }
    maps.set_config(config)
        .unwrap_or_else(|e| panic!("case `{name}`: writing CONFIG: {e:?}"));
    let loaded_at = coarse_now_ns();
    let entry_of = |d: &Dev| {
        let mut entry = d.entry;
        if let Some(for_) = d.glass_for {
            entry.break_glass_until_ns = loaded_at + for_.as_nanos() as u64;
        }
        entry
    };
    if setup.rules.is_empty() {
        for dev in setup.devices.iter().filter(|d| !d.later) {
            maps.enroll(dev.addr, entry_of(dev))
                .unwrap_or_else(|e| panic!("case `{name}`: enrolling {}: {e:?}", dev.addr));
        }
    } else {
        let compiled: Vec<CompiledRule> = setup
            .rules
            .iter()
            .map(|(device, peer, rule)| CompiledRule {
                device: *device,
                peer: Prefix::host(*peer),
                rule: *rule,
            })
            .collect();
        let folded = fold_rules(&compiled)
            .unwrap_or_else(|e| panic!("case `{name}`: folding the rules: {e:?}"));
        let devices: Vec<(IpAddr, DeviceEntry)> = setup
            .devices
            .iter()
            .map(|d| {
                let mut entry = entry_of(d);
                if setup.rules.iter().any(|(device, _, _)| *device == d.addr) {
                    entry.flags |= DEVICE_HAS_RULES;
                }
                (d.addr, entry)
            })
            .collect();
        maps.install_policy(&devices, &folded)
            .unwrap_or_else(|e| panic!("case `{name}`: installing the policy: {e:?}"));
    }
    let mut entries: Vec<(FlowKey, BaselineEntry)> = setup
        .baseline
        .iter()
        .map(|k| {
            (
                *k,
                BaselineEntry {
                    learned_ns: 0,
                    origin: ORIGIN_POLICY,
                    _pad1: 0,
                    _pad2: 0,
                    window: 0,
                    schedule: [0; 3],
                },
            )
        })
        .collect();
    entries.extend(setup.scheduled.iter().map(|(k, hours)| {
        (
            *k,
            BaselineEntry {
                learned_ns: 0,
                origin: ORIGIN_LEARNED,
                _pad1: 0,
                _pad2: 0,
                window: 0,
                schedule: slots(hours),
            },
        )
    }));
    maps.insert_baseline(&entries)
        .unwrap_or_else(|e| panic!("case `{name}`: inserting the baseline: {e:?}"));
    if setup.ward {
        maps.set_interface_slot(TEST_RUN_IFINDEX, None, true)
            .unwrap_or_else(|e| panic!("case `{name}`: making the test run's leg a ward: {e:?}"));
    }
    let bindings: Vec<(IpAddr, [u8; 6], u64)> = setup
        .bindings
        .iter()
        .map(|(addr, mac, for_)| {
            let until = for_.map_or(0, |d| loaded_at + d.as_nanos() as u64);
            (*addr, *mac, until)
        })
        .collect();
    maps.put_mac_bindings(&bindings)
        .unwrap_or_else(|e| panic!("case `{name}`: binding MACs: {e:?}"));
    datapath
}

/// A schedule recording `hours`.
fn slots(hours: &[u8]) -> Schedule {
    let mut s = [0; schedule::SCHEDULE_WORDS];
    for &h in hours {
        schedule::record(&mut s, h);
    }
    s
}

/// The hours a schedule records.
fn hours_of(s: &Schedule) -> Vec<u8> {
    (0..schedule::HOURS_PER_WEEK)
        .filter(|h| schedule::has(s, *h))
        .collect()
}
/// The interface BPF_PROG_TEST_RUN runs frames on (loopback, without a context).
const TEST_RUN_IFINDEX: u32 = 1;

/// Runs one step and returns what did not match.
fn check_step(datapath: &Datapath, setup: &Setup, step: &Step) -> Vec<String> {
    let mut errors = Vec::new();
    let len = step.frame.len() as u64;
    let budget_counts = |addr: &IpAddr| {
        let slot = setup
            .slot_of(*addr)
            .expect("over_budget names an enrolled device");
        let reasons = must(datapath.maps().device_reasons(slot), "DEVICE_REASONS");
        let (sent, suppressed, lost) = must(datapath.maps().event_stats(), "EVENT_STATS");
        let reason = reasons
            .iter()
            .find(|(r, _)| *r == step.reason)
            .map_or(0, |(_, n)| *n);
        (reason, sent + suppressed + lost)
    };
    let budget_before: Vec<(u64, u64)> = step.over_budget.iter().map(budget_counts).collect();
    let before = snapshot(datapath, setup);
    let got = match datapath.test_run(&step.frame) {
        Ok(verdict) => verdict.action,
        Err(e) => return vec![format!("test run failed: {e:?}")],
    };
    let after = snapshot(datapath, setup);
    for (addr, before) in step.over_budget.iter().zip(&budget_before) {
        let after = budget_counts(addr);
        let moved = (after.0 - before.0, after.1 - before.1);
        if moved != (1, 1) {
            errors.push(format!(
                "{addr} beyond its budget: (its {:?} counter, events sent + suppressed + lost) \
                 moved {moved:?}, expected (1, 1)",
                step.reason
            ));
        }
    }

    if got != step.action {
        errors.push(format!("action {got:?}, expected {:?}", step.action));
    }

    // Exactly one path decided an IP packet that parsed; nothing else takes one.
    let paths = (
        after.paths.0.wrapping_sub(before.paths.0),
        after.paths.1.wrapping_sub(before.paths.1),
    );
    let snaplen = if setup.flags & CONFIG_CAPTURE_MAY_BE_CUT != 0 {
        Snaplen::CaptureMayBeCut
    } else {
        Snaplen::Strict
    };
    let parsed = parse_frame(step.frame.as_slice(), snaplen);
    let decided = parsed.has_ip
        && parsed.fault.is_none()
        && step.reason != Reason::NeighborDiscovery
        && step.reason != Reason::NotIp;
    let expected_paths: &[(u64, u64)] = match (decided, step.path) {
        (false, _) => &[(0, 0)],
        (true, Some(Path::Cached)) => &[(1, 0)],
        (true, Some(Path::Judged)) => &[(0, 1)],
        (true, None) => &[(1, 0), (0, 1)],
    };
    if !expected_paths.contains(&paths) {
        errors.push(format!(
            "paths (cached, judged) moved {paths:?}, expected one of {expected_paths:?}"
        ));
    }

    // Exactly one verdict counter, by one packet of this length; a frame of a capture
    // that may be cut is counted in the cut frames' block.
    let block = |cut: bool| if cut { "cut " } else { "" };
    let moved: Vec<String> = after
        .verdicts
        .iter()
        .filter_map(|(slot, c)| {
            let b = before.verdicts.get(slot).copied().unwrap_or_default();
            let d = (
                c.packets.wrapping_sub(b.packets),
                c.bytes.wrapping_sub(b.bytes),
            );
            (d != (0, 0)).then(|| {
                format!(
                    "{}{:?}/{:?} +{} pkt +{} B",
                    block(slot.0),
                    slot.1,
                    slot.2,
                    d.0,
                    d.1
                )
            })
        })
        .collect();
    let expected = format!(
        "{}{:?}/{:?} +1 pkt +{len} B",
        block(setup.flags & CONFIG_CAPTURE_MAY_BE_CUT != 0),
        step.action,
        step.reason
    );
    if moved != [expected.clone()] {
        errors.push(format!(
            "verdict counters moved {moved:?}, expected [{expected}]"
        ));
    }

    // Exactly one class counter.
    let moved: Vec<String> = after
        .classes
        .iter()
        .filter_map(|(class, c)| {
            let b = before.classes.get(class).copied().unwrap_or_default();
            let d = (
                c.packets.wrapping_sub(b.packets),
                c.bytes.wrapping_sub(b.bytes),
            );
            let name = FrameClass::try_from(*class).map_or("?", FrameClass::label);
            (d != (0, 0)).then(|| format!("{name} +{} pkt +{} B", d.0, d.1))
        })
        .collect();
    let expected = format!("{} +1 pkt +{len} B", step.class.label());
    if moved != [expected.clone()] {
        errors.push(format!(
            "class counters moved {moved:?}, expected [{expected}]"
        ));
    }

    // Device and unenrolled-address counters.
    let mut want: BTreeMap<IpAddr, StatCounts> = BTreeMap::new();
    if let Some((src, dst)) = step.ends {
        want.entry(src).or_default()[0] += 1;
        want.entry(src).or_default()[1] += len;
        want.entry(dst).or_default()[2] += 1;
        want.entry(dst).or_default()[3] += len;
    }
    for addr in &step.dropped {
        want.entry(*addr).or_default()[4] += 1;
    }
    for addr in &step.would_drop {
        want.entry(*addr).or_default()[5] += 1;
    }
    for addr in &step.break_glass {
        want.entry(*addr).or_default()[7] += 1;
    }
    for k in &step.learns {
        let addr = addr_of(&k.device);
        if setup.slot_of(addr).is_some() {
            want.entry(addr).or_default()[6] += 1;
        }
    }
    for dev in &setup.devices {
        let slot = dev.entry.slot;
        let got = delta(
            counts(&after.devices[&slot]),
            counts(&before.devices[&slot]),
        );
        let expected = want.get(&dev.addr).copied().unwrap_or_default();
        if got != expected {
            errors.push(format!(
                "device {} (slot {slot}) [sent pkt, sent B, recv pkt, recv B, dropped, would-drop, learned, break-glass] \
                 changed by {got:?}, expected {expected:?}",
                dev.addr
            ));
        }
        if expected[..4] != [0; 4] && after.devices[&slot].last_seen_ns == 0 {
            errors.push(format!("device {}: last_seen_ns not set", dev.addr));
        }
    }
    let addrs: BTreeSet<IpAddr> = before
        .unenrolled
        .keys()
        .chain(after.unenrolled.keys())
        .copied()
        .chain(want.keys().copied().filter(|a| setup.slot_of(*a).is_none()))
        .collect();
    for addr in addrs {
        if setup.slot_of(addr).is_some() {
            errors.push(format!("enrolled {addr} appears in UNENROLLED_STATS"));
            continue;
        }
        let zero = DeviceStats::default();
        let got = delta(
            counts(after.unenrolled.get(&addr).unwrap_or(&zero)),
            counts(before.unenrolled.get(&addr).unwrap_or(&zero)),
        );
        // An unenrolled address is counted on its own only beside another one; next to an
        // enrolled device it is that device's peer, counted in the device's flow.
        let both_unenrolled = step
            .ends
            .is_some_and(|(src, dst)| setup.slot_of(src).is_none() && setup.slot_of(dst).is_none());
        let expected = if both_unenrolled {
            want.get(&addr).copied().unwrap_or_default()
        } else {
            StatCounts::default()
        };
        if got != expected {
            errors.push(format!(
                "unenrolled {addr} [sent pkt, sent B, recv pkt, recv B, dropped, would-drop, learned, break-glass] \
                 changed by {got:?}, expected {expected:?}"
            ));
        }
    }

    // Baseline.
    let added: Vec<String> = after
        .baseline
        .difference(&before.baseline)
        .map(describe_key)
        .collect();
    let removed: Vec<String> = before
        .baseline
        .difference(&after.baseline)
        .map(describe_key)
        .collect();
    let mut expected: Vec<String> = step.learns.iter().map(describe_key).collect();
    expected.sort();
    let mut added_sorted = added.clone();
    added_sorted.sort();
    if added_sorted != expected {
        errors.push(format!("baseline gained {added:?}, expected {expected:?}"));
    }
    if !removed.is_empty() {
        errors.push(format!("baseline lost {removed:?}"));
    }
    if !step.schedules.is_empty() {
        let entries: BTreeMap<FlowKey, BaselineEntry> =
            must(datapath.maps().baseline(), "BASELINE")
                .into_iter()
                .collect();
        for (k, want) in &step.schedules {
            let got = entries.get(k).map(|e| hours_of(&e.schedule));
            if got.as_ref() != Some(want) {
                errors.push(format!(
                    "schedule of [{}] is {got:?}, expected hours {want:?}",
                    describe_key(k)
                ));
            }
        }
    }

    // The discovery table.
    if let Some(want) = &step.stations {
        let mut counted: Vec<([u8; 6], IpAddr)> = after
            .stations
            .iter()
            .filter(|(k, n)| before.stations.get(k).copied().unwrap_or_default() != **n)
            .map(|(k, _)| *k)
            .collect();
        let mut want = want.clone();
        counted.sort();
        want.sort();
        if counted != want {
            errors.push(format!(
                "discovery table entries (MAC, address) counted {counted:?}, expected {want:?}"
            ));
        }
    }

    // Flow entries.
    let mut want_flows: BTreeMap<(bool, FlowKey), [u64; 6]> = BTreeMap::new();
    if let (Some((src, dst)), Some((protocol, port, dir))) = (step.ends, step.flow) {
        let packet_dropped = step.action == Action::Drop;
        let src_key = key(src, dst, protocol, port, dir);
        let dst_key = key(dst, src, protocol, port, dir.reversed());
        let both_unenrolled = setup.slot_of(src).is_none() && setup.slot_of(dst).is_none();
        for (addr, k, counts) in [
            (src, src_key, [1, len, 0, 0]),
            (dst, dst_key, [0, 0, 1, len]),
        ] {
            // A flow's would-drop moves with its device's.
            let would_drop = u64::from(step.would_drop.contains(&addr));
            if both_unenrolled {
                let dropped = u64::from(packet_dropped);
                want_flows.insert(
                    (false, k),
                    [
                        counts[0], counts[1], counts[2], counts[3], dropped, would_drop,
                    ],
                );
                continue;
            }
            if setup.slot_of(addr).is_none() {
                // The unenrolled peer of an enrolled device keeps no flow of its own.
                continue;
            }
            if step.over_budget.contains(&addr) {
                // Beyond its device's budget a violation is counted in no flow table.
                continue;
            }
            // An enrolled side's flow lives in FLOWS once it exists there; a new flow that
            // violates the side's policy goes to the separate table.
            let violating = step.dropped.contains(&addr) || step.would_drop.contains(&addr);
            let in_flows = before.flows.contains_key(&(true, k)) || !violating;
            let dropped = u64::from(packet_dropped);
            want_flows.insert(
                (in_flows, k),
                [
                    counts[0], counts[1], counts[2], counts[3], dropped, would_drop,
                ],
            );
        }
    } else if step.flow.is_some() {
        errors.push("the case gives a flow but no ends".to_string());
    }
    let flow_keys: BTreeSet<(bool, FlowKey)> = before
        .flows
        .keys()
        .chain(after.flows.keys())
        .chain(want_flows.keys())
        .copied()
        .collect();
    for (enrolled, k) in flow_keys {
        let zero = FlowStats::default();
        let got = delta(
            flow_counts(after.flows.get(&(enrolled, k)).unwrap_or(&zero)),
            flow_counts(before.flows.get(&(enrolled, k)).unwrap_or(&zero)),
        );
        let expected = want_flows.get(&(enrolled, k)).copied().unwrap_or_default();
        if got != expected {
            let table = if enrolled {
                "FLOWS"
            } else {
                "UNENROLLED_FLOWS"
            };
            errors.push(format!(
                "{table} [{}] [sent pkt, sent B, recv pkt, recv B, dropped, would-drop] changed by {got:?}, expected {expected:?}",
                describe_key(&k)
            ));
        }
    }
    errors
}

/// Keeps the calling thread on the first CPU it may use.
fn pin_to_one_cpu() {
    // SAFETY: zeroed cpu_set_t values are valid; the calls read and write only them.
    unsafe {
        let mut allowed: libc::cpu_set_t = std::mem::zeroed();
        let size = std::mem::size_of::<libc::cpu_set_t>();
        assert_eq!(libc::sched_getaffinity(0, size, &mut allowed), 0);
        let cpu = (0..libc::CPU_SETSIZE as usize)
            .find(|c| libc::CPU_ISSET(*c, &allowed))
            .unwrap_or_else(|| panic!("no CPU to run on"));
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut one);
        assert_eq!(
            libc::sched_setaffinity(0, size, &one),
            0,
            "pinning the test thread to CPU {cpu}"
        );
    }
}

fn apply_change(datapath: &mut Datapath, case: &str, change: &Change) {
    match change {
        Change::Baseline(key) => {
            let entry = BaselineEntry {
                learned_ns: 0,
                origin: ORIGIN_POLICY,
                _pad1: 0,
                _pad2: 0,
                window: 0,
                schedule: [0; 3],
            };
            datapath
                .maps_mut()
                .insert_baseline(&[(*key, entry)])
                .unwrap_or_else(|e| panic!("case `{case}`: adding to the baseline: {e:?}"));
        }
        Change::Clock {
            hour_of_week,
            tolerance,
        } => set_clock(datapath, case, *hour_of_week, *tolerance),
        Change::PastMacAllow => {
            let deadline = datapath
                .maps()
                .mac_bindings()
                .unwrap_or_else(|e| panic!("case `{case}`: reading MAC_BINDINGS: {e:?}"))
                .iter()
                .map(|(_, _, until)| *until)
                .max()
                .filter(|d| *d != 0)
                .unwrap_or_else(|| panic!("case `{case}`: no timed MAC acceptance to wait for"));
            while coarse_now_ns() <= deadline + 20_000_000 {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Change::PastBreakGlass => {
            let devices = datapath
                .maps()
                .devices()
                .unwrap_or_else(|e| panic!("case `{case}`: reading DEVICES: {e:?}"));
            let deadline = devices
                .values()
                .map(|e| e.break_glass_until_ns)
                .filter(|d| *d != GLASS_IN_FORCE)
                .max()
                .unwrap_or_else(|| panic!("case `{case}`: no break-glass deadline to wait for"));
            // A tick past it, on the clock the datapath reads.
            while coarse_now_ns() <= deadline + 20_000_000 {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Change::Quiet => std::thread::sleep(Duration::from_millis(1_100)),
        Change::Frames(frames) => {
            for frame in frames {
                datapath
                    .test_run(frame)
                    .unwrap_or_else(|e| panic!("case `{case}`: running a burst frame: {e:?}"));
            }
        }
        Change::Enroll(dev) => {
            assert!(
                dev.later,
                "case `{case}`: {} is enrolled from the start",
                dev.addr
            );
            datapath
                .maps_mut()
                .enroll(dev.addr, dev.entry)
                .unwrap_or_else(|e| panic!("case `{case}`: enrolling {}: {e:?}", dev.addr));
        }
    }
}

fn set_clock(datapath: &mut Datapath, case: &str, hour_of_week: u8, tolerance: u8) {
    datapath
        .maps_mut()
        .set_schedule_clock(hour_of_week, tolerance)
        .unwrap_or_else(|e| panic!("case `{case}`: setting the hour of the week: {e:?}"));
}

fn set_mode(datapath: &mut Datapath, case: &str, mode: Mode) {
    datapath
        .maps_mut()
        .set_mode(mode)
        .unwrap_or_else(|e| panic!("case `{case}`: setting mode {mode:?}: {e:?}"));
}

/// (lower address, higher address, protocol) of every IP frame of a case: the keys of
/// all state the program keeps between frames include these.
fn footprint(case: &Case) -> BTreeSet<(IpAddr, IpAddr, u8)> {
    case.steps
        .iter()
        .flat_map(|step| {
            let burst = step.before.iter().flat_map(|change| match change {
                Change::Frames(frames) => frames.as_slice(),
                _ => &[],
            });
            std::iter::once(&step.frame).chain(burst)
        })
        .filter_map(|frame| {
            let parsed = parse_frame(frame.as_slice(), Snaplen::CaptureMayBeCut);
            parsed.has_ip.then(|| {
                let (a, b) = (addr_of(&parsed.ip.src), addr_of(&parsed.ip.dst));
                (a.min(b), a.max(b), parsed.ip.protocol)
            })
        })
        .collect()
}

/// A loaded datapath and the footprint of the cases run on it.
struct Bin {
    datapath: Datapath,
    footprint: BTreeSet<(IpAddr, IpAddr, u8)>,
}

/// Runs every case of a table, sharing datapaths as the module docs describe; panics
/// with every failure.
fn run_table(table: &str, cases: Vec<Case>) {
    // The decision cache is per CPU, as a flow's packets stay on one CPU (RSS): every
    // frame of a table runs on the same one, so "decided from the cache" is well defined.
    pin_to_one_cpu();
    let mut names = BTreeSet::new();
    for c in &cases {
        assert!(
            names.insert(c.name),
            "table {table}: case name `{}` used twice",
            c.name
        );
        assert!(
            !c.steps.is_empty(),
            "table {table}: case `{}` has no frame",
            c.name
        );
    }
    // Cases grouped by setup, in table order within a group.
    let mut groups: Vec<(&Setup, Vec<&Case>)> = Vec::new();
    for c in &cases {
        match groups.iter_mut().find(|(setup, _)| **setup == c.setup) {
            Some((_, members)) => members.push(c),
            None => groups.push((&c.setup, vec![c])),
        }
    }
    let mut failures = Vec::new();
    let mut frames = 0;
    let mut loads = 0;
    for (_, members) in groups {
        let mut bins: Vec<Bin> = Vec::new();
        for c in members {
            let footprint = footprint(c);
            let bin = match bins
                .iter()
                .position(|b| b.footprint.is_disjoint(&footprint))
            {
                Some(i) => &mut bins[i],
                None => {
                    loads += 1;
                    bins.push(Bin {
                        datapath: load(c),
                        footprint: BTreeSet::new(),
                    });
                    bins.last_mut().expect("just pushed")
                }
            };
            bin.footprint.extend(footprint);
            set_clock(
                &mut bin.datapath,
                c.name,
                c.setup.hour_of_week,
                c.setup.tolerance,
            );
            for (i, step) in c.steps.iter().enumerate() {
                frames += 1;
                if let Some(mode) = step.mode {
                    set_mode(&mut bin.datapath, c.name, mode);
                }
                for change in &step.before {
                    apply_change(&mut bin.datapath, c.name, change);
                }
                for error in check_step(&bin.datapath, &c.setup, step) {
                    failures.push(format!(
                        "case `{}` frame {}/{} ({} bytes): {error}",
                        c.name,
                        i + 1,
                        c.steps.len(),
                        step.frame.len()
                    ));
                }
            }
            if c.steps.iter().any(|s| s.mode.is_some()) {
                set_mode(&mut bin.datapath, c.name, c.setup.mode);
            }
        }
    }
    eprintln!(
        "table {table}: {} cases, {frames} frames, {loads} datapaths loaded",
        cases.len()
    );
    let failed_cases: BTreeSet<&str> = failures
        .iter()
        .filter_map(|f| f.split('`').nth(1))
        .collect();
    assert!(
        failures.is_empty(),
        "table {table}: {} of {} cases failed ({frames} frames):\n  {}",
        failed_cases.len(),
        cases.len(),
        failures.join("\n  ")
    );
}

// ---------------------------------------------------------------------------------------
// Tables
// ---------------------------------------------------------------------------------------

/// Every protocol and encapsulation the parser knows, in learn mode (and the non-IP ones
/// under enforce, where they must still pass).
#[test]
fn protocols_and_encapsulations() {
    run_table(
        "protocols_and_encapsulations",
        protocols_and_encapsulations_cases(),
    );
}

fn protocols_and_encapsulations_cases() -> Vec<Case> {
    let learn = || Setup::new(Mode::Learn).dev(ws()).dev(ws6());
    let enforce_all = || {
        Setup::new(Mode::Enforce)
            .dev(ws())
            .flags(CONFIG_UNENROLLED_DROP)
    };
    let v4 = FrameClass::Ipv4;
    let v6 = FrameClass::Ipv6;
    let cases = vec![
        case(
            "ipv4 tcp syn learns the server port",
            learn(),
            vec![
                pass(tcp(WS, 40000, SRV, 443, TCP_SYN), Reason::Learned, v4)
                    .between(WS, SRV)
                    .flow(IPPROTO_TCP, 443, Outbound)
                    .learns(key(WS, SRV, IPPROTO_TCP, 443, Outbound)),
            ],
        ),
        case(
            "ipv4 udp dns query learns port 53",
            learn(),
            vec![
                pass(udp(WS, 53124, DNS, 53), Reason::Learned, v4)
                    .between(WS, DNS)
                    .flow(IPPROTO_UDP, 53, Outbound)
                    .learns(key(WS, DNS, IPPROTO_UDP, 53, Outbound)),
            ],
        ),
        case(
            "ipv4 sctp init learns the lower port",
            learn(),
            vec![
                pass(
                    Ipv4::new(WS, SRV).frame(&Transport::sctp(40001, 2905)),
                    Reason::Learned,
                    v4,
                )
                .between(WS, SRV)
                .flow(IPPROTO_SCTP, 2905, Outbound)
                .learns(key(WS, SRV, IPPROTO_SCTP, 2905, Outbound)),
            ],
        ),
        case(
            "ipv4 icmp echo request learns type 8",
            learn(),
            vec![
                pass(
                    Ipv4::new(WS, SRV).frame(&Transport::icmp_echo(true, 1, 1)),
                    Reason::Learned,
                    v4,
                )
                .between(WS, SRV)
                .flow(IPPROTO_ICMP, 8, Outbound)
                .learns(key(WS, SRV, IPPROTO_ICMP, 8, Outbound)),
            ],
        ),
        case(
            "ipv4 other protocol (gre) is symmetric port 0",
            learn(),
            vec![
                pass(
                    Ipv4::new(WS, SRV).frame(&Transport::raw(47, &[0, 0, 0x08, 0])),
                    Reason::Learned,
                    v4,
                )
                .between(WS, SRV)
                .flow(47, 0, Symmetric)
                .learns(key(WS, SRV, 47, 0, Symmetric)),
            ],
        ),
        case(
            "ipv6 tcp syn learns the server port",
            learn(),
            vec![
                pass(
                    Ipv6::new(WS6, SRV6).frame(&Transport::tcp(40000, 443, TCP_SYN)),
                    Reason::Learned,
                    v6,
                )
                .between(WS6, SRV6)
                .flow(IPPROTO_TCP, 443, Outbound)
                .learns(key(WS6, SRV6, IPPROTO_TCP, 443, Outbound)),
            ],
        ),
        case(
            "ipv6 udp dns query learns port 53",
            learn(),
            vec![
                pass(
                    Ipv6::new(WS6, DNS6).frame(&Transport::udp(40123, 53, b"q")),
                    Reason::Learned,
                    v6,
                )
                .between(WS6, DNS6)
                .flow(IPPROTO_UDP, 53, Outbound)
                .learns(key(WS6, DNS6, IPPROTO_UDP, 53, Outbound)),
            ],
        ),
        case(
            "ipv6 sctp learns the lower port",
            learn(),
            vec![
                pass(
                    Ipv6::new(WS6, SRV6).frame(&Transport::sctp(40001, 3868)),
                    Reason::Learned,
                    v6,
                )
                .between(WS6, SRV6)
                .flow(IPPROTO_SCTP, 3868, Outbound)
                .learns(key(WS6, SRV6, IPPROTO_SCTP, 3868, Outbound)),
            ],
        ),
        case(
            "icmpv6 echo request learns type 128",
            learn(),
            vec![
                pass(
                    Ipv6::new(WS6, SRV6).frame(&Transport::icmpv6_echo(true, 9, 1)),
                    Reason::Learned,
                    v6,
                )
                .between(WS6, SRV6)
                .flow(IPPROTO_ICMPV6, 128, Outbound)
                .learns(key(WS6, SRV6, IPPROTO_ICMPV6, 128, Outbound)),
            ],
        ),
        case(
            "icmpv6 neighbor solicitation always passes, unjudged and unlearned",
            enforce_all(),
            vec![
                pass(
                    Ipv6::new(WS6, SRV6).frame(&Transport::icmpv6_neighbor_solicitation(SRV6)),
                    Reason::NeighborDiscovery,
                    v6,
                )
                .between(WS6, SRV6),
            ],
        ),
        case(
            "arp passes under enforce with unenrolled drop",
            enforce_all(),
            vec![pass(arp_frame(WS, SRV), Reason::NotIp, FrameClass::Arp)],
        ),
        case(
            "lldp passes under enforce",
            enforce_all(),
            vec![pass(lldp_frame(), Reason::NotIp, FrameClass::Lldp)],
        ),
        case(
            "802.3 llc (stp bpdu) passes under enforce",
            enforce_all(),
            vec![pass(stp_frame(), Reason::NotIp, FrameClass::Llc)],
        ),
        case(
            "other ethertype (eapol) passes under enforce",
            enforce_all(),
            vec![pass(
                padded(
                    &Ethernet::new().frame(ETHERTYPE_EAPOL, &[2, 1, 0, 0]),
                    ETH_MIN_FRAME,
                ),
                Reason::NotIp,
                FrameClass::OtherEthertype,
            )],
        ),
        case(
            "802.1q tagged arp passes",
            enforce_all(),
            vec![pass(
                {
                    let plain = arp_frame(WS, SRV);
                    Ethernet::new().dot1q(10).frame(ETHERTYPE_ARP, &plain[14..])
                },
                Reason::NotIp,
                FrameClass::Arp,
            )],
        ),
        case(
            "802.1q tagged ipv4 udp",
            learn(),
            vec![
                pass(
                    Ipv4::new(WS, DNS)
                        .frame_in(&Ethernet::new().dot1q(10), &Transport::udp(53124, 53, b"q")),
                    Reason::Learned,
                    v4,
                )
                .between(WS, DNS)
                .flow(IPPROTO_UDP, 53, Outbound)
                .learns(key(WS, DNS, IPPROTO_UDP, 53, Outbound)),
            ],
        ),
        case(
            "qinq 802.1ad + 802.1q ipv4 tcp",
            learn(),
            vec![
                pass(
                    Ipv4::new(WS, SRV).frame_in(
                        &Ethernet::new().dot1ad(100).dot1q(10),
                        &Transport::tcp(40000, 443, TCP_SYN),
                    ),
                    Reason::Learned,
                    v4,
                )
                .between(WS, SRV)
                .flow(IPPROTO_TCP, 443, Outbound)
                .learns(key(WS, SRV, IPPROTO_TCP, 443, Outbound)),
            ],
        ),
        case(
            "pre-standard qinq 0x9100 + 802.1q ipv6 udp",
            learn(),
            vec![
                pass(
                    Ipv6::new(WS6, DNS6).frame_in(
                        &Ethernet::new().tag(TPID_QINQ_OLD, 200).dot1q(20),
                        &Transport::udp(40123, 53, b"q"),
                    ),
                    Reason::Learned,
                    v6,
                )
                .between(WS6, DNS6)
                .flow(IPPROTO_UDP, 53, Outbound)
                .learns(key(WS6, DNS6, IPPROTO_UDP, 53, Outbound)),
            ],
        ),
        case(
            "three stacked vlan tags are bad_vlan, passed in learn",
            learn(),
            vec![pass(
                adv("three stacked vlan tags"),
                Reason::BadVlan,
                FrameClass::Malformed,
            )],
        ),
        case(
            "three stacked vlan tags are dropped under global enforce",
            Setup::new(Mode::Enforce).dev(ws()),
            vec![drop(
                adv("three stacked vlan tags around udp"),
                Reason::BadVlan,
                FrameClass::Malformed,
            )],
        ),
        case(
            "vlan tag cut short",
            learn(),
            vec![pass(
                adv("vlan tag cut short"),
                Reason::BadVlan,
                FrameClass::Malformed,
            )],
        ),
        case(
            "second vlan tag cut short",
            learn(),
            vec![pass(
                adv("second vlan tag cut short"),
                Reason::BadVlan,
                FrameClass::Malformed,
            )],
        ),
        case(
            "ipv4 with router-alert option",
            learn(),
            vec![
                pass(
                    Ipv4::new(WS, SRV)
                        .options(&[0x94, 0x04, 0, 0])
                        .frame(&Transport::udp(40000, 514, b"<13>syslog")),
                    Reason::Learned,
                    v4,
                )
                .between(WS, SRV)
                .flow(IPPROTO_UDP, 514, Outbound)
                .learns(key(WS, SRV, IPPROTO_UDP, 514, Outbound)),
            ],
        ),
        case(
            "ipv4 with 40 bytes of options (ihl 15)",
            learn(),
            vec![
                pass(
                    Ipv4::new(WS, SRV)
                        .options(&[1; 40])
                        .frame(&Transport::tcp(40000, 8443, TCP_SYN)),
                    Reason::Learned,
                    v4,
                )
                .between(WS, SRV)
                .flow(IPPROTO_TCP, 8443, Outbound)
                .learns(key(WS, SRV, IPPROTO_TCP, 8443, Outbound)),
            ],
        ),
        case(
            "ipv6 hop-by-hop, routing, destination options, ah, atomic fragment, tcp",
            learn(),
            vec![
                pass(
                    Ipv6::new(WS6, SRV6)
                        .ext(Ext::hop_by_hop())
                        .ext(Ext::Routing { len8: 2 })
                        .ext(Ext::DestOpts { len8: 1 })
                        .ext(Ext::ah())
                        .ext(Ext::fragment(0, false, 77))
                        .frame(&Transport::tcp(40000, 443, TCP_SYN)),
                    Reason::Learned,
                    v6,
                )
                .between(WS6, SRV6)
                .flow(IPPROTO_TCP, 443, Outbound)
                .learns(key(WS6, SRV6, IPPROTO_TCP, 443, Outbound)),
            ],
        ),
        case(
            "ipv6 chain of exactly MAX_IPV6_EXTENSIONS headers parses",
            learn(),
            vec![
                pass(
                    with_exts(Ipv6::new(WS6, SRV6), ext_chain(MAX_IPV6_EXTENSIONS))
                        .frame(&Transport::udp(40000, 514, b"x")),
                    Reason::Learned,
                    v6,
                )
                .between(WS6, SRV6)
                .flow(IPPROTO_UDP, 514, Outbound)
                .learns(key(WS6, SRV6, IPPROTO_UDP, 514, Outbound)),
            ],
        ),
        case(
            "ipv6 chain longer than MAX_IPV6_EXTENSIONS passes in learn",
            learn(),
            vec![
                pass(
                    adv("ipv6 chain one header longer than MAX_IPV6_EXTENSIONS"),
                    Reason::Ipv6ChainTooLong,
                    v6,
                )
                .between(WS6, SRV6),
            ],
        ),
        case(
            "ipv6 chain too long is dropped for an enforced device",
            Setup::new(Mode::Enforce).dev(ws6()),
            vec![
                drop(
                    adv("ipv6 chain two headers longer than MAX_IPV6_EXTENSIONS"),
                    Reason::Ipv6ChainTooLong,
                    v6,
                )
                .between(WS6, SRV6)
                .dropped(WS6),
            ],
        ),
        case(
            "ipv6 chain of ten extension headers is dropped for an enforced device",
            Setup::new(Mode::Enforce).dev(ws6()),
            vec![
                drop(
                    adv("ipv6 chain of ten extension headers"),
                    Reason::Ipv6ChainTooLong,
                    v6,
                )
                .between(WS6, SRV6)
                .dropped(WS6),
            ],
        ),
        case(
            "ipv6 headers past MAX_HEADER_OFFSET are chain_too_long",
            learn(),
            vec![
                pass(
                    adv("ipv6 headers past MAX_HEADER_OFFSET"),
                    Reason::Ipv6ChainTooLong,
                    v6,
                )
                .between(WS6, SRV6),
            ],
        ),
    ];
    cases
}

/// Truncations at every header boundary, broken lengths and versions, Ethernet padding,
/// and how malformed frames are judged in each mode.
#[test]
fn malformed_and_truncated() {
    run_table("malformed_and_truncated", malformed_and_truncated_cases());
}

fn malformed_and_truncated_cases() -> Vec<Case> {
    let learn = || Setup::new(Mode::Learn).dev(ws()).dev(ws6());
    let v4 = FrameClass::Ipv4;
    let v6 = FrameClass::Ipv6;
    let cases = vec![
        case(
            "ethernet header only, ipv4 ethertype",
            learn(),
            vec![pass(
                adv("ethernet header only, ipv4 ethertype"),
                Reason::MalformedIpv4,
                v4,
            )],
        ),
        case(
            "ethernet header only is dropped under global enforce",
            Setup::new(Mode::Enforce).dev(ws()),
            vec![drop(
                adv("ethernet header only, ipv4 ethertype"),
                Reason::MalformedIpv4,
                v4,
            )],
        ),
        case(
            "ethernet header only is passed under global audit",
            Setup::new(Mode::Audit).dev(ws()),
            vec![pass(
                adv("ethernet header only, ipv4 ethertype"),
                Reason::MalformedIpv4,
                v4,
            )],
        ),
        case(
            "ipv4 fixed header cut (19 of 20 bytes)",
            learn(),
            vec![pass(
                adv("ipv4 fixed header cut (19 of 20 bytes)"),
                Reason::MalformedIpv4,
                v4,
            )],
        ),
        case(
            "ipv4 cut inside the options",
            learn(),
            vec![
                pass(
                    adv("ipv4 cut inside the options"),
                    Reason::MalformedIpv4,
                    v4,
                )
                .between(WS, SRV),
            ],
        ),
        case(
            "ipv4 cut at the end of its header (strict: length beyond frame)",
            learn(),
            vec![
                pass(
                    adv("ipv4 cut at the end of its header"),
                    Reason::MalformedIpv4,
                    v4,
                )
                .between(WS, SRV),
            ],
        ),
        case(
            "ipv4 tcp cut inside tcp (strict: length beyond frame)",
            learn(),
            vec![pass(adv("ipv4 tcp cut inside tcp"), Reason::MalformedIpv4, v4).between(WS, SRV)],
        ),
        case(
            "ipv4 tcp cut inside tcp in a capture that may be cut",
            learn().flags(CONFIG_CAPTURE_MAY_BE_CUT),
            vec![
                pass(
                    adv("ipv4 tcp cut inside tcp"),
                    Reason::TruncatedTransport,
                    v4,
                )
                .between(WS, SRV),
            ],
        ),
        case(
            "ipv4 tcp payload cut in a capture that may be cut still parses",
            learn().flags(CONFIG_CAPTURE_MAY_BE_CUT),
            vec![
                pass(adv("ipv4 tcp payload cut"), Reason::Learned, v4)
                    .between(WS, SRV)
                    .flow(IPPROTO_TCP, 443, Outbound)
                    .learns(key(WS, SRV, IPPROTO_TCP, 443, Outbound)),
            ],
        ),
        case(
            "tcp header cut by the ipv4 total length",
            learn(),
            vec![
                pass(
                    adv("tcp header cut by the ipv4 total length"),
                    Reason::TruncatedTransport,
                    v4,
                )
                .between(WS, SRV),
            ],
        ),
        case(
            "udp header cut by the ipv4 total length",
            learn(),
            vec![
                pass(
                    adv("udp header cut by the ipv4 total length"),
                    Reason::TruncatedTransport,
                    v4,
                )
                .between(WS, DNS),
            ],
        ),
        case(
            "icmp header cut by the ipv4 total length",
            learn(),
            vec![
                pass(
                    adv("icmp header cut by the ipv4 total length"),
                    Reason::TruncatedTransport,
                    v4,
                )
                .between(WS, SRV),
            ],
        ),
        case(
            "sctp header cut by the ipv4 total length",
            learn(),
            vec![
                pass(
                    adv("sctp header cut by the ipv4 total length"),
                    Reason::TruncatedTransport,
                    v4,
                )
                .between(WS, SRV),
            ],
        ),
        case(
            "ipv6 fixed header cut (39 of 40 bytes)",
            learn(),
            vec![pass(
                adv("ipv6 fixed header cut (39 of 40 bytes)"),
                Reason::MalformedIpv6,
                v6,
            )],
        ),
        case(
            "ipv6 cut at the end of its fixed header (strict)",
            learn(),
            vec![
                pass(
                    adv("ipv6 cut at the end of its fixed header"),
                    Reason::MalformedIpv6,
                    v6,
                )
                .between(WS6, SRV6),
            ],
        ),
        case(
            "ipv6 hop-by-hop header longer than the payload",
            learn(),
            vec![
                pass(
                    adv("ipv6 hop-by-hop header longer than the payload"),
                    Reason::MalformedIpv6,
                    v6,
                )
                .between(WS6, SRV6),
            ],
        ),
        case(
            "ipv6 fragment header cut",
            learn(),
            vec![
                pass(adv("ipv6 fragment header cut"), Reason::MalformedIpv6, v6).between(WS6, SRV6),
            ],
        ),
        case(
            "ipv6 extension header cut in a capture that may be cut",
            learn().flags(CONFIG_CAPTURE_MAY_BE_CUT),
            vec![
                pass(adv("ipv6 extension header cut"), Reason::MalformedIpv6, v6)
                    .between(WS6, SRV6),
            ],
        ),
        case(
            "ipv6 tcp header cut by the payload length",
            learn(),
            vec![
                pass(
                    adv("ipv6 tcp header cut by the payload length"),
                    Reason::TruncatedTransport,
                    v6,
                )
                .between(WS6, SRV6),
            ],
        ),
        case(
            "ipv6 udp after an extension header, cut by the payload length",
            learn(),
            vec![
                pass(
                    adv("ipv6 udp after an extension header, cut by the payload length"),
                    Reason::TruncatedTransport,
                    v6,
                )
                .between(WS6, DNS6),
            ],
        ),
        case(
            "icmpv6 header cut by the payload length",
            learn(),
            vec![
                pass(
                    adv("icmpv6 header cut by the payload length"),
                    Reason::TruncatedTransport,
                    v6,
                )
                .between(WS6, SRV6),
            ],
        ),
        case(
            "ipv4 header length below 20 bytes (ihl 4)",
            learn(),
            vec![
                pass(
                    adv("ipv4 header length below 20 bytes (ihl 4)"),
                    Reason::MalformedIpv4,
                    v4,
                )
                .between(WS, SRV),
            ],
        ),
        case(
            "ipv4 header length beyond the total length (ihl 15, total 28)",
            learn(),
            vec![
                pass(
                    adv("ipv4 header length beyond the total length (ihl 15, total 28)"),
                    Reason::MalformedIpv4,
                    v4,
                )
                .between(WS, SRV),
            ],
        ),
        case(
            "ipv4 total length below the header length",
            learn(),
            vec![
                pass(
                    adv("ipv4 total length below the header length"),
                    Reason::MalformedIpv4,
                    v4,
                )
                .between(WS, SRV),
            ],
        ),
        case(
            "ipv4 total length beyond the frame",
            learn(),
            vec![
                pass(
                    adv("ipv4 total length beyond the frame"),
                    Reason::MalformedIpv4,
                    v4,
                )
                .between(WS, SRV),
            ],
        ),
        case(
            "ipv4 total length beyond the frame is fine in a capture that may be cut",
            learn().flags(CONFIG_CAPTURE_MAY_BE_CUT),
            vec![
                pass(
                    adv("ipv4 total length beyond the frame"),
                    Reason::Learned,
                    v4,
                )
                .between(WS, SRV)
                .flow(IPPROTO_UDP, 53, Outbound)
                .learns(key(WS, SRV, IPPROTO_UDP, 53, Outbound)),
            ],
        ),
        case(
            "ipv6 payload length beyond the frame",
            learn(),
            vec![
                pass(
                    adv("ipv6 payload length beyond the frame"),
                    Reason::MalformedIpv6,
                    v6,
                )
                .between(WS6, SRV6),
            ],
        ),
        case(
            "ip version 6 under the ipv4 ethertype",
            learn(),
            vec![pass(
                adv("ip version 6 under the ipv4 ethertype"),
                // No addresses: a header of another version has none there.
                Reason::MalformedIpv4,
                v4,
            )],
        ),
        case(
            "ip version 4 under the ipv6 ethertype",
            learn(),
            vec![pass(
                adv("ip version 4 under the ipv6 ethertype"),
                Reason::MalformedIpv6,
                v6,
            )],
        ),
        case(
            "ethernet padding after a short ipv4 udp packet is not malformed",
            learn(),
            vec![
                pass(
                    adv("ethernet padding after a short ipv4 udp packet"),
                    Reason::Learned,
                    v4,
                )
                .between(WS, DNS)
                .flow(IPPROTO_UDP, 53, Outbound)
                .learns(key(WS, DNS, IPPROTO_UDP, 53, Outbound)),
            ],
        ),
        case(
            "ethernet padding after a short tagged ipv4 icmp packet is not malformed",
            learn(),
            vec![
                pass(
                    adv("ethernet padding after a short tagged ipv4 icmp packet"),
                    Reason::Learned,
                    v4,
                )
                .between(WS, SRV)
                .flow(IPPROTO_ICMP, 8, Outbound)
                .learns(key(WS, SRV, IPPROTO_ICMP, 8, Outbound)),
            ],
        ),
        case(
            "trailing bytes after an ipv6 packet are not malformed",
            learn(),
            vec![
                pass(
                    adv("trailing bytes after an ipv6 packet"),
                    Reason::Learned,
                    v6,
                )
                .between(WS6, DNS6)
                .flow(IPPROTO_UDP, 53, Outbound)
                .learns(key(WS6, DNS6, IPPROTO_UDP, 53, Outbound)),
            ],
        ),
        case(
            "malformed ip in learn passes even with unenrolled drop set",
            Setup::new(Mode::Learn).flags(CONFIG_UNENROLLED_DROP),
            vec![pass(adv("ipv4 tcp cut inside tcp"), Reason::MalformedIpv4, v4).between(WS, SRV)],
        ),
        case(
            "malformed ip of a device overridden to enforce under global learn is dropped",
            Setup::new(Mode::Learn).dev(ws().mode(Mode::Enforce)),
            vec![
                drop(adv("tcp header of 4 bytes"), Reason::TruncatedTransport, v4)
                    .between(WS, SRV)
                    .dropped(WS),
            ],
        ),
        case(
            "malformed ip between two devices: only the enforced one is charged the drop",
            Setup::new(Mode::Learn)
                .dev(ws().mode(Mode::Audit))
                .dev(pacs().mode(Mode::Enforce)),
            vec![
                drop(
                    adv("ipv4 header length below 20 bytes (ihl 3) between two devices"),
                    Reason::MalformedIpv4,
                    v4,
                )
                .between(WS, PACS)
                .dropped(PACS),
            ],
        ),
        case(
            "malformed ip of a life-critical device under global enforce is spared",
            Setup::new(Mode::Enforce).dev(pump()),
            vec![
                pass(
                    adv("udp header of 2 bytes from the pump"),
                    Reason::TruncatedTransport,
                    v4,
                )
                .between(PUMP, SRV),
            ],
        ),
        case(
            "malformed ip between an enforced device and a spared life-critical one passes",
            Setup::new(Mode::Enforce).dev(ws()).dev(pump()),
            vec![
                pass(
                    adv("udp header of 2 bytes to the pump"),
                    Reason::TruncatedTransport,
                    v4,
                )
                .between(WS, PUMP),
            ],
        ),
        case(
            "malformed ip of a device in global audit passes",
            Setup::new(Mode::Audit).dev(ws()),
            vec![pass(adv("ipv4 total length 9"), Reason::MalformedIpv4, v4).between(WS, SRV)],
        ),
        case(
            "malformed ip between unenrolled hosts under enforce passes by default",
            Setup::new(Mode::Enforce).dev(ws()),
            vec![
                pass(
                    // IHL below 5: the addresses are still where they belong.
                    adv("ipv4 header length below 20 bytes between unenrolled hosts"),
                    Reason::MalformedIpv4,
                    v4,
                )
                .between(HOST_X, HOST_Y),
            ],
        ),
        case(
            "malformed ip between unenrolled hosts is dropped with unenrolled drop",
            Setup::new(Mode::Enforce)
                .dev(ws())
                .flags(CONFIG_UNENROLLED_DROP),
            vec![
                drop(
                    // IHL below 5: the addresses are still where they belong.
                    adv("ipv4 header length below 20 bytes between unenrolled hosts"),
                    Reason::MalformedIpv4,
                    v4,
                )
                .between(HOST_X, HOST_Y)
                .dropped(HOST_X)
                .dropped(HOST_Y),
            ],
        ),
    ];
    cases
}

/// First and later fragments, matched and unmatched, in every mode.
#[test]
fn fragments() {
    run_table("fragments", fragments_cases());
}

fn fragments_cases() -> Vec<Case> {
    let v4 = FrameClass::Ipv4;
    let v6 = FrameClass::Ipv6;
    let syslog = key(WS, SRV, IPPROTO_UDP, 514, Outbound);
    let cases = vec![
        case(
            "ipv4 first fragment learns, the later one follows it",
            Setup::new(Mode::Learn).dev(ws()),
            {
                let [first, later] = udp_fragments(WS, SRV, 514, 0x4242);
                vec![
                    pass(first, Reason::Learned, v4)
                        .between(WS, SRV)
                        .flow(IPPROTO_UDP, 514, Outbound)
                        .learns(syslog),
                    pass(later, Reason::Learned, v4).between(WS, SRV).flow(
                        IPPROTO_UDP,
                        514,
                        Outbound,
                    ),
                ]
            },
        ),
        case(
            "ipv4 later fragment without a first is dropped under enforce",
            Setup::new(Mode::Enforce).dev(ws()),
            {
                let later = adv("ipv4 later fragment without a first");
                vec![
                    drop(later, Reason::FragmentUnmatched, v4)
                        .between(WS, SRV)
                        .dropped(WS)
                        .flow(IPPROTO_UDP, 0, Symmetric),
                ]
            },
        ),
        case(
            "ipv4 later fragment without a first is a would-drop under audit",
            Setup::new(Mode::Audit).dev(ws()),
            {
                let later = adv("ipv4 later fragment without a first");
                vec![
                    pass(later, Reason::FragmentUnmatched, v4)
                        .between(WS, SRV)
                        .would_drop(WS)
                        .flow(IPPROTO_UDP, 0, Symmetric),
                ]
            },
        ),
        case(
            "ipv4 later fragment without a first passes in learn, unmatched, and learns nothing",
            Setup::new(Mode::Learn).dev(ws()),
            {
                let later = adv("ipv4 later fragment without a first");
                vec![
                    pass(later, Reason::FragmentUnmatched, v4)
                        .between(WS, SRV)
                        .would_drop(WS)
                        .flow(IPPROTO_UDP, 0, Symmetric),
                ]
            },
        ),
        case(
            "ipv4 later fragment whose first was dropped under enforce is dropped",
            Setup::new(Mode::Enforce).dev(ws()),
            {
                let [first, later] = udp_fragments(WS, SRV, 514, 0x4242);
                vec![
                    drop(first, Reason::NotInBaseline, v4)
                        .between(WS, SRV)
                        .dropped(WS)
                        .flow(IPPROTO_UDP, 514, Outbound),
                    drop(later, Reason::NotInBaseline, v4)
                        .between(WS, SRV)
                        .dropped(WS)
                        .flow(IPPROTO_UDP, 514, Outbound),
                ]
            },
        ),
        case(
            "ipv4 fragments of a baseline flow pass under enforce",
            Setup::new(Mode::Enforce).dev(ws()).baseline(syslog),
            {
                let [first, later] = udp_fragments(WS, SRV, 514, 0x4242);
                vec![
                    pass(first, Reason::InBaseline, v4).between(WS, SRV).flow(
                        IPPROTO_UDP,
                        514,
                        Outbound,
                    ),
                    pass(later, Reason::InBaseline, v4).between(WS, SRV).flow(
                        IPPROTO_UDP,
                        514,
                        Outbound,
                    ),
                ]
            },
        ),
        case(
            "ipv4 later fragment of another id is not covered by a first",
            Setup::new(Mode::Enforce).dev(ws()).baseline(syslog),
            {
                let [first, _] = udp_fragments(WS, SRV, 514, 1);
                let [_, later] = udp_fragments(WS, SRV, 514, 2);
                vec![
                    pass(first, Reason::InBaseline, v4).between(WS, SRV).flow(
                        IPPROTO_UDP,
                        514,
                        Outbound,
                    ),
                    drop(later, Reason::FragmentUnmatched, v4)
                        .between(WS, SRV)
                        .dropped(WS)
                        .flow(IPPROTO_UDP, 0, Symmetric),
                ]
            },
        ),
        case(
            "ipv4 fragments toward a device: the reply direction follows the first",
            Setup::new(Mode::Enforce)
                .dev(ws())
                .baseline(key(WS, DNS, IPPROTO_UDP, 53, Outbound)),
            {
                let [first, later] = Ipv4::new(DNS, WS)
                    .id(9)
                    .fragments(&Transport::udp(53, 53124, &[0x11; 64]), 24);
                vec![
                    pass(udp(WS, 53124, DNS, 53), Reason::InBaseline, v4)
                        .between(WS, DNS)
                        .flow(IPPROTO_UDP, 53, Outbound),
                    pass(first, Reason::InBaseline, v4).between(DNS, WS).flow(
                        IPPROTO_UDP,
                        53,
                        Inbound,
                    ),
                    pass(later, Reason::InBaseline, v4).between(DNS, WS).flow(
                        IPPROTO_UDP,
                        53,
                        Inbound,
                    ),
                ]
            },
        ),
        case(
            "ipv6 fragments of a baseline flow pass under enforce",
            Setup::new(Mode::Enforce).dev(ws6()).baseline(key(
                WS6,
                SRV6,
                IPPROTO_UDP,
                514,
                Outbound,
            )),
            {
                let [first, later] = Ipv6::new(WS6, SRV6).ext(Ext::hop_by_hop()).fragments(
                    &Transport::udp(40000, 514, &[0x33; 48]),
                    16,
                    0xdead_beef,
                );
                vec![
                    pass(first, Reason::InBaseline, v6).between(WS6, SRV6).flow(
                        IPPROTO_UDP,
                        514,
                        Outbound,
                    ),
                    pass(later, Reason::InBaseline, v6).between(WS6, SRV6).flow(
                        IPPROTO_UDP,
                        514,
                        Outbound,
                    ),
                ]
            },
        ),
        case(
            "ipv6 fragments with destination options after the fragment header pass under enforce",
            Setup::new(Mode::Enforce).dev(ws6()).baseline(key(
                WS6,
                SRV6,
                IPPROTO_UDP,
                514,
                Outbound,
            )),
            {
                let first =
                    adv("ipv6 first fragment with destination options after the fragment header");
                let later =
                    adv("ipv6 later fragment with destination options after the fragment header");
                vec![
                    pass(first, Reason::InBaseline, v6).between(WS6, SRV6).flow(
                        IPPROTO_UDP,
                        514,
                        Outbound,
                    ),
                    pass(later, Reason::InBaseline, v6).between(WS6, SRV6).flow(
                        IPPROTO_UDP,
                        514,
                        Outbound,
                    ),
                ]
            },
        ),
        case(
            "ipv6 first fragment with destination options learns, its later fragment follows",
            Setup::new(Mode::Learn).dev(ws6()),
            {
                let [first, later] = Ipv6::new(WS6, SRV6).fragments_after(
                    &[Ext::DestOpts { len8: 1 }],
                    &Transport::udp(40000, 514, &[0x45; 48]),
                    32,
                    0x0bad_f00e,
                );
                vec![
                    pass(first, Reason::Learned, v6)
                        .between(WS6, SRV6)
                        .flow(IPPROTO_UDP, 514, Outbound)
                        .learns(key(WS6, SRV6, IPPROTO_UDP, 514, Outbound)),
                    pass(later, Reason::Learned, v6).between(WS6, SRV6).flow(
                        IPPROTO_UDP,
                        514,
                        Outbound,
                    ),
                ]
            },
        ),
        case(
            "ipv6 later fragment with destination options after the fragment header, without a first, is dropped",
            Setup::new(Mode::Enforce).dev(ws6()).baseline(key(
                WS6,
                SRV6,
                IPPROTO_UDP,
                514,
                Outbound,
            )),
            {
                let later = adv(
                    "ipv6 later fragment with destination options after the fragment header, without a first",
                );
                vec![
                    drop(later, Reason::FragmentUnmatched, v6)
                        .between(WS6, SRV6)
                        .dropped(WS6)
                        .flow(IPPROTO_DSTOPTS, 0, Symmetric),
                ]
            },
        ),
        case(
            "ipv6 later fragment without a first is dropped under enforce",
            Setup::new(Mode::Enforce).dev(ws6()),
            {
                let later = adv("ipv6 later fragment without a first");
                vec![
                    drop(later, Reason::FragmentUnmatched, v6)
                        .between(WS6, SRV6)
                        .dropped(WS6)
                        .flow(IPPROTO_UDP, 0, Symmetric),
                ]
            },
        ),
        case(
            "ipv6 first fragment dropped under enforce takes its later fragment along",
            Setup::new(Mode::Enforce).dev(ws6()),
            {
                let [first, later] = Ipv6::new(WS6, SRV6).fragments(
                    &Transport::tcp_with_payload(40000, 22, TCP_SYN, &[0; 40]),
                    24,
                    6,
                );
                vec![
                    drop(first, Reason::NotInBaseline, v6)
                        .between(WS6, SRV6)
                        .dropped(WS6)
                        .flow(IPPROTO_TCP, 22, Outbound),
                    drop(later, Reason::NotInBaseline, v6)
                        .between(WS6, SRV6)
                        .dropped(WS6)
                        .flow(IPPROTO_TCP, 22, Outbound),
                ]
            },
        ),
        case(
            "later fragment between unenrolled hosts passes as unenrolled",
            Setup::new(Mode::Enforce).dev(ws()),
            {
                let later = adv("ipv4 later fragment without a first between unenrolled hosts");
                vec![
                    pass(later, Reason::Unenrolled, v4)
                        .between(HOST_X, HOST_Y)
                        .flow(IPPROTO_UDP, 0, Symmetric),
                ]
            },
        ),
        case(
            "later fragment of a life-critical device without a first is not dropped",
            Setup::new(Mode::Enforce).dev(pump()),
            {
                let later = adv("ipv4 later fragment without a first from the pump");
                vec![
                    pass(later, Reason::FragmentUnmatched, v4)
                        .between(PUMP, SRV)
                        .would_drop(PUMP)
                        .flow(IPPROTO_UDP, 0, Symmetric),
                ]
            },
        ),
        case(
            "later fragment without a first from an enforced device to a spared one passes",
            Setup::new(Mode::Enforce).dev(ws()).dev(pump()),
            {
                let later = adv("ipv4 later fragment without a first to the pump");
                vec![
                    pass(later, Reason::LifeCriticalSpared, v4)
                        .between(WS, PUMP)
                        .would_drop(WS)
                        .would_drop(PUMP)
                        .flow(IPPROTO_UDP, 0, Symmetric),
                ]
            },
        ),
    ];
    cases
}

/// Learn mode: which key a flow is learned under (the service port, never the client's).
#[test]
fn learning_service_ports() {
    run_table("learning_service_ports", learning_service_ports_cases());
}

fn learning_service_ports_cases() -> Vec<Case> {
    let learn = || Setup::new(Mode::Learn).dev(ws());
    let v4 = FrameClass::Ipv4;
    let cases = vec![
        case(
            "tcp handshake: syn learns the service port, syn-ack and ack reuse it",
            learn(),
            vec![
                pass(tcp(WS, 40000, SRV, 443, TCP_SYN), Reason::Learned, v4)
                    .between(WS, SRV)
                    .flow(IPPROTO_TCP, 443, Outbound)
                    .learns(key(WS, SRV, IPPROTO_TCP, 443, Outbound)),
                pass(
                    tcp(SRV, 443, WS, 40000, TCP_SYN | TCP_ACK),
                    Reason::Learned,
                    v4,
                )
                .between(SRV, WS)
                .flow(IPPROTO_TCP, 443, Inbound),
                pass(tcp(WS, 40000, SRV, 443, TCP_ACK), Reason::Learned, v4)
                    .between(WS, SRV)
                    .flow(IPPROTO_TCP, 443, Outbound),
            ],
        ),
        case(
            "tcp syn-ack seen first decides the server",
            learn(),
            vec![
                pass(
                    tcp(SRV, 8080, WS, 33000, TCP_SYN | TCP_ACK),
                    Reason::Learned,
                    v4,
                )
                .between(SRV, WS)
                .flow(IPPROTO_TCP, 8080, Inbound)
                .learns(key(WS, SRV, IPPROTO_TCP, 8080, Outbound)),
                pass(tcp(WS, 33000, SRV, 8080, TCP_ACK), Reason::Learned, v4)
                    .between(WS, SRV)
                    .flow(IPPROTO_TCP, 8080, Outbound),
            ],
        ),
        case(
            "tcp server port above the client port follows the handshake via conntrack",
            learn(),
            vec![
                pass(tcp(WS, 1000, SRV, 50000, TCP_SYN), Reason::Learned, v4)
                    .between(WS, SRV)
                    .flow(IPPROTO_TCP, 50000, Outbound)
                    .learns(key(WS, SRV, IPPROTO_TCP, 50000, Outbound)),
                pass(
                    tcp(SRV, 50000, WS, 1000, TCP_SYN | TCP_ACK),
                    Reason::Learned,
                    v4,
                )
                .between(SRV, WS)
                .flow(IPPROTO_TCP, 50000, Inbound),
                pass(tcp(WS, 1000, SRV, 50000, TCP_ACK), Reason::Learned, v4)
                    .between(WS, SRV)
                    .flow(IPPROTO_TCP, 50000, Outbound),
                pass(
                    Ipv4::new(SRV, WS).frame(&Transport::tcp_with_payload(
                        50000,
                        1000,
                        TCP_ACK | TCP_PSH,
                        b"data",
                    )),
                    Reason::Learned,
                    v4,
                )
                .between(SRV, WS)
                .flow(IPPROTO_TCP, 50000, Inbound),
            ],
        ),
        case(
            "tcp server on the device: inbound syn learns the device's own port",
            learn(),
            vec![
                pass(tcp(SRV, 1023, WS, 3389, TCP_SYN), Reason::Learned, v4)
                    .between(SRV, WS)
                    .flow(IPPROTO_TCP, 3389, Outbound)
                    .learns(key(WS, SRV, IPPROTO_TCP, 3389, Inbound)),
                pass(
                    tcp(WS, 3389, SRV, 1023, TCP_SYN | TCP_ACK),
                    Reason::Learned,
                    v4,
                )
                .between(WS, SRV)
                .flow(IPPROTO_TCP, 3389, Inbound),
                pass(tcp(WS, 3389, SRV, 1023, TCP_ACK), Reason::Learned, v4)
                    .between(WS, SRV)
                    .flow(IPPROTO_TCP, 3389, Inbound),
            ],
        ),
        case(
            "tcp established without a seen handshake uses the lower port",
            learn(),
            vec![
                pass(tcp(WS, 51000, SRV, 443, TCP_ACK), Reason::Learned, v4)
                    .between(WS, SRV)
                    .flow(IPPROTO_TCP, 443, Outbound)
                    .learns(key(WS, SRV, IPPROTO_TCP, 443, Outbound)),
            ],
        ),
        case(
            "udp request and reply share one key",
            learn(),
            vec![
                pass(udp(WS, 53124, DNS, 53), Reason::Learned, v4)
                    .between(WS, DNS)
                    .flow(IPPROTO_UDP, 53, Outbound)
                    .learns(key(WS, DNS, IPPROTO_UDP, 53, Outbound)),
                pass(udp(DNS, 53, WS, 53124), Reason::Learned, v4)
                    .between(DNS, WS)
                    .flow(IPPROTO_UDP, 53, Inbound),
                pass(udp(WS, 61000, DNS, 53), Reason::Learned, v4)
                    .between(WS, DNS)
                    .flow(IPPROTO_UDP, 53, Outbound),
            ],
        ),
        case(
            "udp reply seen without its request is learned as a request to the device's port",
            learn(),
            vec![
                pass(udp(DNS, 53, WS, 53124), Reason::Learned, v4)
                    .between(DNS, WS)
                    .flow(IPPROTO_UDP, 53124, Outbound)
                    .learns(key(WS, DNS, IPPROTO_UDP, 53124, Inbound)),
            ],
        ),
        case(
            "udp with equal ports is symmetric",
            learn(),
            vec![
                pass(udp(WS, 123, NTP, 123), Reason::Learned, v4)
                    .between(WS, NTP)
                    .flow(IPPROTO_UDP, 123, Symmetric)
                    .learns(key(WS, NTP, IPPROTO_UDP, 123, Symmetric)),
                pass(udp(NTP, 123, WS, 123), Reason::Learned, v4)
                    .between(NTP, WS)
                    .flow(IPPROTO_UDP, 123, Symmetric),
            ],
        ),
        case(
            "icmp echo request and reply share one key",
            learn(),
            vec![
                pass(
                    Ipv4::new(WS, SRV).frame(&Transport::icmp_echo(true, 7, 1)),
                    Reason::Learned,
                    v4,
                )
                .between(WS, SRV)
                .flow(IPPROTO_ICMP, 8, Outbound)
                .learns(key(WS, SRV, IPPROTO_ICMP, 8, Outbound)),
                pass(
                    Ipv4::new(SRV, WS).frame(&Transport::icmp_echo(false, 7, 1)),
                    Reason::Learned,
                    v4,
                )
                .between(SRV, WS)
                .flow(IPPROTO_ICMP, 8, Inbound),
            ],
        ),
        case(
            "icmpv6 echo request and reply share one key",
            Setup::new(Mode::Learn).dev(ws6()),
            vec![
                pass(
                    Ipv6::new(SRV6, WS6).frame(&Transport::icmpv6_echo(true, 7, 1)),
                    Reason::Learned,
                    FrameClass::Ipv6,
                )
                .between(SRV6, WS6)
                .flow(IPPROTO_ICMPV6, 128, Outbound)
                .learns(key(WS6, SRV6, IPPROTO_ICMPV6, 128, Inbound)),
                pass(
                    Ipv6::new(WS6, SRV6).frame(&Transport::icmpv6_echo(false, 7, 1)),
                    Reason::Learned,
                    FrameClass::Ipv6,
                )
                .between(WS6, SRV6)
                .flow(IPPROTO_ICMPV6, 128, Inbound),
            ],
        ),
        case(
            "two enrolled devices each learn their own side",
            learn().dev(pacs()),
            vec![
                pass(tcp(WS, 40000, PACS, 104, TCP_SYN), Reason::Learned, v4)
                    .between(WS, PACS)
                    .flow(IPPROTO_TCP, 104, Outbound)
                    .learns(key(WS, PACS, IPPROTO_TCP, 104, Outbound))
                    .learns(key(PACS, WS, IPPROTO_TCP, 104, Inbound)),
            ],
        ),
        case(
            "a flow already in the baseline is not learned again",
            learn().baseline(key(WS, DNS, IPPROTO_UDP, 53, Outbound)),
            vec![
                pass(udp(WS, 53124, DNS, 53), Reason::Learned, v4)
                    .between(WS, DNS)
                    .flow(IPPROTO_UDP, 53, Outbound),
            ],
        ),
        case(
            "judge-unenrolled learns for unenrolled addresses",
            Setup::new(Mode::Learn).flags(CONFIG_JUDGE_UNENROLLED),
            vec![
                pass(udp(HOST_X, 40000, HOST_Y, 514), Reason::Learned, v4)
                    .between(HOST_X, HOST_Y)
                    .flow(IPPROTO_UDP, 514, Outbound)
                    .learns(key(HOST_X, HOST_Y, IPPROTO_UDP, 514, Outbound))
                    .learns(key(HOST_Y, HOST_X, IPPROTO_UDP, 514, Inbound)),
            ],
        ),
        case(
            "unenrolled traffic in learn is counted, not learned",
            learn(),
            vec![
                pass(udp(HOST_X, 40000, HOST_Y, 514), Reason::Unenrolled, v4)
                    .between(HOST_X, HOST_Y)
                    .flow(IPPROTO_UDP, 514, Outbound),
            ],
        ),
        case(
            "config of another layout is ignored: learn, nothing dropped",
            Setup {
                layout_version: Some(LAYOUT_VERSION + 1),
                ..Setup::new(Mode::Enforce)
                    .dev(ws())
                    .flags(CONFIG_UNENROLLED_DROP)
            },
            vec![
                pass(tcp(WS, 40000, SRV, 22, TCP_SYN), Reason::Learned, v4)
                    .between(WS, SRV)
                    .flow(IPPROTO_TCP, 22, Outbound)
                    .learns(key(WS, SRV, IPPROTO_TCP, 22, Outbound)),
                pass(udp(HOST_X, 40000, HOST_Y, 514), Reason::Unenrolled, v4)
                    .between(HOST_X, HOST_Y)
                    .flow(IPPROTO_UDP, 514, Outbound),
            ],
        ),
    ];
    cases
}

/// Audit and enforce, per-device overrides, life-critical devices, unenrolled traffic.
#[test]
fn enforcement_modes() {
    run_table("enforcement_modes", enforcement_modes_cases());
}

fn enforcement_modes_cases() -> Vec<Case> {
    let v4 = FrameClass::Ipv4;
    let dns = key(WS, DNS, IPPROTO_UDP, 53, Outbound);
    let cases = vec![
        case(
            "enforce: baseline flow and its reply pass, new peer and new port drop",
            Setup::new(Mode::Enforce).dev(ws()).baseline(dns),
            vec![
                pass(udp(WS, 53124, DNS, 53), Reason::InBaseline, v4)
                    .between(WS, DNS)
                    .flow(IPPROTO_UDP, 53, Outbound),
                pass(udp(DNS, 53, WS, 53124), Reason::InBaseline, v4)
                    .between(DNS, WS)
                    .flow(IPPROTO_UDP, 53, Inbound),
                drop(udp(WS, 53124, DNS2, 53), Reason::NotInBaseline, v4)
                    .between(WS, DNS2)
                    .dropped(WS)
                    .flow(IPPROTO_UDP, 53, Outbound),
                drop(udp(WS, 53124, DNS, 853), Reason::NotInBaseline, v4)
                    .between(WS, DNS)
                    .dropped(WS)
                    .flow(IPPROTO_UDP, 853, Outbound),
                drop(
                    Ipv4::new(WS, DNS).frame(&Transport::tcp(40000, 53, TCP_SYN)),
                    Reason::NotInBaseline,
                    v4,
                )
                .between(WS, DNS)
                .dropped(WS)
                .flow(IPPROTO_TCP, 53, Outbound),
            ],
        ),
        case(
            "enforce: inbound to a device's baseline service passes, other inbound drops",
            Setup::new(Mode::Enforce)
                .dev(ws())
                .baseline(key(WS, SRV, IPPROTO_TCP, 3389, Inbound)),
            vec![
                pass(tcp(SRV, 50123, WS, 3389, TCP_SYN), Reason::InBaseline, v4)
                    .between(SRV, WS)
                    .flow(IPPROTO_TCP, 3389, Outbound),
                pass(
                    tcp(WS, 3389, SRV, 50123, TCP_SYN | TCP_ACK),
                    Reason::InBaseline,
                    v4,
                )
                .between(WS, SRV)
                .flow(IPPROTO_TCP, 3389, Inbound),
                drop(tcp(SRV, 50124, WS, 445, TCP_SYN), Reason::NotInBaseline, v4)
                    .between(SRV, WS)
                    .dropped(WS)
                    .flow(IPPROTO_TCP, 445, Outbound),
            ],
        ),
        case(
            "enforce: tcp with the server port above the client's passes via conntrack",
            Setup::new(Mode::Enforce).dev(ws()).baseline(key(
                WS,
                SRV,
                IPPROTO_TCP,
                50000,
                Outbound,
            )),
            vec![
                pass(tcp(WS, 1000, SRV, 50000, TCP_SYN), Reason::InBaseline, v4)
                    .between(WS, SRV)
                    .flow(IPPROTO_TCP, 50000, Outbound),
                pass(
                    tcp(SRV, 50000, WS, 1000, TCP_SYN | TCP_ACK),
                    Reason::InBaseline,
                    v4,
                )
                .between(SRV, WS)
                .flow(IPPROTO_TCP, 50000, Inbound),
                pass(tcp(WS, 1000, SRV, 50000, TCP_ACK), Reason::InBaseline, v4)
                    .between(WS, SRV)
                    .flow(IPPROTO_TCP, 50000, Outbound),
                pass(
                    tcp(SRV, 50000, WS, 1000, TCP_ACK | TCP_PSH),
                    Reason::InBaseline,
                    v4,
                )
                .between(SRV, WS)
                .flow(IPPROTO_TCP, 50000, Inbound),
                // Another connection whose handshake was not seen: the lower-port rule
                // makes port 1001 the service, which the baseline does not hold.
                drop(
                    tcp(WS, 1001, SRV, 50000, TCP_ACK),
                    Reason::NotInBaseline,
                    v4,
                )
                .between(WS, SRV)
                .dropped(WS)
                .flow(IPPROTO_TCP, 1001, Inbound),
            ],
        ),
        case(
            "enforce: icmp echo of a baseline flow passes both ways",
            Setup::new(Mode::Enforce)
                .dev(ws())
                .baseline(key(WS, SRV, IPPROTO_ICMP, 8, Outbound)),
            vec![
                pass(
                    Ipv4::new(WS, SRV).frame(&Transport::icmp_echo(true, 3, 1)),
                    Reason::InBaseline,
                    v4,
                )
                .between(WS, SRV)
                .flow(IPPROTO_ICMP, 8, Outbound),
                pass(
                    Ipv4::new(SRV, WS).frame(&Transport::icmp_echo(false, 3, 1)),
                    Reason::InBaseline,
                    v4,
                )
                .between(SRV, WS)
                .flow(IPPROTO_ICMP, 8, Inbound),
                drop(
                    Ipv4::new(SRV, WS).frame(&Transport::icmp_echo(true, 4, 1)),
                    Reason::NotInBaseline,
                    v4,
                )
                .between(SRV, WS)
                .dropped(WS)
                .flow(IPPROTO_ICMP, 8, Outbound),
            ],
        ),
        case(
            "enforce: udp from a baseline server's port 53 without a request is dropped",
            Setup::new(Mode::Enforce).dev(ws()).baseline(dns),
            vec![
                drop(
                    adv("udp from a server's port 53 without a request"),
                    Reason::NotInBaseline,
                    v4,
                )
                .between(DNS, WS)
                .dropped(WS)
                .flow(IPPROTO_UDP, 53999, Outbound),
            ],
        ),
        case(
            "enforce: a dns exchange passes, replies to other ports or from other servers do not",
            Setup::new(Mode::Enforce).dev(ws()).baseline(dns),
            vec![
                pass(udp(WS, 53124, DNS, 53), Reason::InBaseline, v4)
                    .between(WS, DNS)
                    .flow(IPPROTO_UDP, 53, Outbound),
                pass(udp(DNS, 53, WS, 53124), Reason::InBaseline, v4)
                    .between(DNS, WS)
                    .flow(IPPROTO_UDP, 53, Inbound),
                pass(udp(DNS, 53, WS, 53124), Reason::InBaseline, v4)
                    .between(DNS, WS)
                    .flow(IPPROTO_UDP, 53, Inbound),
                drop(udp(DNS, 53, WS, 53125), Reason::NotInBaseline, v4)
                    .between(DNS, WS)
                    .dropped(WS)
                    .flow(IPPROTO_UDP, 53125, Outbound),
                drop(udp(DNS2, 53, WS, 53124), Reason::NotInBaseline, v4)
                    .between(DNS2, WS)
                    .dropped(WS)
                    .flow(IPPROTO_UDP, 53124, Outbound),
            ],
        ),
        case(
            "enforce: a request outside the baseline is not remembered, its reply is judged as a request",
            Setup::new(Mode::Enforce)
                .dev(ws())
                .baseline(key(WS, DNS, IPPROTO_UDP, 53124, Inbound)),
            vec![
                drop(udp(WS, 53124, DNS, 53), Reason::NotInBaseline, v4)
                    .between(WS, DNS)
                    .dropped(WS)
                    .flow(IPPROTO_UDP, 53, Outbound),
                pass(udp(DNS, 53, WS, 53124), Reason::InBaseline, v4)
                    .between(DNS, WS)
                    .flow(IPPROTO_UDP, 53124, Outbound),
            ],
        ),
        case(
            "enforce: udp with equal ports (ntp) needs no request",
            Setup::new(Mode::Enforce)
                .dev(ws())
                .baseline(key(WS, NTP, IPPROTO_UDP, 123, Symmetric)),
            vec![
                pass(udp(NTP, 123, WS, 123), Reason::InBaseline, v4)
                    .between(NTP, WS)
                    .flow(IPPROTO_UDP, 123, Symmetric),
            ],
        ),
        case(
            "enforce: sctp from a baseline server's port passes only after a request",
            Setup::new(Mode::Enforce).dev(ws()).baseline(key(
                WS,
                SRV,
                IPPROTO_SCTP,
                2905,
                Outbound,
            )),
            vec![
                drop(
                    Ipv4::new(SRV, WS).frame(&Transport::sctp(2905, 40001)),
                    Reason::NotInBaseline,
                    v4,
                )
                .between(SRV, WS)
                .dropped(WS)
                .flow(IPPROTO_SCTP, 40001, Outbound),
                pass(
                    Ipv4::new(WS, SRV).frame(&Transport::sctp(40001, 2905)),
                    Reason::InBaseline,
                    v4,
                )
                .between(WS, SRV)
                .flow(IPPROTO_SCTP, 2905, Outbound),
                pass(
                    Ipv4::new(SRV, WS).frame(&Transport::sctp(2905, 40001)),
                    Reason::InBaseline,
                    v4,
                )
                .between(SRV, WS)
                .flow(IPPROTO_SCTP, 2905, Inbound),
            ],
        ),
        case(
            "a udp request seen while learning makes its reply pass once enforced",
            Setup::new(Mode::Learn).dev(ws()),
            vec![
                pass(udp(WS, 53124, DNS, 53), Reason::Learned, v4)
                    .between(WS, DNS)
                    .flow(IPPROTO_UDP, 53, Outbound)
                    .learns(dns),
                pass(udp(DNS, 53, WS, 53124), Reason::InBaseline, v4)
                    .in_mode(Mode::Enforce)
                    .between(DNS, WS)
                    .flow(IPPROTO_UDP, 53, Inbound),
                drop(udp(DNS, 53, WS, 53999), Reason::NotInBaseline, v4)
                    .between(DNS, WS)
                    .dropped(WS)
                    .flow(IPPROTO_UDP, 53999, Outbound),
            ],
        ),
        case(
            "audit: udp from a baseline server's port without a request is a would-drop",
            Setup::new(Mode::Audit).dev(ws()).baseline(dns),
            vec![
                pass(
                    adv("udp from a server's port 53 without a request"),
                    Reason::NotInBaseline,
                    v4,
                )
                .between(DNS, WS)
                .would_drop(WS)
                .flow(IPPROTO_UDP, 53999, Outbound),
            ],
        ),
        case(
            "audit: passes everything, counts would-drop",
            Setup::new(Mode::Audit).dev(ws()).baseline(dns),
            vec![
                pass(tcp(WS, 40000, SRV, 22, TCP_SYN), Reason::NotInBaseline, v4)
                    .between(WS, SRV)
                    .would_drop(WS)
                    .flow(IPPROTO_TCP, 22, Outbound),
                pass(udp(WS, 53124, DNS, 53), Reason::InBaseline, v4)
                    .between(WS, DNS)
                    .flow(IPPROTO_UDP, 53, Outbound),
            ],
        ),
        case(
            "device override enforce beats global learn",
            Setup::new(Mode::Learn).dev(ws().mode(Mode::Enforce)),
            vec![
                drop(tcp(WS, 40000, SRV, 443, TCP_SYN), Reason::NotInBaseline, v4)
                    .between(WS, SRV)
                    .dropped(WS)
                    .flow(IPPROTO_TCP, 443, Outbound),
            ],
        ),
        case(
            "device override learn beats global enforce",
            Setup::new(Mode::Enforce).dev(ws().mode(Mode::Learn)),
            vec![
                pass(tcp(WS, 40000, SRV, 443, TCP_SYN), Reason::Learned, v4)
                    .between(WS, SRV)
                    .flow(IPPROTO_TCP, 443, Outbound)
                    .learns(key(WS, SRV, IPPROTO_TCP, 443, Outbound)),
            ],
        ),
        case(
            "device override audit beats global enforce",
            Setup::new(Mode::Enforce).dev(ws().mode(Mode::Audit)),
            vec![
                pass(tcp(WS, 40000, SRV, 443, TCP_SYN), Reason::NotInBaseline, v4)
                    .between(WS, SRV)
                    .would_drop(WS)
                    .flow(IPPROTO_TCP, 443, Outbound),
            ],
        ),
        case(
            "life-critical device under global enforce is spared",
            Setup::new(Mode::Enforce).dev(pump()),
            vec![
                pass(
                    tcp(PUMP, 40000, SRV, 8080, TCP_SYN),
                    Reason::LifeCriticalSpared,
                    v4,
                )
                .between(PUMP, SRV)
                .would_drop(PUMP)
                .flow(IPPROTO_TCP, 8080, Outbound),
            ],
        ),
        case(
            "life-critical device as destination under global enforce is spared",
            Setup::new(Mode::Enforce).dev(pump()),
            vec![
                pass(udp(SRV, 40000, PUMP, 161), Reason::LifeCriticalSpared, v4)
                    .between(SRV, PUMP)
                    .would_drop(PUMP)
                    .flow(IPPROTO_UDP, 161, Outbound),
            ],
        ),
        case(
            "life-critical device with an enforce override but no confirmation is spared",
            Setup::new(Mode::Enforce).dev(pump().mode(Mode::Enforce)),
            vec![
                pass(
                    tcp(PUMP, 40000, SRV, 8080, TCP_SYN),
                    Reason::LifeCriticalSpared,
                    v4,
                )
                .between(PUMP, SRV)
                .would_drop(PUMP)
                .flow(IPPROTO_TCP, 8080, Outbound),
            ],
        ),
        case(
            "life-critical device with confirmed enforce override is enforced",
            Setup::new(Mode::Learn).dev(
                pump()
                    .mode(Mode::Enforce)
                    .flags(DEVICE_LIFE_CRITICAL | DEVICE_ENFORCE_CONFIRMED),
            ),
            vec![
                drop(
                    tcp(PUMP, 40000, SRV, 8080, TCP_SYN),
                    Reason::NotInBaseline,
                    v4,
                )
                .between(PUMP, SRV)
                .dropped(PUMP)
                .flow(IPPROTO_TCP, 8080, Outbound),
            ],
        ),
        case(
            "life-critical device's baseline flow passes without a would-drop",
            Setup::new(Mode::Enforce).dev(pump()).baseline(key(
                PUMP,
                SRV,
                IPPROTO_TCP,
                8080,
                Outbound,
            )),
            vec![
                pass(tcp(PUMP, 40000, SRV, 8080, TCP_SYN), Reason::InBaseline, v4)
                    .between(PUMP, SRV)
                    .flow(IPPROTO_TCP, 8080, Outbound),
            ],
        ),
        case(
            "life-critical device in global audit counts a would-drop",
            Setup::new(Mode::Audit).dev(pump()),
            vec![
                pass(
                    tcp(PUMP, 40000, SRV, 8080, TCP_SYN),
                    Reason::NotInBaseline,
                    v4,
                )
                .between(PUMP, SRV)
                .would_drop(PUMP)
                .flow(IPPROTO_TCP, 8080, Outbound),
            ],
        ),
        case(
            "life-critical device is spared from its enforced peer's policy",
            Setup::new(Mode::Enforce).dev(ws()).dev(pump()),
            vec![
                pass(
                    tcp(WS, 40000, PUMP, 8443, TCP_SYN),
                    Reason::LifeCriticalSpared,
                    v4,
                )
                .between(WS, PUMP)
                .would_drop(WS)
                .would_drop(PUMP)
                .flow(IPPROTO_TCP, 8443, Outbound),
            ],
        ),
        case(
            "life-critical device's baseline flow is spared from its enforced peer's policy",
            Setup::new(Mode::Enforce)
                .dev(ws())
                .dev(pump())
                .baseline(key(PUMP, WS, IPPROTO_TCP, 8443, Inbound)),
            vec![
                pass(
                    tcp(WS, 40000, PUMP, 8443, TCP_SYN),
                    Reason::LifeCriticalSpared,
                    v4,
                )
                .between(WS, PUMP)
                .would_drop(WS)
                .flow(IPPROTO_TCP, 8443, Outbound),
            ],
        ),
        case(
            "life-critical device in learn is not dropped by its peer's enforce override",
            Setup::new(Mode::Learn)
                .dev(ws().mode(Mode::Enforce))
                .dev(pump()),
            vec![
                pass(udp(PUMP, 40000, WS, 2575), Reason::LifeCriticalSpared, v4)
                    .between(PUMP, WS)
                    .would_drop(WS)
                    .flow(IPPROTO_UDP, 2575, Outbound)
                    .learns(key(PUMP, WS, IPPROTO_UDP, 2575, Outbound)),
            ],
        ),
        case(
            "life-critical device in audit is not dropped by its peer's enforce override",
            Setup::new(Mode::Audit)
                .dev(ws().mode(Mode::Enforce))
                .dev(pump()),
            vec![
                pass(udp(PUMP, 40000, WS, 2575), Reason::LifeCriticalSpared, v4)
                    .between(PUMP, WS)
                    .would_drop(WS)
                    .would_drop(PUMP)
                    .flow(IPPROTO_UDP, 2575, Outbound),
            ],
        ),
        case(
            "confirmed life-critical device is dropped by its peer's policy",
            Setup::new(Mode::Enforce)
                .dev(ws())
                .dev(
                    pump()
                        .mode(Mode::Enforce)
                        .flags(DEVICE_LIFE_CRITICAL | DEVICE_ENFORCE_CONFIRMED),
                )
                .baseline(key(PUMP, WS, IPPROTO_TCP, 8443, Inbound)),
            vec![
                drop(
                    tcp(WS, 40000, PUMP, 8443, TCP_SYN),
                    Reason::NotInBaseline,
                    v4,
                )
                .between(WS, PUMP)
                .dropped(WS)
                .flow(IPPROTO_TCP, 8443, Outbound),
            ],
        ),
        case(
            "unenrolled traffic under enforce passes by default",
            Setup::new(Mode::Enforce).dev(ws()),
            vec![
                pass(udp(HOST_X, 40000, HOST_Y, 514), Reason::Unenrolled, v4)
                    .between(HOST_X, HOST_Y)
                    .flow(IPPROTO_UDP, 514, Outbound),
            ],
        ),
        case(
            "unenrolled traffic under enforce is dropped with unenrolled drop",
            Setup::new(Mode::Enforce)
                .dev(ws())
                .flags(CONFIG_UNENROLLED_DROP),
            vec![
                drop(udp(HOST_X, 40000, HOST_Y, 514), Reason::Unenrolled, v4)
                    .between(HOST_X, HOST_Y)
                    .dropped(HOST_X)
                    .dropped(HOST_Y)
                    .flow(IPPROTO_UDP, 514, Outbound),
            ],
        ),
        case(
            "unenrolled drop leaves an enrolled device's baseline flow alone",
            Setup::new(Mode::Enforce)
                .dev(ws())
                .baseline(dns)
                .flags(CONFIG_UNENROLLED_DROP),
            vec![
                pass(udp(WS, 53124, DNS, 53), Reason::InBaseline, v4)
                    .between(WS, DNS)
                    .flow(IPPROTO_UDP, 53, Outbound),
            ],
        ),
        case(
            "unenrolled traffic in audit with unenrolled drop passes",
            Setup::new(Mode::Audit)
                .dev(ws())
                .flags(CONFIG_UNENROLLED_DROP),
            vec![
                pass(udp(HOST_X, 40000, HOST_Y, 514), Reason::Unenrolled, v4)
                    .between(HOST_X, HOST_Y)
                    .flow(IPPROTO_UDP, 514, Outbound),
            ],
        ),
        case(
            "judge-unenrolled enforces unenrolled addresses against the baseline",
            Setup::new(Mode::Enforce)
                .flags(CONFIG_JUDGE_UNENROLLED)
                .baseline(key(HOST_X, HOST_Y, IPPROTO_UDP, 514, Outbound))
                .baseline(key(HOST_Y, HOST_X, IPPROTO_UDP, 514, Inbound)),
            vec![
                pass(udp(HOST_X, 40000, HOST_Y, 514), Reason::InBaseline, v4)
                    .between(HOST_X, HOST_Y)
                    .flow(IPPROTO_UDP, 514, Outbound),
                drop(udp(HOST_X, 40000, HOST_Y, 515), Reason::NotInBaseline, v4)
                    .between(HOST_X, HOST_Y)
                    .dropped(HOST_X)
                    .dropped(HOST_Y)
                    .flow(IPPROTO_UDP, 515, Outbound),
            ],
        ),
        case(
            "two devices: the one that drops is charged the drop, the auditing one a would-drop",
            Setup::new(Mode::Learn)
                .dev(ws().mode(Mode::Audit))
                .dev(pacs().mode(Mode::Enforce)),
            vec![
                drop(
                    tcp(WS, 40000, PACS, 104, TCP_SYN),
                    Reason::NotInBaseline,
                    v4,
                )
                .between(WS, PACS)
                .would_drop(WS)
                .dropped(PACS)
                .flow(IPPROTO_TCP, 104, Outbound),
            ],
        ),
        case(
            "two devices: a flow both baselines hold passes",
            Setup::new(Mode::Enforce)
                .dev(ws())
                .dev(pacs())
                .baseline(key(WS, PACS, IPPROTO_TCP, 104, Outbound))
                .baseline(key(PACS, WS, IPPROTO_TCP, 104, Inbound)),
            vec![
                pass(tcp(WS, 40000, PACS, 104, TCP_SYN), Reason::InBaseline, v4)
                    .between(WS, PACS)
                    .flow(IPPROTO_TCP, 104, Outbound),
                pass(
                    tcp(PACS, 104, WS, 40000, TCP_SYN | TCP_ACK),
                    Reason::InBaseline,
                    v4,
                )
                .between(PACS, WS)
                .flow(IPPROTO_TCP, 104, Inbound),
            ],
        ),
        case(
            "two devices: missing from one side's baseline drops",
            Setup::new(Mode::Enforce)
                .dev(ws())
                .dev(pacs())
                .baseline(key(WS, PACS, IPPROTO_TCP, 104, Outbound)),
            vec![
                drop(
                    tcp(WS, 40000, PACS, 104, TCP_SYN),
                    Reason::NotInBaseline,
                    v4,
                )
                .between(WS, PACS)
                .dropped(PACS)
                .flow(IPPROTO_TCP, 104, Outbound),
            ],
        ),
    ];
    cases
}

/// Break-glass in force on either side of a packet lifts the drop, whichever side's policy
/// made it (the peer's baseline or deny rule); the peer's violation is still counted as
/// its would-drop, the packet as let through by the break-glass device's break-glass.
#[test]
fn break_glass() {
    run_table("break_glass", break_glass_cases());
}

fn break_glass_cases() -> Vec<Case> {
    let v4 = FrameClass::Ipv4;
    let glass = || ws().break_glass(GLASS_IN_FORCE);
    let deny_dicom = Rule {
        port_low: 104,
        port_high: 104,
        protocol: IPPROTO_TCP,
        direction: RULE_ANY,
        action: RULE_DENY,
        _pad: 0,
        rule_id: 0,
    };
    let cases = vec![
        case(
            "break-glass source reaches an enforced peer outside both baselines",
            Setup::new(Mode::Enforce).dev(glass()).dev(pacs()),
            vec![
                pass(tcp(WS, 40000, PACS, 104, TCP_SYN), Reason::BreakGlass, v4)
                    .between(WS, PACS)
                    .break_glass(WS)
                    .would_drop(PACS)
                    .flow(IPPROTO_TCP, 104, Outbound),
                pass(
                    tcp(PACS, 104, WS, 40000, TCP_SYN | TCP_ACK),
                    Reason::BreakGlass,
                    v4,
                )
                .between(PACS, WS)
                .break_glass(WS)
                .would_drop(PACS)
                .flow(IPPROTO_TCP, 104, Inbound),
            ],
        ),
        case(
            "break-glass destination is reached by an enforced peer outside both baselines",
            Setup::new(Mode::Enforce).dev(glass()).dev(pacs()),
            vec![
                pass(tcp(PACS, 40001, WS, 3389, TCP_SYN), Reason::BreakGlass, v4)
                    .between(PACS, WS)
                    .break_glass(WS)
                    .would_drop(PACS)
                    .flow(IPPROTO_TCP, 3389, Outbound),
                pass(
                    tcp(WS, 3389, PACS, 40001, TCP_SYN | TCP_ACK),
                    Reason::BreakGlass,
                    v4,
                )
                .between(WS, PACS)
                .break_glass(WS)
                .would_drop(PACS)
                .flow(IPPROTO_TCP, 3389, Inbound),
            ],
        ),
        case(
            "break-glass destination of udp from an enforced peer with an empty baseline",
            Setup::new(Mode::Enforce).dev(glass()).dev(pacs()),
            vec![
                pass(udp(PACS, 40002, WS, 161), Reason::BreakGlass, v4)
                    .between(PACS, WS)
                    .break_glass(WS)
                    .would_drop(PACS)
                    .flow(IPPROTO_UDP, 161, Outbound),
            ],
        ),
        case(
            "break-glass lifts an enforced peer's deny rule, counted as the peer's would-drop",
            Setup::new(Mode::Enforce)
                .dev(glass())
                .dev(pacs())
                .rule(PACS, WS, deny_dicom),
            vec![
                pass(tcp(WS, 40000, PACS, 104, TCP_SYN), Reason::BreakGlass, v4)
                    .between(WS, PACS)
                    .break_glass(WS)
                    .would_drop(PACS)
                    .flow(IPPROTO_TCP, 104, Outbound),
            ],
        ),
        case(
            "the deny rule drops again without break-glass",
            Setup::new(Mode::Enforce)
                .dev(ws())
                .dev(pacs())
                .baseline(key(WS, PACS, IPPROTO_TCP, 104, Outbound))
                .rule(PACS, WS, deny_dicom),
            vec![
                drop(tcp(WS, 40000, PACS, 104, TCP_SYN), Reason::PolicyDeny, v4)
                    .between(WS, PACS)
                    .dropped(PACS)
                    .flow(IPPROTO_TCP, 104, Outbound),
            ],
        ),
        case(
            "break-glass beside a peer in audit passes as the peer's would-drop",
            Setup::new(Mode::Enforce)
                .dev(glass())
                .dev(pacs().mode(Mode::Audit)),
            vec![
                pass(
                    tcp(WS, 40000, PACS, 104, TCP_SYN),
                    Reason::NotInBaseline,
                    v4,
                )
                .between(WS, PACS)
                .break_glass(WS)
                .would_drop(PACS)
                .flow(IPPROTO_TCP, 104, Outbound),
            ],
        ),
        case(
            "break-glass beside a spared life-critical peer stays life_critical_spared",
            Setup::new(Mode::Enforce).dev(glass()).dev(pump()),
            vec![
                pass(
                    tcp(WS, 40000, PUMP, 8443, TCP_SYN),
                    Reason::LifeCriticalSpared,
                    v4,
                )
                .between(WS, PUMP)
                .break_glass(WS)
                .would_drop(PUMP)
                .flow(IPPROTO_TCP, 8443, Outbound),
            ],
        ),
        case(
            "break-glass toward an unenrolled peer passes under unenrolled drop",
            Setup::new(Mode::Enforce)
                .dev(glass())
                .flags(CONFIG_UNENROLLED_DROP),
            vec![
                pass(udp(WS, 40000, SRV, 161), Reason::BreakGlass, v4)
                    .between(WS, SRV)
                    .break_glass(WS)
                    .flow(IPPROTO_UDP, 161, Outbound),
            ],
        ),
        case(
            "expired break-glass: both enforced sides drop again",
            Setup::new(Mode::Enforce)
                .dev(ws().break_glass(GLASS_EXPIRED))
                .dev(pacs()),
            vec![
                drop(
                    tcp(WS, 40000, PACS, 104, TCP_SYN),
                    Reason::NotInBaseline,
                    v4,
                )
                .between(WS, PACS)
                .dropped(WS)
                .dropped(PACS)
                .flow(IPPROTO_TCP, 104, Outbound),
            ],
        ),
    ];
    cases
}

// ---------------------------------------------------------------------------------------
// MAC binding: on a ward leg, a MAC-bound device's address from another MAC is a spoof
// ---------------------------------------------------------------------------------------

const PUMP_MAC: [u8; 6] = [0x00, 0x1b, 0x44, 0x11, 0x3a, 0xb7];
const WS_MAC: [u8; 6] = [0x00, 0x50, 0x56, 0x01, 0x02, 0x03];
const WS6_MAC: [u8; 6] = [0x00, 0x50, 0x56, 0x06, 0x06, 0x06];
const IMPOSTOR_MAC: [u8; 6] = [0x00, 0x1b, 0x44, 0x66, 0x66, 0x66];
const NEW_NIC_MAC: [u8; 6] = [0x00, 0x1b, 0x44, 0x77, 0x77, 0x77];

/// `frame` as sent from `mac`.
fn from_mac(mut frame: Vec<u8>, mac: [u8; 6]) -> Vec<u8> {
    frame[6..12].copy_from_slice(&mac);
    frame
}

fn bound(dev: Dev) -> Dev {
    let flags = dev.entry.flags | DEVICE_MAC_BOUND;
    dev.flags(flags)
}

/// A life-critical pump bound to its MAC, with its HTTPS server in its baseline, on a ward
/// leg under `mode`.
fn pump_ward(mode: Mode) -> Setup {
    Setup::new(mode)
        .ward()
        .dev(bound(pump()))
        .dev(pacs())
        .bind(PUMP, PUMP_MAC)
        .baseline(key(PUMP, SRV, IPPROTO_TCP, 443, Outbound))
}

#[test]
fn mac_binding() {
    run_table("mac_binding", mac_binding_cases());
}

fn mac_binding_cases() -> Vec<Case> {
    let v4 = FrameClass::Ipv4;
    let v6 = FrameClass::Ipv6;
    let https = |mac, sport, flags| from_mac(tcp(PUMP, sport, SRV, 443, flags), mac);
    let spoofed = |frame: Vec<u8>, dport: u16| {
        drop(frame, Reason::SpoofedSource, v4)
            .between(PUMP, SRV)
            .dropped(PUMP)
            .flow(IPPROTO_TCP, dport, Outbound)
    };
    vec![
        case(
            "right MAC: the pump reaches its server as its baseline allows",
            pump_ward(Mode::Enforce),
            vec![
                pass(https(PUMP_MAC, 40000, TCP_SYN), Reason::InBaseline, v4)
                    .between(PUMP, SRV)
                    .flow(IPPROTO_TCP, 443, Outbound),
            ],
        ),
        case(
            "wrong MAC on a ward leg: the life-critical pump's address to its own server is dropped",
            pump_ward(Mode::Enforce),
            vec![spoofed(https(IMPOSTOR_MAC, 40001, TCP_SYN), 443)],
        ),
        case(
            "wrong MAC on a ward leg: the pump's address to any other port is dropped",
            pump_ward(Mode::Enforce),
            vec![spoofed(
                from_mac(tcp(PUMP, 40002, SRV, 22, TCP_SYN), IMPOSTOR_MAC),
                22,
            )],
        ),
        case(
            "a cached decision for the right MAC does not pass the impostor's frame",
            pump_ward(Mode::Enforce),
            vec![
                pass(https(PUMP_MAC, 40003, TCP_ACK), Reason::InBaseline, v4)
                    .between(PUMP, SRV)
                    .flow(IPPROTO_TCP, 443, Outbound)
                    .judged(),
                pass(https(PUMP_MAC, 40003, TCP_ACK), Reason::InBaseline, v4)
                    .between(PUMP, SRV)
                    .flow(IPPROTO_TCP, 443, Outbound)
                    .cached(),
                spoofed(https(IMPOSTOR_MAC, 40003, TCP_ACK), 443).judged(),
                // Never cached: each one keeps the flow in SPOOFED_FLOWS.
                spoofed(https(IMPOSTOR_MAC, 40003, TCP_ACK), 443).judged(),
                // The device's own decision stayed in the cache.
                pass(https(PUMP_MAC, 40003, TCP_ACK), Reason::InBaseline, v4)
                    .between(PUMP, SRV)
                    .flow(IPPROTO_TCP, 443, Outbound)
                    .cached(),
            ],
        ),
        case(
            "wrong MAC toward an enrolled server: dropped by the spoof, the server's policy not asked",
            pump_ward(Mode::Enforce),
            vec![
                drop(
                    from_mac(tcp(PUMP, 40004, PACS, 104, TCP_SYN), IMPOSTOR_MAC),
                    Reason::SpoofedSource,
                    v4,
                )
                .between(PUMP, PACS)
                .dropped(PUMP)
                .flow(IPPROTO_TCP, 104, Outbound),
            ],
        ),
        case(
            "break-glass on the pump does not cover an impostor",
            Setup::new(Mode::Enforce)
                .ward()
                .dev(bound(pump().break_glass(GLASS_IN_FORCE)))
                .bind(PUMP, PUMP_MAC),
            vec![spoofed(https(IMPOSTOR_MAC, 40005, TCP_SYN), 443)],
        ),
        case(
            "a normal device's address from another MAC is dropped",
            Setup::new(Mode::Enforce)
                .ward()
                .dev(bound(ws()))
                .bind(WS, WS_MAC)
                .baseline(key(WS, SRV, IPPROTO_UDP, 161, Outbound)),
            vec![
                pass(
                    from_mac(udp(WS, 40006, SRV, 161), WS_MAC),
                    Reason::InBaseline,
                    v4,
                )
                .between(WS, SRV)
                .flow(IPPROTO_UDP, 161, Outbound),
                drop(
                    from_mac(udp(WS, 40007, SRV, 161), IMPOSTOR_MAC),
                    Reason::SpoofedSource,
                    v4,
                )
                .between(WS, SRV)
                .dropped(WS)
                .flow(IPPROTO_UDP, 161, Outbound),
            ],
        ),
        case(
            "audit: the impostor's frame passes as a would-drop",
            pump_ward(Mode::Audit),
            vec![
                pass(
                    https(IMPOSTOR_MAC, 40008, TCP_SYN),
                    Reason::SpoofedSource,
                    v4,
                )
                .between(PUMP, SRV)
                .would_drop(PUMP)
                .flow(IPPROTO_TCP, 443, Outbound),
            ],
        ),
        case(
            "learn: the impostor's frame is never learned, by the device or the server",
            pump_ward(Mode::Learn),
            vec![
                pass(
                    from_mac(tcp(PUMP, 40009, PACS, 104, TCP_SYN), IMPOSTOR_MAC),
                    Reason::SpoofedSource,
                    v4,
                )
                .between(PUMP, PACS)
                .would_drop(PUMP)
                .flow(IPPROTO_TCP, 104, Outbound),
                pass(
                    from_mac(tcp(PUMP, 40010, PACS, 104, TCP_SYN), PUMP_MAC),
                    Reason::Learned,
                    v4,
                )
                .between(PUMP, PACS)
                .flow(IPPROTO_TCP, 104, Outbound)
                .learns(key(PUMP, PACS, IPPROTO_TCP, 104, Outbound))
                .learns(key(PACS, PUMP, IPPROTO_TCP, 104, Inbound)),
            ],
        ),
        case(
            "learn: the server's reply to an impostor's request teaches neither side",
            pump_ward(Mode::Learn),
            vec![
                pass(
                    from_mac(tcp(PUMP, 40018, PACS, 104, TCP_SYN), IMPOSTOR_MAC),
                    Reason::SpoofedSource,
                    v4,
                )
                .between(PUMP, PACS)
                .would_drop(PUMP)
                .flow(IPPROTO_TCP, 104, Outbound),
                pass(
                    tcp(PACS, 104, PUMP, 40018, TCP_SYN | TCP_ACK),
                    Reason::SpoofedSource,
                    v4,
                )
                .between(PACS, PUMP)
                .would_drop(PACS)
                .would_drop(PUMP)
                .flow(IPPROTO_TCP, 104, Inbound)
                .judged(),
            ],
        ),
        case(
            "wrong MAC on a core leg: MACs are not judged there",
            Setup::new(Mode::Enforce)
                .dev(bound(pump()))
                .bind(PUMP, PUMP_MAC)
                .baseline(key(PUMP, SRV, IPPROTO_TCP, 443, Outbound)),
            vec![
                pass(https(IMPOSTOR_MAC, 40011, TCP_SYN), Reason::InBaseline, v4)
                    .between(PUMP, SRV)
                    .flow(IPPROTO_TCP, 443, Outbound),
            ],
        ),
        case(
            "a device without a MAC in the inventory is not bound",
            Setup::new(Mode::Enforce).ward().dev(ws()).baseline(key(
                WS,
                SRV,
                IPPROTO_UDP,
                162,
                Outbound,
            )),
            vec![
                pass(
                    from_mac(udp(WS, 40012, SRV, 162), IMPOSTOR_MAC),
                    Reason::InBaseline,
                    v4,
                )
                .between(WS, SRV)
                .flow(IPPROTO_UDP, 162, Outbound),
            ],
        ),
        case(
            "vlan-tagged: the right MAC passes, the wrong one is dropped",
            pump_ward(Mode::Enforce),
            vec![
                pass(
                    Ipv4::new(PUMP, SRV).frame_in(
                        &Ethernet::new().src(PUMP_MAC).dot1q(20),
                        &Transport::tcp(40013, 443, TCP_SYN),
                    ),
                    Reason::InBaseline,
                    v4,
                )
                .between(PUMP, SRV)
                .flow(IPPROTO_TCP, 443, Outbound),
                spoofed(
                    Ipv4::new(PUMP, SRV).frame_in(
                        &Ethernet::new().src(IMPOSTOR_MAC).dot1q(20),
                        &Transport::tcp(40014, 443, TCP_SYN),
                    ),
                    443,
                ),
            ],
        ),
        case(
            "ipv6: the right MAC passes, the wrong one is dropped",
            Setup::new(Mode::Enforce)
                .ward()
                .dev(bound(ws6()))
                .bind(WS6, WS6_MAC)
                .baseline(key(WS6, DNS6, IPPROTO_UDP, 53, Outbound)),
            vec![
                pass(
                    Ipv6::new(WS6, DNS6).frame_in(
                        &Ethernet::new().src(WS6_MAC),
                        &Transport::udp(40015, 53, b"q"),
                    ),
                    Reason::InBaseline,
                    v6,
                )
                .between(WS6, DNS6)
                .flow(IPPROTO_UDP, 53, Outbound),
                drop(
                    Ipv6::new(WS6, DNS6).frame_in(
                        &Ethernet::new().src(IMPOSTOR_MAC),
                        &Transport::udp(40016, 53, b"q"),
                    ),
                    Reason::SpoofedSource,
                    v6,
                )
                .between(WS6, DNS6)
                .dropped(WS6)
                .flow(IPPROTO_UDP, 53, Outbound),
            ],
        ),
        case(
            "a timed acceptance lets a replaced NIC through, cached no longer than it runs",
            pump_ward(Mode::Enforce).bind_for(PUMP, NEW_NIC_MAC, Duration::from_millis(400)),
            vec![
                pass(https(NEW_NIC_MAC, 40017, TCP_ACK), Reason::InBaseline, v4)
                    .between(PUMP, SRV)
                    .flow(IPPROTO_TCP, 443, Outbound)
                    .judged(),
                pass(https(NEW_NIC_MAC, 40017, TCP_ACK), Reason::InBaseline, v4)
                    .between(PUMP, SRV)
                    .flow(IPPROTO_TCP, 443, Outbound)
                    .cached(),
                spoofed(https(NEW_NIC_MAC, 40017, TCP_ACK), 443)
                    .after(Change::PastMacAllow)
                    .judged(),
            ],
        ),
    ]
}

// ---------------------------------------------------------------------------------------
// Neighbour claims: what ARP and neighbour advertisements teach the discovery table
// ---------------------------------------------------------------------------------------

const DISCOVERED_MAC: [u8; 6] = [0x00, 0x0c, 0x29, 0xaa, 0xbb, 0xcc];
/// A MAC-only device's IPv6 address (a new lease, or SLAAC).
const LEASED6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 3, 0, 0, 0, 0x77);
const LINK_LOCAL6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0x250, 0x56ff, 0xfe06, 0x606);
const ALL_NODES6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// An ARP reply from `eth_src` saying `sender` is at `sender_mac`.
fn arp_reply(eth_src: [u8; 6], sender_mac: [u8; 6], sender: Ipv4Addr) -> Vec<u8> {
    arp_frame_from(
        eth_src,
        &arp_packet(2, sender_mac, sender, [0x02, 0, 0, 0, 0, 0xfe], HOST_Y),
    )
}

/// An unsolicited neighbour advertisement from `eth_src` (and `src`) for `target`, with a
/// target link-layer option when given.
fn advertisement(
    eth_src: [u8; 6],
    src: Ipv6Addr,
    target: Ipv6Addr,
    option: Option<[u8; 6]>,
) -> Vec<u8> {
    let mut ip = Ipv6::new(src, ALL_NODES6);
    ip.hop_limit = 255;
    ip.frame_in(
        &Ethernet::new().src(eth_src),
        &Transport::icmpv6_neighbor_advertisement(target, option),
    )
}

/// ARP and neighbour advertisements on a ward leg count in the discovery table as a
/// source address does (the address a frame's own MAC claims, when it is no enrolled
/// device's or an impostor's), and keep passing unjudged.
#[test]
fn neighbor_claims() {
    run_table("neighbor_claims", neighbor_claims_cases());
}

fn neighbor_claims_cases() -> Vec<Case> {
    let arp = FrameClass::Arp;
    let v6 = FrameClass::Ipv6;
    let not_ip = Reason::NotIp;
    let nd = Reason::NeighborDiscovery;
    let ward = || Setup::new(Mode::Enforce).ward();
    let leased = bound(Dev::new(LEASED6, SLOT_WS6)).later();
    let dns_from = |mac: [u8; 6], sport: u16| {
        Ipv6::new(LEASED6, DNS6)
            .frame_in(&Ethernet::new().src(mac), &Transport::udp(sport, 53, b"q"))
    };
    vec![
        case(
            "an ARP reply on a ward leg records its sender's MAC and address",
            ward(),
            vec![
                pass(
                    arp_reply(DISCOVERED_MAC, DISCOVERED_MAC, HOST_X),
                    not_ip,
                    arp,
                )
                .station(DISCOVERED_MAC, HOST_X),
            ],
        ),
        case(
            "an ARP request records its sender too",
            ward(),
            vec![
                pass(
                    arp_frame_from(
                        DISCOVERED_MAC,
                        &arp_packet(1, DISCOVERED_MAC, HOST_X, [0; 6], HOST_Y),
                    ),
                    not_ip,
                    arp,
                )
                .station(DISCOVERED_MAC, HOST_X),
            ],
        ),
        case(
            "a gratuitous ARP whose sender MAC is not the frame's source is not recorded",
            ward(),
            vec![
                pass(
                    arp_frame_from(
                        DISCOVERED_MAC,
                        &arp_packet(2, IMPOSTOR_MAC, HOST_X, [0xff; 6], HOST_X),
                    ),
                    not_ip,
                    arp,
                )
                .no_station(),
            ],
        ),
        case(
            "an ARP probe (sender 0.0.0.0) claims nothing",
            ward(),
            vec![
                pass(
                    arp_frame_from(
                        DISCOVERED_MAC,
                        &arp_packet(1, DISCOVERED_MAC, Ipv4Addr::UNSPECIFIED, [0; 6], HOST_X),
                    ),
                    not_ip,
                    arp,
                )
                .no_station(),
            ],
        ),
        case(
            "a MAC-bound device's own ARP is not recorded, an impostor's for its address is; both pass",
            pump_ward(Mode::Enforce),
            vec![
                pass(arp_reply(PUMP_MAC, PUMP_MAC, PUMP), not_ip, arp).no_station(),
                pass(arp_reply(IMPOSTOR_MAC, IMPOSTOR_MAC, PUMP), not_ip, arp)
                    .station(IMPOSTOR_MAC, PUMP),
            ],
        ),
        case(
            "an enrolled device without a MAC binding is not recorded",
            ward().dev(ws()),
            vec![pass(arp_reply(DISCOVERED_MAC, DISCOVERED_MAC, WS), not_ip, arp).no_station()],
        ),
        case(
            "a neighbour advertisement on a ward leg records its target for the frame's MAC",
            ward(),
            vec![
                pass(
                    advertisement(DISCOVERED_MAC, LINK_LOCAL6, LEASED6, Some(DISCOVERED_MAC)),
                    nd,
                    v6,
                )
                .between(LINK_LOCAL6, ALL_NODES6)
                .station(DISCOVERED_MAC, LEASED6),
            ],
        ),
        case(
            "a neighbour advertisement whose option names another MAC is not recorded",
            ward(),
            vec![
                pass(
                    advertisement(DISCOVERED_MAC, LINK_LOCAL6, LEASED6, Some(IMPOSTOR_MAC)),
                    nd,
                    v6,
                )
                .between(LINK_LOCAL6, ALL_NODES6)
                .no_station(),
            ],
        ),
        case(
            "on a core leg, ARP and neighbour advertisements record nothing",
            Setup::new(Mode::Enforce),
            vec![
                pass(
                    arp_reply(DISCOVERED_MAC, DISCOVERED_MAC, HOST_X),
                    not_ip,
                    arp,
                )
                .no_station(),
                pass(
                    advertisement(DISCOVERED_MAC, LINK_LOCAL6, LEASED6, Some(DISCOVERED_MAC)),
                    nd,
                    v6,
                )
                .between(LINK_LOCAL6, ALL_NODES6)
                .no_station(),
            ],
        ),
        case(
            "ipv6 with the address learned from NDP: bound to the MAC that advertised it",
            ward()
                .dev(leased.clone())
                .bind(LEASED6, WS6_MAC)
                .baseline(key(LEASED6, DNS6, IPPROTO_UDP, 53, Outbound)),
            vec![
                // Not enrolled yet: its advertisement is what the controller learns from.
                pass(
                    advertisement(WS6_MAC, LINK_LOCAL6, LEASED6, Some(WS6_MAC)),
                    nd,
                    v6,
                )
                .between(LINK_LOCAL6, ALL_NODES6)
                .station(WS6_MAC, LEASED6),
                // Enrolled there and bound to that MAC, as the controller does.
                pass(dns_from(WS6_MAC, 40020), Reason::InBaseline, v6)
                    .after(Change::Enroll(leased))
                    .between(LEASED6, DNS6)
                    .flow(IPPROTO_UDP, 53, Outbound)
                    .no_station(),
                drop(dns_from(IMPOSTOR_MAC, 40021), Reason::SpoofedSource, v6)
                    .between(LEASED6, DNS6)
                    .dropped(LEASED6)
                    .flow(IPPROTO_UDP, 53, Outbound)
                    .station(IMPOSTOR_MAC, LEASED6),
                // Its own advertisements are its own; an impostor's claim is recorded.
                pass(advertisement(WS6_MAC, LEASED6, LEASED6, None), nd, v6)
                    .between(LEASED6, ALL_NODES6)
                    .no_station(),
                pass(
                    advertisement(IMPOSTOR_MAC, LINK_LOCAL6, LEASED6, Some(IMPOSTOR_MAC)),
                    nd,
                    v6,
                )
                .between(LINK_LOCAL6, ALL_NODES6)
                .station(IMPOSTOR_MAC, LEASED6),
            ],
        ),
    ]
}

/// A spoofed frame is counted under `spoofed_source` for its device, and its event names
/// the MAC it came from.
#[test]
fn a_spoofed_frame_is_counted_for_its_device_and_its_event_names_the_mac() {
    let case = case(
        "spoof counted",
        pump_ward(Mode::Enforce),
        vec![pass(Vec::new(), Reason::SpoofedSource, FrameClass::Ipv4)],
    );
    let mut datapath = load(&case);
    let mut ring = datapath
        .maps_mut()
        .take_events()
        .unwrap_or_else(|e| panic!("taking the event ring: {e:?}"));
    let frame = from_mac(tcp(PUMP, 40100, SRV, 22, TCP_SYN), IMPOSTOR_MAC);
    let verdict = datapath
        .test_run(&frame)
        .unwrap_or_else(|e| panic!("test run: {e:?}"));
    assert_eq!(verdict.action, Action::Drop);
    let reasons = datapath
        .maps()
        .device_reasons(SLOT_PUMP)
        .unwrap_or_else(|e| panic!("reading DEVICE_REASONS: {e:?}"));
    assert_eq!(
        reasons,
        vec![(Reason::SpoofedSource, 1)],
        "the pump's reasons"
    );
    let item = ring
        .next()
        .unwrap_or_else(|| panic!("no event for the spoofed frame"));
    assert!(item.len() >= std::mem::size_of::<monitor_common::maps::Event>());
    // SAFETY: the program writes whole `Event`s; read unaligned from the ring.
    let event: monitor_common::maps::Event =
        unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
    assert_eq!(event.reason, Reason::SpoofedSource as u8);
    assert_eq!(event.action, Action::Drop as u8);
    assert_eq!(event.slot, SLOT_PUMP);
    assert_eq!(event.device, addr_key(PUMP.into()));
    assert_eq!(
        event.source_mac, IMPOSTOR_MAC,
        "the event names the impostor's MAC"
    );
}

/// The per-CPU decision cache: what is decided by one lookup, what is judged in full, and
/// every change that must make a cached decision stale (a baseline entry added, a mode
/// command, break-glass expiring with no controller). Charges are the same either way:
/// every row's counters are checked whichever path decided it.
#[test]
fn decision_cache() {
    run_table("decision_cache", decision_cache_cases());
}

fn decision_cache_cases() -> Vec<Case> {
    let v4 = FrameClass::Ipv4;
    let deny_8443 = Rule {
        port_low: 8443,
        port_high: 8443,
        protocol: IPPROTO_TCP,
        direction: RULE_ANY,
        action: RULE_DENY,
        _pad: 0,
        rule_id: 0,
    };
    let violation = |sport: u16, dport: u16| {
        drop(udp(WS, sport, SRV, dport), Reason::NotInBaseline, v4)
            .between(WS, SRV)
            .dropped(WS)
            .flow(IPPROTO_UDP, dport, Outbound)
    };
    let mut scan = Vec::new();
    for port in 1000..1016 {
        scan.push(
            drop(
                tcp(WS, 40000, SRV, port, TCP_SYN),
                Reason::NotInBaseline,
                v4,
            )
            .between(WS, SRV)
            .dropped(WS)
            .flow(IPPROTO_TCP, port, Outbound)
            .judged(),
        );
    }
    for port in [2000, 2001, 2002, 3000, 3001] {
        scan.push(violation(40000, port).judged());
    }
    for host in 1..8 {
        let target = std::net::Ipv4Addr::new(10, 9, 0, host);
        scan.push(
            drop(
                tcp(WS, 40001, target, 22, TCP_ACK),
                Reason::NotInBaseline,
                v4,
            )
            .between(WS, target)
            .dropped(WS)
            .flow(IPPROTO_TCP, 22, Outbound)
            .judged(),
        );
    }
    scan.push(
        pass(tcp(WS, 40002, SRV, 443, TCP_ACK), Reason::InBaseline, v4)
            .between(WS, SRV)
            .flow(IPPROTO_TCP, 443, Outbound)
            .judged(),
    );
    // A burst of new violating flows that spends the device's budget of flow entries at
    // once, in a window of its own.
    let budget = VIOLATING_FLOWS_PER_DEVICE_PER_SECOND as u16;
    let spend = |first_port: u16| {
        Change::Frames(
            (0..budget)
                .map(|i| udp(WS, 40000, SRV, first_port + i))
                .collect(),
        )
    };
    let spend_from = |first_port: u16, mac: [u8; 6]| {
        Change::Frames(
            (0..budget)
                .map(|i| from_mac(udp(WS, 40000, SRV, first_port + i), mac))
                .collect(),
        )
    };
    const FLOOD_SOURCE: std::net::Ipv4Addr = std::net::Ipv4Addr::new(100, 64, 9, 77);
    const FLOOD_MAC: [u8; 6] = [0x02, 0x66, 0, 0, 0, 0x77];
    let allow_udp_7500 = Rule {
        port_low: 7500,
        port_high: 7500,
        protocol: IPPROTO_UDP,
        direction: RULE_ANY,
        action: monitor_common::maps::RULE_ALLOW,
        _pad: 0,
        rule_id: 0,
    };
    let spoofed_burst = |third: u8| {
        Change::Frames(
            (0..budget)
                .map(|i| {
                    let spoofed = std::net::Ipv4Addr::new(100, 64, third, i as u8);
                    udp(spoofed, 40000, WS, 9999)
                })
                .collect(),
        )
    };
    let flood_beyond = |host: u8| {
        let spoofed = std::net::Ipv4Addr::new(100, 64, 9, host);
        drop(udp(spoofed, 40000, WS, 9999), Reason::NotInBaseline, v4)
            .between(spoofed, WS)
            .dropped(WS)
            .flow(IPPROTO_UDP, 9999, Outbound)
            .over_budget(WS)
            .judged()
    };
    let mut flood = Vec::new();
    for i in 1..12u8 {
        let spoofed = std::net::Ipv4Addr::new(100, 64, 3, i);
        flood.push(
            drop(udp(spoofed, 40000, WS, 9999), Reason::NotInBaseline, v4)
                .between(spoofed, WS)
                .dropped(WS)
                .flow(IPPROTO_UDP, 9999, Outbound)
                .judged(),
        );
    }
    vec![
        case(
            "a repeated violating flow is decided by one lookup from its second packet",
            Setup::new(Mode::Enforce)
                .dev(ws())
                .baseline(key(WS, SRV, IPPROTO_TCP, 443, Outbound)),
            vec![
                violation(40000, 9999).judged(),
                violation(40000, 9999).cached(),
                violation(40000, 9999).cached(),
            ],
        ),
        case(
            "an established TCP connection is decided by one lookup, its handshake in full",
            Setup::new(Mode::Enforce)
                .dev(ws())
                .baseline(key(WS, SRV, IPPROTO_TCP, 443, Outbound)),
            vec![
                pass(tcp(WS, 40100, SRV, 443, TCP_SYN), Reason::InBaseline, v4)
                    .between(WS, SRV)
                    .flow(IPPROTO_TCP, 443, Outbound)
                    .judged(),
                pass(
                    tcp(SRV, 443, WS, 40100, TCP_SYN | TCP_ACK),
                    Reason::InBaseline,
                    v4,
                )
                .between(SRV, WS)
                .flow(IPPROTO_TCP, 443, Inbound)
                .judged(),
                pass(tcp(WS, 40100, SRV, 443, TCP_ACK), Reason::InBaseline, v4)
                    .between(WS, SRV)
                    .flow(IPPROTO_TCP, 443, Outbound)
                    .judged(),
                pass(tcp(WS, 40100, SRV, 443, TCP_ACK), Reason::InBaseline, v4)
                    .between(WS, SRV)
                    .flow(IPPROTO_TCP, 443, Outbound)
                    .cached(),
                pass(
                    tcp(SRV, 443, WS, 40100, TCP_ACK | TCP_PSH),
                    Reason::InBaseline,
                    v4,
                )
                .between(SRV, WS)
                .flow(IPPROTO_TCP, 443, Inbound)
                .judged(),
                pass(
                    tcp(SRV, 443, WS, 40100, TCP_ACK | TCP_PSH),
                    Reason::InBaseline,
                    v4,
                )
                .between(SRV, WS)
                .flow(IPPROTO_TCP, 443, Inbound)
                .cached(),
            ],
        ),
        case(
            "a scan from an enrolled device: every probe judged, dropped and counted apart",
            Setup::new(Mode::Enforce)
                .dev(ws())
                .baseline(key(WS, SRV, IPPROTO_TCP, 443, Outbound)),
            scan,
        ),
        case(
            "a spoofed-source flood toward an enrolled device: every frame judged and dropped",
            Setup::new(Mode::Enforce).dev(ws()),
            flood,
        ),
        case(
            "a scan beyond the device's budget of flow entries: dropped, counted, reported, \
             in no flow table and not cached; the device's allowed flow unchanged; a new \
             second gives flow entries again",
            Setup::new(Mode::Enforce)
                .dev(ws())
                .baseline(key(WS, SRV, IPPROTO_UDP, 443, Outbound)),
            vec![
                violation(40000, 7000)
                    .after(Change::Quiet)
                    .after(spend(20000))
                    .over_budget(WS)
                    .judged(),
                // Each probe right after a burst of its own: a window that ended since
                // the last one is spent again (the decision of the probe before, had it
                // been cached, would still stand).
                violation(40000, 7000)
                    .after(spend(20100))
                    .over_budget(WS)
                    .judged(),
                violation(40000, 7001)
                    .after(spend(20200))
                    .over_budget(WS)
                    .judged(),
                pass(udp(WS, 40000, SRV, 443), Reason::InBaseline, v4)
                    .between(WS, SRV)
                    .flow(IPPROTO_UDP, 443, Outbound)
                    .judged(),
                violation(40000, 7002).after(Change::Quiet).judged(),
                violation(40000, 7002).cached(),
            ],
        ),
        case(
            "an audited scan beyond the device's budget: a would-drop, counted and reported, \
             in no flow table",
            Setup::new(Mode::Audit).dev(ws()),
            vec![
                pass(udp(WS, 40000, SRV, 7100), Reason::NotInBaseline, v4)
                    .between(WS, SRV)
                    .would_drop(WS)
                    .flow(IPPROTO_UDP, 7100, Outbound)
                    .after(Change::Quiet)
                    .after(spend(21000))
                    .over_budget(WS)
                    .judged(),
            ],
        ),
        case(
            "a baseline entry the controller adds lifts a cached drop",
            Setup::new(Mode::Enforce).dev(ws()),
            vec![
                violation(40000, 5000).judged(),
                violation(40000, 5000).cached(),
                pass(udp(WS, 40000, SRV, 5000), Reason::InBaseline, v4)
                    .between(WS, SRV)
                    .flow(IPPROTO_UDP, 5000, Outbound)
                    .after(Change::Baseline(key(WS, SRV, IPPROTO_UDP, 5000, Outbound)))
                    .judged(),
                pass(udp(WS, 40000, SRV, 5000), Reason::InBaseline, v4)
                    .between(WS, SRV)
                    .flow(IPPROTO_UDP, 5000, Outbound)
                    .cached(),
            ],
        ),
        case(
            "a mode command changes a cached verdict",
            Setup::new(Mode::Audit).dev(ws()),
            vec![
                pass(udp(WS, 40000, SRV, 6000), Reason::NotInBaseline, v4)
                    .between(WS, SRV)
                    .would_drop(WS)
                    .flow(IPPROTO_UDP, 6000, Outbound)
                    .judged(),
                pass(udp(WS, 40000, SRV, 6000), Reason::NotInBaseline, v4)
                    .between(WS, SRV)
                    .would_drop(WS)
                    .flow(IPPROTO_UDP, 6000, Outbound)
                    .cached(),
                violation(40000, 6000).in_mode(Mode::Enforce).judged(),
                violation(40000, 6000).cached(),
            ],
        ),
        case(
            "break-glass expires in the datapath with no controller: the next frame is dropped",
            Setup::new(Mode::Enforce)
                .dev(ws().break_glass_for(Duration::from_millis(700)))
                .dev(pacs()),
            vec![
                pass(udp(WS, 40000, PACS, 161), Reason::BreakGlass, v4)
                    .between(WS, PACS)
                    .break_glass(WS)
                    .would_drop(PACS)
                    .flow(IPPROTO_UDP, 161, Outbound)
                    .judged(),
                pass(udp(WS, 40000, PACS, 161), Reason::BreakGlass, v4)
                    .between(WS, PACS)
                    .break_glass(WS)
                    .would_drop(PACS)
                    .flow(IPPROTO_UDP, 161, Outbound)
                    .cached(),
                drop(udp(WS, 40000, PACS, 161), Reason::NotInBaseline, v4)
                    .between(WS, PACS)
                    .dropped(WS)
                    .dropped(PACS)
                    .flow(IPPROTO_UDP, 161, Outbound)
                    .after(Change::PastBreakGlass)
                    .judged(),
                drop(udp(WS, 40000, PACS, 161), Reason::NotInBaseline, v4)
                    .between(WS, PACS)
                    .dropped(WS)
                    .dropped(PACS)
                    .flow(IPPROTO_UDP, 161, Outbound)
                    .cached(),
            ],
        ),
        case(
            "a peer's deny rule never drops a life-critical device's traffic",
            Setup::new(Mode::Enforce)
                .dev(ws())
                .dev(pump())
                .rule(WS, PUMP, deny_8443),
            vec![
                pass(
                    tcp(WS, 40000, PUMP, 8443, TCP_SYN),
                    Reason::LifeCriticalSpared,
                    v4,
                )
                .between(WS, PUMP)
                .would_drop(WS)
                .would_drop(PUMP)
                .flow(IPPROTO_TCP, 8443, Outbound)
                .judged(),
                pass(
                    tcp(PUMP, 8443, WS, 40000, TCP_SYN | TCP_ACK),
                    Reason::LifeCriticalSpared,
                    v4,
                )
                .between(PUMP, WS)
                .would_drop(WS)
                .would_drop(PUMP)
                .flow(IPPROTO_TCP, 8443, Inbound)
                .judged(),
                pass(
                    tcp(WS, 40000, PUMP, 8443, TCP_ACK),
                    Reason::LifeCriticalSpared,
                    v4,
                )
                .between(WS, PUMP)
                .would_drop(WS)
                .would_drop(PUMP)
                .flow(IPPROTO_TCP, 8443, Outbound)
                .judged(),
                pass(
                    tcp(WS, 40000, PUMP, 8443, TCP_ACK),
                    Reason::LifeCriticalSpared,
                    v4,
                )
                .between(WS, PUMP)
                .would_drop(WS)
                .would_drop(PUMP)
                .flow(IPPROTO_TCP, 8443, Outbound)
                .cached(),
            ],
        ),
        case(
            "a peer's deny rule never drops a life-critical device's baseline traffic",
            Setup::new(Mode::Enforce)
                .dev(ws())
                .dev(pump())
                .rule(WS, PUMP, deny_8443)
                .baseline(key(PUMP, WS, IPPROTO_TCP, 8443, Inbound)),
            vec![
                pass(
                    tcp(WS, 40000, PUMP, 8443, TCP_SYN),
                    Reason::LifeCriticalSpared,
                    v4,
                )
                .between(WS, PUMP)
                .would_drop(WS)
                .flow(IPPROTO_TCP, 8443, Outbound)
                .judged(),
                pass(
                    tcp(PUMP, 8443, WS, 40000, TCP_ACK),
                    Reason::LifeCriticalSpared,
                    v4,
                )
                .between(PUMP, WS)
                .would_drop(WS)
                .flow(IPPROTO_TCP, 8443, Inbound)
                .judged(),
                pass(
                    tcp(PUMP, 8443, WS, 40000, TCP_ACK),
                    Reason::LifeCriticalSpared,
                    v4,
                )
                .between(PUMP, WS)
                .would_drop(WS)
                .flow(IPPROTO_TCP, 8443, Inbound)
                .cached(),
            ],
        ),
        case(
            "a peer's deny rule never drops a learning life-critical device's traffic",
            Setup::new(Mode::Learn)
                .dev(ws().mode(Mode::Enforce))
                .dev(pump())
                .rule(WS, PUMP, deny_8443),
            vec![
                pass(
                    tcp(WS, 40000, PUMP, 8443, TCP_SYN),
                    Reason::LifeCriticalSpared,
                    v4,
                )
                .between(WS, PUMP)
                .would_drop(WS)
                .flow(IPPROTO_TCP, 8443, Outbound)
                .learns(key(PUMP, WS, IPPROTO_TCP, 8443, Inbound))
                .judged(),
            ],
        ),
        case(
            "a spoofed-source flood beyond the device's budget: dropped and counted, in no \
             flow table",
            Setup::new(Mode::Enforce).dev(ws()),
            vec![
                flood_beyond(1).after(Change::Quiet).after(spoofed_burst(4)),
                flood_beyond(2).after(spoofed_burst(5)),
            ],
        ),
        case(
            "beyond the budget, a probe of every kind whose service needs no table: to the \
             lower port, from the lower port without a request, ICMP",
            Setup::new(Mode::Enforce).dev(ws()),
            vec![
                violation(40000, 7300)
                    .after(Change::Quiet)
                    .after(spend(22000))
                    .over_budget(WS)
                    .judged(),
                drop(udp(WS, 53, SRV, 40001), Reason::NotInBaseline, v4)
                    .between(WS, SRV)
                    .dropped(WS)
                    .flow(IPPROTO_UDP, 40001, Outbound)
                    .after(spend(22100))
                    .over_budget(WS)
                    .judged(),
                drop(
                    Ipv4::new(WS, SRV).frame(&Transport::icmp_echo(true, 9, 1)),
                    Reason::NotInBaseline,
                    v4,
                )
                .between(WS, SRV)
                .dropped(WS)
                .flow(IPPROTO_ICMP, 8, Outbound)
                .after(spend(22200))
                .over_budget(WS)
                .judged(),
            ],
        ),
        case(
            "beyond the budget, what a probe judged of its device serves that device's next \
             probes only: a probe to an enrolled peer, one toward the device and one under \
             another mode are judged afresh",
            Setup::new(Mode::Enforce)
                .dev(ws())
                .dev(pacs())
                .baseline(key(PACS, WS, IPPROTO_UDP, 7602, Inbound)),
            vec![
                violation(40000, 7600)
                    .after(Change::Quiet)
                    .after(spend(23000))
                    .over_budget(WS)
                    .judged(),
                violation(40000, 7601)
                    .after(spend(23100))
                    .over_budget(WS)
                    .judged(),
                // PACS's side allows it (no event of its own): WS's violation drops it.
                drop(udp(WS, 40000, PACS, 7602), Reason::NotInBaseline, v4)
                    .between(WS, PACS)
                    .dropped(WS)
                    .flow(IPPROTO_UDP, 7602, Outbound)
                    .after(spend(23200))
                    .over_budget(WS)
                    .judged(),
                flood_beyond(3).after(spoofed_burst(6)),
                violation(40000, 7603)
                    .after(spend(23300))
                    .over_budget(WS)
                    .judged(),
                pass(udp(WS, 40000, SRV, 7604), Reason::NotInBaseline, v4)
                    .between(WS, SRV)
                    .would_drop(WS)
                    .flow(IPPROTO_UDP, 7604, Outbound)
                    .in_mode(Mode::Audit)
                    .after(spend(23400))
                    .over_budget(WS)
                    .judged(),
            ],
        ),
        case(
            "beyond the budget on a ward leg: an impostor of a MAC-bound device is still \
             spoofed_source, the device's own probe is dropped, a flood's source toward it \
             is discovered",
            Setup::new(Mode::Enforce)
                .ward()
                .dev(bound(ws()))
                .bind(WS, WS_MAC),
            vec![
                drop(
                    from_mac(udp(WS, 40000, SRV, 7400), IMPOSTOR_MAC),
                    Reason::SpoofedSource,
                    v4,
                )
                .between(WS, SRV)
                .dropped(WS)
                .flow(IPPROTO_UDP, 7400, Outbound)
                .after(Change::Quiet)
                .after(spend_from(23000, WS_MAC))
                .over_budget(WS)
                .judged(),
                drop(
                    from_mac(udp(WS, 40000, SRV, 7401), WS_MAC),
                    Reason::NotInBaseline,
                    v4,
                )
                .between(WS, SRV)
                .dropped(WS)
                .flow(IPPROTO_UDP, 7401, Outbound)
                .after(spend_from(23100, WS_MAC))
                .over_budget(WS)
                .judged(),
                drop(
                    from_mac(udp(FLOOD_SOURCE, 40000, WS, 9999), FLOOD_MAC),
                    Reason::NotInBaseline,
                    v4,
                )
                .between(FLOOD_SOURCE, WS)
                .dropped(WS)
                .flow(IPPROTO_UDP, 9999, Outbound)
                .after(spend_from(23200, WS_MAC))
                .over_budget(WS)
                .station(FLOOD_MAC, FLOOD_SOURCE)
                .judged(),
            ],
        ),
        case(
            "beyond the budget, a device with rules: its allow rule still lets a new flow \
             through (rules are judged in full)",
            Setup::new(Mode::Enforce)
                .dev(ws())
                .rule(WS, SRV, allow_udp_7500),
            vec![
                pass(udp(WS, 40000, SRV, 7500), Reason::PolicyAllow, v4)
                    .between(WS, SRV)
                    .flow(IPPROTO_UDP, 7500, Outbound)
                    .after(Change::Quiet)
                    .after(spend(24000))
                    .judged(),
            ],
        ),
    ]
}

/// The hour-of-week schedule of baseline entries: a baseline flow inside and outside its
/// learned hours in audit and enforce, `schedule: enforce` and `schedule: ignore`, the
/// life-critical rule, the hour boundary with its tolerance, learning recording the hour,
/// and the decision cache going stale when the hour changes.
#[test]
fn schedules() {
    run_table("schedules", schedules_cases());
}

fn schedules_cases() -> Vec<Case> {
    let v4 = FrameClass::Ipv4;
    let ws_srv = key(WS, SRV, IPPROTO_TCP, 443, Outbound);
    let pump_srv = key(PUMP, SRV, IPPROTO_TCP, 443, Outbound);
    let ack = || tcp(WS, 40000, SRV, 443, TCP_ACK);
    let pump_ack = || tcp(PUMP, 40000, SRV, 443, TCP_ACK);
    let hit = || {
        pass(ack(), Reason::InBaseline, v4)
            .between(WS, SRV)
            .flow(IPPROTO_TCP, 443, Outbound)
    };
    let off = || {
        pass(ack(), Reason::OffSchedule, v4)
            .between(WS, SRV)
            .would_drop(WS)
            .flow(IPPROTO_TCP, 443, Outbound)
    };
    let off_dropped = || {
        drop(ack(), Reason::OffSchedule, v4)
            .between(WS, SRV)
            .dropped(WS)
            .flow(IPPROTO_TCP, 443, Outbound)
    };
    let pump_hit = || {
        pass(pump_ack(), Reason::InBaseline, v4)
            .between(PUMP, SRV)
            .flow(IPPROTO_TCP, 443, Outbound)
    };
    let learned_at_10 = |mode: Mode| Setup::new(mode).scheduled(ws_srv, &[10]).at_hour(10);
    let schedule_enforce = DEVICE_SCHEDULE_ENFORCE;
    vec![
        case(
            "audit: inside its hours in the baseline, outside off schedule",
            learned_at_10(Mode::Audit).dev(ws()),
            vec![
                hit(),
                // The decision cached at 10:00 is stale at 14:00.
                off().at(14, 1).judged(),
                off().cached(),
                hit().at(10, 1).judged(),
                hit().cached(),
            ],
        ),
        case(
            "enforce: off schedule is reported, not dropped, without schedule: enforce",
            learned_at_10(Mode::Enforce).dev(ws()),
            vec![hit(), off().at(14, 1).judged(), off().cached()],
        ),
        case(
            "enforce with schedule: enforce: off schedule is dropped",
            learned_at_10(Mode::Enforce).dev(ws().flags(schedule_enforce)),
            vec![
                hit(),
                off_dropped().at(14, 1).judged(),
                off_dropped().cached(),
                // Audit mode drops nothing.
                off().in_mode(Mode::Audit).judged(),
                hit().at(10, 1).in_mode(Mode::Enforce).judged(),
            ],
        ),
        case(
            "life-critical with schedule: enforce, not confirmed: never dropped",
            Setup::new(Mode::Enforce)
                .dev(pump().flags(DEVICE_LIFE_CRITICAL | schedule_enforce))
                .scheduled(pump_srv, &[10])
                .at_hour(10),
            vec![
                pump_hit(),
                pass(pump_ack(), Reason::LifeCriticalSpared, v4)
                    .between(PUMP, SRV)
                    .would_drop(PUMP)
                    .flow(IPPROTO_TCP, 443, Outbound)
                    .at(14, 1)
                    .judged(),
            ],
        ),
        case(
            "life-critical without schedule: enforce: off schedule reported",
            Setup::new(Mode::Enforce)
                .dev(pump())
                .scheduled(pump_srv, &[10])
                .at_hour(10),
            vec![
                pump_hit(),
                pass(pump_ack(), Reason::OffSchedule, v4)
                    .between(PUMP, SRV)
                    .would_drop(PUMP)
                    .flow(IPPROTO_TCP, 443, Outbound)
                    .at(14, 1)
                    .judged(),
            ],
        ),
        case(
            "life-critical confirmed for enforce with schedule: enforce: dropped",
            Setup::new(Mode::Enforce)
                .dev(
                    pump()
                        .mode(Mode::Enforce)
                        .flags(DEVICE_LIFE_CRITICAL | DEVICE_ENFORCE_CONFIRMED | schedule_enforce),
                )
                .scheduled(pump_srv, &[10])
                .at_hour(10),
            vec![
                pump_hit(),
                drop(pump_ack(), Reason::OffSchedule, v4)
                    .between(PUMP, SRV)
                    .dropped(PUMP)
                    .flow(IPPROTO_TCP, 443, Outbound)
                    .at(14, 1)
                    .judged(),
            ],
        ),
        case(
            "schedule: ignore: never off schedule",
            learned_at_10(Mode::Enforce).dev(ws().flags(DEVICE_SCHEDULE_IGNORE | schedule_enforce)),
            vec![hit(), hit().at(14, 1).judged(), hit().at(100, 0).judged()],
        ),
        case(
            "the hour boundary with tolerance",
            learned_at_10(Mode::Audit).dev(ws()),
            vec![
                hit().at(11, 1).judged(),
                hit().at(9, 1).judged(),
                off().at(12, 1).judged(),
                off().at(8, 1).judged(),
                // A new tolerance makes the cached decisions stale too.
                off().at(11, 0).judged(),
                hit().at(10, 0).judged(),
                hit().at(12, 2).judged(),
                off().at(13, 2).judged(),
            ],
        ),
        case(
            "tolerance 0: only the learned hours",
            learned_at_10(Mode::Audit).dev(ws()).tolerance(0),
            vec![hit(), off().at(11, 0).judged(), off().at(9, 0).judged()],
        ),
        case(
            "the tolerance reaches round the end of the week",
            Setup::new(Mode::Audit)
                .dev(ws())
                .scheduled(ws_srv, &[167])
                .at_hour(0),
            vec![hit(), off().at(1, 1).judged(), hit().at(166, 1).judged()],
        ),
        case(
            "learning records the hours a baseline flow is seen in",
            Setup::new(Mode::Learn).dev(ws()).at_hour(10),
            vec![
                pass(tcp(WS, 40000, SRV, 443, TCP_SYN), Reason::Learned, v4)
                    .between(WS, SRV)
                    .flow(IPPROTO_TCP, 443, Outbound)
                    .learns(ws_srv)
                    .schedule_is(ws_srv, &[10]),
                pass(ack(), Reason::Learned, v4)
                    .between(WS, SRV)
                    .flow(IPPROTO_TCP, 443, Outbound)
                    .schedule_is(ws_srv, &[10]),
                pass(ack(), Reason::Learned, v4)
                    .between(WS, SRV)
                    .flow(IPPROTO_TCP, 443, Outbound)
                    .at(30, 1)
                    .judged()
                    .schedule_is(ws_srv, &[10, 30]),
                off().in_mode(Mode::Audit).at(50, 1).judged(),
                hit().at(31, 1).judged().schedule_is(ws_srv, &[10, 30]),
            ],
        ),
        case(
            "learning without the hour records none, and is never off schedule",
            Setup::new(Mode::Learn).dev(ws()),
            vec![
                pass(tcp(WS, 40000, SRV, 443, TCP_SYN), Reason::Learned, v4)
                    .between(WS, SRV)
                    .flow(IPPROTO_TCP, 443, Outbound)
                    .learns(ws_srv)
                    .schedule_is(ws_srv, &[]),
                hit().in_mode(Mode::Audit).at(50, 1).judged(),
            ],
        ),
        case(
            "an entry without a schedule is never off schedule",
            Setup::new(Mode::Enforce)
                .dev(ws().flags(schedule_enforce))
                .baseline(ws_srv)
                .at_hour(100),
            vec![hit(), hit().at(3, 0).judged()],
        ),
        case(
            "the hour unknown: nothing is checked",
            Setup::new(Mode::Enforce)
                .dev(ws().flags(schedule_enforce))
                .scheduled(ws_srv, &[10]),
            vec![hit()],
        ),
    ]
}

#[test]
fn frames_shorter_than_ethernet_are_refused_by_the_test_run() {
    let datapath =
        Datapath::load(&Maps::Private).unwrap_or_else(|e| panic!("loading failed: {e:?}"));
    let frame = truncated(&tcp(WS, 1, SRV, 2, TCP_SYN), 13);
    match datapath.test_run(&frame) {
        Err(monitor::DatapathError::FrameTooShort(13)) => {}
        other => panic!("a 13-byte frame gave {other:?}, expected FrameTooShort(13)"),
    }
}

/// The XDP program reads frames through its own bounds check (`ptr_at`); the host reads
/// slices. At every cut of a few deep frames, both must reach the same fault and class.
#[test]
fn xdp_parser_agrees_with_the_host_parser_at_every_cut() {
    let frames: Vec<(&str, Vec<u8>)> = vec![
        (
            "802.1q / ipv4 with options / tcp",
            Ipv4::new(WS, SRV).options(&[0x94, 0x04, 0, 0]).frame_in(
                &Ethernet::new().dot1q(10),
                &Transport::tcp_with_payload(40000, 443, TCP_SYN, b"xy"),
            ),
        ),
        (
            "qinq / ipv6 hop-by-hop, first fragment, destination options / udp",
            Ipv6::new(WS6, SRV6)
                .ext(Ext::hop_by_hop())
                .ext(Ext::fragment(0, true, 5))
                .ext(Ext::DestOpts { len8: 1 })
                .frame_in(
                    &Ethernet::new().dot1ad(100).dot1q(10),
                    &Transport::udp(40000, 514, b"abcd"),
                ),
        ),
        (
            "ipv4 / icmp echo",
            Ipv4::new(WS, SRV).frame(&Transport::icmp_echo(true, 1, 1)),
        ),
        (
            "ipv6 / sctp",
            Ipv6::new(WS6, SRV6).frame(&Transport::sctp(40001, 3868)),
        ),
        ("arp", arp_frame(WS, SRV)),
    ];
    let mut failures = Vec::new();
    let mut runs = 0;
    for (flags, snaplen) in [
        (0, Snaplen::Strict),
        (CONFIG_CAPTURE_MAY_BE_CUT, Snaplen::CaptureMayBeCut),
    ] {
        let c = case(
            "parser agreement",
            Setup::new(Mode::Learn).flags(flags),
            Vec::new(),
        );
        let datapath = load(&c);
        for (name, frame) in &frames {
            for len in 14..=frame.len() {
                let cut = &frame[..len];
                let host = parse_frame(cut, snaplen);
                let reason = host.fault.unwrap_or(if host.has_ip {
                    Reason::Unenrolled
                } else {
                    Reason::NotIp
                });
                let step = pass(cut.to_vec(), reason, host.class);
                let before = snapshot(&datapath, &c.setup);
                runs += 1;
                let got = datapath
                    .test_run(cut)
                    .unwrap_or_else(|e| panic!("{name} cut at {len}: test run failed: {e:?}"));
                let after = snapshot(&datapath, &c.setup);
                let moved =
                    |a: &BTreeMap<(bool, Action, Reason), Counter>,
                     b: &BTreeMap<(bool, Action, Reason), Counter>| {
                        a.iter()
                            .filter(|(k, v)| b.get(k).copied().unwrap_or_default() != **v)
                            .map(|(k, _)| *k)
                            .collect::<Vec<_>>()
                    };
                let verdicts = moved(&after.verdicts, &before.verdicts);
                let classes: Vec<u8> = after
                    .classes
                    .iter()
                    .filter(|(k, v)| before.classes.get(k).copied().unwrap_or_default() != **v)
                    .map(|(k, _)| *k)
                    .collect();
                let cut = flags & CONFIG_CAPTURE_MAY_BE_CUT != 0;
                if got.action != Action::Pass
                    || verdicts != [(cut, Action::Pass, step.reason)]
                    || classes != [step.class as u8]
                {
                    failures.push(format!(
                        "{name} cut at {len} ({snaplen:?}): XDP gave {:?} {verdicts:?} class {classes:?}, \
                         the host parser {:?} class {:?}",
                        got.action, step.reason, step.class
                    ));
                }
            }
        }
    }
    assert!(runs > 300, "only {runs} cuts were run");
    assert!(
        failures.is_empty(),
        "{} of {runs} cuts disagree:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}

/// Every malformed and adversarial frame replay.rs compares between `monitor replay` and
/// a live monitor is judged by a row of these tables (and is built in one place).
#[test]
fn every_adversarial_frame_is_judged_by_a_case_table() {
    let judged: Vec<Vec<u8>> = [
        protocols_and_encapsulations_cases(),
        malformed_and_truncated_cases(),
        fragments_cases(),
        learning_service_ports_cases(),
        enforcement_modes_cases(),
        break_glass_cases(),
        decision_cache_cases(),
    ]
    .into_iter()
    .flatten()
    .flat_map(|c| c.steps.into_iter().map(|step| step.frame))
    .collect();
    let missing: Vec<&str> = adversarial::frames()
        .iter()
        .filter(|(_, frame)| !judged.contains(frame))
        .map(|(name, _)| *name)
        .collect();
    assert!(missing.is_empty(), "no case-table row judges {missing:?}");
}

/// Discovery: a source MAC on a ward leg with an address outside the inventory is counted
/// in STATIONS by MAC and address, on the judged and the cached path alike; enrolled
/// devices' frames and frames off ward legs are not. A flood of random source MACs churns
/// only that bounded table: the enrolled device's counters, flows and baseline stay.
#[test]
fn discovery_counts_unenrolled_macs_on_ward_legs_and_a_mac_flood_evicts_nothing_else() {
    use monitor_common::maps::MAX_STATIONS;
    pin_to_one_cpu();
    const NEW_MAC: [u8; 6] = [0x00, 0x0c, 0x29, 0xaa, 0xbb, 0xcc];
    let setup = Setup::new(Mode::Enforce)
        .ward()
        .dev(bound(ws()))
        .bind(WS, WS_MAC)
        .baseline(key(WS, SRV, IPPROTO_UDP, 161, Outbound))
        .dev(pacs())
        .baseline(key(PACS, HOST_X, IPPROTO_TCP, 104, Inbound));
    let case = case(
        "discovery",
        setup,
        vec![pass(Vec::new(), Reason::Unenrolled, FrameClass::Ipv4)],
    );
    let mut datapath = load(&case);
    let run = |datapath: &Datapath, frame: &[u8]| {
        datapath
            .test_run(frame)
            .unwrap_or_else(|e| panic!("test run: {e:?}"))
    };
    let stations = |datapath: &Datapath| {
        datapath
            .maps()
            .stations()
            .unwrap_or_else(|e| panic!("reading STATIONS: {e:?}"))
    };
    // A new device talks to the enrolled PACS: judged, then cached.
    let frame = from_mac(tcp(HOST_X, 40000, PACS, 104, TCP_ACK), NEW_MAC);
    for _ in 0..3 {
        run(&datapath, &frame);
    }
    let (cached, _) = datapath.maps().paths().unwrap_or_else(|e| panic!("{e:?}"));
    assert!(cached >= 1, "the later frames came from the cache");
    let seen = stations(&datapath);
    assert_eq!(seen.len(), 1, "{seen:?}");
    let (k, s) = &seen[0];
    assert_eq!(
        (k.mac, addr_of(&k.addr), s.packets, s.bytes),
        (NEW_MAC, IpAddr::from(HOST_X), 3, 3 * frame.len() as u64),
        "every frame counted, cached or judged"
    );
    assert!(s.first_seen_ns > 0 && s.last_seen_ns >= s.first_seen_ns);
    assert_eq!(s.ifindex, TEST_RUN_IFINDEX);
    // The enrolled workstation (its own MAC) is not a discovered station.
    run(&datapath, &from_mac(udp(WS, 40001, SRV, 161), WS_MAC));
    assert_eq!(
        stations(&datapath).len(),
        1,
        "enrolled devices are not discovered"
    );
    // Off ward legs MACs mean nothing.
    datapath
        .maps_mut()
        .set_interface_slot(TEST_RUN_IFINDEX, None, false)
        .unwrap_or_else(|e| panic!("{e:?}"));
    run(
        &datapath,
        &from_mac(udp(HOST_Y, 40002, SRV, 53), [0x00, 0x0c, 0x29, 1, 2, 3]),
    );
    assert_eq!(stations(&datapath).len(), 1, "core legs are not discovered");
    datapath
        .maps_mut()
        .set_interface_slot(TEST_RUN_IFINDEX, None, true)
        .unwrap_or_else(|e| panic!("{e:?}"));

    // The flood: more random MACs (and addresses) than the table holds.
    let ws_before = datapath
        .maps()
        .device_stats(SLOT_WS)
        .unwrap_or_else(|e| panic!("{e:?}"));
    let flows_before = datapath
        .maps()
        .enrolled_flows()
        .unwrap_or_else(|e| panic!("{e:?}"));
    let baseline_before = datapath
        .maps()
        .baseline()
        .unwrap_or_else(|e| panic!("{e:?}"));
    let flood = MAX_STATIONS + MAX_STATIONS / 2;
    for i in 0..flood {
        let b = i.to_be_bytes();
        let mac = [0x02, 0x66, b[0], b[1], b[2], b[3]];
        let src = std::net::Ipv4Addr::new(100, 64 | (b[1] & 0x3f), b[2], b[3]);
        run(&datapath, &from_mac(udp(src, 40000, HOST_Y, 9), mac));
    }
    let after = stations(&datapath);
    assert!(
        after.len() as u32 <= MAX_STATIONS,
        "the table is bounded: {} entries",
        after.len()
    );
    assert!(
        after.len() as u32 > MAX_STATIONS / 2,
        "the flood was recorded"
    );
    let ws_after = datapath
        .maps()
        .device_stats(SLOT_WS)
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(
        ws_after, ws_before,
        "the workstation's counters are untouched"
    );
    let flows_after = datapath
        .maps()
        .enrolled_flows()
        .unwrap_or_else(|e| panic!("{e:?}"));
    for (k, s) in &flows_before {
        assert!(
            flows_after.iter().any(|(k2, s2)| k2 == k && s2 == s),
            "enrolled flow {} lost or changed by the flood",
            describe_key(k)
        );
    }
    let baseline_after = datapath
        .maps()
        .baseline()
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(baseline_after, baseline_before, "the baseline is untouched");
    // The workstation still passes, from its cached or judged decision alike.
    assert_eq!(
        run(&datapath, &from_mac(udp(WS, 40001, SRV, 161), WS_MAC)).action,
        Action::Pass
    );
}

/// While a device learns, the MACs it sends from on a ward leg are kept for it
/// (`LEARNED_MACS`, by slot), for the controller to bind it to when it leaves learn mode:
/// each MAC once, in the order first seen, the cached path adding nothing a judged frame
/// did not; an impostor's frames on a bound address, other modes and core legs add none.
#[test]
fn a_learning_device_keeps_the_macs_it_sent_from_on_a_ward_leg() {
    pin_to_one_cpu();
    const OTHER_NIC: [u8; 6] = [0x00, 0x50, 0x56, 0x0a, 0x0b, 0x0c];
    let setup = Setup::new(Mode::Learn)
        .ward()
        .dev(ws())
        .dev(bound(pump()))
        .bind(PUMP, PUMP_MAC);
    let case = case(
        "learned MACs",
        setup,
        vec![pass(Vec::new(), Reason::Learned, FrameClass::Ipv4)],
    );
    let mut datapath = load(&case);
    let run = |datapath: &Datapath, frame: &[u8]| {
        datapath
            .test_run(frame)
            .unwrap_or_else(|e| panic!("test run: {e:?}"))
    };
    let learned = |datapath: &Datapath, slot: u32| {
        let seen = datapath
            .maps()
            .learned_macs(slot)
            .unwrap_or_else(|e| panic!("reading LEARNED_MACS: {e:?}"));
        (seen.macs().collect::<Vec<_>>(), seen.more)
    };
    assert_eq!(learned(&datapath, SLOT_WS), (vec![], 0));
    // Judged, then cached: one MAC, kept once.
    for _ in 0..3 {
        run(&datapath, &from_mac(udp(WS, 40001, SRV, 161), WS_MAC));
    }
    let (cached, _) = datapath.maps().paths().unwrap_or_else(|e| panic!("{e:?}"));
    assert!(cached >= 1, "the later frames came from the cache");
    assert_eq!(learned(&datapath, SLOT_WS), (vec![WS_MAC], 0));
    // A second NIC, on the same flow: not the cached decision (made for the first MAC).
    run(&datapath, &from_mac(udp(WS, 40001, SRV, 161), OTHER_NIC));
    assert_eq!(learned(&datapath, SLOT_WS), (vec![WS_MAC, OTHER_NIC], 0));
    // Beyond the places held, frames from more MACs are counted.
    for i in 0..3u8 {
        run(
            &datapath,
            &from_mac(udp(WS, 40002 + u16::from(i), SRV, 161), [2, 0, 0, 0, 0, i]),
        );
    }
    let (macs, more) = learned(&datapath, SLOT_WS);
    assert_eq!(
        (macs.len(), more),
        (monitor_common::maps::LEARNED_MACS_HELD, 1),
        "{macs:?}"
    );
    // The bound pump: its own MAC is kept, an impostor's spoofed frame is not.
    run(
        &datapath,
        &from_mac(tcp(PUMP, 40010, SRV, 443, TCP_SYN), PUMP_MAC),
    );
    run(
        &datapath,
        &from_mac(tcp(PUMP, 40011, SRV, 443, TCP_SYN), IMPOSTOR_MAC),
    );
    assert_eq!(learned(&datapath, SLOT_PUMP), (vec![PUMP_MAC], 0));
    // Out of learn mode, and off ward legs, nothing is kept.
    datapath
        .maps_mut()
        .reset_learned_macs(SLOT_WS)
        .unwrap_or_else(|e| panic!("{e:?}"));
    set_mode(&mut datapath, "learned MACs", Mode::Enforce);
    run(&datapath, &from_mac(udp(WS, 40020, SRV, 162), WS_MAC));
    set_mode(&mut datapath, "learned MACs", Mode::Learn);
    datapath
        .maps_mut()
        .set_interface_slot(TEST_RUN_IFINDEX, None, false)
        .unwrap_or_else(|e| panic!("{e:?}"));
    run(&datapath, &from_mac(udp(WS, 40021, SRV, 163), WS_MAC));
    assert_eq!(learned(&datapath, SLOT_WS), (vec![], 0));
    // Back on the ward leg, learning: kept again.
    datapath
        .maps_mut()
        .set_interface_slot(TEST_RUN_IFINDEX, None, true)
        .unwrap_or_else(|e| panic!("{e:?}"));
    run(&datapath, &from_mac(udp(WS, 40022, SRV, 164), WS_MAC));
    assert_eq!(learned(&datapath, SLOT_WS), (vec![WS_MAC], 0));
}

/// Two client ports whose decision keys (otherwise alike) share a slot of the decision
/// cache, as `slot` places them. Found among DECISION_SLOTS + 1 ports from 40001: by
/// pigeonhole such a pair always exists, whatever the datapath's random hash seed (a
/// search for a partner of one fixed port finds none for about one seed in 400).
fn client_ports_sharing_a_decision_slot(slot: impl Fn(u16) -> u32) -> (u16, u16) {
    let mut seen = std::collections::HashMap::new();
    let ports = 40001..=40001 + monitor_common::maps::DECISION_SLOTS as u16;
    for port in ports {
        if let Some(first) = seen.insert(slot(port), port) {
            return (first, port);
        }
    }
    panic!("more ports than cache slots, and no two share one")
}

/// A cached hit charges its flow, its device's counters and its reason count in its CPU's
/// cache entry, not with atomic adds to the shared flow table and writes to the device's
/// counters: their readers add what entries hold, and an entry replaced by another key's
/// decision charges what it held first. Each packet is counted once either way: not lost
/// with the entry, not twice by the reader. A device slot handed over starts from zero.
#[test]
fn a_cached_flows_packets_are_counted_once_wherever_they_are_held() {
    pin_to_one_cpu();
    let setup = Setup::new(Mode::Learn).dev(ws());
    let case = case(
        "pending flow charges",
        setup,
        vec![pass(Vec::new(), Reason::Learned, FrameClass::Ipv4)],
    );
    // In a cell: the checks below borrow it, and the slot's hand-over changes maps.
    let datapath = std::cell::RefCell::new(load(&case));
    let run = |frame: &[u8]| {
        let verdict = datapath
            .borrow()
            .test_run(frame)
            .unwrap_or_else(|e| panic!("test run: {e:?}"));
        assert_eq!(verdict.action, Action::Pass);
    };
    let flow = key(WS, SRV, IPPROTO_UDP, 161, Outbound);
    let sent = || {
        let flows = datapath
            .borrow()
            .maps()
            .enrolled_flows()
            .unwrap_or_else(|e| panic!("reading the flows: {e:?}"));
        let stats = flows
            .iter()
            .find(|(k, _)| *k == flow)
            .map(|(_, s)| *s)
            .unwrap_or_else(|| panic!("the flow {} is in the table", describe_key(&flow)));
        (stats.packets_sent, stats.bytes_sent, stats.packets_received)
    };
    let paths = || {
        datapath
            .borrow()
            .maps()
            .paths()
            .unwrap_or_else(|e| panic!("{e:?}"))
    };
    let device_slot = datapath
        .borrow()
        .maps()
        .devices()
        .unwrap_or_else(|e| panic!("{e:?}"))
        .get(&IpAddr::V4(WS))
        .map(|entry| entry.slot)
        .unwrap_or_else(|| panic!("the workstation is enrolled"));
    // The device's counters and its reason count: held by the entry as the flow's are.
    let device = || {
        let stats = datapath
            .borrow()
            .maps()
            .device_stats(device_slot)
            .unwrap_or_else(|e| panic!("reading the device: {e:?}"));
        let reasons = datapath
            .borrow()
            .maps()
            .device_reasons(device_slot)
            .unwrap_or_else(|e| panic!("reading its reasons: {e:?}"));
        (stats.packets_sent, stats.bytes_sent, reasons)
    };
    // Two client ports of the same flow whose decisions take the same cache entry.
    let seed = datapath
        .borrow()
        .maps()
        .config()
        .unwrap_or_else(|e| panic!("{e:?}"))
        .hash_seed;
    let decision_key = |src_port: u16| monitor_common::maps::DecisionKey {
        src: addr_key(WS.into()),
        dst: addr_key(SRV.into()),
        src_port,
        dst_port: 161,
        protocol: IPPROTO_UDP,
        kind: monitor_common::maps::DECISION_PORTS,
        _pad: 0,
    };
    let (first_port, other) = client_ports_sharing_a_decision_slot(|src_port| {
        monitor_common::flowtable::decision_slot(
            &decision_key(src_port),
            seed,
            monitor_common::maps::DECISION_SLOTS,
        )
    });
    let first = udp(WS, first_port, SRV, 161);
    let len = first.len() as u64;
    let device_is = |packets: u64, why: &str| {
        assert_eq!(
            device(),
            (packets, packets * len, vec![(Reason::Learned, packets)]),
            "{why}"
        );
    };
    // One judged, four from the cache: all five counted, four of them held by the entry.
    for _ in 0..5 {
        run(&first);
    }
    assert_eq!(paths(), (4, 1), "one frame judged, then the cache");
    assert_eq!(
        sent(),
        (5, 5 * len, 0),
        "held packets are read with the table"
    );
    assert_eq!(sent(), (5, 5 * len, 0), "reading moves nothing");
    device_is(5, "held packets are read with the device's counters");
    device_is(5, "reading moves nothing");
    // The other client port, whose decision takes the same cache entry: the entry's four
    // packets are charged to the slot as the entry is replaced.
    let second = udp(WS, other, SRV, 161);
    run(&second);
    assert_eq!(paths(), (4, 2), "the other port was judged");
    assert_eq!(sent(), (6, 6 * len, 0), "nothing lost or counted twice");
    device_is(6, "the device's held packets charged once");
    for _ in 0..3 {
        run(&second);
    }
    assert_eq!(paths(), (7, 2));
    assert_eq!(sent(), (9, 9 * len, 0));
    device_is(9, "held again");
    // And back: the first port's decision replaces the second's again.
    run(&first);
    assert_eq!(paths(), (7, 3));
    assert_eq!(sent(), (10, 10 * len, 0));
    device_is(10, "and charged again");
    // A slot handed to a new device (here: zeroed, and the policy switch that moves the
    // epoch): what the entries held for its previous owner is forgotten, what is held
    // under the new epoch is kept.
    run(&first);
    assert_eq!(paths(), (8, 3));
    {
        let mut datapath = datapath.borrow_mut();
        let maps = datapath.maps_mut();
        maps.reset_device_stats(device_slot)
            .unwrap_or_else(|e| panic!("zeroing the slot: {e:?}"));
        maps.bump_cache_epoch()
            .unwrap_or_else(|e| panic!("moving the epoch: {e:?}"));
        maps.forget_held_charges(&[device_slot])
            .unwrap_or_else(|e| panic!("forgetting what was held: {e:?}"));
    }
    assert_eq!(device(), (0, 0, vec![]), "the slot starts from zero");
    run(&first);
    run(&first);
    run(&first);
    assert_eq!(
        paths(),
        (10, 4),
        "judged anew under the new epoch, then held"
    );
    device_is(3, "counted anew");
    datapath
        .borrow_mut()
        .maps_mut()
        .forget_held_charges(&[device_slot])
        .unwrap_or_else(|e| panic!("{e:?}"));
    device_is(3, "what is held under this epoch stays");
}

/// A scan's probes beyond its device's budget, whose events the device's rate suppresses,
/// charge the device in its CPU's probe memo, not in DEVICE_STATS and DEVICE_REASONS: the
/// readers add what the memo holds, and the memo charges it when another device's probe
/// replaces it. Each probe is counted once either way, and only for its device: held
/// across a cache epoch, the charges go to the slot only if the device still has it, never
/// to a device the slot was handed to.
#[test]
fn a_probes_held_charges_are_counted_once_and_only_for_their_device() {
    pin_to_one_cpu();
    let setup = Setup::new(Mode::Enforce).dev(ws()).dev(pacs());
    let case = case(
        "held probe charges",
        setup,
        vec![pass(Vec::new(), Reason::Learned, FrameClass::Ipv4)],
    );
    let datapath = std::cell::RefCell::new(load(&case));
    let run = |frame: &[u8]| {
        let verdict = datapath
            .borrow()
            .test_run(frame)
            .unwrap_or_else(|e| panic!("test run: {e:?}"));
        assert_eq!(
            verdict.action,
            Action::Drop,
            "a probe beyond the budget is dropped"
        );
    };
    let budget = VIOLATING_FLOWS_PER_DEVICE_PER_SECOND as u16;
    // From `from`, to SRV's ports `first..first + count`: each a new flow.
    let probes = |from: std::net::Ipv4Addr, first: u16, count: u16| {
        for port in first..first + count {
            run(&udp(from, 40000, SRV, port));
        }
    };
    // Dropped packets and NotInBaseline counts of the device in `slot`, as readers see
    // them (table and held), and in the table alone.
    let dropped = |slot: u32| {
        let maps = datapath.borrow();
        let maps = maps.maps();
        let read = must(maps.device_stats(slot), "the device's counters");
        let reasons = must(maps.device_reasons(slot), "its reasons");
        let not_in_baseline = reasons
            .iter()
            .find(|(reason, _)| *reason == Reason::NotInBaseline)
            .map_or(0, |(_, count)| *count);
        let table = must(maps.device_table_stats(slot), "its table part");
        (
            read.dropped_packets,
            read.packets_sent,
            not_in_baseline,
            table.dropped_packets,
        )
    };
    let suppressed = || must(datapath.borrow().maps().event_stats(), "EVENT_STATS").1;
    // Both budgets spent (and both devices' events: 20 a second), each device's probes
    // from then on judged in one stage.
    probes(WS, 20000, budget);
    probes(PACS, 20000, budget);
    let (ws0, pacs0) = (dropped(SLOT_WS), dropped(SLOT_PACS));
    assert_eq!(ws0.0, u64::from(budget), "the budget's probes each counted");
    assert_eq!(ws0.3, ws0.0, "nothing held yet");
    let suppressed0 = suppressed();
    probes(WS, 21000, 5);
    let ws1 = dropped(SLOT_WS);
    assert_eq!(
        (ws1.0, ws1.1, ws1.2),
        (ws0.0 + 5, ws0.1 + 5, ws0.2 + 5),
        "the probes counted as they are held"
    );
    assert_eq!(ws1.3, ws0.3, "held by the memo, not yet in the table");
    assert_eq!(dropped(SLOT_WS), ws1, "reading moves nothing");
    assert_eq!(
        suppressed(),
        suppressed0 + 5,
        "each probe's event suppressed"
    );
    // Another device's probe replaces the memo: what it held is charged, once.
    probes(PACS, 21000, 1);
    let ws2 = dropped(SLOT_WS);
    assert_eq!((ws2.0, ws2.3), (ws1.0, ws1.0), "charged to the table, once");
    assert_eq!(
        dropped(SLOT_PACS).0,
        pacs0.0 + 1,
        "the other device's own probe"
    );
    // Held across another cache epoch (a mode written again): the device keeps its slot,
    // so the readers count what is held, and the next memo charges it.
    probes(WS, 21100, 2);
    must(
        datapath.borrow_mut().maps_mut().bump_cache_epoch(),
        "moving the epoch",
    );
    assert_eq!(
        dropped(SLOT_WS),
        (ws2.0 + 2, ws2.1 + 2, ws2.2 + 2, ws2.3),
        "held under the old epoch, read: the device still has its slot"
    );
    probes(WS, 21200, 1);
    assert_eq!(
        dropped(SLOT_WS).0,
        ws2.0 + 3,
        "held under the old epoch, then the new"
    );
    probes(PACS, 21100, 1);
    let ws3 = dropped(SLOT_WS);
    assert_eq!((ws3.0, ws3.3), (ws2.0 + 3, ws2.0 + 3), "all of it charged");
    // The slot handed to another device (WS unenrolled, a new one enrolled in its slot,
    // the slot zeroed): what the memo held for WS counts for neither.
    probes(WS, 21300, 4);
    assert_eq!(dropped(SLOT_WS).0, ws3.0 + 4);
    let successor = std::net::Ipv4Addr::new(10, 3, 0, 99);
    {
        let mut datapath = datapath.borrow_mut();
        let maps = datapath.maps_mut();
        let entry = must(maps.devices(), "DEVICES")[&IpAddr::V4(WS)];
        must(maps.unenroll(IpAddr::V4(WS)), "unenrolling WS");
        must(maps.reset_device_stats(SLOT_WS), "zeroing the slot");
        must(
            maps.enroll(IpAddr::V4(successor), entry),
            "enrolling its successor",
        );
    }
    assert_eq!(
        dropped(SLOT_WS),
        (0, 0, 0, 0),
        "the successor starts from zero"
    );
    probes(PACS, 21200, 1);
    assert_eq!(
        dropped(SLOT_WS),
        (0, 0, 0, 0),
        "WS's held probes dropped with its slot"
    );
}

/// A cached hit reads nothing of the flow tables: when its flow's slot is given to another
/// flow (the set is full), the flow goes on being decided from its cache entry, and what the
/// entry holds for it never counts for the flow in its slot, neither when read nor when the
/// entry is replaced (the slot's tag is another's); the flow is placed again, counted anew,
/// when its decision is next judged.
#[test]
fn an_evicted_flows_held_packets_never_count_for_the_flow_that_took_its_slot() {
    pin_to_one_cpu();
    let setup = Setup::new(Mode::Learn).dev(ws());
    let case = case(
        "evicted flow",
        setup,
        vec![pass(Vec::new(), Reason::Learned, FrameClass::Ipv4)],
    );
    let datapath = load(&case);
    let run = |frame: &[u8]| {
        let verdict = datapath
            .test_run(frame)
            .unwrap_or_else(|e| panic!("test run: {e:?}"));
        assert_eq!(verdict.action, Action::Pass);
    };
    let seed = datapath
        .maps()
        .config()
        .unwrap_or_else(|e| panic!("{e:?}"))
        .hash_seed;
    let sets = monitor_common::maps::defs::FLOWS.max_entries;
    let set = |peer: Ipv4Addr| {
        monitor_common::flowtable::set_of(
            monitor_common::flowtable::flow_hash(&key(WS, peer, IPPROTO_UDP, 161, Outbound), seed),
            sets,
        )
    };
    let decision_slot = |peer: Ipv4Addr, src_port: u16| {
        monitor_common::flowtable::decision_slot(
            &monitor_common::maps::DecisionKey {
                src: addr_key(WS.into()),
                dst: addr_key(peer.into()),
                src_port,
                dst_port: 161,
                protocol: IPPROTO_UDP,
                kind: monitor_common::maps::DECISION_PORTS,
                _pad: 0,
            },
            seed,
            monitor_common::maps::DECISION_SLOTS,
        )
    };
    // Two client ports of the server's flow whose decisions share a cache entry.
    let (client, other) = client_ports_sharing_a_decision_slot(|port| decision_slot(SRV, port));
    // Four other peers whose flows land in the server flow's set, with cache entries of
    // their own.
    let peers: Vec<Ipv4Addr> = (0x0a80_0000u32..0x0b00_0000)
        .map(Ipv4Addr::from)
        .filter(|&peer| {
            set(peer) == set(SRV) && decision_slot(peer, client) != decision_slot(SRV, client)
        })
        .take(monitor_common::maps::FLOW_WAYS as usize)
        .collect();
    assert_eq!(peers.len(), monitor_common::maps::FLOW_WAYS as usize);
    let flows = || -> BTreeMap<Ipv4Addr, (u64, u64)> {
        let flows = datapath
            .maps()
            .enrolled_flows()
            .unwrap_or_else(|e| panic!("reading the flows: {e:?}"));
        flows
            .iter()
            .filter_map(|(k, stats)| match addr_of(&k.peer) {
                IpAddr::V4(peer) if addr_of(&k.device) == IpAddr::V4(WS) => {
                    Some((peer, (stats.packets_sent, stats.bytes_sent)))
                }
                _ => None,
            })
            .collect()
    };
    let paths = || datapath.maps().paths().unwrap_or_else(|e| panic!("{e:?}"));
    let server = udp(WS, client, SRV, 161);
    let len = server.len() as u64;
    for _ in 0..4 {
        run(&server);
    }
    assert_eq!(paths(), (3, 1));
    assert_eq!(flows().get(&SRV), Some(&(4, 4 * len)));
    // The set fills; the fourth peer's flow takes the slot judged least recently: the
    // server's. A clock tick or more apart, so that no two flows were judged at one time.
    let tick = || std::thread::sleep(Duration::from_millis(30));
    for &peer in &peers {
        tick();
        run(&udp(WS, client, peer, 161));
    }
    assert_eq!(paths(), (3, 5));
    let last = peers[peers.len() - 1];
    let now = flows();
    assert_eq!(
        now.get(&SRV),
        None,
        "the server's flow lost its slot: {now:?}"
    );
    assert_eq!(now.get(&last), Some(&(1, len)));
    // Still decided from its cache entry, which now holds five packets of a flow whose
    // slot holds another.
    run(&server);
    run(&server);
    assert_eq!(paths(), (5, 5), "hits, without a look at the flow table");
    let now = flows();
    assert_eq!(now.get(&SRV), None);
    assert_eq!(
        now.get(&last),
        Some(&(1, len)),
        "the reader adds nothing of the server's held packets to the flow in its slot"
    );
    // Another client port of the server's flow takes the server's cache entry: the flow is
    // placed again, in the slot judged least recently (the first peer's), and the entry's
    // five packets, held for a slot now the last peer's, are dropped with the evicted flow.
    tick();
    run(&udp(WS, other, SRV, 161));
    assert_eq!(paths(), (5, 6));
    let now = flows();
    assert_eq!(
        now.get(&peers[0]),
        None,
        "the first peer gave up its slot: {now:?}"
    );
    for peer in &peers[1..] {
        assert_eq!(
            now.get(peer),
            Some(&(1, len)),
            "{peer}: only its own packet"
        );
    }
    assert_eq!(now.get(&SRV), Some(&(1, len)), "placed again, counted anew");
}

/// A packet from a server's lower port is a reply when REQUESTS holds its fresh request;
/// REQUEST_FILTER, a bit per request in three generations by time, lets packets without
/// a marked request skip that lookup. The controller clears the generation the next
/// period will mark (`MapSet::clear_stale_requests`): the mark of a request made now
/// survives it, and once its own generation is cleared (two periods later, here by
/// telling the controller it is then) the filter alone turns the reply away, although
/// REQUESTS still holds the request.
#[test]
fn a_reply_finds_its_request_through_the_filter_the_controller_clears() {
    pin_to_one_cpu();
    let period = 1u64 << monitor_common::maps::REQUEST_FILTER_PERIOD_SHIFT;
    // Not within a few seconds of the end of a period: the frames below stay in it.
    let into = coarse_now_ns() % period;
    if into > period - 5_000_000_000 {
        std::thread::sleep(Duration::from_nanos(period - into + 100_000_000));
    }
    let dns = key(WS, DNS, IPPROTO_UDP, 53, Outbound);
    let setup = Setup::new(Mode::Enforce).dev(ws()).baseline(dns);
    let case = case(
        "request filter",
        setup,
        vec![pass(Vec::new(), Reason::InBaseline, FrameClass::Ipv4)],
    );
    let datapath = load(&case);
    let run = |frame: &[u8]| {
        let verdict = datapath
            .test_run(frame)
            .unwrap_or_else(|e| panic!("test run: {e:?}"));
        verdict.action
    };
    let request = udp(WS, 53124, DNS, 53);
    let reply = udp(DNS, 53, WS, 53124);
    // In enforce mode a request to the workstation's port is outside its baseline.
    let (passes, not_a_reply) = (Action::Pass, Action::Drop);
    assert_eq!(
        run(&reply),
        not_a_reply,
        "before its request: a request to the workstation's port"
    );
    assert_eq!(run(&request), passes);
    assert_eq!(run(&reply), passes, "the reply to a request made now");
    let start = coarse_now_ns() / period * period;
    let this_period = start / period;
    let clear = |at: u64, last: Option<u64>| {
        datapath
            .maps()
            .clear_stale_requests(at, last)
            .unwrap_or_else(|e| panic!("clearing REQUEST_FILTER: {e:?}"))
    };
    // Now (in the first half of this period): the next period's generation is cleared.
    assert_eq!(clear(start + 1, None), Some(this_period));
    assert_eq!(clear(start + 2, Some(this_period)), None, "once a period");
    assert_eq!(
        clear(start + period / 2, None),
        None,
        "not in the second half"
    );
    assert_eq!(run(&reply), passes, "the mark made this period survives");
    // Two periods on, this period's generation is the stale one.
    assert_eq!(clear(start + 2 * period + 1, None), Some(this_period + 2));
    assert_eq!(
        run(&reply),
        not_a_reply,
        "with its mark cleared, the reply is not looked up in REQUESTS"
    );
    // A request judged now marks this period's generation again (a cached request is
    // judged again, and marked, within DECISION_TTL_NS: another client port here).
    assert_eq!(run(&udp(WS, 53125, DNS, 53)), passes);
    assert_eq!(run(&udp(DNS, 53, WS, 53125)), passes);
}
