//! MUD import (RFC 8520) on real traffic: the RFC's example file as the policy of the lab's
//! badge reader, its DNS name answered by a responder this test runs on the router
//! namespace's loopback (no query leaves the machine); the rule follows the answer when its
//! TTL runs out; malformed MUD files are refused with their JSON pointer and reason, and
//! the policy in force stays.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv6Addr, SocketAddr, UdpSocket},
    path::Path,
    process::Command,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use monitor::{
    lab::{DNS, HTTPS, NetNs, Outcome, Servers},
    policy::{Policy, PolicyError, Problem},
};
use monitor_tests::harness::{Lab, TempDir, example_policy, monitor_bin, service};

const RFC_EXAMPLE: &str = include_str!("../../policies/mud/rfc8520-lightbulb2000.json");
const NAME: &str = "test.example.com";
const QUICK: Duration = Duration::from_millis(300);
const TTL: u32 = 4;

/// What the responder answers for a name: addresses and TTL; names it does not know get
/// NXDOMAIN.
type Zone = BTreeMap<String, (Vec<IpAddr>, u32)>;

/// A minimal authoritative DNS responder for A and AAAA questions over UDP.
struct Responder {
    addr: SocketAddr,
    zone: Arc<Mutex<Zone>>,
    /// Every question: name, type, when.
    questions: Arc<Mutex<Vec<(String, u16, Instant)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Responder {
    /// Listens on 127.0.0.1 (a free port) inside `ns`.
    fn start(ns: &NetNs, zone: Zone) -> Responder {
        let zone = Arc::new(Mutex::new(zone));
        let questions = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = {
            let (zone, questions, stop) = (zone.clone(), questions.clone(), stop.clone());
            ns.spawn(move || {
                let socket = UdpSocket::bind("127.0.0.1:0")
                    .unwrap_or_else(|e| panic!("binding the DNS responder: {e}"));
                socket
                    .set_read_timeout(Some(Duration::from_millis(50)))
                    .unwrap_or_else(|e| panic!("{e}"));
                tx.send(socket.local_addr().unwrap_or_else(|e| panic!("{e}")))
                    .unwrap_or_else(|e| panic!("{e}"));
                let mut buf = [0u8; 1500];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, from)) = socket.recv_from(&mut buf) else {
                        continue;
                    };
                    let zone = zone.lock().unwrap_or_else(|e| panic!("{e}")).clone();
                    if let Some((reply, name, qtype)) = answer(&buf[..n], &zone) {
                        questions.lock().unwrap_or_else(|e| panic!("{e}")).push((
                            name,
                            qtype,
                            Instant::now(),
                        ));
                        let _ = socket.send_to(&reply, from);
                    }
                }
            })
            .unwrap_or_else(|e| panic!("{e}"))
        };
        let addr = rx
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("DNS responder: {e}"));
        Responder {
            addr,
            zone,
            questions,
            stop,
            thread: Some(thread),
        }
    }

    fn set(&self, name: &str, addresses: &[IpAddr], ttl: u32) {
        self.zone
            .lock()
            .unwrap_or_else(|e| panic!("{e}"))
            .insert(name.to_string(), (addresses.to_vec(), ttl));
    }

    fn remove(&self, name: &str) {
        self.zone
            .lock()
            .unwrap_or_else(|e| panic!("{e}"))
            .remove(name);
    }

    /// When `name` was asked for AAAA records.
    fn asked(&self, name: &str) -> Vec<Instant> {
        self.questions
            .lock()
            .unwrap_or_else(|e| panic!("{e}"))
            .iter()
            .filter(|(n, t, _)| n == name && *t == 28)
            .map(|(_, _, at)| *at)
            .collect()
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The reply to one DNS query (RFC 1035): the question echoed, an answer per address of
/// the asked type, NXDOMAIN for names outside the zone. Also the name and type asked.
fn answer(query: &[u8], zone: &Zone) -> Option<(Vec<u8>, String, u16)> {
    let word = |at: usize| {
        query
            .get(at..at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
    };
    let flags = word(2)?;
    if flags & 0x8000 != 0 || word(4)? != 1 {
        return None;
    }
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*query.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(query.get(at..at + len)?).to_ascii_lowercase());
        at += len;
    }
    let qtype = word(at)?;
    let question_end = at + 4;
    query.get(..question_end)?;
    let name = labels.join(".");
    let (records, ttl, rcode): (Vec<IpAddr>, u32, u16) = match zone.get(&name) {
        Some((addresses, ttl)) => (
            addresses
                .iter()
                .copied()
                .filter(|ip| matches!((ip, qtype), (IpAddr::V4(_), 1) | (IpAddr::V6(_), 28)))
                .collect(),
            *ttl,
            0,
        ),
        None => (Vec::new(), 0, 3),
    };
    let mut reply = Vec::new();
    reply.extend_from_slice(&query[..2]);
    // QR, the query's opcode and RD, AA, RA, RCODE.
    reply.extend_from_slice(&(0x8000 | (flags & 0x7900) | 0x0400 | 0x0080 | rcode).to_be_bytes());
    reply.extend_from_slice(&1u16.to_be_bytes());
    reply.extend_from_slice(&(records.len() as u16).to_be_bytes());
    reply.extend_from_slice(&[0, 0, 0, 0]);
    reply.extend_from_slice(&query[12..question_end]);
    for ip in records {
        reply.extend_from_slice(&[0xc0, 0x0c]);
        reply.extend_from_slice(&qtype.to_be_bytes());
        reply.extend_from_slice(&1u16.to_be_bytes());
        reply.extend_from_slice(&ttl.to_be_bytes());
        match ip {
            IpAddr::V4(v4) => {
                reply.extend_from_slice(&4u16.to_be_bytes());
                reply.extend_from_slice(&v4.octets());
            }
            IpAddr::V6(v6) => {
                reply.extend_from_slice(&16u16.to_be_bytes());
                reply.extend_from_slice(&v6.octets());
            }
        }
    }
    Some((reply, name, qtype))
}

