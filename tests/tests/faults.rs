//! Faults around the monitor: no bpf filesystem, a pinned map of another layout, and an XDP
//! attachment left by a killed earlier run.

use std::{path::Path, process::Command, time::Duration};

use monitor::{
    Datapath, Maps,
    datapath::{DatapathError, expected_layout},
    lab::{NTP, NetNs, Outcome, unique_name},
};
use monitor_common::maps::names;
use monitor_tests::harness::{Lab, TempDir, example_policy, monitor_bin, service};

fn sh(script: &str) -> std::process::Output {
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .output()
        .unwrap_or_else(|e| panic!("running sh: {e}"))
}

fn text(output: &std::process::Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// (a) `monitor run` in a mount namespace where /sys/fs/bpf is not mounted mounts a bpf
/// filesystem there itself (datapath::ensure_bpffs) and comes up.
#[test]
fn run_mounts_bpffs_when_it_is_missing() {
    let ns = NetNs::new("mflt").unwrap_or_else(|e| panic!("netns: {e}"));
    ns.ip(&["link", "set", "lo", "up"])
        .unwrap_or_else(|e| panic!("{e}"));
    let state = TempDir::new(&std::env::temp_dir(), "mfstate");
    let pin = format!("/sys/fs/bpf/{}", unique_name("mfpin"));
    let script = format!(
        r#"set -u
n=0
while [ "$(stat -f -c %T /sys/fs/bpf)" = bpf_fs ] && [ $n -lt 8 ]; do umount /sys/fs/bpf || exit 3; n=$((n+1)); done
echo "before: $(stat -f -c %T /sys/fs/bpf)"
{bin} --pin-dir {pin} --state-dir {state} run --netns {ns} --iface lo --xdp-mode generic >/dev/null 2>{state}/daemon.log &
pid=$!
i=0
while [ ! -e {state}/daemon.json ] && [ $i -lt 200 ] && kill -0 $pid 2>/dev/null; do sleep 0.1; i=$((i+1)); done
echo "after: $(stat -f -c %T /sys/fs/bpf)"
[ -e {state}/daemon.json ] && echo up || echo down
[ -d {pin} ] && echo pinned
kill -TERM $pid 2>/dev/null; wait $pid
echo "exit: $?"
"#,
        bin = monitor_bin().display(),
        state = state.0.display(),
        ns = ns.name(),
    );
    let output = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap_or_else(|e| panic!("unshare: {e}"));
    let out = text(&output);
    let log = std::fs::read_to_string(state.0.join("daemon.log")).unwrap_or_default();
    assert!(output.status.success(), "{out}\ndaemon log:\n{log}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("before: ") && l != "before: bpf_fs"),
        "/sys/fs/bpf was still a bpf filesystem in the private namespace: {out}"
    );
    assert!(
        stdout.contains("after: bpf_fs"),
        "monitor run did not mount bpffs: {out}\n{log}"
    );
    assert!(
        stdout.lines().any(|l| l == "up"),
        "monitor run did not come up: {out}\n{log}"
    );
    assert!(
        stdout.lines().any(|l| l == "pinned"),
        "no pin directory in the new bpffs: {out}"
    );
    assert!(
        stdout.contains("exit: 0"),
        "monitor run did not stop cleanly on SIGTERM: {out}\n{log}"
    );
    // The bpffs it mounted lived in the private namespace only: the host's pin dir has
    // nothing of it.
    assert!(
        !Path::new(&pin).exists(),
        "the private bpffs leaked into the host"
    );
}

/// (b) A pinned map with the right name but another shape is refused, named, and left alone.
#[test]
fn a_pinned_map_of_the_wrong_layout_is_refused_and_untouched() {
    monitor::datapath::ensure_bpffs(Path::new("/sys/fs/bpf"))
        .unwrap_or_else(|e| panic!("bpffs: {e}"));
    let dir = TempDir(Path::new("/sys/fs/bpf").join(unique_name("mfbad")));
    std::fs::create_dir_all(&dir.0).unwrap_or_else(|e| panic!("{e}"));
    let wrong = dir.0.join(names::DEVICES);
    let created = sh(&format!(
        "bpftool map create {p} type hash key 4 value 8 entries 16 name DEVICES && \
         bpftool map update pinned {p} key 1 0 0 0 value 7 0 0 0 0 0 0 0",
        p = wrong.display()
    ));
    assert!(created.status.success(), "bpftool: {}", text(&created));

    let err =
        Datapath::load(&Maps::Pinned(dir.0.clone())).expect_err("a wrong layout must be refused");
    let expected = expected_layout()
        .into_iter()
        .find(|(name, ..)| *name == names::DEVICES)
        .map(|(_, k, v, m)| (k, v, m))
        .unwrap_or_else(|| panic!("no DEVICES in the expected layout"));
    match &err {
        DatapathError::Layout {
            path,
            found,
            expected: want,
        } => {
            assert_eq!(path, &wrong);
            assert_eq!(*found, (4, 8, 16));
            assert_eq!(*want, expected);
        }
        other => panic!("expected DatapathError::Layout, got {other:?}"),
    }
    let message = err.to_string();
    for part in [
        wrong.display().to_string(),
        "(4, 8, 16)".into(),
        format!("{expected:?}"),
    ] {
        assert!(
            message.contains(&part),
            "the error does not name {part}: {message}"
        );
    }

    // Untouched: same shape, same content, and nothing else was pinned beside it.
    let info = aya::maps::MapInfo::from_pin(&wrong).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (info.key_size(), info.value_size(), info.max_entries()),
        (4, 8, 16)
    );
    let lookup = sh(&format!(
        "bpftool -j map lookup pinned {} key 1 0 0 0",
        wrong.display()
    ));
    let json = String::from_utf8_lossy(&lookup.stdout);
    assert!(lookup.status.success(), "{}", text(&lookup));
    assert!(
        json.contains("\"0x07\""),
        "the wrong map's entry changed: {json}"
    );
    let dump = sh(&format!("bpftool -j map dump pinned {}", wrong.display()));
    assert_eq!(
        String::from_utf8_lossy(&dump.stdout)
            .matches("\"key\"")
            .count(),
        1,
        "entries were added to the wrong map: {}",
        text(&dump)
    );
    let pinned: Vec<_> = std::fs::read_dir(&dir.0)
        .unwrap_or_else(|e| panic!("{e}"))
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        pinned,
        vec![names::DEVICES.to_string()],
        "the refused load pinned maps"
    );
}

