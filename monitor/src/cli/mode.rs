//! `monitor mode`: switch learn / audit / enforce, for the router or one device.

use anyhow::Result;
use monitor::{
    control::mode::{self, Changed},
    state::daemon::Paths,
};
use monitor_common::Mode;

use super::open_maps;

/// A mode, or (for one device) `inherit`: follow the router's mode again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Choice(pub Option<Mode>);

/// `learn`, `audit` or `enforce` (the names `Mode` has).
pub fn parse_mode(text: &str) -> Result<Mode, String> {
    text.parse::<Mode>().map_err(|_| {
        let names: Vec<&str> = Mode::ALL.iter().map(|m| m.name()).collect();
        format!("`{text}` is not a mode: {}", names.join(", "))
    })
}

/// A mode, or `inherit`.
pub fn parse_choice(text: &str) -> Result<Choice, String> {
    if text.eq_ignore_ascii_case("inherit") {
        return Ok(Choice(None));
    }
    parse_mode(text)
        .map(|m| Choice(Some(m)))
        .map_err(|e| format!("{e}, or inherit (with --device)"))
}

pub fn set_mode(
    paths: &Paths,
    choice: Choice,
    device: Option<&str>,
    confirmed: bool,
) -> Result<()> {
    let mut maps = open_maps(paths)?;
    let change = mode::set(&mut maps, &paths.state, choice.0, device, confirmed)?;
    for (name, hours) in &change.short_coverage {
        eprintln!(
            "warning: device {name} learned over only {hours} of the 168 hours of the week: flows \
             and hours of the week it has not seen are reported (and dropped where enforced) \
             as not in its baseline or off its schedule; learn for a whole week first"
        );
    }
    match &change.changed {
        Changed::Global { mode, spared } => {
            println!("global mode is now {}", mode.name());
            if let Some(window) = change.window {
                println!(
                    "learning window {window} opened: what is learned from now on is recorded under it (`monitor baseline windows`)"
                );
            }
            if !spared.is_empty() {
                println!(
                    "life-critical devices stay audited (not enforced): {}",
                    spared.join(", ")
                );
            }
        }
        Changed::Device { name, effective } => {
            println!("device {name} is now in {effective} mode");
            if let Some(window) = change.window {
                println!(
                    "learning window {window} opened: what it learns from now on is recorded under it (`monitor baseline windows`)"
                );
            }
        }
    }
    Ok(())
}

/// `monitor clock`: show, fix (`set HOUR`) or release (`real`) the site's hour of the week.
pub fn clock(paths: &Paths, action: &str, hour: Option<u8>) -> Result<()> {
    let mut maps = open_maps(paths)?;
    let hour = match (action, hour) {
        ("set", Some(hour)) => monitor::control::clock::set(&mut maps, &paths.state, Some(hour))?,
        ("set", None) => anyhow::bail!("`monitor clock set` needs an hour: 0 to 167, or `mon 10`"),
        ("real", _) => monitor::control::clock::set(&mut maps, &paths.state, None)?,
        _ => maps.config()?.hour_of_week,
    };
    let fixed = monitor::state::week::SiteClock::load(&paths.state)?.is_some();
    println!(
        "site hour of the week: {} ({}){}",
        monitor::support::week::slot_name(hour),
        hour,
        if fixed {
            ", fixed by `monitor clock set`"
        } else {
            ""
        }
    );
    Ok(())
}