// ---- Malformed MUD files. ----

/// A MUD file broken one way, and the one problem expected.
struct Bad {
    kind: &'static str,
    text: String,
    pointer: &'static str,
    /// Line and column, where the JSON parser gives them.
    line: Option<usize>,
    column: Option<usize>,
    reason: &'static str,
}

/// The RFC example with the first `from` replaced by `to`.
fn broken(from: &str, to: &str) -> String {
    assert!(
        RFC_EXAMPLE.contains(from),
        "the RFC example has no `{from}`"
    );
    RFC_EXAMPLE.replacen(from, to, 1)
}

fn bad_files() -> Vec<Bad> {
    let bad = |kind, text, pointer, line, column, reason| Bad {
        kind,
        text,
        pointer,
        line,
        column,
        reason,
    };
    vec![
        bad(
            "JSON syntax error",
            broken("\"mud-version\": 1,", "\"mud-version\": 1"),
            "/ietf-mud:mud",
            Some(4),
            Some(5),
            "expected `,` or `}`",
        ),
        bad(
            "duplicate member",
            broken(
                "\"cache-validity\": 48,",
                "\"cache-validity\": 48,\n    \"mud-version\": 1,",
            ),
            "/ietf-mud:mud",
            Some(7),
            Some(17),
            "duplicate field `mud-version`",
        ),
        bad(
            "ACL container of a pre-RFC draft",
            broken(
                "\"ietf-access-control-list:acls\"",
                "\"ietf-access-control-list:access-lists\"",
            ),
            "/ietf-access-control-list:access-lists",
            Some(28),
            Some(41),
            "unknown field `ietf-access-control-list:access-lists`",
        ),
        bad(
            "missing mud-url",
            broken(
                "    \"mud-url\": \"https://lighting.example.com/lightbulb2000\",\n",
                "",
            ),
            "/ietf-mud:mud",
            Some(26),
            Some(3),
            "missing field `mud-url`",
        ),
        bad(
            "port as a string",
            broken("\"port\": 443", "\"port\": \"443\""),
            "/ietf-access-control-list:acls/acl/0/aces/ace/0/matches/tcp/source-port/port",
            Some(46),
            Some(33),
            "invalid type: string \"443\", expected u16",
        ),
        bad(
            "unknown match field",
            broken("\"protocol\": 6", "\"next-header\": 6"),
            "/ietf-access-control-list:acls/acl/0/aces/ace/0/matches/ipv6/next-header",
            Some(40),
            Some(31),
            "unknown field `next-header`",
        ),
        bad(
            "direction-initiated on UDP",
            broken("\"tcp\": {", "\"udp\": {"),
            "/ietf-access-control-list:acls/acl/0/aces/ace/0/matches/udp/ietf-mud:direction-initiated",
            Some(43),
            Some(48),
            "unknown field `ietf-mud:direction-initiated`",
        ),
        bad(
            "policy names an ACL that is not defined",
            broken(
                "\"name\": \"mud-76100-v6fr\"",
                "\"name\": \"mud-76100-v6fx\"",
            ),
            "/ietf-mud:mud/from-device-policy/access-lists/access-list/0/name",
            None,
            None,
            "names ACL `mud-76100-v6fx`, which `ietf-access-control-list:acls` does not define",
        ),
        bad(
            "mud-version 2",
            broken("\"mud-version\": 1", "\"mud-version\": 2"),
            "/ietf-mud:mud/mud-version",
            None,
            None,
            "mud-version is 2; this monitor reads version 1",
        ),
        bad(
            "MUD URL without https",
            broken("https://lighting", "http://lighting"),
            "/ietf-mud:mud/mud-url",
            None,
            None,
            "is not an https URL",
        ),
        bad(
            "declared extension",
            broken(
                "\"is-supported\": true,",
                "\"is-supported\": true,\n    \"extensions\": [\"ol\"],",
            ),
            "/ietf-mud:mud/extensions",
            None,
            None,
            "declares the MUD extension(s) `ol`, which this monitor does not implement",
        ),
        bad(
            "protocol contradicts the TCP match",
            broken("\"protocol\": 6", "\"protocol\": 17"),
            "/ietf-access-control-list:acls/acl/0/aces/ace/0/matches/ipv6/protocol",
            None,
            None,
            "protocol is 17, but the ACE matches `tcp`",
        ),
        bad(
            "ipv4 match in an ipv6 ACL",
            broken("\"ipv6\": {", "\"ipv4\": {"),
            "/ietf-access-control-list:acls/acl/0/aces/ace/0/matches/ipv4",
            None,
            None,
            "an ipv4 match in an ACL of type ipv6-acl-type",
        ),
        bad(
            "network and name together",
            broken(
                "\"ietf-acldns:src-dnsname\": \"test.example.com\",",
                "\"ietf-acldns:src-dnsname\": \"test.example.com\", \"source-ipv6-network\": \"2001:db8::/32\",",
            ),
            "/ietf-access-control-list:acls/acl/0/aces/ace/0/matches/ipv6",
            None,
            None,
            "has both `source-ipv6-network` and `ietf-acldns:src-dnsname`",
        ),
        bad(
            "not a DNS name",
            broken("\"test.example.com\"", "\"test..example.com\""),
            "/ietf-access-control-list:acls/acl/0/aces/ace/0/matches/ipv6/ietf-acldns:src-dnsname",
            None,
            None,
            "`test..example.com` is not a DNS name",
        ),
        bad(
            "same-manufacturer",
            broken(
                "\"matches\": {",
                "\"matches\": {\"ietf-mud:mud\": {\"same-manufacturer\": [null]},",
            ),
            "/ietf-access-control-list:acls/acl/0/aces/ace/0/matches/ietf-mud:mud/same-manufacturer",
            None,
            None,
            "`same-manufacturer` is not supported: it needs the MUD URLs of other devices",
        ),
        bad(
            "local-networks the policy does not define",
            broken("\"ietf-acldns:src-dnsname\": \"test.example.com\",", "").replacen(
                "\"matches\": {",
                "\"matches\": {\"ietf-mud:mud\": {\"local-networks\": [null]},",
                1,
            ),
            "/ietf-access-control-list:acls/acl/0/aces/ace/0/matches/ietf-mud:mud/local-networks",
            None,
            None,
            "`local-networks` is not supported unless the policy's mud entry says which blocks it means",
        ),
        bad(
            "reject",
            broken("\"forwarding\": \"accept\"", "\"forwarding\": \"reject\""),
            "/ietf-access-control-list:acls/acl/0/aces/ace/0/actions/forwarding",
            None,
            None,
            "`reject` is not supported",
        ),
        bad(
            "the client's ephemeral port",
            {
                // The from-device ACE (the second ACL) names the device's own port.
                let at = RFC_EXAMPLE
                    .find("\"mud-76100-v6fr\",")
                    .unwrap_or_else(|| panic!("no second ACL"));
                let (head, tail) = RFC_EXAMPLE.split_at(at);
                format!(
                    "{head}{}",
                    tail.replacen("\"destination-port\"", "\"source-port\"", 1)
                )
            },
            "/ietf-access-control-list:acls/acl/1/aces/ace/0/matches/tcp/source-port",
            None,
            None,
            "this is the device's port, and the device opens the connection",
        ),
    ]
}

