//! The command line: the clap definitions here, one file per command group.

mod allow;
mod baseline;
mod config;
mod generate;
mod mode;
mod policy;
mod run;
mod show;

use std::{path::PathBuf, process::ExitCode};

use anyhow::{Context, Result};
use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};
use monitor::{
    datapath::{DEFAULT_PIN_DIR, MapSet},
    replay,
    state::{
        DEFAULT_STATE_DIR, StateDir,
        daemon::Paths,
        lock::{DEFAULT_RUN_DIR, WriteLock},
    },
    support::logging::{self, LogFormat},
    view::devmap,
};
use monitor_common::Mode;

const EXAMPLES: &str = "\
Examples:
  monitor run --iface ward0:ward --iface core0:core --policies policies/
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
  monitor map --format svg -o map.svg       # the drawing of the architecture alone
  monitor map --format dot | dot -Tsvg > graph.svg
The running daemon serves the same page at http://127.0.0.1:9479/map (see --metrics-addr).";

/// Inline XDP flow monitor and micro-segmentation enforcer for hospital networks.
#[derive(Debug, Parser)]
#[command(version, about, after_help = EXAMPLES)]
pub struct Cli {
    /// Where the running monitor pins its programs and maps.
    #[arg(long, global = true, default_value = DEFAULT_PIN_DIR)]
    pin_dir: PathBuf,
    /// Where the inventory, baseline and daemon state are kept.
    #[arg(long, global = true, default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    /// Where the running daemon's lock (one per pin directory) is kept.
    #[arg(long, global = true, default_value = DEFAULT_RUN_DIR)]
    run_dir: PathBuf,
    /// Configuration file (default: /etc/monitor/monitor.toml when it exists): a key per
    /// long option of `monitor run`, e.g. `interfaces = ["ward0", "core0"]`; flags win.
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load the XDP program, attach it to the interfaces and serve until stopped.
    Run {
        /// Interface to attach to (repeat for each leg of the router), with its role:
        /// `NAME:ward` for a leg with devices behind it (their source MACs are checked
        /// against the inventory's `mac:` and unknown MACs are discovered), `NAME:core`
        /// (or just `NAME`) for the uplink, where MACs are routers'.
        #[arg(long = "iface", required = true, value_name = "NAME[:ward|core]")]
        interfaces: Vec<String>,
        /// XDP attach mode.
        #[arg(long, value_enum, default_value = "auto")]
        xdp_mode: run::XdpModeArg,
        /// Policy directory (devices, defaults).
        #[arg(long)]
        policies: Option<PathBuf>,
        /// Global mode of a first start (default: the policy's, or learn). Ignored, with a
        /// warning, when a mode is in force already (pinned, or recorded in the state
        /// directory): only `monitor mode` changes it.
        #[arg(long, value_parser = mode::parse_mode)]
        mode: Option<Mode>,
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
        metrics_addr: Option<run::MetricsAddr>,
        /// Send every event (violations, break-glass, policy loads, mode changes) to this
        /// syslog collector too, as RFC 5424 messages (TCP: octet-counted). Connected from
        /// the host's network, like --metrics-addr; an unreachable collector is retried.
        #[arg(long, value_name = "udp://HOST:PORT|tcp://HOST:PORT")]
        syslog: Option<monitor::observe::syslog::Target>,

        /// auto: the journal (native protocol, with PRIORITY and fields such as INTERFACE,
        /// DEVICE and REASON) when systemd runs the monitor, else text on standard error;
        /// json: one object per line on standard error.
        #[arg(long, value_enum, default_value = "auto")]
        log_format: LogFormat,
    },
    /// The device map: every device with its vendor, location, peers by role, when it is
    /// used, violations, baseline and protection; grouped by ward.
    #[command(after_help = MAP_EXAMPLES)]
    Map {
        /// table (terminal), html (one self-contained page, opening with a drawing of the
        /// architecture), json, dot (Graphviz), or svg (the drawing alone).
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
        /// learn, audit, enforce, or (with --device) inherit: follow the router's mode
        /// again.
        #[arg(value_parser = mode::parse_choice, value_name = "MODE")]
        mode: mode::Choice,
        /// Device name or address; without it the global mode changes.
        #[arg(long)]
        device: Option<String>,
        /// Needed to enforce a life-critical device.
        #[arg(long)]
        confirm_life_critical: bool,
    },
    /// Mode, counters and verdicts of the running monitor; exits 0 when a daemon runs, 3
    /// when none does (LSB).
    #[command(after_help = show::STATUS_EXIT_CODES)]
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
    /// Devices nobody enrolled: every source MAC seen on a ward leg (`--iface NAME:ward`)
    /// that the inventory does not name, with its vendor, addresses, when it was seen, its
    /// traffic and the enrolled devices' services it used.
    Discovered {
        #[arg(long)]
        json: bool,
        /// Inventory entries (name stub, kind unknown, MAC, addresses, vendor in notes) to
        /// review and drop into the policy directory.
        #[arg(long, conflicts_with = "json")]
        yaml: bool,
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
        /// Instead of lifting enforcement: accept frames from this MAC with the one
        /// --device's addresses on ward legs (a replaced NIC) for --for, recorded in the
        /// audit trail like a break-glass, until the inventory's `mac:` names it.
        #[arg(long, value_name = "MAC", conflicts_with = "group")]
        mac: Option<String>,
    },
    /// Events as the daemon recorded them: violations (dropped and would-drop, spoofed
    /// sources with both MACs), policy loads, break-glass, MAC acceptances, mode changes,
    /// discovered devices and addresses that moved to another MAC.
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
    /// The site's hour of the week for the baseline's schedules. For drills and tests:
    /// `set` fixes it (the daemon writes it instead of the real local hour), `real`
    /// returns to the clock; without either, show it.
    #[command(hide = true)]
    Clock {
        /// `set` or `real`.
        #[arg(value_parser = ["set", "real", "show"], default_value = "show")]
        action: String,
        /// With `set`: 0 (Monday 00:00) to 167, or a day and hour such as `mon 10`.
        #[arg(value_parser = monitor::control::clock::parse_slot)]
        hour: Option<u8>,
    },
    /// A shell completion script on standard output (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Write the man pages (monitor.1 and one per command) into a directory.
    #[command(hide = true)]
    Man { dir: PathBuf },
}

