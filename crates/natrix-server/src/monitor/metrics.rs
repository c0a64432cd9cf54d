//! `/metrics`: Prometheus text exposition of the /varz, /subsz and /connz figures, named as the
//! official prometheus-nats-exporter names them under the `nats` prefix that NATS' Helm charts
//! use (`nats_varz_in_msgs{server_id="..."}`; the exporter's own default prefix is `gnatsd`), so
//! existing dashboards work unchanged. Like the exporter, every metric is a gauge holding the
//! value from the endpoint's JSON, read from the live state at scrape time.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus::{Encoder, GaugeVec, Opts, Registry, TextEncoder};
use serde::Serialize;

use super::{Monitor, connz, subsz, varz};

const PREFIX: &str = "nats";

/// String fields of /varz that the exporter exposes as `{value="..."} 1` gauges.
const LABEL_FIELDS: &[&str] = &["server_id", "server_name", "version"];

pub(crate) async fn handle(State(monitor): State<Arc<Monitor>>) -> Response {
    monitor.count_request("/metrics");
    match render(&monitor) {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                TextEncoder::new().format_type().to_string(),
            )],
            text,
        )
            .into_response(),
        Err(err) => {
            tracing::error!(%err, "cannot render metrics");
            (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response()
        }
    }
}

fn render(monitor: &Monitor) -> prometheus::Result<String> {
    let registry = Registry::new();
    let server_id = monitor.state.server_id.clone();
    let mut collector = Collector {
        registry: &registry,
        server_id: &server_id,
    };

    collector.endpoint("varz", &varz::build(monitor))?;
    collector.endpoint("subsz", &subsz::stats(monitor))?;

    // The exporter's connz collector: the list header plus totals over the connections.
    let connz = connz::totals(monitor);
    let sum = |f: fn(&connz::ConnInfo) -> u64| connz.connections.iter().map(f).sum::<u64>() as f64;
    collector.gauge("connz", "num_connections", connz.num_connections as f64)?;
    collector.gauge("connz", "total", connz.total as f64)?;
    collector.gauge("connz", "offset", connz.offset as f64)?;
    collector.gauge("connz", "limit", connz.limit as f64)?;
    collector.gauge("connz", "pending_bytes", sum(|c| c.pending_bytes))?;
    collector.gauge("connz", "in_msgs", sum(|c| c.in_msgs))?;
    collector.gauge("connz", "out_msgs", sum(|c| c.out_msgs))?;
    collector.gauge("connz", "in_bytes", sum(|c| c.in_bytes))?;
    collector.gauge("connz", "out_bytes", sum(|c| c.out_bytes))?;
    collector.gauge("connz", "subscriptions", sum(|c| c.subscriptions as u64))?;

    if let Some(js) = monitor.state.jetstream.get() {
        jetstream(&registry, &monitor.state, js)?;
    }

    let mut buf = Vec::new();
    TextEncoder::new().encode(&registry.gather(), &mut buf)?;
    String::from_utf8(buf).map_err(|e| prometheus::Error::Msg(e.to_string()))
}

