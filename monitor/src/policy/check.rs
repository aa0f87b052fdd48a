//! Reading and checking a policy directory: every `*.yaml`, `*.yml` and `*.json` file in name
//! order, parsed strictly, each problem reported with its file, line and column
//! ([`Problem`]); what no single file shows (duplicate names and addresses across files,
//! group members, MUD kinds, the datapath's limits, rules that resolve to nothing or
//! contradict each other) is checked once all are read. The result is a [`Policy`] or every
//! problem found ([`PolicyError`]).

use monitor_common::Mode;
use std::{
    collections::BTreeMap,
    net::IpAddr,
    path::{Path, PathBuf},
};

use crate::policy::compile::{RuleSets, fold_rules};
use crate::policy::{
    model::{
        Criticality, Defaults, DeviceSpec, GroupSpec, MAX_DEVICES, MAX_POLICY_FILE_BYTES, Place,
        Policy, PolicyFile, Problem, RuleSpec, parse_mac,
        place::{find_key, find_name, list_item_lines},
    },
    mud,
};

/// Why a policy could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("reading policy directory {0}")]
    ReadDir(PathBuf, #[source] std::io::Error),
    /// No policy at all is never what an operator means: applied, it would enroll
    /// nothing and so enforce nothing.
    #[error(
        "policy directory {0} holds no policy files (*.yaml, *.yml, *.json); \
         an empty policy would enforce nothing, so it is refused"
    )]
    Empty(PathBuf),
    #[error("{} problem(s) in the policy:\n{}", .0.len(), .0.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

impl Policy {
    /// The policy's rules, folded into the rule sets the datapath reads, at the addresses
    /// its devices have in it (for a device given by `mac:` alone, those learned: see
    /// `crate::state::inventory::Inventory::with_learned_addresses`).
    pub fn rule_sets(&self) -> Result<RuleSets, PolicyError> {
        let rules = self.compile_rules().map_err(PolicyError::Invalid)?;
        fold_rules(&rules).map_err(PolicyError::Invalid)
    }

    /// Loads and checks every `*.yaml`, `*.yml` and `*.json` file of `dir`.
    pub fn load_dir(dir: &Path) -> Result<Policy, PolicyError> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| PolicyError::ReadDir(dir.to_path_buf(), e))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| {
                matches!(
                    path.extension().and_then(|e| e.to_str()),
                    Some("yaml" | "yml" | "json")
                )
            })
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(PolicyError::Empty(dir.to_path_buf()));
        }
        let mut sources = Vec::new();
        let mut problems = Vec::new();
        for file in files {
            let place = Place {
                file: file.clone(),
                line: None,
                column: None,
            };
            match std::fs::metadata(&file) {
                Ok(meta) if meta.len() > MAX_POLICY_FILE_BYTES => {
                    problems.push(Problem {
                        place,
                        message: format!(
                            "file is {} bytes, over the {MAX_POLICY_FILE_BYTES}-byte limit; refused unread",
                            meta.len()
                        ),
                    });
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    problems.push(Problem {
                        place,
                        message: format!("cannot read: {e}"),
                    });
                    continue;
                }
            }
            match std::fs::read_to_string(&file) {
                Ok(text) => sources.push((file, text)),
                Err(e) => problems.push(Problem {
                    place,
                    message: format!("cannot read: {e}"),
                }),
            }
        }
        match Policy::from_sources(&sources) {
            Ok(policy) if problems.is_empty() => Ok(policy),
            Ok(_) => Err(PolicyError::Invalid(problems)),
            Err(PolicyError::Invalid(more)) => {
                problems.extend(more);
                Err(PolicyError::Invalid(problems))
            }
            Err(other) => Err(other),
        }
    }

    /// Parses and checks policy texts, each named by its file.
    pub fn from_sources(sources: &[(PathBuf, String)]) -> Result<Policy, PolicyError> {
        let mut loader = Loader::default();
        for (file, text) in sources {
            match parse_file(file, text) {
                Ok(parsed) => loader.add_file(file, text, parsed),
                Err(problem) => loader.problems.push(problem),
            }
        }
        loader.finish()
    }

    /// Checks references, protocols, ports and contradictions of the rules; compiles them.
    fn check_rules(&mut self, problems: &mut Vec<Problem>) {
        for group in &self.groups {
            if group.members.is_empty() && group.kinds.is_empty() {
                self.warnings.push(Problem {
                    place: Place::whole_policy(),
                    message: format!("group `{}` has no members and no kinds", group.name),
                });
            }
        }
        match self.compile_rules() {
            Ok(_) => {}
            Err(mut found) => problems.append(&mut found),
        }
        // Contradictions: an allow and a deny covering the same devices, peers and ports.
        let rules = &self.rules;
        for (i, (place_a, a)) in rules.iter().enumerate() {
            for (place_b, b) in rules.iter().skip(i + 1) {
                if a.action != b.action
                    && a.devices == b.devices
                    && a.peer == b.peer
                    && a.protocol == b.protocol
                    && a.ports == b.ports
                    && a.direction == b.direction
                {
                    self.warnings.push(Problem {
                        place: place_b.clone(),
                        message: format!(
                            "this rule contradicts the rule at {place_a} (same devices, peer, protocol and ports); deny wins"
                        ),
                    });
                }
            }
        }
    }
}

