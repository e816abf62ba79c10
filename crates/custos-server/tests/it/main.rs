//! custos-server tests: the router through `oneshot` (sign-in, decisions, confinement, runs,
//! audit), and the real server over TLS on loopback.
#![allow(clippy::unwrap_used, missing_docs)]

mod admin;
mod api;
mod oidc;
mod tls;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use custos_app::{Cidr, Confinement, Project, ProjectOptions};
use custos_server::{AppState, router};
use serde_json::Value;
use tower::ServiceExt;

/// The keystore passphrase of test projects: a canary that must never be echoed.
pub const PASSPHRASE: &str = "CANARY-passphrase-7f3a";

/// A project directory with three users, a keystore and a data root.
pub struct Env {
    pub _dir: tempfile::TempDir,
    pub state: PathBuf,
    pub data: PathBuf,
    pub admin: String,
    pub eng: String,
    pub ana: String,
}

pub fn setup() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("project/.custos");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::create_dir_all(data.join("in")).unwrap();
    let ids = custos_policy::Identities::open(&state).unwrap();
    let now = 1_700_000_000_000_000_000;
    let admin = ids
        .add_user("admin", "security_admin", "admin", now)
        .unwrap();
    let eng = ids.add_user("eng", "data_engineer", "eng", now).unwrap();
    let ana = ids.add_user("ana", "analyst", "ana", now).unwrap();
    custos_keys::Keystore::init(
        &custos_keys::keystore_path(&state),
        &custos_keys::Passphrase::new(PASSPHRASE.into()),
        custos_keys::KdfParams {
            memory_kib: 8 * 1024,
            iterations: 1,
            lanes: 1,
        },
    )
    .unwrap();
    write_orders(&data.join("in/orders.csv"), 50);
    Env {
        admin: admin.expose().to_string(),
        eng: eng.expose().to_string(),
        ana: ana.expose().to_string(),
        state,
        data,
        _dir: dir,
    }
}

/// A CSV of `n` orders without personal data.
pub fn write_orders(path: &Path, n: usize) {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(f, "order_id,product,qty").unwrap();
    for i in 0..n {
        writeln!(f, "{i},widget-{},{}", i % 7, i % 5 + 1).unwrap();
    }
}

/// A pipeline copying `in/orders.csv` to `out/NAME.parquet`.
pub fn pipeline(name: &str, tags: &[&str]) -> String {
    let tags: Vec<String> = tags.iter().map(|t| format!("\"{t}\"")).collect();
    format!(
        r#"[pipeline]
name = "{name}"
tags = [{}]

[sources.orders]
type = "csv"
path = "in/orders.csv"

[transforms.big]
type = "sql"
inputs = ["orders"]
query = "SELECT order_id, product, qty FROM orders WHERE qty > 0"

[sinks.out]
type = "parquet"
inputs = ["big"]
path = "out/{name}.parquet"
"#,
        tags.join(", ")
    )
}

pub struct Opts {
    pub secrets: Vec<String>,
    pub allow: Vec<&'static str>,
    pub runs: usize,
    pub mfa: bool,
    pub oidc: Option<custos_app::oidc::OidcProvider>,
    pub mfa_enrollment: custos_app::EnrollmentMode,
    pub accept_identity_rollback: bool,
}

impl Default for Opts {
    fn default() -> Self {
        Self {
            secrets: vec!["env:PG_*".into()],
            allow: Vec::new(),
            runs: 2,
            mfa: true,
            oidc: None,
            mfa_enrollment: custos_app::EnrollmentMode::SelfService,
            accept_identity_rollback: false,
        }
    }
}

pub async fn open(env: &Env, o: Opts) -> Arc<Project> {
    Project::open(
        &env.state,
        ProjectOptions {
            passphrase: Some(custos_keys::Passphrase::new(PASSPHRASE.into())),
            confinement: Confinement::new(std::slice::from_ref(&env.data), &o.secrets).unwrap(),
            allow: o.allow.iter().map(|c| Cidr::parse(c).unwrap()).collect(),
            max_concurrent_runs: o.runs,
            principal: "server".into(),
            mfa_required: o.mfa,
            oidc: o.oidc,
            mfa_enrollment: o.mfa_enrollment,
            accept_identity_rollback: o.accept_identity_rollback,
        },
    )
    .await
    .unwrap()
}

pub fn app(project: &Arc<Project>) -> axum::Router {
    router(AppState {
        project: project.clone(),
        metrics: Arc::default(),
    })
}

/// One request through the router, from 127.0.0.1 unless `from` says otherwise.
pub async fn call_from(
    app: &axum::Router,
    from: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, axum::http::HeaderMap, Value) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let mut req = match body {
        Some(b) => req
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(b.to_string()))
            .unwrap(),
        None => req.body(Body::empty()).unwrap(),
    };
    let addr: SocketAddr = format!("{from}:40000").parse().unwrap();
    req.extensions_mut().insert(ConnectInfo(addr));
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24)
        .await
        .unwrap();
    let v = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, headers, v)
}

pub async fn call(
    app: &axum::Router,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let (s, _, v) = call_from(app, "127.0.0.1", method, path, token, body).await;
    (s, v)
}

/// Polls a job until it ends.
pub async fn wait_job(app: &axum::Router, token: &str, id: &str) -> Value {
    for _ in 0..600 {
        let (s, v) = call(app, "GET", &format!("/v1/jobs/{id}"), Some(token), None).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        if !["queued", "running"].contains(&v["status"].as_str().unwrap()) {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("job {id} did not end");
}
