//! The namespace helpers themselves: traffic really crosses the veth pairs, `run` really
//! enters the namespace, and nothing is left behind, also after a panic.

use std::{
    ffi::CString,
    io::{ErrorKind, Read as _, Write as _},
    net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    panic::{AssertUnwindSafe, catch_unwind},
    path::Path,
    time::Duration,
};

use monitor_tests::netns::{MAX_IFNAME, NetNs, VethPair, try_run};

const TIMEOUT: Duration = Duration::from_secs(10);

fn namespaces() -> Vec<String> {
    try_run("ip", &["netns", "list"])
        .expect("ip netns list")
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

fn assert_namespace_gone(name: &str) {
    assert!(
        !namespaces().iter().any(|n| n == name),
        "namespace {name} still listed: {:?}",
        namespaces()
    );
    assert!(
        !Path::new("/run/netns").join(name).exists(),
        "/run/netns/{name} still exists"
    );
}

fn root_link_exists(name: &str) -> bool {
    try_run("ip", &["link", "show", "dev", name]).is_ok()
}

/// The interface index of `name` in the calling thread's namespace, if it has one there.
fn ifindex(name: &str) -> Option<u32> {
    let name = CString::new(name).expect("no NUL in interface names");
    // SAFETY: `name` is a valid NUL-terminated string for the duration of the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (index != 0).then_some(index)
}

/// Two namespaces joined by a veth pair with 10.77.<net>.1 and .2 on its ends.
fn pair(net: u8) -> (NetNs, NetNs, VethPair) {
    let a = NetNs::new("sta");
    let b = NetNs::new("stb");
    let link = VethPair::new(&a, "sva", &b, "svb");
    link.addr_a(&format!("10.77.{net}.1/24"));
    link.addr_b(&format!("10.77.{net}.2/24"));
    link.up();
    (a, b, link)
}

#[test]
fn tcp_echo_crosses_the_veth_pair_and_everything_is_deleted_afterwards() {
    let (a, b, link) = pair(1);
    let names = [a.name().to_owned(), b.name().to_owned()];
    let links = [link.a().to_owned(), link.b().to_owned()];
    for name in &names {
        assert!(
            namespaces().contains(name),
            "{name} not in {:?}",
            namespaces()
        );
    }

    let listener = b
        .run(|| TcpListener::bind("10.77.1.2:0"))
        .expect("bind inside b");
    let server_addr = listener.local_addr().expect("local addr");
    // A plain thread in the root namespace serves: the socket keeps b's namespace.
    let server = std::thread::spawn(move || {
        let (mut conn, peer) = listener.accept().expect("accept");
        conn.set_read_timeout(Some(TIMEOUT)).expect("timeout");
        let mut received = Vec::new();
        conn.read_to_end(&mut received).expect("read request");
        conn.write_all(&received).expect("echo");
        peer
    });

    let payload: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    let echoed = a.run(|| {
        let mut stream = TcpStream::connect_timeout(&server_addr, TIMEOUT).expect("connect from a");
        stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
        stream.write_all(&payload).expect("send");
        stream
            .shutdown(std::net::Shutdown::Write)
            .expect("shutdown");
        let mut echoed = Vec::new();
        stream.read_to_end(&mut echoed).expect("read echo");
        echoed
    });
    let peer = server.join().expect("server thread");

    assert_eq!(echoed.len(), payload.len());
    assert!(echoed == payload, "echoed bytes differ from the ones sent");
    assert_eq!(
        peer.ip(),
        "10.77.1.1".parse::<IpAddr>().expect("literal"),
        "came from a's veth end"
    );

    drop(link);
    drop(a);
    drop(b);
    for name in &names {
        assert_namespace_gone(name);
    }
    for name in &links {
        assert!(
            !root_link_exists(name),
            "{name} showed up in the root namespace"
        );
    }
}

#[test]
fn run_executes_inside_the_namespace_and_only_there() {
    let (a, b, link) = pair(2);

    // a's address and interface exist on a's thread, not in the root namespace or in b.
    let in_a = a.run(|| {
        (
            UdpSocket::bind("10.77.2.1:0").map(|_| ()),
            ifindex(link.a()),
        )
    });
    assert!(in_a.0.is_ok(), "binding a's address inside a: {:?}", in_a.0);
    assert!(
        in_a.1.is_some(),
        "{} is not visible inside {}",
        link.a(),
        a.name()
    );
    let root = UdpSocket::bind("10.77.2.1:0")
        .map(|_| ())
        .map_err(|e| e.kind());
    assert_eq!(
        root,
        Err(ErrorKind::AddrNotAvailable),
        "a's address is usable in the root namespace"
    );
    assert_eq!(
        ifindex(link.a()),
        None,
        "{} is visible in the root namespace",
        link.a()
    );
    assert_eq!(
        b.run(|| ifindex(link.a())),
        None,
        "{} is visible inside {}",
        link.a(),
        b.name()
    );

    // Loopback is up in a new namespace.
    let echoed = b.run(|| {
        let server = UdpSocket::bind("127.0.0.1:0").expect("bind loopback");
        let client = UdpSocket::bind("127.0.0.1:0").expect("bind loopback");
        client.set_read_timeout(Some(TIMEOUT)).expect("timeout");
        client
            .send_to(b"ping", server.local_addr().expect("addr"))
            .expect("send");
        let mut buf = [0u8; 16];
        let (n, from) = server.recv_from(&mut buf).expect("recv on loopback");
        server.send_to(&buf[..n], from).expect("reply");
        let (n, _) = client.recv_from(&mut buf).expect("recv reply");
        buf[..n].to_vec()
    });
    assert_eq!(echoed, b"ping");

    // A panic inside the namespace thread reaches the caller with its message.
    let panic = catch_unwind(AssertUnwindSafe(|| {
        a.run(|| panic!("inside the namespace"))
    }))
    .expect_err("the panic propagates");
    assert_eq!(panic.downcast_ref::<&str>(), Some(&"inside the namespace"));
}

/// Sends one datagram from `client` to `server` and waits up to `wait` for it.
fn udp_arrives(client: &UdpSocket, server: &UdpSocket, wait: Duration) -> Option<SocketAddr> {
    server.set_read_timeout(Some(wait)).expect("timeout");
    client
        .send_to(b"hello", server.local_addr().expect("addr"))
        .expect("send");
    let mut buf = [0u8; 16];
    match server.recv_from(&mut buf) {
        Ok((n, from)) => {
            assert_eq!(&buf[..n], b"hello");
            Some(from)
        }
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => None,
        Err(e) => panic!("recv: {e}"),
    }
}

#[test]
fn a_forwarding_namespace_routes_ipv4_and_ipv6_between_two_others() {
    let client = NetNs::new("stc");
    let router = NetNs::new("str");
    let server = NetNs::new("sts");
    let left = VethPair::new(&client, "slc", &router, "slr");
    let right = VethPair::new(&router, "srr", &server, "srs");
    for (ns, dev, v4, v6) in [
        (&client, left.a(), "10.78.1.2/24", "fd00:78:1::2/64"),
        (&router, left.b(), "10.78.1.1/24", "fd00:78:1::1/64"),
        (&router, right.a(), "10.78.2.1/24", "fd00:78:2::1/64"),
        (&server, right.b(), "10.78.2.2/24", "fd00:78:2::2/64"),
    ] {
        ns.addr_add(dev, v4);
        ns.addr_add(dev, v6);
        ns.link_up(dev);
    }
    client.route_add("default", "10.78.1.1");
    client.route_add("default", "fd00:78:1::1");
    server.route_add("10.78.1.0/24", "10.78.2.1");
    server.route_add("fd00:78:1::/64", "fd00:78:2::1");
    // Whatever a new namespace inherits, the router starts out not forwarding.
    router.exec(&[
        "sysctl",
        "-q",
        "-w",
        "net.ipv4.ip_forward=0",
        "net.ipv6.conf.all.forwarding=0",
    ]);

    let sockets = |client_ip: &'static str, server_ip: &'static str| {
        let s = server
            .run(move || UdpSocket::bind((server_ip, 0)))
            .expect("bind in server");
        let c = client
            .run(move || UdpSocket::bind((client_ip, 0)))
            .expect("bind in client");
        (c, s)
    };
    let (c4, s4) = sockets("10.78.1.2", "10.78.2.2");
    let (c6, s6) = sockets("fd00:78:1::2", "fd00:78:2::2");

    assert_eq!(
        udp_arrives(&c4, &s4, Duration::from_millis(500)),
        None,
        "IPv4 routed without forwarding"
    );
    assert_eq!(
        udp_arrives(&c6, &s6, Duration::from_millis(500)),
        None,
        "IPv6 routed without forwarding"
    );

    router.enable_forwarding();
    assert_eq!(router.sysctl("net.ipv4.ip_forward"), "1");
    assert_eq!(router.sysctl("net.ipv6.conf.all.forwarding"), "1");
    let from4 = udp_arrives(&c4, &s4, TIMEOUT).expect("IPv4 datagram routed through the router");
    assert_eq!(
        from4,
        c4.local_addr().expect("addr"),
        "routed, not translated"
    );
    let from6 = udp_arrives(&c6, &s6, TIMEOUT).expect("IPv6 datagram routed through the router");
    assert_eq!(
        from6,
        c6.local_addr().expect("addr"),
        "routed, not translated"
    );
}

#[test]
fn guards_clean_up_when_the_test_panics_also_in_the_root_namespace() {
    let mut names = None;
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let ns = NetNs::new("stp");
        let link = VethPair::new(None, "stroot", &ns, "stin");
        assert!(
            root_link_exists(link.a()),
            "{} not created in the root namespace",
            link.a()
        );
        assert!(
            !root_link_exists(link.b()),
            "{} should be inside {}",
            link.b(),
            ns.name()
        );
        names = Some((ns.name().to_owned(), link.a().to_owned()));
        panic!("failing test");
    }));
    assert!(outcome.is_err());
    let (ns, root_end) = names.expect("the guards were created before the panic");
    assert_namespace_gone(&ns);
    assert!(
        !root_link_exists(&root_end),
        "{root_end} left in the root namespace"
    );
}

#[test]
fn names_are_unique_and_fit_an_interface_name() {
    let first = NetNs::new("stu_12");
    let second = NetNs::new("stu_12");
    assert_ne!(first.name(), second.name());
    for name in [first.name(), second.name()] {
        assert!(
            name.starts_with("stu_12-") && name.len() <= MAX_IFNAME,
            "{name}"
        );
    }
    let link = VethPair::new(&first, "abcdef", &second, "abcdef");
    assert_ne!(link.a(), link.b());
    assert!(link.a().len() <= MAX_IFNAME && link.b().len() <= MAX_IFNAME);
}

#[test]
#[should_panic(expected = "must be 1 to 6 ASCII letters")]
fn a_prefix_that_could_overflow_an_interface_name_is_refused() {
    let _ = NetNs::new("toolong");
}
