//! Events: violations read from the XDP program's ring buffer (with the device's name,
//! kind and location), the controller's own (policy loads, modes kept), and the operators'
//! commands it forwards (break-glass, mode changes: [`crate::state::forward`]). Each is
//! written as a JSON line to `events.jsonl`, shown by `monitor events [--follow]`, and
//! offered to the SIEM ([`super::syslog`]) with the same fields.

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

use crate::policy::format_mac;
use crate::state::files;
use crate::{
    datapath::addr_of,
    observe::{
        stats::ControllerStats,
        syslog::{self, Severity, SyslogQueue},
    },
    state::{
        StateDir, audit,
        forward::Record,
        inventory::{EnrolledDevice, Inventory},
        modes::{Change, ModeRecord},
    },
    support::{clock::monotonic_now_ns, proto},
    view::{discovered::vendor_label, oui::OuiDb},
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
    /// A spoofed source (`spoofed_source`): the MAC the frame came from, its vendor, and
    /// the MACs the inventory binds the device's addresses to, with their vendors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_mac: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_vendor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_mac: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_vendor: Option<String>,
}

impl EventLine {
    /// The line for the SIEM: a `violation`, a warning when dropped, a notice when only
    /// counted.
    pub fn syslog(&self) -> syslog::Message {
        syslog::Message {
            time: self.time.clone(),
            severity: if self.verdict == "drop" {
                Severity::Warning
            } else {
                Severity::Notice
            },
            event: "violation".into(),
            params: fields(self, &["time"]),
            text: match &self.source_mac {
                Some(mac) => format!(
                    "{} address of {} ({}) seen from unknown MAC {mac} ({}), not its {} ({}): \
                     {} {}/{} x{} [{}]",
                    self.verdict,
                    self.device,
                    self.address,
                    self.source_vendor.as_deref().unwrap_or("unknown vendor"),
                    self.expected_mac.as_deref().unwrap_or("?"),
                    self.expected_vendor.as_deref().unwrap_or("unknown vendor"),
                    self.peer,
                    self.protocol,
                    self.port,
                    self.count,
                    self.location.as_deref().unwrap_or("no location")
                ),
                None => format!(
                    "{} {} {} {} {}/{} ({}) x{} [{}]",
                    self.verdict,
                    self.device,
                    self.direction,
                    self.peer,
                    self.protocol,
                    self.port,
                    self.reason,
                    self.count,
                    self.location.as_deref().unwrap_or("no location")
                ),
            },
        }
    }
}

/// Something the controller did or refused, or an operator's command, that operators must
/// see (a policy applied, failed or held back, a mode kept, a break-glass, a mode change),
/// written to the same events file as the violations.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct ControllerEvent {
    pub time: String,
    /// What happened: `policy-applied`, `policy-held-back`, `policy-failed`,
    /// `policy-shrink-accepted`, `mode-kept`, `break-glass-start`, `break-glass-end`,
    /// `mode-change`.
    pub event: String,
    /// `error`, `warning`, `notice` or `info`.
    pub severity: String,
    pub message: String,
    /// The device it is about, with its kind and location from the inventory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Who gave the command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub who: Option<String>,
    /// Why, as the operator said (break-glass).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When a break-glass ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// Packets a break-glass let through (at its end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub let_through: Option<u64>,
    /// The mode a command chose (learn, audit, enforce, inherit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// The MAC a discovery event is about (`device-discovered`, `ip-flip-flop`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

impl ControllerEvent {
    fn new(event: &str, severity: &str, message: String) -> ControllerEvent {
        ControllerEvent {
            time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            event: event.into(),
            severity: severity.into(),
            message,
            ..ControllerEvent::default()
        }
    }

    pub fn error(event: &str, message: String) -> ControllerEvent {
        ControllerEvent::new(event, "error", message)
    }

    pub fn warning(event: &str, message: String) -> ControllerEvent {
        ControllerEvent::new(event, "warning", message)
    }

    /// About `device` (its kind and location from `inventory`).
    pub fn about_device(self, device: &str, inventory: &Inventory) -> ControllerEvent {
        self.about(device, inventory)
    }

    /// About the MAC `mac`.
    pub fn with_mac(mut self, mac: &str) -> ControllerEvent {
        self.mac = Some(mac.to_string());
        self
    }

