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
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context, Result, bail};
use aya::programs::xdp::XdpMode;
use monitor_common::Mode;
use serde::{Deserialize, Serialize};

use crate::state::{
    daemon::{AttachedInterface, DaemonInfo, Paths},
    files,
};
use crate::{
    datapath::{self, Datapath, Maps},
    observe::events::{ControllerEvent, EventWriter},
    observe::{live::Publisher, stats::ControllerStats},
    policy::Policy,
    policy::guard::{AppliedPolicy, Shrink},
    state::StateDir,
    state::baseline::{self},
    state::inventory::Inventory,
    state::lock::WriteLock,
    state::modes::{Change, History, ModeRecord},
    support::clock::unix_now,
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

/// How often the learned baseline is saved: a SIGKILL loses at most this much learning
/// from the file (the pinned map itself loses nothing).
pub const BASELINE_SAVE_INTERVAL: Duration = Duration::from_secs(2);
/// A changed policy directory is read once it has not changed for this long, so that a
/// file being written (an editor, `cp`, `git pull`) is read whole.
pub const POLICY_SETTLE: Duration = Duration::from_millis(1500);
/// How often the policy directory is looked at.
const POLICY_POLL: Duration = Duration::from_millis(250);

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
struct LinkRecord {
    ifindex: u32,
    xdp_mode: String,
}

/// The link pin of `iface` under the pin directory.
pub fn link_pin(pin_dir: &Path, iface: &str) -> PathBuf {
    pin_dir.join(format!("link_{iface}"))
}

/// A policy load that would take away too much of the policy in force
/// ([`crate::policy::guard`]): not applied.
#[derive(Debug, thiserror::Error)]
#[error(
    "policy in {} held back as suspicious: it {shrink} of the policy in force. If that is \
     meant, apply it with `monitor reload --accept-shrink` (or start with `monitor run \
     --accept-shrink`)",
    dir.display()
)]
pub struct HeldBack {
    pub dir: PathBuf,
    pub shrink: Shrink,
}

/// How a policy load may go.
#[derive(Clone, Copy, Debug, Default)]
pub struct ApplyOptions {
    /// Apply even what [`crate::policy::guard`] holds back (the operator's
    /// `monitor reload --accept-shrink`).
    pub accept_shrink: bool,
}

/// A policy that was applied.
#[derive(Debug)]
pub struct Applied {
    pub inventory: Inventory,
    /// Devices whose policy asks for another mode than the one kept in force.
    pub modes_kept: Vec<String>,
    /// What the load took away (within what is applied at once, or accepted).
    pub shrink: Shrink,
    /// The policy's starting mode (`defaults: mode`), for a first start.
    pub starting_mode: Option<Mode>,
}

/// Reads and applies the policy directory; on any problem the running policy stays.
pub fn apply_policy(datapath: &mut Datapath, state: &StateDir, dir: &Path) -> Result<Inventory> {
    apply_policy_with(
        datapath,
        state,
        dir,
        &mut crate::policy::mud::Names::default(),
        ApplyOptions::default(),
    )
    .map(|applied| applied.inventory)
}

