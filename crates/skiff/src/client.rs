//! The CLI's client for the admin API.

use std::path::Path;

use anyhow::{Context, anyhow};
use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::paths::{self, ServerInfo};

pub struct Client {
    base: String,
    token: Option<String>,
    http: HttpClient<HttpConnector, Full<Bytes>>,
}

impl Client {
    /// `server`/`token` from flags or env; otherwise what `skiff serve` wrote
    /// into the data directory; otherwise the default admin address.
    pub fn discover(server: Option<String>, data_dir: &Path) -> Client {
        let base = server
            .filter(|s| !s.is_empty())
            .or_else(|| ServerInfo::read(data_dir).map(|i| i.admin))
            .unwrap_or_else(|| format!("http://{}", paths::DEFAULT_ADMIN));
        let base = if base.contains("://") {
            base
        } else {
            format!("http://{base}")
        };
        let token = std::env::var("SKIFF_TOKEN")
            .ok()
            .filter(|t| !t.is_empty())
            .or_else(|| {
                std::fs::read_to_string(paths::token_file(data_dir))
                    .ok()
                    .map(|t| t.trim().to_string())
            });
        Client {
            base: base.trim_end_matches('/').to_string(),
            token,
            http: HttpClient::builder(TokioExecutor::new()).build_http(),
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<http::Response<Incoming>> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(header::ACCEPT, "application/json");
        if let Some(t) = &self.token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        // Who asks: Knative records it as the creator / last modifier.
        if let Some(user) = std::env::var("USER").ok().filter(|u| !u.is_empty()) {
            req = req.header("impersonate-user", user);
        }
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        let req = req.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        self.http.request(req).await.map_err(|e| {
            anyhow!(
                "cannot reach the Skiff server at {}: {e}\n(is `skiff serve` running? point the CLI at it with --server or SKIFF_SERVER)",
                self.base
            )
        })
    }

    /// Send a request and return the JSON body of a 2xx answer; other answers
    /// become errors in kubectl's wording.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let body = body.map(serde_json::to_vec).transpose()?;
        let resp = self.send(method, path, body).await?;
        let status = resp.status();
        // Admission warnings, as client-go's default handler shows them.
        for w in resp.headers().get_all(header::WARNING) {
            if let Some(text) = w.to_str().ok().and_then(warning_text) {
                eprintln!("Warning: {text}");
            }
        }
        let bytes = resp
            .into_body()
            .collect()
            .await
            .context("reading the server's answer")?
            .to_bytes();
        let json: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(json);
        }
        Err(ServerError::from_status(status, &json, &bytes).into())
    }

    /// A streamed GET (logs).
    pub async fn stream(&self, path: &str) -> anyhow::Result<Incoming> {
        let resp = self.send(Method::GET, path, None).await?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp.into_body());
        }
        let bytes = resp.into_body().collect().await?.to_bytes();
        let json: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Err(ServerError::from_status(status, &json, &bytes).into())
    }
}

/// The text of a `Warning: 299 - "text"` header.
fn warning_text(h: &str) -> Option<String> {
    let quoted = h.strip_prefix("299 - ")?;
    serde_json::from_str::<String>(quoted).ok()
}

/// A Kubernetes `Status` failure from the server.
#[derive(Debug, thiserror::Error)]
#[error("Error from server ({reason}): {message}")]
pub struct ServerError {
    pub code: u16,
    pub reason: String,
    pub message: String,
    /// Per-item causes (apply): `(item index, message)`.
    pub causes: Vec<(Option<usize>, String)>,
}

impl ServerError {
    fn from_status(status: StatusCode, json: &Value, raw: &[u8]) -> ServerError {
        let reason = json["reason"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| {
                status
                    .canonical_reason()
                    .unwrap_or("Error")
                    .replace(' ', "")
            });
        let message = json["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| String::from_utf8_lossy(raw).trim().to_string());
        let causes = json["details"]["causes"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|c| {
                        (
                            c["field"].as_str().and_then(|f| f.parse().ok()),
                            c["message"].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        ServerError {
            code: status.as_u16(),
            reason,
            message,
            causes,
        }
    }
}
