//! The real server on loopback: HTTPS with a test CA, old protocol versions and plain HTTP
//! refused, graceful shutdown.

use std::sync::Arc;
use std::time::Duration;

use custos_server::Server;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::*;

struct Pki {
    cert_pem: String,
    key_pem: String,
    cert_der: CertificateDer<'static>,
}

fn pki() -> Pki {
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    Pki {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        cert_der: cert.der().clone(),
    }
}

async fn start(env: &Env, pki: &Pki, min: &str) -> Server {
    let tls = custos_server::tls::server_config(&pki.cert_pem, &pki.key_pem, min, None).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let project = open(env, Opts::default()).await;
    Server::serve(listener, Some(tls), project, Duration::from_secs(5)).unwrap()
}

fn client(
    pki: &Pki,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.cert_der.clone()).unwrap();
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(versions)
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

/// One HTTP/1.1 request over a fresh TLS connection; the whole response.
async fn https_get(
    connector: &tokio_rustls::TlsConnector,
    server: &Server,
    path: &str,
    token: Option<&str>,
) -> std::io::Result<String> {
    let tcp = TcpStream::connect(server.addr()).await?;
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await?;
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n")
            .as_bytes(),
    )
    .await?;
    let mut out = Vec::new();
    tls.read_to_end(&mut out).await?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[tokio::test]
async fn serves_https_with_tls_1_2_and_1_3() {
    let env = setup();
    let pki = pki();
    let server = start(&env, &pki, "1.2").await;
    for versions in [
        &[&rustls::version::TLS13][..],
        &[&rustls::version::TLS12][..],
    ] {
        let c = client(&pki, versions);
        let r = https_get(&c, &server, "/healthz", None).await.unwrap();
        assert!(r.starts_with("HTTP/1.1 200 OK"), "{r}");
        let r = https_get(&c, &server, "/v1/whoami", Some(&env.eng))
            .await
            .unwrap();
        assert!(
            r.starts_with("HTTP/1.1 200 OK") && r.contains("\"eng\""),
            "{r}"
        );
        let r = https_get(&c, &server, "/v1/whoami", None).await.unwrap();
        assert!(r.starts_with("HTTP/1.1 401"), "{r}");
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn min_version_1_3_refuses_tls_1_2() {
    let env = setup();
    let pki = pki();
    let server = start(&env, &pki, "1.3").await;
    let c12 = client(&pki, &[&rustls::version::TLS12]);
    assert!(https_get(&c12, &server, "/healthz", None).await.is_err());
    let c13 = client(&pki, &[&rustls::version::TLS13]);
    let r = https_get(&c13, &server, "/healthz", None).await.unwrap();
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    server.shutdown().await.unwrap();
}

/// A TLS 1.1 ClientHello (no supported_versions extension), as an old client sends it.
fn tls11_client_hello() -> Vec<u8> {
    let mut body = vec![0x03, 0x02]; // client_version TLS 1.1
    body.extend([0x42u8; 32]); // random
    body.push(0); // session id
    body.extend([0x00, 0x04, 0xc0, 0x13, 0x00, 0x2f]); // two TLS 1.0/1.1 suites
    body.extend([0x01, 0x00]); // null compression
    let mut hs = vec![0x01, 0x00, (body.len() >> 8) as u8, body.len() as u8];
    hs.extend(body);
    let mut rec = vec![0x16, 0x03, 0x01, (hs.len() >> 8) as u8, hs.len() as u8];
    rec.extend(hs);
    rec
}

async fn raw_exchange(server: &Server, bytes: &[u8]) -> Vec<u8> {
    let mut tcp = TcpStream::connect(server.addr()).await.unwrap();
    tcp.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut out)).await;
    out
}

