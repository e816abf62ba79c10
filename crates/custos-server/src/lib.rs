//! custos-server: `custos serve`, the HTTPS API of a project. The server alone holds the
//! keystore passphrase, the identity store, the policies and the audit log; clients hold only
//! their API tokens. Everything it does goes through [`custos_app`], so decisions and audit
//! records are the same as in local mode.
//!
//! TLS is rustls (TLS 1.2+, HTTP/1.1), with optional client certificates (mTLS); plain HTTP
//! only on a loopback address behind `[danger] plaintext`. Shutdown (SIGINT/SIGTERM, or [`Server::shutdown`]) stops accepting,
//! lets open requests finish, gives running jobs their grace period and then cancels them
//! (they roll back), and closes the audit log with a signed checkpoint.

pub mod api;
pub mod client;
pub mod config;
pub mod metrics;
pub mod openapi;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use custos_app::{Cidr, Confinement, Project, ProjectOptions};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

pub use api::{AppState, router};
pub use config::ServerConfig;

/// Errors starting or running the server. Messages never contain keys or passphrases.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The server config is invalid.
    #[error("server config: {0}")]
    Config(String),
    /// The project did not open.
    #[error(transparent)]
    App(#[from] custos_app::AppError),
    /// Binding or accepting failed.
    #[error("{0}")]
    Io(String),
}

/// An identity provider's key set at an `https://` URL.
struct UrlJwks {
    url: String,
    ca: Option<String>,
}

#[async_trait::async_trait]
impl custos_app::oidc::JwksSource for UrlJwks {
    async fn fetch(&self) -> Result<String, String> {
        client::fetch_json(&self.url, self.ca.as_deref())
            .await
            .map(|v| v.to_string())
            .map_err(|e| format!("fetching the key set {}: {e}", self.url))
    }
}

/// The TLS settings of `config` (certificate, key, client CA and CRL resolved from their
/// references now), or `None` for a plaintext server.
pub fn tls_config(config: &ServerConfig) -> Result<Option<Arc<rustls::ServerConfig>>, ServerError> {
    let Some(t) = &config.tls else {
        return Ok(None);
    };
    let cert = config.resolve("tls.cert", &t.cert)?;
    let key = config.resolve("tls.key", &t.key)?;
    let ca = match &t.client_ca {
        Some(r) => Some(config.resolve("tls.client_ca", r)?),
        None => None,
    };
    let crl = match &t.client_crl {
        Some(r) => Some(config.resolve("tls.client_crl", r)?),
        None => None,
    };
    let clients = ca.as_ref().map(|ca| tls::ClientVerification {
        ca_pem: ca.expose(),
        crl_pem: crl.as_ref().map(|c| c.expose()),
        required: t.client_auth == config::ClientAuth::Required,
    });
    Ok(Some(tls::server_config(
        cert.expose(),
        key.expose(),
        &t.min_version,
        clients,
    )?))
}

/// The TLS settings new connections are accepted with; replaced in place (`SIGHUP`) so a
/// renewed certificate or a new CRL applies without a restart. Open connections keep theirs.
#[derive(Clone)]
pub struct TlsSettings(Arc<std::sync::RwLock<tokio_rustls::TlsAcceptor>>);

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsSettings")
    }
}

impl TlsSettings {
    fn new(cfg: Arc<rustls::ServerConfig>) -> Self {
        Self(Arc::new(std::sync::RwLock::new(
            tokio_rustls::TlsAcceptor::from(cfg),
        )))
    }

    /// Accepts later connections with `cfg`.
    pub fn replace(&self, cfg: Arc<rustls::ServerConfig>) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            tokio_rustls::TlsAcceptor::from(cfg);
    }

    fn current(&self) -> tokio_rustls::TlsAcceptor {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A running server.
pub struct Server {
    addr: SocketAddr,
    tls: Option<TlsSettings>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), ServerError>>,
    project: Arc<Project>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("addr", &self.addr).finish()
    }
}

