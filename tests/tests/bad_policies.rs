//! Bad policy files: every kind is refused with its file, line (and column where the parser
//! gives one) and reason, by `monitor policy check` and by `Policy::load_dir`; a running
//! daemon handed each of them keeps enforcing the policy it had (checked with traffic).

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use monitor::{
    lab::{DNS, NTP, Outcome},
    policy::{MAX_POLICY_FILE_BYTES, Policy, PolicyError, Problem},
};
use monitor_common::maps::MAX_RULES_PER_SET;
use monitor_tests::harness::{Lab, TempDir, example_policy, monitor_bin, service};

/// One kind of bad policy: the files of the policy directory, and the one problem expected.
struct Case {
    kind: &'static str,
    files: Vec<(&'static str, String)>,
    file: &'static str,
    line: Option<usize>,
    column: Option<usize>,
    reason: &'static str,
}

const PUMP: &str =
    "devices:\n  - name: pump-1\n    kind: infusion-pump\n    addresses: [10.1.0.11]\n";

/// The pump, a rule about it (the text after `rules:\n  - `), nothing else.
fn with_rule(rule: &str) -> String {
    format!("{PUMP}rules:\n  - {rule}\n")
}

fn case(
    kind: &'static str,
    text: String,
    line: Option<usize>,
    column: Option<usize>,
    reason: &'static str,
) -> Case {
    Case {
        kind,
        files: vec![("ward.yaml", text)],
        file: "ward.yaml",
        line,
        column,
        reason,
    }
}

fn cases() -> Vec<Case> {
    let rule = |devices: &str, peer: &str, rest: &str| {
        with_rule(&format!(
            "devices: {devices}\n    peer: {peer}\n{rest}    action: allow"
        ))
    };
    let mut too_many = String::from(PUMP);
    too_many.push_str("rules:\n");
    for port in 1..=MAX_RULES_PER_SET + 1 {
        too_many.push_str(&format!(
            "  - devices: {{device: pump-1}}\n    peer: {{cidr: 10.20.0.10}}\n    protocol: tcp\n    ports: {port}\n    action: allow\n"
        ));
    }
    let mut oversized = String::from(PUMP);
    let comment = format!("# {}\n", "x".repeat(1000));
    while oversized.len() as u64 <= MAX_POLICY_FILE_BYTES {
        oversized.push_str(&comment);
    }
    vec![
        case(
            "YAML syntax error",
            format!("{PUMP}    notes: Alaris 8015, firmware: 12.1.2\n"),
            Some(5),
            Some(33),
            "mapping values are not allowed in this context",
        ),
        case(
            "unknown field",
            "devices:\n  - name: pump-1\n    kind: infusion-pump\n    adresses: [10.1.0.11]\n".into(),
            Some(4),
            Some(5),
            "unknown field `adresses`",
        ),
        case(
            "wrong type",
            "devices:\n  - name: pump-1\n    kind: infusion-pump\n    addresses: 10.1.0.11\n".into(),
            Some(4),
            Some(16),
            "invalid type: string \"10.1.0.11\", expected a sequence",
        ),
        case(
            "bad IP address",
            "devices:\n  - name: pump-1\n    kind: infusion-pump\n    addresses: [10.1.0.300]\n".into(),
            Some(4),
            Some(17),
            "invalid IP address syntax",
        ),
        case(
            "bad CIDR",
            rule("{device: pump-1}", "{cidr: 10.20.0.0/33}", ""),
            Some(6),
            None,
            "peer: `10.20.0.0/33` is not an address or address block",
        ),
        case(
            "unknown device in a rule",
            rule("{device: pump-9}", "{any: true}", ""),
            Some(6),
            None,
            "devices: no device is named `pump-9`",
        ),
        case(
            "unknown group",
            rule("{group: pumps}", "{any: true}", ""),
            Some(6),
            None,
            "devices: no group is named `pumps`",
        ),
        case(
            "group member that is no device",
            format!("{PUMP}groups:\n  - name: pumps\n    members: [pump-1, pump-2]\n"),
            Some(6),
            Some(5),
            "group `pumps` lists `pump-2`, which is no device",
        ),
        case(
            "duplicate device name",
            format!("{PUMP}  - name: pump-1\n    kind: infusion-pump\n    addresses: [10.1.0.12]\n"),
            Some(5),
            Some(5),
            "device `pump-1` is already defined at",
        ),
        case(
            "duplicate address across devices",
            format!("{PUMP}  - name: pump-2\n    kind: infusion-pump\n    addresses: [10.1.0.11]\n"),
            Some(5),
            Some(5),
            "address 10.1.0.11 of `pump-2` is already the address of `pump-1`",
        ),
        case(
            "life-critical device enforced without confirm-enforce",
            format!("{PUMP}    criticality: life-critical\n    mode: enforce\n"),
            Some(2),
            Some(5),
            "is life-critical and set to `mode: enforce` without `confirm-enforce: true`",
        ),
        case(
            "confirm-enforce without enforce",
            format!("{PUMP}    mode: audit\n    confirm-enforce: true\n"),
            Some(2),
            Some(5),
            "has `confirm-enforce: true` but its mode is not `enforce`",
        ),
        case(
            "port range backwards",
            rule("{device: pump-1}", "{any: true}", "    protocol: tcp\n    ports: \"8100-8000\"\n"),
            Some(6),
            None,
            "ports: port range `8100-8000` runs backwards (8100 > 8000)",
        ),
        case(
            "port not a number",
            rule("{device: pump-1}", "{any: true}", "    protocol: tcp\n    ports: [443, https]\n"),
            Some(6),
            None,
            "ports: `https` is not a port or a port range",
        ),
        case(
            "unknown protocol",
            rule("{device: pump-1}", "{any: true}", "    protocol: tcpp\n"),
            Some(6),
            None,
            "protocol `tcpp` is not tcp, udp, sctp, icmp, icmpv6, any or a protocol number",
        ),
        case(
            "endpoint naming nothing",
            rule("{device: pump-1}", "{}", ""),
            Some(6),
            None,
            "peer: names nothing",
        ),
        case(
            "endpoint naming two things",
            rule("{device: pump-1, kind: infusion-pump}", "{any: true}", ""),
            Some(6),
            None,
            "devices: names more than one of device, group, kind, cidr, any",
        ),
        case(
            "`devices:` given a cidr",
            rule("{cidr: 10.1.0.0/24}", "{any: true}", ""),
            Some(6),
            None,
            "`devices` must name devices",
        ),
        case(
            "bad MAC",
            format!("{PUMP}    mac: \"00:1b:44:11:3a\"\n"),
            Some(2),
            Some(5),
            "MAC `00:1b:44:11:3a` is not six hex bytes",
        ),
        case(
            "device without addresses",
            "devices:\n  - name: pump-1\n    kind: infusion-pump\n    addresses: []\n".into(),
            Some(2),
            Some(5),
            "device `pump-1` has no addresses",
        ),
        case(
            "invalid device name",
            "devices:\n  - name: \"pump 1\"\n    kind: infusion-pump\n    addresses: [10.1.0.11]\n".into(),
            Some(2),
            Some(5),
            "device name `pump 1` must be non-empty and use only letters, digits",
        ),
        Case {
            kind: "defaults in two files",
            files: vec![
                ("a.yaml", format!("defaults:\n  mode: learn\n{PUMP}")),
                ("b.yaml", "# site-wide\ndefaults:\n  unenrolled: drop\n".into()),
            ],
            file: "b.yaml",
            line: Some(2),
            column: Some(1),
            reason: "`defaults` is already set in",
        },
        case(
            "invalid mode",
            "defaults:\n  mode: enforcing\n".into(),
            Some(2),
            Some(9),
            "unknown variant `enforcing`, expected one of `learn`, `audit`, `enforce`",
        ),
        case(
            "oversized file",
            oversized,
            None,
            None,
            "-byte limit; refused unread",
        ),
        case(
            "too many rules for one device toward one prefix",
            too_many,
            Some(6 + 5 * MAX_RULES_PER_SET),
            None,
            "rules apply to 10.1.0.11 toward",
        ),
        Case {
            kind: "JSON syntax error",
            files: vec![(
                "ward.json",
                "{\"devices\": [\n  {\"name\": \"pump-1\", \"kind\": \"infusion-pump\"\n   \"addresses\": [\"10.1.0.11\"]}\n]}\n".into(),
            )],
            file: "ward.json",
            line: Some(3),
            column: Some(4),
            reason: "expected `,` or `}`",
        },
    ]
}

/// `file:line:column: ` as problems print it.
fn location(dir: &Path, case: &Case) -> String {
    let mut text = dir.join(case.file).display().to_string();
    if let Some(line) = case.line {
        text.push_str(&format!(":{line}"));
        if let Some(column) = case.column {
            text.push_str(&format!(":{column}"));
        }
    }
    text.push_str(": ");
    text
}

fn write_files(dir: &Path, files: &[(&str, String)]) {
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap_or_else(|e| panic!("writing {name}: {e}"));
    }
}

