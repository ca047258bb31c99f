//! The data plane's metrics, read from its stats segment at scrape time.
//!
//! Every counter in the segment's directory is exported, by a rule on its
//! name (`group.counter`), per writer block (label `worker`: the worker's
//! index, or `slowpath`):
//!
//! | directory name | metric |
//! |---|---|
//! | `lan.rx_packets`, `wan.tx_bytes`, ... | `s2ds_port_rx_packets_total{port="lan"}`, ... |
//! | `drop.<reason>` | `s2ds_drops_total{reason}` |
//! | `lan.host_<reason>`, `wan.host_<reason>` | `s2ds_host_drops_total{port, reason}` |
//! | `worker.busy_ns` | `s2ds_worker_busy_seconds_total` |
//! | `stage.<stage>_packets`, `stage.<stage>_cycles` | `s2ds_stage_packets_total{stage}`, `s2ds_stage_cycles_total{stage}` |
//! | `latency.burst_le_<ns>`, `latency.burst_le_inf` | `s2ds_burst_duration_seconds` (histogram) |
//! | `<group>.<name>` (any other) | `s2ds_<group>_<name>_total` |
//!
//! A counter named `..._ns` is exported in seconds. New counters the data
//! plane adds (kernel and NIC drop counters, for example) therefore appear
//! without a change here. Per-SA counters become `s2ds_sa_*_total` with
//! the SA's direction, SPI and session uid.

use prometheus_client::encoding::DescriptorEncoder;
use scistream_region::stats::sa_tag;
use scistream_region::{Direction, StatsReader};

use super::families::{labels, Families, Histo, Kind};

/// Where one directory name goes.
#[derive(Debug, PartialEq)]
enum Target {
    /// A counter family, with extra labels, scaled by `scale`.
    Counter {
        name: String,
        extra: Vec<(String, String)>,
        scale: f64,
    },
    /// A burst-time bucket with this upper bound in seconds (`inf`: +Inf).
    Bucket(f64),
}

fn target(dir_name: &str) -> Option<Target> {
    let (group, counter) = dir_name.split_once('.')?;
    let valid = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    };
    if !valid(group) || !valid(counter) {
        return None;
    }
    if group == "latency" {
        let le = counter.strip_prefix("burst_le_")?;
        return Some(Target::Bucket(match le {
            "inf" => f64::INFINITY,
            ns => ns.parse::<u64>().ok()? as f64 / 1e9,
        }));
    }
    let (counter, scale) = match counter.strip_suffix("_ns") {
        Some(c) => (format!("{c}_seconds"), 1e-9),
        None => (counter.to_string(), 1.0),
    };
    let (name, extra) = match group {
        "lan" | "wan" if counter.starts_with("host_") => (
            "s2ds_host_drops".to_string(),
            vec![
                ("port".to_string(), group.to_string()),
                ("reason".to_string(), counter["host_".len()..].to_string()),
            ],
        ),
        "lan" | "wan" => (
            format!("s2ds_port_{counter}"),
            vec![("port".to_string(), group.to_string())],
        ),
        "drop" => (
            "s2ds_drops".to_string(),
            vec![("reason".to_string(), counter)],
        ),
        "stage" => match counter.rsplit_once('_') {
            Some((stage, kind @ ("packets" | "cycles"))) if !stage.is_empty() => (
                format!("s2ds_stage_{kind}"),
                vec![("stage".to_string(), stage.to_string())],
            ),
            _ => (format!("s2ds_{group}_{counter}"), Vec::new()),
        },
        _ => (format!("s2ds_{group}_{counter}"), Vec::new()),
    };
    Some(Target::Counter { name, extra, scale })
}

fn help_of(name: &str) -> &'static str {
    match name {
        "s2ds_drops" => "Frames dropped by the gateway, by reason",
        "s2ds_host_drops" => {
            "Frames lost in the host below the gateway (AF_XDP socket, NIC), by port and reason"
        }
        "s2ds_port_rx_packets" => "Frames received on a port",
        "s2ds_port_rx_bytes" => "Bytes received on a port (Ethernet frames, no FCS)",
        "s2ds_port_tx_packets" => "Frames transmitted on a port",
        "s2ds_port_tx_bytes" => "Bytes transmitted on a port",
        "s2ds_worker_busy_seconds" => {
            "Time a worker spent processing non-empty polls (rate() of it is the busy ratio)"
        }
        "s2ds_worker_bursts" => "Polls that received at least one frame",
        "s2ds_stage_packets" => {
            "Frames a stage of the worker's poll loop handled ([workers] stage_cycles = true)"
        }
        "s2ds_stage_cycles" => {
            "CPU clock cycles (TSC) a stage of the worker's poll loop spent ([workers] stage_cycles = true)"
        }
        _ => "Data plane counter (see docs/metrics.md)",
    }
}

