//! A Parquet writer that encodes columns on several cores at once.
//!
//! `AsyncArrowWriter` encodes and compresses every column on the one task that calls it, which
//! made Parquet encoding (zstd above all) the longest stage of a copy or a PostgreSQL unload
//! while the other core idled. Here the columns are split into groups, one per core, each
//! encoded by its own blocking task fed batches over a bounded channel; at every row-group
//! boundary the groups close their column chunks and the chunks are spliced into the file in
//! schema order. Memory stays what `ArrowWriter` holds: one row group of encoded pages, plus
//! a few batches in flight.

use std::io::Write;
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::arrow_writer::{
    ArrowColumnChunk, ArrowColumnWriter, ArrowRowGroupWriterFactory, compute_leaves,
};
use datafusion::parquet::errors::{ParquetError, Result};
use datafusion::parquet::file::properties::WriterProperties;
use datafusion::parquet::file::writer::SerializedFileWriter;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

/// Input bytes (Arrow memory) after which a row group is closed whatever its row count. With
/// one closed row group still being spliced while the next fills, the writer holds about twice
/// this in encoded pages.
const MAX_ROW_GROUP_BYTES: usize = 64 << 20;

/// Bytes written by the file writer, drained to the async output after each row group.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Shared {
    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Hands a drained buffer back so the next row group is written into its capacity
    /// instead of regrowing (and copying) a fresh one.
    fn give_back(&self, mut bytes: Vec<u8>) {
        let mut held = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if held.is_empty() {
            bytes.clear();
            *held = bytes;
        }
    }
}

enum Msg {
    /// The writers of the group's leaves for the first row group.
    Start(Vec<ArrowColumnWriter>),
    /// Encode these rows.
    Batch(Arc<RecordBatch>),
    /// Close the row group's chunks and continue with these writers (none after the last).
    Close(
        Vec<ArrowColumnWriter>,
        oneshot::Sender<Result<Vec<ArrowColumnChunk>>>,
    ),
}

/// One group of columns (by index into the schema) and the task encoding them.
struct Group {
    tx: mpsc::Sender<Msg>,
    /// Leaf indices of the group, in order.
    leaves: Vec<usize>,
}

/// Parquet leaves (column chunks) under an Arrow type.
fn leaves(dt: &DataType) -> usize {
    match dt {
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::FixedSizeList(f, _)
        | DataType::ListView(f)
        | DataType::LargeListView(f)
        | DataType::Map(f, _) => leaves(f.data_type()),
        DataType::Struct(fs) => fs.iter().map(|f| leaves(f.data_type())).sum(),
        DataType::Dictionary(_, v) => leaves(v),
        DataType::RunEndEncoded(_, v) => leaves(v.data_type()),
        _ => 1,
    }
}

/// Deals `n` fields (weighted; missing weights count 1) to at most `groups` groups: heaviest
/// first, each to the least loaded group. Fields stay in schema order within a group; empty
/// groups are left out.
fn deal(weights: &[usize], n: usize, groups: usize) -> Vec<Vec<usize>> {
    let weight = |f: usize| weights.get(f).copied().unwrap_or(1).max(1);
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&f| std::cmp::Reverse(weight(f)));
    let groups = groups.max(1);
    let mut load = vec![0usize; groups];
    let mut dealt: Vec<Vec<usize>> = vec![Vec::new(); groups];
    for f in order {
        let g = (0..groups).min_by_key(|&g| load[g]).unwrap_or(0);
        load[g] += weight(f);
        dealt[g].push(f);
    }
    dealt.retain(|g| !g.is_empty());
    for g in &mut dealt {
        g.sort_unstable();
    }
    dealt
}

fn stopped() -> ParquetError {
    ParquetError::General("a column encoder stopped".into())
}

