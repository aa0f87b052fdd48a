//! The benchmark driver behind `cargo xtask bench` (not part of the test suite): measures
//! the datapath and the controller and writes BENCHMARKS.md.
//!
//! Every figure is a ratio to a reference measured in the same run, interleaved with it,
//! because this machine (2 vCPUs, shared with other work) drifts by tens of percent from
//! minute to minute: only same-run ratios mean anything.
//!
//! 1. Per-packet cost: BPF_PROG_TEST_RUN (repeat 1e6) of `monitor_xdp` against
//!    `parse_only_xdp` (the same parser, nothing else), frame by frame, at 10 / 1,000 /
//!    10,000 devices and up to 1,000,000 baseline entries.
//! 2. Packets per second into a veth pair in a router namespace: the monitor in native XDP
//!    against nftables (netdev ingress, an equivalent set) against no filter. Traffic comes
//!    from BPF_PROG_TEST_RUN's live-frames mode (`tx_xdp` returns XDP_TX on the sender's
//!    end), counted where the receiver's NAPI took it (the veth's rx counters).
//! 3. Controller: /metrics scrape time and size and resident memory at 10 and 10,000
//!    devices (`monitor run`), baseline save and load at 1,000,000 entries.
//!
//! Usage: monitor-bench [--out BENCHMARKS.md] [--runs 5] [--monitor-bin PATH] [--quick]
//!        [--only cost|live|controller]... [--case NAME-PART]

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    io::{Read as _, Write as _},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, ExitCode, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use aya::programs::xdp::XdpMode;
use monitor::{
    datapath::{Datapath, Maps, addr_key, if_index},
    lab::{NetNs, unique_name, veth},
    state::StateDir,
    state::baseline::BaselineFile,
};
use monitor_common::{
    Action, Mode,
    maps::{BaselineEntry, DeviceEntry, FlowKey, MODE_INHERIT, ORIGIN_IMPORTED, programs},
};

/// Repetitions per BPF_PROG_TEST_RUN call: the kernel reports the mean over these.
const REPEAT: u32 = 1_000_000;
/// Frames per live-frames batch (the kernel's maximum is 256).
const LIVE_BATCH: u32 = 64;
/// How long one packets-per-second run lasts, roughly.
const LIVE_RUN_SECONDS: f64 = 1.0;
/// Everything after this line in BENCHMARKS.md is kept when the file is written again.
const NOTES_MARKER: &str =
    "<!-- Notes below are written by hand and kept by cargo xtask bench. -->";
/// The floors of issue 5.
const FLOOR_HIT_RATIO: f64 = 4.0;
const FLOOR_FLATNESS: f64 = 0.20;
const FLOOR_PPS_RATIO: f64 = 2.5;
const FLOOR_SCRAPE_MS: f64 = 100.0;
const FLOOR_RSS_MB: f64 = 100.0;

#[derive(Debug)]
struct Args {
    out: PathBuf,
    runs: usize,
    monitor_bin: Option<PathBuf>,
    /// Fewer and smaller cases: for trying the driver out, not for the report.
    quick: bool,
    /// Sections to run (`cost`, `live`, `controller`); all when empty.
    only: Vec<String>,
    /// Per-packet cases whose name contains this (for profiling one path with perf).
    case: Option<String>,
}

