//! The loaded XDP object: load (fresh or adopting pinned maps), attach, run frames through
//! BPF_PROG_TEST_RUN, and typed access to every map.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    os::fd::AsFd as _,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{
        Array, HashMap, MapData, MapError, MapType, PerCpuArray,
        lpm_trie::{Key as LpmKey, LpmTrie},
    },
    programs::{
        ProgramError, TestRun, TestRunOptions, Xdp,
        links::{FdLink, PinnedLink},
        xdp::{XdpLink, XdpLinkId, XdpMode},
    },
};
use monitor_common::{
    Action, FrameClass, Mode, Reason,
    flowtable::{
        enrolled_bit, service_bit, service_filter_index, stale_request_generation, way_holds_flow,
    },
    judge::{
        CHARGE_COUNT, CHARGE_REASON, NO_SLOT, ProbeMemo, TABLE_FLOWS, TABLE_UNENROLLED,
        device_charge, flow_charge,
    },
    maps::{
        BaselineEntry, Config, Counter, DECISION_SLOTS, DEVICE_REASON_SLOTS, Decision,
        DecisionSide, DeviceEntry, DeviceKey, DeviceStats, EVENTS_LOST, EVENTS_SENT,
        EVENTS_SUPPRESSED, FLOW_WAYS, FlowKey, FlowSet, FlowStats, FrameCounts, IFACE_WARD,
        LAYOUT_VERSION, LearnedMacs, MacBinding, MacBindingKey, MapDef, MapKind, PATH_CACHED,
        PATH_JUDGED, REQUEST_FILTER_WORDS, RuleKeyData, RuleSet, ServiceFilter, StationKey,
        StationStats, active_generation, defs, names, programs,
    },
    parse::Addr,
    verdict_index,
};

pub mod sys;

/// The XDP object, built by build.rs from monitor-ebpf.
static OBJECT: &[u8] = aya::include_bytes_aligned!(env!("MONITOR_EBPF_OBJECT"));

/// What can go wrong with the datapath; each names the map, program or interface.
#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    #[error("loading the XDP object failed (are you root, and is /sys/fs/bpf a bpf filesystem?)")]
    Load(#[source] aya::EbpfError),
    #[error("the XDP object has no program `{0}`")]
    MissingProgram(&'static str),
    #[error("the XDP object has no map `{0}`")]
    MissingMap(&'static str),
    #[error("map `{name}`: {what}")]
    Map {
        name: &'static str,
        what: &'static str,
        #[source]
        source: MapError,
    },
    #[error("program `{name}`: {what}")]
    Program {
        name: &'static str,
        what: String,
        #[source]
        source: ProgramError,
    },
    #[error(
        "a frame of {0} bytes is shorter than an Ethernet header; the kernel's test run refuses it"
    )]
    FrameTooShort(usize),
    #[error("a frame of {0} bytes is larger than a page; the kernel's test run refuses it")]
    FrameTooLarge(usize),
    #[error("pinning at {0}")]
    Pin(PathBuf, #[source] aya::pin::PinError),
    #[error(
        "the pinned map {path} has key/value/entries {found:?}, but this build expects {expected:?}: \
         it was made by another version of monitor. Stop that version, run `monitor detach` \
         (counters are lost; the baseline saved in the state directory is restored at the next start), \
         then start this one"
    )]
    Layout {
        path: PathBuf,
        found: (u32, u32, u32),
        expected: (u32, u32, u32),
    },
    #[error(
        "the pinned map {path} is a {found} map, but this build expects a {expected} map: \
         it was made by another version of monitor. Stop that version, run `monitor detach` \
         (counters are lost; the baseline saved in the state directory is restored at the next start), \
         then start this one"
    )]
    LayoutKind {
        path: PathBuf,
        found: &'static str,
        expected: &'static str,
    },
    #[error("interface `{0}` does not exist (in this network namespace)")]
    NoInterface(String),
    #[error("link pin {0}")]
    Link(PathBuf, #[source] aya::programs::links::LinkError),
    #[error("reading the flow table `{0}` through a shared mapping")]
    Mapping(&'static str, #[source] std::io::Error),
    #[error("reading the map `{0}` in batches")]
    Batch(&'static str, #[source] std::io::Error),
    #[error("counting the possible CPUs failed")]
    Cpus(#[source] std::io::Error),
    #[error("unknown XDP action {0} returned by the program")]
    UnknownAction(u32),
}

type Result<T, E = DatapathError> = std::result::Result<T, E>;

fn map_err(name: &'static str, what: &'static str) -> impl FnOnce(MapError) -> DatapathError {
    move |source| DatapathError::Map { name, what, source }
}

/// Frames BPF_PROG_TEST_RUN accepts for XDP: at least an Ethernet header, at most a page
/// less the headroom and skb_shared_info the kernel reserves.
pub const TEST_RUN_MIN_FRAME: usize = 14;
pub const TEST_RUN_MAX_FRAME: usize = 4096 - 256 - 320;

/// Where the pinned maps of a running monitor live.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/monitor";

/// An IP address as the maps key it (IPv4-mapped IPv6).
pub fn addr_key(ip: IpAddr) -> Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// The `DEVICES` key of `addr` in `generation`.
pub fn device_key(addr: IpAddr, generation: u8) -> DeviceKey {
    DeviceKey {
        addr: addr_key(addr),
        generation,
        _pad1: 0,
        _pad2: 0,
    }
}

/// The address behind a map key (IPv4-mapped keys come back as IPv4).
pub fn addr_of(key: &Addr) -> IpAddr {
    let v6 = std::net::Ipv6Addr::from(*key);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

/// The shape every pinned map must have: (name, key size, value size, max entries), from
/// the one list of the datapath's maps (`monitor_common::maps::defs`), which the XDP
/// program's declarations are checked against when it is compiled.
pub fn expected_layout() -> Vec<(&'static str, u32, u32, u32)> {
    defs::ALL
        .iter()
        .filter(|d| d.pinned)
        .map(|d| (d.name, d.key_size, d.value_size, d.max_entries))
        .collect()
}

/// Checks the maps pinned under `dir` (if any) against the list of the datapath's maps
/// (shape and kind): maps left by a build with another layout are refused before anything
/// adopts them.
pub fn check_pinned_layout(dir: &Path) -> Result<()> {
    for def in defs::ALL.iter().filter(|d| d.pinned) {
        let name = def.name;
        let path = dir.join(name);
        if !path.exists() {
            continue;
        }
        let info = aya::maps::MapInfo::from_pin(&path).map_err(|source| DatapathError::Map {
            name,
            what: "reading the pinned map's shape",
            source,
        })?;
        let found = (info.key_size(), info.value_size(), info.max_entries());
        let expected = (def.key_size, def.value_size, def.max_entries);
        if found != expected {
            return Err(DatapathError::Layout {
                path,
                found,
                expected,
            });
        }
        let kind = map_type_number(&info);
        if kind != def.kind as u32 {
            return Err(DatapathError::LayoutKind {
                path,
                found: MapKind::from_raw(kind).map_or("another kind", MapKind::name),
                expected: def.kind.name(),
            });
        }
    }
    Ok(())
}

/// The kernel's number for the type of map `info` describes.
fn map_type_number(info: &aya::maps::MapInfo) -> u32 {
    use aya::maps::MapType;
    match info.map_type() {
        Ok(MapType::Hash) => MapKind::Hash as u32,
        Ok(MapType::Array) => MapKind::Array as u32,
        Ok(MapType::PerCpuArray) => MapKind::PerCpuArray as u32,
        Ok(MapType::LruHash) => MapKind::LruHash as u32,
        Ok(MapType::LpmTrie) => MapKind::LpmTrie as u32,
        Ok(MapType::RingBuf) => MapKind::RingBuf as u32,
        Ok(other) => other as u32,
        Err(_) => 0,
    }
}

/// How the datapath's maps are created.
#[derive(Clone, Debug)]
pub enum Maps {
    /// Fresh maps owned by this process (replay, tests).
    Private,
    /// Maps pinned under this directory: reused if already pinned there (adoption after
    /// a restart), created and pinned otherwise.
    Pinned(PathBuf),
}

/// What a frame got from the program in a test run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TestVerdict {
    pub action: Action,
    pub duration: std::time::Duration,
}

/// The loaded XDP object: its programs, and its maps (taken out into a [`MapSet`]).
pub struct Datapath {
    ebpf: Ebpf,
    maps: MapSet,
}

/// The datapath's maps, typed: from a freshly loaded object, or opened from their pins by
/// a CLI command while the daemon runs.
pub struct MapSet {
    maps: BTreeMap<&'static str, aya::maps::Map>,
}

impl std::fmt::Debug for MapSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MapSet")
            .field("maps", &self.maps.keys())
            .finish()
    }
}

impl std::fmt::Debug for Datapath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Datapath").finish_non_exhaustive()
    }
}

