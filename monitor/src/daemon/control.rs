//! The daemon's control thread: it owns the datapath and does every piece of blocking work
//! (policy loads, MUD lookups, disk writes, interface checks), so that the async side
//! (signals, the HTTP server, the event pump) never waits on it.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::Ordering,
        mpsc::{Receiver, RecvTimeoutError},
    },
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context, Result, bail};
use aya::{
    maps::{MapData, RingBuf},
    programs::xdp::XdpMode,
};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use super::{
    forward::Forwarder,
    keeper::InventoryKeeper,
    preflight,
    reload::{self, ApplyOptions, HeldBack},
    start::{self, LinkRecord, StartCleanup},
};
use crate::{
    control::{breakglass, clock, identity},
    datapath::{self, Datapath, Maps},
    observe::{
        discovery::DiscoveryWatch,
        events::ControllerEvent,
        live::{Live, Publisher},
        stats::ControllerStats,
    },
    policy::{mud::Names, watch::PolicyWatch},
    state::{
        StateDir,
        baseline::{self, KeptTimes},
        daemon::{DaemonInfo, Paths},
        files,
        lock::{InstanceLock, WriteLock},
        modes::History,
        week::Coverage,
    },
    support::clock::{monotonic_now_ns, unix_now},
};

/// How often the learned baseline is saved: a SIGKILL loses at most this much learning
/// from the file (the pinned map itself loses nothing).
pub const BASELINE_SAVE_INTERVAL: Duration = Duration::from_secs(2);
/// How often the control thread looks at the policy directory and the interfaces when
/// nothing asks it anything.
const POLL: Duration = Duration::from_millis(250);
/// How often the site's hour of the week is written into CONFIG (and the learning
/// devices' coverage recorded): an hour starts at most this late in the datapath.
const CLOCK_INTERVAL: Duration = Duration::from_secs(60);

/// The daemon's side of the site's clock (`crate::control::clock`).
struct SiteClockKeeper {
    /// Each device's learning coverage, as last saved.
    coverage: Coverage,
    /// When the site's hour of the week is written next.
    next: Instant,
    /// The modification time of the clock `monitor clock set` fixed, when last read: a
    /// change is taken in at once.
    stamp: Option<SystemTime>,
}

impl SiteClockKeeper {
    /// A coverage file that does not read is reported, kept aside (`.unreadable`) and
    /// started over: it only informs operators, and must not keep the daemon (and its
    /// enforcement) from starting.
    fn load(state: &StateDir) -> SiteClockKeeper {
        let coverage = Coverage::load(state).unwrap_or_else(|e| {
            let path = state.path().join(files::LEARNING_COVERAGE);
            let aside = path.with_extension("json.unreadable");
            let kept = std::fs::rename(&path, &aside).is_ok();
            log::error!(
                reason = "learning-coverage";
                "{}; the learning coverage starts over{}",
                crate::support::error_chain(&e),
                if kept {
                    format!(" (the file is kept as {})", aside.display())
                } else {
                    String::new()
                }
            );
            Coverage::default()
        });
        SiteClockKeeper {
            coverage,
            next: Instant::now(),
            stamp: None,
        }
    }

    /// The modification time of the clock `monitor clock set` fixed (none: the real clock).
    fn stamp(state: &StateDir) -> Option<SystemTime> {
        std::fs::metadata(state.path().join(files::SITE_CLOCK))
            .and_then(|m| m.modified())
            .ok()
    }

    /// Whether the hour is to be written again: a minute passed, or the clock was set.
    fn due(&self, state: &StateDir) -> bool {
        Instant::now() >= self.next || self.stamp != SiteClockKeeper::stamp(state)
    }
}

/// Restores the baseline saved in the state directory into the datapath; returns the file
/// (whose learned times the daemon keeps).
fn restore_baseline(datapath: &mut Datapath, state: &StateDir) -> Result<KeptTimes> {
    let (restored, saved) =
        baseline::restore(datapath.maps_mut(), state).context("restoring the saved baseline")?;
    if restored > 0 {
        log::info!("restored {restored} baseline entries from the state directory");
    }
    Ok(saved)
}

