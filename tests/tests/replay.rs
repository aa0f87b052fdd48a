//! `monitor replay` on real captures: the 433 Ethernet captures of tcpdump's test suite
//! (tests/corpus/tcpdump-ethernet, BSD licence beside them), checked against tshark, and
//! on small captures made here.
//!
//! The replay runs through the library (`monitor::replay::run`, what the `monitor replay`
//! command prints), so the tests need no path to a built binary; `Report::failures` is
//! the rule the command's exit status follows.
//!
//! # What is compared with tshark (`per_address_counts_match_tshark`)
//!
//! All 433 corpus files (and, in `tagged_frames_match_tshark`, a capture of 802.1ad,
//! 0x9100 and double 802.1Q tagged IPv4/IPv6 frames made here, since the corpus has QinQ
//! only around ARP). tshark (4.x, run with an empty configuration directory) lists every
//! frame with `frame.cap_len`, `frame.protocols` and the first occurrence (the outermost
//! header) of `ip.src`, `ip.dst`, `ipv6.src`, `ipv6.dst` (all corpus files in one tshark
//! run: see `tshark_corpus`). A frame is compared when, in tshark's own decode:
//!
//! 1. its captured length is 14..=`TEST_RUN_MAX_FRAME` bytes: the kernel's XDP test run
//!    takes nothing else, and replay reports those frames as skipped (checked in
//!    `replay_reads_the_frames_tshark_reads` and
//!    `skipped_frames_are_counted_with_their_reason`) — 103 corpus frames (43 under 14
//!    bytes, 60 over 3520);
//! 2. its layers start `eth:ethertype:` followed by at most two `vlan:ethertype:` or
//!    `ieee8021ad:ethertype:` pairs and then `ip` or `ipv6`: the IP header sits directly
//!    after Ethernet and up to two VLAN tags, which is what the monitor parses (IP inside
//!    PPPoE, MPLS, LLC/SNAP, Cisco ISL, three tags, ... is not an IP frame to the
//!    monitor). This also excludes an Ethernet type 0x86dd frame whose IP version is not
//!    6, which tshark does not decode as IPv6 at all (ipv6-bad-version.pcap frames 2 and
//!    4); the monitor charges the addresses of such a header;
//! 3. tshark shows both addresses of that outermost IP header (the field of that header's
//!    family: `ip.*` for `ip`, `ipv6.*` for `ipv6`). tshark refuses to show them for an
//!    IPv4 header length below 20 bytes or a total length below the header length, and
//!    for an Ethernet type 0x0800 header whose version is 6 (which it decodes as IPv6),
//!    while the monitor still charges the addresses of any fixed header it could read
//!    (its documented rule: malformed packets count against their devices). Those frames
//!    cannot be compared and are excluded; a fixed header cut short (tshark shows no
//!    destination) is charged by neither. In the corpus: ipv4_invalid_hdr_length.pcap 1,
//!    ipv4_invalid_length.pcap 1, ipv4_invalid_total_length_2.pcap 1,
//!    ipv6_39_byte_header.pcap 1, ipv6_invalid_length.pcap 1, kday1.pcap 1, kday3.pcap 2
//!    (file and frame number; the test prints the list).
//!
//! Malformed frames that tshark does decode addresses for (truncated transport headers,
//! IP lengths beyond the capture, bad extension headers, ...) are compared, and the test
//! checks that the compared set contains some (by the monitor's own verdict counters).
//!
//! The compared frames are cut out of each file by `editcap -r` (tshark's suite, so
//! neither the selection nor the extraction goes through the monitor's parser), all
//! files are replayed into one set of maps, and the per-address table must equal, for
//! every address, the sums over the compared frames: packets and captured bytes sent
//! (address = source of the outermost IP header) and received (address = destination);
//! a packet whose source equals its destination counts once as sent and once as
//! received. IPv6 addresses of the form ::ffff:a.b.c.d are the IPv4 address a.b.c.d, as
//! the monitor keys IPv4 (IPv4-mapped). A mismatch is then narrowed down to the files it
//! comes from by replaying them one at a time.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    net::IpAddr,
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

use monitor::{
    datapath::{TEST_RUN_MAX_FRAME, addr_of},
    replay::{self, FrameOutcome, ReplayArgs, Report, SkipReason},
    state::baseline::BaselineFile,
};
use monitor_common::{
    Action, Mode, Reason,
    flow::{self, ServiceHint},
    maps::{BaselineEntry, DeviceEntry, FlowKey, MODE_INHERIT, ORIGIN_POLICY},
    parse::{Snaplen, parse_frame},
};
use monitor_tests::{adversarial, live::LiveLink};

// ---------------------------------------------------------------------------------------
// The corpus and tshark's view of it
// ---------------------------------------------------------------------------------------

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/tcpdump-ethernet")
}

/// The corpus captures, sorted by name.
fn corpus_files() -> Vec<PathBuf> {
    let dir = corpus_dir();
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
    assert_eq!(
        files.len(),
        433,
        "tests/corpus/tcpdump-ethernet should hold tcpdump's 433 Ethernet captures"
    );
    files
}

fn name_of(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// A scratch directory for this test process.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir()
        .join(format!("monitor-replay-tests-{}", std::process::id()))
        .join(name);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    dir
}

/// One frame as tshark decodes it.
#[derive(Clone, Debug)]
struct TsharkFrame {
    number: u64,
    cap_len: u64,
    protocols: String,
    ip_src: Option<IpAddr>,
    ip_dst: Option<IpAddr>,
    ipv6_src: Option<IpAddr>,
    ipv6_dst: Option<IpAddr>,
    /// Fragment of an IPv4 packet (MF set or offset > 0) by the outermost header.
    ipv4_fragment: bool,
}

/// Why a frame is not compared (rules 1–3 of the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Exclusion {
    TestRunLimits,
    NotIpAfterEthernet,
    TsharkRefusedHeader,
}

/// The outermost IP family if the IP header comes right after Ethernet and at most two
/// VLAN tags in tshark's layer list.
fn ip_after_ethernet(protocols: &str) -> Option<&str> {
    let layers: Vec<&str> = protocols.split(':').collect();
    if layers.get(..2) != Some(&["eth", "ethertype"][..]) {
        return None;
    }
    let mut at = 2;
    for _ in 0..2 {
        match (layers.get(at), layers.get(at + 1)) {
            (Some(&"vlan" | &"ieee8021ad"), Some(&"ethertype")) => at += 2,
            _ => break,
        }
    }
    match layers.get(at) {
        Some(&family @ ("ip" | "ipv6")) => Some(family),
        _ => None,
    }
}

impl TsharkFrame {
    /// The compared frame's (source, destination), or why it is not compared.
    fn compared(&self) -> Result<(IpAddr, IpAddr), Exclusion> {
        if self.cap_len < 14 || self.cap_len > TEST_RUN_MAX_FRAME as u64 {
            return Err(Exclusion::TestRunLimits);
        }
        let pair = match ip_after_ethernet(&self.protocols) {
            Some("ip") => (self.ip_src, self.ip_dst),
            Some(_) => (self.ipv6_src, self.ipv6_dst),
            None => return Err(Exclusion::NotIpAfterEthernet),
        };
        match pair {
            (Some(src), Some(dst)) => Ok((normalize(src), normalize(dst))),
            _ => Err(Exclusion::TsharkRefusedHeader),
        }
    }
}

