//! `monitor run`: the daemon's options as given on the command line.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use aya::programs::xdp::XdpMode;
use monitor::{
    daemon::{self, RunOptions},
    observe::syslog::{Syslog, Target},
    state::daemon::Paths,
};
use monitor_common::Mode;

/// How to attach.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum XdpModeArg {
    /// Native (driver) mode, falling back to generic with a warning.
    Auto,
    /// Native mode or fail.
    Native,
    /// Generic (skb) mode.
    Generic,
}

impl From<XdpModeArg> for XdpMode {
    fn from(arg: XdpModeArg) -> XdpMode {
        match arg {
            XdpModeArg::Auto => XdpMode::Default,
            XdpModeArg::Native => XdpMode::Driver,
            XdpModeArg::Generic => XdpMode::Skb,
        }
    }
}

/// `--metrics-addr`: an address, or `off`.
#[derive(Clone, Copy, Debug)]
pub enum MetricsAddr {
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

pub struct RunArgs {
    pub interfaces: Vec<String>,
    pub xdp_mode: XdpModeArg,
    pub policies: Option<PathBuf>,
    pub mode: Option<Mode>,
    pub netns: Option<String>,
    pub metrics_addr: Option<MetricsAddr>,
    pub accept_shrink: bool,
    pub syslog: Option<Target>,

    /// The configuration file read and the keys it set, if any (for the log).
    pub config: Option<String>,
}

pub fn run(paths: &Paths, args: RunArgs) -> Result<()> {
    let RunArgs {
        interfaces,
        xdp_mode,
        policies,
        mode,
        netns,
        metrics_addr,
        accept_shrink,
        syslog,

        config,
    } = args;
    if let Some(config) = &config {
        log::info!("configuration from {config}");
    }
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
    // Its thread stays on the host's network, where the SIEM is, like the metrics.
    let syslog = syslog
        .map(Syslog::start)
        .transpose()
        .context("starting the syslog sender")?;
    // Before the runtime starts, so that its threads start in the namespace too.
    let _inside = netns
        .as_deref()
        .map(|name| {
            monitor::lab::enter_netns(name).map_err(|e| {
                anyhow::Error::from(e).context(
                    "--netns needs CAP_SYS_ADMIN (setns); under systemd, add it to the unit's \
                     CapabilityBoundingSet and `net` to RestrictNamespaces (see the comments \
                     of monitor.service)",
                )
            })
        })
        .transpose()?;
    tokio::runtime::Runtime::new()?.block_on(daemon::run(
        paths,
        RunOptions {
            interfaces,
            xdp_mode: xdp_mode.into(),
            policies,
            mode,
            metrics_listener,
            accept_shrink,
            syslog,
        },
    ))
}
