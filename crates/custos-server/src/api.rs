//! The HTTP API: thin handlers over [`custos_app::Project`]. Each handler signs the caller in
//! through the [`Authed`] extractor, calls one operation and maps its result; every decision
//! and its audit record happen inside the operation.
//!
//! The routes, their actions and schemas are one table, [`crate::openapi::routes`], from
//! which the router is built and the OpenAPI document (`GET /v1/openapi.json`) generated.
//!
//! Actions that need a second factor (where the server requires MFA) take the current TOTP
//! code in the `X-Custos-OTP` header.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header, request::Parts};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use custos_app::keys::KeyChange;
use custos_app::{
    AppError, AuditFilter, Credential, NewGrant, NewPolicies, NewUser, Principal, Project,
    RegisterRequest,
};
use serde::Deserialize;
use serde_json::json;

use crate::metrics::Metrics;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The project.
    pub project: Arc<Project>,
    /// Request counters.
    pub metrics: Arc<Metrics>,
}

/// An application error as an HTTP response: `{"error": {"code", "message"}}`.
#[derive(Debug)]
pub struct ApiError(pub AppError);

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        Self(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::error!(error = %self.0, "request failed");
        }
        let body = Json(json!({"error": {"code": self.0.code(), "message": self.0.to_string()}}));
        let mut r = (status, body).into_response();
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// The header carrying a one-time code (TOTP) for actions that need a second factor.
pub const OTP_HEADER: &str = "x-custos-otp";

/// The signed-in caller of a request (`Authorization: Bearer <API token or OIDC JWT>`, or the client
/// certificate of the connection).
pub struct Authed(pub Principal);

impl FromRequestParts<AppState> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        let address = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let auth = state.project.authenticator();
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty());
        // A bearer token wins over the connection's client certificate, so one client can
        // act as another user only with that user's own credential.
        let cred = match (token, parts.extensions.get::<crate::tls::ClientCert>()) {
            (Some(t), _) => Credential::bearer(t),
            (None, Some(c)) => Credential::ClientCertificate {
                common_name: c.common_name.clone(),
                fingerprint: c.fingerprint.clone(),
            },
            (None, None) => {
                return Err(auth
                    .missing(
                        address,
                        "send `Authorization: Bearer <API token>` or a client certificate",
                    )
                    .into());
            }
        };
        let mut p = auth.authenticate(cred, address).await?;
        if let Some(code) = parts
            .headers
            .get(OTP_HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.trim().is_empty())
        {
            p = p.with_one_time_code(code);
        }
        Ok(Authed(p))
    }
}

/// Parses a JSON body into `T`, naming the field that does not fit.
fn body<T: serde::de::DeserializeOwned>(bytes: &Bytes) -> ApiResult<T> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        ApiError(AppError::Invalid(format!(
            "request body: {}: {}",
            e.path(),
            e.inner()
        )))
    })
}

