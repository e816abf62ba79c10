//! OpenID Connect bearer tokens: verifying a JWT signed by the configured issuer and mapping
//! it to a custos user name and role.
//!
//! Pure verification, no network: the caller fetches the issuer's JWKS document and hands the
//! JSON to [`OidcVerifier::new`] (and to [`OidcVerifier::replace_keys`] when it refreshes it,
//! for example once after [`OidcError::UnknownKid`]). The clock is an argument too, so
//! verification is deterministic.
//!
//! Every check is made here rather than left to library defaults; `jsonwebtoken` only checks
//! signatures. In order: the header's `alg` is one of the configured public-key algorithms
//! (never `none` or HMAC, which the config cannot even name) and fits the key's type and
//! its JWK `alg`; the key is chosen by `kid` from the JWKS only (`jku`, `jwk`, `x5u` and `x5c`
//! in a header are ignored: a token never supplies its own key); the signature verifies; and
//! only then are the claims read: `iss`, `aud`, `exp`, `nbf`, `iat`, `sub`, the user-name
//! claim and the role claim. Tokens are credentials, so no error message contains any part of
//! one, and nothing here logs.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::ROLES;
use crate::identity::valid_user_name;

/// The public-key signature algorithms a config may name.
const ALGORITHMS: [(&str, Algorithm); 9] = [
    ("RS256", Algorithm::RS256),
    ("RS384", Algorithm::RS384),
    ("RS512", Algorithm::RS512),
    ("PS256", Algorithm::PS256),
    ("PS384", Algorithm::PS384),
    ("PS512", Algorithm::PS512),
    ("ES256", Algorithm::ES256),
    ("ES384", Algorithm::ES384),
    ("EdDSA", Algorithm::EdDSA),
];

/// Longest token accepted; real ones are a few kilobytes.
const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Most leeway a config may allow for clock skew.
const MAX_LEEWAY_SECS: u64 = 300;

/// Errors of OIDC token verification. Messages never contain a token, part of one, or key
/// material; show clients one generic message and keep these for the server's log.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// The [`OidcConfig`] is invalid; one line per problem, each naming its key.
    #[error("invalid oidc config: {0}")]
    Config(String),
    /// The token is not a compact JWS with a JSON header and payload.
    #[error("malformed token")]
    Malformed,
    /// The token's `alg` is not configured, or does not fit the key its `kid` names.
    #[error("token algorithm \"{0}\" is not allowed here")]
    AlgorithmNotAllowed(String),
    /// The token's `kid` is not in the key set; refreshing the JWKS once may help.
    #[error("token signed with unknown key id \"{0}\"")]
    UnknownKid(String),
    /// The signature does not verify.
    #[error("token signature does not verify")]
    BadSignature,
    /// `exp` has passed (beyond the leeway).
    #[error("token has expired")]
    Expired,
    /// `nbf` (or `iat`) is in the future (beyond the leeway).
    #[error("token is not valid yet")]
    NotYetValid,
    /// `iat` is older than `max_age_secs` (plus the leeway).
    #[error("token was issued too long ago (max_age_secs)")]
    TooOld,
    /// `iss` is not the configured issuer.
    #[error("token issuer is not the configured issuer")]
    WrongIssuer,
    /// `aud` holds none of the configured audiences.
    #[error("token audience holds none of the configured audiences")]
    WrongAudience,
    /// A required claim (or, for `kid`, header parameter) is absent.
    #[error("token has no `{0}`")]
    MissingClaim(String),
    /// A claim is present but unusable (wrong type, or not a valid custos user name).
    #[error("token claim `{claim}` {reason}")]
    InvalidClaim {
        /// The claim, as configured (e.g. `email` or `realm_access.roles`).
        claim: String,
        /// What is wrong with it; never its value.
        reason: &'static str,
    },
    /// No configured role mapping matches the token's role claim (or it has none).
    #[error("no configured role mapping matches the token's role claim")]
    NoRole,
    /// The JWKS document is unusable.
    #[error("jwks: {0}")]
    Jwks(String),
}

/// Maps one value of the token's role claim to a custos role.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleMapping {
    /// A value of the role claim (e.g. an IdP group or role name).
    pub claim_value: String,
    /// The custos role it grants; one of [`ROLES`].
    pub role: String,
}

