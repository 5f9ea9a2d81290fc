use super::*;

fn vs(yaml: &str) -> VirtualService {
    crate::istio::testing::yaml(yaml)
}

fn errors(yaml: &str) -> String {
    validate(&vs(yaml)).to_string()
}

const AB: &str = "
metadata: {name: hello}
spec:
  hosts: [hello.default.svc.cluster.local]
  http:
  - match:
    - headers:
        user-type: {exact: premium}
    route:
    - destination: {host: hello.default.svc.cluster.local, subset: v2}
  - route:
    - destination: {host: hello.default.svc.cluster.local, subset: v1}
      weight: 80
    - destination: {host: hello.default.svc.cluster.local, subset: v2}
      weight: 20
    timeout: 10s
    retries: {attempts: 3, perTryTimeout: 2s, retryOn: 'gateway-error,connect-failure,503'}
";

#[test]
fn ab_example_is_valid() {
    assert_eq!(errors(AB), "");
    let v = vs(AB);
    assert_eq!(
        v.spec.http[0].matches[0].headers["user-type"],
        StringMatch::exact("premium")
    );
    assert_eq!(v.spec.http[1].route[1].weight, 20);
}

#[test]
fn table_of_errors() {
    let cases: &[(&str, &str)] = &[
        (
            "spec: {hosts: [a.b], http: [{route: [{destination: {host: a.b}, weight: -1}]}]}",
            "expected 0 <= -1 <= 2147483647: spec.http[0].route[0].weight",
        ),
        (
            "spec: {hosts: [a.b], http: [{match: [{uri: {exact: /a, prefix: /b}}], route: [{destination: {host: a.b}}]}]}",
            "expected exactly one, got both: spec.http[0].match[0].uri.exact, spec.http[0].match[0].uri.prefix",
        ),
        (
            "spec: {hosts: [a.b], http: [{match: [{uri: {regex: '(a'}}], route: [{destination: {host: a.b}}]}]}",
            "spec.http[0].match[0].uri.regex",
        ),
        (
            "spec: {hosts: [a.b], http: [{timeout: ten, route: [{destination: {host: a.b}}]}]}",
            "time: invalid duration \"ten\": spec.http[0].timeout",
        ),
        (
            "spec: {hosts: [a.b], http: [{redirect: {uri: /x}, route: [{destination: {host: a.b}}]}]}",
            "expected exactly one, got both: spec.http[0].redirect, spec.http[0].route",
        ),
        (
            "spec: {hosts: [a.b], http: [{}]}",
            "HTTP route, redirect or direct_response is required: spec.http[0].directResponse, spec.http[0].redirect, spec.http[0].route",
        ),
        (
            "spec: {hosts: [a.b], http: [{fault: {}, route: [{destination: {host: a.b}}]}]}",
            "expected exactly one, got neither: spec.http[0].fault.abort, spec.http[0].fault.delay",
        ),
        (
            "spec: {hosts: [a.b], http: [{fault: {abort: {httpStatus: 700, percentage: {value: 101}}}, route: [{destination: {host: a.b}}]}]}",
            "HTTP status 700 is not in range 200-599: spec.http[0].fault.abort.httpStatus",
        ),
        (
            "spec: {hosts: [a.b], http: [{fault: {abort: {httpStatus: 500, percentage: {value: 101}}}, route: [{destination: {host: a.b}}]}]}",
            "percentage 101 is neither 0.0, nor in range [0.0001, 100.0]: spec.http[0].fault.abort.percentage.value",
        ),
        (
            "spec: {hosts: [a.b], http: [{retries: {attempts: 2, retryOn: 'bogus'}, route: [{destination: {host: a.b}}]}]}",
            "\"bogus\" is not a valid retryOn policy: spec.http[0].retries.retryOn",
        ),
        (
            "spec: {hosts: [a.b], http: [{rewrite: {uri: /a, uriRegexRewrite: {match: a, rewrite: b}}, route: [{destination: {host: a.b}}]}]}",
            "expected exactly one, got both: spec.http[0].rewrite.uri, spec.http[0].rewrite.uriRegexRewrite",
        ),
        (
            "spec: {hosts: [a.b], http: [{redirect: {uri: /a, prefixRewrite: /b}}]}",
            "expected exactly one, got both: spec.http[0].redirect.prefixRewrite, spec.http[0].redirect.uri",
        ),
        (
            "spec: {hosts: [a.b], http: [{route: [{destination: {host: a.b}, weight: 0}, {destination: {host: c.d}, weight: 0}]}]}",
            "total destination weight = 0: spec.http[0].route",
        ),
        (
            "spec: {hosts: ['*'], http: [{route: [{destination: {host: a.b}}]}]}",
            "wildcard host * is not allowed for virtual services bound to the mesh gateway: spec.hosts[0]",
        ),
        (
            "spec: {hosts: ['*.a.com', 'b.a.com'], gateways: [gw], http: [{route: [{destination: {host: a.b}}]}]}",
            "duplicate hosts in virtual service: *.a.com & b.a.com: spec.hosts[0], spec.hosts[1]",
        ),
        (
            "spec: {hosts: [a.b], http: [{route: [{destination: {host: a.b, subset: V_1}}]}]}",
            "subset name is invalid: V_1: spec.http[0].route[0].destination.subset",
        ),
        (
            "spec: {hosts: [a.b], http: [{corsPolicy: {allowMethods: [FETCH], maxAge: 1.5s}, route: [{destination: {host: a.b}}]}]}",
            "\"FETCH\" is not a supported HTTP method: spec.http[0].corsPolicy.allowMethods[0]",
        ),
        (
            "spec: {hosts: [a.b], http: [{headers: {request: {set: {':path': /x}}}, route: [{destination: {host: a.b}}]}]}",
            "invalid header \":path\": header cannot have \":\" prefix: spec.http[0].headers.request.set[:path]",
        ),
        (
            "spec: {hosts: [a.b], http: [{redirect: {prefixRewrite: /b}, match: [{uri: {exact: /a}}]}]}",
            "redirect prefix_rewrite requires all URI matches to use prefix match type: spec.http[0].redirect.prefixRewrite",
        ),
        (
            "spec: {hosts: [a.b], http: [{retries: {attempts: 0, perTryTimeout: 1s}, route: [{destination: {host: a.b}}]}]}",
            "http retry policy configured when attempts are set to 0 (disabled): spec.http[0].retries.attempts",
        ),
        (
            "spec: {hosts: [a.b], gateways: ['bad/Gw_x'], http: [{route: [{destination: {host: a.b}}]}]}",
            "invalid value for gateway name: \"Gw_x\": spec.gateways[0]",
        ),
        (
            "spec: {hosts: [a.b]}",
            "http, tcp or tls must be provided in virtual service",
        ),
    ];
    crate::istio::testing::each_error_contains(cases, errors);
}