/// What the async side asks of the control thread.
#[derive(Debug)]
pub enum Command {
    /// Read the policy directory again (SIGHUP, `monitor reload`; SIGUSR1 accepts a
    /// shrink).
    Reload(ApplyOptions),
    /// Answer at once: the service manager's watchdog is fed only while the control
    /// thread goes round its loop.
    Ping(tokio::sync::oneshot::Sender<()>),
    /// Save and stop (SIGTERM, SIGINT); the XDP program stays attached.
    Stop,
}

/// What the control thread hands the async side once the datapath is attached.
pub struct Started {
    pub live: Live,
    pub ring: RingBuf<MapData>,
    pub events: UnboundedReceiver<ControllerEvent>,
    /// One line for the service manager: the mode and the interfaces attached.
    pub summary: String,
}

/// What `monitor run` was asked to do.
#[derive(Clone, Debug)]
pub struct ControlOptions {
    /// Interface names, in the order given.
    pub interfaces: Vec<String>,
    /// Those of them that are ward legs (source MACs judged).
    pub ward_legs: BTreeSet<String>,
    pub xdp_mode: XdpMode,
    pub policies: Option<PathBuf>,
    pub mode: Option<monitor_common::Mode>,
    pub accept_shrink: bool,
}

/// The daemon's clearing of REQUEST_FILTER's stale generation.
#[derive(Default)]
struct RequestSweep {
    /// The period in which it was cleared last.
    cleared: Option<u64>,
    /// The last try failed (reported once a spell).
    failing: bool,
}

pub struct Control {
    paths: Paths,
    options: ControlOptions,
    datapath: Datapath,
    keeper: InventoryKeeper,
    publisher: Publisher,
    stats: Arc<ControllerStats>,
    events: UnboundedSender<ControllerEvent>,
    /// MUD names, each re-resolved when its TTL runs out.
    names: Names,
    watch: PolicyWatch,
    links: BTreeMap<String, LinkRecord>,
    /// Interfaces gone, and already reported so.
    missing: BTreeSet<String>,
    /// Discovered devices and addresses announced so far.
    discovery: DiscoveryWatch,
    /// The baseline file as last saved: its learned times outlive the map's.
    kept_times: KeptTimes,
    saved_learned: u64,
    /// Devices already reported as seen with too many MACs to bind while they learned.
    unbound_reported: BTreeSet<String>,
    /// The policy installed last (MUD names resolved), from which the rules are compiled
    /// again when a device given by `mac:` alone moves; none while no policy was loaded
    /// (a restart keeping the pinned one).
    in_force: Option<crate::policy::Policy>,
    /// The last reason a MAC-only device's move was held (reported once while it lasts).
    move_held: Option<String>,
    /// Devices in learn mode at the last look (`None` before the first): those that leave
    /// it are bound to the MACs they learned with.
    learning: Option<BTreeSet<String>>,
    last_save: Instant,
    requests: RequestSweep,
    clock: SiteClockKeeper,
    /// Held until the daemon stops: the datapath's and the state directory's locks.
    locks: (InstanceLock, InstanceLock),
}

