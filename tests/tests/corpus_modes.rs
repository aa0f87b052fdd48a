//! Every capture of the tcpdump Ethernet corpus replayed in learn, audit and enforce mode
//! (`monitor replay` through the library): no file fails, learn and audit drop nothing,
//! every mode judges the same frames, and for every capture and every flow enforce drops
//! exactly the packets audit marks as would-drop.
//!
//! Uses the full corpus in ../shared/corpus/tcpdump-ethernet when it is there (a
//! developer's machine, CI), the copy in tests/corpus/tcpdump-ethernet otherwise. replay.rs
//! compares learn mode with tshark and covers learn → enforce with a baseline; this file
//! adds audit and enforce without one, where every frame takes the not-in-baseline path.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    path::{Path, PathBuf},
};

use monitor::replay::{self, FlowRow, ReplayArgs, Report};
use monitor_common::{Action, Mode, Reason};

fn corpus_files() -> (PathBuf, Vec<PathBuf>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let shared = root.join("../../shared/corpus/tcpdump-ethernet");
    let dir = if shared.is_dir() {
        shared
    } else {
        root.join("corpus/tcpdump-ethernet")
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| {
            entry
                .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
                .path()
        })
        .filter(|p| {
            p.extension()
                .is_some_and(|ext| ext == "pcap" || ext == "pcapng")
        })
        .collect();
    files.sort();
    assert!(
        files.len() >= 400,
        "{} holds only {} captures",
        dir.display(),
        files.len()
    );
    (dir, files)
}

fn replay_in(mode: Mode, files: &[PathBuf]) -> Report {
    let mut args = ReplayArgs::new(files.iter().cloned());
    args.mode = mode;
    // Every address is judged like an enrolled device, so the mode decides for every IP
    // frame (without it, unenrolled traffic just passes).
    args.learn_all = true;
    args.flows_per_file = true;
    let report = replay::run(&args).unwrap_or_else(|e| panic!("replay in {mode:?} failed: {e:?}"));
    assert!(
        report.failures().is_empty(),
        "{mode:?}: files failed: {:?}",
        report.failures()
    );
    assert_eq!(
        report.files.len(),
        files.len(),
        "{mode:?}: every file is in the report"
    );
    assert_eq!(report.totals.files_failed, 0, "{mode:?}");
    assert_eq!(
        report.totals.frames_passed + report.totals.frames_dropped + report.totals.frames_cut,
        report.totals.frames_run,
        "{mode:?}: every frame run got a verdict, or was cut by its capture"
    );
    report
}

/// A flow as the report names it: (device, peer, protocol, service port, direction).
type Flow = (IpAddr, IpAddr, u8, u16, String);

/// The flows of one file's report whose `count` is not zero, with that count.
fn flows_counting(flows: &[FlowRow], count: impl Fn(&FlowRow) -> u64) -> BTreeMap<Flow, u64> {
    let mut out: BTreeMap<Flow, u64> = BTreeMap::new();
    for f in flows {
        let n = count(f);
        if n > 0 {
            let flow = (
                f.device,
                f.peer,
                f.protocol,
                f.service_port,
                f.direction.clone(),
            );
            *out.entry(flow).or_default() += n;
        }
    }
    out
}

#[test]
fn every_corpus_file_replays_in_learn_audit_and_enforce() {
    let start = std::time::Instant::now();
    let (dir, files) = corpus_files();
    let learn = replay_in(Mode::Learn, &files);
    let audit = replay_in(Mode::Audit, &files);
    let enforce = replay_in(Mode::Enforce, &files);
    eprintln!(
        "{} files of {} in three modes, {} frames each, in {:?}",
        files.len(),
        dir.display(),
        learn.totals.frames_run,
        start.elapsed()
    );
    assert!(learn.totals.frames_run > 5_000, "{:?}", learn.totals);
    for (report, mode) in [(&audit, "audit"), (&enforce, "enforce")] {
        assert_eq!(
            report.totals.frames_run, learn.totals.frames_run,
            "{mode} ran other frames"
        );
        assert_eq!(
            report.totals.frames_read, learn.totals.frames_read,
            "{mode} read other frames"
        );
    }
    for (file_learn, (file_audit, file_enforce)) in learn
        .files
        .iter()
        .zip(audit.files.iter().zip(&enforce.files))
    {
        assert_eq!(file_learn.path, file_audit.path);
        assert_eq!(
            file_learn.frames_run,
            file_audit.frames_run,
            "{}",
            file_learn.path.display()
        );
        assert_eq!(
            file_learn.frames_run,
            file_enforce.frames_run,
            "{}",
            file_learn.path.display()
        );
        assert_eq!(
            file_learn.frames_dropped,
            0,
            "learn mode dropped in {}",
            file_learn.path.display()
        );
        assert_eq!(
            file_audit.frames_dropped,
            0,
            "audit mode dropped in {}",
            file_audit.path.display()
        );
    }
    assert_eq!(learn.totals.frames_dropped, 0, "learn mode drops nothing");
    assert!(learn.baseline.learned > 0);

    // Audit: nothing dropped, but what enforce would drop is counted as would-drop.
    assert_eq!(audit.totals.frames_dropped, 0, "audit mode drops nothing");
    let would_drop = audit.verdict_packets(Action::Pass, Some(Reason::NotInBaseline));
    assert!(would_drop > 0, "audit counted no would-drop");
    assert_eq!(audit.baseline.learned, 0, "audit learns nothing");

    // Enforce without a baseline: what audit would drop is dropped, in total...
    assert_eq!(
        enforce.verdict_packets(Action::Drop, Some(Reason::NotInBaseline)),
        would_drop,
        "enforce drops exactly what audit would drop"
    );
    // ... and in every capture, flow by flow: the same packets of the same flows.
    let mut compared_flows = 0;
    let mut differences = Vec::new();
    for (file_audit, file_enforce) in audit.files.iter().zip(&enforce.files) {
        assert_eq!(file_audit.path, file_enforce.path);
        let marked = flows_counting(&file_audit.flows, |f| f.would_drop_packets);
        let dropped = flows_counting(&file_enforce.flows, |f| f.dropped_packets);
        compared_flows += marked.len();
        if marked != dropped {
            let only = |a: &BTreeMap<Flow, u64>, b: &BTreeMap<Flow, u64>| {
                a.iter()
                    .filter(|(k, v)| b.get(*k) != Some(*v))
                    .map(|(k, v)| format!("{k:?} x{v}"))
                    .collect::<Vec<_>>()
            };
            differences.push(format!(
                "{}: audit would drop {:?}; enforce dropped {:?}",
                file_audit.path.display(),
                only(&marked, &dropped),
                only(&dropped, &marked)
            ));
        }
        // Nothing audit passes without marking it is dropped by enforce, nor the reverse.
        assert_eq!(
            flows_counting(&file_audit.flows, |f| f.dropped_packets),
            BTreeMap::new(),
            "audit dropped in {}",
            file_audit.path.display()
        );
        assert_eq!(
            flows_counting(&file_enforce.flows, |f| f.would_drop_packets),
            BTreeMap::new(),
            "enforce only marked in {}",
            file_enforce.path.display()
        );
    }
    assert!(
        differences.is_empty(),
        "{} of {} captures differ:\n  {}",
        differences.len(),
        files.len(),
        differences.join("\n  ")
    );
    assert!(compared_flows > 500, "only {compared_flows} flows compared");
    assert!(enforce.totals.frames_dropped >= would_drop);
    assert_eq!(enforce.baseline.learned, 0, "enforce learns nothing");
}