impl Datapath {
    /// Loads the object and its programs into the kernel. With fresh maps the CONFIG is
    /// written (learn mode); adopted maps keep theirs.
    pub fn load(maps: &Maps) -> Result<Self> {
        if let Maps::Pinned(dir) = maps {
            check_pinned_layout(dir)?;
        }
        let mut loader = EbpfLoader::new();
        let pins: Vec<(&'static str, PathBuf)> = match maps {
            Maps::Private => Vec::new(),
            Maps::Pinned(dir) => names::ALL.iter().map(|n| (*n, dir.join(n))).collect(),
        };
        for (name, path) in &pins {
            loader.map_pin_path(name, path.as_path());
        }
        let mut ebpf = loader.load(OBJECT).map_err(DatapathError::Load)?;
        let mut maps = BTreeMap::new();
        for name in names::ALL {
            maps.insert(
                name,
                ebpf.take_map(name).ok_or(DatapathError::MissingMap(name))?,
            );
        }
        let mut datapath = Datapath {
            ebpf,
            maps: MapSet { maps },
        };
        for name in programs::ALWAYS {
            datapath.load_program(name)?;
        }
        let config = datapath.maps.config()?;
        if config.layout_version == 0 {
            datapath.maps.set_config(Config {
                mode: Mode::Learn as u8,
                flags: 0,
                hour_of_week: monitor_common::schedule::HOUR_UNKNOWN,
                schedule_tolerance: monitor_common::schedule::DEFAULT_TOLERANCE,
                generation: 0,
                layout_version: LAYOUT_VERSION,
                cache_epoch: 0,
                owner_pid: 0,
                learn_window: 0,
                hash_seed: random_seed(),
                _pad2: 0,
            })?;
        }
        Ok(datapath)
    }

    /// Loads program `name` of the object into the kernel, if it is not loaded yet: the
    /// benchmark's programs ([`programs::SCAN`], ...) are loaded only when asked for.
    pub fn load_program(&mut self, name: &'static str) -> Result<()> {
        let program = self.program_mut(name)?;
        if program.fd().is_ok() {
            return Ok(());
        }
        // The kernel abandons a verification with EAGAIN when a signal is pending (busy
        // test runners, a daemon being signalled); libbpf retries such loads, so do we.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match program.load() {
                Ok(()) => break,
                Err(ProgramError::LoadError { io_error, .. })
                    if io_error.raw_os_error() == Some(libc::EAGAIN) && attempt < 5 => {}
                Err(source) => {
                    return Err(DatapathError::Program {
                        name,
                        what: "the verifier rejected it".into(),
                        source,
                    });
                }
            }
        }
        if let Ok(info) = program.info() {
            log::debug!(
                "{name}: the verifier processed {} instructions",
                info.verified_instruction_count().unwrap_or(0)
            );
        }
        Ok(())
    }

    fn program_mut(&mut self, name: &'static str) -> Result<&mut Xdp> {
        let program = self
            .ebpf
            .program_mut(name)
            .ok_or(DatapathError::MissingProgram(name))?;
        program.try_into().map_err(|source| DatapathError::Program {
            name,
            what: "is not an XDP program".into(),
            source,
        })
    }

    fn program(&self, name: &'static str) -> Result<&Xdp> {
        let program = self
            .ebpf
            .program(name)
            .ok_or(DatapathError::MissingProgram(name))?;
        program.try_into().map_err(|source| DatapathError::Program {
            name,
            what: "is not an XDP program".into(),
            source,
        })
    }

    /// Attaches the monitor program to `iface`, returning the XDP mode it got. With
    /// `XdpMode::Default` native mode is tried first and generic is the logged fallback.
    pub fn attach(&mut self, iface: &str, mode: XdpMode) -> Result<XdpMode> {
        self.attach_link(iface, mode).map(|(mode, _)| mode)
    }

    fn attach_link(&mut self, iface: &str, mode: XdpMode) -> Result<(XdpMode, XdpLinkId)> {
        let program = self.program_mut(programs::MONITOR)?;
        let attach_err = |mode: XdpMode| {
            move |source| DatapathError::Program {
                name: programs::MONITOR,
                what: format!("attaching to interface `{iface}` in {mode:?} mode failed"),
                source,
            }
        };
        match mode {
            XdpMode::Default => match program.attach(iface, XdpMode::Driver) {
                Ok(id) => Ok((XdpMode::Driver, id)),
                Err(native) => {
                    log::warn!(
                        interface = iface, reason = "no-native-xdp";
                        "native XDP on {iface} failed ({native}); falling back to generic (skb) \
                         mode: {GENERIC_XDP_COST}"
                    );
                    let id = program
                        .attach(iface, XdpMode::Skb)
                        .map_err(attach_err(XdpMode::Skb))?;
                    Ok((XdpMode::Skb, id))
                }
            },
            forced => {
                let id = program.attach(iface, forced).map_err(attach_err(forced))?;
                Ok((forced, id))
            }
        }
    }

    /// Attaches to `iface` so that the attachment outlives this process: the link is
    /// pinned at `link_pin`. When a pin from an earlier run exists for the same interface
    /// (`previous_ifindex`), that link is adopted and its program replaced atomically
    /// (bpf_link_update): there is no moment without a program on the interface.
    /// Returns whether it adopted.
    pub fn attach_pinned(
        &mut self,
        iface: &str,
        mode: XdpMode,
        link_pin: &Path,
        previous_ifindex: Option<u32>,
    ) -> Result<(XdpMode, bool)> {
        let ifindex = if_index(iface).ok_or_else(|| DatapathError::NoInterface(iface.into()))?;
        if link_pin.exists() {
            if previous_ifindex == Some(ifindex) {
                let pinned = PinnedLink::from_pin(link_pin)
                    .map_err(|e| DatapathError::Link(link_pin.to_path_buf(), e))?;
                let link = XdpLink::try_from(FdLink::from(pinned))
                    .map_err(|e| DatapathError::Link(link_pin.to_path_buf(), e))?;
                self.program_mut(programs::MONITOR)?
                    .attach_to_link(link)
                    .map_err(|source| DatapathError::Program {
                        name: programs::MONITOR,
                        what: format!("replacing the program on {iface}'s pinned link"),
                        source,
                    })?;
                return Ok((mode, true));
            }
            // The interface went away (and its link with it) or is another one now.
            let _ = std::fs::remove_file(link_pin);
        }
        let (got, id) = self.attach_link(iface, mode)?;
        let program = self.program_mut(programs::MONITOR)?;
        let link = program
            .take_link(id)
            .map_err(|source| DatapathError::Program {
                name: programs::MONITOR,
                what: format!("taking the link on {iface}"),
                source,
            })?;
        let link =
            FdLink::try_from(link).map_err(|e| DatapathError::Link(link_pin.to_path_buf(), e))?;
        // The pin keeps the attachment; this process's fd closes when `link` drops.
        link.pin(link_pin)
            .map_err(|e| DatapathError::Pin(link_pin.to_path_buf(), e))?;
        Ok((got, false))
    }

    /// Runs one frame through the monitor program (BPF_PROG_TEST_RUN): the same code and
    /// maps as live traffic.
    pub fn test_run(&self, frame: &[u8]) -> Result<TestVerdict> {
        self.test_run_program(programs::MONITOR, frame, 1)
    }

    /// Runs one frame `repeat` times through `program` (benchmarks).
    pub fn test_run_program(
        &self,
        program: &'static str,
        frame: &[u8],
        repeat: u32,
    ) -> Result<TestVerdict> {
        if frame.len() < TEST_RUN_MIN_FRAME {
            return Err(DatapathError::FrameTooShort(frame.len()));
        }
        if frame.len() > TEST_RUN_MAX_FRAME {
            return Err(DatapathError::FrameTooLarge(frame.len()));
        }
        let result = self
            .program(program)?
            .test_run(TestRunOptions {
                data_in: Some(frame),
                repeat,
                ..TestRunOptions::default()
            })
            .map_err(|source| DatapathError::Program {
                name: program,
                what: format!("test run of a {}-byte frame failed", frame.len()),
                source,
            })?;
        let action = match result.return_value {
            1 => Action::Drop,
            2 => Action::Pass,
            other => return Err(DatapathError::UnknownAction(other)),
        };
        Ok(TestVerdict {
            action,
            duration: result.duration,
        })
    }

    /// The maps.
    pub fn maps(&self) -> &MapSet {
        &self.maps
    }

    /// What the kernel reports of every map of the object (pinned or not): (name,
    /// `memlock` bytes, entries it holds), from `/proc/self/fdinfo`. The entries are
    /// counted only for maps whose memory grows with them
    /// (`monitor_common::memory::grows`), 0 for the others.
    pub fn map_memory(&self) -> Result<Vec<(&'static str, u64, u64)>> {
        use std::os::fd::AsRawFd as _;
        let mut rows = Vec::new();
        for def in &defs::ALL {
            let map = match self.maps.maps.get(def.name) {
                Some(map) => map,
                None => self
                    .ebpf
                    .map(def.name)
                    .ok_or(DatapathError::MissingMap(def.name))?,
            };
            let data = map_data(map);
            let fd = data.fd().as_fd().as_raw_fd();
            let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}"))
                .map_err(|e| DatapathError::Mapping(def.name, e))?;
            let memlock = info
                .lines()
                .find_map(|l| l.strip_prefix("memlock:"))
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| {
                    DatapathError::Mapping(
                        def.name,
                        std::io::Error::other("no memlock in the map's fdinfo"),
                    )
                })?;
            let entries = if monitor_common::memory::grows(def) {
                sys::count_keys(data, u64::MAX).map_err(|e| DatapathError::Mapping(def.name, e))?
            } else {
                0
            };
            rows.push((def.name, memlock, entries));
        }
        Ok(rows)
    }

    pub fn maps_mut(&mut self) -> &mut MapSet {
        &mut self.maps
    }

    /// Pins the programs under `dir` (maps pinned with [`Maps::Pinned`] are pinned already).
    pub fn pin_programs(&mut self, dir: &Path) -> Result<()> {
        for name in [programs::MONITOR, programs::PARSE_ONLY] {
            let path = dir.join(name);
            // A pin left by an earlier run is replaced.
            let _ = std::fs::remove_file(&path);
            self.program_mut(name)?
                .pin(&path)
                .map_err(|e| DatapathError::Pin(path.clone(), e))?;
        }
        Ok(())
    }

    /// Pushes `frame` out of interface `ifindex` `count` times (benchmarks): BPF_PROG_TEST_RUN
    /// in live-frames mode runs `program` ([`programs::TX`], or one that rewrites each frame
    /// first: [`programs::TX_SCAN`], [`programs::TX_FLOOD`], loaded with
    /// [`Datapath::load_program`]) as if the frame had arrived on `ifindex`, and its XDP_TX
    /// sends it for real, `batch` frames at a time, into the interface's peer. Call it from
    /// a thread inside `ifindex`'s network namespace.
    pub fn test_run_live(
        &self,
        program: &'static str,
        ifindex: u32,
        frame: &[u8],
        count: u32,
        batch: u32,
    ) -> Result<()> {
        if frame.len() < TEST_RUN_MIN_FRAME {
            return Err(DatapathError::FrameTooShort(frame.len()));
        }
        if frame.len() > TEST_RUN_MAX_FRAME {
            return Err(DatapathError::FrameTooLarge(frame.len()));
        }
        // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index,
        // egress_ifindex. The kernel wants data 0 and data_end the frame's length.
        let md: [u32; 6] = [0, frame.len() as u32, 0, ifindex, 0, 0];
        let ctx: Vec<u8> = md.iter().flat_map(|v| v.to_ne_bytes()).collect();
        self.program(program)?
            .test_run(TestRunOptions {
                data_in: Some(frame),
                ctx_in: Some(&ctx),
                repeat: count,
                attrs: aya::programs::TestRunAttrs::new().xdp_live_frames(batch),
                ..TestRunOptions::default()
            })
            .map_err(|source| DatapathError::Program {
                name: program,
                what: format!("live-frames run into interface {ifindex} failed"),
                source,
            })?;
        Ok(())
    }
}

