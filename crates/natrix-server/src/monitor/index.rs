//! `/`: an HTML page linking the endpoints, like nats-server's (without its logo).

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::State;
use axum::response::Html;

use super::Monitor;

/// (path, label), in nats-server's order; only endpoints natrix serves.
const ENDPOINTS: &[(&str, &str)] = &[
    ("varz", "General"),
    ("jsz", "JetStream"),
    ("connz", "Connections"),
    ("accountz", "Accounts"),
    ("subsz", "Subscriptions"),
    ("routez", "Routes"),
    ("leafz", "LeafNodes"),
    ("gatewayz", "Gateways"),
    ("healthz", "Health Probe"),
    ("metrics", "Prometheus Metrics"),
];

pub(crate) async fn handle(State(monitor): State<Arc<Monitor>>) -> Html<String> {
    monitor.count_request("/");
    let mut page = String::from(
        "<html lang=\"en\">\n\t<head>\n\t<style type=\"text/css\">\n\t\tbody { font-family: ui-sans-serif,system-ui,sans-serif; font-size: 18; margin-left: 32px }\n\t\ta { display:block; margin-left: 7px; padding-bottom: 6px; color: rgb(72 72 92); text-decoration: none }\n\t\ta:hover { font-weight: 600; color: rgb(59 50 202) }\n\t\t.endpoint { font-size: 12px; color: #999; font-family: monospace; display: none }\n\t\ta:hover .endpoint { display: inline }\n\t</style>\n\t</head>\n\t<body>\n",
    );
    let _ = writeln!(
        page,
        "\t<a class='version'>v{}</a>\n\t<br/>",
        monitor.state.info.version
    );
    for (path, label) in ENDPOINTS {
        let _ = writeln!(
            page,
            "\t<a href=./{path}>{label}<span class=\"endpoint\"> /{path}</span></a>"
        );
    }
    page.push_str(
        "\t<a href=https://docs.nats.io/running-a-nats-service/nats_admin/monitoring class=\"help\">Help</a>\n  </body>\n</html>\n",
    );
    Html(page)
}
