//! The drawn map: the architecture as one picture. Wards and their devices on the left,
//! the servers and services they depend on on the right, an edge per baseline flow
//! (thicker for more traffic), boxes and edges coloured by the protection in force,
//! violations as red dashed edges and marked boxes, each device linked to its card.
//!
//! [`build`] makes the drawing model ([`model`]) from the [`DeviceMap`] (which devices, on
//! which side, in which group, with which edges); [`layout`] places it (pure geometry, no
//! overlaps, tiles grouped by kind when a group is large); [`svg`] writes it as inline SVG
//! for the page or as a standalone `.svg` file.
//!
//! Two device states come from device identity, through [`Identity`] ([`identity_of`]
//! fills it from the map's discovered stations):
//! - spoofed: an impostor was seen using an enrolled device's address; the device's box
//!   gets a "spoofed" mark ([`Marks::spoofed`]).
//! - discovered: devices nobody enrolled; drawn on the left in their own group
//!   "discovered (not enrolled)", with their edges to the servers they were seen using.

pub mod layout;
pub mod model;
pub mod svg;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};

pub use model::{
    Discovered, DiscoveredFlow, Drawing, Edge, Group, GroupRole, Identity, Marks, Node, Shade, Side,
};

use super::{
    markup::card_id,
    model::{DeviceMap, MapDevice},
};

/// The identity states of the map's devices: the stations nobody enrolled (their own
/// group, with the enrolled services they used), and the enrolled devices whose address
/// such a station was seen sending from (an impostor, or a NIC not accepted yet).
pub fn identity_of(map: &DeviceMap) -> Identity {
    let owner: std::collections::BTreeMap<std::net::IpAddr, &str> = map
        .wards
        .iter()
        .flat_map(|w| &w.devices)
        .flat_map(|d| d.addresses.iter().map(move |a| (*a, d.name.as_str())))
        .collect();
    let mut identity = Identity::default();
    for station in &map.discovered {
        for address in &station.addresses {
            if let Some(name) = owner.get(address) {
                identity.spoofed.insert((*name).to_string());
            }
        }
        let Some(address) = station.addresses.first() else {
            continue;
        };
        let flows = station
            .services
            .iter()
            .filter_map(|used| {
                // `device proto/port`, as `view::discovered` writes it.
                let (peer, service) = used.split_once(' ')?;
                Some(model::DiscoveredFlow {
                    peer: peer.to_string(),
                    service: service.to_string(),
                    packets: 0,
                })
            })
            .collect();
        identity.discovered.push(model::Discovered {
            address: address.to_string(),
            kind: format!("{} {}", station.vendor, station.mac),
            // Its row is in the page's "Discovered" table, not a card.
            card: None,
            flows,
        });
    }
    identity
}

/// At most this many addresses outside the inventory per side; the quietest of the rest
/// share one box ("N more addresses").
pub const MAX_OUTSIDE: usize = 24;

const OUTSIDE: &str = "outside the inventory";
const DISCOVERED: &str = "discovered (not enrolled)";

/// Makes the drawing of `map`, with the identity states of `identity`.
pub fn build(map: &DeviceMap, identity: &Identity) -> Drawing {
    let devices: Vec<&MapDevice> = map.wards.iter().flat_map(|w| &w.devices).collect();
    let serving = serving(&devices);
    let mut b = Builder::default();
    for d in &devices {
        let side = if serving.contains(d.name.as_str()) {
            Side::Right
        } else {
            Side::Left
        };
        b.device(d, side, identity.spoofed.contains(&d.name));
    }
    for d in &devices {
        b.device_edges(d);
    }
    for found in &identity.discovered {
        b.discovered(found);
    }
    b.finish(map)
}

/// Names of enrolled devices that others use: some device's server or symmetric peer, or
/// a device with clients.
fn serving<'m>(devices: &[&'m MapDevice]) -> BTreeSet<&'m str> {
    let enrolled: BTreeSet<&str> = devices.iter().map(|d| d.name.as_str()).collect();
    let mut serving = BTreeSet::new();
    for d in devices {
        for group in &d.peers {
            if group.role == "client" {
                serving.insert(d.name.as_str());
            } else {
                serving.extend(
                    group
                        .peers
                        .iter()
                        .filter_map(|p| enrolled.get(p.name.as_str()).copied()),
                );
            }
        }
    }
    serving
}

