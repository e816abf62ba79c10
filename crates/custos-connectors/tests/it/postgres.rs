//! Connections to the throwaway PostgreSQL servers of `scripts/pg.sh`: verify-full over TLS,
//! refusal of wrong names, untrusted CAs and plaintext, client certificates, and passwords that
//! never reach an error message.

use std::path::PathBuf;

use custos_config::secret::parse as secret;
use custos_connectors::postgres::{PgTarget, SslMode, connect};

/// The servers' settings, or `None` (skip) when the tests run outside `scripts/test.sh`.
/// `CUSTOS_PG_REQUIRED=1` (set by test.sh) turns a missing server into a failure.
pub(crate) fn env(name: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            assert!(
                std::env::var("CUSTOS_PG_REQUIRED").as_deref() != Ok("1"),
                "{name} is not set: source scripts/pg.sh (scripts/test.sh does)"
            );
            eprintln!("skipping: {name} is not set (run through scripts/test.sh)");
            None
        }
    }
}

/// The password as a pipeline gets it: a `${file:...}` reference resolved into a secret.
pub(crate) fn password(value: &str) -> custos_config::secret::Secret {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("pw");
    std::fs::write(&f, value).unwrap();
    secret(&format!("${{file:{}}}", f.display()))
        .unwrap()
        .resolve(dir.path())
        .unwrap()
        .0
}

pub(crate) fn target() -> Option<PgTarget> {
    Some(PgTarget {
        host: Some(env("CUSTOS_PG_HOST")?),
        port: Some(env("CUSTOS_PG_PORT")?.parse().unwrap()),
        dbname: Some(env("CUSTOS_PG_DB")?),
        user: Some(env("CUSTOS_PG_USER")?),
        password: Some(password(&env("CUSTOS_PG_PASSWORD")?)),
        ca_file: Some(PathBuf::from(env("CUSTOS_PG_CA")?)),
        ..PgTarget::default()
    })
}

async fn fails(t: &PgTarget) -> String {
    connect(t)
        .await
        .expect_err("the connection must be refused")
        .to_string()
}

#[tokio::test]
async fn verify_full_is_the_default_and_the_session_is_encrypted() {
    let Some(t) = target() else { return };
    assert_eq!(t.sslmode, SslMode::VerifyFull);
    let c = connect(&t).await.unwrap();
    let row = c
        .client
        .query_one(
            "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0));
    let version: String = row.get(1);
    assert!(version == "TLSv1.2" || version == "TLSv1.3", "{version}");
}

#[tokio::test]
async fn a_wrong_host_name_or_an_untrusted_ca_is_refused() {
    let Some(mut t) = target() else { return };
    t.host = env("CUSTOS_PG_WRONG_HOST");
    let e = fails(&t).await;
    assert!(e.to_lowercase().contains("name"), "{e}");

    let Some(mut t) = target() else { return };
    t.ca_file = env("CUSTOS_PG_OTHER_CA").map(PathBuf::from);
    let e = fails(&t).await;
    assert!(e.contains("certificate") || e.contains("Issuer"), "{e}");
}

#[tokio::test]
async fn plaintext_is_refused_unless_allowed_under_danger() {
    let Some(mut t) = target() else { return };
    t.port = env("CUSTOS_PG_PLAIN_PORT").map(|p| p.parse().unwrap());
    // A server without TLS cannot satisfy verify-full.
    let e = fails(&t).await;
    assert!(e.to_lowercase().contains("tls") || e.contains("SSL"), "{e}");
    // Asking for plaintext is refused before connecting...
    t.sslmode = SslMode::Disable;
    let e = fails(&t).await;
    assert!(e.contains("allow_insecure_db"), "{e}");
    // ...and works only when the pipeline says so.
    t.allow_insecure = true;
    let c = connect(&t).await.unwrap();
    let one: i32 = c.client.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
    // The TLS server in turn refuses plaintext (hostssl only).
    let Some(mut t) = target() else { return };
    t.sslmode = SslMode::Disable;
    t.allow_insecure = true;
    let e = fails(&t).await;
    assert!(e.contains("pg_hba") || e.contains("encryption"), "{e}");
}

#[tokio::test]
async fn a_wrong_password_is_a_clear_error_without_the_password() {
    let Some(mut t) = target() else { return };
    let canary = "canary-Pa55word-7f3e9d";
    t.password = Some(password(canary));
    let e = fails(&t).await;
    assert!(e.contains("password authentication failed"), "{e}");
    assert!(e.contains("as custos"), "{e}");
    assert!(!e.contains(canary), "{e}");
    // Nor in the target's debug output.
    assert!(!format!("{t:?}").contains(canary));
}

#[tokio::test]
async fn client_certificates_authenticate() {
    let Some(mut t) = target() else { return };
    t.user = env("CUSTOS_PG_CERT_USER");
    t.password = None;
    // Without the certificate the cert-only user is refused...
    let e = fails(&t).await;
    assert!(e.contains("certificate"), "{e}");
    // ...with it, admitted.
    t.client_cert = env("CUSTOS_PG_CLIENT_CERT").map(PathBuf::from);
    t.client_key = env("CUSTOS_PG_CLIENT_KEY").map(PathBuf::from);
    let c = connect(&t).await.unwrap();
    let user: String = c
        .client
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(user, "custos_cert");
    // Half a key pair is a configuration error.
    t.client_key = None;
    assert!(fails(&t).await.contains("together"));
}
