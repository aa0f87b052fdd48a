//! `monitor replay`: every frame of pcap/pcapng captures through the real XDP program
//! (BPF_PROG_TEST_RUN, fresh private maps), reported as if the traffic had been live.
//!
//! A hospital's SPAN capture replayed with `--learn-all --baseline-out` bootstraps a
//! baseline before anything goes inline; `--baseline-in` with `--mode enforce` shows what
//! enforcement would have dropped. Frames the kernel's test run cannot take (shorter than
//! an Ethernet header, longer than [`TEST_RUN_MAX_FRAME`]) are skipped and reported by
//! count, reason and frame number; a damaged file is replayed up to the damage and
//! reported with its byte offset. Bytes are captured bytes: what the XDP program sees.
//!
//! A frame is judged exactly as the live datapath would judge it, malformed headers and
//! IP lengths beyond the frame included, unless the capture cut it (its record's captured
//! length is below its original length): such a frame is run with
//! `CONFIG_CAPTURE_MAY_BE_CUT`, so its captured headers are still counted and learned
//! from, but its verdict is reported as *cut*, apart from the passed and dropped frames
//! and the verdict table, and it charges no drop or would-drop: what was cut could have
//! changed the verdict. The program's clock is the host's, not the capture's timestamps:
//! state with a timeout (remembered UDP requests) does not age between frames.

mod capture;

use std::{
    collections::BTreeMap,
    io::Write,
    net::IpAddr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use monitor_common::{
    Action, FrameClass, Mode, Reason,
    maps::{
        BaselineEntry, CONFIG_CAPTURE_MAY_BE_CUT, CONFIG_EVERY_FLOW, CONFIG_JUDGE_UNENROLLED,
        Counter, Direction, FlowKey, FlowStats, MAX_BASELINE, MAX_UNENROLLED, MAX_UNENROLLED_FLOWS,
    },
};
use serde::Serialize;

pub use capture::{
    CaptureError, CaptureReader, Damage, Format, Frame, LINKTYPE_ETHERNET, MAX_PCAP_RECORD, Next,
};

use crate::{
    datapath::{
        Datapath, DatapathError, MapSet, Maps, TEST_RUN_MAX_FRAME, TEST_RUN_MIN_FRAME, addr_of,
    },
    state::baseline::{BaselineError, BaselineFile},
    support::{error_chain, proto},
    view::report::{ClassRow, VerdictRow, class_table, table, verdict_table},
};

/// Rows of the device and flow tables shown without `--top` (human output).
pub const DEFAULT_TOP: usize = 20;
/// Frame numbers listed per file and skip reason.
const LISTED_FRAMES: usize = 20;
/// `format` and `version` of the `--json` report.
pub const REPORT_FORMAT: &str = "monitor-replay";
/// 2: cut frames are counted apart from passed and dropped ones (`frames_cut`), flows
/// carry `would_drop_packets`, files may list their frames and flows.
pub const REPORT_VERSION: u32 = 2;

/// `monitor replay` arguments.
#[derive(Clone, Debug, clap::Args)]
pub struct ReplayArgs {
    /// Capture files (pcap or pcapng, Ethernet link type), replayed in order into one
    /// set of maps.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Global mode of the replay.
    #[arg(long, default_value = "learn", value_parser = parse_mode)]
    pub mode: Mode,
    /// Judge every address like an enrolled device (CONFIG_JUDGE_UNENROLLED): each
    /// learns its own baseline, or is enforced against it.
    #[arg(long)]
    pub learn_all: bool,
    /// One JSON document on stdout instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Write the baseline after the replay to FILE (JSON, format monitor-baseline v1,
    /// as the daemon saves it).
    #[arg(long, value_name = "FILE")]
    pub baseline_out: Option<PathBuf>,
    /// Load a baseline (written by --baseline-out) before replaying.
    #[arg(long, value_name = "FILE")]
    pub baseline_in: Option<PathBuf>,
    /// Rows of the device and flow tables, by bytes [default: 20 in tables, all in JSON].
    #[arg(long, value_name = "N")]
    pub top: Option<usize>,
    /// Report every frame: passed or dropped with its reason, cut, or skipped (slower: the
    /// verdict counters are read after each frame).
    #[arg(long)]
    pub frames: bool,
    /// Report each file's flows apart: what that file added to each flow's counters.
    #[arg(long)]
    pub flows_per_file: bool,
}

impl ReplayArgs {
    /// Arguments for replaying `files` with everything else at its default.
    pub fn new(files: impl IntoIterator<Item = impl Into<PathBuf>>) -> Self {
        ReplayArgs {
            files: files.into_iter().map(Into::into).collect(),
            mode: Mode::Learn,
            learn_all: false,
            json: false,
            baseline_out: None,
            baseline_in: None,
            top: None,
            frames: false,
            flows_per_file: false,
        }
    }
}

fn parse_mode(s: &str) -> Result<Mode, String> {
    s.parse::<Mode>().map_err(|e| e.to_string())
}

/// Why a replay could not be done.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error("--baseline-in")]
    Baseline(#[from] BaselineError),
    #[error("--baseline-in {}: {entries} entries, more than the {MAX_BASELINE} the baseline map holds", path.display())]
    BaselineSize { path: PathBuf, entries: usize },
    #[error("--baseline-out {}: writing failed", path.display())]
    BaselineWrite {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the XDP datapath")]
    Datapath(#[source] Box<DatapathError>),
    #[error("{}: running frame {frame} through the XDP program", path.display())]
    TestRun {
        path: PathBuf,
        frame: u64,
        #[source]
        source: Box<DatapathError>,
    },
}

impl From<DatapathError> for ReplayError {
    fn from(e: DatapathError) -> Self {
        ReplayError::Datapath(Box::new(e))
    }
}

/// Why a frame was not run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// Shorter than an Ethernet header: the kernel's test run refuses it.
    TooShort,
    /// Longer than the kernel's XDP test run takes in one buffer.
    TooLarge,
}

impl SkipReason {
    pub fn label(self) -> &'static str {
        match self {
            SkipReason::TooShort => "too_short",
            SkipReason::TooLarge => "too_large",
        }
    }

    pub fn description(self) -> String {
        match self {
            SkipReason::TooShort => {
                format!("shorter than an Ethernet header ({TEST_RUN_MIN_FRAME} bytes)")
            }
            SkipReason::TooLarge => format!(
                "longer than the {TEST_RUN_MAX_FRAME} bytes the kernel's XDP test run takes"
            ),
        }
    }

    /// Whether the test run can take a frame of `len` bytes.
    pub fn of_len(len: usize) -> Option<SkipReason> {
        if len < TEST_RUN_MIN_FRAME {
            Some(SkipReason::TooShort)
        } else if len > TEST_RUN_MAX_FRAME {
            Some(SkipReason::TooLarge)
        } else {
            None
        }
    }
}

/// Frames of one file skipped for one reason.
#[derive(Clone, Debug, Serialize)]
pub struct Skipped {
    pub reason: SkipReason,
    pub frames: u64,
    /// Their captured bytes.
    pub bytes: u64,
    /// The first frame numbers (1-based, as tshark numbers them).
    pub first_frames: Vec<u64>,
}

/// What became of one frame (`--frames`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FrameOutcome {
    /// 1-based, as tshark numbers them.
    pub number: u64,
    /// "pass" or "drop" (a whole frame, judged as live), "cut" (run, verdict not
    /// predicted), or "skipped".
    pub outcome: String,
    /// The verdict's reason for passed and dropped frames, the skip reason for skipped
    /// ones; none for cut frames.
    pub reason: Option<String>,
}