/// The encoding task of one group: writes its fields' leaves of every batch; at a close,
/// returns the finished chunks and carries on with the next writers.
fn encode(mut rx: mpsc::Receiver<Msg>, schema: SchemaRef, fields: Vec<usize>) {
    let mut writers: Vec<ArrowColumnWriter> = Vec::new();
    let mut failed: Option<ParquetError> = None;
    while let Some(msg) = rx.blocking_recv() {
        match msg {
            Msg::Start(w) => writers = w,
            Msg::Batch(batch) => {
                if failed.is_some() {
                    continue;
                }
                let mut w = writers.iter_mut();
                'fields: for &i in &fields {
                    let leaves = match compute_leaves(schema.field(i), batch.column(i)) {
                        Ok(l) => l,
                        Err(e) => {
                            failed = Some(e);
                            break 'fields;
                        }
                    };
                    for leaf in &leaves {
                        let Some(writer) = w.next() else {
                            failed = Some(ParquetError::General("leaf count mismatch".into()));
                            break 'fields;
                        };
                        if let Err(e) = writer.write(leaf) {
                            failed = Some(e);
                            break 'fields;
                        }
                    }
                }
            }
            Msg::Close(next, reply) => {
                let done = std::mem::replace(&mut writers, next);
                let result = match failed.take() {
                    Some(e) => Err(e),
                    None => done.into_iter().map(ArrowColumnWriter::close).collect(),
                };
                let _ = reply.send(result);
            }
        }
    }
}

/// Writes record batches as Parquet, encoding column groups in parallel.
pub struct ParallelWriter<W> {
    out: W,
    buf: Shared,
    file: SerializedFileWriter<Shared>,
    factory: ArrowRowGroupWriterFactory,
    schema: SchemaRef,
    /// Leaf indices of each field.
    ranges: Vec<std::ops::Range<usize>>,
    /// Encoding tasks to start.
    threads: usize,
    /// The first row group's writers, until the groups are formed.
    first: Option<Vec<ArrowColumnWriter>>,
    groups: Vec<Group>,
    row_group_size: usize,
    /// Rows in the row group being encoded.
    in_group: usize,
    /// Arrow bytes (estimated) in the row group being encoded.
    group_bytes: usize,
    /// Input bytes after which a row group is closed.
    max_group_bytes: usize,
    /// Row groups started (the index of the next one's writers).
    started: usize,
    /// A closed row group whose chunks are still being finished, and its row count.
    pending: Option<(Closing, usize)>,
}

/// What a group answers to a close.
type Reply = std::result::Result<Result<Vec<ArrowColumnChunk>>, oneshot::error::RecvError>;
/// The answers of every group to one close.
type Closing =
    std::pin::Pin<Box<futures::future::JoinAll<oneshot::Receiver<Result<Vec<ArrowColumnChunk>>>>>>;

impl<W: AsyncWrite + Unpin + Send> ParallelWriter<W> {
    /// A writer for `schema` with `props`, using up to `threads` encoding tasks.
    pub fn try_new(
        out: W,
        schema: SchemaRef,
        props: WriterProperties,
        threads: usize,
    ) -> Result<Self> {
        let row_group_size = props.max_row_group_row_count().unwrap_or(1 << 20).max(1);
        let buf = Shared::default();
        let (file, factory) = ArrowWriter::try_new(buf.clone(), schema.clone(), Some(props))?
            .into_serialized_writer()?;
        let mut ranges = Vec::with_capacity(schema.fields().len());
        let mut at = 0;
        for f in schema.fields() {
            let n = leaves(f.data_type());
            ranges.push(at..at + n);
            at += n;
        }
        let writers = factory.create_column_writers(0)?;
        Ok(Self {
            out,
            buf,
            file,
            factory,
            schema,
            ranges,
            // `deal` forms no more groups than there are fields.
            threads: threads.max(1),
            first: Some(writers),
            groups: Vec::new(),
            row_group_size,
            in_group: 0,
            group_bytes: 0,
            max_group_bytes: MAX_ROW_GROUP_BYTES,
            started: 0,
            pending: None,
        })
    }

