//! Monitoring over HTTP: nats-server's endpoints (`/varz`, `/connz`, `/subsz`, `/healthz`, ...)
//! with its JSON field names, shapes, query parameters and error texts, plus Prometheus
//! `/metrics`. Every answer is built from the live state at request time; nothing here runs on
//! the message path. See `docs/monitoring.md` for the differences from nats-server.

mod closed;
mod connz;
mod https;
mod index;
mod jsz;
mod metrics;
mod process;
mod subsz;
mod time;

pub use time::log_timestamp;
mod topology;
mod varz;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::Query;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use parking_lot::Mutex;
use serde::{Serialize, Serializer};
use tokio::sync::watch;

pub(crate) use https::HttpsListener;

use crate::state::ServerState;

pub(crate) use closed::ClosedConnections;

use crate::config::GLOBAL_ACCOUNT;

/// What the HTTP handlers share: the node's state plus monitoring's own bookkeeping.
#[derive(Debug)]
pub(crate) struct Monitor {
    state: Arc<ServerState>,
    /// The bound monitoring address (the configured port may be 0).
    http_addr: SocketAddr,
    /// Requests served per endpoint (`http_req_stats` in /varz).
    req_stats: Mutex<BTreeMap<&'static str, u64>>,
    cpu: process::CpuMeter,
}

impl Monitor {
    fn count_request(&self, path: &'static str) {
        *self.req_stats.lock().entry(path).or_insert(0) += 1;
    }
}

pub(crate) async fn serve<L>(
    listener: L,
    state: Arc<ServerState>,
    mut shutdown: watch::Receiver<bool>,
) where
    L: axum::serve::Listener<Addr = std::net::SocketAddr>,
{
    let http_addr = match listener.local_addr() {
        Ok(addr) => addr,
        Err(err) => {
            tracing::error!(%err, "monitoring listener has no local address");
            return;
        }
    };
    let monitor = Arc::new(Monitor {
        state,
        http_addr,
        req_stats: Mutex::new(BTreeMap::new()),
        cpu: process::CpuMeter::new(),
    });
    // nats-server answers every method on these paths, so `any` rather than `get`.
    let app = axum::Router::new()
        .route("/", any(index::handle))
        .route("/varz", any(varz::handle))
        .route("/connz", any(connz::handle))
        .route("/subsz", any(subsz::handle))
        .route("/subscriptionsz", any(subsz::handle))
        .route("/routez", any(topology::routez))
        .route("/gatewayz", any(topology::gatewayz))
        .route("/leafz", any(topology::leafz))
        .route("/accountz", any(topology::accountz))
        .route("/jsz", any(jsz::handle))
        .route("/healthz", any(healthz))
        .route("/metrics", any(metrics::handle))
        .fallback(not_found)
        .with_state(monitor);
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|s| *s).await;
        })
        .await;
    if let Err(err) = result {
        tracing::error!(%err, "monitoring server failed");
    }
}

/// `/healthz`: a node is healthy as soon as it serves, except that with clustered JetStream it
/// is not ready (503, nats-server's texts) until it knows a meta leader and has applied the meta
/// log: before then it cannot place, find or serve streams. `js-enabled-only` asks only whether
/// JetStream runs, so it skips that check, as in nats-server.
/// nats-server's `/healthz` error once the client listener closed (lame duck mode, shutdown).
const LISTENER_CLOSED: &str = "failed to be ready for connections after 1ms: server";

async fn healthz(
    axum::extract::State(monitor): axum::extract::State<Arc<Monitor>>,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    monitor.count_request("/healthz");
    #[derive(Serialize)]
    struct Health {
        status: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    }
    let params = Params(query);
    let js_enabled_only = params.bool("js-enabled-only").unwrap_or(false);
    let js_server_only = params.bool("js-server-only").unwrap_or(false);
    let listener_closed = monitor.state.listener_closed.load(Ordering::Relaxed);
    let unready = match monitor.state.jetstream.get() {
        // nats-server's readiness check fails once its client listener is gone.
        _ if listener_closed => Some(LISTENER_CLOSED.to_owned()),
        Some(js) if !js_enabled_only => js.cluster().and_then(|cluster| {
            use crate::jetstream::cluster::operations::{
                meta_unready_reason, stream_unready_reason,
            };
            meta_unready_reason(cluster).map(str::to_owned).or_else(|| {
                (!js_server_only)
                    .then(|| stream_unready_reason(js))
                    .flatten()
            })
        }),
        _ => None,
    };
    let failed = unready.is_some();
    let health = match unready {
        Some(reason) => {
            tracing::warn!("Healthcheck failed: {reason:?}");
            Health {
                status: "unavailable",
                error: Some(reason),
            }
        }
        None => Health {
            status: "ok",
            error: None,
        },
    };
    // nats-server writes this one compact, unlike the other endpoints.
    let body = serde_json::to_string(&health).unwrap_or_default();
    let mut response = respond_json(&params, body);
    if failed {
        *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    }
    response
}

