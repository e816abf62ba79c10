//! The pipeline registry: pipelines the server runs, as registered (their TOML text, its
//! SHA-256, the tags and classification set at registration). A run names a registered
//! pipeline, so the name and tags the policies see come from here, never from a caller's file.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{AppError, Result};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS pipelines (
    name TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    config TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    base_dir TEXT NOT NULL,
    tags TEXT NOT NULL,
    classification TEXT NOT NULL,
    registered_by TEXT NOT NULL,
    registered_ns INTEGER NOT NULL
);
";

/// Data classifications a registered pipeline may carry (the policies see them as the tag
/// `classification:<level>`).
pub const CLASSIFICATIONS: [&str; 4] = ["public", "internal", "confidential", "restricted"];

/// A registered pipeline.
#[derive(Debug, Clone, Serialize)]
pub struct RegisteredPipeline {
    /// Name (also `[pipeline] name` in its config).
    pub name: String,
    /// Increments with every registration under the name.
    pub version: i64,
    /// The config's SHA-256 (hex).
    pub sha256: String,
    /// Directory its relative paths resolve against.
    pub base_dir: PathBuf,
    /// Tags set at registration.
    pub tags: Vec<String>,
    /// One of [`CLASSIFICATIONS`].
    pub classification: String,
    /// Who registered this version.
    pub registered_by: String,
    /// When (ns since the epoch).
    pub registered_ns: i64,
    /// The config text.
    #[serde(skip)]
    pub config: String,
}

impl RegisteredPipeline {
    /// The tags the policies see: the registered tags plus `classification:<level>`.
    pub fn policy_tags(&self) -> Vec<String> {
        let mut t = self.tags.clone();
        t.push(format!("classification:{}", self.classification));
        t
    }

    /// The path the config is checked and run under (for diagnostics and relative paths).
    pub fn virtual_path(&self) -> PathBuf {
        self.base_dir.join(format!("{}.toml", self.name))
    }
}

/// The registry's SQLite store (`registry.db` in the state directory, mode 0600).
pub struct Registry {
    conn: Connection,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Registry")
    }
}

fn db(e: rusqlite::Error) -> AppError {
    AppError::internal("pipeline registry", e)
}

impl Registry {
    /// Opens (creating) the registry of a state directory.
    pub fn open(state_dir: &Path) -> Result<Self> {
        let path = state_dir.join("registry.db");
        let existed = path.exists();
        let conn = Connection::open(&path).map_err(db)?;
        if !existed {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| AppError::internal("pipeline registry", e))?;
        }
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(db)?;
        conn.execute_batch(SCHEMA).map_err(db)?;
        Ok(Self { conn })
    }

    /// Registers (or re-registers, as the next version) a pipeline.
    #[allow(clippy::too_many_arguments)]
    pub fn register(
        &self,
        name: &str,
        config: &str,
        base_dir: &Path,
        tags: &[String],
        classification: &str,
        by: &str,
        now_ns: i64,
    ) -> Result<RegisteredPipeline> {
        if !CLASSIFICATIONS.contains(&classification) {
            return Err(AppError::Invalid(format!(
                "classification \"{classification}\" is not one of {}",
                CLASSIFICATIONS.join(", ")
            )));
        }
        let sha256 = hex::encode(Sha256::digest(config.as_bytes()));
        let tags_json =
            serde_json::to_string(tags).map_err(|e| AppError::internal("encoding tags", e))?;
        let version: i64 = self
            .conn
            .query_row(
                "SELECT version FROM pipelines WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .optional()
            .map_err(db)?
            .unwrap_or(0)
            + 1;
        self.conn
            .execute(
                "INSERT INTO pipelines (name, version, config, sha256, base_dir, tags, classification, registered_by, registered_ns)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT(name) DO UPDATE SET version = ?2, config = ?3, sha256 = ?4, base_dir = ?5,
                   tags = ?6, classification = ?7, registered_by = ?8, registered_ns = ?9",
                params![
                    name,
                    version,
                    config,
                    sha256,
                    base_dir.display().to_string(),
                    tags_json,
                    classification,
                    by,
                    now_ns
                ],
            )
            .map_err(db)?;
        self.get(name)?
            .ok_or_else(|| AppError::Internal("a registered pipeline vanished".into()))
    }

    /// One pipeline by name.
    pub fn get(&self, name: &str) -> Result<Option<RegisteredPipeline>> {
        self.conn
            .query_row(
                "SELECT name, version, config, sha256, base_dir, tags, classification, registered_by, registered_ns
                 FROM pipelines WHERE name = ?1",
                [name],
                row,
            )
            .optional()
            .map_err(db)
    }

    /// Every pipeline, by name.
    pub fn list(&self) -> Result<Vec<RegisteredPipeline>> {
        let mut st = self
            .conn
            .prepare(
                "SELECT name, version, config, sha256, base_dir, tags, classification, registered_by, registered_ns
                 FROM pipelines ORDER BY name",
            )
            .map_err(db)?;
        let rows = st.query_map([], row).map_err(db)?;
        rows.collect::<std::result::Result<Vec<_>, _>>().map_err(db)
    }
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RegisteredPipeline> {
    let tags: String = r.get(5)?;
    let base: String = r.get(4)?;
    Ok(RegisteredPipeline {
        name: r.get(0)?,
        version: r.get(1)?,
        config: r.get(2)?,
        sha256: r.get(3)?,
        base_dir: PathBuf::from(base),
        tags: serde_json::from_str(&tags).unwrap_or_default(),
        classification: r.get(6)?,
        registered_by: r.get(7)?,
        registered_ns: r.get(8)?,
    })
}
