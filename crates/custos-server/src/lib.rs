//! custos-server: `custos serve`, the HTTPS API of a project. The server alone holds the
//! keystore passphrase, the identity store, the policies and the audit log; clients hold only
//! their API tokens. Everything it does goes through [`custos_app`], so decisions and audit
//! records are the same as in local mode.
//!
//! TLS is rustls (TLS 1.2+, HTTP/1.1); plain HTTP only on a loopback address behind
//! `[danger] plaintext`. Shutdown (SIGINT/SIGTERM, or [`Server::shutdown`]) stops accepting,
//! lets open requests finish, gives running jobs their grace period and then cancels them
//! (they roll back), and closes the audit log with a signed checkpoint.

pub mod api;
pub mod client;
pub mod config;
pub mod metrics;
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

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A running server.
pub struct Server {
    addr: SocketAddr,
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
        let tls = match &config.tls {
            Some(t) => {
                let cert = config.resolve("tls.cert", &t.cert)?;
                let key = config.resolve("tls.key", &t.key)?;
                Some(tls::server_config(
                    cert.expose(),
                    key.expose(),
                    &t.min_version,
                )?)
            }
            None => None,
        };
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
            },
        )
        .await?;
        if !project.has_keystore() {
            tracing::warn!(
                "no keystore opened: protect transforms fail and audit checkpoints are not signed"
            );
        }
        let listener = TcpListener::bind(config.server.listen)
            .await
            .map_err(|e| ServerError::Io(format!("binding {}: {e}", config.server.listen)))?;
        Self::serve(
            listener,
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
        let addr = listener
            .local_addr()
            .map_err(|e| ServerError::Io(e.to_string()))?;
        let state = AppState {
            project: project.clone(),
            metrics: Arc::default(),
        };
        let app = router(state);
        let stop = CancellationToken::new();
        let is_tls = tls.is_some();
        let task = tokio::spawn(accept_loop(
            listener,
            tls.map(tokio_rustls::TlsAcceptor::from),
            app,
            stop.clone(),
            project.clone(),
            grace,
        ));
        tracing::info!(%addr, tls = is_tls, "custos server listening");
        Ok(Self {
            addr,
            stop,
            task,
            project,
        })
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

async fn accept_loop(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    app: axum::Router,
    stop: CancellationToken,
    project: Arc<Project>,
    grace: Duration,
) -> Result<(), ServerError> {
    let graceful = GracefulShutdown::new();
    loop {
        let (tcp, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of descriptors and the like: back off rather than spin.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        let svc =
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                app.clone().oneshot(req)
            });
        let builder = hyper::server::conn::http1::Builder::new();
        match &tls {
            Some(acceptor) => {
                let acceptor = acceptor.clone();
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
                    let conn = builder.serve_connection(TokioIo::new(stream), svc);
                    if let Err(e) = watcher.watch(conn).await {
                        tracing::debug!(%peer, "connection ended: {e}");
                    }
                });
            }
            None => {
                let conn = builder.serve_connection(TokioIo::new(tcp), svc);
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
    let server = Server::start(config).await?;
    let stop = server.stopper();
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
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
    server.wait().await
}