/// Collects boxes and edges, then orders them into groups.
#[derive(Default)]
struct Builder {
    nodes: Vec<Node>,
    /// Side and group of each node.
    place: Vec<(Side, GroupRole, String)>,
    by_id: HashMap<String, usize>,
    edges: BTreeMap<(usize, usize, bool), Edge>,
}

impl Builder {
    fn push(&mut self, node: Node, side: Side, role: GroupRole, group: &str) -> usize {
        let index = self.nodes.len();
        self.by_id.insert(node.id.clone(), index);
        self.nodes.push(node);
        self.place.push((side, role, group.to_string()));
        index
    }

    fn device(&mut self, d: &MapDevice, side: Side, spoofed: bool) {
        let addresses: Vec<String> = d.addresses.iter().map(|a| a.to_string()).collect();
        let node = Node {
            id: d.name.clone(),
            label: d.name.clone(),
            kind: d.kind.clone(),
            shade: Shade::Protected(d.protection),
            marks: Marks {
                violations: d.violations.flows,
                spoofed,
            },
            card: Some(card_id(&d.name)),
            title: format!(
                "{} ({}, {}) {}: {}{}",
                d.name,
                d.kind,
                d.criticality,
                addresses.join(", "),
                d.protection.label(),
                if d.violations.flows > 0 {
                    format!("; {} flows outside the baseline", d.violations.flows)
                } else {
                    String::new()
                }
            ),
        };
        self.push(node, side, GroupRole::Ward, &d.ward);
    }

    /// The box of a peer: an enrolled device's, else the address's (made on `side`).
    fn peer(&mut self, name: &str, side: Side) -> usize {
        if let Some(&index) = self.by_id.get(name) {
            return index;
        }
        let node = Node {
            id: name.to_string(),
            label: name.to_string(),
            kind: "address".into(),
            shade: Shade::Unenrolled,
            marks: Marks::default(),
            card: None,
            title: format!("{name}: not in the inventory"),
        };
        self.push(node, side, GroupRole::Outside, OUTSIDE)
    }

    fn edge(&mut self, from: usize, to: usize, flow: (&str, u64), shade: Shade, violation: bool) {
        let edge = self
            .edges
            .entry((from, to, violation))
            .or_insert_with(|| Edge {
                from,
                to,
                services: BTreeSet::new(),
                packets: 0,
                shade,
                violation,
            });
        edge.services.insert(flow.0.to_string());
        edge.packets += flow.1;
    }

    /// The device's baseline flows (as the client, or as a symmetric peer; flows of its
    /// clients come with the client, unless the client is outside the inventory) and its
    /// violations.
    fn device_edges(&mut self, d: &MapDevice) {
        let me = self.by_id[&d.name];
        let shade = Shade::Protected(d.protection);
        for group in &d.peers {
            for p in &group.peers {
                let (from, to) = if group.role == "client" {
                    if p.enrolled {
                        continue;
                    }
                    (self.peer(&p.name, Side::Left), me)
                } else {
                    (me, self.peer(&p.name, Side::Right))
                };
                for service in &p.services {
                    // Packets count once per peer, not once per service.
                    let first = service == &p.services[0];
                    let packets = if first { p.packets } else { 0 };
                    self.edge(from, to, (service, packets), shade, false);
                }
            }
        }
        for v in &d.violations.top {
            let (from, to) = if v.role == "client" {
                (self.peer(&v.peer, Side::Left), me)
            } else {
                (me, self.peer(&v.peer, Side::Right))
            };
            self.edge(from, to, (&v.service, v.packets), shade, true);
        }
    }

    fn discovered(&mut self, found: &Discovered) {
        let node = Node {
            id: found.address.clone(),
            label: found.address.clone(),
            kind: found.kind.clone(),
            shade: Shade::Unenrolled,
            marks: Marks::default(),
            card: found.card.clone(),
            title: format!("{}: discovered, nobody enrolled it", found.address),
        };
        let me = match self.by_id.get(&found.address) {
            // Already seen as a peer: it moves to its own group.
            Some(&index) => {
                self.nodes[index] = node;
                self.place[index] = (Side::Left, GroupRole::Discovered, DISCOVERED.into());
                index
            }
            None => self.push(node, Side::Left, GroupRole::Discovered, DISCOVERED),
        };
        for flow in &found.flows {
            let to = self.peer(&flow.peer, Side::Right);
            self.edge(
                me,
                to,
                (&flow.service, flow.packets),
                Shade::Unenrolled,
                false,
            );
        }
    }