/// A pinned map of the right key, value and entries but of another kind (an array where
/// the datapath keeps a per-CPU array) is refused too, naming both kinds, and left alone.
#[test]
fn a_pinned_map_of_the_wrong_kind_is_refused_and_untouched() {
    monitor::datapath::ensure_bpffs(Path::new("/sys/fs/bpf"))
        .unwrap_or_else(|e| panic!("bpffs: {e}"));
    let dir = TempDir(Path::new("/sys/fs/bpf").join(unique_name("mfkind")));
    std::fs::create_dir_all(&dir.0).unwrap_or_else(|e| panic!("{e}"));
    let def = monitor_common::maps::defs::FRAME_COUNTS;
    assert_eq!(def.kind, monitor_common::maps::MapKind::PerCpuArray);
    let wrong = dir.0.join(names::FRAME_COUNTS);
    let created = sh(&format!(
        "bpftool map create {p} type array key {k} value {v} entries {m} name FRAME_COUNTS",
        p = wrong.display(),
        k = def.key_size,
        v = def.value_size,
        m = def.max_entries,
    ));
    assert!(created.status.success(), "bpftool: {}", text(&created));

    let err = Datapath::load(&Maps::Pinned(dir.0.clone()))
        .expect_err("a pinned map of another kind must be refused");
    match &err {
        DatapathError::LayoutKind {
            path,
            found,
            expected,
        } => {
            assert_eq!(path, &wrong);
            assert_eq!((*found, *expected), ("array", "percpu_array"));
        }
        other => panic!("expected DatapathError::LayoutKind, got {other:?}"),
    }
    let message = err.to_string();
    for part in [
        wrong.display().to_string(),
        "array".into(),
        "percpu_array".into(),
    ] {
        assert!(
            message.contains(&part),
            "the error does not name {part}: {message}"
        );
    }
    let info = aya::maps::MapInfo::from_pin(&wrong).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        matches!(info.map_type(), Ok(aya::maps::MapType::Array)),
        "the refused map changed kind"
    );
    let pinned: Vec<_> = std::fs::read_dir(&dir.0)
        .unwrap_or_else(|e| panic!("{e}"))
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        pinned,
        vec![names::FRAME_COUNTS.to_string()],
        "the refused load pinned maps"
    );
}

