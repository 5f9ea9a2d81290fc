//! The load balancer's health check, on its own listener as Istio's ingress
//! gateway has it (`:15021/healthz/ready`): 200 once the gateway has its
//! routes, 503 from the moment shutdown starts, so the load balancer
//! deregisters this target while the gateway still serves (see
//! `skiff_proxy::drain`). Unauthenticated: it says nothing but ready or not.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use skiff_proxy::Gateway;
use tokio::net::TcpListener;

/// Istio's path for the ingress gateway's readiness.
pub const READY_PATH: &str = "/healthz/ready";

async fn ready(State(gateway): State<Arc<Gateway>>) -> (StatusCode, String) {
    match gateway.ready() {
        Ok(()) => (StatusCode::OK, "ready\n".into()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
    }
}

/// Serve the health check until the task is dropped or aborted.
pub async fn serve(listener: TcpListener, gateway: Arc<Gateway>) {
    let app = Router::new()
        .route(READY_PATH, get(ready))
        .with_state(gateway);
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!("health check listener failed: {e}");
    }
}
