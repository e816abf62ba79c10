//! Sinks: each writes to a hidden temporary object beside its target; the engine commits all
//! sinks of a run together with [`commit`] (rename, keeping backups until every rename worked)
//! or throws the temporaries away with [`abort`]. A killed run leaves at most a hidden
//! temporary file, never a partial file under the target name.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use custos_config::{Compression, SinkKind, single_byte};
use datafusion::arrow::csv::WriterBuilder as CsvWriterBuilder;
use datafusion::arrow::json::LineDelimitedWriter;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::basic::{Compression as PqCompression, ZstdLevel};
use datafusion::parquet::file::properties::{EnabledStatistics, WriterProperties};
use datafusion::physical_plan::SendableRecordBatchStream;
use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::ConnectorError;
use crate::files::{absolute, location};
use crate::parquet_writer::ParallelWriter;

/// A sink's finished (uncommitted) output.
#[derive(Debug, Clone)]
pub struct SinkOutput {
    /// Sink component name.
    pub name: String,
    /// Final path.
    pub target: PathBuf,
    /// Temporary path holding the finished file until commit.
    pub tmp: PathBuf,
    /// Rows written.
    pub rows: u64,
    /// File size in bytes.
    pub size: u64,
    /// SHA-256 of the file, hex.
    pub sha256: String,
}

/// Hidden temporary path for `target` in run `run_id`.
pub fn temp_path(target: &Path, run_id: &str) -> PathBuf {
    sibling(target, &format!("custos-tmp-{run_id}"))
}

fn backup_path(target: &Path, run_id: &str) -> PathBuf {
    sibling(target, &format!("custos-bak-{run_id}"))
}

fn sibling(target: &Path, suffix: &str) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    target.with_file_name(format!(".{name}.{suffix}"))
}

#[derive(Default)]
struct HashState {
    hasher: Sha256,
    size: u64,
}

/// An `AsyncWrite` that hashes what passes through it.
struct Hashing<W> {
    inner: W,
    state: Arc<Mutex<HashState>>,
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Hashing<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                let mut s = this.state.lock().unwrap_or_else(|p| p.into_inner());
                s.hasher.update(&buf[..n]);
                s.size += n as u64;
                Poll::Ready(Ok(n))
            }
            other => other,
        }
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Size of the buffers handed to a [`SinkFile`]'s writer thread.
const WRITE_BUF: usize = 4 << 20;
/// Buffers queued for the writer thread at most (16 MiB). Large buffers make large direct
/// writes, which matters on disks with a high latency per request.
const WRITE_QUEUE: usize = 4;
/// Bytes written between two requests to start writing the file back to disk.
const WRITE_BACK_EVERY: u64 = 16 << 20;
/// How far behind the end of the file those requests stay: a page under write-back makes
/// the next write to it wait.
const WRITE_LAG: u64 = 4 << 20;

/// Alignment of direct (`O_DIRECT`) writes: addresses, sizes and file offsets.
const DIRECT_ALIGN: usize = 4096;

