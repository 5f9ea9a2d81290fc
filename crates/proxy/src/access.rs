//! The end of a request: its access log line, written when its response
//! body is done — with the bytes actually sent and the whole duration, as
//! Envoy logs at stream end. Logging is off unless `skiff serve
//! --access-log` says where; when off, nothing here is allocated per
//! request.

use std::borrow::Cow;
use std::cell::RefCell;
use std::fs::File;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::HeaderMap;
use http::header::{self, HeaderName};

use crate::istio::access_log::{Encoding, LogFilter, LogRecord};
use crate::istio::flags::ResponseFlags;

/// Where access log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    Stdout,
    File(PathBuf),
}

impl LogTarget {
    /// `stdout`, `-` or a file path (appended to).
    pub fn parse(s: &str) -> LogTarget {
        match s {
            "stdout" | "-" | "/dev/stdout" => LogTarget::Stdout,
            path => LogTarget::File(PathBuf::from(path)),
        }
    }
}

/// The gateway's access log: format, filter and file.
#[derive(Debug)]
pub struct AccessLog {
    pub encoding: Encoding,
    pub filter: Option<LogFilter>,
    /// Lines are written with one `write` each (O_APPEND for files; stdout
    /// is a duplicate of fd 1, so no lock is taken).
    out: File,
}

thread_local! {
    /// One line buffer per gateway worker, reused.
    static LINE: RefCell<String> = RefCell::new(String::with_capacity(512));
}

impl AccessLog {
    pub fn open(
        target: &LogTarget,
        encoding: Encoding,
        filter: Option<LogFilter>,
    ) -> io::Result<AccessLog> {
        let out = match target {
            LogTarget::Stdout => {
                use std::os::fd::AsFd;
                File::from(io::stdout().as_fd().try_clone_to_owned()?)
            }
            LogTarget::File(p) => std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)?,
        };
        Ok(AccessLog {
            encoding,
            filter,
            out,
        })
    }

    /// Write `rec` if the filter lets it through.
    pub fn write(&self, rec: &LogRecord<'_>) {
        if let Some(f) = &self.filter
            && !f.matches(rec)
        {
            return;
        }
        LINE.with(|line| {
            let mut line = line.borrow_mut();
            line.clear();
            rec.format(self.encoding, &mut line);
            // Best effort: a full disk must not fail requests.
            let _ = (&self.out).write_all(line.as_bytes());
        });
    }
}

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

fn header_string(h: &HeaderMap, name: &HeaderName) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// One request's log record, filled in as the request goes, written when
/// its response is done.
#[derive(Debug)]
pub struct Pending {
    log: Arc<AccessLog>,
    start: SystemTime,
    started: Instant,
    method: http::Method,
    path: String,
    protocol: &'static str,
    pub code: u16,
    pub flags: ResponseFlags,
    pub details: Cow<'static, str>,
    xff: Option<String>,
    user_agent: Option<String>,
    request_id: Option<String>,
    authority: Option<String>,
    pub upstream_host: Option<SocketAddr>,
    pub cluster: Option<Arc<str>>,
    pub downstream_local: Option<SocketAddr>,
    pub downstream_remote: Option<SocketAddr>,
    pub sni: Option<String>,
    pub route_name: Option<Box<str>>,
    pub attempts: u32,
    pub upstream_service_time: Option<Duration>,
    pub bytes_received: u64,
}

/// The protocol as Envoy's `%PROTOCOL%` prints it.
pub fn protocol(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2",
        http::Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}

