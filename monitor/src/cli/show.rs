//! What the running monitor shows: status, devices, flows, the device map, the reasons.

use std::process::ExitCode;

use anyhow::{Context, Result};
use monitor::{
    state::{daemon::Paths, inventory::Inventory, lock::Held},
    support::clock::monotonic_now_ns,
    view::{
        devmap,
        report::{self, age, table},
    },
};
use monitor_common::Reason;

use super::open_maps;

pub fn device_map(
    paths: &Paths,
    format: devmap::Format,
    output: Option<&std::path::Path>,
    max_learning_days: u64,
) -> Result<()> {
    let maps = open_maps(paths)?;
    let oui = match monitor::view::oui::OuiDb::load_default() {
        Ok(db) => Some(db),
        Err(e) => {
            log::warn!("{e}: no vendors shown");
            None
        }
    };
    let mut inputs = devmap::Inputs::read(&maps, &paths.state, oui.as_ref())?;
    inputs.max_learning_days = max_learning_days;
    let text = devmap::render(&devmap::build(&inputs), format)?;
    match output {
        Some(path) => {
            std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?;
            println!("wrote {}", path.display());
        }
        None => print!("{text}"),
    }
    Ok(())
}

/// `monitor status`'s exit codes, as LSB init scripts (and monitoring checks) read them.
pub const STATUS_EXIT_CODES: &str = "Exit status of `monitor status` (LSB): 0 a daemon runs \
    (or is starting) on this pin directory or state directory; 3 no daemon runs (the XDP \
    program may still be attached and enforcing: the report says so); 4 the status is \
    unknown (the lock or the datapath could not be read, e.g. without root).";

/// LSB: running.
const RUNNING: u8 = 0;
/// LSB: not running.
const NOT_RUNNING: u8 = 3;
/// LSB: status unknown.
const UNKNOWN: u8 = 4;

/// `monitor status`: the report, and whether a daemon runs as the exit code.
pub fn status(paths: &Paths, json: bool) -> ExitCode {
    // Told by the lock the daemon holds (the kernel drops it when the daemon dies).
    let held = match paths.running_daemon() {
        Ok(held) => held,
        Err(e) => {
            eprintln!("Error: {}", monitor::support::error_chain(&e));
            return ExitCode::from(UNKNOWN);
        }
    };
    let running = held.is_some();
    let result = match open_maps(paths) {
        Ok(maps) => status_report(paths, &maps, held, json),
        Err(e) if !running => {
            if json {
                println!("{}", serde_json::json!({ "status": null, "daemon": null }));
            } else {
                println!("daemon: not running; {e}");
            }
            Ok(())
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(()) if running => ExitCode::from(RUNNING),
        Ok(()) => ExitCode::from(NOT_RUNNING),
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::from(if running { UNKNOWN } else { NOT_RUNNING })
        }
    }
}

fn status_report(
    paths: &Paths,
    maps: &monitor::MapSet,
    held: Option<Held<monitor::state::daemon::DaemonInfo>>,
    json: bool,
) -> Result<()> {
    let inventory = Inventory::load(&paths.state)?;
    let status = report::status(maps, &inventory)?;
    let daemon = held.as_ref().and_then(|Held(info)| info.clone());
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({ "status": status, "daemon": daemon })
            )?
        );
        return Ok(());
    }
    match (&held, &daemon) {
        (Some(_), Some(d)) => {
            let ifaces: Vec<String> = d
                .interfaces
                .iter()
                .map(|i| format!("{} ({})", i.name, i.xdp_mode))
                .collect();
            println!(
                "daemon: pid {} on {} (since {})",
                d.pid,
                ifaces.join(", "),
                d.started
            );
        }
        (Some(_), None) => println!("daemon: starting"),
        (None, _) => println!(
            "daemon: not running (the XDP program stays attached and enforcing; counters and baseline kept)"
        ),
    }
    println!("mode: {}", status.mode);
    println!("unenrolled traffic: {}", status.unenrolled);
    println!(
        "devices: {} enrolled ({} addresses); baseline: {} entries; policy generation {}",
        status.enrolled_devices,
        status.enrolled_addresses,
        status.baseline_entries,
        status.policy_generation
    );
    println!();
    print!("{}", report::verdict_table("VERDICT", &status.verdicts));
    println!();
    print!("{}", report::class_table("FRAMES", &status.classes));
    Ok(())
}

pub fn discovered(paths: &Paths, json: bool, yaml: bool) -> Result<()> {
    let maps = open_maps(paths)?;
    let devices = monitor::view::discovered::read(&maps, &paths.state)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&devices)?);
    } else if yaml {
        print!("{}", monitor::view::discovered::yaml_stubs(&devices));
    } else {
        print!("{}", monitor::view::discovered::table(&devices));
    }
    Ok(())
}

