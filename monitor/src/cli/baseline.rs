//! `monitor baseline`: export, compare, learning windows, import.

use std::{net::IpAddr, path::Path};

use anyhow::{Context, Result};
use monitor::{
    state::{
        baseline::{BaselineFile, Record},
        daemon::Paths,
        files,
        inventory::Inventory,
        modes::History,
    },
    support::proto,
    view::report::table,
};

use super::{BaselineCommand, ExportFormat, open_maps};

pub fn baseline(paths: &Paths, command: BaselineCommand) -> Result<()> {
    let names = Names {
        inventory: Inventory::load(&paths.state)?,
    };
    match command {
        BaselineCommand::Export {
            device,
            format,
            output,
        } => export(paths, &names, device.as_deref(), format, output.as_deref()),
        BaselineCommand::Diff {
            window: Some(window),
            device,
            ..
        } => diff_window(paths, &names, window, device.as_deref()),
        BaselineCommand::Diff {
            snapshot, device, ..
        } => diff_snapshot(
            paths,
            &names,
            &snapshot.context("give a snapshot file or --window N")?,
            device.as_deref(),
        ),
        BaselineCommand::Windows { json } => windows(paths, &names, json),
        BaselineCommand::Import { file } => import(paths, &file),
    }
}

/// Devices by address, for people.
struct Names {
    inventory: Inventory,
}

impl Names {
    /// The addresses of `device` (a name or an address), when one is given.
    fn only(&self, device: Option<&str>) -> Result<Option<Vec<IpAddr>>> {
        device
            .map(|name| match self.inventory.find(name) {
                Ok(d) => Ok(d.spec.addresses.clone()),
                Err(_) => Ok(vec![name.parse().with_context(|| {
                    format!("`{name}` is neither an enrolled device nor an IP address")
                })?]),
            })
            .transpose()
    }

    fn name(&self, ip: &IpAddr) -> String {
        self.device(ip)
            .map_or_else(|| ip.to_string(), str::to_owned)
    }

    fn device(&self, ip: &IpAddr) -> Option<&str> {
        self.inventory
            .devices
            .iter()
            .find(|d| d.spec.addresses.contains(ip))
            .map(|d| d.spec.name.as_str())
    }

    /// `+ device out peer tcp/443  (learned ...)  [mon-fri 07-19]`.
    fn line(&self, sign: &str, r: &Record) -> String {
        format!(
            "{sign} {} {} {} {}/{}{}{}",
            self.name(&r.device),
            r.direction,
            self.name(&r.peer),
            proto::name(r.protocol),
            r.service_port,
            r.learned
                .as_deref()
                .map_or_else(String::new, |t| format!("  (learned {t})")),
            r.schedule
                .as_deref()
                .map_or_else(String::new, |s| format!("  [{s}]"))
        )
    }
}

/// The live map, with the learned times the daemon's last save kept for entries the map no
/// longer times (restored after a reboot), limited to `device`'s entries.
fn live(paths: &Paths, names: &Names, device: Option<&str>) -> Result<BaselineFile> {
    let maps = open_maps(paths)?;
    let kept = BaselineFile::read(&paths.state.path().join(files::BASELINE))
        .ok()
        .map(|saved| monitor::state::baseline::KeptTimes::of(&saved));
    let mut file = BaselineFile::from_map_keeping(&maps.baseline()?, kept.as_ref());
    if let Some(addresses) = names.only(device)? {
        file.entries.retain(|r| addresses.contains(&r.device));
    }
    Ok(file)
}

fn export(
    paths: &Paths,
    names: &Names,
    device: Option<&str>,
    format: ExportFormat,
    output: Option<&Path>,
) -> Result<()> {
    let file = live(paths, names, device)?;
    let text = match format {
        ExportFormat::Json => serde_json::to_string_pretty(&file)?,
        ExportFormat::Yaml => {
            monitor::view::baseline_policy::baseline_as_policy(&file, &names.inventory)?
        }
    };
    match output {
        Some(path) => {
            std::fs::write(path, text + "\n")
                .with_context(|| format!("writing {}", path.display()))?;
            println!("wrote {} entries to {}", file.entries.len(), path.display());
        }
        None => println!("{text}"),
    }
    Ok(())
}

