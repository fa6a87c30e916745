//! TLS for gRPC: the `[tls]` settings, the server side (certificates reloaded from their files
//! while serving, optional or required client certificates, the caller's [`PeerIdentity`]), and
//! the client side ([`ClientTls`]: the CA that verifies servers, our own certificate for mutual
//! TLS). rustls on the `ring` provider only.
//!
//! tonic's own `ServerTlsConfig` reads its certificate once; here the listener accepts TCP
//! itself and does each handshake with the current [`rustls::ServerConfig`], which a task
//! replaces when the files change: new connections get the new certificate, open ones go on.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::config::ConfigError;

/// The `[tls]` section (`POS_TLS__CERT_FILE=…`). Server side: `cert_file` + `key_file` turn TLS
/// on, `client_ca_file` verifies client certificates (mutual TLS), required when
/// `require_client_cert`. Client side: `ca_file` verifies the servers of `https://` peers,
/// `client_cert_file` + `client_key_file` are this process's identity when they ask for one.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain the gRPC server presents, leaf first.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file` (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// PEM CA certificates that client certificates must chain to; unset: none asked for.
    pub client_ca_file: Option<PathBuf>,
    /// Refuse clients without a certificate from `client_ca_file` (mutual TLS).
    pub require_client_cert: bool,
    /// PEM CA certificates that verify the servers this process calls over `https://`.
    pub ca_file: Option<PathBuf>,
    /// PEM certificate this process presents to servers that ask for one.
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
    /// The name expected in servers' certificates instead of the host of the endpoint (e.g.
    /// when peers are listed by address).
    pub server_name: Option<String>,
    /// Serve plaintext gRPC on an address other than loopback (a development setup only).
    pub allow_plaintext: bool,
    /// How often the certificate, key and CA files are read again, in seconds.
    pub reload_secs: u64,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            cert_file: None,
            key_file: None,
            client_ca_file: None,
            require_client_cert: false,
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
            server_name: None,
            allow_plaintext: false,
            reload_secs: 5,
        }
    }
}

impl TlsConfig {
    /// Whether the gRPC server serves TLS.
    pub fn serves_tls(&self) -> bool {
        self.cert_file.is_some()
    }

    /// Checks that settings come in their pairs and that every file named can be read.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let pair = |a: (&str, &Option<PathBuf>), b: (&str, &Option<PathBuf>)| match (a.1, b.1) {
            (Some(_), None) => Err(ConfigError::invalid(format!("tls.{}", b.0), format!("required with tls.{}", a.0))),
            (None, Some(_)) => Err(ConfigError::invalid(format!("tls.{}", a.0), format!("required with tls.{}", b.0))),
            _ => Ok(()),
        };
        pair(("cert_file", &self.cert_file), ("key_file", &self.key_file))?;
        pair(("client_cert_file", &self.client_cert_file), ("client_key_file", &self.client_key_file))?;
        if self.client_ca_file.is_some() && self.cert_file.is_none() {
            return Err(ConfigError::invalid("tls.client_ca_file", "client certificates need TLS: set tls.cert_file"));
        }
        if self.require_client_cert && self.client_ca_file.is_none() {
            return Err(ConfigError::invalid(
                "tls.require_client_cert",
                "set tls.client_ca_file to verify client certificates",
            ));
        }
        if self.client_cert_file.is_some() && self.ca_file.is_none() {
            return Err(ConfigError::invalid("tls.ca_file", "required with tls.client_cert_file"));
        }
        if self.server_name.as_deref().is_some_and(|name| name.trim().is_empty()) {
            return Err(ConfigError::invalid("tls.server_name", "must not be empty"));
        }
        if self.reload_secs == 0 {
            return Err(ConfigError::invalid("tls.reload_secs", "must be at least 1"));
        }
        for (field, file) in self.files() {
            if let Err(error) = std::fs::metadata(file) {
                return Err(ConfigError::invalid(format!("tls.{field}"), format!("{}: {error}", file.display())));
            }
        }
        Ok(())
    }

    fn files(&self) -> impl Iterator<Item = (&'static str, &PathBuf)> {
        [
            ("cert_file", &self.cert_file),
            ("key_file", &self.key_file),
            ("client_ca_file", &self.client_ca_file),
            ("ca_file", &self.ca_file),
            ("client_cert_file", &self.client_cert_file),
            ("client_key_file", &self.client_key_file),
        ]
        .into_iter()
        .filter_map(|(field, file)| file.as_ref().map(|file| (field, file)))
    }

    /// Refuses plaintext on an address other than loopback unless `allow_plaintext`: a service
    /// reachable from the network talks TLS.
    pub fn check_listener(&self, addr: SocketAddr) -> anyhow::Result<()> {
        if self.serves_tls() || self.allow_plaintext || addr.ip().is_loopback() {
            return Ok(());
        }
        anyhow::bail!(
            "refusing to serve plaintext gRPC on {addr}, which is not a loopback address: \
             set tls.cert_file and tls.key_file (POS_TLS__CERT_FILE, POS_TLS__KEY_FILE), or \
             tls.allow_plaintext = true (POS_TLS__ALLOW_PLAINTEXT) for a development setup"
        )
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(field: &str, file: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(file).with_context(|| format!("tls.{field}: cannot read {}", file.display()))
}

fn certificates(field: &str, pem: &[u8]) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| anyhow::anyhow!("tls.{field}: not PEM certificates: {error}"))?;
    anyhow::ensure!(!certificates.is_empty(), "tls.{field}: no certificate in the file");
    Ok(certificates)
}

