//! The docs name every verdict reason with its number and meaning, and every metric family
//! with its type and labels, as the code has them; the Grafana dashboard queries only
//! those families and their labels, each filtered by its Router variable; the alert rules
//! read only those families and their labels.

use monitor_common::Reason;

#[test]
fn readme_lists_every_reason_as_the_code_numbers_it() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .unwrap_or_else(|e| panic!("reading README.md: {e}"));
    let rows: Vec<&str> = readme
        .lines()
        .filter(|l| {
            l.starts_with("| ")
                && l.split('|')
                    .nth(1)
                    .is_some_and(|n| n.trim().parse::<u8>().is_ok())
        })
        .collect();
    // One row per reason (numbers may leave a gap: `Reason::COUNT` counts counter slots).
    assert_eq!(
        rows.len(),
        Reason::ALL.len(),
        "README reason table rows: {rows:#?}"
    );
    for reason in Reason::ALL {
        let expected = format!(
            "| {} | {} | {} |",
            *reason as u8,
            reason.label(),
            reason.description()
        );
        assert!(
            rows.contains(&expected.as_str()),
            "README.md lacks the row\n{expected}\n(the table must match Reason in monitor-common)"
        );
    }
}

#[test]
fn readme_metric_tables_list_exactly_the_metric_families() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .unwrap_or_else(|e| panic!("reading README.md: {e}"));
    let problems = monitor::observe::families::check::readme(&readme);
    assert!(
        problems.is_empty(),
        "README.md's metric tables disagree with monitor/src/observe/families:\n{}",
        problems.join("\n")
    );
}

#[test]
fn dashboard_queries_only_metric_families_and_their_labels() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../dashboards/monitor.json");
    let dashboard = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let problems = monitor::observe::families::check::dashboard(&dashboard);
    assert!(
        problems.is_empty(),
        "{path} disagrees with monitor/src/observe/families:\n{}",
        problems.join("\n")
    );
}

#[test]
fn alert_rules_read_only_metric_families_and_their_labels() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../prometheus/alerts.yml");
    let rules = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let problems = monitor::observe::families::check::alert_rules(&rules);
    assert!(
        problems.is_empty(),
        "{path} disagrees with monitor/src/observe/families:\n{}",
        problems.join("\n")
    );
}
