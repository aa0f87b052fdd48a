//! The device map as Graphviz DOT (`dot -Tsvg`).

use std::{collections::BTreeSet, fmt::Write as _};

use super::model::{DeviceMap, Protection};

fn dot_id(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The map as a Graphviz graph: devices in a cluster per ward, coloured by protection;
/// an edge per peer and service, violations dashed red; peers not enrolled as ellipses.
pub fn graph(map: &DeviceMap) -> String {
    let mut out = String::from(
        "digraph device_map {\n  graph [rankdir=LR, fontname=\"Helvetica\", label=\"Device map\"];\n  node [shape=box, style=\"rounded,filled\", fontname=\"Helvetica\", fontsize=10];\n  edge [fontname=\"Helvetica\", fontsize=9];\n",
    );
    let enrolled: BTreeSet<&str> = map
        .wards
        .iter()
        .flat_map(|w| &w.devices)
        .map(|d| d.name.as_str())
        .collect();
    for (i, ward) in map.wards.iter().enumerate() {
        let _ = writeln!(
            out,
            "  subgraph cluster_{i} {{\n    label={};",
            dot_id(&ward.name)
        );
        for d in &ward.devices {
            let fill = match d.protection {
                Protection::Enforced => "#d5efdb",
                Protection::Audited => "#fbe7c6",
                Protection::Learning => "#d6e4f7",
                Protection::BreakGlass => "#ead9f7",
            };
            let label = format!(
                "{}\\n{}\\n{} · {}{}",
                d.name,
                d.kind,
                d.criticality,
                d.protection.label(),
                d.vendor
                    .as_ref()
                    .map_or_else(String::new, |v| format!("\\n{v}"))
            );
            let _ = writeln!(
                out,
                "    {} [label=\"{}\", fillcolor=\"{fill}\"{}];",
                dot_id(&d.name),
                label.replace('"', "\\\""),
                if d.flags.iter().any(|f| f == "violations") {
                    ", color=\"#c62828\", penwidth=2"
                } else {
                    ""
                }
            );
        }
        out.push_str("  }\n");
    }
    let mut others: BTreeSet<String> = BTreeSet::new();
    let mut edges: BTreeSet<(String, String, String, bool)> = BTreeSet::new();
    for d in map.wards.iter().flat_map(|w| &w.devices) {
        for group in &d.peers {
            for p in &group.peers {
                if !enrolled.contains(p.name.as_str()) {
                    others.insert(p.name.clone());
                }
                let (from, to) = match group.role.as_str() {
                    "client" => (p.name.clone(), d.name.clone()),
                    _ => (d.name.clone(), p.name.clone()),
                };
                edges.insert((from, to, p.services.join(", "), false));
            }
        }
        for v in &d.violations.top {
            if !enrolled.contains(v.peer.as_str()) {
                others.insert(v.peer.clone());
            }
            let (from, to) = match v.role.as_str() {
                "client" => (v.peer.clone(), d.name.clone()),
                _ => (d.name.clone(), v.peer.clone()),
            };
            edges.insert((from, to, v.service.clone(), true));
        }
    }
    for other in &others {
        let _ = writeln!(
            out,
            "  {} [shape=ellipse, style=\"dashed\", label=\"{}\\n(not enrolled)\"];",
            dot_id(other),
            other.replace('"', "\\\"")
        );
    }
    for (from, to, label, violation) in &edges {
        let _ = writeln!(
            out,
            "  {} -> {} [label={}{}];",
            dot_id(from),
            dot_id(to),
            dot_id(label),
            if *violation {
                ", color=\"#c62828\", style=dashed, fontcolor=\"#c62828\""
            } else {
                ""
            }
        );
    }
    out.push_str("}\n");
    out
}
