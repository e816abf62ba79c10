//! The server's TLS: rustls with the aws-lc-rs provider, TLS 1.2 and 1.3 only (1.3 only when
//! asked), HTTP/1.1 by ALPN. Older protocol versions are refused in the handshake.
//!
//! With a client CA, client certificates are verified (chain, validity, revocation lists)
//! during the handshake; [`ClientCert`] then names the verified certificate's subject, and
//! its common name is the user it signs in.

use std::sync::Arc;

use rustls::ServerConfig as TlsConfig;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use crate::ServerError;

/// Client certificate verification: the CAs (PEM), revocation lists (PEM) and whether a
/// certificate is required.
#[derive(Debug)]
pub struct ClientVerification<'a> {
    /// CA certificates that sign client certificates.
    pub ca_pem: &'a str,
    /// Revocation lists, if any.
    pub crl_pem: Option<&'a str>,
    /// Whether a connection without a certificate is refused.
    pub required: bool,
}

/// The verified client certificate of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    /// The subject's common name (the user it signs in), if it has one.
    pub common_name: Option<String>,
    /// SHA-256 of the certificate (DER), hex: named in audit records.
    pub fingerprint: String,
}

impl ClientCert {
    /// Reads the end-entity certificate rustls verified.
    pub fn from_der(der: &[u8]) -> Self {
        let fingerprint = hex(&Sha256::digest(der));
        let common_name = x509_parser::parse_x509_certificate(der)
            .ok()
            .and_then(|(_, c)| {
                c.subject()
                    .iter_common_name()
                    .next()
                    .and_then(|cn| cn.as_str().ok().map(str::to_string))
            });
        Self {
            common_name,
            fingerprint,
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A rustls server config from PEM text.
pub fn server_config(
    cert_pem: &str,
    key_pem: &str,
    min_version: &str,
    clients: Option<ClientVerification<'_>>,
) -> Result<Arc<TlsConfig>, ServerError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| ServerError::Config(format!("tls.cert: not a PEM certificate chain: {e}")))?;
    if certs.is_empty() {
        return Err(ServerError::Config(
            "tls.cert: no certificate in the PEM text".into(),
        ));
    }
    // The key's error never quotes the key.
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|_| ServerError::Config("tls.key: not a PEM private key".into()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let versions: &[&'static rustls::SupportedProtocolVersion] = if min_version == "1.3" {
        &[&rustls::version::TLS13]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let builder = TlsConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| ServerError::Config(format!("tls: {e}")))?;
    let builder = match clients {
        None => builder.with_no_client_auth(),
        Some(c) => {
            let mut roots = rustls::RootCertStore::empty();
            for ca in CertificateDer::pem_slice_iter(c.ca_pem.as_bytes()) {
                let ca = ca.map_err(|e| {
                    ServerError::Config(format!("tls.client_ca: not a PEM certificate: {e}"))
                })?;
                roots.add(ca).map_err(|e| {
                    ServerError::Config(format!("tls.client_ca: not a usable CA certificate: {e}"))
                })?;
            }
            if roots.is_empty() {
                return Err(ServerError::Config(
                    "tls.client_ca: no certificate in the PEM text".into(),
                ));
            }
            let mut v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            if let Some(crl) = c.crl_pem {
                let crls: Vec<CertificateRevocationListDer<'static>> =
                    CertificateRevocationListDer::pem_slice_iter(crl.as_bytes())
                        .collect::<Result<_, _>>()
                        .map_err(|e| {
                            ServerError::Config(format!("tls.client_crl: not a PEM CRL: {e}"))
                        })?;
                // A file without a CRL would revoke nothing: refused, not read as empty.
                if crls.is_empty() {
                    return Err(ServerError::Config(
                        "tls.client_crl: no CRL in the PEM text".into(),
                    ));
                }
                v = v.with_crls(crls);
            }
            if !c.required {
                v = v.allow_unauthenticated();
            }
            let v = v
                .build()
                .map_err(|e| ServerError::Config(format!("tls.client_ca: {e}")))?;
            builder.with_client_cert_verifier(v)
        }
    };
    let mut cfg = builder.with_single_cert(certs, key).map_err(|e| {
        ServerError::Config(format!("tls: the certificate and key do not fit: {e}"))
    })?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}
