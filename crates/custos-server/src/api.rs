//! The HTTP API: thin handlers over [`custos_app::Project`]. Each handler signs the caller in
//! through the [`Authed`] extractor, calls one operation and maps its result; every decision
//! and its audit record happen inside the operation.
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | `/healthz` | liveness (no sign-in) |
//! | GET | `/readyz` | readiness: the audit writer answers (no sign-in) |
//! | GET | `/metrics` | Prometheus metrics (no sign-in) |
//! | GET | `/v1/whoami` | the signed-in principal |
//! | GET, POST | `/v1/pipelines` | registered pipelines; register one (`register_pipeline`) |
//! | GET | `/v1/pipelines/{name}` | one, with its config |
//! | POST | `/v1/pipelines/{name}/runs` | start a run: 202 with the job (`run_pipeline`) |
//! | GET | `/v1/jobs`, `/v1/jobs/{id}` | jobs with status and progress |
//! | GET | `/v1/jobs/{id}/events` | live progress as server-sent events until the job ends |
//! | POST | `/v1/jobs/{id}/cancel` | cancel (`run_pipeline`) |
//! | GET | `/v1/runs`, `/v1/runs/{id}` | recorded runs |
//! | GET | `/v1/audit` | audit records, filtered (`read_audit`) |
//! | POST | `/v1/audit/verify` | verify the log against its signed checkpoints (`read_audit`) |

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header, request::Parts};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use custos_app::{AppError, AuditFilter, Credential, Principal, Project, RegisterRequest};
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

/// The signed-in caller of a request (`Authorization: Bearer <API token>`).
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
        let Some(token) = token else {
            return Err(auth
                .missing(address, "send `Authorization: Bearer <API token>`")
                .into());
        };
        let p = auth
            .authenticate(Credential::api_token(token), address)
            .await?;
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

/// Builds the router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/whoami", get(whoami))
        .route("/v1/pipelines", get(pipelines).post(register))
        .route("/v1/pipelines/{name}", get(pipeline))
        .route("/v1/pipelines/{name}/runs", post(start_run))
        .route("/v1/jobs", get(jobs))
        .route("/v1/jobs/{id}", get(job))
        .route("/v1/jobs/{id}/events", get(job_events))
        .route("/v1/jobs/{id}/cancel", post(cancel_job))
        .route("/v1/runs", get(runs))
        .route("/v1/runs/{id}", get(run))
        .route("/v1/audit", get(audit_query))
        .route("/v1/audit/verify", post(audit_verify))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
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

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(s): State<AppState>) -> Response {
    match s.project.ready().await {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}\n")).into_response(),
    }
}

async fn metrics(State(s): State<AppState>) -> Response {
    let jobs: Vec<_> = s.project.jobs_statuses();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(&jobs),
    )
        .into_response()
}

async fn whoami(Authed(p): Authed) -> Json<Principal> {
    Json(p)
}

async fn pipelines(State(s): State<AppState>, Authed(p): Authed) -> ApiResult<Response> {
    Ok(Json(s.project.pipelines(&p)?).into_response())
}

async fn pipeline(
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

async fn register(
    State(s): State<AppState>,
    Authed(p): Authed,
    bytes: Bytes,
) -> ApiResult<Response> {
    let req: RegisterRequest = body(&bytes)?;
    let reg = s.project.register_pipeline(&p, req).await?;
    Ok((StatusCode::CREATED, Json(reg)).into_response())
}

async fn start_run(
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

async fn jobs(State(s): State<AppState>, Authed(p): Authed) -> Response {
    Json(s.project.jobs(&p)).into_response()
}

async fn job(
    State(s): State<AppState>,
    Authed(p): Authed,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(Json(s.project.job(&p, &id)?.info()).into_response())
}

async fn job_events(
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

async fn cancel_job(
    State(s): State<AppState>,
    Authed(p): Authed,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(Json(s.project.cancel_job(&p, &id).await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Limit {
    #[serde(default)]
    limit: Option<usize>,
}

async fn runs(
    State(s): State<AppState>,
    Authed(p): Authed,
    Query(q): Query<Limit>,
) -> ApiResult<Response> {
    let limit = q.limit.unwrap_or(20).clamp(1, 1000);
    Ok(Json(s.project.runs(&p, limit)?).into_response())
}

async fn run(
    State(s): State<AppState>,
    Authed(p): Authed,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(Json(s.project.run_record(&p, &id)?).into_response())
}

async fn audit_query(
    State(s): State<AppState>,
    Authed(p): Authed,
    Query(f): Query<AuditFilter>,
) -> ApiResult<Response> {
    Ok(Json(s.project.audit_query(&p, f).await?).into_response())
}

async fn audit_verify(State(s): State<AppState>, Authed(p): Authed) -> ApiResult<Response> {
    Ok(Json(s.project.audit_verify(&p).await?).into_response())
}
