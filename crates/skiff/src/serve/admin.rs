//! The admin REST API: Kubernetes-style paths for the served kinds, plus
//! Skiff's all-or-nothing apply, log streaming and the gateway's live
//! configuration (`proxy-config`). Every request needs the bearer token
//! `skiff serve` wrote into the data directory.

use std::sync::Arc;
use std::time::SystemTime;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use skiff_api::admission::Request as AdmissionRequest;
use skiff_api::config::{self, ClusterConfig, SYSTEM_NAMESPACE};
use skiff_api::object::{self, DynamicObject, ObjectKey, ResourceKind};
use skiff_api::{apply as apply_merge, labels, parse};
use skiff_controller::LiveConfig;
use skiff_proxy::Gateway;
use skiff_proxy::introspect;
use skiff_proxy::istio::time::MonoTime;
use skiff_proxy::listeners::LiveListeners;
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
    /// The live configuration (ConfigMaps of knative-serving).
    pub config: LiveConfig,
    pub metrics: prometheus_client::registry::Registry,
    /// The data plane, for `proxy-config`.
    pub gateway: Arc<Gateway>,
    pub listeners: LiveListeners,
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
        .route("/debug/proxy-config/{kind}", get(proxy_config))
        .route("/api/{version}/{plural}", get(core_list_all))
        .route(
            "/api/{version}/namespaces/{ns}/{plural}",
            get(core_list_ns).post(core_create),
        )
        .route(
            "/api/{version}/namespaces/{ns}/{plural}/{name}",
            get(core_get_one).put(core_replace).delete(core_delete),
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
            format!("{} {:?} not found", resource_name(k.kind), k.name),
            vec![],
        ),
        StoreError::AlreadyExists(k) => status(
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!("{} {:?} already exists", resource_name(k.kind), k.name),
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
            let gv = if group.is_empty() {
                version.to_string()
            } else {
                format!("{group}/{version}")
            };
            status(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("the server could not find the requested resource ({plural} in {gv})"),
                vec![],
            )
        })
}

/// `plural.group` as Kubernetes names a resource (`configmaps` for core).
fn resource_name(kind: &ResourceKind) -> String {
    if kind.group.is_empty() {
        kind.plural.to_string()
    } else {
        format!("{}.{}", kind.plural, kind.group)
    }
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

/// The requesting user, for Knative's creator / lastModifier annotations:
/// the impersonated user if the client names one (as `kubectl --as` does),
/// else the token's holder.
fn user_of(headers: &HeaderMap) -> String {
    headers
        .get("impersonate-user")
        .and_then(|h| h.to_str().ok())
        .filter(|u| !u.is_empty())
        .unwrap_or("admin")
        .to_string()
}

/// How an admitted object is written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Verb {
    /// `kubectl apply`: merged over the live object with the last applied
    /// manifest; creates when missing.
    Apply,
    /// POST: create only.
    Create,
    /// PUT: replace.
    Replace,
}

/// An object ready to store, with what admission said.
struct Admitted {
    object: DynamicObject,
    existed: bool,
    warnings: Vec<String>,
}

/// Parse and admit one object for namespace `ns` under `config`.
async fn admit_one(
    s: &AdminState,
    v: Value,
    index: usize,
    ns: &str,
    config: &ClusterConfig,
    user: &str,
    verb: Verb,
) -> Result<Admitted, (usize, String)> {
    let manifest = parse::to_object(index + 1, v, ns).map_err(|e| (index, e.message))?;
    let key = manifest
        .key()
        .ok_or_else(|| (index, format!("unknown kind {:?}", manifest.kind)))?;
    let old = if key.name.is_empty() {
        None
    } else {
        s.store
            .get(&key)
            .await
            .map_err(|e| (index, e.to_string()))?
    };
    let obj = match (verb, &old) {
        (Verb::Apply, Some(live)) => apply_merge::merge(&manifest, live),
        (Verb::Apply, None) => {
            let mut o = manifest.clone();
            apply_merge::record_last_applied(&mut o, &manifest);
            o
        }
        _ => manifest,
    };
    let req = AdmissionRequest {
        config,
        user: Some(user),
    };
    let old_for_admission = if verb == Verb::Create {
        None
    } else {
        old.as_ref()
    };
    let admitted = admit(&obj, old_for_admission, &req, &s.runtime)
        .map_err(|e| (index, format!("validation failed: {e}")))?;
    Ok(Admitted {
        object: admitted.object,
        existed: old.is_some(),
        warnings: admitted.warnings,
    })
}

