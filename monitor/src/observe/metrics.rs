//! The observability HTTP server of `--metrics-addr`: `/metrics` (Prometheus, see
//! [`super::scrape`]) and the device map at `/map` (HTML), `/map.json` and `/map.dot`,
//! all from what the daemon holds in memory ([`Live`]) and the history its activity
//! [`Sampler`] keeps. [`start`] starts both; they stop when its guard is dropped.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex, OnceLock},
};

use super::{
    live::Live,
    sampler::{Sampler, SharedActivity},
    scrape::{ScrapeError, Scraper},
};
use crate::{
    state::daemon::Paths,
    support::error_chain,
    view::{devmap, oui::OuiDb},
};

/// Default port of `--metrics-addr` (on 127.0.0.1). Not one of the ports Prometheus'
/// exporter list reserves for well-known exporters as of writing.
pub const DEFAULT_PORT: u16 = 9479;

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("listening on {0} for metrics")]
    Bind(SocketAddr, #[source] std::io::Error),
    #[error("scraping")]
    Scrape(#[source] Box<ScrapeError>),
    #[error("the device map")]
    DevMap(#[source] Box<devmap::DevMapError>),
}

impl From<ScrapeError> for MetricsError {
    fn from(e: ScrapeError) -> Self {
        MetricsError::Scrape(Box::new(e))
    }
}

impl From<devmap::DevMapError> for MetricsError {
    fn from(e: devmap::DevMapError) -> Self {
        MetricsError::DevMap(Box::new(e))
    }
}

type Result<T, E = MetricsError> = std::result::Result<T, E>;

/// Binds the metrics listener. `monitor run` does this before it enters `--netns`, so that
/// the metrics are served on the host's (management) network, not inside the router VRF.
pub fn bind(addr: SocketAddr) -> Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr).map_err(|e| MetricsError::Bind(addr, e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| MetricsError::Bind(addr, e))?;
    Ok(listener)
}

/// What the HTTP handlers share: the scraper (one scrape at a time), the daemon's view,
/// the activity history and the vendor registry, loaded once.
struct Shared {
    scraper: Mutex<Scraper>,
    live: Live,
    activity: SharedActivity,
    /// The IEEE registry, read at the first map request (46,000 lines).
    oui: OnceLock<Option<OuiDb>>,
}

impl Shared {
    fn oui(&self) -> Option<&OuiDb> {
        self.oui
            .get_or_init(|| match OuiDb::load_default() {
                Ok(db) => Some(db),
                Err(e) => {
                    log::warn!("{e}: the device map shows no vendors");
                    None
                }
            })
            .as_ref()
    }
}

/// The daemon's observability: the activity sampler and, with `--metrics-addr`, the HTTP
/// server. Both stop when this is dropped (the sampler after a last sample).
#[derive(Debug)]
pub struct Observability {
    _sampler: Option<Sampler>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Observability {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// Starts the activity sampler and, when given a listener, the HTTP server on the current
/// tokio runtime, both reading what the daemon holds in `live`; `paths.state` is where the
/// sampler writes its history. Problems are logged: observability must never stop the
/// monitor.
pub fn start(paths: &Paths, live: &Live, listener: Option<std::net::TcpListener>) -> Observability {
    let sampler = match Sampler::start(live, paths.state.clone()) {
        Ok(s) => Some(s),
        Err(e) => {
            log::error!("activity sampling not started: {e}");
            None
        }
    };
    let activity = match &sampler {
        Some(sampler) => sampler.activity(),
        None => Sampler::without(&paths.state),
    };
    let server = listener.and_then(|listener| match serve(live, activity, listener) {
        Ok(handle) => Some(handle),
        Err(e) => {
            log::error!("metrics server not started: {}", error_chain(&e));
            None
        }
    });
    Observability {
        _sampler: sampler,
        server,
    }
}

fn serve(
    live: &Live,
    activity: SharedActivity,
    listener: std::net::TcpListener,
) -> Result<tokio::task::JoinHandle<()>> {
    tune_allocator();
    let addr = listener
        .local_addr()
        .map_err(|e| MetricsError::Bind(([0, 0, 0, 0], 0).into(), e))?;
    let listener =
        tokio::net::TcpListener::from_std(listener).map_err(|e| MetricsError::Bind(addr, e))?;
    let live = live.clone();
    // Everything slow (the first count of the tables) happens in the task: the daemon's
    // start is not held up; requests wait in the listen queue until it is ready.
    Ok(tokio::spawn(async move {
        let opened = {
            let live = live.clone();
            tokio::task::spawn_blocking(move || Scraper::open(live)).await
        };
        let scraper = match opened {
            Ok(Ok(scraper)) => scraper,
            Ok(Err(e)) => {
                log::error!("metrics server not started: {}", error_chain(&e));
                return;
            }
            Err(e) => {
                log::error!("metrics server not started: {e}");
                return;
            }
        };
        let shared = Arc::new(Shared {
            scraper: Mutex::new(scraper),
            live,
            activity,
            oui: OnceLock::new(),
        });
        log::info!("metrics on http://{addr}/metrics, device map on http://{addr}/map");
        if let Err(e) = axum::serve(listener, routes(shared)).await {
            log::error!("metrics server stopped: {e}");
        }
    }))
}

/// An exposition at 10,000 devices is one ~15 MB buffer, freed once sent. glibc raises its
/// mmap threshold to the size of the first such buffer freed, after which they come from
/// (and stay in) the heap of whichever thread scraped: tens of MB kept between scrapes. A
/// fixed threshold keeps every large buffer mmapped, so its memory goes back to the system
/// when it is freed.
fn tune_allocator() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes the allocator's tuning; 1 MiB is a valid threshold.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

fn routes(shared: Arc<Shared>) -> axum::Router {
    use axum::routing::get;
    axum::Router::new()
        .route("/", get(index))
        .route("/metrics", get(metrics_handler))
        .route(
            "/map",
            get(|s: SharedState| map_handler(s, devmap::Format::Html)),
        )
        .route(
            "/map.json",
            get(|s: SharedState| map_handler(s, devmap::Format::Json)),
        )
        .route(
            "/map.dot",
            get(|s: SharedState| map_handler(s, devmap::Format::Dot)),
        )
        .route(
            "/map.svg",
            get(|s: SharedState| map_handler(s, devmap::Format::Svg)),
        )
        .with_state(shared)
}

type SharedState = axum::extract::State<Arc<Shared>>;

type Reply = (
    axum::http::StatusCode,
    [(axum::http::header::HeaderName, &'static str); 1],
    String,
);

fn reply(status: axum::http::StatusCode, content_type: &'static str, body: String) -> Reply {
    (
        status,
        [(axum::http::header::CONTENT_TYPE, content_type)],
        body,
    )
}

async fn index() -> Reply {
    reply(
        axum::http::StatusCode::OK,
        "text/html; charset=utf-8",
        "<!doctype html><title>hospital flow monitor</title><h1>hospital flow monitor</h1>\
         <ul><li><a href=\"/metrics\">/metrics</a> (Prometheus)</li>\
         <li><a href=\"/map\">/map</a> (device map; also <a href=\"/map.json\">JSON</a>, \
         <a href=\"/map.dot\">Graphviz</a>, \
         <a href=\"/map.svg\">the drawing as SVG</a>)</li></ul>"
            .into(),
    )
}

/// Runs blocking map reads off the async workers (a large table walk takes a while).
async fn blocking<T: Send + 'static>(
    shared: Arc<Shared>,
    f: impl FnOnce(&Shared) -> Result<T> + Send + 'static,
) -> Result<T, String> {
    match tokio::task::spawn_blocking(move || f(&shared)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(error_chain(&e)),
        Err(e) => Err(e.to_string()),
    }
}

async fn metrics_handler(axum::extract::State(shared): SharedState) -> Reply {
    let result = blocking(shared, |s| {
        let mut scraper = s
            .scraper
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Ok(scraper.scrape()?)
    })
    .await;
    match result {
        Ok(text) => reply(
            axum::http::StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            text,
        ),
        Err(e) => {
            log::warn!("scrape failed: {e}");
            reply(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain; charset=utf-8",
                e,
            )
        }
    }
}

async fn map_handler(axum::extract::State(shared): SharedState, format: devmap::Format) -> Reply {
    let result = blocking(shared, move |s| {
        let oui = s.oui();
        // The sampler waits while the map is read and built.
        let activity = s.activity.lock();
        let inputs = devmap::Inputs::in_memory(
            &s.live.maps,
            s.live.inventory(),
            s.live.daemon(),
            &activity,
            oui,
        )?;
        let model = devmap::build(&inputs);
        drop(inputs);
        drop(activity);
        Ok(devmap::render(&model, format)?)
    })
    .await;
    match result {
        Ok(body) => reply(axum::http::StatusCode::OK, format.content_type(), body),
        Err(e) => reply(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain; charset=utf-8",
            e,
        ),
    }
}
