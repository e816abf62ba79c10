//! `custos serve --config server.toml`: where to listen, the TLS certificate and key (by
//! reference), the keystore passphrase (by reference), the data roots and secret allowlist for
//! registered pipelines, and the address allowlist. Relative paths resolve against the file's
//! directory.
//!
//! ```toml
//! [server]
//! listen = "0.0.0.0:8443"
//! state_dir = "/var/lib/custos/.custos"
//! max_concurrent_runs = 2
//! shutdown_grace_secs = 30
//! allow = ["10.0.0.0/8"]              # sign-in only from these networks (default: any)
//!
//! [tls]
//! cert = "${file:/etc/custos/tls/server.crt}"   # PEM chain, by reference
//! key = "${file:/etc/custos/tls/server.key}"    # PEM private key, by reference
//! min_version = "1.2"                           # or "1.3"
//!
//! [keystore]
//! passphrase = "${file:/etc/custos/keystore-passphrase}"
//!
//! [pipelines]
//! roots = ["/srv/data"]                # sources and sinks only under these
//! secrets = ["env:PG_PASSWORD"]        # secret references pipelines may use (globs)
//!
//! [danger]
//! plaintext = false   # serve HTTP without TLS: refused unless `listen` is a loopback address
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
    /// Address and port.
    pub listen: SocketAddr,
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
        match (&self.tls, self.danger.plaintext) {
            (None, false) => {
                return Err(
                    "[tls] is required (cert and key by reference); plain HTTP needs [danger] plaintext = true on a loopback address".into(),
                );
            }
            (Some(_), true) => {
                return Err("[danger] plaintext and [tls] exclude each other".into());
            }
            (None, true) if !self.server.listen.ip().is_loopback() => {
                return Err(format!(
                    "[danger] plaintext: refused on {}: plain HTTP is served only on a loopback address",
                    self.server.listen
                ));
            }
            _ => {}
        }
        if let Some(t) = &self.tls {
            if !["1.2", "1.3"].contains(&t.min_version.as_str()) {
                return Err(format!(
                    "tls.min_version: \"{}\" is not 1.2 or 1.3 (older versions are never served)",
                    t.min_version
                ));
            }
            for (k, v) in [("tls.cert", &t.cert), ("tls.key", &t.key)] {
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
        let c = parse(&format!("[server]\nlisten = \"0.0.0.0:8443\"\n{TLS}")).unwrap();
        assert_eq!(c.state_dir(), PathBuf::from("/etc/custos/.custos"));
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
    }
}
