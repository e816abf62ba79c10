//! OIDC bearer tokens through the API: a provider's JWTs sign users in with the mapped role;
//! forged, expired, foreign and confused tokens are refused and audited; the provider's MFA
//! counts for step-up only while fresh. The keys are custos-policy's test fixtures.

use std::time::Duration;

use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use custos_app::oidc::{JwksFile, OidcProvider};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

use crate::*;

const ISS: &str = "https://idp.example.com/realms/custos";

fn fixture(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../custos-policy/tests/it/fixtures")
        .join(name);
    std::fs::read_to_string(path).unwrap()
}

fn der(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    STANDARD.decode(body).unwrap()
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn claims(user: &str, groups: &[&str]) -> Value {
    let now = now_s();
    json!({
        "iss": ISS, "aud": "custos", "sub": format!("id-{user}"),
        "preferred_username": user, "groups": groups,
        "iat": now, "exp": now + 300, "auth_time": now, "amr": ["pwd", "otp"],
    })
}

fn rs256(kid: &str, c: &Value) -> String {
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some(kid.into());
    let key = EncodingKey::from_rsa_der(&der(&fixture("rsa_private.pem")));
    encode(&h, c, &key).unwrap()
}

async fn provider(jwks: &std::path::Path) -> OidcProvider {
    let cfg: custos_policy::oidc::OidcConfig = serde_json::from_value(json!({
        "issuer": ISS,
        "audience": ["custos"],
        "algorithms": ["RS256", "ES256"],
        "username_claim": "preferred_username",
        "role_claim": "groups",
        "roles": [
            {"claim_value": "custos-security", "role": "security_admin"},
            {"claim_value": "custos-engineers", "role": "data_engineer"},
            {"claim_value": "custos-analysts", "role": "analyst"},
        ],
    }))
    .unwrap();
    OidcProvider::new(
        cfg,
        Box::new(JwksFile(jwks.to_path_buf())),
        Duration::from_secs(900),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn provider_tokens_sign_in_with_the_mapped_role_and_forgeries_do_not() {
    let env = setup();
    let jwks = env.data.join("jwks.json");
    // The provider publishes only its EC key at first; it rotates to the RSA key later.
    let all: Value = serde_json::from_str(&fixture("jwks.json")).unwrap();
    let only = |kid: &str| {
        let keys: Vec<Value> = all["keys"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|k| k["kid"] == kid)
            .cloned()
            .collect();
        json!({"keys": keys}).to_string()
    };
    std::fs::write(&jwks, only("ec-1")).unwrap();
    let project = open(
        &env,
        Opts {
            oidc: Some(provider(&jwks).await),
            ..Opts::default()
        },
    )
    .await;
    let app = app(&project);
    // Signed with a key the set does not have yet: refused.
    let token = rs256("rsa-1", &claims("olga", &["custos-engineers"]));
    let (s, v) = call(&app, "GET", "/v1/whoami", Some(&token), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    // The provider rotates; the next fetch is allowed only after the refresh interval, so
    // publish both keys and make a provider that fetches now (a new server).
    std::fs::write(&jwks, fixture("jwks.json")).unwrap();
    project.shutdown(Duration::from_secs(5)).await.unwrap();
    drop(app);
    drop(project);
    let project = open(
        &env,
        Opts {
            oidc: Some(provider(&jwks).await),
            ..Opts::default()
        },
    )
    .await;
    let app = crate::app(&project);
    let (s, v) = call(&app, "GET", "/v1/whoami", Some(&token), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["user"]["name"], "olga");
    assert_eq!(v["user"]["role"], "data_engineer");
    assert_eq!(v["method"], "oidc");
    // The mapped role decides: an engineer registers pipelines, an analyst may not.
    let (s, v) = call(
        &app,
        "POST",
        "/v1/pipelines",
        Some(&token),
        Some(json!({"config": pipeline("oidc1", &[])})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let analyst = rs256("rsa-1", &claims("abe", &["custos-analysts"]));
    let (s, _) = call(
        &app,
        "POST",
        "/v1/pipelines",
        Some(&analyst),
        Some(json!({"config": pipeline("oidc2", &[])})),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    let mut refused: Vec<(&str, String)> = Vec::new();
    // Expired.
    let mut c = claims("olga", &["custos-engineers"]);
    c["exp"] = json!(now_s() - 600);
    refused.push(("expired", rs256("rsa-1", &c)));
    // Another issuer.
    let mut c = claims("olga", &["custos-engineers"]);
    c["iss"] = json!("https://evil.example.com");
    refused.push(("issuer", rs256("rsa-1", &c)));
    // Another audience.
    let mut c = claims("olga", &["custos-engineers"]);
    c["aud"] = json!("someone-else");
    refused.push(("audience", rs256("rsa-1", &c)));
    // No mapped role.
    refused.push(("role", rs256("rsa-1", &claims("olga", &["staff"]))));
    // alg: none.
    let header = json!({"alg": "none", "typ": "JWT", "kid": "rsa-1"});
    let body = claims("mallory", &["custos-engineers"]);
    refused.push((
        "none",
        format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(body.to_string())
        ),
    ));
    // HS256 with the RSA public key as the HMAC secret (key confusion).
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some("rsa-1".into());
    let public = fixture("rsa_public.pem");
    refused.push((
        "hs256",
        encode(
            &h,
            &claims("mallory", &["custos-engineers"]),
            &EncodingKey::from_secret(public.as_bytes()).unwrap(),
        )
        .unwrap(),
    ));
    // A tampered payload.
    let good = rs256("rsa-1", &claims("olga", &["custos-analysts"]));
    let parts: Vec<&str> = good.split('.').collect();
    let forged = URL_SAFE_NO_PAD.encode(claims("olga", &["custos-engineers"]).to_string());
    refused.push(("tampered", format!("{}.{forged}.{}", parts[0], parts[2])));
    // A local user's name.
    refused.push((
        "local",
        rs256("rsa-1", &claims("admin", &["custos-engineers"])),
    ));
    // Each from its own address: five failures would lock an address out, and then later
    // tokens would be refused without being checked.
    for (i, (what, t)) in refused.iter().enumerate() {
        let from = format!("10.1.2.{}", i + 1);
        let (s, _, v) = call_from(&app, &from, "GET", "/v1/whoami", Some(t), None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{what}: {v}");
        assert!(
            !v.to_string().contains(&t[t.len() - 12..]),
            "{what}: echoed"
        );
    }
    let (s, v) = call(
        &app,
        "GET",
        "/v1/audit?action=authenticate&outcome=denied&limit=100",
        Some(&env.admin),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let jwt_refusals = v
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["error_code"] == "invalid_jwt")
        .count();
    assert!(jwt_refusals >= refused.len(), "{v}");
    let log = v.to_string();
    for (_, t) in &refused {
        assert!(
            !log.contains(&t[t.len() - 12..]),
            "a token reached the audit log"
        );
    }
    project.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn the_providers_mfa_counts_for_step_up_only_while_fresh() {
    let env = setup();
    let jwks = env.data.join("jwks.json");
    std::fs::write(&jwks, fixture("jwks.json")).unwrap();
    let project = open(
        &env,
        Opts {
            oidc: Some(provider(&jwks).await),
            ..Opts::default()
        },
    )
    .await;
    let app = app(&project);
    // A security admin whose provider sign-in used a second factor just now: user
    // administration works without a TOTP code.
    let token = rs256("rsa-1", &claims("sara", &["custos-security"]));
    let (s, v) = call(&app, "GET", "/v1/users", Some(&token), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // The same sign-in an hour ago: the provider's factor is too old.
    let mut stale = claims("sara", &["custos-security"]);
    stale["auth_time"] = json!(now_s() - 3600);
    let (s, v) = call(
        &app,
        "GET",
        "/v1/users",
        Some(&rs256("rsa-1", &stale)),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("second factor"),
        "{v}"
    );
    // A password-only sign-in: no second factor at all.
    let mut pwd = claims("sara", &["custos-security"]);
    pwd["amr"] = json!(["pwd"]);
    let (s, _) = call(&app, "GET", "/v1/users", Some(&rs256("rsa-1", &pwd)), None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // An engineer is denied user administration by policy, whatever the factor.
    let eng = rs256("rsa-1", &claims("olga", &["custos-engineers"]));
    let (s, v) = call(&app, "GET", "/v1/users", Some(&eng), None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no policy permits"),
        "{v}"
    );
    project.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn grants_reach_identity_provider_users_under_their_oidc_name() {
    let env = setup();
    let jwks = env.data.join("jwks.json");
    std::fs::write(&jwks, fixture("jwks.json")).unwrap();
    let project = open(
        &env,
        Opts {
            oidc: Some(provider(&jwks).await),
            ..Opts::default()
        },
    )
    .await;
    let app = app(&project);
    let sara = rs256("rsa-1", &claims("sara", &["custos-security"]));
    let olga = rs256("rsa-1", &claims("olga", &["custos-engineers"]));
    // An engineer does not read the audit log...
    let (s, v) = call(&app, "GET", "/v1/audit", Some(&olga), None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let grant = |user: &str| {
        json!({
            "user": user, "action": "read_audit", "resource": "audit",
            "until": "+1h", "reason": "INC-42 review",
        })
    };
    // ...a grant to the plain name finds no such user in the store...
    let (s, v) = call(&app, "POST", "/v1/grants", Some(&sara), Some(grant("olga"))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    // ...one under her provider name, approved by another person, lets her.
    let (s, v) = call(
        &app,
        "POST",
        "/v1/grants",
        Some(&sara),
        Some(grant("oidc:olga")),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["user"], "oidc:olga");
    assert_eq!(v["granted_by"], "oidc:sara");
    let (s, v) = call(&app, "GET", "/v1/audit", Some(&olga), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(
        v.as_array()
            .unwrap()
            .iter()
            .any(|e| e["principal"] == "olga"
                && e["action"] == "read_audit"
                && e["outcome"] == "allowed"
                && e["policies"][0].as_str().unwrap().starts_with("grant:")),
        "{v}"
    );
    // Nobody approves their own grant, under either name, and the name must be valid.
    for user in ["oidc:sara", "oidc:not valid"] {
        let (s, v) = call(&app, "POST", "/v1/grants", Some(&sara), Some(grant(user))).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{user}: {v}");
    }
    // A local user of the same name gets nothing from it: local and provider grants are
    // kept apart.
    let ids = project.identities().clone();
    let grants = ids.lock().unwrap().active_grants("olga", now_s()).unwrap();
    assert!(grants.is_empty(), "{grants:?}");
    project.shutdown(Duration::from_secs(5)).await.unwrap();
}