/// A sink's temporary file, written by a thread of its own from a queue of 4 MiB buffers, so
/// a write that blocks (page reclaim, the journal, a direct write) does not stall the pipeline.
///
/// Where the filesystem allows it (Linux), the file is opened with `O_DIRECT`: each full,
/// page-aligned buffer goes from memory to the disk without the kernel copying it into the
/// page cache first. That copy, into freshly allocated (cold) pages, was ~6% of a protect
/// pipeline's CPU, and the output then sat in the cache for the pre-commit `fsync` to wait on.
/// The last, partial buffer is written through the cache. Elsewhere (or when the filesystem
/// refuses direct writes, like tmpfs before Linux 6.6) the thread writes through the cache
/// and asks the kernel to start writing pages back as the file grows: without that the whole
/// output stayed in the page cache (24 GiB here, so no background write-back started) and
/// the `fsync` waited for all of it at the end, ~0.7 s of idle cores after a 724 MB
/// encrypted output.
struct SinkFile {
    /// `pad` filler bytes, then up to [`WRITE_BUF`] bytes of data starting at a page boundary.
    buf: Vec<u8>,
    pad: usize,
    tx: Option<futures::channel::mpsc::Sender<(Vec<u8>, usize)>>,
    writer: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

/// An empty buffer whose data (after the returned padding) starts at a page boundary and
/// stays there: the capacity holds the padding and a whole [`WRITE_BUF`].
fn aligned_buf() -> (Vec<u8>, usize) {
    let mut b: Vec<u8> = Vec::with_capacity(WRITE_BUF + DIRECT_ALIGN);
    let pad = b.as_ptr().align_offset(DIRECT_ALIGN).min(DIRECT_ALIGN);
    b.resize(pad, 0);
    (b, pad)
}

/// Opens `path` (which must not exist) for writing, then turns `O_DIRECT` on when the
/// filesystem takes it (`fcntl`, which fails without side effects where it does not; an
/// `open` with the flag could create the file and then refuse it); says which.
fn create_file(path: &Path) -> std::io::Result<(std::fs::File, bool)> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    let on = direct(&file, true).is_ok();
    Ok((file, on))
}

/// Whether `e` is a filesystem saying it does not do direct I/O (`EINVAL`, or `EOPNOTSUPP`).
fn refuses_direct(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::InvalidInput | std::io::ErrorKind::Unsupported
    )
}

/// Turns `O_DIRECT` on or off for the rest of the file.
#[cfg(target_os = "linux")]
fn direct(file: &std::fs::File, on: bool) -> std::io::Result<()> {
    use rustix::fs::OFlags;
    let flags = rustix::fs::fcntl_getfl(file)?;
    let flags = if on {
        flags | OFlags::DIRECT
    } else {
        flags - OFlags::DIRECT
    };
    rustix::fs::fcntl_setfl(file, flags).map_err(Into::into)
}

#[cfg(not(target_os = "linux"))]
fn direct(_file: &std::fs::File, on: bool) -> std::io::Result<()> {
    if on {
        Err(std::io::ErrorKind::Unsupported.into())
    } else {
        Ok(())
    }
}

impl SinkFile {
    /// Creates `path`, which must not exist, and its missing parent directories.
    async fn create(path: &Path) -> std::io::Result<Self> {
        let path = path.to_path_buf();
        let (mut file, mut is_direct) = tokio::task::spawn_blocking(move || {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            create_file(&path)
        })
        .await
        .map_err(std::io::Error::other)??;
        let (tx, mut rx) = futures::channel::mpsc::channel::<(Vec<u8>, usize)>(WRITE_QUEUE);
        let writer = tokio::task::spawn_blocking(move || {
            use std::io::Write;
            let (mut written, mut requested) = (0u64, 0u64);
            while let Some((b, pad)) = futures::executor::block_on(rx.next()) {
                let data = &b[pad..];
                if is_direct && data.len() % DIRECT_ALIGN != 0 {
                    // The last buffer: its tail is not a whole page.
                    direct(&file, false)?;
                    is_direct = false;
                }
                match file.write_all(data) {
                    // A filesystem that took the flag but refuses the write.
                    Err(e) if is_direct && refuses_direct(&e) => {
                        direct(&file, false)?;
                        is_direct = false;
                        file.write_all(data)?;
                    }
                    r => r?,
                }
                written += data.len() as u64;
                if !is_direct && written - requested >= WRITE_BACK_EVERY + WRITE_LAG {
                    let to = (written - WRITE_LAG) & !4095;
                    write_back(&file, requested, to)?;
                    requested = to;
                }
            }
            Ok(())
        });
        let (buf, pad) = aligned_buf();
        Ok(Self {
            buf,
            pad,
            tx: Some(tx),
            writer: Some(writer),
        })
    }

    /// The writer thread's result, once it has ended.
    fn poll_writer(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let Some(h) = self.writer.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let done = std::task::ready!(Pin::new(h).poll(cx));
        self.writer = None;
        Poll::Ready(done.map_err(std::io::Error::other).and_then(|r| r))
    }

