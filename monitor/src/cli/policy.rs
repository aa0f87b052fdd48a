//! Policy files: check, MUD review, and asking the daemon to reload.

use anyhow::{Context, Result};
use monitor::{
    policy::Policy,
    state::{daemon::Paths, inventory::Inventory, lock::Held},
};

pub fn mud_show(dir: &std::path::Path, resolve: bool) -> Result<()> {
    let policy = Policy::load_dir(dir)?;
    let mut names = monitor::policy::mud::Names::default();
    if resolve {
        names.apply(&mut policy.clone());
    }
    print!(
        "{}",
        monitor::policy::mud::describe(&policy, resolve.then_some(&names))
    );
    Ok(())
}

pub fn policy_check(dir: &std::path::Path) -> Result<()> {
    let policy = Policy::load_dir(dir)?;
    for warning in &policy.warnings {
        println!("warning: {warning}");
    }
    println!(
        "{}: ok, {} devices, {} groups, {} rules, {} warnings",
        dir.display(),
        policy.devices.len(),
        policy.groups.len(),
        policy.rules.len(),
        policy.warnings.len()
    );
    Ok(())
}

/// `monitor reload [--accept-shrink]`: with --accept-shrink, says first what the policy
/// directory removes from the policy in force.
pub fn reload(paths: &Paths, accept_shrink: bool) -> Result<()> {
    if accept_shrink {
        let daemon = paths
            .running_daemon()?
            .and_then(|Held(info)| info)
            .context("no monitor daemon is running")?;
        if let Some(dir) = &daemon.policies {
            let policy = Policy::load_dir(dir)
                .with_context(|| format!("the policy in {} does not load", dir.display()))?;
            let inventory = Inventory::load(&paths.state)?;
            let shrink = monitor::policy::guard::Shrink::between(
                inventory.devices.iter().map(|d| d.spec.name.as_str()),
                &inventory.applied,
                &policy,
            );
            println!("applying {}: it {shrink}", dir.display());
        }
    }
    monitor::control::reload::reload(paths, accept_shrink)
}
