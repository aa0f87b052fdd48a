//! `monitor baseline`: export, compare, learning windows, import.

use anyhow::{Context, Result};
use monitor::{
    datapath::MapSet,
    state::{daemon::Paths, inventory::Inventory, modes::History},
    support::proto,
    view::report::table,
};

use super::{BaselineCommand, ExportFormat, open_maps};

pub fn baseline(paths: &Paths, command: BaselineCommand) -> Result<()> {
    use monitor::state::baseline::{BaselineFile, Record};
    let inventory = Inventory::load(&paths.state)?;
    let only = |device: Option<&str>| -> Result<Option<Vec<std::net::IpAddr>>> {
        device
            .map(|name| match inventory.find(name) {
                Ok(d) => Ok(d.spec.addresses.clone()),
                Err(_) => Ok(vec![name.parse().with_context(|| {
                    format!("`{name}` is neither an enrolled device nor an IP address")
                })?]),
            })
            .transpose()
    };
    // The live map, with the learned times the daemon's last save kept for entries the
    // map no longer times (restored after a reboot).
    let live = |maps: &MapSet| -> Result<BaselineFile> {
        let saved =
            BaselineFile::read(&paths.state.path().join(monitor::state::files::BASELINE)).ok();
        Ok(BaselineFile::from_map_keeping(
            &maps.baseline()?,
            saved.as_ref(),
        ))
    };
    let by_address = inventory.by_address();
    let name = |ip: &std::net::IpAddr| {
        by_address
            .get(ip)
            .map_or_else(|| ip.to_string(), |d| d.spec.name.clone())
    };
    let device_name = |ip: &std::net::IpAddr| by_address.get(ip).map(|d| d.spec.name.as_str());
    let line = |sign: &str, r: &Record| {
        format!(
            "{sign} {} {} {} {}/{}{}",
            name(&r.device),
            r.direction,
            name(&r.peer),
            proto::name(r.protocol),
            r.service_port,
            r.learned
                .as_deref()
                .map_or_else(String::new, |t| format!("  (learned {t})"))
        )
    };
    match command {
        BaselineCommand::Export {
            device,
            format,
            output,
        } => {
            let maps = open_maps(paths)?;
            let mut file = live(&maps)?;
            if let Some(addresses) = only(device.as_deref())? {
                file.entries.retain(|r| addresses.contains(&r.device));
            }
            let text = match format {
                ExportFormat::Json => serde_json::to_string_pretty(&file)?,
                ExportFormat::Yaml => {
                    monitor::view::baseline_policy::baseline_as_policy(&file, &inventory)?
                }
            };
            match output {
                Some(path) => {
                    std::fs::write(&path, text + "\n")
                        .with_context(|| format!("writing {}", path.display()))?;
                    println!("wrote {} entries to {}", file.entries.len(), path.display());
                }
                None => println!("{text}"),
            }
            Ok(())
        }
        BaselineCommand::Diff {
            snapshot,
            window: Some(window),
            device,
        } => {
            debug_assert!(snapshot.is_none());
            let maps = open_maps(paths)?;
            let history = History::load(&paths.state)?;
            let mut file = live(&maps)?;
            if let Some(addresses) = only(device.as_deref())? {
                file.entries.retain(|r| addresses.contains(&r.device));
            }
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
                .filter(|r| history.window_of(device_name(&r.device), r.window) == window)
                .collect();
            for r in &added {
                println!("{}", line("+", r));
            }
            println!("{} entries learned in window {window}", added.len());
            Ok(())
        }
        BaselineCommand::Diff {
            snapshot, device, ..
        } => {
            let snapshot = snapshot.context("give a snapshot file or --window N")?;
            let maps = open_maps(paths)?;
            let mut live = live(&maps)?;
            let mut old = BaselineFile::read(&snapshot)?;
            if let Some(addresses) = only(device.as_deref())? {
                live.entries.retain(|r| addresses.contains(&r.device));
                old.entries.retain(|r| addresses.contains(&r.device));
            }
            let (added, removed) = live.diff(&old);
            for r in &added {
                println!("{}", line("+", r));
            }
            for r in &removed {
                println!("{}", line("-", r));
            }
            println!(
                "{} new since the snapshot, {} gone",
                added.len(),
                removed.len()
            );
            Ok(())
        }
        BaselineCommand::Windows { json } => {
            let maps = open_maps(paths)?;
            let history = History::load(&paths.state)?;
            let file = live(&maps)?;
            let mut counts: std::collections::BTreeMap<u32, usize> = Default::default();
            for r in file.entries.iter().filter(|r| r.origin == "learned") {
                *counts
                    .entry(history.window_of(device_name(&r.device), r.window))
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
        BaselineCommand::Import { file } => {
            // The daemon restores the saved baseline at its start and saves the map while
            // it runs: an import beside it would be half-known to it.
            paths.refuse_while_running("baseline import")?;
            let mut maps = open_maps(paths)?;
            let file = BaselineFile::read(&file)?;
            let entries = file.map_entries();
            maps.insert_baseline(&entries)?;
            println!("imported {} baseline entries", entries.len());
            Ok(())
        }
    }
}