/// What happened to one capture file.
#[derive(Clone, Debug, Serialize)]
pub struct FileReport {
    pub path: PathBuf,
    pub format: String,
    pub frames_read: u64,
    /// Frames run through the program: passed + dropped + cut.
    pub frames_run: u64,
    /// Whole frames the program passed or dropped (a prediction of the live verdict).
    pub frames_passed: u64,
    pub frames_dropped: u64,
    /// Captured bytes of the frames run.
    pub bytes_run: u64,
    /// Frames run that the capture cut short (captured length below the original): their
    /// verdict is not predicted (see the module documentation).
    pub frames_cut: u64,
    pub skipped: Vec<Skipped>,
    /// Every frame's outcome, with `--frames`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub frames: Vec<FrameOutcome>,
    /// What this file added to each flow, with `--flows-per-file`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub flows: Vec<FlowRow>,
    /// pcapng blocks that carry no frame (statistics, name resolution, ...).
    pub other_blocks: u64,
    /// Where the file is damaged; the frames before it were replayed.
    pub damage: Option<Damage>,
    /// Why reading stopped with an error (exit status non-zero).
    pub error: Option<String>,
}

impl FileReport {
    pub fn frames_skipped(&self) -> u64 {
        self.skipped.iter().map(|s| s.frames).sum()
    }

    pub fn skipped_for(&self, reason: SkipReason) -> u64 {
        self.skipped
            .iter()
            .filter(|s| s.reason == reason)
            .map(|s| s.frames)
            .sum()
    }
}

/// Sums over all files.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Totals {
    pub files: usize,
    pub files_damaged: usize,
    pub files_failed: usize,
    pub frames_read: u64,
    pub frames_run: u64,
    pub frames_skipped: u64,
    pub frames_passed: u64,
    pub frames_dropped: u64,
    pub frames_cut: u64,
    pub bytes_run: u64,
    /// Mean duration of one run of the XDP program, as the kernel measured it.
    pub mean_run_ns: u64,
}

