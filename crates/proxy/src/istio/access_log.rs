//! Access log lines in Istio's default formats — TEXT (`EnvoyTextLogFormat`)
//! and JSON (`EnvoyJSONLogFormatIstio`) — from one record per request, plus
//! a filter in the spirit of Telemetry's CEL expressions
//! (`response.code >= 400`). Skiff appends the upstream attempt count
//! (Envoy's `%UPSTREAM_REQUEST_ATTEMPT_COUNT%`) so every retry shows.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use http::HeaderMap;

use super::flags::ResponseFlags;

/// One request, as the access log sees it. Missing values print as `-`.
#[derive(Debug, Clone)]
pub struct LogRecord<'a> {
    pub start_time: SystemTime,
    pub method: &'a str,
    /// `x-envoy-original-path` if a rewrite happened, else the path.
    pub path: &'a str,
    /// `HTTP/1.1`, `HTTP/2`.
    pub protocol: &'a str,
    /// 0 when no response was sent.
    pub response_code: u16,
    pub response_flags: ResponseFlags,
    /// `via_upstream`, `route_not_found`,
    /// `upstream_reset_before_response_started{overflow}`, ...
    pub response_code_details: &'a str,
    pub connection_termination_details: Option<&'a str>,
    pub upstream_transport_failure_reason: Option<&'a str>,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub duration: Duration,
    /// Time the upstream took to send the response head.
    pub upstream_service_time: Option<Duration>,
    pub x_forwarded_for: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub request_id: Option<&'a str>,
    pub authority: Option<&'a str>,
    pub upstream_host: Option<SocketAddr>,
    /// `outbound|80|v1|hello.default.svc.cluster.local`.
    pub upstream_cluster: Option<&'a str>,
    pub upstream_local_address: Option<SocketAddr>,
    pub downstream_local_address: Option<SocketAddr>,
    pub downstream_remote_address: Option<SocketAddr>,
    pub requested_server_name: Option<&'a str>,
    pub route_name: Option<&'a str>,
    /// Attempts sent upstream (1 + retries).
    pub upstream_attempts: u32,
    /// For filters on request headers.
    pub request_headers: Option<&'a HeaderMap>,
}

/// `accessLogEncoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Text,
    Json,
}

impl Encoding {
    pub fn parse(s: &str) -> Result<Encoding, String> {
        match s.to_ascii_uppercase().as_str() {
            "TEXT" => Ok(Encoding::Text),
            "JSON" => Ok(Encoding::Json),
            _ => Err(format!(
                "unknown access log encoding {s:?}: expected TEXT or JSON"
            )),
        }
    }
}

/// Text values: `-` when empty; control characters replaced so a header
/// cannot forge log lines.
fn text(out: &mut String, v: Option<&str>) {
    match v.filter(|v| !v.is_empty()) {
        None => out.push('-'),
        Some(v) => out.extend(v.chars().map(|c| if c.is_control() { '?' } else { c })),
    }
}

fn opt_addr(out: &mut String, a: Option<SocketAddr>) {
    match a {
        Some(a) => {
            let _ = write!(out, "{a}");
        }
        None => out.push('-'),
    }
}

