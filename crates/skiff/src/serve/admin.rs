//! The admin REST API: Kubernetes-style paths for the served kinds, plus
//! Skiff's all-or-nothing apply and log streaming. Every request needs the
//! bearer token `skiff serve` wrote into the data directory.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use skiff_api::admission::Defaults;
use skiff_api::object::{self, DynamicObject, ObjectKey, ResourceKind};
use skiff_api::{FieldError, labels, parse};
use skiff_runtime::RevisionKey;
use skiff_runtime::process::ProcessRuntime;
use skiff_store::{EventType, SqliteStore, Store, StoreError, Write};
use tokio::sync::mpsc;

use super::admission::admit;
use super::logs::{self, ChannelBody, FileLister};

pub struct AdminState {
    pub store: SqliteStore,
    pub runtime: ProcessRuntime,
    pub token: String,
    pub defaults: Defaults,
    pub metrics: prometheus_client::registry::Registry,
}

type Shared = State<Arc<AdminState>>;

pub fn router(state: Arc<AdminState>) -> Router {
    let metrics_state = state.clone();
    let api = Router::new()
        .route("/apis/skiff.dev/v1/apply", post(apply))
        .route(
            "/apis/skiff.dev/v1/namespaces/{ns}/{plural}/{name}/logs",
            get(logs),
        )
        .route("/apis/{group}/{version}/{plural}", get(list_all))
        .route(
            "/apis/{group}/{version}/namespaces/{ns}/{plural}",
            get(list_ns).post(create),
        )
        .route(
            "/apis/{group}/{version}/namespaces/{ns}/{plural}/{name}",
            get(get_one).put(replace).delete(delete),
        )
        // The core group (Secrets) lives under /api/v1, as in Kubernetes.
        .route("/api/{version}/{plural}", get(core_list_all))
        .route(
            "/api/{version}/namespaces/{ns}/{plural}",
            get(core_list_ns).post(core_create),
        )
        .route(
            "/api/{version}/namespaces/{ns}/{plural}/{name}",
            get(core_get_one).put(core_replace).delete(core_delete),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), authorize))
        .with_state(state);
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics).with_state(metrics_state))
        .merge(api)
}

async fn authorize(State(s): Shared, headers: HeaderMap, req: Request, next: Next) -> Response {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "));
    if given.is_some_and(|t| constant_time_eq(t.as_bytes(), s.token.as_bytes())) {
        next.run(req).await
    } else {
        status(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "the admin API needs the token from the data directory (SKIFF_DATA_DIR) or SKIFF_TOKEN"
                .into(),
            vec![],
        )
        .into_response()
    }
}

/// Prometheus text format. Unauthenticated, like the scrape endpoints of
/// Knative and Envoy: the admin listener is loopback-only unless asked.
async fn metrics(State(s): Shared) -> Response {
    let mut out = String::new();
    match prometheus_client::encoding::text::encode(&mut out, &s.metrics) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            out,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A Kubernetes `Status` failure.
pub struct ApiError {
    code: StatusCode,
    reason: &'static str,
    message: String,
    causes: Vec<Value>,
}

type ApiResult = Result<Response, ApiError>;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": self.message, "reason": self.reason,
            "code": self.code.as_u16(),
        });
        if !self.causes.is_empty() {
            body["details"] = json!({ "causes": self.causes });
        }
        (self.code, axum::Json(body)).into_response()
    }
}

fn status(code: StatusCode, reason: &'static str, message: String, causes: Vec<Value>) -> ApiError {
    ApiError {
        code,
        reason,
        message,
        causes,
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        store_error(e)
    }
}

fn store_error(e: StoreError) -> ApiError {
    match &e {
        StoreError::NotFound(k) => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("{}.{} {:?} not found", k.kind.plural, k.kind.group, k.name),
            vec![],
        ),
        StoreError::AlreadyExists(k) => status(
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!(
                "{}.{} {:?} already exists",
                k.kind.plural, k.kind.group, k.name
            ),
            vec![],
        ),
        StoreError::Conflict { .. } => {
            status(StatusCode::CONFLICT, "Conflict", e.to_string(), vec![])
        }
        StoreError::OwnerGone { .. } => status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            e.to_string(),
            vec![],
        ),
        StoreError::Invalid(m) => status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            m.clone(),
            vec![],
        ),
        StoreError::Backend(m) => status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            m.clone(),
            vec![],
        ),
    }
}

fn kind_for(group: &str, version: &str, plural: &str) -> Result<&'static ResourceKind, ApiError> {
    object::by_plural(group, plural)
        .filter(|k| k.serves_version(version))
        .ok_or_else(|| {
            status(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!(
                    "the server could not find the requested resource ({plural}.{group}/{version})"
                ),
                vec![],
            )
        })
}

fn list_object(kind: &ResourceKind, items: Vec<DynamicObject>) -> Response {
    axum::Json(json!({
        "apiVersion": kind.api_version(),
        "kind": format!("{}List", kind.kind),
        "metadata": {},
        "items": items,
    }))
    .into_response()
}