/// IPv4-mapped IPv6 addresses are the IPv4 address, as the monitor keys them.
fn normalize(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

fn tshark_available() {
    for tool in ["tshark", "editcap"] {
        let ok = Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            ok,
            "`{tool}` is needed to check replay against an independent reader: apt-get install tshark"
        );
    }
}

/// A tshark command isolated from the user's Wireshark preferences.
fn wireshark_tool(tool: &str) -> Command {
    let mut cmd = Command::new(tool);
    cmd.env("WIRESHARK_CONFIG_DIR", scratch("wireshark-config"));
    cmd
}

/// The fields asked of tshark, in this order.
const TSHARK_FIELDS: [&str; 9] = [
    "frame.section_number",
    "frame.cap_len",
    "frame.protocols",
    "ip.src",
    "ip.dst",
    "ipv6.src",
    "ipv6.dst",
    "ip.flags.mf",
    "ip.frag_offset",
];

/// tshark's frames of `file`, by pcapng section (1 for a classic pcap), numbered from 1
/// within each section.
fn tshark_frames(file: &Path) -> BTreeMap<u64, Vec<TsharkFrame>> {
    let mut cmd = wireshark_tool("tshark");
    cmd.args(["-n", "-r"]).arg(file).args([
        "-T",
        "fields",
        "-E",
        "occurrence=f",
        "-E",
        "separator=/t",
    ]);
    for field in TSHARK_FIELDS {
        cmd.args(["-e", field]);
    }
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("running tshark on {}: {e}", file.display()));
    assert!(
        output.status.success(),
        "tshark failed on {}: {}",
        file.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout)
        .unwrap_or_else(|e| panic!("tshark output for {} is not UTF-8: {e}", file.display()));
    let mut sections: BTreeMap<u64, Vec<TsharkFrame>> = BTreeMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        assert_eq!(
            f.len(),
            TSHARK_FIELDS.len(),
            "unexpected tshark line {line:?}"
        );
        let number = |s: &str| -> u64 {
            s.parse()
                .unwrap_or_else(|e| panic!("tshark number {s:?} in {line:?}: {e}"))
        };
        let addr = |s: &str| -> Option<IpAddr> {
            (!s.is_empty()).then(|| {
                s.parse()
                    .unwrap_or_else(|e| panic!("tshark address {s:?} in {line:?}: {e}"))
            })
        };
        // Classic pcap has no sections: tshark leaves the field empty.
        let section = if f[0].is_empty() { 1 } else { number(f[0]) };
        let frames = sections.entry(section).or_default();
        frames.push(TsharkFrame {
            number: frames.len() as u64 + 1,
            cap_len: number(f[1]),
            protocols: f[2].to_string(),
            ip_src: addr(f[3]),
            ip_dst: addr(f[4]),
            ipv6_src: addr(f[5]),
            ipv6_dst: addr(f[6]),
            ipv4_fragment: matches!(f[7], "1" | "True" | "true")
                || (!f[8].is_empty() && f[8] != "0"),
        });
    }
    sections
}

/// tshark's frames of every corpus file.
///
/// One tshark run for the whole corpus (tshark's start-up costs more than decoding all
/// 8245 frames): `editcap` converts each file to pcapng, the conversions are concatenated
/// (a sequence of pcapng sections is a pcapng file), and `frame.section_number` tells
/// which file a frame came from. Dissector state carried from one section to the next
/// (TCP conversations, fragment reassembly) only changes layers above the outermost IP
/// header, which the comparison does not use.
fn tshark_corpus() -> &'static BTreeMap<PathBuf, Vec<TsharkFrame>> {
    static CACHE: OnceLock<BTreeMap<PathBuf, Vec<TsharkFrame>>> = OnceLock::new();
    CACHE.get_or_init(|| {
        tshark_available();
        let files = corpus_files();
        let dir = scratch("tshark");
        let combined = dir.join("corpus.pcapng");
        let mut all = Vec::new();
        for (i, file) in files.iter().enumerate() {
            let converted = dir.join(format!("{i:04}.pcapng"));
            let status = wireshark_tool("editcap")
                .args(["-F", "pcapng"])
                .arg(file)
                .arg(&converted)
                .status()
                .unwrap_or_else(|e| panic!("running editcap on {}: {e}", file.display()));
            assert!(
                status.success(),
                "editcap could not convert {}",
                file.display()
            );
            all.extend(
                std::fs::read(&converted)
                    .unwrap_or_else(|e| panic!("reading {}: {e}", converted.display())),
            );
        }
        std::fs::write(&combined, all)
            .unwrap_or_else(|e| panic!("writing {}: {e}", combined.display()));
        let mut sections = tshark_frames(&combined);
        // Sections are numbered from 1, in the order of `files`.
        let corpus: BTreeMap<PathBuf, Vec<TsharkFrame>> = files
            .iter()
            .enumerate()
            .map(|(i, file)| {
                (
                    file.clone(),
                    sections.remove(&(i as u64 + 1)).unwrap_or_default(),
                )
            })
            .collect();
        assert!(
            sections.is_empty(),
            "tshark saw more sections than files: {:?}",
            sections.keys()
        );
        corpus
    })
}

/// Per-address (packets sent, bytes sent, packets received, bytes received).
type Counts = BTreeMap<IpAddr, [u64; 4]>;

fn expected_counts<'a>(frames: impl IntoIterator<Item = &'a TsharkFrame>) -> Counts {
    let mut counts = Counts::new();
    for frame in frames {
        let Ok((src, dst)) = frame.compared() else {
            continue;
        };
        let s = counts.entry(src).or_default();
        s[0] += 1;
        s[1] += frame.cap_len;
        let d = counts.entry(dst).or_default();
        d[2] += 1;
        d[3] += frame.cap_len;
    }
    counts
}

fn monitor_counts(report: &Report) -> Counts {
    assert_eq!(
        report.devices.len(),
        report.devices_total,
        "the report's device table must be complete"
    );
    report
        .devices
        .iter()
        .map(|d| {
            (
                d.address,
                [
                    d.packets_sent,
                    d.bytes_sent,
                    d.packets_received,
                    d.bytes_received,
                ],
            )
        })
        .collect()
}

/// Lines describing where two count tables differ (empty when equal).
fn count_differences(monitor: &Counts, tshark: &Counts) -> Vec<String> {
    let addresses: BTreeSet<&IpAddr> = monitor.keys().chain(tshark.keys()).collect();
    addresses
        .into_iter()
        .filter_map(|addr| {
            let m = monitor.get(addr).copied().unwrap_or_default();
            let t = tshark.get(addr).copied().unwrap_or_default();
            (m != t).then(|| {
                format!(
                    "{addr}: monitor sent {}/{} B received {}/{} B, tshark sent {}/{} B received {}/{} B",
                    m[0], m[1], m[2], m[3], t[0], t[1], t[2], t[3]
                )
            })
        })
        .collect()
}

fn replay_ok(args: &ReplayArgs) -> Report {
    let report = replay::run(args).unwrap_or_else(|e| panic!("replay failed: {e:?}"));
    assert!(
        report.failures().is_empty(),
        "replay would exit non-zero: {:?}",
        report.failures()
    );
    report
}