fn json_str(out: &mut String, v: &str) {
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn json_opt(out: &mut String, v: Option<&str>) {
    match v.filter(|v| !v.is_empty()) {
        Some(v) => json_str(out, v),
        None => out.push_str("null"),
    }
}

impl LogRecord<'_> {
    fn start(&self) -> String {
        humantime::format_rfc3339_millis(self.start_time).to_string()
    }

    /// Istio's TEXT line (newline included) appended to `out`.
    pub fn format_text(&self, out: &mut String) {
        let _ = write!(out, "[{}] \"", self.start());
        text(out, Some(self.method));
        out.push(' ');
        text(out, Some(self.path));
        out.push(' ');
        text(out, Some(self.protocol));
        let _ = write!(out, "\" {} {} ", self.response_code, self.response_flags);
        text(out, Some(self.response_code_details));
        out.push(' ');
        text(out, self.connection_termination_details);
        out.push_str(" \"");
        text(out, self.upstream_transport_failure_reason);
        let _ = write!(
            out,
            "\" {} {} {} ",
            self.bytes_received,
            self.bytes_sent,
            self.duration.as_millis()
        );
        match self.upstream_service_time {
            Some(t) => {
                let _ = write!(out, "{}", t.as_millis());
            }
            None => out.push('-'),
        }
        for v in [
            self.x_forwarded_for,
            self.user_agent,
            self.request_id,
            self.authority,
        ] {
            out.push_str(" \"");
            text(out, v);
            out.push('"');
        }
        out.push_str(" \"");
        opt_addr(out, self.upstream_host);
        out.push_str("\" ");
        text(out, self.upstream_cluster);
        out.push(' ');
        opt_addr(out, self.upstream_local_address);
        out.push(' ');
        opt_addr(out, self.downstream_local_address);
        out.push(' ');
        opt_addr(out, self.downstream_remote_address);
        out.push(' ');
        text(out, self.requested_server_name);
        out.push(' ');
        text(out, self.route_name);
        let _ = writeln!(out, " {}", self.upstream_attempts);
    }

    /// Istio's JSON object (one line, newline included) appended to `out`.
    pub fn format_json(&self, out: &mut String) {
        let addr = |a: Option<SocketAddr>| a.map(|a| a.to_string());
        let fields: [(&str, Option<String>, bool); 25] = [
            ("start_time", Some(self.start()), true),
            ("route_name", self.route_name.map(str::to_string), true),
            ("method", Some(self.method.to_string()), true),
            ("path", Some(self.path.to_string()), true),
            ("protocol", Some(self.protocol.to_string()), true),
            ("response_code", Some(self.response_code.to_string()), false),
            (
                "response_flags",
                Some(self.response_flags.to_string()).filter(|f| f != "-"),
                true,
            ),
            (
                "response_code_details",
                Some(self.response_code_details.to_string()),
                true,
            ),
            (
                "connection_termination_details",
                self.connection_termination_details.map(str::to_string),
                true,
            ),
            (
                "bytes_received",
                Some(self.bytes_received.to_string()),
                false,
            ),
            ("bytes_sent", Some(self.bytes_sent.to_string()), false),
            (
                "duration",
                Some(self.duration.as_millis().to_string()),
                false,
            ),
            (
                "upstream_service_time",
                self.upstream_service_time
                    .map(|t| t.as_millis().to_string()),
                true,
            ),
            (
                "x_forwarded_for",
                self.x_forwarded_for.map(str::to_string),
                true,
            ),
            ("user_agent", self.user_agent.map(str::to_string), true),
            ("request_id", self.request_id.map(str::to_string), true),
            ("authority", self.authority.map(str::to_string), true),
            ("upstream_host", addr(self.upstream_host), true),
            (
                "upstream_cluster",
                self.upstream_cluster.map(str::to_string),
                true,
            ),
            (
                "upstream_local_address",
                addr(self.upstream_local_address),
                true,
            ),
            (
                "downstream_local_address",
                addr(self.downstream_local_address),
                true,
            ),
            (
                "downstream_remote_address",
                addr(self.downstream_remote_address),
                true,
            ),
            (
                "requested_server_name",
                self.requested_server_name.map(str::to_string),
                true,
            ),
            (
                "upstream_transport_failure_reason",
                self.upstream_transport_failure_reason.map(str::to_string),
                true,
            ),
            (
                "upstream_request_attempt_count",
                Some(self.upstream_attempts.to_string()),
                false,
            ),
        ];
        out.push('{');
        let mut first = true;
        for (k, v, quoted) in &fields {
            if !first {
                out.push(',');
            }
            first = false;
            json_str(out, k);
            out.push(':');
            match (v, quoted) {
                (Some(v), true) => json_str(out, v),
                (Some(v), false) => out.push_str(v),
                (None, _) => json_opt(out, None),
            }
        }
        out.push_str("}\n");
    }

    pub fn format(&self, encoding: Encoding, out: &mut String) {
        match encoding {
            Encoding::Text => self.format_text(out),
            Encoding::Json => self.format_json(out),
        }
    }
}

