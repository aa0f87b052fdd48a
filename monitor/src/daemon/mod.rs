//! `monitor run`: load (or adopt) the datapath, apply the policy, attach to the
//! interfaces, and serve until stopped.
//!
//! What makes it safe to restart: programs, maps and links are pinned. A stopped or killed
//! daemon leaves the XDP program attached and enforcing; the next one adopts the pinned
//! maps (counters and baseline continue) and replaces the program on each pinned link
//! atomically. Only `monitor detach` removes the attachment.
//!
//! Two sides: a control thread ([`control`]) owns the datapath and does all the blocking
//! work; the async side here turns signals into its commands and serves what it hands
//! over (metrics and the device map, the event pump and its syslog sender).
//!
//! Under systemd (`Type=notify`) the async side tells the service manager `READY=1` once
//! the control thread has applied the policy and attached every interface, `STOPPING=1`
//! when told to stop, and, when the unit sets `WatchdogSec=`, `WATCHDOG=1` each time the
//! control thread answers a ping: a control thread stuck or dead starves the watchdog and
//! systemd restarts the daemon (the XDP program stays attached meanwhile).

pub mod control;
pub mod forward;
pub mod keeper;
pub mod preflight;
pub mod reload;
pub mod start;

use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::{Context, Result};
use aya::programs::xdp::XdpMode;
use monitor_common::Mode;

pub use control::BASELINE_SAVE_INTERVAL;
pub use reload::{Applied, ApplyOptions, HeldBack, apply_policy, compiled_rules};

use crate::{
    observe::{events::EventWriter, stats::ControllerStats, syslog::Syslog},
    state::daemon::Paths,
    support::notify::Notifier,
};
use control::{Command, Control, ControlOptions, Started};

pub struct RunOptions {
    /// `NAME[:ward|core]` ([`crate::datapath::InterfaceSpec`]).
    pub interfaces: Vec<String>,
    pub xdp_mode: XdpMode,
    pub policies: Option<PathBuf>,
    /// The mode of a first start; ignored (with a warning) when the mode in force is known.
    pub mode: Option<Mode>,
    /// Where `/metrics` and `/map` are served (`crate::observe::metrics`); bound by the
    /// caller before it enters `--netns`, so that they are on the host's network. `None`:
    /// not served (the activity history is kept all the same).
    pub metrics_listener: Option<std::net::TcpListener>,
    /// Apply the policy at start even if [`crate::policy::guard`] would hold it back.
    pub accept_shrink: bool,
    /// Where events go besides `events.jsonl` (`--syslog`); started by the caller before
    /// it enters `--netns`, like the metrics listener.
    pub syslog: Option<Syslog>,
}

/// How long a stopping daemon lets the syslog sender empty its queue.
const SYSLOG_FLUSH: Duration = Duration::from_secs(2);