impl Args {
    fn wants(&self, section: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == section)
    }
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        out: PathBuf::from("BENCHMARKS.md"),
        runs: 5,
        monitor_bin: None,
        quick: false,
        only: Vec::new(),
        case: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--out" => args.out = it.next().context("--out needs a path")?.into(),
            "--runs" => args.runs = it.next().context("--runs needs a number")?.parse()?,
            "--monitor-bin" => {
                args.monitor_bin = Some(it.next().context("--monitor-bin needs a path")?.into())
            }
            "--quick" => args.quick = true,
            "--only" => args
                .only
                .push(it.next().context("--only needs cost, live or controller")?),
            "--case" => args.case = Some(it.next().context("--case needs part of a case name")?),
            other => bail!("unknown argument `{other}`"),
        }
    }
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("monitor-bench: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("monitor-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<()> {
    let started = Instant::now();
    let mut report = Report::new(args);
    // One datapath for the per-packet costs and the baseline save/load at 1M entries.
    let mut datapath = Datapath::load(&Maps::Private).context("loading the XDP object")?;
    if args.wants("cost") {
        match per_packet_cost(&mut datapath, args) {
            Ok(cost) => report.cost(&cost),
            Err(e) => report.failed("1. Per-packet cost", &e),
        }
    }
    if args.wants("live") {
        match packets_per_second(args) {
            Ok(live) => report.live(&live),
            Err(e) => report.failed("2. Packets per second", &e),
        }
    }
    if args.wants("controller") {
        // The table section 1 left (1,000,000 entries unless --quick or cost was skipped).
        let persistence = baseline_save_load(&datapath, args);
        drop(datapath);
        let controller = controller(args);
        report.controller(persistence, controller);
    }
    report.finish(started.elapsed());
    // Hand-written analysis (profiles, proposed fixes) below the marker survives a rerun.
    if let Ok(previous) = std::fs::read_to_string(&args.out)
        && let Some(at) = previous.find(NOTES_MARKER)
    {
        report.text.push('\n');
        report.text.push_str(&previous[at..]);
    }
    std::fs::write(&args.out, &report.text)
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!(
        "monitor-bench: wrote {} ({:.0} s)",
        args.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Statistics

/// Median and spread of one figure over the runs.
#[derive(Clone, Copy, Debug)]
struct Stat {
    median: f64,
    min: f64,
    max: f64,
    n: usize,
}

impl Stat {
    fn of(samples: &[f64]) -> Stat {
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n == 0 {
            f64::NAN
        } else if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        Stat {
            median,
            min: sorted.first().copied().unwrap_or(f64::NAN),
            max: sorted.last().copied().unwrap_or(f64::NAN),
            n,
        }
    }

    /// `median (min–max)` with `digits` decimals.
    fn show(&self, digits: usize) -> String {
        format!(
            "{:.d$} ({:.d$}–{:.d$})",
            self.median,
            self.min,
            self.max,
            d = digits
        )
    }
}

// ---------------------------------------------------------------------------------------
// Frames

const ROUTER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const DEVICE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
/// The server every device talks to (outside the inventory, as a core server often is).
const SERVER_V4: Ipv4Addr = Ipv4Addr::new(10, 20, 0, 10);
const SERVER_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x20, 0, 0, 0, 0, 0, 0x10);
/// The device the measured frames come from, device 0 (IPv6: its second address).
const DEVICE0_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x100, 0, 0, 0, 0, 0, 1);
const CLIENT_PORT: u16 = 40_000;
/// The allowed service (in the baseline) and one that is not.
const ALLOWED_PORT: u16 = 443;
const DENIED_PORT: u16 = 9_999;

/// Device `i`'s IPv4 address: 10.100.0.1, 10.100.0.2, ...
fn device_v4(i: u32) -> Ipv4Addr {
    let n = i + 1;
    Ipv4Addr::new(10, 100 + (n >> 16) as u8, (n >> 8) as u8, n as u8)
}

fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn ethernet(dst: [u8; 6], vlan: Option<u16>, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(64);
    frame.extend_from_slice(&dst);
    frame.extend_from_slice(&DEVICE_MAC);
    if let Some(vid) = vlan {
        frame.extend_from_slice(&0x8100u16.to_be_bytes());
        frame.extend_from_slice(&vid.to_be_bytes());
    }
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame.extend_from_slice(payload);
    // The minimum Ethernet frame (without FCS): 60 bytes.
    if frame.len() < 60 {
        frame.resize(60, 0);
    }
    frame
}

/// A UDP datagram with an 18-byte payload (a 60-byte frame, the smallest there is).
fn udp(src_port: u16, dst_port: u16) -> Vec<u8> {
    let mut udp = Vec::with_capacity(26);
    udp.extend_from_slice(&src_port.to_be_bytes());
    udp.extend_from_slice(&dst_port.to_be_bytes());
    udp.extend_from_slice(&26u16.to_be_bytes());
    // Checksum 0: none (IPv4); nothing on the measured paths verifies it.
    udp.extend_from_slice(&0u16.to_be_bytes());
    udp.extend_from_slice(&[0x42; 18]);
    udp
}

fn ipv4_udp(
    dst_mac: [u8; 6],
    vlan: Option<u16>,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    dst_port: u16,
) -> Vec<u8> {
    let payload = udp(CLIENT_PORT, dst_port);
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
    ip.extend_from_slice(&[0, 1, 0x40, 0, 64, 17, 0, 0]);
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    let sum = checksum(&ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    ip.extend_from_slice(&payload);
    ethernet(dst_mac, vlan, 0x0800, &ip)
}

fn ipv6_udp(src: Ipv6Addr, dst: Ipv6Addr, dst_port: u16) -> Vec<u8> {
    let payload = udp(CLIENT_PORT, dst_port);
    let mut ip = vec![0x60, 0, 0, 0];
    ip.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    ip.extend_from_slice(&[17, 64]);
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    ip.extend_from_slice(&payload);
    ethernet(ROUTER_MAC, None, 0x86dd, &ip)
}

// ---------------------------------------------------------------------------------------
// 1. Per-packet cost

/// One measured frame: what it is, the global mode, the frame, and the action expected.
struct Case {
    name: &'static str,
    mode: Mode,
    frame: Vec<u8>,
    expect: Action,
}

fn cases() -> Vec<Case> {
    let hit = ipv4_udp(ROUTER_MAC, None, device_v4(0), SERVER_V4, ALLOWED_PORT);
    let miss = ipv4_udp(ROUTER_MAC, None, device_v4(0), SERVER_V4, DENIED_PORT);
    vec![
        Case {
            name: "learn (known flow)",
            mode: Mode::Learn,
            frame: hit.clone(),
            expect: Action::Pass,
        },
        Case {
            name: "enforce, baseline hit",
            mode: Mode::Enforce,
            frame: hit.clone(),
            expect: Action::Pass,
        },
        Case {
            name: "enforce, drop",
            mode: Mode::Enforce,
            frame: miss.clone(),
            expect: Action::Drop,
        },
        Case {
            name: "audit (would-drop)",
            mode: Mode::Audit,
            frame: miss,
            expect: Action::Pass,
        },
        Case {
            name: "IPv6, enforce hit",
            mode: Mode::Enforce,
            frame: ipv6_udp(DEVICE0_V6, SERVER_V6, ALLOWED_PORT),
            expect: Action::Pass,
        },
        Case {
            name: "VLAN 802.1Q, enforce hit",
            mode: Mode::Enforce,
            frame: ipv4_udp(ROUTER_MAC, Some(110), device_v4(0), SERVER_V4, ALLOWED_PORT),
            expect: Action::Pass,
        },
    ]
}

/// A datapath state: devices enrolled and baseline entries in the table.
#[derive(Clone, Copy, Debug)]
struct Scale {
    devices: u32,
    baseline: u32,
}

/// Results for one (scale, case): monitor ns, parse-only ns, and their per-run ratio.
struct CostRow {
    scale: Scale,
    case: &'static str,
    monitor_ns: Stat,
    parse_ns: Stat,
    ratio: Stat,
}

struct CostResults {
    rows: Vec<CostRow>,
}

fn enroll_range(datapath: &mut Datapath, from: u32, to: u32) -> Result<()> {
    for i in from..to {
        datapath.maps_mut().enroll(
            IpAddr::V4(device_v4(i)),
            DeviceEntry::new(i, MODE_INHERIT, 0),
        )?;
    }
    Ok(())
}

/// Filler baseline entries: device `j % devices` reaches a distinct peer and port, as a
/// large learned baseline would look. None of them matches a measured frame.
fn fill_baseline(datapath: &mut Datapath, from: u32, to: u32, devices: u32) -> Result<()> {
    let entry = BaselineEntry {
        learned_ns: 0,
        origin: ORIGIN_IMPORTED,
        _pad1: 0,
        _pad2: 0,
        window: 0,
    };
    let mut chunk = Vec::with_capacity(65_536);
    for j in from..to {
        let peer = Ipv4Addr::new(172, 16 + (j >> 16) as u8, (j >> 8) as u8, j as u8);
        chunk.push((
            FlowKey {
                device: addr_key(IpAddr::V4(device_v4(j % devices))),
                peer: addr_key(IpAddr::V4(peer)),
                service_port: 1_000 + (j % 50_000) as u16,
                protocol: 6,
                direction: 1,
            },
            entry,
        ));
        if chunk.len() == chunk.capacity() {
            datapath.maps_mut().insert_baseline(&chunk)?;
            chunk.clear();
        }
    }
    datapath.maps_mut().insert_baseline(&chunk)?;
    Ok(())
}

fn test_run_ns(
    datapath: &Datapath,
    program: &'static str,
    frame: &[u8],
    expect: Option<Action>,
) -> Result<f64> {
    let verdict = datapath.test_run_program(program, frame, REPEAT)?;
    if let Some(expect) = expect
        && verdict.action != expect
    {
        bail!(
            "{program} returned {:?}, expected {expect:?}",
            verdict.action
        );
    }
    Ok(verdict.duration.as_nanos() as f64)
}

fn per_packet_cost(datapath: &mut Datapath, args: &Args) -> Result<CostResults> {
    println!("monitor-bench: 1. per-packet cost (BPF_PROG_TEST_RUN, repeat {REPEAT})");
    let scales: Vec<Scale> = if args.quick {
        vec![
            Scale {
                devices: 10,
                baseline: 0,
            },
            Scale {
                devices: 10_000,
                baseline: 100_000,
            },
        ]
    } else {
        vec![
            Scale {
                devices: 10,
                baseline: 0,
            },
            Scale {
                devices: 1_000,
                baseline: 0,
            },
            Scale {
                devices: 10_000,
                baseline: 0,
            },
            Scale {
                devices: 10_000,
                baseline: 100_000,
            },
            Scale {
                devices: 10_000,
                baseline: 1_000_000,
            },
        ]
    };
    let cases: Vec<Case> = cases()
        .into_iter()
        .filter(|c| {
            args.case
                .as_ref()
                .is_none_or(|part| c.name.contains(part.as_str()))
        })
        .collect();
    // Device 0's IPv6 address, and its allowed flows learned the way live traffic would.
    datapath
        .maps_mut()
        .enroll(IpAddr::V6(DEVICE0_V6), DeviceEntry::new(0, MODE_INHERIT, 0))?;
    let mut enrolled = 0;
    let mut filled = 0;
    let mut rows = Vec::new();
    for scale in scales {
        enroll_range(datapath, enrolled, scale.devices)?;
        enrolled = scale.devices;
        fill_baseline(datapath, filled, scale.baseline, scale.devices)?;
        filled = scale.baseline;
        datapath.maps_mut().set_mode(Mode::Learn)?;
        for case in cases
            .iter()
            .filter(|c| c.expect == Action::Pass && c.mode == Mode::Enforce)
        {
            datapath.test_run(&case.frame)?;
        }
        let table = datapath.maps().baseline()?.len();
        println!(
            "  {} devices, {} baseline entries in the table",
            scale.devices, table
        );
        // Per case: monitor ns, parse-only ns, their ratio; one sample per run.
        let mut samples: BTreeMap<&str, [Vec<f64>; 3]> = BTreeMap::new();
        for _ in 0..args.runs {
            for case in &cases {
                datapath.maps_mut().set_mode(case.mode)?;
                // Interleaved: the reference right before the program, every run.
                let parse = test_run_ns(datapath, programs::PARSE_ONLY, &case.frame, None)?;
                let monitor =
                    test_run_ns(datapath, programs::MONITOR, &case.frame, Some(case.expect))?;
                let entry = samples.entry(case.name).or_default();
                entry[0].push(monitor);
                entry[1].push(parse);
                entry[2].push(monitor / parse);
            }
        }
        for case in &cases {
            let [monitor, parse, ratio] = &samples[case.name];
            let row = CostRow {
                scale: Scale {
                    devices: scale.devices,
                    baseline: table as u32,
                },
                case: case.name,
                monitor_ns: Stat::of(monitor),
                parse_ns: Stat::of(parse),
                ratio: Stat::of(ratio),
            };
            println!(
                "    {:<26} monitor {:>6.1} ns  parse-only {:>5.1} ns  ratio {}",
                row.case,
                row.monitor_ns.median,
                row.parse_ns.median,
                row.ratio.show(2)
            );
            rows.push(row);
        }
    }
    datapath.maps_mut().set_mode(Mode::Learn)?;
    Ok(CostResults { rows })
}

// ---------------------------------------------------------------------------------------
// 2. Packets per second

/// What filters the receiving interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Filter {
    Monitor,
    Nftables,
    None,
    /// A two-instruction XDP program that drops every frame: what the generator and
    /// veth's receive path cost by themselves, with no filtering at all.
    Floor,
}

impl Filter {
    const ALL: [Filter; 4] = [
        Filter::Monitor,
        Filter::Nftables,
        Filter::None,
        Filter::Floor,
    ];

    fn name(self) -> &'static str {
        match self {
            Filter::Monitor => "monitor (XDP native)",
            Filter::Nftables => "nftables (netdev ingress)",
            Filter::None => "no filter",
            Filter::Floor => "XDP_DROP only (floor)",
        }
    }
}