/// `editcap -r`: the frames `numbers` of `input`, as a pcapng.
fn extract_frames(input: &Path, numbers: &[u64], output: &Path) {
    // Consecutive numbers as ranges, to keep the command line short.
    let mut ranges: Vec<String> = Vec::new();
    let mut i = 0;
    while i < numbers.len() {
        let start = numbers[i];
        let mut end = start;
        while i + 1 < numbers.len() && numbers[i + 1] == end + 1 {
            i += 1;
            end = numbers[i];
        }
        ranges.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    let status = wireshark_tool("editcap")
        .args(["-r", "-F", "pcapng"])
        .arg(input)
        .arg(output)
        .args(&ranges)
        .status()
        .unwrap_or_else(|e| panic!("running editcap on {}: {e}", input.display()));
    assert!(status.success(), "editcap failed on {}", input.display());
}

// ---------------------------------------------------------------------------------------
// (a) Per-address counts against tshark
// ---------------------------------------------------------------------------------------

/// What a comparison with tshark covered.
#[derive(Debug, Default)]
struct Coverage {
    files: usize,
    compared: u64,
    excluded: BTreeMap<Exclusion, u64>,
    /// Frames whose outermost IP header tshark refused to decode.
    refused: Vec<String>,
    vlan: u64,
    qinq: u64,
    ext_headers: u64,
    fragments: u64,
    pcapng: u64,
    /// Compared frames the monitor called malformed (by its verdict counters).
    malformed: u64,
}

/// Compares the per-address counters of replaying the compared frames of `captures`
/// (rules at the top of this file) with tshark's sums over the same frames; panics with
/// the differing addresses, narrowed down to files.
fn check_against_tshark(name: &str, captures: &BTreeMap<PathBuf, Vec<TsharkFrame>>) -> Coverage {
    let dir = scratch(name);
    let mut coverage = Coverage::default();
    let mut compared_files: Vec<(PathBuf, &Path, u64)> = Vec::new();
    for (file, frames) in captures {
        let mut numbers = Vec::new();
        for frame in frames {
            match frame.compared() {
                Ok(_) => {
                    numbers.push(frame.number);
                    let has = |layer: &str| frame.protocols.contains(layer);
                    coverage.vlan += u64::from(has(":vlan:"));
                    coverage.qinq += u64::from(has(":ieee8021ad:") || has(":vlan:ethertype:vlan:"));
                    coverage.ext_headers += u64::from(
                        [
                            "ipv6.hopopts",
                            "ipv6.routing",
                            "ipv6.dstopts",
                            "ipv6.fraghdr",
                            ":ah:",
                        ]
                        .into_iter()
                        .any(has),
                    );
                    coverage.fragments += u64::from(frame.ipv4_fragment || has("ipv6.fraghdr"));
                    coverage.pcapng += u64::from(file.extension().is_some_and(|e| e == "pcapng"));
                }
                Err(why) => {
                    *coverage.excluded.entry(why).or_default() += 1;
                    if why == Exclusion::TsharkRefusedHeader {
                        coverage.refused.push(format!(
                            "{} frame {} ({})",
                            name_of(file),
                            frame.number,
                            frame.protocols
                        ));
                    }
                }
            }
        }
        if !numbers.is_empty() {
            let out = dir.join(format!("{}.pcapng", name_of(file)));
            extract_frames(file, &numbers, &out);
            compared_files.push((out, file.as_path(), numbers.len() as u64));
        }
    }
    coverage.files = compared_files.len();
    coverage.compared = compared_files.iter().map(|(_, _, n)| n).sum();

    let expected = expected_counts(captures.values().flatten());
    let mut args = ReplayArgs::new(compared_files.iter().map(|(out, _, _)| out.clone()));
    args.learn_all = true;
    let report = replay_ok(&args);
    for (file, (out, original, n)) in report.files.iter().zip(&compared_files) {
        assert_eq!(file.path, *out);
        assert_eq!(
            (file.frames_read, file.frames_run, file.damage.as_ref()),
            (*n, *n, None),
            "{}: frames read and run from the frames editcap cut out",
            original.display()
        );
    }
    assert_eq!(report.totals.frames_dropped, 0, "learn mode dropped frames");
    coverage.malformed = Reason::ALL
        .iter()
        .filter(|r| r.is_malformed())
        .map(|r| report.verdict_packets(Action::Pass, Some(*r)))
        .sum();

    let monitor = monitor_counts(&report);
    let differences = count_differences(&monitor, &expected);
    if differences.is_empty() {
        return coverage;
    }
    // Narrow the mismatch down to files: those where tshark saw a differing address (or
    // all, for an address only the monitor saw), replayed one at a time.
    let mut message = format!(
        "{name}: {} addresses differ:\n  {}\n",
        differences.len(),
        differences
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n  ")
    );
    let differing: BTreeSet<IpAddr> = monitor
        .keys()
        .chain(expected.keys())
        .filter(|a| monitor.get(*a) != expected.get(*a))
        .copied()
        .collect();
    let mut suspects: Vec<&(PathBuf, &Path, u64)> = compared_files
        .iter()
        .filter(|(_, original, _)| {
            expected_counts(&captures[*original])
                .keys()
                .any(|a| differing.contains(a))
        })
        .collect();
    if suspects.is_empty() {
        suspects = compared_files.iter().collect();
    }
    for (out, original, _) in suspects.into_iter().take(40) {
        let mut one = ReplayArgs::new([out.clone()]);
        one.learn_all = true;
        let report = replay_ok(&one);
        let file_diff = count_differences(
            &monitor_counts(&report),
            &expected_counts(&captures[*original]),
        );
        if !file_diff.is_empty() {
            let _ = writeln!(
                message,
                "{}:\n    {}",
                original.display(),
                file_diff.join("\n    ")
            );
        }
    }
    panic!("{message}");
}

#[test]
fn per_address_counts_match_tshark() {
    let coverage = check_against_tshark("compared", tshark_corpus());
    eprintln!("{coverage:#?}");
    // The comparison must cover what the monitor's parser has to get right.
    assert!(coverage.compared > 4000, "{coverage:#?}");
    assert!(coverage.files > 250, "{coverage:#?}");
    assert!(
        coverage.vlan > 0,
        "no VLAN-tagged IP frame compared: {coverage:#?}"
    );
    assert!(
        coverage.ext_headers > 0,
        "no IPv6 extension header compared: {coverage:#?}"
    );
    assert!(
        coverage.fragments > 0,
        "no IP fragment compared: {coverage:#?}"
    );
    assert!(
        coverage.pcapng > 0,
        "no frame of a pcapng file compared: {coverage:#?}"
    );
    // Malformed packets whose fixed IP header was readable are charged by both.
    assert!(coverage.malformed >= 5, "{coverage:#?}");
}

/// tcpdump's corpus has QinQ only around ARP: tagged IP frames made here (802.1ad and
/// the pre-standard 0x9100 outer tag, two 802.1Q tags, one 0x9100 tag, three tags, cut
/// tags) go through the same comparison.
#[test]
fn tagged_frames_match_tshark() {
    tshark_available();
    let dir = scratch("tagged");
    let path = dir.join("tagged.pcap");
    let ipv6_udp = |src: u8, dst: u8| {
        let mut h = vec![0u8; 40];
        h[0] = 0x60;
        h[4..6].copy_from_slice(&12u16.to_be_bytes());
        h[6] = 17;
        h[7] = 64;
        h[8] = 0xfd;
        h[23] = src;
        h[24] = 0xfd;
        h[39] = dst;
        h.extend_from_slice(&[0x13, 0x88, 0, 53, 0, 12, 0, 0, 1, 2, 3, 4]);
        h
    };
    let frames = vec![
        tagged(&[(0x88a8, 100), (0x8100, 10)], udp(PUMP, DNS, 5000, 53, 4)),
        tagged(&[(0x9100, 100), (0x8100, 10)], udp(EMR, DNS, 5001, 53, 4)),
        tagged(
            &[(0x8100, 100), (0x8100, 10)],
            tcp(PUMP, EMR, 40_000, 443, SYN, 0),
        ),
        tagged(&[(0x9100, 7)], udp(DNS, PUMP, 53, 5000, 40)),
        tagged(&[(0x88a8, 100)], ethernet(0x86dd, &ipv6_udp(1, 2))),
        tagged(
            &[(0x88a8, 100), (0x8100, 10)],
            ethernet(0x86dd, &ipv6_udp(2, 1)),
        ),
        // Three tags: not IP to the monitor, excluded by rule 2.
        tagged(
            &[(0x88a8, 100), (0x8100, 10), (0x8100, 5)],
            udp(STRANGER, DNS, 5002, 53, 4),
        ),
        // Cut inside the inner tag.
        tagged(
            &[(0x88a8, 100), (0x8100, 10)],
            udp(STRANGER, EMR, 5003, 53, 4),
        )[..20]
            .to_vec(),
    ];
    write_pcap(&path, &frames);
    let captures: BTreeMap<PathBuf, Vec<TsharkFrame>> = [(
        path.clone(),
        tshark_frames(&path).remove(&1).unwrap_or_default(),
    )]
    .into();
    assert_eq!(
        captures[&path].len(),
        frames.len(),
        "tshark reads every frame"
    );
    let coverage = check_against_tshark("tagged-compared", &captures);
    assert_eq!(coverage.compared, 6, "{coverage:#?}");
    assert_eq!(coverage.qinq, 5, "{coverage:#?}");
    assert_eq!(
        coverage.excluded.get(&Exclusion::NotIpAfterEthernet),
        Some(&2),
        "{coverage:#?}"
    );
    // The excluded frames are not IP to the monitor either.
    let report = replay_ok(&ReplayArgs::new([&path]));
    assert_eq!(
        report.verdict_packets(Action::Pass, Some(Reason::BadVlan)),
        2
    );
    assert!(
        report.device(ip(STRANGER)).is_none(),
        "{:?}",
        report.devices
    );
}

// ---------------------------------------------------------------------------------------
// (b) Every corpus file replays, nothing dropped in learn mode, same frames as tshark
// ---------------------------------------------------------------------------------------

#[test]
fn every_corpus_file_replays_and_learn_mode_drops_nothing() {
    let files = corpus_files();
    for learn_all in [false, true] {
        let mut args = ReplayArgs::new(files.clone());
        args.learn_all = learn_all;
        let report = replay_ok(&args);
        assert_eq!(report.files.len(), files.len());
        assert_eq!(
            report.totals.frames_dropped, 0,
            "learn mode (learn_all {learn_all}) dropped frames"
        );
        assert_eq!(report.verdict_packets(Action::Drop, None), 0);
        let damaged: Vec<_> = report.files.iter().filter(|f| f.damage.is_some()).collect();
        assert!(
            damaged.is_empty(),
            "tcpdump's captures are intact: {damaged:?}"
        );
        let t = &report.totals;
        assert_eq!(t.frames_read, t.frames_run + t.frames_skipped);
        // Frames the capture cut are run, but their verdict is not a prediction.
        assert_eq!(t.frames_run, t.frames_passed + t.frames_cut);
        assert!(
            t.frames_cut > 0,
            "tcpdump's corpus has snaplen-cut captures"
        );
        let class_packets: u64 = report.classes.iter().map(|c| c.packets).sum();
        assert_eq!(class_packets, t.frames_run, "every frame run has a class");
        let verdict_packets: u64 = report.verdicts.iter().map(|v| v.packets).sum();
        assert_eq!(
            verdict_packets,
            t.frames_run - t.frames_cut,
            "every whole frame run has a verdict"
        );
        if learn_all {
            assert!(
                report.baseline.learned > 500,
                "learned {}",
                report.baseline.learned
            );
            assert_eq!(
                report.verdict_packets(Action::Pass, Some(Reason::Unenrolled)),
                0
            );
        } else {
            assert_eq!(
                report.baseline.entries, 0,
                "nothing is judged without --learn-all"
            );
        }
    }
}

#[test]
fn replay_reads_the_frames_tshark_reads() {
    let corpus = tshark_corpus();
    let report = replay_ok(&ReplayArgs::new(corpus.keys().cloned()));
    let mut wrong = Vec::new();
    for (file, (path, frames)) in report.files.iter().zip(corpus) {
        assert_eq!(file.path, *path);
        let skipped: BTreeMap<SkipReason, u64> = [SkipReason::TooShort, SkipReason::TooLarge]
            .into_iter()
            .map(|r| (r, file.skipped_for(r)))
            .collect();
        let tshark_skipped: BTreeMap<SkipReason, u64> = [
            (
                SkipReason::TooShort,
                frames.iter().filter(|f| f.cap_len < 14).count() as u64,
            ),
            (
                SkipReason::TooLarge,
                frames
                    .iter()
                    .filter(|f| f.cap_len > TEST_RUN_MAX_FRAME as u64)
                    .count() as u64,
            ),
        ]
        .into_iter()
        .collect();
        let tshark_bytes: u64 = frames
            .iter()
            .filter(|f| SkipReason::of_len(f.cap_len as usize).is_none())
            .map(|f| f.cap_len)
            .sum();
        if (file.frames_read, &skipped, file.bytes_run)
            != (frames.len() as u64, &tshark_skipped, tshark_bytes)
        {
            wrong.push(format!(
                "{}: replay read {} frames (skipped {skipped:?}, {} bytes run), tshark {} (cap_len out of range {tshark_skipped:?}, {tshark_bytes} bytes)",
                path.display(),
                file.frames_read,
                file.bytes_run,
                frames.len()
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "replay and tshark read different frames:\n{}",
        wrong.join("\n")
    );
}

// ---------------------------------------------------------------------------------------
// Small captures made here
// ---------------------------------------------------------------------------------------

const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];

fn ethernet(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&MAC_B);
    f.extend_from_slice(&MAC_A);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// `frame` with VLAN tags (TPID, VLAN ID) inserted after its MAC addresses.
fn tagged(tags: &[(u16, u16)], frame: Vec<u8>) -> Vec<u8> {
    let mut out = frame[..12].to_vec();
    for (tpid, vid) in tags {
        out.extend_from_slice(&tpid.to_be_bytes());
        out.extend_from_slice(&vid.to_be_bytes());
    }
    out.extend_from_slice(&frame[12..]);
    out
}

fn ipv4(src: [u8; 4], dst: [u8; 4], protocol: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0u8; 20];
    h[0] = 0x45;
    let total = u16::try_from(20 + payload.len()).unwrap_or_else(|_| panic!("payload too long"));
    h[2..4].copy_from_slice(&total.to_be_bytes());
    h[8] = 64;
    h[9] = protocol;
    h[12..16].copy_from_slice(&src);
    h[16..20].copy_from_slice(&dst);
    h.extend_from_slice(payload);
    ethernet(0x0800, &h)
}

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const PSH: u8 = 0x08;

fn tcp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, flags: u8, data: usize) -> Vec<u8> {
    let mut t = vec![0u8; 20 + data];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = flags;
    ipv4(src, dst, 6, &t)
}

fn udp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, data: usize) -> Vec<u8> {
    let mut u = vec![0u8; 8 + data];
    u[0..2].copy_from_slice(&sport.to_be_bytes());
    u[2..4].copy_from_slice(&dport.to_be_bytes());
    let len = u16::try_from(8 + data).unwrap_or_else(|_| panic!("payload too long"));
    u[4..6].copy_from_slice(&len.to_be_bytes());
    ipv4(src, dst, 17, &u)
}

