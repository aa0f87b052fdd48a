//! The drawing model: boxes (devices, addresses) in groups on two sides, edges between
//! them, and the device identity states the drawing takes as input.

use std::collections::BTreeSet;

use crate::view::devmap::model::Protection;

/// Which side of the drawing a group is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Side {
    /// Wards and their devices, devices outside the inventory that use them, discovered
    /// devices.
    Left,
    /// Servers and services the devices depend on.
    Right,
}

/// What colours a box or an edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shade {
    /// An enrolled device's protection in force.
    Protected(Protection),
    /// An address outside the inventory: nothing protects it.
    Unenrolled,
}

impl Shade {
    /// The CSS class suffix and legend word.
    pub fn label(self) -> &'static str {
        match self {
            Shade::Protected(p) => p.label(),
            Shade::Unenrolled => "not-enrolled",
        }
    }
}

/// Marks on a box, besides its colour.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Marks {
    /// Flows outside the baseline (0: none).
    pub violations: usize,
    /// An impostor was seen using the device's address (from [`Identity`]).
    pub spoofed: bool,
}

/// What the group of a box is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GroupRole {
    /// Enrolled devices of one ward.
    Ward,
    /// Addresses outside the inventory seen as peers.
    Outside,
    /// Devices nobody enrolled, from [`Identity::discovered`].
    Discovered,
}

/// One box: a device, or an address outside the inventory.
#[derive(Clone, Debug)]
pub struct Node {
    /// Unique in the drawing: the device's name, or the address.
    pub id: String,
    pub label: String,
    /// The device's kind; "address" for a peer outside the inventory.
    pub kind: String,
    pub shade: Shade,
    pub marks: Marks,
    /// The HTML id of the device's card on the page, if it has one.
    pub card: Option<String>,
    /// What a tooltip says.
    pub title: String,
}

#[derive(Clone, Debug)]
pub struct Group {
    pub title: String,
    pub role: GroupRole,
    pub side: Side,
    /// Indexes into [`Drawing::nodes`], in drawing order.
    pub nodes: Vec<usize>,
}

/// Flows between two boxes: baseline flows, or flows outside the baseline.
#[derive(Clone, Debug)]
pub struct Edge {
    /// Index of the client's box (or the device's, for symmetric peers).
    pub from: usize,
    pub to: usize,
    /// "tcp/104 (dicom)".
    pub services: BTreeSet<String>,
    pub packets: u64,
    /// The protection of the enrolled end that judges it.
    pub shade: Shade,
    /// Outside the baseline.
    pub violation: bool,
}

/// The drawing model: boxes in groups on two sides, and edges between boxes.
#[derive(Clone, Debug, Default)]
pub struct Drawing {
    pub nodes: Vec<Node>,
    pub groups: Vec<Group>,
    pub edges: Vec<Edge>,
}

/// A device nobody enrolled, as device identity reports it.
#[derive(Clone, Debug)]
pub struct Discovered {
    /// Its address (the box's label and id).
    pub address: String,
    /// What is known of it ("vendor Philips", "unknown"), shown as its kind.
    pub kind: String,
    /// The HTML id of its card, if the page has one.
    pub card: Option<String>,
    /// What it was seen using.
    pub flows: Vec<DiscoveredFlow>,
}

/// A flow of a discovered device.
#[derive(Clone, Debug)]
pub struct DiscoveredFlow {
    /// An enrolled device's name, or an address.
    pub peer: String,
    /// "tcp/104 (dicom)".
    pub service: String,
    pub packets: u64,
}

/// Device states from device identity (see the module documentation).
#[derive(Clone, Debug, Default)]
pub struct Identity {
    /// Names of enrolled devices whose address an impostor was seen using.
    pub spoofed: BTreeSet<String>,
    /// Devices nobody enrolled, drawn in their own group.
    pub discovered: Vec<Discovered>,
}
