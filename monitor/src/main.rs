//! `monitor`: the controller and CLI.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use monitor::{
    daemon::{self, RunOptions, XdpModeArg},
    datapath::{DEFAULT_PIN_DIR, MapSet},
    policy::{ModeSpec, Policy},
    replay,
    state::daemon::Paths,
    state::inventory::Inventory,
    state::lock::{DEFAULT_RUN_DIR, Held, WriteLock},
    state::modes::{Change, History, ModeRecord},
    state::{DEFAULT_STATE_DIR, StateDir},
    support::{clock::monotonic_now_ns, proto},
    view::devmap,
    view::report::{self, age, table},
};
use monitor_common::{Mode, Reason};

const EXAMPLES: &str = "\
Examples:
  monitor run --iface ward0 --iface core0 --policies policies/
  monitor mode audit                        # whole router
  monitor mode enforce --device pacs-1      # one device
  monitor mode enforce --device pump-icu-1 --confirm-life-critical
  monitor mode inherit --device pacs-1      # back to the global mode
  monitor devices
  monitor flows --device pump-icu-1 --json
  monitor replay span-port.pcapng --learn-all --baseline-out baseline.json
  monitor policy check policies/
  monitor map                               # devices by ward, in a table
  monitor map --format html -o map.html     # the same as http://127.0.0.1:9479/map
  curl -s http://127.0.0.1:9479/metrics     # Prometheus metrics of `monitor run`";

const MAP_EXAMPLES: &str = "\
Examples:
  monitor map                               # a table: ward, device, vendor, protection, ...
  monitor map --format html -o map.html     # one page to open in any browser
  monitor map --json | jq '.attention'      # devices needing attention, for scripts
  monitor map --format dot | dot -Tsvg > map.svg
The running daemon serves the same page at http://127.0.0.1:9479/map (see --metrics-addr).";

/// `--metrics-addr`: an address, or `off`.
#[derive(Clone, Copy, Debug)]
enum MetricsAddr {
    At(std::net::SocketAddr),
    Off,
}

impl std::str::FromStr for MetricsAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("off") || s.eq_ignore_ascii_case("none") {
            return Ok(MetricsAddr::Off);
        }
        s.parse()
            .map(MetricsAddr::At)
            .map_err(|e| format!("`{s}` is not ADDRESS:PORT (e.g. 127.0.0.1:9479) or `off`: {e}"))
    }
}