impl Control {
    /// Starts the daemon: takes the locks before anything is written, checks the policy
    /// directory, loads (or adopts) the datapath, applies the policy, sets the mode of a
    /// first start, attaches. A failure before the attachment removes what this start
    /// pinned; an adopted datapath is left as it was, enforcing.
    pub fn start(
        paths: Paths,
        options: ControlOptions,
        stats: Arc<ControllerStats>,
    ) -> Result<(Control, Started)> {
        if options.interfaces.is_empty() {
            bail!("give at least one --iface to attach to");
        }
        preflight::check_kernel()?;
        let mut info = DaemonInfo {
            pid: std::process::id(),
            interfaces: Vec::new(),
            policies: options.policies.clone(),
            pin_dir: std::path::absolute(&paths.pin_dir).unwrap_or_else(|_| paths.pin_dir.clone()),
            state_dir: std::path::absolute(paths.state.path())
                .unwrap_or_else(|_| paths.state.path().to_path_buf()),
            started: crate::support::clock::rfc3339(SystemTime::now()),
        };
        // Before anything is written: a second daemon must leave the first one's datapath,
        // mode and state exactly as they are.
        let locks = paths.take_locks(&info)?;
        let adopted = paths
            .pin_dir
            .join(monitor_common::maps::names::CONFIG)
            .exists();
        if let Some(dir) = &options.policies {
            start::check_policy_dir(dir, adopted)?;
        }
        datapath::ensure_bpffs(Path::new("/sys/fs/bpf"))
            .context("/sys/fs/bpf is not a bpf filesystem and mounting one there failed")?;
        preflight::check_pin_dir(&paths.pin_dir)?;
        let mut cleanup = StartCleanup::new(&paths.pin_dir);
        cleanup.armed = !adopted;
        std::fs::create_dir_all(&paths.pin_dir)
            .with_context(|| format!("creating pin directory {}", paths.pin_dir.display()))?;
        let mut datapath = Datapath::load(&Maps::Pinned(paths.pin_dir.clone()))
            .context("loading the XDP program")?;
        datapath.pin_programs(&paths.pin_dir)?;
        let kept_times = restore_baseline(&mut datapath, &paths.state)?;
        let keeper = InventoryKeeper::load(&paths.state)?;
        let (events, events_rx) = unbounded_channel();
        let (publisher, live) = Publisher::new(
            datapath.maps().share()?,
            keeper.inventory().clone(),
            info.clone(),
            stats.clone(),
        );
        let mut control = Control {
            watch: PolicyWatch::new(options.policies.as_deref()),
            clock: SiteClockKeeper::load(&paths.state),
            paths,
            options,
            datapath,
            keeper,
            publisher,
            stats,
            events,
            names: Names::default(),
            links: BTreeMap::new(),
            missing: BTreeSet::new(),
            discovery: DiscoveryWatch::default(),
            kept_times,
            saved_learned: u64::MAX,
            unbound_reported: BTreeSet::new(),
            learning: None,
            in_force: None,
            move_held: None,
            last_save: Instant::now(),
            requests: RequestSweep::default(),
            locks,
        };
        let policy_mode = control.first_policy()?;
        // The mode of a first start and its record, and the owner in CONFIG, are ordered
        // with a `monitor mode` from another process (read-modify-writes of CONFIG and the
        // mode history): none undoes the other.
        let write = WriteLock::take(control.paths.state.path())?;
        let first_start = start::start_mode(
            &mut control.datapath,
            &control.paths.state,
            adopted,
            control.options.mode,
            policy_mode,
        )?;
        let links = control.paths.state.read_json(files::LINKS)?;
        let (attached, links) = start::attach_all(
            &mut control.datapath,
            &control.paths.pin_dir,
            &control.options.interfaces,
            &control.options.ward_legs,
            control.options.xdp_mode,
            links.unwrap_or_default(),
        )?;
        // Started: from here on a failure leaves the datapath attached and enforcing.
        cleanup.armed = false;
        control.links = links;
        if let Some(record) = first_start {
            History::append(&control.paths.state, &record)?;
        }
        control
            .paths
            .state
            .write_json(files::LINKS, &control.links)?;
        let mut config = control.datapath.maps().config()?;
        config.owner_pid = std::process::id();
        control.datapath.maps_mut().set_config(config)?;
        drop(write);
        control.tick_clock();
        info.interfaces = attached;
        let summary = control.announce(info)?;
        let ring = control.datapath.maps_mut().take_events()?;
        Ok((
            control,
            Started {
                live,
                ring,
                events: events_rx,
                summary,
            },
        ))
    }

