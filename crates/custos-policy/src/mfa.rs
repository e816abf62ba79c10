//! TOTP multi-factor step-up (RFC 6238 with the authenticator-app defaults: HMAC-SHA-1,
//! 6 digits, 30-second steps), for privileged actions in server mode.
//!
//! Only a sealed store ([`Identities::open_sealed`]) holds enrolments: the 20-byte secret,
//! from a CSPRNG, is stored encrypted with AES-256-GCM under the store's secrets key, with the
//! user name as associated data, so neither the file nor the MAC key reveals it. A code is
//! accepted for the current step and one step either side; each step is accepted at most
//! once per user (RFC 6238 section 5.2), so a code cannot be replayed, and neither can an
//! older one after a newer one was used. Codes are compared in constant time. Errors never
//! contain a code or a secret.
//!
//! Failed attempts are not counted here: the caller (the server) limits their rate.

use custos_crypto::SecretBytes;
use rusqlite::params;
use rusqlite::types::Value;
use subtle::ConstantTimeEq;
use totp_rs::{Algorithm, Builder, Totp};
use zeroize::Zeroizing;

use crate::identity::db;
use crate::seal::{MFA, MFA_TICKETS, Sealer};
use crate::{Identities, PolicyError};

/// Digits of a code.
pub const DIGITS: u8 = 6;
/// Seconds per time step.
pub const STEP_S: u64 = 30;
/// Steps accepted either side of the current one (clock drift, typing time).
const SKEW: u16 = 1;
/// Length of a secret: 160 bits, RFC 4226's recommendation.
const SECRET_LEN: usize = 20;
const ISSUER: &str = "custos";

/// A new TOTP enrolment, shown once to the user to load into an authenticator app. Zeroized
/// on drop; `Debug` prints `[redacted]`.
pub struct MfaEnrollment {
    secret_base32: Zeroizing<String>,
    otpauth_uri: Zeroizing<String>,
}

impl MfaEnrollment {
    /// The secret in base32 (RFC 4648, no padding), for typing into an app.
    pub fn secret_base32(&self) -> &str {
        &self.secret_base32
    }

    /// The `otpauth://totp/custos:<user>?secret=...` URI, for a QR code.
    pub fn otpauth_uri(&self) -> &str {
        &self.otpauth_uri
    }
}

impl std::fmt::Debug for MfaEnrollment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MfaEnrollment([redacted])")
    }
}

/// A one-time enrolment ticket: an admin issues it to a user, who enrols with it
/// ([`Identities::mfa_enroll`]), so a stolen API token alone cannot enrol a second factor.
/// Shown once; only a SHA-256 hash is stored. Zeroized on drop; `Debug` prints `[redacted]`.
pub struct MfaTicket {
    ticket: Zeroizing<String>,
    /// When it stops being accepted, Unix seconds.
    pub expires_s: i64,
}

impl MfaTicket {
    /// The ticket text (`cmt_...`), to hand to the user out of band.
    pub fn expose(&self) -> &str {
        &self.ticket
    }
}

impl std::fmt::Debug for MfaTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MfaTicket([redacted])")
    }
}

/// Longest validity of an enrolment ticket: 30 days.
pub const MAX_TICKET_HOURS: u32 = 720;

/// The stored hash of a ticket. Tickets carry 160 random bits, so a plain hash suffices.
fn ticket_hash(user: &str, ticket: &str) -> [u8; 32] {
    use sha2_11::Digest as _;
    let mut h = sha2_11::Sha256::new();
    h.update(b"custos mfa ticket v1\0");
    h.update(user.as_bytes());
    h.update(b"\0");
    h.update(ticket.as_bytes());
    h.finalize().into()
}

/// A user's MFA state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct MfaStatus {
    /// Whether a secret was issued (confirmed or not).
    pub enrolled: bool,
    /// Whether the user proved they hold it (only confirmed enrolments verify).
    pub confirmed: bool,
    /// When it was confirmed, ns since the epoch.
    pub confirmed_ns: Option<i64>,
}

/// A stored enrolment.
struct MfaRow {
    secret_enc: Vec<u8>,
    confirmed: bool,
    last_step: Option<i64>,
    confirmed_ns: Option<i64>,
}