/// Inline XDP flow monitor and micro-segmentation enforcer for hospital networks.
#[derive(Debug, Parser)]
#[command(version, about, after_help = EXAMPLES)]
struct Cli {
    /// Where the running monitor pins its programs and maps.
    #[arg(long, global = true, default_value = DEFAULT_PIN_DIR)]
    pin_dir: PathBuf,
    /// Where the inventory, baseline and daemon state are kept.
    #[arg(long, global = true, default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    /// Where the running daemon's lock (one per pin directory) is kept.
    #[arg(long, global = true, default_value = DEFAULT_RUN_DIR)]
    run_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Load the XDP program, attach it to the interfaces and serve until stopped.
    Run {
        /// Interface to attach to (repeat for each leg of the router).
        #[arg(long = "iface", required = true)]
        interfaces: Vec<String>,
        /// XDP attach mode.
        #[arg(long, value_enum, default_value = "auto")]
        xdp_mode: XdpModeArg,
        /// Policy directory (devices, defaults).
        #[arg(long)]
        policies: Option<PathBuf>,
        /// Global mode of a first start (default: the policy's, or learn). Ignored, with a
        /// warning, when a mode is in force already (pinned, or recorded in the state
        /// directory): only `monitor mode` changes it.
        #[arg(long, value_enum)]
        mode: Option<ModeArg>,
        /// Apply the policy even if it removes much of the policy in force (see
        /// `monitor reload --accept-shrink`).
        #[arg(long)]
        accept_shrink: bool,
        /// Attach to interfaces inside this network namespace (`ip netns` name), e.g. a
        /// router VRF; pins stay in this host's /sys/fs/bpf.
        #[arg(long)]
        netns: Option<String>,
        /// Serve Prometheus metrics at /metrics and the device map at /map on this
        /// address (default 127.0.0.1:9479; `off` to serve nothing). Bound before
        /// entering --netns: on the host's network.
        #[arg(long, value_name = "ADDR|off")]
        metrics_addr: Option<MetricsAddr>,
    },
    /// The device map: every device with its vendor, location, peers by role, when it is
    /// used, violations, baseline and protection; grouped by ward.
    #[command(after_help = MAP_EXAMPLES)]
    Map {
        /// table (terminal), html (one self-contained page), json, or dot (Graphviz).
        #[arg(long, value_enum, default_value = "table")]
        format: devmap::Format,
        /// Same as --format json.
        #[arg(long)]
        json: bool,
        /// Write to this file instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Devices learning for longer than this many days stand out.
        #[arg(long, default_value_t = devmap::DEFAULT_MAX_LEARNING_DAYS)]
        max_learning_days: u64,
    },
    /// Build a virtual ICU ward in network namespaces and show the monitor at work:
    /// learn, enforce, a compromised device scanning. Removes everything it made.
    Demo,
    /// Switch learn / audit / enforce, for the router or one device. Takes effect at once.
    Mode {
        #[arg(value_enum)]
        mode: ModeChoice,
        /// Device name or address; without it the global mode changes.
        #[arg(long)]
        device: Option<String>,
        /// Needed to enforce a life-critical device.
        #[arg(long)]
        confirm_life_critical: bool,
    },
    /// Mode, counters and verdicts of the running monitor.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Enrolled devices with their counters, and the busiest unenrolled addresses.
    Devices {
        #[arg(long)]
        json: bool,
        /// How many unenrolled addresses to list.
        #[arg(long, default_value_t = 10)]
        top: usize,
    },
    /// Flows per device: peer, protocol, service port, counters, whether the baseline has it.
    Flows {
        /// Only this device (name or address).
        #[arg(long)]
        device: Option<String>,
        /// Include flows of unenrolled addresses.
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// Run a capture through the XDP program and report as if live.
    Replay(replay::ReplayArgs),
    /// MUD files (RFC 8520) of a policy directory: what each one opens, for review.
    Mud {
        #[command(subcommand)]
        command: MudCommand,
    },
    /// Policy files.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// The verdict reasons: number, label, meaning.
    Reasons {
        #[arg(long)]
        json: bool,
    },
    /// Remove the pinned links, programs and maps (the daemon must be stopped); the
    /// baseline is saved to the state directory first.
    Detach,
    /// Ask the running daemon to re-read its policy directory (as SIGHUP does).
    Reload {
        /// Apply the policy directory even if it removes every device, every rule, the
        /// defaults, or more than 25% of the devices or rules in force (such a reload is
        /// otherwise held back as a likely mistake).
        #[arg(long)]
        accept_shrink: bool,
    },
    /// Break-glass: lift enforcement for a device or group at once, for a while.
    Allow {
        /// Device name or address (repeatable).
        #[arg(long = "device")]
        devices: Vec<String>,
        /// A group of the policy, a device kind, or a ward.
        #[arg(long)]
        group: Option<String>,
        /// How long, e.g. 30m, 2h: at most the policy's `defaults: break-glass-max` (4h
        /// unless it says otherwise); a longer one is refused and changes nothing.
        #[arg(long = "for", value_parser = humantime::parse_duration)]
        duration: std::time::Duration,
        /// Why (kept in the audit record).
        #[arg(long)]
        reason: String,
    },
    /// Violations (dropped and would-drop) as the daemon recorded them.
    Events {
        /// Keep printing new events as they come.
        #[arg(long)]
        follow: bool,
        #[arg(long)]
        json: bool,
    },
    /// The learned baseline: export, compare, import.
    Baseline {
        #[command(subcommand)]
        command: BaselineCommand,
    },
}

#[derive(Debug, Subcommand)]
enum BaselineCommand {
    /// Write the baseline (of one device or all) as a reviewable file.
    Export {
        #[arg(long)]
        device: Option<String>,
        /// json: the baseline format (re-importable); yaml: allow rules for the policy
        /// directory (promotes learned flows into policy).
        #[arg(long, value_enum, default_value = "json")]
        format: ExportFormat,
        /// Write here instead of standard output.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// What the live baseline has that a snapshot file lacks (and the reverse), or with
    /// --window what a learning window added.
    #[command(arg_required_else_help = true)]
    Diff {
        #[arg(required_unless_present = "window")]
        snapshot: Option<PathBuf>,
        /// The entries a learning window added (see `monitor baseline windows`).
        #[arg(long, conflicts_with = "snapshot")]
        window: Option<u32>,
        #[arg(long)]
        device: Option<String>,
    },
    /// The learning windows: which `monitor mode` command opened each, when and by whom,
    /// and how many baseline entries it added.
    Windows {
        #[arg(long)]
        json: bool,
    },
    /// Add the entries of a baseline file to the live baseline (the daemon must be
    /// stopped; it restores them at its next start).
    Import { file: PathBuf },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum ExportFormat {
    Json,
    Yaml,
}

#[derive(Debug, Subcommand)]
enum MudCommand {
    /// The rules each MUD file of a policy directory becomes; names are resolved only with
    /// --resolve (through each entry's dns-servers, or the system's resolver).
    Show {
        dir: PathBuf,
        /// Ask DNS for the files' names, as the daemon does, and show their addresses.
        #[arg(long)]
        resolve: bool,
    },
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Check a policy directory; non-zero exit on errors.
    Check { dir: PathBuf },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum ModeArg {
    Learn,
    Audit,
    Enforce,
}

impl From<ModeArg> for Mode {
    fn from(arg: ModeArg) -> Mode {
        match arg {
            ModeArg::Learn => Mode::Learn,
            ModeArg::Audit => Mode::Audit,
            ModeArg::Enforce => Mode::Enforce,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum ModeChoice {
    Learn,
    Audit,
    Enforce,
    /// Per device only: follow the global mode again.
    Inherit,
}

fn main() -> Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_secs()
        .init();
    let cli = Cli::parse();
    let paths = Paths {
        pin_dir: cli.pin_dir.clone(),
        state: StateDir::new(cli.state_dir.clone()),
        run_dir: cli.run_dir.clone(),
    };
    match cli.command {
        Command::Run {
            interfaces,
            xdp_mode,
            policies,
            mode,
            netns,
            metrics_addr,
            accept_shrink,
        } => {
            // Bound before entering the namespace: metrics are for the management network.
            // An address asked for must work; the default may be taken (another monitor),
            // and then the monitor runs without it rather than not at all.
            let metrics_listener = match metrics_addr {
                Some(MetricsAddr::Off) => None,
                Some(MetricsAddr::At(addr)) => Some(monitor::observe::metrics::bind(addr)?),
                None => {
                    let port = monitor::observe::metrics::DEFAULT_PORT;
                    match monitor::observe::metrics::bind(std::net::SocketAddr::from((
                        [127, 0, 0, 1],
                        port,
                    ))) {
                        Ok(listener) => Some(listener),
                        Err(e) => {
                            let e = monitor::support::error_chain(&e);
                            log::warn!("{e}; running without metrics");
                            None
                        }
                    }
                }
            };
            // Before the runtime starts, so that its threads start in the namespace too.
            let _inside = netns
                .as_deref()
                .map(monitor::lab::enter_netns)
                .transpose()?;
            tokio::runtime::Runtime::new()?.block_on(daemon::run(
                &paths,
                RunOptions {
                    interfaces,
                    xdp_mode,
                    policies,
                    mode: mode.map(Mode::from),
                    metrics_listener,
                    accept_shrink,
                },
            ))
        }
        Command::Demo => monitor::lab::demo::run(),
        Command::Map {
            format,
            json,
            output,
            max_learning_days,
        } => {
            let format = if json { devmap::Format::Json } else { format };
            device_map(&paths, format, output.as_deref(), max_learning_days)
        }
        Command::Mode {
            mode,
            device,
            confirm_life_critical,
        } => set_mode(&paths, mode, device.as_deref(), confirm_life_critical),
        Command::Status { json } => status(&paths, json),
        Command::Devices { json, top } => devices(&paths, json, top),
        Command::Flows { device, all, json } => flows(&paths, device.as_deref(), all, json),
        Command::Replay(args) => replay::command(args),
        Command::Policy {
            command: PolicyCommand::Check { dir },
        } => policy_check(&dir),
        Command::Mud {
            command: MudCommand::Show { dir, resolve },
        } => mud_show(&dir, resolve),
        Command::Reasons { json } => reasons(json),
        Command::Detach => monitor::control::detach::detach(&paths),
        Command::Reload { accept_shrink } => reload(&paths, accept_shrink),
        Command::Allow {
            devices,
            group,
            duration,
            reason,
        } => {
            // Ordered with the daemon's own writes of the inventory (reloads, expiry).
            let _write = WriteLock::take(paths.state.path())?;
            allow(&paths, devices, group.as_deref(), duration, &reason)
        }
        Command::Events { follow, json } => {
            monitor::observe::events::show(&paths.state, follow, json)
        }
        Command::Baseline { command } => baseline(&paths, command),
    }
}

fn device_map(
    paths: &Paths,
    format: devmap::Format,
    output: Option<&std::path::Path>,
    max_learning_days: u64,
) -> Result<()> {
    let maps = open_maps(paths)?;
    let oui = match monitor::view::oui::OuiDb::load_default() {
        Ok(db) => Some(db),
        Err(e) => {
            log::warn!("{e}: no vendors shown");
            None
        }
    };
    let mut inputs = devmap::Inputs::read(&maps, &paths.state, oui.as_ref())?;
    inputs.max_learning_days = max_learning_days;
    let text = devmap::render(&devmap::build(&inputs), format)?;
    match output {
        Some(path) => {
            std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?;
            println!("wrote {}", path.display());
        }
        None => print!("{text}"),
    }
    Ok(())
}

fn open_maps(paths: &Paths) -> Result<MapSet> {
    MapSet::open_pinned(&paths.pin_dir).with_context(|| {
        format!(
            "no monitor maps under {}: start one with `monitor run --iface IFACE`",
            paths.pin_dir.display()
        )
    })
}

fn set_mode(
    paths: &Paths,
    choice: ModeChoice,
    device: Option<&str>,
    confirmed: bool,
) -> Result<()> {
    let mut maps = open_maps(paths)?;
    let mode = match choice {
        ModeChoice::Learn => Some(ModeSpec::Learn),
        ModeChoice::Audit => Some(ModeSpec::Audit),
        ModeChoice::Enforce => Some(ModeSpec::Enforce),
        ModeChoice::Inherit => None,
    };
    if device.is_none() && mode.is_none() {
        bail!("`inherit` applies to one device: add --device NAME");
    }
    // The daemon reads and writes CONFIG and the inventory too (reloads): one at a time.
    let _write = WriteLock::take(paths.state.path())?;
    let history = History::load(&paths.state)?;
    let mut config = maps.config()?;
    let global = Mode::try_from(config.mode).unwrap_or(Mode::Learn);
    let choice_name = mode.map_or("inherit", |m| Mode::from(m).name());
    // Anything this command makes learn is learned under a new window, recorded before the
    // mode changes: no entry is learned without the command that allowed it.
    let open_window = |config: &mut monitor_common::maps::Config, record: &mut ModeRecord| {
        let window = config.learn_window.max(history.last_window()) + 1;
        config.learn_window = window;
        record.window = Some(window);
    };
    match (device, mode) {
        (None, None) => unreachable!("refused above"),
        (None, Some(mode)) => {
            let mode = Mode::from(mode);
            let mut record = ModeRecord::new(Change::Global, None, Some(mode.name()));
            if mode == Mode::Learn {
                open_window(&mut config, &mut record);
            }
            History::append(&paths.state, &record)?;
            config.mode = mode as u8;
            maps.set_config(config)?;
            let mut inventory = Inventory::load(&paths.state)?;
            let spared: Vec<String> = inventory
                .devices
                .iter_mut()
                .filter(|d| d.effective_mode(mode).contains("life-critical"))
                .map(|d| d.spec.name.clone())
                .collect();
            println!("global mode is now {}", mode.name());
            if let Some(window) = record.window {
                println!(
                    "learning window {window} opened: what is learned from now on is recorded under it (`monitor baseline windows`)"
                );
            }
            if !spared.is_empty() {
                println!(
                    "life-critical devices stay audited (not enforced): {}",
                    spared.join(", ")
                );
            }
        }
        (Some(name), mode) => {
            let mut inventory = Inventory::load(&paths.state)?;
            let device = inventory.set_override(name, mode, confirmed)?.clone();
            let mut record =
                ModeRecord::new(Change::Device, Some(&device.spec.name), Some(choice_name));
            let effective = device.effective_mode(global);
            if effective == Mode::Learn.name() {
                open_window(&mut config, &mut record);
            }
            History::append(&paths.state, &record)?;
            if record.window.is_some() {
                maps.set_config(config)?;
            }
            inventory.save(&paths.state)?;
            for addr in &device.spec.addresses {
                maps.enroll(*addr, device.entry())?;
            }
            println!("device {} is now in {effective} mode", device.spec.name);
            if let Some(window) = record.window {
                println!(
                    "learning window {window} opened: what it learns from now on is recorded under it (`monitor baseline windows`)"
                );
            }
        }
    }
    Ok(())
}

fn status(paths: &Paths, json: bool) -> Result<()> {
    let maps = open_maps(paths)?;
    let inventory = Inventory::load(&paths.state)?;
    let status = report::status(&maps, &inventory)?;
    // Told by the lock the daemon holds (the kernel drops it when the daemon dies).
    let held = paths.running_daemon()?;
    let daemon = held.as_ref().and_then(|Held(info)| info.clone());
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({ "status": status, "daemon": daemon })
            )?
        );
        return Ok(());
    }
    match (&held, &daemon) {
        (Some(_), Some(d)) => {
            let ifaces: Vec<String> = d
                .interfaces
                .iter()
                .map(|i| format!("{} ({})", i.name, i.xdp_mode))
                .collect();
            println!(
                "daemon: pid {} on {} (since {})",
                d.pid,
                ifaces.join(", "),
                d.started
            );
        }
        (Some(_), None) => println!("daemon: starting"),
        (None, _) => println!(
            "daemon: not running (the XDP program stays attached and enforcing; counters and baseline kept)"
        ),
    }
    println!("mode: {}", status.mode);
    println!("unenrolled traffic: {}", status.unenrolled);
    println!(
        "devices: {} enrolled ({} addresses); baseline: {} entries; policy generation {}",
        status.enrolled_devices,
        status.enrolled_addresses,
        status.baseline_entries,
        status.policy_generation
    );
    println!();
    print!("{}", report::verdict_table("VERDICT", &status.verdicts));
    println!();
    print!("{}", report::class_table("FRAMES", &status.classes));
    Ok(())
}

fn devices(paths: &Paths, json: bool, top: usize) -> Result<()> {
    let maps = open_maps(paths)?;
    let inventory = Inventory::load(&paths.state)?;
    let rows = report::device_rows(&maps, &inventory)?;
    let mut unenrolled = report::unenrolled_rows(&maps)?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({ "devices": rows, "unenrolled": unenrolled })
            )?
        );
        return Ok(());
    }
    let now = monotonic_now_ns();
    let table_rows: Vec<Vec<String>> = rows
        .iter()
        .map(|d| {
            vec![
                d.name.clone(),
                d.kind.clone(),
                d.addresses
                    .iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
                d.criticality.clone(),
                d.mode.clone(),
                format!("{}/{}", d.packets_sent, d.packets_received),
                format!("{}/{}", d.bytes_sent, d.bytes_received),
                d.dropped_packets.to_string(),
                d.would_drop_packets.to_string(),
                d.baseline_entries.to_string(),
                age(now, d.last_seen_ns),
                d.location.clone(),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "DEVICE",
                "KIND",
                "ADDRESSES",
                "CRITICALITY",
                "MODE",
                "PKTS OUT/IN",
                "BYTES OUT/IN",
                "DROPPED",
                "WOULD-DROP",
                "BASELINE",
                "LAST SEEN",
                "LOCATION"
            ],
            &table_rows
        )
    );
    if !unenrolled.is_empty() {
        let total = unenrolled.len();
        unenrolled.truncate(top);
        println!("\n{total} unenrolled addresses; the busiest:");
        let rows: Vec<Vec<String>> = unenrolled
            .iter()
            .map(|u| {
                vec![
                    u.address.to_string(),
                    format!("{}/{}", u.packets_sent, u.packets_received),
                    format!("{}/{}", u.bytes_sent, u.bytes_received),
                    age(now, u.last_seen_ns),
                ]
            })
            .collect();
        print!(
            "{}",
            table(
                &["ADDRESS", "PKTS OUT/IN", "BYTES OUT/IN", "LAST SEEN"],
                &rows
            )
        );
    }
    Ok(())
}

