//! Resolving a configured path (file, directory or glob) into the files a source reads,
//! through the `object_store` layer so that object-store URLs can plug in later.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use futures::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{GetResultPayload, ObjectStore, ObjectStoreExt};

use crate::ConnectorError;

/// Bytes read from a local file at a time. 4 MiB was no faster, and its buffers (above
/// glibc's mmap threshold, which then rises to match) raised a PostgreSQL load's peak RSS from
/// ~160 to ~200 MiB.
const READ_CHUNK: usize = 1 << 20;

/// The contents of a stored object as a stream of chunks. A local file is read in 1 MiB
/// chunks by one blocking thread, up to 4 chunks ahead of the reader: `object_store` reads
/// local files 8 KiB at a time with a blocking-pool round trip each, which left a quarter of
/// both cores idle while a CSV source waited on 48k reads per 400 MB.
pub async fn read_chunks(
    store: &Arc<dyn ObjectStore>,
    location: &ObjectPath,
) -> Result<BoxStream<'static, object_store::Result<Bytes>>, object_store::Error> {
    use futures::StreamExt;
    use std::io::{Read, Seek, SeekFrom};
    let got = store.get(location).await?;
    let range = got.range.clone();
    match got.payload {
        GetResultPayload::File(mut file, path) => {
            let (tx, rx) = tokio::sync::mpsc::channel::<object_store::Result<Bytes>>(4);
            tokio::task::spawn_blocking(move || {
                let fail = |e: std::io::Error| object_store::Error::Generic {
                    store: "LocalFileSystem",
                    source: format!("reading {}: {e}", path.display()).into(),
                };
                if let Err(e) = file.seek(SeekFrom::Start(range.start)) {
                    let _ = tx.blocking_send(Err(fail(e)));
                    return;
                }
                let mut left = range.end.saturating_sub(range.start);
                while left > 0 {
                    let want = left.min(READ_CHUNK as u64);
                    let mut buf = Vec::with_capacity(want as usize);
                    match (&mut file).take(want).read_to_end(&mut buf) {
                        Ok(0) => {
                            let short = std::io::Error::new(
                                std::io::ErrorKind::UnexpectedEof,
                                "the file shrank while it was read",
                            );
                            let _ = tx.blocking_send(Err(fail(short)));
                            return;
                        }
                        Ok(n) => {
                            left -= n as u64;
                            if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                                return; // the reader went away
                            }
                        }
                        Err(e) => {
                            let _ = tx.blocking_send(Err(fail(e)));
                            return;
                        }
                    }
                }
            });
            Ok(futures::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|item| (item, rx))
            })
            .boxed())
        }
        GetResultPayload::Stream(s) => Ok(s),
    }
}

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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use futures::StreamExt;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn local_files_are_read_whole_in_large_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.bin");
        let data: Vec<u8> = (0..(2 * READ_CHUNK + 12345))
            .map(|i| (i % 251) as u8)
            .collect();
        std::fs::write(&path, &data).unwrap();
        let store = local_store();
        let location = ObjectPath::from_absolute_path(&path).unwrap();
        let chunks: Vec<Bytes> = read_chunks(&store, &location)
            .await
            .unwrap()
            .map(|c| c.unwrap())
            .collect()
            .await;
        assert_eq!(
            chunks.iter().map(Bytes::len).collect::<Vec<_>>(),
            [READ_CHUNK, READ_CHUNK, 12345]
        );
        assert_eq!(chunks.concat(), data);
        // An empty file is an empty stream; a missing one an error.
        std::fs::write(&path, b"").unwrap();
        assert_eq!(
            read_chunks(&store, &location).await.unwrap().count().await,
            0
        );
        let gone = ObjectPath::from_absolute_path(dir.path().join("gone")).unwrap();
        assert!(read_chunks(&store, &gone).await.is_err());
    }
}