/// Go's `http.NotFound`.
async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "404 page not found\n",
    )
        .into_response()
}

/// Query parameters, read the way nats-server reads them (first value wins; parse errors are a
/// 400 with Go's error text).
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// Go's `strconv.ParseBool`.
    pub fn bool(&self, name: &str) -> Result<bool, BadRequest> {
        match self.get(name) {
            None => Ok(false),
            Some("1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(true),
            Some("0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(false),
            Some(other) => Err(BadRequest(format!(
                "Error decoding boolean for '{name}': strconv.ParseBool: parsing {other:?}: invalid syntax"
            ))),
        }
    }

    /// Go's `strconv.Atoi` (0 when absent).
    pub fn int(&self, name: &str) -> Result<i64, BadRequest> {
        match self.get(name) {
            None => Ok(0),
            Some(text) => text.parse::<i64>().map_err(|_| {
                BadRequest(format!("Error decoding int for '{name}': strconv.Atoi: parsing {text:?}: invalid syntax"))
            }),
        }
    }

    /// Go's `strconv.ParseUint` (0 when absent).
    pub fn uint(&self, name: &str) -> Result<u64, BadRequest> {
        match self.get(name) {
            None => Ok(0),
            Some(text) if text.starts_with('+') => Err(uint_error(name, text)),
            Some(text) => text.parse::<u64>().map_err(|_| uint_error(name, text)),
        }
    }

    /// `subs=detail` or a boolean `subs`: (list, detail).
    pub fn subs(&self) -> Result<(bool, bool), BadRequest> {
        if self
            .get("subs")
            .is_some_and(|v| v.eq_ignore_ascii_case("detail"))
        {
            return Ok((false, true));
        }
        Ok((self.bool("subs")?, false))
    }

    /// nats-server's paging: a negative offset is 0, a non-positive limit the default 1024.
    pub fn paging(&self) -> Result<(usize, usize), BadRequest> {
        const DEFAULT_LIMIT: usize = 1024;
        let offset = usize::try_from(self.int("offset")?).unwrap_or(0);
        let limit = usize::try_from(self.int("limit")?)
            .ok()
            .filter(|l| *l > 0)
            .unwrap_or(DEFAULT_LIMIT);
        Ok((offset, limit))
    }
}

fn uint_error(name: &str, text: &str) -> BadRequest {
    BadRequest(format!(
        "Error decoding uint64 for '{name}': strconv.ParseUint: parsing {text:?}: invalid syntax"
    ))
}

/// A request nats-server would refuse: a 400 with a plain-text reason, as it writes it.
#[derive(Debug)]
pub(crate) struct BadRequest(pub String);

impl IntoResponse for BadRequest {
    fn into_response(self) -> Response {
        (
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            self.0,
        )
            .into_response()
    }
}

/// nats-server's JSON endpoints: indented two spaces.
pub(crate) fn json<T: Serialize>(params: &Params, value: &T) -> Response {
    match serde_json::to_string_pretty(value) {
        Ok(body) => respond_json(params, body),
        Err(err) => {
            tracing::error!(%err, "cannot encode monitoring response");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// nats-server's `ResponseHandler`: JSON with CORS open, or JSONP when `callback` is given.
fn respond_json(params: &Params, body: String) -> Response {
    let (content_type, body) = match params.get("callback") {
        // The callback name is echoed into a script: accept only identifier-like names.
        Some(callback)
            if callback
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.$".contains(&b)) =>
        {
            ("application/javascript", format!("{callback}({body})"))
        }
        _ => ("application/json", body),
    };
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    response
}

/// Go encodes a `float64` without a fraction when it has none (`2`, not `2.0`).
pub(crate) fn go_float<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        serializer.serialize_i64(*value as i64)
    } else {
        serializer.serialize_f64(*value)
    }
}

/// A JSON object with no fields (`{}`), for sections of a feature natrix does not have.
#[derive(Serialize, Default)]
pub(crate) struct Empty {}

pub(crate) fn is_false(b: &bool) -> bool {
    !*b
}