impl Server {
    /// Opens the project of `config` and starts serving; returns once the socket listens.
    pub async fn start(config: &ServerConfig) -> Result<Self, ServerError> {
        let tls = tls_config(config)?;
        let passphrase = match &config.keystore.passphrase {
            Some(p) => {
                let s = config.resolve("keystore.passphrase", p)?;
                Some(custos_keys::Passphrase::new(s.expose().to_string()))
            }
            None => None,
        };
        let allow = config
            .server
            .allow
            .iter()
            .map(|c| Cidr::parse(c))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ServerError::Config(format!("server.allow: {e}")))?;
        let oidc = match config
            .auth
            .oidc_settings(&config.base_dir)
            .map_err(ServerError::Config)?
        {
            Some(o) => {
                let source: Box<dyn custos_app::oidc::JwksSource> = match o.jwks {
                    config::JwksLocation::Url(url) => {
                        let ca = match &o.jwks_ca {
                            Some(r) => {
                                Some(config.resolve("auth.oidc.jwks_ca", r)?.expose().to_string())
                            }
                            None => None,
                        };
                        Box::new(UrlJwks { url, ca })
                    }
                    config::JwksLocation::File(p) => Box::new(custos_app::oidc::JwksFile(p)),
                };
                Some(
                    custos_app::oidc::OidcProvider::new(
                        o.verify,
                        source,
                        Duration::from_secs(o.step_up_max_age_secs),
                    )
                    .await?,
                )
            }
            None => None,
        };
        let confinement = Confinement::new(&config.roots(), &config.pipelines.secrets)
            .map_err(|e| ServerError::Config(format!("pipelines: {e}")))?;
        let project = Project::open(
            &config.state_dir(),
            ProjectOptions {
                passphrase,
                confinement,
                allow,
                max_concurrent_runs: config.server.max_concurrent_runs,
                principal: "server".into(),
                mfa_required: config.auth.mfa == config::MfaSetting::Required,
                oidc,
                mfa_enrollment: config.auth.mfa_enrollment,
                accept_identity_rollback: config.danger.accept_identity_rollback,
            },
        )
        .await?;
        if config.auth.mfa == config::MfaSetting::Off {
            tracing::warn!(
                "[auth] mfa = \"off\": privileged actions (key destruction, users, grants, policies, decryption) need no second factor"
            );
        }
        if !project.has_keystore() {
            tracing::warn!(
                "no keystore opened: protect transforms fail and audit checkpoints are not signed"
            );
        }
        let tcp = match config.server.listen {
            Some(a) => Some(
                TcpListener::bind(a)
                    .await
                    .map_err(|e| ServerError::Io(format!("binding {a}: {e}")))?,
            ),
            None => None,
        };
        let unix = match &config.server.socket {
            Some(path) => Some(bind_socket(
                &config.resolve_path(path),
                config.server.socket_mode,
            )?),
            None => None,
        };
        Self::serve_on(
            tcp,
            unix,
            tls,
            project,
            Duration::from_secs(config.server.shutdown_grace_secs),
        )
    }

    /// Serves `project` on a bound listener (TLS when `tls` is given).
    pub fn serve(
        listener: TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
        project: Arc<Project>,
        grace: Duration,
    ) -> Result<Self, ServerError> {
        Self::serve_on(Some(listener), None, tls, project, grace)
    }

    /// Serves `project` on a TCP listener (TLS when `tls` is given) and/or a Unix socket
    /// (plain HTTP: the socket file's permissions decide who may connect; callers still sign
    /// in).
    pub fn serve_on(
        listener: Option<TcpListener>,
        unix: Option<tokio::net::UnixListener>,
        tls: Option<Arc<rustls::ServerConfig>>,
        project: Arc<Project>,
        grace: Duration,
    ) -> Result<Self, ServerError> {
        let addr = match &listener {
            Some(l) => l.local_addr().map_err(|e| ServerError::Io(e.to_string()))?,
            None => SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let state = AppState {
            project: project.clone(),
            metrics: Arc::default(),
        };
        let app = router(state);
        let stop = CancellationToken::new();
        let is_tls = tls.is_some();
        let tls = tls.map(TlsSettings::new);
        let task = tokio::spawn(accept_loop(
            listener,
            unix,
            tls.clone(),
            app,
            stop.clone(),
            project.clone(),
            grace,
        ));
        tracing::info!(%addr, tls = is_tls, "custos server listening");
        Ok(Self {
            addr,
            tls,
            stop,
            task,
            project,
        })
    }

    /// The TLS settings it accepts with (none for a plaintext server).
    pub fn tls(&self) -> Option<&TlsSettings> {
        self.tls.as_ref()
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The project it serves.
    pub fn project(&self) -> &Arc<Project> {
        &self.project
    }

    /// Starts a graceful shutdown and waits for it to finish.
    pub async fn shutdown(self) -> Result<(), ServerError> {
        self.stop.cancel();
        self.wait().await
    }

    /// Waits until the server has stopped (after a shutdown).
    pub async fn wait(self) -> Result<(), ServerError> {
        self.task
            .await
            .map_err(|e| ServerError::Io(format!("server task: {e}")))?
    }

    /// A token that starts the shutdown when cancelled.
    pub fn stopper(&self) -> CancellationToken {
        self.stop.clone()
    }
}

/// Binds the Unix socket at `path` with permissions `mode`, replacing a stale socket file
/// (never any other kind of file).
fn bind_socket(path: &std::path::Path, mode: u32) -> Result<tokio::net::UnixListener, ServerError> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    if let Ok(m) = std::fs::symlink_metadata(path) {
        if !m.file_type().is_socket() {
            return Err(ServerError::Config(format!(
                "server.socket: {} exists and is not a socket",
                path.display()
            )));
        }
        std::fs::remove_file(path)
            .map_err(|e| ServerError::Io(format!("removing the old {}: {e}", path.display())))?;
    }
    let l = tokio::net::UnixListener::bind(path)
        .map_err(|e| ServerError::Io(format!("binding {}: {e}", path.display())))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| ServerError::Io(format!("setting the mode of {}: {e}", path.display())))?;
    Ok(l)
}

