//! The learned baseline as policy: allow rules people can review and keep in the policy
//! directory (`monitor baseline export --format yaml`).

use crate::{
    policy::{Endpoint, PolicyFile, PortsSpec, RuleAction, RuleDirection, RuleSpec},
    state::{baseline::BaselineFile, inventory::Inventory},
};

/// Learned baseline entries as allow rules: a policy file people can review and keep in
/// the policy directory (promoting what was learned into policy).
pub fn baseline_as_policy(
    file: &BaselineFile,
    inventory: &Inventory,
) -> Result<String, serde_yaml_ng::Error> {
    let by_address = inventory.by_address();
    let rules = file
        .entries
        .iter()
        .filter_map(|record| {
            let device = by_address.get(&record.device)?;
            let peer = match by_address.get(&record.peer) {
                Some(peer) => Endpoint::Device(peer.spec.name.clone()),
                None => Endpoint::Cidr(record.peer.to_string()),
            };
            Some(RuleSpec {
                description: Some(format!("learned: {}", record.origin)),
                devices: Endpoint::Device(device.spec.name.clone()).into(),
                peer: peer.into(),
                protocol: crate::support::proto::name(record.protocol),
                ports: Some(PortsSpec::One(record.service_port)),
                direction: match record.direction.as_str() {
                    "in" => RuleDirection::In,
                    "out" => RuleDirection::Out,
                    _ => RuleDirection::Any,
                },
                action: RuleAction::Allow,
            })
        })
        .collect();
    let text = serde_yaml_ng::to_string(&PolicyFile {
        defaults: None,
        devices: Vec::new(),
        groups: Vec::new(),
        rules,
        mud: Vec::new(),
    })?;
    Ok(format!(
        "# Allow rules promoted from the learned baseline by `monitor baseline export --format yaml`.\n# Review, then keep this file in the policy directory.\n{text}"
    ))
}