/// One policy file's text as a [`PolicyFile`]: JSON by its extension, YAML otherwise (an
/// empty YAML file is an empty policy file).
fn parse_file(file: &Path, text: &str) -> Result<PolicyFile, Problem> {
    if file.extension().and_then(|e| e.to_str()) == Some("json") {
        serde_json::from_str(text).map_err(|e| Problem {
            place: Place {
                file: file.to_path_buf(),
                line: Some(e.line()),
                column: Some(e.column()),
            },
            message: e.to_string(),
        })
    } else {
        serde_yaml_ng::from_str::<Option<PolicyFile>>(text)
            .map(Option::unwrap_or_default)
            .map_err(|e| {
                let location = e.location();
                Problem {
                    place: Place {
                        file: file.to_path_buf(),
                        line: location.as_ref().map(|l| l.line()),
                        column: location.as_ref().map(|l| l.column()),
                    },
                    message: e.to_string(),
                }
            })
    }
}

/// A policy being read file by file, and what it takes to check one file against those
/// read before it.
#[derive(Default)]
struct Loader {
    policy: Policy,
    problems: Vec<Problem>,
    /// The file that set `defaults`.
    defaults_from: Option<PathBuf>,
    /// Where each group is defined.
    group_places: BTreeMap<String, Place>,
    /// The device of each address.
    addresses: BTreeMap<IpAddr, String>,
}

impl Loader {
    fn add_file(&mut self, file: &Path, text: &str, parsed: PolicyFile) {
        if let Some(defaults) = parsed.defaults {
            self.add_defaults(file, text, defaults);
        }
        // Devices and groups are found in the text by `name:`, in order: the nth entry of
        // a name is its nth `name:` line, whichever list it is in.
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for device in parsed.devices {
            let place = nth_name_place(file, text, &device.name, &mut seen);
            self.add_device(place, device);
        }
        for group in parsed.groups {
            let place = nth_name_place(file, text, &group.name, &mut seen);
            self.add_group(place, group);
        }
        self.add_rules(file, text, parsed.rules);
        mud::load_entries(file, text, parsed.mud, &mut self.policy, &mut self.problems);
    }

    /// Only one file may set `defaults`.
    fn add_defaults(&mut self, file: &Path, text: &str, defaults: Defaults) {
        if let Some(first) = &self.defaults_from {
            let (line, column) = find_key(text, "defaults");
            self.problems.push(Problem {
                place: Place {
                    file: file.to_path_buf(),
                    line,
                    column,
                },
                message: format!(
                    "`defaults` is already set in {}; only one file may set it",
                    first.display()
                ),
            });
        } else {
            self.defaults_from = Some(file.to_path_buf());
            self.policy.defaults = Defaults {
                file: Some(file.to_path_buf()),
                ..defaults
            };
        }
    }