fn totp(secret: &[u8], digits: u8) -> Result<Totp, PolicyError> {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(digits)
        .with_skew(SKEW)
        .with_step_duration(STEP_S)
        .with_secret(secret)
        .build()
        .map_err(|_| PolicyError::Invalid("invalid TOTP parameters or secret length".into()))
}

fn code_at(totp: &Totp, step: u64) -> Zeroizing<String> {
    Zeroizing::new(totp.generate(step.saturating_mul(STEP_S)).to_string())
}

/// The code for `unix_s` of a secret given in base32, with `digits` digits (6 to 8): what an
/// authenticator app shows. For tests and clients; verification uses the same generator.
pub fn totp_code(secret_base32: &str, digits: u8, unix_s: u64) -> Result<String, PolicyError> {
    let secret = totp_rs::Secret::try_from_base32(secret_base32.trim())
        .map_err(|_| PolicyError::Invalid("the TOTP secret is not valid base32".into()))?;
    let totp = totp(secret.as_bytes(), digits)?;
    Ok(code_at(&totp, unix_s / STEP_S).to_string())
}

/// The code as typed: surrounding whitespace trimmed, exactly [`DIGITS`] ASCII digits.
fn parse_code(code: &str) -> Result<&str, PolicyError> {
    let code = code.trim();
    if code.len() == usize::from(DIGITS) && code.bytes().all(|b| b.is_ascii_digit()) {
        Ok(code)
    } else {
        Err(PolicyError::MfaInvalid)
    }
}

fn unix_s(now_s: i64) -> Result<u64, PolicyError> {
    u64::try_from(now_s).map_err(|_| PolicyError::Invalid("the clock is before 1970".into()))
}

/// Associated data of an encrypted secret: it decrypts only as this user's.
fn aad(user: &str) -> Vec<u8> {
    let mut a = b"custos identity.db mfa secret v1\0".to_vec();
    a.extend_from_slice(user.as_bytes());
    a
}

fn mfa_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<MfaRow> {
    Ok(MfaRow {
        secret_enc: r.get(1)?,
        confirmed: r.get::<_, i64>(2)? != 0,
        last_step: r.get(3)?,
        confirmed_ns: r.get(5)?,
    })
}

impl Identities {
    fn mfa_row(&self, user: &str) -> Result<Option<MfaRow>, PolicyError> {
        self.read(|| {
            let found = self
                .select(&MFA, "WHERE user = ?1", [user], mfa_row)?
                .into_iter()
                .next();
            if found.is_none() {
                self.check_absent(&MFA, Value::Text(user.into()))?;
            }
            Ok(found)
        })
    }

    /// The step whose code `code` is, within the window around `now`, if it was not used
    /// yet.
    fn check_code(
        &self,
        keys: &Sealer,
        user: &str,
        row: &MfaRow,
        code: &str,
        now: u64,
    ) -> Result<i64, PolicyError> {
        let code = parse_code(code)?;
        let secret = Zeroizing::new(
            custos_crypto::aead::open(keys.enc_key(), &aad(user), &row.secret_enc).map_err(
                |_| PolicyError::Tampered(format!("mfa row {user:?}: the secret does not decrypt")),
            )?,
        );
        let totp = totp(&secret, DIGITS)?;
        let t = now / STEP_S;
        let mut found = None;
        // Compare against every step of the window, in constant time each.
        for step in t.saturating_sub(u64::from(SKEW))..=t.saturating_add(u64::from(SKEW)) {
            let expected = code_at(&totp, step);
            let eq: bool = expected.as_bytes().ct_eq(code.as_bytes()).into();
            if eq && found.is_none() {
                found = Some(step);
            }
        }
        let step = found
            .and_then(|s| i64::try_from(s).ok())
            .ok_or(PolicyError::MfaInvalid)?;
        if row.last_step.is_some_and(|last| step <= last) {
            return Err(PolicyError::MfaReplayed);
        }
        Ok(step)
    }

