//! Connections to PostgreSQL over verified TLS.
//!
//! The default is `verify-full`: TLS 1.2 or 1.3 (rustls with the aws-lc-rs provider), the
//! server certificate checked against a CA file or the system roots, and its name against the
//! host connected to. Client certificates (mTLS) are supported. `require` (TLS without
//! verification) and `disable` (plaintext) are refused unless the caller passes the pipeline's
//! `[danger] allow_insecure_db`, and then logged loudly. Passwords are secrets: they are resolved
//! from references just before connecting and never appear in errors or logs.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use custos_config::secret::Secret;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::ConnectorError;

pub mod copy;
pub mod sink;
pub mod source;

/// How the connection is protected (`sslmode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SslMode {
    /// TLS, certificate chain and host name verified (the default).
    #[default]
    VerifyFull,
    /// TLS without any certificate check: needs `[danger] allow_insecure_db`.
    Require,
    /// Plaintext: needs `[danger] allow_insecure_db`.
    Disable,
}

impl SslMode {
    /// Parses `verify-full`, `require` or `disable`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "verify-full" => Self::VerifyFull,
            "require" => Self::Require,
            "disable" => Self::Disable,
            _ => return None,
        })
    }

    /// The name as written in config.
    pub fn name(self) -> &'static str {
        match self {
            Self::VerifyFull => "verify-full",
            Self::Require => "require",
            Self::Disable => "disable",
        }
    }
}

/// Where and how to connect, with secrets already resolved.
#[derive(Debug, Default)]
pub struct PgTarget {
    /// `postgres://user@host:port/db` (may hold the password; it is a [`Secret`]).
    pub url: Option<Secret>,
    /// Host name (overrides the URL's).
    pub host: Option<String>,
    /// Port (overrides the URL's).
    pub port: Option<u16>,
    /// Database (overrides the URL's).
    pub dbname: Option<String>,
    /// User (overrides the URL's).
    pub user: Option<String>,
    /// Password.
    pub password: Option<Secret>,
    /// TLS mode.
    pub sslmode: SslMode,
    /// PEM file of the CA certificates to trust [default: the system roots].
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain, for certificate authentication.
    pub client_cert: Option<PathBuf>,
    /// PEM private key of the client certificate.
    pub client_key: Option<PathBuf>,
    /// Connect timeout [default: 10 s].
    pub connect_timeout: Option<Duration>,
    /// `[danger] allow_insecure_db`: permits `require` and `disable`.
    pub allow_insecure: bool,
}

impl PgTarget {
    /// Resolves a pipeline's connection settings: secret references are read now (files
    /// relative to `base`), certificate paths are resolved against `base`. Errors name the key
    /// (`component` is e.g. `sources.db`), never a resolved value.
    pub fn from_config(
        c: &custos_config::PgConnectionConfig,
        base: &Path,
        component: &str,
        allow_insecure: bool,
    ) -> Result<PgTarget, ConnectorError> {
        let secret = |key: &str, v: &str| -> Result<Secret, ConnectorError> {
            let bad = |m: String| ConnectorError::Postgres {
                context: format!("{component}.{key}"),
                message: m,
            };
            let (s, warnings) = custos_config::secret::parse(v)
                .and_then(|t| t.resolve(base))
                .map_err(|e| bad(e.to_string()))?;
            for w in warnings {
                tracing::warn!(key = %format!("{component}.{key}"), "{w}");
            }
            Ok(s)
        };
        let plain = |key: &str, v: &Option<String>| -> Result<Option<String>, ConnectorError> {
            v.as_deref()
                .map(|v| secret(key, v).map(|s| s.expose().to_string()))
                .transpose()
        };
        let path = |key: &str, v: &Option<String>| -> Result<Option<PathBuf>, ConnectorError> {
            Ok(plain(key, v)?.map(|p| base.join(p)))
        };
        Ok(PgTarget {
            url: c.url.as_deref().map(|u| secret("url", u)).transpose()?,
            host: plain("host", &c.host)?,
            port: c.port,
            dbname: plain("dbname", &c.dbname)?,
            user: plain("user", &c.user)?,
            password: c
                .password
                .as_deref()
                .map(|p| secret("password", p))
                .transpose()?,
            sslmode: SslMode::parse(&c.sslmode).ok_or_else(|| ConnectorError::Postgres {
                context: format!("{component}.sslmode"),
                message: format!("unknown sslmode \"{}\"", c.sslmode),
            })?,
            ca_file: path("ca_file", &c.ca_file)?,
            client_cert: path("client_cert", &c.client_cert)?,
            client_key: path("client_key", &c.client_key)?,
            connect_timeout: c.connect_timeout.map(Duration::from_secs),
            allow_insecure,
        })
    }
}