impl MapSet {
    /// Map `name` on a descriptor of its own (`dup`), for a reader that outlives any
    /// borrow of the set.
    pub fn duplicate(&self, name: &'static str) -> Result<MapData> {
        let fd = map_data(self.map(name)?)
            .fd()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| DatapathError::Map {
                name,
                what: "duplicating its descriptor",
                source: MapError::SyscallError(aya::sys::SyscallError {
                    call: "dup",
                    io_error: e,
                }),
            })?;
        MapData::from_fd(fd).map_err(map_err(name, "reading its info"))
    }

    /// The per-CPU array `name`, read in batches on a descriptor of its own.
    pub fn batch_array<T: Copy + Default>(&self, name: &'static str) -> Result<sys::BatchArray<T>> {
        sys::BatchArray::new(self.duplicate(name)?).map_err(DatapathError::Cpus)
    }

    /// The tables of `set` that fill up, in `names::ALL` order: arrays are full by
    /// construction and a ring buffer has no entries, so only hash maps, tries and the flow
    /// tables (arrays of sets that the XDP program fills).
    pub fn fillable_tables(&self) -> Result<Vec<sys::KeyCounter>> {
        let mut tables = Vec::new();
        for name in names::ALL {
            if self.map(name).is_err() {
                // Not in the set (the event ring buffer stays with its one reader).
                continue;
            }
            let data = self.duplicate(name)?;
            let info = data.info().map_err(map_err(name, "reading its info"))?;
            let flow_table = is_flow_table(name);
            let fills = flow_table
                || matches!(
                    info.map_type(),
                    Ok(MapType::Hash
                        | MapType::PerCpuHash
                        | MapType::LruHash
                        | MapType::LruPerCpuHash
                        | MapType::LpmTrie)
                );
            if fills {
                // A flow table's entries are sets of FLOW_WAYS flows.
                let ways = if flow_table {
                    monitor_common::maps::FLOW_WAYS
                } else {
                    1
                };
                tables.push(sys::KeyCounter::new(
                    name,
                    info.max_entries() * ways,
                    data,
                    flow_table,
                ));
            }
        }
        Ok(tables)
    }

    /// Opens the maps pinned under `dir` by a running monitor.
    pub fn open_pinned(dir: &Path) -> Result<Self> {
        let mut maps = BTreeMap::new();
        for name in names::ALL {
            let path = dir.join(name);
            let data = MapData::from_pin(&path).map_err(|source| DatapathError::Map {
                name,
                what: "opening the pinned map (is `monitor run` running, or was it run?)",
                source,
            })?;
            let map = aya::maps::Map::from_map_data(data)
                .map_err(map_err(name, "unsupported map type"))?;
            maps.insert(name, map);
        }
        Ok(MapSet { maps })
    }

    /// Another handle on the same kernel maps (their descriptors duplicated, nothing
    /// opened again from the pins): for the daemon's readers (metrics, the activity
    /// sampler, the device map), which then never wait on the daemon's writes. The event
    /// ring buffer stays with its one reader.
    pub fn share(&self) -> Result<MapSet> {
        let mut maps = BTreeMap::new();
        for (name, map) in &self.maps {
            match map {
                aya::maps::Map::Array(_)
                | aya::maps::Map::HashMap(_)
                | aya::maps::Map::LruHashMap(_)
                | aya::maps::Map::LpmTrie(_)
                | aya::maps::Map::PerCpuArray(_)
                | aya::maps::Map::PerCpuHashMap(_)
                | aya::maps::Map::PerCpuLruHashMap(_) => {}
                _ => continue,
            }
            let data = self.duplicate(name)?;
            let map = aya::maps::Map::from_map_data(data)
                .map_err(map_err(name, "unsupported map type"))?;
            maps.insert(*name, map);
        }
        Ok(MapSet { maps })
    }

    fn map(&self, name: &'static str) -> Result<&aya::maps::Map> {
        self.maps.get(name).ok_or(DatapathError::MissingMap(name))
    }

    fn map_mut(&mut self, name: &'static str) -> Result<&mut aya::maps::Map> {
        self.maps
            .get_mut(name)
            .ok_or(DatapathError::MissingMap(name))
    }

    pub fn config(&self) -> Result<Config> {
        let array: Array<&MapData, Config> = Array::try_from(self.map(names::CONFIG)?)
            .map_err(map_err(names::CONFIG, "wrong type"))?;
        array
            .get(&0, 0)
            .map_err(map_err(names::CONFIG, "reading entry 0"))
    }

    pub fn set_config(&mut self, config: Config) -> Result<()> {
        let mut array: Array<&mut MapData, Config> = Array::try_from(self.map_mut(names::CONFIG)?)
            .map_err(map_err(names::CONFIG, "wrong type"))?;
        array
            .set(0, config, 0)
            .map_err(map_err(names::CONFIG, "writing entry 0"))
    }

    /// Sets the global mode, keeping the rest of CONFIG.
    pub fn set_mode(&mut self, mode: Mode) -> Result<()> {
        let mut config = self.config()?;
        config.mode = mode as u8;
        self.set_config(config)
    }

    /// Sets the site's hour of the week and the schedules' tolerance (`schedule`), keeping
    /// the rest of CONFIG; returns whether anything changed. Cached decisions carry the
    /// hour they were made in; a new tolerance makes them be judged again.
    pub fn set_schedule_clock(&mut self, hour_of_week: u8, tolerance: u8) -> Result<bool> {
        let mut config = self.config()?;
        if config.hour_of_week == hour_of_week && config.schedule_tolerance == tolerance {
            return Ok(false);
        }
        if config.schedule_tolerance != tolerance {
            config.cache_epoch = config.cache_epoch.wrapping_add(1);
        }
        config.hour_of_week = hour_of_week;
        config.schedule_tolerance = tolerance;
        self.set_config(config)?;
        Ok(true)
    }

    /// Sets or clears CONFIG flags.
    pub fn set_flags(&mut self, flags: u8, on: bool) -> Result<()> {
        let mut config = self.config()?;
        if on {
            config.flags |= flags;
        } else {
            config.flags &= !flags;
        }
        self.set_config(config)
    }

    fn devices_map_mut(&mut self) -> Result<HashMap<&mut MapData, DeviceKey, DeviceEntry>> {
        HashMap::try_from(self.map_mut(names::DEVICES)?)
            .map_err(map_err(names::DEVICES, "wrong type"))
    }

    fn devices_map(&self) -> Result<HashMap<&MapData, DeviceKey, DeviceEntry>> {
        HashMap::try_from(self.map(names::DEVICES)?).map_err(map_err(names::DEVICES, "wrong type"))
    }

    fn active_generation(&self) -> Result<u8> {
        Ok(active_generation(&self.config()?))
    }

    /// Enrolls (or updates) the device at `addr` in the policy packets read now. For a
    /// whole inventory use [`MapSet::install_policy`], which switches atomically.
    pub fn enroll(&mut self, addr: IpAddr, entry: DeviceEntry) -> Result<()> {
        // Its mark first: the datapath looks DEVICES up only for marked addresses.
        self.shared_words(&defs::ENROLLED_ADDRS, 1)?
            .or(&[enrolled_bit(&addr_key(addr))]);
        let generation = self.active_generation()?;
        self.devices_map_mut()?
            .insert(device_key(addr, generation), entry, 0)
            .map_err(map_err(names::DEVICES, "enrolling a device"))?;
        self.bump_cache_epoch()
    }

    /// Removes the device at `addr` from the policy packets read now.
    pub fn unenroll(&mut self, addr: IpAddr) -> Result<()> {
        let generation = self.active_generation()?;
        match self
            .devices_map_mut()?
            .remove(&device_key(addr, generation))
        {
            Ok(()) | Err(MapError::KeyNotFound) => {}
            Err(e) => return Err(map_err(names::DEVICES, "removing a device")(e)),
        }
        self.bump_cache_epoch()
    }

    /// Every address enrolled in the policy packets read now, with its entry.
    pub fn devices(&self) -> Result<BTreeMap<IpAddr, DeviceEntry>> {
        let generation = self.active_generation()?;
        self.devices_map()?
            .iter()
            .filter(|kv| {
                kv.as_ref()
                    .map_or(true, |(k, _)| k.generation == generation)
            })
            .map(|kv| kv.map(|(k, v)| (addr_of(&k.addr), v)))
            .collect::<Result<_, _>>()
            .map_err(map_err(names::DEVICES, "reading"))
    }

    /// Replaces the whole policy (devices and rules) so that every packet sees either the
    /// whole old or the whole new one: the new policy is written into the generation
    /// packets do not read, then one CONFIG write switches them over, then the old
    /// generation is removed. An interrupted install leaves the old policy in force.
    pub fn install_policy(
        &mut self,
        devices: &[(IpAddr, DeviceEntry)],
        rules: &[(u32, RuleKeyData, RuleSet)],
    ) -> Result<()> {
        let config = self.config()?;
        let old = active_generation(&config);
        let new = old ^ 1;
        // Leftovers of an interrupted install in the inactive generation.
        self.clear_generation(new)?;
        // The new devices' marks first: the datapath looks DEVICES up only for marked
        // addresses.
        let enrolled = self.shared_words(&defs::ENROLLED_ADDRS, 1)?;
        let marks: Vec<(usize, u64)> = devices
            .iter()
            .map(|(addr, _)| enrolled_bit(&addr_key(*addr)))
            .collect();
        enrolled.or(&marks);
        {
            let mut map = self.devices_map_mut()?;
            for (addr, entry) in devices {
                map.insert(device_key(*addr, new), entry, 0)
                    .map_err(map_err(names::DEVICES, "writing the new policy's devices"))?;
            }
        }
        {
            let mut map: LpmTrie<&mut MapData, RuleKeyData, RuleSet> =
                LpmTrie::try_from(self.map_mut(names::RULES)?)
                    .map_err(map_err(names::RULES, "wrong type"))?;
            for (prefix_len, data, set) in rules {
                let mut data = *data;
                data.generation = new;
                map.insert(&LpmKey::new(*prefix_len, data), set, 0)
                    .map_err(map_err(names::RULES, "writing the new policy's rules"))?;
            }
        }
        // One write switches the generation and drops every flow's cached device entries.
        let mut switched = self.config()?;
        switched.generation = config.generation.wrapping_add(1);
        switched.cache_epoch = switched.cache_epoch.wrapping_add(1);
        self.set_config(switched)?;
        self.clear_generation(old)?;
        // Only the new policy's addresses (and those enrolled since, which this thread
        // would have marked) are enrolled now: the marks of the others go, so that
        // addresses that left over the years do not fill the bitmap.
        let mut words = vec![0u64; defs::ENROLLED_ADDRS.max_entries as usize];
        for addr in self.devices()?.keys() {
            let (index, mask) = enrolled_bit(&addr_key(*addr));
            if let Some(word) = words.get_mut(index) {
                *word |= mask;
            }
        }
        enrolled.store(&words);
        Ok(())
    }

    /// The mmapable array `def` of `words_per_entry` u64s per entry, mapped to be changed
    /// atomically.
    /// Clears the generation of REQUEST_FILTER that the next period will mark, when
    /// `now_ns` (CLOCK_MONOTONIC) is in the first half of period `period` and it was not
    /// cleared in this period yet (`cleared`: the period of the last clearing). Returns the
    /// period it cleared in. Without it the filter only fills up: requests' replies are
    /// then looked up in REQUESTS, as before the filter.
    pub fn clear_stale_requests(&self, now_ns: u64, cleared: Option<u64>) -> Result<Option<u64>> {
        let Some((period, first)) = stale_request_generation(now_ns) else {
            return Ok(None);
        };
        if cleared == Some(period) {
            return Ok(None);
        }
        let first = first as usize;
        self.shared_words(&defs::REQUEST_FILTER, 1)?
            .clear(first..first + REQUEST_FILTER_WORDS as usize);
        Ok(Some(period))
    }

    fn shared_words(&self, def: &MapDef, words_per_entry: usize) -> Result<sys::SharedWords> {
        sys::SharedWords::map(
            map_data(self.map(def.name)?),
            def.max_entries as usize * words_per_entry,
        )
        .map_err(|e| DatapathError::Mapping(def.name, e))
    }

    fn clear_generation(&mut self, generation: u8) -> Result<()> {
        let stale: Vec<DeviceKey> = self
            .devices_map()?
            .keys()
            .filter_map(|k| k.ok())
            .filter(|k| k.generation == generation)
            .collect();
        let mut map = self.devices_map_mut()?;
        for key in stale {
            match map.remove(&key) {
                Ok(()) | Err(MapError::KeyNotFound) => {}
                Err(e) => {
                    return Err(map_err(names::DEVICES, "removing an old policy's device")(
                        e,
                    ));
                }
            }
        }
        let mut rules: LpmTrie<&mut MapData, RuleKeyData, RuleSet> =
            LpmTrie::try_from(self.map_mut(names::RULES)?)
                .map_err(map_err(names::RULES, "wrong type"))?;
        let stale: Vec<LpmKey<RuleKeyData>> = rules
            .keys()
            .filter_map(|k| k.ok())
            .filter(|k| k.data().generation == generation)
            .collect();
        for key in stale {
            match rules.remove(&key) {
                Ok(()) | Err(MapError::KeyNotFound) => {}
                Err(e) => return Err(map_err(names::RULES, "removing an old policy's rules")(e)),
            }
        }
        Ok(())
    }

    /// The rule sets of the policy packets read now: (prefix length, key, rules).
    pub fn rules(&self) -> Result<Vec<(u32, RuleKeyData, RuleSet)>> {
        let generation = self.active_generation()?;
        let map: LpmTrie<&MapData, RuleKeyData, RuleSet> =
            LpmTrie::try_from(self.map(names::RULES)?)
                .map_err(map_err(names::RULES, "wrong type"))?;
        map.iter()
            .filter_map(|kv| match kv {
                Ok((k, v)) if k.data().generation == generation => {
                    Some(Ok((k.prefix_len(), k.data(), v)))
                }
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            })
            .collect::<Result<_, _>>()
            .map_err(map_err(names::RULES, "reading"))
    }

    /// Event counters: (sent, suppressed by the rate limit, lost because the ring was full).
    pub fn event_stats(&self) -> Result<(u64, u64, u64)> {
        let array: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(self.map(names::EVENT_STATS)?)
                .map_err(map_err(names::EVENT_STATS, "wrong type"))?;
        let sum = |index: u32| -> Result<u64> {
            Ok(array
                .get(&index, 0)
                .map_err(map_err(names::EVENT_STATS, "reading"))?
                .iter()
                .sum())
        };
        Ok((
            sum(EVENTS_SENT)?,
            sum(EVENTS_SUPPRESSED)?,
            sum(EVENTS_LOST)?,
        ))
    }

    /// Takes the event ring buffer out of the set (one reader: the daemon).
    pub fn take_events(&mut self) -> Result<aya::maps::RingBuf<MapData>> {
        let map = self
            .maps
            .remove(names::EVENTS)
            .ok_or(DatapathError::MissingMap(names::EVENTS))?;
        aya::maps::RingBuf::try_from(map).map_err(map_err(names::EVENTS, "wrong type"))
    }

    /// Counters of the device in `slot`, summed over CPUs, with what the decision cache
    /// holds for it. Reads the whole cache: for many devices, [`MapSet::devices_stats`].
    pub fn device_stats(&self, slot: u32) -> Result<DeviceStats> {
        Ok(self.devices_stats([slot])?.pop().unwrap_or_default())
    }

    /// Baseline entries the device in `slot` learned, summed over CPUs (the decision cache
    /// holds none: a learned flow is always judged).
    pub fn learned_flows(&self, slot: u32) -> Result<u64> {
        Ok(self.device_table_stats(slot)?.learned_flows)
    }

    /// Counters of the devices in `slots` (in that order), summed over CPUs, with what the
    /// decision cache holds for them (read once, after the table).
    pub fn devices_stats(&self, slots: impl IntoIterator<Item = u32>) -> Result<Vec<DeviceStats>> {
        let mut all = slots
            .into_iter()
            .map(|slot| Ok((slot, self.device_table_stats(slot)?)))
            .collect::<Result<Vec<_>>>()?;
        let held = self.held_device_charges()?;
        for (slot, stats) in &mut all {
            stats.merge(&held.stats(*slot));
        }
        Ok(all.into_iter().map(|(_, stats)| stats).collect())
    }

    /// What DEVICE_STATS holds for the device in `slot`, summed over CPUs, without what
    /// the decision cache and the probe memos hold for it.
    pub fn device_table_stats(&self, slot: u32) -> Result<DeviceStats> {
        let array: PerCpuArray<&MapData, DeviceStats> =
            PerCpuArray::try_from(self.map(names::DEVICE_STATS)?)
                .map_err(map_err(names::DEVICE_STATS, "wrong type"))?;
        let values = array
            .get(&slot, 0)
            .map_err(map_err(names::DEVICE_STATS, "reading a slot"))?;
        Ok(merge_stats(values.iter()))
    }

    /// What the decision cache's entries and the probe memos hold for enrolled devices, on
    /// every CPU.
    pub fn held_device_charges(&self) -> Result<HeldDeviceCharges> {
        self.held_sources()?.read()
    }

    /// Where device charges are held, on descriptors of their own (`HeldSources`).
    pub fn held_sources(&self) -> Result<HeldSources> {
        Ok(HeldSources {
            decisions: self.batch_array(names::DECISIONS)?,
            memos: self.batch_array(names::PROBE_MEMO)?,
            config: aya::maps::Map::Array(self.duplicate(names::CONFIG)?),
            devices: aya::maps::Map::HashMap(self.duplicate(names::DEVICES)?),
        })
    }

    /// Forgets what the decision cache holds for the devices in `slots` from before the
    /// current cache epoch: slots just handed to new devices (after the policy switch,
    /// which moved the epoch, so that the previous owner's entries hold no more and the new
    /// owner's are kept). The previous owner's flows lose what those entries held too.
    pub fn forget_held_charges(&mut self, slots: &[u32]) -> Result<()> {
        if slots.is_empty() {
            return Ok(());
        }
        let epoch = self.config()?.cache_epoch.wrapping_add(1);
        let mut array: PerCpuArray<&mut MapData, Decision> =
            PerCpuArray::try_from(self.map_mut(names::DECISIONS)?)
                .map_err(map_err(names::DECISIONS, "wrong type"))?;
        let stale = |d: &Decision| {
            d.pending_packets != 0
                && d.epoch != epoch
                && d.sides.iter().any(|side| slots.contains(&side.slot))
        };
        for index in 0..DECISION_SLOTS {
            let values = array
                .get(&index, 0)
                .map_err(map_err(names::DECISIONS, "reading"))?;
            if !values.iter().any(stale) {
                continue;
            }
            let cleared: Vec<Decision> = values
                .iter()
                .map(|d| {
                    if stale(d) {
                        Decision {
                            pending_packets: 0,
                            pending_bytes: 0,
                            pending_last_ns: 0,
                            ..*d
                        }
                    } else {
                        *d
                    }
                })
                .collect();
            let cleared =
                aya::maps::PerCpuValues::try_from(cleared).map_err(DatapathError::Cpus)?;
            array
                .set(index, cleared, 0)
                .map_err(map_err(names::DECISIONS, "clearing an entry"))?;
        }
        Ok(())
    }

    /// Zeroes the counters of `slot` (a slot handed to a new device), and forgets the MACs
    /// it learned with.
    pub fn reset_device_stats(&mut self, slot: u32) -> Result<()> {
        let mut array: PerCpuArray<&mut MapData, DeviceStats> =
            PerCpuArray::try_from(self.map_mut(names::DEVICE_STATS)?)
                .map_err(map_err(names::DEVICE_STATS, "wrong type"))?;
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| DatapathError::Cpus(e))?;
        let zeros = aya::maps::PerCpuValues::try_from(vec![DeviceStats::default(); cpus])
            .map_err(DatapathError::Cpus)?;
        array
            .set(slot, zeros, 0)
            .map_err(map_err(names::DEVICE_STATS, "zeroing a slot"))?;
        let mut reasons: PerCpuArray<&mut MapData, u64> =
            PerCpuArray::try_from(self.map_mut(names::DEVICE_REASONS)?)
                .map_err(map_err(names::DEVICE_REASONS, "wrong type"))?;
        for index in slot * DEVICE_REASON_SLOTS..(slot + 1) * DEVICE_REASON_SLOTS {
            let zeros =
                aya::maps::PerCpuValues::try_from(vec![0u64; cpus]).map_err(DatapathError::Cpus)?;
            reasons
                .set(index, zeros, 0)
                .map_err(map_err(names::DEVICE_REASONS, "zeroing a slot"))?;
        }
        self.reset_learned_macs(slot)
    }

    /// The source MACs the device in `slot` sent from on a ward leg while it learned.
    pub fn learned_macs(&self, slot: u32) -> Result<LearnedMacs> {
        let array: Array<&MapData, LearnedMacs> =
            Array::try_from(self.map(names::LEARNED_MACS)?)
                .map_err(map_err(names::LEARNED_MACS, "wrong type"))?;
        array
            .get(&slot, 0)
            .map_err(map_err(names::LEARNED_MACS, "reading a slot"))
    }

    /// Forgets the MACs the device in `slot` was seen with while it learned.
    pub fn reset_learned_macs(&mut self, slot: u32) -> Result<()> {
        let mut array: Array<&mut MapData, LearnedMacs> =
            Array::try_from(self.map_mut(names::LEARNED_MACS)?)
                .map_err(map_err(names::LEARNED_MACS, "wrong type"))?;
        array
            .set(slot, LearnedMacs::default(), 0)
            .map_err(map_err(names::LEARNED_MACS, "zeroing a slot"))
    }

    /// Counters of every unenrolled address still in the table, summed over CPUs.
    pub fn unenrolled_stats(&self) -> Result<BTreeMap<IpAddr, DeviceStats>> {
        let map: HashMap<&MapData, Addr, DeviceStats> =
            HashMap::try_from(self.map(names::UNENROLLED_STATS)?)
                .map_err(map_err(names::UNENROLLED_STATS, "wrong type"))?;
        map.iter()
            .map(|kv| kv.map(|(k, v)| (addr_of(&k), v)))
            .collect::<Result<_, _>>()
            .map_err(map_err(names::UNENROLLED_STATS, "reading"))
    }

    /// Flows of enrolled devices (`enrolled = true`, FLOWS) or of the other table
    /// (UNENROLLED_FLOWS: flows between unenrolled addresses, and devices' violating
    /// flows). The tables are arrays the XDP program manages; they are read through a
    /// shared mapping, without a system call per flow.
    pub fn flows(&self, enrolled: bool) -> Result<Vec<(FlowKey, FlowStats)>> {
        let def = if enrolled {
            &defs::FLOWS
        } else {
            &defs::UNENROLLED_FLOWS
        };
        let map = self.map(def.name)?;
        let data = match map {
            aya::maps::Map::Array(data) => data,
            _ => {
                return Err(DatapathError::Map {
                    name: def.name,
                    what: "wrong type",
                    source: MapError::InvalidMapType {
                        map_type: def.kind as u32,
                    },
                });
            }
        };
        let seed = self.config()?.hash_seed;
        let table = sys::MappedTable::<FlowSet>::map(data, def.max_entries)
            .map_err(|e| DatapathError::Mapping(def.name, e))?;
        // The table first, then what the decision cache holds: a cache entry replaced in
        // between has charged its packets to the table after it was read, so they are
        // missed by this read (and seen by the next), never counted twice.
        let mut flows = Vec::new();
        let mut indexes = Vec::new();
        let mut set_index = 0u32;
        table
            .each(|set| {
                for (way, slot) in set.slots.iter().enumerate() {
                    if way_holds_flow(&set, way, seed) {
                        let index = set_index * FLOW_WAYS + way as u32;
                        indexes.push((index, set.tags[way] as u32));
                        flows.push((slot.key, slot.stats));
                    }
                }
                set_index += 1;
            })
            .map_err(|e| DatapathError::Mapping(def.name, e))?;
        let table_id = if enrolled {
            TABLE_FLOWS
        } else {
            TABLE_UNENROLLED
        };
        let pending = self.pending_flow_charges(table_id)?;
        if !pending.is_empty() {
            for ((index, tag), (_, stats)) in indexes.iter().zip(flows.iter_mut()) {
                if let Some(charges) = pending.get(index) {
                    for (flow_tag, charge) in charges {
                        if flow_tag == tag {
                            stats.merge(charge);
                        }
                    }
                }
            }
        }
        Ok(flows)
    }

    /// What the decision cache's entries hold for the flows of table `table`
    /// (`judge::TABLE_*`), on every CPU: by flow slot index, the flow's tag and its charge
    /// (`judge::flow_charge`). A slot whose tag is another's now held another flow.
    fn pending_flow_charges(&self, table: u8) -> Result<BTreeMap<u32, Vec<(u32, FlowStats)>>> {
        let decisions = self.batch_array::<Decision>(names::DECISIONS)?;
        let mut pending: BTreeMap<u32, Vec<(u32, FlowStats)>> = BTreeMap::new();
        decisions
            .each(DECISION_SLOTS as usize, |_, per_cpu| {
                for decision in per_cpu.iter().filter(|d| d.pending_packets != 0) {
                    for side in decision.sides.iter().filter(|s| s.table == table) {
                        pending.entry(side.flow_index).or_default().push((
                            side.flow_tag,
                            flow_charge(
                                side.flow,
                                decision.pending_packets,
                                decision.pending_bytes,
                                decision.pending_last_ns,
                            ),
                        ));
                    }
                }
            })
            .map_err(|e| DatapathError::Batch(names::DECISIONS, e))?;
        Ok(pending)
    }

    /// IP packets decided from the decision cache and judged in full, summed over CPUs.
    pub fn paths(&self) -> Result<(u64, u64)> {
        let counts = self.frame_counts()?;
        let sum = |index: u32| -> u64 {
            counts
                .iter()
                .filter_map(|c| c.paths.get(index as usize))
                .sum()
        };
        Ok((sum(PATH_CACHED), sum(PATH_JUDGED)))
    }

    /// Every CPU's frame counters (`FRAME_COUNTS`).
    fn frame_counts(&self) -> Result<Vec<FrameCounts>> {
        let array: PerCpuArray<&MapData, FrameCounts> =
            PerCpuArray::try_from(self.map(names::FRAME_COUNTS)?)
                .map_err(map_err(names::FRAME_COUNTS, "wrong type"))?;
        let values = array
            .get(&0, 0)
            .map_err(map_err(names::FRAME_COUNTS, "reading"))?;
        Ok(values.iter().copied().collect())
    }

    /// Counts the verdicts of interface `ifindex` apart, in block `slot` (< MAX_IFACES);
    /// `None` stops counting it apart. `ward`: the interface is a ward leg, where source
    /// MACs are judged against the devices' bindings.
    pub fn set_interface_slot(
        &mut self,
        ifindex: u32,
        slot: Option<u32>,
        ward: bool,
    ) -> Result<()> {
        let mut array: Array<&mut MapData, u32> =
            Array::try_from(self.map_mut(names::IFACE_SLOTS)?)
                .map_err(map_err(names::IFACE_SLOTS, "wrong type"))?;
        let role = if ward { IFACE_WARD } else { 0 };
        array
            .set(ifindex, slot.map_or(0, |s| s + 1) | role, 0)
            .map_err(map_err(names::IFACE_SLOTS, "writing an interface's slot"))
    }

    /// The discovery table (`STATIONS`): source MACs and addresses seen on ward legs
    /// outside the inventory.
    pub fn stations(&self) -> Result<Vec<(StationKey, StationStats)>> {
        let map: HashMap<&MapData, StationKey, StationStats> =
            HashMap::try_from(self.map(names::STATIONS)?)
                .map_err(map_err(names::STATIONS, "wrong type"))?;
        map.iter()
            .collect::<Result<_, _>>()
            .map_err(map_err(names::STATIONS, "reading"))
    }

    /// Every address–MAC binding (`MAC_BINDINGS`): address, MAC, end of a timed one (0:
    /// lasting).
    pub fn mac_bindings(&self) -> Result<Vec<(IpAddr, [u8; 6], u64)>> {
        let map: HashMap<&MapData, MacBindingKey, MacBinding> =
            HashMap::try_from(self.map(names::MAC_BINDINGS)?)
                .map_err(map_err(names::MAC_BINDINGS, "wrong type"))?;
        map.iter()
            .map(|kv| kv.map(|(k, v)| (addr_of(&k.addr), k.mac, v.until_ns)))
            .collect::<Result<_, _>>()
            .map_err(map_err(names::MAC_BINDINGS, "reading"))
    }

    /// Adds (or updates) address–MAC bindings; a timed one ends at `until_ns`
    /// (`CLOCK_MONOTONIC`), 0 for a lasting one.
    pub fn put_mac_bindings(&mut self, bindings: &[(IpAddr, [u8; 6], u64)]) -> Result<()> {
        let mut map: HashMap<&mut MapData, MacBindingKey, MacBinding> =
            HashMap::try_from(self.map_mut(names::MAC_BINDINGS)?)
                .map_err(map_err(names::MAC_BINDINGS, "wrong type"))?;
        for (addr, mac, until_ns) in bindings {
            map.insert(
                mac_binding_key(*addr, *mac),
                MacBinding {
                    until_ns: *until_ns,
                },
                0,
            )
            .map_err(map_err(names::MAC_BINDINGS, "writing a MAC binding"))?;
        }
        Ok(())
    }

    /// Removes every binding not in `keep` (address and MAC).
    pub fn retain_mac_bindings(&mut self, keep: &[(IpAddr, [u8; 6], u64)]) -> Result<()> {
        let keep: std::collections::BTreeSet<MacBindingKey> = keep
            .iter()
            .map(|(addr, mac, _)| mac_binding_key(*addr, *mac))
            .collect();
        let mut map: HashMap<&mut MapData, MacBindingKey, MacBinding> =
            HashMap::try_from(self.map_mut(names::MAC_BINDINGS)?)
                .map_err(map_err(names::MAC_BINDINGS, "wrong type"))?;
        let stale: Vec<MacBindingKey> = map
            .keys()
            .filter_map(|k| k.ok())
            .filter(|k| !keep.contains(k))
            .collect();
        for key in stale {
            match map.remove(&key) {
                Ok(()) | Err(MapError::KeyNotFound) => {}
                Err(e) => return Err(map_err(names::MAC_BINDINGS, "removing a MAC binding")(e)),
            }
        }
        Ok(())
    }

    /// Packets and bytes per (action, reason) seen on the interface counted in `slot`.
    pub fn interface_verdicts(&self, slot: u32) -> Result<Vec<(Action, Reason, Counter)>> {
        let array: PerCpuArray<&MapData, Counter> =
            PerCpuArray::try_from(self.map(names::IFACE_VERDICTS)?)
                .map_err(map_err(names::IFACE_VERDICTS, "wrong type"))?;
        let mut rows = Vec::new();
        for &reason in Reason::ALL {
            for action in Action::ALL {
                let index = slot * monitor_common::VERDICT_SLOTS + verdict_index(action, reason);
                let values = array
                    .get(&index, 0)
                    .map_err(map_err(names::IFACE_VERDICTS, "reading"))?;
                rows.push((action, reason, sum_counters(values.iter())));
            }
        }
        Ok(rows)
    }

    /// Packets of the device in `slot` by the reason of its own verdict (non-zero only),
    /// with what the decision cache holds (read after the table: an entry replaced in
    /// between is missed once, never counted twice).
    pub fn device_reasons(&self, slot: u32) -> Result<Vec<(Reason, u64)>> {
        let array: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(self.map(names::DEVICE_REASONS)?)
                .map_err(map_err(names::DEVICE_REASONS, "wrong type"))?;
        let mut rows = Vec::new();
        for &reason in Reason::ALL {
            let index = monitor_common::maps::device_reason_index(slot, reason as u8);
            let total: u64 = array
                .get(&index, 0)
                .map_err(map_err(names::DEVICE_REASONS, "reading"))?
                .iter()
                .sum();
            rows.push((reason, index, total));
        }
        let held = self.held_device_charges()?;
        Ok(rows
            .into_iter()
            .map(|(reason, index, total)| (reason, total + held.reason(index)))
            .filter(|(_, total)| *total > 0)
            .collect())
    }

    /// Every flow of the enrolled devices: FLOWS, and their violating flows, which the
    /// datapath keeps apart in UNENROLLED_FLOWS so that floods cannot evict legitimate ones.
    pub fn enrolled_flows(&self) -> Result<Vec<(FlowKey, FlowStats)>> {
        let enrolled: std::collections::BTreeSet<IpAddr> = self.devices()?.into_keys().collect();
        let mut flows = self.flows(true)?;
        flows.extend(
            self.flows(false)?
                .into_iter()
                .filter(|(key, _)| enrolled.contains(&addr_of(&key.device))),
        );
        Ok(flows)
    }

    /// The whole baseline.
    pub fn baseline(&self) -> Result<Vec<(FlowKey, BaselineEntry)>> {
        let map: HashMap<&MapData, FlowKey, BaselineEntry> =
            HashMap::try_from(self.map(names::BASELINE)?)
                .map_err(map_err(names::BASELINE, "wrong type"))?;
        map.iter()
            .collect::<Result<_, _>>()
            .map_err(map_err(names::BASELINE, "reading"))
    }

    /// Adds entries to the baseline (restored from disk, imported, promoted from policy).
    pub fn insert_baseline(&mut self, entries: &[(FlowKey, BaselineEntry)]) -> Result<()> {
        // Their services first: the datapath skips the lookup of a flow whose bit is clear.
        const WORDS: usize = std::mem::size_of::<ServiceFilter>() / 8;
        let marks: Vec<(usize, u64)> = entries
            .iter()
            .map(|(key, _)| {
                let (word, mask) = service_bit(key);
                (service_filter_index(key) as usize * WORDS + word, mask)
            })
            .collect();
        self.shared_words(&defs::SERVICE_FILTERS, WORDS)?.or(&marks);
        let mut map: HashMap<&mut MapData, FlowKey, BaselineEntry> =
            HashMap::try_from(self.map_mut(names::BASELINE)?)
                .map_err(map_err(names::BASELINE, "wrong type"))?;
        for (key, entry) in entries {
            map.insert(key, entry, 0)
                .map_err(map_err(names::BASELINE, "inserting an entry"))?;
        }
        // Decisions cached as "not in the baseline" must look it up again.
        if !entries.is_empty() {
            self.bump_cache_epoch()?;
        }
        Ok(())
    }

    /// Removes baseline entries (missing ones are not an error), then makes the datapath
    /// forget its cached decisions once.
    pub fn remove_baseline_entries(&mut self, keys: &[FlowKey]) -> Result<()> {
        {
            let mut map: HashMap<&mut MapData, FlowKey, BaselineEntry> =
                HashMap::try_from(self.map_mut(names::BASELINE)?)
                    .map_err(map_err(names::BASELINE, "wrong type"))?;
            for key in keys {
                match map.remove(key) {
                    Ok(()) | Err(MapError::KeyNotFound) => {}
                    Err(MapError::SyscallError(e))
                        if e.io_error.raw_os_error() == Some(libc::ENOENT) => {}
                    Err(e) => return Err(map_err(names::BASELINE, "removing an entry")(e)),
                }
            }
        }
        self.bump_cache_epoch()
    }

    /// Removes a baseline entry; missing entries are not an error.
    pub fn remove_baseline(&mut self, key: &FlowKey) -> Result<()> {
        let mut map: HashMap<&mut MapData, FlowKey, BaselineEntry> =
            HashMap::try_from(self.map_mut(names::BASELINE)?)
                .map_err(map_err(names::BASELINE, "wrong type"))?;
        match map.remove(key) {
            Ok(()) | Err(MapError::KeyNotFound) => {}
            Err(e) => return Err(map_err(names::BASELINE, "removing an entry")(e)),
        }
        // Flows cached as "in the baseline" must look it up again.
        self.bump_cache_epoch()
    }

    /// Makes the datapath forget the decisions it cached: after any change of DEVICES,
    /// RULES or the baseline.
    pub fn bump_cache_epoch(&mut self) -> Result<()> {
        let mut config = self.config()?;
        config.cache_epoch = config.cache_epoch.wrapping_add(1);
        self.set_config(config)
    }

    /// Packets and bytes per (action, reason), summed over CPUs; zero rows included.
    pub fn verdicts(&self) -> Result<Vec<(Action, Reason, Counter)>> {
        self.verdict_block(0)
    }

    /// Like [`MapSet::verdicts`], for the frames a capture cut short
    /// (`CONFIG_CAPTURE_MAY_BE_CUT`, replay only): what the program made of their
    /// captured bytes, not a verdict to predict.
    pub fn cut_verdicts(&self) -> Result<Vec<(Action, Reason, Counter)>> {
        self.verdict_block(monitor_common::CUT_VERDICTS)
    }

    fn verdict_block(&self, base: u32) -> Result<Vec<(Action, Reason, Counter)>> {
        let counts = self.frame_counts()?;
        let mut rows = Vec::new();
        for &reason in Reason::ALL {
            for action in Action::ALL {
                let index = (base + verdict_index(action, reason)) as usize;
                let counter = sum_counters(counts.iter().filter_map(|c| c.verdicts.get(index)));
                rows.push((action, reason, counter));
            }
        }
        Ok(rows)
    }

    /// Packets and bytes per frame class, summed over CPUs.
    pub fn classes(&self) -> Result<Vec<(FrameClass, Counter)>> {
        let counts = self.frame_counts()?;
        Ok(FrameClass::ALL
            .into_iter()
            .map(|class| {
                let counter =
                    sum_counters(counts.iter().filter_map(|c| c.classes.get(class as usize)));
                (class, counter)
            })
            .collect())
    }
}

