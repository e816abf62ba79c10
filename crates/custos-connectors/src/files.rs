//! Resolving a configured path (file, directory or glob) into the files a source reads,
//! through the `object_store` layer so that object-store URLs can plug in later.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;

use crate::ConnectorError;

/// One input file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputFile {
    /// Absolute local path.
    pub path: PathBuf,
    /// Location in the store.
    pub location: ObjectPath,
    /// Size in bytes when listed.
    pub size: u64,
}

/// The store every local path goes through.
pub fn local_store() -> Arc<dyn ObjectStore> {
    Arc::new(LocalFileSystem::new())
}

/// Absolute form of a path without resolving symlinks.
pub fn absolute(path: &Path) -> Result<PathBuf, ConnectorError> {
    std::path::absolute(path).map_err(|source| ConnectorError::Io {
        context: format!("{}: cannot make path absolute", path.display()),
        source,
    })
}

/// Object-store location of a local path.
pub fn location(path: &Path) -> Result<ObjectPath, ConnectorError> {
    let abs = absolute(path)?;
    ObjectPath::from_absolute_path(&abs).map_err(|e| ConnectorError::BadPath {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Lists the files a source path names, sorted by path. Hidden files (leading `.`) are
/// skipped when listing directories or globs, so temporary files never become inputs.
pub async fn resolve(
    store: &Arc<dyn ObjectStore>,
    configured: &str,
    resolved: &Path,
) -> Result<Vec<InputFile>, ConnectorError> {
    if let Some((scheme, _)) = configured.split_once("://") {
        return Err(ConnectorError::BadPath {
            path: configured.to_string(),
            reason: format!(
                "URL scheme \"{scheme}\" is not available in this build; custos reads local paths"
            ),
        });
    }
    let text = resolved.to_string_lossy().to_string();
    let (root, pattern) = if has_glob(&text) {
        let mut root = PathBuf::new();
        for comp in resolved.components() {
            if has_glob(&comp.as_os_str().to_string_lossy()) {
                break;
            }
            root.push(comp);
        }
        let pattern = glob::Pattern::new(&absolute(resolved)?.to_string_lossy()).map_err(|e| {
            ConnectorError::BadPath {
                path: configured.to_string(),
                reason: format!("invalid glob: {e}"),
            }
        })?;
        (root, Some(pattern))
    } else {
        let meta = std::fs::metadata(resolved).map_err(|source| ConnectorError::Io {
            context: format!("{}", resolved.display()),
            source,
        })?;
        if meta.is_file() {
            return Ok(vec![InputFile {
                path: absolute(resolved)?,
                location: location(resolved)?,
                size: meta.len(),
            }]);
        }
        (resolved.to_path_buf(), None)
    };
    let root_abs = absolute(&root)?;
    if !root_abs.is_dir() {
        return Err(ConnectorError::NoFiles {
            path: configured.to_string(),
        });
    }
    let prefix = location(&root_abs)?;
    let metas: Vec<_> = store
        .list(Some(&prefix))
        .try_collect()
        .await
        .map_err(|source| ConnectorError::Store {
            context: format!("listing {}", root_abs.display()),
            source,
        })?;
    let mut files = Vec::new();
    for m in metas {
        let path = PathBuf::from("/").join(m.location.as_ref());
        let hidden = path
            .strip_prefix(&root_abs)
            .map(|rel| {
                rel.components()
                    .any(|c| c.as_os_str().to_string_lossy().starts_with('.'))
            })
            .unwrap_or(false);
        if hidden {
            continue;
        }
        if let Some(p) = &pattern
            && !p.matches_path(&path)
        {
            continue;
        }
        files.push(InputFile {
            path,
            location: m.location,
            size: m.size,
        });
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    if files.is_empty() {
        return Err(ConnectorError::NoFiles {
            path: configured.to_string(),
        });
    }
    Ok(files)
}
