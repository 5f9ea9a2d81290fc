//! Data-plane metrics. The hot path only bumps atomics that live on the
//! objects it already holds (the gateway, endpoints); a [`Collector`] reads
//! them when Prometheus scrapes, so counting costs no lock and no lookup.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::reply::flags;
use crate::server::Gateway;
use crate::worker::ShardedCounter;

/// Local replies by response flag.
const FLAGS: [&str; 7] = [
    flags::NO_ROUTE,
    flags::NO_HEALTHY_UPSTREAM,
    flags::UPSTREAM_CONNECTION_FAILURE,
    flags::UPSTREAM_CONNECTION_TERMINATION,
    flags::UPSTREAM_REQUEST_TIMEOUT,
    flags::UPSTREAM_RETRY_LIMIT_EXCEEDED,
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

/// Exposes the gateway's counters and every routed endpoint's.
#[derive(Debug)]
pub struct GatewayCollector(pub Arc<Gateway>);

impl Collector for GatewayCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = self.0.stats();
        let counter = |v: &ShardedCounter| ConstCounter::new(v.get());
        counter(&stats.requests).encode(encoder.encode_descriptor(
            "skiff_gateway_requests",
            "Requests received by the gateway",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?)?;
        counter(&stats.retries).encode(encoder.encode_descriptor(
            "skiff_gateway_upstream_retries",
            "Requests sent again to an instance because the first attempt provably did not reach the app",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?)?;
        {
            let mut family = encoder.encode_descriptor(
                "skiff_gateway_local_replies",
                "Responses the gateway generated itself, by Envoy-style response flag",
                None,
                prometheus_client::metrics::MetricType::Counter,
            )?;
            for (flag, v) in FLAGS.iter().zip(&stats.local_replies) {
                let labels = [("response_flags", *flag)];
                counter(v).encode(family.encode_family(&labels)?)?;
            }
        }
        let table = self.0.table();
        let mut seen = std::collections::HashSet::new();
        let mut endpoints = Vec::new();
        for (_, _, route) in table.hosts() {
            for b in route.targets() {
                for e in b.endpoints.iter() {
                    if seen.insert(Arc::as_ptr(e)) {
                        endpoints.push(e.clone());
                    }
                }
            }
        }
        endpoints.sort_by(|a, b| (&a.revision, a.instance).cmp(&(&b.revision, b.instance)));
        {
            let mut family = encoder.encode_descriptor(
                "skiff_endpoint_requests",
                "Requests sent to each ready instance",
                None,
                prometheus_client::metrics::MetricType::Counter,
            )?;
            for e in &endpoints {
                let inst = e.instance.to_string();
                let labels = [("revision", &*e.revision), ("instance", inst.as_str())];
                ConstCounter::new(e.requests()).encode(family.encode_family(&labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "skiff_endpoint_requests_in_flight",
            "Requests in flight at each ready instance",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for e in &endpoints {
            let inst = e.instance.to_string();
            let labels = [("revision", &*e.revision), ("instance", inst.as_str())];
            ConstGauge::new(e.in_flight() as i64).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}
