//! RAII guards for tests that need real network namespaces and veth links.
//!
//! Every namespace and link gets a name no other test (in this process or a concurrent one)
//! uses, and is deleted when its guard drops, also while a failing test unwinds. Only
//! objects made here are ever changed or deleted: nothing touches eth0, the root namespace's
//! routes or sysctls, or namespaces made by anyone else.
//!
//! Everything goes through `ip` (iproute2); a failing command panics with its command line
//! and stderr, which is what a test wants to see.
//!
//! ```no_run
//! use monitor_tests::netns::{NetNs, VethPair};
//!
//! let client = NetNs::new("cli");
//! let server = NetNs::new("srv");
//! let link = VethPair::new(&client, "c", &server, "s");
//! link.addr_a("10.0.0.1/24");
//! link.addr_b("10.0.0.2/24");
//! link.up();
//! // A socket keeps the namespace it was made in, whichever thread uses it later.
//! let listener = server.run(|| std::net::TcpListener::bind("10.0.0.2:0")).unwrap();
//! ```

use std::{
    fs::File,
    os::fd::AsRawFd as _,
    path::PathBuf,
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    thread::JoinHandle,
};

/// Linux interface names hold at most 15 bytes (IFNAMSIZ less the NUL).
pub const MAX_IFNAME: usize = 15;

/// Longest prefix accepted: with a separator, the pid in base 36 (at most 5 characters for
/// the kernel's largest pid_max), a separator and a two-character counter, the name still
/// fits [`MAX_IFNAME`], whatever pid the test happens to get.
pub const MAX_PREFIX: usize = 6;

/// Shared by namespaces and links so that two guards in one process never pick one name.
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// How many names to try when one is taken: a test process killed before its guards dropped
/// leaves names behind, and a later process may get the same pid.
const NAME_ATTEMPTS: u32 = 64;

fn base36(mut n: u32) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("base-36 digits are ASCII")
}

/// `prefix-PID-N`: the separators keep e.g. prefix "a1" with pid "b" apart from prefix "a"
/// with pid "1b".
fn unique_name(prefix: &str) -> String {
    assert!(
        !prefix.is_empty()
            && prefix.len() <= MAX_PREFIX
            && prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_'),
        "name prefix {prefix:?} must be 1 to {MAX_PREFIX} ASCII letters, digits or '_'"
    );
    let counter = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = format!(
        "{prefix}-{}-{}",
        base36(std::process::id()),
        base36(counter)
    );
    assert!(
        name.len() <= MAX_IFNAME,
        "generated name {name:?} is longer than {MAX_IFNAME} bytes; use a shorter prefix"
    );
    name
}

/// Why a command failed, with enough to debug it from a test log.
#[derive(Debug)]
pub struct CommandError {
    pub command: String,
    pub status: Option<std::process::ExitStatus>,
    pub stderr: String,
}

impl std::fmt::Display for CommandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(status) => write!(
                f,
                "`{}` failed ({status}): {}",
                self.command,
                self.stderr.trim()
            ),
            None => write!(
                f,
                "`{}` could not start: {}",
                self.command,
                self.stderr.trim()
            ),
        }
    }
}

impl std::error::Error for CommandError {}