#[derive(Debug, Subcommand)]
pub enum BaselineCommand {
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
pub enum ExportFormat {
    Json,
    Yaml,
}

#[derive(Debug, Subcommand)]
pub enum MudCommand {
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
pub enum PolicyCommand {
    /// Check a policy directory; non-zero exit on errors.
    Check { dir: PathBuf },
}

/// The command line, with the configuration file's values as the defaults of the options
/// it sets.
fn parse() -> Result<(Cli, Option<String>)> {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let mut command = Cli::command();
    let config = match config::path_from_args(&argv) {
        Some(path) => Some(config::ConfigFile::read(&path, &command)?),
        None => None,
    };
    if let Some(file) = &config {
        command = file.apply(command);
    }
    let matches = command.get_matches_from(argv);
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let described = config.map(|c| format!("{} (sets {})", c.path.display(), c.keys().join(", ")));
    Ok((cli, described))
}

pub fn main() -> Result<ExitCode> {
    let (cli, config) = parse()?;
    let format = match &cli.command {
        Command::Run { log_format, .. } => *log_format,
        _ => LogFormat::Text,
    };
    let format = logging::init(format);
    match dispatch(cli, config) {
        // The journal or a log shipper gets the error as a record of its own.
        Err(e) if format != LogFormat::Text => {
            log::error!("{e:#}");
            Ok(ExitCode::FAILURE)
        }
        other => other,
    }
}

fn dispatch(cli: Cli, config: Option<String>) -> Result<ExitCode> {
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
            syslog,

            log_format: _,
        } => run::run(
            &paths,
            run::RunArgs {
                interfaces,
                xdp_mode,
                policies,
                mode,
                netns,
                metrics_addr,
                accept_shrink,
                syslog,

                config,
            },
        ),
        Command::Demo => monitor::lab::demo::run(),
        Command::Map {
            format,
            json,
            output,
            max_learning_days,
        } => {
            let format = if json { devmap::Format::Json } else { format };
            show::device_map(&paths, format, output.as_deref(), max_learning_days)
        }
        Command::Mode {
            mode,
            device,
            confirm_life_critical,
        } => mode::set_mode(&paths, mode, device.as_deref(), confirm_life_critical),
        Command::Status { json } => return Ok(show::status(&paths, json)),
        Command::Devices { json, top } => show::devices(&paths, json, top),
        Command::Discovered { json, yaml } => show::discovered(&paths, json, yaml),
        Command::Flows { device, all, json } => show::flows(&paths, device.as_deref(), all, json),
        Command::Replay(args) => replay::command(args),
        Command::Policy {
            command: PolicyCommand::Check { dir },
        } => policy::policy_check(&dir),
        Command::Mud {
            command: MudCommand::Show { dir, resolve },
        } => policy::mud_show(&dir, resolve),
        Command::Reasons { json } => show::reasons(json),
        Command::Detach => monitor::control::detach::detach(&paths),
        Command::Reload { accept_shrink } => policy::reload(&paths, accept_shrink),
        Command::Allow {
            devices,
            group,
            duration,
            reason,
            mac,
        } => {
            // Ordered with the daemon's own writes of the inventory (reloads, expiry).
            let _write = WriteLock::take(paths.state.path())?;
            match mac {
                Some(mac) => allow::allow_mac(&paths, &devices, &mac, duration, &reason),
                None => allow::allow(&paths, devices, group.as_deref(), duration, &reason),
            }
        }
        Command::Events { follow, json } => {
            monitor::observe::events::show(&paths.state, follow, json)
        }
        Command::Baseline { command } => baseline::baseline(&paths, command),
        Command::Clock { action, hour } => mode::clock(&paths, &action, hour),
        Command::Completions { shell } => generate::completions(shell),
        Command::Man { dir } => generate::man(&dir),
    }
    .map(|()| ExitCode::SUCCESS)
}

pub fn open_maps(paths: &Paths) -> Result<MapSet> {
    MapSet::open_pinned(&paths.pin_dir).with_context(|| {
        format!(
            "no monitor maps under {}: start one with `monitor run --iface IFACE`",
            paths.pin_dir.display()
        )
    })
}
