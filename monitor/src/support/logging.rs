//! Where the log goes and in what form: plain text on standard error for people, one JSON
//! object per line for log shippers, or the journal's native protocol with structured
//! fields when systemd runs the monitor (so that `journalctl -p err` filters by priority
//! and `journalctl INTERFACE=ward0` or `DEVICE=pump-icu3-01` by what a message is about).
//!
//! Structured fields come from the `log` macros' key-values:
//! `log::warn!(interface = iface; "...")` becomes `INTERFACE=ward0` in the journal and
//! `"interface":"ward0"` in JSON. The keys in use: `interface` (a network interface),
//! `device` (a medical device of the inventory), `reason` (why, as a short label) and
//! `event` (a controller event's name).
//!
//! The level filter is `RUST_LOG` (default `info`), as it was with env_logger.

use std::{
    io::Write as _, os::unix::net::UnixDatagram, path::PathBuf, sync::Mutex, time::SystemTime,
};

use log::{Level, Log, Metadata, Record};

/// Where journald listens for native-protocol datagrams.
pub const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";
/// Names another journal socket (tests, containers that forward the journal elsewhere).
pub const JOURNAL_SOCKET_ENV: &str = "MONITOR_JOURNAL_SOCKET";
/// The journal's `SYSLOG_IDENTIFIER`: what `journalctl -t` selects.
pub const IDENTIFIER: &str = "monitor";

/// `--log-format`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// journal under systemd (its `JOURNAL_STREAM` is standard error), text otherwise.
    #[default]
    Auto,
    /// `[time LEVEL module] message key=value`, on standard error.
    Text,
    /// One JSON object per line on standard error.
    Json,
    /// The journal's native protocol, with PRIORITY and the message's fields.
    Journal,
}

impl LogFormat {
    /// What `Auto` means for this process: journal when standard error is the journal
    /// stream systemd set up (`$JOURNAL_STREAM` names its device and inode).
    pub fn resolve(self) -> LogFormat {
        match self {
            LogFormat::Auto if stderr_is_journal() => LogFormat::Journal,
            LogFormat::Auto => LogFormat::Text,
            other => other,
        }
    }
}

fn stderr_is_journal() -> bool {
    let Ok(stream) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    // SAFETY: fstat writes into the zeroed struct we own.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(libc::STDERR_FILENO, &mut stat) } != 0 {
        return false;
    }
    journal_stream_matches(&stream, stat.st_dev, stat.st_ino)
}

/// Whether `$JOURNAL_STREAM` (`DEVICE:INODE`) names the file with `dev` and `ino`.
pub fn journal_stream_matches(stream: &str, dev: u64, ino: u64) -> bool {
    let Some((d, i)) = stream.trim().split_once(':') else {
        return false;
    };
    d.parse() == Ok(dev) && i.parse() == Ok(ino)
}

/// syslog(3) priority of a level, as journald and syslog number them.
pub fn priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// The key-values of a record, in order.
fn fields(record: &Record<'_>) -> Vec<(String, String)> {
    struct Collect(Vec<(String, String)>);
    impl<'kvs> log::kv::VisitSource<'kvs> for Collect {
        fn visit_pair(
            &mut self,
            key: log::kv::Key<'kvs>,
            value: log::kv::Value<'kvs>,
        ) -> Result<(), log::kv::Error> {
            self.0.push((key.to_string(), value.to_string()));
            Ok(())
        }
    }
    let mut collect = Collect(Vec::new());
    let _ = record.key_values().visit(&mut collect);
    collect.0
}

