//! The API's routes as one table, and the OpenAPI 3.1 document generated from it (served at
//! `/v1/openapi.json`). The router is built from the same table, so every documented route
//! is served and every served route is documented; request schemas are derived from the
//! request types themselves.

use axum::routing::{MethodRouter, delete, get, post, put};
use serde_json::{Map, Value, json};

use crate::api::{self, AppState};

/// One route.
pub struct Route {
    /// HTTP method.
    pub method: &'static str,
    /// Path, with `{name}` parameters.
    pub path: &'static str,
    /// Stable operation id.
    pub operation: &'static str,
    /// What it does, and the action the policies decide (if any).
    pub summary: &'static str,
    /// Whether a caller must sign in.
    pub signed_in: bool,
    /// Whether the action may need a second factor (`X-Custos-OTP`).
    pub step_up: bool,
    /// The JSON request body's schema.
    pub body: Option<fn() -> Value>,
    /// The query parameters' schema (an object's properties).
    pub query: Option<fn() -> Value>,
    /// Path parameters that are integers (the others are strings).
    pub integer_params: &'static [&'static str],
    /// The success status.
    pub ok: u16,
    /// The success response's media type.
    pub produces: &'static str,
    /// The handler.
    pub handler: fn() -> MethodRouter<AppState>,
}

fn schema<T: schemars::JsonSchema>() -> Value {
    serde_json::to_value(schemars::schema_for!(T)).unwrap_or(Value::Null)
}

impl Route {
    fn public(mut self) -> Self {
        self.signed_in = false;
        self
    }

    fn step_up(mut self) -> Self {
        self.step_up = true;
        self
    }

    fn body<T: schemars::JsonSchema>(mut self) -> Self {
        self.body = Some(schema::<T>);
        self
    }

    fn query<T: schemars::JsonSchema>(mut self) -> Self {
        self.query = Some(schema::<T>);
        self
    }

    fn ints(mut self, names: &'static [&'static str]) -> Self {
        self.integer_params = names;
        self
    }

    fn ok(mut self, status: u16) -> Self {
        self.ok = status;
        self
    }

    fn produces(mut self, media_type: &'static str) -> Self {
        self.produces = media_type;
        self
    }
}

/// A signed-in JSON route.
fn r(
    method: &'static str,
    path: &'static str,
    operation: &'static str,
    summary: &'static str,
    handler: fn() -> MethodRouter<AppState>,
) -> Route {
    Route {
        method,
        path,
        operation,
        summary,
        signed_in: true,
        step_up: false,
        body: None,
        query: None,
        integer_params: &[],
        ok: 200,
        produces: "application/json",
        handler,
    }
}

