//! Violation events: read from the XDP program's ring buffer, written as JSON lines with
//! the device's name, kind and location, and shown by `monitor events [--follow]`.

use std::{
    fs::{File, OpenOptions},
    io::{BufRead, BufReader, Seek, SeekFrom, Write},
    net::IpAddr,
    path::PathBuf,
    sync::{Arc, atomic::Ordering},
    time::{Duration, SystemTime},
};

use aya::maps::{MapData, RingBuf};
use monitor_common::{
    Reason,
    maps::{Direction, Event},
};
use serde::{Deserialize, Serialize};
use tokio::io::unix::AsyncFd;

use crate::state::files;
use crate::{
    datapath::addr_of,
    observe::stats::ControllerStats,
    state::StateDir,
    state::inventory::Inventory,
    support::{clock::monotonic_now_ns, proto},
};

/// The events file is rotated (to `events.jsonl.1`) past this size.
pub const ROTATE_BYTES: u64 = 64 * 1024 * 1024;

/// One violation as written to the events file.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct EventLine {
    pub time: String,
    pub device: String,
    pub kind: Option<String>,
    pub location: Option<String>,
    pub address: IpAddr,
    pub peer: String,
    pub peer_address: IpAddr,
    pub protocol: String,
    pub port: u16,
    pub direction: String,
    /// `drop` or `would-drop`.
    pub verdict: String,
    pub reason: String,
    /// Violations this line stands for: this one and those the rate limit held back
    /// since the device's previous event.
    pub count: u64,
}

/// Something the controller did or refused that operators must see (a policy held back,
/// a mode kept), written to the same events file as the violations.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct ControllerEvent {
    pub time: String,
    /// What happened: `policy-held-back`, `policy-failed`, `policy-shrink-accepted`,
    /// `mode-kept`.
    pub event: String,
    /// `error` or `warning`.
    pub severity: String,
    pub message: String,
}

impl ControllerEvent {
    fn new(event: &str, severity: &str, message: String) -> ControllerEvent {
        ControllerEvent {
            time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            event: event.into(),
            severity: severity.into(),
            message,
        }
    }

    pub fn error(event: &str, message: String) -> ControllerEvent {
        ControllerEvent::new(event, "error", message)
    }

    pub fn warning(event: &str, message: String) -> ControllerEvent {
        ControllerEvent::new(event, "warning", message)
    }
}

/// Appends events to the state directory's events file.
pub struct EventWriter {
    path: PathBuf,
    file: File,
    /// The daemon's inventory in force, for the devices' names.
    inventory: tokio::sync::watch::Receiver<std::sync::Arc<Inventory>>,
}

impl EventWriter {
    pub fn new(
        state: &StateDir,
        inventory: tokio::sync::watch::Receiver<std::sync::Arc<Inventory>>,
    ) -> std::io::Result<EventWriter> {
        std::fs::create_dir_all(state.path())?;
        let path = state.path().join(files::EVENTS);
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(EventWriter {
            path,
            file,
            inventory,
        })
    }

    /// The line for `event`, with names from the inventory.
    pub fn line(&mut self, event: &Event) -> EventLine {
        let inventory = self.inventory.borrow().clone();
        let by_address = inventory.by_address();
        let address = addr_of(&event.device);
        let peer_address = addr_of(&event.peer);
        let device = by_address.get(&address);
        let age = Duration::from_nanos(monotonic_now_ns().saturating_sub(event.timestamp_ns));
        let time = SystemTime::now()
            .checked_sub(age)
            .unwrap_or(SystemTime::now());
        EventLine {
            time: humantime::format_rfc3339_millis(time).to_string(),
            device: device.map_or_else(|| address.to_string(), |d| d.spec.name.clone()),
            kind: device.map(|d| d.spec.kind.clone()),
            location: device.map(|d| d.spec.location.label()),
            address,
            peer: by_address
                .get(&peer_address)
                .map_or_else(|| peer_address.to_string(), |d| d.spec.name.clone()),
            peer_address,
            protocol: proto::name(event.protocol),
            port: event.service_port,
            direction: Direction::try_from(event.direction)
                .map_or("?", Direction::name)
                .into(),
            verdict: if event.action == monitor_common::Action::Drop as u8 {
                "drop".into()
            } else {
                "would-drop".into()
            },
            reason: Reason::try_from(event.reason)
                .map_or("?", Reason::label)
                .into(),
            count: 1 + u64::from(event.suppressed),
        }
    }