fn load_problems(dir: &Path) -> Vec<Problem> {
    match Policy::load_dir(dir) {
        Ok(_) => panic!("the policy in {} was accepted", dir.display()),
        Err(PolicyError::Invalid(problems)) => problems,
        Err(other) => panic!("unexpected error: {other}"),
    }
}

#[test]
fn every_kind_of_bad_policy_is_refused_with_its_place_and_reason() {
    let cases = cases();
    let kinds: std::collections::BTreeSet<_> = cases.iter().map(|c| c.kind).collect();
    assert!(
        kinds.len() >= 15 && kinds.len() == cases.len(),
        "{} distinct kinds",
        kinds.len()
    );
    for case in &cases {
        let dir = TempDir::new(&std::env::temp_dir(), "mbad");
        write_files(&dir.0, &case.files);
        // The library.
        let problems = load_problems(&dir.0);
        assert_eq!(
            problems.len(),
            1,
            "{}: expected one problem, got {problems:#?}",
            case.kind
        );
        let problem = &problems[0];
        assert_eq!(
            problem.place.file,
            dir.0.join(case.file),
            "{}: file of {problem}",
            case.kind
        );
        assert_eq!(
            problem.place.line, case.line,
            "{}: line of {problem}",
            case.kind
        );
        assert_eq!(
            problem.place.column, case.column,
            "{}: column of {problem}",
            case.kind
        );
        assert!(
            problem.message.contains(case.reason),
            "{}: reason of {problem}",
            case.kind
        );
        // The CLI.
        let output = Command::new(monitor_bin())
            .args(["policy", "check"])
            .arg(&dir.0)
            .output()
            .unwrap_or_else(|e| panic!("running monitor policy check: {e}"));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            !output.status.success(),
            "{}: `monitor policy check` accepted it:\n{text}",
            case.kind
        );
        let place = location(&dir.0, case);
        assert!(
            text.lines()
                .any(|l| l.contains(&place) && l.contains(case.reason)),
            "{}: `monitor policy check` does not say `{place}... {}`:\n{text}",
            case.kind,
            case.reason
        );
    }
}

