//! Authenticated GET throughput and latency of the server over TLS on loopback:
//! `cargo bench -p custos-server --bench http [-- SECONDS CONNECTIONS]`.
//!
//! Starts a real server (rustls, TLS 1.3) on 127.0.0.1 over a temporary project, opens
//! CONNECTIONS keep-alive connections (default 32) that each send `GET /v1/whoami` with a
//! bearer token back to back for SECONDS (default 5), and prints requests per second and the
//! latency percentiles. Every response must be a 200. Bounded in time and count; it talks only
//! to the loopback address.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const PASS: &str = "bench-passphrase";

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let secs: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(5);
    let conns: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(32);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(bench(
        Duration::from_secs(secs.min(60)),
        conns.clamp(1, 256),
    ));
}

async fn bench(dur: Duration, conns: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join(".custos");
    std::fs::create_dir_all(&state).expect("state dir");
    let token = custos_policy::Identities::open(&state)
        .expect("identities")
        .add_user("bench", "data_engineer", "bench", 0)
        .expect("user");
    custos_keys::Keystore::init(
        &custos_keys::keystore_path(&state),
        &custos_keys::Passphrase::new(PASS.into()),
        custos_keys::KdfParams {
            memory_kib: 8 * 1024,
            iterations: 1,
            lanes: 1,
        },
    )
    .expect("keystore");
    let project = custos_app::Project::open(
        &state,
        custos_app::ProjectOptions {
            passphrase: Some(custos_keys::Passphrase::new(PASS.into())),
            confinement: custos_app::Confinement::default(),
            allow: Vec::new(),
            max_concurrent_runs: 1,
            principal: "server".into(),
            mfa_required: false,
            oidc: None,
            mfa_enrollment: custos_app::EnrollmentMode::SelfService,
            accept_identity_rollback: false,
        },
    )
    .await
    .expect("project");
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
        .expect("params")
        .self_signed(&key)
        .expect("cert");
    let tls = custos_server::tls::server_config(&cert.pem(), &key.serialize_pem(), "1.2", None)
        .expect("tls");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let server = custos_server::Server::serve(listener, Some(tls), project, Duration::from_secs(5))
        .expect("serve");
    let addr = server.addr();

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(cert.der().to_vec()))
        .expect("root");
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let request = Arc::new(format!(
        "GET /v1/whoami HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\r\n",
        token.expose()
    ));

    // Warm-up: one request verifies the token (Argon2id) and fills the cache.
    client(connector.clone(), request.clone(), addr, Instant::now(), 1).await;
    let deadline = Instant::now() + dur;
    let tasks: Vec<_> = (0..conns)
        .map(|_| {
            tokio::spawn(client(
                connector.clone(),
                request.clone(),
                addr,
                deadline,
                0,
            ))
        })
        .collect();
    let start = Instant::now();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("client task"));
    }
    let took = start.elapsed().as_secs_f64();
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    println!(
        "GET /v1/whoami over TLS, {conns} connections, {:.1} s: {} requests, {:.0} req/s; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        took,
        all.len(),
        all.len() as f64 / took,
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        all.last().expect("requests").as_secs_f64() * 1e3,
    );
    server.shutdown().await.expect("shutdown");
}

/// One keep-alive connection sending requests until `deadline` (at least `min` of them);
/// returns each request's latency.
async fn client(
    connector: tokio_rustls::TlsConnector,
    request: Arc<String>,
    addr: std::net::SocketAddr,
    deadline: Instant,
    min: usize,
) -> Vec<Duration> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    let tls = connector
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("handshake");
    let mut s = BufReader::new(tls);
    let mut lat = Vec::new();
    let mut line = String::new();
    while lat.len() < min || Instant::now() < deadline {
        let t = Instant::now();
        s.get_mut()
            .write_all(request.as_bytes())
            .await
            .expect("write");
        line.clear();
        s.read_line(&mut line).await.expect("status line");
        assert!(line.starts_with("HTTP/1.1 200"), "{line}");
        let mut len = 0usize;
        loop {
            line.clear();
            s.read_line(&mut line).await.expect("header");
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().expect("length");
            }
        }
        let mut body = vec![0u8; len];
        s.read_exact(&mut body).await.expect("body");
        lat.push(t.elapsed());
    }
    lat
}
