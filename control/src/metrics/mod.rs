//! The metrics endpoint: OpenMetrics text over HTTP (`GET /metrics`),
//! served by `s2cs` for both processes of the gateway.
//!
//! `s2cs` serves the data plane's metrics as well as its own: it already
//! maps the data plane's stats segment, it alone knows which session an SA
//! belongs to (the `session` labels), and the data plane's process stays
//! free of an HTTP server and of anything but the packet path. Everything
//! is read at scrape time off the worker cores: the segment's per-writer
//! blocks are summed by the reader, never locked.
//!
//! - [`dataplane`]: every counter of the segment, per worker, per SA;
//! - [`ControlMetrics`]: the control process's own counters and
//!   histograms, updated where things happen;
//! - [`session`]: sessions by state, per-session traffic (uid label; a
//!   released session's series are gone from the next scrape), peers.
//!
//! Metric names and labels: docs/metrics.md.

pub mod dataplane;
pub mod families;
pub mod session;

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tracing::{info, warn};

use crate::service::Shared;

/// Labels of an API request.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    /// The gRPC method (`req`, `hello`, `update`, `release`, `list`, `status`).
    pub method: String,
    /// The gRPC status code name (`OK`, `INVALID_ARGUMENT`, ...).
    pub code: String,
}

/// Labels of an authentication failure.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthLabels {
    /// `missing`, `malformed`, `invalid`, `missing_scope` or `forbidden`.
    pub reason: String,
}

/// Labels of a refused API connection.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusedLabels {
    /// `limit`, `per_source`, `handshake_failed` or `handshake_timeout`.
    pub reason: String,
}

/// Labels of a key exchange.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExchangeLabels {
    /// `initiator` or `responder`.
    pub role: String,
    /// `ok` or `error`.
    pub result: String,
}

/// Labels of a key exchange's duration.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RoleLabels {
    /// `initiator` or `responder`.
    pub role: String,
}

/// Labels of a rekey trigger.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TriggerLabels {
    /// Why: `lifetime (seconds)`, `no keys yet`, `peer asked`, ...
    pub trigger: String,
}

fn exchange_histogram() -> Histogram {
    // 1 ms .. ~16 s: a key exchange is two round trips over mutual TLS.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.001, 2.0, 15,
    ))
}

/// The control process's counters and histograms.
#[derive(Debug, Clone)]
pub struct ControlMetrics {
    /// API requests by method and status code.
    pub api_requests: Family<ApiLabels, Counter>,
    /// Authentication failures by reason.
    pub auth_failures: Family<AuthLabels, Counter>,
    /// API connections closed before serving, by reason.
    pub connections_refused: Family<RefusedLabels, Counter>,
    /// Key exchanges by role and result.
    pub key_exchanges: Family<ExchangeLabels, Counter>,
    /// Completed key exchanges' durations, by role (the initiator from its
    /// offer to the peer's Committed; the responder from the offer to the
    /// commit).
    pub key_exchange_seconds: Family<RoleLabels, Histogram, fn() -> Histogram>,
    /// Key exchanges started, by trigger.
    pub rekeys: Family<TriggerLabels, Counter>,
}

impl Default for ControlMetrics {
    fn default() -> Self {
        ControlMetrics {
            api_requests: Family::default(),
            auth_failures: Family::default(),
            connections_refused: Family::default(),
            key_exchanges: Family::default(),
            key_exchange_seconds: Family::new_with_constructor(exchange_histogram),
            rekeys: Family::default(),
        }
    }
}

impl ControlMetrics {
    /// Counts one API request.
    pub fn api(&self, method: &str, code: tonic::Code) {
        self.api_requests
            .get_or_create(&ApiLabels {
                method: method.to_string(),
                code: code_name(code).to_string(),
            })
            .inc();
    }