/// Whether the map named `name` is a flow table (FLOWS, UNENROLLED_FLOWS): an array
/// of [`FlowSet`]s the XDP program fills, read through a shared mapping.
pub fn is_flow_table(name: &str) -> bool {
    name == defs::FLOWS.name || name == defs::UNENROLLED_FLOWS.name
}

/// The kernel's handle of any map.
fn map_data(map: &aya::maps::Map) -> &MapData {
    use aya::maps::Map;
    match map {
        Map::Array(d)
        | Map::ArrayOfMaps(d)
        | Map::BloomFilter(d)
        | Map::CgroupArray(d)
        | Map::CgroupStorage(d)
        | Map::CgrpStorage(d)
        | Map::CpuMap(d)
        | Map::DevMap(d)
        | Map::DevMapHash(d)
        | Map::HashMap(d)
        | Map::HashOfMaps(d)
        | Map::InodeStorage(d)
        | Map::LpmTrie(d)
        | Map::LruHashMap(d)
        | Map::PerCpuArray(d)
        | Map::PerCpuCgroupStorage(d)
        | Map::PerCpuHashMap(d)
        | Map::PerCpuLruHashMap(d)
        | Map::PerfEventArray(d)
        | Map::ProgramArray(d)
        | Map::Queue(d)
        | Map::ReusePortSockArray(d)
        | Map::RingBuf(d)
        | Map::SockHash(d)
        | Map::SockMap(d)
        | Map::SkStorage(d)
        | Map::Stack(d)
        | Map::StackTraceMap(d)
        | Map::Unsupported(d)
        | Map::XskMap(d) => d,
    }
}