    /// Hands the buffer to the writer thread.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if let Some(tx) = self.tx.as_mut()
            && std::task::ready!(tx.poll_ready(cx)).is_ok()
        {
            let (next, pad) = aligned_buf();
            let b = std::mem::replace(&mut self.buf, next);
            let sent = tx.start_send((b, std::mem::replace(&mut self.pad, pad)));
            if sent.is_ok() {
                return Poll::Ready(Ok(()));
            }
        }
        // The writer thread stopped: its error says why.
        self.tx = None;
        std::task::ready!(self.poll_writer(cx))?;
        Poll::Ready(Err(std::io::Error::other(
            "the file's writer thread stopped",
        )))
    }

    /// Bytes of data in the buffer.
    fn held(&self) -> usize {
        self.buf.len() - self.pad
    }
}

/// Starts writing bytes `from..to` of `file` to disk without waiting for it.
#[cfg(target_os = "linux")]
fn write_back(file: &std::fs::File, from: u64, to: u64) -> std::io::Result<()> {
    let len = std::num::NonZeroU64::new(to - from);
    rustix::fs::fadvise(file, from, len, rustix::fs::Advice::DontNeed).map_err(Into::into)
}

#[cfg(not(target_os = "linux"))]
fn write_back(_file: &std::fs::File, _from: u64, _to: u64) -> std::io::Result<()> {
    Ok(())
}

impl AsyncWrite for SinkFile {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        if this.held() >= WRITE_BUF {
            std::task::ready!(this.poll_send(cx))?;
        }
        let n = buf.len().min(WRITE_BUF - this.held());
        this.buf.extend_from_slice(&buf[..n]);
        Poll::Ready(Ok(n))
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.held() == 0 {
            return Poll::Ready(Ok(()));
        }
        self.poll_send(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.held() > 0 {
            std::task::ready!(self.poll_send(cx))?;
        }
        self.tx = None; // the writer thread ends after the queued buffers
        self.poll_writer(cx)
    }
}

/// Indices of the columns a sink writes (custos' own columns are dropped).
fn visible(schema: &datafusion::arrow::datatypes::Schema) -> Vec<usize> {
    schema
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| !custos_core::is_reserved_column(f.name()))
        .map(|(i, _)| i)
        .collect()
}

fn df_err(ctx: String) -> impl FnOnce(datafusion::error::DataFusionError) -> ConnectorError {
    move |source| ConnectorError::DataFusion {
        context: ctx,
        source,
    }
}

/// Rows of the first batch looked at to decide dictionary encoding per column.
const DICTIONARY_SAMPLE: usize = 4096;

/// Columns of `batch` whose values are mostly distinct (more than half of the first
/// [`DICTIONARY_SAMPLE`] rows): names, e-mails, free text, ciphertexts, tokens, ids, amounts.
/// Dictionary encoding them only costs time: the writer hashes every value until the
/// dictionary page overflows and then falls back to plain encoding anyway (measured: a sixth
/// of a plain CSV -> Parquet copy's CPU went to dictionary hashing).
fn mostly_distinct(batch: &RecordBatch) -> Vec<String> {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::DataType;
    let n = batch.num_rows().min(DICTIONARY_SAMPLE);
    if n < 64 {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        let distinct = |values: &mut dyn Iterator<Item = Option<&[u8]>>| {
            let mut seen = std::collections::HashSet::with_capacity(n);
            let mut present = 0usize;
            for v in values.take(n).flatten() {
                present += 1;
                seen.insert(v);
            }
            present >= 64 && seen.len() * 2 > present
        };
        let high = match column.data_type() {
            DataType::Utf8 => distinct(
                &mut column
                    .as_string::<i32>()
                    .iter()
                    .map(|v| v.map(str::as_bytes)),
            ),
            DataType::LargeUtf8 => distinct(
                &mut column
                    .as_string::<i64>()
                    .iter()
                    .map(|v| v.map(str::as_bytes)),
            ),
            DataType::Utf8View => {
                distinct(&mut column.as_string_view().iter().map(|v| v.map(str::as_bytes)))
            }
            DataType::Binary => distinct(&mut column.as_binary::<i32>().iter()),
            DataType::LargeBinary => distinct(&mut column.as_binary::<i64>().iter()),
            DataType::BinaryView => distinct(&mut column.as_binary_view().iter()),
            // Fixed-width values (ids, amounts, timestamps): compared by their bytes.
            dt if dt.is_primitive() => {
                let data = column.to_data();
                let width = dt.primitive_width().unwrap_or(0);
                let values = data.buffers().first().map(|b| b.as_slice()).unwrap_or(&[]);
                let start = data.offset() * width;
                distinct(&mut (0..column.len()).map(|i| {
                    (width > 0 && column.is_valid(i))
                        .then(|| values.get(start + i * width..start + (i + 1) * width))
                        .flatten()
                }))
            }
            _ => false,
        };
        if high {
            out.push(field.name().clone());
        }
    }
    out
}