/// One address with its counters (`DEVICE_STATS` or `UNENROLLED_STATS`).
#[derive(Clone, Debug, Serialize)]
pub struct DeviceRow {
    pub address: IpAddr,
    pub packets_sent: u64,
    pub bytes_sent: u64,
    pub packets_received: u64,
    pub bytes_received: u64,
    pub dropped_packets: u64,
    pub would_drop_packets: u64,
    pub learned_flows: u64,
}

/// One flow, seen from its device.
#[derive(Clone, Debug, Serialize)]
pub struct FlowRow {
    pub device: IpAddr,
    pub peer: IpAddr,
    pub protocol: u8,
    pub protocol_name: String,
    pub service_port: u16,
    /// "out" (the device is the client), "in", or "both".
    pub direction: String,
    pub packets_sent: u64,
    pub bytes_sent: u64,
    pub packets_received: u64,
    pub bytes_received: u64,
    pub dropped_packets: u64,
    /// Packets its device's own policy would have dropped but did not.
    pub would_drop_packets: u64,
    pub in_baseline: bool,
}

impl FlowRow {
    fn new(key: &FlowKey, s: &FlowStats, in_baseline: bool) -> FlowRow {
        FlowRow {
            device: addr_of(&key.device),
            peer: addr_of(&key.peer),
            protocol: key.protocol,
            protocol_name: proto::name(key.protocol),
            service_port: key.service_port,
            direction: Direction::try_from(key.direction)
                .map_or("?", Direction::name)
                .into(),
            packets_sent: s.packets_sent,
            bytes_sent: s.bytes_sent,
            packets_received: s.packets_received,
            bytes_received: s.bytes_received,
            dropped_packets: s.dropped_packets,
            would_drop_packets: s.would_drop_packets,
            in_baseline,
        }
    }
}

/// The baseline before and after.
#[derive(Clone, Debug, Serialize)]
pub struct BaselineSummary {
    /// Entries loaded from `--baseline-in`.
    pub loaded: usize,
    /// Entries after the replay.
    pub entries: usize,
    pub learned: usize,
    pub written_to: Option<PathBuf>,
}

/// Everything a replay found: the `--json` document.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub format: &'static str,
    pub version: u32,
    pub mode: String,
    pub learn_all: bool,
    pub files: Vec<FileReport>,
    pub totals: Totals,
    /// Non-zero (action, reason) counters of whole frames (cut frames are not in it).
    pub verdicts: Vec<VerdictRow>,
    pub classes: Vec<ClassRow>,
    /// Addresses seen (all of them; `devices` may be cut by `--top`).
    pub devices_total: usize,
    pub devices: Vec<DeviceRow>,
    pub flows_total: usize,
    pub flows: Vec<FlowRow>,
    pub baseline: BaselineSummary,
    pub warnings: Vec<String>,
    pub elapsed_seconds: f64,
}

impl Report {
    /// Packets with `action` (and `reason`, if given), from the verdict counters.
    pub fn verdict_packets(&self, action: Action, reason: Option<Reason>) -> u64 {
        self.verdicts
            .iter()
            .filter(|v| v.action == action.name() && reason.is_none_or(|r| v.reason == r.label()))
            .map(|v| v.packets)
            .sum()
    }

    /// The device row of `address`.
    pub fn device(&self, address: IpAddr) -> Option<&DeviceRow> {
        self.devices.iter().find(|d| d.address == address)
    }

    /// The files that could not be read to the end for a reason other than damage: these
    /// make `monitor replay` exit non-zero.
    pub fn failures(&self) -> Vec<String> {
        self.files.iter().filter_map(|f| f.error.clone()).collect()
    }

    /// The report with its device and flow tables cut to `top` rows.
    pub fn limited(&self, top: Option<usize>) -> Report {
        let mut out = self.clone();
        if let Some(top) = top {
            out.devices.truncate(top);
            out.flows.truncate(top);
        }
        out
    }

    pub fn to_json(&self, top: Option<usize>) -> serde_json::Value {
        serde_json::to_value(self.limited(top)).unwrap_or_else(
            |e| serde_json::json!({ "format": REPORT_FORMAT, "error": e.to_string() }),
        )
    }

