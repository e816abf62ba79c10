//! OIDC bearer tokens: an identity provider's signed JWTs, checked against its JWKS with the
//! rules of [`custos_policy::oidc`] (issuer, audience, times, asymmetric algorithms only,
//! claim-to-role mapping).
//!
//! The key set comes from a [`JwksSource`] (a file, or the provider's HTTPS endpoint fetched
//! by the server). A token signed with a key id the set does not have makes the provider
//! fetch the set again, at most once per [`REFRESH_MIN_INTERVAL`], so a key rotation at the
//! provider is picked up without a restart and a flood of made-up key ids cannot turn into a
//! flood of fetches.

use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use custos_policy::oidc::{OidcConfig, OidcError, OidcIdentity, OidcVerifier};

use crate::error::{AppError, Result};

/// The least time between two fetches of the key set.
pub const REFRESH_MIN_INTERVAL: Duration = Duration::from_secs(60);

/// Where the key set comes from.
#[async_trait::async_trait]
pub trait JwksSource: Send + Sync {
    /// The current JWKS document (JSON). Errors name the source, never a key.
    async fn fetch(&self) -> std::result::Result<String, String>;
}

/// A key set in a file (re-read on refresh).
#[derive(Debug)]
pub struct JwksFile(pub std::path::PathBuf);

#[async_trait::async_trait]
impl JwksSource for JwksFile {
    async fn fetch(&self) -> std::result::Result<String, String> {
        tokio::fs::read_to_string(&self.0)
            .await
            .map_err(|e| format!("reading the JWKS {}: {e}", self.0.display()))
    }
}

/// One identity provider.
pub struct OidcProvider {
    verifier: RwLock<OidcVerifier>,
    source: Box<dyn JwksSource>,
    last_fetch: Mutex<Instant>,
    step_up_max_age: Duration,
}

impl std::fmt::Debug for OidcProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcProvider")
            .field("issuer", &self.issuer())
            .finish()
    }
}

impl OidcProvider {
    /// A provider with `cfg`, its key set fetched now from `source`. A second factor the
    /// provider asserts (`amr`) counts for step-up while its sign-in (`auth_time`) is younger
    /// than `step_up_max_age`.
    pub async fn new(
        cfg: OidcConfig,
        source: Box<dyn JwksSource>,
        step_up_max_age: Duration,
    ) -> Result<Self> {
        let jwks = source
            .fetch()
            .await
            .map_err(|e| AppError::Invalid(format!("auth.oidc: {e}")))?;
        let verifier = OidcVerifier::new(cfg, &jwks)
            .map_err(|e| AppError::Invalid(format!("auth.oidc: {e}")))?;
        Ok(Self {
            verifier: RwLock::new(verifier),
            source,
            last_fetch: Mutex::new(Instant::now()),
            step_up_max_age,
        })
    }

    /// The issuer.
    pub fn issuer(&self) -> String {
        self.read().config().issuer.clone()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, OidcVerifier> {
        self.verifier
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Verifies `token` at `now_s`, fetching the key set again (rate-limited) when the token
    /// names a key it does not have.
    pub async fn verify(
        &self,
        token: &str,
        now_s: i64,
    ) -> std::result::Result<OidcIdentity, OidcError> {
        let first = self.read().verify(token, now_s);
        match first {
            Err(OidcError::UnknownKid(_)) if self.may_fetch() => {
                match self.source.fetch().await {
                    Ok(jwks) => {
                        let mut v = self
                            .verifier
                            .write()
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        if let Err(e) = v.replace_keys(&jwks) {
                            tracing::warn!("the identity provider's new key set is unusable: {e}");
                        }
                    }
                    Err(e) => tracing::warn!("fetching the identity provider's key set: {e}"),
                }
                self.read().verify(token, now_s)
            }
            other => other,
        }
    }

    fn may_fetch(&self) -> bool {
        let mut last = self
            .last_fetch
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.elapsed() < REFRESH_MIN_INTERVAL {
            return false;
        }
        *last = Instant::now();
        true
    }

    /// Whether the identity's own second factor counts for step-up at `now_s`.
    pub fn step_up_ok(&self, id: &OidcIdentity, now_s: i64) -> bool {
        id.mfa
            && id
                .auth_time
                .is_some_and(|t| now_s - t <= self.step_up_max_age.as_secs() as i64)
    }
}
