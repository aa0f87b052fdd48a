//! `monitor mud show`: the policy's MUD files and the rules each becomes, for people to
//! review, with the addresses of their names when they were resolved.

use std::fmt::Write as _;

use crate::policy::{
    model::{MudPeer, Policy, PortsSpec, RuleAction},
    mud::{
        names::{Names, join},
        resolver::Question,
    },
};

/// The policy's MUD files and the rules each becomes, for people to review (`monitor mud
/// show`); with `names`, the addresses each name has.
pub fn describe(policy: &Policy, names: Option<&Names>) -> String {
    let mut out = String::new();
    if policy.mud.is_empty() {
        out.push_str("no MUD files in this policy\n");
    }
    for import in &policy.mud {
        let info = &import.mud.info;
        let _ = writeln!(
            out,
            "{} for every device of kind `{}` ({})",
            import.file.display(),
            import.kind,
            import.place
        );
        let about: Vec<&str> = [
            &info.systeminfo,
            &info.mfg_name,
            &info.model_name,
            &info.firmware_rev,
        ]
        .into_iter()
        .filter_map(|v| v.as_deref())
        .collect();
        let _ = writeln!(
            out,
            "  {} ({}), last update {}",
            info.mud_url,
            about.join(", "),
            info.last_update
        );
        if !info.is_supported {
            let _ = writeln!(out, "  the manufacturer no longer supports this device");
        }
        for rule in &import.mud.rules {
            let action = match rule.action {
                RuleAction::Allow => "allow",
                RuleAction::Deny => "deny",
            };
            let direction = rule.direction_name();
            let ports = match &rule.ports {
                None => String::new(),
                Some(p) => format!("/{}", ports_text(p)),
            };
            let _ = writeln!(
                out,
                "  {action} {direction} {}{ports} peer {}   [{}]",
                rule.protocol,
                rule.peer,
                rule.aces.join(", ")
            );
            if let (Some(names), MudPeer::Name { name, family }) = (names, &rule.peer) {
                let question = Question {
                    name: name.clone(),
                    family: *family,
                    servers: import.dns_servers.clone(),
                };
                let _ = writeln!(
                    out,
                    "      {question}: {}",
                    join(&names.addresses(&question))
                );
            }
        }
    }
    out
}

fn ports_text(ports: &PortsSpec) -> String {
    match ports {
        PortsSpec::One(p) => p.to_string(),
        PortsSpec::Text(t) => t.clone(),
        PortsSpec::List(list) => list.iter().map(ports_text).collect::<Vec<_>>().join(","),
    }
}
