use super::validate::is_prime;
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
        serde_saphyr::from_str("spec: {host: a, trafficPolicy: {tls: {mode: STRICT}}}").unwrap();
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
