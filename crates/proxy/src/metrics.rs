//! Data-plane metrics. The hot path only bumps atomics that live on the
//! objects it already holds (the gateway, backends, endpoints); a
//! [`Collector`] reads them when Prometheus scrapes, so counting costs no
//! lock and no lookup.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

use crate::reply::flags;
use crate::server::Gateway;
use crate::worker::ShardedCounter;

/// Local replies by response flag.
const FLAGS: [&str; 8] = [
    flags::NO_ROUTE,
    flags::NO_HEALTHY_UPSTREAM,
    flags::UPSTREAM_CONNECTION_FAILURE,
    flags::UPSTREAM_CONNECTION_TERMINATION,
    flags::UPSTREAM_REQUEST_TIMEOUT,
    flags::UPSTREAM_RETRY_LIMIT_EXCEEDED,
    flags::UPSTREAM_OVERFLOW,
    flags::DOWNSTREAM_PROTOCOL_ERROR,
];

#[derive(Default)]
pub struct GatewayStats {
    requests: ShardedCounter,
    retries: ShardedCounter,
    local_replies: [ShardedCounter; FLAGS.len()],
}

impl GatewayStats {
    #[inline]
    pub fn request(&self) {
        self.requests.inc();
    }

    #[inline]
    pub fn retry(&self) {
        self.retries.inc();
    }

    #[inline]
    pub fn local_reply(&self, flag: &str) {
        if let Some(i) = FLAGS.iter().position(|f| *f == flag) {
            self.local_replies[i].inc();
        }
    }
}

/// Exposes the gateway's counters, every revision's activator queue and
/// every ready instance's queue-proxy counters.
#[derive(Debug)]
pub struct GatewayCollector(pub Arc<Gateway>);

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: u64,
) -> Result<(), std::fmt::Error> {
    ConstCounter::new(v).encode(encoder.encode_descriptor(name, help, None, MetricType::Counter)?)
}

impl Collector for GatewayCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = self.0.stats();
        counter(
            &mut encoder,
            "skiff_gateway_requests",
            "Requests received by the gateway",
            stats.requests.get(),
        )?;
        counter(
            &mut encoder,
            "skiff_gateway_upstream_retries",
            "Requests sent again to an instance because the first attempt provably did not reach the app",
            stats.retries.get(),
        )?;
        {
            let mut family = encoder.encode_descriptor(
                "skiff_gateway_local_replies",
                "Responses the gateway generated itself, by Envoy-style response flag",
                None,
                MetricType::Counter,
            )?;
            for (flag, v) in FLAGS.iter().zip(&stats.local_replies) {
                let labels = [("response_flags", *flag)];
                ConstCounter::new(v.get()).encode(family.encode_family(&labels)?)?;
            }
        }
        let backends = self.0.backends().all();
        type Gauge = fn(&crate::Backend) -> i64;
        let per_revision: [(&str, &str, Gauge); 3] = [
            (
                "skiff_activator_queue_depth",
                "Requests waiting in the activator for a free instance, per revision",
                |b| b.queued() as i64,
            ),
            (
                "skiff_revision_requests_in_flight",
                "Requests in flight at a revision's instances",
                |b| b.in_flight() as i64,
            ),
            (
                "skiff_activator_in_path",
                "1 when every request to the revision goes through the activator (the autoscaler's proxy mode)",
                |b| i64::from(b.in_proxy_mode()),
            ),
        ];
        for (name, help, f) in per_revision {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for b in &backends {
                let labels = [("revision", &*b.revision)];
                ConstGauge::new(f(b)).encode(family.encode_family(&labels)?)?;
            }
        }
        type Count = fn(&crate::Backend) -> u64;
        let counters: [(&str, &str, Count); 4] = [
            (
                "skiff_activator_queued_requests",
                "Requests that waited in the activator's queue",
                |b| b.counters.queued.get(),
            ),
            (
                "skiff_activator_overflow_rejections",
                "Requests refused with 503 because the activator's queue was full",
                |b| b.counters.overflow.get(),
            ),
            (
                "skiff_activator_timeout_rejections",
                "Requests answered 503 after waiting their whole timeout in the activator's queue",
                |b| b.counters.timed_out.get(),
            ),
            (
                "skiff_activator_failed_rejections",
                "Requests answered 503 because the revision cannot become ready",
                |b| b.counters.failed.get(),
            ),
        ];
        for (name, help, f) in counters {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for b in &backends {
                let labels = [("revision", &*b.revision)];
                ConstCounter::new(f(b)).encode(family.encode_family(&labels)?)?;
            }
        }
        {
            let cold = &self.0.backends().cold_starts;
            let mut family = encoder.encode_descriptor(
                "skiff_cold_start",
                "Cold starts from zero by phase: spawn (first queued request to process spawned), \
                 readiness (spawned to ready), first_byte (ready to the first response head), total",
                Some(&Unit::Seconds),
                MetricType::Histogram,
            )?;
            for (phase, h) in [
                ("spawn", &cold.spawn),
                ("readiness", &cold.readiness),
                ("first_byte", &cold.first_byte),
                ("total", &cold.total),
            ] {
                h.encode(family.encode_family(&[("phase", phase)])?)?;
            }
        }
        let mut endpoints = Vec::new();
        for b in &backends {
            endpoints.extend(b.endpoints().iter().cloned());
        }
        {
            let mut family = encoder.encode_descriptor(
                "skiff_endpoint_requests",
                "Requests sent to each ready instance",
                None,
                MetricType::Counter,
            )?;
            for e in &endpoints {
                let inst = e.instance.to_string();
                let labels = [("revision", &*e.revision), ("instance", inst.as_str())];
                ConstCounter::new(e.requests()).encode(family.encode_family(&labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "skiff_endpoint_requests_in_flight",
            "Requests in flight at each ready instance (never above its containerConcurrency)",
            None,
            MetricType::Gauge,
        )?;
        for e in &endpoints {
            let inst = e.instance.to_string();
            let labels = [("revision", &*e.revision), ("instance", inst.as_str())];
            ConstGauge::new(e.in_flight() as i64).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}
