//! Metric families built at scrape time: samples gathered from any order
//! into families, then encoded with `prometheus-client` (one descriptor per
//! family, its samples together, as OpenMetrics requires).

use std::collections::BTreeMap;

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

/// The labels of one sample, in order.
pub type Labels = Vec<(String, String)>;

/// What a family holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Monotonic; encoded with the `_total` suffix.
    Counter,
    /// Goes up and down.
    Gauge,
}

#[derive(Debug)]
enum Samples {
    Counter(Vec<(Labels, f64)>),
    Gauge(Vec<(Labels, f64)>),
    Histogram(Vec<(Labels, Histo)>),
}

/// One histogram sample: cumulative buckets (upper bound, count), sum and count.
#[derive(Debug, Clone)]
pub struct Histo {
    /// Sum of the observations.
    pub sum: f64,
    /// Observations.
    pub count: u64,
    /// `(le, cumulative count)`, ascending, the last one `+Inf`.
    pub buckets: Vec<(f64, u64)>,
}

#[derive(Debug)]
struct Family {
    help: String,
    samples: Samples,
}

/// Families by name, in name order.
#[derive(Debug, Default)]
pub struct Families {
    map: BTreeMap<String, Family>,
}

impl Families {
    /// Adds a counter or gauge sample to family `name` (created with
    /// `help` on first use).
    pub fn add(&mut self, kind: Kind, name: &str, help: &str, labels: Labels, value: f64) {
        let f = self.map.entry(name.to_string()).or_insert_with(|| Family {
            help: help.to_string(),
            samples: match kind {
                Kind::Counter => Samples::Counter(Vec::new()),
                Kind::Gauge => Samples::Gauge(Vec::new()),
            },
        });
        match &mut f.samples {
            Samples::Counter(v) | Samples::Gauge(v) => v.push((labels, value)),
            Samples::Histogram(_) => {}
        }
    }

    /// Adds a histogram sample to family `name`.
    pub fn histogram(&mut self, name: &str, help: &str, labels: Labels, h: Histo) {
        let f = self.map.entry(name.to_string()).or_insert_with(|| Family {
            help: help.to_string(),
            samples: Samples::Histogram(Vec::new()),
        });
        if let Samples::Histogram(v) = &mut f.samples {
            v.push((labels, h));
        }
    }

    /// Encodes every family.
    pub fn encode(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for (name, f) in &self.map {
            match &f.samples {
                Samples::Counter(v) => {
                    let mut m =
                        encoder.encode_descriptor(name, &f.help, None, MetricType::Counter)?;
                    for (labels, value) in v {
                        ConstCounter::new(*value).encode(m.encode_family(labels)?)?;
                    }
                }
                Samples::Gauge(v) => {
                    let mut m =
                        encoder.encode_descriptor(name, &f.help, None, MetricType::Gauge)?;
                    for (labels, value) in v {
                        ConstGauge::new(*value).encode(m.encode_family(labels)?)?;
                    }
                }
                Samples::Histogram(v) => {
                    let mut m =
                        encoder.encode_descriptor(name, &f.help, None, MetricType::Histogram)?;
                    for (labels, h) in v {
                        m.encode_family(labels)?
                            .encode_histogram::<NoLabelSet>(h.sum, h.count, &h.buckets, None)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The family names (tests).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.map.keys().map(String::as_str)
    }
}

/// A label set from `(key, value)` pairs.
pub fn labels<const N: usize>(pairs: [(&str, &str); N]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
