//! `monitor demo`: a virtual ICU ward in network namespaces, the monitor inline on its
//! router, a learn phase, enforcement, a compromised device scanning the core, an impostor
//! taking the infusion pump's address, and a new device plugged in.
//!
//! Everything it makes (namespaces, links, pins, state) is removed when it ends, also on
//! Ctrl-C: the guards below drop in every case, and the daemon child is stopped first.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::lab::{
    CORE_SERVERS, DICOM, DNS, HTTPS, LabHost, MLLP, NTP, Outcome, Servers, Station, WARD_DEVICES,
    Ward, tcp_exchange, udp_exchange,
};

/// The example ward's policy, embedded so that the demo runs from anywhere.
const WARD_POLICY: &str = include_str!("../../../policies/ward.yaml");
/// The pump's MAC in the example policy. The lab's ward devices share one interface, so
/// it gets this MAC, and the patient monitor (bound to another in the example) is bound
/// to it too.
const PUMP_MAC: &str = "00:09:fb:12:34:01";
const MONITOR_MAC: &str = "00:80:25:aa:10:01";
/// The impostor's and the new device's MACs (registered to VMware).
const IMPOSTOR_MAC: &str = "00:0c:29:66:66:66";
const NEW_DEVICE_MAC: &str = "00:0c:29:aa:bb:cc";

const TIMEOUT: Duration = Duration::from_millis(700);
const SCAN_TIMEOUT: Duration = Duration::from_millis(150);

fn host(name: &str) -> LabHost {
    WARD_DEVICES
        .iter()
        .chain(CORE_SERVERS.iter())
        .copied()
        .find(|h| h.name == name)
        .unwrap_or_else(|| panic!("the lab has no host {name}"))
}