/// Loads `r0 = XDP_DROP; exit` with the bpf syscall and attaches it in native mode to
/// `ifindex` (of the calling thread's namespace) through a BPF link, which detaches when
/// the returned fd closes. Raw syscalls, because the XDP object is another team's and
/// this program exists only as the benchmark's floor.
fn attach_xdp_drop(ifindex: u32) -> Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd as _;
    const BPF_PROG_LOAD: libc::c_long = 5;
    const BPF_LINK_CREATE: libc::c_long = 28;
    const BPF_PROG_TYPE_XDP: u32 = 6;
    const BPF_XDP: u32 = 37;
    const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
    // mov64 r0, 1 (XDP_DROP); exit.
    let insns: [u64; 2] = [0x0000_0001_0000_00b7, 0x0000_0000_0000_0095];
    let license = c"GPL";
    // union bpf_attr, BPF_PROG_LOAD: prog_type, insn_cnt, insns, license; the rest zero.
    let mut attr = [0u8; 144];
    attr[0..4].copy_from_slice(&BPF_PROG_TYPE_XDP.to_ne_bytes());
    attr[4..8].copy_from_slice(&(insns.len() as u32).to_ne_bytes());
    attr[8..16].copy_from_slice(&(insns.as_ptr() as u64).to_ne_bytes());
    attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
    // SAFETY: attr is a valid bpf_attr for BPF_PROG_LOAD; the pointers outlive the call.
    let prog = unsafe { libc::syscall(libc::SYS_bpf, BPF_PROG_LOAD, attr.as_ptr(), attr.len()) };
    if prog < 0 {
        return Err(std::io::Error::last_os_error()).context("loading the XDP_DROP floor program");
    }
    // SAFETY: a new fd we own.
    let prog = unsafe { std::os::fd::OwnedFd::from_raw_fd(prog as i32) };
    // BPF_LINK_CREATE: prog_fd, target_ifindex, attach_type, flags.
    let mut attr = [0u8; 144];
    attr[0..4].copy_from_slice(&(std::os::fd::AsRawFd::as_raw_fd(&prog) as u32).to_ne_bytes());
    attr[4..8].copy_from_slice(&ifindex.to_ne_bytes());
    attr[8..12].copy_from_slice(&BPF_XDP.to_ne_bytes());
    attr[12..16].copy_from_slice(&XDP_FLAGS_DRV_MODE.to_ne_bytes());
    // SAFETY: attr is a valid bpf_attr for BPF_LINK_CREATE.
    let link = unsafe { libc::syscall(libc::SYS_bpf, BPF_LINK_CREATE, attr.as_ptr(), attr.len()) };
    if link < 0 {
        return Err(std::io::Error::last_os_error())
            .context("attaching the XDP_DROP floor program");
    }
    // SAFETY: a new fd we own; the program stays loaded as long as the link holds it.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(link as i32) })
}

/// What a receiver may add over the XDP_DROP floor, per frame, to take FLOOR_PPS_RATIO
/// times nftables' frames per CPU-second: (floor + nft) / ratio − floor.
fn budget_ns(floor: Option<&LiveRow>, nft: &LiveRow) -> f64 {
    let Some(floor) = floor else { return f64::NAN };
    let floor_ns = 1e9 / floor.cpu_pps.median;
    let nft_ns = 1e9 / nft.cpu_pps.median;
    nft_ns / FLOOR_PPS_RATIO - floor_ns
}

/// CPU time (ns) the scheduler has given a task so far: /proc/.../schedstat, first field.
fn schedstat_ns(path: &str) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// The schedstat path of `ksoftirqd/<cpu>`, which takes over softirq work when there is
/// a lot of it: the receive path then runs there instead of in our thread.
fn ksoftirqd_schedstat(cpu: usize) -> Option<String> {
    let name = format!("ksoftirqd/{cpu}");
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let comm = std::fs::read_to_string(entry.path().join("comm")).ok()?;
            (comm.trim() == name).then(|| {
                entry
                    .path()
                    .join("schedstat")
                    .to_string_lossy()
                    .into_owned()
            })
        })
}

/// One veth pair: the sender's end (in the generator namespace) and the receiver's (in
/// the router namespace), each filtered by one [`Filter`].
struct Pair {
    filter: Filter,
    sender_ifindex: u32,
    receiver: String,
    receiver_mac: [u8; 6],
}

struct LiveRow {
    traffic: &'static str,
    filter: Filter,
    /// Frames taken per second of CPU time (generator and receiver share one CPU).
    cpu_pps: Stat,
    /// Frames taken per second of wall time (includes other processes on that CPU).
    wall_pps: Stat,
    /// Frames the receiver could not take (its ring was full), as a share of those sent.
    refused: Stat,
    /// CPU-time pps of this filter over nftables', per run.
    vs_nft: Stat,
    /// CPU-time pps of this filter over the unfiltered, per run.
    vs_none: Stat,
    /// What the filter adds per frame over the XDP_DROP floor (ns of CPU), per run.
    added_ns: Stat,
}

struct LiveResults {
    rows: Vec<LiveRow>,
    devices: u32,
    frames_per_run: u32,
}