    pub fn notice(event: &str, message: String) -> ControllerEvent {
        ControllerEvent::new(event, "notice", message)
    }

    /// About `device`: its name, and its kind and location when the inventory has it.
    fn about(mut self, device: &str, inventory: &Inventory) -> ControllerEvent {
        let enrolled = inventory.find(device).ok();
        self.device = Some(device.to_owned());
        self.kind = enrolled.map(|d| d.spec.kind.clone());
        self.location = enrolled.map(|d| d.spec.location.label());
        self
    }

    /// The events of a record an operator's command (or the daemon) appended: one per
    /// device of a break-glass, one per mode change.
    pub fn of_record(record: &Record, inventory: &Inventory) -> Vec<ControllerEvent> {
        match record {
            Record::BreakGlass(r) => r
                .devices
                .iter()
                .map(|device| {
                    let let_through = r.let_through.as_ref().and_then(|l| l.get(device).copied());
                    let (severity, message) = if r.event == audit::MAC_ALLOW {
                        (
                            "warning",
                            format!(
                                "MAC {} accepted for {device} by {} until {}: {}",
                                r.mac.as_deref().unwrap_or("?"),
                                r.who,
                                r.until.as_deref().unwrap_or("?"),
                                r.reason
                            ),
                        )
                    } else if r.event == audit::END {
                        let packets = let_through.map_or("?".into(), |n| n.to_string());
                        (
                            "notice",
                            format!(
                                "break-glass on {device} ended: {packets} packets let through                                  (given by {}: {})",
                                r.who, r.reason
                            ),
                        )
                    } else {
                        (
                            "warning",
                            format!(
                                "break-glass on {device} by {} until {}: {}",
                                r.who,
                                r.until.as_deref().unwrap_or("?"),
                                r.reason
                            ),
                        )
                    };
                    ControllerEvent {
                        time: r.time.clone(),
                        who: Some(r.who.clone()),
                        reason: Some(r.reason.clone()),
                        until: r.until.clone(),
                        let_through,
                        ..ControllerEvent::new(&r.event, severity, message)
                    }
                    .about(device, inventory)
                })
                .collect(),
            Record::Mode(r) => vec![ControllerEvent::of_mode(r, inventory)],
        }
    }

    fn of_mode(record: &ModeRecord, inventory: &Inventory) -> ControllerEvent {
        let window = record
            .window
            .map(|w| format!(", opening learning window {w}"))
            .unwrap_or_default();
        let event = ControllerEvent {
            time: record.time.clone(),
            who: Some(record.who.clone()),
            mode: record.mode.clone(),
            ..ControllerEvent::notice(
                "mode-change",
                format!("{} by {}{window}", record.command(), record.who),
            )
        };
        match (&record.device, record.change) {
            (Some(device), Change::Device) => event.about(device, inventory),
            _ => event,
        }
    }

    /// The event for the SIEM, with the severity it names (notice if none).
    pub fn syslog(&self) -> syslog::Message {
        syslog::Message {
            time: self.time.clone(),
            severity: Severity::named(&self.severity).unwrap_or(Severity::Notice),
            event: self.event.clone(),
            params: fields(self, &["time", "event", "severity", "message"]),
            text: self.message.clone(),
        }
    }
}

/// The fields of an events file line, but `skip`, as text: the structured data of its
/// syslog message, under the same names.
fn fields<T: Serialize>(line: &T, skip: &[&str]) -> Vec<(String, String)> {
    let Ok(serde_json::Value::Object(map)) = serde_json::to_value(line) else {
        return Vec::new();
    };
    map.into_iter()
        .filter(|(name, _)| !skip.contains(&name.as_str()))
        .filter_map(|(name, value)| {
            let text = match value {
                serde_json::Value::Null => return None,
                serde_json::Value::String(text) => text,
                other => other.to_string(),
            };
            Some((name, text))
        })
        .collect()
}