/// How tokens of one OIDC issuer are accepted. Embeddable in a TOML server config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The issuer; `iss` must equal it exactly (mind trailing slashes).
    pub issuer: String,
    /// Accepted audiences (a string or a list); `aud` must hold at least one.
    #[serde(deserialize_with = "one_or_many")]
    pub audience: Vec<String>,
    /// Accepted signature algorithms: RS256/384/512, PS256/384/512, ES256/384 or EdDSA.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// The claim that becomes the custos user name (`sub`, `preferred_username`, `email`...).
    /// It must be a valid custos user name and, as grants follow the name, must be a claim
    /// users cannot choose; `email` is accepted only with `email_verified: true`.
    #[serde(default = "default_username_claim")]
    pub username_claim: String,
    /// The claim holding the user's IdP roles or groups: a string or a list of strings, by name
    /// or dotted path (`realm_access.roles`). A claim whose name itself contains dots (as
    /// namespaced `https://...` claims do) is found by its full name first.
    #[serde(default = "default_role_claim")]
    pub role_claim: String,
    /// Role mappings, tried in order; the first whose `claim_value` the token holds wins.
    #[serde(default)]
    pub roles: Vec<RoleMapping>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds (at most 300).
    #[serde(default = "default_leeway_secs")]
    pub leeway_secs: u64,
    /// When set, tokens whose `iat` is older than this many seconds are refused.
    #[serde(default)]
    pub max_age_secs: Option<u64>,
    /// Values of the `amr` claim that count as multi-factor authentication.
    #[serde(default = "default_mfa_amr")]
    pub mfa_amr: Vec<String>,
}

fn default_algorithms() -> Vec<String> {
    vec!["RS256".into(), "ES256".into()]
}

fn default_username_claim() -> String {
    "sub".into()
}

fn default_role_claim() -> String {
    "roles".into()
}

fn default_leeway_secs() -> u64 {
    30
}

fn default_mfa_amr() -> Vec<String> {
    ["mfa", "otp", "hwk", "swk"].map(String::from).to_vec()
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

fn algorithm(name: &str) -> Option<Algorithm> {
    ALGORITHMS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|&(_, alg)| alg)
}

fn algorithm_names() -> String {
    ALGORITHMS.map(|(n, _)| n).join(", ")
}

impl OidcConfig {
    /// Checks the config without using it, collecting every problem with its key.
    pub fn validate(&self) -> Result<(), OidcError> {
        let mut errors = Vec::new();
        if self.issuer.trim().is_empty() {
            errors.push("`issuer`: must not be empty".to_string());
        }
        if self.audience.is_empty() {
            errors.push("`audience`: name at least one audience".into());
        }
        if self.audience.iter().any(|a| a.is_empty()) {
            errors.push("`audience`: audiences must not be empty".into());
        }
        if self.algorithms.is_empty() {
            errors.push(format!(
                "`algorithms`: name at least one of {}",
                algorithm_names()
            ));
        }
        for name in &self.algorithms {
            if algorithm(name).is_some() {
                continue;
            }
            let why = if name.eq_ignore_ascii_case("none") {
                "means unsigned tokens and is never accepted".to_string()
            } else if name.to_ascii_uppercase().starts_with("HS") {
                "is a shared-secret (HMAC) algorithm; only public-key signatures are accepted"
                    .to_string()
            } else {
                "is not a supported signature algorithm".to_string()
            };
            errors.push(format!(
                "`algorithms`: \"{}\" {why}; use {}",
                printable(name),
                algorithm_names()
            ));
        }
        for (key, path) in [
            ("username_claim", &self.username_claim),
            ("role_claim", &self.role_claim),
        ] {
            if path.is_empty() || path.split('.').any(str::is_empty) {
                errors.push(format!(
                    "`{key}`: \"{}\" is not a claim name or dotted path",
                    printable(path)
                ));
            }
        }
        if self.roles.is_empty() {
            errors.push(
                "`roles`: no role mappings, so every token would be refused; add [[roles]] with claim_value and role".into(),
            );
        }
        for (i, m) in self.roles.iter().enumerate() {
            if m.claim_value.is_empty() {
                errors.push(format!("`roles[{i}].claim_value`: must not be empty"));
            }
            if !ROLES.contains(&m.role.as_str()) {
                errors.push(format!(
                    "`roles[{i}].role`: unknown role \"{}\"; roles: {}",
                    printable(&m.role),
                    ROLES.join(", ")
                ));
            }
        }
        if self.leeway_secs > MAX_LEEWAY_SECS {
            errors.push(format!(
                "`leeway_secs`: {} is above the maximum of {MAX_LEEWAY_SECS}",
                self.leeway_secs
            ));
        }
        if self.max_age_secs == Some(0) {
            errors.push("`max_age_secs`: must be at least 1 (or left out)".into());
        }
        if self.mfa_amr.iter().any(|v| v.is_empty()) {
            errors.push("`mfa_amr`: values must not be empty".into());
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(OidcError::Config(errors.join("\n")))
        }
    }
}

