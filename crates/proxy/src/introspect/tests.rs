use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use skiff_api::istio::VirtualService;
use skiff_api::istio::virtual_service::Destination;

use super::clusters::hash_key;
use super::routes::string_match;
use super::*;
use crate::activator::Backends;
use crate::cluster::{Cluster, Member};
use crate::istio::binding::HostIndex;
use crate::istio::circuit_breaker::CircuitBreaker;
use crate::istio::lb::HashKey;
use crate::istio::matcher::Matcher;
use crate::istio::outlier::{OutlierDetector, OutlierResult};
use crate::istio::policy::ClusterPolicy;
use crate::istio::route::{HttpRoutes, Resolver, Scope};
use crate::listeners::{BoxFuture, Connection, ConnectionHandler, ListenerManager, ListenerSpec};
use crate::server::ListenerScope;
use crate::table::{IstioRoutes, ListenerRoutes, RoutingTable, TableBuilder, Target, VirtualHost};

const LOCAL: &str = "127.0.0.1:8081";
const CLUSTER: &str = "outbound||v2|hello.default.svc.cluster.local";

/// `hello` resolves to the one cluster; any other host to none.
struct OneCluster;

impl Resolver for OneCluster {
    fn cluster(&mut self, d: &Destination, _ns: &str) -> Option<u32> {
        (d.host == "hello").then_some(0)
    }
    fn delegate(&mut self, _ns: &str, _name: &str) -> Option<&VirtualService> {
        None
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn endpoint(rev: &str, port: u16, instance: u64) -> Arc<Endpoint> {
    Arc::new(Endpoint::new(
        addr(&format!("127.0.0.1:{port}")),
        rev.into(),
        instance,
        false,
    ))
}

/// Two revisions of `hello` (one instance each), Knative's route 90/10
/// on the external and cluster-local hosts, and on the listener at
/// `local` a VirtualService for the cluster-local host sending to subset
/// v2 (the cluster: one connection, one pending request, ejection after
/// one 5xx).
struct Fixture {
    backends: Backends,
    v1: Arc<Endpoint>,
    v2: Arc<Endpoint>,
    cluster: Arc<Cluster>,
    table: RoutingTable,
}

fn fixture(local: SocketAddr) -> Fixture {
    let backends = Backends::default();
    let (b1, b2) = (
        backends.get("default/hello-00001"),
        backends.get("default/hello-00002"),
    );
    b1.configure(1, Duration::from_secs(300));
    b2.configure(0, Duration::from_secs(60));
    let (v1, v2) = (
        endpoint("default/hello-00001", 2001, 1),
        endpoint("default/hello-00002", 2002, 1),
    );
    b1.set_endpoints(vec![v1.clone()]);
    b2.set_endpoints(vec![v2.clone()]);

    let mut policy = ClusterPolicy::compile(Some(&crate::istio::testing::yaml(
            "{connectionPool: {tcp: {maxConnections: 1}, http: {http1MaxPendingRequests: 1}}, \
              outlierDetection: {consecutive5xxErrors: 1, baseEjectionTime: 30s, maxEjectionPercent: 100}}",
        )))
        .unwrap();
    policy.lb = crate::istio::lb::LbConfig::from_api(Some(&crate::istio::testing::yaml(
        "{simple: ROUND_ROBIN}",
    )))
    .unwrap();
    let outlier = OutlierDetector::new(
        policy.outlier.clone().unwrap(),
        vec![v2.outlier.clone()],
        Arc::default(),
    );
    let cluster = Arc::new(Cluster::new(
        CLUSTER,
        "hello.default.svc.cluster.local",
        Some("v2"),
        policy.clone(),
        vec![Member::new(b2.clone(), 1, Arc::default())],
        CircuitBreaker::new(policy.limits),
        Some(outlier),
        Arc::default(),
    ));

    let vs: VirtualService = crate::istio::testing::yaml(
        "metadata: {name: hello, namespace: default}
spec:
  hosts: [hello.default.svc.cluster.local]
  http:
  - name: api
    match:
    - uri: {prefix: /api}
      headers: {x-user: {regex: 'a.*'}}
    - uri: {exact: /v2}
    route: [{destination: {host: hello, subset: v2}}]
    timeout: 2s
    retries: {attempts: 3, retryOn: '5xx,503'}
  - route:
    - {destination: {host: hello, subset: v2}, weight: 80}
    - {destination: {host: nowhere}, weight: 20}
    fault: {abort: {httpStatus: 503, percentage: {value: 10}}}
",
    );
    let mut routes = HttpRoutes::default();
    routes
        .add(&vs, Scope::default(), &mut OneCluster)
        .expect("the VirtualService compiles");
    let mut hosts = HostIndex::default();
    hosts.insert(
        "hello.default.svc.cluster.local",
        Arc::new(VirtualHost {
            host: "hello.default.svc.cluster.local".into(),
            routes,
            authz: None,
            require_tls: false,
        }),
    );
    let mut b = TableBuilder::new(7);
    let targets = [
        Target {
            backend: b1,
            percent: 90,
            counters: Arc::default(),
        },
        Target {
            backend: b2,
            percent: 10,
            counters: Arc::default(),
        },
    ];
    b.route(
        "default/hello",
        &["hello.default.127.0.0.1.sslip.io".to_string()],
        false,
        &targets,
    );
    b.route(
        "default/hello",
        &["hello.default.svc.cluster.local".to_string()],
        true,
        &targets,
    );
    b.istio(IstioRoutes::new(
        vec![(local, ListenerRoutes { hosts, authz: None })],
        vec![cluster.clone()],
    ));
    Fixture {
        backends,
        v1,
        v2,
        cluster,
        table: b.build(),
    }
}

/// Serves no connection: the listener tests only look at listeners.
struct Ignore;

impl ConnectionHandler for Ignore {
    fn serve(&self, _conn: Connection) -> BoxFuture {
        Box::pin(async {})
    }
}

fn spec(scope: ListenerScope) -> ListenerSpec {
    let mut s = ListenerSpec::plain(addr("127.0.0.1:0"), Vec::new());
    s.scope = scope;
    s
}

#[test]
fn routes_show_rules_in_order_with_their_clusters_and_knative_splits() {
    let f = fixture(addr(LOCAL));
    let v = routes(&f.table, &[]);
    assert_eq!(v.version, 7);
    assert_eq!(v.virtual_hosts.len(), 1);
    let vh = &v.virtual_hosts[0];
    assert_eq!(
        (vh.listener.as_str(), vh.host.as_str()),
        (LOCAL, "hello.default.svc.cluster.local")
    );
    let [api, rest] = &vh.rules[..] else {
        panic!("two rules: {:?}", vh.rules);
    };
    assert_eq!(api.virtual_service, "default/hello");
    assert_eq!(api.name, "api");
    assert_eq!(api.matches.len(), 2);
    assert_eq!(
        api.matches[0].uri.as_ref().unwrap().prefix.as_deref(),
        Some("/api")
    );
    assert_eq!(
        api.matches[0].headers["x-user"].regex.as_deref(),
        Some("a.*"),
        "the regex as written, not as anchored"
    );
    assert_eq!(
        api.matches[1].uri.as_ref().unwrap().exact.as_deref(),
        Some("/v2")
    );
    assert_eq!(api.timeout_ms, Some(2000));
    assert_eq!(api.retries.attempts, 3);
    assert_eq!(
        api.retries.retry_on,
        ["5xx", "retriable-status-codes", "503"]
    );
    let ActionView::Route { destinations } = &rest.action else {
        panic!("a route: {:?}", rest.action);
    };
    assert_eq!(destinations[0].cluster.as_deref(), Some(CLUSTER));
    assert_eq!((destinations[0].weight, destinations[1].weight), (4, 1));
    assert_eq!(
        destinations[1].cluster, None,
        "an unknown host has no cluster"
    );
    assert!(rest.matches.is_empty());
    let fault = rest.fault.as_ref().unwrap();
    assert_eq!(
        (fault.abort.as_deref(), fault.abort_percent),
        (Some("http 503"), Some(10.0))
    );
    assert_eq!(rest.timeout_ms, None, "no route timeout unless set");

    assert_eq!(v.knative.len(), 2);
    let ext = &v.knative[0];
    assert_eq!(
        (ext.host.as_str(), ext.visibility, ext.route.as_str()),
        (
            "hello.default.127.0.0.1.sslip.io",
            Visibility::External,
            "default/hello"
        )
    );
    assert_eq!(
        ext.traffic,
        [
            RevisionShare {
                revision: "default/hello-00001".into(),
                percent: 90
            },
            RevisionShare {
                revision: "default/hello-00002".into(),
                percent: 10
            }
        ]
    );
    assert_eq!(v.knative[1].visibility, Visibility::ClusterLocal);
    // The JSON the admin API sends reads back as the same view.
    let json = serde_json::to_string(&v).unwrap();
    assert_eq!(serde_json::from_str::<RoutesView>(&json).unwrap(), v);
    assert!(json.contains(r#""visibility":"cluster-local""#), "{json}");
}

#[test]
fn clusters_show_policy_and_live_breaker_and_outlier_state() {
    let f = fixture(addr(LOCAL));
    let now = MonoTime::now();
    // One request holds the only connection; the next waits; a third
    // overflows. Then the v2 instance answers a 500 and is ejected.
    let breaker = &f.cluster.breaker;
    let _request = breaker.try_request().unwrap();
    let _connection = breaker.try_connection().unwrap();
    assert!(breaker.try_connection().is_none());
    let detector = f.cluster.outlier.as_ref().unwrap();
    detector.report(&f.v2.outlier, OutlierResult::Http(500), now);

    let v = clusters(&f.table, &f.backends, now);
    let names: Vec<&str> = v.clusters.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["default/hello-00001", "default/hello-00002", CLUSTER],
        "revisions first, then destinations"
    );
    let rev = &v.clusters[0];
    assert_eq!(rev.kind, ClusterKind::Revision);
    assert_eq!((rev.endpoints, rev.healthy_endpoints), (1, 1));
    let r = rev.revision.as_ref().unwrap();
    assert_eq!((r.container_concurrency, r.timeout_seconds), (Some(1), 300));
    assert_eq!(rev.lb, "FIRST_AVAILABLE", "the activator fills instances");
    assert!(rev.circuit_breakers.is_none());
    assert_eq!(
        v.clusters[1].healthy_endpoints, 0,
        "v2's instance is ejected"
    );

    let c = &v.clusters[2];
    assert_eq!(c.kind, ClusterKind::Destination);
    assert_eq!(c.subset.as_deref(), Some("v2"));
    assert_eq!(c.lb, "ROUND_ROBIN");
    assert_eq!(
        c.revisions,
        [RevisionWeight {
            revision: "default/hello-00002".into(),
            weight: 1
        }]
    );
    let cb = c.circuit_breakers.as_ref().unwrap();
    assert_eq!(
        (cb.max_connections, cb.max_pending_requests, cb.max_requests),
        (Some(1), Some(1), None)
    );
    assert_eq!((cb.active_requests, cb.active_connections), (1, 1));
    assert_eq!(cb.cx_overflow, 1);
    let od = c.outlier_detection.as_ref().unwrap();
    assert_eq!(od.consecutive_5xx_errors, Some(1));
    assert_eq!(od.base_ejection_time_ms, 30_000);
    assert_eq!((od.ejections_active, od.ejections_enforced_total), (1, 1));
    assert_eq!((c.endpoints, c.healthy_endpoints), (1, 0));
    let json = serde_json::to_string(&v).unwrap();
    assert_eq!(serde_json::from_str::<ClustersView>(&json).unwrap(), v);
}

#[test]
fn endpoints_show_health_ejection_and_counts_per_cluster() {
    let f = fixture(addr(LOCAL));
    let now = MonoTime::now();
    let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    f.cluster
        .outlier
        .as_ref()
        .unwrap()
        .report(&f.v2.outlier, OutlierResult::Http(503), now);
    assert!(f.v1.try_acquire());
    f.v1.drain();

    let v = endpoints(&f.table, &f.backends, now, wall);
    let rows: Vec<(&str, &str)> = v
        .endpoints
        .iter()
        .map(|e| (e.cluster.as_str(), e.address.as_str()))
        .collect();
    assert_eq!(
        rows,
        [
            ("default/hello-00001", "127.0.0.1:2001"),
            ("default/hello-00002", "127.0.0.1:2002"),
            (CLUSTER, "127.0.0.1:2002"),
        ]
    );
    let v1 = &v.endpoints[0];
    assert_eq!(v1.status, EndpointStatus::Draining);
    assert_eq!((v1.in_flight, v1.capacity), (1, Some(1)));
    assert!(!v1.ejected);
    for e in &v.endpoints[1..] {
        assert_eq!(e.status, EndpointStatus::Healthy);
        assert!(e.ejected, "{e:?}");
        assert_eq!(e.ejections, 1);
        assert_eq!(e.ejection_remaining_ms, Some(30_000));
        assert_eq!(e.ejected_until.as_deref(), Some("2023-11-14T22:13:50Z"));
        assert_eq!(e.capacity, None, "containerConcurrency 0 is unlimited");
    }
    // Once the ejection is over the endpoint is back, its count kept.
    let later = endpoints(
        &f.table,
        &f.backends,
        now.plus(Duration::from_secs(31)),
        wall,
    );
    assert!(!later.endpoints[2].ejected);
    assert_eq!(later.endpoints[2].ejections, 1);
    f.v1.release();
}

#[tokio::test]
async fn listeners_show_scope_servers_and_connections() {
    let mut m = ListenerManager::new(vec![], Arc::new(Ignore));
    let r = m
        .apply(vec![
            spec(ListenerScope {
                external: true,
                local: false,
            }),
            spec(ListenerScope {
                external: false,
                local: true,
            }),
        ])
        .await;
    assert!(r.failed.is_empty(), "{:?}", r.failed);
    let running = m.live().snapshot();
    let (external, local) = match (
        running.iter().find(|l| l.info.scope.external),
        running.iter().find(|l| l.info.scope.local),
    ) {
        (Some(e), Some(l)) => (e.info.addr, l.info.addr),
        _ => panic!("both listeners run: {running:?}"),
    };
    let f = fixture(local);
    let v = listeners(&f.table, &running);
    assert_eq!(v.listeners.len(), 2);
    let scopes: Vec<&[Visibility]> = v
        .listeners
        .iter()
        .map(|l| l.knative_routes.as_slice())
        .collect();
    assert!(scopes.contains(&&[Visibility::External][..]));
    assert!(scopes.contains(&&[Visibility::ClusterLocal][..]));
    for l in &v.listeners {
        assert!(!l.tls && !l.proxy_protocol);
        assert_eq!(l.address, l.bound);
        assert_eq!(l.connections, 0);
        let hosts = usize::from(l.address == local.to_string());
        assert_eq!(l.virtual_hosts, hosts, "{l:?}");
    }
    // Knative's routes are served where their visibility is, unless
    // a VirtualService claims the host on that listener.
    let routes = routes(&f.table, &running);
    assert_eq!(routes.knative[0].visibility, Visibility::External);
    assert_eq!(routes.knative[0].listeners, [external.to_string()]);
    assert_eq!(routes.knative[1].visibility, Visibility::ClusterLocal);
    assert!(
        routes.knative[1].listeners.is_empty(),
        "the VirtualService takes the cluster-local host"
    );
    m.close_all().await;
    assert!(m.live().snapshot().is_empty());
}

#[test]
fn matches_keep_istio_s_shape_in_json() {
    let m = string_match(&Matcher::Present);
    assert_eq!(serde_json::to_string(&m).unwrap(), "{}");
    let m = string_match(&Matcher::Prefix {
        value: "/a".into(),
        ignore_case: true,
    });
    assert_eq!(
        serde_json::to_string(&m).unwrap(),
        r#"{"prefix":"/a","ignore_case":true}"#
    );
    assert_eq!(
        hash_key(&HashKey::Header(http::HeaderName::from_static("x-user"))),
        "header x-user"
    );
}
