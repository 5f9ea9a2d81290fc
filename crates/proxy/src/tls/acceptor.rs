//! TLS termination for one gateway listener: the ClientHello's SNI picks
//! the gateway server (exact host, then the longest wildcard, then a `*`
//! server, then the first) and with it the certificate and client-auth
//! mode. The configuration is swapped atomically when Secrets change: new
//! handshakes get the new certificates, established connections keep going.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::LazyConfigAcceptor;
use tokio_rustls::server::TlsStream;

use super::config::{Credentials, server_certs, server_config};
use super::identity;
use crate::istio::binding::{BoundServer, covers};

/// How long a client gets to finish its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Server configurations of one listener, by SNI pattern.
#[derive(Debug, Default)]
pub struct TlsListenerConfig {
    /// (lowercase host pattern, config): exact names first, then wildcards
    /// longest first.
    by_name: Vec<(String, Arc<ServerConfig>)>,
    /// For clients without SNI or with an unknown name: a `*` server, else
    /// the first server (the client then sees a name mismatch, not a reset).
    fallback: Option<Arc<ServerConfig>>,
}

impl TlsListenerConfig {
    /// Build from the terminating servers of one port. Servers whose
    /// certificates cannot be loaded are left out and reported.
    pub fn from_servers(
        servers: &[BoundServer],
        creds: &Credentials,
    ) -> (TlsListenerConfig, Vec<String>) {
        let mut cfg = TlsListenerConfig::default();
        let mut problems = Vec::new();
        let mut star = None;
        for s in servers.iter().filter(|s| s.terminates_tls()) {
            let Some(t) = s.tls() else { continue };
            let ns = s.gateway.split('/').next().unwrap_or("");
            let built = server_certs(t, ns, creds).and_then(|c| {
                server_config(t.mode(), &c, t.min_protocol_version, t.max_protocol_version)
            });
            let config = match built {
                Ok(c) => c,
                Err(e) => {
                    let port = s.server.port.as_ref().map_or(0, |p| p.number);
                    problems.push(format!("gateway {} port {port}: {e}", s.gateway));
                    continue;
                }
            };
            if !t.cipher_suites.is_empty() {
                problems.push(format!(
                    "gateway {}: cipherSuites are not applied (rustls uses its own safe suites)",
                    s.gateway
                ));
            }
            for h in &s.server.hosts {
                let host = h
                    .rsplit_once('/')
                    .map_or(h.as_str(), |(_, h)| h)
                    .to_ascii_lowercase();
                if host == "*" {
                    star.get_or_insert_with(|| config.clone());
                } else if !cfg.by_name.iter().any(|(p, _)| *p == host) {
                    cfg.by_name.push((host, config.clone()));
                }
            }
            cfg.fallback.get_or_insert_with(|| config.clone());
        }
        if star.is_some() {
            cfg.fallback = star;
        }
        cfg.by_name.sort_by(|(a, _), (b, _)| {
            (a.starts_with('*'), std::cmp::Reverse(a.len()))
                .cmp(&(b.starts_with('*'), std::cmp::Reverse(b.len())))
        });
        (cfg, problems)
    }

    /// The configuration for a ClientHello's server name.
    pub fn select(&self, sni: Option<&str>) -> Option<&Arc<ServerConfig>> {
        sni.and_then(|name| {
            let name = name.to_ascii_lowercase();
            self.by_name
                .iter()
                .find(|(p, _)| covers(p, &name))
                .map(|(_, c)| c)
        })
        .or(self.fallback.as_ref())
    }

    pub fn is_empty(&self) -> bool {
        self.fallback.is_none()
    }
}

/// What the handshake established.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsInfo {
    pub sni: Option<String>,
    pub alpn: Option<Vec<u8>>,
    /// Verified client certificate's identity (authorization principals).
    pub principal: Option<String>,
    pub client_certificate: bool,
}

impl TlsInfo {
    pub fn is_h2(&self) -> bool {
        self.alpn.as_deref() == Some(b"h2")
    }
}

