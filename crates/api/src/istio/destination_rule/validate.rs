//! Istio's ValidateDestinationRule, with the path of each error.

use super::*;
use crate::field_error::FieldError;
use crate::istio::check::{self, at, err, here};
use crate::istio::duration;
use crate::istio::virtual_service::export_to;

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

pub(super) fn is_prime(x: u64) -> bool {
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