/// A journal field name for a key: upper case, `[A-Z0-9_]`, not starting with `_` or a
/// digit (those are journald's own), at most 64 bytes.
pub fn journal_field_name(key: &str) -> String {
    let mut name: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() || name.starts_with(['_', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9'])
    {
        name.insert(0, 'F');
    }
    name.truncate(64);
    name
}

/// One journal entry in the native protocol: `NAME=value\n`, or for a value with a
/// newline `NAME\n`, its length as a little-endian u64, the value and `\n`.
pub fn journal_entry(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.extend_from_slice(name.as_bytes());
        if value.contains('\n') {
            out.push(b'\n');
            out.extend_from_slice(&(value.len() as u64).to_le_bytes());
            out.extend_from_slice(value.as_bytes());
        } else {
            out.push(b'=');
            out.extend_from_slice(value.as_bytes());
        }
        out.push(b'\n');
    }
    out
}

/// The journal entry of `record`: MESSAGE, PRIORITY, SYSLOG_IDENTIFIER, the code location
/// and module, and the record's key-values as fields.
fn journal_record(record: &Record<'_>) -> Vec<u8> {
    let message = record.args().to_string();
    let priority = priority(record.level()).to_string();
    let line = record.line().map(|l| l.to_string());
    let kv: Vec<(String, String)> = fields(record)
        .into_iter()
        .map(|(k, v)| (journal_field_name(&k), v))
        .collect();
    let mut all: Vec<(&str, &str)> = vec![
        ("MESSAGE", &message),
        ("PRIORITY", &priority),
        ("SYSLOG_IDENTIFIER", IDENTIFIER),
        ("TARGET", record.target()),
    ];
    if let Some(file) = record.file() {
        all.push(("CODE_FILE", file));
    }
    if let Some(line) = &line {
        all.push(("CODE_LINE", line));
    }
    all.extend(kv.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    journal_entry(&all)
}

/// One JSON line for `record`.
fn json_record(record: &Record<'_>, time: SystemTime) -> String {
    let mut object = serde_json::Map::new();
    object.insert("timestamp".into(), super::clock::rfc3339(time).into());
    object.insert(
        "level".into(),
        record.level().as_str().to_ascii_lowercase().into(),
    );
    object.insert("priority".into(), priority(record.level()).into());
    object.insert("target".into(), record.target().into());
    object.insert("message".into(), record.args().to_string().into());
    for (key, value) in fields(record) {
        // A key-value never replaces the record's own members.
        object.entry(key).or_insert(value.into());
    }
    serde_json::Value::Object(object).to_string()
}

/// `[time LEVEL target] message key=value ...`, as env_logger wrote it.
fn text_record(record: &Record<'_>, time: SystemTime) -> String {
    let mut line = format!(
        "[{} {:<5} {}] {}",
        super::clock::rfc3339(time),
        record.level(),
        record.target(),
        record.args()
    );
    for (key, value) in fields(record) {
        line.push_str(&format!(" {key}={value}"));
    }
    line
}

struct Logger {
    format: LogFormat,
    filter: env_filter::Filter,
    journal: Option<(UnixDatagram, PathBuf)>,
    /// Lines written whole, one record at a time.
    stderr: Mutex<()>,
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.filter.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if !self.filter.matches(record) {
            return;
        }
        let now = SystemTime::now();
        if let (LogFormat::Journal, Some((socket, path))) = (self.format, &self.journal)
            && socket.send_to(&journal_record(record), path).is_ok()
        {
            return;
        }
        // Text unless JSON was asked for; also when the journal could not take it.
        let line = match self.format {
            LogFormat::Json => json_record(record, now),
            _ => text_record(record, now),
        };
        let _guard = self.stderr.lock();
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }

    fn flush(&self) {}
}

/// Installs the logger for `format` (after [`LogFormat::resolve`]); returns the format in
/// use. A journal that cannot be reached falls back to text on standard error.
pub fn init(format: LogFormat) -> LogFormat {
    let format = format.resolve();
    let mut filter = env_filter::Builder::new();
    filter.filter_level(log::LevelFilter::Info);
    if let Ok(spec) = std::env::var("RUST_LOG")
        && let Err(e) = filter.try_parse(&spec)
    {
        eprintln!("RUST_LOG={spec} ignored: {e}");
    }
    let filter = filter.build();
    let journal = (format == LogFormat::Journal)
        .then(|| {
            let path = std::env::var_os(JOURNAL_SOCKET_ENV)
                .map_or_else(|| PathBuf::from(JOURNAL_SOCKET), PathBuf::from);
            UnixDatagram::unbound().ok().map(|socket| (socket, path))
        })
        .flatten();
    let format = if format == LogFormat::Journal && journal.is_none() {
        LogFormat::Text
    } else {
        format
    };
    let max = filter.filter();
    if log::set_boxed_logger(Box::new(Logger {
        format,
        filter,
        journal,
        stderr: Mutex::new(()),
    }))
    .is_ok()
    {
        log::set_max_level(max);
    }
    format
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record_with<'a, const N: usize>(
        args: std::fmt::Arguments<'a>,
        kvs: &'a [(&'a str, &'a str); N],
    ) -> Record<'a> {
        Record::builder()
            .args(args)
            .level(Level::Warn)
            .target("monitor::daemon::start")
            .file(Some("monitor/src/daemon/start.rs"))
            .line(Some(42))
            .key_values(kvs)
            .build()
    }

    #[test]
    fn a_journal_entry_carries_priority_identifier_and_the_messages_fields() {
        let kvs = [("interface", "ward0"), ("reason", "no-native-xdp")];
        let record = record_with(format_args!("native XDP on ward0 failed"), &kvs);
        let entry = String::from_utf8(journal_record(&record)).unwrap_or_else(|e| panic!("{e}"));
        let lines: Vec<&str> = entry.lines().collect();
        for expected in [
            "MESSAGE=native XDP on ward0 failed",
            "PRIORITY=4",
            "SYSLOG_IDENTIFIER=monitor",
            "TARGET=monitor::daemon::start",
            "CODE_FILE=monitor/src/daemon/start.rs",
            "CODE_LINE=42",
            "INTERFACE=ward0",
            "REASON=no-native-xdp",
        ] {
            assert!(lines.contains(&expected), "{expected} missing in {entry:?}");
        }
    }

    #[test]
    fn a_value_with_a_newline_is_sent_with_its_length() {
        let entry = journal_entry(&[("MESSAGE", "two\nlines"), ("PRIORITY", "3")]);
        let mut expected = b"MESSAGE\n".to_vec();
        expected.extend_from_slice(&9u64.to_le_bytes());
        expected.extend_from_slice(b"two\nlines\nPRIORITY=3\n");
        assert_eq!(entry, expected);
    }

    #[test]
    fn field_names_are_what_journald_accepts() {
        assert_eq!(journal_field_name("interface"), "INTERFACE");
        assert_eq!(journal_field_name("policy-dir"), "POLICY_DIR");
        assert_eq!(journal_field_name("_pid"), "F_PID");
        assert_eq!(journal_field_name("9lives"), "F9LIVES");
        assert_eq!(journal_field_name(&"x".repeat(80)).len(), 64);
    }

    #[test]
    fn a_json_line_has_level_priority_message_and_fields() {
        let kvs = [("device", "pump-icu3-01"), ("message", "not mine")];
        let record = record_with(format_args!("kept enforce"), &kvs);
        let line = json_record(&record, SystemTime::UNIX_EPOCH);
        let json: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(json["level"], "warn");
        assert_eq!(json["priority"], 4);
        assert_eq!(json["message"], "kept enforce");
        assert_eq!(json["device"], "pump-icu3-01");
        assert_eq!(json["timestamp"], "1970-01-01T00:00:00Z");
        assert!(!line.contains('\n'));
    }

    #[test]
    fn the_journal_stream_is_matched_by_device_and_inode() {
        assert!(journal_stream_matches("8:1234", 8, 1234));
        assert!(!journal_stream_matches("8:1234", 8, 1235));
        assert!(!journal_stream_matches("garbage", 8, 1234));
    }
}