/// Batches in flight between the producing pipeline and a sink's encoder.
const SINK_QUEUE: usize = 4;

/// Runs the upstream pipeline (reading, parsing, protecting) in its own task and hands its
/// batches over a bounded queue, so that encoding and compressing the output proceeds on
/// another core at the same time. The order of batches is kept; dropping the returned stream
/// aborts the producer.
pub(crate) fn decoupled(mut input: SendableRecordBatchStream) -> SendableRecordBatchStream {
    let mut builder = datafusion::physical_plan::stream::RecordBatchReceiverStreamBuilder::new(
        input.schema(),
        SINK_QUEUE,
    );
    let tx = builder.tx();
    builder.spawn(async move {
        while let Some(batch) = input.next().await {
            if tx.send(batch).await.is_err() {
                // The sink stopped reading (failed or cancelled).
                break;
            }
        }
        Ok(())
    });
    builder.build()
}

/// Writes the stream to the sink's temporary file. `rows` is updated as batches are written.
pub async fn write(
    name: &str,
    kind: &SinkKind,
    target: &Path,
    run_id: &str,
    store: &Arc<dyn ObjectStore>,
    stream: SendableRecordBatchStream,
    rows: Arc<AtomicU64>,
) -> Result<SinkOutput, ConnectorError> {
    if let SinkKind::Postgres(_) = kind {
        return Err(ConnectorError::BadPath {
            path: name.to_string(),
            reason: "a postgres sink writes no file; it is written by postgres::sink".into(),
        });
    }
    let target = absolute(target)?;
    let tmp = temp_path(&target, run_id);
    let loc = location(&tmp)?;
    let state = Arc::new(Mutex::new(HashState::default()));
    let file = SinkFile::create(&tmp)
        .await
        .map_err(|source| ConnectorError::Io {
            context: format!("sink \"{name}\": creating {}", tmp.display()),
            source,
        })?;
    let out = Hashing {
        inner: file,
        state: state.clone(),
    };
    let cols = visible(&stream.schema());
    let mut stream = decoupled(stream);
    let ctx = format!("sink \"{name}\": writing {}", tmp.display());
    let result: Result<(), ConnectorError> = async {
        match kind {
            SinkKind::Parquet(p) => {
                let compression =
                    match Compression::parse(&p.compression).unwrap_or(Compression::Zstd(1)) {
                        Compression::None => PqCompression::UNCOMPRESSED,
                        Compression::Snappy => PqCompression::SNAPPY,
                        Compression::Lz4 => PqCompression::LZ4_RAW,
                        Compression::Gzip => PqCompression::GZIP(Default::default()),
                        Compression::Zstd(l) => {
                            PqCompression::ZSTD(ZstdLevel::try_new(l).unwrap_or_default())
                        }
                    };
                let schema = Arc::new(
                    stream
                        .schema()
                        .project(&cols)
                        .map_err(|e| df_err(ctx.clone())(e.into()))?,
                );
                let mut props = WriterProperties::builder()
                    .set_compression(compression)
                    .set_max_row_group_row_count(Some(p.row_group_size))
                    .set_created_by(format!("custos {}", env!("CARGO_PKG_VERSION")));
                // Ciphertexts and tokens are incompressible: compressing them costs time
                // (zstd: ~0.8 s per 1M cells) and saves nothing. Their min/max statistics
                // are random values that prune no row group, and computing them compares
                // every value twice.
                for f in schema.fields() {
                    if custos_core::incompressible(f.metadata()) {
                        let path =
                            datafusion::parquet::schema::types::ColumnPath::from(f.name().as_str());
                        props = props
                            .set_column_compression(path.clone(), PqCompression::UNCOMPRESSED)
                            .set_column_statistics_enabled(path, EnabledStatistics::None);
                    }
                }
                // Decide dictionary encoding per column from the first batch, which is then
                // written like every other (errors surface in the loop below).
                let first = stream.next().await;
                if let Some(Ok(b)) = &first
                    && let Ok(b) = b.project(&cols)
                {
                    for name in mostly_distinct(&b) {
                        props = props.set_column_dictionary_enabled(
                            datafusion::parquet::schema::types::ColumnPath::from(name.as_str()),
                            false,
                        );
                    }
                }
                let mut stream = futures::stream::iter(first).chain(stream);
                let props = props.build();
                let pq = |e| {
                    df_err(ctx.clone())(datafusion::error::DataFusionError::ParquetError(Box::new(
                        e,
                    )))
                };
                // Column groups encoded on every core: a PostgreSQL unload of 1M rows went
                // from 4.2-5.2 s to 3.5-4.5 s here (the server leaves a core partly idle).
                let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
                let mut w = ParallelWriter::try_new(out, schema, props, threads).map_err(pq)?;
                while let Some(batch) = stream.next().await {
                    let batch = batch
                        .map_err(df_err(ctx.clone()))?
                        .project(&cols)
                        .map_err(|e| df_err(ctx.clone())(e.into()))?;
                    w.write(&batch).await.map_err(pq)?;
                    rows.fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
                }
                w.finish().await.map_err(pq)?;
            }
            SinkKind::Csv(c) => {
                let mut out = out;
                let mut first = true;
                let delimiter = single_byte(&c.delimiter).unwrap_or(b',');
                let mut buf = Vec::with_capacity(1 << 20);
                let write_batch = |batch: &RecordBatch,
                                   header: bool,
                                   buf: &mut Vec<u8>|
                 -> Result<(), ConnectorError> {
                    let mut w = CsvWriterBuilder::new()
                        .with_header(header && c.header)
                        .with_delimiter(delimiter)
                        .with_null(c.null_value.clone())
                        .build(buf);
                    w.write(batch).map_err(|e| df_err(ctx.clone())(e.into()))
                };
                while let Some(batch) = stream.next().await {
                    let batch = batch
                        .map_err(df_err(ctx.clone()))?
                        .project(&cols)
                        .map_err(|e| df_err(ctx.clone())(e.into()))?;
                    buf.clear();
                    write_batch(&batch, first, &mut buf)?;
                    first = false;
                    out.write_all(&buf)
                        .await
                        .map_err(|source| ConnectorError::Io {
                            context: ctx.clone(),
                            source,
                        })?;
                    rows.fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
                }
                if first && c.header {
                    // No rows: still write the header so the file describes its columns.
                    let schema = Arc::new(
                        stream
                            .schema()
                            .project(&cols)
                            .map_err(|e| df_err(ctx.clone())(e.into()))?,
                    );
                    buf.clear();
                    write_batch(&RecordBatch::new_empty(schema), true, &mut buf)?;
                    out.write_all(&buf)
                        .await
                        .map_err(|source| ConnectorError::Io {
                            context: ctx.clone(),
                            source,
                        })?;
                }
                out.shutdown().await.map_err(|source| ConnectorError::Io {
                    context: ctx.clone(),
                    source,
                })?;
            }
            SinkKind::Jsonl(_) => {
                let mut out = out;
                while let Some(batch) = stream.next().await {
                    let batch = batch
                        .map_err(df_err(ctx.clone()))?
                        .project(&cols)
                        .map_err(|e| df_err(ctx.clone())(e.into()))?;
                    let mut w = LineDelimitedWriter::new(Vec::with_capacity(1 << 20));
                    w.write(&batch).map_err(|e| df_err(ctx.clone())(e.into()))?;
                    w.finish().map_err(|e| df_err(ctx.clone())(e.into()))?;
                    out.write_all(&w.into_inner())
                        .await
                        .map_err(|source| ConnectorError::Io {
                            context: ctx.clone(),
                            source,
                        })?;
                    rows.fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
                }
                out.shutdown().await.map_err(|source| ConnectorError::Io {
                    context: ctx.clone(),
                    source,
                })?;
            }
            SinkKind::Postgres(_) => {}
        }
        Ok(())
    }
    .await;
    // The bytes reach the disk before the file can be committed: a rename is only durable
    // after the data it points at, or a crash just after the commit could leave an empty
    // file under the target name.
    let result = match result {
        Ok(()) => sync_file(tmp.clone())
            .await
            .map_err(|source| ConnectorError::Io {
                context: format!("sink \"{name}\": syncing {}", tmp.display()),
                source,
            }),
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        let _ = store.delete(&loc).await;
        return Err(e);
    }
    let s = state.lock().unwrap_or_else(|p| p.into_inner());
    Ok(SinkOutput {
        name: name.to_string(),
        target,
        tmp,
        rows: rows.load(Ordering::Relaxed),
        size: s.size,
        sha256: hex::encode(s.hasher.clone().finalize()),
    })
}

