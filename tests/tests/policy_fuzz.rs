//! Policy fuzzing: random and mutated policy files never crash the policy loader, and a
//! rejected policy never changes the running one.
//!
//! Seeds: policies/ward.yaml and the YAML examples of README.md. Mutations: byte changes,
//! deleted, duplicated and swapped lines, values swapped for others (numbers out of range,
//! wrong types, anchors, tags, huge strings), truncation, and random YAML structures built
//! from the policy vocabulary. `POLICY_FUZZ_CASES` sets the number of cases (default 400),
//! `POLICY_FUZZ_SEED` the random sequence.

use std::{
    panic::{AssertUnwindSafe, catch_unwind},
    path::{Path, PathBuf},
};

use monitor::{Datapath, Maps, policy::Policy, state::StateDir};
use monitor_tests::harness::{TempDir, example_policy};

/// xorshift64*: small, deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}={v} is not a number"))
        })
        .unwrap_or(default)
}

const VALUES: &[&str] = &[
    "0",
    "-1",
    "65536",
    "99999999999999999999",
    "1.5",
    "\"\"",
    "[]",
    "{}",
    "null",
    "~",
    "true",
    "10.10.1.11",
    "10.10.1.11/33",
    "::1",
    "fd00::/129",
    "300.1.1.1",
    "tcp",
    "icmpv6",
    "any",
    "\"8000-7000\"",
    "\"1-65535\"",
    "[443, \"x\"]",
    "life-critical",
    "enforce",
    "inherit",
    "allow",
    "deny",
    "in",
    "out",
    "\"00:09:fb:12:34\"",
    "&anchor x",
    "*anchor",
    "!!binary aGk=",
    "{device: nobody}",
    "{group: nogroup}",
    "{kind: toaster}",
    "{cidr: 0.0.0.0/0}",
    "{any: false}",
    "\"\\u0000\"",
    "'unterminated",
    "\"a\\\"b\"",
    "|\n  block",
    ">-\n  folded",
];

const KEYS: &[&str] = &[
    "devices",
    "groups",
    "rules",
    "defaults",
    "name",
    "kind",
    "addresses",
    "mac",
    "location",
    "criticality",
    "owner",
    "notes",
    "mode",
    "confirm-enforce",
    "members",
    "kinds",
    "description",
    "peer",
    "protocol",
    "ports",
    "direction",
    "action",
    "unenrolled",
    "site",
    "building",
    "floor",
    "ward",
    "room",
    "vlan",
    "device",
    "group",
    "cidr",
    "any",
    "unknown-key",
];

/// A random YAML value from the policy vocabulary, `depth` levels deep at most.
fn random_yaml(rng: &mut Rng, depth: usize, indent: usize) -> String {
    let pad = " ".repeat(indent);
    match if depth == 0 { 0 } else { rng.below(3) } {
        0 => (*rng.pick(VALUES)).to_string(),
        1 => {
            let mut s = String::new();
            for _ in 0..1 + rng.below(3) {
                s.push_str(&format!(
                    "\n{pad}- {}",
                    random_yaml(rng, depth - 1, indent + 2).trim_start()
                ));
            }
            s
        }
        _ => {
            let mut s = String::new();
            for _ in 0..1 + rng.below(4) {
                let key = rng.pick(KEYS);
                s.push_str(&format!(
                    "\n{pad}{key}: {}",
                    random_yaml(rng, depth - 1, indent + 2)
                ));
            }
            s
        }
    }
}

