//! Finding personal data: `read_dataset` on what is scanned, then a seeded sample of every
//! column classified by the PII detectors ([`custos_engine::scan`]).
//!
//! The CLI in local mode scans a data file or a pipeline file of its own; a server scans a
//! registered pipeline's sources, or one data file under its data roots.

use std::path::{Path, PathBuf};

use custos_config::Loaded;
use custos_engine::scan::SourceScan;
use custos_policy::{Action, Resource};
use serde::Deserialize;

use crate::auth::Principal;
use crate::error::{AppError, Result};
use crate::project::{Owner, Project};

/// Rows sampled per source when not asked otherwise.
pub const DEFAULT_SAMPLE: usize = 10_000;

/// Most rows a scan may sample per source (each kept row is held in memory).
pub const MAX_SAMPLE: usize = 1_000_000;

/// What to scan, and how much of it.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScanRequest {
    /// A registered pipeline: its sources are scanned.
    #[serde(default)]
    #[schemars(extend("pattern" = "^[A-Za-z0-9._-]{1,128}$"))]
    pub pipeline: Option<String>,
    /// A `.csv`, `.jsonl` or `.parquet` file under a data root (instead of `pipeline`).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Rows sampled per source (default 10 000, at most 1 000 000).
    #[serde(default)]
    #[schemars(range(min = 1, max = 1_000_000))]
    pub sample: Option<usize>,
    /// Sampling seed (default 0): the same data and seed give the same report.
    #[serde(default)]
    pub seed: Option<u64>,
}

/// A one-source pipeline reading `file`, so that scanning a file reuses the source readers.
pub fn file_pipeline(file: &Path) -> Result<Loaded> {
    let abs = std::path::absolute(file)
        .map_err(|e| AppError::Invalid(format!("{}: {e}", file.display())))?;
    let ext = file
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let kind = match ext.as_str() {
        "csv" | "tsv" | "txt" => "csv",
        "jsonl" | "ndjson" | "json" => "jsonl",
        "parquet" | "pq" => "parquet",
        _ => {
            return Err(AppError::Invalid(format!(
                "cannot tell the format of {} from its extension; name a .csv, .jsonl or .parquet file, or a pipeline .toml",
                file.display()
            )));
        }
    };
    let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("input");
    let mut name: String = stem
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        name.insert_str(0, "src_");
    }
    let path = abs.display().to_string();
    let toml = format!(
        "[pipeline]\nname = \"scan\"\n[sources.{name}]\ntype = \"{kind}\"\npath = {path:?}\n[sinks.unused]\ntype = \"csv\"\ninputs = [\"{name}\"]\npath = \"unused.csv\"\n"
    );
    Ok(custos_config::load_str(Path::new("scan.toml"), &toml))
}

/// Scans the sources of `loaded`.
async fn scan_sources(loaded: &Loaded, sample: usize, seed: u64) -> Result<Vec<SourceScan>> {
    if loaded.diagnostics.has_errors() {
        return Err(AppError::Invalid(loaded.diagnostics.to_string()));
    }
    custos_engine::scan::scan(&loaded.config, sample.clamp(1, MAX_SAMPLE), seed)
        .await
        // What was named could not be read as data (missing, malformed, unreachable): the
        // request's problem, not the server's.
        .map_err(|e| {
            AppError::Invalid(format!("scan failed: {}", custos_engine::redact_values(&e)))
        })
}

impl Project {
    /// Scans a data file, or the sources of a pipeline file (`.toml`), of the caller's own
    /// (`read_dataset` on `dataset:TARGET`; CLI local mode).
    pub async fn scan_local(
        &self,
        who: &Principal,
        target: &Path,
        sample: usize,
        seed: u64,
    ) -> Result<Vec<SourceScan>> {
        if self.owner == Owner::Server {
            return Err(AppError::Invalid(
                "a server scans registered pipelines and files under its data roots".into(),
            ));
        }
        let resource = Resource::Dataset {
            name: target.display().to_string(),
        };
        self.authorized(who, Action::ReadDataset, &resource, async {
            let loaded = if target.extension().and_then(|e| e.to_str()) == Some("toml") {
                custos_config::load(target).map_err(|e| AppError::Invalid(e.to_string()))?
            } else {
                file_pipeline(target)?
            };
            scan_sources(&loaded, sample, seed).await
        })
        .await
    }

    /// Scans a registered pipeline's sources (`read_dataset` on `dataset:PIPELINE`) or a
    /// data file under the server's data roots (`read_dataset` on `dataset:PATH`).
    pub async fn scan(&self, who: &Principal, req: &ScanRequest) -> Result<Vec<SourceScan>> {
        let sample = req.sample.unwrap_or(DEFAULT_SAMPLE);
        if sample == 0 || sample > MAX_SAMPLE {
            return Err(AppError::Invalid(format!(
                "sample: {sample} is not between 1 and {MAX_SAMPLE}"
            )));
        }
        let seed = req.seed.unwrap_or(0);
        match (&req.pipeline, &req.path) {
            (Some(name), None) => {
                let pipeline = self.pipeline(who, name)?;
                let resource = Resource::Dataset { name: name.clone() };
                self.authorized(who, Action::ReadDataset, &resource, async {
                    let loaded = self.load_registered(&pipeline)?;
                    scan_sources(&loaded, sample, seed).await
                })
                .await
            }
            (None, Some(path)) => {
                let resource = Resource::Dataset {
                    name: path.display().to_string(),
                };
                self.authorized(who, Action::ReadDataset, &resource, async {
                    // Relative paths are under the first data root, as registered pipelines'.
                    let path = match self.confinement.roots().first() {
                        Some(root) if path.is_relative() => root.join(path),
                        _ => path.clone(),
                    };
                    if self.owner == Owner::Server && !self.confinement.path_allowed(&path) {
                        return Err(AppError::Denied(format!(
                            "path: {} is outside the server's data roots",
                            path.display()
                        )));
                    }
                    let loaded = file_pipeline(&path)?;
                    scan_sources(&loaded, sample, seed).await
                })
                .await
            }
            _ => Err(AppError::Invalid(
                "name exactly one of pipeline (a registered pipeline) or path (a data file)".into(),
            )),
        }
    }
}
