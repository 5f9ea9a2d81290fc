//! Fault injection (`fault.delay`, `fault.abort`) as Envoy's fault filter
//! does it: percentages in parts per million, delay before abort, an unset
//! percentage affects no request.

use std::time::Duration;

use http::StatusCode;
use skiff_api::istio::duration;
use skiff_api::istio::virtual_service::{GRPC_STATUSES, HttpFaultInjection};

use super::rand;

/// Body of an injected abort, byte for byte Envoy's.
pub const ABORT_BODY: &str = "fault filter abort";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbortKind {
    Http(StatusCode),
    /// gRPC status code (HTTP 200 with `grpc-status`).
    Grpc(u32),
}

#[derive(Debug, Clone)]
pub struct Fault {
    delay: Option<(Duration, u32)>,
    abort: Option<(AbortKind, u32)>,
}

/// What to do to one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultDecision {
    /// Wait this long before going on (flag `DI`).
    pub delay: Option<Duration>,
    /// Reply with this instead of forwarding (flag `FI`).
    pub abort: Option<AbortKind>,
}

/// Istio's percent → Envoy FractionalPercent (per million, truncated).
fn ppm(percent: f64) -> u32 {
    (percent * 10_000.0).clamp(0.0, 1_000_000.0) as u32
}

impl Fault {
    pub fn compile(f: &HttpFaultInjection) -> Result<Fault, String> {
        let delay = match &f.delay {
            Some(d) => {
                let fixed = d
                    .fixed_delay
                    .as_deref()
                    .ok_or("fault.delay needs fixedDelay (exponentialDelay is not supported)")?;
                let dur = duration::parse_checked(fixed)?;
                let p = match (&d.percentage, d.percent) {
                    (Some(p), _) => ppm(p.value),
                    (None, Some(p)) => ppm(f64::from(p)),
                    (None, None) => 0,
                };
                Some((dur, p))
            }
            None => None,
        };
        let abort = match &f.abort {
            Some(a) => {
                let kind = match (a.http_status, &a.grpc_status) {
                    (Some(s), _) => AbortKind::Http(
                        u16::try_from(s)
                            .ok()
                            .and_then(|s| StatusCode::from_u16(s).ok())
                            .ok_or_else(|| format!("HTTP status {s} is not valid"))?,
                    ),
                    (None, Some(g)) => AbortKind::Grpc(
                        GRPC_STATUSES
                            .iter()
                            .position(|n| n == g)
                            .ok_or_else(|| format!("gRPC status {g:?} is not supported"))?
                            as u32,
                    ),
                    (None, None) => return Err("fault.abort needs httpStatus or grpcStatus".into()),
                };
                Some((kind, a.percentage.map_or(0, |p| ppm(p.value))))
            }
            None => None,
        };
        Ok(Fault { delay, abort })
    }

    /// The injected delay and the share of requests it hits, in parts per
    /// million (for `proxy-config`).
    pub fn delay(&self) -> Option<(Duration, u32)> {
        self.delay
    }

    /// The injected abort and the share of requests it hits, in parts per
    /// million.
    pub fn abort(&self) -> Option<(AbortKind, u32)> {
        self.abort
    }

    /// Decide with explicit rolls in `0..1_000_000` (for tests).
    pub fn decide_with(&self, delay_roll: u32, abort_roll: u32) -> FaultDecision {
        FaultDecision {
            delay: self.delay.and_then(|(d, p)| (delay_roll < p).then_some(d)),
            abort: self.abort.and_then(|(k, p)| (abort_roll < p).then_some(k)),
        }
    }

    /// Decide for one request.
    #[inline]
    pub fn decide(&self) -> FaultDecision {
        let d = if self.delay.is_some() {
            rand::ppm_roll()
        } else {
            u32::MAX
        };
        let a = if self.abort.is_some() {
            rand::ppm_roll()
        } else {
            u32::MAX
        };
        self.decide_with(d, a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(yaml: &str) -> Fault {
        Fault::compile(&crate::istio::testing::yaml(yaml)).unwrap()
    }

    #[test]
    fn percentages() {
        let f = fault(
            "{delay: {fixedDelay: 7s, percentage: {value: 100}}, abort: {httpStatus: 500, percentage: {value: 10}}}",
        );
        let d = f.decide_with(999_999, 99_999);
        assert_eq!(d.delay, Some(Duration::from_secs(7)));
        assert_eq!(
            d.abort,
            Some(AbortKind::Http(StatusCode::INTERNAL_SERVER_ERROR))
        );
        assert_eq!(
            f.decide_with(0, 100_000).abort,
            None,
            "10% = rolls below 100000"
        );
        // 0.1% is 1000 ppm.
        let f = fault("{abort: {httpStatus: 503, percentage: {value: 0.1}}}");
        assert!(f.decide_with(0, 999).abort.is_some());
        assert!(f.decide_with(0, 1000).abort.is_none());
    }

    #[test]
    fn unset_percentage_affects_nothing() {
        let f = fault("{abort: {httpStatus: 500}, delay: {fixedDelay: 1s}}");
        for roll in [0, 1, 500_000, 999_999] {
            assert_eq!(f.decide_with(roll, roll), FaultDecision::default());
        }
        // The deprecated integer percent still works for delays.
        let f = fault("{delay: {fixedDelay: 1s, percent: 50}}");
        assert!(f.decide_with(499_999, 0).delay.is_some());
        assert!(f.decide_with(500_000, 0).delay.is_none());
    }

    #[test]
    fn grpc_abort() {
        let f = fault("{abort: {grpcStatus: UNAVAILABLE, percentage: {value: 100}}}");
        assert_eq!(f.decide_with(0, 0).abort, Some(AbortKind::Grpc(14)));
    }

    #[test]
    fn random_rolls_follow_the_percentage() {
        // 50% over 20k draws: a generous bound that a working roll cannot miss
        // (the standard deviation is ~71).
        let f = fault("{abort: {httpStatus: 500, percentage: {value: 50}}}");
        let n = (0..20_000).filter(|_| f.decide().abort.is_some()).count();
        assert!((9_000..11_000).contains(&n), "{n}");
    }
}