/// [`apply_policy`], with the MUD names (`crate::policy::mud`) resolved through `names`: those new
/// or past their TTL are asked now, the others are taken as known.
///
/// Never changes the router-wide mode, nor the mode of a device already enrolled (see
/// [`Inventory::keep_modes_in_force`]): only an operator's `monitor mode` does.
pub fn apply_policy_with(
    datapath: &mut Datapath,
    state: &StateDir,
    dir: &Path,
    names: &mut crate::policy::mud::Names,
    options: ApplyOptions,
) -> Result<Applied> {
    let mut policy = Policy::load_dir(dir)
        .with_context(|| format!("policy in {} not applied", dir.display()))?;
    // Compared as written: a MUD name resolving to other addresses is no removal.
    let written = AppliedPolicy::of(&policy);
    let shrink_check = policy.clone();
    names.apply(&mut policy);
    for warning in &policy.warnings {
        log::warn!("{warning}");
    }
    // The inventory is read, compared, installed and written as one step: a `monitor
    // mode --device` or `monitor allow` meanwhile waits rather than being undone.
    let _write = WriteLock::take(state.path())?;
    let previous = Inventory::load(state)?;
    let shrink = Shrink::between(
        previous.devices.iter().map(|d| d.spec.name.as_str()),
        &previous.applied,
        &shrink_check,
    );
    if shrink.suspicious().is_some() {
        if !options.accept_shrink {
            return Err(HeldBack {
                dir: dir.to_path_buf(),
                shrink,
            }
            .into());
        }
        log::warn!(
            "applying the policy in {} although it {shrink}: accepted by the operator",
            dir.display()
        );
    }
    let rules = compiled_rules(&policy)?;
    let (mut inventory, fresh) = Inventory::from_policy(&policy, &previous, &rules);
    inventory.applied = written;
    let modes_kept = inventory.keep_modes_in_force(&previous);
    inventory.apply(datapath.maps_mut(), &fresh, &rules)?;
    inventory.save(state)?;
    for message in &modes_kept {
        log::warn!("{message}");
    }
    log::info!(
        "policy from {} applied: {} devices, {} rules",
        dir.display(),
        inventory.devices.len(),
        policy.rules.len()
    );
    Ok(Applied {
        inventory,
        modes_kept,
        shrink,
        starting_mode: policy.defaults.mode.map(Mode::from),
    })
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
    /// The mode of a first start; ignored (with a warning) when the mode in force is known.
    pub mode: Option<Mode>,
    /// Where `/metrics` and `/map` are served (`monitor::metrics`); bound by the caller
    /// before it enters `--netns`, so that they are on the host's network. `None`: not
    /// served (the activity history is kept all the same).
    pub metrics_listener: Option<std::net::TcpListener>,
    /// Apply the policy at start even if [`crate::policy::guard`] would hold it back.
    pub accept_shrink: bool,
}

/// What the policy directory looks like: every file's name, length and modification
/// time, and the directory's own. Any write, rename or removal changes it.
fn policy_stamp(dir: &Path) -> Option<Vec<(PathBuf, u64, Option<SystemTime>)>> {
    let meta = std::fs::metadata(dir).ok()?;
    let mut stamp = vec![(dir.to_path_buf(), meta.len(), meta.modified().ok())];
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        if let Ok(meta) = entry.metadata() {
            stamp.push((entry.path(), meta.len(), meta.modified().ok()));
        }
    }
    stamp.sort();
    Some(stamp)
}

/// Watches the policy directory: a change is reported once the directory has been quiet
/// for [`POLICY_SETTLE`], so that half-written files are never read.
struct PolicyWatch {
    dir: Option<PathBuf>,
    seen: Option<Vec<(PathBuf, u64, Option<SystemTime>)>>,
    /// When the directory last changed, while a change waits to settle.
    changed_at: Option<Instant>,
}

impl PolicyWatch {
    fn new(dir: Option<&Path>) -> PolicyWatch {
        PolicyWatch {
            dir: dir.map(Path::to_path_buf),
            seen: dir.and_then(policy_stamp),
            changed_at: None,
        }
    }

    /// Whether a settled change is ready to be read now.
    fn poll(&mut self) -> bool {
        let Some(dir) = &self.dir else {
            return false;
        };
        let now = dir.as_path();
        let stamp = policy_stamp(now);
        if stamp != self.seen {
            self.seen = stamp;
            self.changed_at = Some(Instant::now());
            return false;
        }
        match self.changed_at {
            Some(at) if at.elapsed() >= POLICY_SETTLE => {
                self.changed_at = None;
                true
            }
            _ => false,
        }
    }

    /// A reload happened for another reason: the pending change is part of it.
    fn reloaded(&mut self) {
        if let Some(dir) = &self.dir {
            self.seen = policy_stamp(dir);
        }
        self.changed_at = None;
    }
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

/// Pins this start created, removed again if the start fails: a start that fails leaves
/// nothing behind (an adopted datapath is left as it was, enforcing).
struct StartCleanup {
    pin_dir: PathBuf,
    /// The pin directory's entries before the start; `None` when it did not exist.
    before: Option<std::collections::BTreeSet<std::ffi::OsString>>,
    armed: bool,
}

impl StartCleanup {
    fn new(pin_dir: &Path) -> StartCleanup {
        let before = std::fs::read_dir(pin_dir).ok().map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name())
                .collect::<std::collections::BTreeSet<_>>()
        });
        StartCleanup {
            pin_dir: pin_dir.to_path_buf(),
            before,
            armed: true,
        }
    }
}

impl Drop for StartCleanup {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        match &self.before {
            None => {
                let _ = std::fs::remove_dir_all(&self.pin_dir);
            }
            Some(before) => {
                for entry in std::fs::read_dir(&self.pin_dir)
                    .into_iter()
                    .flatten()
                    .flatten()
                {
                    if !before.contains(&entry.file_name()) {
                        let _ = std::fs::remove_file(entry.path());
                    }
                }
            }
        }
    }
}