fn private_key(field: &str, pem: &[u8]) -> anyhow::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|error| anyhow::anyhow!("tls.{field}: no PEM private key: {error}"))
}

fn root_store(field: &str, pem: &[u8]) -> anyhow::Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in certificates(field, pem)? {
        roots.add(certificate).map_err(|error| anyhow::anyhow!("tls.{field}: not a CA certificate: {error}"))?;
    }
    Ok(roots)
}

/// The contents of the server's files, compared on each poll to tell a change.
#[derive(Clone, PartialEq, Eq)]
struct ServerFiles {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

impl ServerFiles {
    fn read(config: &TlsConfig) -> anyhow::Result<Option<ServerFiles>> {
        let (Some(cert_file), Some(key_file)) = (&config.cert_file, &config.key_file) else {
            return Ok(None);
        };
        Ok(Some(ServerFiles {
            cert: read("cert_file", cert_file)?,
            key: read("key_file", key_file)?,
            client_ca: config.client_ca_file.as_deref().map(|file| read("client_ca_file", file)).transpose()?,
        }))
    }

    fn server_config(&self, require_client_cert: bool) -> anyhow::Result<Arc<rustls::ServerConfig>> {
        let chain = certificates("cert_file", &self.cert)?;
        let key = private_key("key_file", &self.key)?;
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?;
        let builder = match &self.client_ca {
            Some(pem) => {
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(root_store("client_ca_file", pem)?),
                    provider(),
                );
                let verifier = if require_client_cert { verifier } else { verifier.allow_unauthenticated() };
                builder.with_client_cert_verifier(verifier.build().context("tls.client_ca_file")?)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(|error| anyhow::anyhow!("tls.cert_file and tls.key_file do not make a pair: {error}"))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }
}

/// The server's TLS: the configuration new connections are accepted with, replaced by
/// [`ServerTls::watch`] when the files change.
pub struct ServerTls {
    settings: TlsConfig,
    current: RwLock<(ServerFiles, Arc<rustls::ServerConfig>)>,
}

impl ServerTls {
    /// Reads the certificate, key and client CA; `None` when `tls.cert_file` is unset.
    pub fn load(settings: &TlsConfig) -> anyhow::Result<Option<Arc<ServerTls>>> {
        let Some(files) = ServerFiles::read(settings)? else {
            return Ok(None);
        };
        let config = files.server_config(settings.require_client_cert)?;
        Ok(Some(Arc::new(ServerTls { settings: settings.clone(), current: RwLock::new((files, config)) })))
    }

    fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let current = self.current.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        tokio_rustls::TlsAcceptor::from(current.1.clone())
    }

    /// Reads the files again; a change that makes a valid configuration replaces the current
    /// one. Returns whether it did. A broken change (say, a certificate written before its key)
    /// keeps the current configuration and is reported until the files are right.
    pub fn reload(&self) -> anyhow::Result<bool> {
        let Some(files) = ServerFiles::read(&self.settings)? else {
            return Ok(false);
        };
        if files == self.current.read().unwrap_or_else(|poisoned| poisoned.into_inner()).0 {
            return Ok(false);
        }
        let config = files.server_config(self.settings.require_client_cert)?;
        *self.current.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = (files, config);
        Ok(true)
    }

    /// Polls the files every `tls.reload_secs` until `stop`.
    pub async fn watch(self: Arc<Self>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_secs(self.settings.reload_secs.max(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let mut failing = false;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = stop.cancelled() => return,
            }
            match self.reload() {
                Ok(true) => {
                    failing = false;
                    tracing::info!("grpc server certificate reloaded");
                }
                Ok(false) => {}
                Err(error) if !failing => {
                    failing = true;
                    let error = format!("{error:#}");
                    tracing::warn!(%error, "grpc server certificate not reloaded, keeping the current one");
                }
                Err(_) => {}
            }
        }
    }
}

/// Who the caller is, from its client certificate: the first DNS name of its subject
/// alternative names, else its common name, e.g. `routing.pos`. Present in the extensions of
/// calls over mutual TLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerIdentity {
    pub name: String,
}

impl PeerIdentity {
    /// The service part of the name: `routing` for `routing.pos`.
    pub fn service(&self) -> &str {
        self.name.split('.').next().unwrap_or_default()
    }

    fn from_certificate(der: &[u8]) -> Option<PeerIdentity> {
        let (_, certificate) = x509_parser::parse_x509_certificate(der).ok()?;
        let dns_name = certificate.subject_alternative_name().ok().flatten().and_then(|names| {
            names.value.general_names.iter().find_map(|name| match name {
                x509_parser::extensions::GeneralName::DNSName(name) => Some((*name).to_owned()),
                _ => None,
            })
        });
        let name = dns_name.or_else(|| {
            certificate.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok()).map(str::to_owned)
        })?;
        Some(PeerIdentity { name })
    }
}

/// The name the server's own certificate (`tls.cert_file`) carries, as [`PeerIdentity`] reads
/// a client's: what this process is called by when it calls itself over TLS.
pub fn certificate_name(config: &TlsConfig) -> Option<String> {
    let pem = std::fs::read(config.cert_file.as_ref()?).ok()?;
    let leaf = CertificateDer::pem_slice_iter(&pem).next()?.ok()?;
    PeerIdentity::from_certificate(&leaf).map(|identity| identity.name)
}

/// What the server knows of a connection: its addresses and, over mutual TLS, the caller.
#[derive(Clone, Debug)]
pub struct ConnectionInfo {
    pub tcp: TcpConnectInfo,
    pub peer: Option<PeerIdentity>,
}

/// An accepted gRPC connection, plaintext or TLS.
pub enum ServerConnection {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl Connected for ServerConnection {
    type ConnectInfo = ConnectionInfo;