// ------------------------------------------------------------------ filter

/// A compiled log filter expression.
#[derive(Debug, Clone, PartialEq)]
pub struct LogFilter {
    expr: Expr,
    source: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Or(Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Cmp(Operand, CmpOp, Operand),
    Call(Operand, Method, Operand),
    Truth(Operand),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    StartsWith,
    EndsWith,
    Contains,
}

#[derive(Debug, Clone, PartialEq)]
enum Operand {
    Int(i64),
    Str(String),
    Bool(bool),
    Attr(Attr),
}

#[derive(Debug, Clone, PartialEq)]
enum Attr {
    ResponseCode,
    ResponseCodeDetails,
    ResponseFlags,
    ResponseDuration,
    RequestMethod,
    RequestPath,
    RequestHost,
    RequestProtocol,
    RequestId,
    RequestHeader(String),
    UpstreamAddress,
    UpstreamAttempts,
}

#[derive(Debug, Clone, PartialEq)]
enum Val<'a> {
    Int(i64),
    Str(std::borrow::Cow<'a, str>),
    Bool(bool),
    Null,
}

impl Attr {
    fn parse(path: &str) -> Result<Attr, String> {
        Ok(match path {
            "response.code" => Attr::ResponseCode,
            "response.code_details" => Attr::ResponseCodeDetails,
            "response.flags" => Attr::ResponseFlags,
            "response.duration" | "request.duration" => Attr::ResponseDuration,
            "request.method" => Attr::RequestMethod,
            "request.path" | "request.url_path" => Attr::RequestPath,
            "request.host" => Attr::RequestHost,
            "request.protocol" => Attr::RequestProtocol,
            "request.id" => Attr::RequestId,
            "upstream.address" => Attr::UpstreamAddress,
            "upstream.request_attempt_count" => Attr::UpstreamAttempts,
            other => return Err(format!("unknown attribute {other:?}")),
        })
    }

    fn eval<'a>(&self, r: &'a LogRecord<'_>) -> Val<'a> {
        use std::borrow::Cow;
        match self {
            Attr::ResponseCode => Val::Int(i64::from(r.response_code)),
            Attr::ResponseCodeDetails => Val::Str(Cow::Borrowed(r.response_code_details)),
            Attr::ResponseFlags => Val::Str(Cow::Owned(r.response_flags.to_string())),
            Attr::ResponseDuration => Val::Int(r.duration.as_millis() as i64),
            Attr::RequestMethod => Val::Str(Cow::Borrowed(r.method)),
            Attr::RequestPath => Val::Str(Cow::Borrowed(r.path)),
            Attr::RequestHost => r
                .authority
                .map_or(Val::Null, |a| Val::Str(Cow::Borrowed(a))),
            Attr::RequestProtocol => Val::Str(Cow::Borrowed(r.protocol)),
            Attr::RequestId => r
                .request_id
                .map_or(Val::Null, |a| Val::Str(Cow::Borrowed(a))),
            Attr::RequestHeader(h) => r
                .request_headers
                .and_then(|hs| hs.get(h.as_str()))
                .and_then(|v| v.to_str().ok())
                .map_or(Val::Null, |v| Val::Str(Cow::Borrowed(v))),
            Attr::UpstreamAddress => r
                .upstream_host
                .map_or(Val::Null, |a| Val::Str(Cow::Owned(a.to_string()))),
            Attr::UpstreamAttempts => Val::Int(i64::from(r.upstream_attempts)),
        }
    }
}

impl Operand {
    fn eval<'a>(&'a self, r: &'a LogRecord<'_>) -> Val<'a> {
        match self {
            Operand::Int(i) => Val::Int(*i),
            Operand::Str(s) => Val::Str(std::borrow::Cow::Borrowed(s)),
            Operand::Bool(b) => Val::Bool(*b),
            Operand::Attr(a) => a.eval(r),
        }
    }
}