#[tokio::test]
async fn tls_1_1_and_plain_http_are_refused() {
    let env = setup();
    let pki = pki();
    let server = start(&env, &pki, "1.2").await;
    let r = raw_exchange(&server, &tls11_client_hello()).await;
    // No ServerHello: a fatal alert (protocol_version or handshake_failure) or nothing.
    assert!(r.is_empty() || r[0] == 0x15, "{r:?}");
    if r.len() >= 7 {
        assert_eq!(r[5], 2, "a fatal alert: {r:?}");
        assert!([40, 70].contains(&r[6]), "alert {r:?}");
    }
    let r = raw_exchange(&server, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(!r.starts_with(b"HTTP/"), "plain HTTP was answered: {r:?}");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn key_errors_never_quote_the_key() {
    let mine = pki();
    let bad_key = mine
        .key_pem
        .replace("PRIVATE KEY-----\n", "PRIVATE KEY-----\nCANARYKEY");
    let e = custos_server::tls::server_config(&mine.cert_pem, &bad_key, "1.2", None).unwrap_err();
    assert!(!e.to_string().contains("CANARY"), "{e}");
    let other = pki();
    let e =
        custos_server::tls::server_config(&mine.cert_pem, &other.key_pem, "1.2", None).unwrap_err();
    assert!(e.to_string().contains("do not fit"), "{e}");
}

#[tokio::test]
async fn shutdown_lets_a_running_job_finish() {
    let env = setup();
    write_orders(&env.data.join("in/orders.csv"), 100_000);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let project = open(&env, Opts::default()).await;
    let a = app(&project);
    let (s, v) = call(
        &a,
        "POST",
        "/v1/pipelines",
        Some(&env.eng),
        Some(serde_json::json!({"config": pipeline("big", &[])})),
    )
    .await;
    assert_eq!(s, axum::http::StatusCode::CREATED, "{v}");
    let (_, job) = call(&a, "POST", "/v1/pipelines/big/runs", Some(&env.eng), None).await;
    let server = Server::serve(listener, None, project.clone(), Duration::from_secs(60)).unwrap();
    server.shutdown().await.unwrap();
    let j = project
        .job(
            &whoami(&project, &env.eng).await,
            job["id"].as_str().unwrap(),
        )
        .unwrap();
    assert_eq!(j.info().status, custos_app::JobStatus::Succeeded);
    assert!(env.data.join("out/big.parquet").is_file());
    // After the shutdown new runs are refused.
    let (s, _) = call(&a, "POST", "/v1/pipelines/big/runs", Some(&env.eng), None).await;
    assert_ne!(s, axum::http::StatusCode::ACCEPTED);
}

async fn whoami(project: &Arc<custos_app::Project>, token: &str) -> custos_app::Principal {
    project
        .authenticator()
        .authenticate(custos_app::Credential::api_token(token), None)
        .await
        .unwrap()
}

/// A client CA and a certificate it issues to `cn`.
struct ClientPki {
    ca_pem: String,
    ca: rcgen::Issuer<'static, rcgen::KeyPair>,
}

fn client_ca() -> ClientPki {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "custos test client CA");
    let cert = params.self_signed(&key).unwrap();
    ClientPki {
        ca_pem: cert.pem(),
        ca: rcgen::Issuer::new(params, key),
    }
}

/// A client certificate for `cn` signed by `ca`: (chain, key) for rustls.
fn client_cert(
    ca: &ClientPki,
    cn: &str,
) -> (
    Vec<CertificateDer<'static>>,
    rustls_pki_types::PrivateKeyDer<'static>,
) {
    client_cert_with(ca, cn, None)
}

/// [`client_cert`] with a given serial number (else a random one).
fn client_cert_with(
    ca: &ClientPki,
    cn: &str,
    serial: Option<u64>,
) -> (
    Vec<CertificateDer<'static>>,
    rustls_pki_types::PrivateKeyDer<'static>,
) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    params.serial_number = serial.map(rcgen::SerialNumber::from);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &ca.ca).unwrap();
    let der = rustls_pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
    (vec![cert.der().clone()], der)
}

fn mtls_client(
    pki: &Pki,
    cert: Option<(
        Vec<CertificateDer<'static>>,
        rustls_pki_types::PrivateKeyDer<'static>,
    )>,
) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.cert_der.clone()).unwrap();
    let b = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let cfg = match cert {
        Some((chain, key)) => b.with_client_auth_cert(chain, key).unwrap(),
        None => b.with_no_client_auth(),
    };
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

async fn start_mtls(env: &Env, pki: &Pki, ca: &ClientPki, required: bool) -> Server {
    let tls = custos_server::tls::server_config(
        &pki.cert_pem,
        &pki.key_pem,
        "1.2",
        Some(custos_server::tls::ClientVerification {
            ca_pem: &ca.ca_pem,
            crl_pem: None,
            required,
        }),
    )
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let project = open(env, Opts::default()).await;
    Server::serve(listener, Some(tls), project, Duration::from_secs(5)).unwrap()
}