    /// Groups in order (wards as the map orders them, then outside the inventory, then
    /// discovered), too many outside addresses merged, edges without a box dropped.
    fn finish(mut self, map: &DeviceMap) -> Drawing {
        let ward_rank: HashMap<&str, usize> = map
            .wards
            .iter()
            .enumerate()
            .map(|(i, w)| (w.name.as_str(), i))
            .collect();
        let mut grouped: BTreeMap<(Side, GroupRole, usize, String), Vec<usize>> = BTreeMap::new();
        for (index, (side, role, title)) in self.place.iter().enumerate() {
            let rank = ward_rank.get(title.as_str()).copied().unwrap_or(0);
            grouped
                .entry((*side, *role, rank, title.clone()))
                .or_default()
                .push(index);
        }
        let mut remap: Vec<usize> = (0..self.nodes.len()).collect();
        let mut groups = Vec::new();
        for ((side, role, _, title), mut nodes) in grouped {
            if role == GroupRole::Outside && nodes.len() > MAX_OUTSIDE {
                nodes = self.merge_quietest(nodes, &mut remap);
            }
            groups.push(Group {
                title,
                role,
                side,
                nodes,
            });
        }
        let mut edges: BTreeMap<(usize, usize, bool), Edge> = BTreeMap::new();
        for (_, mut e) in std::mem::take(&mut self.edges) {
            e.from = remap[e.from];
            e.to = remap[e.to];
            match edges.get_mut(&(e.from, e.to, e.violation)) {
                Some(kept) => {
                    kept.packets += e.packets;
                    kept.services.extend(e.services);
                }
                None => {
                    edges.insert((e.from, e.to, e.violation), e);
                }
            }
        }
        let mut drawing = without_orphans(self.nodes, groups, edges.into_values().collect());
        layout::order_by_partners(&mut drawing);
        drawing
    }

    /// Keeps the busiest `MAX_OUTSIDE - 1` of `nodes` (by the packets of their edges) and
    /// points the rest at one new box; returns the group's nodes.
    fn merge_quietest(&mut self, mut nodes: Vec<usize>, remap: &mut Vec<usize>) -> Vec<usize> {
        let mut traffic: HashMap<usize, u64> = HashMap::new();
        for e in self.edges.values() {
            *traffic.entry(e.from).or_default() += e.packets;
            *traffic.entry(e.to).or_default() += e.packets;
        }
        nodes.sort_by_key(|n| {
            (
                std::cmp::Reverse(traffic.get(n).copied().unwrap_or(0)),
                self.nodes[*n].id.clone(),
            )
        });
        let rest = nodes.split_off(MAX_OUTSIDE - 1);
        let (side, role, title) = self.place[rest[0]].clone();
        let merged = Node {
            id: format!("{} more addresses ({})", rest.len(), side_word(side)),
            label: format!("{} more addresses", rest.len()),
            kind: "addresses".into(),
            shade: Shade::Unenrolled,
            marks: Marks::default(),
            card: None,
            title: rest
                .iter()
                .map(|n| self.nodes[*n].id.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        };
        let index = self.push(merged, side, role, &title);
        remap.push(index);
        for n in rest {
            remap[n] = index;
        }
        nodes.sort_by(|a, b| self.nodes[*a].id.cmp(&self.nodes[*b].id));
        nodes.push(index);
        nodes
    }
}

/// The drawing with only the boxes of its groups (merged addresses leave theirs), indexes
/// renumbered.
fn without_orphans(nodes: Vec<Node>, mut groups: Vec<Group>, mut edges: Vec<Edge>) -> Drawing {
    let mut renumber = vec![usize::MAX; nodes.len()];
    let mut order = Vec::new();
    for group in &mut groups {
        for n in &mut group.nodes {
            renumber[*n] = order.len();
            order.push(*n);
            *n = renumber[order[order.len() - 1]];
        }
    }
    let mut slots: Vec<Option<Node>> = nodes.into_iter().map(Some).collect();
    let nodes = order.iter().filter_map(|old| slots[*old].take()).collect();
    for e in &mut edges {
        e.from = renumber[e.from];
        e.to = renumber[e.to];
    }
    Drawing {
        nodes,
        groups,
        edges,
    }
}

fn side_word(side: Side) -> &'static str {
    match side {
        Side::Left => "clients",
        Side::Right => "servers",
    }
}