/// Every route of the API.
pub fn routes() -> Vec<Route> {
    vec![
        r("GET", "/healthz", "healthz", "Liveness.", || {
            get(api::healthz)
        })
        .public()
        .produces("text/plain"),
        r(
            "GET",
            "/readyz",
            "readyz",
            "Readiness: the audit writer answers.",
            || get(api::readyz),
        )
        .public()
        .produces("text/plain"),
        r("GET", "/metrics", "metrics", "Prometheus metrics.", || {
            get(api::metrics)
        })
        .public()
        .produces("text/plain"),
        r(
            "GET",
            "/v1/whoami",
            "whoami",
            "The signed-in principal.",
            || get(api::whoami),
        ),
        r(
            "GET",
            "/v1/pipelines",
            "list_pipelines",
            "Registered pipelines.",
            || get(api::pipelines),
        ),
        r(
            "POST",
            "/v1/pipelines",
            "register_pipeline",
            "Register a pipeline (register_pipeline).",
            || post(api::register),
        )
        .body::<custos_app::RegisterRequest>()
        .ok(201),
        r(
            "GET",
            "/v1/pipelines/{name}",
            "get_pipeline",
            "One registered pipeline with its config.",
            || get(api::pipeline),
        ),
        r(
            "POST",
            "/v1/pipelines/{name}/runs",
            "start_run",
            "Start a run as a job (run_pipeline; decrypt_column and use_key per column and key).",
            || post(api::start_run),
        )
        .step_up()
        .ok(202),
        r(
            "GET",
            "/v1/jobs",
            "list_jobs",
            "Run jobs with status and progress.",
            || get(api::jobs),
        ),
        r("GET", "/v1/jobs/{id}", "get_job", "One job.", || {
            get(api::job)
        }),
        r(
            "GET",
            "/v1/jobs/{id}/events",
            "job_events",
            "Live progress as server-sent events until the job ends.",
            || get(api::job_events),
        )
        .produces("text/event-stream"),
        r(
            "POST",
            "/v1/jobs/{id}/cancel",
            "cancel_job",
            "Cancel a job (run_pipeline): nothing is committed.",
            || post(api::cancel_job),
        ),
        r(
            "GET",
            "/v1/runs",
            "list_runs",
            "Recorded runs, newest first.",
            || get(api::runs),
        )
        .query::<api::Limit>(),
        r("GET", "/v1/runs/{id}", "get_run", "One run record.", || {
            get(api::run)
        }),
        r(
            "GET",
            "/v1/audit",
            "query_audit",
            "Audit records, filtered (read_audit).",
            || get(api::audit_query),
        )
        .query::<custos_app::AuditFilter>(),
        r(
            "POST",
            "/v1/audit/verify",
            "verify_audit",
            "Verify the log against its signed checkpoints (read_audit).",
            || post(api::audit_verify),
        ),
        r(
            "POST",
            "/v1/audit/checkpoint",
            "export_audit_checkpoint",
            "Sign a checkpoint of the log as it is now, with its public key, to keep elsewhere (read_audit).",
            || post(api::audit_checkpoint),
        ),
        r(
            "POST",
            "/v1/audit/prove",
            "prove_audit_checkpoint",
            "Prove the log only grew since an exported checkpoint (RFC 6962 consistency proof; read_audit).",
            || post(api::audit_prove),
        )
        .body::<custos_app::ExportedCheckpoint>(),
        r(
            "POST",
            "/v1/scan",
            "scan",
            "Sample and classify the columns of a registered pipeline's sources or of a data file under the data roots (read_dataset).",
            || post(api::scan),
        )
        .body::<custos_app::ScanRequest>(),
        r(
            "GET",
            "/v1/users",
            "list_users",
            "Users (manage_users).",
            || get(api::users),
        )
        .step_up(),
        r(
            "POST",
            "/v1/users",
            "add_user",
            "Add a user; the answer holds its first token (manage_users).",
            || post(api::add_user),
        )
        .step_up()
        .body::<custos_app::NewUser>()
        .ok(201),
        r(
            "DELETE",
            "/v1/users/{name}",
            "remove_user",
            "Remove a user and revoke their grants (manage_users).",
            || delete(api::remove_user),
        )
        .step_up()
        .ok(204),
        r(
            "POST",
            "/v1/users/{name}/enable",
            "enable_user",
            "Let a user sign in again (manage_users).",
            || post(api::enable_user),
        )
        .step_up(),
        r(
            "POST",
            "/v1/users/{name}/disable",
            "disable_user",
            "Stop a user from signing in (manage_users).",
            || post(api::disable_user),
        )
        .step_up(),
        r(
            "POST",
            "/v1/users/{name}/token",
            "rotate_user_token",
            "Issue a new token for a user (manage_users).",
            || post(api::rotate_token),
        )
        .step_up(),
        r(
            "DELETE",
            "/v1/users/{name}/mfa",
            "reset_mfa",
            "Remove a user's second factor (manage_users).",
            || delete(api::mfa_reset),
        )
        .step_up()
        .ok(204),
        r(
            "POST",
            "/v1/users/{name}/mfa/ticket",
            "issue_mfa_ticket",
            "Issue a user a one-time second-factor enrolment ticket; the answer holds it (manage_users; not for oneself).",
            || post(api::mfa_ticket),
        )
        .step_up()
        .body::<custos_app::NewTicket>()
        .ok(201),
        r(
            "POST",
            "/v1/token",
            "rotate_own_token",
            "Replace one's own token.",
            || post(api::rotate_own_token),
        ),
        r(
            "GET",
            "/v1/grants",
            "list_grants",
            "Grants (manage_users).",
            || get(api::grants),
        )
        .step_up()
        .query::<api::All>(),
        r(
            "POST",
            "/v1/grants",
            "add_grant",
            "Add a time-bound grant (manage_users; a second person).",
            || post(api::add_grant),
        )
        .step_up()
        .body::<custos_app::NewGrant>()
        .ok(201),
        r(
            "DELETE",
            "/v1/grants/{id}",
            "revoke_grant",
            "Revoke a grant (manage_users).",
            || delete(api::revoke_grant),
        )
        .step_up()
        .ints(&["id"]),
        r(
            "GET",
            "/v1/mfa",
            "mfa_status",
            "One's own second-factor enrolment.",
            || get(api::mfa_status),
        ),
        r(
            "POST",
            "/v1/mfa/enroll",
            "mfa_enroll",
            "Start enrolling a TOTP authenticator (with the admin's ticket when enrolment needs one); the answer holds the secret.",
            || post(api::mfa_enroll),
        )
        .body::<api::Enroll>(),
        r(
            "POST",
            "/v1/mfa/confirm",
            "mfa_confirm",
            "Confirm the enrolment with a first code.",
            || post(api::mfa_confirm),
        )
        .body::<api::Code>(),
        r(
            "GET",
            "/v1/keys",
            "list_keys",
            "Keys, versions and states; never material (manage_keys).",
            || get(api::keys),
        ),
        r(
            "POST",
            "/v1/keys",
            "create_key",
            "Create a key with version 1 active (manage_keys).",
            || post(api::create_key),
        )
        .body::<api::NewKey>()
        .ok(201),
        r(
            "GET",
            "/v1/keys/{name}",
            "get_key",
            "One key (manage_keys).",
            || get(api::key),
        ),
        r(
            "POST",
            "/v1/keys/{name}/rotate",
            "rotate_key",
            "Add a new primary version (rotate_key).",
            || post(api::rotate_key),
        ),
        r(
            "PUT",
            "/v1/keys/{name}/min-version",
            "set_key_min_version",
            "Stop older versions from decrypting (set_key_min_version: a grant).",
            || put(api::set_min_version),
        )
        .step_up()
        .body::<api::MinVersion>(),
        r(
            "POST",
            "/v1/keys/{name}/versions/{version}/disable",
            "disable_key_version",
            "Disable a non-primary version (manage_keys).",
            || post(api::disable_version),
        )
        .ints(&["version"]),
        r(
            "POST",
            "/v1/keys/{name}/versions/{version}/enable",
            "enable_key_version",
            "Enable a disabled version (manage_keys).",
            || post(api::enable_version),
        )
        .ints(&["version"]),
        r(
            "DELETE",
            "/v1/keys/{name}/versions/{version}",
            "destroy_key_version",
            "Erase a version's material for good (destroy_key: a grant).",
            || delete(api::destroy_version),
        )
        .step_up()
        .ints(&["version"])
        .query::<api::Confirm>(),
        r(
            "GET",
            "/v1/policies",
            "get_policies",
            "The stored policies (manage_policies).",
            || get(api::policies),
        )
        .step_up(),
        r(
            "PUT",
            "/v1/policies",
            "set_policies",
            "Replace the policies, validated first (manage_policies).",
            || put(api::set_policies),
        )
        .step_up()
        .body::<custos_app::NewPolicies>(),
        r(
            "PUT",
            "/v1/settings/audit-retention",
            "set_audit_retention",
            "How long audit records are kept (manage_policies).",
            || put(api::set_retention),
        )
        .step_up()
        .body::<api::Retention>()
        .ok(204),
    ]
}