fn rx_counters(ns: &NetNs, iface: &str) -> Result<(u64, u64)> {
    let out = ns.ip(&["-s", "-j", "link", "show", "dev", iface])?;
    let json: serde_json::Value = serde_json::from_str(&out)?;
    let rx = &json[0]["stats64"]["rx"];
    Ok((
        rx["packets"].as_u64().context("rx packets")?,
        rx["dropped"].as_u64().context("rx dropped")?,
    ))
}

fn mac_of(ns: &NetNs, iface: &str) -> Result<[u8; 6]> {
    let out = ns.ip(&["-j", "link", "show", "dev", iface])?;
    let json: serde_json::Value = serde_json::from_str(&out)?;
    let text = json[0]["address"].as_str().context("link address")?;
    let mut mac = [0u8; 6];
    for (byte, part) in mac.iter_mut().zip(text.split(':')) {
        *byte = u8::from_str_radix(part, 16)?;
    }
    Ok(mac)
}

/// Pins the calling thread to one CPU, so that generator and receiver share it the same
/// way in every run (veth's receive path runs in the softirq the sender raises).
fn pin_to_cpu(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET writes inside it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn unpin() {
    // SAFETY: as in `pin_to_cpu`.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for cpu in 0..libc::CPU_SETSIZE as usize {
            libc::CPU_SET(cpu, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// One live run: frames the receiver took per second of CPU time and of wall time, and
/// the share of frames it could not take.
#[derive(Clone, Copy, Debug)]
struct LiveSample {
    cpu_pps: f64,
    wall_pps: f64,
    refused: f64,
}

/// Where the CPU time of a live run is read: this thread and the pinned CPU's ksoftirqd.
struct CpuClock {
    thread: String,
    ksoftirqd: Option<String>,
}

impl CpuClock {
    fn now(&self) -> u64 {
        schedstat_ns(&self.thread) + self.ksoftirqd.as_deref().map_or(0, schedstat_ns)
    }
}

/// Pushes `count` frames into `pair`.
fn live_run(
    datapath: &Datapath,
    generator: &NetNs,
    router: &NetNs,
    pair: &Pair,
    frame: &[u8],
    count: u32,
    clock: &CpuClock,
) -> Result<LiveSample> {
    let (rx0, drop0) = rx_counters(router, &pair.receiver)?;
    let (wall, cpu) = {
        let _inside = generator.enter()?;
        let cpu0 = clock.now();
        let started = Instant::now();
        datapath.test_run_live(programs::TX, pair.sender_ifindex, frame, count, LIVE_BATCH)?;
        // veth may still hold up to a ring of frames: let its NAPI finish them.
        let wall = started.elapsed().as_secs_f64();
        std::thread::sleep(Duration::from_millis(20));
        (wall, (clock.now() - cpu0) as f64 / 1e9)
    };
    let (rx1, drop1) = rx_counters(router, &pair.receiver)?;
    let taken = (rx1 - rx0) as f64;
    Ok(LiveSample {
        cpu_pps: taken / cpu,
        wall_pps: taken / wall,
        refused: (drop1 - drop0) as f64 / f64::from(count),
    })
}

fn packets_per_second(args: &Args) -> Result<LiveResults> {
    println!(
        "monitor-bench: 2. packets per second (live frames into veth: native XDP vs nftables vs none vs XDP_DROP)"
    );
    let devices: u32 = if args.quick { 1_000 } else { 10_000 };
    let router = NetNs::new("brt")?;
    let generator = NetNs::new("bgn")?;
    let mut pairs = Vec::new();
    for (i, filter) in Filter::ALL.into_iter().enumerate() {
        let sender = unique_name("bs");
        let receiver = unique_name("br");
        veth(&generator, &sender, &router, &receiver)?;
        router.ip(&[
            "addr",
            "add",
            &format!("192.168.{}.1/24", 100 + i),
            "dev",
            &receiver,
        ])?;
        // veth takes XDP_TX/redirected frames only into a NAPI ring, which it has when a
        // program is attached or GRO is on; GRO on every receiver keeps them alike.
        router.exec(&["ethtool", "-K", &receiver, "gro", "on"])?;
        let sender_ifindex = {
            let _inside = generator.enter()?;
            if_index(&sender).context("sender ifindex")?
        };
        let receiver_mac = mac_of(&router, &receiver)?;
        pairs.push(Pair {
            filter,
            sender_ifindex,
            receiver,
            receiver_mac,
        });
    }
    let index_of = |filter: Filter| pairs.iter().position(|p| p.filter == filter).unwrap_or(0);
    let (monitor_at, nft_at, none_at, floor_at) = (
        index_of(Filter::Monitor),
        index_of(Filter::Nftables),
        index_of(Filter::None),
        index_of(Filter::Floor),
    );

    // The monitor: `devices` enrolled, each allowed to reach the server on 443/udp, enforced.
    let mut datapath = Datapath::load(&Maps::Private)?;
    enroll_range(&mut datapath, 0, devices)?;
    datapath.maps_mut().set_mode(Mode::Learn)?;
    let probe = ipv4_udp(ROUTER_MAC, None, device_v4(0), SERVER_V4, ALLOWED_PORT);
    datapath.test_run(&probe)?;
    let learned = datapath.maps().baseline()?;
    let (key0, entry0) = *learned.first().context("the probe frame was not learned")?;
    let entries: Vec<_> = (1..devices)
        .map(|i| {
            (
                FlowKey {
                    device: addr_key(IpAddr::V4(device_v4(i))),
                    ..key0
                },
                entry0,
            )
        })
        .collect();
    datapath.maps_mut().insert_baseline(&entries)?;
    datapath.maps_mut().set_mode(Mode::Enforce)?;
    let _floor_link = {
        let _inside = router.enter()?;
        datapath.attach(&pairs[monitor_at].receiver, XdpMode::Driver)?;
        attach_xdp_drop(if_index(&pairs[floor_at].receiver).context("floor ifindex")?)?
    };

    // nftables: the same allowed (device, server, port) triples; everything else dropped.
    let mut rules = String::from(
        "table netdev bench {\n  set allowed {\n    type ipv4_addr . ipv4_addr . inet_service\n    elements = {\n",
    );
    for i in 0..devices {
        let _ = writeln!(
            rules,
            "      {} . {SERVER_V4} . {ALLOWED_PORT},",
            device_v4(i)
        );
    }
    let _ = write!(
        rules,
        "    }}\n  }}\n  chain ingress {{\n    type filter hook ingress device \"{}\" priority 0; policy accept;\n    ip saddr . ip daddr . udp dport @allowed accept\n    drop\n  }}\n}}\n",
        pairs[nft_at].receiver
    );
    let rules_path = std::env::temp_dir().join(format!("monitor-bench-{}.nft", std::process::id()));
    std::fs::write(&rules_path, &rules)?;
    let rules_arg = rules_path.to_string_lossy().into_owned();
    let loaded = router.exec(&["nft", "-f", &rules_arg]);
    let _ = std::fs::remove_file(&rules_path);
    loaded.context("loading the nftables rule set")?;

    let traffic = [("denied", DENIED_PORT), ("allowed", ALLOWED_PORT)];
    let frame_for =
        |pair: &Pair, port: u16| ipv4_udp(pair.receiver_mac, None, device_v4(0), SERVER_V4, port);

    // Generator and receiver on one CPU (veth's receive runs in the softirq the sender
    // raises, or in that CPU's ksoftirqd), so their CPU time is what the frames cost.
    let cpu = std::thread::available_parallelism().map_or(1, |n| n.get()) - 1;
    pin_to_cpu(cpu);
    // SAFETY: gettid has no arguments.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) };
    let clock = CpuClock {
        thread: format!("/proc/self/task/{tid}/schedstat"),
        ksoftirqd: ksoftirqd_schedstat(cpu),
    };
    // Calibrate the run length on the slowest case (nftables dropping).
    let nft_pair = &pairs[nft_at];
    let calibration = live_run(
        &datapath,
        &generator,
        &router,
        nft_pair,
        &frame_for(nft_pair, DENIED_PORT),
        200_000,
        &clock,
    )?;
    let frames_per_run =
        ((calibration.cpu_pps * LIVE_RUN_SECONDS) as u32).clamp(200_000, 20_000_000);
    let frames_per_run = if args.quick {
        frames_per_run / 4
    } else {
        frames_per_run
    };
    println!("  {frames_per_run} frames per run, generator pinned to CPU {cpu}");

    let mut samples: BTreeMap<(usize, usize), Vec<LiveSample>> = BTreeMap::new();
    for run in 0..args.runs {
        for (t, (_, port)) in traffic.iter().enumerate() {
            // Rotate the order so that no filter always runs first (warm or cold caches).
            for k in 0..pairs.len() {
                let f = (k + run) % pairs.len();
                let pair = &pairs[f];
                let result = live_run(
                    &datapath,
                    &generator,
                    &router,
                    pair,
                    &frame_for(pair, *port),
                    frames_per_run,
                    &clock,
                )?;
                samples.entry((t, f)).or_default().push(result);
            }
        }
    }
    unpin();

    let mut rows = Vec::new();
    for (t, (traffic_name, _)) in traffic.iter().enumerate() {
        for (f, pair) in pairs.iter().enumerate() {
            let own = &samples[&(t, f)];
            let per_run = |other: usize, g: &dyn Fn(&LiveSample, &LiveSample) -> f64| -> Stat {
                Stat::of(
                    &own.iter()
                        .zip(&samples[&(t, other)])
                        .map(|(a, b)| g(a, b))
                        .collect::<Vec<_>>(),
                )
            };
            let row = LiveRow {
                traffic: traffic_name,
                filter: pair.filter,
                cpu_pps: Stat::of(&own.iter().map(|s| s.cpu_pps).collect::<Vec<_>>()),
                wall_pps: Stat::of(&own.iter().map(|s| s.wall_pps).collect::<Vec<_>>()),
                refused: Stat::of(&own.iter().map(|s| s.refused).collect::<Vec<_>>()),
                vs_nft: per_run(nft_at, &|a, b| a.cpu_pps / b.cpu_pps),
                vs_none: per_run(none_at, &|a, b| a.cpu_pps / b.cpu_pps),
                added_ns: per_run(floor_at, &|a, b| 1e9 / a.cpu_pps - 1e9 / b.cpu_pps),
            };
            println!(
                "  {:<8} {:<26} {:>5.2} Mpps/CPU-s ({:>5.2} wall)  vs nftables {}  vs none {}  +{} ns over XDP_DROP  refused {:.1}%",
                row.traffic,
                row.filter.name(),
                row.cpu_pps.median / 1e6,
                row.wall_pps.median / 1e6,
                row.vs_nft.show(2),
                row.vs_none.show(2),
                row.added_ns.show(0),
                row.refused.median * 100.0
            );
            rows.push(row);
        }
    }
    // Sanity: the monitor really judged the frames it was given.
    let verdicts = datapath.maps().verdicts()?;
    let dropped: u64 = verdicts
        .iter()
        .filter(|(a, _, _)| *a == Action::Drop)
        .map(|(_, _, c)| c.packets)
        .sum();
    if dropped == 0 {
        bail!("the monitor dropped nothing: the live frames did not reach it");
    }
    Ok(LiveResults {
        rows,
        devices,
        frames_per_run,
    })
}

// ---------------------------------------------------------------------------------------
// 3. Controller

struct Persistence {
    entries: usize,
    file_bytes: u64,
    save_s: Stat,
    dump_s: Stat,
    load_s: Stat,
    insert_s: Stat,
}

/// Saving and restoring the baseline at 1,000,000 entries, as the daemon does it (every
/// few seconds; at start), against the map syscalls alone.
fn baseline_save_load(datapath: &Datapath, args: &Args) -> Result<Persistence> {
    println!("monitor-bench: 3a. baseline save and load");
    let dir = std::env::temp_dir().join(format!("monitor-bench-state-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let state = StateDir::new(&dir);
    let runs = args.runs.min(3);
    let (mut save, mut dump, mut load, mut insert) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut entries = 0;
    let path = dir.join(monitor::state::files::BASELINE);
    let result = (|| -> Result<()> {
        for _ in 0..runs {
            let t = Instant::now();
            let raw = datapath.maps().baseline()?;
            dump.push(t.elapsed().as_secs_f64());
            entries = raw.len();
            drop(raw);
            let t = Instant::now();
            monitor::state::baseline::save(datapath.maps(), &state, None)?;
            save.push(t.elapsed().as_secs_f64());

            let mut fresh = Datapath::load(&Maps::Private)?;
            let t = Instant::now();
            let file = BaselineFile::read(&path)?;
            let restored = file.map_entries();
            drop(file);
            fresh.maps_mut().insert_baseline(&restored)?;
            load.push(t.elapsed().as_secs_f64());
            drop(fresh);
            // The reference: the same entries inserted with nothing to read or parse.
            let mut fresh = Datapath::load(&Maps::Private)?;
            let t = Instant::now();
            fresh.maps_mut().insert_baseline(&restored)?;
            insert.push(t.elapsed().as_secs_f64());
        }
        Ok(())
    })();
    let file_bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let _ = std::fs::remove_dir_all(&dir);
    result?;
    let p = Persistence {
        entries,
        file_bytes,
        save_s: Stat::of(&save),
        dump_s: Stat::of(&dump),
        load_s: Stat::of(&load),
        insert_s: Stat::of(&insert),
    };
    println!(
        "  {} entries, {:.1} MB: save {} s (map read alone {} s), load {} s (map insert alone {} s)",
        p.entries,
        p.file_bytes as f64 / 1e6,
        p.save_s.show(2),
        p.dump_s.show(2),
        p.load_s.show(2),
        p.insert_s.show(2)
    );
    Ok(p)
}

/// A `monitor run` with a generated inventory, and what it measured.
struct ControllerRun {
    devices: u32,
    /// Baseline entries the daemon restored at start.
    baseline: u32,
    /// From start to attached and serving.
    start_s: f64,
    scrape_ms: Stat,
    scrape_bytes: usize,
    /// Before the first scrape.
    idle_rss_mb: f64,
    /// After the scrapes.
    rss_mb: f64,
    peak_rss_mb: f64,
}

struct ControllerResults {
    runs: Vec<ControllerRun>,
}

fn write_inventory(dir: &Path, devices: u32) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    // Files of at most 1,000 devices: policy files are capped in size.
    for file in 0..devices.div_ceil(1_000) {
        let mut text = String::from("devices:\n");
        for i in file * 1_000..((file + 1) * 1_000).min(devices) {
            let ward = i / 200;
            let _ = write!(
                text,
                "  - name: dev-{i:05}\n    kind: {}\n    addresses: [{}]\n    mac: \"00:09:fb:{:02x}:{:02x}:{:02x}\"\n    location: {{ site: main, building: B, floor: \"{}\", ward: ward-{ward}, room: \"{}\", vlan: {} }}\n    criticality: normal\n    owner: clinical-it\n",
                [
                    "infusion-pump",
                    "patient-monitor",
                    "workstation",
                    "modality"
                ][(i % 4) as usize],
                device_v4(i),
                (i >> 16) as u8,
                (i >> 8) as u8,
                i as u8,
                ward % 10,
                i % 40,
                100 + ward % 50,
            );
        }
        if file == 0 {
            text = format!("defaults:\n  mode: learn\n  unenrolled: pass\n\n{text}");
        }
        std::fs::write(dir.join(format!("inventory-{file:02}.yaml")), text)?;
    }
    Ok(())
}

fn http_get(addr: SocketAddr, path: &str) -> Result<Vec<u8>> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let Some(body_at) = response.windows(4).position(|w| w == b"\r\n\r\n") else {
        bail!("no HTTP header in the answer from {addr}{path}");
    };
    if !response.starts_with(b"HTTP/1.1 200") && !response.starts_with(b"HTTP/1.0 200") {
        bail!(
            "{addr}{path}: {}",
            String::from_utf8_lossy(&response[..body_at])
        );
    }
    Ok(response[body_at + 4..].to_vec())
}

fn status_kb(pid: u32, field: &str) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .with_context(|| format!("{field} of {pid}"))?;
    Ok(line.split_whitespace().nth(1).context("value")?.parse()?)
}

/// Stops the daemon with SIGTERM (as an operator would), then removes its pins.
struct Daemon {
    child: Child,
    monitor: PathBuf,
    pin_dir: PathBuf,
    state_dir: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SAFETY: a signal to our own child, by its id.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = Command::new(&self.monitor)
            .arg("--pin-dir")
            .arg(&self.pin_dir)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .arg("detach")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.pin_dir);
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}

/// A baseline file of `per_device` flows per device, for the daemon to restore at start.
fn write_baseline(state: &Path, devices: u32, per_device: u32) -> Result<()> {
    use monitor::state::{
        baseline::{FORMAT, Record, VERSION},
        files::BASELINE as STATE_FILE,
    };
    let mut entries = Vec::with_capacity((devices * per_device) as usize);
    for i in 0..devices {
        for j in 0..per_device {
            entries.push(Record {
                device: IpAddr::V4(device_v4(i)),
                peer: IpAddr::V4(Ipv4Addr::new(10, 20, 0, 10 + j as u8)),
                protocol: 6,
                service_port: 443,
                direction: "out".into(),
                origin: "learned".into(),
                window: 0,
                learned: None,
            });
        }
    }
    std::fs::create_dir_all(state)?;
    let file = BaselineFile {
        format: FORMAT.into(),
        version: VERSION,
        entries,
    };
    std::fs::write(state.join(STATE_FILE), serde_json::to_vec(&file)?)?;
    Ok(())
}

/// Baseline flows per device in the controller runs: a ward's devices talk to a handful of
/// servers each.
const CONTROLLER_FLOWS_PER_DEVICE: u32 = 10;
/// Scrapes stop after this long, whatever `--runs` says.
const SCRAPE_BUDGET: Duration = Duration::from_secs(60);

fn controller_run(monitor: &Path, devices: u32, runs: usize) -> Result<ControllerRun> {
    let router = NetNs::new("bct")?;
    let other = NetNs::new("bcp")?;
    let iface = unique_name("bc");
    veth(&router, &iface, &other, &unique_name("bp"))?;
    let id = format!("{}-{devices}", std::process::id());
    let work = std::env::temp_dir().join(format!("monitor-bench-ctl-{id}"));
    let policies = work.join("policies");
    let state = work.join("state");
    write_inventory(&policies, devices)?;
    write_baseline(&state, devices, CONTROLLER_FLOWS_PER_DEVICE)?;
    let port = 20_000 + (std::process::id() % 20_000) as u16 + (devices % 7) as u16;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    // Its log goes to a file: a pipe nobody reads would stall it once full.
    let log_path = work.join("daemon.log");
    let log = std::fs::File::create(&log_path)?;
    let child = Command::new(monitor)
        .arg("--pin-dir")
        .arg(format!("/sys/fs/bpf/monitor-bench-{id}"))
        .arg("--state-dir")
        .arg(&state)
        .args([
            "run",
            "--iface",
            &iface,
            "--netns",
            router.name(),
            "--xdp-mode",
            "native",
        ])
        .arg("--policies")
        .arg(&policies)
        .args(["--metrics-addr", &addr.to_string()])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", monitor.display()))?;
    let mut daemon = Daemon {
        child,
        monitor: monitor.to_path_buf(),
        pin_dir: PathBuf::from(format!("/sys/fs/bpf/monitor-bench-{id}")),
        state_dir: work.clone(),
    };
    // Ready when it has attached and recorded itself (daemon.json), just before it starts
    // serving: then its memory is measured before any scrape.
    let started = Instant::now();
    let deadline = started + Duration::from_secs(120);
    let ready = state.join(monitor::state::files::DAEMON);
    loop {
        if let Ok(Some(status)) = daemon.child.try_wait() {
            let stderr = std::fs::read_to_string(&log_path).unwrap_or_default();
            bail!("`monitor run` exited ({status}): {}", stderr.trim());
        }
        if ready.exists() && TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            break;
        }
        if Instant::now() > deadline {
            bail!("`monitor run` was not ready within 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let start_s = started.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(2));
    let pid = daemon.child.id();
    let idle_rss_mb = status_kb(pid, "VmRSS:")? / 1024.0;
    let mut times = Vec::new();
    let mut bytes = 0;
    let scraping = Instant::now();
    for _ in 0..runs.max(5) {
        let t = Instant::now();
        let body = http_get(addr, "/metrics")?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        bytes = body.len();
        if scraping.elapsed() > SCRAPE_BUDGET {
            break;
        }
    }
    let rss_mb = status_kb(pid, "VmRSS:")? / 1024.0;
    let peak_rss_mb = status_kb(pid, "VmHWM:")? / 1024.0;
    drop(daemon);
    let _ = std::fs::remove_dir_all(&work);
    let run = ControllerRun {
        devices,
        baseline: devices * CONTROLLER_FLOWS_PER_DEVICE,
        start_s,
        scrape_ms: Stat::of(&times),
        scrape_bytes: bytes,
        idle_rss_mb,
        rss_mb,
        peak_rss_mb,
    };
    println!(
        "  {devices} devices: ready in {:.1} s; /metrics {} ms, {} bytes; RSS {:.1} MB before scraping, {:.1} MB after (peak {:.1} MB)",
        run.start_s,
        run.scrape_ms.show(1),
        run.scrape_bytes,
        run.idle_rss_mb,
        run.rss_mb,
        run.peak_rss_mb
    );
    Ok(run)
}

fn controller(args: &Args) -> Result<ControllerResults> {
    println!("monitor-bench: 3b. controller (/metrics, memory)");
    let monitor = match &args.monitor_bin {
        Some(path) => path.clone(),
        None => std::env::current_exe()?.with_file_name("monitor"),
    };
    let help = Command::new(&monitor)
        .args(["run", "--help"])
        .output()
        .with_context(|| format!("running {}", monitor.display()))?;
    if !String::from_utf8_lossy(&help.stdout).contains("--metrics-addr") {
        bail!(
            "{} has no `run --metrics-addr` yet: /metrics cannot be measured",
            monitor.display()
        );
    }
    let mut runs = Vec::new();
    for devices in [10, 10_000] {
        runs.push(controller_run(&monitor, devices, args.runs)?);
    }
    Ok(ControllerResults { runs })
}

// ---------------------------------------------------------------------------------------
// The report

struct Report {
    text: String,
    floors: Vec<(String, String, bool)>,
    pending: Vec<String>,
    runs: usize,
}

fn command_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}

impl Report {
    fn new(args: &Args) -> Report {
        let mut text = String::new();
        let _ = writeln!(text, "# Benchmarks\n");
        let _ = writeln!(
            text,
            "Written by `cargo xtask bench` (tests/src/bin/monitor-bench.rs); not part of the test suite. \
             Every figure is a ratio to a reference measured in the same run, interleaved with it: \
             this machine is shared and its two vCPUs share caches unevenly from run to run, so \
             absolute numbers drift between runs while same-run ratios hold. Figures are medians of \
             {} runs with the min–max spread in parentheses.\n",
            args.runs
        );
        let _ = writeln!(text, "| | |\n|---|---|");
        let _ = writeln!(
            text,
            "| Date | {} |",
            command_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"])
        );
        let commit = command_line("git", &["rev-parse", "--short", "HEAD"]);
        let commit = if commit.is_empty() {
            "unknown (not run from a git checkout)".to_owned()
        } else {
            commit
        };
        let _ = writeln!(text, "| Commit | {commit} |");
        let _ = writeln!(
            text,
            "| CPU | {} × {} |",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu_model()
        );
        let _ = writeln!(text, "| Kernel | {} |", command_line("uname", &["-r"]));
        let _ = writeln!(
            text,
            "| Runs | {}{} |\n",
            args.runs,
            if args.quick {
                " (--quick: reduced cases, not for comparison)"
            } else {
                ""
            }
        );
        Report {
            text,
            floors: Vec::new(),
            pending: Vec::new(),
            runs: args.runs,
        }
    }

    fn failed(&mut self, section: &str, e: &anyhow::Error) {
        let _ = writeln!(
            self.text,
            "## {section}\n\nNot measured in this run: {e:#}\n"
        );
        self.pending.push(format!("{section}: {e:#}"));
    }

    fn floor(&mut self, what: String, got: String, met: bool) {
        self.floors.push((what, got, met));
    }

    fn cost(&mut self, cost: &CostResults) {
        let t = &mut self.text;
        let _ = writeln!(t, "## 1. Per-packet cost (BPF_PROG_TEST_RUN)\n");
        let _ = writeln!(
            t,
            "Method: one 60-byte frame run {REPEAT} times per BPF_PROG_TEST_RUN call; the kernel \
             reports the mean time per run. Reference: `parse_only_xdp`, the same parser and \
             frame-class counter with nothing else, run on the same frame right before \
             `monitor_xdp`, in every run; the ratio is taken per run, then the median. Devices \
             are enrolled one address each (10.100.x.y); filler baseline entries are distinct \
             (device, peer, port) triples of those devices. The measured frames come from device \
             0 to a server outside the inventory (UDP to port 443, in the baseline, or 9999, not). \
             \"Learn (known flow)\" is learn mode's steady state (the flow is already in the \
             baseline: a lookup, no insert), since a repeated frame learns only once. \
             \"Enforce, drop\" and \"audit\" emit a violation event at most 20 times a second per \
             device; nearly all runs take the rate limit's suppressed path.\n"
        );
        let _ = writeln!(
            t,
            "| devices | baseline entries | case | monitor ns | parse-only ns | ratio |\n|---:|---:|---|---:|---:|---:|"
        );
        for row in &cost.rows {
            let _ = writeln!(
                t,
                "| {} | {} | {} | {} | {} | **{}** |",
                row.scale.devices,
                row.scale.baseline,
                row.case,
                row.monitor_ns.show(1),
                row.parse_ns.show(1),
                row.ratio.show(2)
            );
        }
        let hits: Vec<&CostRow> = cost
            .rows
            .iter()
            .filter(|r| r.case == "enforce, baseline hit")
            .collect();
        let worst = hits.iter().map(|r| r.ratio.median).fold(0.0, f64::max);
        let ns: Vec<f64> = hits.iter().map(|r| r.monitor_ns.median).collect();
        let ratios: Vec<f64> = hits.iter().map(|r| r.ratio.median).collect();
        let spread = |v: &[f64]| {
            let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = v.iter().copied().fold(0.0, f64::max);
            hi / lo - 1.0
        };
        let (ns_spread, ratio_spread) = (spread(&ns), spread(&ratios));
        let _ = writeln!(
            t,
            "\nEnforce with a baseline hit, across scales: highest ratio {worst:.2}; the monitor's ns \
             vary by {:.0}% and the ratio by {:.0}% from the smallest to the largest scale.\n",
            ns_spread * 100.0,
            ratio_spread * 100.0
        );
        if !hits.is_empty() {
            self.floor(
                format!("enforce-hit cost ≤ {FLOOR_HIT_RATIO}× parse-only"),
                format!("{worst:.2}× (worst scale)"),
                worst <= FLOOR_HIT_RATIO,
            );
            self.floor(
                format!(
                    "enforce-hit flat within {:.0}% from 10 to 10,000 devices and up to 1M entries",
                    FLOOR_FLATNESS * 100.0
                ),
                format!(
                    "ratio varies {:.0}%, ns {:.0}%",
                    ratio_spread * 100.0,
                    ns_spread * 100.0
                ),
                ratio_spread <= FLOOR_FLATNESS,
            );
        }
    }

    fn live(&mut self, live: &LiveResults) {
        let t = &mut self.text;
        let _ = writeln!(t, "## 2. Packets per second through a veth pair\n");
        let _ = writeln!(
            t,
            "Method: a generator namespace and a router namespace joined by four veth pairs, one \
             per receiver on the router's end: the monitor attached in native XDP mode (enforce, \
             {devices} devices enrolled, each allowed to reach 10.20.0.10 on 443/udp: {devices} \
             baseline entries); nftables with the equivalent rule set (`table netdev`, a set of \
             type `ipv4_addr . ipv4_addr . inet_service` holding the same {devices} (device, \
             server, port) triples, a chain on hook ingress of that device: `ip saddr . ip daddr . \
             udp dport @allowed accept`, then `drop`); no filter; and, as the floor, a \
             two-instruction XDP program that drops every frame. Traffic: BPF_PROG_TEST_RUN in \
             live-frames mode runs `tx_xdp` (XDP_TX) on the sender's end, {frames} 60-byte UDP \
             frames per run from device 0 (to port {DENIED_PORT}: denied, or {ALLOWED_PORT}: allowed) in \
             batches of {LIVE_BATCH}, which veth delivers into the receiver's NAPI ring. GRO is \
             on for all receivers (veth accepts such frames only with NAPI, which GRO or an XDP \
             program turns on). Allowed frames go on to the router's stack, which drops them (no \
             route, forwarding off): the same stack cost behind every filter.\n\n\
             Counted: the receiver's rx packets (frames its NAPI took). The generator thread is \
             pinned to one CPU; veth's receive path runs in the softirq it raises, on the same \
             CPU (or in that CPU's ksoftirqd), so the frames cost exactly the CPU time of the \
             thread plus that ksoftirqd (/proc/…/schedstat). **Mpps per CPU-second** is the \
             figure compared: it is what one core forwards, and unlike wall time it does not \
             count other processes that share the machine (wall-time Mpps is shown too). It \
             includes the generator's own cost, the same in every case, so the ratios between \
             filters are smaller than between the filters alone; \"over XDP_DROP\" subtracts the \
             floor's ns per frame from each case's, leaving what the filter and what follows it \
             add. Frames the receiver refused (ring full) are its rx dropped, as a share of those \
             sent. The receivers' order rotates from run to run.\n",
            devices = live.devices,
            frames = live.frames_per_run,
        );
        let _ = writeln!(
            t,
            "| traffic | receiver | Mpps per CPU-s | vs nftables | vs no filter | ns over XDP_DROP | Mpps wall | refused |\n|---|---|---:|---:|---:|---:|---:|---:|"
        );
        for row in &live.rows {
            let _ = writeln!(
                t,
                "| {} | {} | {:.2} ({:.2}–{:.2}) | **{}** | {} | {} | {:.2} | {:.1}% |",
                row.traffic,
                row.filter.name(),
                row.cpu_pps.median / 1e6,
                row.cpu_pps.min / 1e6,
                row.cpu_pps.max / 1e6,
                row.vs_nft.show(2),
                row.vs_none.show(2),
                row.added_ns.show(0),
                row.wall_pps.median / 1e6,
                row.refused.median * 100.0
            );
        }
        let _ = writeln!(t);
        let mut floors = Vec::new();
        for traffic in ["denied", "allowed"] {
            let find = |f: Filter| {
                live.rows
                    .iter()
                    .find(|r| r.traffic == traffic && r.filter == f)
            };
            if let (Some(monitor), Some(nft)) = (find(Filter::Monitor), find(Filter::Nftables)) {
                let _ = writeln!(
                    t,
                    "{traffic}: the monitor takes {:.2}× nftables' frames per CPU-second; over the \
                     XDP_DROP floor, nftables adds {:.0} ns per frame and the monitor {:.0} ns ({:.1}×). \
                     For {FLOOR_PPS_RATIO}× nftables' rate the monitor could add at most {:.0} ns per frame \
                     over the floor here.\n",
                    monitor.vs_nft.median,
                    nft.added_ns.median,
                    monitor.added_ns.median,
                    nft.added_ns.median / monitor.added_ns.median,
                    budget_ns(find(Filter::Floor), nft)
                );
                let what = format!("monitor ≥ {FLOOR_PPS_RATIO}× nftables pps, {traffic} traffic");
                floors.push((
                    what,
                    format!("{:.2}×", monitor.vs_nft.median),
                    monitor.vs_nft.median >= FLOOR_PPS_RATIO,
                ));
            }
        }
        self.floors.extend(floors);
    }

    fn controller(
        &mut self,
        persistence: Result<Persistence>,
        controller: Result<ControllerResults>,
    ) {
        let _ = writeln!(self.text, "## 3. Controller\n");
        match &controller {
            Ok(c) => {
                let t = &mut self.text;
                let _ = writeln!(
                    t,
                    "Method: `monitor run` (release build) attached in native mode to a veth in its \
                     own router namespace, with a generated inventory (one address, MAC and \
                     location per device, 200 devices per ward) and a saved baseline of \
                     {CONTROLLER_FLOWS_PER_DEVICE} flows per device that it restores at start, \
                     serving /metrics on 127.0.0.1. Ready: when it has attached and written \
                     daemon.json. Memory: VmRSS 2 s after that, before any scrape; then VmRSS \
                     and VmHWM (peak) after the scrapes. Scrape: wall time of `GET /metrics` \
                     over a fresh TCP connection, {} scrapes one after another (fewer if they \
                     take over {} s in all). Reference: the same at 10 devices.\n",
                    self.runs.max(5),
                    SCRAPE_BUDGET.as_secs()
                );
                let _ = writeln!(
                    t,
                    "| devices | baseline | ready s | /metrics ms | /metrics size | RSS MB before scraping | RSS MB after | peak RSS MB |\n|---:|---:|---:|---:|---:|---:|---:|---:|"
                );
                for r in &c.runs {
                    let _ = writeln!(
                        t,
                        "| {} | {} | {:.1} | {} | {:.0} kB | {:.1} | {:.1} | {:.1} |",
                        r.devices,
                        r.baseline,
                        r.start_s,
                        r.scrape_ms.show(1),
                        r.scrape_bytes as f64 / 1e3,
                        r.idle_rss_mb,
                        r.rss_mb,
                        r.peak_rss_mb
                    );
                }
                if let (Some(small), Some(big)) = (c.runs.first(), c.runs.last()) {
                    let _ = writeln!(
                        t,
                        "\nAt {} devices against {}: scrape time {:.1}×, size {:.1}×, RSS {:.1}×.\n",
                        big.devices,
                        small.devices,
                        big.scrape_ms.median / small.scrape_ms.median,
                        big.scrape_bytes as f64 / small.scrape_bytes.max(1) as f64,
                        big.rss_mb / small.rss_mb
                    );
                    let scrape = big.scrape_ms.median;
                    let rss = big.peak_rss_mb.max(big.rss_mb);
                    self.floor(
                        format!("/metrics at {} devices < {FLOOR_SCRAPE_MS} ms", big.devices),
                        format!(
                            "{scrape:.1} ms ({:.2}× the floor)",
                            scrape / FLOOR_SCRAPE_MS
                        ),
                        scrape < FLOOR_SCRAPE_MS,
                    );
                    self.floor(
                        format!(
                            "controller memory at {} devices < {FLOOR_RSS_MB} MB",
                            big.devices
                        ),
                        format!("{rss:.1} MB peak ({:.2}× the floor)", rss / FLOOR_RSS_MB),
                        rss < FLOOR_RSS_MB,
                    );
                }
            }
            Err(e) => {
                let _ = writeln!(
                    self.text,
                    "/metrics and memory: not measured in this run: {e:#}\n"
                );
                self.pending
                    .push(format!("/metrics and controller memory: {e:#}"));
            }
        }
        match &persistence {
            Ok(p) => {
                let t = &mut self.text;
                let _ = writeln!(
                    t,
                    "Baseline persistence at {} entries (the table after section 1; {} runs). Save: \
                     `monitor::state::baseline::save` (read the map, write the JSON file \
                     atomically, {:.1} MB), against reading the map alone. Load: read and parse the \
                     file and insert every entry into a fresh datapath's map, as a restart does, \
                     against the inserts alone.\n",
                    p.entries,
                    p.save_s.n,
                    p.file_bytes as f64 / 1e6
                );
                let _ = writeln!(
                    t,
                    "| | seconds | reference s | ratio |\n|---|---:|---:|---:|"
                );
                let _ = writeln!(
                    t,
                    "| save | {} | {} (map read) | {:.1} |",
                    p.save_s.show(2),
                    p.dump_s.show(2),
                    p.save_s.median / p.dump_s.median
                );
                let _ = writeln!(
                    t,
                    "| load | {} | {} (map insert) | {:.1} |\n",
                    p.load_s.show(2),
                    p.insert_s.show(2),
                    p.load_s.median / p.insert_s.median
                );
            }
            Err(e) => {
                let _ = writeln!(
                    self.text,
                    "Baseline save and load: not measured in this run: {e:#}\n"
                );
                self.pending.push(format!("baseline save/load: {e:#}"));
            }
        }
    }

    fn finish(&mut self, elapsed: Duration) {
        let t = &mut self.text;
        let _ = writeln!(t, "## Floors\n\n| floor | this run | met |\n|---|---|---|");
        for (what, got, met) in &self.floors {
            let _ = writeln!(
                t,
                "| {what} | {got} | {} |",
                if *met { "yes" } else { "**no**" }
            );
        }
        if !self.pending.is_empty() {
            let _ = writeln!(t, "\n## Not measured in this run\n");
            for p in &self.pending {
                let _ = writeln!(t, "- {p}");
            }
        }
        let _ = writeln!(t, "\nThe whole run took {:.0} s.", elapsed.as_secs_f64());
    }
}