struct Parser<'s> {
    s: &'s str,
    pos: usize,
}

impl<'s> Parser<'s> {
    fn ws(&mut self) {
        while let Some(c) = self.s[self.pos..]
            .chars()
            .next()
            .filter(|c| c.is_whitespace())
        {
            self.pos += c.len_utf8();
        }
    }

    fn eat(&mut self, tok: &str) -> bool {
        self.ws();
        if self.s[self.pos..].starts_with(tok) {
            self.pos += tok.len();
            true
        } else {
            false
        }
    }

    fn err(&self, what: &str) -> String {
        format!("{what} at column {} of {:?}", self.pos + 1, self.s)
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut e = self.and()?;
        while self.eat("||") {
            e = Expr::Or(Box::new(e), Box::new(self.and()?));
        }
        Ok(e)
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut e = self.unary()?;
        while self.eat("&&") {
            e = Expr::And(Box::new(e), Box::new(self.unary()?));
        }
        Ok(e)
    }

    fn unary(&mut self) -> Result<Expr, String> {
        self.ws();
        if self.s[self.pos..].starts_with('!') && !self.s[self.pos..].starts_with("!=") {
            self.pos += 1;
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        if self.eat("(") {
            let e = self.or()?;
            if !self.eat(")") {
                return Err(self.err("expected )"));
            }
            return Ok(e);
        }
        let left = self.operand()?;
        if self.eat(".") {
            let m = if self.eat("startsWith") {
                Method::StartsWith
            } else if self.eat("endsWith") {
                Method::EndsWith
            } else if self.eat("contains") {
                Method::Contains
            } else {
                return Err(self.err("expected startsWith, endsWith or contains"));
            };
            if !self.eat("(") {
                return Err(self.err("expected ("));
            }
            let arg = self.operand()?;
            if !self.eat(")") {
                return Err(self.err("expected )"));
            }
            return Ok(Expr::Call(left, m, arg));
        }
        for (tok, op) in [
            ("==", CmpOp::Eq),
            ("!=", CmpOp::Ne),
            ("<=", CmpOp::Le),
            (">=", CmpOp::Ge),
            ("<", CmpOp::Lt),
            (">", CmpOp::Gt),
        ] {
            if self.eat(tok) {
                let right = self.operand()?;
                return Ok(Expr::Cmp(left, op, right));
            }
        }
        Ok(Expr::Truth(left))
    }

    fn operand(&mut self) -> Result<Operand, String> {
        self.ws();
        let rest = &self.s[self.pos..];
        if let Some(q) = rest.chars().next().filter(|c| *c == '\'' || *c == '"') {
            let end = rest[1..]
                .find(q)
                .ok_or_else(|| self.err("unterminated string"))?;
            let v = rest[1..1 + end].to_string();
            self.pos += end + 2;
            return Ok(Operand::Str(v));
        }
        let n = rest
            .bytes()
            .take_while(|b| b.is_ascii_digit() || *b == b'-')
            .count();
        if n > 0 {
            let v = rest[..n].parse().map_err(|_| self.err("bad number"))?;
            self.pos += n;
            return Ok(Operand::Int(v));
        }
        let n = rest
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'.')
            .count();
        if n == 0 {
            return Err(self.err("expected a value or an attribute"));
        }
        let mut ident = &rest[..n];
        // `request.path.startsWith(...)`: leave the method to the caller.
        for m in [".startsWith", ".endsWith", ".contains"] {
            if let Some(base) = ident.strip_suffix(m) {
                ident = base;
            }
        }
        self.pos += ident.len();
        match ident {
            "true" => return Ok(Operand::Bool(true)),
            "false" => return Ok(Operand::Bool(false)),
            "request.headers" => {
                if !self.eat("[") {
                    return Err(self.err("expected request.headers['name']"));
                }
                let Operand::Str(name) = self.operand()? else {
                    return Err(self.err("expected a header name string"));
                };
                if !self.eat("]") {
                    return Err(self.err("expected ]"));
                }
                return Ok(Operand::Attr(Attr::RequestHeader(
                    name.to_ascii_lowercase(),
                )));
            }
            _ => {}
        }
        Attr::parse(ident)
            .map(Operand::Attr)
            .map_err(|e| self.err(&e))
    }
}