/// Quotes an identifier for SQL (`"na""me"`).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes a table name written as `name` or `schema.name`.
pub fn quote_table(name: &str) -> Option<String> {
    let (schema, table) = custos_config::postgres::split_table(name)?;
    Some(match schema {
        Some(s) => format!("{}.{}", quote_ident(s), quote_ident(table)),
        None => quote_ident(table),
    })
}

/// An open connection; the connection task runs until the client is dropped.
pub struct PgConnection {
    /// The client.
    pub client: tokio_postgres::Client,
    /// A description for messages: `postgres host:port/db as user` (never the password).
    pub describe: String,
    /// `postgres://host:port/db`, recorded with runs.
    pub location: String,
    /// Why the server ended the connection, once it has ("terminating connection due to
    /// idle-in-transaction timeout"): the client itself only sees "connection closed".
    closed: Arc<Mutex<Option<String>>>,
}

impl PgConnection {
    /// [`error_message`] of `e`, plus the server's reason when `e` is a closed connection and
    /// the server sent one before closing it (best effort: the reason can arrive after).
    pub fn error_message(&self, e: &tokio_postgres::Error, password: Option<&Secret>) -> String {
        let msg = error_message(e, password);
        if !e.is_closed() {
            return msg;
        }
        match &*self.closed.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(why) => format!("{msg}: the server said: {why}"),
            None => msg,
        }
    }
}

impl std::fmt::Debug for PgConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe)
    }
}

fn pg_error(describe: &str, message: String) -> ConnectorError {
    ConnectorError::Postgres {
        context: describe.to_string(),
        message,
    }
}

fn read_pem<T>(
    path: &Path,
    what: &str,
    parse: impl FnOnce(&Path) -> Result<T, rustls::pki_types::pem::Error>,
) -> Result<T, ConnectorError> {
    parse(path).map_err(|e| ConnectorError::BadPath {
        path: path.display().to_string(),
        reason: format!("cannot read the {what} (PEM): {e}"),
    })
}

/// Accepts any certificate (sslmode `require`): the channel is encrypted but the peer is not
/// authenticated. Handshake signatures are still checked with the provider's algorithms.
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The rustls client configuration for `t` (TLS 1.2 minimum).
fn tls_config(t: &PgTarget, describe: &str) -> Result<ClientConfig, ConnectorError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| pg_error(describe, format!("TLS setup: {e}")))?;
    let builder = match t.sslmode {
        SslMode::VerifyFull => {
            let mut roots = RootCertStore::empty();
            match &t.ca_file {
                Some(f) => {
                    let certs: Vec<CertificateDer<'static>> =
                        read_pem(f, "CA certificates", |p| {
                            CertificateDer::pem_file_iter(p)?.collect()
                        })?;
                    let (added, _) = roots.add_parsable_certificates(certs);
                    if added == 0 {
                        return Err(ConnectorError::BadPath {
                            path: f.display().to_string(),
                            reason: "holds no usable CA certificate".into(),
                        });
                    }
                }
                None => {
                    let found = rustls_native_certs::load_native_certs();
                    roots.add_parsable_certificates(found.certs);
                    if roots.is_empty() {
                        return Err(pg_error(
                            describe,
                            "no system CA certificates found to verify the server; set ca_file"
                                .into(),
                        ));
                    }
                }
            }
            builder.with_root_certificates(roots)
        }
        SslMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider))),
        SslMode::Disable => {
            return Err(pg_error(describe, "TLS is disabled".into()));
        }
    };
    match (&t.client_cert, &t.client_key) {
        (Some(c), Some(k)) => {
            let certs: Vec<CertificateDer<'static>> = read_pem(c, "client certificate", |p| {
                CertificateDer::pem_file_iter(p)?.collect()
            })?;
            let key = read_pem(k, "client key", |p| PrivateKeyDer::from_pem_file(p))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| pg_error(describe, format!("client certificate: {e}")))
        }
        (None, None) => Ok(builder.with_no_client_auth()),
        _ => Err(pg_error(
            describe,
            "client_cert and client_key must be given together".into(),
        )),
    }
}

