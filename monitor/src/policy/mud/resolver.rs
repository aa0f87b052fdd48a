//! The controller's one DNS resolver for MUD names: a thread of its own (named
//! [`THREAD_NAME`]) running a single-threaded tokio runtime and a hickory resolver per set of
//! DNS servers, started once and kept for as long as its owner ([`crate::policy::mud::Names`])
//! lives. It is called from plain threads, blocking: the daemon's control thread asks and
//! waits at most [`LOOKUP_TIMEOUT`] (and a second of grace), and no async runtime of the
//! caller is needed or used (calling from inside one works, but blocks that task).
//!
//! The thread is started in the network namespace of the thread that asks first (so
//! `monitor run --netns` resolves inside the router's namespace). Answers are never served
//! from hickory's cache: `Names` keeps each for its TTL and asks again only when it has run
//! out, so every question goes to a server. A resolver on the system's configuration is
//! built again when `/etc/resolv.conf` changes.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    net::{IpAddr, SocketAddr},
    sync::mpsc,
    time::{Duration, SystemTime},
};

use hickory_resolver::TokioResolver;

use crate::policy::model::Family;

/// How long one question may take, all servers and attempts included.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(4);
/// How long a caller waits for the resolver's thread beyond [`LOOKUP_TIMEOUT`] before it
/// counts the thread as stuck.
const REPLY_GRACE: Duration = Duration::from_secs(1);
/// The name of the resolver's thread (`/proc/PID/task/TID/comm`).
pub const THREAD_NAME: &str = "mud-resolver";
/// The system's resolver configuration.
const RESOLV_CONF: &str = "/etc/resolv.conf";

/// A name a MUD file uses, the records it needs and the servers to ask (empty: the
/// system's resolver configuration).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Question {
    pub name: String,
    pub family: Family,
    pub servers: Vec<SocketAddr>,
}

impl fmt::Display for Question {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.name, self.family.record())
    }
}

/// What asking gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Addresses and the smallest TTL among them (seconds).
    Found(BTreeSet<IpAddr>, u32),
    /// The name has no such records, or does not exist; the negative TTL when the answer
    /// carried one.
    NoAddresses {
        nxdomain: bool,
        negative_ttl: Option<u32>,
    },
    /// No usable answer (timeout, refused, server failure).
    Failed(String),
}

/// Questions asked together, and where their answers go.
#[derive(Debug)]
struct Request {
    questions: Vec<Question>,
    reply: mpsc::Sender<Vec<(Question, Lookup)>>,
}

/// The resolver's thread, as its callers hold it. Dropping it ends the thread once it has
/// answered what it was asked.
#[derive(Debug)]
pub struct Resolver {
    requests: tokio::sync::mpsc::UnboundedSender<Request>,
}

impl Resolver {
    /// Starts the resolver's thread, in the calling thread's network namespace.
    pub fn start() -> Result<Resolver, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("starting the resolver: {e}"))?;
        let (requests, received) = tokio::sync::mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name(THREAD_NAME.into())
            .spawn(move || runtime.block_on(serve(received)))
            .map_err(|e| format!("starting the resolver's thread: {e}"))?;
        Ok(Resolver { requests })
    }

    /// Asks every question at once, each within [`LOOKUP_TIMEOUT`], and waits for the
    /// answers. An error means the thread is gone or stuck: start another.
    pub fn lookup_all(&self, questions: &[Question]) -> Result<Vec<(Question, Lookup)>, String> {
        if questions.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answers) = mpsc::channel();
        let stopped = || "the resolver's thread has stopped".to_string();
        self.requests
            .send(Request {
                questions: questions.to_vec(),
                reply,
            })
            .map_err(|_| stopped())?;
        answers
            .recv_timeout(LOOKUP_TIMEOUT + REPLY_GRACE)
            .map_err(|e| match e {
                mpsc::RecvTimeoutError::Timeout => format!(
                    "the resolver did not answer within {} s",
                    (LOOKUP_TIMEOUT + REPLY_GRACE).as_secs()
                ),
                mpsc::RecvTimeoutError::Disconnected => stopped(),
            })
    }
}

/// The resolver's thread: answers requests until every [`Resolver`] handle is dropped.
async fn serve(mut requests: tokio::sync::mpsc::UnboundedReceiver<Request>) {
    let mut resolvers = Resolvers::default();
    while let Some(request) = requests.recv().await {
        let answers = resolvers.lookup_all(&request.questions).await;
        // The caller may have stopped waiting.
        let _ = request.reply.send(answers);
    }
}

/// `/etc/resolv.conf` as last seen: modification time and length.
type ConfStamp = Option<(Option<SystemTime>, u64)>;

fn resolv_conf_stamp() -> ConfStamp {
    std::fs::metadata(RESOLV_CONF)
        .ok()
        .map(|meta| (meta.modified().ok(), meta.len()))
}

