//! Drives the real `monitor` binary against a lab ward: a daemon child process attached
//! inside the lab's router namespace, with its own pin and state directories, all removed
//! when the harness drops.

use std::{
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use monitor::lab::{
    CORE_SERVERS, DICOM, DNS, HTTPS, MLLP, NTP, Outcome, Servers, WARD_DEVICES, Ward, tcp_exchange,
    udp_exchange, unique_name,
};

/// The `monitor` binary of this build (built on demand when missing).
pub fn monitor_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current_exe: {e}"));
    // target/debug/deps/this-test → target/debug/monitor
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("unexpected test path {}", exe.display()));
    let bin = dir.join("monitor");
    // `cargo test -p monitor-tests` rebuilds the monitor library but not its binary: a
    // test would then run an older daemon and prove nothing about the code as it is.
    let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let newest_source = ["monitor/src", "monitor-common/src", "monitor-ebpf/src"]
        .iter()
        .flat_map(|dir| sources(&root.join(dir)))
        .filter_map(|file| modified(&file))
        .max();
    if let (Some(built), Some(source)) = (modified(&bin), newest_source) {
        assert!(
            built >= source,
            "{} is older than its sources: run `cargo build -p monitor` first \
             (`cargo xtask test` does)",
            bin.display()
        );
    }
    if !bin.exists() {
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "-p", "monitor", "--bin", "monitor"])
            .status()
            .unwrap_or_else(|e| panic!("building monitor: {e}"));
        assert!(status.success(), "building the monitor binary failed");
    }
    bin
}

/// Every file under `dir` that the binary is built from: not the unit tests' `tests.rs`
/// modules (each `#[cfg(test)] mod tests;`), whose edits do not relink the binary.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(sources(&path));
        } else if path.file_name().is_some_and(|n| n != "tests.rs") {
            files.push(path);
        }
    }
    files
}

pub fn host(name: &str) -> IpAddr {
    WARD_DEVICES
        .iter()
        .chain(CORE_SERVERS.iter())
        .find(|h| h.name == name)
        .unwrap_or_else(|| panic!("no lab host {name}"))
        .address
}

pub fn service(name: &str, port: u16) -> SocketAddr {
    SocketAddr::new(host(name), port)
}

/// A directory removed on drop.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(base: &Path, prefix: &str) -> TempDir {
        let path = base.join(unique_name(prefix));
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The example ward policy of the repository.
pub fn example_policy() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../policies/ward.yaml"
    ))
    .unwrap_or_else(|e| panic!("reading policies/ward.yaml: {e}"))
}

/// A lab ward with its servers, a policy directory, and (when started) a daemon.
pub struct Lab {
    pub daemon: Option<Child>,
    pub pin_dir: TempDir,
    pub state_dir: TempDir,
    pub policy_dir: TempDir,
    pub servers: Option<Servers>,
    pub ward: Ward,
}

impl Lab {
    /// Builds the ward, starts the servers and writes `policy` as the policy directory.
    pub fn new(policy: &str) -> Lab {
        let ward = Ward::build().unwrap_or_else(|e| panic!("building the lab: {e}"));
        let servers = Servers::start(
            &ward.core,
            &[
                service("pump-server", HTTPS),
                service("hl7-engine", MLLP),
                service("pacs", DICOM),
            ],
            &[service("dns", DNS), service("ntp", NTP)],
        )
        .unwrap_or_else(|e| panic!("starting servers: {e}"));
        monitor::datapath::ensure_bpffs(Path::new("/sys/fs/bpf"))
            .unwrap_or_else(|e| panic!("bpffs: {e}"));
        let pin_dir = TempDir(Path::new("/sys/fs/bpf").join(unique_name("mtest")));
        let state_dir = TempDir::new(&std::env::temp_dir(), "mstate");
        let policy_dir = TempDir::new(&std::env::temp_dir(), "mpolicy");
        std::fs::write(policy_dir.0.join("ward.yaml"), policy)
            .unwrap_or_else(|e| panic!("writing the policy: {e}"));
        Lab {
            daemon: None,
            pin_dir,
            state_dir,
            policy_dir,
            servers: Some(servers),
            ward,
        }
    }