    /// Closes row groups after `bytes` of input (Arrow memory) instead of the default 64 MiB.
    pub fn with_max_row_group_bytes(mut self, bytes: usize) -> Self {
        self.max_group_bytes = bytes.max(1);
        self
    }

    /// Deals the fields to `threads` encoding tasks, heaviest first to the least loaded task
    /// (weights: the fields' bytes in the first batch). Round-robin put a 180-byte free-text
    /// column and five others on one core and 80 bytes a row on the other.
    fn start(&mut self, weights: &[usize]) -> Result<()> {
        let Some(first) = self.first.take() else {
            return Ok(());
        };
        let mut writers: Vec<Option<ArrowColumnWriter>> = first.into_iter().map(Some).collect();
        let fields = deal(weights, self.ranges.len(), self.threads);
        for fields in fields {
            let leaves: Vec<usize> = fields
                .iter()
                .flat_map(|&f| self.ranges[f].clone())
                .collect();
            let mine = leaves
                .iter()
                .map(|&l| {
                    writers
                        .get_mut(l)
                        .and_then(Option::take)
                        .ok_or_else(stopped)
                })
                .collect::<Result<Vec<_>>>()?;
            let (tx, rx) = mpsc::channel(2);
            tx.try_send(Msg::Start(mine)).map_err(|_| stopped())?;
            let s = self.schema.clone();
            tokio::task::spawn_blocking(move || encode(rx, s, fields));
            self.groups.push(Group { tx, leaves });
        }
        Ok(())
    }

