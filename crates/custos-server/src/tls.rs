//! The server's TLS: rustls with the aws-lc-rs provider, TLS 1.2 and 1.3 only (1.3 only when
//! asked), HTTP/1.1 by ALPN. Older protocol versions are refused in the handshake.

use std::sync::Arc;

use rustls::ServerConfig as TlsConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::ServerError;

/// A rustls server config from PEM text.
pub fn server_config(
    cert_pem: &str,
    key_pem: &str,
    min_version: &str,
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
    let mut cfg = TlsConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| ServerError::Config(format!("tls: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            ServerError::Config(format!("tls: the certificate and key do not fit: {e}"))
        })?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}