    /// Counts one authentication failure.
    pub fn auth_failure(&self, reason: &str) {
        self.auth_failures
            .get_or_create(&AuthLabels {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Counts one API connection closed before it was served.
    pub fn connection_refused(&self, reason: &str) {
        self.connections_refused
            .get_or_create(&RefusedLabels {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Counts one key exchange; a completed one also goes to the duration
    /// histogram.
    pub fn exchange(&self, role: &str, ok: bool, seconds: f64) {
        self.key_exchanges
            .get_or_create(&ExchangeLabels {
                role: role.to_string(),
                result: if ok { "ok" } else { "error" }.to_string(),
            })
            .inc();
        if ok {
            self.key_exchange_seconds
                .get_or_create(&RoleLabels {
                    role: role.to_string(),
                })
                .observe(seconds);
        }
    }

    /// Counts one key exchange started for `trigger`.
    pub fn rekey(&self, trigger: &str) {
        self.rekeys
            .get_or_create(&TriggerLabels {
                trigger: trigger.to_string(),
            })
            .inc();
    }

    fn register(&self, r: &mut Registry) {
        r.register(
            "s2cs_api_requests",
            "gRPC API requests, by method and status code",
            self.api_requests.clone(),
        );
        r.register(
            "s2cs_auth_failures",
            "gRPC API requests refused by authentication or authorisation, by reason",
            self.auth_failures.clone(),
        );
        r.register(
            "s2cs_api_connections_refused",
            "gRPC API connections closed before they were served (too many open, too many from one source, TLS handshake failed or too slow), by reason",
            self.connections_refused.clone(),
        );
        r.register(
            "s2cs_key_exchanges",
            "Key exchanges with peer gateways, by role and result",
            self.key_exchanges.clone(),
        );
        r.register(
            "s2cs_key_exchange_duration_seconds",
            "Duration of completed key exchanges",
            self.key_exchange_seconds.clone(),
        );
        r.register(
            "s2cs_rekeys",
            "Key exchanges started, by trigger",
            self.rekeys.clone(),
        );
    }
}

/// The gRPC code's canonical name.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

/// What a scrape reads at its time: the data plane's segment and the
/// control state.
struct Live {
    sh: Arc<Shared>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Live")
    }
}

impl Collector for Live {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // Bring the per-session sums up to date first. Locks are taken one
        // at a time (state before traffic, as everywhere).
        self.sh.sample_traffic();
        let owners = crate::service::lock(&self.sh.traffic).owners();
        let owner_of = |tag| owners.get(&tag).cloned();
        let attached = self
            .sh
            .with_dataplane_stats(|r| dataplane::encode(r, &owner_of, &mut encoder));
        let mut f = families::Families::default();
        f.add(
            families::Kind::Gauge,
            "s2ds_attached",
            "1 while s2cs reads a live data plane's stats segment",
            Vec::new(),
            if attached.is_some() { 1.0 } else { 0.0 },
        );
        if let Some(r) = attached {
            r?;
        }
        session::collect(&self.sh, &mut f);
        f.encode(&mut encoder)
    }
}

/// The registry a scrape encodes.
pub fn registry(sh: &Arc<Shared>) -> Registry {
    let mut r = Registry::default();
    sh.metrics.register(&mut r);
    r.register_collector(Box::new(Live { sh: sh.clone() }));
    r
}

/// One scrape: the whole exposition, OpenMetrics text.
pub fn scrape(r: &Registry) -> Result<String, std::fmt::Error> {
    let mut out = String::with_capacity(16 * 1024);
    prometheus_client::encoding::text::encode(&mut out, r)?;
    Ok(out)
}

/// The OpenMetrics content type.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The Prometheus text format's content type (version 0.0.4).
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The same exposition in the Prometheus text format 0.0.4, for clients
/// that do not ask for OpenMetrics (`promtool check metrics`, curl): the
/// sample lines are the same in both formats for counters, gauges and
/// histograms without exemplars (which we never emit); only a counter's
/// `# HELP`/`# TYPE` lines name it with its `_total` suffix, and `# UNIT`
/// and `# EOF` do not exist.
pub fn openmetrics_to_text(om: &str) -> String {
    let mut counters = std::collections::HashSet::new();
    for l in om.lines() {
        if let Some(rest) = l.strip_prefix("# TYPE ") {
            if let Some(name) = rest.strip_suffix(" counter") {
                counters.insert(name.to_string());
            }
        }
    }
    let mut out = String::with_capacity(om.len());
    for l in om.lines() {
        if l == "# EOF" || l.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find(|p| l.starts_with(p));
        match meta {
            Some(p) => {
                let rest = &l[p.len()..];
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                if counters.contains(name) {
                    out.push_str(&format!("{p}{name}_total {tail}\n"));
                } else {
                    out.push_str(l);
                    out.push('\n');
                }
            }
            None => {
                out.push_str(l);
                out.push('\n');
            }
        }
    }
    out
}

/// Binds the metrics listener (so a port clash fails `s2cs run`).
pub async fn bind(listen: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("binding the metrics endpoint on {listen}: {e}"))
}

/// Serves `GET /metrics` on `listener` until the task is aborted.
pub async fn serve(sh: Arc<Shared>, listener: tokio::net::TcpListener) -> anyhow::Result<()> {
    use axum::http::{header, StatusCode};
    use axum::response::IntoResponse;

    let listen = listener.local_addr()?;
    let registry = Arc::new(registry(&sh));
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move |headers: axum::http::HeaderMap| {
            let registry = registry.clone();
            let openmetrics = headers
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("application/openmetrics-text"));
            async move {
                // The scrape reads shared memory and takes short locks:
                // off the async workers.
                let body = tokio::task::spawn_blocking(move || scrape(&registry)).await;
                match body {
                    Ok(Ok(body)) if openmetrics => {
                        ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response()
                    }
                    Ok(Ok(body)) => (
                        [(header::CONTENT_TYPE, TEXT_CONTENT_TYPE)],
                        openmetrics_to_text(&body),
                    )
                        .into_response(),
                    _ => {
                        warn!("encoding the metrics failed");
                        (StatusCode::INTERNAL_SERVER_ERROR, "encoding failed\n").into_response()
                    }
                }
            }
        }),
    );
    info!(%listen, "metrics endpoint listening (GET /metrics)");
    axum::serve(listener, app)
        .await
        .map_err(|e| anyhow::anyhow!("metrics endpoint on {listen}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_format_names_counters_with_their_suffix() {
        let om = "# HELP a_drops Drops.\n# TYPE a_drops counter\na_drops_total{r=\"x\"} 3\n\
                  # HELP b Gauge.\n# TYPE b gauge\n# UNIT b seconds\nb 1.5\n# EOF\n";
        assert_eq!(
            openmetrics_to_text(om),
            "# HELP a_drops_total Drops.\n# TYPE a_drops_total counter\na_drops_total{r=\"x\"} 3\n\
             # HELP b Gauge.\n# TYPE b gauge\nb 1.5\n"
        );
    }
}
