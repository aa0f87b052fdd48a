//! The docs name every verdict reason with its number and meaning, as the code has them.

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
    assert_eq!(
        rows.len(),
        Reason::COUNT,
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