fn error_response(what: &str) -> Value {
    json!({
        "description": what,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    })
}

/// Moves a derived schema's `$defs` into the document's components (rewriting references).
fn hoist(mut s: Value, components: &mut Map<String, Value>) -> Value {
    if let Some(defs) = s.as_object_mut().and_then(|o| o.remove("$defs")) {
        for (k, v) in defs.as_object().cloned().unwrap_or_default() {
            components.insert(k, rewrite(v));
        }
    }
    if let Some(o) = s.as_object_mut() {
        o.remove("$schema");
        o.remove("title");
    }
    rewrite(s)
}

fn rewrite(v: Value) -> Value {
    match v {
        Value::String(r) if r.starts_with("#/$defs/") => {
            Value::String(r.replace("#/$defs/", "#/components/schemas/"))
        }
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, rewrite(v))).collect()),
        Value::Array(a) => Value::Array(a.into_iter().map(rewrite).collect()),
        other => other,
    }
}

/// The OpenAPI 3.1 document of [`routes`].
pub fn document() -> Value {
    let mut paths = Map::new();
    let mut components = Map::new();
    for r in routes() {
        let mut params: Vec<Value> = Vec::new();
        for seg in r.path.split('/') {
            if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                let ty = if r.integer_params.contains(&name) {
                    "integer"
                } else {
                    "string"
                };
                params.push(
                    json!({"name": name, "in": "path", "required": true, "schema": {"type": ty}}),
                );
            }
        }
        if let Some(q) = r.query {
            let q = hoist(q(), &mut components);
            for (name, s) in q["properties"].as_object().cloned().unwrap_or_default() {
                params.push(json!({"name": name, "in": "query", "required": false, "schema": s}));
            }
        }
        if r.step_up {
            params.push(json!({
                "name": "X-Custos-OTP", "in": "header", "required": false,
                "description": "The current TOTP code, where the server requires a second factor for this action.",
                "schema": {"type": "string"}
            }));
        }
        let mut responses = Map::new();
        let ok = if r.ok == 204 {
            json!({"description": "done"})
        } else if r.produces == "application/json" {
            json!({"description": "ok", "content": {"application/json": {"schema": {}}}})
        } else {
            json!({"description": "ok", "content": {r.produces: {"schema": {"type": "string"}}}})
        };
        responses.insert(r.ok.to_string(), ok);
        if r.signed_in {
            responses.insert("401".into(), error_response("not signed in"));
            responses.insert(
                "403".into(),
                error_response("denied by the policies, or a second factor is missing"),
            );
        }
        if r.body.is_some() || r.query.is_some() || !params.is_empty() {
            responses.insert("404".into(), error_response("no such resource"));
            responses.insert("422".into(), error_response("invalid request"));
        }
        let mut op = json!({
            "operationId": r.operation,
            "summary": r.summary,
            "parameters": params,
            "responses": responses,
        });
        if !r.signed_in {
            op["security"] = json!([]);
        }
        if let Some(b) = r.body {
            op["requestBody"] = json!({
                "required": true,
                "content": {"application/json": {"schema": hoist(b(), &mut components)}}
            });
        }
        let entry = paths.entry(r.path.to_string()).or_insert_with(|| json!({}));
        entry[r.method.to_ascii_lowercase()] = op;
    }
    components.insert(
        "Error".into(),
        json!({
            "type": "object",
            "required": ["error"],
            "properties": {"error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}}
            }}
        }),
    );
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "custos",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The custos server's API: pipelines, runs as jobs, audit, users, grants, second factors and policies. Every decision is made by the project's Cedar policies and recorded in the tamper-evident audit log."
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "An API token (cst_...) or an OIDC JWT of the configured provider."},
                "clientCertificate": {"type": "mutualTLS"}
            }
        },
        "security": [{"bearer": []}, {"clientCertificate": []}]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented_once() {
        let doc = document();
        let mut seen = std::collections::HashSet::new();
        for r in routes() {
            assert!(
                seen.insert((r.method, r.path)),
                "{} {} twice",
                r.method,
                r.path
            );
            let op = &doc["paths"][r.path][r.method.to_ascii_lowercase()];
            assert_eq!(op["operationId"], r.operation);
            for seg in r.path.split('/').filter(|s| s.starts_with('{')) {
                let name = seg.trim_matches(|c| c == '{' || c == '}');
                assert!(
                    op["parameters"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|p| p["name"] == name && p["in"] == "path"),
                    "{} {}: {name}",
                    r.method,
                    r.path
                );
            }
        }
        // Request bodies come from the types: unknown fields are refused there, and here.
        let body = &doc["paths"]["/v1/grants"]["post"]["requestBody"]["content"]["application/json"]
            ["schema"];
        assert_eq!(body["additionalProperties"], false, "{body}");
        for f in ["user", "action", "resource", "until", "reason"] {
            assert!(
                body["required"].as_array().unwrap().contains(&json!(f)),
                "{f}"
            );
        }
        let text = doc.to_string();
        assert!(!text.contains("$defs"), "unhoisted definitions");
        // The enums written on the request types are the code's own lists.
        let user = &doc["paths"]["/v1/users"]["post"]["requestBody"]["content"]["application/json"]
            ["schema"];
        assert_eq!(
            user["properties"]["role"]["enum"],
            json!(custos_policy::ROLES)
        );
        let actions: Vec<&str> = custos_policy::Action::ALL
            .iter()
            .map(|a| a.name())
            .collect();
        assert_eq!(body["properties"]["action"]["enum"], json!(actions));
        let reg = &doc["paths"]["/v1/pipelines"]["post"]["requestBody"]["content"]["application/json"]
            ["schema"];
        assert_eq!(
            reg["properties"]["classification"]["enum"],
            json!(custos_app::CLASSIFICATIONS),
            "{reg}"
        );
    }
}