#[tokio::test]
async fn client_certificates_sign_in_the_user_they_name() {
    let env = setup();
    let pki = pki();
    let ca = client_ca();
    let server = start_mtls(&env, &pki, &ca, false).await;
    // A certificate of the trusted CA signs in the user of its common name.
    let c = mtls_client(&pki, Some(client_cert(&ca, "eng")));
    let r = https_get(&c, &server, "/v1/whoami", None).await.unwrap();
    assert!(
        r.starts_with("HTTP/1.1 200") && r.contains("\"eng\"") && r.contains("client_certificate"),
        "{r}"
    );
    // A bearer token on the same connection is the identity that counts.
    let r = https_get(&c, &server, "/v1/whoami", Some(&env.ana))
        .await
        .unwrap();
    assert!(r.contains("\"ana\"") && r.contains("api_token"), "{r}");
    // A certificate naming no user is refused, and the refusal is audited.
    let c = mtls_client(&pki, Some(client_cert(&ca, "mallory")));
    let r = https_get(&c, &server, "/v1/whoami", None).await.unwrap();
    assert!(r.starts_with("HTTP/1.1 401"), "{r}");
    // A certificate from another CA fails the handshake.
    let rogue = client_ca();
    let c = mtls_client(&pki, Some(client_cert(&rogue, "admin")));
    assert!(https_get(&c, &server, "/v1/whoami", None).await.is_err());
    // Optional: without a certificate the token still works.
    let c = mtls_client(&pki, None);
    let r = https_get(&c, &server, "/v1/whoami", Some(&env.eng))
        .await
        .unwrap();
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let project = server.project().clone();
    let admin = whoami(&project, &env.admin).await;
    let records = project
        .audit_query(&admin, custos_app::AuditFilter::default())
        .await
        .unwrap();
    assert!(
        records
            .iter()
            .any(|r| r.event.error_code.as_deref() == Some("invalid_certificate")),
        "{records:?}"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn required_client_certificates_refuse_connections_without_one() {
    let env = setup();
    let pki = pki();
    let ca = client_ca();
    let server = start_mtls(&env, &pki, &ca, true).await;
    let c = mtls_client(&pki, None);
    // The handshake (or the first read, in TLS 1.3) fails: no HTTP answer.
    let r = https_get(&c, &server, "/v1/whoami", Some(&env.eng)).await;
    assert!(
        r.as_ref().map_or(true, |s| !s.starts_with("HTTP/")),
        "{r:?}"
    );
    let c = mtls_client(&pki, Some(client_cert(&ca, "ana")));
    let r = https_get(&c, &server, "/v1/whoami", None).await.unwrap();
    assert!(r.contains("\"ana\""), "{r}");
    server.shutdown().await.unwrap();
}

/// A CRL of `ca` (number `number`) revoking the certificates with the `revoked` serials.
fn crl_pem(ca: &ClientPki, number: u64, revoked: &[u64]) -> String {
    let params = rcgen::CertificateRevocationListParams {
        this_update: rcgen::date_time_ymd(2024, 1, 1),
        next_update: rcgen::date_time_ymd(2099, 1, 1),
        crl_number: rcgen::SerialNumber::from(number),
        issuing_distribution_point: None,
        revoked_certs: revoked
            .iter()
            .map(|s| rcgen::RevokedCertParams {
                serial_number: rcgen::SerialNumber::from(*s),
                revocation_time: rcgen::date_time_ymd(2024, 6, 1),
                reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    };
    params.signed_by(&ca.ca).unwrap().pem().unwrap()
}

#[tokio::test]
async fn a_reload_applies_a_new_crl_to_new_connections() {
    let env = setup();
    let pki = pki();
    let ca = client_ca();
    let dir = env.data.parent().unwrap().join("tls");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("server.crt"), &pki.cert_pem).unwrap();
    std::fs::write(dir.join("server.key"), &pki.key_pem).unwrap();
    std::fs::write(dir.join("clients-ca.crt"), &ca.ca_pem).unwrap();
    std::fs::write(dir.join("clients.crl"), crl_pem(&ca, 1, &[])).unwrap();
    let config = custos_server::ServerConfig::parse(
        r#"
[server]
listen = "127.0.0.1:0"
[tls]
cert = "${file:tls/server.crt}"
key = "${file:tls/server.key}"
client_ca = "${file:tls/clients-ca.crt}"
client_crl = "${file:tls/clients.crl}"
[pipelines]
roots = ["data"]
"#,
        env.data.parent().unwrap(),
    )
    .unwrap();
    let tls = custos_server::tls_config(&config).unwrap().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let project = open(&env, Opts::default()).await;
    let server = Server::serve(listener, Some(tls), project, Duration::from_secs(5)).unwrap();
    let eng = mtls_client(&pki, Some(client_cert_with(&ca, "eng", Some(1001))));
    let ana = mtls_client(&pki, Some(client_cert_with(&ca, "ana", Some(1002))));
    for c in [&eng, &ana] {
        let r = https_get(c, &server, "/v1/whoami", None).await.unwrap();
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    }
    // The CA revokes eng's certificate; the server picks the new CRL up on reload (SIGHUP).
    std::fs::write(dir.join("clients.crl"), crl_pem(&ca, 2, &[1001])).unwrap();
    server
        .tls()
        .unwrap()
        .replace(custos_server::tls_config(&config).unwrap().unwrap());
    assert!(https_get(&eng, &server, "/v1/whoami", None).await.is_err());
    let r = https_get(&ana, &server, "/v1/whoami", None).await.unwrap();
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    // A reload that does not parse fails and leaves the settings in use alone.
    std::fs::write(dir.join("clients.crl"), "not a CRL").unwrap();
    assert!(custos_server::tls_config(&config).is_err());
    let r = https_get(&ana, &server, "/v1/whoami", None).await.unwrap();
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    server.shutdown().await.unwrap();
}