fn mutate(rng: &mut Rng, seed: &str) -> String {
    let mut text = seed.to_string();
    for _ in 0..1 + rng.below(4) {
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        if lines.is_empty() {
            lines.push(String::new());
        }
        let i = rng.below(lines.len());
        match rng.below(9) {
            0 => {
                lines.remove(i);
            }
            1 => {
                let line = lines[i].clone();
                lines.insert(i, line);
            }
            2 => {
                let j = rng.below(lines.len());
                lines.swap(i, j);
            }
            3 => {
                // Swap a value for another.
                if let Some(colon) = lines[i].find(": ") {
                    let value = *rng.pick(VALUES);
                    lines[i] = format!("{}: {value}", &lines[i][..colon]);
                }
            }
            4 => {
                // Swap two lines' values.
                let j = rng.below(lines.len());
                if let (Some(a), Some(b)) = (lines[i].find(": "), lines[j].find(": ")) {
                    let (va, vb) = (lines[i][a + 2..].to_string(), lines[j][b + 2..].to_string());
                    lines[i] = format!("{}: {vb}", &lines[i][..a]);
                    lines[j] = format!("{}: {va}", &lines[j][..b]);
                }
            }
            5 => {
                let indent = lines[i].len() - lines[i].trim_start().len();
                let key = rng.pick(KEYS);
                let value = random_yaml(rng, 3, indent + 2);
                lines.insert(i, format!("{}{key}: {value}", " ".repeat(indent)));
            }
            6 => {
                let mut bytes = lines[i].clone().into_bytes();
                if !bytes.is_empty() {
                    let k = rng.below(bytes.len());
                    bytes[k] = match rng.below(4) {
                        0 => b' ',
                        1 => b'\t',
                        2 => *rng.pick(b":-[]{}&*!|>'\"#%@`,?"),
                        _ => (rng.next() & 0x7f) as u8,
                    };
                }
                lines[i] = String::from_utf8_lossy(&bytes).into_owned();
            }
            7 => {
                lines.truncate(i);
            }
            _ => {
                // A huge value.
                if let Some(colon) = lines[i].find(": ") {
                    lines[i] = format!(
                        "{}: {}",
                        &lines[i][..colon],
                        "x".repeat(1 + rng.below(100_000))
                    );
                }
            }
        }
        text = lines.join("\n");
        text.push('\n');
    }
    text
}

/// The YAML examples of README.md's policy section.
fn readme_examples() -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .unwrap_or_else(|e| panic!("README.md: {e}"));
    let blocks: Vec<String> = readme
        .split("```yaml\n")
        .skip(1)
        .filter_map(|b| b.split("```").next().map(str::to_string))
        .collect();
    assert!(
        blocks.len() >= 2,
        "README.md has fewer YAML examples than expected"
    );
    blocks
}

/// One policy text that the loader must survive; returns whether it was accepted.
fn load_survives(sources: &[(PathBuf, String)]) -> bool {
    match catch_unwind(AssertUnwindSafe(|| Policy::from_sources(sources))) {
        Ok(result) => result.is_ok(),
        Err(_) => {
            let dump: String = sources
                .iter()
                .map(|(p, t)| format!("--- {}\n{t}\n", p.display()))
                .collect();
            panic!("Policy::from_sources panicked on:\n{dump}");
        }
    }
}

fn cases() -> Vec<Vec<(PathBuf, String)>> {
    let count = env_number("POLICY_FUZZ_CASES", 400);
    let mut rng = Rng(env_number("POLICY_FUZZ_SEED", 0x5eed_1234_abcd_0001) | 1);
    let ward = example_policy();
    let examples = readme_examples();
    let mut out = Vec::new();
    for n in 0..count {
        let sources = match n % 4 {
            0 | 1 => vec![(PathBuf::from("ward.yaml"), mutate(&mut rng, &ward))],
            2 => {
                let example = rng.pick(&examples).clone();
                vec![
                    (PathBuf::from("a.yaml"), ward.clone()),
                    (PathBuf::from("b.yaml"), mutate(&mut rng, &example)),
                ]
            }
            _ => vec![(PathBuf::from("random.yaml"), random_yaml(&mut rng, 4, 0))],
        };
        out.push(sources);
    }
    out
}

