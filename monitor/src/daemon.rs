//! `monitor run`: load (or adopt) the datapath, apply the policy, attach to the
//! interfaces, and serve until stopped.
//!
//! What makes it safe to restart: programs, maps and links are pinned. A stopped or killed
//! daemon leaves the XDP program attached and enforcing; the next one adopts the pinned
//! maps (counters and baseline continue) and replaces the program on each pinned link
//! atomically. Only `monitor detach` removes the attachment.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result, bail};
use aya::programs::xdp::XdpMode;
use monitor_common::Mode;
use serde::{Deserialize, Serialize};

use crate::{
    baseline::{self, BaselineFile},
    datapath::{self, Datapath, Maps},
    events::EventWriter,
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

fn mode_name(mode: XdpMode) -> &'static str {
    match mode {
        XdpMode::Driver => "native",
        XdpMode::Skb => "generic",
        XdpMode::Hardware => "offload",
        _ => "default",
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
    /// Where its verdicts are counted apart (IFACE_VERDICTS block).
    #[serde(default)]
    pub slot: u32,
}

pub const DAEMON_FILE: &str = "daemon.json";
/// The pinned links, by interface: which ifindex and mode each was attached with.
const LINKS_FILE: &str = "links.json";
/// How often the learned baseline is saved: a SIGKILL loses at most this much learning
/// from the file (the pinned map itself loses nothing).
pub const BASELINE_SAVE_INTERVAL: Duration = Duration::from_secs(2);

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
struct LinkRecord {
    ifindex: u32,
    xdp_mode: String,
}

/// The controller's own counters, for metrics.
#[derive(Debug, Default)]
pub struct ControllerStats {
    pub reloads_ok: AtomicU64,
    pub reloads_failed: AtomicU64,
    /// Unix seconds of the last policy that loaded.
    pub last_good_reload_unix: AtomicU64,
    pub events_written: AtomicU64,
    pub baseline_saves: AtomicU64,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The link pin of `iface` under the pin directory.
pub fn link_pin(pin_dir: &Path, iface: &str) -> PathBuf {
    pin_dir.join(format!("link_{iface}"))
}

/// Reads and applies the policy directory; on any problem the running policy stays.
pub fn apply_policy(datapath: &mut Datapath, state: &StateDir, dir: &Path) -> Result<Inventory> {
    apply_policy_with(datapath, state, dir, &mut crate::mud::Names::default())
}

/// [`apply_policy`], with the MUD names (`crate::mud`) resolved through `names`: those new
/// or past their TTL are asked now, the others are taken as known.
pub fn apply_policy_with(
    datapath: &mut Datapath,
    state: &StateDir,
    dir: &Path,
    names: &mut crate::mud::Names,
) -> Result<Inventory> {
    let mut policy = Policy::load_dir(dir).with_context(|| {
        format!(
            "policy in {} not applied; the running policy stays",
            dir.display()
        )
    })?;
    names.apply(&mut policy);
    for warning in &policy.warnings {
        log::warn!("{warning}");
    }
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
        "policy from {} applied: {} devices, {} rules",
        dir.display(),
        inventory.devices.len(),
        policy.rules.len()
    );
    Ok(inventory)
}

/// The policy's rules, folded into the rule sets the datapath reads.
pub fn compiled_rules(
    policy: &Policy,
) -> Result<
    Vec<(
        u32,
        monitor_common::maps::RuleKeyData,
        monitor_common::maps::RuleSet,
    )>,
> {
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
    /// Where `/metrics` and `/map` are served (`monitor::metrics`); bound by the caller
    /// before it enters `--netns`, so that they are on the host's network. `None`: not
    /// served (the activity history is kept all the same).
    pub metrics_listener: Option<std::net::TcpListener>,
}

/// The newest modification time among the policy directory's files.
fn policy_stamp(dir: &Path) -> Option<SystemTime> {
    let mut newest = std::fs::metadata(dir).and_then(|m| m.modified()).ok();
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        if let Ok(modified) = entry.metadata().and_then(|m| m.modified()) {
            newest = newest.max(Some(modified));
        }
    }
    newest
}