async fn list_all(
    State(s): Shared,
    Path((group, version, plural)): Path<(String, String, String)>,
) -> ApiResult {
    let kind = kind_for(&group, &version, &plural)?;
    Ok(list_object(kind, s.store.list(kind, None).await?))
}

async fn list_ns(
    State(s): Shared,
    Path((group, version, ns, plural)): Path<(String, String, String, String)>,
) -> ApiResult {
    let kind = kind_for(&group, &version, &plural)?;
    Ok(list_object(kind, s.store.list(kind, Some(&ns)).await?))
}

async fn get_one(
    State(s): Shared,
    Path((group, version, ns, plural, name)): Path<(String, String, String, String, String)>,
) -> ApiResult {
    let kind = kind_for(&group, &version, &plural)?;
    let key = ObjectKey::new(kind, &ns, &name);
    match s.store.get(&key).await? {
        Some(o) => Ok(axum::Json(o).into_response()),
        None => Err(StoreError::NotFound(key).into()),
    }
}

/// Parse and admit one object for namespace `ns`.
async fn admit_one(
    s: &AdminState,
    v: Value,
    index: usize,
    ns: &str,
) -> Result<(DynamicObject, bool), (usize, String)> {
    let obj = parse::to_object(index + 1, v, ns).map_err(|e| (index, e.message))?;
    let key = obj
        .key()
        .ok_or_else(|| (index, format!("unknown kind {:?}", obj.kind)))?;
    let old = if key.name.is_empty() {
        None
    } else {
        s.store
            .get(&key)
            .await
            .map_err(|e| (index, e.to_string()))?
    };
    let admitted = admit(&obj, old.as_ref(), &s.defaults, &s.runtime)
        .map_err(|e: FieldError| (index, format!("validation failed: {e}")))?;
    Ok((admitted, old.is_some()))
}

fn invalid(kind: &ResourceKind, name: &str, message: String) -> ApiError {
    status(
        StatusCode::UNPROCESSABLE_ENTITY,
        "Invalid",
        format!(
            "{}.{} {name:?} is invalid: {message}",
            kind.plural, kind.group
        ),
        vec![],
    )
}

fn check_path(obj: &Value, kind: &ResourceKind, ns: &str) -> Result<(), ApiError> {
    let ok_kind = obj["kind"].as_str() == Some(kind.kind)
        && obj["apiVersion"]
            .as_str()
            .and_then(|v| object::lookup(v, kind.kind))
            .is_some_and(|k| std::ptr::eq(k, kind));
    let obj_ns = obj["metadata"]["namespace"].as_str().unwrap_or(ns);
    if !ok_kind || obj_ns != ns {
        return Err(status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!(
                "the object ({} {}) does not match the path ({} in namespace {ns})",
                obj["apiVersion"], obj["kind"], kind.plural
            ),
            vec![],
        ));
    }
    Ok(())
}

async fn create(
    State(s): Shared,
    Path((group, version, ns, plural)): Path<(String, String, String, String)>,
    axum::Json(v): axum::Json<Value>,
) -> ApiResult {
    let kind = kind_for(&group, &version, &plural)?;
    check_path(&v, kind, &ns)?;
    let name = v["metadata"]["name"].as_str().unwrap_or("").to_string();
    let (obj, _) = admit_one(&s, v, 0, &ns)
        .await
        .map_err(|(_, m)| invalid(kind, &name, m))?;
    let c = s.store.commit(vec![Write::Create(obj)]).await?;
    Ok((StatusCode::CREATED, axum::Json(&c[0].object)).into_response())
}

async fn replace(
    State(s): Shared,
    Path((group, version, ns, plural, name)): Path<(String, String, String, String, String)>,
    axum::Json(v): axum::Json<Value>,
) -> ApiResult {
    let kind = kind_for(&group, &version, &plural)?;
    check_path(&v, kind, &ns)?;
    if v["metadata"]["name"].as_str() != Some(&name) {
        return Err(status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the name in the body does not match the path".into(),
            vec![],
        ));
    }
    let (obj, _) = admit_one(&s, v, 0, &ns)
        .await
        .map_err(|(_, m)| invalid(kind, &name, m))?;
    let c = s.store.commit(vec![Write::Update(obj)]).await?;
    Ok(axum::Json(&c[0].object).into_response())
}

async fn delete(
    State(s): Shared,
    Path((group, version, ns, plural, name)): Path<(String, String, String, String, String)>,
) -> ApiResult {
    let kind = kind_for(&group, &version, &plural)?;
    s.store
        .commit(vec![Write::Delete(ObjectKey::new(kind, &ns, &name))])
        .await?;
    Ok(axum::Json(json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
        "details": {"name": name, "group": kind.group, "kind": kind.plural},
    }))
    .into_response())
}

// Core-group (`/api/v1`) forms of the handlers above: the group is "".