/// A little-endian microsecond pcap of Ethernet `frames`, each captured whole.
fn write_pcap(path: &Path, frames: &[Vec<u8>]) {
    write_pcap_with_snaplen(path, frames, 262_144);
}

/// Like [`write_pcap`], as a capture with snapshot length `snaplen` records them: a frame
/// longer than that is cut, its record keeping its original length.
fn write_pcap_with_snaplen(path: &Path, frames: &[Vec<u8>], snaplen: usize) {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    let snaplen32 = u32::try_from(snaplen).unwrap_or_else(|_| panic!("snaplen too large"));
    for v in [0u32, 0, snaplen32, 1] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for (i, frame) in frames.iter().enumerate() {
        let captured = &frame[..frame.len().min(snaplen)];
        let len = |n: usize| u32::try_from(n).unwrap_or_else(|_| panic!("frame too long"));
        for v in [
            1_700_000_000 + i as u32,
            0,
            len(captured.len()),
            len(frame.len()),
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(captured);
    }
    std::fs::write(path, out).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

const PUMP: [u8; 4] = [10, 20, 0, 11];
const EMR: [u8; 4] = [10, 30, 0, 5];
const DNS: [u8; 4] = [10, 30, 0, 53];
const STRANGER: [u8; 4] = [203, 0, 113, 66];

/// An infusion pump's usual day: HTTPS to the EMR server (handshake, data), DNS.
fn usual_traffic() -> Vec<Vec<u8>> {
    vec![
        tcp(PUMP, EMR, 40_000, 443, SYN, 0),
        tcp(EMR, PUMP, 443, 40_000, SYN | ACK, 0),
        tcp(PUMP, EMR, 40_000, 443, ACK, 0),
        tcp(PUMP, EMR, 40_000, 443, PSH | ACK, 300),
        tcp(EMR, PUMP, 443, 40_000, PSH | ACK, 900),
        udp(PUMP, DNS, 50_000, 53, 40),
        udp(DNS, PUMP, 53, 50_000, 120),
    ]
}

fn ip(a: [u8; 4]) -> IpAddr {
    IpAddr::from(a)
}

// ---------------------------------------------------------------------------------------
// (c) Learn, then enforce
// ---------------------------------------------------------------------------------------

#[test]
fn learn_then_enforce_round_trip_through_a_baseline_file() {
    let dir = scratch("round-trip");
    let usual = dir.join("usual.pcap");
    write_pcap(&usual, &usual_traffic());
    let mut with_stranger = usual_traffic();
    with_stranger.push(tcp(PUMP, STRANGER, 40_001, 443, SYN, 0));
    with_stranger.push(tcp(PUMP, EMR, 40_000, 443, PSH | ACK, 100));
    let unusual = dir.join("unusual.pcap");
    write_pcap(&unusual, &with_stranger);
    let baseline = dir.join("baseline.json");

    // Learn.
    let mut learn = ReplayArgs::new([&usual]);
    learn.learn_all = true;
    learn.baseline_out = Some(baseline.clone());
    let report = replay_ok(&learn);
    assert_eq!(report.totals.frames_run, 7);
    assert_eq!(
        report.verdict_packets(Action::Pass, Some(Reason::Learned)),
        7
    );
    // Each conversation once per side: pump→EMR https, pump→DNS dns.
    assert_eq!(report.baseline.learned, 4);
    // The daemon's baseline format (monitor::state::baseline), readable by `monitor baseline`.
    let text =
        std::fs::read_to_string(&baseline).unwrap_or_else(|e| panic!("baseline written: {e}"));
    let json: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("baseline is JSON: {e}"));
    assert_eq!(json["format"], "monitor-baseline");
    assert_eq!(json["version"], monitor::state::baseline::VERSION);
    let file = BaselineFile::read(&baseline).unwrap_or_else(|e| panic!("baseline readable: {e}"));
    let has = |device: [u8; 4], peer: [u8; 4], protocol: u8, port: u16, direction: &str| {
        file.entries.iter().any(|e| {
            (
                e.device,
                e.peer,
                e.protocol,
                e.service_port,
                e.direction.as_str(),
            ) == (ip(device), ip(peer), protocol, port, direction)
        })
    };
    assert_eq!(file.entries.len(), 4, "{text}");
    assert!(has(PUMP, EMR, 6, 443, "out"), "{text}");
    assert!(has(EMR, PUMP, 6, 443, "in"), "{text}");
    assert!(has(PUMP, DNS, 17, 53, "out"), "{text}");
    assert!(has(DNS, PUMP, 17, 53, "in"), "{text}");

    // Enforce on the same capture: nothing dropped.
    let mut enforce = ReplayArgs::new([&usual]);
    enforce.mode = Mode::Enforce;
    enforce.learn_all = true;
    enforce.baseline_in = Some(baseline.clone());
    let report = replay_ok(&enforce);
    assert_eq!(report.baseline.loaded, 4);
    assert_eq!(report.totals.frames_dropped, 0, "{:?}", report.verdicts);
    assert_eq!(
        report.verdict_packets(Action::Pass, Some(Reason::InBaseline)),
        7
    );

    // A new peer is dropped, the usual traffic around it is not.
    enforce.files = vec![unusual.clone()];
    let report = replay_ok(&enforce);
    assert_eq!(report.totals.frames_dropped, 1, "{:?}", report.verdicts);
    assert_eq!(
        report.verdict_packets(Action::Drop, Some(Reason::NotInBaseline)),
        1
    );
    let pump = report
        .device(ip(PUMP))
        .unwrap_or_else(|| panic!("pump in the report"));
    assert_eq!(pump.dropped_packets, 1);
    let stranger_flow = report
        .flows
        .iter()
        .find(|f| f.device == ip(PUMP) && f.peer == ip(STRANGER))
        .unwrap_or_else(|| panic!("the stranger's flow is reported"));
    assert_eq!(
        (stranger_flow.dropped_packets, stranger_flow.in_baseline),
        (1, false)
    );

    // Without the baseline, enforce drops everything: the baseline is what let it pass.
    enforce.files = vec![usual.clone()];
    enforce.baseline_in = None;
    let report = replay_ok(&enforce);
    assert_eq!(report.totals.frames_dropped, 7);

    // Audit reports the would-drop without dropping.
    let mut audit = enforce.clone();
    audit.mode = Mode::Audit;
    audit.files = vec![unusual];
    audit.baseline_in = Some(baseline);
    let report = replay_ok(&audit);
    assert_eq!(report.totals.frames_dropped, 0);
    assert_eq!(
        report.verdict_packets(Action::Pass, Some(Reason::NotInBaseline)),
        1
    );
}

/// On the corpus, learn then enforce drops nothing for want of a baseline entry. The
/// only drops left are by design of enforce mode: frames without a readable IP header
/// (malformed, nobody to charge them to) and later IP fragments whose first fragment is
/// not in the capture.
#[test]
fn learn_then_enforce_on_the_corpus_drops_no_learned_flow() {
    let dir = scratch("corpus-round-trip");
    let baseline = dir.join("baseline.json");
    let files = corpus_files();
    let mut learn = ReplayArgs::new(files.clone());
    learn.learn_all = true;
    learn.baseline_out = Some(baseline.clone());
    let learned = replay_ok(&learn);
    assert_eq!(learned.totals.frames_dropped, 0);

    let mut enforce = ReplayArgs::new(files);
    enforce.mode = Mode::Enforce;
    enforce.learn_all = true;
    enforce.baseline_in = Some(baseline);
    let report = replay_ok(&enforce);
    assert_eq!(report.baseline.loaded, learned.baseline.entries);
    assert_eq!(report.baseline.learned, 0, "enforce learns nothing");
    assert_eq!(
        report.verdict_packets(Action::Drop, Some(Reason::NotInBaseline)),
        0
    );
    assert_eq!(
        report.verdict_packets(Action::Pass, Some(Reason::NotInBaseline)),
        0
    );
    let unexpected: Vec<_> = report
        .verdicts
        .iter()
        .filter(|v| v.action == "drop")
        .filter(|v| {
            v.reason != Reason::FragmentUnmatched.label()
                && !Reason::ALL
                    .iter()
                    .any(|r| r.is_malformed() && r.label() == v.reason)
        })
        .collect();
    assert!(
        unexpected.is_empty(),
        "drops after learning: {unexpected:?}"
    );
    // Everything that was learned passes as in_baseline.
    assert_eq!(
        report.verdict_packets(Action::Pass, Some(Reason::InBaseline))
            + report.verdict_packets(Action::Drop, Some(Reason::FragmentUnmatched)),
        learned.verdict_packets(Action::Pass, Some(Reason::Learned))
            // Orphan later fragments: passed, reported as unmatched, in learn mode too.
            + learned.verdict_packets(Action::Pass, Some(Reason::FragmentUnmatched))
    );
}

// ---------------------------------------------------------------------------------------
// (d) Skipped frames, damage, unreadable files, the JSON document
// ---------------------------------------------------------------------------------------

#[test]
fn skipped_frames_are_counted_with_their_reason() {
    let dir = scratch("skipped");
    let path = dir.join("odd-sizes.pcap");
    let mut big = tcp(PUMP, EMR, 40_000, 443, ACK, 5000 - 54);
    big.truncate(5000);
    let frames = vec![
        vec![0xffu8; 10],
        big,
        tcp(PUMP, EMR, 40_000, 443, ACK, 0),
        ethernet(0x0806, &[0; 28]),
    ];
    assert_eq!((frames[0].len(), frames[1].len()), (10, 5000));
    write_pcap(&path, &frames);
    let report = replay_ok(&ReplayArgs::new([&path]));
    let file = &report.files[0];
    assert_eq!(
        (file.frames_read, file.frames_run, file.frames_skipped()),
        (4, 2, 2)
    );
    let skipped: Vec<(SkipReason, u64, u64, Vec<u64>)> = file
        .skipped
        .iter()
        .map(|s| (s.reason, s.frames, s.bytes, s.first_frames.clone()))
        .collect();
    assert_eq!(
        skipped,
        [
            (SkipReason::TooShort, 1, 10, vec![1]),
            (SkipReason::TooLarge, 1, 5000, vec![2])
        ]
    );
    assert_eq!(report.totals.frames_skipped, 2);
    // The skipped frames are not counted anywhere else.
    assert_eq!(report.device(ip(PUMP)).map(|d| d.packets_sent), Some(1));
    assert_eq!(report.classes.iter().map(|c| c.packets).sum::<u64>(), 2);
    let warnings = report.warnings.join("\n");
    assert!(
        warnings.contains("odd-sizes.pcap: 1 frame(s) skipped, shorter than an Ethernet header")
            && warnings.contains("frame(s) 1"),
        "{warnings}"
    );
    assert!(
        warnings.contains("longer than the 3520 bytes") && warnings.contains("frame(s) 2"),
        "{warnings}"
    );
    let json = report.to_json(None);
    assert_eq!(json["files"][0]["skipped"][0]["reason"], "too_short");
    assert_eq!(json["files"][0]["skipped"][1]["reason"], "too_large");
    assert_eq!(json["totals"]["frames_skipped"], 2);
}

#[test]
fn a_damaged_capture_is_replayed_up_to_the_damage() {
    let dir = scratch("damaged");
    let whole = dir.join("whole.pcap");
    write_pcap(&whole, &usual_traffic());
    let bytes = std::fs::read(&whole).unwrap_or_else(|e| panic!("{e}"));
    // Cut in the middle of the fifth record's data.
    let lens: Vec<usize> = usual_traffic().iter().map(Vec::len).collect();
    let fifth = 24 + lens[..4].iter().map(|l| 16 + l).sum::<usize>();
    let cut = dir.join("cut.pcap");
    std::fs::write(&cut, &bytes[..fifth + 16 + 30]).unwrap_or_else(|e| panic!("{e}"));
    // And garbage after a valid record.
    let garbage = dir.join("garbage.pcap");
    let mut g = bytes[..24 + 16 + lens[0]].to_vec();
    g.extend(std::iter::repeat_n(0xa5u8, 40));
    std::fs::write(&garbage, g).unwrap_or_else(|e| panic!("{e}"));

    let report = replay_ok(&ReplayArgs::new([&cut, &garbage, &whole]));
    let [c, g, w] = &report.files[..] else {
        panic!("three file reports")
    };
    assert_eq!((c.frames_read, c.frames_run), (4, 4));
    let damage = c
        .damage
        .as_ref()
        .unwrap_or_else(|| panic!("cut.pcap is damaged"));
    assert_eq!((damage.offset, damage.frames_before), (fifth as u64, 4));
    assert_eq!(g.frames_read, 1);
    let damage = g
        .damage
        .as_ref()
        .unwrap_or_else(|| panic!("garbage.pcap is damaged"));
    assert_eq!(damage.offset, (24 + 16 + lens[0]) as u64);
    assert!(
        damage.problem.contains("more than the 262144"),
        "{}",
        damage.problem
    );
    assert_eq!((w.frames_read, w.damage.as_ref()), (7, None));
    assert_eq!(report.totals.files_damaged, 2);
    let warnings = report.warnings.join("\n");
    assert!(
        warnings.contains(&format!(
            "cut.pcap: damaged at byte offset {fifth} (where frame 5 would start)"
        )),
        "{warnings}"
    );
}

#[test]
fn unreadable_files_are_errors_that_name_them() {
    let dir = scratch("unreadable");
    let good = dir.join("good.pcap");
    write_pcap(&good, &usual_traffic());
    let text = dir.join("notes.txt");
    std::fs::write(&text, "not a capture at all\n").unwrap_or_else(|e| panic!("{e}"));
    let sll = dir.join("cooked.pcap");
    let mut bytes = std::fs::read(&good).unwrap_or_else(|e| panic!("{e}"));
    bytes[20..24].copy_from_slice(&113u32.to_le_bytes());
    std::fs::write(&sll, bytes).unwrap_or_else(|e| panic!("{e}"));
    let missing = dir.join("missing.pcap");
    for (bad, needle) in [
        (&text, "not a pcap or pcapng capture"),
        (&sll, "link type 113"),
        (&missing, "cannot open"),
    ] {
        let err = replay::run(&ReplayArgs::new([&good, bad]))
            .map(|_| ())
            .expect_err("an unreadable file fails the replay");
        let message = err.to_string();
        assert!(
            message.contains(&*bad.display().to_string()) && message.contains(needle),
            "{message}"
        );
    }
}

/// A little-endian pcapng block.
fn pcapng_block(block_type: u32, body: &[u8]) -> Vec<u8> {
    let mut body = body.to_vec();
    body.resize(body.len().next_multiple_of(4), 0);
    let total = u32::try_from(body.len() + 12).unwrap_or_else(|_| panic!("block too long"));
    let mut out = Vec::new();
    out.extend_from_slice(&block_type.to_le_bytes());
    out.extend_from_slice(&total.to_le_bytes());
    out.extend_from_slice(&body);
    out.extend_from_slice(&total.to_le_bytes());
    out
}

/// A pcapng whose second interface, described after the first frame, is not Ethernet.
#[test]
fn a_later_interface_of_another_link_type_fails_the_replay() {
    let dir = scratch("late-link-type");
    let path = dir.join("two-interfaces.pcapng");
    let mut shb = 0x1a2b_3c4du32.to_le_bytes().to_vec();
    shb.extend_from_slice(&1u16.to_le_bytes());
    shb.extend_from_slice(&0u16.to_le_bytes());
    shb.extend_from_slice(&(-1i64).to_le_bytes());
    let idb = |link_type: u16| {
        let mut b = link_type.to_le_bytes().to_vec();
        b.extend_from_slice(&[0, 0]);
        b.extend_from_slice(&0u32.to_le_bytes());
        b
    };
    let epb = |interface: u32, frame: &[u8]| {
        let mut b = Vec::new();
        let len = u32::try_from(frame.len()).unwrap_or_else(|_| panic!("frame too long"));
        for v in [interface, 0, 0, len, len] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(frame);
        b
    };
    let frame = tcp(PUMP, EMR, 40_000, 443, SYN, 0);
    let mut bytes = pcapng_block(0x0a0d_0d0a, &shb);
    bytes.extend(pcapng_block(1, &idb(1)));
    bytes.extend(pcapng_block(6, &epb(0, &frame)));
    bytes.extend(pcapng_block(1, &idb(113)));
    bytes.extend(pcapng_block(6, &epb(1, &frame)));
    std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("{e}"));
    let report = replay::run(&ReplayArgs::new([&path])).unwrap_or_else(|e| panic!("{e:?}"));
    let file = &report.files[0];
    assert_eq!((file.frames_read, file.frames_run), (1, 1));
    let error = file
        .error
        .as_deref()
        .unwrap_or_else(|| panic!("an error for interface 1"));
    assert!(
        error.contains("link type 113") && error.contains("interface 1"),
        "{error}"
    );
    assert_eq!(report.failures().len(), 1, "monitor replay exits non-zero");
    assert_eq!(report.totals.files_failed, 1);
}