    pub fn write(&mut self, event: &Event) -> std::io::Result<()> {
        let line = self.line(event);
        self.append(&line)
    }

    pub fn write_controller(&mut self, event: &ControllerEvent) -> std::io::Result<()> {
        self.append(event)
    }

    fn append<T: Serialize>(&mut self, line: &T) -> std::io::Result<()> {
        let mut text = serde_json::to_string(line).map_err(std::io::Error::other)?;
        text.push('\n');
        self.file.write_all(text.as_bytes())?;
        if self.file.metadata().map(|m| m.len()).unwrap_or(0) > ROTATE_BYTES {
            let rotated = self.path.with_extension("jsonl.1");
            std::fs::rename(&self.path, rotated)?;
            self.file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
        }
        Ok(())
    }
}

/// Reads the ring buffer as events arrive and writes them out, with the controller's own
/// events from `controller`, until aborted.
pub async fn pump(
    ring: RingBuf<MapData>,
    mut writer: EventWriter,
    stats: Arc<ControllerStats>,
    mut controller: tokio::sync::mpsc::UnboundedReceiver<ControllerEvent>,
) {
    // SAFETY: the ring buffer owns its fd for as long as the AsyncFd holds it, and the fd
    // is not closed elsewhere (`register`'s I/O-safety requirement).
    let mut ring = match unsafe { AsyncFd::register(ring) } {
        Ok(fd) => fd,
        Err(e) => {
            log::error!("watching the event ring buffer: {e}");
            return;
        }
    };
    loop {
        let readable = tokio::select! {
            readable = ring.readable_mut() => readable,
            Some(event) = controller.recv() => {
                if let Err(e) = writer.write_controller(&event) {
                    log::error!("writing an event: {e}");
                }
                continue;
            }
        };
        let mut guard = match readable {
            Ok(guard) => guard,
            Err(e) => {
                log::error!("waiting for events: {e}");
                return;
            }
        };
        let buffer = guard.get_inner_mut();
        while let Some(item) = buffer.next() {
            if item.len() < std::mem::size_of::<Event>() {
                continue;
            }
            // SAFETY: the XDP program writes whole `Event`s; read unaligned from the ring.
            let event: Event = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
            drop(item);
            match writer.write(&event) {
                Ok(()) => {
                    stats.events_written.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => log::error!("writing an event: {e}"),
            }
        }
        guard.clear_ready();
    }
}

/// `monitor events [--follow]`: prints the events file, then (following) new lines.
pub fn show(state: &StateDir, follow: bool, json: bool) -> anyhow::Result<()> {
    let path = state.path().join(files::EVENTS);
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && follow => {
            std::fs::create_dir_all(state.path())?;
            OpenOptions::new().create(true).append(true).open(&path)?;
            File::open(&path)?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!("no events yet ({} does not exist)", path.display());
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    let mut reader = BufReader::new(file);
    let mut line = String::new();
    let mut stdout = std::io::stdout().lock();
    loop {
        line.clear();
        let n = reader.read_line(&mut line)?;
        if n == 0 {
            if !follow {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
            // A rotation makes a new file: start reading it.
            if std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0) < reader.stream_position()? {
                reader = BufReader::new(File::open(&path)?);
                reader.seek(SeekFrom::Start(0))?;
            }
            continue;
        }
        if json {
            stdout.write_all(line.as_bytes())?;
        } else if let Ok(event) = serde_json::from_str::<ControllerEvent>(&line) {
            writeln!(
                stdout,
                "{}  {:<10} {}: {}",
                event.time, event.severity, event.event, event.message
            )?;
        } else if let Ok(event) = serde_json::from_str::<EventLine>(&line) {
            writeln!(
                stdout,
                "{}  {:<10} {:<20} {:>3} {} {}/{} ({}) x{}  [{}]",
                event.time,
                event.verdict,
                event.device,
                event.direction,
                event.peer,
                event.protocol,
                event.port,
                event.reason,
                event.count,
                event.location.unwrap_or_default()
            )?;
        }
        stdout.flush()?;
    }
}