/// Restores the baseline saved in the state directory into the map (entries the map lacks).
fn restore_baseline(datapath: &mut Datapath, state: &StateDir) -> Result<usize> {
    let path = state.path().join(baseline::STATE_FILE);
    if !path.exists() {
        return Ok(0);
    }
    let file = BaselineFile::read(&path)?;
    let present: std::collections::HashSet<_> = datapath
        .maps()
        .baseline()?
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    let missing: Vec<_> = file
        .map_entries()
        .into_iter()
        .filter(|(k, _)| !present.contains(k))
        .collect();
    datapath.maps_mut().insert_baseline(&missing)?;
    Ok(missing.len())
}

/// Saves the baseline map to the state directory (atomic replace).
pub fn save_baseline(maps: &datapath::MapSet, state: &StateDir) -> Result<usize> {
    let entries = maps.baseline()?;
    state.write_json(baseline::STATE_FILE, &BaselineFile::from_map(&entries))?;
    Ok(entries.len())
}

/// Sum of learned-flow counters of the enrolled devices: changes when the baseline grows.
fn learned_total(maps: &datapath::MapSet, inventory: &Inventory) -> u64 {
    inventory
        .devices
        .iter()
        .filter_map(|d| maps.device_stats(d.slot).ok())
        .map(|s| s.learned_flows)
        .sum()
}

pub async fn run(paths: &Paths, options: RunOptions) -> Result<()> {
    run_with_stats(paths, options, Arc::new(ControllerStats::default())).await
}