    /// `monitor --pin-dir .. --state-dir .. ARGS`, its output.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(monitor_bin())
            .arg("--pin-dir")
            .arg(&self.pin_dir.0)
            .arg("--state-dir")
            .arg(&self.state_dir.0)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running monitor {args:?}: {e}"))
    }

    /// Like [`Lab::cli`], panicking unless it succeeds; returns stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let output = self.cli(args);
        assert!(
            output.status.success(),
            "monitor {args:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Starts `monitor run` on both router legs and waits until it serves.
    pub fn start(&mut self, extra: &[&str]) {
        let command = self.run_command(extra);
        self.start_command(command);
    }

    /// The daemon's standard error: `daemon.log` in the state directory, appended to.
    pub fn daemon_log_file(&self) -> std::fs::File {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.state_dir.0.join("daemon.log"))
            .unwrap_or_else(|e| panic!("daemon log: {e}"))
    }

    /// The `monitor run` command [`Lab::start`] runs (standard error to `daemon.log`), to
    /// add environment or options before [`Lab::start_command`].
    pub fn run_command(&self, extra: &[&str]) -> Command {
        self.run_command_on([&self.ward.ward_leg, &self.ward.core_leg], extra)
    }

    /// [`Lab::start`] with the legs' roles given (`--iface WARD:ward --iface CORE:core`):
    /// source MACs are judged on the ward leg.
    pub fn start_with_roles(&mut self, extra: &[&str]) {
        let ward = format!("{}:ward", self.ward.ward_leg);
        let core = format!("{}:core", self.ward.core_leg);
        let command = self.run_command_on([&ward, &core], extra);
        self.start_command(command);
    }

    /// The `monitor run` command on the two `--iface` values `ifaces`.
    fn run_command_on(&self, ifaces: [&str; 2], extra: &[&str]) -> Command {
        let mut command = Command::new(monitor_bin());
        command
            .arg("--pin-dir")
            .arg(&self.pin_dir.0)
            .arg("--state-dir")
            .arg(&self.state_dir.0)
            .args(["run", "--netns", self.ward.router.name()])
            .args(["--iface", ifaces[0], "--iface", ifaces[1]])
            .arg("--policies")
            .arg(&self.policy_dir.0)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(self.daemon_log_file());
        command
    }

    /// Starts `command` as the daemon and waits until it serves.
    pub fn start_command(&mut self, mut command: Command) {
        self.clear_daemon_file();
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("starting monitor run: {e}"));
        self.wait_started(child);
    }

    /// Removes `daemon.json`, which [`Lab::wait_started`] waits for: before a start.
    pub fn clear_daemon_file(&self) {
        let _ = std::fs::remove_file(self.state_dir.0.join("daemon.json"));
    }

    /// Takes `child` (a `monitor run` started after [`Lab::clear_daemon_file`]) as the
    /// daemon and waits until it serves (`daemon.json` written).
    pub fn wait_started(&mut self, child: Child) {
        assert!(self.daemon.is_none(), "a daemon is already running");
        let daemon_file = self.state_dir.0.join("daemon.json");
        self.daemon = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !daemon_file.exists() {
            if let Some(status) = self
                .daemon
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "monitor run exited early ({status}):\n{}",
                    self.daemon_log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "monitor run did not come up:\n{}",
                self.daemon_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.state_dir.0.join("daemon.log")).unwrap_or_default()
    }

    /// Sends `signal` to the daemon and waits for it to exit; returns how it exited.
    pub fn stop(&mut self, signal: i32) -> std::process::ExitStatus {
        let mut child = self
            .daemon
            .take()
            .unwrap_or_else(|| panic!("no daemon running"));
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(child.id() as i32, signal) };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().ok().flatten() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the daemon did not exit after signal {signal}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn tcp(&self, from: &str, to: SocketAddr, timeout: Duration) -> Outcome {
        let src = host(from);
        self.ward
            .ward
            .run(move || tcp_exchange(src, to, b"MSH|^~\\&|lab|", timeout))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// A TCP exchange from the core side: `from` is a core server's name.
    pub fn core_tcp(&self, from: &str, to: SocketAddr, timeout: Duration) -> Outcome {
        let src = host(from);
        self.ward
            .core
            .run(move || tcp_exchange(src, to, b"C-STORE-RQ|lab|", timeout))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// `monitor devices --json`: the row of device `name`.
    pub fn device_row(&self, name: &str) -> serde_json::Value {
        let out = self.cli_ok(&["devices", "--json"]);
        let json: serde_json::Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("devices --json: {e}: {out}"));
        json["devices"]
            .as_array()
            .and_then(|rows| rows.iter().find(|d| d["name"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("no device {name} in {out}"))
    }

    pub fn udp(&self, from: &str, to: SocketAddr, timeout: Duration) -> Outcome {
        let src = host(from);
        self.ward
            .ward
            .run(move || udp_exchange(src, 0, to, b"query", timeout))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The ward's normal traffic, each exchange once.
    pub fn normal_traffic(&self) -> Vec<(&'static str, Outcome)> {
        let t = Duration::from_millis(800);
        vec![
            (
                "pump → pump-server https",
                self.tcp("pump-icu3-01", service("pump-server", HTTPS), t),
            ),
            (
                "monitor → hl7-engine mllp",
                self.tcp("monitor-icu3-01", service("hl7-engine", MLLP), t),
            ),
            (
                "ct → pacs dicom",
                self.tcp("ct-scanner-01", service("pacs", DICOM), t),
            ),
            (
                "badge → dns",
                self.udp("badge-reader-icu3", service("dns", DNS), t),
            ),
            (
                "workstation → ntp",
                self.udp("ws-icu3-nurses", service("ntp", NTP), t),
            ),
        ]
    }

    pub fn assert_normal_traffic(&self, expected: Outcome) {
        for (what, outcome) in self.normal_traffic() {
            assert_eq!(outcome, expected, "{what}");
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // The servers stop before their namespace goes; the pins go with pin_dir.
        self.servers.take();
    }
}

/// Runs headless Chromium with `args` (then `url`), killed if it takes over a minute.
pub fn chromium(args: &[String], url: &str) -> String {
    let profile = TempDir::new(&std::env::temp_dir(), "mchrome");
    let mut child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.0.display()))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting chromium (Debian package `chromium`): {e}"));
    let mut stdout = child
        .stdout
        .take()
        .unwrap_or_else(|| panic!("chromium stdout"));
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut text);
        text
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            assert!(status.success(), "chromium failed: {status}");
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within a minute");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    reader.join().unwrap_or_default()
}

/// The value of attribute `name` of the first tag of `html` in which `needle` occurs.
pub fn html_attr<'a>(html: &'a str, needle: &str, name: &str) -> Option<&'a str> {
    let at = html.find(needle)?;
    let start = html[..=at].rfind('<')?;
    let tag = &html[start..at + html[at..].find('>')?];
    let key = format!(" {name}=\"");
    let from = tag.find(&key)? + key.len();
    Some(&tag[from..from + tag[from..].find('"')?])
}
