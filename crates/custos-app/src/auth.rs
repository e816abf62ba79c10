//! Sign-in: who is calling, whatever carried the credential (an environment variable, a file,
//! an `Authorization` header).
//!
//! API tokens are checked against the Argon2id hashes of the identity store. A verified token
//! is cached by its SHA-256 for [`CACHE_TTL`], so Argon2id runs once per token rather than
//! once per request; a cache hit still re-reads the user, so disabling a user or rotating the
//! token takes effect on the next request. Repeated failures lock out the principal (the
//! token's id) and the source address with exponential backoff, before any hashing is done;
//! an address allowlist (CIDR) is checked first of all.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use custos_policy::{Identities, PolicyError, User};
use serde::Serialize;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::audit::{AuditAction, AuditHandle, ErrorCode, Outcome, Record};
use crate::error::{AppError, Result};
use crate::oidc::OidcProvider;

/// How long a verified token is trusted without hashing it again.
pub const CACHE_TTL: Duration = Duration::from_secs(600);
/// Most tokens cached at once (the cache is emptied when full).
const CACHE_MAX: usize = 10_000;
/// Failures allowed within [`FAILURE_WINDOW`] before a lockout starts.
pub const FAILURES_BEFORE_LOCKOUT: u32 = 5;
/// The window in which failures count.
const FAILURE_WINDOW: Duration = Duration::from_secs(900);
/// The longest lockout.
const MAX_LOCKOUT: Duration = Duration::from_secs(900);
/// Most principals and addresses with recent failures kept at once: when full, entries that
/// are not locked out are dropped first, so a flood of new names cannot exhaust memory.
const FAILURE_ENTRIES_MAX: usize = 100_000;

/// A credential, as presented.
pub enum Credential {
    /// An API token (`cst_<id>_<secret>`).
    ApiToken(Zeroizing<String>),
    /// An OIDC bearer token (a JWT of the configured identity provider).
    Jwt(Zeroizing<String>),
    /// A client certificate the TLS handshake verified against the configured client CA: its
    /// subject's common name is the user it signs in.
    ClientCertificate {
        /// The subject's common name, if any.
        common_name: Option<String>,
        /// SHA-256 of the certificate, hex.
        fingerprint: String,
    },
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::ApiToken(_) => f.write_str("ApiToken([redacted])"),
            Credential::Jwt(_) => f.write_str("Jwt([redacted])"),
            Credential::ClientCertificate {
                common_name,
                fingerprint,
            } => f
                .debug_struct("ClientCertificate")
                .field("common_name", common_name)
                .field("fingerprint", fingerprint)
                .finish(),
        }
    }
}

impl Credential {
    /// An API token.
    pub fn api_token(t: &str) -> Self {
        Credential::ApiToken(Zeroizing::new(t.trim().to_string()))
    }

    /// A bearer credential: an API token (`cst_...`) or, in three dot-separated parts, a JWT.
    pub fn bearer(t: &str) -> Self {
        let t = t.trim();
        if !t.starts_with("cst_") && t.split('.').count() == 3 {
            Credential::Jwt(Zeroizing::new(t.to_string()))
        } else {
            Self::api_token(t)
        }
    }

    /// The part that may be named in records and lockouts: the token's public id.
    fn subject(&self) -> String {
        match self {
            Credential::ApiToken(t) => t
                .strip_prefix("cst_")
                .and_then(|t| t.split_once('_'))
                .map_or_else(|| "token:?".to_string(), |(id, _)| format!("token:{id}")),
            Credential::ClientCertificate { fingerprint, .. } => {
                format!("cert:{}", &fingerprint[..fingerprint.len().min(16)])
            }
            // A JWT's claims are unverified until checked: name it by a digest, never by text
            // the caller chose.
            Credential::Jwt(t) => {
                let d = Sha256::digest(t.as_bytes());
                format!("jwt:{}", hex::encode(&d[..8]))
            }
        }
    }
}

/// How the caller signed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// An API token.
    ApiToken,
    /// A verified client certificate (mTLS).
    ClientCertificate,
    /// An OIDC token of the configured identity provider.
    Oidc,
}

