//! TLS termination with rustls (ring): certificates from Kubernetes TLS
//! Secrets, SNI selection among gateway servers, SIMPLE / MUTUAL /
//! OPTIONAL_MUTUAL, ALPN h2 and http/1.1, hot reload.

pub mod acceptor;
pub mod config;
pub mod identity;

pub use acceptor::{TlsAcceptor, TlsInfo, TlsListenerConfig};
pub use config::Credentials;
