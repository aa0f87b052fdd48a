//! The policy's data, at the bottom of `policy/`: what policy files say ([`spec`]), what
//! MUD files contribute ([`mud_import`]), where problems are ([`place`]), and the checked
//! [`Policy`] of a directory that holds them all. No reading, checking or compiling here:
//! that is `check`, `mud` and `compile`, above.

pub mod mud_import;
pub mod place;
pub mod spec;

use std::collections::{BTreeMap, BTreeSet};

pub use mud_import::{Diagnostic, Family, MudFile, MudImport, MudInfo, MudPeer, MudRule};
pub use place::{Place, Problem};
pub use spec::{
    BREAK_GLASS_MAX_CEILING, BREAK_GLASS_MAX_FLOOR, Criticality, DEFAULT_BREAK_GLASS_MAX, Defaults,
    DeviceSpec, Endpoint, EndpointSpec, GroupSpec, Location, MudEntry, PolicyFile, PortsSpec,
    RuleAction, RuleDirection, RuleSpec, ScheduleMode, UnenrolledSpec, format_mac,
    parse_break_glass_max, parse_mac, parse_macs,
};

/// Policy files larger than this are refused before they are parsed.
pub const MAX_POLICY_FILE_BYTES: u64 = 4 * 1024 * 1024;
/// Devices one policy may enroll (the size of the XDP program's device table).
pub const MAX_DEVICES: usize = monitor_common::maps::MAX_DEVICES as usize;

/// The policy of a directory, checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    pub defaults: Defaults,
    pub devices: Vec<DeviceSpec>,
    pub groups: Vec<GroupSpec>,
    pub rules: Vec<(Place, RuleSpec)>,
    /// Where each device was defined (for messages), by name.
    pub origins: BTreeMap<String, Place>,
    /// Problems that do not stop the policy from loading (printed by `policy check`).
    pub warnings: Vec<Problem>,
    /// MUD files in use; their rules with fixed peers are in `rules`, those with DNS names
    /// are added once resolved (`crate::policy::mud::Names::apply`).
    pub mud: Vec<MudImport>,
}

impl Policy {
    /// Names of all devices.
    pub fn device_names(&self) -> BTreeSet<&str> {
        self.devices.iter().map(|d| d.name.as_str()).collect()
    }
}