/// The message of a connection or query error, with the password scrubbed should a server or
/// library ever echo it.
pub fn error_message(e: &tokio_postgres::Error, password: Option<&Secret>) -> String {
    let mut msg = match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => {
            let mut m = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                m.push_str(": ");
                m.push_str(&s.to_string());
                source = s.source();
            }
            m
        }
    };
    if let Some(p) = password
        && !p.expose().is_empty()
    {
        msg = msg.replace(p.expose(), "[redacted]");
    }
    msg
}

/// Drives a connection on its own task; when the server ends it, keeps the server's reason
/// for [`PgConnection::error_message`].
fn watch<S, T>(
    conn: tokio_postgres::Connection<S, T>,
    describe: String,
    closed: Arc<Mutex<Option<String>>>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(server = %describe, "connection closed: {e}");
            // The server's own words, when it sent any (no password reaches them).
            if e.as_db_error().is_some() {
                *closed.lock().unwrap_or_else(|p| p.into_inner()) = Some(error_message(&e, None));
            }
        }
    });
}

/// Connects to `t`. Errors name the server, database and user, never the password.
pub async fn connect(t: &PgTarget) -> Result<PgConnection, ConnectorError> {
    let mut cfg = match &t.url {
        Some(u) => {
            if u.expose().contains("sslmode=") {
                return Err(pg_error(
                    "postgres",
                    "set TLS with the `sslmode` key, not in the URL".into(),
                ));
            }
            u.expose().parse::<tokio_postgres::Config>().map_err(|_| {
                pg_error(
                    "postgres",
                    "the url is not a valid postgres:// connection URL".into(),
                )
            })?
        }
        None => tokio_postgres::Config::new(),
    };
    if let Some(h) = &t.host {
        cfg.host(h);
    }
    if let Some(p) = t.port {
        cfg.port(p);
    }
    if let Some(d) = &t.dbname {
        cfg.dbname(d);
    }
    if let Some(u) = &t.user {
        cfg.user(u);
    }
    if let Some(p) = &t.password {
        cfg.password(p.expose());
    }
    cfg.connect_timeout(t.connect_timeout.unwrap_or(Duration::from_secs(10)));
    cfg.application_name("custos");
    let host = cfg
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = cfg.get_ports().first().copied().unwrap_or(5432);
    let describe = format!(
        "postgres {host}:{port}/{} as {}",
        cfg.get_dbname().unwrap_or("-"),
        cfg.get_user().unwrap_or("-")
    );
    let location = format!(
        "postgres://{host}:{port}/{}",
        cfg.get_dbname().unwrap_or("-")
    );
    let password = t.password.as_ref();
    if t.sslmode != SslMode::VerifyFull {
        if !t.allow_insecure {
            return Err(pg_error(
                &describe,
                format!(
                    "sslmode \"{}\" does not verify the server; use verify-full, or allow it explicitly with [danger] allow_insecure_db = true",
                    t.sslmode.name()
                ),
            ));
        }
        tracing::warn!(
            server = %describe,
            sslmode = t.sslmode.name(),
            "DANGER: connecting to PostgreSQL without a verified TLS connection, allowed by [danger] allow_insecure_db"
        );
    }
    let closed: Arc<Mutex<Option<String>>> = Arc::default();
    let client = if t.sslmode == SslMode::Disable {
        cfg.ssl_mode(tokio_postgres::config::SslMode::Disable);
        let (client, conn) = cfg
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(|e| pg_error(&describe, error_message(&e, password)))?;
        watch(conn, describe.clone(), closed.clone());
        client
    } else {
        cfg.ssl_mode(tokio_postgres::config::SslMode::Require);
        let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls_config(t, &describe)?);
        let (client, conn) = cfg
            .connect(tls)
            .await
            .map_err(|e| pg_error(&describe, error_message(&e, password)))?;
        watch(conn, describe.clone(), closed.clone());
        client
    };
    Ok(PgConnection {
        client,
        describe,
        location,
        closed,
    })
}
