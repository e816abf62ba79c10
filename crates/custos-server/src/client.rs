//! A client of the API, for the CLI's server mode (`CUSTOS_SERVER=https://host:8443`): one
//! HTTP/1.1 request per connection over rustls (TLS 1.2+, the server checked against a CA
//! given by reference or the system roots). Plain `http://` only to a loopback address, or
//! `unix:///path/to/custos.sock` for a server's Unix socket on this machine.

use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use zeroize::Zeroizing;

/// Why a request did not get an answer, or the answer was an error.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// `CUSTOS_SERVER` or the CA is unusable.
    #[error("{0}")]
    Config(String),
    /// The server could not be reached or spoke no HTTP.
    #[error("{0}")]
    Connect(String),
    /// The server answered with an error.
    #[error("{message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// The error's code (`denied`, `invalid`, ...).
        code: String,
        /// The server's message.
        message: String,
    },
}

impl ClientError {
    /// The CLI exit code: 3 not signed in or denied, 2 invalid or not found, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Config(_) => 2,
            ClientError::Connect(_) => 1,
            ClientError::Api { status, .. } => match status {
                401 | 403 => 3,
                404 | 422 | 400 => 2,
                _ => 1,
            },
        }
    }
}

/// A server and the token to call it with.
pub struct Client {
    host: String,
    port: u16,
    tls: Option<tokio_rustls::TlsConnector>,
    socket: Option<std::path::PathBuf>,
    token: Zeroizing<String>,
    otp: Option<Zeroizing<String>>,
    base: String,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("server", &self.base)
            .finish()
    }
}

impl Client {
    /// A client of `server` (`https://host[:port]`, or `http://127.0.0.1:port`), trusting the
    /// PEM CA `ca_pem` (else the system roots), signing in with `token`.
    pub fn new(server: &str, ca_pem: Option<&str>, token: &str) -> Result<Self, ClientError> {
        let bad = |why: &str| ClientError::Config(format!("CUSTOS_SERVER \"{server}\": {why}"));
        if let Some(path) = server.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err(bad(
                    "give the socket's absolute path: unix:///run/custos.sock",
                ));
            }
            return Ok(Self {
                host: "localhost".into(),
                port: 0,
                tls: None,
                socket: Some(path.into()),
                token: Zeroizing::new(token.trim().to_string()),
                otp: None,
                base: server.to_string(),
            });
        }
        let (tls, rest) = if let Some(r) = server.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = server.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(bad("use https://HOST[:PORT] or unix:///PATH"));
        };
        let authority = rest.trim_end_matches('/');
        if authority.contains('/') || authority.is_empty() {
            return Err(bad("give only the scheme, host and port"));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
                let port = p
                    .parse::<u16>()
                    .map_err(|_| bad("the port is not a number"))?;
                (
                    h.trim_start_matches('[').trim_end_matches(']').to_string(),
                    port,
                )
            }
            _ => (
                authority
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string(),
                if tls { 443 } else { 80 },
            ),
        };
        let connector = if tls {
            let mut roots = rustls::RootCertStore::empty();
            match ca_pem {
                Some(pem) => {
                    for c in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                        let c = c.map_err(|e| {
                            ClientError::Config(format!(
                                "CUSTOS_SERVER_CA: not a PEM certificate: {e}"
                            ))
                        })?;
                        roots
                            .add(c)
                            .map_err(|e| ClientError::Config(format!("CUSTOS_SERVER_CA: {e}")))?;
                    }
                }
                None => {
                    for c in rustls_native_certs::load_native_certs().certs {
                        let _ = roots.add(c);
                    }
                }
            }
            if roots.is_empty() {
                return Err(ClientError::Config(
                    "no CA to check the server with: set CUSTOS_SERVER_CA".into(),
                ));
            }
            let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientError::Config(format!("TLS: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
            Some(tokio_rustls::TlsConnector::from(Arc::new(cfg)))
        } else {
            let loopback = host == "localhost"
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if !loopback {
                return Err(bad(
                    "plain http:// only to a loopback address; use https://",
                ));
            }
            None
        };
        Ok(Self {
            host,
            port,
            tls: connector,
            socket: None,
            token: Zeroizing::new(token.trim().to_string()),
            otp: None,
            base: server.trim_end_matches('/').to_string(),
        })
    }

    /// Sends a one-time code (TOTP) with every request, for actions that need a second factor.
    pub fn with_one_time_code(mut self, code: &str) -> Self {
        self.otp = Some(Zeroizing::new(code.trim().to_string()));
        self
    }

    /// The server's URL.
    pub fn server(&self) -> &str {
        &self.base
    }

    /// Sends one request and returns the decoded JSON body of a 2xx answer.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        if let Some(sock) = &self.socket {
            let unix = tokio::net::UnixStream::connect(sock)
                .await
                .map_err(|e| ClientError::Connect(format!("connecting to {}: {e}", self.base)))?;
            let (status, text) = self.exchange(unix, method, path, body).await?;
            return answer(status, &text);
        }
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| ClientError::Connect(format!("connecting to {}: {e}", self.base)))?;
        let _ = tcp.set_nodelay(true);
        let (status, text) = match &self.tls {
            Some(c) => {
                let name = ServerName::try_from(self.host.clone()).map_err(|_| {
                    ClientError::Config(format!("\"{}\" is not a host name", self.host))
                })?;
                let s = c
                    .connect(name, tcp)
                    .await
                    .map_err(|e| ClientError::Connect(format!("TLS with {}: {e}", self.base)))?;
                self.exchange(s, method, path, body).await?
            }
            None => self.exchange(tcp, method, path, body).await?,
        };
        answer(status, &text)
    }

    async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        mut s: S,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, String), ClientError> {
        let io = |e: std::io::Error| ClientError::Connect(format!("talking to {}: {e}", self.base));
        let payload = body.map(Value::to_string).unwrap_or_default();
        let mut req = Zeroizing::new(format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.host,
            payload.len()
        ));
        if !self.token.is_empty() {
            req.push_str("Authorization: Bearer ");
            req.push_str(&self.token);
            req.push_str("\r\n");
        }
        if body.is_some() {
            req.push_str("Content-Type: application/json\r\n");
        }
        if let Some(code) = &self.otp {
            req.push_str("X-Custos-OTP: ");
            req.push_str(code);
            req.push_str("\r\n");
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).await.map_err(io)?;
        s.write_all(payload.as_bytes()).await.map_err(io)?;
        s.flush().await.map_err(io)?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.map_err(io)?;
        parse_response(&raw)
            .ok_or_else(|| ClientError::Connect(format!("{} did not answer with HTTP", self.base)))
    }
}

