//! `custos serve --config server.toml`: where to listen, the TLS certificate and key (by
//! reference), the keystore passphrase (by reference), the data roots and secret allowlist for
//! registered pipelines, and the address allowlist. Relative paths resolve against the file's
//! directory.
//!
//! ```toml
//! [server]
//! listen = "0.0.0.0:8443"
//! socket = "/run/custos/custos.sock"  # also serve local clients on a Unix socket (optional)
//! socket_mode = "0660"
//! state_dir = "/var/lib/custos/.custos"
//! max_concurrent_runs = 2
//! shutdown_grace_secs = 30
//! allow = ["10.0.0.0/8"]              # sign-in only from these networks (default: any)
//!
//! [tls]
//! cert = "${file:/etc/custos/tls/server.crt}"   # PEM chain, by reference
//! key = "${file:/etc/custos/tls/server.key}"    # PEM private key, by reference
//! min_version = "1.2"                           # or "1.3"
//! client_ca = "${file:/etc/custos/tls/clients-ca.crt}"  # mTLS: client certificates signed
//!                                               # by this CA sign in as the user of their CN
//! client_auth = "optional"                      # or "required": no certificate, no handshake
//! client_crl = "${file:/etc/custos/tls/clients.crl}"    # revoked client certificates
//!
//! [keystore]
//! passphrase = "${file:/etc/custos/keystore-passphrase}"
//!
//! [auth]
//! mfa = "required"   # privileged actions need a TOTP code (or the IdP's MFA); "off" to allow
//! mfa_enrollment = "self"   # or "ticket": enrolling needs a one-time ticket from an admin
//!
//! [pipelines]
//! roots = ["/srv/data"]                # sources and sinks only under these
//! secrets = ["env:PG_PASSWORD"]        # secret references pipelines may use (globs)
//!
//! [danger]
//! plaintext = false   # serve HTTP without TLS: refused unless `listen` is a loopback address
//! accept_identity_rollback = false  # start once with an identity.db restored from a backup
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::ServerError;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// `[server]`.
    pub server: ServerSection,
    /// `[tls]`; required unless `[danger] plaintext` on a loopback address.
    #[serde(default)]
    pub tls: Option<TlsSection>,
    /// `[keystore]`.
    #[serde(default)]
    pub keystore: KeystoreSection,
    /// `[auth]`.
    #[serde(default)]
    pub auth: AuthSection,
    /// `[pipelines]`.
    #[serde(default)]
    pub pipelines: PipelinesSection,
    /// `[danger]`.
    #[serde(default)]
    pub danger: DangerSection,
    /// Directory relative paths resolve against (the file's).
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// `[server]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Address and port (HTTPS, or HTTP on loopback behind `[danger] plaintext`).
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// A Unix socket to serve on as well (or instead): plain HTTP, for clients on this
    /// machine (`CUSTOS_SERVER=unix:///path`); its permissions decide who may connect.
    #[serde(default)]
    pub socket: Option<PathBuf>,
    /// The socket's permissions (octal text, default `"0600"`).
    #[serde(default = "default_socket_mode", deserialize_with = "octal_mode")]
    pub socket_mode: u32,
    /// The project's state directory (default `.custos` beside the config file).
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// Runs at once; more wait in a queue.
    #[serde(default = "default_runs")]
    pub max_concurrent_runs: usize,
    /// How long running jobs get to finish on shutdown before they are cancelled.
    #[serde(default = "default_grace")]
    pub shutdown_grace_secs: u64,
    /// Networks (CIDR) that may sign in; empty: any.
    #[serde(default)]
    pub allow: Vec<String>,
}

fn default_socket_mode() -> u32 {
    0o600
}

fn octal_mode<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let s = String::deserialize(d)?;
    u32::from_str_radix(s.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o777 && m & 0o007 == 0)
        .ok_or_else(|| {
            serde::de::Error::custom(format!(
                "\"{s}\" is not an octal mode without access for others (\"0600\", \"0660\")"
            ))
        })
}

fn default_runs() -> usize {
    2
}

fn default_grace() -> u64 {
    30
}

/// `[tls]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// The certificate chain (PEM), as a secret reference.
    pub cert: String,
    /// The private key (PEM), as a secret reference.
    pub key: String,
    /// `1.2` (default) or `1.3`.
    #[serde(default = "default_min_version")]
    pub min_version: String,
    /// CA certificates (PEM, by reference) that sign client certificates: a verified client
    /// certificate signs its holder in as the user named by its subject's common name.
    #[serde(default)]
    pub client_ca: Option<String>,
    /// `optional` (default: a certificate or an `Authorization` header) or `required` (the
    /// handshake fails without a certificate).
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// Certificate revocation lists (PEM, by reference) for client certificates.
    #[serde(default)]
    pub client_crl: Option<String>,
}