/// A random seed for the datapath's hashes (`Config::hash_seed`).
fn random_seed() -> u32 {
    let mut seed = [0u8; 4];
    // SAFETY: getrandom writes at most the 4 bytes of the buffer we own.
    let got = unsafe { libc::getrandom(seed.as_mut_ptr().cast(), seed.len(), 0) };
    if got != 4 {
        // No entropy to be had: the time still differs from machine to machine.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        return now.subsec_nanos() ^ now.as_secs() as u32;
    }
    u32::from_ne_bytes(seed)
}

/// What the decision cache's entries and the probe memos hold for enrolled devices
/// (`Decision::pending_*` of sides with a slot, `ProbeMemo::pending_*`): a cached hit, and
/// a scan's probe whose event is suppressed, charge their device's counters and reason
/// there, not in DEVICE_STATS and DEVICE_REASONS, until the entry or memo is replaced.
/// Every reader of those adds this (`judge::device_charge`, the XDP program's own
/// mapping).
#[derive(Debug, Default)]
pub struct HeldDeviceCharges {
    stats: std::collections::HashMap<u32, DeviceStats>,
    /// By DEVICE_REASONS index.
    reasons: std::collections::HashMap<u32, u64>,
}

/// The maps that hold device charges outside DEVICE_STATS and DEVICE_REASONS (the decision
/// cache, the probe memos), with CONFIG and DEVICES, which say whose a memo's charges are.
pub struct HeldSources {
    decisions: sys::BatchArray<Decision>,
    memos: sys::BatchArray<ProbeMemo>,
    config: aya::maps::Map,
    devices: aya::maps::Map,
}