    fn connect_info(&self) -> ConnectionInfo {
        match self {
            ServerConnection::Plain(stream) => ConnectionInfo { tcp: stream.connect_info(), peer: None },
            ServerConnection::Tls(stream) => {
                let (tcp, session) = stream.get_ref();
                let peer = session
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .and_then(|leaf| PeerIdentity::from_certificate(leaf));
                ConnectionInfo { tcp: tcp.connect_info(), peer }
            }
        }
    }
}

impl AsyncRead for ServerConnection {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ServerConnection::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            ServerConnection::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ServerConnection {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            ServerConnection::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            ServerConnection::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            ServerConnection::Plain(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            ServerConnection::Tls(stream) => Pin::new(stream.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ServerConnection::Plain(stream) => stream.is_write_vectored(),
            ServerConnection::Tls(stream) => stream.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ServerConnection::Plain(stream) => Pin::new(stream).poll_flush(cx),
            ServerConnection::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ServerConnection::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            ServerConnection::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}

/// How long a client may take over its TLS handshake before it is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The connections `listener` accepts, with TLS when `tls` is given, until `stop` or until
/// the stream is dropped. Each handshake runs in a task of its own, so a slow or silent client
/// holds up no other; a failed one is logged and skipped, never ending the stream.
pub fn incoming(
    listener: TcpListener,
    tls: Option<Arc<ServerTls>>,
    stop: CancellationToken,
) -> tokio_stream::wrappers::ReceiverStream<Result<ServerConnection, std::io::Error>> {
    let (accepted, connections) = tokio::sync::mpsc::channel(64);
    tokio::spawn(accept(listener, tls, accepted, stop));
    tokio_stream::wrappers::ReceiverStream::new(connections)
}

async fn accept(
    listener: TcpListener,
    tls: Option<Arc<ServerTls>>,
    connections: tokio::sync::mpsc::Sender<Result<ServerConnection, std::io::Error>>,
    stop: CancellationToken,
) {
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, a connection reset before it was accepted:
                    // the listener itself is fine, and spinning would not help.
                    tracing::warn!(%error, "failed to accept a grpc connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stop.cancelled() => return,
            () = connections.closed() => return,
        };
        // Accepted sockets do not inherit the builder's TCP_NODELAY (it applies to `serve(addr)`
        // only). Without it a response spanning several segments waits for the peer's delayed
        // ACK: a ~40 ms floor under every larger reply, e.g. a page of tickets.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::warn!(%error, "failed to set TCP_NODELAY on a grpc connection");
        }
        let Some(tls) = &tls else {
            if connections.send(Ok(ServerConnection::Plain(stream))).await.is_err() {
                return;
            }
            continue;
        };
        let acceptor = tls.acceptor();
        let connections = connections.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => {
                    let _ = connections.send(Ok(ServerConnection::Tls(Box::new(stream)))).await;
                }
                Ok(Err(error)) => tracing::debug!(%remote, %error, "grpc TLS handshake failed"),
                Err(_) => tracing::debug!(%remote, "grpc TLS handshake timed out"),
            }
        });
    }
}

/// The caller's address as the transport recorded it (plaintext or TLS alike).
pub fn peer_address(extensions: &http::Extensions) -> Option<std::net::IpAddr> {
    extensions.get::<TcpConnectInfo>().and_then(|info| info.remote_addr()).map(|addr| addr.ip())
}

/// Moves what [`ConnectionInfo`] holds into the request's extensions as their own types:
/// tonic's [`TcpConnectInfo`] (so `Request::remote_addr` works) and the [`PeerIdentity`].
pub fn expose_connection_info<B>(mut request: http::Request<B>) -> http::Request<B> {
    if let Some(info) = request.extensions_mut().remove::<ConnectionInfo>() {
        if let Some(peer) = info.peer {
            request.extensions_mut().insert(peer);
        }
        request.extensions_mut().insert(info.tcp);
    }
    request
}

/// The client side: how this process verifies the servers it calls over `https://`, and the
/// certificate it presents when they ask for one.
#[derive(Clone, Debug)]
pub struct ClientTls {
    ca: Vec<u8>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
    server_name: Option<String>,
}