pub async fn run_with_stats(
    paths: &Paths,
    options: RunOptions,
    stats: Arc<ControllerStats>,
) -> Result<()> {
    if options.interfaces.is_empty() {
        bail!("give at least one --iface to attach to");
    }
    // First, so that a stop request during start-up is handled (after start-up) rather
    // than killing the process half-way.
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    datapath::ensure_bpffs(Path::new("/sys/fs/bpf"))
        .context("/sys/fs/bpf is not a bpf filesystem and mounting one there failed")?;
    std::fs::create_dir_all(&paths.pin_dir)
        .with_context(|| format!("creating pin directory {}", paths.pin_dir.display()))?;
    let mut datapath =
        Datapath::load(&Maps::Pinned(paths.pin_dir.clone())).context("loading the XDP program")?;
    datapath.pin_programs(&paths.pin_dir)?;
    let restored =
        restore_baseline(&mut datapath, &paths.state).context("restoring the saved baseline")?;
    if restored > 0 {
        log::info!("restored {restored} baseline entries from the state directory");
    }
    let adopted_policy = datapath.maps().config()?.generation > 0;
    // MUD names, each re-resolved when its TTL runs out (the tick below).
    let mut mud_names = crate::mud::Names::default();
    if let Some(dir) = &options.policies {
        match apply_policy_with(&mut datapath, &paths.state, dir, &mut mud_names) {
            Ok(_) => {
                stats.reloads_ok.fetch_add(1, Ordering::Relaxed);
                stats
                    .last_good_reload_unix
                    .store(unix_now(), Ordering::Relaxed);
            }
            // A restart with a broken policy keeps enforcing the pinned one.
            Err(e) if adopted_policy => {
                stats.reloads_failed.fetch_add(1, Ordering::Relaxed);
                log::error!("{e:#}");
            }
            Err(e) => return Err(e),
        }
    }
    if let Some(mode) = options.mode {
        datapath.maps_mut().set_mode(mode)?;
    }

    let mut links: BTreeMap<String, LinkRecord> =
        paths.state.read_json(LINKS_FILE)?.unwrap_or_default();
    let mut attached = Vec::new();
    for iface in &options.interfaces {
        let pin = link_pin(&paths.pin_dir, iface);
        let previous = links.get(iface).map(|r| r.ifindex);
        let (mode, adopted) = datapath
            .attach_pinned(iface, options.xdp_mode.into(), &pin, previous)
            .with_context(|| format!("attaching to {iface}"))?;
        let record = if adopted {
            let record = links.get(iface).cloned().unwrap_or_default();
            log::info!(
                "adopted the pinned link on {iface} ({} mode): program replaced without a gap",
                record.xdp_mode
            );
            record
        } else {
            log::info!("attached to {iface} in {} mode", mode_name(mode));
            LinkRecord {
                ifindex: datapath::if_index(iface).unwrap_or(0),
                xdp_mode: mode_name(mode).into(),
            }
        };
        let slot = attached.len() as u32;
        if let Some(ifindex) =
            datapath::if_index(iface).filter(|_| slot < monitor_common::maps::MAX_IFACES)
        {
            datapath
                .maps_mut()
                .set_interface_slot(ifindex, Some(slot))?;
        }
        attached.push(AttachedInterface {
            name: iface.clone(),
            xdp_mode: record.xdp_mode.clone(),
            slot,
        });
        links.insert(iface.clone(), record);
    }
    paths.state.write_json(LINKS_FILE, &links)?;
    paths.state.write_json(
        DAEMON_FILE,
        &DaemonInfo {
            pid: std::process::id(),
            interfaces: attached,
            policies: options.policies.clone(),
        },
    )?;

    // Observability (metrics.rs): the activity sampler and the /metrics and /map server;
    // both stop when this guard drops at the end of the function.
    let _observability = crate::metrics::start(paths, options.metrics_listener, stats.clone());

    let events = EventWriter::new(&paths.state)?;
    let ring = datapath.maps_mut().take_events()?;
    let events_task = tokio::spawn(crate::events::pump(ring, events, stats.clone()));

    let mode = datapath.maps().config()?.mode;
    log::info!(
        "monitoring in {} mode; maps pinned under {}",
        Mode::try_from(mode).map_or("?", Mode::name),
        paths.pin_dir.display()
    );
    println!(
        "monitor running (pid {}); Ctrl-C or SIGTERM stops it (the XDP program stays attached; `monitor detach` removes it)",
        std::process::id()
    );

    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut stamp = options.policies.as_deref().and_then(policy_stamp);
    let mut last_save = Instant::now();
    let mut saved_learned = u64::MAX;
    let mut missing: BTreeMap<String, bool> = BTreeMap::new();
    loop {
        let reload = tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => true,
            _ = tick.tick() => {
                let now = options.policies.as_deref().and_then(policy_stamp);
                let changed = now != stamp;
                stamp = now;
                // A MUD name whose answer changed after its TTL: apply the policy again.
                changed || mud_names.refresh_expired()
            }
        };
        if reload {
            if let Some(dir) = &options.policies {
                match apply_policy_with(&mut datapath, &paths.state, dir, &mut mud_names) {
                    Ok(_) => {
                        stats.reloads_ok.fetch_add(1, Ordering::Relaxed);
                        stats
                            .last_good_reload_unix
                            .store(unix_now(), Ordering::Relaxed);
                    }
                    Err(e) => {
                        stats.reloads_failed.fetch_add(1, Ordering::Relaxed);
                        log::error!("{e:#}");
                    }
                }
            }
        }
        // Interfaces that went away come back with a new index: attach again.
        for iface in &options.interfaces {
            let current = datapath::if_index(iface);
            let known = links.get(iface).map(|r| r.ifindex);
            match current {
                None => {
                    if !missing.insert(iface.clone(), true).unwrap_or(false) {
                        log::warn!(
                            "interface {iface} disappeared; it is re-attached when it returns"
                        );
                    }
                }
                Some(index) if Some(index) != known => {
                    missing.remove(iface);
                    let pin = link_pin(&paths.pin_dir, iface);
                    match datapath.attach_pinned(iface, options.xdp_mode.into(), &pin, None) {
                        Ok((mode, _)) => {
                            log::info!(
                                "interface {iface} is back: attached in {} mode",
                                mode_name(mode)
                            );
                            let slot = options
                                .interfaces
                                .iter()
                                .position(|i| i == iface)
                                .unwrap_or(0) as u32;
                            if let Err(e) =
                                datapath.maps_mut().set_interface_slot(index, Some(slot))
                            {
                                log::error!("counting {iface}'s verdicts: {e:#}");
                            }
                            links.insert(
                                iface.clone(),
                                LinkRecord {
                                    ifindex: index,
                                    xdp_mode: mode_name(mode).into(),
                                },
                            );
                            if let Err(e) = paths.state.write_json(LINKS_FILE, &links) {
                                log::error!("{e:#}");
                            }
                        }
                        Err(e) => log::error!("re-attaching to {iface}: {e:#}"),
                    }
                }
                Some(_) => {}
            }
        }
        if last_save.elapsed() >= BASELINE_SAVE_INTERVAL {
            last_save = Instant::now();
            let inventory = Inventory::load(&paths.state).unwrap_or_default();
            let learned = learned_total(datapath.maps(), &inventory);
            if learned != saved_learned {
                match save_baseline(datapath.maps(), &paths.state) {
                    Ok(_) => {
                        saved_learned = learned;
                        stats.baseline_saves.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => log::error!("saving the baseline: {e:#}"),
                }
            }
            if let Err(e) = crate::breakglass::expire(datapath.maps_mut(), &paths.state) {
                log::error!("break-glass expiry: {e:#}");
            }
        }
    }
    events_task.abort();
    if let Err(e) = save_baseline(datapath.maps(), &paths.state) {
        log::error!("saving the baseline: {e:#}");
    }
    log::info!(
        "stopping; the XDP program stays attached and enforcing (`monitor detach` removes it)"
    );
    let _ = std::fs::remove_file(paths.state.path().join(DAEMON_FILE));
    drop(datapath);
    Ok(())
}