impl HeldSources {
    /// Reads every CPU's entries of DECISIONS and PROBE_MEMO. A memo's charges count as
    /// the XDP program will charge them: to its slot when made under the current cache
    /// epoch, or when its device still has that slot in the active policy; else not at all
    /// (the slot changed hands, `ProbeMemo::charges_current`).
    pub fn read(&self) -> Result<HeldDeviceCharges> {
        let mut held = HeldDeviceCharges::default();
        self.decisions
            .each(DECISION_SLOTS as usize, |_, per_cpu| {
                for decision in per_cpu.iter().filter(|d| d.pending_packets != 0) {
                    held.add(
                        &decision.sides,
                        decision.pending_packets,
                        decision.pending_bytes,
                        decision.pending_last_ns,
                    );
                }
            })
            .map_err(|e| DatapathError::Batch(names::DECISIONS, e))?;
        let mut memos = Vec::new();
        self.memos
            .each(1, |_, per_cpu| {
                memos.extend(per_cpu.iter().filter(|m| m.pending_packets != 0).copied());
            })
            .map_err(|e| DatapathError::Batch(names::PROBE_MEMO, e))?;
        if memos.is_empty() {
            return Ok(held);
        }
        let config: Config = Array::try_from(&self.config)
            .map_err(map_err(names::CONFIG, "wrong type"))?
            .get(&0, 0)
            .map_err(map_err(names::CONFIG, "reading entry 0"))?;
        let devices: HashMap<&MapData, DeviceKey, DeviceEntry> =
            HashMap::try_from(&self.devices).map_err(map_err(names::DEVICES, "wrong type"))?;
        for memo in memos {
            let key = DeviceKey {
                generation: active_generation(&config),
                ..memo.key
            };
            if memo.charges_current(config.cache_epoch.wrapping_add(1))
                || devices
                    .get(&key, 0)
                    .is_ok_and(|entry| entry.slot == memo.slot)
            {
                held.add(
                    &memo.sides,
                    memo.pending_packets,
                    memo.pending_bytes,
                    memo.pending_last_ns,
                );
            }
        }
        Ok(held)
    }
}