/// Who a verified token says the caller is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcIdentity {
    /// The custos user name (the configured `username_claim`).
    pub username: String,
    /// The custos role of the first matching role mapping.
    pub role: String,
    /// `iss`.
    pub issuer: String,
    /// `sub`: the IdP's stable id of the user.
    pub subject: String,
    /// Whether `amr` holds one of the configured multi-factor values.
    pub mfa: bool,
    /// `auth_time`, when the token carries it (seconds since the epoch).
    pub auth_time: Option<i64>,
    /// `exp` (seconds since the epoch).
    pub expires_s: i64,
}

/// The key types a JWKS may hold for signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl KeyKind {
    /// Whether a signature algorithm belongs to this key type (a P-256 key never verifies
    /// ES384, an RSA key never verifies ES256).
    fn fits(self, alg: Algorithm) -> bool {
        match self {
            KeyKind::Rsa => matches!(
                alg,
                Algorithm::RS256
                    | Algorithm::RS384
                    | Algorithm::RS512
                    | Algorithm::PS256
                    | Algorithm::PS384
                    | Algorithm::PS512
            ),
            KeyKind::P256 => alg == Algorithm::ES256,
            KeyKind::P384 => alg == Algorithm::ES384,
            KeyKind::Ed25519 => alg == Algorithm::EdDSA,
        }
    }
}

/// One usable signature key of the JWKS.
struct Jwk {
    kid: Option<String>,
    kind: KeyKind,
    /// The JWK's `alg`, when it names one; the token's must then be the same.
    alg: Option<Algorithm>,
    key: DecodingKey,
}

impl fmt::Debug for Jwk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jwk")
            .field("kid", &self.kid)
            .field("kind", &self.kind)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// Verifies bearer tokens of one issuer against its JWKS. `Debug` shows key ids and types,
/// never key material.
pub struct OidcVerifier {
    cfg: OidcConfig,
    algorithms: Vec<Algorithm>,
    keys: Vec<Jwk>,
}

impl fmt::Debug for OidcVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OidcVerifier")
            .field("cfg", &self.cfg)
            .field("keys", &self.keys)
            .finish()
    }
}

impl OidcVerifier {
    /// Validates `cfg` and reads the issuer's JWKS (`{"keys": [...]}`, RFC 7517).
    ///
    /// Keys that cannot verify signatures here are skipped: `use` other than `sig`,
    /// `key_ops` without `verify`, symmetric (`oct`) keys, RSA keys under 2048 bits, curves
    /// other than P-256, P-384 and Ed25519, and keys whose `alg` does not fit their type. A set
    /// with no usable key is an error.
    pub fn new(cfg: OidcConfig, jwks_json: &str) -> Result<Self, OidcError> {
        cfg.validate()?;
        let algorithms = cfg.algorithms.iter().filter_map(|a| algorithm(a)).collect();
        let keys = parse_jwks(jwks_json)?;
        Ok(OidcVerifier {
            cfg,
            algorithms,
            keys,
        })
    }

    /// Replaces the key set with a freshly fetched JWKS. On error the old keys stay in use.
    pub fn replace_keys(&mut self, jwks_json: &str) -> Result<(), OidcError> {
        self.keys = parse_jwks(jwks_json)?;
        Ok(())
    }

    /// The config this verifier enforces.
    pub fn config(&self) -> &OidcConfig {
        &self.cfg
    }