impl ClientTls {
    /// From `tls.ca_file`, `tls.client_cert_file`/`tls.client_key_file` and `tls.server_name`;
    /// `None` when `tls.ca_file` is unset.
    pub fn from_config(config: &TlsConfig) -> anyhow::Result<Option<ClientTls>> {
        let Some(ca_file) = &config.ca_file else {
            return Ok(None);
        };
        let identity = match (&config.client_cert_file, &config.client_key_file) {
            (Some(cert), Some(key)) => Some((cert.as_path(), key.as_path())),
            (None, None) => None,
            _ => anyhow::bail!("tls.client_cert_file and tls.client_key_file go together"),
        };
        Ok(Some(ClientTls::from_files(ca_file, identity, config.server_name.clone())?))
    }

    /// From files: the CA, and our certificate chain and key for mutual TLS.
    pub fn from_files(
        ca_file: &Path,
        identity: Option<(&Path, &Path)>,
        server_name: Option<String>,
    ) -> anyhow::Result<ClientTls> {
        let ca = read("ca_file", ca_file)?;
        root_store("ca_file", &ca)?;
        let identity = match identity {
            Some((cert_file, key_file)) => {
                let (cert, key) = (read("client_cert_file", cert_file)?, read("client_key_file", key_file)?);
                certificates("client_cert_file", &cert)?;
                private_key("client_key_file", &key)?;
                Some((cert, key))
            }
            None => None,
        };
        Ok(ClientTls { ca, identity, server_name })
    }

    /// The name servers' certificates must carry instead of the endpoint's host.
    pub fn with_server_name(mut self, name: impl Into<String>) -> ClientTls {
        self.server_name = Some(name.into());
        self
    }

    /// tonic's settings for one endpoint; `host` is the name to verify when no override is
    /// configured and the endpoint's own host is not it (an address resolved from a name).
    pub fn tonic_config(&self, host: Option<&str>) -> tonic::transport::ClientTlsConfig {
        let mut config =
            tonic::transport::ClientTlsConfig::new().ca_certificate(tonic::transport::Certificate::from_pem(&self.ca));
        if let Some((cert, key)) = &self.identity {
            config = config.identity(tonic::transport::Identity::from_pem(cert, key));
        }
        match self.server_name.as_deref().or(host) {
            Some(name) => config.domain_name(name),
            None => config,
        }
    }
}

/// The process's client TLS, set at start-up from `[tls]` (see [`set_process_client`]).
static PROCESS_CLIENT: RwLock<Option<Arc<ClientTls>>> = RwLock::new(None);

/// Makes `tls` what [`crate::grpc::channel`] and the peers' channels use for `https://`.
pub fn set_process_client(tls: Option<ClientTls>) {
    *PROCESS_CLIENT.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = tls.map(Arc::new);
}

/// The process's client TLS, if any was configured.
pub fn process_client() -> Option<Arc<ClientTls>> {
    PROCESS_CLIENT.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_come_in_pairs_and_name_their_field() {
        let error = |config: TlsConfig| config.validate().unwrap_err().to_string();
        let cert_only = TlsConfig { cert_file: Some("/etc/hostname".into()), ..TlsConfig::default() };
        assert!(error(cert_only).contains("tls.key_file"));
        let required = TlsConfig { require_client_cert: true, ..TlsConfig::default() };
        assert!(error(required).contains("tls.require_client_cert"));
        let missing = TlsConfig { ca_file: Some("/nonexistent/ca.pem".into()), ..TlsConfig::default() };
        assert!(error(missing).contains("tls.ca_file"));
        TlsConfig::default().validate().unwrap();
    }

    #[test]
    fn plaintext_is_for_loopback_unless_allowed() {
        let plain = TlsConfig::default();
        plain.check_listener("127.0.0.1:50051".parse().unwrap()).unwrap();
        plain.check_listener("[::1]:50051".parse().unwrap()).unwrap();
        let error = plain.check_listener("0.0.0.0:50051".parse().unwrap()).unwrap_err().to_string();
        assert!(error.contains("tls.cert_file") && error.contains("tls.allow_plaintext"), "{error}");
        let allowed = TlsConfig { allow_plaintext: true, ..TlsConfig::default() };
        allowed.check_listener("0.0.0.0:50051".parse().unwrap()).unwrap();
    }
}