/// `file[:line[:column]]: at POINTER: ` as problems print it.
fn location(file: &Path, bad: &Bad) -> String {
    let mut text = file.display().to_string();
    if let Some(line) = bad.line {
        text.push_str(&format!(":{line}"));
        if let Some(column) = bad.column {
            text.push_str(&format!(":{column}"));
        }
    }
    if bad.pointer.is_empty() {
        text.push_str(": at the top level: ");
    } else {
        text.push_str(&format!(": at {}: ", bad.pointer));
    }
    text
}

fn mud_entry(dns: Option<SocketAddr>) -> String {
    let servers = dns.map_or_else(String::new, |addr| {
        format!("    dns-servers: [\"{addr}\"]\n")
    });
    format!(
        "# The badge reader's manufacturer publishes the RFC 8520 example.\nmud:\n  - kind: badge-reader\n    file: mud/lightbulb.json\n{servers}"
    )
}

const BADGE: &str =
    "devices:\n  - name: badge-1\n    kind: badge-reader\n    addresses: [10.10.1.14]\n";

fn refused(dir: &Path) -> Vec<Problem> {
    match Policy::load_dir(dir) {
        Ok(_) => panic!("the policy in {} was accepted", dir.display()),
        Err(PolicyError::Invalid(problems)) => problems,
        Err(other) => panic!("unexpected error: {other}"),
    }
}