    /// Checks a device against itself and the devices read before it, and enrolls it.
    fn add_device(&mut self, place: Place, device: DeviceSpec) {
        let mut problem = |message: String| {
            self.problems.push(Problem {
                place: place.clone(),
                message,
            })
        };
        if device.name.is_empty()
            || !device
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            problem(format!(
                "device name `{}` must be non-empty and use only letters, digits, '-', '_' and '.'",
                device.name
            ));
        }
        if let Some(first) = self.policy.origins.get(&device.name) {
            problem(format!(
                "device `{}` is already defined at {first}",
                device.name
            ));
        }
        if device.addresses.is_empty() && device.mac.is_none() {
            problem(format!(
                "device `{}` has no addresses and no mac (give one: a device given by its \
                 MAC alone has its addresses learned on a ward leg)",
                device.name
            ));
        }
        for address in &device.addresses {
            if let Some(owner) = self.addresses.get(address) {
                problem(format!(
                    "address {address} of `{}` is already the address of `{owner}`",
                    device.name
                ));
            } else {
                self.addresses.insert(*address, device.name.clone());
            }
        }
        if device.criticality == Criticality::LifeCritical
            && device.mode == Some(Mode::Enforce)
            && !device.confirm_enforce
        {
            problem(format!(
                "device `{}` is life-critical and set to `mode: enforce` without \
                 `confirm-enforce: true`; add it to enforce this device, or remove the mode",
                device.name
            ));
        }
        if device.confirm_enforce && device.mode != Some(Mode::Enforce) {
            problem(format!(
                "device `{}` has `confirm-enforce: true` but its mode is not `enforce`",
                device.name
            ));
        }
        if let Some(macs) = &device.mac {
            for mac in macs.split(',').map(str::trim) {
                if parse_mac(mac).is_none() {
                    problem(format!(
                        "device `{}`: MAC `{mac}` is not six hex bytes like 00:1b:44:11:3a:b7",
                        device.name
                    ));
                }
            }
        }
        self.policy
            .origins
            .entry(device.name.clone())
            .or_insert(place);
        self.policy.devices.push(device);
    }

    fn add_group(&mut self, place: Place, group: GroupSpec) {
        if self.policy.groups.iter().any(|g| g.name == group.name) {
            self.problems.push(Problem {
                place: place.clone(),
                message: format!("group `{}` is already defined", group.name),
            });
        }
        self.group_places.entry(group.name.clone()).or_insert(place);
        self.policy.groups.push(group);
    }

    /// Rules are placed at their list item's line.
    fn add_rules(&mut self, file: &Path, text: &str, rules: Vec<RuleSpec>) {
        let rule_lines = list_item_lines(text, "rules");
        for (index, rule) in rules.into_iter().enumerate() {
            let place = Place {
                file: file.to_path_buf(),
                line: rule_lines.get(index).copied(),
                column: None,
            };
            self.policy.rules.push((place, rule));
        }
    }

    /// The checks that need every file: group members, MUD kinds, the datapath's size,
    /// and (when all else is right) the rules.
    fn finish(mut self) -> Result<Policy, PolicyError> {
        self.check_group_members();
        mud::check_kinds(&self.policy, &mut self.problems);
        if self.policy.devices.len() > MAX_DEVICES {
            self.problems.push(Problem {
                place: Place::whole_policy(),
                message: format!(
                    "{} devices, more than the {MAX_DEVICES} the datapath holds",
                    self.policy.devices.len()
                ),
            });
        }
        let Loader {
            mut policy,
            mut problems,
            ..
        } = self;
        policy.devices.sort_by(|a, b| a.name.cmp(&b.name));
        if problems.is_empty() {
            policy.check_rules(&mut problems);
        }
        if problems.is_empty() {
            Ok(policy)
        } else {
            Err(PolicyError::Invalid(problems))
        }
    }

    /// Members are checked at their group, also when no rule uses the group.
    fn check_group_members(&mut self) {
        for group in &self.policy.groups {
            for member in &group.members {
                if !self.policy.devices.iter().any(|d| &d.name == member) {
                    self.problems.push(Problem {
                        place: self
                            .group_places
                            .get(&group.name)
                            .cloned()
                            .unwrap_or_else(Place::whole_policy),
                        message: format!(
                            "group `{}` lists `{member}`, which is no device",
                            group.name
                        ),
                    });
                }
            }
        }
    }
}

