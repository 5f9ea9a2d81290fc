//! Skiff's data plane. The controller builds an immutable [`RoutingTable`]
//! and publishes it with [`Gateway::publish`]; listeners look up every request
//! in the current table (an atomic pointer load, no lock), apply the
//! VirtualService rules bound to its host or pick a Knative revision by
//! weight, pick an instance, and forward. Every request gets an HTTP
//! response: a safe retry, or a local reply that says which hop failed and
//! why, with an Envoy-style response flag in `x-skiff-flags`.

pub mod access;
pub mod activator;
mod alarm;
mod body;
pub mod cluster;
mod deadline;
pub mod drain;
mod endpoint;
mod forward;
mod gated;
mod headers;
pub mod introspect;
pub mod istio;
pub mod listeners;
pub mod metrics;
mod outline;
pub mod proxy_protocol;
pub mod queue_proxy;
mod registry;
mod replay;
pub mod reply;
pub mod request_metrics;
mod server;
pub mod split;
mod table;
mod threads;
pub mod tls;
mod upgrade;
mod vs_forward;
pub mod worker;

pub use activator::{Backend, Backends, RevisionReport};
pub use body::{ProxyBody, UpstreamRequestBody};
pub use endpoint::{ConnOpts, Endpoint, Lease, SendError};
pub use registry::{EndpointKey, EndpointRegistry};
pub use server::{ConnInfo, Gateway, HttpHandler, ListenerScope, client_ip_header};
pub use split::Split;
pub use table::{
    HostRoute, IstioRoutes, ListenerRoutes, RoutingTable, TableBuilder, Target, VirtualHost,
};
pub use threads::GatewayThreads;