#[test]
fn the_rfc_example_loads_and_its_names_wait_for_the_resolver() {
    let dir = TempDir::new(&std::env::temp_dir(), "mmud");
    std::fs::create_dir(dir.0.join("mud")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.0.join("mud/lightbulb.json"), RFC_EXAMPLE).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        dir.0.join("ward.yaml"),
        format!("{BADGE}{}", mud_entry(None)),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let policy = Policy::load_dir(&dir.0).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(policy.mud.len(), 1);
    let import = &policy.mud[0];
    assert_eq!(import.kind, "badge-reader");
    assert_eq!(import.place.line, Some(7), "the entry's line");
    assert_eq!(
        import.mud.info.mud_url,
        "https://lighting.example.com/lightbulb2000"
    );
    assert!(
        policy.rules.is_empty(),
        "the only peer is a name: no rule before it resolves"
    );
    let questions: Vec<String> = import.questions().map(|q| q.to_string()).collect();
    assert_eq!(questions, ["test.example.com AAAA"]);
    // With an address for the name, the rule is the one flow rule the two ACEs describe.
    let mut names = monitor::policy::mud::Names::default();
    let server: IpAddr = "fd00:20::10".parse().unwrap_or_else(|e| panic!("{e}"));
    names.record(vec![(
        import
            .questions()
            .next()
            .unwrap_or_else(|| panic!("no question")),
        monitor::policy::mud::Lookup::Found([server].into(), 60),
    )]);
    let rules = import.named_rules(&names);
    assert_eq!(rules.len(), 1, "{rules:?}");
    let rule = &rules[0].1;
    assert_eq!(rule.devices.kind.as_deref(), Some("badge-reader"));
    assert_eq!(rule.peer.cidr.as_deref(), Some("fd00:20::10"));
    assert_eq!(
        (rule.protocol.as_str(), rule.direction),
        ("tcp", monitor::policy::RuleDirection::Out)
    );
    assert_eq!(rule.ports, Some(monitor::policy::PortsSpec::One(HTTPS)));
    let description = rule.description.as_deref().unwrap_or_default();
    assert!(
        description.contains("mud-76100-v6fr/cl0-frdev")
            && description.contains("mud-76100-v6to/cl0-todev"),
        "{description}"
    );
    // `policy check` accepts it.
    let output = Command::new(monitor_bin())
        .args(["policy", "check"])
        .arg(&dir.0)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // `monitor mud show` says what the file opens; with --resolve (inside a namespace of its
    // own, asking the responder there), also the addresses.
    let ns = NetNs::new("mdn").unwrap_or_else(|e| panic!("{e}"));
    let dns = Responder::start(&ns, BTreeMap::new());
    dns.set(NAME, &[server], 60);
    std::fs::write(
        dir.0.join("ward.yaml"),
        format!("{BADGE}{}", mud_entry(Some(dns.addr))),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let show = |resolve: bool| {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", ns.name()])
            .arg(monitor_bin())
            .args(["mud", "show"])
            .arg(&dir.0);
        if resolve {
            command.arg("--resolve");
        }
        let output = command.output().unwrap_or_else(|e| panic!("{e}"));
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let text = show(false);
    assert!(
        text.contains("for every device of kind `badge-reader`"),
        "{text}"
    );
    assert!(
        text.contains("allow out tcp/443 peer test.example.com (AAAA)   [mud-76100-v6fr/cl0-frdev, mud-76100-v6to/cl0-todev]"),
        "{text}"
    );
    assert!(
        !text.contains("fd00:20::10") && dns.asked(NAME).is_empty(),
        "resolved without --resolve:\n{text}"
    );
    let text = show(true);
    assert!(
        text.contains("test.example.com AAAA: fd00:20::10"),
        "{text}"
    );
    assert_eq!(dns.asked(NAME).len(), 1);
}

/// The threads of this process named as the MUD resolver's thread.
fn resolver_threads() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap_or_else(|e| panic!("/proc/self/task: {e}"))
        .flatten()
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|comm| comm.trim() == monitor::policy::mud::resolver::THREAD_NAME)
        })
        .map(|task| task.file_name().to_string_lossy().into_owned())
        .collect()
}