/// Whether the daemon recorded in the state directory is alive.
pub fn running_daemon(state: &StateDir) -> Option<DaemonInfo> {
    let info: DaemonInfo = state.read_json(DAEMON_FILE).ok()??;
    // SAFETY: kill with signal 0 only checks that the process exists.
    (unsafe { libc::kill(info.pid as i32, 0) } == 0).then_some(info)
}

/// `monitor detach`: removes the pinned links (detaching the program), programs and maps.
pub fn detach(paths: &Paths) -> Result<()> {
    if let Some(info) = running_daemon(&paths.state) {
        bail!(
            "the monitor daemon (pid {}) is running; stop it first (SIGTERM), then detach",
            info.pid
        );
    }
    if paths.pin_dir.exists() {
        if let Err(e) = save_baseline_from_pins(paths) {
            log::warn!("could not save the baseline before detaching: {e:#}");
        }
        std::fs::remove_dir_all(&paths.pin_dir)
            .with_context(|| format!("removing {}", paths.pin_dir.display()))?;
        println!(
            "detached: removed pinned links, programs and maps under {}",
            paths.pin_dir.display()
        );
    } else {
        println!("nothing pinned under {}", paths.pin_dir.display());
    }
    let _ = std::fs::remove_file(paths.state.path().join(DAEMON_FILE));
    let _ = std::fs::remove_file(paths.state.path().join(LINKS_FILE));
    Ok(())
}

fn save_baseline_from_pins(paths: &Paths) -> Result<()> {
    let maps = datapath::MapSet::open_pinned(&paths.pin_dir)?;
    let saved = save_baseline(&maps, &paths.state)?;
    println!(
        "saved {saved} baseline entries to {}",
        paths.state.path().join(baseline::STATE_FILE).display()
    );
    Ok(())
}

/// `monitor reload`: asks the running daemon to re-read its policy (SIGHUP).
pub fn reload(paths: &Paths) -> Result<()> {
    let info = running_daemon(&paths.state).context("no monitor daemon is running")?;
    // SAFETY: kill(2) with SIGHUP on the daemon's pid.
    if unsafe { libc::kill(info.pid as i32, libc::SIGHUP) } != 0 {
        bail!(
            "signalling pid {}: {}",
            info.pid,
            std::io::Error::last_os_error()
        );
    }
    println!("asked the daemon (pid {}) to reload its policy", info.pid);
    Ok(())
}