    /// Tables for a terminal (warnings are not included: see [`Report::warnings`]).
    pub fn to_text(&self, top: usize) -> String {
        let mut out = String::new();
        let judged = if self.learn_all {
            "every address judged (--learn-all)"
        } else {
            "addresses without a device entry counted, not judged"
        };
        out.push_str(&format!(
            "Replayed {} capture file(s) in {:.2} s: mode {}, {judged}\n\n",
            self.totals.files, self.elapsed_seconds, self.mode
        ));
        self.files_text(&mut out);
        out.push_str(&verdict_table("ACTION", &self.verdicts));
        out.push('\n');
        let seen: Vec<ClassRow> = self
            .classes
            .iter()
            .filter(|c| c.packets > 0)
            .cloned()
            .collect();
        out.push_str(&class_table("CLASS", &seen));
        self.devices_text(&mut out, top);
        self.flows_text(&mut out, top);
        self.frames_text(&mut out);
        let b = &self.baseline;
        out.push_str(&format!(
            "\nBaseline: {} entries ({} loaded, {} learned)",
            b.entries, b.loaded, b.learned
        ));
        match &b.written_to {
            Some(path) => out.push_str(&format!(", written to {}\n", path.display())),
            None => out.push('\n'),
        }
        out
    }

    /// One row per file (and the totals), the cut frames, the mean run time.
    fn files_text(&self, out: &mut String) {
        let mut rows: Vec<Vec<String>> = self
            .files
            .iter()
            .map(|f| {
                let note = match (&f.error, &f.damage) {
                    (Some(e), _) => format!("ERROR: {e}"),
                    (None, Some(d)) => d.to_string(),
                    (None, None) if f.frames_skipped() > 0 => "frames skipped".into(),
                    (None, None) => String::new(),
                };
                vec![
                    f.path.display().to_string(),
                    f.format.clone(),
                    f.frames_read.to_string(),
                    f.frames_run.to_string(),
                    f.frames_skipped().to_string(),
                    f.frames_passed.to_string(),
                    f.frames_dropped.to_string(),
                    f.frames_cut.to_string(),
                    f.bytes_run.to_string(),
                    note,
                ]
            })
            .collect();
        let t = &self.totals;
        if self.files.len() > 1 {
            rows.push(vec![
                "TOTAL".into(),
                String::new(),
                t.frames_read.to_string(),
                t.frames_run.to_string(),
                t.frames_skipped.to_string(),
                t.frames_passed.to_string(),
                t.frames_dropped.to_string(),
                t.frames_cut.to_string(),
                t.bytes_run.to_string(),
                String::new(),
            ]);
        }
        out.push_str(&table(
            &[
                "FILE", "FORMAT", "READ", "RUN", "SKIPPED", "PASSED", "DROPPED", "CUT", "BYTES",
                "NOTE",
            ],
            &rows,
        ));
        if t.frames_cut > 0 {
            out.push_str(&format!(
                "\n{} frame(s) were cut by the capture's snapshot length: counted and learned \
                 from, but not in PASSED, DROPPED or the verdicts below (what was cut could have \
                 changed the verdict)\n",
                t.frames_cut
            ));
        }
        out.push_str(&format!(
            "\nMean XDP run: {} ns per frame (kernel test-run timing)\n\n",
            t.mean_run_ns
        ));
    }

    fn devices_text(&self, out: &mut String, top: usize) {
        out.push_str(&format!(
            "\nDevices (top {} of {} addresses, by bytes)\n",
            self.devices.len().min(top),
            self.devices_total
        ));
        let rows: Vec<Vec<String>> = self
            .devices
            .iter()
            .take(top)
            .map(|d| {
                vec![
                    d.address.to_string(),
                    d.packets_sent.to_string(),
                    d.bytes_sent.to_string(),
                    d.packets_received.to_string(),
                    d.bytes_received.to_string(),
                    d.dropped_packets.to_string(),
                    d.would_drop_packets.to_string(),
                    d.learned_flows.to_string(),
                ]
            })
            .collect();
        out.push_str(&table(
            &[
                "ADDRESS",
                "PKTS SENT",
                "BYTES SENT",
                "PKTS RECV",
                "BYTES RECV",
                "DROPPED",
                "WOULD DROP",
                "LEARNED",
            ],
            &rows,
        ));
    }

    fn flows_text(&self, out: &mut String, top: usize) {
        out.push_str(&format!(
            "\nFlows (top {} of {}, by bytes; each conversation appears once per side)\n",
            self.flows.len().min(top),
            self.flows_total
        ));
        let rows: Vec<Vec<String>> = self
            .flows
            .iter()
            .take(top)
            .map(|f| {
                vec![
                    f.device.to_string(),
                    f.direction.clone(),
                    f.peer.to_string(),
                    f.protocol_name.clone(),
                    f.service_port.to_string(),
                    f.packets_sent.to_string(),
                    f.bytes_sent.to_string(),
                    f.packets_received.to_string(),
                    f.bytes_received.to_string(),
                    f.dropped_packets.to_string(),
                    f.would_drop_packets.to_string(),
                    if f.in_baseline { "yes" } else { "no" }.into(),
                ]
            })
            .collect();
        out.push_str(&table(
            &[
                "DEVICE",
                "DIR",
                "PEER",
                "PROTO",
                "SERVICE",
                "PKTS SENT",
                "BYTES SENT",
                "PKTS RECV",
                "BYTES RECV",
                "DROPPED",
                "WOULD DROP",
                "BASELINE",
            ],
            &rows,
        ));
    }