/// GETs the JSON document at an `https://` URL (an identity provider's key set), checking
/// the server against `ca_pem` (else the system roots). No credential is sent.
pub async fn fetch_json(url: &str, ca_pem: Option<&str>) -> Result<Value, ClientError> {
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| ClientError::Config(format!("\"{url}\": only https:// URLs are fetched")))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let c = Client::new(&format!("https://{authority}"), ca_pem, "")?;
    c.call("GET", path, None).await
}

/// The decoded JSON body of a 2xx answer, else the server's error.
fn answer(status: u16, text: &str) -> Result<Value, ClientError> {
    let v: Value = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
    };
    if (200..300).contains(&status) {
        return Ok(v);
    }
    Err(ClientError::Api {
        status,
        code: v["error"]["code"].as_str().unwrap_or("error").to_string(),
        message: v["error"]["message"]
            .as_str()
            .map_or_else(|| format!("the server answered {status}"), str::to_string),
    })
}

/// Splits an HTTP/1.1 response into its status and body (content-length or chunked).
fn parse_response(raw: &[u8]) -> Option<(u16, String)> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()?
        .strip_prefix("HTTP/1.1 ")?
        .get(..3)?
        .parse()
        .ok()?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let mut body = &raw[end + 4..];
    let bytes = if chunked {
        let mut out = Vec::new();
        loop {
            let nl = body.windows(2).position(|w| w == b"\r\n")?;
            let size = usize::from_str_radix(
                std::str::from_utf8(&body[..nl])
                    .ok()?
                    .split(';')
                    .next()?
                    .trim(),
                16,
            )
            .ok()?;
            body = &body[nl + 2..];
            if size == 0 {
                break;
            }
            out.extend_from_slice(body.get(..size)?);
            body = body.get(size + 2..)?;
        }
        out
    } else {
        body.to_vec()
    };
    Some((status, String::from_utf8_lossy(&bytes).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_parse() {
        let r = b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(parse_response(r), Some((201, "{}".into())));
        let r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(r), Some((200, "abcde".into())));
        assert_eq!(parse_response(b"\x15\x03\x03"), None);
    }

    #[test]
    fn server_urls() {
        let c = Client::new("http://127.0.0.1:8080/", None, "t").unwrap();
        assert_eq!((c.host.as_str(), c.port), ("127.0.0.1", 8080));
        assert!(Client::new("http://10.0.0.1:80", None, "t").is_err());
        assert!(Client::new("ftp://x", None, "t").is_err());
        assert!(Client::new("https://h:x", None, "t").is_err());
        let c = Client::new("http://[::1]:9", None, "t").unwrap();
        assert_eq!((c.host.as_str(), c.port), ("::1", 9));
        let c = Client::new("unix:///run/custos.sock", None, "t").unwrap();
        assert_eq!(
            c.socket.as_deref(),
            Some(std::path::Path::new("/run/custos.sock"))
        );
        assert!(Client::new("unix://run/custos.sock", None, "t").is_err());
        assert!(!format!("{c:?}").contains('t') || !format!("{c:?}").contains("token"));
    }
}
