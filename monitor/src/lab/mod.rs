//! A virtual hospital ward in network namespaces: the demo lab, and the test bed of the
//! traffic tests.
//!
//! Three namespaces: `ward` (the devices, each an address on one interface), `router`
//! (two legs, forwarding, where XDP attaches) and `core` (the servers). Every namespace
//! and link has a unique name and is removed by its guard, also on panic. Nothing here
//! touches an interface or namespace it did not create.

pub mod demo;

use std::{
    fs::File,
    io::{self, Read, Write},
    net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket},
    os::fd::AsRawFd,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use socket2::{Domain, Protocol, Socket, Type};

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("`{command}` failed: {stderr}")]
    Command { command: String, stderr: String },
    #[error("running `{command}`")]
    Spawn {
        command: String,
        #[source]
        source: io::Error,
    },
    #[error("entering network namespace {name}")]
    Enter {
        name: String,
        #[source]
        source: io::Error,
    },
}

type Result<T, E = LabError> = std::result::Result<T, E>;

/// Runs a command, returning stdout, or an error with the command line and stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String> {
    let command = format!("{program} {}", args.join(" "));
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|source| LabError::Spawn {
            command: command.clone(),
            source,
        })?;
    if !output.status.success() {
        return Err(LabError::Command {
            command,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A short name unique to this process and call: `{prefix}{pid % 100000}x{n}`, short
/// enough for interface names (15 bytes) when `prefix` is at most 4 bytes.
pub fn unique_name(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}x{n}", std::process::id() % 100_000)
}

/// A network namespace, deleted on drop.
#[derive(Debug)]
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Creates a namespace named `unique_name(prefix)` with its loopback up.
    pub fn new(prefix: &str) -> Result<NetNs> {
        let name = unique_name(prefix);
        run("ip", &["netns", "add", &name])?;
        let ns = NetNs { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n NAME ARGS...`
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// `ip netns exec NAME ARGS...`
    pub fn exec(&self, args: &[&str]) -> Result<String> {
        let mut full = vec!["netns", "exec", self.name.as_str()];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    pub fn enable_forwarding(&self) -> Result<()> {
        self.exec(&["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])?;
        self.exec(&["sysctl", "-q", "-w", "net.ipv6.conf.all.forwarding=1"])?;
        Ok(())
    }

    /// Moves the calling thread into this namespace until the guard drops.
    pub fn enter(&self) -> Result<EnteredNs> {
        enter_netns(&self.name)
    }

    /// Runs `f` on a new thread inside this namespace.
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<JoinHandle<T>> {
        let path = format!("/run/netns/{}", self.name);
        let name = self.name.clone();
        let target = File::open(&path).map_err(|source| LabError::Enter {
            name: name.clone(),
            source,
        })?;
        Ok(std::thread::spawn(move || {
            // SAFETY: as in `enter`; this thread stays in the namespace until it ends.
            let rc = unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns into {name}: {}", io::Error::last_os_error());
            f()
        }))
    }

    /// Runs `f` inside this namespace and waits for it.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        let handle = self.spawn(f)?;
        Ok(handle
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e)))
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Its veth ends go with it, and their peers with them.
        if let Err(e) = run("ip", &["netns", "del", &self.name]) {
            eprintln!(
                "warning: could not delete network namespace {}: {e}",
                self.name
            );
        }
    }
}

/// Moves the calling thread into the named namespace (`/run/netns/NAME`, as `ip netns`
/// makes them) until the guard drops. Threads it starts meanwhile start there too.
pub fn enter_netns(name: &str) -> Result<EnteredNs> {
    let err = |source| LabError::Enter {
        name: name.to_string(),
        source,
    };
    let original = File::open("/proc/thread-self/ns/net").map_err(err)?;
    let target = File::open(format!("/run/netns/{name}")).map_err(err)?;
    // SAFETY: setns on a valid namespace fd affects only the calling thread's netns.
    if unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(err(io::Error::last_os_error()));
    }
    Ok(EnteredNs { original })
}

/// The calling thread inside another namespace; back in its own on drop.
#[derive(Debug)]
pub struct EnteredNs {
    original: File,
}

impl Drop for EnteredNs {
    fn drop(&mut self) {
        // SAFETY: the fd is the thread's original namespace.
        let rc = unsafe { libc::setns(self.original.as_raw_fd(), libc::CLONE_NEWNET) };
        if rc != 0 {
            eprintln!("warning: could not return to the original network namespace");
        }
    }
}

/// Creates a veth pair `a_name` in `a` and `b_name` in `b`, both up.
pub fn veth(a: &NetNs, a_name: &str, b: &NetNs, b_name: &str) -> Result<()> {
    // Created inside `a` so that no link ever exists in the caller's namespace.
    a.ip(&[
        "link",
        "add",
        a_name,
        "type",
        "veth",
        "peer",
        "name",
        b_name,
        "netns",
        b.name(),
    ])?;
    a.ip(&["link", "set", a_name, "up"])?;
    b.ip(&["link", "set", b_name, "up"])?;
    Ok(())
}

/// A device of the lab ward.
#[derive(Clone, Copy, Debug)]
pub struct LabHost {
    pub name: &'static str,
    pub address: IpAddr,
}

const fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(std::net::Ipv4Addr::new(a, b, c, d))
}

/// The ward's devices, as in `policies/ward.yaml`.
pub const WARD_DEVICES: [LabHost; 5] = [
    LabHost {
        name: "pump-icu3-01",
        address: v4(10, 10, 1, 11),
    },
    LabHost {
        name: "monitor-icu3-01",
        address: v4(10, 10, 1, 12),
    },
    LabHost {
        name: "ct-scanner-01",
        address: v4(10, 10, 1, 13),
    },
    LabHost {
        name: "badge-reader-icu3",
        address: v4(10, 10, 1, 14),
    },
    LabHost {
        name: "ws-icu3-nurses",
        address: v4(10, 10, 1, 15),
    },
];

/// The core's servers.
pub const CORE_SERVERS: [LabHost; 5] = [
    LabHost {
        name: "pump-server",
        address: v4(10, 20, 0, 10),
    },
    LabHost {
        name: "hl7-engine",
        address: v4(10, 20, 0, 20),
    },
    LabHost {
        name: "pacs",
        address: v4(10, 20, 0, 30),
    },
    LabHost {
        name: "dns",
        address: v4(10, 20, 0, 53),
    },
    LabHost {
        name: "ntp",
        address: v4(10, 20, 0, 123),
    },
];

/// Services of the core: (server address, protocol, port).
pub const HTTPS: u16 = 443;
pub const MLLP: u16 = 2575;
pub const DICOM: u16 = 104;
pub const DNS: u16 = 53;
pub const NTP: u16 = 123;

/// The lab: three namespaces and two veth pairs.
#[derive(Debug)]
pub struct Ward {
    /// Dropped last: the core and ward go first, so no server thread outlives its netns.
    pub router: NetNs,
    pub ward: NetNs,
    pub core: NetNs,
    /// The router's ward-side and core-side interfaces (inside `router`).
    pub ward_leg: String,
    pub core_leg: String,
    /// The ward's interface (inside `ward`), which every ward device's address is on.
    pub ward_if: String,
}

impl Ward {
    /// Builds the namespaces, links, addresses and routes.
    pub fn build() -> Result<Ward> {
        let router = NetNs::new("mrt")?;
        let ward = NetNs::new("mwd")?;
        let core = NetNs::new("mco")?;
        let ward_leg = unique_name("rw");
        let core_leg = unique_name("rc");
        let ward_if = unique_name("ww");
        let core_if = unique_name("cc");
        veth(&router, &ward_leg, &ward, &ward_if)?;
        veth(&router, &core_leg, &core, &core_if)?;
        router.ip(&["addr", "add", "10.10.1.1/24", "dev", &ward_leg])?;
        router.ip(&["addr", "add", "10.20.0.1/24", "dev", &core_leg])?;
        router.ip(&["addr", "add", "fd00:10::1/64", "dev", &ward_leg, "nodad"])?;
        router.ip(&["addr", "add", "fd00:20::1/64", "dev", &core_leg, "nodad"])?;
        router.enable_forwarding()?;
        host_side(
            &ward,
            &ward_if,
            &WARD_DEVICES,
            "fd00:10::11/64",
            "10.10.1.1",
            "fd00:10::1",
        )?;
        host_side(
            &core,
            &core_if,
            &CORE_SERVERS,
            "fd00:20::10/64",
            "10.20.0.1",
            "fd00:20::1",
        )?;
        Ok(Ward {
            router,
            ward,
            core,
            ward_leg,
            core_leg,
            ward_if,
        })
    }
}

/// Another station on the ward's link, with a MAC of its own (a macvlan of the ward's
/// interface, in a namespace of its own): an impostor, or a device just plugged in.
#[derive(Debug)]
pub struct Station {
    pub ns: NetNs,
}

impl Station {
    /// Plugs a station with `mac` and `address` (IPv4, /24 of the ward) into the ward.
    pub fn plug(ward: &Ward, mac: &str, address: IpAddr) -> Result<Station> {
        let ns = NetNs::new("msta")?;
        let name = unique_name("st");
        ward.ward.ip(&[
            "link",
            "add",
            &name,
            "link",
            &ward.ward_if,
            "address",
            mac,
            "type",
            "macvlan",
            "mode",
            "bridge",
        ])?;
        ward.ward.ip(&["link", "set", &name, "netns", ns.name()])?;
        ns.ip(&["link", "set", &name, "up"])?;
        ns.ip(&["addr", "add", &format!("{address}/24"), "dev", &name])?;
        ns.ip(&["route", "add", "default", "via", "10.10.1.1"])?;
        Ok(Station { ns })
    }

    /// A TCP exchange from `src` (one of its addresses) to `to`.
    pub fn tcp(&self, src: IpAddr, to: SocketAddr, timeout: Duration) -> Result<Outcome> {
        self.ns
            .run(move || tcp_exchange(src, to, b"GET / HTTP/1.0", timeout))
    }
}

/// Addresses `hosts` (IPv4 /24 each) and `v6` on `iface` in `ns`, with default routes via
/// the router's `gateway4` and `gateway6`: one side of the ward, as built or rebuilt.
pub fn host_side(
    ns: &NetNs,
    iface: &str,
    hosts: &[LabHost],
    v6: &str,
    gateway4: &str,
    gateway6: &str,
) -> Result<()> {
    for host in hosts {
        let address = format!("{}/24", host.address);
        ns.ip(&["addr", "add", &address, "dev", iface])?;
    }
    ns.ip(&["addr", "add", v6, "dev", iface, "nodad"])?;
    ns.ip(&["route", "add", "default", "via", gateway4])?;
    ns.ip(&["-6", "route", "add", "default", "via", gateway6])?;
    Ok(())
}

/// Echo servers in a namespace, stopped (and joined) on drop.
#[derive(Debug)]
pub struct Servers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Servers {
    /// TCP and UDP echo servers on each `(address, port)` of `tcp` and `udp`, in `ns`.
    pub fn start(ns: &NetNs, tcp: &[SocketAddr], udp: &[SocketAddr]) -> Result<Servers> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for addr in tcp.iter().copied() {
            let stop = stop.clone();
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            threads.push(ns.spawn(move || tcp_echo(addr, &stop, ready_tx))?);
            ready_rx
                .recv_timeout(Duration::from_secs(5))
                .map_err(|_| LabError::Command {
                    command: format!("tcp server on {addr}"),
                    stderr: "did not start".into(),
                })?;
        }
        for addr in udp.iter().copied() {
            let stop = stop.clone();
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            threads.push(ns.spawn(move || udp_echo(addr, &stop, ready_tx))?);
            ready_rx
                .recv_timeout(Duration::from_secs(5))
                .map_err(|_| LabError::Command {
                    command: format!("udp server on {addr}"),
                    stderr: "did not start".into(),
                })?;
        }
        Ok(Servers { stop, threads })
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn tcp_echo(addr: SocketAddr, stop: &AtomicBool, ready: std::sync::mpsc::Sender<()>) {
    let listener = TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
    listener
        .set_nonblocking(true)
        .unwrap_or_else(|e| panic!("nonblocking {addr}: {e}"));
    let _ = ready.send(());
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((mut stream, _)) => {
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 || stream.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

fn udp_echo(addr: SocketAddr, stop: &AtomicBool, ready: std::sync::mpsc::Sender<()>) {
    let socket = UdpSocket::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap_or_else(|e| panic!("timeout {addr}: {e}"));
    let _ = ready.send(());
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        if let Ok((n, peer)) = socket.recv_from(&mut buf) {
            let _ = socket.send_to(&buf[..n], peer);
        }
    }
}

/// What a client exchange achieved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The echo came back whole.
    Answered,
    /// Connect or reply timed out (dropped on the way).
    TimedOut,
    /// Refused or another error.
    Failed,
}

/// Connects from `src` to `dst`, sends `message` and reads the echo.
pub fn tcp_exchange(src: IpAddr, dst: SocketAddr, message: &[u8], timeout: Duration) -> Outcome {
    let domain = if dst.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let Ok(socket) = Socket::new(domain, Type::STREAM, Some(Protocol::TCP)) else {
        return Outcome::Failed;
    };
    if socket.bind(&SocketAddr::new(src, 0).into()).is_err() {
        return Outcome::Failed;
    }
    match socket.connect_timeout(&dst.into(), timeout) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::TimedOut => return Outcome::TimedOut,
        Err(_) => return Outcome::Failed,
    }
    let mut stream: TcpStream = socket.into();
    let _ = stream.set_read_timeout(Some(timeout));
    if stream.write_all(message).is_err() {
        return Outcome::Failed;
    }
    let mut echoed = vec![0u8; message.len()];
    let outcome = match stream.read_exact(&mut echoed) {
        Ok(()) if echoed == message => Outcome::Answered,
        Ok(()) => Outcome::Failed,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Outcome::TimedOut
        }
        Err(_) => Outcome::Failed,
    };
    let _ = stream.shutdown(Shutdown::Both);
    outcome
}

/// Sends one datagram from `src` (port `src_port`, 0 for any) to `dst` and waits for the echo.
pub fn udp_exchange(
    src: IpAddr,
    src_port: u16,
    dst: SocketAddr,
    message: &[u8],
    timeout: Duration,
) -> Outcome {
    let Ok(socket) = UdpSocket::bind(SocketAddr::new(src, src_port)) else {
        return Outcome::Failed;
    };
    let _ = socket.set_read_timeout(Some(timeout));
    if socket.send_to(message, dst).is_err() {
        return Outcome::Failed;
    }
    let mut buf = [0u8; 2048];
    match socket.recv_from(&mut buf) {
        Ok((n, from)) if from == dst && &buf[..n] == message => Outcome::Answered,
        Ok(_) => Outcome::Failed,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Outcome::TimedOut
        }
        Err(_) => Outcome::Failed,
    }
}