pub fn devices(paths: &Paths, json: bool, top: usize) -> Result<()> {
    let maps = open_maps(paths)?;
    let inventory = Inventory::load(&paths.state)?;
    let coverage = monitor::state::week::Coverage::load(&paths.state)?;
    let rows = report::device_rows(&maps, &inventory, &coverage)?;
    let mut unenrolled = report::unenrolled_rows(&maps)?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({ "devices": rows, "unenrolled": unenrolled })
            )?
        );
        return Ok(());
    }
    let now = monotonic_now_ns();
    let table_rows: Vec<Vec<String>> = rows
        .iter()
        .map(|d| {
            vec![
                d.name.clone(),
                d.kind.clone(),
                d.addresses
                    .iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
                d.criticality.clone(),
                d.mode.clone(),
                format!("{}/{}", d.packets_sent, d.packets_received),
                format!("{}/{}", d.bytes_sent, d.bytes_received),
                d.dropped_packets.to_string(),
                d.would_drop_packets.to_string(),
                d.baseline_entries.to_string(),
                age(now, d.last_seen_ns),
                d.location.clone(),
                match (d.macs.is_empty(), d.mac_learned) {
                    (true, _) => "-".into(),
                    (false, false) => d.macs.join(","),
                    (false, true) => format!("{} (learned)", d.macs.join(",")),
                },
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "DEVICE",
                "KIND",
                "ADDRESSES",
                "CRITICALITY",
                "MODE",
                "PKTS OUT/IN",
                "BYTES OUT/IN",
                "DROPPED",
                "WOULD-DROP",
                "BASELINE",
                "LAST SEEN",
                "LOCATION",
                "MAC"
            ],
            &table_rows
        )
    );
    if !unenrolled.is_empty() {
        let total = unenrolled.len();
        unenrolled.truncate(top);
        println!("\n{total} unenrolled addresses; the busiest:");
        let rows: Vec<Vec<String>> = unenrolled
            .iter()
            .map(|u| {
                vec![
                    u.address.to_string(),
                    format!("{}/{}", u.packets_sent, u.packets_received),
                    format!("{}/{}", u.bytes_sent, u.bytes_received),
                    age(now, u.last_seen_ns),
                ]
            })
            .collect();
        print!(
            "{}",
            table(
                &["ADDRESS", "PKTS OUT/IN", "BYTES OUT/IN", "LAST SEEN"],
                &rows
            )
        );
    }
    Ok(())
}

pub fn flows(paths: &Paths, device: Option<&str>, all: bool, json: bool) -> Result<()> {
    let maps = open_maps(paths)?;
    let inventory = Inventory::load(&paths.state)?;
    let mut rows = report::flow_rows(&maps, &inventory, !all)?;
    if let Some(name) = device {
        let addresses: Vec<std::net::IpAddr> = match inventory.find(name) {
            Ok(d) => d.spec.addresses.clone(),
            Err(_) => vec![name.parse().with_context(|| {
                format!("`{name}` is neither an enrolled device nor an IP address")
            })?],
        };
        rows.retain(|r| addresses.contains(&r.device_address));
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let now = monotonic_now_ns();
    let table_rows: Vec<Vec<String>> = rows
        .iter()
        .map(|f| {
            vec![
                f.device.clone(),
                f.direction.clone(),
                f.peer.clone(),
                format!("{}/{}", f.protocol, f.service_port),
                format!("{}/{}", f.packets_sent, f.packets_received),
                format!("{}/{}", f.bytes_sent, f.bytes_received),
                f.dropped_packets.to_string(),
                if f.in_baseline { "yes" } else { "no" }.into(),
                f.schedule.clone().unwrap_or_else(|| "-".into()),
                age(now, f.last_seen_ns),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "DEVICE",
                "DIR",
                "PEER",
                "SERVICE",
                "PKTS OUT/IN",
                "BYTES OUT/IN",
                "DROPPED",
                "BASELINE",
                "SCHEDULE",
                "LAST SEEN"
            ],
            &table_rows
        )
    );
    Ok(())
}

pub fn reasons(json: bool) -> Result<()> {
    if json {
        let rows: Vec<serde_json::Value> = Reason::ALL
            .iter()
            .map(|r| serde_json::json!({"number": *r as u8, "label": r.label(), "description": r.description()}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = Reason::ALL
        .iter()
        .map(|r| {
            vec![
                (*r as u8).to_string(),
                r.label().into(),
                r.description().into(),
            ]
        })
        .collect();
    print!("{}", table(&["#", "REASON", "MEANING"], &rows));
    Ok(())
}