/// XDP program ids on `dev` in the router namespace, from `ip link show`.
fn xdp_prog_ids(lab: &Lab, dev: &str) -> Vec<String> {
    let out = lab
        .ward
        .router
        .ip(&["-d", "link", "show", "dev", dev])
        .unwrap_or_else(|e| panic!("ip link show {dev}: {e}"));
    let words: Vec<&str> = out.split_whitespace().collect();
    let mut ids: Vec<String> = words
        .windows(3)
        .filter(|w| w[0].starts_with("prog/xdp") && w[1] == "id")
        .map(|w| w[2].to_string())
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// (c) A daemon killed with SIGKILL leaves its pinned XDP link; the next start adopts it
/// instead of attaching a second program, and enforcement goes on.
#[test]
fn a_killed_daemons_attachment_is_adopted_not_doubled() {
    let mut lab = Lab::new(&example_policy());
    lab.start(&["--mode", "learn"]);
    lab.assert_normal_traffic(Outcome::Answered);
    lab.cli_ok(&["mode", "enforce"]);
    let quick = Duration::from_millis(300);
    assert_eq!(
        lab.udp("badge-reader-icu3", service("ntp", NTP), quick),
        Outcome::TimedOut
    );
    let legs = [lab.ward.ward_leg.clone(), lab.ward.core_leg.clone()];
    for leg in &legs {
        assert_eq!(xdp_prog_ids(&lab, leg).len(), 1, "{leg} before the kill");
    }

    lab.stop(libc::SIGKILL);
    // The killed run's program stays attached through its pinned link and still enforces.
    for leg in &legs {
        assert_eq!(xdp_prog_ids(&lab, leg).len(), 1, "{leg} after the kill");
    }
    assert_eq!(
        lab.udp("badge-reader-icu3", service("ntp", NTP), quick),
        Outcome::TimedOut
    );

    lab.start(&[]);
    let log = lab.daemon_log();
    for leg in &legs {
        assert!(
            log.contains(&format!("adopted the pinned link on {leg}")),
            "the restart did not adopt {leg}'s link:\n{log}"
        );
        let ids = xdp_prog_ids(&lab, leg);
        assert_eq!(
            ids.len(),
            1,
            "{leg} has {} XDP programs after the restart: {ids:?}",
            ids.len()
        );
        let out = lab
            .ward
            .router
            .ip(&["-d", "link", "show", "dev", leg])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out.matches("prog/xdp").count(), 1, "{leg}: {out}");
    }
    lab.assert_normal_traffic(Outcome::Answered);
    assert_eq!(
        lab.udp("badge-reader-icu3", service("ntp", NTP), quick),
        Outcome::TimedOut
    );
    let status = lab.cli_ok(&["status"]);
    assert!(
        status.contains("enforce"),
        "the mode survived the kill: {status}"
    );
}