#[test]
fn cors_max_age_precision() {
    let got = errors(
        "spec: {hosts: [a.b], http: [{corsPolicy: {maxAge: 1.5s}, route: [{destination: {host: a.b}}]}]}",
    );
    assert_eq!(
        got,
        "max_age duration is accurate only to seconds precision: spec.http[0].corsPolicy.maxAge"
    );
}

#[test]
fn unknown_fields_and_enum_values_are_rejected() {
    let v: serde_json::Value = serde_saphyr::from_str(
        "spec: {hosts: [a], http: [{route: [{destination: {host: a}}], retry: {attempts: 1}}]}",
    )
    .unwrap();
    let e = serde_json::from_value::<VirtualService>(v).unwrap_err();
    assert!(e.to_string().contains("unknown field `retry`"), "{e}");
    let v: serde_json::Value = serde_saphyr::from_str(
        "spec: {hosts: [a], http: [{redirect: {uri: /a, derivePort: SOMETIMES}}]}",
    )
    .unwrap();
    let e = serde_json::from_value::<VirtualService>(v).unwrap_err();
    assert!(
        e.to_string().contains("unknown redirect port selection"),
        "{e}"
    );
}

#[test]
fn direct_response_body() {
    let v = vs(
        "spec: {hosts: [a.b], http: [{directResponse: {status: 503, body: {bytes: aGVsbG8=}}}]}",
    );
    assert_eq!(validate(&v).to_string(), "");
    let body = v.spec.http[0]
        .direct_response
        .as_ref()
        .unwrap()
        .body
        .as_ref()
        .unwrap();
    assert_eq!(body.decode().unwrap(), b"hello");
    assert!(
        errors(
            "spec: {hosts: [a.b], http: [{directResponse: {status: 503, body: {bytes: '!!'}}}]}"
        )
        .contains("bytes is not valid base64")
    );
}

#[test]
fn overlapping_hosts() {
    assert!(hosts_overlap("*.a.com", "x.a.com"));
    assert!(hosts_overlap("*.com", "*.a.com"));
    assert!(!hosts_overlap("*.a.com", "a.com"));
    assert!(!hosts_overlap("a.com", "b.com"));
}