/// Adds the data plane's families read from `r` into `f`; `owner_of`
/// names the session an SA tag belongs to.
pub fn collect(r: &StatsReader, owner_of: &dyn Fn(u64) -> Option<String>, f: &mut Families) {
    let names = r.names();
    let targets: Vec<Option<Target>> = names.iter().map(|n| target(n)).collect();
    let blocks = r.blocks();
    for b in 0..blocks {
        let values = r.block(b);
        let slowpath = b + 1 == blocks;
        let worker = if slowpath {
            "slowpath".to_string()
        } else {
            b.to_string()
        };
        let mut buckets: Vec<(f64, u64)> = Vec::new();
        let mut busy_seconds = 0.0;
        for ((dir_name, t), v) in names.iter().zip(&targets).zip(&values) {
            match t {
                Some(Target::Bucket(le)) => buckets.push((*le, *v)),
                Some(Target::Counter { name, extra, scale }) => {
                    if slowpath && dir_name.starts_with("worker.") {
                        continue;
                    }
                    if dir_name == "worker.busy_ns" {
                        busy_seconds = *v as f64 * scale;
                    }
                    let mut l = extra.clone();
                    l.push(("worker".to_string(), worker.clone()));
                    f.add(Kind::Counter, name, help_of(name), l, *v as f64 * scale);
                }
                None => {}
            }
        }
        if !slowpath && !buckets.is_empty() {
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            let mut cumulative = 0;
            for (_, c) in &mut buckets {
                cumulative += *c;
                *c = cumulative;
            }
            f.histogram(
                "s2ds_burst_duration_seconds",
                "Time from a worker's first non-empty receive of a poll to the end of its transmits",
                labels([("worker", &worker)]),
                Histo {
                    sum: busy_seconds,
                    count: cumulative,
                    buckets,
                },
            );
        }
    }
    for t in r.sa_totals() {
        let Some(direction) = t.direction else {
            continue;
        };
        let dir = match direction {
            Direction::In => "in",
            Direction::Out => "out",
        };
        let spi = format!("0x{:08x}", t.spi);
        let session = owner_of(sa_tag(direction, t.spi)).unwrap_or_default();
        let l = labels([("direction", dir), ("spi", &spi), ("session", &session)]);
        let mut add = |name: &str, help: &str, v: u64| {
            f.add(Kind::Counter, name, help, l.clone(), v as f64);
        };
        add(
            "s2ds_sa_packets",
            "Packets sealed (out) or opened (in) by an SA",
            t.packets,
        );
        add(
            "s2ds_sa_bytes",
            "Inner bytes sealed (out) or opened (in) by an SA",
            t.bytes,
        );
        if direction == Direction::In {
            add(
                "s2ds_sa_auth_failures",
                "Inbound packets whose ICV did not verify",
                t.auth_failed,
            );
            add(
                "s2ds_sa_replay_drops",
                "Inbound packets refused by the replay window",
                t.replayed,
            );
        } else {
            add(
                "s2ds_sa_rate_limited_drops",
                "Outbound packets over the session's rate, dropped by its policer",
                t.rate_limited,
            );
        }
    }
    f.add(
        Kind::Gauge,
        "s2ds_start_time_seconds",
        "When the data plane started, seconds since the Unix epoch",
        Vec::new(),
        r.started_unix_ms() as f64 / 1000.0,
    );
}

/// Encodes the data plane's families read from `r`.
pub fn encode(
    r: &StatsReader,
    owner_of: &dyn Fn(u64) -> Option<String>,
    encoder: &mut DescriptorEncoder,
) -> Result<(), std::fmt::Error> {
    let mut f = Families::default();
    collect(r, owner_of, &mut f);
    f.encode(encoder)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter(name: &str, extra: &[(&str, &str)], scale: f64) -> Option<Target> {
        Some(Target::Counter {
            name: name.into(),
            extra: extra
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            scale,
        })
    }

    #[test]
    fn directory_names_map_to_metric_families_by_rule() {
        assert_eq!(
            target("lan.rx_packets"),
            counter("s2ds_port_rx_packets", &[("port", "lan")], 1.0)
        );
        assert_eq!(
            target("drop.esp_replay"),
            counter("s2ds_drops", &[("reason", "esp_replay")], 1.0)
        );
        assert_eq!(
            target("worker.busy_ns"),
            counter("s2ds_worker_busy_seconds", &[], 1e-9)
        );
        assert_eq!(
            target("tunnel.encap_packets"),
            counter("s2ds_tunnel_encap_packets", &[], 1.0)
        );
        assert_eq!(
            target("wan.xsk_rx_ring_full"),
            counter("s2ds_port_xsk_rx_ring_full", &[("port", "wan")], 1.0)
        );
        assert_eq!(
            target("lan.host_xsk_rx_ring_full"),
            counter(
                "s2ds_host_drops",
                &[("port", "lan"), ("reason", "xsk_rx_ring_full")],
                1.0
            )
        );
        assert_eq!(
            target("stage.seal_cycles"),
            counter("s2ds_stage_cycles", &[("stage", "seal")], 1.0)
        );
        assert_eq!(
            target("stage.rx_packets"),
            counter("s2ds_stage_packets", &[("stage", "rx")], 1.0)
        );
        assert_eq!(target("latency.burst_le_1000"), Some(Target::Bucket(1e-6)));
        assert_eq!(
            target("latency.burst_le_inf"),
            Some(Target::Bucket(f64::INFINITY))
        );
        for bad in [
            "",
            "nodot",
            "Lan.rx",
            "lan.",
            "lan.rx-packets",
            "latency.p99",
        ] {
            assert_eq!(target(bad), None, "{bad}");
        }
    }
}