/// Files moved onto their targets whose previous versions are still kept as backups, until
/// [`Committed::finish`] deletes them or [`Committed::rollback`] puts them back. This lets the
/// engine commit database sinks after the files and undo the files should that fail.
#[must_use = "finish or roll back the commit"]
pub struct Committed {
    store: Arc<dyn ObjectStore>,
    done: Vec<(ObjectPath, Option<ObjectPath>)>,
}

impl Committed {
    /// Deletes the backups of the replaced files.
    pub async fn finish(self) {
        for (_, backup) in self.done {
            if let Some(b) = backup {
                let _ = self.store.delete(&b).await;
            }
        }
    }

    /// Restores the previous files (or removes new ones that had none).
    pub async fn rollback(self) {
        for (target, backup) in self.done.into_iter().rev() {
            match backup {
                Some(b) => {
                    let _ = self.store.rename(&b, &target).await;
                }
                None => {
                    let _ = self.store.delete(&target).await;
                }
            }
        }
    }
}

/// Moves every temporary file onto its target, all or none: existing targets are first moved
/// to backups, and if any rename fails the earlier ones are rolled back.
pub async fn commit(
    store: &Arc<dyn ObjectStore>,
    outputs: &[SinkOutput],
    run_id: &str,
) -> Result<Committed, ConnectorError> {
    let loc = |p: &Path| location(p);
    let mut committed = Committed {
        store: store.clone(),
        done: Vec::new(),
    };
    let mut failure = None;
    for o in outputs {
        let target = loc(&o.target)?;
        let tmp = loc(&o.tmp)?;
        let backup = if o.target.exists() {
            let b = loc(&backup_path(&o.target, run_id))?;
            if let Err(source) = store.rename(&target, &b).await {
                failure = Some(ConnectorError::Store {
                    context: format!(
                        "sink \"{}\": moving previous {} aside",
                        o.name,
                        o.target.display()
                    ),
                    source,
                });
                break;
            }
            Some(b)
        } else {
            None
        };
        if let Err(source) = store.rename(&tmp, &target).await {
            if let Some(b) = &backup {
                let _ = store.rename(b, &target).await;
            }
            failure = Some(ConnectorError::Store {
                context: format!("sink \"{}\": committing {}", o.name, o.target.display()),
                source,
            });
            break;
        }
        committed.done.push((target, backup));
    }
    if failure.is_none() {
        // The renames themselves are durable once their directories are synced.
        let mut dirs: Vec<PathBuf> = outputs
            .iter()
            .filter_map(|o| o.target.parent().map(Path::to_path_buf))
            .collect();
        dirs.sort();
        dirs.dedup();
        for d in dirs {
            if let Err(source) = sync_file(d.clone()).await {
                failure = Some(ConnectorError::Io {
                    context: format!("syncing directory {}", d.display()),
                    source,
                });
                break;
            }
        }
    }
    if let Some(e) = failure {
        committed.rollback().await;
        abort(store, outputs).await;
        return Err(e);
    }
    Ok(committed)
}