fn flows(paths: &Paths, device: Option<&str>, all: bool, json: bool) -> Result<()> {
    let maps = open_maps(paths)?;
    let inventory = Inventory::load(&paths.state)?;
    let mut rows = report::flow_rows(&maps, &inventory, !all)?;
    if let Some(name) = device {
        let addresses: Vec<std::net::IpAddr> = match inventory.find(name) {
            Ok(d) => d.spec.addresses.clone(),
            Err(_) => vec![name.parse().with_context(|| {
                format!("`{name}` is neither an enrolled device nor an IP address")
            })?],
        };
        rows.retain(|r| addresses.contains(&r.device_address));
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let now = monotonic_now_ns();
    let table_rows: Vec<Vec<String>> = rows
        .iter()
        .map(|f| {
            vec![
                f.device.clone(),
                f.direction.clone(),
                f.peer.clone(),
                format!("{}/{}", f.protocol, f.service_port),
                format!("{}/{}", f.packets_sent, f.packets_received),
                format!("{}/{}", f.bytes_sent, f.bytes_received),
                f.dropped_packets.to_string(),
                if f.in_baseline { "yes" } else { "no" }.into(),
                age(now, f.last_seen_ns),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "DEVICE",
                "DIR",
                "PEER",
                "SERVICE",
                "PKTS OUT/IN",
                "BYTES OUT/IN",
                "DROPPED",
                "BASELINE",
                "LAST SEEN"
            ],
            &table_rows
        )
    );
    Ok(())
}

fn mud_show(dir: &std::path::Path, resolve: bool) -> Result<()> {
    let policy = Policy::load_dir(dir)?;
    let mut names = monitor::policy::mud::Names::default();
    if resolve {
        names.apply(&mut policy.clone());
    }
    print!(
        "{}",
        monitor::policy::mud::describe(&policy, resolve.then_some(&names))
    );
    Ok(())
}

fn policy_check(dir: &std::path::Path) -> Result<()> {
    let policy = Policy::load_dir(dir)?;
    for warning in &policy.warnings {
        println!("warning: {warning}");
    }
    println!(
        "{}: ok, {} devices, {} groups, {} rules, {} warnings",
        dir.display(),
        policy.devices.len(),
        policy.groups.len(),
        policy.rules.len(),
        policy.warnings.len()
    );
    Ok(())
}

fn allow(
    paths: &Paths,
    mut devices: Vec<String>,
    group: Option<&str>,
    duration: std::time::Duration,
    reason: &str,
) -> Result<()> {
    let mut maps = open_maps(paths)?;
    if let Some(group) = group {
        let inventory = Inventory::load(&paths.state)?;
        let daemon = paths.running_daemon()?.and_then(|Held(info)| info);
        let policy = daemon
            .and_then(|d| d.policies)
            .map(|dir| Policy::load_dir(&dir))
            .transpose()?;
        let from_group: Vec<String> = policy
            .iter()
            .flat_map(|p| p.groups.iter())
            .filter(|g| g.name == group)
            .flat_map(|g| {
                g.members.iter().cloned().chain(
                    inventory
                        .devices
                        .iter()
                        .filter(|d| g.kinds.contains(&d.spec.kind))
                        .map(|d| d.spec.name.clone()),
                )
            })
            .collect();
        let members: Vec<String> = if from_group.is_empty() {
            inventory
                .devices
                .iter()
                .filter(|d| d.spec.kind == group || d.spec.location.ward.as_deref() == Some(group))
                .map(|d| d.spec.name.clone())
                .collect()
        } else {
            from_group
        };
        if members.is_empty() {
            bail!("`{group}` is no group of the policy, device kind or ward");
        }
        devices.extend(members);
    }
    devices.sort();
    devices.dedup();
    monitor::control::breakglass::allow(&mut maps, &paths.state, &devices, duration, reason)
}

fn baseline(paths: &Paths, command: BaselineCommand) -> Result<()> {
    use monitor::state::baseline::{BaselineFile, Record};
    let inventory = Inventory::load(&paths.state)?;
    let only = |device: Option<&str>| -> Result<Option<Vec<std::net::IpAddr>>> {
        device
            .map(|name| match inventory.find(name) {
                Ok(d) => Ok(d.spec.addresses.clone()),
                Err(_) => Ok(vec![name.parse().with_context(|| {
                    format!("`{name}` is neither an enrolled device nor an IP address")
                })?]),
            })
            .transpose()
    };
    // The live map, with the learned times the daemon's last save kept for entries the
    // map no longer times (restored after a reboot).
    let live = |maps: &MapSet| -> Result<BaselineFile> {
        let saved =
            BaselineFile::read(&paths.state.path().join(monitor::state::files::BASELINE)).ok();
        Ok(BaselineFile::from_map_keeping(
            &maps.baseline()?,
            saved.as_ref(),
        ))
    };
    let by_address = inventory.by_address();
    let name = |ip: &std::net::IpAddr| {
        by_address
            .get(ip)
            .map_or_else(|| ip.to_string(), |d| d.spec.name.clone())
    };
    let device_name = |ip: &std::net::IpAddr| by_address.get(ip).map(|d| d.spec.name.as_str());
    let line = |sign: &str, r: &Record| {
        format!(
            "{sign} {} {} {} {}/{}{}",
            name(&r.device),
            r.direction,
            name(&r.peer),
            proto::name(r.protocol),
            r.service_port,
            r.learned
                .as_deref()
                .map_or_else(String::new, |t| format!("  (learned {t})"))
        )
    };
    match command {
        BaselineCommand::Export {
            device,
            format,
            output,
        } => {
            let maps = open_maps(paths)?;
            let mut file = live(&maps)?;
            if let Some(addresses) = only(device.as_deref())? {
                file.entries.retain(|r| addresses.contains(&r.device));
            }
            let text = match format {
                ExportFormat::Json => serde_json::to_string_pretty(&file)?,
                ExportFormat::Yaml => {
                    monitor::view::baseline_policy::baseline_as_policy(&file, &inventory)?
                }
            };
            match output {
                Some(path) => {
                    std::fs::write(&path, text + "\n")
                        .with_context(|| format!("writing {}", path.display()))?;
                    println!("wrote {} entries to {}", file.entries.len(), path.display());
                }
                None => println!("{text}"),
            }
            Ok(())
        }
        BaselineCommand::Diff {
            snapshot,
            window: Some(window),
            device,
        } => {
            debug_assert!(snapshot.is_none());
            let maps = open_maps(paths)?;
            let history = History::load(&paths.state)?;
            let mut file = live(&maps)?;
            if let Some(addresses) = only(device.as_deref())? {
                file.entries.retain(|r| addresses.contains(&r.device));
            }
            let opened = history.window(window).with_context(|| {
                format!("no learning window {window} in the mode history (see `monitor baseline windows`)")
            })?;
            println!(
                "learning window {window}: opened by `{}` ({}, {})",
                opened.command(),
                opened.who,
                opened.time
            );
            let added: Vec<&Record> = file
                .entries
                .iter()
                .filter(|r| r.origin == "learned")
                .filter(|r| history.window_of(device_name(&r.device), r.window) == window)
                .collect();
            for r in &added {
                println!("{}", line("+", r));
            }
            println!("{} entries learned in window {window}", added.len());
            Ok(())
        }
        BaselineCommand::Diff {
            snapshot, device, ..
        } => {
            let snapshot = snapshot.context("give a snapshot file or --window N")?;
            let maps = open_maps(paths)?;
            let mut live = live(&maps)?;
            let mut old = BaselineFile::read(&snapshot)?;
            if let Some(addresses) = only(device.as_deref())? {
                live.entries.retain(|r| addresses.contains(&r.device));
                old.entries.retain(|r| addresses.contains(&r.device));
            }
            let (added, removed) = live.diff(&old);
            for r in &added {
                println!("{}", line("+", r));
            }
            for r in &removed {
                println!("{}", line("-", r));
            }
            println!(
                "{} new since the snapshot, {} gone",
                added.len(),
                removed.len()
            );
            Ok(())
        }
        BaselineCommand::Windows { json } => {
            let maps = open_maps(paths)?;
            let history = History::load(&paths.state)?;
            let file = live(&maps)?;
            let mut counts: std::collections::BTreeMap<u32, usize> = Default::default();
            for r in file.entries.iter().filter(|r| r.origin == "learned") {
                *counts
                    .entry(history.window_of(device_name(&r.device), r.window))
                    .or_default() += 1;
            }
            let mut rows = Vec::new();
            for record in history.records.iter().filter(|r| r.window.is_some()) {
                let window = record.window.unwrap_or_default();
                rows.push(serde_json::json!({
                    "window": window,
                    "opened": record.time,
                    "who": record.who,
                    "command": record.command(),
                    "entries": counts.remove(&window).unwrap_or(0),
                }));
            }
            if let Some(unrecorded) = counts.remove(&0) {
                rows.insert(
                    0,
                    serde_json::json!({
                        "window": 0,
                        "opened": "",
                        "who": "",
                        "command": "(learned before windows were recorded)",
                        "entries": unrecorded,
                    }),
                );
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
                return Ok(());
            }
            let table_rows: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    ["window", "opened", "who", "command", "entries"]
                        .iter()
                        .map(|k| match &r[*k] {
                            serde_json::Value::String(s) => s.clone(),
                            other => other.to_string(),
                        })
                        .collect()
                })
                .collect();
            print!(
                "{}",
                table(
                    &["WINDOW", "OPENED", "WHO", "COMMAND", "ENTRIES"],
                    &table_rows
                )
            );
            Ok(())
        }
        BaselineCommand::Import { file } => {
            // The daemon restores the saved baseline at its start and saves the map while
            // it runs: an import beside it would be half-known to it.
            paths.refuse_while_running("baseline import")?;
            let mut maps = open_maps(paths)?;
            let file = BaselineFile::read(&file)?;
            let entries = file.map_entries();
            maps.insert_baseline(&entries)?;
            println!("imported {} baseline entries", entries.len());
            Ok(())
        }
    }
}