/// Builds the router from [`crate::openapi::routes`], the table the OpenAPI document is
/// generated from, so the document and the served routes cannot differ.
pub fn router(state: AppState) -> Router {
    let mut by_path: Vec<(&'static str, axum::routing::MethodRouter<AppState>)> = Vec::new();
    for r in crate::openapi::routes() {
        let handler = (r.handler)();
        match by_path.iter_mut().find(|(p, _)| *p == r.path) {
            Some((_, m)) => *m = std::mem::take(m).merge(handler),
            None => by_path.push((r.path, handler)),
        }
    }
    let mut app = Router::new();
    for (path, m) in by_path {
        app = app.route(path, m);
    }
    app.route("/v1/openapi.json", get(openapi))
        .fallback(not_found)
        .layer(middleware::from_fn(catch_panics))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

async fn openapi() -> Response {
    Json(crate::openapi::document()).into_response()
}

/// A handler that panics answers 500 with the usual error body (and is logged with its route,
/// never the panic's text, which could quote a value) instead of dropping the connection.
async fn catch_panics(req: Request, next: Next) -> Response {
    use futures::FutureExt;
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    match std::panic::AssertUnwindSafe(next.run(req))
        .catch_unwind()
        .await
    {
        Ok(r) => r,
        Err(_) => {
            tracing::error!(route = %route, "a request handler panicked");
            ApiError(AppError::Internal(
                "the server failed while handling the request".into(),
            ))
            .into_response()
        }
    }
}

/// Request ids, one JSON log line per request, and metrics.
async fn observe(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let id = match req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
    {
        Some(v) => v.to_string(),
        None => uuid::Uuid::now_v7().to_string(),
    };
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let method = req.method().to_string();
    if let Ok(v) = HeaderValue::from_str(&id) {
        req.headers_mut().insert("x-request-id", v);
    }
    let start = Instant::now();
    let mut resp = next.run(req).await;
    let took = start.elapsed();
    let status = resp.status().as_u16();
    state.metrics.observe(&method, &route, status, took);
    if route != "/metrics" && route != "/healthz" && route != "/readyz" {
        tracing::info!(
            request_id = %id,
            method = %method,
            route = %route,
            status,
            micros = took.as_micros() as u64,
            "request"
        );
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

async fn not_found() -> ApiError {
    ApiError(AppError::NotFound("no such endpoint".into()))
}

pub(crate) async fn healthz() -> &'static str {
    "ok\n"
}

pub(crate) async fn readyz(State(s): State<AppState>) -> Response {
    match s.project.ready().await {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}\n")).into_response(),
    }
}

pub(crate) async fn metrics(State(s): State<AppState>) -> Response {
    let jobs: Vec<_> = s.project.jobs_statuses();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(&jobs),
    )
        .into_response()
}

pub(crate) async fn whoami(Authed(p): Authed) -> Json<Principal> {
    Json(p)
}

pub(crate) async fn pipelines(State(s): State<AppState>, Authed(p): Authed) -> ApiResult<Response> {
    Ok(Json(s.project.pipelines(&p)?).into_response())
}

pub(crate) async fn pipeline(
    State(s): State<AppState>,
    Authed(p): Authed,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let reg = s.project.pipeline(&p, &name)?;
    let mut v = serde_json::to_value(&reg)
        .map_err(|e| ApiError(AppError::Internal(format!("encoding: {e}"))))?;
    v["config"] = json!(reg.config);
    Ok(Json(v).into_response())
}

pub(crate) async fn register(
    State(s): State<AppState>,
    Authed(p): Authed,
    bytes: Bytes,
) -> ApiResult<Response> {
    let req: RegisterRequest = body(&bytes)?;
    let reg = s.project.register_pipeline(&p, req).await?;
    Ok((StatusCode::CREATED, Json(reg)).into_response())
}

pub(crate) async fn start_run(
    State(s): State<AppState>,
    Authed(p): Authed,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let job = s.project.start_run(&p, &name).await?;
    let location = format!("/v1/jobs/{}", job.id);
    let mut r = (StatusCode::ACCEPTED, Json(job)).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    Ok(r)
}

pub(crate) async fn jobs(State(s): State<AppState>, Authed(p): Authed) -> Response {
    Json(s.project.jobs(&p)).into_response()
}

pub(crate) async fn job(
    State(s): State<AppState>,
    Authed(p): Authed,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(Json(s.project.job(&p, &id)?.info()).into_response())
}

pub(crate) async fn job_events(
    State(s): State<AppState>,
    Authed(p): Authed,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    let job = s.project.job(&p, &id)?;
    let stream = futures::stream::unfold((job, false), |(job, ended)| async move {
        if ended {
            return None;
        }
        let mut done = job.subscribe();
        if !*done.borrow() {
            let _ = tokio::time::timeout(Duration::from_millis(500), done.wait_for(|d| *d)).await;
        }
        let info = job.info();
        let last = info.status.is_final();
        let kind = if last { "end" } else { "progress" };
        let event = Event::default()
            .event(kind)
            .json_data(&info)
            .unwrap_or_else(|_| Event::default().event(kind));
        Some((Ok::<_, Infallible>(event), (job, last)))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

pub(crate) async fn cancel_job(
    State(s): State<AppState>,
    Authed(p): Authed,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(Json(s.project.cancel_job(&p, &id).await?).into_response())
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Limit {
    /// Most records returned.
    #[serde(default)]
    limit: Option<usize>,
}

pub(crate) async fn runs(
    State(s): State<AppState>,
    Authed(p): Authed,
    Query(q): Query<Limit>,
) -> ApiResult<Response> {
    let limit = q.limit.unwrap_or(20).clamp(1, 1000);
    Ok(Json(s.project.runs(&p, limit)?).into_response())
}

pub(crate) async fn run(
    State(s): State<AppState>,
    Authed(p): Authed,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(Json(s.project.run_record(&p, &id)?).into_response())
}

pub(crate) async fn audit_query(
    State(s): State<AppState>,
    Authed(p): Authed,
    Query(f): Query<AuditFilter>,
) -> ApiResult<Response> {
    Ok(Json(s.project.audit_query(&p, f).await?).into_response())
}

pub(crate) async fn audit_verify(
    State(s): State<AppState>,
    Authed(p): Authed,
) -> ApiResult<Response> {
    Ok(Json(s.project.audit_verify(&p).await?).into_response())
}

pub(crate) async fn audit_checkpoint(
    State(s): State<AppState>,
    Authed(p): Authed,
) -> ApiResult<Response> {
    Ok(Json(s.project.export_checkpoint(&p).await?).into_response())
}

/// The sizes a consistency proof covers.
#[derive(Debug, serde::Serialize)]
pub(crate) struct Consistent {
    /// Records in the exported checkpoint.
    old_size: u64,
    /// Records in the log now.
    size: u64,
}

pub(crate) async fn audit_prove(
    State(s): State<AppState>,
    Authed(p): Authed,
    bytes: Bytes,
) -> ApiResult<Response> {
    let old: custos_app::ExportedCheckpoint = body(&bytes)?;
    let (old_size, size) = s.project.prove_checkpoint(&p, &old).await?;
    Ok(Json(Consistent { old_size, size }).into_response())
}

pub(crate) async fn scan(
    State(s): State<AppState>,
    Authed(p): Authed,
    bytes: Bytes,
) -> ApiResult<Response> {
    let req: custos_app::ScanRequest = body(&bytes)?;
    Ok(Json(s.project.scan(&p, &req).await?).into_response())
}

pub(crate) async fn users(State(s): State<AppState>, Authed(p): Authed) -> ApiResult<Response> {
    Ok(Json(s.project.users(&p).await?).into_response())
}

pub(crate) async fn add_user(
    State(s): State<AppState>,
    Authed(p): Authed,
    bytes: Bytes,
) -> ApiResult<Response> {
    let new: NewUser = body(&bytes)?;
    let issued = s.project.add_user(&p, &new).await?;
    Ok((StatusCode::CREATED, no_store(Json(issued).into_response())).into_response())
}

/// Responses that carry a token or a TOTP secret are never cached.
fn no_store(mut r: Response) -> Response {
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

pub(crate) async fn remove_user(
    State(s): State<AppState>,
    Authed(p): Authed,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    s.project.remove_user(&p, &name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(crate) async fn enable_user(
    State(s): State<AppState>,
    Authed(p): Authed,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    Ok(Json(s.project.set_user_active(&p, &name, true).await?).into_response())
}

pub(crate) async fn disable_user(
    State(s): State<AppState>,
    Authed(p): Authed,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    Ok(Json(s.project.set_user_active(&p, &name, false).await?).into_response())
}

pub(crate) async fn rotate_token(
    State(s): State<AppState>,
    Authed(p): Authed,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let issued = s.project.rotate_token(&p, Some(&name)).await?;
    Ok(no_store(Json(issued).into_response()))
}

pub(crate) async fn rotate_own_token(
    State(s): State<AppState>,
    Authed(p): Authed,
) -> ApiResult<Response> {
    let issued = s.project.rotate_token(&p, None).await?;
    Ok(no_store(Json(issued).into_response()))
}

pub(crate) async fn mfa_reset(
    State(s): State<AppState>,
    Authed(p): Authed,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    s.project.mfa_reset(&p, &name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct All {
    /// Include expired and revoked grants.
    #[serde(default)]
    all: bool,
}

pub(crate) async fn grants(
    State(s): State<AppState>,
    Authed(p): Authed,
    Query(q): Query<All>,
) -> ApiResult<Response> {
    Ok(Json(s.project.grants(&p, q.all).await?).into_response())
}

pub(crate) async fn add_grant(
    State(s): State<AppState>,
    Authed(p): Authed,
    bytes: Bytes,
) -> ApiResult<Response> {
    let g: NewGrant = body(&bytes)?;
    Ok((
        StatusCode::CREATED,
        Json(s.project.add_grant(&p, &g).await?),
    )
        .into_response())
}

pub(crate) async fn revoke_grant(
    State(s): State<AppState>,
    Authed(p): Authed,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    Ok(Json(s.project.revoke_grant(&p, id).await?).into_response())
}

pub(crate) async fn mfa_status(
    State(s): State<AppState>,
    Authed(p): Authed,
) -> ApiResult<Response> {
    Ok(Json(s.project.mfa_status(&p)?).into_response())
}

/// An empty body is the default request.
fn body_or_default<T: serde::de::DeserializeOwned + Default>(bytes: &Bytes) -> ApiResult<T> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        Ok(T::default())
    } else {
        body(bytes)
    }
}

#[derive(Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Enroll {
    /// The one-time enrolment ticket an admin issued (required with
    /// `[auth] mfa_enrollment = "ticket"`).
    #[serde(default)]
    ticket: Option<String>,
}

pub(crate) async fn mfa_ticket(
    State(s): State<AppState>,
    Authed(p): Authed,
    Path(name): Path<String>,
    bytes: Bytes,
) -> ApiResult<Response> {
    let req: custos_app::NewTicket = body_or_default(&bytes)?;
    let issued = s.project.mfa_ticket(&p, &name, &req).await?;
    Ok(no_store(
        (StatusCode::CREATED, Json(issued)).into_response(),
    ))
}

pub(crate) async fn mfa_enroll(
    State(s): State<AppState>,
    Authed(p): Authed,
    bytes: Bytes,
) -> ApiResult<Response> {
    let req: Enroll = body_or_default(&bytes)?;
    let e = s.project.mfa_enroll(&p, req.ticket.as_deref()).await?;
    Ok(no_store(
        Json(json!({"secret": e.secret_base32(), "otpauth_uri": e.otpauth_uri()})).into_response(),
    ))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Code {
    /// The authenticator app's current 6-digit code.
    #[schemars(extend("pattern" = "^[0-9]{6}$"))]
    code: String,
}

pub(crate) async fn mfa_confirm(
    State(s): State<AppState>,
    Authed(p): Authed,
    bytes: Bytes,
) -> ApiResult<Response> {
    let c: Code = body(&bytes)?;
    Ok(Json(s.project.mfa_confirm(&p, &c.code).await?).into_response())
}

pub(crate) async fn policies(State(s): State<AppState>, Authed(p): Authed) -> ApiResult<Response> {
    Ok(Json(s.project.policies(&p).await?).into_response())
}

pub(crate) async fn set_policies(
    State(s): State<AppState>,
    Authed(p): Authed,
    bytes: Bytes,
) -> ApiResult<Response> {
    let new: NewPolicies = body(&bytes)?;
    Ok(Json(s.project.set_policies(&p, &new).await?).into_response())
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Retention {
    /// How long records are kept: `90d`, `12w`, `6m`, `7y`.
    #[schemars(extend("pattern" = "^[1-9][0-9]{0,5}[dwmy]$"))]
    retention: String,
}

pub(crate) async fn set_retention(
    State(s): State<AppState>,
    Authed(p): Authed,
    bytes: Bytes,
) -> ApiResult<Response> {
    let r: Retention = body(&bytes)?;
    s.project.set_audit_retention(&p, &r.retention).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(crate) async fn keys(State(s): State<AppState>, Authed(p): Authed) -> ApiResult<Response> {
    Ok(Json(s.project.keys(&p).await?).into_response())
}

/// A new key.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewKey {
    /// Name (lowercase letters, digits, '-' and '_').
    #[schemars(extend("pattern" = "^[a-z][a-z0-9_-]{0,63}$"))]
    name: String,
    /// `aead` (AES-256-GCM), `daead` (AES-SIV), `fpe` (FF1) or `hmac` (tokens).
    #[schemars(extend("enum" = ["aead", "daead", "fpe", "hmac"]))]
    purpose: String,
}

pub(crate) async fn create_key(
    State(s): State<AppState>,
    Authed(p): Authed,
    bytes: Bytes,
) -> ApiResult<Response> {
    let k: NewKey = body(&bytes)?;
    let info = s
        .project
        .change_key(&p, &k.name, &KeyChange::Create(k.purpose))
        .await?;
    Ok((StatusCode::CREATED, Json(info)).into_response())
}

pub(crate) async fn key(
    State(s): State<AppState>,
    Authed(p): Authed,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    Ok(Json(s.project.key(&p, &name).await?).into_response())
}

pub(crate) async fn rotate_key(
    State(s): State<AppState>,
    Authed(p): Authed,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    Ok(Json(s.project.change_key(&p, &name, &KeyChange::Rotate).await?).into_response())
}

/// A key's new minimum version.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct MinVersion {
    /// Versions below this one stop decrypting.
    version: u32,
}

pub(crate) async fn set_min_version(
    State(s): State<AppState>,
    Authed(p): Authed,
    Path(name): Path<String>,
    bytes: Bytes,
) -> ApiResult<Response> {
    let m: MinVersion = body(&bytes)?;
    let change = KeyChange::SetMinVersion(m.version);
    Ok(Json(s.project.change_key(&p, &name, &change).await?).into_response())
}

pub(crate) async fn disable_version(
    State(s): State<AppState>,
    Authed(p): Authed,
    Path((name, version)): Path<(String, u32)>,
) -> ApiResult<Response> {
    let change = KeyChange::Disable(version);
    Ok(Json(s.project.change_key(&p, &name, &change).await?).into_response())
}

pub(crate) async fn enable_version(
    State(s): State<AppState>,
    Authed(p): Authed,
    Path((name, version)): Path<(String, u32)>,
) -> ApiResult<Response> {
    let change = KeyChange::Enable(version);
    Ok(Json(s.project.change_key(&p, &name, &change).await?).into_response())
}

/// Destroying needs the key's name repeated, as the CLI asks for it.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Confirm {
    /// The key's name again.
    confirm: String,
}

pub(crate) async fn destroy_version(
    State(s): State<AppState>,
    Authed(p): Authed,
    Path((name, version)): Path<(String, u32)>,
    Query(c): Query<Confirm>,
) -> ApiResult<Response> {
    if c.confirm != name {
        return Err(ApiError(AppError::Invalid(format!(
            "destroying key \"{name}\" version {version} makes what it encrypted unreadable for good: repeat the key's name in ?confirm="
        ))));
    }
    let change = KeyChange::Destroy(version);
    Ok(Json(s.project.change_key(&p, &name, &change).await?).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    #[tokio::test]
    async fn a_panicking_handler_answers_500_and_the_server_goes_on() {
        let app: Router = Router::new()
            .route(
                "/boom",
                get(|| async {
                    if std::hint::black_box(true) {
                        panic!("CANARY-in-a-panic");
                    }
                    "unreachable"
                }),
            )
            .route("/ok", get(|| async { "ok" }))
            .layer(middleware::from_fn(catch_panics));
        let req = |p: &str| {
            Request::builder()
                .uri(p)
                .body(axum::body::Body::empty())
                .unwrap()
        };
        let r = app.clone().oneshot(req("/boom")).await.unwrap();
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains("\"code\":\"internal\""), "{text}");
        assert!(!text.contains("CANARY"), "{text}");
        let r = app.oneshot(req("/ok")).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
}
