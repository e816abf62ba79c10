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

/// A credential, as presented.
pub enum Credential {
    /// An API token (`cst_<id>_<secret>`).
    ApiToken(Zeroizing<String>),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::ApiToken(_) => f.write_str("ApiToken([redacted])"),
        }
    }
}

impl Credential {
    /// An API token.
    pub fn api_token(t: &str) -> Self {
        Credential::ApiToken(Zeroizing::new(t.trim().to_string()))
    }

    /// The part that may be named in records and lockouts: the token's public id.
    fn subject(&self) -> String {
        match self {
            Credential::ApiToken(t) => t
                .strip_prefix("cst_")
                .and_then(|t| t.split_once('_'))
                .map_or_else(|| "token:?".to_string(), |(id, _)| format!("token:{id}")),
        }
    }
}

/// How the caller signed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// An API token.
    ApiToken,
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
}

impl Principal {
    /// The user's name.
    pub fn name(&self) -> &str {
        &self.user.name
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

/// Signs callers in. One per project; shared by every request.
pub struct Authenticator {
    ids: Arc<Mutex<Identities>>,
    audit: AuditHandle,
    cache: Mutex<HashMap<[u8; 32], Cached>>,
    failures: Mutex<HashMap<String, Failures>>,
    allow: Vec<Cidr>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("allow", &self.allow)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these maps leaves it consistent enough: entries are
    // independent, so keep serving rather than failing every later request.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Authenticator {
    /// An authenticator over the identity store; `allow` is the address allowlist (empty:
    /// every address).
    pub fn new(ids: Arc<Mutex<Identities>>, audit: AuditHandle, allow: Vec<Cidr>) -> Self {
        Self {
            ids,
            audit,
            cache: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            allow,
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
        let locked = {
            let f = lock(&self.failures);
            keys.iter()
                .filter_map(|k| f.get(k).and_then(|x| x.locked(now)))
                .max()
        };
        if let Some(wait) = locked {
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
        let Credential::ApiToken(token) = &cred;
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(user) = self.cached(&digest)? {
            return Ok(Principal {
                user,
                method: AuthMethod::ApiToken,
                address,
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
                let mut f = lock(&self.failures);
                f.remove(&subject);
                Ok(Principal {
                    user,
                    method: AuthMethod::ApiToken,
                    address,
                })
            }
            Err(PolicyError::Authentication) => {
                {
                    let mut f = lock(&self.failures);
                    for k in &keys {
                        f.entry(k.clone()).or_default().fail(now);
                    }
                }
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
    fn credential_debug_hides_the_token() {
        let c = Credential::api_token("cst_0123456789ab_SECRETCANARY");
        assert!(!format!("{c:?}").contains("CANARY"));
        assert_eq!(c.subject(), "token:0123456789ab");
    }
}