    /// Issues a one-time enrolment ticket for `user` on behalf of `by`, valid for `hours`
    /// (1 to [`MAX_TICKET_HOURS`]) from `now_ns`, replacing one issued before. `by` may not be
    /// `user` unless `allow_self` (the keystore holder, in local mode): a ticket one issues
    /// oneself proves nothing beyond the token.
    pub fn mfa_ticket_issue(
        &self,
        user: &str,
        by: &str,
        hours: u32,
        now_ns: i64,
        allow_self: bool,
    ) -> Result<MfaTicket, PolicyError> {
        if !(1..=MAX_TICKET_HOURS).contains(&hours) {
            return Err(PolicyError::Invalid(format!(
                "valid_hours: {hours} is not 1 to {MAX_TICKET_HOURS}"
            )));
        }
        if by == user && !allow_self {
            return Err(PolicyError::Invalid(
                "an enrolment ticket is issued by another admin, not its user".into(),
            ));
        }
        let mut secret = Zeroizing::new([0u8; 20]);
        rand::fill(&mut secret[..]);
        let ticket = Zeroizing::new(format!("cmt_{}", hex::encode(&secret[..])));
        let expires_s = (now_ns / 1_000_000_000).saturating_add(i64::from(hours) * 3600);
        let hash = ticket_hash(user, &ticket);
        self.write(|tx| {
            self.existing(user)?;
            tx.execute(
                "INSERT INTO mfa_tickets (user, ticket_hash, expires_s, issued_by, issued_ns)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (user) DO UPDATE SET ticket_hash = excluded.ticket_hash,
                   expires_s = excluded.expires_s, issued_by = excluded.issued_by,
                   issued_ns = excluded.issued_ns",
                params![user, hash.to_vec(), expires_s, by, now_ns],
            )
            .map_err(db)?;
            Ok(())
        })?;
        Ok(MfaTicket { ticket, expires_s })
    }

    /// Checks and uses up `user`'s enrolment ticket inside a write.
    fn use_ticket(
        &self,
        tx: &rusqlite::Transaction<'_>,
        user: &str,
        ticket: &str,
        now_s: i64,
    ) -> Result<(), PolicyError> {
        let found = self
            .select(&MFA_TICKETS, "WHERE user = ?1", [user], |r| {
                Ok((r.get::<_, Vec<u8>>(1)?, r.get::<_, i64>(2)?))
            })?
            .into_iter()
            .next();
        let Some((hash, expires_s)) = found else {
            self.check_absent(&MFA_TICKETS, Value::Text(user.into()))?;
            return Err(PolicyError::Invalid(format!(
                "no enrolment ticket is outstanding for \"{user}\" (none was issued, or it was used)"
            )));
        };
        let ok: bool = ticket_hash(user, ticket.trim())
            .ct_eq(hash.as_slice())
            .into();
        if !ok {
            return Err(PolicyError::Invalid(
                "the enrolment ticket is not the one issued to this user".into(),
            ));
        }
        if now_s >= expires_s {
            return Err(PolicyError::Invalid(
                "the enrolment ticket expired; ask an admin for a new one".into(),
            ));
        }
        tx.execute("DELETE FROM mfa_tickets WHERE user = ?1", [user])
            .map_err(db)?;
        Ok(())
    }

    /// Issues a new TOTP secret to `user` (replacing an unconfirmed one) and returns it for
    /// the user's authenticator app. With `ticket`, the user's enrolment ticket is checked
    /// and used up in the same transaction (the caller decides whether one is required).
    /// Refused when the user has a confirmed enrolment: an admin resets it first
    /// ([`Identities::mfa_reset`]). Needs a sealed store.
    pub fn mfa_enroll(
        &self,
        user: &str,
        now_ns: i64,
        ticket: Option<&str>,
    ) -> Result<MfaEnrollment, PolicyError> {
        let keys = self.keys()?;
        let secret = SecretBytes::random(SECRET_LEN);
        let secret_enc = custos_crypto::aead::seal(keys.enc_key(), &aad(user), secret.expose())
            .map_err(|e| PolicyError::Store(format!("encrypting the TOTP secret: {e}")))?;
        self.write(|tx| {
            self.existing(user)?;
            if self.mfa_row(user)?.is_some_and(|r| r.confirmed) {
                return Err(PolicyError::Invalid(format!(
                    "\"{user}\" has a confirmed MFA enrolment; an admin must reset it before a new one"
                )));
            }
            if let Some(t) = ticket {
                self.use_ticket(tx, user, t, now_ns / 1_000_000_000)?;
            }
            tx.execute(
                "INSERT INTO mfa (user, secret_enc, confirmed, last_step, enrolled_ns, confirmed_ns)
                 VALUES (?1, ?2, 0, NULL, ?3, NULL)
                 ON CONFLICT (user) DO UPDATE SET secret_enc = excluded.secret_enc, confirmed = 0,
                   last_step = NULL, enrolled_ns = excluded.enrolled_ns, confirmed_ns = NULL",
                params![user, secret_enc, now_ns],
            )
            .map_err(db)?;
            Ok(())
        })?;
        let secret_base32 = Zeroizing::new(totp_rs::Secret::from(secret.expose()).to_base32());
        let otpauth_uri = Zeroizing::new(format!(
            "otpauth://totp/{ISSUER}:{user}?secret={}&issuer={ISSUER}&algorithm=SHA1&digits={DIGITS}&period={STEP_S}",
            secret_base32.as_str()
        ));
        Ok(MfaEnrollment {
            secret_base32,
            otpauth_uri,
        })
    }

