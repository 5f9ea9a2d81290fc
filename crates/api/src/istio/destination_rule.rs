//! `networking.istio.io` DestinationRule: what happens to traffic for a host
//! after routing — subsets (label selectors, e.g. Knative's revision labels),
//! load balancing, connection pool limits (circuit breakers), outlier
//! detection, client TLS — at host, subset and port level.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::check::{self, at, err, here};
use super::duration;
use super::proto::{proto_enum, u64_or_string};
use super::virtual_service::{PortSelector, export_to};
use crate::field_error::FieldError;
use crate::meta::ObjectMeta;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DestinationRule {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: DestinationRuleSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DestinationRuleSpec {
    #[serde(default)]
    pub host: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_policy: Option<TrafficPolicy>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subsets: Vec<Subset>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub export_to: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_selector: Option<WorkloadSelector>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadSelector {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrafficPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancerSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_pool: Option<ConnectionPoolSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierDetection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ClientTlsSettings>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub port_level_settings: Vec<PortTrafficPolicy>,
    /// Accepted and kept; Skiff does not tunnel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_protocol: Option<ProxyProtocol>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_budget: Option<RetryBudget>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortTrafficPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<PortSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancerSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_pool: Option<ConnectionPoolSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierDetection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ClientTlsSettings>,
}

proto_enum!(
    ProxyProtocolVersion, "proxy protocol version" { V1 = 0 => "V1", V2 = 1 => "V2" }
);

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyProtocol {
    #[serde(default)]
    pub version: ProxyProtocolVersion,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryBudget {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_retry_concurrency: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_interval: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Subset {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_policy: Option<TrafficPolicy>,
}

impl Subset {
    /// True when every label of the subset is on `labels`.
    pub fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        self.labels.iter().all(|(k, v)| labels.get(k) == Some(v))
    }
}

proto_enum!(
    SimpleLb, "load balancer" {
        Unspecified = 0 => "UNSPECIFIED",
        LeastConn = 1 => "LEAST_CONN",
        Random = 2 => "RANDOM",
        Passthrough = 3 => "PASSTHROUGH",
        RoundRobin = 4 => "ROUND_ROBIN",
        LeastRequest = 5 => "LEAST_REQUEST",
    }
);

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoadBalancerSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simple: Option<SimpleLb>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistent_hash: Option<ConsistentHashLb>,
    /// Locality settings are accepted and kept: one machine has one locality.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locality_lb_setting: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone_aware_lb_setting: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_duration_secs: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup: Option<WarmupConfiguration>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WarmupConfiguration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_percent: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggression: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConsistentHashLb {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_header_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_cookie: Option<HttpCookie>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_source_ip: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_query_parameter_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ring_hash: Option<RingHash>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maglev: Option<MagLev>,
    /// Deprecated form of `ringHash.minimumRingSize`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "u64_or_string"
    )]
    pub minimum_ring_size: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RingHash {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "u64_or_string"
    )]
    pub minimum_ring_size: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MagLev {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "u64_or_string"
    )]
    pub table_size: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpCookie {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<CookieAttribute>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CookieAttribute {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionPoolSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpSettings>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpSettings {
    #[serde(default)]
    pub max_connections: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_keepalive: Option<TcpKeepalive>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connection_duration: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpKeepalive {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probes: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
}

proto_enum!(
    H2UpgradePolicy, "h2 upgrade policy" {
        Default = 0 => "DEFAULT",
        DoNotUpgrade = 1 => "DO_NOT_UPGRADE",
        Upgrade = 2 => "UPGRADE",
    }
);

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpSettings {
    #[serde(default)]
    pub http1_max_pending_requests: i32,
    #[serde(default)]
    pub http2_max_requests: i32,
    #[serde(default)]
    pub max_requests_per_connection: i32,
    #[serde(default)]
    pub max_retries: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub h2_upgrade_policy: Option<H2UpgradePolicy>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub use_client_protocol: bool,
    #[serde(default)]
    pub max_concurrent_streams: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http2_keep_alive: Option<ConnectionKeepalive>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionKeepalive {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OutlierDetection {
    /// Deprecated; Istio warns and ignores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_errors: Option<i32>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub split_external_local_origin_errors: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_local_origin_failures: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_gateway_errors: Option<u32>,
    #[serde(
        default,
        rename = "consecutive5xxErrors",
        skip_serializing_if = "Option::is_none"
    )]
    pub consecutive_5xx_errors: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_ejection_time: Option<String>,
    #[serde(default)]
    pub max_ejection_percent: i32,
    #[serde(default)]
    pub min_health_percent: i32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outlier_detection_http_error_codes: Vec<u32>,
}

proto_enum!(
    ClientTlsMode, "client TLS mode" {
        Disable = 0 => "DISABLE",
        Simple = 1 => "SIMPLE",
        Mutual = 2 => "MUTUAL",
        IstioMutual = 3 => "ISTIO_MUTUAL",
    }
);

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientTlsSettings {
    #[serde(default)]
    pub mode: ClientTlsMode,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub client_certificate: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub private_key: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ca_certificates: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub credential_name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subject_alt_names: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sni: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure_skip_verify: Option<bool>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ca_crl: String,
}

// ---------------------------------------------------------------- validation

/// Istio's ValidateDestinationRule, with paths.
pub fn validate(dr: &DestinationRule) -> FieldError {
    let spec = &dr.spec;
    let mut errs = at(check::wildcard_domain(&spec.host), "host");
    if let Some(tp) = &spec.traffic_policy {
        errs.push(validate_traffic_policy(tp).via_field("trafficPolicy"));
    }
    let mut seen: Vec<&str> = Vec::new();
    for (i, s) in spec.subsets.iter().enumerate() {
        let mut e = FieldError::default();
        if s.name.is_empty() {
            e.push(err("subset name cannot be empty", "name"));
        } else if !check::is_dns1123_label(&s.name) {
            e.push(err(format!("subset name is invalid: {}", s.name), "name"));
        }
        if seen.contains(&s.name.as_str()) {
            e.push(err(format!("duplicate subset names: {}", s.name), "name"));
        }
        seen.push(&s.name);
        for (k, v) in &s.labels {
            e.push(at(check::label(k, v), "").via_field_key("labels", k));
        }
        if let Some(tp) = &s.traffic_policy {
            e.push(validate_traffic_policy(tp).via_field("trafficPolicy"));
        }
        errs.push(e.via_field_index("subsets", i));
    }
    for (i, e) in spec.export_to.iter().enumerate() {
        errs.push(export_to(e).via_field_index("exportTo", i));
    }
    if let Some(ws) = &spec.workload_selector {
        for (k, v) in &ws.match_labels {
            errs.push(at(check::label(k, v), "").via_field_key("workloadSelector.matchLabels", k));
        }
    }
    errs.via_field("spec")
}

fn validate_traffic_policy(tp: &TrafficPolicy) -> FieldError {
    if tp.outlier_detection.is_none()
        && tp.connection_pool.is_none()
        && tp.load_balancer.is_none()
        && tp.tls.is_none()
        && tp.port_level_settings.is_empty()
        && tp.tunnel.is_none()
        && tp.proxy_protocol.is_none()
        && tp.retry_budget.is_none()
    {
        return here("traffic policy must have at least one field");
    }
    let mut errs = FieldError::default();
    if tp.tunnel.is_some() && tp.proxy_protocol.is_some() {
        errs.push(FieldError::multiple_one_of(&["proxyProtocol", "tunnel"]));
    }
    errs.push(validate_blocks(
        tp.load_balancer.as_ref(),
        tp.connection_pool.as_ref(),
        tp.outlier_detection.as_ref(),
        tp.tls.as_ref(),
    ));
    let mut ports: Vec<u32> = Vec::new();
    for (i, p) in tp.port_level_settings.iter().enumerate() {
        let mut e = FieldError::default();
        match &p.port {
            None => e.push(FieldError::missing_field(&["port"])),
            Some(port) => {
                e.push(at(check::port(port.number as i64), "port.number"));
                if ports.contains(&port.number) {
                    e.push(err(
                        format!("port {} appears in more than one portLevelSettings entry (the first one wins)", port.number),
                        "port.number",
                    ));
                }
                ports.push(port.number);
            }
        }
        if p.load_balancer.is_none()
            && p.connection_pool.is_none()
            && p.outlier_detection.is_none()
            && p.tls.is_none()
        {
            e.push(here("port traffic policy must have at least one field"));
        } else {
            e.push(validate_blocks(
                p.load_balancer.as_ref(),
                p.connection_pool.as_ref(),
                p.outlier_detection.as_ref(),
                p.tls.as_ref(),
            ));
        }
        errs.push(e.via_field_index("portLevelSettings", i));
    }
    if let Some(rb) = &tp.retry_budget {
        let mut e = FieldError::default();
        if let Some(p) = rb.percent
            && !(0.0..=100.0).contains(&p)
        {
            e.push(FieldError::out_of_bounds(p, 0, 100, "percent"));
        }
        if let Some(d) = &rb.budget_interval {
            e.push(at(duration::parse_checked(d).map(|_| ()), "budgetInterval"));
        }
        errs.push(e.via_field("retryBudget"));
    }
    errs
}

fn validate_blocks(
    lb: Option<&LoadBalancerSettings>,
    pool: Option<&ConnectionPoolSettings>,
    outlier: Option<&OutlierDetection>,
    tls: Option<&ClientTlsSettings>,
) -> FieldError {
    let mut errs = FieldError::default();
    if let Some(lb) = lb {
        errs.push(validate_lb(lb).via_field("loadBalancer"));
    }
    if let Some(p) = pool {
        errs.push(validate_pool(p).via_field("connectionPool"));
    }
    if let Some(o) = outlier {
        errs.push(validate_outlier(o).via_field("outlierDetection"));
    }
    if let Some(t) = tls {
        errs.push(validate_client_tls(t).via_field("tls"));
    }
    errs
}

fn opt_duration(d: &Option<String>, path: &str) -> FieldError {
    match d {
        Some(s) => at(duration::parse_checked(s).map(|_| ()), path),
        None => FieldError::default(),
    }
}

fn non_negative(v: i32, path: &str, what: &str) -> FieldError {
    if v < 0 {
        err(format!("{what} must be non-negative"), path)
    } else {
        FieldError::default()
    }
}

fn validate_pool(p: &ConnectionPoolSettings) -> FieldError {
    if p.http.is_none() && p.tcp.is_none() {
        return here("connection pool must have at least one field");
    }
    let mut errs = FieldError::default();
    if let Some(h) = &p.http {
        let mut e = non_negative(
            h.http1_max_pending_requests,
            "http1MaxPendingRequests",
            "http1 max pending requests",
        )
        .also(non_negative(
            h.http2_max_requests,
            "http2MaxRequests",
            "http2 max requests",
        ))
        .also(non_negative(
            h.max_requests_per_connection,
            "maxRequestsPerConnection",
            "max requests per connection",
        ))
        .also(non_negative(h.max_retries, "maxRetries", "max retries"))
        .also(non_negative(
            h.max_concurrent_streams,
            "maxConcurrentStreams",
            "max concurrent streams",
        ))
        .also(opt_duration(&h.idle_timeout, "idleTimeout"));
        if h.h2_upgrade_policy == Some(H2UpgradePolicy::Upgrade) && h.use_client_protocol {
            e.push(err(
                "use client protocol must not be true when H2UpgradePolicy is UPGRADE",
                "useClientProtocol",
            ));
        }
        if let Some(ka) = &h.http2_keep_alive {
            for (field, v) in [("interval", &ka.interval), ("timeout", &ka.timeout)] {
                match v {
                    None => e.push(FieldError::missing_field(&[field]).via_field("http2KeepAlive")),
                    Some(_) => e.push(opt_duration(v, field).via_field("http2KeepAlive")),
                }
            }
        }
        errs.push(e.via_field("http"));
    }
    if let Some(t) = &p.tcp {
        let mut e = non_negative(t.max_connections, "maxConnections", "max connections")
            .also(opt_duration(&t.connect_timeout, "connectTimeout"))
            .also(opt_duration(
                &t.max_connection_duration,
                "maxConnectionDuration",
            ));
        // `0s` disables the idle timeout.
        if let Some(it) = &t.idle_timeout {
            match duration::parse(it) {
                Ok(d) if d.is_zero() => {}
                Ok(d) => e.push(at(duration::validate(d), "idleTimeout")),
                Err(m) => e.push(err(m, "idleTimeout")),
            }
        }
        if let Some(ka) = &t.tcp_keepalive {
            e.push(opt_duration(&ka.time, "time").via_field("tcpKeepalive"));
            e.push(opt_duration(&ka.interval, "interval").via_field("tcpKeepalive"));
        }
        errs.push(e.via_field("tcp"));
    }
    errs
}

fn validate_outlier(o: &OutlierDetection) -> FieldError {
    let mut errs = opt_duration(&o.base_ejection_time, "baseEjectionTime")
        .also(opt_duration(&o.interval, "interval"))
        .also(at(
            check::percent(o.max_ejection_percent as i64),
            "maxEjectionPercent",
        ))
        .also(at(
            check::percent(o.min_health_percent as i64),
            "minHealthPercent",
        ));
    if !o.split_external_local_origin_errors && o.consecutive_local_origin_failures.unwrap_or(0) > 0
    {
        errs.push(err(
            "outlier detection consecutive local origin failures is specified, but split external local origin errors is set to false",
            "consecutiveLocalOriginFailures",
        ));
    }
    for (i, c) in o.outlier_detection_http_error_codes.iter().enumerate() {
        if !(100..=599).contains(c) {
            errs.push(
                FieldError::out_of_bounds(c, 100, 599, "")
                    .via_field_index("outlierDetectionHttpErrorCodes", i),
            );
        }
    }
    errs
}

fn is_prime(x: u64) -> bool {
    if x != 0 && x < 4 {
        return true;
    }
    if x & 1 == 0 {
        return false;
    }
    let mut f = 3u64;
    while f.saturating_mul(f) <= x {
        if x.is_multiple_of(f) {
            return false;
        }
        f += 2;
    }
    true
}

fn validate_lb(lb: &LoadBalancerSettings) -> FieldError {
    let mut errs = FieldError::default();
    if lb.simple.is_some() && lb.consistent_hash.is_some() {
        errs.push(FieldError::multiple_one_of(&["consistentHash", "simple"]));
    }
    if let Some(ch) = &lb.consistent_hash {
        let mut e = FieldError::default();
        let keys: Vec<&str> = [
            ("httpHeaderName", ch.http_header_name.is_some()),
            ("httpCookie", ch.http_cookie.is_some()),
            ("useSourceIp", ch.use_source_ip.is_some()),
            (
                "httpQueryParameterName",
                ch.http_query_parameter_name.is_some(),
            ),
        ]
        .iter()
        .filter(|(_, s)| *s)
        .map(|(n, _)| *n)
        .collect();
        if keys.len() > 1 {
            e.push(FieldError::multiple_one_of(&keys));
        } else if keys.is_empty() {
            e.push(FieldError::missing_one_of(&[
                "httpCookie",
                "httpHeaderName",
                "httpQueryParameterName",
                "useSourceIp",
            ]));
        }
        if let Some(h) = &ch.http_header_name {
            e.push(at(check::header_name(h), "httpHeaderName"));
        }
        if let Some(c) = &ch.http_cookie {
            let mut ce = FieldError::default();
            if c.name.is_empty() {
                ce.push(err("name required for HttpCookie", "name"));
            }
            ce.push(opt_duration(&c.ttl, "ttl"));
            let mut names: Vec<&str> = Vec::new();
            for (i, a) in c.attributes.iter().enumerate() {
                if a.name.is_empty() {
                    ce.push(
                        err("cookie attribute name cannot be empty", "")
                            .via_field_index("attributes", i),
                    );
                } else if names.contains(&a.name.as_str()) {
                    ce.push(
                        err(format!("duplicate cookie attribute name: {}", a.name), "")
                            .via_field_index("attributes", i),
                    );
                }
                names.push(&a.name);
            }
            e.push(ce.via_field("httpCookie"));
        }
        if ch.ring_hash.is_some() && ch.maglev.is_some() {
            e.push(FieldError::multiple_one_of(&["maglev", "ringHash"]));
        }
        if ch.minimum_ring_size.unwrap_or(0) != 0 && (ch.ring_hash.is_some() || ch.maglev.is_some())
        {
            e.push(err(
                "only one of MinimumRingSize or Maglev/Ringhash can be specified",
                "minimumRingSize",
            ));
        }
        if let Some(m) = &ch.maglev {
            let size = m.table_size.unwrap_or(0);
            if size == 0 {
                e.push(err("tableSize must be set for maglev", "maglev.tableSize"));
            } else if size >= 5_000_011 {
                e.push(err(
                    "tableSize must be less than 5000011 for maglev",
                    "maglev.tableSize",
                ));
            } else if !is_prime(size) {
                e.push(err(
                    "tableSize must be a prime number for maglev",
                    "maglev.tableSize",
                ));
            }
        }
        errs.push(e.via_field("consistentHash"));
    }
    if lb.locality_lb_setting.is_some() && lb.zone_aware_lb_setting.is_some() {
        errs.push(FieldError::multiple_one_of(&[
            "localityLbSetting",
            "zoneAwareLbSetting",
        ]));
    }
    errs.push(opt_duration(&lb.warmup_duration_secs, "warmupDurationSecs"));
    if let Some(w) = &lb.warmup {
        let mut e = match &w.duration {
            None => FieldError::missing_field(&["duration"]),
            Some(_) => opt_duration(&w.duration, "duration"),
        };
        if w.minimum_percent
            .is_some_and(|m| !(0.0..=100.0).contains(&m))
        {
            e.push(err(
                "minimumPercent value should be less than or equal to 100",
                "minimumPercent",
            ));
        }
        if w.aggression.is_some_and(|a| a <= 0.0) {
            e.push(err("aggression should be greater than 0", "aggression"));
        }
        errs.push(e.via_field("warmup"));
    }
    errs
}

fn validate_client_tls(t: &ClientTlsSettings) -> FieldError {
    let mut errs = FieldError::default();
    let skip = t.insecure_skip_verify == Some(true);
    if skip
        && t.mode == ClientTlsMode::Simple
        && (!t.ca_certificates.is_empty()
            || !t.credential_name.is_empty()
            || !t.subject_alt_names.is_empty())
    {
        errs.push(here(
            "cannot specify CaCertificates or CredentialName or SubjectAltNames when InsecureSkipVerify is set true",
        ));
    }
    if skip
        && t.mode == ClientTlsMode::Mutual
        && (!t.ca_certificates.is_empty() || !t.subject_alt_names.is_empty())
    {
        errs.push(here(
            "cannot specify CaCertificates or SubjectAltNames when InsecureSkipVerify is set true",
        ));
    }
    let with_credential = matches!(t.mode, ClientTlsMode::Simple | ClientTlsMode::Mutual)
        && !t.credential_name.is_empty();
    if with_credential {
        if !t.client_certificate.is_empty()
            || !t.ca_certificates.is_empty()
            || !t.private_key.is_empty()
            || !t.ca_crl.is_empty()
        {
            errs.push(here(
                "cannot specify client certificates or CA certificate or CA CRL If credentialName is set",
            ));
        }
        return errs;
    }
    if t.mode == ClientTlsMode::Mutual {
        if t.client_certificate.is_empty() {
            errs.push(err(
                "client certificate required for mutual tls",
                "clientCertificate",
            ));
        }
        if t.private_key.is_empty() {
            errs.push(err("private key required for mutual tls", "privateKey"));
        }
    }
    if t.mode == ClientTlsMode::IstioMutual
        && (!t.client_certificate.is_empty()
            || !t.private_key.is_empty()
            || !t.ca_certificates.is_empty()
            || !t.credential_name.is_empty())
    {
        errs.push(here(
            "ISTIO_MUTUAL TLS cannot have associated certificates or credentialName",
        ));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dr(yaml: &str) -> DestinationRule {
        crate::istio::testing::yaml(yaml)
    }

    fn errors(yaml: &str) -> String {
        validate(&dr(yaml)).to_string()
    }

    const FULL: &str = "
spec:
  host: hello.default.svc.cluster.local
  trafficPolicy:
    loadBalancer: {simple: LEAST_REQUEST}
    connectionPool:
      tcp: {maxConnections: 1, connectTimeout: 30ms, tcpKeepalive: {time: 7200s, interval: 75s}}
      http: {http1MaxPendingRequests: 1, maxRequestsPerConnection: 1, http2MaxRequests: 10, idleTimeout: 300s}
    outlierDetection:
      consecutive5xxErrors: 1
      interval: 1s
      baseEjectionTime: 3m
      maxEjectionPercent: 100
    portLevelSettings:
    - port: {number: 80}
      loadBalancer: {consistentHash: {httpCookie: {name: user, ttl: 0s}}}
  subsets:
  - name: v1
    labels: {serving.knative.dev/revision: hello-00001}
  - name: v2
    labels: {serving.knative.dev/revision: hello-00002}
    trafficPolicy:
      loadBalancer: {consistentHash: {httpHeaderName: x-user, ringHash: {minimumRingSize: '2048'}}}
";

    #[test]
    fn full_rule_is_valid() {
        let d = dr(FULL);
        let e = validate(&d).to_string();
        // ttl 0s is below Istio's 1 ms minimum: the one complaint.
        assert_eq!(
            e,
            "duration must be greater than 1ms: spec.trafficPolicy.portLevelSettings[0].loadBalancer.consistentHash.httpCookie.ttl"
        );
        let od = d
            .spec
            .traffic_policy
            .as_ref()
            .unwrap()
            .outlier_detection
            .as_ref()
            .unwrap();
        assert_eq!(od.consecutive_5xx_errors, Some(1));
        let ch = d.spec.subsets[1]
            .traffic_policy
            .as_ref()
            .unwrap()
            .load_balancer
            .as_ref()
            .unwrap()
            .consistent_hash
            .as_ref()
            .unwrap();
        assert_eq!(ch.ring_hash.as_ref().unwrap().minimum_ring_size, Some(2048));
        let labels = [(
            "serving.knative.dev/revision".to_string(),
            "hello-00002".to_string(),
        )]
        .into();
        assert!(d.spec.subsets[1].selects(&labels));
        assert!(!d.spec.subsets[0].selects(&labels));
    }

    #[test]
    fn table_of_errors() {
        let cases: &[(&str, &str)] = &[
            ("spec: {host: 'a..b'}", "spec.host"),
            (
                "spec: {host: a.b, trafficPolicy: {}}",
                "traffic policy must have at least one field: spec.trafficPolicy",
            ),
            (
                "spec: {host: a.b, trafficPolicy: {connectionPool: {http: {http1MaxPendingRequests: -1}}}}",
                "http1 max pending requests must be non-negative: spec.trafficPolicy.connectionPool.http.http1MaxPendingRequests",
            ),
            (
                "spec: {host: a.b, trafficPolicy: {outlierDetection: {maxEjectionPercent: 150}}}",
                "percentage 150 is not in range 0..100: spec.trafficPolicy.outlierDetection.maxEjectionPercent",
            ),
            (
                "spec: {host: a.b, trafficPolicy: {outlierDetection: {interval: 1x}}}",
                "time: unknown unit \"x\" in duration \"1x\": spec.trafficPolicy.outlierDetection.interval",
            ),
            (
                "spec: {host: a.b, trafficPolicy: {loadBalancer: {simple: RANDOM, consistentHash: {useSourceIp: true}}}}",
                "expected exactly one, got both: spec.trafficPolicy.loadBalancer.consistentHash, spec.trafficPolicy.loadBalancer.simple",
            ),
            (
                "spec: {host: a.b, trafficPolicy: {loadBalancer: {consistentHash: {}}}}",
                "expected exactly one, got neither: spec.trafficPolicy.loadBalancer.consistentHash.httpCookie",
            ),
            (
                "spec: {host: a.b, trafficPolicy: {loadBalancer: {consistentHash: {useSourceIp: true, maglev: {tableSize: 65536}}}}}",
                "tableSize must be a prime number for maglev",
            ),
            (
                "spec: {host: a.b, subsets: [{name: v1}, {name: v1}]}",
                "duplicate subset names: v1: spec.subsets[1].name",
            ),
            (
                "spec: {host: a.b, trafficPolicy: {portLevelSettings: [{port: {number: 80}}]}}",
                "port traffic policy must have at least one field: spec.trafficPolicy.portLevelSettings[0]",
            ),
            (
                "spec: {host: a.b, trafficPolicy: {tls: {mode: MUTUAL}}}",
                "client certificate required for mutual tls: spec.trafficPolicy.tls.clientCertificate",
            ),
            (
                "spec: {host: a.b, trafficPolicy: {outlierDetection: {consecutiveLocalOriginFailures: 3}}}",
                "split external local origin errors is set to false",
            ),
        ];
        crate::istio::testing::each_error_contains(cases, errors);
        // 0s disables the TCP idle timeout.
        assert_eq!(
            errors("spec: {host: a.b, trafficPolicy: {connectionPool: {tcp: {idleTimeout: 0s}}}}"),
            ""
        );
    }

    #[test]
    fn unknown_tls_mode_names_the_values() {
        let v: serde_json::Value =
            serde_saphyr::from_str("spec: {host: a, trafficPolicy: {tls: {mode: STRICT}}}")
                .unwrap();
        let e = serde_json::from_value::<DestinationRule>(v)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unknown client TLS mode \"STRICT\": expected one of DISABLE, SIMPLE, MUTUAL, ISTIO_MUTUAL"),
            "{e}"
        );
    }

    #[test]
    fn primes() {
        assert!(is_prime(65537));
        assert!(!is_prime(65536));
        assert!(is_prime(2));
        assert!(!is_prime(1_000_001));
    }
}