/// A signed-in caller.
#[derive(Debug, Clone, Serialize)]
pub struct Principal {
    /// The user.
    pub user: User,
    /// How they signed in.
    pub method: AuthMethod,
    /// Where the request came from, when over the network.
    pub address: Option<IpAddr>,
    /// The second factor presented with the request, checked when a privileged action
    /// needs it.
    #[serde(skip)]
    pub second_factor: SecondFactor,
}

impl Principal {
    /// The user's name.
    pub fn name(&self) -> &str {
        &self.user.name
    }

    /// The name the caller's grants are kept under (`oidc:NAME` for a user the identity
    /// provider signed in, who is not in the identity store).
    pub fn grant_subject(&self) -> String {
        custos_policy::grant_subject(self.name(), self.method == AuthMethod::Oidc)
    }

    /// With a one-time code (TOTP) presented with the request.
    pub fn with_one_time_code(mut self, code: &str) -> Self {
        self.second_factor = SecondFactor::code(code);
        self
    }
}

/// The state of a request's second factor. Clones share it: a code is checked (and used up)
/// the first time a privileged action of the request needs it, and the result holds for the
/// rest of the request (a run that decrypts several columns checks it once).
#[derive(Clone, Default)]
pub struct SecondFactor(Arc<Mutex<FactorState>>);

/// Where a request's second factor stands.
#[derive(Default)]
pub(crate) enum FactorState {
    /// None presented.
    #[default]
    Absent,
    /// A one-time code, not yet checked.
    Code(Zeroizing<String>),
    /// Checked and valid (or asserted by the identity provider).
    Verified,
    /// Checked and refused.
    Refused(ErrorCode, String),
}

impl std::fmt::Debug for SecondFactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match &*lock(&self.0) {
            FactorState::Absent => "absent",
            FactorState::Code(_) => "code([redacted])",
            FactorState::Verified => "verified",
            FactorState::Refused(..) => "refused",
        };
        write!(f, "SecondFactor({s})")
    }
}

impl SecondFactor {
    /// A one-time code to check.
    pub fn code(code: &str) -> Self {
        Self(Arc::new(Mutex::new(FactorState::Code(Zeroizing::new(
            code.trim().to_string(),
        )))))
    }

    /// A factor already verified (by the identity provider that issued the credential).
    pub fn verified() -> Self {
        Self(Arc::new(Mutex::new(FactorState::Verified)))
    }

    pub(crate) fn state(&self) -> std::sync::MutexGuard<'_, FactorState> {
        lock(&self.0)
    }
}

/// An IPv4 or IPv6 network in CIDR notation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `10.0.0.0/8`, `::1/128` or a bare address.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = || AppError::Invalid(format!("\"{s}\" is not an address or CIDR network"));
        let (a, p) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = a.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?,
            None => max,
        };
        Ok(Self { addr, prefix })
    }

    /// Whether `ip` is in the network (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

struct Cached {
    name: String,
    token_issued_ns: i64,
    verified: Instant,
}

/// Recent failures of one principal or address, and its lockout.
#[derive(Default)]
struct Failures {
    count: u32,
    first: Option<Instant>,
    locked_until: Option<Instant>,
}

impl Failures {
    fn locked(&self, now: Instant) -> Option<Duration> {
        self.locked_until
            .filter(|t| *t > now)
            .map(|t| t.duration_since(now))
    }

    fn fail(&mut self, now: Instant) {
        if self
            .first
            .is_none_or(|f| now.duration_since(f) > FAILURE_WINDOW)
        {
            self.count = 0;
            self.first = Some(now);
        }
        self.count += 1;
        if self.count >= FAILURES_BEFORE_LOCKOUT {
            // 1 s, 2 s, 4 s, ... up to MAX_LOCKOUT.
            let exp = (self.count - FAILURES_BEFORE_LOCKOUT).min(20);
            let wait = Duration::from_secs(1u64 << exp).min(MAX_LOCKOUT);
            self.locked_until = Some(now + wait);
        }
    }
}

