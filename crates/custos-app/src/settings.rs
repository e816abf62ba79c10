//! Project-wide settings: where the policies live, and `custos.toml` beside the state
//! directory (`[audit] segment_mib`, `retention`).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{AppError, Result};

/// The optional project settings file `custos.toml` (beside the state directory).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectConfig {
    /// `[audit]`.
    #[serde(default)]
    pub audit: AuditConfig,
}

/// `[audit]` in `custos.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Start a new segment file when the current one reaches this many MiB.
    #[serde(default = "default_segment_mib")]
    pub segment_mib: u64,
    /// Remove whole segments whose every event is older than this: `30d`, `7y`, ...
    #[serde(default)]
    pub retention: Option<String>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            segment_mib: default_segment_mib(),
            retention: None,
        }
    }
}

fn default_segment_mib() -> u64 {
    64
}

impl AuditConfig {
    /// The retention period in nanoseconds.
    pub fn retention_ns(&self) -> Option<i64> {
        self.retention.as_deref().and_then(parse_retention)
    }
}

/// Parses `90d`, `12w`, `6m` (30-day months), `7y` (365-day years) into nanoseconds.
pub fn parse_retention(s: &str) -> Option<i64> {
    let s = s.trim();
    // The unit is the last character (any character: the text comes from callers).
    let (n, unit) = s.split_at(s.char_indices().last()?.0);
    let n: i64 = n.trim().parse().ok().filter(|n| *n > 0)?;
    let days = match unit {
        "d" => n,
        "w" => n * 7,
        "m" => n * 30,
        "y" => n * 365,
        _ => return None,
    };
    days.checked_mul(86_400 * 1_000_000_000)
}

/// The project directory: the state directory's parent.
pub fn project_root(state_dir: &Path) -> PathBuf {
    state_dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The project's policy directory: `$CUSTOS_POLICY_DIR` when `from_env`, else `policies/`
/// beside the state directory.
pub fn policy_dir(state_dir: &Path, from_env: bool) -> PathBuf {
    match std::env::var_os("CUSTOS_POLICY_DIR") {
        Some(d) if from_env && !d.is_empty() => PathBuf::from(d),
        _ => project_root(state_dir).join("policies"),
    }
}

/// Reads `custos.toml` beside the state directory (defaults when there is none).
pub fn load_project(state_dir: &Path) -> Result<ProjectConfig> {
    let path = project_root(state_dir).join("custos.toml");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let cfg: ProjectConfig = toml::from_str(&text)
                .map_err(|e| AppError::Invalid(format!("{}: {e}", path.display())))?;
            if let Some(r) = &cfg.audit.retention
                && parse_retention(r).is_none()
            {
                return Err(AppError::Invalid(format!(
                    "{}: audit.retention \"{r}\" is not a duration like 90d, 12w, 6m or 7y",
                    path.display()
                )));
            }
            Ok(cfg)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ProjectConfig::default()),
        Err(e) => Err(AppError::internal(
            &format!("reading {}", path.display()),
            e,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_durations() {
        let day = 86_400 * 1_000_000_000i64;
        assert_eq!(parse_retention("90d"), Some(90 * day));
        assert_eq!(parse_retention("2w"), Some(14 * day));
        assert_eq!(parse_retention("1y"), Some(365 * day));
        for bad in [
            "",
            "d",
            "0d",
            "-1d",
            "5x",
            "1.5d",
            "\u{80}",
            "9\u{e9}",
            "\u{1f600}d",
        ] {
            assert_eq!(parse_retention(bad), None, "{bad}");
        }
    }
}
