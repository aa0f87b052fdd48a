//! `monitor run`: load (or adopt) the datapath, apply the policy, attach to the
//! interfaces, and serve until stopped.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use aya::programs::xdp::XdpMode;
use monitor_common::Mode;
use serde::{Deserialize, Serialize};

use crate::{
    datapath::{self, Datapath, Maps},
    inventory::{Inventory, StateDir},
    policy::Policy,
};

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

/// Where the daemon keeps its things.
#[derive(Clone, Debug)]
pub struct Paths {
    pub pin_dir: PathBuf,
    pub state: StateDir,
}

/// What `monitor status` shows about the running daemon.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct DaemonInfo {
    pub pid: u32,
    pub interfaces: Vec<AttachedInterface>,
    pub policies: Option<PathBuf>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct AttachedInterface {
    pub name: String,
    pub xdp_mode: String,
}

pub const DAEMON_FILE: &str = "daemon.json";

/// Reads and applies the policy directory; on any problem the running policy stays.
pub fn apply_policy(datapath: &mut Datapath, state: &StateDir, dir: &Path) -> Result<Inventory> {
    let policy = Policy::load_dir(dir)
        .with_context(|| format!("policy in {} not applied; the running policy stays", dir.display()))?;
    let previous = Inventory::load(state)?;
    let rules = compiled_rules(&policy)?;
    let (inventory, fresh) = Inventory::from_policy(&policy, &previous, &rules);
    inventory.apply(datapath.maps_mut(), &fresh, &rules)?;
    if let Some(mode) = policy.defaults.mode {
        if previous.devices.is_empty() {
            // Only the first policy sets the starting mode: a reload must not undo an
            // operator's `monitor mode`.
            datapath.maps_mut().set_mode(Mode::from(mode))?;
        }
    }
    inventory.save(state)?;
    log::info!(
        "policy from {} applied: {} devices",
        dir.display(),
        inventory.devices.len()
    );
    Ok(inventory)
}

/// The policy's rules, folded into the rule sets the datapath reads.
pub fn compiled_rules(
    policy: &Policy,
) -> Result<Vec<(u32, monitor_common::maps::RuleKeyData, monitor_common::maps::RuleSet)>> {
    let rules = policy
        .compile_rules()
        .map_err(crate::policy::PolicyError::Invalid)?;
    Ok(crate::policy::fold_rules(&rules).map_err(crate::policy::PolicyError::Invalid)?)
}

pub struct RunOptions {
    pub interfaces: Vec<String>,
    pub xdp_mode: XdpModeArg,
    pub policies: Option<PathBuf>,
    pub mode: Option<Mode>,
}

pub async fn run(paths: &Paths, options: RunOptions) -> Result<()> {
    if options.interfaces.is_empty() {
        bail!("give at least one --iface to attach to");
    }
    let bpffs = Path::new("/sys/fs/bpf");
    datapath::ensure_bpffs(bpffs)
        .context("/sys/fs/bpf is not a bpf filesystem and mounting one there failed")?;
    std::fs::create_dir_all(&paths.pin_dir)
        .with_context(|| format!("creating pin directory {}", paths.pin_dir.display()))?;
    let mut datapath = Datapath::load(&Maps::Pinned(paths.pin_dir.clone()))
        .context("loading the XDP program")?;
    datapath.pin_programs(&paths.pin_dir)?;
    if let Some(dir) = &options.policies {
        apply_policy(&mut datapath, &paths.state, dir)?;
    }
    if let Some(mode) = options.mode {
        datapath.maps_mut().set_mode(mode)?;
    }
    let mut attached = Vec::new();
    for iface in &options.interfaces {
        let mode = datapath
            .attach(iface, options.xdp_mode.into())
            .with_context(|| format!("attaching to {iface}"))?;
        let mode_name = match mode {
            XdpMode::Driver => "native",
            XdpMode::Skb => "generic",
            _ => "default",
        };
        log::info!("attached to {iface} in {mode_name} mode");
        attached.push(AttachedInterface {
            name: iface.clone(),
            xdp_mode: mode_name.into(),
        });
    }
    paths.state.write_json(
        DAEMON_FILE,
        &DaemonInfo {
            pid: std::process::id(),
            interfaces: attached,
            policies: options.policies.clone(),
        },
    )?;
    let mode = datapath.maps().config()?.mode;
    log::info!(
        "monitoring in {} mode; maps pinned under {}",
        Mode::try_from(mode).map_or("?", Mode::name),
        paths.pin_dir.display()
    );
    println!("monitor running (pid {}); Ctrl-C or SIGTERM stops it", std::process::id());

    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                if let Some(dir) = &options.policies {
                    if let Err(e) = apply_policy(&mut datapath, &paths.state, dir) {
                        log::error!("{e:#}");
                    }
                }
            }
            _ = tick.tick() => {}
        }
    }
    log::info!("stopping: detaching from the interfaces; maps stay pinned (counters and baseline persist)");
    let _ = std::fs::remove_file(paths.state.path().join(DAEMON_FILE));
    drop(datapath);
    Ok(())
}

/// `monitor detach`: removes the pinned programs and maps.
pub fn detach(paths: &Paths) -> Result<()> {
    if paths.pin_dir.exists() {
        std::fs::remove_dir_all(&paths.pin_dir)
            .with_context(|| format!("removing {}", paths.pin_dir.display()))?;
        println!("removed pinned programs and maps under {}", paths.pin_dir.display());
    } else {
        println!("nothing pinned under {}", paths.pin_dir.display());
    }
    let _ = std::fs::remove_file(paths.state.path().join(DAEMON_FILE));
    Ok(())
}