/// Recent failures by principal or address, with their lockouts; bounded at
/// [`FAILURE_ENTRIES_MAX`] entries. Shared by sign-in and the second factor.
#[derive(Default)]
pub(crate) struct FailureTable(Mutex<HashMap<String, Failures>>);

impl FailureTable {
    /// The longest lockout still running for any of `keys`.
    pub(crate) fn locked(&self, keys: &[String], now: Instant) -> Option<Duration> {
        let f = lock(&self.0);
        keys.iter()
            .filter_map(|k| f.get(k).and_then(|x| x.locked(now)))
            .max()
    }

    /// Counts a failure against each of `keys`. When the table is full, entries not locked
    /// out are dropped, and if it is still full (a flood of lockouts) the older half of the
    /// rest goes too.
    pub(crate) fn fail(&self, keys: &[String], now: Instant) {
        let mut f = lock(&self.0);
        if f.len() >= FAILURE_ENTRIES_MAX {
            f.retain(|_, x| x.locked(now).is_some());
            if f.len() >= FAILURE_ENTRIES_MAX {
                let mut until: Vec<Instant> = f.values().filter_map(|x| x.locked_until).collect();
                until.sort_unstable();
                let cut = until[until.len() / 2];
                f.retain(|_, x| x.locked_until.is_some_and(|t| t > cut));
            }
        }
        for k in keys {
            f.entry(k.clone()).or_default().fail(now);
        }
    }

    /// Forgets `key`'s failures (after a success).
    pub(crate) fn clear(&self, key: &str) {
        lock(&self.0).remove(key);
    }
}

/// Signs callers in. One per project; shared by every request.
pub struct Authenticator {
    ids: Arc<Mutex<Identities>>,
    audit: AuditHandle,
    cache: Mutex<HashMap<[u8; 32], Cached>>,
    failures: FailureTable,
    allow: Vec<Cidr>,
    oidc: Option<Arc<OidcProvider>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("allow", &self.allow)
            .finish()
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these maps leaves it consistent enough: entries are
    // independent, so keep serving rather than failing every later request.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Authenticator {
    /// An authenticator over the identity store; `allow` is the address allowlist (empty:
    /// every address).
    pub fn new(
        ids: Arc<Mutex<Identities>>,
        audit: AuditHandle,
        allow: Vec<Cidr>,
        oidc: Option<Arc<OidcProvider>>,
    ) -> Self {
        Self {
            ids,
            audit,
            cache: Mutex::new(HashMap::new()),
            failures: FailureTable::default(),
            allow,
            oidc,
        }
    }

    fn refuse(
        &self,
        subject: &str,
        address: Option<IpAddr>,
        code: ErrorCode,
        message: String,
    ) -> AppError {
        let mut r = Record::new(
            "anonymous",
            AuditAction::Authenticate,
            subject,
            Outcome::Denied,
        )
        .code(code);
        if let Some(a) = address {
            r = r.detail(format!("address {a}"));
        }
        if let Err(e) = self.audit.record(r) {
            tracing::error!("recording a failed sign-in: {e}");
        }
        AppError::Unauthenticated(message)
    }

    /// Records that no credential was presented and returns the refusal.
    pub fn missing(&self, address: Option<IpAddr>, hint: &str) -> AppError {
        self.refuse(
            "-",
            address,
            ErrorCode::NoToken,
            format!("not signed in: {hint}"),
        )
    }