#[test]
fn mutated_and_random_policies_never_crash_the_loader() {
    let mut accepted = 0;
    let cases = cases();
    for sources in &cases {
        if load_survives(sources) {
            accepted += 1;
        }
    }
    // Both outcomes occur: the mutations are neither all harmless nor all fatal.
    assert!(
        accepted > 0 && accepted < cases.len(),
        "{accepted} of {} accepted",
        cases.len()
    );
}

/// What a rejected policy must not change.
fn snapshot(datapath: &Datapath, state: &Path) -> String {
    let maps = datapath.maps();
    format!(
        "config {:?}\ndevices {:?}\nrules {:?}\ninventory {}",
        maps.config().unwrap_or_else(|e| panic!("config: {e}")),
        maps.devices().unwrap_or_else(|e| panic!("devices: {e}")),
        maps.rules().unwrap_or_else(|e| panic!("rules: {e}")),
        std::fs::read_to_string(state.join("inventory.json")).unwrap_or_default(),
    )
}

#[test]
fn a_rejected_policy_never_changes_the_running_one() {
    let mut datapath =
        Datapath::load(&Maps::Private).unwrap_or_else(|e| panic!("loading the datapath: {e:?}"));
    let state_dir = TempDir::new(&std::env::temp_dir(), "mfzstate");
    let policy_dir = TempDir::new(&std::env::temp_dir(), "mfzpolicy");
    let state = StateDir::new(state_dir.0.clone());
    let file = policy_dir.0.join("ward.yaml");
    std::fs::write(&file, example_policy()).unwrap_or_else(|e| panic!("{e}"));
    monitor::daemon::apply_policy(&mut datapath, &state, &policy_dir.0)
        .unwrap_or_else(|e| panic!("the example policy: {e:#}"));
    let good = snapshot(&datapath, &state_dir.0);
    assert!(
        !datapath
            .maps()
            .devices()
            .unwrap_or_else(|e| panic!("{e}"))
            .is_empty()
    );

    let (mut rejected, mut applied) = (0, 0);
    for sources in cases() {
        // Only single-file cases go through the directory (one file, like an operator's edit).
        if sources.len() != 1 {
            continue;
        }
        let before = snapshot(&datapath, &state_dir.0);
        std::fs::write(&file, &sources[0].1).unwrap_or_else(|e| panic!("{e}"));
        let result = catch_unwind(AssertUnwindSafe(|| {
            monitor::daemon::apply_policy(&mut datapath, &state, &policy_dir.0)
        }))
        .unwrap_or_else(|_| panic!("apply_policy panicked on:\n{}", sources[0].1));
        match result {
            Err(e) => {
                rejected += 1;
                let after = snapshot(&datapath, &state_dir.0);
                assert_eq!(
                    after, before,
                    "a rejected policy ({e:#}) changed the running policy; the policy was:\n{}",
                    sources[0].1
                );
            }
            Ok(_) => {
                applied += 1;
                // Back to the good policy for the next case.
                std::fs::write(&file, example_policy()).unwrap_or_else(|e| panic!("{e}"));
                monitor::daemon::apply_policy(&mut datapath, &state, &policy_dir.0)
                    .unwrap_or_else(|e| panic!("re-applying the example policy: {e:#}"));
            }
        }
    }
    assert!(
        rejected > 20,
        "only {rejected} mutants were rejected ({applied} applied)"
    );
    // After all of it, re-applying the good policy gives the good state back (slots and
    // devices are stable; the generation moved on with every accepted install).
    std::fs::write(&file, example_policy()).unwrap_or_else(|e| panic!("{e}"));
    monitor::daemon::apply_policy(&mut datapath, &state, &policy_dir.0)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let maps = datapath.maps();
    let final_devices = format!("{:?}", maps.devices().unwrap_or_else(|e| panic!("{e}")));
    assert!(
        good.contains(&format!("devices {final_devices}")),
        "devices differ after the fuzz"
    );
}
