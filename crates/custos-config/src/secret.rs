//! Secrets by reference: `${env:NAME}`, `${file:PATH}`, and the reserved `${vault:PATH#FIELD}`
//! and `${aws-sm:NAME#FIELD}`. The config holds only the reference text; values are resolved at
//! run time into [`Secret`]s, whose `Debug`/`Display` print `[redacted]`, and no error message
//! contains a resolved value. `$${` writes a literal `${`.
//!
//! The pure phase ([`crate::load`]) checks the syntax of every reference in every string and
//! rejects literal credentials ([`literal_credential`]).

use std::path::{Path, PathBuf};

/// Where a referenced secret lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// An environment variable.
    Env(String),
    /// A file; a trailing newline is removed.
    File(String),
    /// HashiCorp Vault (`PATH#FIELD`); resolver not configured yet.
    Vault(String),
    /// AWS Secrets Manager (`NAME#FIELD`); resolver not configured yet.
    AwsSm(String),
}

impl SecretRef {
    fn provider(&self) -> &'static str {
        match self {
            Self::Env(_) => "env",
            Self::File(_) => "file",
            Self::Vault(_) => "vault",
            Self::AwsSm(_) => "aws-sm",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(String),
    Ref(SecretRef),
}

/// A config string with its references parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

/// Why a reference could not be parsed or resolved. Never holds a resolved value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// Malformed reference syntax.
    #[error("{0}")]
    Syntax(String),
    /// `${env:NAME}` with NAME unset.
    #[error("environment variable {0} (referenced as ${{env:{0}}}) is not set")]
    EnvMissing(String),
    /// `${file:PATH}` unreadable.
    #[error("cannot read secret file {path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why (I/O error kind, or "not UTF-8").
        reason: String,
    },
    /// A provider whose resolver is not configured.
    #[error(
        "secret provider \"{0}\" is not configured (vault and aws-sm resolvers come with their providers); use ${{env:...}} or ${{file:...}}"
    )]
    NotConfigured(&'static str),
}

/// A resolved secret value.
pub struct Secret(zeroize::Zeroizing<String>);

impl Secret {
    /// The value, for handing to a client library.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Parses the references in `s`.
pub fn parse(s: &str) -> Result<Template, SecretError> {
    let mut parts = Vec::new();
    let mut lit = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        if rest[..i].ends_with('$') {
            // `$${` is an escaped literal `${`.
            lit.push_str(&rest[..i - 1]);
            lit.push_str("${");
            rest = &rest[i + 2..];
            continue;
        }
        lit.push_str(&rest[..i]);
        let body_start = i + 2;
        let end = rest[body_start..].find('}').ok_or_else(|| {
            SecretError::Syntax("unterminated reference: `${` without a closing `}`".into())
        })?;
        let body = &rest[body_start..body_start + end];
        let (provider, arg) = body.split_once(':').ok_or_else(|| {
            SecretError::Syntax(format!(
                "reference `${{{body}}}` needs a provider: ${{env:NAME}}, ${{file:PATH}}, ${{vault:PATH#FIELD}} or ${{aws-sm:NAME#FIELD}}"
            ))
        })?;
        if arg.is_empty() {
            return Err(SecretError::Syntax(format!(
                "reference `${{{provider}:}}` names nothing"
            )));
        }
        let r = match provider {
            "env" => {
                if !arg.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(SecretError::Syntax(format!(
                        "`${{env:{arg}}}`: environment variable names use letters, digits and `_`"
                    )));
                }
                SecretRef::Env(arg.to_string())
            }
            "file" => SecretRef::File(arg.to_string()),
            "vault" | "aws-sm" => {
                if !arg.contains('#') {
                    return Err(SecretError::Syntax(format!(
                        "`${{{provider}:{arg}}}` needs a field: ${{{provider}:{arg}#FIELD}}"
                    )));
                }
                if provider == "vault" {
                    SecretRef::Vault(arg.to_string())
                } else {
                    SecretRef::AwsSm(arg.to_string())
                }
            }
            other => {
                return Err(SecretError::Syntax(format!(
                    "unknown secret provider \"{other}\"; expected env, file, vault or aws-sm"
                )));
            }
        };
        if !lit.is_empty() {
            parts.push(Part::Lit(std::mem::take(&mut lit)));
        }
        parts.push(Part::Ref(r));
        rest = &rest[body_start + end + 1..];
    }
    lit.push_str(rest);
    if !lit.is_empty() {
        parts.push(Part::Lit(lit));
    }
    Ok(Template { parts })
}

impl Template {
    /// Whether the string holds any reference.
    pub fn has_refs(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Ref(_)))
    }

    /// The references, in order.
    pub fn refs(&self) -> impl Iterator<Item = &SecretRef> {
        self.parts.iter().filter_map(|p| match p {
            Part::Ref(r) => Some(r),
            Part::Lit(_) => None,
        })
    }

    /// Resolves every reference (file paths relative to `base`). Also returns warnings, e.g. a
    /// secret file readable by group or others.
    pub fn resolve(&self, base: &Path) -> Result<(Secret, Vec<String>), SecretError> {
        let mut out = zeroize::Zeroizing::new(String::new());
        let mut warnings = Vec::new();
        for p in &self.parts {
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::Ref(SecretRef::Env(name)) => {
                    let v =
                        std::env::var(name).map_err(|_| SecretError::EnvMissing(name.clone()))?;
                    out.push_str(&zeroize::Zeroizing::new(v));
                }
                Part::Ref(SecretRef::File(path)) => {
                    let path = base.join(path);
                    let bytes = zeroize::Zeroizing::new(std::fs::read(&path).map_err(|e| {
                        SecretError::File {
                            path: path.clone(),
                            reason: e.kind().to_string(),
                        }
                    })?);
                    let text = std::str::from_utf8(&bytes).map_err(|_| SecretError::File {
                        path: path.clone(),
                        reason: "not UTF-8".into(),
                    })?;
                    out.push_str(text.strip_suffix('\n').unwrap_or(text));
                    if let Some(w) = loose_permissions(&path) {
                        warnings.push(w);
                    }
                }
                Part::Ref(r) => return Err(SecretError::NotConfigured(r.provider())),
            }
        }
        Ok((Secret(out), warnings))
    }
}

