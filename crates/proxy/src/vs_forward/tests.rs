use super::attempts::attempt_count;
use super::mirror::shadow_host;
use super::*;
use crate::istio::retry::AttemptOutcome;

#[test]
fn helpers() {
    assert_eq!(
        shadow_host("a.example.com").unwrap(),
        "a.example.com-shadow"
    );
    assert_eq!(
        shadow_host("a.example.com:8080").unwrap(),
        "a.example.com-shadow:8080"
    );
    assert_eq!(attempt_count(1), "1");
    assert_eq!(attempt_count(12), "12");
    let id = request_id();
    let s = id.to_str().unwrap();
    assert_eq!(s.len(), 36, "{s}");
    assert_eq!(s.as_bytes()[14], b'4');
    assert_ne!(request_id(), id);
    for (a, b) in [
        (0, 0),
        (u64::MAX, u64::MAX),
        (0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210),
    ] {
        let want = format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0x0fff,
            (b >> 48) & 0x3fff | 0x8000,
            b & 0xffff_ffff_ffff
        );
        assert_eq!(std::str::from_utf8(&uuid(a, b)).unwrap(), want);
    }
    let p = retry::RetryPolicy::istio_default();
    assert!(
        !needs_replay(&p, &Method::POST),
        "the default never repeats a POST the app saw"
    );
    let five: skiff_api::istio::virtual_service::HttpRetry =
        crate::istio::testing::yaml("{attempts: 2, retryOn: 5xx}");
    let p = retry::RetryPolicy::compile(Some(&five), false).unwrap();
    assert!(needs_replay(&p, &Method::PUT) && !needs_replay(&p, &Method::POST));
    let opted_in = retry::RetryPolicy::compile(Some(&five), true).unwrap();
    assert!(needs_replay(&opted_in, &Method::POST));
}

/// The head is kept only when `needs_replay`: every retry of a request
/// the app may have seen must be one it allows.
#[test]
fn every_retry_after_the_app_saw_the_request_has_its_head() {
    let mut policies = vec![
        retry::RetryPolicy::istio_default(),
        retry::RetryPolicy::disabled(),
    ];
    for on in [
        "5xx",
        "gateway-error",
        "reset",
        "retriable-4xx",
        "503",
        "envoy-ratelimited",
        "cancelled,deadline-exceeded,internal,resource-exhausted,unavailable",
        "connect-failure,refused-stream,reset-before-request",
        "retriable-status-codes",
    ] {
        for opt_in in [false, true] {
            let r: skiff_api::istio::virtual_service::HttpRetry =
                crate::istio::testing::yaml(&format!("{{attempts: 2, retryOn: '{on}'}}"));
            policies.push(retry::RetryPolicy::compile(Some(&r), opt_in).unwrap());
        }
    }
    let mut responses = Vec::new();
    for status in [200, 409, 500, 502, 503] {
        responses.push((status, HeaderMap::new()));
        for (name, value) in [
            ("grpc-status", "1"),
            ("grpc-status", "4"),
            ("grpc-status", "8"),
            ("grpc-status", "13"),
            ("grpc-status", "14"),
            ("x-envoy-ratelimited", "true"),
        ] {
            let mut h = HeaderMap::new();
            h.insert(name, HeaderValue::from_static(value));
            responses.push((status, h));
        }
    }
    let mut retried = 0;
    for p in &policies {
        for method in [Method::GET, Method::POST] {
            let mut outcomes = vec![
                AttemptOutcome::ResetAfterRequest,
                AttemptOutcome::PerTryTimeout,
            ];
            outcomes.extend(responses.iter().map(|(s, h)| AttemptOutcome::Response {
                status: http::StatusCode::from_u16(*s).unwrap(),
                headers: h,
            }));
            for o in &outcomes {
                if p.should_retry(o, &method, 0).is_ok() {
                    assert!(needs_replay(p, &method), "{p:?} {method} {o:?}");
                    retried += 1;
                }
            }
        }
    }
    assert!(retried > 100, "{retried}");
}
