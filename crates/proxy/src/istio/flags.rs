//! Envoy response flags (`%RESPONSE_FLAGS%`, `x-skiff-flags`), as a bitset
//! so a request can carry several (`URX,UF`) without allocating.

use std::fmt;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ResponseFlags(u32);

macro_rules! flags {
    ($($name:ident = $bit:literal => $short:literal, $long:literal;)+) => {
        impl ResponseFlags {
            $(pub const $name: ResponseFlags = ResponseFlags(1 << $bit);)+

            /// (flag, short name, long name) in Envoy's order.
            pub const ALL: &'static [(ResponseFlags, &'static str, &'static str)] = &[
                $((ResponseFlags::$name, $short, $long),)+
            ];
        }
    };
}

flags! {
    FAILED_LOCAL_HEALTH_CHECK = 0 => "LH", "FailedLocalHealthCheck";
    NO_HEALTHY_UPSTREAM = 1 => "UH", "NoHealthyUpstream";
    UPSTREAM_REQUEST_TIMEOUT = 2 => "UT", "UpstreamRequestTimeout";
    LOCAL_RESET = 3 => "LR", "LocalReset";
    UPSTREAM_REMOTE_RESET = 4 => "UR", "UpstreamRemoteReset";
    UPSTREAM_CONNECTION_FAILURE = 5 => "UF", "UpstreamConnectionFailure";
    UPSTREAM_CONNECTION_TERMINATION = 6 => "UC", "UpstreamConnectionTermination";
    UPSTREAM_OVERFLOW = 7 => "UO", "UpstreamOverflow";
    NO_ROUTE_FOUND = 8 => "NR", "NoRouteFound";
    DELAY_INJECTED = 9 => "DI", "DelayInjected";
    FAULT_INJECTED = 10 => "FI", "FaultInjected";
    RATE_LIMITED = 11 => "RL", "RateLimited";
    UNAUTHORIZED_EXTERNAL_SERVICE = 12 => "UAEX", "UnauthorizedExternalService";
    RATE_LIMIT_SERVICE_ERROR = 13 => "RLSE", "RateLimitServiceError";
    DOWNSTREAM_CONNECTION_TERMINATION = 14 => "DC", "DownstreamConnectionTermination";
    UPSTREAM_RETRY_LIMIT_EXCEEDED = 15 => "URX", "UpstreamRetryLimitExceeded";
    STREAM_IDLE_TIMEOUT = 16 => "SI", "StreamIdleTimeout";
    INVALID_ENVOY_REQUEST_HEADERS = 17 => "IH", "InvalidEnvoyRequestHeaders";
    DOWNSTREAM_PROTOCOL_ERROR = 18 => "DPE", "DownstreamProtocolError";
    UPSTREAM_MAX_STREAM_DURATION_REACHED = 19 => "UMSDR", "UpstreamMaxStreamDurationReached";
    RESPONSE_FROM_CACHE_FILTER = 20 => "RFCF", "ResponseFromCacheFilter";
    NO_FILTER_CONFIG_FOUND = 21 => "NFCF", "NoFilterConfigFound";
    DURATION_TIMEOUT = 22 => "DT", "DurationTimeout";
    UPSTREAM_PROTOCOL_ERROR = 23 => "UPE", "UpstreamProtocolError";
    NO_CLUSTER_FOUND = 24 => "NC", "NoClusterFound";
    OVERLOAD_MANAGER = 25 => "OM", "OverloadManagerTerminated";
    DNS_RESOLUTION_FAILED = 26 => "DF", "DnsResolutionFailed";
    DROP_OVERLOAD = 27 => "DO", "DropOverload";
}

impl ResponseFlags {
    pub const NONE: ResponseFlags = ResponseFlags(0);

    #[inline]
    pub fn set(&mut self, f: ResponseFlags) {
        self.0 |= f.0;
    }

    #[inline]
    pub fn has(self, f: ResponseFlags) -> bool {
        self.0 & f.0 != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn bits(self) -> u32 {
        self.0
    }

    pub fn from_bits(bits: u32) -> ResponseFlags {
        ResponseFlags(bits)
    }

    /// Parse one short name (`UO`).
    pub fn from_short(s: &str) -> Option<ResponseFlags> {
        ResponseFlags::ALL
            .iter()
            .find(|(_, short, _)| *short == s)
            .map(|(f, _, _)| *f)
    }
}

impl std::ops::BitOr for ResponseFlags {
    type Output = ResponseFlags;
    fn bitor(self, rhs: ResponseFlags) -> ResponseFlags {
        ResponseFlags(self.0 | rhs.0)
    }
}

/// Comma-joined short names; `-` when none (Envoy's `%RESPONSE_FLAGS%`).
impl fmt::Display for ResponseFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("-");
        }
        let mut first = true;
        for (flag, short, _) in ResponseFlags::ALL {
            if self.has(*flag) {
                if !first {
                    f.write_str(",")?;
                }
                f.write_str(short)?;
                first = false;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display() {
        assert_eq!(ResponseFlags::NONE.to_string(), "-");
        let f = ResponseFlags::UPSTREAM_RETRY_LIMIT_EXCEEDED
            | ResponseFlags::UPSTREAM_CONNECTION_FAILURE;
        assert_eq!(f.to_string(), "UF,URX");
        assert_eq!(
            ResponseFlags::from_short("UO"),
            Some(ResponseFlags::UPSTREAM_OVERFLOW)
        );
        assert_eq!(ResponseFlags::ALL.len(), 28);
    }
}
