//! The service manager's notify protocol (`sd_notify(3)`), spoken directly: one unix
//! datagram of `KEY=VALUE` lines to the socket named by `$NOTIFY_SOCKET`. systemd runs
//! `monitor run` as `Type=notify` and learns from it when the datapath is attached
//! (`READY=1`), that it is stopping (`STOPPING=1`), and that it is alive (`WATCHDOG=1`,
//! when the unit sets `WatchdogSec=`).
//!
//! Outside systemd (no `$NOTIFY_SOCKET`) every call is a no-op.

use std::{
    os::unix::net::{SocketAddr, UnixDatagram},
    path::PathBuf,
    time::Duration,
};

/// Where to send notifications: the socket of `$NOTIFY_SOCKET`, a path or (leading `@`)
/// an abstract name.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    address: SocketAddr,
    /// The watchdog interval the manager asks for (`$WATCHDOG_USEC`), if it is meant for
    /// this process (`$WATCHDOG_PID` unset or ours).
    watchdog: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("NOTIFY_SOCKET `{0}` is neither an absolute path nor an abstract name (@...)")]
    Address(String),
    #[error("the service manager's notify socket {0}")]
    Io(String, #[source] std::io::Error),
}

impl Notifier {
    /// The notifier `$NOTIFY_SOCKET` asks for, or `None` when not run by a service manager.
    pub fn from_env() -> Result<Option<Notifier>, NotifyError> {
        let Some(name) = std::env::var_os("NOTIFY_SOCKET") else {
            return Ok(None);
        };
        let name = name.to_string_lossy().into_owned();
        if name.is_empty() {
            return Ok(None);
        }
        let address = parse_address(&name)?;
        let socket = UnixDatagram::unbound().map_err(|e| NotifyError::Io(name.clone(), e))?;
        let watchdog = watchdog_interval(
            std::env::var("WATCHDOG_USEC").ok().as_deref(),
            std::env::var("WATCHDOG_PID").ok().as_deref(),
            std::process::id(),
        );
        Ok(Some(Notifier {
            socket,
            address,
            watchdog,
        }))
    }

    /// Sends `state`: newline-separated `KEY=VALUE` assignments (`READY=1`, `STATUS=...`).
    pub fn notify(&self, state: &str) -> Result<(), NotifyError> {
        self.socket
            .send_to_addr(state.as_bytes(), &self.address)
            .map(|_| ())
            .map_err(|e| NotifyError::Io(describe(&self.address), e))
    }

    /// How often the manager wants `WATCHDOG=1`: half its timeout, as sd_watchdog_enabled(3)
    /// advises, so that one late ping is no restart.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog.map(|timeout| timeout / 2)
    }
}

fn parse_address(name: &str) -> Result<SocketAddr, NotifyError> {
    if let Some(abstract_name) = name.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt as _;
        SocketAddr::from_abstract_name(abstract_name.as_bytes())
            .map_err(|_| NotifyError::Address(name.into()))
    } else if name.starts_with('/') {
        SocketAddr::from_pathname(PathBuf::from(name))
            .map_err(|_| NotifyError::Address(name.into()))
    } else {
        Err(NotifyError::Address(name.into()))
    }
}

fn describe(address: &SocketAddr) -> String {
    use std::os::linux::net::SocketAddrExt as _;
    match (address.as_pathname(), address.as_abstract_name()) {
        (Some(path), _) => path.display().to_string(),
        (None, Some(name)) => format!("@{}", String::from_utf8_lossy(name)),
        _ => "(unnamed)".into(),
    }
}

/// The watchdog timeout of `$WATCHDOG_USEC`, when `$WATCHDOG_PID` is unset or `pid`.
pub fn watchdog_interval(usec: Option<&str>, for_pid: Option<&str>, pid: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    match for_pid.map(|p| p.trim().parse::<u32>()) {
        None => {}
        Some(Ok(p)) if p == pid => {}
        Some(_) => return None,
    }
    Some(Duration::from_micros(usec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watchdog_is_ours_only_when_its_pid_is_unset_or_ours() {
        let second = Some(Duration::from_secs(1));
        assert_eq!(watchdog_interval(Some("1000000"), None, 7), second);
        assert_eq!(watchdog_interval(Some("1000000"), Some("7"), 7), second);
        assert_eq!(watchdog_interval(Some("1000000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval(Some("soon"), None, 7), None);
        assert_eq!(watchdog_interval(None, Some("7"), 7), None);
    }

    #[test]
    fn addresses_are_paths_or_abstract_names() {
        assert!(parse_address("/run/systemd/notify").is_ok());
        assert!(parse_address("@/org/freedesktop/systemd1/notify/1").is_ok());
        assert!(matches!(
            parse_address("run/notify"),
            Err(NotifyError::Address(_))
        ));
    }

    #[test]
    fn a_notification_is_one_datagram_on_the_named_socket() {
        let dir = std::env::temp_dir().join(format!("monitor-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let server = UnixDatagram::bind(&path).unwrap_or_else(|e| panic!("bind: {e}"));
        let notifier = Notifier {
            socket: UnixDatagram::unbound().unwrap_or_else(|e| panic!("{e}")),
            address: parse_address(&path.to_string_lossy()).unwrap_or_else(|e| panic!("{e}")),
            watchdog: None,
        };
        notifier
            .notify("READY=1\nSTATUS=attached")
            .unwrap_or_else(|e| panic!("{e}"));
        let mut buf = [0u8; 256];
        let n = server
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("recv: {e}"));
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=attached");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
