//! Data-plane metrics. The hot path only bumps atomics that live on the
//! objects it already holds (the gateway, backends, endpoints, clusters,
//! request counters); a [`Collector`] reads them when Prometheus scrapes,
//! so counting costs no lock and no lookup.
//!
//! Names users grep for are Envoy's and Istio's: per cluster
//! `envoy_cluster_upstream_rq_pending_overflow`, `..._upstream_cx_overflow`,
//! `..._upstream_rq_retry`, `..._outlier_detection_ejections_*`,
//! `..._circuit_breakers_default_*` (label `cluster_name`), and
//! `istio_requests_total` / `istio_request_duration_milliseconds` by
//! destination service and revision.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

use crate::cluster::Cluster;
use crate::istio::flags::ResponseFlags;
use crate::request_metrics::BUCKETS_MS;
use crate::server::Gateway;
use crate::worker::ShardedCounter;

/// Flags a local reply can carry, and one slot for "none" (`-`).
const FLAG_SLOTS: usize = 29;

pub struct GatewayStats {
    requests: ShardedCounter,
    retries: ShardedCounter,
    /// By flag bit; the last slot counts replies without a flag.
    local_replies: Box<[ShardedCounter]>,
}

impl Default for GatewayStats {
    fn default() -> Self {
        GatewayStats {
            requests: ShardedCounter::default(),
            retries: ShardedCounter::default(),
            local_replies: (0..FLAG_SLOTS).map(|_| ShardedCounter::default()).collect(),
        }
    }
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

    /// A reply the gateway generated, counted once per flag it carries.
    #[inline]
    pub fn local_reply(&self, flags: ResponseFlags) {
        let mut bits = flags.bits();
        if bits == 0 {
            self.local_replies[FLAG_SLOTS - 1].inc();
        }
        while bits != 0 {
            let i = bits.trailing_zeros() as usize;
            if i < FLAG_SLOTS - 1 {
                self.local_replies[i].inc();
            }
            bits &= bits - 1;
        }
    }

    /// Local replies that carried `flag` (`NONE`: those with no flag).
    pub fn local_replies(&self, flag: ResponseFlags) -> u64 {
        if flag.is_empty() {
            return self.local_replies[FLAG_SLOTS - 1].get();
        }
        let i = flag.bits().trailing_zeros() as usize;
        self.local_replies.get(i).map_or(0, ShardedCounter::get)
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
            for (flag, short, _) in ResponseFlags::ALL {
                let labels = [("response_flags", *short)];
                ConstCounter::new(stats.local_replies(*flag))
                    .encode(family.encode_family(&labels)?)?;
            }
            let labels = [("response_flags", "-")];
            ConstCounter::new(stats.local_replies(ResponseFlags::NONE))
                .encode(family.encode_family(&labels)?)?;
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
        encode_requests(&mut encoder, &self.0)?;
        encode_clusters(&mut encoder, &self.0.table().istio.clusters)?;
        Ok(())
    }
}

/// `istio_requests_total` and `istio_request_duration_milliseconds`.
fn encode_requests(encoder: &mut DescriptorEncoder, gw: &Gateway) -> Result<(), std::fmt::Error> {
    let m = gw.request_metrics();
    let mut all = m.all();
    all.push(m.unrouted.clone());
    let snaps: Vec<_> = all.iter().map(|c| (c, c.snapshot())).collect();
    let base = |c: &crate::request_metrics::RequestCounters| -> Vec<(&'static str, String)> {
        let d = &c.destination;
        vec![
            ("reporter", "source".to_string()),
            ("source_workload", "skiff-gateway".to_string()),
            ("destination_service", d.service.clone()),
            ("destination_service_name", d.canonical_service.clone()),
            ("destination_service_namespace", d.namespace.clone()),
            ("destination_workload", d.revision.clone()),
            ("destination_workload_namespace", d.namespace.clone()),
            ("destination_canonical_service", d.canonical_service.clone()),
            ("destination_canonical_revision", d.revision.clone()),
            ("request_protocol", "http".to_string()),
        ]
    };
    {
        let mut family = encoder.encode_descriptor(
            "istio_requests",
            "Requests through the gateway, by destination service and revision, response code and Envoy response flags",
            None,
            MetricType::Counter,
        )?;
        for (c, s) in &snaps {
            for row in &s.codes {
                let mut labels = base(c);
                labels.push((
                    "response_code",
                    if row.code == 0 {
                        "other".to_string()
                    } else {
                        row.code.to_string()
                    },
                ));
                labels.push(("response_flags", row.flags.to_string()));
                ConstCounter::new(row.count).encode(family.encode_family(&labels)?)?;
            }
        }
    }
    let mut family = encoder.encode_descriptor(
        "istio_request_duration_milliseconds",
        "Time from a request's arrival to its response head, by destination service and revision",
        None,
        MetricType::Histogram,
    )?;
    for (c, s) in &snaps {
        if s.count == 0 {
            continue;
        }
        let labels = base(c);
        let buckets: Vec<(f64, u64)> = BUCKETS_MS
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(s.buckets.iter().copied())
            .collect();
        family
            .encode_family(&labels)?
            .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                s.sum_ms, s.count, &buckets, None,
            )?;
    }
    Ok(())
}