    /// Confirms `user`'s pending enrolment with a code from their app at `now_s` (Unix
    /// seconds): from then on [`Identities::mfa_verify`] accepts their codes.
    pub fn mfa_confirm(&self, user: &str, code: &str, now_s: i64) -> Result<(), PolicyError> {
        let keys = self.keys()?;
        let now = unix_s(now_s)?;
        self.write(|tx| {
            let row = self.mfa_row(user)?.ok_or(PolicyError::MfaNotEnrolled)?;
            if row.confirmed {
                return Err(PolicyError::Invalid(format!(
                    "\"{user}\"'s MFA enrolment is already confirmed"
                )));
            }
            let step = self.check_code(keys, user, &row, code, now)?;
            tx.execute(
                "UPDATE mfa SET confirmed = 1, confirmed_ns = ?2, last_step = ?3 WHERE user = ?1",
                params![user, now_s.saturating_mul(1_000_000_000), step],
            )
            .map_err(db)?;
            Ok(())
        })
    }

    /// Verifies a step-up code of `user` at `now_s` (Unix seconds): the current step or one
    /// either side, never a step already used or older than one used. Distinct errors:
    /// [`PolicyError::MfaNotEnrolled`], [`PolicyError::MfaInvalid`] (malformed, wrong or
    /// stale), [`PolicyError::MfaReplayed`].
    pub fn mfa_verify(&self, user: &str, code: &str, now_s: i64) -> Result<(), PolicyError> {
        let keys = self.keys()?;
        let now = unix_s(now_s)?;
        self.write(|tx| {
            let row = self
                .mfa_row(user)?
                .filter(|r| r.confirmed)
                .ok_or(PolicyError::MfaNotEnrolled)?;
            let step = self.check_code(keys, user, &row, code, now)?;
            tx.execute(
                "UPDATE mfa SET last_step = ?2 WHERE user = ?1",
                params![user, step],
            )
            .map_err(db)?;
            Ok(())
        })
    }

    /// `user`'s MFA state.
    pub fn mfa_status(&self, user: &str) -> Result<MfaStatus, PolicyError> {
        self.keys()?;
        self.read(|| {
            self.existing(user)?;
            Ok(match self.mfa_row(user)? {
                Some(r) => MfaStatus {
                    enrolled: true,
                    confirmed: r.confirmed,
                    confirmed_ns: r.confirmed_ns,
                },
                None => MfaStatus {
                    enrolled: false,
                    confirmed: false,
                    confirmed_ns: None,
                },
            })
        })
    }

    /// Removes `user`'s enrolment on behalf of `by`, so they can enrol again. A confirmed
    /// enrolment is reset by someone else: whoever holds only the user's token must not be
    /// able to swap the second factor. `now_ns` is the time of the reset, for the caller's
    /// audit record (nothing of the enrolment is kept).
    pub fn mfa_reset(&self, user: &str, by: &str, now_ns: i64) -> Result<(), PolicyError> {
        let _ = now_ns;
        self.keys()?;
        self.write(|tx| {
            self.existing(user)?;
            let row = self
                .mfa_row(user)?
                .ok_or_else(|| PolicyError::Invalid(format!("\"{user}\" has no MFA enrolment")))?;
            if row.confirmed && by == user {
                return Err(PolicyError::Invalid(
                    "a confirmed MFA enrolment is reset by another admin, not its owner".into(),
                ));
            }
            tx.execute("DELETE FROM mfa WHERE user = ?1", [user])
                .map_err(db)?;
            Ok(())
        })
    }
}
