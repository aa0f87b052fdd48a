//! The sending thread: takes events from the queue one at a time and sends each until it
//! is handed to the collector's socket, reconnecting with backoff meanwhile.
//!
//! A connection that fails (no answer, refused, reset, closed by the collector) makes the
//! collector *unreachable*: said once in the log at error level (and again every
//! [`REMIND`] while it lasts), the event in hand kept, and a new connection tried after
//! [`FIRST_RETRY`], doubling up to [`MAX_RETRY`]. Events keep queueing meanwhile, up to
//! the queue's bound. UDP gives no delivery guarantee: a datagram the collector's host
//! refuses is noticed only at the next send (the kernel reports the ICMP error then).

use std::{
    io::Write as _,
    net::{SocketAddr, TcpStream, ToSocketAddrs as _, UdpSocket},
    sync::{
        Arc,
        atomic::Ordering,
        mpsc::{Receiver, RecvTimeoutError, TryRecvError},
    },
    time::{Duration, Instant},
};

use super::{
    format::{Origin, octet_counted, rfc5424},
    message::{Message, Target, Transport},
};
use crate::observe::stats::SyslogCounts;

/// The first wait before connecting again.
pub const FIRST_RETRY: Duration = Duration::from_secs(1);
/// The longest wait between attempts.
pub const MAX_RETRY: Duration = Duration::from_secs(30);
/// How often an outage is said again in the log.
pub const REMIND: Duration = Duration::from_secs(600);
/// How long a connection attempt or a write may take before the collector counts as
/// unreachable: a stalled collector must not stall the queue for long.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// An open way to the collector.
enum Connection {
    Udp(UdpSocket),
    Tcp(TcpStream),
}

impl Connection {
    fn open(target: &Target) -> std::io::Result<Connection> {
        let addresses: Vec<SocketAddr> = (target.host.as_str(), target.port)
            .to_socket_addrs()?
            .collect();
        let mut last = std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{} has no address", target.host),
        );
        for address in addresses {
            let opened = match target.transport {
                Transport::Udp => {
                    let local: SocketAddr = if address.is_ipv4() {
                        ([0, 0, 0, 0], 0).into()
                    } else {
                        ([0u16; 8], 0).into()
                    };
                    UdpSocket::bind(local)
                        .and_then(|socket| socket.connect(address).map(|()| socket))
                        .map(Connection::Udp)
                }
                Transport::Tcp => TcpStream::connect_timeout(&address, IO_TIMEOUT)
                    .and_then(|stream| {
                        stream.set_write_timeout(Some(IO_TIMEOUT))?;
                        stream.set_nodelay(true)?;
                        Ok(stream)
                    })
                    .map(Connection::Tcp),
            };
            match opened {
                Ok(connection) => return Ok(connection),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn send(&mut self, message: &str) -> std::io::Result<()> {
        match self {
            Connection::Udp(socket) => socket.send(message.as_bytes()).map(drop),
            Connection::Tcp(stream) => {
                // A collector that closed the connection (a restart) would take this write
                // into the kernel's buffer and lose it: look first.
                check_open(stream)?;
                stream.write_all(&octet_counted(message))
            }
        }
    }
}

/// Whether the collector closed the stream or reset it (it never sends anything).
fn check_open(stream: &TcpStream) -> std::io::Result<()> {
    stream.set_nonblocking(true)?;
    let mut byte = [0u8; 1];
    let peeked = stream.peek(&mut byte);
    stream.set_nonblocking(false)?;
    match peeked {
        Ok(0) => Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "the collector closed the connection",
        )),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(()),
        Err(e) => Err(e),
    }
}

/// The sender's state between events.
struct Sender {
    target: Target,
    origin: Origin,
    counts: Arc<SyslogCounts>,
    /// The queue's bound, for the log.
    capacity: usize,
    connection: Option<Connection>,
    /// No connection before this.
    next_try: Instant,
    backoff: Duration,
    /// Since when the collector is unreachable, and when that was last said.
    down: Option<(Instant, Instant)>,
}

