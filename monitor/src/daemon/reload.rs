//! Applying the policy directory: read and check it, compare it with the policy in force
//! ([`crate::policy::guard`]), install it in one atomic switch, keep the modes in force.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use monitor_common::{
    Mode,
    maps::{RuleKeyData, RuleSet},
};

use crate::{
    datapath::Datapath,
    policy::{
        Policy,
        guard::{AppliedPolicy, Shrink},
        mud::Names,
    },
    state::{StateDir, inventory::Inventory, lock::WriteLock},
};

/// A policy load that would take away too much of the policy in force
/// ([`crate::policy::guard`]): not applied.
#[derive(Debug, thiserror::Error)]
#[error(
    "policy in {} held back as suspicious: it {shrink} of the policy in force. If that is \
     meant, apply it with `monitor reload --accept-shrink` (or start with `monitor run \
     --accept-shrink`)",
    dir.display()
)]
pub struct HeldBack {
    pub dir: PathBuf,
    pub shrink: Shrink,
}

/// How a policy load may go.
#[derive(Clone, Copy, Debug, Default)]
pub struct ApplyOptions {
    /// Apply even what [`crate::policy::guard`] holds back (the operator's
    /// `monitor reload --accept-shrink`).
    pub accept_shrink: bool,
}

/// A policy that was applied.
#[derive(Debug)]
pub struct Applied {
    pub inventory: Inventory,
    /// Rules of the policy, as written.
    pub rules: usize,
    /// Devices whose policy asks for another mode than the one kept in force.
    pub modes_kept: Vec<String>,
    /// What the load took away (within what is applied at once, or accepted).
    pub shrink: Shrink,
    /// The policy's starting mode (`defaults: mode`), for a first start.
    pub starting_mode: Option<Mode>,
    /// The policy installed (MUD names resolved): what the rules are compiled from again
    /// when a device given by `mac:` alone moves (`crate::control::identity::follow`).
    pub policy: Policy,
}

/// A policy directory read, checked and resolved, not yet installed.
#[derive(Debug)]
pub struct Prepared {
    dir: PathBuf,
    /// With the MUD names resolved: what is installed.
    policy: Policy,
    /// As written: what the next load is compared with (a MUD name resolving to other
    /// addresses is no removal).
    written: Policy,
}

/// Reads and checks the policy directory and resolves its MUD names through `names`
/// (those new or past their TTL are asked now): the slow part, done before the state's
/// write lock is taken.
pub fn prepare(dir: &Path, names: &mut Names) -> Result<Prepared> {
    let written = Policy::load_dir(dir)
        .with_context(|| format!("policy in {} not applied", dir.display()))?;
    let mut policy = written.clone();
    names.apply(&mut policy);
    for warning in &policy.warnings {
        log::warn!("{warning}");
    }
    Ok(Prepared {
        dir: dir.to_path_buf(),
        policy,
        written,
    })
}

/// Installs a prepared policy over `previous` (the inventory in force): held back when it
/// would remove too much, unless accepted. The caller holds the state's write lock, so
/// that a `monitor mode --device` or `monitor allow` meanwhile waits rather than being
/// undone.
///
/// Never changes the router-wide mode, nor the mode of a device already enrolled (see
/// [`Inventory::keep_modes_in_force`]): only an operator's `monitor mode` does.
pub fn install(
    datapath: &mut Datapath,
    state: &StateDir,
    prepared: Prepared,
    options: ApplyOptions,
    previous: &Inventory,
) -> Result<Applied> {
    let Prepared {
        dir,
        policy,
        written,
    } = prepared;
    let shrink = Shrink::between(
        previous.devices.iter().map(|d| d.spec.name.as_str()),
        &previous.applied,
        &written,
    );
    if shrink.suspicious().is_some() {
        if !options.accept_shrink {
            return Err(HeldBack { dir, shrink }.into());
        }
        log::warn!(
            "applying the policy in {} although it {shrink}: accepted by the operator",
            dir.display()
        );
    }
    // A device given by `mac:` alone keeps the addresses it learned (`from_policy`): its
    // rules, and those naming it as a peer, are compiled at them from the start.
    let rules = compiled_rules(&previous.with_learned_addresses(&policy))?;
    let (mut inventory, fresh) = Inventory::from_policy(&policy, previous, &rules);
    inventory.applied = AppliedPolicy::of(&written);
    let modes_kept = inventory.keep_modes_in_force(previous);
    inventory.apply(datapath.maps_mut(), &fresh, &rules)?;
    inventory.save(state)?;
    for message in &modes_kept {
        log::warn!("{message}");
    }
    log::info!(
        "policy from {} applied: {} devices, {} rules",
        dir.display(),
        inventory.devices.len(),
        policy.rules.len()
    );
    Ok(Applied {
        inventory,
        rules: policy.rules.len(),
        modes_kept,
        shrink,
        starting_mode: policy.defaults.mode,
        policy,
    })
}

/// Reads and applies the policy directory over the inventory of the state directory, as
/// one process that owns it (tests, tools); on any problem the running policy stays.
pub fn apply_policy(datapath: &mut Datapath, state: &StateDir, dir: &Path) -> Result<Inventory> {
    let prepared = prepare(dir, &mut Names::default())?;
    let _write = WriteLock::take(state.path())?;
    let previous = Inventory::load(state)?;
    install(
        datapath,
        state,
        prepared,
        ApplyOptions::default(),
        &previous,
    )
    .map(|applied| applied.inventory)
}

/// The policy's rules, folded into the rule sets the datapath reads.
pub fn compiled_rules(policy: &Policy) -> Result<Vec<(u32, RuleKeyData, RuleSet)>> {
    Ok(policy.rule_sets()?)
}