#[test]
fn a_policy_with_only_warnings_passes_the_check_and_prints_them() {
    let dir = TempDir::new(&std::env::temp_dir(), "mwarn");
    let rule = "devices: {device: pump-1}\n    peer: {cidr: 10.20.0.53}\n    protocol: udp\n    ports: 53\n    action:";
    let text = format!("{PUMP}rules:\n  - {rule} allow\n  - {rule} deny\n");
    write_files(&dir.0, &[("ward.yaml", text)]);
    let policy = Policy::load_dir(&dir.0).unwrap_or_else(|e| panic!("refused: {e}"));
    assert_eq!(policy.warnings.len(), 1, "{:?}", policy.warnings);
    assert_eq!(policy.warnings[0].place.line, Some(11));
    let output = Command::new(monitor_bin())
        .args(["policy", "check"])
        .arg(&dir.0)
        .output()
        .unwrap_or_else(|e| panic!("running monitor policy check: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let place = format!("{}:11: ", dir.0.join("ward.yaml").display());
    assert!(
        stdout.lines().any(|l| l.starts_with("warning: ")
            && l.contains(&place)
            && l.contains("contradicts the rule at")),
        "{stdout}"
    );
    assert!(stdout.contains("1 warnings"), "{stdout}");
}

/// Replaces the files of `dir` with `files`: each arrives whole (renamed into place), and
/// the old ones go only after the new ones are there, so the daemon never sees an empty
/// (and so valid) directory in between.
fn replace_policy(dir: &Path, files: &[(&str, String)]) {
    for (name, text) in files {
        let partial = dir.join(format!("{name}.partial"));
        std::fs::write(&partial, text).unwrap_or_else(|e| panic!("writing {name}: {e}"));
        std::fs::rename(&partial, dir.join(name))
            .unwrap_or_else(|e| panic!("renaming {name}: {e}"));
    }
    let keep: Vec<PathBuf> = files.iter().map(|(name, _)| dir.join(name)).collect();
    for entry in std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{e}"))
        .flatten()
    {
        if !keep.contains(&entry.path()) {
            std::fs::remove_file(entry.path())
                .unwrap_or_else(|e| panic!("removing {}: {e}", entry.path().display()));
        }
    }
}

#[test]
fn a_running_daemon_keeps_its_policy_through_every_bad_file() {
    const QUICK: Duration = Duration::from_millis(300);
    let started = Instant::now();
    let mut lab = Lab::new(&example_policy());
    lab.start(&["--mode", "learn"]);
    lab.assert_normal_traffic(Outcome::Answered);
    lab.cli_ok(&["mode", "enforce"]);
    let baseline = || lab.udp("badge-reader-icu3", service("dns", DNS), QUICK);
    let forbidden = || lab.udp("badge-reader-icu3", service("ntp", NTP), QUICK);
    assert_eq!(
        forbidden(),
        Outcome::TimedOut,
        "not enforcing before the bad files"
    );
    let dir = lab.policy_dir.0.clone();
    for case in cases() {
        let seen = lab.daemon_log().len();
        replace_policy(&dir, &case.files);
        lab.cli_ok(&["reload"]);
        let place = location(&dir, &case);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let log = lab.daemon_log();
            let new = log.get(seen..).unwrap_or_default();
            if new
                .lines()
                .any(|l| l.contains(&place) && l.contains(case.reason))
            {
                assert!(
                    new.contains("the running policy stays"),
                    "{}:\n{new}",
                    case.kind
                );
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{}: the daemon log does not name `{place}... {}`:\n{new}",
                case.kind,
                case.reason
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(
            baseline(),
            Outcome::Answered,
            "{}: a baseline flow was dropped",
            case.kind
        );
        assert_eq!(
            forbidden(),
            Outcome::TimedOut,
            "{}: the old policy is no longer enforced",
            case.kind
        );
    }
    // The good policy again: it loads, and enforcement carries on.
    let seen = lab.daemon_log().len();
    replace_policy(&dir, &[("ward.yaml", example_policy())]);
    lab.cli_ok(&["reload"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !lab
        .daemon_log()
        .get(seen..)
        .unwrap_or_default()
        .contains("applied")
    {
        assert!(
            Instant::now() < deadline,
            "the good policy was not applied:\n{}",
            lab.daemon_log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    lab.assert_normal_traffic(Outcome::Answered);
    assert_eq!(forbidden(), Outcome::TimedOut);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}