async fn core_list_all(s: Shared, Path((v, p)): Path<(String, String)>) -> ApiResult {
    list_all(s, Path((String::new(), v, p))).await
}

async fn core_list_ns(s: Shared, Path((v, ns, p)): Path<(String, String, String)>) -> ApiResult {
    list_ns(s, Path((String::new(), v, ns, p))).await
}

async fn core_get_one(
    s: Shared,
    Path((v, ns, p, n)): Path<(String, String, String, String)>,
) -> ApiResult {
    get_one(s, Path((String::new(), v, ns, p, n))).await
}

async fn core_create(
    s: Shared,
    Path((v, ns, p)): Path<(String, String, String)>,
    body: axum::Json<Value>,
) -> ApiResult {
    create(s, Path((String::new(), v, ns, p)), body).await
}

async fn core_replace(
    s: Shared,
    Path((v, ns, p, n)): Path<(String, String, String, String)>,
    body: axum::Json<Value>,
) -> ApiResult {
    replace(s, Path((String::new(), v, ns, p, n)), body).await
}

async fn core_delete(
    s: Shared,
    Path((v, ns, p, n)): Path<(String, String, String, String)>,
) -> ApiResult {
    delete(s, Path((String::new(), v, ns, p, n))).await
}

#[derive(Deserialize)]
struct ApplyQuery {
    #[serde(rename = "dryRun")]
    dry_run: Option<String>,
}

/// Apply a list of objects all or nothing: every object is admitted first;
/// any failure stores nothing and reports each failing item by index.
async fn apply(
    State(s): Shared,
    Query(q): Query<ApplyQuery>,
    axum::Json(items): axum::Json<Vec<Value>>,
) -> ApiResult {
    let mut admitted = Vec::new();
    let mut causes = Vec::new();
    for (i, v) in items.into_iter().enumerate() {
        let ns = v["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_string();
        match admit_one(&s, v, i, &ns).await {
            Ok(a) => admitted.push(a),
            Err((i, m)) => causes.push(json!({"field": i.to_string(), "message": m})),
        }
    }
    if !causes.is_empty() {
        let n = causes.len();
        return Err(status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            format!(
                "{n} of the objects {} invalid; nothing was applied",
                if n == 1 { "is" } else { "are" }
            ),
            causes,
        ));
    }
    if q.dry_run.is_some_and(|d| d == "All") {
        let results: Vec<Value> = admitted
            .into_iter()
            .map(|(o, existed)| json!({"action": if existed { "configured" } else { "created" }, "object": o}))
            .collect();
        return Ok(axum::Json(json!({ "results": results })).into_response());
    }
    let writes = admitted.into_iter().map(|(o, _)| Write::Apply(o)).collect();
    let results: Vec<Value> = s
        .store
        .commit(writes)
        .await?
        .into_iter()
        .map(|c| {
            let action = match c.event {
                EventType::Added => "created",
                EventType::Unchanged => "unchanged",
                _ => "configured",
            };
            json!({"action": action, "object": c.object})
        })
        .collect();
    Ok(axum::Json(json!({ "results": results })).into_response())
}

#[derive(Deserialize)]
struct LogsQuery {
    follow: Option<bool>,
}

/// Logs of a service's, configuration's or revision's instances.
async fn logs(
    State(s): Shared,
    Path((ns, plural, name)): Path<(String, String, String)>,
    Query(q): Query<LogsQuery>,
) -> ApiResult {
    let Some(kind) = object::by_plural("serving.knative.dev", &plural) else {
        return Err(status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("no logs for {plural}"),
            vec![],
        ));
    };
    let key = ObjectKey::new(kind, &ns, &name);
    if s.store.get(&key).await?.is_none() {
        return Err(StoreError::NotFound(key).into());
    }
    let label = match kind.kind {
        "Service" => Some(labels::SERVICE),
        "Configuration" => Some(labels::CONFIGURATION),
        _ => None,
    };
    // The revisions whose logs to show: listed again while following, so
    // later revisions and restarted instances show up.
    let store = s.store.clone();
    let runtime = s.runtime.clone();
    let lister: FileLister = Box::new(move || {
        let (store, runtime, key) = (store.clone(), runtime.clone(), key.clone());
        Box::pin(async move {
            let (ns, name) = (&key.namespace, &key.name);
            store.get(&key).await.ok().flatten()?;
            let revisions: Vec<String> = match label {
                None => vec![name.clone()],
                Some(label) => store
                    .list(&object::REVISION, Some(ns))
                    .await
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|r| r.metadata.label(label) == Some(name.as_str()))
                    .map(|r| r.metadata.name)
                    .collect(),
            };
            let mut files = Vec::new();
            for rev in revisions {
                for f in runtime.log_files(&RevisionKey::new(ns, &rev)) {
                    let inst = f
                        .file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    files.push((format!("{rev}/{inst}"), f));
                }
            }
            Some(files)
        })
    });
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(logs::pump(lister, q.follow.unwrap_or(false), tx));
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Body::new(ChannelBody(rx)))
        .expect("a valid response"))
}