fn compare(a: &Val<'_>, op: CmpOp, b: &Val<'_>) -> bool {
    use std::cmp::Ordering::*;
    let ord = match (a, b) {
        (Val::Int(x), Val::Int(y)) => x.cmp(y),
        (Val::Str(x), Val::Str(y)) => x.cmp(y),
        (Val::Bool(x), Val::Bool(y)) => x.cmp(y),
        (Val::Null, Val::Null) => Equal,
        // Mismatched or missing values: only != holds.
        _ => return op == CmpOp::Ne,
    };
    match op {
        CmpOp::Eq => ord == Equal,
        CmpOp::Ne => ord != Equal,
        CmpOp::Lt => ord == Less,
        CmpOp::Le => ord != Greater,
        CmpOp::Gt => ord == Greater,
        CmpOp::Ge => ord != Less,
    }
}

fn eval(e: &Expr, r: &LogRecord<'_>) -> bool {
    match e {
        Expr::Or(a, b) => eval(a, r) || eval(b, r),
        Expr::And(a, b) => eval(a, r) && eval(b, r),
        Expr::Not(a) => !eval(a, r),
        Expr::Cmp(a, op, b) => compare(&a.eval(r), *op, &b.eval(r)),
        Expr::Call(a, m, b) => match (a.eval(r), b.eval(r)) {
            (Val::Str(x), Val::Str(y)) => match m {
                Method::StartsWith => x.starts_with(&*y),
                Method::EndsWith => x.ends_with(&*y),
                Method::Contains => x.contains(&*y),
            },
            _ => false,
        },
        Expr::Truth(a) => matches!(a.eval(r), Val::Bool(true)),
    }
}

impl LogFilter {
    /// Parse an expression: attributes (`response.code`, `response.flags`,
    /// `response.code_details`, `response.duration` (ms), `request.method`,
    /// `request.path`, `request.host`, `request.protocol`, `request.id`,
    /// `request.headers['x']`, `upstream.address`,
    /// `upstream.request_attempt_count`), integer/string/bool literals,
    /// `== != < <= > >=`, `.startsWith() .endsWith() .contains()`,
    /// `&& || !` and parentheses.
    pub fn parse(s: &str) -> Result<LogFilter, String> {
        let mut p = Parser { s, pos: 0 };
        let expr = p.or()?;
        p.ws();
        if p.pos != s.len() {
            return Err(p.err("unexpected input"));
        }
        Ok(LogFilter {
            expr,
            source: s.to_string(),
        })
    }

    pub fn matches(&self, r: &LogRecord<'_>) -> bool {
        eval(&self.expr, r)
    }

    pub fn source(&self) -> &str {
        &self.source
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> LogRecord<'static> {
        LogRecord {
            start_time: SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
            method: "GET",
            path: "/get",
            protocol: "HTTP/1.1",
            response_code: 503,
            response_flags: ResponseFlags::UPSTREAM_OVERFLOW,
            response_code_details: "upstream_reset_before_response_started{overflow}",
            connection_termination_details: None,
            upstream_transport_failure_reason: None,
            bytes_received: 0,
            bytes_sent: 81,
            duration: Duration::from_millis(2),
            upstream_service_time: None,
            x_forwarded_for: None,
            user_agent: Some("fortio.org/fortio-1.69.5"),
            request_id: Some("b0ab34e0-4a1d-9a6a-b77d-ad3d94e1fc5b"),
            authority: Some("httpbin:8000"),
            upstream_host: Some("10.244.0.5:80".parse().unwrap()),
            upstream_cluster: Some("outbound|8000||httpbin.default.svc.cluster.local"),
            upstream_local_address: None,
            downstream_local_address: Some("10.96.1.2:8000".parse().unwrap()),
            downstream_remote_address: Some("10.244.0.9:51234".parse().unwrap()),
            requested_server_name: None,
            route_name: Some("default"),
            upstream_attempts: 1,
            request_headers: None,
        }
    }