    /// Every frame's outcome (`--frames`).
    fn frames_text(&self, out: &mut String) {
        for f in self.files.iter().filter(|f| !f.frames.is_empty()) {
            out.push_str(&format!("\nFrames of {}\n", f.path.display()));
            let rows: Vec<Vec<String>> = f
                .frames
                .iter()
                .map(|o| {
                    vec![
                        o.number.to_string(),
                        o.outcome.clone(),
                        o.reason.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            out.push_str(&table(&["FRAME", "OUTCOME", "REASON"], &rows));
        }
    }
}

/// `monitor replay`: replays, prints the report, and fails if a file could not be read.
pub fn command(args: ReplayArgs) -> anyhow::Result<()> {
    let report = run(&args)?;
    for warning in &report.warnings {
        eprintln!("warning: {warning}");
    }
    let mut stdout = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut stdout, &report.to_json(args.top))?;
        writeln!(stdout)?;
    } else {
        write!(
            stdout,
            "{}",
            report.to_text(args.top.unwrap_or(DEFAULT_TOP))
        )?;
    }
    stdout.flush()?;
    let failures = report.failures();
    if !failures.is_empty() {
        anyhow::bail!(
            "{} of {} capture files could not be replayed:\n  {}",
            failures.len(),
            report.files.len(),
            failures.join("\n  ")
        );
    }
    Ok(())
}

/// The flow tables' hash seed in a replay (a live datapath draws its own at random).
const REPLAY_HASH_SEED: u32 = 0x5eed_0001;

/// Replays the files into a freshly loaded datapath and reads back its maps.
///
/// Every file is opened and checked (a capture, Ethernet) before anything runs, so a
/// missing or wrong file fails fast. Damage inside a file is a warning; an error met
/// later in a file (an interface of another link type in a pcapng, an I/O error) is
/// recorded in its [`FileReport::error`].
pub fn run(args: &ReplayArgs) -> Result<Report, ReplayError> {
    let started = Instant::now();
    for path in &args.files {
        // The first `next` reads a pcapng's interfaces up to its first frame.
        let mut reader = CaptureReader::open(path)?;
        reader.next_frame()?;
    }
    let imported = match &args.baseline_in {
        Some(path) => read_baseline(path)?,
        None => Vec::new(),
    };

    let mut datapath = load_datapath()?;
    let maps = datapath.maps_mut();
    // One seed for every replay: which flows share a set of the flow tables (and so
    // which are forgotten when a set is full) is the same in every run and mode.
    let mut config = maps.config()?;
    config.hash_seed = REPLAY_HASH_SEED;
    maps.set_config(config)?;
    maps.set_mode(args.mode)?;
    // Set for cut frames only (`replay_file`).
    maps.set_flags(CONFIG_CAPTURE_MAY_BE_CUT, false)?;
    maps.set_flags(CONFIG_JUDGE_UNENROLLED, args.learn_all)?;
    // Frames run faster than they were captured: no per-second budget of flow entries.
    maps.set_flags(CONFIG_EVERY_FLOW, true)?;
    maps.insert_baseline(&imported)?;
    let loaded = maps.baseline()?.len();

    let mut run_time = Duration::ZERO;
    let mut files = Vec::with_capacity(args.files.len());
    // What each file added to the flow tables (`--flows-per-file`).
    let mut file_flows = Vec::new();
    let mut flows_seen = if args.flows_per_file {
        flow_table(datapath.maps())?
    } else {
        BTreeMap::new()
    };
    for path in &args.files {
        files.push(replay_file(
            &mut datapath,
            path,
            args.frames,
            &mut run_time,
        )?);
        if args.flows_per_file {
            let now = flow_table(datapath.maps())?;
            file_flows.push(flow_deltas(&flows_seen, &now));
            flows_seen = now;
        }
    }

    let maps = datapath.maps();
    let verdicts = verdict_rows(maps)?;
    let classes: Vec<ClassRow> = maps
        .classes()?
        .into_iter()
        .map(|(class, c): (FrameClass, _)| ClassRow {
            class: class.label().into(),
            packets: c.packets,
            bytes: c.bytes,
        })
        .collect();
    let devices = device_rows(maps)?;
    let baseline = maps.baseline()?;
    let baseline_keys: std::collections::HashSet<FlowKey> =
        baseline.iter().map(|(k, _)| *k).collect();
    let mut flow_stats = maps.flows(true)?;
    flow_stats.extend(maps.flows(false)?);
    let mut flows: Vec<FlowRow> = flow_stats
        .into_iter()
        .map(|(key, s)| FlowRow::new(&key, &s, baseline_keys.contains(&key)))
        .collect();
    sort_flows(&mut flows);
    for (file, deltas) in files.iter_mut().zip(file_flows) {
        file.flows = deltas
            .iter()
            .map(|(key, s)| FlowRow::new(key, s, baseline_keys.contains(key)))
            .collect();
        sort_flows(&mut file.flows);
    }

    if let Some(path) = &args.baseline_out {
        write_baseline(path, &baseline)?;
    }

    let totals = totals(&files, run_time);
    let warnings = warnings(
        args,
        &files,
        &totals,
        devices.len(),
        flows.len(),
        baseline.len(),
        loaded,
    );

    Ok(Report {
        format: REPORT_FORMAT,
        version: REPORT_VERSION,
        mode: args.mode.name().into(),
        learn_all: args.learn_all,
        files,
        totals,
        verdicts,
        classes,
        devices_total: devices.len(),
        devices,
        flows_total: flows.len(),
        flows,
        baseline: BaselineSummary {
            loaded,
            entries: baseline.len(),
            learned: baseline.len().saturating_sub(loaded),
            written_to: args.baseline_out.clone(),
        },
        warnings,
        elapsed_seconds: started.elapsed().as_secs_f64(),
    })
}

/// Every verdict that counted a frame.
fn verdict_rows(maps: &crate::datapath::MapSet) -> Result<Vec<VerdictRow>, DatapathError> {
    Ok(maps
        .verdicts()?
        .into_iter()
        .filter(|(_, _, c)| c.packets > 0)
        .map(|(action, reason, c)| VerdictRow {
            action: action.name().into(),
            reason: reason.label().into(),
            packets: c.packets,
            bytes: c.bytes,
        })
        .collect())
}

/// Every address the replay saw, busiest first.
fn device_rows(maps: &crate::datapath::MapSet) -> Result<Vec<DeviceRow>, DatapathError> {
    let mut devices: Vec<DeviceRow> = maps
        .unenrolled_stats()?
        .into_iter()
        .map(|(address, s)| DeviceRow {
            address,
            packets_sent: s.packets_sent,
            bytes_sent: s.bytes_sent,
            packets_received: s.packets_received,
            bytes_received: s.bytes_received,
            dropped_packets: s.dropped_packets,
            would_drop_packets: s.would_drop_packets,
            learned_flows: s.learned_flows,
        })
        .collect();
    devices.sort_by(|a, b| {
        (b.bytes_sent + b.bytes_received)
            .cmp(&(a.bytes_sent + a.bytes_received))
            .then(a.address.cmp(&b.address))
    });
    Ok(devices)
}

/// What the reader of a report must not miss: damaged files, full tables, drops in learn
/// mode, a baseline that learned nothing.
fn warnings(
    args: &ReplayArgs,
    files: &[FileReport],
    totals: &Totals,
    devices: usize,
    flows: usize,
    baseline: usize,
    loaded: usize,
) -> Vec<String> {
    let mut warnings = Vec::new();
    for file in files {
        file_warnings(file, &mut warnings);
    }
    if devices as u64 >= u64::from(MAX_UNENROLLED) * 9 / 10 {
        warnings.push(format!(
            "{} addresses seen, near the {MAX_UNENROLLED} the address table holds: counters of the least recently seen may have been evicted",
            devices
        ));
    }
    if flows as u64 >= u64::from(MAX_UNENROLLED_FLOWS) * 9 / 10 {
        warnings.push(format!(
            "{} flows seen, near the {MAX_UNENROLLED_FLOWS} the flow table holds: the least recently seen may have been evicted",
            flows
        ));
    }
    if args.mode == Mode::Learn && totals.frames_dropped > 0 {
        warnings.push(format!(
            "{} frames dropped in learn mode, which must drop nothing: a datapath bug",
            totals.frames_dropped
        ));
    }
    if args.baseline_out.is_some() && !args.learn_all && baseline == loaded {
        warnings.push(
            "no address was judged, so nothing was learned: --learn-all makes every address learn its baseline"
                .into(),
        );
    }
    warnings
}

/// Loads the XDP object with private maps. The verifier gives up with EAGAIN when it
/// notices a pending signal (kernel commit c3494801cd17, "bpf: check pending signals
/// while verifying programs"); like libbpf, the load is then tried again, up to 5 times.
fn load_datapath() -> Result<Datapath, DatapathError> {
    const ATTEMPTS: u32 = 5;
    let mut attempt = 1;
    loop {
        match Datapath::load(&Maps::Private) {
            Err(e) if attempt < ATTEMPTS && interrupted(&e) => {
                log::debug!("loading the XDP object was interrupted (attempt {attempt}): {e}");
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Whether an EAGAIN from the kernel is behind `error`.
fn interrupted(error: &DatapathError) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if e.downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::raw_os_error)
            == Some(libc::EAGAIN)
        {
            return true;
        }
        source = e.source();
    }
    false
}

/// Runs every frame of one file: whole frames as live, cut ones flagged as cut
/// (`CONFIG_CAPTURE_MAY_BE_CUT`, switched only when a frame's cut differs from the last).
/// With `list_frames`, every frame's outcome is recorded, its reason read back from the
/// verdict counters.
fn replay_file(
    datapath: &mut Datapath,
    path: &Path,
    list_frames: bool,
    run_time: &mut Duration,
) -> Result<FileReport, ReplayError> {
    let mut reader = CaptureReader::open(path)?;
    let mut report = FileReport {
        path: path.to_path_buf(),
        format: reader.format().name().into(),
        frames_read: 0,
        frames_run: 0,
        frames_passed: 0,
        frames_dropped: 0,
        bytes_run: 0,
        frames_cut: 0,
        skipped: Vec::new(),
        frames: Vec::new(),
        flows: Vec::new(),
        other_blocks: 0,
        damage: None,
        error: None,
    };
    let mut skipped: BTreeMap<SkipReason, Skipped> = BTreeMap::new();
    let mut flagged_cut = datapath.maps().config()?.flags & CONFIG_CAPTURE_MAY_BE_CUT != 0;
    loop {
        match reader.next_frame() {
            Ok(Next::Frame(frame)) => {
                report.frames_read += 1;
                let len = frame.data.len();
                if let Some(reason) = SkipReason::of_len(len) {
                    let entry = skipped.entry(reason).or_insert(Skipped {
                        reason,
                        frames: 0,
                        bytes: 0,
                        first_frames: Vec::new(),
                    });
                    entry.frames += 1;
                    entry.bytes += len as u64;
                    if entry.first_frames.len() < LISTED_FRAMES {
                        entry.first_frames.push(frame.number);
                    }
                    if list_frames {
                        report.frames.push(FrameOutcome {
                            number: frame.number,
                            outcome: "skipped".into(),
                            reason: Some(reason.label().into()),
                        });
                    }
                    continue;
                }
                let cut = (len as u64) < u64::from(frame.original_len);
                if cut != flagged_cut {
                    datapath
                        .maps_mut()
                        .set_flags(CONFIG_CAPTURE_MAY_BE_CUT, cut)?;
                    flagged_cut = cut;
                }
                let before = if list_frames && !cut {
                    Some(datapath.maps().verdicts()?)
                } else {
                    None
                };
                let verdict =
                    datapath
                        .test_run(frame.data)
                        .map_err(|source| ReplayError::TestRun {
                            path: path.to_path_buf(),
                            frame: frame.number,
                            source: Box::new(source),
                        })?;
                *run_time += verdict.duration;
                report.frames_run += 1;
                report.bytes_run += len as u64;
                let outcome = match (cut, verdict.action) {
                    (true, _) => {
                        report.frames_cut += 1;
                        "cut"
                    }
                    (false, Action::Pass) => {
                        report.frames_passed += 1;
                        "pass"
                    }
                    (false, Action::Drop) => {
                        report.frames_dropped += 1;
                        "drop"
                    }
                };
                if list_frames {
                    let reason = match before {
                        Some(before) => moved_reason(&before, &datapath.maps().verdicts()?),
                        None => None,
                    };
                    report.frames.push(FrameOutcome {
                        number: frame.number,
                        outcome: outcome.into(),
                        reason: reason.map(|r| r.label().into()),
                    });
                }
            }
            Ok(Next::End) => break,
            Ok(Next::Damaged(damage)) => {
                report.damage = Some(damage);
                break;
            }
            Err(e) => {
                report.error = Some(error_chain(&e));
                break;
            }
        }
    }
    report.other_blocks = reader.other_blocks();
    report.skipped = skipped.into_values().collect();
    Ok(report)
}

/// The reason whose verdict counter moved between two readings.
fn moved_reason(
    before: &[(Action, Reason, Counter)],
    after: &[(Action, Reason, Counter)],
) -> Option<Reason> {
    before
        .iter()
        .zip(after)
        .find(|((_, _, b), (_, _, a))| a.packets != b.packets)
        .map(|(_, (_, reason, _))| *reason)
}

/// Both flow tables, by (in FLOWS, key).
fn flow_table(maps: &MapSet) -> Result<BTreeMap<(bool, FlowKey), FlowStats>, ReplayError> {
    let mut table = BTreeMap::new();
    for enrolled in [true, false] {
        for (key, stats) in maps.flows(enrolled)? {
            table.insert((enrolled, key), stats);
        }
    }
    Ok(table)
}

/// What each flow gained from `before` to `after` (flows that did not change left out;
/// counters of an entry evicted and created again count from zero).
fn flow_deltas(
    before: &BTreeMap<(bool, FlowKey), FlowStats>,
    after: &BTreeMap<(bool, FlowKey), FlowStats>,
) -> Vec<(FlowKey, FlowStats)> {
    let mut deltas: BTreeMap<FlowKey, FlowStats> = BTreeMap::new();
    for (slot, now) in after {
        let was = before.get(slot).copied().unwrap_or_default();
        let delta = FlowStats {
            packets_sent: now.packets_sent.saturating_sub(was.packets_sent),
            bytes_sent: now.bytes_sent.saturating_sub(was.bytes_sent),
            packets_received: now.packets_received.saturating_sub(was.packets_received),
            bytes_received: now.bytes_received.saturating_sub(was.bytes_received),
            dropped_packets: now.dropped_packets.saturating_sub(was.dropped_packets),
            would_drop_packets: now
                .would_drop_packets
                .saturating_sub(was.would_drop_packets),
            last_seen_ns: now.last_seen_ns,
        };
        let moved = delta.packets_sent
            + delta.packets_received
            + delta.dropped_packets
            + delta.would_drop_packets
            > 0;
        if moved {
            // A flow may have entries in both tables (a violating one, then an allowed
            // one): one row for the conversation.
            deltas.entry(slot.1).or_default().merge(&delta);
        }
    }
    deltas.into_iter().collect()
}

/// Busiest first (by bytes), then by flow.
fn sort_flows(flows: &mut [FlowRow]) {
    flows.sort_by(|a, b| {
        (b.bytes_sent + b.bytes_received)
            .cmp(&(a.bytes_sent + a.bytes_received))
            .then((a.device, a.peer, a.protocol, a.service_port).cmp(&(
                b.device,
                b.peer,
                b.protocol,
                b.service_port,
            )))
            .then(a.direction.cmp(&b.direction))
    });
}

fn totals(files: &[FileReport], run_time: Duration) -> Totals {
    let mut t = Totals {
        files: files.len(),
        ..Totals::default()
    };
    for f in files {
        t.files_damaged += usize::from(f.damage.is_some());
        t.files_failed += usize::from(f.error.is_some());
        t.frames_read += f.frames_read;
        t.frames_run += f.frames_run;
        t.frames_skipped += f.frames_skipped();
        t.frames_passed += f.frames_passed;
        t.frames_dropped += f.frames_dropped;
        t.frames_cut += f.frames_cut;
        t.bytes_run += f.bytes_run;
    }
    if t.frames_run > 0 {
        t.mean_run_ns = (run_time.as_nanos() / u128::from(t.frames_run)) as u64;
    }
    t
}

fn file_warnings(file: &FileReport, warnings: &mut Vec<String>) {
    let path = file.path.display();
    if let Some(damage) = &file.damage {
        warnings.push(format!(
            "{path}: {damage}; the {} frames before it were replayed",
            damage.frames_before
        ));
    }
    if let Some(error) = &file.error {
        warnings.push(format!(
            "{path}: stopped after {} frames: {error}",
            file.frames_read
        ));
    }
    if file.frames_cut > 0 {
        warnings.push(format!(
            "{path}: {} frame(s) cut by the capture's snapshot length: their verdicts are not predicted",
            file.frames_cut
        ));
    }
    for s in &file.skipped {
        let listed: Vec<String> = s.first_frames.iter().map(u64::to_string).collect();
        let more = if s.frames > s.first_frames.len() as u64 {
            ", ..."
        } else {
            ""
        };
        warnings.push(format!(
            "{path}: {} frame(s) skipped, {}: frame(s) {}{more}",
            s.frames,
            s.reason.description(),
            listed.join(", ")
        ));
    }
}

/// Reads a baseline file (the daemon's format, [`crate::state::baseline`]): its map entries.
pub fn read_baseline(path: &Path) -> Result<Vec<(FlowKey, BaselineEntry)>, ReplayError> {
    let file = BaselineFile::read(path)?;
    if file.entries.len() > MAX_BASELINE as usize {
        return Err(ReplayError::BaselineSize {
            path: path.to_path_buf(),
            entries: file.entries.len(),
        });
    }
    Ok(file.map_entries())
}

/// Writes a baseline file (the daemon's format, sorted), replacing `path` atomically.
pub fn write_baseline(
    path: &Path,
    entries: &[(FlowKey, BaselineEntry)],
) -> Result<(), ReplayError> {
    let io = |source| ReplayError::BaselineWrite {
        path: path.to_path_buf(),
        source,
    };
    let mut text = serde_json::to_string_pretty(&BaselineFile::from_map(entries))
        .map_err(|e| io(std::io::Error::other(e)))?;
    text.push('\n');
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, text).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests;