/// Appends events to the state directory's events file.
pub struct EventWriter {
    path: PathBuf,
    file: File,
    /// The daemon's inventory in force, for the devices' names.
    inventory: tokio::sync::watch::Receiver<std::sync::Arc<Inventory>>,
    /// Vendors of MACs named by spoof events (none without the IEEE registry files).
    oui: Option<OuiDb>,
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
            oui: OuiDb::load_default().ok(),
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
        let mut line = EventLine {
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
            source_mac: None,
            source_vendor: None,
            expected_mac: None,
            expected_vendor: None,
        };
        self.add_spoof_macs(&mut line, event, device.copied());
        line
    }

    /// The MACs of a spoof event's line (all `None` for other events).
    fn add_spoof_macs(&self, line: &mut EventLine, event: &Event, device: Option<&EnrolledDevice>) {
        // A reply to an impostor's frame (from the core) carries no MAC of its own.
        if event.reason != Reason::SpoofedSource as u8 || event.source_mac == [0; 6] {
            return;
        }
        let oui = self.oui.as_ref();
        line.source_mac = Some(format_mac(event.source_mac));
        line.source_vendor = Some(vendor_label(oui, event.source_mac));
        if let Some(device) = device {
            let macs = device.bound_macs();
            line.expected_mac = Some(
                macs.iter()
                    .map(|m| format_mac(*m))
                    .collect::<Vec<_>>()
                    .join(", "),
            );
            line.expected_vendor = Some(
                macs.iter()
                    .map(|m| vendor_label(oui, *m))
                    .collect::<Vec<_>>()
                    .join(", "),
            );
        }
    }

    pub fn write_controller(&mut self, event: &ControllerEvent) -> std::io::Result<()> {
        self.append(event)
    }

    /// Appends one line (rotating the file past [`ROTATE_BYTES`]).
    pub fn append<T: Serialize>(&mut self, line: &T) -> std::io::Result<()> {
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

/// Where each event goes: the events file, and the SIEM when there is one.
struct Outlets {
    writer: EventWriter,
    siem: Option<SyslogQueue>,
    stats: Arc<ControllerStats>,
}

impl Outlets {
    fn violation(&mut self, event: &Event) {
        let line = self.writer.line(event);
        match self.writer.append(&line) {
            Ok(()) => {
                self.stats.events_written.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => log::error!("writing an event: {e}"),
        }
        if let Some(siem) = &self.siem {
            siem.offer(line.syslog());
        }
    }

    fn controller(&mut self, event: &ControllerEvent) {
        if let Err(e) = self.writer.write_controller(event) {
            log::error!("writing an event: {e}");
        }
        if let Some(siem) = &self.siem {
            siem.offer(event.syslog());
        }
    }
}

/// Reads the ring buffer as events arrive and writes them out, with the controller's own
/// events from `controller`, until aborted; each also goes to `siem` (never waiting for
/// it: [`SyslogQueue::offer`]).
pub async fn pump(
    ring: RingBuf<MapData>,
    writer: EventWriter,
    siem: Option<SyslogQueue>,
    stats: Arc<ControllerStats>,
    mut controller: tokio::sync::mpsc::UnboundedReceiver<ControllerEvent>,
) {
    let mut outlets = Outlets {
        writer,
        siem,
        stats,
    };
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
                outlets.controller(&event);
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
            outlets.violation(&event);
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

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, path::PathBuf};

    use super::*;
    use crate::{policy::Policy, state::audit::AuditRecord};

    fn inventory() -> Inventory {
        let policy = Policy::from_sources(&[(
            PathBuf::from("ward.yaml"),
            "devices:\n  - name: pump-icu3-01\n    kind: infusion-pump\n    addresses: [10.10.1.11]\n    \
             location: { site: main-campus, ward: icu-3, room: \"12\" }\n"
                .into(),
        )])
        .unwrap_or_else(|e| panic!("{e}"));
        Inventory::from_policy(&policy, &Inventory::default(), &[]).0
    }

    fn param<'a>(message: &'a syslog::Message, name: &str) -> Option<&'a str> {
        message
            .params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn a_violation_goes_to_the_siem_with_the_fields_of_its_line() {
        let line = EventLine {
            time: "2026-05-20T10:00:00.123Z".into(),
            device: "pump-icu3-01".into(),
            kind: Some("infusion-pump".into()),
            location: Some("main-campus/icu-3/12".into()),
            address: "10.10.1.11".parse().unwrap_or_else(|e| panic!("{e}")),
            peer: "10.30.0.1".into(),
            peer_address: "10.30.0.1".parse().unwrap_or_else(|e| panic!("{e}")),
            protocol: "tcp".into(),
            port: 22,
            direction: "out".into(),
            verdict: "drop".into(),
            reason: "not_in_baseline".into(),
            count: 3,
            source_mac: None,
            source_vendor: None,
            expected_mac: None,
            expected_vendor: None,
        };
        let message = line.syslog();
        assert_eq!(message.event, "violation");
        assert_eq!(message.severity, Severity::Warning);
        assert_eq!(message.time, line.time);
        for (name, value) in [
            ("device", "pump-icu3-01"),
            ("kind", "infusion-pump"),
            ("location", "main-campus/icu-3/12"),
            ("verdict", "drop"),
            ("reason", "not_in_baseline"),
            ("peer", "10.30.0.1"),
            ("port", "22"),
            ("count", "3"),
        ] {
            assert_eq!(param(&message, name), Some(value), "{name}: {message:?}");
        }
        assert_eq!(param(&message, "time"), None, "the time is the header's");
        let would = EventLine {
            verdict: "would-drop".into(),
            ..line
        };
        assert_eq!(would.syslog().severity, Severity::Notice);
    }

    #[test]
    fn a_break_glass_record_is_an_event_per_device_with_its_kind_and_location() {
        let inventory = inventory();
        let start = Record::BreakGlass(AuditRecord {
            time: "2026-05-20T10:00:00Z".into(),
            event: audit::START.into(),
            who: "alice".into(),
            reason: "vendor repair".into(),
            devices: vec!["pump-icu3-01".into(), "gone-01".into()],
            until: Some("2026-05-20T10:30:00Z".into()),
            let_through: None,
            mac: None,
        });
        let events = ControllerEvent::of_record(&start, &inventory);
        assert_eq!(events.len(), 2);
        let pump = &events[0];
        assert_eq!(
            (pump.event.as_str(), pump.severity.as_str()),
            ("break-glass-start", "warning")
        );
        assert_eq!(pump.kind.as_deref(), Some("infusion-pump"));
        assert!(
            pump.location
                .as_deref()
                .is_some_and(|l| l.contains("icu-3")),
            "{pump:?}"
        );
        assert_eq!(events[1].device.as_deref(), Some("gone-01"));
        assert_eq!(events[1].kind, None, "no longer in the inventory");
        let message = pump.syslog();
        assert_eq!(message.event, "break-glass-start");
        assert_eq!(message.severity, Severity::Warning);
        assert_eq!(param(&message, "who"), Some("alice"));
        assert_eq!(param(&message, "reason"), Some("vendor repair"));
        assert_eq!(param(&message, "until"), Some("2026-05-20T10:30:00Z"));
        assert!(message.text.contains("pump-icu3-01") && message.text.contains("vendor repair"));
        let end = Record::BreakGlass(AuditRecord {
            event: audit::END.into(),
            until: None,
            let_through: Some(BTreeMap::from([("pump-icu3-01".into(), 17)])),
            devices: vec!["pump-icu3-01".into()],
            ..match start {
                Record::BreakGlass(r) => r,
                Record::Mode(_) => unreachable!(),
            }
        });
        let end = &ControllerEvent::of_record(&end, &inventory)[0];
        assert_eq!(end.let_through, Some(17));
        assert_eq!(param(&end.syslog(), "let_through"), Some("17"));
        // The events file line reads back as it was written.
        let text = serde_json::to_string(end).unwrap_or_else(|e| panic!("{e}"));
        let back: ControllerEvent = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&back, end);
    }

    #[test]
    fn a_mode_change_names_the_command_and_its_device() {
        let inventory = inventory();
        let mut record = ModeRecord::new(Change::Device, Some("pump-icu3-01"), Some("enforce"));
        record.who = "bob".into();
        let events = ControllerEvent::of_record(&Record::Mode(record), &inventory);
        let event = &events[0];
        assert_eq!(event.event, "mode-change");
        assert_eq!(event.device.as_deref(), Some("pump-icu3-01"));
        assert_eq!(event.kind.as_deref(), Some("infusion-pump"));
        assert_eq!(event.mode.as_deref(), Some("enforce"));
        assert!(
            event
                .message
                .contains("monitor mode enforce --device pump-icu3-01 by bob"),
            "{event:?}"
        );
        let global = ModeRecord::new(Change::Global, None, Some("audit"));
        let event = &ControllerEvent::of_record(&Record::Mode(global), &inventory)[0];
        assert_eq!(
            (event.device.as_deref(), event.mode.as_deref()),
            (None, Some("audit"))
        );
    }
}