    /// How many usable keys the current key set holds.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// Verifies a compact JWS `token` at `now_s` (seconds since the epoch) and maps it to a
    /// custos identity.
    ///
    /// A token without `kid` is accepted only while the key set holds a single key.
    /// [`OidcError::UnknownKid`] means the key set may be stale: refresh it once and retry.
    pub fn verify(&self, token: &str, now_s: i64) -> Result<OidcIdentity, OidcError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(OidcError::Malformed);
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(sig_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(OidcError::Malformed);
        };
        let header = json_object(header_b64)?;
        let signature = URL_SAFE_NO_PAD
            .decode(sig_b64)
            .map_err(|_| OidcError::Malformed)?;
        // No extension is understood, so any critical one makes the token unusable (RFC 7515
        // section 4.1.11); this also refuses unencoded payloads (`b64: false`).
        if header.contains_key("crit") {
            return Err(OidcError::Malformed);
        }
        let alg_name = header
            .get("alg")
            .and_then(Value::as_str)
            .ok_or(OidcError::Malformed)?;
        let not_allowed = || OidcError::AlgorithmNotAllowed(printable(alg_name));
        let alg = algorithm(alg_name)
            .filter(|a| self.algorithms.contains(a))
            .ok_or_else(not_allowed)?;
        let kid = match header.get("kid") {
            None => None,
            Some(Value::String(k)) => Some(k.as_str()),
            Some(_) => return Err(OidcError::Malformed),
        };

        let candidates: Vec<&Jwk> = match kid {
            Some(kid) => {
                let found: Vec<&Jwk> = self
                    .keys
                    .iter()
                    .filter(|k| k.kid.as_deref() == Some(kid))
                    .collect();
                if found.is_empty() {
                    return Err(OidcError::UnknownKid(printable(kid)));
                }
                found
            }
            None if self.keys.len() == 1 => self.keys.iter().collect(),
            None => return Err(OidcError::MissingClaim("kid".into())),
        };
        let usable: Vec<&Jwk> = candidates
            .into_iter()
            .filter(|k| k.kind.fits(alg) && k.alg.is_none_or(|a| a == alg))
            .collect();
        if usable.is_empty() {
            return Err(not_allowed());
        }
        // The signed message is the two encoded segments as they came.
        let message = &token.as_bytes()[..header_b64.len() + 1 + payload_b64.len()];
        // The aws-lc-rs provider by name, not the process default: which provider verifies
        // must not depend on feature unification or on what another crate installed.
        let factory = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.verifier_factory;
        let verifies =
            |k: &&Jwk| factory(&alg, &k.key).is_ok_and(|v| v.verify(message, &signature).is_ok());
        if !usable.iter().any(verifies) {
            return Err(OidcError::BadSignature);
        }