impl HeldDeviceCharges {
    fn add(&mut self, sides: &[DecisionSide; 2], packets: u64, bytes: u64, last_ns: u64) {
        for side in sides.iter().filter(|s| s.slot != NO_SLOT) {
            if side.device & CHARGE_COUNT != 0 {
                self.stats
                    .entry(side.slot)
                    .or_default()
                    .merge(&device_charge(side.device, packets, bytes, last_ns));
            }
            if side.device & CHARGE_REASON != 0 {
                *self
                    .reasons
                    .entry(monitor_common::maps::device_reason_index(
                        side.slot,
                        side.reason,
                    ))
                    .or_default() += packets;
            }
        }
    }

    /// What is held for the device in `slot`.
    pub fn stats(&self, slot: u32) -> DeviceStats {
        self.stats.get(&slot).copied().unwrap_or_default()
    }

    /// What is held for DEVICE_REASONS index `index`.
    pub fn reason(&self, index: u32) -> u64 {
        self.reasons.get(&index).copied().unwrap_or(0)
    }

    /// What is held by DEVICE_REASONS index.
    pub fn reasons(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        self.reasons.iter().map(|(index, count)| (*index, *count))
    }
}

fn merge_stats<'a>(values: impl Iterator<Item = &'a DeviceStats>) -> DeviceStats {
    let mut total = DeviceStats::default();
    for per_cpu in values {
        total.merge(per_cpu);
    }
    total
}