impl Sender {
    /// Connects when it is time to try; says whether a connection is open.
    fn connected(&mut self) -> bool {
        if self.connection.is_some() {
            return true;
        }
        if Instant::now() < self.next_try {
            return false;
        }
        match Connection::open(&self.target) {
            Ok(connection) => {
                self.connection = Some(connection);
                true
            }
            Err(e) => {
                self.failed(&e);
                false
            }
        }
    }

    /// A failed attempt: no connection until the backoff has passed; said in the log.
    fn failed(&mut self, e: &std::io::Error) {
        self.connection = None;
        let now = Instant::now();
        let retry = self.backoff;
        self.next_try = now + retry;
        self.backoff = (self.backoff * 2).min(MAX_RETRY);
        match self.down {
            None => {
                log::error!(
                    "syslog collector {} unreachable: {e}; events for the SIEM wait in a queue \
                     of {} (beyond it they are dropped, counted in \
                     hospmon_syslog_messages_total{{outcome=\"dropped\"}}); trying again in {}",
                    self.target,
                    self.capacity,
                    humantime::format_duration(retry)
                );
                self.down = Some((now, now));
            }
            Some((since, said)) if now.duration_since(said) >= REMIND => {
                log::error!(
                    "syslog collector {} still unreachable (for {}): {e}",
                    self.target,
                    humantime::format_duration(Duration::from_secs(
                        now.duration_since(since).as_secs()
                    ))
                );
                self.down = Some((since, now));
            }
            Some(_) => {}
        }
    }

    /// A message handed over: the collector is (back) up.
    fn sent(&mut self) {
        self.counts.sent.fetch_add(1, Ordering::Relaxed);
        self.backoff = FIRST_RETRY;
        if let Some((since, _)) = self.down.take() {
            log::warn!(
                "syslog collector {} reachable again after {}",
                self.target,
                humantime::format_duration(Duration::from_secs(since.elapsed().as_secs()))
            );
        }
    }

    /// The queue is empty: events are no longer dropped (said once, if they were).
    fn caught_up(&self) {
        if self.counts.dropping.swap(false, Ordering::Relaxed) {
            log::warn!(
                "events for the SIEM are sent again (the queue is empty); {} were dropped \
                 since the monitor started",
                self.counts.dropped.load(Ordering::Relaxed)
            );
        }
    }

    /// Sends `text`, waiting for (and reconnecting to) the collector as long as it takes.
    fn deliver(&mut self, text: &str) {
        let mut reconnected = false;
        loop {
            if !self.connected() {
                std::thread::sleep(self.next_try.saturating_duration_since(Instant::now()));
                continue;
            }
            let Some(connection) = self.connection.as_mut() else {
                continue;
            };
            match connection.send(text) {
                Ok(()) => return self.sent(),
                // A collector may close a connection that was idle, or restart: one new
                // connection at once before it counts as unreachable.
                Err(_) if self.down.is_none() && !reconnected => {
                    reconnected = true;
                    self.connection = None;
                }
                Err(e) => self.failed(&e),
            }
        }
    }
}

/// The thread's body: until every queue handle is dropped and the queue (of `capacity`)
/// is empty.
pub fn run(target: Target, queue: Receiver<Message>, capacity: usize, counts: Arc<SyslogCounts>) {
    let mut sender = Sender {
        origin: Origin::here(),
        target,
        counts,
        capacity,
        connection: None,
        next_try: Instant::now(),
        backoff: FIRST_RETRY,
        down: None,
    };
    // Connect at once, so that an unreachable collector is said at start.
    if sender.connected() {
        log::info!("sending events to the syslog collector {}", sender.target);
    }
    loop {
        let message = match queue.try_recv() {
            Ok(message) => Some(message),
            Err(TryRecvError::Disconnected) => return,
            Err(TryRecvError::Empty) => {
                sender.caught_up();
                None
            }
        };
        let message = if let Some(message) = message {
            message
        } else if sender.connected() {
            match queue.recv() {
                Ok(message) => message,
                Err(_) => return,
            }
        } else {
            let wait = sender.next_try.saturating_duration_since(Instant::now());
            match queue.recv_timeout(wait) {
                Ok(message) => message,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return,
            }
        };
        sender.deliver(&rfc5424(&message, &sender.origin));
    }
}
