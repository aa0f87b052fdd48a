//! The namespace lab itself (monitor::lab), which the demo and the traffic tests build on:
//! unique names, the calling thread really inside, and nothing left behind, even after a
//! panic.

use std::{net::SocketAddr, time::Duration};

use monitor::lab::{NetNs, Outcome, Servers, tcp_exchange, unique_name, veth};

fn namespaces() -> String {
    monitor::lab::run("ip", &["netns", "list"]).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn two_namespaces_talk_over_a_veth_pair_and_vanish_on_drop() {
    let (a_name, b_name);
    {
        let a = NetNs::new("lta").unwrap_or_else(|e| panic!("{e}"));
        let b = NetNs::new("ltb").unwrap_or_else(|e| panic!("{e}"));
        a_name = a.name().to_string();
        b_name = b.name().to_string();
        assert_ne!(a_name, b_name);
        assert!(
            a_name.len() <= 15,
            "{a_name} is too long for an interface name"
        );
        let (a_if, b_if) = (unique_name("la"), unique_name("lb"));
        veth(&a, &a_if, &b, &b_if).unwrap_or_else(|e| panic!("{e}"));
        a.ip(&["addr", "add", "192.0.2.1/24", "dev", &a_if])
            .unwrap_or_else(|e| panic!("{e}"));
        b.ip(&["addr", "add", "192.0.2.2/24", "dev", &b_if])
            .unwrap_or_else(|e| panic!("{e}"));
        // The calling thread is inside: the interface exists there and not here.
        let inside = {
            let a_if = a_if.clone();
            a.run(move || monitor::datapath::if_index(&a_if))
                .unwrap_or_else(|e| panic!("{e}"))
        };
        assert!(inside.is_some(), "{a_if} not visible inside {a_name}");
        assert_eq!(
            monitor::datapath::if_index(&a_if),
            None,
            "{a_if} leaked into the caller's namespace"
        );
        let server: SocketAddr = "192.0.2.2:7000".parse().unwrap_or_else(|e| panic!("{e}"));
        let _servers = Servers::start(&b, &[server], &[]).unwrap_or_else(|e| panic!("{e}"));
        let outcome = a
            .run(move || {
                tcp_exchange(
                    "192.0.2.1".parse().unwrap_or_else(|e| panic!("{e}")),
                    server,
                    b"ping",
                    Duration::from_secs(2),
                )
            })
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(outcome, Outcome::Answered);
    }
    let left = namespaces();
    assert!(
        !left.contains(&a_name) && !left.contains(&b_name),
        "left behind: {left}"
    );
}

#[test]
fn a_panic_still_removes_the_namespace() {
    let name = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let seen = name.clone();
    let result = std::panic::catch_unwind(move || {
        let ns = NetNs::new("ltp").unwrap_or_else(|e| panic!("{e}"));
        *seen.lock().unwrap_or_else(|p| p.into_inner()) = ns.name().to_string();
        panic!("a test failing half-way");
    });
    assert!(result.is_err());
    let name = name.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert!(!name.is_empty());
    assert!(!namespaces().contains(&name), "{name} survived the panic");
}
