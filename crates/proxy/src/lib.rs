//! Skiff's data plane. The controller builds an immutable [`RoutingTable`]
//! and publishes it with [`Gateway::publish`]; listeners look up every request
//! in the current table (an atomic pointer load, no lock), pick a revision by
//! weight and an instance, and forward. Every request gets an HTTP response:
//! a safe retry, or a local reply that says which hop failed and why, with an
//! Envoy-style response flag in `x-skiff-flags`.

pub mod activator;
mod body;
mod endpoint;
mod forward;
mod headers;
pub mod istio;
pub mod listeners;
pub mod metrics;
pub mod proxy_protocol;
pub mod queue_proxy;
mod registry;
pub mod reply;
mod server;
pub mod split;
mod table;
mod threads;
pub mod tls;
pub mod worker;

pub use activator::{Backend, Backends, RevisionReport};
pub use body::{ProxyBody, UpstreamRequestBody};
pub use endpoint::{Endpoint, Lease, SendError};
pub use registry::{EndpointKey, EndpointRegistry};
pub use server::{Gateway, ListenerScope, client_ip_header, serve};
pub use split::Split;
pub use table::{HostRoute, RoutingTable, TableBuilder};
pub use threads::GatewayThreads;