fn command_line(program: &str, args: &[&str]) -> String {
    std::iter::once(program)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `program args` with no stdin; returns stdout, or the failure.
pub fn try_run(program: &str, args: &[&str]) -> Result<String, CommandError> {
    let command = command_line(program, args);
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| CommandError {
            command: command.clone(),
            status: None,
            stderr: e.to_string(),
        })?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(CommandError {
            command,
            status: Some(output.status),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }
}

/// Runs `program args` and returns stdout; panics with the command line and stderr if it
/// fails.
pub fn run(program: &str, args: &[&str]) -> String {
    try_run(program, args).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `ip` in `ns`, or in the root namespace for `None` (`ip -n NS ...`).
fn ip_in(ns: Option<&str>, args: &[&str]) -> Result<String, CommandError> {
    match ns {
        Some(ns) => try_run("ip", &[&["-n", ns], args].concat()),
        None => try_run("ip", args),
    }
}

/// Owns the namespace's name; the last owner (the [`NetNs`] or a [`VethPair`] with an end in
/// it) deletes it, so a link never outlives the namespace it is cleaned up through.
#[derive(Debug)]
struct Owned {
    name: String,
}

impl Drop for Owned {
    fn drop(&mut self) {
        // Drop may run while a failed test unwinds; a second panic would abort the process
        // and hide the first message, so this only reports.
        if let Err(e) = try_run("ip", &["netns", "delete", &self.name]) {
            eprintln!("netns guard: could not delete namespace {}: {e}", self.name);
        }
    }
}

/// A network namespace named `prefix-PID-N`, deleted (`ip netns delete`) on drop.
///
/// Its loopback is up, so services bound to 127.0.0.1 inside it work.
#[derive(Debug)]
pub struct NetNs {
    owned: Arc<Owned>,
}

impl NetNs {
    /// Creates the namespace. `prefix` is 1 to [`MAX_PREFIX`] letters, digits or '_'; it
    /// shows in `ip netns list` while the test runs.
    pub fn new(prefix: &str) -> Self {
        let mut last = None;
        for _ in 0..NAME_ATTEMPTS {
            let name = unique_name(prefix);
            match try_run("ip", &["netns", "add", &name]) {
                Ok(_) => {
                    let ns = Self {
                        owned: Arc::new(Owned { name }),
                    };
                    ns.link_up("lo");
                    return ns;
                }
                // A leftover from a killed run that had our pid: not ours to delete.
                Err(e) if e.stderr.contains("File exists") => last = Some(e),
                Err(e) => panic!("{e}"),
            }
        }
        panic!("no free namespace name after {NAME_ATTEMPTS} attempts; last: {last:?}");
    }

    pub fn name(&self) -> &str {
        &self.owned.name
    }

    /// The namespace file that `ip netns` bind-mounts, which `setns` opens.
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(self.name())
    }

    /// Runs `ip ARGS` inside the namespace and returns stdout; panics on failure.
    pub fn ip(&self, args: &[&str]) -> String {
        ip_in(Some(self.name()), args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A command that runs `program` inside the namespace (`ip netns exec NS program`), for
    /// callers that expect failure, need the exit status or spawn a long-running tool.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", self.name(), program])
            .stdin(Stdio::null());
        command
    }

    /// Runs `args[0] args[1..]` inside the namespace and returns stdout; panics on failure.
    pub fn exec(&self, args: &[&str]) -> String {
        run("ip", &[&["netns", "exec", self.name()], args].concat())
    }

    /// Like [`NetNs::exec`] but a failure is returned, e.g. for a ping that must not pass.
    pub fn try_exec(&self, args: &[&str]) -> Result<String, CommandError> {
        try_run("ip", &[&["netns", "exec", self.name()], args].concat())
    }

    pub fn link_up(&self, dev: &str) {
        self.ip(&["link", "set", dev, "up"]);
    }

    /// Adds `cidr` (e.g. "10.0.0.1/24" or "fd00::1/64") to `dev`. IPv6 addresses skip
    /// duplicate address detection, which would otherwise leave them unusable ("tentative")
    /// for the first second or two of a test.
    pub fn addr_add(&self, dev: &str, cidr: &str) {
        self.ip(&addr_add_args(dev, cidr));
    }

    /// Lets the namespace route between its interfaces, IPv4 and IPv6; only this namespace's
    /// sysctls change.
    pub fn enable_forwarding(&self) {
        self.exec(&["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
        self.exec(&["sysctl", "-q", "-w", "net.ipv6.conf.all.forwarding=1"]);
    }

    /// Reads a sysctl as seen inside the namespace.
    pub fn sysctl(&self, key: &str) -> String {
        self.exec(&["sysctl", "-n", key]).trim().to_owned()
    }

    /// `ip route add DEST via GATEWAY`; `dest` may be "default".
    pub fn route_add(&self, dest: &str, gateway: &str) {
        self.ip(&[
            route_family(dest, gateway),
            "route",
            "add",
            dest,
            "via",
            gateway,
        ]);
    }

    /// `ip route add DEST dev DEV`, for an on-link route with no gateway.
    pub fn route_add_dev(&self, dest: &str, dev: &str) {
        self.ip(&[route_family(dest, ""), "route", "add", dest, "dev", dev]);
    }

    fn open(&self) -> File {
        let path = self.path();
        File::open(&path).unwrap_or_else(|e| panic!("opening {}: {e}", path.display()))
    }

    /// Runs `f` on a thread that has entered this namespace, and returns its result. Sockets
    /// made in `f` stay in this namespace after `f` returns, so a listener can be bound here
    /// and served from any thread. A panic in `f` is re-raised in the caller.
    pub fn run<F, T>(&self, f: F) -> T
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        let file = self.open();
        let name = self.name();
        std::thread::scope(|scope| {
            let handle = scope.spawn(move || {
                enter(&file, name);
                f()
            });
            handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// Like [`NetNs::run`] but does not wait: for servers that must run while the test goes
    /// on. Join the handle to see the result or the panic.
    pub fn spawn<F, T>(&self, f: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let file = self.open();
        let name = self.name().to_owned();
        std::thread::spawn(move || {
            enter(&file, &name);
            f()
        })
    }
}

/// Moves the calling thread, and only it, into the namespace behind `file`.
fn enter(file: &File, name: &str) {
    // SAFETY: the descriptor is open for the whole call; setns(CLONE_NEWNET) only changes the
    // network namespace of the calling thread, which the caller made for this purpose.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        panic!(
            "setns into network namespace {name}: {}",
            std::io::Error::last_os_error()
        );
    }
}

fn addr_add_args<'a>(dev: &'a str, cidr: &'a str) -> Vec<&'a str> {
    let mut args = vec!["addr", "add", cidr, "dev", dev];
    if cidr.contains(':') {
        args.push("nodad");
    }
    args
}

/// `ip route add default via fe80::1` needs `-6`: "default" alone says nothing of the family.
fn route_family(dest: &str, gateway: &str) -> &'static str {
    if dest.contains(':') || gateway.contains(':') {
        "-6"
    } else {
        "-4"
    }
}

/// A veth pair: two linked interfaces, each end in a namespace (or the root namespace for
/// `None`). Deleted on drop; the namespaces it uses stay alive until then.
#[derive(Debug)]
pub struct VethPair {
    a: String,
    b: String,
    ns_a: Option<Arc<Owned>>,
    ns_b: Option<Arc<Owned>>,
}

impl VethPair {
    /// Creates the pair with each end born in its namespace, so neither ever appears in the
    /// root namespace unless asked for. Names are `name_a-PID-N` and `name_b-PID-N` (see
    /// [`VethPair::a`]); `name_*` follow the rules of [`NetNs::new`]'s prefix.
    pub fn new<'a>(
        ns_a: impl Into<Option<&'a NetNs>>,
        name_a: &str,
        ns_b: impl Into<Option<&'a NetNs>>,
        name_b: &str,
    ) -> Self {
        let ns_a = ns_a.into().map(|ns| Arc::clone(&ns.owned));
        let ns_b = ns_b.into().map(|ns| Arc::clone(&ns.owned));
        let mut last = None;
        for _ in 0..NAME_ATTEMPTS {
            let (a, b) = (unique_name(name_a), unique_name(name_b));
            let mut args = vec!["link", "add", a.as_str()];
            if let Some(ns) = &ns_a {
                args.extend(["netns", ns.name.as_str()]);
            }
            args.extend(["type", "veth", "peer", "name", b.as_str()]);
            if let Some(ns) = &ns_b {
                args.extend(["netns", ns.name.as_str()]);
            }
            match try_run("ip", &args) {
                Ok(_) => return Self { a, b, ns_a, ns_b },
                // Only possible in the root namespace, left by a killed run with our pid.
                Err(e) if e.stderr.contains("File exists") => last = Some(e),
                Err(e) => panic!("{e}"),
            }
        }
        panic!("no free veth names after {NAME_ATTEMPTS} attempts; last: {last:?}");
    }

    /// The name of the end in `ns_a`.
    pub fn a(&self) -> &str {
        &self.a
    }

    /// The name of the end in `ns_b`.
    pub fn b(&self) -> &str {
        &self.b
    }

    fn ns_a(&self) -> Option<&str> {
        self.ns_a.as_ref().map(|o| o.name.as_str())
    }

    fn ns_b(&self) -> Option<&str> {
        self.ns_b.as_ref().map(|o| o.name.as_str())
    }

    /// Sets both ends up.
    pub fn up(&self) {
        for (ns, dev) in [(self.ns_a(), self.a()), (self.ns_b(), self.b())] {
            ip_in(ns, &["link", "set", dev, "up"]).unwrap_or_else(|e| panic!("{e}"));
        }
    }

    /// Adds an address to the `a` end (see [`NetNs::addr_add`]).
    pub fn addr_a(&self, cidr: &str) {
        ip_in(self.ns_a(), &addr_add_args(self.a(), cidr)).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Adds an address to the `b` end (see [`NetNs::addr_add`]).
    pub fn addr_b(&self, cidr: &str) {
        ip_in(self.ns_b(), &addr_add_args(self.b(), cidr)).unwrap_or_else(|e| panic!("{e}"));
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        // Deleting one end deletes both. The namespaces would take them along anyway, but an
        // end in the root namespace would stay forever.
        match ip_in(self.ns_a(), &["link", "del", &self.a]) {
            Ok(_) => {}
            // The test deleted it, or moved it: either way nothing of ours is left here.
            Err(e) if e.stderr.contains("Cannot find device") => {}
            Err(e) => eprintln!("netns guard: could not delete veth {}: {e}", self.a),
        }
    }
}
