//! Discovery events: a device nobody enrolled announced once when its MAC first shows up
//! on a ward leg (`device-discovered`), and an address that moves from one MAC to another
//! (`ip-flip-flop`, as arpwatch calls it), from the datapath's discovery table.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    time::{Duration, Instant},
};

use crate::{
    datapath::MapSet,
    observe::events::ControllerEvent,
    state::StateDir,
    view::discovered::{self, Discovered},
};

/// How often the discovery table is read.
pub const DISCOVERY_INTERVAL: Duration = Duration::from_secs(1);

/// What the daemon announced so far.
#[derive(Debug, Default)]
pub struct DiscoveryWatch {
    announced: BTreeSet<String>,
    /// Each address's MAC when last read.
    mac_of: BTreeMap<IpAddr, (String, String)>,
    last: Option<Instant>,
}

impl DiscoveryWatch {
    /// Whether [`DISCOVERY_INTERVAL`] passed since the last time this said so.
    pub fn due(&mut self) -> bool {
        if self.last.is_some_and(|t| t.elapsed() < DISCOVERY_INTERVAL) {
            return false;
        }
        self.last = Some(Instant::now());
        true
    }

    /// Reads the discovery table: the events of what changed since the last read.
    pub fn poll(&mut self, maps: &MapSet, state: &StateDir) -> Vec<ControllerEvent> {
        match discovered::read(maps, state) {
            Ok(devices) => self.changes(&devices),
            Err(e) => {
                log::error!("reading the discovery table: {e:#}");
                Vec::new()
            }
        }
    }

    /// The events `devices` (newest first) give after what was announced before.
    pub fn changes(&mut self, devices: &[Discovered]) -> Vec<ControllerEvent> {
        let mut events = Vec::new();
        for d in devices {
            if self.announced.insert(d.mac.clone()) {
                let addresses: Vec<String> = d.addresses.iter().map(IpAddr::to_string).collect();
                events.push(
                    ControllerEvent::notice(
                        "device-discovered",
                        format!(
                            "new device {} ({}) at {} on {}, not in the inventory \
                             (`monitor discovered --yaml` writes its entry)",
                            d.mac,
                            d.vendor,
                            addresses.join(", "),
                            d.interface
                        ),
                    )
                    .with_mac(&d.mac),
                );
            }
        }
        // Each address's newest MAC (devices come newest first).
        let mut newest: BTreeMap<IpAddr, &Discovered> = BTreeMap::new();
        for d in devices {
            for address in &d.addresses {
                newest.entry(*address).or_insert(d);
            }
        }
        for (address, d) in newest {
            let now = (d.mac.clone(), d.vendor.clone());
            if let Some((mac, vendor)) = self.mac_of.insert(address, now)
                && mac != d.mac
            {
                events.push(
                    ControllerEvent::warning(
                        "ip-flip-flop",
                        format!(
                            "{address} moved from MAC {mac} ({vendor}) to {} ({})",
                            d.mac, d.vendor
                        ),
                    )
                    .with_mac(&d.mac),
                );
            }
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn station(mac: &str, address: &str, last_seen_ns: u64) -> Discovered {
        Discovered {
            mac: mac.into(),
            vendor: "VMware, Inc.".into(),
            addresses: vec![address.parse().unwrap_or_else(|e| panic!("{e}"))],
            first_seen: String::new(),
            last_seen: String::new(),
            last_seen_ns,
            packets: 1,
            bytes: 60,
            interface: "ward0".into(),
            services: Vec::new(),
            enrolled_addresses: Vec::new(),
        }
    }

    #[test]
    fn a_new_mac_is_announced_once_and_a_moved_address_is_a_flip_flop() {
        let mut watch = DiscoveryWatch::default();
        let a = station("00:0c:29:00:00:0a", "10.10.1.50", 10);
        let events = watch.changes(std::slice::from_ref(&a));
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0].event, "device-discovered");
        assert!(events[0].message.contains("VMware") && events[0].message.contains("10.10.1.50"));
        assert!(watch.changes(std::slice::from_ref(&a)).is_empty(), "once");
        // Another MAC takes the address.
        let b = station("00:0c:29:00:00:0b", "10.10.1.50", 20);
        let events = watch.changes(&[b.clone(), a.clone()]);
        let kinds: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
        assert_eq!(kinds, ["device-discovered", "ip-flip-flop"], "{events:?}");
        assert!(events[1].message.contains("00:0c:29:00:00:0a"));
        assert_eq!(events[1].mac.as_deref(), Some("00:0c:29:00:00:0b"));
        assert!(watch.changes(&[b, a]).is_empty(), "no change, no event");
    }
}