/// A hickory resolver kept for its servers.
struct Built {
    resolver: TokioResolver,
    /// For the system's configuration: the configuration it was built from.
    conf: ConfStamp,
}

/// The hickory resolvers, one per set of servers, each built at first use and kept.
#[derive(Default)]
struct Resolvers {
    by_servers: BTreeMap<Vec<SocketAddr>, Built>,
}

impl Resolvers {
    async fn lookup_all(&mut self, questions: &[Question]) -> Vec<(Question, Lookup)> {
        // `Names` keeps answers for their TTL; a cached answer here would outlive it.
        for built in self.by_servers.values() {
            built.resolver.clear_cache();
        }
        let mut tasks = tokio::task::JoinSet::new();
        for question in questions {
            let resolver = self.resolver(&question.servers);
            let question = question.clone();
            tasks.spawn(async move {
                let lookup = match resolver {
                    Ok(resolver) => lookup_one(&resolver, &question).await,
                    Err(why) => Lookup::Failed(why),
                };
                (question, lookup)
            });
        }
        let mut out = Vec::new();
        while let Some(done) = tasks.join_next().await {
            if let Ok(answer) = done {
                out.push(answer);
            }
        }
        out
    }

    /// The resolver of `servers` (empty: the system's configuration); one that cannot be
    /// built is tried again at the next question.
    fn resolver(&mut self, servers: &[SocketAddr]) -> Result<TokioResolver, String> {
        let conf = if servers.is_empty() {
            resolv_conf_stamp()
        } else {
            None
        };
        if let Some(built) = self.by_servers.get(servers)
            && built.conf == conf
        {
            return Ok(built.resolver.clone());
        }
        let resolver = build_resolver(servers)?;
        self.by_servers.insert(
            servers.to_vec(),
            Built {
                resolver: resolver.clone(),
                conf,
            },
        );
        Ok(resolver)
    }
}

/// A hickory resolver asking `servers` (empty: the system's configuration): 2 s a try, one
/// try, DNS only.
fn build_resolver(servers: &[SocketAddr]) -> Result<TokioResolver, String> {
    use hickory_resolver::{
        Resolver as HickoryResolver,
        config::{NameServerConfig, ResolveHosts, ResolverConfig},
        net::runtime::TokioRuntimeProvider,
    };
    let mut builder = if servers.is_empty() {
        TokioResolver::builder_tokio()
            .map_err(|e| format!("reading the system's resolver configuration: {e}"))?
    } else {
        let name_servers = servers
            .iter()
            .map(|server| {
                let mut config = NameServerConfig::udp_and_tcp(server.ip());
                for connection in &mut config.connections {
                    connection.port = server.port();
                }
                config
            })
            .collect();
        HickoryResolver::builder_with_config(
            ResolverConfig::from_name_servers(name_servers),
            TokioRuntimeProvider::default(),
        )
    };
    let options = builder.options_mut();
    options.timeout = Duration::from_secs(2);
    options.attempts = 1;
    // DNS names only: /etc/hosts has no TTLs to follow.
    options.use_hosts_file = ResolveHosts::Never;
    builder
        .build()
        .map_err(|e| format!("setting up the resolver: {e}"))
}

async fn lookup_one(resolver: &TokioResolver, question: &Question) -> Lookup {
    use hickory_resolver::{
        net::{DnsError, NetError},
        proto::{op::ResponseCode, rr::RecordType},
    };
    let record = match question.family {
        Family::V4 => RecordType::A,
        Family::V6 => RecordType::AAAA,
    };
    // Fully qualified: no search domains, one question.
    let name = format!("{}.", question.name.trim_end_matches('.'));
    match tokio::time::timeout(LOOKUP_TIMEOUT, resolver.lookup(name.as_str(), record)).await {
        Err(_) => Lookup::Failed(format!("no answer within {} s", LOOKUP_TIMEOUT.as_secs())),
        Ok(Ok(lookup)) => {
            let answers: Vec<_> = lookup
                .answers()
                .iter()
                .filter_map(|r| {
                    r.data
                        .ip_addr()
                        .filter(|ip| question.family.holds(ip))
                        .map(|ip| (ip, r.ttl))
                })
                .collect();
            match answers.iter().map(|(_, ttl)| *ttl).min() {
                Some(ttl) => Lookup::Found(answers.iter().map(|(ip, _)| *ip).collect(), ttl),
                None => Lookup::NoAddresses {
                    nxdomain: false,
                    negative_ttl: None,
                },
            }
        }
        Ok(Err(NetError::Dns(DnsError::NoRecordsFound(none)))) => Lookup::NoAddresses {
            nxdomain: none.response_code == ResponseCode::NXDomain,
            negative_ttl: none.negative_ttl,
        },
        Ok(Err(e)) => Lookup::Failed(e.to_string()),
    }
}