#[test]
fn json_report_is_one_document_and_top_cuts_tables() {
    let dir = scratch("json");
    let path = dir.join("usual.pcap");
    write_pcap(&path, &usual_traffic());
    let report = replay_ok(&ReplayArgs::new([&path]));
    let json = report.to_json(Some(1));
    let text = serde_json::to_string(&json).unwrap_or_else(|e| panic!("{e}"));
    let back: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back["format"], "monitor-replay");
    assert_eq!(back["mode"], "learn");
    assert_eq!(back["totals"]["frames_read"], 7);
    assert_eq!(back["devices_total"], 3);
    assert_eq!(back["devices"].as_array().map(Vec::len), Some(1));
    assert_eq!(back["flows"].as_array().map(Vec::len), Some(1));
    // The busiest address (by bytes) comes first: the pump talks to everybody.
    assert_eq!(back["devices"][0]["address"], "10.20.0.11");
    assert_eq!(back["verdicts"][0]["reason"], "unenrolled");
    let table = report.to_text(10);
    assert!(
        table.contains("10.20.0.11") && table.contains("unenrolled"),
        "{table}"
    );
}

// ---------------------------------------------------------------------------------------
// (e) Replay judges as the live datapath does; cut captures are reported as cut
// ---------------------------------------------------------------------------------------

