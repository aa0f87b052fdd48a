//! What goes where: the collector of `--syslog` ([`Target`]) and the events sent to it
//! ([`Message`]).

use std::{fmt, str::FromStr};

/// How events reach the collector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// One datagram per message (RFC 5426).
    Udp,
    /// A stream of octet-counted messages (RFC 6587 3.4.1).
    Tcp,
}

/// A syslog collector: `udp://HOST:PORT` or `tcp://HOST:PORT` (HOST a name, an IPv4
/// address or a bracketed IPv6 address).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub transport: Transport,
    pub host: String,
    pub port: u16,
}

impl FromStr for Target {
    type Err = String;

    fn from_str(text: &str) -> Result<Target, String> {
        let usage = "give udp://HOST:PORT or tcp://HOST:PORT, e.g. tcp://siem.example.org:6514";
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| format!("`{text}` has no scheme: {usage}"))?;
        let transport = match scheme.to_ascii_lowercase().as_str() {
            "udp" => Transport::Udp,
            "tcp" => Transport::Tcp,
            other => return Err(format!("`{text}`: unknown transport `{other}`: {usage}")),
        };
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| format!("`{text}` has no port: {usage}"))?;
        let bracketed = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
        if let Some(v6) = bracketed
            && v6.parse::<std::net::Ipv6Addr>().is_err()
        {
            return Err(format!("`{text}`: `{v6}` is no IPv6 address: {usage}"));
        }
        if bracketed.is_none() && host.contains(':') {
            return Err(format!(
                "`{text}`: an IPv6 address goes in brackets: {usage}"
            ));
        }
        let host = bracketed.unwrap_or(host);
        if host.is_empty() || host.contains(['/', ' ', '[', ']']) {
            return Err(format!(
                "`{text}`: `{host}` is no host name or address: {usage}"
            ));
        }
        let port = match port.parse::<u16>() {
            Ok(port) if port != 0 => port,
            _ => return Err(format!("`{text}`: `{port}` is no port (1-65535): {usage}")),
        };
        Ok(Target {
            transport,
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.transport {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// Syslog severities the events use (RFC 5424 numbers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Error = 3,
    Warning = 4,
    Notice = 5,
    Info = 6,
}

impl Severity {
    /// The severity an event names (`error`, `warning`, `notice`, `info`).
    pub fn named(name: &str) -> Option<Severity> {
        match name {
            "error" => Some(Severity::Error),
            "warning" => Some(Severity::Warning),
            "notice" => Some(Severity::Notice),
            "info" => Some(Severity::Info),
            _ => None,
        }
    }
}

/// One event for the SIEM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// When it happened, RFC 3339.
    pub time: String,
    pub severity: Severity,
    /// What happened (`violation`, `break-glass-start`, `policy-failed`, ...): the
    /// message's MSGID.
    pub event: String,
    /// Its fields, as `events.jsonl` names them: the structured data.
    pub params: Vec<(String, String)>,
    /// For people: the message's MSG.
    pub text: String,
}

#[cfg(test)]
mod tests {
    use crate::observe::syslog::message::*;

    #[test]
    fn targets_are_read_with_their_transport_host_and_port() {
        for (text, transport, host, port) in [
            ("udp://127.0.0.1:514", Transport::Udp, "127.0.0.1", 514),
            (
                "tcp://siem.example.org:6514",
                Transport::Tcp,
                "siem.example.org",
                6514,
            ),
            ("TCP://[fd00::1]:601", Transport::Tcp, "fd00::1", 601),
        ] {
            let target: Target = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(
                target,
                Target {
                    transport,
                    host: host.into(),
                    port
                }
            );
            assert_eq!(target.to_string(), text.to_lowercase());
        }
        for (text, naming) in [
            ("127.0.0.1:514", "has no scheme"),
            ("http://x:1", "unknown transport `http`"),
            ("udp://x", "has no port"),
            ("udp://x:0", "`0` is no port"),
            ("udp://x:65536", "`65536` is no port"),
            ("udp://:514", "is no host"),
            ("tcp://fd00::1:514", "in brackets"),
            ("tcp://[siem]:514", "`siem` is no IPv6 address"),
        ] {
            let e = text
                .parse::<Target>()
                .expect_err(&format!("{text} is refused"));
            assert!(e.contains(naming) && e.contains(text), "{text}: {e}");
        }
    }
}