/// `fsync` of a file or directory, off the async workers.
async fn sync_file(path: PathBuf) -> std::io::Result<()> {
    tokio::task::spawn_blocking(move || std::fs::File::open(&path)?.sync_all())
        .await
        .map_err(std::io::Error::other)?
}

/// Removes the temporary files of an abandoned run.
pub async fn abort(store: &Arc<dyn ObjectStore>, outputs: &[SinkOutput]) {
    for o in outputs {
        if let Ok(l) = location(&o.tmp) {
            let _ = store.delete(&l).await;
        }
    }
}

/// Removes temporaries and backups left beside `target` by runs that are no longer running
/// (killed or crashed); files of the runs listed in `live` are kept.
pub fn remove_stale(target: &Path, live: &[String]) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let (Some(dir), Some(name)) = (target.parent(), target.file_name()) else {
        return removed;
    };
    let prefix = format!(".{}.custos-", name.to_string_lossy());
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return removed;
    };
    for e in entries.flatten() {
        let n = e.file_name().to_string_lossy().to_string();
        let Some(rest) = n.strip_prefix(&prefix) else {
            continue;
        };
        let Some(run) = rest
            .strip_prefix("tmp-")
            .or_else(|| rest.strip_prefix("bak-"))
        else {
            continue;
        };
        if live.iter().any(|id| id == run) {
            continue;
        }
        if std::fs::remove_file(e.path()).is_ok() {
            removed.push(e.path());
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sink_file_writes_everything_in_order_and_refuses_an_existing_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new/dirs/out.bin");
        // Past two write-back requests, in pieces that straddle the buffers.
        let want: Vec<u8> = (0..(45u32 << 20) + 12345)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let mut f = SinkFile::create(&path).await.unwrap();
        for piece in want.chunks(777_777) {
            f.write_all(piece).await.unwrap();
        }
        f.flush().await.unwrap();
        f.write_all(b"tail").await.unwrap();
        f.shutdown().await.unwrap();
        let got = std::fs::read(&path).unwrap();
        assert_eq!(got.len(), want.len() + 4);
        assert!(got[..want.len()] == want[..], "contents differ");
        assert_eq!(&got[want.len()..], b"tail");

        let again = SinkFile::create(&path).await;
        assert_eq!(
            again.err().map(|e| e.kind()),
            Some(std::io::ErrorKind::AlreadyExists)
        );
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            want.len() as u64 + 4
        );

        // Sizes that end on a buffer boundary (every write direct), inside the first page,
        // and nothing at all.
        for len in [2 * WRITE_BUF, WRITE_BUF + DIRECT_ALIGN, 5, 0] {
            let path = dir.path().join(format!("{len}.bin"));
            let mut f = SinkFile::create(&path).await.unwrap();
            f.write_all(&want[..len]).await.unwrap();
            f.shutdown().await.unwrap();
            assert!(std::fs::read(&path).unwrap() == want[..len], "{len} bytes");
        }

        // tmpfs: direct I/O since Linux 6.6; older kernels refuse to turn it on, and the
        // file goes through the page cache instead.
        let shm = std::path::Path::new("/dev/shm");
        if shm.is_dir() {
            let dir = tempfile::tempdir_in(shm).unwrap();
            let path = dir.path().join("out.bin");
            let mut f = SinkFile::create(&path).await.unwrap();
            f.write_all(&want[..WRITE_BUF + 3]).await.unwrap();
            f.shutdown().await.unwrap();
            assert!(std::fs::read(&path).unwrap() == want[..WRITE_BUF + 3]);
        }
    }
}
