//! Events for a SIEM, as syslog: each event the daemon writes to `events.jsonl`
//! (violations, break-glass, policy loads, mode changes) also goes to the collector of
//! `monitor run --syslog udp://HOST:PORT|tcp://HOST:PORT` as an RFC 5424 message whose
//! structured data carries the event's fields ([`format`]), over UDP or over TCP with
//! octet-counting framing (RFC 6587).
//!
//! Sending is a thread of its own ([`sender`]) behind a bounded queue: offering an event
//! never blocks (not the event pump, not the control thread). While the collector is
//! unreachable the queue holds [`QUEUE`] events and what comes beyond is dropped and
//! counted (`hospmon_syslog_messages_total{outcome="dropped"}`); the thread says so in the
//! log, reconnects with backoff, and says when the collector is back.
//!
//! The thread is started by `monitor run` before it enters `--netns`, so that, like the
//! metrics, it reaches the collector on the host's (management) network.

pub mod format;
pub mod message;
pub mod sender;

use std::{
    sync::{
        Arc,
        atomic::Ordering,
        mpsc::{SyncSender, TrySendError, sync_channel},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use super::stats::SyslogCounts;
pub use message::{Message, Severity, Target, Transport};

/// Events waiting for the collector at most; more are dropped.
pub const QUEUE: usize = 4096;

/// Where events are offered; cheap to clone, never blocks.
#[derive(Clone, Debug)]
pub struct SyslogQueue {
    queue: SyncSender<Message>,
    counts: Arc<SyslogCounts>,
}

impl SyslogQueue {
    /// Queues `message` for the collector, or drops and counts it when the queue is full.
    pub fn offer(&self, message: Message) {
        if let Err(e) = self.queue.try_send(message) {
            self.counts.dropped.fetch_add(1, Ordering::Relaxed);
            if !self.counts.dropping.swap(true, Ordering::Relaxed) {
                let why = match e {
                    TrySendError::Full(_) => format!("its queue of {QUEUE} events is full"),
                    TrySendError::Disconnected(_) => "its thread has ended".into(),
                };
                log::error!(
                    "events for the SIEM are being dropped: {why} (counted in \
                     hospmon_syslog_messages_total{{outcome=\"dropped\"}}); they are still \
                     written to events.jsonl"
                );
            }
        }
    }
}

/// The syslog sender: its thread and the queue that feeds it.
#[derive(Debug)]
pub struct Syslog {
    queue: SyslogQueue,
    thread: JoinHandle<()>,
}

impl Syslog {
    /// Starts the sending thread (in the network namespace of the calling thread); it
    /// connects at once and keeps trying while the collector is unreachable.
    pub fn start(target: Target) -> std::io::Result<Syslog> {
        let (queue, inbox) = sync_channel(QUEUE);
        let counts = Arc::new(SyslogCounts::default());
        let thread_counts = counts.clone();
        let thread = std::thread::Builder::new()
            .name("monitor-syslog".into())
            .spawn(move || sender::run(target, inbox, QUEUE, thread_counts))?;
        Ok(Syslog {
            queue: SyslogQueue { queue, counts },
            thread,
        })
    }

    pub fn queue(&self) -> SyslogQueue {
        self.queue.clone()
    }

    pub fn counts(&self) -> Arc<SyslogCounts> {
        self.queue.counts.clone()
    }

    /// Lets the thread send what is queued, for at most `within` (it ends once the queue
    /// is empty and every [`SyslogQueue`] is dropped); what is left then is lost.
    pub fn close(self, within: Duration) {
        let Syslog { queue, thread } = self;
        drop(queue);
        let deadline = Instant::now() + within;
        while !thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io::Read as _,
        net::{TcpListener, TcpStream, UdpSocket},
    };

    use super::*;

    fn message(text: &str) -> Message {
        Message {
            time: "2026-05-20T10:00:00Z".into(),
            severity: Severity::Warning,
            event: "violation".into(),
            params: vec![("device".into(), "pump-icu3-01".into())],
            text: text.into(),
        }
    }

    fn target(transport: Transport, port: u16) -> Target {
        Target {
            transport,
            host: "127.0.0.1".into(),
            port,
        }
    }

    /// One octet-counted message from `stream`.
    fn read_frame(stream: &mut TcpStream) -> String {
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap_or_else(|e| panic!("{e}"));
        let mut length = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            stream
                .read_exact(&mut byte)
                .unwrap_or_else(|e| panic!("reading a frame's length: {e}"));
            if byte[0] == b' ' {
                break;
            }
            length.push(byte[0]);
        }
        let length: usize = String::from_utf8_lossy(&length)
            .parse()
            .unwrap_or_else(|e| panic!("frame length {length:?}: {e}"));
        let mut body = vec![0u8; length];
        stream
            .read_exact(&mut body)
            .unwrap_or_else(|e| panic!("reading a frame: {e}"));
        String::from_utf8(body).unwrap_or_else(|e| panic!("{e}"))
    }

    fn accept(listener: &TcpListener) -> TcpStream {
        listener
            .set_nonblocking(false)
            .unwrap_or_else(|e| panic!("{e}"));
        let (tx, rx) = std::sync::mpsc::channel();
        let listener = listener.try_clone().unwrap_or_else(|e| panic!("{e}"));
        std::thread::spawn(move || {
            let _ = tx.send(listener.accept().map(|(stream, _)| stream));
        });
        rx.recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("no connection from the sender: {e}"))
            .unwrap_or_else(|e| panic!("accept: {e}"))
    }

    #[test]
    fn tcp_messages_are_octet_counted_and_a_collector_that_closed_gets_the_next_on_a_new_connection()
     {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("{e}"))
            .port();
        let syslog = Syslog::start(target(Transport::Tcp, port)).unwrap_or_else(|e| panic!("{e}"));
        let mut first = accept(&listener);
        syslog.queue().offer(message("first"));
        let frame = read_frame(&mut first);
        assert!(
            frame.starts_with("<132>1 2026-05-20T10:00:00Z ")
                && frame.contains(" monitor ")
                && frame.ends_with(" violation [hospmon@32473 device=\"pump-icu3-01\"] first"),
            "{frame}"
        );
        // The collector restarts: the next message comes on a new connection, not lost.
        drop(first);
        std::thread::sleep(Duration::from_millis(200));
        syslog.queue().offer(message("second"));
        let mut second = accept(&listener);
        assert!(read_frame(&mut second).ends_with("] second"));
        // Counted once the write returned, which may be just after the collector read it.
        let deadline = Instant::now() + Duration::from_secs(20);
        while syslog.counts().sent.load(Ordering::Relaxed) < 2 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(syslog.counts().sent.load(Ordering::Relaxed), 2);
        assert_eq!(syslog.counts().dropped.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn an_unreachable_tcp_collector_gets_the_queued_messages_once_it_listens() {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap_or_else(|e| panic!("{e}"))
            .port();
        let syslog = Syslog::start(target(Transport::Tcp, port)).unwrap_or_else(|e| panic!("{e}"));
        syslog.queue().offer(message("waited"));
        syslog.queue().offer(message("also"));
        std::thread::sleep(FIRST_WAIT);
        assert_eq!(syslog.counts().sent.load(Ordering::Relaxed), 0);
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap_or_else(|e| panic!("{e}"));
        let mut stream = accept(&listener);
        assert!(read_frame(&mut stream).ends_with("] waited"));
        assert!(read_frame(&mut stream).ends_with("] also"));
    }

    const FIRST_WAIT: Duration = Duration::from_millis(1500);

    #[test]
    fn udp_messages_are_one_datagram_each() {
        let collector = UdpSocket::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        collector
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap_or_else(|e| panic!("{e}"));
        let port = collector
            .local_addr()
            .unwrap_or_else(|e| panic!("{e}"))
            .port();
        let syslog = Syslog::start(target(Transport::Udp, port)).unwrap_or_else(|e| panic!("{e}"));
        syslog.queue().offer(message("one"));
        syslog.queue().offer(message("two"));
        let mut buffer = [0u8; 4096];
        for expected in ["] one", "] two"] {
            let n = collector
                .recv(&mut buffer)
                .unwrap_or_else(|e| panic!("{e}"));
            let text = String::from_utf8_lossy(&buffer[..n]);
            assert!(
                text.starts_with("<132>1 ") && text.ends_with(expected),
                "{text}"
            );
        }
    }

    #[test]
    fn offering_never_waits_for_a_collector_that_does_not_read() {
        // A collector that accepts connections (the kernel completes them) but never reads:
        // the socket buffers fill, then the queue; what comes beyond is dropped and counted.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("{e}"))
            .port();
        let syslog = Syslog::start(target(Transport::Tcp, port)).unwrap_or_else(|e| panic!("{e}"));
        let queue = syslog.queue();
        const OFFERED: u64 = 100_000;
        let (done, finished) = std::sync::mpsc::channel();
        let text = "x".repeat(900);
        std::thread::spawn(move || {
            for _ in 0..OFFERED {
                queue.offer(message(&text));
            }
            let _ = done.send(());
        });
        // A blocking offer would never finish while nothing reads (minutes pass before
        // the sender's timeouts free anything): the bound is generous, not a speed claim.
        finished
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("offering blocked on a collector that does not read"));
        let counts = syslog.counts();
        let (sent, dropped) = (
            counts.sent.load(Ordering::Relaxed),
            counts.dropped.load(Ordering::Relaxed),
        );
        assert!(
            dropped > 0
                && sent + dropped <= OFFERED
                && OFFERED - sent - dropped <= QUEUE as u64 + 1,
            "sent {sent}, dropped {dropped} of {OFFERED}"
        );
        assert!(counts.dropping.load(Ordering::Relaxed));
        drop(listener);
    }
}