impl Pending {
    /// Capture what the log needs from the request as received.
    pub fn capture<B>(
        log: &Arc<AccessLog>,
        req: &http::Request<B>,
        started: Instant,
        downstream_local: SocketAddr,
        downstream_remote: SocketAddr,
        sni: Option<&str>,
    ) -> Box<Pending> {
        let h = req.headers();
        let authority = req
            .uri()
            .authority()
            .map(|a| a.as_str().to_string())
            .or_else(|| header_string(h, &header::HOST));
        let bytes_received = h
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Box::new(Pending {
            log: log.clone(),
            start: SystemTime::now(),
            started,
            method: req.method().clone(),
            path: req
                .uri()
                .path_and_query()
                .map_or_else(|| "/".to_string(), |p| p.as_str().to_string()),
            protocol: protocol(req.version()),
            code: 0,
            flags: ResponseFlags::NONE,
            details: Cow::Borrowed("via_upstream"),
            xff: header_string(h, &crate::headers::X_FORWARDED_FOR),
            user_agent: header_string(h, &header::USER_AGENT),
            request_id: header_string(h, &X_REQUEST_ID),
            authority,
            upstream_host: None,
            cluster: None,
            downstream_local: Some(downstream_local),
            downstream_remote: Some(downstream_remote),
            sni: sni.map(str::to_string),
            route_name: None,
            attempts: 0,
            upstream_service_time: None,
            bytes_received,
        })
    }

    /// The request id the gateway generated (logged as sent upstream).
    pub fn set_request_id(&mut self, id: &str) {
        if self.request_id.is_none() {
            self.request_id = Some(id.to_string());
        }
    }

    /// Write the line: `bytes_sent` of the body went out; `clean`: the
    /// response completed (else the client went away: flag `DC`).
    pub fn write(mut self: Box<Self>, bytes_sent: u64, clean: bool) {
        if !clean {
            self.flags
                .set(ResponseFlags::DOWNSTREAM_CONNECTION_TERMINATION);
        }
        let rec = LogRecord {
            start_time: self.start,
            method: self.method.as_str(),
            path: &self.path,
            protocol: self.protocol,
            response_code: self.code,
            response_flags: self.flags,
            response_code_details: &self.details,
            connection_termination_details: None,
            upstream_transport_failure_reason: None,
            bytes_received: self.bytes_received,
            bytes_sent,
            duration: self.started.elapsed(),
            upstream_service_time: self.upstream_service_time,
            x_forwarded_for: self.xff.as_deref(),
            user_agent: self.user_agent.as_deref(),
            request_id: self.request_id.as_deref(),
            authority: self.authority.as_deref(),
            upstream_host: self.upstream_host,
            upstream_cluster: self.cluster.as_deref(),
            upstream_local_address: None,
            downstream_local_address: self.downstream_local,
            downstream_remote_address: self.downstream_remote,
            requested_server_name: self.sni.as_deref(),
            route_name: self.route_name.as_deref(),
            upstream_attempts: self.attempts,
            request_headers: None,
        };
        self.log.write(&rec);
    }
}

/// What a logged request keeps until its response body is done: its log
/// record and the body bytes sent so far.
#[derive(Debug, Default)]
pub struct Extras {
    pub log: Option<Box<Pending>>,
    pub bytes_sent: u64,
}

impl Extras {
    /// The response is done (`clean`) or abandoned: write the log line.
    pub fn finish(self, clean: bool) {
        if let Some(p) = self.log {
            p.write(self.bytes_sent, clean);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_written_when_the_filter_matches() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let log = Arc::new(
            AccessLog::open(
                &LogTarget::File(path.clone()),
                Encoding::Text,
                Some(LogFilter::parse("response.code >= 400").unwrap()),
            )
            .unwrap(),
        );
        let req = http::Request::builder()
            .uri("/a?b=1")
            .header("host", "h.example.com")
            .header("user-agent", "curl/8")
            .body(())
            .unwrap();
        let addr: SocketAddr = "127.0.0.1:80".parse().unwrap();
        for (code, flags) in [
            (200, ResponseFlags::NONE),
            (503, ResponseFlags::UPSTREAM_OVERFLOW),
        ] {
            let mut p = Pending::capture(&log, &req, Instant::now(), addr, addr, None);
            p.code = code;
            p.flags = flags;
            p.attempts = 1;
            let x = Box::new(Extras {
                log: Some(p),
                bytes_sent: 81,
            });
            x.finish(true);
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(
            text.contains("\"GET /a?b=1 HTTP/1.1\" 503 UO via_upstream - \"-\" 0 81 "),
            "{text}"
        );
        assert!(text.contains("\"curl/8\""), "{text}");
        assert!(
            text.trim_end().ends_with(" 1"),
            "attempt count last: {text}"
        );
    }
}