/// Whether clients must present a certificate.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// A certificate, when presented, is verified and signs the client in.
    #[default]
    Optional,
    /// Every connection needs a verified certificate.
    Required,
}

fn default_min_version() -> String {
    "1.2".into()
}

/// `[keystore]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeystoreSection {
    /// The passphrase, as a secret reference. Without it the server runs without keys (no
    /// protect transforms, no signed audit checkpoints).
    #[serde(default)]
    pub passphrase: Option<String>,
}

/// `[auth]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    /// Whether privileged actions (key destruction, users, grants, policies, decryption) need
    /// a second factor.
    #[serde(default)]
    pub mfa: MfaSetting,
    /// How users enrol their second factor: `"self"` (the default; whoever first holds a
    /// user's token can) or `"ticket"` (with a one-time ticket an admin issues).
    #[serde(default)]
    pub mfa_enrollment: custos_app::EnrollmentMode,
    /// `[auth.oidc]`: an identity provider whose JWTs sign users in (see [`OidcSettings`]).
    #[serde(default)]
    pub oidc: Option<toml::Table>,
}

/// `[auth.oidc]`: the verification rules of [`custos_policy::oidc::OidcConfig`] (issuer,
/// audience, algorithms, claims, role mapping) plus where the key set comes from.
///
/// ```toml
/// [auth.oidc]
/// issuer = "https://idp.example.com/realms/data"
/// audience = ["custos"]
/// jwks_url = "https://idp.example.com/realms/data/protocol/openid-connect/certs"
/// jwks_ca = "${file:/etc/custos/idp-ca.pem}"   # optional: the provider's CA
/// # jwks = "${file:/etc/custos/jwks.json}"     # or a key set file instead of the URL
/// username_claim = "preferred_username"
/// role_claim = "groups"
/// roles = [{ claim_value = "custos-admins", role = "security_admin" }]
/// step_up_max_age_secs = 900                  # the IdP's MFA counts this long after sign-in
/// ```
#[derive(Debug)]
pub struct OidcSettings {
    /// The verification rules.
    pub verify: custos_policy::oidc::OidcConfig,
    /// Where the key set comes from.
    pub jwks: JwksLocation,
    /// The provider's CA (PEM, by reference), for `jwks_url`.
    pub jwks_ca: Option<String>,
    /// How long after the provider's sign-in its MFA counts for step-up.
    pub step_up_max_age_secs: u64,
}

/// Where an identity provider's key set comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksLocation {
    /// Fetched from this `https://` URL (again when a token names an unknown key).
    Url(String),
    /// Read from this file (again when a token names an unknown key).
    File(PathBuf),
}

impl AuthSection {
    /// `[auth.oidc]`, checked: `None` when absent.
    pub fn oidc_settings(&self, base_dir: &Path) -> Result<Option<OidcSettings>, String> {
        let Some(table) = &self.oidc else {
            return Ok(None);
        };
        let mut t = table.clone();
        let text = |t: &mut toml::Table, k: &str| -> Result<Option<String>, String> {
            match t.remove(k) {
                None => Ok(None),
                Some(toml::Value::String(s)) => Ok(Some(s)),
                Some(_) => Err(format!("auth.oidc.{k}: expected a string")),
            }
        };
        let url = text(&mut t, "jwks_url")?;
        let file = text(&mut t, "jwks")?;
        let jwks_ca = text(&mut t, "jwks_ca")?;
        let step_up_max_age_secs = match t.remove("step_up_max_age_secs") {
            None => 900,
            Some(toml::Value::Integer(n)) if (0..=86_400).contains(&n) => n as u64,
            Some(_) => {
                return Err("auth.oidc.step_up_max_age_secs: expected 0 to 86400 seconds".into());
            }
        };
        let jwks = match (url, file) {
            (Some(u), None) if u.starts_with("https://") => JwksLocation::Url(u),
            (Some(_), None) => return Err("auth.oidc.jwks_url: must be an https:// URL".into()),
            (None, Some(f)) => {
                let p = PathBuf::from(
                    f.strip_prefix("${file:")
                        .and_then(|r| r.strip_suffix('}'))
                        .unwrap_or(&f),
                );
                JwksLocation::File(if p.is_absolute() { p } else { base_dir.join(p) })
            }
            (Some(_), Some(_)) => {
                return Err("auth.oidc: give jwks_url or jwks, not both".into());
            }
            (None, None) => {
                return Err(
                    "auth.oidc: give jwks_url (the provider's key set) or jwks (a file)".into(),
                );
            }
        };
        if let Some(ca) = &jwks_ca {
            let tpl =
                custos_config::secret::parse(ca).map_err(|e| format!("auth.oidc.jwks_ca: {e}"))?;
            if !tpl.has_refs() {
                return Err(
                    "auth.oidc.jwks_ca: give the PEM by reference (\"${file:/path/ca.pem}\")"
                        .into(),
                );
            }
        }
        let verify: custos_policy::oidc::OidcConfig = toml::Value::Table(t)
            .try_into()
            .map_err(|e: toml::de::Error| format!("auth.oidc: {}", e.message()))?;
        verify.validate().map_err(|e| format!("auth.oidc: {e}"))?;
        Ok(Some(OidcSettings {
            verify,
            jwks,
            jwks_ca,
            step_up_max_age_secs,
        }))
    }
}