/// `monitor reload [--accept-shrink]`: with --accept-shrink, says first what the policy
/// directory removes from the policy in force.
fn reload(paths: &Paths, accept_shrink: bool) -> Result<()> {
    if accept_shrink {
        let daemon = paths
            .running_daemon()?
            .and_then(|Held(info)| info)
            .context("no monitor daemon is running")?;
        if let Some(dir) = &daemon.policies {
            let policy = Policy::load_dir(dir)
                .with_context(|| format!("the policy in {} does not load", dir.display()))?;
            let inventory = Inventory::load(&paths.state)?;
            let shrink = monitor::policy::guard::Shrink::between(
                inventory.devices.iter().map(|d| d.spec.name.as_str()),
                &inventory.applied,
                &policy,
            );
            println!("applying {}: it {shrink}", dir.display());
        }
    }
    monitor::control::reload::reload(paths, accept_shrink)
}

fn reasons(json: bool) -> Result<()> {
    if json {
        let rows: Vec<serde_json::Value> = Reason::ALL
            .iter()
            .map(|r| serde_json::json!({"number": *r as u8, "label": r.label(), "description": r.description()}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = Reason::ALL
        .iter()
        .map(|r| {
            vec![
                (*r as u8).to_string(),
                r.label().into(),
                r.description().into(),
            ]
        })
        .collect();
    print!("{}", table(&["#", "REASON", "MEANING"], &rows));
    Ok(())
}