fn sum_counters<'a>(values: impl Iterator<Item = &'a Counter>) -> Counter {
    values.fold(Counter::default(), |acc, c| Counter {
        packets: acc.packets + c.packets,
        bytes: acc.bytes + c.bytes,
    })
}

/// What generic XDP costs, for the warning of a fallback and the docs.
pub const GENERIC_XDP_COST: &str = "generic XDP runs only after the kernel has built a \
    socket buffer for every frame, so each packet costs about what the ordinary receive \
    path costs (several times native XDP), a dropped packet saves little of that work, and \
    a flood still loads the CPU before it is dropped; a driver with native XDP avoids this \
    (`--xdp-mode native` refuses to start without it)";

/// The key of `MAC_BINDINGS` for `addr` sent from `mac`.
pub fn mac_binding_key(addr: IpAddr, mac: [u8; 6]) -> MacBindingKey {
    MacBindingKey {
        addr: addr_key(addr),
        mac,
        _pad: 0,
    }
}

/// An interface of `monitor run --iface NAME[:ward|core]`: ward legs have the devices
/// behind them, and a frame's source MAC is judged there; core legs (and interfaces given
/// without a role, as before roles existed) carry traffic whose source MACs are routers'.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfaceSpec {
    pub name: String,
    pub ward: bool,
}

impl std::str::FromStr for InterfaceSpec {
    type Err = String;
    fn from_str(text: &str) -> Result<InterfaceSpec, String> {
        let (name, ward) = match text.rsplit_once(':') {
            Some((name, "ward")) => (name, true),
            Some((name, "core")) => (name, false),
            Some((_, role)) => {
                return Err(format!(
                    "interface `{text}`: role `{role}` is neither `ward` nor `core` \
                     (give NAME, NAME:ward or NAME:core)"
                ));
            }
            None => (text, false),
        };
        if name.is_empty() {
            return Err(format!(
                "interface `{text}`: no interface name before the role"
            ));
        }
        Ok(InterfaceSpec {
            name: name.to_string(),
            ward,
        })
    }
}

/// A `monitor run --iface` value whose role is neither `ward` nor `core`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInterfaceRole(String);

/// The ward legs among `monitor run --iface` values (`NAME:ward`).
pub fn ward_legs(
    values: &[String],
) -> std::result::Result<std::collections::BTreeSet<String>, BadInterfaceRole> {
    let mut wards = std::collections::BTreeSet::new();
    for value in values {
        let spec: InterfaceSpec = value.parse().map_err(BadInterfaceRole)?;
        if spec.ward {
            wards.insert(spec.name);
        }
    }
    Ok(wards)
}

/// The interface names of `monitor run --iface` values, in order (roles taken off).
pub fn interface_names(values: &[String]) -> Vec<String> {
    values
        .iter()
        .map(|value| {
            value
                .parse::<InterfaceSpec>()
                .map_or_else(|_| value.clone(), |s| s.name)
        })
        .collect()
}

/// The index of interface `name` in the calling thread's network namespace.
pub fn if_index(name: &str) -> Option<u32> {
    let name = std::ffi::CString::new(name).ok()?;
    // SAFETY: a valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (index != 0).then_some(index)
}

/// Makes sure `/sys/fs/bpf` is a bpf filesystem, mounting it if nothing is mounted there.
pub fn ensure_bpffs(root: &Path) -> std::io::Result<()> {
    const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
    std::fs::create_dir_all(root)?;
    let c_root = std::ffi::CString::new(root.as_os_str().as_encoded_bytes())
        .map_err(|_| std::io::Error::other("path contains a NUL byte"))?;
    // SAFETY: statfs writes into the zeroed struct we own.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c_root.as_ptr(), &mut stat) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if stat.f_type as i64 == BPF_FS_MAGIC {
        return Ok(());
    }
    let fstype = c"bpf";
    // SAFETY: valid NUL-terminated strings; no data argument.
    let rc = unsafe {
        libc::mount(
            fstype.as_ptr(),
            c_root.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_roles_are_ward_core_or_none() {
        let values: Vec<String> = ["ward0:ward", "core0:core", "uplink"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(interface_names(&values), ["ward0", "core0", "uplink"]);
        let wards = ward_legs(&values).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(wards.into_iter().collect::<Vec<_>>(), ["ward0"]);
        let bad = ward_legs(&["ward0:edge".to_string()]).map(|_| ());
        let message = bad.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            message.contains("ward0:edge") && message.contains("`edge`"),
            "{message}"
        );
        assert!(":ward".parse::<InterfaceSpec>().is_err());
    }
}