    /// Signs a caller in. Every failure is recorded and counts towards a lockout of the
    /// token's id and of the address.
    pub async fn authenticate(
        self: &Arc<Self>,
        cred: Credential,
        address: Option<IpAddr>,
    ) -> Result<Principal> {
        if let Some(a) = address
            && !self.allow.is_empty()
            && !self.allow.iter().any(|c| c.contains(a))
        {
            return Err(self.refuse(
                "-",
                address,
                ErrorCode::AddressNotAllowed,
                "sign-in refused: the address is not in the allowlist".into(),
            ));
        }
        let subject = cred.subject();
        let keys: Vec<String> = std::iter::once(subject.clone())
            .chain(address.map(|a| format!("ip:{a}")))
            .collect();
        let now = Instant::now();
        if let Some(wait) = self.failures.locked(&keys, now) {
            return Err(self.refuse(
                &subject,
                address,
                ErrorCode::LockedOut,
                format!(
                    "sign-in locked after repeated failures; try again in {} s",
                    wait.as_secs().max(1)
                ),
            ));
        }
        let token = match &cred {
            Credential::ApiToken(t) => t,
            Credential::Jwt(jwt) => {
                return self.oidc_user(jwt, &subject, &keys, address, now).await;
            }
            Credential::ClientCertificate { common_name, .. } => {
                return self
                    .certificate_user(common_name.as_deref(), &subject, &keys, address, now)
                    .map(|user| Principal {
                        user,
                        method: AuthMethod::ClientCertificate,
                        address,
                        second_factor: SecondFactor::default(),
                    });
            }
        };
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(user) = self.cached(&digest)? {
            return Ok(Principal {
                user,
                method: AuthMethod::ApiToken,
                address,
                second_factor: SecondFactor::default(),
            });
        }
        let this = self.clone();
        let token = token.clone();
        let verified = tokio::task::spawn_blocking(move || {
            let ids = lock(&this.ids);
            ids.authenticate(&token)
        })
        .await
        .map_err(|e| AppError::internal("signing in", e))?;
        match verified {
            Ok(user) => {
                let mut c = lock(&self.cache);
                if c.len() >= CACHE_MAX {
                    c.clear();
                }
                c.insert(
                    digest,
                    Cached {
                        name: user.name.clone(),
                        token_issued_ns: user.token_issued_ns,
                        verified: Instant::now(),
                    },
                );
                self.failures.clear(&subject);
                Ok(Principal {
                    user,
                    method: AuthMethod::ApiToken,
                    address,
                    second_factor: SecondFactor::default(),
                })
            }
            Err(PolicyError::Authentication) => {
                self.failures.fail(&keys, now);
                Err(self.refuse(
                    &subject,
                    address,
                    ErrorCode::InvalidToken,
                    PolicyError::Authentication.to_string(),
                ))
            }
            Err(e) => Err(AppError::internal("identity store", e)),
        }
    }

    /// Signs in the holder of an OIDC token: the provider's claims name the user and map
    /// to a role. Such users are not in the identity store; a name that is also a local
    /// user's is refused rather than merged.
    async fn oidc_user(
        &self,
        jwt: &Zeroizing<String>,
        subject: &str,
        keys: &[String],
        address: Option<IpAddr>,
        now: Instant,
    ) -> Result<Principal> {
        let Some(provider) = &self.oidc else {
            self.failures.fail(keys, now);
            return Err(self.refuse(
                subject,
                address,
                ErrorCode::InvalidJwt,
                "authentication failed: this server accepts no OIDC tokens (no [auth.oidc])".into(),
            ));
        };
        let now_s = crate::audit::now_ns() / 1_000_000_000;
        let id = match provider.verify(jwt, now_s).await {
            Ok(id) => id,
            Err(e) => {
                self.failures.fail(keys, now);
                return Err(self.refuse(
                    subject,
                    address,
                    ErrorCode::InvalidJwt,
                    format!("authentication failed: the OIDC token is not valid: {e}"),
                ));
            }
        };
        let local = lock(&self.ids)
            .user(&id.username)
            .map_err(|e| AppError::internal("identity store", e))?;
        if local.is_some() {
            return Err(self.refuse(
                subject,
                address,
                ErrorCode::InvalidJwt,
                format!(
                    "authentication failed: \"{}\" is a local user too; an OIDC user must have a name of its own",
                    id.username
                ),
            ));
        }
        let second_factor = if provider.step_up_ok(&id, now_s) {
            SecondFactor::verified()
        } else {
            SecondFactor::default()
        };
        Ok(Principal {
            user: User {
                name: id.username.clone(),
                role: id.role.clone(),
                active: true,
                created_ns: 0,
                token_issued_ns: 0,
                created_by: String::new(),
                token_issued_by: id.issuer.clone(),
            },
            method: AuthMethod::Oidc,
            address,
            second_factor,
        })
    }