/// `[auth] mfa`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MfaSetting {
    /// Privileged actions need a second factor (the default).
    #[default]
    Required,
    /// No step-up (a project whose users cannot enrol yet); recorded at start.
    Off,
}

/// `[pipelines]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelinesSection {
    /// Directories registered pipelines may read and write under.
    #[serde(default)]
    pub roots: Vec<PathBuf>,
    /// Secret references registered pipelines may use (glob patterns over
    /// `provider:reference`).
    #[serde(default)]
    pub secrets: Vec<String>,
}

/// `[danger]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DangerSection {
    /// Serve plain HTTP (loopback addresses only).
    #[serde(default)]
    pub plaintext: bool,
    /// Start even though `identity.db` is older than the audit log's last record of it (it
    /// was restored from a backup on purpose). Recorded; remove it after that start.
    #[serde(default)]
    pub accept_identity_rollback: bool,
}

impl ServerConfig {
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<Self, ServerError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ServerError::Config(format!("{}: {e}", path.display())))?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        Self::parse(&text, base)
            .map_err(|e| ServerError::Config(format!("{}: {e}", path.display())))
    }

    /// Parses and checks config text; `base_dir` anchors relative paths.
    pub fn parse(text: &str, base_dir: &Path) -> Result<Self, String> {
        // toml's errors name the key and its line.
        let mut cfg: ServerConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        cfg.base_dir = base_dir.to_path_buf();
        cfg.check()?;
        Ok(cfg)
    }

    fn check(&self) -> Result<(), String> {
        match (self.server.listen, self.server.socket.is_some()) {
            (None, false) => {
                return Err("server: give `listen` (an address and port), `socket` (a Unix socket path), or both".into());
            }
            (None, true) if self.danger.plaintext => {
                return Err(
                    "[danger] plaintext is for `listen`; the Unix socket is always plain HTTP"
                        .into(),
                );
            }
            (None, true) => {}
            (Some(listen), _) => match (&self.tls, self.danger.plaintext) {
                (None, false) => {
                    return Err(
                        "[tls] is required (cert and key by reference); plain HTTP needs [danger] plaintext = true on a loopback address".into(),
                    );
                }
                (Some(_), true) => {
                    return Err("[danger] plaintext and [tls] exclude each other".into());
                }
                (None, true) if !listen.ip().is_loopback() => {
                    return Err(format!(
                        "[danger] plaintext: refused on {listen}: plain HTTP is served only on a loopback address"
                    ));
                }
                _ => {}
            },
        }
        if let Some(t) = &self.tls {
            if !["1.2", "1.3"].contains(&t.min_version.as_str()) {
                return Err(format!(
                    "tls.min_version: \"{}\" is not 1.2 or 1.3 (older versions are never served)",
                    t.min_version
                ));
            }
            if t.client_ca.is_none() {
                if t.client_auth == ClientAuth::Required {
                    return Err(
                        "tls.client_auth = \"required\" needs tls.client_ca (the CA that signs client certificates)".into(),
                    );
                }
                if t.client_crl.is_some() {
                    return Err("tls.client_crl needs tls.client_ca".into());
                }
            }
            let refs = [("tls.cert", Some(&t.cert)), ("tls.key", Some(&t.key))];
            let optional = [
                ("tls.client_ca", t.client_ca.as_ref()),
                ("tls.client_crl", t.client_crl.as_ref()),
            ];
            for (k, v) in refs
                .into_iter()
                .chain(optional)
                .filter_map(|(k, v)| Some((k, v?)))
            {
                let tpl = custos_config::secret::parse(v).map_err(|e| format!("{k}: {e}"))?;
                if !tpl.has_refs() {
                    return Err(format!(
                        "{k}: give the PEM by reference (\"${{file:/path/to.pem}}\" or \"${{env:NAME}}\")"
                    ));
                }
            }
        }
        if let Some(p) = &self.keystore.passphrase {
            let tpl =
                custos_config::secret::parse(p).map_err(|e| format!("keystore.passphrase: {e}"))?;
            if !tpl.has_refs() {
                return Err("keystore.passphrase: give it by reference, never literally".into());
            }
        }
        self.auth.oidc_settings(&self.base_dir)?;
        if self.server.max_concurrent_runs == 0 {
            return Err("server.max_concurrent_runs: must be at least 1".into());
        }
        Ok(())
    }

    /// Resolves a secret reference of this file.
    pub fn resolve(
        &self,
        key: &str,
        value: &str,
    ) -> Result<custos_config::secret::Secret, ServerError> {
        let tpl = custos_config::secret::parse(value)
            .map_err(|e| ServerError::Config(format!("{key}: {e}")))?;
        let (secret, warnings) = tpl
            .resolve(&self.base_dir)
            .map_err(|e| ServerError::Config(format!("{key}: {e}")))?;
        for w in warnings {
            tracing::warn!("{key}: {w}");
        }
        Ok(secret)
    }

    /// `p` resolved against the file's directory.
    pub fn resolve_path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    /// The state directory.
    pub fn state_dir(&self) -> PathBuf {
        match &self.server.state_dir {
            Some(d) if d.is_absolute() => d.clone(),
            Some(d) => self.base_dir.join(d),
            None => self.base_dir.join(".custos"),
        }
    }

    /// The data roots, absolute.
    pub fn roots(&self) -> Vec<PathBuf> {
        self.pipelines
            .roots
            .iter()
            .map(|r| {
                if r.is_absolute() {
                    r.clone()
                } else {
                    self.base_dir.join(r)
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TLS: &str = "[tls]\ncert = \"${file:c.pem}\"\nkey = \"${file:k.pem}\"\n";

    fn parse(s: &str) -> Result<ServerConfig, String> {
        ServerConfig::parse(s, Path::new("/etc/custos"))
    }

    #[test]
    fn tls_is_required_and_plaintext_only_on_loopback() {
        let e = parse("[server]\nlisten = \"0.0.0.0:8443\"\n").unwrap_err();
        assert!(e.contains("[tls] is required"), "{e}");
        let e =
            parse("[server]\nlisten = \"0.0.0.0:8080\"\n[danger]\nplaintext = true\n").unwrap_err();
        assert!(e.contains("loopback"), "{e}");
        parse("[server]\nlisten = \"127.0.0.1:8080\"\n[danger]\nplaintext = true\n").unwrap();
        parse("[server]\nlisten = \"[::1]:8080\"\n[danger]\nplaintext = true\n").unwrap();
        // A Unix socket alone needs neither TLS nor the danger switch.
        let c = parse("[server]\nsocket = \"run/c.sock\"\nsocket_mode = \"0660\"\n").unwrap();
        assert_eq!(c.server.socket_mode, 0o660);
        assert!(parse("[server]\nsocket = \"c.sock\"\nsocket_mode = \"0666\"\n").is_err());
        let e = parse("[server]\n").unwrap_err();
        assert!(e.contains("listen") && e.contains("socket"), "{e}");
        let c = parse(&format!("[server]\nlisten = \"0.0.0.0:8443\"\n{TLS}")).unwrap();
        assert_eq!(c.state_dir(), PathBuf::from("/etc/custos/.custos"));
    }

    #[test]
    fn enrolment_mode_and_rollback_switch() {
        let base = format!("[server]\nlisten = \"0.0.0.0:8443\"\n{TLS}");
        let c = parse(&base).unwrap();
        assert_eq!(
            c.auth.mfa_enrollment,
            custos_app::EnrollmentMode::SelfService
        );
        assert!(!c.danger.accept_identity_rollback);
        let c = parse(&format!(
            "{base}[auth]\nmfa_enrollment = \"ticket\"\n[danger]\naccept_identity_rollback = true\n"
        ))
        .unwrap();
        assert_eq!(c.auth.mfa_enrollment, custos_app::EnrollmentMode::Ticket);
        assert!(c.danger.accept_identity_rollback);
        let c = parse(&format!("{base}[auth]\nmfa_enrollment = \"self\"\n")).unwrap();
        assert_eq!(
            c.auth.mfa_enrollment,
            custos_app::EnrollmentMode::SelfService
        );
        let e = parse(&format!("{base}[auth]\nmfa_enrollment = \"email\"\n")).unwrap_err();
        assert!(e.contains("mfa_enrollment"), "{e}");
    }

    #[test]
    fn bad_settings_are_named() {
        let e = parse(&format!(
            "[server]\nlisten = \"0.0.0.0:1\"\n{TLS}min_version = \"1.1\"\n"
        ))
        .unwrap_err();
        assert!(e.contains("tls.min_version"), "{e}");
        let e = parse(
            "[server]\nlisten = \"0.0.0.0:1\"\n[tls]\ncert = \"/x.pem\"\nkey = \"${file:k}\"\n",
        )
        .unwrap_err();
        assert!(e.contains("tls.cert"), "{e}");
        let e = parse(&format!(
            "[server]\nlisten = \"0.0.0.0:1\"\n{TLS}[keystore]\npassphrase = \"hunter2\"\n"
        ))
        .unwrap_err();
        assert!(
            e.contains("keystore.passphrase") && !e.contains("hunter2"),
            "{e}"
        );
        let e = parse(&format!(
            "[server]\nlisten = \"0.0.0.0:1\"\nbogus = 1\n{TLS}"
        ))
        .unwrap_err();
        assert!(e.contains("bogus"), "{e}");
        let e = parse(&format!(
            "[server]\nlisten = \"0.0.0.0:1\"\n{TLS}client_auth = \"required\"\n"
        ))
        .unwrap_err();
        assert!(e.contains("tls.client_ca"), "{e}");
        let e = parse(&format!(
            "[server]\nlisten = \"0.0.0.0:1\"\n{TLS}client_ca = \"/ca.pem\"\n"
        ))
        .unwrap_err();
        assert!(
            e.contains("tls.client_ca") && e.contains("reference"),
            "{e}"
        );
        let c = parse(&format!(
            "[server]\nlisten = \"0.0.0.0:1\"\n{TLS}client_ca = \"${{file:ca.pem}}\"\nclient_auth = \"required\"\n"
        ))
        .unwrap();
        assert_eq!(c.tls.unwrap().client_auth, ClientAuth::Required);
    }

    #[test]
    fn oidc_settings_are_checked_and_named() {
        let base = format!(
            "[server]\nlisten = \"0.0.0.0:1\"\n{TLS}[auth.oidc]\nissuer = \"https://idp\"\naudience = [\"custos\"]\nroles = [{{ claim_value = \"g\", role = \"analyst\" }}]\n"
        );
        let e = parse(&base).unwrap_err();
        assert!(e.contains("jwks_url") && e.contains("jwks"), "{e}");
        let c = parse(&format!("{base}jwks_url = \"https://idp/certs\"\n")).unwrap();
        let o = c
            .auth
            .oidc_settings(Path::new("/etc/custos"))
            .unwrap()
            .unwrap();
        assert_eq!(o.jwks, JwksLocation::Url("https://idp/certs".into()));
        assert_eq!(o.step_up_max_age_secs, 900);
        let c = parse(&format!("{base}jwks = \"${{file:jwks.json}}\"\n")).unwrap();
        let o = c
            .auth
            .oidc_settings(Path::new("/etc/custos"))
            .unwrap()
            .unwrap();
        assert_eq!(o.jwks, JwksLocation::File("/etc/custos/jwks.json".into()));
        for (extra, key) in [
            ("jwks_url = \"http://idp/certs\"\n", "jwks_url"),
            (
                "jwks_url = \"https://idp/c\"\nalgorithms = [\"HS256\"]\n",
                "algorithms",
            ),
            ("jwks_url = \"https://idp/c\"\nissuerr = \"x\"\n", "issuerr"),
            (
                "jwks_url = \"https://idp/c\"\njwks_ca = \"/ca.pem\"\n",
                "jwks_ca",
            ),
            (
                "jwks_url = \"https://idp/c\"\nstep_up_max_age_secs = -1\n",
                "step_up_max_age_secs",
            ),
        ] {
            let e = parse(&format!("{base}{extra}")).unwrap_err();
            assert!(e.contains(key), "{key}: {e}");
        }
    }
}