/// The exporter's JetStream collector (`-jsz=all`): `jetstream_server_*`,
/// `jetstream_stream_*{stream_name}` and `jetstream_consumer_*{stream_name,consumer_name}`.
fn jetstream(
    registry: &Registry,
    state: &crate::state::ServerState,
    js: &crate::jetstream::JetStream,
) -> prometheus::Result<()> {
    let id = state.server_id.as_str();
    let account = js.account.name.as_str();
    let vec = |subsystem: &str, name: &str, labels: &[&str]| {
        GaugeVec::new(
            Opts::new(name, name)
                .namespace("jetstream")
                .subsystem(subsystem),
            labels,
        )
    };
    let streams = js.streams();
    let usage = js.usage();
    let server = [
        ("total_streams", usage.streams as f64),
        ("total_consumers", usage.consumers as f64),
        (
            "total_messages",
            streams.iter().map(|h| h.messages()).sum::<u64>() as f64,
        ),
        (
            "total_message_bytes",
            streams.iter().map(|h| h.bytes()).sum::<u64>() as f64,
        ),
        (
            "max_memory",
            js.config.max_memory_store.unwrap_or(-1) as f64,
        ),
        ("max_storage", js.config.max_file_store.unwrap_or(-1) as f64),
        ("jetstream_disabled", 0.0),
    ];
    for (name, value) in server {
        let g = vec("server", name, &["server_id"])?;
        g.with_label_values(&[id]).set(value);
        registry.register(Box::new(g))?;
    }
    // natrix's own: the group committer (one write batch per group; fsyncs shared by groups).
    let commit = js.store().stats();
    for (name, help, value) in [
        (
            "commits_total",
            "store commits written and acknowledged",
            commit.commits,
        ),
        (
            "write_groups_total",
            "write batches (commit groups) written",
            commit.groups,
        ),
        ("syncs_total", "fsyncs of the write-ahead log", commit.syncs),
        (
            "failed_groups_total",
            "commit groups whose write or fsync failed",
            commit.failed_groups,
        ),
    ] {
        let c = prometheus::IntCounterVec::new(
            Opts::new(name, help).namespace("natrix").subsystem("store"),
            &["server_id"],
        )?;
        c.with_label_values(&[id]).inc_by(value);
        registry.register(Box::new(c))?;
    }
    let stream_labels = ["server_id", "account", "stream_name"];
    let stream_gauges: Vec<(&str, GaugeVec)> = [
        "total_messages",
        "total_bytes",
        "first_seq",
        "last_seq",
        "consumer_count",
    ]
    .into_iter()
    .map(|n| vec("stream", n, &stream_labels).map(|g| (n, g)))
    .collect::<prometheus::Result<_>>()?;
    let consumer_labels = ["server_id", "account", "stream_name", "consumer_name"];
    let consumer_gauges: Vec<(&str, GaugeVec)> = [
        "num_pending",
        "num_ack_pending",
        "num_redelivered",
        "num_waiting",
        "delivered_stream_seq",
        "delivered_consumer_seq",
        "ack_floor_stream_seq",
        "ack_floor_consumer_seq",
    ]
    .into_iter()
    .map(|n| vec("consumer", n, &consumer_labels).map(|g| (n, g)))
    .collect::<prometheus::Result<_>>()?;
    for host in &streams {
        let st = host.with_stream(|s| s.state(false, None, host.consumer_count()));
        let labels = [id, account, host.name.as_str()];
        for (name, g) in &stream_gauges {
            let v = match *name {
                "total_messages" => st.messages,
                "total_bytes" => st.bytes,
                "first_seq" => st.first_seq,
                "last_seq" => st.last_seq,
                _ => st.consumer_count,
            };
            g.with_label_values(&labels).set(v as f64);
        }
        for consumer in host.listed_consumers() {
            let info = consumer.info(host, state);
            let labels = [id, account, host.name.as_str(), consumer.name.as_str()];
            for (name, g) in &consumer_gauges {
                let v = match *name {
                    "num_pending" => info.num_pending,
                    "num_ack_pending" => info.num_ack_pending,
                    "num_redelivered" => info.num_redelivered,
                    "num_waiting" => info.num_waiting,
                    "delivered_stream_seq" => info.delivered.stream_seq,
                    "delivered_consumer_seq" => info.delivered.consumer_seq,
                    "ack_floor_stream_seq" => info.ack_floor.stream_seq,
                    _ => info.ack_floor.consumer_seq,
                };
                g.with_label_values(&labels).set(v as f64);
            }
        }
    }
    for (_, g) in stream_gauges.into_iter().chain(consumer_gauges) {
        registry.register(Box::new(g))?;
    }
    Ok(())
}

struct Collector<'a> {
    registry: &'a Registry,
    server_id: &'a str,
}

impl Collector<'_> {
    /// One gauge per numeric top-level field of the endpoint's JSON, as the exporter does.
    fn endpoint<T: Serialize>(&mut self, endpoint: &str, value: &T) -> prometheus::Result<()> {
        let json =
            serde_json::to_value(value).map_err(|e| prometheus::Error::Msg(e.to_string()))?;
        let Some(fields) = json.as_object() else {
            return Ok(());
        };
        for (name, field) in fields {
            match field {
                serde_json::Value::Number(n) => {
                    if let Some(v) = n.as_f64() {
                        self.gauge(endpoint, name, v)?;
                    }
                }
                serde_json::Value::String(text) if LABEL_FIELDS.contains(&name.as_str()) => {
                    let opts = Opts::new(name.as_str(), name.as_str())
                        .namespace(PREFIX)
                        .subsystem(endpoint);
                    let gauge = GaugeVec::new(opts, &["server_id", "value"])?;
                    gauge
                        .with_label_values(&[self.server_id, text.as_str()])
                        .set(1.0);
                    self.registry.register(Box::new(gauge))?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn gauge(&mut self, endpoint: &str, name: &str, value: f64) -> prometheus::Result<()> {
        let gauge = GaugeVec::new(
            Opts::new(name, name).namespace(PREFIX).subsystem(endpoint),
            &["server_id"],
        )?;
        gauge.with_label_values(&[self.server_id]).set(value);
        self.registry.register(Box::new(gauge))
    }
}