fn at(name: &str, port: u16) -> SocketAddr {
    SocketAddr::new(host(name).address, port)
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The monitor daemon, stopped (SIGTERM, then SIGKILL) on drop.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Demo {
    exe: PathBuf,
    pin_dir: PathBuf,
    state_dir: PathBuf,
    stop: Arc<AtomicBool>,
}

impl Demo {
    /// Runs a `monitor` CLI command against the demo's daemon and prints its output.
    fn cli(&self, args: &[&str]) -> Result<()> {
        println!("\n$ monitor {}", args.join(" "));
        let output = Command::new(&self.exe)
            .arg("--pin-dir")
            .arg(&self.pin_dir)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .args(args)
            .output()
            .with_context(|| format!("running monitor {}", args.join(" ")))?;
        print!("{}", String::from_utf8_lossy(&output.stdout));
        if !output.status.success() {
            bail!(
                "`monitor {}` failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }

    fn check_stop(&self) -> Result<()> {
        if self.stop.load(Ordering::Relaxed) {
            bail!("interrupted; cleaning up");
        }
        Ok(())
    }
}

/// The ward's normal day: every device uses its services.
fn normal_traffic(ward: &Ward) -> Result<Vec<(String, Outcome)>> {
    let tcp = |from: &str, to: SocketAddr, what: &str| -> Result<(String, Outcome)> {
        let src = host(from).address;
        let outcome = ward
            .ward
            .run(move || tcp_exchange(src, to, b"MSH|^~\\&|ICU3|ORU^R01|", TIMEOUT))?;
        Ok((format!("{from} → {what}"), outcome))
    };
    let udp = |from: &str, to: SocketAddr, what: &str| -> Result<(String, Outcome)> {
        let src = host(from).address;
        let outcome = ward
            .ward
            .run(move || udp_exchange(src, 0, to, b"query", TIMEOUT))?;
        Ok((format!("{from} → {what}"), outcome))
    };
    Ok(vec![
        tcp(
            "pump-icu3-01",
            at("pump-server", HTTPS),
            "pump server (HTTPS 443)",
        )?,
        tcp(
            "monitor-icu3-01",
            at("hl7-engine", MLLP),
            "HL7 engine (MLLP 2575)",
        )?,
        tcp("ct-scanner-01", at("pacs", DICOM), "PACS (DICOM 104)")?,
        udp("badge-reader-icu3", at("dns", DNS), "DNS (53/udp)")?,
        udp("ws-icu3-nurses", at("dns", DNS), "DNS (53/udp)")?,
        udp("ws-icu3-nurses", at("ntp", NTP), "NTP (123/udp)")?,
        udp("pump-icu3-01", at("ntp", NTP), "NTP (123/udp)")?,
    ])
}

fn report(outcomes: &[(String, Outcome)]) -> usize {
    let mut answered = 0;
    for (what, outcome) in outcomes {
        let word = match outcome {
            Outcome::Answered => {
                answered += 1;
                "ok"
            }
            Outcome::TimedOut => "DROPPED",
            Outcome::Failed => "failed",
        };
        println!("  {word:<8} {what}");
    }
    answered
}

pub fn run() -> Result<()> {
    let started = Instant::now();
    if !nix_is_root() {
        bail!("the demo builds network namespaces and loads XDP programs: run it as root");
    }
    let (demo, dirs) = Demo::prepare()?;
    println!("== Building a virtual ICU ward in network namespaces");
    let ward = build_ward()?;
    let servers = Servers::start(
        &ward.core,
        &[
            at("pump-server", HTTPS),
            at("hl7-engine", MLLP),
            at("pacs", DICOM),
        ],
        &[at("dns", DNS), at("ntp", NTP)],
    )?;
    println!("\n== Starting the monitor inline on the router (policy: the example ward)");
    let daemon = demo.start_monitor(&ward, &dirs.policy_dir)?;
    println!("\n== Learn phase: the ward's normal traffic, three rounds");
    demo.learn(&ward)?;
    println!("\n== Switching the router to enforce");
    demo.enforce(&ward)?;
    println!("\n== The badge reader is compromised and scans the core");
    let scan = demo.scan(&ward)?;
    println!("\n== An impostor on the ward takes the infusion pump's address");
    let impostor_dropped = demo.impostor(&ward)?;
    println!("\n== A new device is plugged into the ward");
    let discovered = demo.new_device(&ward)?;
    println!("\n== Cleaning up: stopping the monitor, removing namespaces, pins and state");
    drop(daemon);
    drop(servers);
    drop(ward);
    drop(dirs);
    println!("   done in {:.1} s", started.elapsed().as_secs_f64());
    if scan.got_through.is_empty()
        && scan.answered == scan.exchanges
        && impostor_dropped
        && discovered
    {
        println!(
            "\nResult: normal traffic intact, the scan was dropped, the impostor was dropped, \
             the new device was discovered."
        );
        Ok(())
    } else {
        bail!("unexpected result: the scan or the normal traffic did not behave as enforced")
    }
}

/// The demo's pins and state, removed when dropped.
struct Dirs {
    _pin_dir: TempDir,
    _state_dir: TempDir,
    policy_dir: PathBuf,
}

/// What the scan found.
struct ScanResult {
    /// Probes that got a reply (or a refusal) from a server.
    got_through: Vec<String>,
    /// Normal exchanges answered meanwhile, of how many.
    answered: usize,
    exchanges: usize,
}

impl Demo {
    /// Ctrl-C handling, bpffs, and the demo's own pin, state and policy directories.
    fn prepare() -> Result<(Demo, Dirs)> {
        let stop = Arc::new(AtomicBool::new(false));
        {
            let stop = stop.clone();
            ctrlc::set_handler(move || stop.store(true, Ordering::Relaxed))
                .context("installing the Ctrl-C handler")?;
        }
        crate::datapath::ensure_bpffs(Path::new("/sys/fs/bpf"))
            .context("/sys/fs/bpf is not a bpf filesystem and could not be mounted")?;
        let tag = crate::lab::unique_name("demo");
        let pin_dir = TempDir(PathBuf::from("/sys/fs/bpf").join(format!("monitor-{tag}")));
        let state_dir = TempDir(std::env::temp_dir().join(format!("monitor-{tag}")));
        let policy_dir = state_dir.0.join("policies");
        std::fs::create_dir_all(&policy_dir)?;
        std::fs::write(
            policy_dir.join("ward.yaml"),
            WARD_POLICY.replace(MONITOR_MAC, PUMP_MAC),
        )?;
        let demo = Demo {
            exe: std::env::current_exe().context("locating the monitor binary")?,
            pin_dir: pin_dir.0.clone(),
            state_dir: state_dir.0.join("state"),
            stop,
        };
        Ok((
            demo,
            Dirs {
                _pin_dir: pin_dir,
                _state_dir: state_dir,
                policy_dir,
            },
        ))
    }

    /// `monitor run` on the router's two legs, in learn mode; waits until it serves.
    fn start_monitor(&self, ward: &Ward, policy_dir: &Path) -> Result<Daemon> {
        let child = Command::new(&self.exe)
            .arg("--pin-dir")
            .arg(&self.pin_dir)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .args([
                "run",
                "--netns",
                ward.router.name(),
                "--iface",
                &format!("{}:ward", ward.ward_leg),
                "--iface",
                &format!("{}:core", ward.core_leg),
            ])
            .arg("--policies")
            .arg(policy_dir)
            .args(["--mode", "learn"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .context("starting `monitor run`")?;
        let daemon = Daemon(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.state_dir.join(crate::state::files::DAEMON).exists() {
            self.check_stop()?;
            if Instant::now() > deadline {
                bail!("the monitor did not come up within 20 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(daemon)
    }

    fn learn(&self, ward: &Ward) -> Result<()> {
        for round in 1..=3 {
            self.check_stop()?;
            let outcomes = normal_traffic(ward)?;
            let answered = outcomes
                .iter()
                .filter(|(_, o)| *o == Outcome::Answered)
                .count();
            println!(
                "   round {round}: {answered}/{} exchanges answered",
                outcomes.len()
            );
        }
        self.cli(&["devices"])
    }

    fn enforce(&self, ward: &Ward) -> Result<()> {
        self.cli(&["mode", "enforce"])?;
        self.check_stop()?;
        println!("\n   The ward's normal traffic under enforcement:");
        let outcomes = normal_traffic(ward)?;
        let answered = report(&outcomes);
        println!(
            "   => normal traffic intact: {answered}/{} exchanges answered",
            outcomes.len()
        );
        Ok(())
    }

    /// The badge reader probes every core server on common ports; the rest of the ward
    /// goes on meanwhile.
    fn scan(&self, ward: &Ward) -> Result<ScanResult> {
        let scanner = host("badge-reader-icu3").address;
        let mut probes = Vec::new();
        for server in CORE_SERVERS {
            for port in [22, 23, 80, 104, 135, 443, 445, 2575, 3389, 8080] {
                probes.push(SocketAddr::new(server.address, port));
            }
        }
        self.check_stop()?;
        let total = probes.len();
        let stop = self.stop.clone();
        let results = ward.ward.run(move || {
            probes
                .into_iter()
                .take_while(|_| !stop.load(Ordering::Relaxed))
                .map(|to| (to, tcp_exchange(scanner, to, b"probe", SCAN_TIMEOUT)))
                .collect::<Vec<_>>()
        })?;
        self.check_stop()?;
        let got_through: Vec<_> = results
            .iter()
            .filter(|(_, o)| *o != Outcome::TimedOut)
            .map(|(to, _)| to.to_string())
            .collect();
        println!(
            "   {total} TCP probes to the 5 core servers: {} got a reply, {} were dropped at the router",
            got_through.len(),
            total - got_through.len()
        );
        if !got_through.is_empty() {
            println!("   got through: {}", got_through.join(", "));
        }
        let outcomes = normal_traffic(ward)?;
        let answered = outcomes
            .iter()
            .filter(|(_, o)| *o == Outcome::Answered)
            .count();
        println!(
            "   meanwhile the rest of the ward: {answered}/{} normal exchanges answered",
            outcomes.len()
        );
        self.cli(&["flows", "--device", "badge-reader-icu3"])?;
        self.cli(&["status"])?;
        Ok(ScanResult {
            got_through,
            answered,
            exchanges: outcomes.len(),
        })
    }
}

impl Demo {
    /// A station with the pump's address and its own MAC reaches for the pump's server
    /// and the PACS: dropped, and the event names both MACs. Returns whether both were
    /// dropped and evented.
    fn impostor(&self, ward: &Ward) -> Result<bool> {
        let pump = host("pump-icu3-01").address;
        let impostor = Station::plug(ward, IMPOSTOR_MAC, pump)?;
        println!("   station {IMPOSTOR_MAC} (VMware) on the ward link claims {pump}");
        let mut dropped = 0;
        for (to, what) in [
            (at("pump-server", HTTPS), "pump server (HTTPS 443)"),
            (at("pacs", DICOM), "PACS (DICOM 104)"),
        ] {
            self.check_stop()?;
            let outcome = impostor.tcp(pump, to, TIMEOUT)?;
            if outcome == Outcome::TimedOut {
                dropped += 1;
            }
            report(&[(format!("impostor as pump-icu3-01 → {what}"), outcome)]);
        }
        println!("   impostor: {dropped}/2 exchanges dropped");
        let deadline = Instant::now() + Duration::from_secs(3);
        let event = loop {
            if let Some(event) = self.spoof_event()? {
                break Some(event);
            }
            if Instant::now() > deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        match &event {
            Some(text) => println!("   event: {text}"),
            None => println!("   no spoofed_source event"),
        }
        Ok(dropped == 2 && event.is_some())
    }

    /// The first spoofed_source event of the events file, as a line for people.
    fn spoof_event(&self) -> Result<Option<String>> {
        let text = std::fs::read_to_string(self.state_dir.join(crate::state::files::EVENTS))
            .unwrap_or_default();
        Ok(text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|e| e["reason"] == "spoofed_source" && e["source_mac"].is_string())
            .map(|e| {
                let s = |k: &str| e[k].as_str().unwrap_or("?").to_string();
                format!(
                    "{} address of {} seen from unknown MAC {} ({}), not its {} ({})",
                    s("verdict"),
                    s("device"),
                    s("source_mac"),
                    s("source_vendor"),
                    s("expected_mac"),
                    s("expected_vendor")
                )
            }))
    }

    /// A device nobody enrolled talks to the pump server: `monitor discovered` lists it
    /// with its vendor and writes its inventory entry. Returns whether it was listed.
    fn new_device(&self, ward: &Ward) -> Result<bool> {
        let address = "10.10.1.50".parse().context("the new device's address")?;
        let device = Station::plug(ward, NEW_DEVICE_MAC, address)?;
        println!("   station {NEW_DEVICE_MAC} at {address}, in no policy file");
        let outcome = device.tcp(address, at("pump-server", HTTPS), TIMEOUT)?;
        report(&[("new device → pump server (HTTPS 443)".into(), outcome)]);
        let deadline = Instant::now() + Duration::from_secs(5);
        let listed = loop {
            self.check_stop()?;
            let output = Command::new(&self.exe)
                .arg("--pin-dir")
                .arg(&self.pin_dir)
                .arg("--state-dir")
                .arg(&self.state_dir)
                .args(["discovered", "--json"])
                .output()
                .context("running monitor discovered")?;
            if String::from_utf8_lossy(&output.stdout).contains(NEW_DEVICE_MAC) {
                break true;
            }
            if Instant::now() > deadline {
                break false;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        self.cli(&["discovered"])?;
        self.cli(&["discovered", "--yaml"])?;
        if listed {
            println!("   discovered: {NEW_DEVICE_MAC}");
        }
        Ok(listed)
    }
}

/// The ward in its namespaces, described as it is built.
fn build_ward() -> Result<Ward> {
    let ward = Ward::build()?;
    // Its devices share one interface: it gets the MAC the policy binds the pump to.
    ward.ward
        .ip(&["link", "set", &ward.ward_if, "address", PUMP_MAC])?;
    println!(
        "   router {} (legs {} to the ward, {} to the core), ward {}, core {}",
        ward.router.name(),
        ward.ward_leg,
        ward.core_leg,
        ward.ward.name(),
        ward.core.name()
    );
    for h in WARD_DEVICES {
        println!("   device  {:<18} {}", h.name, h.address);
    }
    for h in CORE_SERVERS {
        println!("   server  {:<18} {}", h.name, h.address);
    }
    Ok(ward)
}

fn nix_is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}