    /// Writes a batch, closing row groups as they fill.
    pub async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if self.first.is_some() {
            let weights: Vec<usize> = batch
                .columns()
                .iter()
                .map(|c| c.to_data().get_slice_memory_size().unwrap_or(1))
                .collect();
            self.start(&weights)?;
        }
        self.splice_if_ready().await?;
        let n = batch.num_rows();
        let row_bytes = batch.get_array_memory_size().div_ceil(n.max(1)).max(1);
        let mut offset = 0;
        while offset < n {
            // A row group ends at `row_group_size` rows or at `max_group_bytes` of input,
            // whichever comes first: wide rows (ciphertexts) would otherwise hold hundreds of
            // MiB per row group.
            let by_bytes =
                (self.max_group_bytes.saturating_sub(self.group_bytes) / row_bytes).max(1);
            let take = (self.row_group_size - self.in_group)
                .min(by_bytes)
                .min(n - offset);
            let part = Arc::new(batch.slice(offset, take));
            for g in &self.groups {
                g.tx.send(Msg::Batch(part.clone()))
                    .await
                    .map_err(|_| stopped())?;
            }
            offset += take;
            self.in_group += take;
            self.group_bytes += take * row_bytes;
            if self.in_group == self.row_group_size || self.group_bytes >= self.max_group_bytes {
                self.close_row_group(false).await?;
            }
        }
        Ok(())
    }

    /// Closes the current row group. The groups close their chunks while new batches are
    /// already queued behind the close, so encoding never waits for the splice; the chunks are
    /// spliced into the file (in schema order) as soon as they are all ready, and at the latest
    /// before the next row group's.
    async fn close_row_group(&mut self, last: bool) -> Result<()> {
        let mut next: Vec<Option<ArrowColumnWriter>> = if last {
            Vec::new()
        } else {
            self.factory
                .create_column_writers(self.started + 1)?
                .into_iter()
                .map(Some)
                .collect()
        };
        let mut replies = Vec::with_capacity(self.groups.len());
        for g in &self.groups {
            let mine = if last {
                Vec::new()
            } else {
                g.leaves
                    .iter()
                    .map(|&l| next[l].take().ok_or_else(stopped))
                    .collect::<Result<Vec<_>>>()?
            };
            let (tx, rx) = oneshot::channel();
            g.tx.send(Msg::Close(mine, tx))
                .await
                .map_err(|_| stopped())?;
            replies.push(rx);
        }
        self.started += 1;
        if let Some((earlier, rows)) = self.pending.take() {
            let results = earlier.await;
            self.splice(results, rows).await?;
        }
        let closing = Box::pin(futures::future::join_all(replies));
        let rows = std::mem::take(&mut self.in_group);
        self.group_bytes = 0;
        if last {
            let results = closing.await;
            self.splice(results, rows).await
        } else {
            self.pending = Some((closing, rows));
            Ok(())
        }
    }

    /// Splices a closed row group in when its chunks are all ready, without waiting.
    async fn splice_if_ready(&mut self) -> Result<()> {
        let ready = match &mut self.pending {
            Some((closing, _)) => futures::FutureExt::now_or_never(closing),
            None => None,
        };
        if let Some(results) = ready
            && let Some((_, rows)) = self.pending.take()
        {
            self.splice(results, rows).await?;
        }
        Ok(())
    }

    /// Appends a closed row group's chunks to the file and hands the bytes on.
    async fn splice(&mut self, results: Vec<Reply>, rows: usize) -> Result<()> {
        let mut chunks: Vec<Option<ArrowColumnChunk>> = Vec::new();
        for (g, got) in self.groups.iter().zip(results) {
            let got = got.map_err(|_| stopped())??;
            for (leaf, chunk) in g.leaves.iter().zip(got) {
                if chunks.len() <= *leaf {
                    chunks.resize_with(leaf + 1, || None);
                }
                chunks[*leaf] = Some(chunk);
            }
        }
        if rows > 0 {
            let mut rg = self.file.next_row_group()?;
            for c in chunks {
                c.ok_or_else(stopped)?.append_to_row_group(&mut rg)?;
            }
            rg.close()?;
        }
        self.drain().await
    }

    async fn drain(&mut self) -> Result<()> {
        let bytes = self.buf.take();
        if !bytes.is_empty() {
            self.out
                .write_all(&bytes)
                .await
                .map_err(|e| ParquetError::External(Box::new(e)))?;
        }
        self.buf.give_back(bytes);
        Ok(())
    }

    /// Closes the last row group, writes the footer and shuts the output down.
    pub async fn finish(mut self) -> Result<()> {
        self.start(&[])?;
        self.close_row_group(true).await?;
        self.file.finish()?;
        self.drain().await?;
        self.out
            .shutdown()
            .await
            .map_err(|e| ParquetError::External(Box::new(e)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use datafusion::arrow::array::{
        ArrayRef, Int32Array, Int64Array, ListArray, StringArray, StructArray,
    };
    use datafusion::arrow::datatypes::{Field, Int32Type, Schema};
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    fn batch(schema: &SchemaRef, from: i64, n: usize) -> RecordBatch {
        let ids: Vec<i64> = (from..from + n as i64).collect();
        let text: Vec<Option<String>> = ids
            .iter()
            .map(|i| (i % 7 != 0).then(|| format!("row {i}")))
            .collect();
        let lists = ListArray::from_iter_primitive::<Int32Type, _, _>(
            ids.iter()
                .map(|i| (i % 5 != 0).then(|| vec![Some(*i as i32), None])),
        );
        let inner = StructArray::from(vec![
            (
                Arc::new(Field::new("a", DataType::Int32, true)),
                Arc::new(Int32Array::from_iter(
                    ids.iter().map(|i| Some(*i as i32 * 2)),
                )) as ArrayRef,
            ),
            (
                Arc::new(Field::new("b", DataType::Utf8, true)),
                Arc::new(StringArray::from_iter(
                    ids.iter().map(|i| Some(format!("b{i}"))),
                )) as ArrayRef,
            ),
        ]);
        RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(ids)),
                Arc::new(StringArray::from(text)),
                Arc::new(lists),
                Arc::new(inner),
            ],
        )
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn columns_encoded_in_parallel_read_back_in_order() {
        let b0 = batch(
            &Arc::new(Schema::new(vec![
                Field::new("id", DataType::Int64, false),
                Field::new("text", DataType::Utf8, true),
                Field::new(
                    "list",
                    DataType::List(Arc::new(Field::new_list_field(DataType::Int32, true))),
                    true,
                ),
                Field::new(
                    "pair",
                    DataType::Struct(
                        vec![
                            Field::new("a", DataType::Int32, true),
                            Field::new("b", DataType::Utf8, true),
                        ]
                        .into(),
                    ),
                    true,
                ),
            ])),
            0,
            1,
        );
        let schema = b0.schema();
        for threads in [1, 3, 8] {
            let file = tempfile::NamedTempFile::new().unwrap();
            let out = tokio::fs::File::create(file.path()).await.unwrap();
            let props = WriterProperties::builder()
                .set_max_row_group_row_count(Some(1000))
                .build();
            let mut w = ParallelWriter::try_new(out, schema.clone(), props, threads).unwrap();
            let mut expected = Vec::new();
            for k in 0..5 {
                let b = batch(&schema, k * 700, 700);
                w.write(&b).await.unwrap();
                expected.push(b);
            }
            w.finish().await.unwrap();
            let reader =
                ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(file.path()).unwrap())
                    .unwrap();
            assert_eq!(reader.metadata().num_row_groups(), 4, "{threads} threads");
            check(reader, &expected, threads);
        }
        // A byte cap closes row groups before the row count does.
        let file = tempfile::NamedTempFile::new().unwrap();
        let out = tokio::fs::File::create(file.path()).await.unwrap();
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(1000))
            .build();
        let one = batch(&schema, 0, 700);
        let cap = one.get_array_memory_size() / 2;
        let mut w = ParallelWriter::try_new(out, schema.clone(), props, 2)
            .unwrap()
            .with_max_row_group_bytes(cap);
        w.write(&one).await.unwrap();
        w.finish().await.unwrap();
        let reader =
            ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(file.path()).unwrap())
                .unwrap();
        let groups = reader.metadata().row_groups();
        assert!(groups.len() >= 2, "{} row groups", groups.len());
        assert!(groups.iter().all(|g| g.num_rows() <= 351));
        check(reader, &[one], 2);
    }

    #[test]
    fn heavy_columns_are_dealt_to_the_least_loaded_group() {
        // The generated PII file's bytes a row: the free-text column alone outweighs the rest
        // of one group, so it gets a group of its own.
        let w = [4, 13, 25, 12, 11, 16, 23, 15, 10, 45, 6, 183];
        assert_eq!(
            deal(&w, 12, 2),
            vec![vec![11], vec![0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]]
        );
        let three = deal(&w, 12, 3);
        assert_eq!(three.len(), 3);
        let loads: Vec<usize> = three
            .iter()
            .map(|g| g.iter().map(|&f| w[f]).sum())
            .collect();
        assert_eq!(loads.iter().max(), Some(&183), "{loads:?}");
        // No weights (an empty file): fields alternate; more groups than fields: one each.
        assert_eq!(deal(&[], 4, 2), vec![vec![0, 2], vec![1, 3]]);
        assert_eq!(deal(&[], 2, 8), vec![vec![0], vec![1]]);
    }

    fn check(
        reader: ParquetRecordBatchReaderBuilder<std::fs::File>,
        expected: &[RecordBatch],
        threads: usize,
    ) {
        let schema = expected[0].schema();
        {
            let got: Vec<RecordBatch> = reader.build().unwrap().map(|b| b.unwrap()).collect();
            let got = datafusion::arrow::compute::concat_batches(&schema, &got).unwrap();
            let want = datafusion::arrow::compute::concat_batches(&schema, expected).unwrap();
            assert_eq!(got, want, "{threads} threads");
        }
    }
}