        let claims = json_object(payload_b64)?;
        self.check_claims(&claims, now_s)
    }

    /// The claim checks, on a payload whose signature has verified.
    fn check_claims(
        &self,
        claims: &Map<String, Value>,
        now_s: i64,
    ) -> Result<OidcIdentity, OidcError> {
        let cfg = &self.cfg;
        let missing = |c: &str| OidcError::MissingClaim(c.into());
        let invalid = |c: &str, reason| OidcError::InvalidClaim {
            claim: c.into(),
            reason,
        };

        let issuer = match claims.get("iss") {
            None => return Err(missing("iss")),
            Some(Value::String(s)) if *s == cfg.issuer => s.clone(),
            Some(_) => return Err(OidcError::WrongIssuer),
        };
        let audiences = strings(claims.get("aud").ok_or_else(|| missing("aud"))?)
            .ok_or_else(|| invalid("aud", "is neither a string nor a list of strings"))?;
        if !audiences
            .iter()
            .any(|a| cfg.audience.iter().any(|c| c == a))
        {
            return Err(OidcError::WrongAudience);
        }

        // i128 so that no claim value can overflow the arithmetic.
        let now = i128::from(now_s);
        let leeway = i128::from(cfg.leeway_secs);
        let exp = numeric_date(claims, "exp")?.ok_or_else(|| missing("exp"))?;
        if now >= i128::from(exp) + leeway {
            return Err(OidcError::Expired);
        }
        if let Some(nbf) = numeric_date(claims, "nbf")?
            && now + leeway < i128::from(nbf)
        {
            return Err(OidcError::NotYetValid);
        }
        let iat = numeric_date(claims, "iat")?;
        if let Some(iat) = iat
            && now + leeway < i128::from(iat)
        {
            return Err(OidcError::NotYetValid);
        }
        if let Some(max_age) = cfg.max_age_secs {
            let iat = iat.ok_or_else(|| missing("iat"))?;
            if now - i128::from(iat) > i128::from(max_age) + leeway {
                return Err(OidcError::TooOld);
            }
        }

        let subject = match claims.get("sub") {
            None => return Err(missing("sub")),
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(_) => return Err(invalid("sub", "is not a non-empty string")),
        };
        let username = match claim(claims, &cfg.username_claim) {
            None => return Err(missing(&cfg.username_claim)),
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(_) => return Err(invalid(&cfg.username_claim, "is not a non-empty string")),
        };
        if !valid_user_name(&username) {
            return Err(invalid(
                &cfg.username_claim,
                "is not a valid custos user name (1-64 letters, digits, '.', '_', '@' or '-')",
            ));
        }
        // Many IdPs let users edit their email; as grants follow the user name, an
        // unverified address must not become one.
        if cfg.username_claim == "email" && !email_verified(claims) {
            return Err(invalid(
                "email_verified",
                "is not true, so `email` cannot be the user name",
            ));
        }

        let held = claim(claims, &cfg.role_claim)
            .and_then(strings)
            .unwrap_or_default();
        let role = cfg
            .roles
            .iter()
            .find(|m| held.contains(&m.claim_value.as_str()))
            .map(|m| m.role.clone())
            .ok_or(OidcError::NoRole)?;

        // `amr` is a list; a lone string is tolerated. Anything else counts as no MFA.
        let mfa = claims
            .get("amr")
            .and_then(strings)
            .is_some_and(|amr| amr.iter().any(|v| cfg.mfa_amr.iter().any(|m| m == v)));
        let auth_time = numeric_date(claims, "auth_time")?;

        Ok(OidcIdentity {
            username,
            role,
            issuer,
            subject,
            mfa,
            auth_time,
            expires_s: exp,
        })
    }
}

/// A base64url segment holding a JSON object.
fn json_object(segment: &str) -> Result<Map<String, Value>, OidcError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| OidcError::Malformed)?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(OidcError::Malformed),
    }
}

/// A claim by name, or else by dotted path through nested objects.
fn claim<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    let mut parts = path.split('.');
    let mut v = claims.get(parts.next()?)?;
    for p in parts {
        v = v.as_object()?.get(p)?;
    }
    Some(v)
}

/// A string, or the strings of a list (other items ignored); `None` for other types.
fn strings(v: &Value) -> Option<Vec<&str>> {
    match v {
        Value::String(s) => Some(vec![s.as_str()]),
        Value::Array(items) => Some(items.iter().filter_map(Value::as_str).collect()),
        _ => None,
    }
}

/// A NumericDate claim (seconds since the epoch, possibly fractional, floored).
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, OidcError> {
    let Some(v) = claims.get(name) else {
        return Ok(None);
    };
    let n = v.as_number().ok_or_else(|| OidcError::InvalidClaim {
        claim: name.into(),
        reason: "is not a number",
    })?;
    Ok(Some(if let Some(i) = n.as_i64() {
        i
    } else if n.as_u64().is_some() {
        i64::MAX
    } else {
        // Float to int casts saturate.
        n.as_f64().map_or(i64::MAX, |f| f.floor() as i64)
    }))
}

/// `email_verified` is `true` (some IdPs send the string `"true"`).
fn email_verified(claims: &Map<String, Value>) -> bool {
    match claims.get("email_verified") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true",
        _ => false,
    }
}

/// An untrusted string made safe for a message: printable ASCII, at most 64 characters.
fn printable(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    if s.chars().nth(64).is_some() {
        out.push_str("...");
    }
    out
}

/// Reads the usable signature keys of a JWKS.
fn parse_jwks(json: &str) -> Result<Vec<Jwk>, OidcError> {
    // serde_json's syntax errors give a position, never a value.
    let doc: Value =
        serde_json::from_str(json).map_err(|e| OidcError::Jwks(format!("not JSON: {e}")))?;
    let entries = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| OidcError::Jwks("not a JWK set: no \"keys\" list".into()))?;
    let keys: Vec<Jwk> = entries.iter().filter_map(usable_key).collect();
    if keys.is_empty() {
        return Err(OidcError::Jwks(format!(
            "none of its {} keys can verify signatures (RSA of 2048 bits or more, EC P-256 or P-384, or Ed25519, with use \"sig\")",
            entries.len()
        )));
    }
    Ok(keys)
}