    /// Says who runs, now that everything is attached: in the lock files, `daemon.json`,
    /// the live view and the log. Returns the mode and the interfaces with their XDP
    /// modes, in one line for the service manager.
    fn announce(&mut self, info: DaemonInfo) -> Result<String> {
        let interfaces = info
            .interfaces
            .iter()
            .map(|i| format!("{} ({})", i.name, i.xdp_mode))
            .collect::<Vec<_>>()
            .join(", ");
        self.locks.0.update(&info)?;
        self.locks.1.update(&info)?;
        self.paths.state.write_json(files::DAEMON, &info)?;
        self.publisher.daemon(info);
        let mode = monitor_common::Mode::try_from(self.datapath.maps().config()?.mode)
            .map_or("?", monitor_common::Mode::name);
        log::info!(
            "monitoring in {mode} mode; maps pinned under {}",
            self.paths.pin_dir.display()
        );
        Ok(format!("{mode} mode on {interfaces}"))
    }

    /// The policy at start; returns its starting mode. A restart with a broken or
    /// suspicious policy keeps enforcing the pinned one; a first start has nothing to
    /// keep and fails.
    fn first_policy(&mut self) -> Result<Option<monitor_common::Mode>> {
        let Some(dir) = self.options.policies.clone() else {
            return Ok(None);
        };
        let adopted_policy = self.datapath.maps().config()?.generation > 0;
        let apply = ApplyOptions {
            accept_shrink: self.options.accept_shrink,
        };
        match self.apply(&dir, apply) {
            Ok(mode) => Ok(mode),
            Err(e) if adopted_policy => {
                self.failed_load(&e);
                Ok(None)
            }
            Err(e) => Err(e.context(
                "no pinned policy was in force to keep: nothing was started (what this start pinned is removed)",
            )),
        }
    }

    /// Reads and applies the policy directory over the inventory in force; returns the
    /// policy's starting mode.
    fn apply(&mut self, dir: &Path, options: ApplyOptions) -> Result<Option<monitor_common::Mode>> {
        let prepared = reload::prepare(dir, &mut self.names)?;
        let _write = WriteLock::take(self.paths.state.path())?;
        self.keeper
            .take_in_changes(&self.paths.state, &self.publisher)?;
        let applied = reload::install(
            &mut self.datapath,
            &self.paths.state,
            prepared,
            options,
            self.keeper.inventory(),
        )?;
        self.stats.reloads_ok.fetch_add(1, Ordering::Relaxed);
        self.stats
            .last_good_reload_unix
            .store(unix_now(), Ordering::Relaxed);
        if self.stats.policy_held_back.swap(0, Ordering::Relaxed) != 0 {
            log::info!("the held-back policy is superseded: the policy in force is applied");
        }
        if options.accept_shrink && applied.shrink.suspicious().is_some() {
            self.event(ControllerEvent::warning(
                "policy-shrink-accepted",
                format!(
                    "policy in {} applied on the operator's --accept-shrink: it {}",
                    dir.display(),
                    applied.shrink
                ),
            ));
        }
        for message in &applied.modes_kept {
            self.event(ControllerEvent::warning("mode-kept", message.clone()));
        }
        self.event(ControllerEvent::notice(
            "policy-applied",
            format!(
                "policy in {} applied: {} devices, {} rules",
                dir.display(),
                applied.inventory.devices.len(),
                applied.rules
            ),
        ));
        self.keeper
            .wrote(&self.paths.state, applied.inventory, &self.publisher);
        self.in_force = Some(applied.policy);
        Ok(applied.starting_mode)
    }

    fn event(&self, event: ControllerEvent) {
        let _ = self.events.send(event);
    }

    /// A policy load that did not apply: logged, counted, and reported as an event.
    fn failed_load(&self, e: &anyhow::Error) {
        let held_back = e.downcast_ref::<HeldBack>().is_some();
        let reason = if held_back {
            "policy-held-back"
        } else {
            "policy-failed"
        };
        log::error!(reason = reason; "{e:#}; the running policy stays");
        if held_back {
            self.stats.reloads_held_back.fetch_add(1, Ordering::Relaxed);
            self.stats.policy_held_back.store(1, Ordering::Relaxed);
            self.event(ControllerEvent::error("policy-held-back", format!("{e:#}")));
        } else {
            self.stats.reloads_failed.fetch_add(1, Ordering::Relaxed);
            self.event(ControllerEvent::error("policy-failed", format!("{e:#}")));
        }
    }