pub async fn run(paths: &Paths, options: RunOptions) -> Result<()> {
    // First, so that a stop request during start-up is handled (after start-up) rather
    // than killing the process half-way.
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut accept = signal(SignalKind::user_defined1())?;
    let RunOptions {
        interfaces,
        xdp_mode,
        policies,
        mode,
        metrics_listener,
        accept_shrink,
        syslog,
    } = options;
    let stats = Arc::new(ControllerStats {
        syslog: syslog.as_ref().map(Syslog::counts).unwrap_or_default(),
        ..ControllerStats::default()
    });
    let control_options = ControlOptions {
        ward_legs: crate::datapath::ward_legs(&interfaces)?,
        interfaces: crate::datapath::interface_names(&interfaces),
        xdp_mode,
        policies,
        mode,
        accept_shrink,
    };
    let (commands, inbox) = std::sync::mpsc::channel();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let control_paths = paths.clone();
    let control_stats = stats.clone();
    let thread = std::thread::Builder::new()
        .name("monitor-control".into())
        .spawn(
            move || match Control::start(control_paths, control_options, control_stats) {
                Ok((control, started)) => {
                    let _ = started_tx.send(Ok(started));
                    control.run(inbox);
                }
                Err(e) => {
                    let _ = started_tx.send(Err(e));
                }
            },
        )
        .context("starting the control thread")?;
    let Started {
        live,
        ring,
        events: controller_events,
        summary,
    } = match started_rx.await {
        Ok(Ok(started)) => started,
        Ok(Err(e)) => {
            let _ = thread.join();
            return Err(e);
        }
        Err(_) => {
            let _ = thread.join();
            anyhow::bail!("the control thread ended during start-up");
        }
    };
    // Observability: the activity sampler and the /metrics and /map server; both stop
    // when this guard drops at the end of the function.
    let _observability = crate::observe::metrics::start(paths, &live, metrics_listener);
    let events = EventWriter::new(&paths.state, live.inventory.clone())?;
    let events_task = tokio::spawn(crate::observe::events::pump(
        ring,
        events,
        syslog.as_ref().map(Syslog::queue),
        stats.clone(),
        controller_events,
    ));
    println!(
        "monitor running (pid {}); Ctrl-C or SIGTERM stops it (the XDP program stays attached; `monitor detach` removes it)",
        std::process::id()
    );
    let notifier = service_manager();
    notify(&notifier, &format!("READY=1\nSTATUS=monitoring: {summary}"));
    let watchdog = notifier
        .as_ref()
        .and_then(|n| Some((n.clone(), n.watchdog_interval()?)))
        .map(|(n, every)| tokio::spawn(watchdog(n, every, commands.clone())));
    loop {
        let command = tokio::select! {
            _ = term.recv() => Command::Stop,
            _ = int.recv() => Command::Stop,
            _ = hup.recv() => Command::Reload(ApplyOptions::default()),
            _ = accept.recv() => Command::Reload(ApplyOptions { accept_shrink: true }),
        };
        let stop = matches!(command, Command::Stop);
        if stop {
            notify(
                &notifier,
                "STOPPING=1\nSTATUS=stopping: saving the baseline; the XDP program stays attached",
            );
        }
        if commands.send(command).is_err() || stop {
            break;
        }
    }
    if let Some(watchdog) = watchdog {
        watchdog.abort();
    }
    drop(commands);
    // The control thread saves the baseline and lets go of the datapath and the locks.
    tokio::task::spawn_blocking(move || thread.join())
        .await
        .context("waiting for the control thread")?
        .map_err(|_| anyhow::anyhow!("the control thread panicked"))?;
    events_task.abort();
    let _ = events_task.await;
    if let Some(syslog) = syslog {
        tokio::task::spawn_blocking(move || syslog.close(SYSLOG_FLUSH))
            .await
            .context("waiting for the syslog sender")?;
    }
    Ok(())
}

/// The service manager's notify socket, if one runs us.
fn service_manager() -> Option<Arc<Notifier>> {
    match Notifier::from_env() {
        Ok(notifier) => notifier.map(Arc::new),
        Err(e) => {
            log::warn!("{}", crate::support::error_chain(&e));
            None
        }
    }
}

fn notify(notifier: &Option<Arc<Notifier>>, state: &str) {
    if let Some(notifier) = notifier
        && let Err(e) = notifier.notify(state)
    {
        log::warn!("{}", crate::support::error_chain(&e));
    }
}

/// Feeds the service manager's watchdog every `every` while the control thread answers a
/// ping within that time; a silent control thread is reported once and left unfed, so
/// that systemd restarts the daemon.
async fn watchdog(
    notifier: Arc<Notifier>,
    every: std::time::Duration,
    commands: std::sync::mpsc::Sender<Command>,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut silent = false;
    loop {
        ticks.tick().await;
        let (answer, answered) = tokio::sync::oneshot::channel();
        if commands.send(Command::Ping(answer)).is_err() {
            return;
        }
        match tokio::time::timeout(every, answered).await {
            Ok(Ok(())) => {
                if std::mem::take(&mut silent) {
                    log::info!("the control thread answers again; feeding the watchdog");
                }
                notify(&Some(notifier.clone()), "WATCHDOG=1");
            }
            _ => {
                if !std::mem::replace(&mut silent, true) {
                    log::error!(
                        reason = "control-thread-silent";
                        "the control thread has not answered for {every:?}: the service \
                         manager's watchdog is not fed"
                    );
                }
            }
        }
    }
}