/// Both sides of the flow `frame`'s headers name when read as a cut capture would read
/// them (IP lengths may run past the frame), and by the lower port for UDP and TCP
/// without a handshake: what a replay that tolerated such lengths would look up.
fn lenient_flow_keys(frame: &[u8]) -> Vec<FlowKey> {
    let parsed = parse_frame(frame, Snaplen::CaptureMayBeCut);
    if !parsed.has_ip || parsed.fault.is_some() {
        return Vec::new();
    }
    let ip = &parsed.ip;
    let service = match flow::service_hint(ip) {
        ServiceHint::Known(s) | ServiceHint::Request(s) | ServiceHint::TcpHandshake(s) => s,
        ServiceHint::TcpEstablished { src_port, dst_port }
        | ServiceHint::MaybeReply { src_port, dst_port } => flow::by_ports(src_port, dst_port),
    };
    let direction = flow::src_direction(service.initiator);
    vec![
        flow::flow_key(ip.src, ip.dst, ip.protocol, service.port, direction),
        flow::flow_key(
            ip.dst,
            ip.src,
            ip.protocol,
            service.port,
            direction.reversed(),
        ),
    ]
}

/// Every malformed and adversarial frame of the XDP case tables, written to a capture
/// whole (captured = original length), gets from `monitor replay --mode enforce` the
/// verdict a live enforcing monitor gives it when the same frames, in the same order,
/// arrive on an interface it is attached to. Every address is enrolled live and judged by
/// `--learn-all` in the replay; both have the same baseline, which holds every flow the
/// frames' headers name (so a replay that tolerated their broken lengths would pass them).
#[test]
fn replay_judges_every_adversarial_frame_as_a_live_monitor_does() {
    let frames = adversarial::frames();
    let dir = scratch("adversarial");
    let capture = dir.join("adversarial.pcap");
    let bytes: Vec<Vec<u8>> = frames.iter().map(|(_, f)| f.clone()).collect();
    write_pcap(&capture, &bytes);
    let mut keys: Vec<FlowKey> = bytes.iter().flat_map(|f| lenient_flow_keys(f)).collect();
    keys.sort();
    keys.dedup();
    assert!(keys.len() >= 10, "baseline {keys:?}");
    let entries: Vec<(FlowKey, BaselineEntry)> = keys
        .iter()
        .map(|k| {
            (
                *k,
                BaselineEntry {
                    learned_ns: 0,
                    origin: ORIGIN_POLICY,
                    _pad1: 0,
                    _pad2: 0,
                    window: 0,
                    schedule: [0; 3],
                },
            )
        })
        .collect();
    let baseline = dir.join("baseline.json");
    replay::write_baseline(&baseline, &entries).unwrap_or_else(|e| panic!("{e:?}"));

    // Live: an enforcing monitor, every address of the frames enrolled.
    let mut link = LiveLink::build();
    let mut addresses: Vec<IpAddr> = bytes
        .iter()
        .map(|f| parse_frame(f.as_slice(), Snaplen::Strict))
        .filter(|p| p.has_ip)
        .flat_map(|p| [addr_of(&p.ip.src), addr_of(&p.ip.dst)])
        .collect();
    addresses.sort();
    addresses.dedup();
    {
        let maps = link.datapath.maps_mut();
        maps.set_mode(Mode::Enforce)
            .unwrap_or_else(|e| panic!("{e:?}"));
        for (slot, addr) in addresses.iter().enumerate() {
            maps.enroll(*addr, DeviceEntry::new(slot as u32, MODE_INHERIT, 0))
                .unwrap_or_else(|e| panic!("enrolling {addr}: {e:?}"));
        }
        maps.insert_baseline(&entries)
            .unwrap_or_else(|e| panic!("{e:?}"));
    }
    let live: Vec<(Action, Reason)> = bytes.iter().map(|f| link.judge(f)).collect();

    // Replay of the same frames.
    let mut args = ReplayArgs::new([&capture]);
    args.mode = Mode::Enforce;
    args.learn_all = true;
    args.baseline_in = Some(baseline);
    args.frames = true;
    let report = replay_ok(&args);
    let file = &report.files[0];
    assert_eq!(
        (file.frames_read, file.frames_run, file.frames_cut),
        (frames.len() as u64, frames.len() as u64, 0),
        "every frame is run, none is cut"
    );

    let mut differ = Vec::new();
    for (((name, _), (action, reason)), outcome) in frames.iter().zip(&live).zip(&file.frames) {
        let expected = FrameOutcome {
            number: outcome.number,
            outcome: action.name().into(),
            reason: Some(reason.label().into()),
        };
        if *outcome != expected {
            differ.push(format!(
                "frame {} ({name}): live {} {}, replay {} {:?}",
                outcome.number,
                action.name(),
                reason.label(),
                outcome.outcome,
                outcome.reason
            ));
        }
    }
    assert!(
        differ.is_empty(),
        "{} of {} frames judged differently:\n  {}",
        differ.len(),
        frames.len(),
        differ.join("\n  ")
    );
    let dropped = live.iter().filter(|(a, _)| *a == Action::Drop).count();
    let malformed = live.iter().filter(|(_, r)| r.is_malformed()).count();
    assert!(
        dropped >= 40 && malformed >= 30,
        "{dropped} dropped, {malformed} malformed of {}",
        frames.len()
    );
}