type ClusterValue = fn(&Cluster) -> u64;

fn load(a: &std::sync::atomic::AtomicU64) -> u64 {
    a.load(std::sync::atomic::Ordering::Relaxed)
}

/// Envoy's per-cluster stats, named as Envoy's Prometheus endpoint names
/// them (`envoy_cluster_<stat>{cluster_name=...}`).
fn encode_clusters(
    encoder: &mut DescriptorEncoder,
    clusters: &[std::sync::Arc<Cluster>],
) -> Result<(), std::fmt::Error> {
    let now = crate::istio::time::MonoTime::now();
    let counters: [(&str, &str, ClusterValue); 16] = [
        ("upstream_rq_total", "Requests routed to the cluster", |c| {
            c.counters.upstream_rq_total.get()
        }),
        ("upstream_rq_retry", "Retries sent", |c| {
            load(&c.counters.upstream_rq_retry)
        }),
        ("upstream_rq_retry_success", "Retries that succeeded", |c| {
            load(&c.counters.upstream_rq_retry_success)
        }),
        (
            "upstream_rq_retry_limit_exceeded",
            "Requests whose retries ran out",
            |c| load(&c.counters.upstream_rq_retry_limit_exceeded),
        ),
        (
            "upstream_rq_retry_overflow",
            "Retries refused by the maxRetries circuit breaker",
            |c| load(&c.breaker.stats.upstream_rq_retry_overflow),
        ),
        (
            "upstream_rq_pending_overflow",
            "Requests refused with 503 UO by the pending-request or max-requests circuit breaker",
            |c| load(&c.breaker.stats.upstream_rq_pending_overflow),
        ),
        (
            "upstream_rq_pending_total",
            "Requests that waited for a connection",
            |c| load(&c.breaker.stats.upstream_rq_pending_total),
        ),
        (
            "upstream_cx_overflow",
            "Times a request found every allowed connection (maxConnections) in use",
            |c| load(&c.breaker.stats.upstream_cx_overflow),
        ),
        (
            "upstream_rq_timeout",
            "Requests that hit the route timeout (504 UT)",
            |c| load(&c.counters.upstream_rq_timeout),
        ),
        (
            "upstream_rq_per_try_timeout",
            "Attempts that hit the per-try timeout",
            |c| load(&c.counters.upstream_rq_per_try_timeout),
        ),
        (
            "upstream_rq_rx_reset",
            "Attempts the upstream reset before responding",
            |c| load(&c.counters.upstream_rq_rx_reset),
        ),
        ("upstream_cx_connect_fail", "Connection failures", |c| {
            load(&c.counters.upstream_cx_connect_fail)
        }),
        (
            "upstream_cx_none_healthy",
            "Requests with no healthy host to go to (503 UH)",
            |c| load(&c.counters.upstream_cx_none_healthy),
        ),
        (
            "outlier_detection_ejections_enforced_total",
            "Hosts ejected",
            |c| {
                c.outlier
                    .as_ref()
                    .map_or(0, |o| load(&o.stats.ejections_enforced_total))
            },
        ),
        (
            "outlier_detection_ejections_overflow",
            "Ejections skipped because of maxEjectionPercent",
            |c| {
                c.outlier
                    .as_ref()
                    .map_or(0, |o| load(&o.stats.ejections_overflow))
            },
        ),
        (
            "outlier_detection_ejections_enforced_consecutive_5xx",
            "Hosts ejected for consecutive 5xx",
            |c| {
                c.outlier
                    .as_ref()
                    .map_or(0, |o| load(&o.stats.ejections_enforced_consecutive_5xx))
            },
        ),
    ];
    for (name, help, f) in counters {
        // OpenMetrics appends `_total` to counters: Envoy's own `_total`
        // names come out as Envoy spells them.
        let full = format!(
            "envoy_cluster_{}",
            name.strip_suffix("_total").unwrap_or(name)
        );
        let mut family = encoder.encode_descriptor(&full, help, None, MetricType::Counter)?;
        for c in clusters {
            let labels = [("cluster_name", &*c.name)];
            ConstCounter::new(f(c)).encode(family.encode_family(&labels)?)?;
        }
    }
    type Gauge = Box<dyn Fn(&Cluster) -> i64>;
    let b = |f: fn(crate::istio::circuit_breaker::BreakerSnapshot) -> i64| -> Gauge {
        Box::new(move |c: &Cluster| f(c.breaker.snapshot()))
    };
    let gauges: Vec<(&str, &str, Gauge)> = vec![
        (
            "upstream_rq_active",
            "Requests in flight",
            b(|s| s.rq_active as i64),
        ),
        (
            "upstream_rq_pending_active",
            "Requests waiting for a connection",
            b(|s| s.rq_pending_active as i64),
        ),
        (
            "upstream_cx_active",
            "Connections in use by requests",
            b(|s| s.cx_active as i64),
        ),
        (
            "circuit_breakers_default_cx_open",
            "1 while maxConnections is reached",
            b(|s| i64::from(s.cx_open)),
        ),
        (
            "circuit_breakers_default_rq_pending_open",
            "1 while http1MaxPendingRequests is reached",
            b(|s| i64::from(s.rq_pending_open)),
        ),
        (
            "circuit_breakers_default_rq_open",
            "1 while http2MaxRequests is reached",
            b(|s| i64::from(s.rq_open)),
        ),
        (
            "circuit_breakers_default_rq_retry_open",
            "1 while maxRetries is reached",
            b(|s| i64::from(s.rq_retry_open)),
        ),
        (
            "circuit_breakers_default_remaining_cx",
            "Connections left before maxConnections",
            b(|s| i64::from(s.remaining_cx)),
        ),
        (
            "circuit_breakers_default_remaining_pending",
            "Pending requests left before http1MaxPendingRequests",
            b(|s| i64::from(s.remaining_pending)),
        ),
        (
            "circuit_breakers_default_remaining_rq",
            "Requests left before http2MaxRequests",
            b(|s| i64::from(s.remaining_rq)),
        ),
        (
            "circuit_breakers_default_remaining_retries",
            "Retries left before maxRetries",
            b(|s| i64::from(s.remaining_retries)),
        ),
        (
            "outlier_detection_ejections_active",
            "Hosts ejected now",
            Box::new(move |c: &Cluster| {
                c.outlier
                    .as_ref()
                    .map_or(0, |o| o.ejections_active(now) as i64)
            }),
        ),
        (
            "membership_total",
            "Instances of the cluster",
            Box::new(|c: &Cluster| {
                c.members
                    .iter()
                    .map(|m| m.backend.endpoints().len() as i64)
                    .sum()
            }),
        ),
        (
            "membership_healthy",
            "Instances not ejected and not leaving",
            Box::new(move |c: &Cluster| {
                use crate::istio::lb::LbHost;
                c.members
                    .iter()
                    .map(|m| {
                        m.backend
                            .endpoints()
                            .iter()
                            .filter(|e| e.available(now))
                            .count() as i64
                    })
                    .sum()
            }),
        ),
    ];
    for (name, help, f) in gauges {
        let full = format!("envoy_cluster_{name}");
        let mut family = encoder.encode_descriptor(&full, help, None, MetricType::Gauge)?;
        for c in clusters {
            let labels = [("cluster_name", &*c.name)];
            ConstGauge::new(f(c)).encode(family.encode_family(&labels)?)?;
        }
    }
    Ok(())
}
