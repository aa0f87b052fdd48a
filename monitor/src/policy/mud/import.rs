//! A policy file's `mud:` entries: each entry checked, its MUD file read (within the policy
//! size limit) and parsed, and the rules whose peers are address blocks added to the policy
//! at once. Rules whose peers are DNS names wait for `names`.

use std::{
    io::Read,
    net::{IpAddr, SocketAddr},
    path::Path,
};

use crate::policy::{
    compile::Prefix,
    model::{
        Diagnostic, EndpointSpec, MAX_POLICY_FILE_BYTES, MudEntry, MudImport, MudPeer, MudRule,
        Place, Policy, Problem, RuleSpec, place::list_item_lines,
    },
    mud::convert::parse,
};

impl MudImport {
    /// The policy rule of `rule` toward `cidr`; `note` ends its description.
    pub(super) fn rule_spec(&self, rule: &MudRule, cidr: String, note: &str) -> (Place, RuleSpec) {
        let file = self.file.file_name().map_or_else(
            || self.file.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        (
            self.place.clone(),
            RuleSpec {
                description: Some(format!(
                    "MUD {file} ({}): {}{note}",
                    self.mud.info.mud_url,
                    rule.aces.join(", ")
                )),
                devices: EndpointSpec {
                    kind: Some(self.kind.clone()),
                    ..EndpointSpec::default()
                },
                peer: EndpointSpec {
                    cidr: Some(cidr),
                    ..EndpointSpec::default()
                },
                protocol: rule.protocol.clone(),
                ports: rule.ports.clone(),
                direction: rule.direction,
                action: rule.action,
            },
        )
    }

    /// The policy rules of the ACEs whose peers are address blocks.
    pub fn fixed_rules(&self) -> Vec<(Place, RuleSpec)> {
        self.mud
            .rules
            .iter()
            .filter_map(|rule| match &rule.peer {
                MudPeer::Cidr(cidr) => Some(self.rule_spec(rule, cidr.clone(), "")),
                MudPeer::Name { .. } => None,
            })
            .collect()
    }

    /// Reads and checks the MUD file of `entry` (relative to `dir`); problems are placed in
    /// the MUD file, or at the policy entry (`place`) when they are the entry's.
    pub fn load(
        entry: MudEntry,
        dir: &Path,
        place: &Place,
    ) -> Result<(MudImport, Vec<Problem>), Vec<Problem>> {
        let at_entry = |message: String| Problem {
            place: place.clone(),
            message: format!("mud entry: {message}"),
        };
        let mut problems = Vec::new();
        if entry.kind.trim().is_empty() {
            problems.push(at_entry(
                "`kind` is empty; name the device kind the MUD file describes".into(),
            ));
        }
        let mut dns_servers = Vec::new();
        for server in &entry.dns_servers {
            match parse_server(server) {
                Some(addr) => dns_servers.push(addr),
                None => problems.push(at_entry(format!(
                    "dns-servers: `{server}` is not IP or IP:PORT like 10.20.0.53 or [fd00::53]:53"
                ))),
            }
        }
        for block in &entry.local_networks {
            if Prefix::parse(block).is_none() {
                problems.push(at_entry(format!(
                    "local-networks: `{block}` is not an address block like 10.10.0.0/16"
                )));
            }
        }
        let path = dir.join(&entry.file);
        let text = match read_limited(&path) {
            Ok(text) => text,
            Err(message) => {
                problems.push(at_entry(format!("MUD file {}: {message}", path.display())));
                return Err(problems);
            }
        };
        let in_file = |d: Diagnostic| Problem {
            place: Place {
                file: path.clone(),
                line: d.line,
                column: d.column,
            },
            message: d.to_string(),
        };
        match parse(&text, &entry.local_networks) {
            Ok(mud) if problems.is_empty() => {
                let warnings = mud.warnings.iter().cloned().map(in_file).collect();
                Ok((
                    MudImport {
                        place: place.clone(),
                        kind: entry.kind,
                        file: path.clone(),
                        dns_servers,
                        mud,
                    },
                    warnings,
                ))
            }
            Ok(_) => Err(problems),
            Err(found) => {
                problems.extend(found.into_iter().map(in_file));
                Err(problems)
            }
        }
    }
}

/// Loads the `mud:` entries of one policy file (`file`, its `text`): the rules with fixed
/// peers join the policy's rules at once; those with names wait for `Names::apply`.
pub fn load_entries(
    file: &Path,
    text: &str,
    entries: Vec<MudEntry>,
    policy: &mut Policy,
    problems: &mut Vec<Problem>,
) {
    let lines = list_item_lines(text, "mud");
    let dir = file.parent().unwrap_or(Path::new(""));
    for (index, entry) in entries.into_iter().enumerate() {
        let place = Place {
            file: file.to_path_buf(),
            line: lines.get(index).copied(),
            column: None,
        };
        match MudImport::load(entry, dir, &place) {
            Ok((import, warnings)) => {
                policy.warnings.extend(warnings);
                policy.rules.extend(import.fixed_rules());
                policy.mud.push(import);
            }
            Err(mut found) => problems.append(&mut found),
        }
    }
}

/// A MUD entry for a kind no device has is a mistake (a misspelt kind), also when its
/// rules wait for names.
pub fn check_kinds(policy: &Policy, problems: &mut Vec<Problem>) {
    for import in &policy.mud {
        if !policy.devices.iter().any(|d| d.kind == import.kind) {
            problems.push(Problem {
                place: import.place.clone(),
                message: format!("mud entry: no device is of kind `{}`", import.kind),
            });
        }
    }
}

fn parse_server(text: &str) -> Option<SocketAddr> {
    text.parse::<SocketAddr>().ok().or_else(|| {
        text.parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, 53))
    })
}

/// A regular file's text, refused unread when it is over the policy size limit.
fn read_limited(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    if !meta.is_file() {
        return Err("is not a regular file".into());
    }
    if meta.len() > MAX_POLICY_FILE_BYTES {
        return Err(format!(
            "file is {} bytes, over the {MAX_POLICY_FILE_BYTES}-byte limit; refused unread",
            meta.len()
        ));
    }
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_POLICY_FILE_BYTES + 1).read_to_string(&mut text))
        .map_err(|e| format!("cannot read: {e}"))?;
    Ok(text)
}