/// A capture cut by its snapshot length: the frames it cut are reported as cut, with no
/// verdict presented as known (not passed, not dropped, not in the verdict table, no
/// drop charged to anyone), while they are still counted and learned from; a whole frame
/// with a broken IP length in the same capture is malformed, not "cut".
#[test]
fn a_capture_cut_by_its_snapshot_length_is_reported_as_cut() {
    let dir = scratch("cut");
    let snaplen = 54;
    // The usual traffic: its handshake fits in 54 bytes, the data and DNS do not.
    let mut frames = usual_traffic();
    let cut = frames.iter().filter(|f| f.len() > snaplen).count() as u64;
    assert_eq!(cut, 4);
    // A whole frame whose IPv4 total length claims more than the frame holds.
    let mut broken = udp(STRANGER, EMR, 40_000, 53, 4);
    broken[16..18].copy_from_slice(&1000u16.to_be_bytes());
    assert!(broken.len() <= snaplen);
    frames.push(broken);
    let capture = dir.join("snaplen-54.pcap");
    write_pcap_with_snaplen(&capture, &frames, snaplen);

    let mut args = ReplayArgs::new([&capture]);
    args.mode = Mode::Enforce;
    args.learn_all = true;
    args.frames = true;
    let report = replay_ok(&args);
    let file = &report.files[0];
    assert_eq!(file.frames_run, 8);
    assert_eq!(
        (file.frames_cut, file.frames_passed, file.frames_dropped),
        (cut, 0, 4),
        "three handshake frames without a baseline and the broken one are dropped; the cut ones are only cut"
    );
    assert_eq!(report.totals.frames_cut, cut);
    assert_eq!(
        report.verdict_packets(Action::Drop, Some(Reason::NotInBaseline)),
        3
    );
    assert_eq!(
        report.verdict_packets(Action::Drop, Some(Reason::MalformedIpv4)),
        1
    );
    assert_eq!(
        report.verdicts.iter().map(|v| v.packets).sum::<u64>(),
        4,
        "the cut frames have no verdict in the table: {:?}",
        report.verdicts
    );
    let outcomes: Vec<(&str, Option<&str>)> = file
        .frames
        .iter()
        .map(|f| (f.outcome.as_str(), f.reason.as_deref()))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("drop", Some("not_in_baseline")),
            ("drop", Some("not_in_baseline")),
            ("drop", Some("not_in_baseline")),
            ("cut", None),
            ("cut", None),
            ("cut", None),
            ("cut", None),
            ("drop", Some("malformed_ipv4")),
        ]
    );
    // Counted, but charged no drop: the pump's drops are its three handshake frames.
    let pump = report
        .device(ip(PUMP))
        .unwrap_or_else(|| panic!("the pump is in the report"));
    assert_eq!(
        (
            pump.packets_sent + pump.packets_received,
            pump.dropped_packets
        ),
        (7, 3)
    );
    assert_eq!(pump.would_drop_packets, 0);
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("4 frame(s) cut by the capture's snapshot length")),
        "{:?}",
        report.warnings
    );
    let json = report.to_json(None);
    assert_eq!(json["files"][0]["frames_cut"], cut);
    assert_eq!(json["totals"]["frames_cut"], cut);
    assert_eq!(json["files"][0]["frames"][3]["outcome"], "cut");
    assert!(report.to_text(10).contains("CUT"));

    // Learning from the same cut capture learns what the whole one does.
    let mut learn = ReplayArgs::new([&capture]);
    learn.learn_all = true;
    let learned = replay_ok(&learn);
    assert_eq!(learned.totals.frames_dropped, 0);
    let whole = dir.join("whole.pcap");
    write_pcap(&whole, &usual_traffic());
    let mut learn_whole = ReplayArgs::new([&whole]);
    learn_whole.learn_all = true;
    assert_eq!(
        (learned.baseline.learned, learned.totals.frames_cut),
        (replay_ok(&learn_whole).baseline.learned, cut),
        "the cut frames' flows are learned; the malformed frame's is not"
    );
    assert_eq!(learned.baseline.learned, 4);
}