/// Accepts the next connection from whichever listener has one.
async fn accept(
    tcp: Option<&TcpListener>,
    unix: Option<&tokio::net::UnixListener>,
) -> std::io::Result<Incoming> {
    let t = async {
        match tcp {
            Some(l) => l.accept().await.map(|(s, a)| Incoming::Tcp(s, a)),
            None => std::future::pending().await,
        }
    };
    let u = async {
        match unix {
            Some(l) => l.accept().await.map(|(s, _)| Incoming::Unix(s)),
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        r = t => r,
        r = u => r,
    }
}

enum Incoming {
    Tcp(tokio::net::TcpStream, SocketAddr),
    Unix(tokio::net::UnixStream),
}

async fn accept_loop(
    listener: Option<TcpListener>,
    unix: Option<tokio::net::UnixListener>,
    tls: Option<TlsSettings>,
    app: axum::Router,
    stop: CancellationToken,
    project: Arc<Project>,
    grace: Duration,
) -> Result<(), ServerError> {
    let graceful = GracefulShutdown::new();
    loop {
        let incoming = tokio::select! {
            _ = stop.cancelled() => break,
            r = accept(listener.as_ref(), unix.as_ref()) => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of descriptors and the like: back off rather than spin.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (tcp, peer) = match incoming {
            Incoming::Tcp(s, a) => (s, a),
            Incoming::Unix(s) => {
                // Local callers have no network address: the allowlist does not apply.
                let app = app.clone();
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| app.clone().oneshot(req),
                );
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc);
                let fut = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = fut.await {
                        tracing::debug!("socket connection ended: {e}");
                    }
                });
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        // Each request of a connection carries its peer address and, over TLS, the client
        // certificate the handshake verified.
        let service = move |cert: Option<tls::ClientCert>| {
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                if let Some(c) = &cert {
                    req.extensions_mut().insert(c.clone());
                }
                app.clone().oneshot(req)
            })
        };
        let builder = hyper::server::conn::http1::Builder::new();
        match &tls {
            Some(settings) => {
                let acceptor = settings.current();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let stream =
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, "TLS handshake refused: {e}");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake timed out");
                                return;
                            }
                        };
                    let cert = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(|c| tls::ClientCert::from_der(c));
                    let conn = builder.serve_connection(TokioIo::new(stream), service(cert));
                    if let Err(e) = watcher.watch(conn).await {
                        tracing::debug!(%peer, "connection ended: {e}");
                    }
                });
            }
            None => {
                let conn = builder.serve_connection(TokioIo::new(tcp), service(None));
                let fut = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = fut.await {
                        tracing::debug!(%peer, "connection ended: {e}");
                    }
                });
            }
        }
    }
    drop(listener);
    drop(unix);
    tracing::info!("shutting down: no new connections; finishing requests and runs");
    if tokio::time::timeout(grace.max(Duration::from_secs(1)), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the grace period are closed");
    }
    project.shutdown(grace).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Runs the server of `config` until SIGINT or SIGTERM, then shuts down gracefully.
pub async fn run(config: &ServerConfig) -> Result<(), ServerError> {
    use tokio::signal::unix::{SignalKind, signal};
    // Signal handlers first: a signal that arrives once the server listens is never the
    // default action (which would end the process without a graceful shutdown).
    let term = signal(SignalKind::terminate());
    // SIGHUP re-reads the certificate, key, client CA and CRL; new connections use them. A
    // reload that fails keeps the settings in use.
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(h) => Some(h),
        Err(e) => {
            tracing::error!("cannot listen for SIGHUP (no TLS reloads): {e}");
            None
        }
    };
    let server = Server::start(config).await?;
    let stop = server.stopper();
    tokio::spawn(async move {
        let mut term = match term {
            Ok(t) => t,
            Err(e) => {
                tracing::error!("cannot listen for SIGTERM: {e}");
                let _ = tokio::signal::ctrl_c().await;
                stop.cancel();
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
        stop.cancel();
    });
    let tls = server.tls().cloned();
    let stopped = server.wait();
    tokio::pin!(stopped);
    loop {
        let reload = async {
            match hup.as_mut() {
                Some(h) => h.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = &mut stopped => return r,
            _ = reload => match (&tls, tls_config(config)) {
                (Some(settings), Ok(Some(cfg))) => {
                    settings.replace(cfg);
                    tracing::info!("TLS settings reloaded (certificate, key, client CA, CRL)");
                }
                (_, Err(e)) => tracing::error!("TLS settings not reloaded; the old ones stay: {e}"),
                _ => tracing::info!("SIGHUP: a plaintext server has no TLS settings to reload"),
            },
        }
    }
}