#[cfg(unix)]
fn loose_permissions(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    (mode & 0o077 != 0).then(|| {
        format!(
            "secret file {} is readable by group or others (mode {:o}); chmod 600 it",
            path.display(),
            mode & 0o777
        )
    })
}

#[cfg(not(unix))]
fn loose_permissions(_: &Path) -> Option<String> {
    None
}

/// Key names whose values are credentials.
const CREDENTIAL_KEYS: &[&str] = &[
    "password",
    "passwd",
    "pass",
    "secret",
    "secret_key",
    "token",
    "api_key",
    "apikey",
    "access_key",
    "access_key_id",
    "secret_access_key",
    "private_key",
    "client_secret",
];

/// Why the string at `key` is a literal credential, if it is one: a credential key whose value
/// is not a reference, or a URL whose password is written out.
pub fn literal_credential(key: &str, value: &str) -> Option<String> {
    let last = key.rsplit('.').next().unwrap_or(key).to_ascii_lowercase();
    let refs = parse(value).map(|t| t.has_refs()).unwrap_or(true);
    if CREDENTIAL_KEYS.contains(&last.as_str()) && !value.is_empty() && !refs {
        return Some(format!(
            "`{last}` holds a literal credential; write a reference instead, e.g. {last} = \"${{env:{}}}\" or \"${{file:/run/secrets/{last}}}\"",
            last.to_ascii_uppercase()
        ));
    }
    // scheme://user:password@host: the password part must be a reference.
    let (_, after) = value.split_once("://")?;
    let authority = after.split(['/', '?', '#']).next().unwrap_or("");
    let (userinfo, _) = authority.rsplit_once('@')?;
    let (_, password) = userinfo.split_once(':')?;
    let password_refs = parse(password).map(|t| t.has_refs()).unwrap_or(true);
    if !password.is_empty() && !password_refs {
        return Some(
            "the URL holds a literal password; write it as a reference, e.g. postgres://user:${env:PGPASSWORD}@host/db".into(),
        );
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_references_and_escapes() {
        let t = parse("postgres://app:${env:PG_PASS}@db/${file:dbname}?x=$${y}").unwrap();
        assert_eq!(
            t.refs().cloned().collect::<Vec<_>>(),
            [
                SecretRef::Env("PG_PASS".into()),
                SecretRef::File("dbname".into())
            ]
        );
        assert!(!parse("plain $text").unwrap().has_refs());
        for bad in [
            "${env:A",
            "${nope}",
            "${foo:x}",
            "${env:}",
            "${env:A-B}",
            "${vault:secret/db}",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(parse("${aws-sm:prod/db#password}").is_ok());
    }

    #[test]
    fn resolves_env_and_files_and_never_shows_values() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "CANARY-FILE-SECRET\n").unwrap();
        // Setting variables is `unsafe` in edition 2024 (and forbidden here): read one every
        // test process has.
        let path = std::env::var("PATH").unwrap();
        let t = parse("u:${env:PATH}/${file:pw}").unwrap();
        let (s, _warnings) = t.resolve(dir.path()).unwrap();
        assert_eq!(s.expose(), format!("u:{path}/CANARY-FILE-SECRET"));
        assert_eq!(format!("{s:?} {s}"), "[redacted] [redacted]");

        let e = parse("${env:CUSTOS_TEST_UNSET_VAR_77}")
            .unwrap()
            .resolve(dir.path())
            .unwrap_err();
        assert!(e.to_string().contains("CUSTOS_TEST_UNSET_VAR_77 "), "{e}");
        let e = parse("${file:missing}")
            .unwrap()
            .resolve(dir.path())
            .unwrap_err();
        assert!(e.to_string().contains("cannot read secret file"), "{e}");
        let e = parse("${vault:secret/db#password}")
            .unwrap()
            .resolve(dir.path())
            .unwrap_err();
        assert!(e.to_string().contains("\"vault\" is not configured"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn warns_about_loose_secret_files() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "x").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let (_, w) = parse("${file:pw}").unwrap().resolve(dir.path()).unwrap();
        assert!(w[0].contains("chmod 600"), "{w:?}");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        let (_, w) = parse("${file:pw}").unwrap().resolve(dir.path()).unwrap();
        assert!(w.is_empty());
    }

    #[test]
    fn literal_credentials_are_found() {
        assert!(literal_credential("sources.db.password", "hunter2").is_some());
        assert!(literal_credential("sources.db.password", "${env:PGPASSWORD}").is_none());
        assert!(literal_credential("sources.db.url", "postgres://u:hunter2@h/db").is_some());
        assert!(literal_credential("sources.db.url", "postgres://u:${env:P}@h/db").is_none());
        assert!(literal_credential("sources.db.url", "postgres://u@h/db").is_none());
        assert!(literal_credential("sources.raw.path", "data/x.csv").is_none());
        // The message never repeats the value.
        let m = literal_credential("x.password", "CANARY-LITERAL").unwrap();
        assert!(!m.contains("CANARY-LITERAL"), "{m}");
        let m = literal_credential("x.url", "pg://u:CANARY-LITERAL@h").unwrap();
        assert!(!m.contains("CANARY-LITERAL"), "{m}");
    }
}