/// Where the next entry named `name` is in `text`; `seen` counts the entries of each name
/// found so far in this file.
fn nth_name_place(
    file: &Path,
    text: &str,
    name: &str,
    seen: &mut BTreeMap<String, usize>,
) -> Place {
    let nth = seen.entry(name.to_string()).or_default();
    let (line, column) = find_name(text, name, *nth);
    *nth += 1;
    Place {
        file: file.to_path_buf(),
        line,
        column,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use monitor_common::{
        Mode,
        maps::{DEVICE_ENFORCE_CONFIRMED, DEVICE_LIFE_CRITICAL, MODE_INHERIT},
    };

    use super::*;
    use crate::policy::model::UnenrolledSpec;

    fn check(text: &str) -> Result<Policy, Vec<Problem>> {
        Policy::from_sources(&[(PathBuf::from("ward.yaml"), text.to_string())]).map_err(|e| match e
        {
            PolicyError::Invalid(problems) => problems,
            other => panic!("unexpected error {other}"),
        })
    }

    #[test]
    fn a_ward_parses_and_compiles_to_device_entries() {
        let policy = check(
            "defaults:\n  mode: audit\n  unenrolled: drop\ndevices:\n  - name: pump-1\n    kind: infusion-pump\n    addresses: [10.1.0.11, 'fd00::11']\n    criticality: life-critical\n  - name: ws-1\n    kind: workstation\n    addresses: [10.1.0.50]\n    mode: enforce\n",
        )
        .expect("valid policy");
        assert_eq!(policy.defaults.mode, Some(Mode::Audit));
        assert_eq!(policy.defaults.unenrolled, UnenrolledSpec::Drop);
        let pump = &policy.devices[0];
        assert_eq!(pump.addresses.len(), 2);
        let entry = pump.entry(3);
        assert_eq!(entry.slot, 3);
        assert_eq!(entry.mode, MODE_INHERIT);
        assert_eq!(entry.flags, DEVICE_LIFE_CRITICAL);
        assert_eq!(policy.devices[1].entry(0).mode, Mode::Enforce as u8);
    }

    #[test]
    fn problems_name_file_line_and_column() {
        let problems = check(
            "devices:\n  - name: pump-1\n    kind: infusion-pump\n    adresses: [10.1.0.11]\n",
        )
        .expect_err("unknown field");
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].place.file, PathBuf::from("ward.yaml"));
        assert_eq!(problems[0].place.line, Some(4));
        assert!(
            problems[0].message.contains("adresses"),
            "{}",
            problems[0].message
        );
    }

    #[test]
    fn duplicate_names_and_addresses_are_refused() {
        let problems = check(
            "devices:\n  - name: a\n    kind: pacs\n    addresses: [10.0.0.1]\n  - name: a\n    kind: pacs\n    addresses: [10.0.0.1]\n",
        )
        .expect_err("duplicates");
        assert!(
            problems
                .iter()
                .any(|p| p.message.contains("already defined"))
        );
        assert!(
            problems
                .iter()
                .any(|p| p.message.contains("already the address"))
        );
        assert_eq!(problems[0].place.line, Some(5));
    }

    #[test]
    fn life_critical_enforce_needs_confirmation() {
        let problems = check(
            "devices:\n  - name: pump\n    kind: infusion-pump\n    addresses: [10.0.0.1]\n    criticality: life-critical\n    mode: enforce\n",
        )
        .expect_err("unconfirmed");
        assert!(problems[0].message.contains("confirm-enforce"));
        let policy = check(
            "devices:\n  - name: pump\n    kind: infusion-pump\n    addresses: [10.0.0.1]\n    criticality: life-critical\n    mode: enforce\n    confirm-enforce: true\n",
        )
        .expect("confirmed");
        assert_eq!(
            policy.devices[0].entry(0).flags,
            DEVICE_LIFE_CRITICAL | DEVICE_ENFORCE_CONFIRMED
        );
    }

    #[test]
    fn break_glass_max_is_read_as_a_duration_and_kept_with_its_file() {
        let policy = check("defaults:\n  mode: audit\n  break-glass-max: 8h 30m\n").expect("valid");
        assert_eq!(
            policy.defaults.break_glass_max,
            Some(Duration::from_secs(8 * 3600 + 30 * 60))
        );
        assert_eq!(policy.defaults.file, Some(PathBuf::from("ward.yaml")));
        let unset = check("defaults:\n  mode: audit\n").expect("valid");
        assert_eq!(unset.defaults.break_glass_max, None);
    }

    #[test]
    fn a_bad_break_glass_max_is_refused_at_its_line_and_column() {
        for (value, column, reason) in [
            ("0s", 20, "is shorter than 1m"),
            ("30s", 20, "is shorter than 1m"),
            ("8d", 20, "is longer than the 7days a policy may allow"),
            ("100000d", 20, "is longer than the 7days a policy may allow"),
            ("soon", 20, "is not a duration such as 8h or 90m"),
            (
                "8",
                20,
                "is not a duration such as 8h or 90m (time unit needed",
            ),
        ] {
            let problems = check(&format!(
                "devices: []\ndefaults:\n  mode: audit\n  break-glass-max: {value}\n"
            ))
            .expect_err(value);
            assert_eq!(problems.len(), 1, "{value}: {problems:?}");
            let problem = &problems[0];
            assert_eq!(
                (problem.place.line, problem.place.column),
                (Some(4), Some(column)),
                "{value}: {problem}"
            );
            assert!(problem.message.contains(reason), "{value}: {problem}");
        }
    }

    #[test]
    fn schedule_settings_are_read_and_bad_ones_named_at_their_line() {
        let policy = check(
            "defaults:\n  time-zone: Europe/Berlin\n  schedule-tolerance: 2\n  schedule-by-kind:\n    patient-monitor: ignore\ndevices:\n  - name: badge-1\n    kind: badge-reader\n    addresses: [10.1.0.14]\n    schedule: enforce\n",
        )
        .expect("valid");
        assert_eq!(policy.defaults.time_zone.as_deref(), Some("Europe/Berlin"));
        assert_eq!(policy.defaults.schedule_tolerance, Some(2));
        assert_eq!(
            policy.defaults.schedule_by_kind.get("patient-monitor"),
            Some(&crate::policy::ScheduleMode::Ignore)
        );
        assert_eq!(
            policy.devices[0].entry(0).flags,
            monitor_common::maps::DEVICE_SCHEDULE_ENFORCE
        );
        for (text, line, reason) in [
            (
                "devices: []\ndefaults:\n  time-zone: Mars/Olympus\n",
                3,
                "is not a time zone",
            ),
            (
                "devices: []\ndefaults:\n  schedule-tolerance: 13\n",
                3,
                "more than 12 hours",
            ),
            (
                "devices:\n  - name: b\n    kind: k\n    addresses: [10.0.0.1]\n    schedule: sometimes\n",
                5,
                "unknown variant",
            ),
        ] {
            let problems = check(text).expect_err(text);
            assert_eq!(problems.len(), 1, "{text}: {problems:?}");
            assert_eq!(
                problems[0].place.line,
                Some(line),
                "{text}: {}",
                problems[0]
            );
            assert!(
                problems[0].message.contains(reason),
                "{text}: {}",
                problems[0]
            );
        }
    }
}