    /// Serves `commands` until told to stop (or the async side is gone), then saves.
    pub fn run(mut self, commands: Receiver<Command>) {
        let mut forwarder = Forwarder::load(&self.paths.state);
        loop {
            let reload = match commands.recv_timeout(POLL) {
                Ok(Command::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                Ok(Command::Reload(options)) => Some(options),
                Ok(Command::Ping(answer)) => {
                    let _ = answer.send(());
                    None
                }
                // A settled change of the directory, or a MUD name whose answer changed
                // after its TTL: apply the policy again.
                Err(RecvTimeoutError::Timeout) => {
                    (self.watch.poll() || self.names.refresh_expired()).then(ApplyOptions::default)
                }
            };
            if let (Some(options), Some(dir)) = (reload, self.options.policies.clone()) {
                self.watch.reloaded();
                if let Err(e) = self.apply(&dir, options) {
                    self.failed_load(&e);
                }
            }
            self.reattach_interfaces();
            // A `monitor mode --device` or `monitor allow` reaches the metrics and the map
            // within a tick (a stat of the file; it is read only when another process
            // replaced it, and every write is an atomic rename).
            if let Err(e) = self
                .keeper
                .take_in_changes(&self.paths.state, &self.publisher)
            {
                log::error!("reading the inventory the CLI changed: {e:#}");
            }
            // Break-glass and mode records of `monitor allow` and `monitor mode` (and this
            // daemon's own) become events, for events.jsonl and the SIEM.
            for event in forwarder.take(&self.paths.state, self.keeper.inventory()) {
                self.event(event);
            }
            if self.clock.due(&self.paths.state) {
                self.tick_clock();
            }
            if self.discovery.due() {
                self.follow_leases();
                self.bind_learned_macs();
                for event in self.discovery.poll(self.datapath.maps(), &self.paths.state) {
                    self.event(event);
                }
            }
            self.clear_stale_requests();
            if self.last_save.elapsed() >= BASELINE_SAVE_INTERVAL {
                self.last_save = Instant::now();
                self.save_baseline_if_grown();
                self.keep_state();
            }
        }
        self.stop();
    }

    /// Clears the generation of remembered requests the next period will mark, once a
    /// period. On failure the filter keeps its marks: replies are then looked up in
    /// REQUESTS as before it (slower, never wrong), and it is tried again next time.
    fn clear_stale_requests(&mut self) {
        match self
            .datapath
            .maps()
            .clear_stale_requests(monotonic_now_ns(), self.requests.cleared)
        {
            Ok(Some(period)) => {
                self.requests.cleared = Some(period);
                self.requests.failing = false;
            }
            Ok(None) => {}
            // Once per failing spell, not every poll.
            Err(e) if !self.requests.failing => {
                self.requests.failing = true;
                log::error!(
                    "clearing the stale generation of remembered requests: {e:#}; replies \
                     are looked up in REQUESTS more often until it succeeds"
                );
            }
            Err(_) => {}
        }
    }

    /// Writes the site's hour of the week into CONFIG and records the learning devices'
    /// coverage. A new hour saves the baseline soon after, with the schedules learned in
    /// the hour that ended. On failure CONFIG keeps the last hour written.
    fn tick_clock(&mut self) {
        self.clock.next = Instant::now() + CLOCK_INTERVAL;
        self.clock.stamp = SiteClockKeeper::stamp(&self.paths.state);
        match clock::tick(
            self.datapath.maps_mut(),
            &self.paths.state,
            self.keeper.inventory(),
            &mut self.clock.coverage,
        ) {
            Ok(tick) if tick.changed => {
                log::info!(
                    "site hour of the week is now {}",
                    crate::support::week::slot_name(tick.hour_of_week)
                );
                self.saved_learned = u64::MAX;
            }
            Ok(_) => {}
            Err(e) => log::error!(
                reason = "site-clock";
                "{e:#}; the datapath keeps the last hour of the week it was told"
            ),
        }
    }

    /// Devices given by `mac:` alone follow their addresses (`control::identity`): the
    /// inventory in force and written, an event per move.
    fn follow_leases(&mut self) {
        if !self.keeper.inventory().devices.iter().any(|d| d.mac_only) {
            return;
        }
        let _write = match WriteLock::take(self.paths.state.path()) {
            Ok(lock) => lock,
            Err(e) => {
                log::error!("following devices' addresses: {e:#}");
                return;
            }
        };
        // What the CLI wrote meanwhile is installed with the move, not undone by it.
        if let Err(e) = self
            .keeper
            .take_in_changes(&self.paths.state, &self.publisher)
        {
            log::error!("following devices' addresses: {e:#}");
            return;
        }
        let mut inventory = self.keeper.inventory().clone();
        let followed = identity::follow(
            self.datapath.maps_mut(),
            &mut inventory,
            self.in_force.as_ref(),
        );
        let moves = match followed {
            Ok(identity::Followed::Moved(moves)) => moves,
            Ok(identity::Followed::Held { moves, error }) => {
                self.move_held(&moves, &error);
                return;
            }
            Err(e) => {
                log::error!("following devices' addresses: {e:#}");
                return;
            }
        };
        if moves.is_empty() {
            return;
        }
        self.move_held = None;
        if self.in_force.is_none() {
            log::warn!(
                "no policy was loaded by this daemon: the rules naming a moved device stay at \
                 its old addresses until the policy directory is applied"
            );
        }
        if let Err(e) = inventory.save(&self.paths.state) {
            log::error!("writing the inventory after an address move: {e:#}");
        }
        self.keeper
            .wrote(&self.paths.state, inventory, &self.publisher);
        for m in moves {
            let list = |a: &[std::net::IpAddr]| {
                let v: Vec<String> = a.iter().map(ToString::to_string).collect();
                if v.is_empty() {
                    "no address".into()
                } else {
                    v.join(", ")
                }
            };
            log::info!(device = m.device.as_str(); "{} now at {}", m.device, list(&m.to));
            self.event(
                ControllerEvent::notice(
                    "device-moved",
                    format!(
                        "{} moved from {} to {} (its MAC; name, mode, baseline and counters kept)",
                        m.device,
                        list(&m.from),
                        list(&m.to)
                    ),
                )
                .about_device(&m.device, self.keeper.inventory()),
            );
        }
    }

    /// A move the policy in force does not compile with: the devices stay at their old
    /// addresses with the old rules (fail closed), logged as an error and reported by a
    /// `device-move-failed` event, once while the reason lasts (it is tried every tick).
    fn move_held(&mut self, moves: &[identity::Move], error: &crate::policy::PolicyError) {
        let devices: Vec<String> = moves
            .iter()
            .map(|m| {
                let to: Vec<String> = m.to.iter().map(ToString::to_string).collect();
                format!("{} to {}", m.device, to.join(", "))
            })
            .collect();
        let message = format!(
            "the policy in force does not compile with {}: {error}; not moved, the rules in \
             force stay",
            devices.join("; ")
        );
        if self.move_held.as_ref() == Some(&message) {
            return;
        }
        log::error!(reason = "device-move-failed"; "{message}");
        self.move_held = Some(message.clone());
        let mut event = ControllerEvent::error("device-move-failed", message);
        if let Some(m) = moves.first() {
            event = event.about_device(&m.device, self.keeper.inventory());
        }
        self.event(event);
    }

    /// Devices without `mac:` that left learn mode are bound to the MACs they learned with
    /// (`control::identity::bind_learned`): the inventory in force and written, an event
    /// per device bound (or seen with too many MACs to bind).
    fn bind_learned_macs(&mut self) {
        let global = match self.datapath.maps().config() {
            Ok(config) => {
                monitor_common::Mode::try_from(config.mode).unwrap_or(monitor_common::Mode::Learn)
            }
            Err(e) => {
                log::error!("binding learned MACs: {e:#}");
                return;
            }
        };
        let unbound = |d: &&crate::state::inventory::EnrolledDevice| {
            d.spec.macs().is_empty() && d.learned_macs.is_empty()
        };
        let learning: BTreeSet<String> = self
            .keeper
            .inventory()
            .devices
            .iter()
            .filter(unbound)
            .filter(|d| d.mode(global) == monitor_common::Mode::Learn)
            .map(|d| d.spec.name.clone())
            .collect();
        // At the first look every unbound device out of learn mode is looked at once (the
        // mode may have changed while no daemon ran); then those that left learn mode.
        // Kept until the binding is done: a failure looks at the same devices again.
        let before = self.learning.replace(learning.clone());
        let left: BTreeSet<String> = match &before {
            Some(before) => before.difference(&learning).cloned().collect(),
            None => self
                .keeper
                .inventory()
                .devices
                .iter()
                .filter(unbound)
                .filter(|d| !learning.contains(&d.spec.name))
                .map(|d| d.spec.name.clone())
                .collect(),
        };
        if left.is_empty() {
            return;
        }
        let _write = match WriteLock::take(self.paths.state.path()) {
            Ok(lock) => lock,
            Err(e) => {
                log::error!("binding learned MACs: {e:#}");
                self.learning = before;
                return;
            }
        };
        let mut inventory = self.keeper.inventory().clone();
        let done = match identity::bind_learned(
            self.datapath.maps_mut(),
            &mut inventory,
            global,
            &left,
            &mut self.unbound_reported,
        ) {
            Ok(done) => done,
            Err(e) => {
                log::error!("binding learned MACs: {e:#}");
                self.learning = before;
                return;
            }
        };
        if done.is_empty() {
            return;
        }
        if done
            .iter()
            .any(|d| matches!(d, identity::LearnedMacs::Bound { .. }))
        {
            if let Err(e) = inventory.save(&self.paths.state) {
                log::error!("writing the inventory after binding learned MACs: {e:#}");
            }
            self.keeper
                .wrote(&self.paths.state, inventory, &self.publisher);
        }
        for d in done {
            match d {
                identity::LearnedMacs::Bound { device, macs } => {
                    let macs = macs.join(", ");
                    log::info!(
                        device = device.as_str();
                        "{device} bound to {macs}, the MAC it was seen with while it learned"
                    );
                    self.event(
                        ControllerEvent::notice(
                            "mac-learned",
                            format!(
                                "{device} bound to {macs}, seen with it while it learned: \
                                 its address from another MAC is now spoofed_source"
                            ),
                        )
                        .about_device(&device, self.keeper.inventory())
                        .with_mac(&macs),
                    );
                }
                identity::LearnedMacs::NotBound { device, macs, more } => {
                    let macs = macs.join(", ");
                    let more = if more > 0 { " and more" } else { "" };
                    log::warn!(
                        device = device.as_str(), reason = "mac-not-learned";
                        "{device} was seen with {macs}{more} while it learned: not bound to \
                         any; give it `mac:` in the inventory"
                    );
                    self.event(
                        ControllerEvent::warning(
                            "mac-not-learned",
                            format!(
                                "{device} was seen with {macs}{more} while it learned, more MACs \
                                 than one device has: not bound (give it `mac:` in the inventory)"
                            ),
                        )
                        .about_device(&device, self.keeper.inventory()),
                    );
                }
            }
        }
    }

    /// Interfaces that went away come back with a new index: attach again.
    fn reattach_interfaces(&mut self) {
        for (slot, iface) in self.options.interfaces.clone().iter().enumerate() {
            let current = datapath::if_index(iface);
            let known = self.links.get(iface).map(|r| r.ifindex);
            match current {
                None => {
                    if self.missing.insert(iface.clone()) {
                        log::warn!(
                            interface = iface.as_str(), reason = "interface-gone";
                            "interface {iface} disappeared; it is re-attached when it returns"
                        );
                    }
                }
                Some(index) if Some(index) != known => {
                    self.missing.remove(iface);
                    let pin = start::link_pin(&self.paths.pin_dir, iface);
                    match self
                        .datapath
                        .attach_pinned(iface, self.options.xdp_mode, &pin, None)
                    {
                        Ok((mode, _)) => {
                            log::info!(
                                interface = iface.as_str();
                                "interface {iface} is back: attached in {} mode",
                                start::mode_name(mode)
                            );
                            let ward = self.options.ward_legs.contains(iface);
                            start::count_interface(&mut self.datapath, iface, slot, ward);
                            self.links.insert(
                                iface.clone(),
                                LinkRecord {
                                    ifindex: index,
                                    xdp_mode: start::mode_name(mode).into(),
                                },
                            );
                            if let Err(e) = self.paths.state.write_json(files::LINKS, &self.links) {
                                log::error!("{e:#}");
                            }
                        }
                        Err(e) => {
                            log::error!(interface = iface.as_str(); "re-attaching to {iface}: {e:#}")
                        }
                    }
                }
                Some(_) => {}
            }
        }
    }

    /// Saves the baseline when a device learned something since the last save.
    fn save_baseline_if_grown(&mut self) {
        let learned: u64 = self
            .keeper
            .inventory()
            .devices
            .iter()
            .filter_map(|d| self.datapath.maps().learned_flows(d.slot).ok())
            .sum();
        if learned == self.saved_learned {
            return;
        }
        match baseline::save(
            self.datapath.maps(),
            &self.paths.state,
            Some(&self.kept_times),
        ) {
            Ok(_) => {
                self.saved_learned = learned;
                self.stats.baseline_saves.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => log::error!("saving the baseline: {e:#}"),
        }
    }

    /// Takes in the CLI's changes of the inventory (`monitor mode --device`, `monitor
    /// allow`) and closes expired break-glass windows.
    fn keep_state(&mut self) {
        let result = WriteLock::take(self.paths.state.path())
            .map_err(anyhow::Error::from)
            .and_then(|_write| {
                self.keeper
                    .take_in_changes(&self.paths.state, &self.publisher)?;
                let mut inventory = self.keeper.inventory().clone();
                if breakglass::expire(self.datapath.maps_mut(), &self.paths.state, &mut inventory)?
                {
                    self.keeper
                        .wrote(&self.paths.state, inventory, &self.publisher);
                }
                Ok(())
            });
        if let Err(e) = result {
            log::error!("keeping the inventory: {e:#}");
        }
    }

    /// Saves the baseline and lets go: the XDP program stays attached and enforcing.
    fn stop(mut self) {
        if let Err(e) = baseline::save(
            self.datapath.maps(),
            &self.paths.state,
            Some(&self.kept_times),
        ) {
            log::error!("saving the baseline: {e:#}");
        }
        log::info!(
            "stopping; the XDP program stays attached and enforcing (`monitor detach` removes it)"
        );
        if let Ok(mut config) = self.datapath.maps().config()
            && config.owner_pid == std::process::id()
        {
            config.owner_pid = 0;
            let _ = self.datapath.maps_mut().set_config(config);
        }
        // Only the owner removes it, and only while it still holds the locks.
        let ours = self
            .paths
            .state
            .read_json::<DaemonInfo>(files::DAEMON)
            .ok()
            .flatten()
            .is_some_and(|d| d.pid == std::process::id());
        if ours {
            let _ = std::fs::remove_file(self.paths.state.path().join(files::DAEMON));
        }
        // The datapath's descriptors close before the locks go: no second daemon adopts
        // maps this one still writes.
        let Control {
            datapath, locks, ..
        } = self;
        drop(datapath);
        drop(locks);
    }
}
