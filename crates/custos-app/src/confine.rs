//! What a pipeline registered with the server may reach: source, sink and quarantine paths
//! only under the configured data roots (after resolving `..` and symbolic links), secret
//! references only from an allowlist (and never the server's own `CUSTOS_*` variables), and no
//! keystore but the server's.

use std::path::{Component, Path, PathBuf};

use custos_config::{PipelineConfig, TransformKind};

use crate::error::{AppError, Result};

/// The server's rules for registered pipelines.
#[derive(Debug, Clone, Default)]
pub struct Confinement {
    roots: Vec<PathBuf>,
    secrets: Vec<glob::Pattern>,
}

/// Resolves `p` as far as it exists (symbolic links and `..` included) and appends the rest,
/// which may not climb with `..`.
fn resolve_existing(p: &Path) -> Option<PathBuf> {
    let mut existing = p.to_path_buf();
    let mut rest: Vec<std::ffi::OsString> = Vec::new();
    loop {
        if let Ok(c) = existing.canonicalize() {
            let mut out = c;
            for part in rest.iter().rev() {
                out.push(part);
            }
            return Some(out);
        }
        let name = existing.file_name()?.to_os_string();
        if name == ".." {
            return None;
        }
        rest.push(name);
        if !existing.pop() {
            return None;
        }
    }
}

/// The part of a source path before its first glob character.
fn glob_prefix(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        let s = c.as_os_str().to_string_lossy();
        if s.contains(['*', '?', '[']) {
            break;
        }
        out.push(c);
    }
    out
}

impl Confinement {
    /// Rules with these data roots (each must exist) and secret allowlist entries
    /// (`env:NAME`, `file:/run/secrets/*`, `vault:kv/app#*`: glob patterns over
    /// `provider:reference`).
    pub fn new(roots: &[PathBuf], secrets: &[String]) -> Result<Self> {
        let roots = roots
            .iter()
            .map(|r| {
                r.canonicalize()
                    .map_err(|e| AppError::Invalid(format!("data root {}: {e}", r.display())))
            })
            .collect::<Result<Vec<_>>>()?;
        let secrets = secrets
            .iter()
            .map(|s| {
                if s.starts_with("env:CUSTOS_") {
                    return Err(AppError::Invalid(format!(
                        "secret allowlist entry \"{s}\": the server's own CUSTOS_* variables can never be referenced"
                    )));
                }
                glob::Pattern::new(s).map_err(|e| {
                    AppError::Invalid(format!("secret allowlist entry \"{s}\": {e}"))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { roots, secrets })
    }

    /// The data roots.
    pub fn roots(&self) -> &[PathBuf] {
        &self.roots
    }

    /// Whether `p` (absolute, or relative to the current directory) lies under a data root.
    pub fn path_allowed(&self, p: &Path) -> bool {
        if p.components().any(|c| matches!(c, Component::ParentDir))
            && resolve_existing(p).is_none()
        {
            return false;
        }
        match resolve_existing(p) {
            Some(r) => self.roots.iter().any(|root| r.starts_with(root)),
            None => false,
        }
    }

    /// Every way `config` breaks the rules, as `key: reason`.
    pub fn check_config(&self, config: &PipelineConfig) -> Vec<String> {
        let mut bad = Vec::new();
        let mut check = |key: String, path: &str, glob: bool| {
            let full = config.resolve(path);
            let p = if glob { glob_prefix(&full) } else { full };
            if !self.path_allowed(&p) {
                bad.push(format!(
                    "{key}: \"{path}\" is outside the server's data roots ({})",
                    self.roots
                        .iter()
                        .map(|r| r.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        };
        for s in &config.sources {
            if let Some(p) = s.kind.path() {
                check(format!("sources.{}.path", s.name), p, true);
            }
        }
        for s in &config.sinks {
            if let Some(p) = s.kind.path() {
                check(format!("sinks.{}.path", s.name), p, false);
            }
        }
        if let Some(q) = &config.pipeline.quarantine.path {
            check("pipeline.quarantine.path".into(), q, false);
        }
        for t in &config.transforms {
            let ks = match &t.kind {
                TransformKind::Protect(p) => p.keystore.as_ref(),
                TransformKind::Rewrap(r) => r.keystore.as_ref(),
                _ => None,
            };
            if ks.is_some() {
                bad.push(format!(
                    "transforms.{}.keystore: a registered pipeline uses the server's keystore; remove the key",
                    t.name
                ));
            }
        }
        bad
    }

    /// Every secret reference in `text` (`${provider:ref}`; `$${` is a literal) that the
    /// allowlist does not admit.
    pub fn check_secrets(&self, text: &str) -> Vec<String> {
        let mut bad = Vec::new();
        let bytes = text.as_bytes();
        let mut i = 0;
        while let Some(off) = text[i..].find("${") {
            let at = i + off;
            i = at + 2;
            if at > 0 && bytes[at - 1] == b'$' {
                continue;
            }
            let Some(end) = text[i..].find('}') else {
                break;
            };
            let reference = &text[i..i + end];
            i += end + 1;
            let forbidden = reference.starts_with("env:CUSTOS_");
            if forbidden || !self.secrets.iter().any(|p| p.matches(reference)) {
                bad.push(format!(
                    "secret reference ${{{reference}}} is not allowed on this server{}",
                    if forbidden {
                        " (the server's own CUSTOS_* variables are never readable)"
                    } else {
                        " (add it to [secrets] allow)"
                    }
                ));
            }
        }
        bad
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_confined_to_roots() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        std::fs::create_dir_all(root.join("in")).unwrap();
        std::fs::create_dir_all(dir.path().join("secret")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), root.join("escape")).unwrap();
        let c = Confinement::new(std::slice::from_ref(&root), &[]).unwrap();
        assert!(c.path_allowed(&root.join("in/a.csv")));
        assert!(c.path_allowed(&root.join("new/dir/out.parquet")));
        assert!(!c.path_allowed(&root.join("../secret/a.csv")));
        assert!(!c.path_allowed(&root.join("escape/a.csv")));
        assert!(!c.path_allowed(&root.join("nothere/../../secret/x")));
        assert!(!c.path_allowed(Path::new("/etc/passwd")));
        assert_eq!(
            glob_prefix(Path::new("/d/in/*.csv")),
            PathBuf::from("/d/in")
        );
    }

    #[test]
    fn secret_references_need_the_allowlist() {
        let c = Confinement::new(&[], &["env:PG_*".into(), "file:/run/secrets/*".into()]).unwrap();
        assert!(
            c.check_secrets("password = \"${env:PG_PASSWORD}\"")
                .is_empty()
        );
        assert!(
            c.check_secrets("p = \"${file:/run/secrets/db}\"")
                .is_empty()
        );
        assert!(c.check_secrets("literal = \"$${env:ANY}\"").is_empty());
        assert_eq!(c.check_secrets("p = \"${env:HOME}\"").len(), 1);
        assert_eq!(c.check_secrets("p = \"${file:/etc/shadow}\"").len(), 1);
        let e = c.check_secrets("p = \"${env:CUSTOS_KEYSTORE_PASSPHRASE}\"");
        assert!(e[0].contains("never readable"), "{e:?}");
        assert!(Confinement::new(&[], &["env:CUSTOS_*".into()]).is_err());
        let any = Confinement::new(&[], &["*".into()]).unwrap();
        assert_eq!(any.check_secrets("${env:CUSTOS_TOKEN}").len(), 1);
    }
}