/// The configuration to admit `items` under: the live ConfigMaps with the
/// Knative ConfigMaps among `items` laid over them, so a file that changes
/// config-defaults and adds a Service is checked as it will be.
async fn config_for(s: &AdminState, items: &[Value]) -> ClusterConfig {
    let mut maps = match skiff_controller::config::system_configmaps(&s.store).await {
        Ok(m) => m,
        Err(_) => return (*s.config.current()).clone(),
    };
    let mut overlaid = false;
    for v in items {
        let is_cm = v["apiVersion"] == "v1" && v["kind"] == "ConfigMap";
        let name = v["metadata"]["name"].as_str().unwrap_or("");
        if is_cm
            && v["metadata"]["namespace"].as_str() == Some(SYSTEM_NAMESPACE)
            && config::CONFIGMAPS.contains(&name)
            && let Ok(data) = serde_json::from_value(v["data"].clone())
        {
            maps.insert(name.to_string(), data);
            overlaid = true;
        }
    }
    if !overlaid {
        return (*s.config.current()).clone();
    }
    // An invalid ConfigMap is reported by its own admission; the others are
    // checked against what is live.
    ClusterConfig::from_configmaps(&maps).unwrap_or_else(|_| (*s.config.current()).clone())
}

/// After ConfigMaps were written, make them current for the next request at
/// once (the controller reloads too, from its watch).
async fn reload_if_configmaps(
    s: &AdminState,
    kinds: impl IntoIterator<Item = &'static ResourceKind>,
) {
    if kinds
        .into_iter()
        .any(|k| std::ptr::eq(k, &object::CONFIGMAP))
        && let Err(e) = s.config.reload(&s.store).await
    {
        tracing::warn!("configuration not reloaded: {e}");
    }
}

fn invalid(kind: &ResourceKind, name: &str, message: String) -> ApiError {
    status(
        StatusCode::UNPROCESSABLE_ENTITY,
        "Invalid",
        format!("{} {name:?} is invalid: {message}", resource_name(kind)),
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
    headers: HeaderMap,
    Path((group, version, ns, plural)): Path<(String, String, String, String)>,
    axum::Json(v): axum::Json<Value>,
) -> ApiResult {
    let kind = kind_for(&group, &version, &plural)?;
    check_path(&v, kind, &ns)?;
    let name = v["metadata"]["name"].as_str().unwrap_or("").to_string();
    let config = config_for(&s, std::slice::from_ref(&v)).await;
    let a = admit_one(&s, v, 0, &ns, &config, &user_of(&headers), Verb::Create)
        .await
        .map_err(|(_, m)| invalid(kind, &name, m))?;
    let c = s.store.commit(vec![Write::Create(a.object)]).await?;
    reload_if_configmaps(&s, [kind]).await;
    Ok((
        StatusCode::CREATED,
        with_warnings(&a.warnings),
        axum::Json(&c[0].object),
    )
        .into_response())
}

/// Kubernetes' `Warning` response headers (kubectl prints them).
fn with_warnings(warnings: &[String]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for w in warnings {
        let quoted = serde_json::to_string(&w.replace('\n', " ")).unwrap_or_default();
        let text = format!("299 - {quoted}");
        if let Ok(v) = header::HeaderValue::from_str(&text) {
            h.append(header::WARNING, v);
        }
    }
    h
}

async fn core_list_all(s: Shared, Path((version, plural)): Path<(String, String)>) -> ApiResult {
    list_all(s, Path((String::new(), version, plural))).await
}

async fn core_list_ns(
    s: Shared,
    Path((version, ns, plural)): Path<(String, String, String)>,
) -> ApiResult {
    list_ns(s, Path((String::new(), version, ns, plural))).await
}

async fn core_get_one(
    s: Shared,
    Path((version, ns, plural, name)): Path<(String, String, String, String)>,
) -> ApiResult {
    get_one(s, Path((String::new(), version, ns, plural, name))).await
}

async fn core_create(
    s: Shared,
    headers: HeaderMap,
    Path((version, ns, plural)): Path<(String, String, String)>,
    body: axum::Json<Value>,
) -> ApiResult {
    create(s, headers, Path((String::new(), version, ns, plural)), body).await
}

async fn core_replace(
    s: Shared,
    headers: HeaderMap,
    Path((version, ns, plural, name)): Path<(String, String, String, String)>,
    body: axum::Json<Value>,
) -> ApiResult {
    replace(
        s,
        headers,
        Path((String::new(), version, ns, plural, name)),
        body,
    )
    .await
}

async fn core_delete(
    s: Shared,
    Path((version, ns, plural, name)): Path<(String, String, String, String)>,
) -> ApiResult {
    delete(s, Path((String::new(), version, ns, plural, name))).await
}

async fn replace(
    State(s): Shared,
    headers: HeaderMap,
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
    let config = config_for(&s, std::slice::from_ref(&v)).await;
    let a = admit_one(&s, v, 0, &ns, &config, &user_of(&headers), Verb::Replace)
        .await
        .map_err(|(_, m)| invalid(kind, &name, m))?;
    let c = s.store.commit(vec![Write::Update(a.object)]).await?;
    reload_if_configmaps(&s, [kind]).await;
    Ok((with_warnings(&a.warnings), axum::Json(&c[0].object)).into_response())
}

async fn delete(
    State(s): Shared,
    Path((group, version, ns, plural, name)): Path<(String, String, String, String, String)>,
) -> ApiResult {
    let kind = kind_for(&group, &version, &plural)?;
    s.store
        .commit(vec![Write::Delete(ObjectKey::new(kind, &ns, &name))])
        .await?;
    reload_if_configmaps(&s, [kind]).await;
    Ok(axum::Json(json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
        "details": {"name": name, "group": kind.group, "kind": kind.plural},
    }))
    .into_response())
}