/// One JWK as a verification key, or `None` when it is not one (RFC 7517 section 5: keys an
/// implementation does not understand are ignored).
fn usable_key(v: &Value) -> Option<Jwk> {
    let o = v.as_object()?;
    let text = |name: &str| o.get(name).and_then(Value::as_str);
    let bytes = |name: &str| text(name).and_then(|s| URL_SAFE_NO_PAD.decode(s).ok());
    let b64_len = |s: &str| URL_SAFE_NO_PAD.decode(s).ok().map(|b| b.len());
    if o.get("use").is_some_and(|u| u != "sig") {
        return None;
    }
    if let Some(ops) = o.get("key_ops")
        && !ops
            .as_array()
            .is_some_and(|ops| ops.iter().any(|op| op == "verify"))
    {
        return None;
    }
    let kid = match o.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return None,
    };
    let (kind, key) = match (text("kty")?, text("crv")) {
        ("RSA", _) => {
            let n = bytes("n")?;
            let e = bytes("e")?;
            let bits = n.iter().skip_while(|b| **b == 0).count() * 8;
            if bits < 2048 || e.is_empty() {
                return None;
            }
            (KeyKind::Rsa, DecodingKey::from_rsa_raw_components(&n, &e))
        }
        ("EC", Some(crv @ ("P-256" | "P-384"))) => {
            let (kind, len) = if crv == "P-256" {
                (KeyKind::P256, 32)
            } else {
                (KeyKind::P384, 48)
            };
            let (x, y) = (text("x")?, text("y")?);
            if [x, y].iter().any(|c| b64_len(c) != Some(len)) {
                return None;
            }
            (kind, DecodingKey::from_ec_components(x, y).ok()?)
        }
        ("OKP", Some("Ed25519")) => {
            let x = text("x")?;
            if b64_len(x) != Some(32) {
                return None;
            }
            (KeyKind::Ed25519, DecodingKey::from_ed_components(x).ok()?)
        }
        // `oct` (shared secrets) and anything else: never a verification key.
        _ => return None,
    };
    let alg = match o.get("alg") {
        None => None,
        Some(a) => Some(algorithm(a.as_str()?).filter(|a| kind.fits(*a))?),
    };
    Some(Jwk {
        kid,
        kind,
        alg,
        key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_by_name_then_path() {
        let v: Value = serde_json::json!({
            "realm_access": {"roles": ["a"]},
            "https://example.com/roles": "b",
        });
        let m = v.as_object().unwrap();
        assert_eq!(
            claim(m, "realm_access.roles"),
            Some(&serde_json::json!(["a"]))
        );
        assert_eq!(
            claim(m, "https://example.com/roles"),
            Some(&serde_json::json!("b"))
        );
        assert_eq!(claim(m, "realm_access.groups"), None);
        assert_eq!(claim(m, "realm_access.roles.x"), None);
    }

    #[test]
    fn untrusted_text_is_bounded() {
        assert_eq!(printable("kid-1"), "kid-1");
        assert_eq!(printable("a\nb\u{1b}é"), "a?b??");
        let long = printable(&"x".repeat(100));
        assert_eq!(long.len(), 67);
        assert!(long.ends_with("..."));
    }

    #[test]
    fn numeric_dates() {
        let v =
            serde_json::json!({"a": 5, "b": 5.9, "c": 1e300, "d": u64::MAX, "e": "5", "f": -2.5});
        let m = v.as_object().unwrap();
        assert_eq!(numeric_date(m, "a").unwrap(), Some(5));
        assert_eq!(numeric_date(m, "b").unwrap(), Some(5));
        assert_eq!(numeric_date(m, "c").unwrap(), Some(i64::MAX));
        assert_eq!(numeric_date(m, "d").unwrap(), Some(i64::MAX));
        assert!(numeric_date(m, "e").is_err());
        assert_eq!(numeric_date(m, "f").unwrap(), Some(-3));
        assert_eq!(numeric_date(m, "g").unwrap(), None);
    }
}
