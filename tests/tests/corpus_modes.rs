//! Every capture of the tcpdump Ethernet corpus replayed in learn, audit and enforce mode
//! (`monitor replay` through the library): no file fails, learn and audit drop nothing, and
//! every mode judges the same frames.
//!
//! Uses the full corpus in ../shared/corpus/tcpdump-ethernet when it is there (a
//! developer's machine, CI), the copy in tests/corpus/tcpdump-ethernet otherwise. replay.rs
//! compares learn mode with tshark and covers learn → enforce with a baseline; this file
//! adds audit and enforce without one, where every frame takes the not-in-baseline path.

use std::path::{Path, PathBuf};

use monitor::replay::{self, ReplayArgs, Report};
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
        report.totals.frames_passed + report.totals.frames_dropped,
        report.totals.frames_run,
        "{mode:?}: every frame run got a verdict"
    );
    report
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

    // Enforce without a baseline: what audit would drop is dropped.
    assert_eq!(
        enforce.verdict_packets(Action::Drop, Some(Reason::NotInBaseline)),
        would_drop,
        "enforce drops exactly what audit would drop"
    );
    assert!(enforce.totals.frames_dropped >= would_drop);
    assert_eq!(enforce.baseline.learned, 0, "enforce learns nothing");
}