/// What a learning window added.
fn diff_window(paths: &Paths, names: &Names, window: u32, device: Option<&str>) -> Result<()> {
    let history = History::load(&paths.state)?;
    let file = live(paths, names, device)?;
    let opened = history.window(window).with_context(|| {
        format!("no learning window {window} in the mode history (see `monitor baseline windows`)")
    })?;
    println!(
        "learning window {window}: opened by `{}` ({}, {})",
        opened.command(),
        opened.who,
        opened.time
    );
    let added: Vec<&Record> = file
        .entries
        .iter()
        .filter(|r| r.origin == "learned")
        .filter(|r| history.window_of(names.device(&r.device), r.window) == window)
        .collect();
    for r in &added {
        println!("{}", names.line("+", r));
    }
    println!("{} entries learned in window {window}", added.len());
    Ok(())
}

/// What the live baseline has that a snapshot lacks, and the reverse.
fn diff_snapshot(
    paths: &Paths,
    names: &Names,
    snapshot: &Path,
    device: Option<&str>,
) -> Result<()> {
    let live = live(paths, names, device)?;
    let mut old = BaselineFile::read(snapshot)?;
    if let Some(addresses) = names.only(device)? {
        old.entries.retain(|r| addresses.contains(&r.device));
    }
    let (added, removed) = live.diff(&old);
    for r in &added {
        println!("{}", names.line("+", r));
    }
    for r in &removed {
        println!("{}", names.line("-", r));
    }
    // A flow seen at new hours of the week: its schedule then and now.
    let rescheduled = live.schedule_changes(&old);
    for (now, before) in &rescheduled {
        println!(
            "{}  (was [{}])",
            names.line("~", now),
            before.schedule.as_deref().unwrap_or("")
        );
    }
    println!(
        "{} new since the snapshot, {} gone, {} with another schedule",
        added.len(),
        removed.len(),
        rescheduled.len()
    );
    Ok(())
}

/// The learning windows, with the entries each added.
fn windows(paths: &Paths, names: &Names, json: bool) -> Result<()> {
    let history = History::load(&paths.state)?;
    let file = live(paths, names, None)?;
    let mut counts: std::collections::BTreeMap<u32, usize> = Default::default();
    for r in file.entries.iter().filter(|r| r.origin == "learned") {
        *counts
            .entry(history.window_of(names.device(&r.device), r.window))
            .or_default() += 1;
    }
    let mut rows = Vec::new();
    for record in history.records.iter().filter(|r| r.window.is_some()) {
        let window = record.window.unwrap_or_default();
        rows.push(serde_json::json!({
            "window": window,
            "opened": record.time,
            "who": record.who,
            "command": record.command(),
            "entries": counts.remove(&window).unwrap_or(0),
        }));
    }
    if let Some(unrecorded) = counts.remove(&0) {
        rows.insert(
            0,
            serde_json::json!({
                "window": 0,
                "opened": "",
                "who": "",
                "command": "(learned before windows were recorded)",
                "entries": unrecorded,
            }),
        );
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let table_rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            ["window", "opened", "who", "command", "entries"]
                .iter()
                .map(|k| match &r[*k] {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect()
        })
        .collect();
    print!(
        "{}",
        table(
            &["WINDOW", "OPENED", "WHO", "COMMAND", "ENTRIES"],
            &table_rows
        )
    );
    Ok(())
}

fn import(paths: &Paths, file: &Path) -> Result<()> {
    // The daemon restores the saved baseline at its start and saves the map while it runs:
    // an import beside it would be half-known to it.
    paths.refuse_while_running("baseline import")?;
    let mut maps = open_maps(paths)?;
    let file = BaselineFile::read(file)?;
    let entries = file.map_entries();
    maps.insert_baseline(&entries)?;
    println!("imported {} baseline entries", entries.len());
    Ok(())
}