/// MUD names are asked from a plain thread (as the daemon's control thread asks them)
/// through one resolver thread that lives as long as its `Names`: the same thread answers
/// the first question, the one after the TTL and the one after the name was forgotten, and
/// every answer comes from the server, none from a cache of the resolver's own.
#[test]
fn names_are_asked_by_one_long_lived_resolver_from_a_plain_thread() {
    let ns = NetNs::new("mrs").unwrap_or_else(|e| panic!("{e}"));
    let dns = Responder::start(&ns, BTreeMap::new());
    let first: IpAddr = "fd00:20::10".parse().unwrap_or_else(|e| panic!("{e}"));
    let second: IpAddr = "fd00:20::20".parse().unwrap_or_else(|e| panic!("{e}"));
    dns.set(NAME, &[first], 1);
    let dir = TempDir::new(&std::env::temp_dir(), "mmud");
    std::fs::create_dir(dir.0.join("mud")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.0.join("mud/lightbulb.json"), RFC_EXAMPLE).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        dir.0.join("ward.yaml"),
        format!("{BADGE}{}", mud_entry(Some(dns.addr))),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let policy = Policy::load_dir(&dir.0).unwrap_or_else(|e| panic!("{e}"));
    let without_mud = Policy {
        mud: Vec::new(),
        ..policy.clone()
    };
    let zone = dns.zone.clone();
    let set = move |address: IpAddr, ttl: u32| {
        zone.lock()
            .unwrap_or_else(|e| panic!("{e}"))
            .insert(NAME.to_string(), (vec![address], ttl));
    };
    let peers = |policy: &Policy| -> Vec<String> {
        policy
            .rules
            .iter()
            .filter_map(|(_, rule)| rule.peer.cidr.clone())
            .collect()
    };
    assert!(resolver_threads().is_empty(), "{:?}", resolver_threads());
    let threads = ns
        .run(move || {
            let mut names = monitor::policy::mud::Names::default();
            let mut applied = policy.clone();
            names.apply(&mut applied);
            assert_eq!(peers(&applied), [first.to_string()]);
            let threads = vec![resolver_threads()];
            // The answer changes; asked again once its TTL (1 s) has run out.
            set(second, 60);
            std::thread::sleep(Duration::from_millis(1100));
            assert!(names.refresh_expired(), "the changed answer after the TTL");
            let mut applied = policy.clone();
            names.apply(&mut applied);
            assert_eq!(peers(&applied), [second.to_string()], "kept for its TTL");
            // Forgotten (the policy no longer names it) and named again: asked at once, and
            // answered by the server although the last answer's 60 s have not run out.
            set(first, 60);
            names.apply(&mut without_mud.clone());
            let mut applied = policy.clone();
            names.apply(&mut applied);
            assert_eq!(peers(&applied), [first.to_string()], "a cached answer");
            let threads = [threads, vec![resolver_threads()]].concat();
            drop(names);
            threads
        })
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        dns.asked(NAME).len(),
        3,
        "every question went to the server"
    );
    assert_eq!(threads[0].len(), 1, "one resolver thread: {threads:?}");
    assert_eq!(threads[0], threads[1], "the same thread throughout");
    let started = Instant::now();
    while !resolver_threads().is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the resolver thread outlived its Names: {:?}",
            resolver_threads()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn every_kind_of_malformed_mud_file_is_refused_with_its_json_pointer() {
    let bad = bad_files();
    assert!(bad.len() >= 15, "{} kinds", bad.len());
    for case in &bad {
        let dir = TempDir::new(&std::env::temp_dir(), "mmud");
        std::fs::create_dir(dir.0.join("mud")).unwrap_or_else(|e| panic!("{e}"));
        let file = dir.0.join("mud/lightbulb.json");
        std::fs::write(&file, &case.text).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(
            dir.0.join("ward.yaml"),
            format!("{BADGE}{}", mud_entry(None)),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let problems = refused(&dir.0);
        assert_eq!(
            problems.len(),
            1,
            "{}: expected one problem, got {problems:#?}",
            case.kind
        );
        let problem = &problems[0];
        assert_eq!(problem.place.file, file, "{}: {problem}", case.kind);
        assert_eq!(
            (problem.place.line, problem.place.column),
            (case.line, case.column),
            "{}: {problem}",
            case.kind
        );
        let at = if case.pointer.is_empty() {
            "at the top level: ".to_string()
        } else {
            format!("at {}: ", case.pointer)
        };
        assert!(
            problem.message.starts_with(&at),
            "{}: pointer of {problem}",
            case.kind
        );
        assert!(
            problem.message.contains(case.reason),
            "{}: reason of {problem}",
            case.kind
        );
        let output = Command::new(monitor_bin())
            .args(["policy", "check"])
            .arg(&dir.0)
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        let text = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success(),
            "{}: accepted by `monitor policy check`",
            case.kind
        );
        let place = location(&file, case);
        assert!(
            text.lines()
                .any(|l| l.contains(&place) && l.contains(case.reason)),
            "{}: `monitor policy check` does not say `{place}{}`:\n{text}",
            case.kind,
            case.reason
        );
    }
    // The entry's own mistakes are placed at the entry.
    let dir = TempDir::new(&std::env::temp_dir(), "mmud");
    std::fs::write(
        dir.0.join("ward.yaml"),
        format!("{BADGE}mud:\n  - kind: badge-reader\n    file: mud/missing.json\n  - kind: badge-raeder\n    file: mud/missing.json\n    dns-servers: [dns.example]\n"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let problems = refused(&dir.0);
    let lines: Vec<(Option<usize>, &str)> = problems
        .iter()
        .map(|p| (p.place.line, p.message.as_str()))
        .collect();
    assert!(
        lines
            .iter()
            .any(|(l, m)| *l == Some(6) && m.contains("missing.json: cannot read")),
        "{problems:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|(l, m)| *l == Some(8) && m.contains("`dns.example` is not IP or IP:PORT")),
        "{problems:#?}"
    );
}

/// The veth interface of a namespace and its MAC address.
fn veth(ns: &NetNs) -> (String, String) {
    let out = ns
        .ip(&["-o", "link", "show", "type", "veth"])
        .unwrap_or_else(|e| panic!("{e}"));
    let name = out
        .split(':')
        .nth(1)
        .and_then(|n| n.trim().split('@').next())
        .unwrap_or_else(|| panic!("no veth in {}: {out}", ns.name()))
        .to_string();
    (name, mac(ns, &out))
}

fn mac(ns: &NetNs, ip_link_line: &str) -> String {
    ip_link_line
        .split("link/ether ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no MAC in {}: {ip_link_line}", ns.name()))
        .to_string()
}

/// The lab with the badge reader at `fd00:10::11` too, its MUD file the RFC example, the
/// name answered by a responder in the router namespace, TCP echo servers on the core's
/// IPv6 addresses `::10` (443 and 8443) and `::20` (443), the daemon enforcing from the
/// start (nothing learned).
struct MudLab {
    lab: Lab,
    dns: Responder,
    _servers: Servers,
    first: IpAddr,
    second: IpAddr,
}

impl MudLab {
    fn start() -> MudLab {
        let ward = example_policy();
        let badge_line = "    addresses: [10.10.1.14]\n";
        assert!(
            ward.contains(badge_line),
            "policies/ward.yaml no longer gives the badge reader {badge_line}"
        );
        let ward = ward.replacen(
            badge_line,
            "    addresses: [10.10.1.14, \"fd00:10::11\"]\n",
            1,
        );
        let lab = Lab::new(&ward);
        let first = IpAddr::V6(Ipv6Addr::new(0xfd00, 0x20, 0, 0, 0, 0, 0, 0x10));
        let second = IpAddr::V6(Ipv6Addr::new(0xfd00, 0x20, 0, 0, 0, 0, 0, 0x20));
        // The core gets its second server address; neighbours between ward and router are
        // fixed, so that enforcing the badge reader's IPv6 address leaves neighbour
        // discovery alone (the MUD file allows HTTPS, nothing else).
        let (core_if, _) = veth(&lab.ward.core);
        lab.ward
            .core
            .ip(&["addr", "add", "fd00:20::20/64", "dev", &core_if, "nodad"])
            .unwrap_or_else(|e| panic!("{e}"));
        let (ward_if, ward_mac) = veth(&lab.ward.ward);
        let leg = lab
            .ward
            .router
            .ip(&["-o", "link", "show", "dev", &lab.ward.ward_leg])
            .unwrap_or_else(|e| panic!("{e}"));
        let leg_mac = mac(&lab.ward.router, &leg);
        lab.ward
            .ward
            .ip(&[
                "-6",
                "neigh",
                "replace",
                "fd00:10::1",
                "lladdr",
                &leg_mac,
                "dev",
                &ward_if,
                "nud",
                "permanent",
            ])
            .unwrap_or_else(|e| panic!("{e}"));
        lab.ward
            .router
            .ip(&[
                "-6",
                "neigh",
                "replace",
                "fd00:10::11",
                "lladdr",
                &ward_mac,
                "dev",
                &lab.ward.ward_leg,
                "nud",
                "permanent",
            ])
            .unwrap_or_else(|e| panic!("{e}"));
        let servers = Servers::start(
            &lab.ward.core,
            &[
                SocketAddr::new(first, HTTPS),
                SocketAddr::new(first, 8443),
                SocketAddr::new(second, HTTPS),
            ],
            &[],
        )
        .unwrap_or_else(|e| panic!("starting the IPv6 servers: {e}"));
        let dns = Responder::start(&lab.ward.router, BTreeMap::new());
        dns.set(NAME, &[first], TTL);
        let dir = &lab.policy_dir.0;
        std::fs::create_dir(dir.join("mud")).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.join("mud/lightbulb.json"), RFC_EXAMPLE)
            .unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.join("mud.yaml"), mud_entry(Some(dns.addr)))
            .unwrap_or_else(|e| panic!("{e}"));
        let mut lab = MudLab {
            lab,
            dns,
            _servers: servers,
            first,
            second,
        };
        // IPv6 forwarding across the fresh lab works before the monitor is attached.
        for server in [first, second] {
            let started = Instant::now();
            while lab.https6(server, HTTPS, Duration::from_millis(500)) != Outcome::Answered {
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "no IPv6 path to {server} in the lab"
                );
            }
        }
        lab.lab.start(&["--mode", "enforce"]);
        lab
    }

    /// The badge reader's IPv6 address connects to `to` and exchanges a message.
    fn https6(&self, to: IpAddr, port: u16, timeout: Duration) -> Outcome {
        self.lab
            .ward
            .ward
            .run(move || {
                monitor::lab::tcp_exchange(
                    IpAddr::V6(Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, 0, 0x11)),
                    SocketAddr::new(to, port),
                    b"GET /",
                    timeout,
                )
            })
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Waits up to `limit` for `outcome` of an HTTPS exchange with `to`.
    fn wait_for(&self, to: IpAddr, outcome: Outcome, limit: Duration) -> Duration {
        let started = Instant::now();
        loop {
            if self.https6(to, HTTPS, QUICK) == outcome {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < limit,
                "HTTPS to {to} is not {outcome:?} after {limit:?}\n{}",
                self.lab.daemon_log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Only the MUD rule's flow passes: HTTPS to the address the name has now.
    fn assert_only_https_to(&self, server: IpAddr) {
        let other = if server == self.first {
            self.second
        } else {
            self.first
        };
        assert_eq!(
            self.https6(server, HTTPS, Duration::from_secs(1)),
            Outcome::Answered,
            "HTTPS to {server}\n{}",
            self.lab.daemon_log()
        );
        assert_eq!(
            self.https6(other, HTTPS, QUICK),
            Outcome::TimedOut,
            "HTTPS to {other}, which the name does not give"
        );
        assert_eq!(
            self.https6(self.first, 8443, QUICK),
            Outcome::TimedOut,
            "another port of the server"
        );
        assert_eq!(
            self.lab
                .udp("badge-reader-icu3", service("dns", DNS), QUICK),
            Outcome::TimedOut,
            "IPv4 DNS"
        );
        assert_eq!(
            self.lab
                .tcp("badge-reader-icu3", service("pump-server", HTTPS), QUICK),
            Outcome::TimedOut,
            "IPv4 HTTPS"
        );
    }
}

#[test]
fn the_rfc_example_opens_https_to_the_resolved_server_only_and_follows_the_ttl() {
    let lab = MudLab::start();
    let log = lab.lab.daemon_log();
    assert!(
        log.contains(&format!(
            "MUD name {NAME} AAAA: {} (TTL {TTL} s)",
            lab.first
        )),
        "{log}"
    );
    // (a) The resolved server, HTTPS only, nothing else.
    lab.assert_only_https_to(lab.first);
    // (b) The answer changes; the rule follows once the TTL has run out, not before.
    lab.dns.set(NAME, &[lab.second], TTL);
    let changed_at = Instant::now();
    let first_asked = lab.dns.asked(NAME)[0];
    lab.wait_for(
        lab.second,
        Outcome::Answered,
        Duration::from_secs(u64::from(TTL) + 6),
    );
    let asked = lab.dns.asked(NAME);
    assert!(asked.len() >= 2);
    let refreshed_after = asked[1].duration_since(first_asked);
    assert!(
        refreshed_after >= Duration::from_secs(u64::from(TTL)) - Duration::from_millis(50)
            && refreshed_after <= Duration::from_secs(u64::from(TTL) + 3),
        "re-asked {refreshed_after:?} after the first answer; its TTL was {TTL} s"
    );
    assert!(changed_at.elapsed() < Duration::from_secs(u64::from(TTL) + 6));
    // Never asked again before the answer's TTL ran out.
    for pair in asked.windows(2) {
        let gap = pair[1].duration_since(pair[0]);
        assert!(
            gap >= Duration::from_secs(u64::from(TTL)) - Duration::from_millis(50),
            "asked again after {gap:?}"
        );
    }
    lab.assert_only_https_to(lab.second);
    let log = lab.lab.daemon_log();
    assert!(
        log.contains(&format!(
            "MUD name {NAME} AAAA changed: {} → {}",
            lab.first, lab.second
        )),
        "{log}"
    );
    // The name goes away: its rule opens nothing any more.
    lab.dns.remove(NAME);
    lab.wait_for(
        lab.second,
        Outcome::TimedOut,
        Duration::from_secs(u64::from(TTL) + 6),
    );
    assert!(
        lab.lab.daemon_log().contains("no such name"),
        "{}",
        lab.lab.daemon_log()
    );
    assert_eq!(lab.https6(lab.first, HTTPS, QUICK), Outcome::TimedOut);
}

#[test]
fn malformed_mud_files_leave_the_policy_in_force() {
    let lab = MudLab::start();
    lab.assert_only_https_to(lab.first);
    let file = lab.lab.policy_dir.0.join("mud/lightbulb.json");
    for case in bad_files() {
        let seen = lab.lab.daemon_log().len();
        let partial = file.with_extension("partial");
        std::fs::write(&partial, &case.text).unwrap_or_else(|e| panic!("{e}"));
        std::fs::rename(&partial, &file).unwrap_or_else(|e| panic!("{e}"));
        lab.lab.cli_ok(&["reload"]);
        let place = location(&file, &case);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let log = lab.lab.daemon_log();
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
                "{}: the daemon log does not name `{place}{}`:\n{new}",
                case.kind,
                case.reason
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(
            lab.https6(lab.first, HTTPS, Duration::from_secs(1)),
            Outcome::Answered,
            "{}: the MUD rule in force is gone",
            case.kind
        );
        assert_eq!(
            lab.https6(lab.first, 8443, QUICK),
            Outcome::TimedOut,
            "{}: enforcement stopped",
            case.kind
        );
    }
    // Good again.
    std::fs::write(&file, RFC_EXAMPLE).unwrap_or_else(|e| panic!("{e}"));
    lab.lab.cli_ok(&["reload"]);
    lab.assert_only_https_to(lab.first);
}