#[derive(Deserialize)]
struct ApplyQuery {
    #[serde(rename = "dryRun")]
    dry_run: Option<String>,
}

/// Apply a list of objects all or nothing (`kubectl apply` per object):
/// every object is admitted first, under the configuration the request's own
/// ConfigMaps make; any failure stores nothing and reports each failing item
/// by index.
async fn apply(
    State(s): Shared,
    headers: HeaderMap,
    Query(q): Query<ApplyQuery>,
    axum::Json(items): axum::Json<Vec<Value>>,
) -> ApiResult {
    let user = user_of(&headers);
    let config = config_for(&s, &items).await;
    let mut admitted = Vec::new();
    let mut causes = Vec::new();
    for (i, v) in items.into_iter().enumerate() {
        let ns = v["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_string();
        match admit_one(&s, v, i, &ns, &config, &user, Verb::Apply).await {
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
            .map(|a| {
                json!({"action": if a.existed { "configured" } else { "created" },
                    "object": a.object, "warnings": a.warnings})
            })
            .collect();
        return Ok(axum::Json(json!({ "results": results })).into_response());
    }
    let kinds: Vec<&'static ResourceKind> = admitted
        .iter()
        .filter_map(|a| a.object.resource_kind())
        .collect();
    let warnings: Vec<Vec<String>> = admitted.iter().map(|a| a.warnings.clone()).collect();
    let writes = admitted
        .into_iter()
        .map(|a| Write::Apply(a.object))
        .collect();
    let committed = s.store.commit(writes).await?;
    reload_if_configmaps(&s, kinds).await;
    let results: Vec<Value> = committed
        .into_iter()
        .zip(warnings)
        .map(|(c, w)| {
            let action = match c.event {
                EventType::Added => "created",
                EventType::Unchanged => "unchanged",
                _ => "configured",
            };
            json!({"action": action, "object": c.object, "warnings": w})
        })
        .collect();
    Ok(axum::Json(json!({ "results": results })).into_response())
}

/// What the gateway is doing now: `routes`, `clusters`, `endpoints` or
/// `listeners`, as JSON.
async fn proxy_config(State(s): Shared, Path(kind): Path<String>) -> ApiResult {
    let table = s.gateway.table();
    let (now, wall) = (MonoTime::now(), SystemTime::now());
    Ok(match kind.as_str() {
        "routes" => axum::Json(introspect::routes(&table, &s.listeners.snapshot())).into_response(),
        "clusters" => {
            axum::Json(introspect::clusters(&table, s.gateway.backends(), now)).into_response()
        }
        "endpoints" => axum::Json(introspect::endpoints(
            &table,
            s.gateway.backends(),
            now,
            wall,
        ))
        .into_response(),
        "listeners" => {
            axum::Json(introspect::listeners(&table, &s.listeners.snapshot())).into_response()
        }
        _ => {
            return Err(status(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!(
                    "proxy-config has no {kind:?}: ask for routes, clusters, endpoints or listeners"
                ),
                vec![],
            ));
        }
    })
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
