//! A live monitor on a link of its own: two network namespaces made for the test, joined
//! by a veth pair, the monitor program attached in native mode to the receiving end. Frames
//! are injected, byte for byte, with an AF_PACKET socket on the sending end; each frame's
//! verdict is read back from the program's verdict counters. Nothing else talks on the
//! link (IPv6 is off in both namespaces and no address is configured), so every counter
//! that moves belongs to the frame just sent.

use std::{
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    time::{Duration, Instant},
};

use aya::programs::xdp::XdpMode;
use monitor::{
    Datapath, Maps,
    datapath::if_index,
    lab::{NetNs, unique_name, veth},
};
use monitor_common::{Action, Reason, maps::Counter};

/// How long a frame may take from the socket to the counters.
const VERDICT_WAIT: Duration = Duration::from_secs(3);

/// The link, its monitor and the sending socket; everything goes when it drops.
pub struct LiveLink {
    /// Dropped first: detaches the program before its interface goes.
    pub datapath: Datapath,
    socket: OwnedFd,
    sender_ifindex: i32,
    _receiver: NetNs,
    _sender: NetNs,
}

impl LiveLink {
    /// Builds the namespaces and the link, loads the monitor (fresh private maps, learn
    /// mode until the caller changes it) and attaches it to the receiving end.
    pub fn build() -> LiveLink {
        let sender = NetNs::new("mls").unwrap_or_else(|e| panic!("sender namespace: {e}"));
        let receiver = NetNs::new("mlr").unwrap_or_else(|e| panic!("receiver namespace: {e}"));
        for ns in [&sender, &receiver] {
            for conf in ["all", "default"] {
                ns.exec(&[
                    "sysctl",
                    "-q",
                    "-w",
                    &format!("net.ipv6.conf.{conf}.disable_ipv6=1"),
                ])
                .unwrap_or_else(|e| panic!("disabling IPv6 in {}: {e}", ns.name()));
            }
        }
        let (tx, rx) = (unique_name("ls"), unique_name("lr"));
        veth(&sender, &tx, &receiver, &rx).unwrap_or_else(|e| panic!("veth: {e}"));
        let mut datapath =
            Datapath::load(&Maps::Private).unwrap_or_else(|e| panic!("loading: {e:?}"));
        {
            let _inside = receiver.enter().unwrap_or_else(|e| panic!("{e}"));
            let mode = datapath
                .attach(&rx, XdpMode::Driver)
                .unwrap_or_else(|e| panic!("attaching to {rx}: {e:?}"));
            assert_eq!(mode, XdpMode::Driver);
        }
        let tx_name = tx.clone();
        let (socket, sender_ifindex) = sender
            .run(move || {
                let ifindex =
                    if_index(&tx_name).unwrap_or_else(|| panic!("no interface {tx_name}"));
                // SAFETY: plain socket(2); the descriptor is owned at once.
                let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
                assert!(
                    fd >= 0,
                    "AF_PACKET socket: {}",
                    std::io::Error::last_os_error()
                );
                // SAFETY: a descriptor just returned by socket(2), owned by nobody else.
                (unsafe { OwnedFd::from_raw_fd(fd) }, ifindex as i32)
            })
            .unwrap_or_else(|e| panic!("{e}"));
        LiveLink {
            datapath,
            socket,
            sender_ifindex,
            _receiver: receiver,
            _sender: sender,
        }
    }

    /// Sends `frame` as it is and returns the verdict the monitor gave it.
    pub fn judge(&self, frame: &[u8]) -> (Action, Reason) {
        let before = self.verdicts();
        // SAFETY: sockaddr_ll is plain data; zeroed is a valid start.
        let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        to.sll_family = libc::AF_PACKET as u16;
        to.sll_ifindex = self.sender_ifindex;
        to.sll_halen = 6;
        to.sll_addr[..6].copy_from_slice(&frame[..6]);
        // SAFETY: `frame` and `to` outlive the call; the lengths are theirs.
        let sent = unsafe {
            libc::sendto(
                self.socket.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&raw const to).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert_eq!(
            sent,
            frame.len() as isize,
            "sending a {}-byte frame: {}",
            frame.len(),
            std::io::Error::last_os_error()
        );
        let deadline = Instant::now() + VERDICT_WAIT;
        loop {
            let after = self.verdicts();
            let moved: Vec<(Action, Reason, u64)> = before
                .iter()
                .zip(&after)
                .filter(|(b, a)| a.2.packets != b.2.packets)
                .map(|(b, a)| (a.0, a.1, a.2.packets - b.2.packets))
                .collect();
            match moved.as_slice() {
                [] if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
                [] => panic!(
                    "a {}-byte frame never reached the monitor within {VERDICT_WAIT:?}",
                    frame.len()
                ),
                [(action, reason, 1)] => return (*action, *reason),
                other => panic!(
                    "one {}-byte frame moved the verdict counters by {other:?}",
                    frame.len()
                ),
            }
        }
    }

    fn verdicts(&self) -> Vec<(Action, Reason, Counter)> {
        self.datapath
            .maps()
            .verdicts()
            .unwrap_or_else(|e| panic!("reading VERDICTS: {e:?}"))
    }
}