    #[test]
    fn istio_text_line() {
        let mut out = String::new();
        record().format_text(&mut out);
        assert_eq!(
            out,
            "[2023-11-14T22:13:20.123Z] \"GET /get HTTP/1.1\" 503 UO upstream_reset_before_response_started{overflow} - \"-\" 0 81 2 - \"-\" \"fortio.org/fortio-1.69.5\" \"b0ab34e0-4a1d-9a6a-b77d-ad3d94e1fc5b\" \"httpbin:8000\" \"10.244.0.5:80\" outbound|8000||httpbin.default.svc.cluster.local - 10.96.1.2:8000 10.244.0.9:51234 - default 1\n"
        );
    }

    #[test]
    fn json_line_has_istio_keys() {
        let mut r = record();
        r.user_agent = Some("evil\"\nagent");
        let mut out = String::new();
        r.format_json(&mut out);
        assert!(out.ends_with("}\n") && out.matches('\n').count() == 1);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        for k in [
            "start_time",
            "route_name",
            "method",
            "path",
            "protocol",
            "response_code",
            "response_flags",
            "response_code_details",
            "connection_termination_details",
            "bytes_received",
            "bytes_sent",
            "duration",
            "upstream_service_time",
            "x_forwarded_for",
            "user_agent",
            "request_id",
            "authority",
            "upstream_host",
            "upstream_cluster",
            "upstream_local_address",
            "downstream_local_address",
            "downstream_remote_address",
            "requested_server_name",
            "upstream_transport_failure_reason",
        ] {
            assert!(v.get(k).is_some(), "missing {k}");
        }
        assert_eq!(v["response_code"], 503);
        assert_eq!(v["response_flags"], "UO");
        assert_eq!(v["bytes_sent"], 81);
        assert_eq!(v["user_agent"], "evil\"\nagent");
        assert!(v["x_forwarded_for"].is_null());
    }

    #[test]
    fn text_neutralizes_control_characters() {
        let mut r = record();
        r.user_agent = Some("a\nb");
        let mut out = String::new();
        r.format_text(&mut out);
        assert!(out.contains("\"a?b\""));
        assert_eq!(out.matches('\n').count(), 1);
    }

    #[test]
    fn filters() {
        let mut r = record();
        let mut h = HeaderMap::new();
        h.insert("x-debug", "1".parse().unwrap());
        r.request_headers = Some(&h);
        let cases = [
            ("response.code >= 400", true),
            ("response.code >= 400 && request.method == 'POST'", false),
            ("response.code < 500 || response.flags == \"UO\"", true),
            ("!(response.code == 503)", false),
            ("request.path.startsWith('/ge')", true),
            ("request.headers['X-Debug'] == '1'", true),
            ("request.headers['x-missing'] == '1'", false),
            ("request.headers['x-missing'] != '1'", true),
            ("response.duration > 1", true),
            ("upstream.request_attempt_count > 1", false),
        ];
        for (src, want) in cases {
            let f = LogFilter::parse(src).unwrap();
            assert_eq!(f.matches(&r), want, "{src}");
        }
        for bad in [
            "response.code >=",
            "response.bogus == 1",
            "(response.code == 1",
            "response.code == 'x' extra",
        ] {
            assert!(LogFilter::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn encodings() {
        assert_eq!(Encoding::parse("json"), Ok(Encoding::Json));
        assert!(Encoding::parse("yaml").is_err());
    }

    proptest::proptest! {
        /// Filters come from users: parsing never panics.
        #[test]
        fn arbitrary_filters_never_panic(s in "\\PC{0,40}") {
            if let Ok(f) = LogFilter::parse(&s) {
                let _ = f.matches(&record());
            }
        }
    }
}