/// Accepts TLS on one listener with a hot-swappable configuration.
#[derive(Debug)]
pub struct TlsAcceptor {
    current: ArcSwap<TlsListenerConfig>,
    handshake_timeout: Duration,
}

impl TlsAcceptor {
    pub fn new(config: TlsListenerConfig) -> TlsAcceptor {
        TlsAcceptor {
            current: ArcSwap::from_pointee(config),
            handshake_timeout: HANDSHAKE_TIMEOUT,
        }
    }

    pub fn with_handshake_timeout(mut self, t: Duration) -> TlsAcceptor {
        self.handshake_timeout = t;
        self
    }

    /// New handshakes use `config` from now on.
    pub fn update(&self, config: TlsListenerConfig) {
        self.current.store(Arc::new(config));
    }

    pub fn config(&self) -> Arc<TlsListenerConfig> {
        self.current.load_full()
    }

    /// Run the server handshake on `io`.
    pub async fn accept<IO>(&self, io: IO) -> io::Result<(TlsStream<IO>, TlsInfo)>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let cfg = self.current.load_full();
        let handshake = async {
            let start = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io).await?;
            let sni = start.client_hello().server_name().map(str::to_string);
            let config = cfg.select(sni.as_deref()).cloned().ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    "no TLS configuration for this listener",
                )
            })?;
            let stream = start.into_stream(config).await?;
            let (_, conn) = stream.get_ref();
            let peer = conn.peer_certificates().and_then(|c| c.first());
            let info = TlsInfo {
                sni,
                alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
                principal: peer.and_then(|c| identity::principal(c)),
                client_certificate: peer.is_some(),
            };
            Ok::<_, io::Error>((stream, info))
        };
        tokio::time::timeout(self.handshake_timeout, handshake)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::config::testing::{Ca, secret};
    use rustls::pki_types::ServerName;
    use skiff_api::istio::Gateway;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    fn gateway(yaml: &str) -> Vec<BoundServer> {
        let g: Gateway = crate::istio::testing::yaml(yaml);
        crate::istio::binding::servers_by_port(&[g]).0.remove(0).1
    }

    struct Client {
        roots: rustls::RootCertStore,
        identity: Option<(
            Vec<rustls::pki_types::CertificateDer<'static>>,
            rustls::pki_types::PrivateKeyDer<'static>,
        )>,
        alpn: Vec<Vec<u8>>,
    }

    impl Client {
        fn new(ca: &Ca) -> Client {
            let mut roots = rustls::RootCertStore::empty();
            use rustls_pki_types::pem::PemObject;
            for c in rustls::pki_types::CertificateDer::pem_slice_iter(ca.pem.as_bytes()) {
                roots.add(c.unwrap()).unwrap();
            }
            Client {
                roots,
                identity: None,
                alpn: vec![],
            }
        }

        async fn connect(
            &self,
            addr: std::net::SocketAddr,
            sni: &str,
        ) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
            let b = rustls::ClientConfig::builder_with_provider(super::super::config::provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(self.roots.clone());
            let mut cfg = match &self.identity {
                Some((chain, key)) => b
                    .with_client_auth_cert(chain.clone(), key.clone_key())
                    .unwrap(),
                None => b.with_no_client_auth(),
            };
            cfg.alpn_protocols = self.alpn.clone();
            let tcp = TcpStream::connect(addr).await?;
            tokio_rustls::TlsConnector::from(Arc::new(cfg))
                .connect(ServerName::try_from(sni.to_string()).unwrap(), tcp)
                .await
        }
    }

    /// A TLS echo server: replies with the principal (or "-") then echoes.
    async fn serve(acceptor: Arc<TlsAcceptor>) -> std::net::SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = l.accept().await.unwrap();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok((mut tls, info)) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let hello = format!(
                        "{}|{}\n",
                        info.principal.as_deref().unwrap_or("-"),
                        info.is_h2()
                    );
                    if tls.write_all(hello.as_bytes()).await.is_err() {
                        return;
                    }
                    let mut buf = [0u8; 64];
                    while let Ok(n) = tls.read(&mut buf).await {
                        if n == 0 || tls.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    fn peer_cn(stream: &tokio_rustls::client::TlsStream<TcpStream>) -> Vec<u8> {
        stream.get_ref().1.peer_certificates().unwrap()[0].to_vec()
    }

    async fn read_line(s: &mut tokio_rustls::client::TlsStream<TcpStream>) -> String {
        let mut out = Vec::new();
        let mut b = [0u8; 1];
        while s.read(&mut b).await.unwrap() == 1 && b[0] != b'\n' {
            out.push(b[0]);
        }
        String::from_utf8(out).unwrap()
    }

    #[tokio::test]
    async fn sni_selects_among_certificates() {
        let ca = Ca::new("ca");
        let shop = ca.leaf(&["shop.example.com"], &[]);
        let wild = ca.leaf(&["*.example.org"], &[]);
        let creds = Credentials::new([
            secret("istio-system", "shop", &shop, None),
            secret("istio-system", "wild", &wild, None),
        ]);
        let servers = gateway(
            "metadata: {name: gw, namespace: istio-system}\nspec: {servers: [{port: {number: 443, name: a, protocol: HTTPS}, hosts: [shop.example.com], tls: {mode: SIMPLE, credentialName: shop}}, {port: {number: 443, name: b, protocol: HTTPS}, hosts: ['*.example.org'], tls: {mode: SIMPLE, credentialName: wild}}]}",
        );
        let (cfg, problems) = TlsListenerConfig::from_servers(&servers, &creds);
        assert!(problems.is_empty(), "{problems:?}");
        let addr = serve(Arc::new(TlsAcceptor::new(cfg))).await;
        let mut client = Client::new(&ca);
        client.alpn = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let mut s = client.connect(addr, "shop.example.com").await.unwrap();
        assert_eq!(peer_cn(&s), certs_der(&shop));
        assert_eq!(read_line(&mut s).await, "-|true", "ALPN negotiated h2");
        let s = client.connect(addr, "api.example.org").await.unwrap();
        assert_eq!(peer_cn(&s), certs_der(&wild));
        // An unknown name gets the first server's certificate, which the
        // client rejects: a certificate error, not a reset.
        let e = client.connect(addr, "other.net").await.unwrap_err();
        assert!(e.to_string().contains("certificate"), "{e}");
    }

    fn certs_der(m: &skiff_api::secret::TlsMaterial) -> Vec<u8> {
        use rustls_pki_types::pem::PemObject;
        rustls::pki_types::CertificateDer::pem_slice_iter(&m.cert_chain_pem)
            .next()
            .unwrap()
            .unwrap()
            .to_vec()
    }

    #[tokio::test]
    async fn mutual_requires_a_client_certificate() {
        let ca = Ca::new("ca");
        let server = ca.leaf(&["api.example.com"], &[]);
        let creds = Credentials::new([secret("gw", "api", &server, Some(&ca.pem))]);
        let servers = gateway(
            "metadata: {name: g, namespace: gw}\nspec: {servers: [{port: {number: 443, name: a, protocol: HTTPS}, hosts: ['*'], tls: {mode: MUTUAL, credentialName: api}}]}",
        );
        let (cfg, problems) = TlsListenerConfig::from_servers(&servers, &creds);
        assert!(problems.is_empty(), "{problems:?}");
        let addr = serve(Arc::new(TlsAcceptor::new(cfg))).await;
        // Without a client certificate the handshake (or the first read, in
        // TLS 1.3) fails.
        let anonymous = Client::new(&ca);
        let failed = match anonymous.connect(addr, "api.example.com").await {
            Err(_) => true,
            Ok(mut s) => {
                let mut b = [0u8; 8];
                s.read(&mut b).await.is_err()
                    || s.read(&mut b).await.map(|n| n == 0).unwrap_or(true)
            }
        };
        assert!(failed, "MUTUAL must refuse clients without a certificate");
        // With a certificate from the CA: accepted, identity extracted.
        use rustls_pki_types::pem::PemObject;
        let leaf = ca.leaf(&["client"], &["spiffe://cluster.local/ns/default/sa/sleep"]);
        let mut client = Client::new(&ca);
        client.identity = Some((
            rustls::pki_types::CertificateDer::pem_slice_iter(&leaf.cert_chain_pem)
                .collect::<Result<_, _>>()
                .unwrap(),
            rustls::pki_types::PrivateKeyDer::from_pem_slice(&leaf.private_key_pem).unwrap(),
        ));
        let mut s = client.connect(addr, "api.example.com").await.unwrap();
        assert_eq!(
            read_line(&mut s).await,
            "cluster.local/ns/default/sa/sleep|false"
        );
        // A certificate from another CA is refused.
        let other = Ca::new("other");
        let stranger = other.leaf(&["client"], &[]);
        let mut client = Client::new(&ca);
        client.identity = Some((
            rustls::pki_types::CertificateDer::pem_slice_iter(&stranger.cert_chain_pem)
                .collect::<Result<_, _>>()
                .unwrap(),
            rustls::pki_types::PrivateKeyDer::from_pem_slice(&stranger.private_key_pem).unwrap(),
        ));
        let refused = match client.connect(addr, "api.example.com").await {
            Err(_) => true,
            Ok(mut s) => {
                let mut b = [0u8; 8];
                s.read(&mut b).await.is_err()
                    || s.read(&mut b).await.map(|n| n == 0).unwrap_or(true)
            }
        };
        assert!(refused);
    }

    #[tokio::test]
    async fn reload_keeps_connections_and_serves_new_certificate() {
        let ca = Ca::new("ca");
        let old = ca.leaf(&["shop.example.com"], &[]);
        let new = ca.leaf(&["shop.example.com"], &[]);
        let servers = gateway(
            "metadata: {name: g, namespace: gw}\nspec: {servers: [{port: {number: 443, name: a, protocol: HTTPS}, hosts: [shop.example.com], tls: {mode: SIMPLE, credentialName: shop}}]}",
        );
        let (cfg, _) = TlsListenerConfig::from_servers(
            &servers,
            &Credentials::new([secret("gw", "shop", &old, None)]),
        );
        let acceptor = Arc::new(TlsAcceptor::new(cfg));
        let addr = serve(acceptor.clone()).await;
        let client = Client::new(&ca);
        let mut before = client.connect(addr, "shop.example.com").await.unwrap();
        assert_eq!(peer_cn(&before), certs_der(&old));
        assert_eq!(read_line(&mut before).await, "-|false");
        // The Secret changes.
        let (cfg, _) = TlsListenerConfig::from_servers(
            &servers,
            &Credentials::new([secret("gw", "shop", &new, None)]),
        );
        acceptor.update(cfg);
        // The established connection still works both ways...
        before.write_all(b"ping\n").await.unwrap();
        assert_eq!(read_line(&mut before).await, "ping");
        // ...and new handshakes get the new certificate.
        let after = client.connect(addr, "shop.example.com").await.unwrap();
        assert_eq!(peer_cn(&after), certs_der(&new));
    }

    #[test]
    fn broken_servers_are_reported() {
        let servers = gateway(
            "metadata: {name: g, namespace: gw}\nspec: {servers: [{port: {number: 443, name: a, protocol: HTTPS}, hosts: [a.com], tls: {mode: SIMPLE, credentialName: missing}}]}",
        );
        let (cfg, problems) = TlsListenerConfig::from_servers(&servers, &Credentials::default());
        assert!(cfg.is_empty());
        assert_eq!(
            problems,
            ["gateway gw/g port 443: Secret gw/missing (credentialName) not found"]
        );
    }
}
