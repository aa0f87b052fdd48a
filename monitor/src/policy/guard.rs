//! What a policy load may change on its own.
//!
//! A deleted policy file, a checkout half-way through `git pull`, or a file being copied
//! over would otherwise apply a policy with most devices gone, and each device removed is
//! a device no longer enforced. So a load that would remove a large share of what is in
//! force is *held back*: the running policy stays, the daemon logs an error, counts it
//! (`hospmon_policy_reloads_total{result="held_back"}`, `hospmon_policy_held_back`) and
//! writes an event; `monitor reload --accept-shrink` applies it on purpose.
//!
//! Held back: a load that removes
//! - every enrolled device, or every rule, or the `defaults:` section; or
//! - more than [`SHRINK_SHARE_PERCENT`]% of the enrolled devices or of the rules, when
//!   that is at least [`SHRINK_MIN_COUNT`] of them (retiring one or two devices at a time
//!   is ordinary work and is applied at once).
//!
//! Rules are compared by what they say (their description aside), so editing a rule
//! counts as removing the old one and adding the new one.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::policy::model::Policy;

/// A removal of more than this share of the devices or rules is held back...
pub const SHRINK_SHARE_PERCENT: usize = 25;
/// ...when it removes at least this many of them.
pub const SHRINK_MIN_COUNT: usize = 3;

/// What of the applied policy the next load is compared with (kept in the inventory, so
/// that a restart compares with what was in force before it).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct AppliedPolicy {
    /// Every rule as JSON, its description left out.
    pub rules: BTreeSet<String>,
    /// Whether a file set `defaults:`.
    pub has_defaults: bool,
}

impl AppliedPolicy {
    pub fn of(policy: &Policy) -> AppliedPolicy {
        AppliedPolicy {
            rules: rule_texts(policy),
            has_defaults: policy.defaults.file.is_some(),
        }
    }
}

fn rule_texts(policy: &Policy) -> BTreeSet<String> {
    policy
        .rules
        .iter()
        .map(|(_, rule)| {
            let mut rule = rule.clone();
            rule.description = None;
            serde_json::to_string(&rule).unwrap_or_default()
        })
        .collect()
}

/// What a load would take away from the policy in force.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Shrink {
    pub devices_before: usize,
    /// Names of the enrolled devices the new policy lacks.
    pub devices_removed: Vec<String>,
    pub rules_before: usize,
    pub rules_removed: usize,
    pub defaults_removed: bool,
}

impl Shrink {
    /// Compares the policy in force (its devices and [`AppliedPolicy`]) with `next`.
    pub fn between<'a>(
        devices: impl IntoIterator<Item = &'a str>,
        applied: &AppliedPolicy,
        next: &Policy,
    ) -> Shrink {
        let kept = next.device_names();
        let mut devices_before = 0;
        let mut devices_removed = Vec::new();
        for name in devices {
            devices_before += 1;
            if !kept.contains(name) {
                devices_removed.push(name.to_owned());
            }
        }
        let next_rules = rule_texts(next);
        Shrink {
            devices_before,
            devices_removed,
            rules_before: applied.rules.len(),
            rules_removed: applied.rules.difference(&next_rules).count(),
            defaults_removed: applied.has_defaults && next.defaults.file.is_none(),
        }
    }

    /// Why the load is suspicious, `None` when it may be applied at once.
    pub fn suspicious(&self) -> Option<String> {
        let large = |removed: usize, before: usize| {
            before > 0
                && (removed == before
                    || (removed >= SHRINK_MIN_COUNT
                        && removed * 100 > before * SHRINK_SHARE_PERCENT))
        };
        let suspicious = large(self.devices_removed.len(), self.devices_before)
            || large(self.rules_removed, self.rules_before)
            || self.defaults_removed;
        suspicious.then(|| self.to_string())
    }
}

impl std::fmt::Display for Shrink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if !self.devices_removed.is_empty() {
            let mut names = self.devices_removed.clone();
            let more = names.len().saturating_sub(10);
            names.truncate(10);
            parts.push(format!(
                "{} of {} devices ({}{})",
                self.devices_removed.len(),
                self.devices_before,
                names.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            ));
        }
        if self.rules_removed > 0 {
            parts.push(format!(
                "{} of {} rules",
                self.rules_removed, self.rules_before
            ));
        }
        if self.defaults_removed {
            parts.push("the defaults".into());
        }
        if parts.is_empty() {
            write!(f, "removes nothing")
        } else {
            write!(f, "removes {}", parts.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn policy(devices: usize, rules: usize, defaults: bool) -> Policy {
        let mut text = String::new();
        if defaults {
            text.push_str("defaults:\n  unenrolled: drop\n");
        }
        text.push_str("devices:\n");
        for i in 0..devices {
            text.push_str(&format!(
                "  - name: d{i}\n    kind: pump\n    addresses: [10.0.0.{}]\n",
                i + 1
            ));
        }
        if rules > 0 {
            text.push_str("rules:\n");
            for i in 0..rules {
                text.push_str(&format!(
                    "  - devices: {{kind: pump}}\n    peer: {{cidr: 10.9.0.{}}}\n    protocol: tcp\n    ports: 443\n    action: allow\n",
                    i + 1
                ));
            }
        }
        Policy::from_sources(&[(PathBuf::from("p.yaml"), text)])
            .unwrap_or_else(|e| panic!("test policy: {e}"))
    }

    fn shrink(before: &Policy, after: &Policy) -> Shrink {
        Shrink::between(
            before.devices.iter().map(|d| d.name.as_str()),
            &AppliedPolicy::of(before),
            after,
        )
    }

    #[test]
    fn large_removals_are_held_and_small_ones_pass() {
        // (devices, rules, defaults) before → after, held back?
        let cases = [
            ((8, 4, true), (8, 4, true), false),
            ((8, 4, true), (0, 0, false), true),
            ((8, 0, true), (0, 0, true), true),
            ((8, 4, true), (7, 4, true), false),
            ((8, 4, true), (6, 4, true), false),
            ((8, 4, true), (5, 4, true), true),
            ((20, 4, true), (15, 4, true), false),
            ((20, 4, true), (14, 4, true), true),
            ((1, 0, false), (0, 0, false), true),
            ((8, 4, true), (8, 0, true), true),
            ((8, 8, true), (8, 6, true), false),
            ((8, 8, true), (8, 5, true), true),
            ((8, 4, true), (8, 4, false), true),
            ((0, 0, false), (8, 4, true), false),
            ((8, 4, false), (12, 6, true), false),
        ];
        for ((d0, r0, f0), (d1, r1, f1), held) in cases {
            let s = shrink(&policy(d0, r0, f0), &policy(d1, r1, f1));
            assert_eq!(
                s.suspicious().is_some(),
                held,
                "{d0} devices, {r0} rules, defaults {f0} -> {d1}, {r1}, {f1}: {s}"
            );
        }
    }

    #[test]
    fn the_report_names_what_goes() {
        let s = shrink(&policy(4, 2, true), &policy(1, 0, false));
        assert_eq!(
            s.to_string(),
            "removes 3 of 4 devices (d1, d2, d3), 2 of 2 rules, the defaults"
        );
    }

    #[test]
    fn a_changed_description_removes_no_rule() {
        let before = policy(2, 1, false);
        let mut after = before.clone();
        after.rules[0].1.description = Some("reviewed 2026-12".into());
        assert_eq!(shrink(&before, &after).rules_removed, 0);
    }
}