    /// The user a verified client certificate names: an active user whose name is the
    /// certificate's common name. (The TLS handshake already checked the chain, validity and
    /// revocation lists; a name that is no active user counts as a failure.)
    fn certificate_user(
        &self,
        common_name: Option<&str>,
        subject: &str,
        keys: &[String],
        address: Option<IpAddr>,
        now: Instant,
    ) -> Result<User> {
        let user = match common_name {
            Some(n) => lock(&self.ids)
                .user(n)
                .map_err(|e| AppError::internal("identity store", e))?,
            None => None,
        };
        match user {
            Some(u) if u.active => {
                self.failures.clear(subject);
                Ok(u)
            }
            _ => {
                self.failures.fail(keys, now);
                Err(self.refuse(
                    subject,
                    address,
                    ErrorCode::InvalidCertificate,
                    "authentication failed: the client certificate names no active user".into(),
                ))
            }
        }
    }

    /// The user of a cached token, if the token is cached, fresh, still the user's current
    /// token and the user is active.
    fn cached(&self, digest: &[u8; 32]) -> Result<Option<User>> {
        let (name, issued) = {
            let c = lock(&self.cache);
            match c.get(digest) {
                Some(e) if e.verified.elapsed() < CACHE_TTL => (e.name.clone(), e.token_issued_ns),
                _ => return Ok(None),
            }
        };
        let user = lock(&self.ids)
            .user(&name)
            .map_err(|e| AppError::internal("identity store", e))?;
        match user {
            Some(u) if u.active && u.token_issued_ns == issued => Ok(Some(u)),
            _ => {
                lock(&self.cache).remove(digest);
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_matching() {
        let n = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(n.contains("10.1.200.3".parse().unwrap()));
        assert!(!n.contains("10.2.0.1".parse().unwrap()));
        assert!(n.contains("::ffff:10.1.0.9".parse().unwrap()));
        let one = Cidr::parse("127.0.0.1").unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        let all = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(all.contains("203.0.113.9".parse().unwrap()));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8:1::1".parse().unwrap()));
        assert!(!v6.contains("2001:db9::1".parse().unwrap()));
        for bad in ["10.0.0.0/33", "nope", "::/129", "1.2.3.4/"] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lockout_backs_off_exponentially() {
        let mut f = Failures::default();
        let t = Instant::now();
        for _ in 0..FAILURES_BEFORE_LOCKOUT - 1 {
            f.fail(t);
            assert!(f.locked(t).is_none());
        }
        f.fail(t);
        assert_eq!(f.locked(t), Some(Duration::from_secs(1)));
        f.fail(t);
        assert_eq!(f.locked(t), Some(Duration::from_secs(2)));
        for _ in 0..30 {
            f.fail(t);
        }
        assert_eq!(f.locked(t), Some(MAX_LOCKOUT));
        assert!(f.locked(t + MAX_LOCKOUT).is_none());
    }

    #[test]
    fn the_failure_table_stays_bounded_and_keeps_lockouts() {
        let t = FailureTable::default();
        let now = Instant::now();
        let locked = ["token:locked".to_string()];
        for _ in 0..FAILURES_BEFORE_LOCKOUT {
            t.fail(&locked, now);
        }
        for i in 0..FAILURE_ENTRIES_MAX - 1 {
            t.fail(&[format!("ip:{i}")], now);
        }
        // Full (the lockout and the rest): the next failure drops the entries that are not
        // locked out, never a lockout.
        t.fail(&["ip:new".to_string()], now);
        assert_eq!(lock(&t.0).len(), 2);
        assert!(t.locked(&locked, now).is_some());
        t.clear("token:locked");
        assert!(t.locked(&locked, now).is_none());
    }

    #[test]
    fn credential_debug_hides_the_token() {
        let c = Credential::api_token("cst_0123456789ab_SECRETCANARY");
        assert!(!format!("{c:?}").contains("CANARY"));
        assert_eq!(c.subject(), "token:0123456789ab");
    }
}
