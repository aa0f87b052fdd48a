//! The Debian package: `cargo xtask package` builds it from this tree, dpkg installs it on
//! this (test) machine, and what it installed is checked as an operator would: `monitor
//! --version`, `man -w monitor`, `systemd-analyze verify` on the installed unit, the
//! example configuration and policies, the completions. Then it is purged, leaving
//! nothing behind. It refuses to run where a monitor is installed already, so that it
//! never displaces one.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

use monitor_tests::harness::TempDir;

const INSTALLED: [&str; 6] = [
    "/usr/bin/monitor",
    "/lib/systemd/system/monitor.service",
    "/etc/monitor/monitor.toml",
    "/usr/share/man/man1/monitor.1.gz",
    "/usr/share/bash-completion/completions/monitor",
    "/usr/share/doc/monitor/examples/policies/ward.yaml",
];

fn run(command: &mut Command) -> Output {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Whether dpkg has the package installed (or half-installed).
fn installed() -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f", "${Status}", "monitor"])
        .output()
        .is_ok_and(|o| {
            let status = String::from_utf8_lossy(&o.stdout);
            o.status.success() && !status.contains("not-installed")
        })
}

/// Purges the package on the way out, also when an assertion failed.
struct Purge;

impl Drop for Purge {
    fn drop(&mut self) {
        if installed() {
            let _ = Command::new("dpkg")
                .args(["--purge", "monitor"])
                .stdin(Stdio::null())
                .output();
        }
    }
}

#[test]
fn the_deb_builds_installs_checks_out_and_purges_without_a_trace() {
    assert!(
        !installed(),
        "a monitor package is installed on this machine: not touched"
    );
    for path in INSTALLED.iter().chain(&["/etc/monitor"]) {
        assert!(
            !Path::new(path).exists(),
            "{path} exists already (not from this test): not touched"
        );
    }
    let out = TempDir::new(&std::env::temp_dir(), "mdeb");
    run(Command::new(env!("CARGO"))
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .args([
            "run",
            "--quiet",
            "--package",
            "xtask",
            "--",
            "package",
            "--out",
        ])
        .arg(&out.0));
    let deb: PathBuf = std::fs::read_dir(&out.0)
        .unwrap_or_else(|e| panic!("{e}"))
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .unwrap_or_else(|| panic!("no .deb in {}", out.0.display()));
    let contents = stdout(&run(Command::new("dpkg-deb").arg("--contents").arg(&deb)));
    for path in INSTALLED {
        assert!(
            contents.contains(&format!(".{path}")),
            "{path} not in the package"
        );
    }

    let _purge = Purge;
    run(Command::new("dpkg").arg("--install").arg(&deb));
    let installed_bin = PathBuf::from(INSTALLED[0]);
    let version = stdout(&run(Command::new(&installed_bin).arg("--version")));
    assert_eq!(version, format!("monitor {}", env!("CARGO_PKG_VERSION")));
    let page = stdout(&run(Command::new("man").args(["-w", "monitor"])));
    assert_eq!(page, "/usr/share/man/man1/monitor.1.gz");
    let run_page = stdout(&run(Command::new("man").args(["-w", "monitor-run"])));
    assert_eq!(run_page, "/usr/share/man/man1/monitor-run.1.gz");
    // systemd's own parser on the installed unit: every directive known, the binary and
    // the man page of Documentation= found.
    let verify = run(Command::new("systemd-analyze").args(["verify", INSTALLED[1]]));
    assert!(
        verify.stderr.is_empty(),
        "systemd-analyze verify complains:\n{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../packaging/monitor.toml"
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        std::fs::read_to_string(INSTALLED[2]).unwrap_or_else(|e| panic!("{e}")),
        shipped
    );
    assert!(Path::new("/etc/monitor/policies").is_dir());
    let conffiles = stdout(&run(Command::new("dpkg-query").args([
        "-W",
        "-f",
        "${Conffiles}",
        "monitor",
    ])));
    assert!(
        conffiles.contains("/etc/monitor/monitor.toml"),
        "{conffiles}"
    );
    // The installed binary reads the shipped examples.
    run(Command::new(&installed_bin).args([
        "policy",
        "check",
        "/usr/share/doc/monitor/examples/policies",
    ]));

    run(Command::new("dpkg").args(["--purge", "monitor"]));
    assert!(!installed());
    for path in INSTALLED.iter().chain(&["/etc/monitor"]) {
        assert!(!Path::new(path).exists(), "{path} left after the purge");
    }
}