/// Sets the router-wide mode at start: a first start takes `--mode`, the policy's
/// starting mode or learn; any other start keeps the mode in force (pinned, or recorded in
/// the mode history when the pins are gone, e.g. after a reboot). Returns the history
/// record of a first start, to append once the start has succeeded (a failed start leaves
/// no mode behind).
fn start_mode(
    datapath: &mut Datapath,
    state: &StateDir,
    adopted: bool,
    asked: Option<Mode>,
    policy_mode: Option<Mode>,
) -> Result<Option<ModeRecord>> {
    let history = History::load(state).context("reading the mode history")?;
    let mut config = datapath.maps().config()?;
    let ignored = |in_force: Mode, how: &str| {
        if let Some(asked) = asked.filter(|m| *m != in_force) {
            log::warn!(
                "--mode {} ignored: the mode in force is {} ({how}); only `monitor mode {}` \
                 changes it",
                asked.name(),
                in_force.name(),
                asked.name()
            );
        }
    };
    if adopted {
        let in_force = Mode::try_from(config.mode).unwrap_or(Mode::Learn);
        ignored(in_force, "kept from the running datapath");
        return Ok(None);
    }
    if let Some(recorded) = history.global_mode() {
        ignored(recorded, "restored from the mode history");
        config.mode = recorded as u8;
        config.learn_window = history.last_window();
        datapath.maps_mut().set_config(config)?;
        log::warn!(
            "the pinned datapath was gone (a reboot?): restored the {} mode in force from {}",
            recorded.name(),
            state
                .path()
                .join(crate::state::files::MODE_HISTORY)
                .display()
        );
        return Ok(None);
    }
    let mode = asked.or(policy_mode).unwrap_or(Mode::Learn);
    let mut record = ModeRecord::new(Change::FirstStart, None, Some(mode.name()));
    config.learn_window = history.last_window();
    if mode == Mode::Learn {
        config.learn_window += 1;
        record.window = Some(config.learn_window);
    }
    config.mode = mode as u8;
    datapath.maps_mut().set_config(config)?;
    Ok(Some(record))
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
    let mut accept = signal(SignalKind::user_defined1())?;
    let mut info = DaemonInfo {
        pid: std::process::id(),
        interfaces: Vec::new(),
        policies: options.policies.clone(),
        pin_dir: std::path::absolute(&paths.pin_dir).unwrap_or_else(|_| paths.pin_dir.clone()),
        state_dir: std::path::absolute(paths.state.path())
            .unwrap_or_else(|_| paths.state.path().to_path_buf()),
        started: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
    };
    // Before anything is written: a second daemon must leave the first one's datapath,
    // mode and state exactly as they are.
    let (mut pin_lock, mut state_lock) = paths.take_locks(&info)?;
    let adopted = paths
        .pin_dir
        .join(monitor_common::maps::names::CONFIG)
        .exists();
    // Checked before anything is loaded or pinned: an empty or missing directory is a
    // mistake, never a policy; a policy that does not load can be kept waiting for a fix
    // only when a pinned one stays in force meanwhile.
    if let Some(dir) = &options.policies {
        match Policy::load_dir(dir) {
            Ok(_) => {}
            Err(crate::policy::PolicyError::Invalid(_)) if adopted => {}
            Err(e) => {
                return Err(anyhow::Error::from(e).context(format!(
                    "policy directory {} not usable; nothing was started or changed",
                    dir.display()
                )));
            }
        }
    }
    datapath::ensure_bpffs(Path::new("/sys/fs/bpf"))
        .context("/sys/fs/bpf is not a bpf filesystem and mounting one there failed")?;
    let mut cleanup = StartCleanup::new(&paths.pin_dir);
    cleanup.armed = !adopted;
    std::fs::create_dir_all(&paths.pin_dir)
        .with_context(|| format!("creating pin directory {}", paths.pin_dir.display()))?;
    let mut datapath =
        Datapath::load(&Maps::Pinned(paths.pin_dir.clone())).context("loading the XDP program")?;
    datapath.pin_programs(&paths.pin_dir)?;
    let (restored, mut saved_baseline) = baseline::restore(datapath.maps_mut(), &paths.state)
        .context("restoring the saved baseline")?;
    if restored > 0 {
        log::info!("restored {restored} baseline entries from the state directory");
    }
    let adopted_policy = datapath.maps().config()?.generation > 0;
    // MUD names, each re-resolved when its TTL runs out (the tick below).
    let mut mud_names = crate::policy::mud::Names::default();
    let mut policy_mode = None;
    let (events_tx, events_rx) = tokio::sync::mpsc::unbounded_channel();
    if let Some(dir) = &options.policies {
        match apply_policy_with(
            &mut datapath,
            &paths.state,
            dir,
            &mut mud_names,
            ApplyOptions {
                accept_shrink: options.accept_shrink,
            },
        ) {
            Ok(applied) => {
                stats.reloads_ok.fetch_add(1, Ordering::Relaxed);
                stats
                    .last_good_reload_unix
                    .store(unix_now(), Ordering::Relaxed);
                policy_mode = applied.starting_mode;
                for message in applied.modes_kept {
                    let _ = events_tx.send(ControllerEvent::warning("mode-kept", message));
                }
            }
            // A restart with a broken or suspicious policy keeps enforcing the pinned one.
            Err(e) if adopted_policy => {
                note_failed_load(&stats, &events_tx, &e);
            }
            Err(e) => {
                return Err(e.context(
                    "no pinned policy was in force to keep: nothing was started (what this start pinned is removed)",
                ));
            }
        }
    }
    let first_start = start_mode(
        &mut datapath,
        &paths.state,
        adopted,
        options.mode,
        policy_mode,
    )?;

    let mut links: BTreeMap<String, LinkRecord> =
        paths.state.read_json(files::LINKS)?.unwrap_or_default();
    let mut attached = Vec::new();
    for (slot, iface) in options.interfaces.iter().enumerate() {
        let pin = link_pin(&paths.pin_dir, iface);
        let previous = links.get(iface).map(|r| r.ifindex);
        let (mode, adopted_link) = datapath
            .attach_pinned(iface, options.xdp_mode.into(), &pin, previous)
            .with_context(|| format!("attaching to {iface}"))?;
        let record = if adopted_link {
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
        count_interface(&mut datapath, iface, slot);
        attached.push(AttachedInterface {
            name: iface.clone(),
            xdp_mode: record.xdp_mode.clone(),
            slot: slot as u32,
        });
        links.insert(iface.clone(), record);
    }
    // Started: from here on a failure leaves the datapath attached and enforcing.
    cleanup.armed = false;
    if let Some(record) = first_start {
        History::append(&paths.state, &record)?;
    }
    paths.state.write_json(files::LINKS, &links)?;
    let mut config = datapath.maps().config()?;
    config.owner_pid = std::process::id();
    datapath.maps_mut().set_config(config)?;
    info.interfaces = attached;
    pin_lock.update(&info)?;
    state_lock.update(&info)?;
    paths.state.write_json(files::DAEMON, &info)?;

    // What the daemon knows, for the parts that report it: the maps opened once, the
    // inventory in force (published again whenever it changes).
    let (publisher, live) = Publisher::new(
        datapath.maps().share()?,
        Inventory::load(&paths.state)?,
        info.clone(),
        stats.clone(),
    );
    // Observability: the activity sampler and the /metrics and /map server; both stop
    // when this guard drops at the end of the function.
    let _observability = crate::observe::metrics::start(paths, &live, options.metrics_listener);

    let events = EventWriter::new(&paths.state, live.inventory.clone())?;
    let ring = datapath.maps_mut().take_events()?;
    let events_task = tokio::spawn(crate::observe::events::pump(
        ring,
        events,
        stats.clone(),
        events_rx,
    ));

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

    let mut tick = tokio::time::interval(POLICY_POLL);
    let mut watch = PolicyWatch::new(options.policies.as_deref());
    let mut last_save = Instant::now();
    let mut saved_learned = u64::MAX;
    let mut missing: BTreeMap<String, bool> = BTreeMap::new();
    loop {
        let reload = tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => Some(ApplyOptions::default()),
            _ = accept.recv() => Some(ApplyOptions { accept_shrink: true }),
            _ = tick.tick() => {
                // A settled change of the directory, or a MUD name whose answer changed
                // after its TTL: apply the policy again.
                (watch.poll() || mud_names.refresh_expired()).then(ApplyOptions::default)
            }
        };
        if let (Some(apply), Some(dir)) = (reload, &options.policies) {
            watch.reloaded();
            match apply_policy_with(&mut datapath, &paths.state, dir, &mut mud_names, apply) {
                Ok(applied) => {
                    stats.reloads_ok.fetch_add(1, Ordering::Relaxed);
                    stats
                        .last_good_reload_unix
                        .store(unix_now(), Ordering::Relaxed);
                    publisher.inventory(applied.inventory.clone());
                    if stats.policy_held_back.swap(0, Ordering::Relaxed) != 0 {
                        log::info!(
                            "the held-back policy is superseded: the policy in force is applied"
                        );
                    }
                    if apply.accept_shrink && !applied.shrink.to_string().ends_with("nothing") {
                        let _ = events_tx.send(ControllerEvent::warning(
                            "policy-shrink-accepted",
                            format!(
                                "policy in {} applied on the operator's --accept-shrink: it {}",
                                dir.display(),
                                applied.shrink
                            ),
                        ));
                    }
                    for message in applied.modes_kept {
                        let _ = events_tx.send(ControllerEvent::warning("mode-kept", message));
                    }
                }
                Err(e) => note_failed_load(&stats, &events_tx, &e),
            }
        }
        // Interfaces that went away come back with a new index: attach again.
        for (slot, iface) in options.interfaces.iter().enumerate() {
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
                            count_interface(&mut datapath, iface, slot);
                            links.insert(
                                iface.clone(),
                                LinkRecord {
                                    ifindex: index,
                                    xdp_mode: mode_name(mode).into(),
                                },
                            );
                            if let Err(e) = paths.state.write_json(files::LINKS, &links) {
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
                match baseline::save(datapath.maps(), &paths.state, saved_baseline.as_ref()) {
                    Ok(file) => {
                        saved_learned = learned;
                        saved_baseline = Some(file);
                        stats.baseline_saves.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => log::error!("saving the baseline: {e:#}"),
                }
            }
            let expired = WriteLock::take(paths.state.path())
                .map_err(anyhow::Error::from)
                .and_then(|_write| {
                    crate::control::breakglass::expire(datapath.maps_mut(), &paths.state)
                });
            if let Err(e) = expired {
                log::error!("break-glass expiry: {e:#}");
            }
        }
    }
    events_task.abort();
    if let Err(e) = baseline::save(datapath.maps(), &paths.state, saved_baseline.as_ref()) {
        log::error!("saving the baseline: {e:#}");
    }
    log::info!(
        "stopping; the XDP program stays attached and enforcing (`monitor detach` removes it)"
    );
    if let Ok(mut config) = datapath.maps().config()
        && config.owner_pid == std::process::id()
    {
        config.owner_pid = 0;
        let _ = datapath.maps_mut().set_config(config);
    }
    // Only the owner removes it, and only while it still holds the locks.
    let ours = paths
        .state
        .read_json::<DaemonInfo>(files::DAEMON)
        .ok()
        .flatten()
        .is_some_and(|d| d.pid == std::process::id());
    if ours {
        let _ = std::fs::remove_file(paths.state.path().join(files::DAEMON));
    }
    drop(datapath);
    drop(state_lock);
    drop(pin_lock);
    Ok(())
}

/// Counts the verdicts of `iface` apart, in the IFACE_VERDICTS block of its position on
/// the command line (the first [`MAX_IFACES`](monitor_common::maps::MAX_IFACES) only).
fn count_interface(datapath: &mut Datapath, iface: &str, slot: usize) {
    let Ok(slot) = u32::try_from(slot) else {
        return;
    };
    if slot >= monitor_common::maps::MAX_IFACES {
        log::warn!(
            "{iface}: only the first {} interfaces have their verdicts counted apart",
            monitor_common::maps::MAX_IFACES
        );
        return;
    }
    if let Some(ifindex) = datapath::if_index(iface)
        && let Err(e) = datapath.maps_mut().set_interface_slot(ifindex, Some(slot))
    {
        log::error!("counting {iface}'s verdicts: {e:#}");
    }
}

/// A policy load that did not apply: logged, counted, and (held back) an event.
fn note_failed_load(
    stats: &ControllerStats,
    events: &tokio::sync::mpsc::UnboundedSender<ControllerEvent>,
    e: &anyhow::Error,
) {
    log::error!("{e:#}; the running policy stays");
    if e.downcast_ref::<HeldBack>().is_some() {
        stats.reloads_held_back.fetch_add(1, Ordering::Relaxed);
        stats.policy_held_back.store(1, Ordering::Relaxed);
        let _ = events.send(ControllerEvent::error("policy-held-back", format!("{e:#}")));
    } else {
        stats.reloads_failed.fetch_add(1, Ordering::Relaxed);
        let _ = events.send(ControllerEvent::error("policy-failed", format!("{e:#}")));
    }
}
