//! The PII gate: no column known to hold personal data reaches a sink unless a protection
//! operation produced it, or `[danger] allow_plaintext` names it.
//!
//! A column is known to hold PII when (1) its field carries [`PII_META`] (a decrypting
//! operation produced it), (2) it has the name of a column a source declares in `pii = [...]`,
//! or (3) scanning the first batch reaching the sink finds PII in it: at least half of the
//! sampled values are whole PII values (emails, phones, SSNs, cards, IBANs, IPs, names, ...),
//! or at least a fifth of them contain an email, phone, SSN, card, IBAN or IP in free text.
//! Columns whose field carries [`PROTECTED_META`] are never blocked. (1) and (2) are checked
//! when the pipeline is planned (so `custos validate` reports them); (3) fails the run before
//! any sink commits.

use std::collections::{BTreeMap, BTreeSet};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use custos_config::PipelineConfig;
use custos_detect::{Detector, PiiKind};
use custos_transforms::{PII_META, PROTECTED_META};
use datafusion::arrow::array::{Array, RecordBatch, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::error::{DataFusionError, Result};
use datafusion::physical_plan::{RecordBatchStream, SendableRecordBatchStream};
use futures::{Stream, StreamExt};

/// Values sampled per column from the first batch.
const SAMPLE: usize = 1000;
/// Share of whole-PII values that marks a column.
const WHOLE_RATIO: f64 = 0.5;
/// Share of values with embedded PII that marks a free-text column.
const EMBEDDED_RATIO: f64 = 0.2;
const EMBEDDED_KINDS: [PiiKind; 6] = PiiKind::PATTERN;

/// The message for a blocked column.
pub(crate) fn blocked(sink: &str, column: &str, class: &str) -> String {
    format!("sink \"{sink}\": column \"{column}\" carries unprotected PII ({class})")
}

/// A sink error caused by the gate, without the writer's wrapping.
pub(crate) fn unwrap_message(msg: &str) -> String {
    if msg.contains(" carries unprotected PII (")
        && let Some(i) = msg.rfind("sink \"")
    {
        return format!(
            "{}; protect the column or allow it under [danger] allow_plaintext",
            &msg[i..]
        );
    }
    msg.to_string()
}

/// Columns any source declares as PII, with their class (from the name, or `declared`).
pub(crate) fn declared(config: &PipelineConfig) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for s in &config.sources {
        for c in s.kind.pii() {
            let class = custos_detect::name_hint(c).map_or("declared", |k| k.as_str());
            out.insert(c.clone(), class.to_string());
        }
    }
    out
}

/// Whether a protection operation produced the column. Redacted free text is still scanned:
/// a redaction of some types leaves the others in the clear.
fn is_protected(schema: &Schema, i: usize) -> bool {
    schema
        .field(i)
        .metadata()
        .get(PROTECTED_META)
        .is_some_and(|a| a != "redact")
}

/// The schema-level violations of `sink`: `(column, class)` pairs not allowed by `[danger]`.
pub(crate) fn static_violations(
    config: &PipelineConfig,
    sink: &str,
    schema: &Schema,
    declared: &BTreeMap<String, String>,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for f in schema.fields() {
        let name = f.name();
        // Any protection operation satisfies the declaration; redacted text is scanned later.
        if custos_core::is_reserved_column(name) || f.metadata().contains_key(PROTECTED_META) {
            continue;
        }
        let class = f
            .metadata()
            .get(PII_META)
            .cloned()
            .or_else(|| declared.get(name).cloned());
        if let Some(class) = class {
            if config.danger.allows(sink, name) {
                warn_allowed(sink, name, &class);
            } else {
                out.push((name.clone(), class));
            }
        }
    }
    out
}

fn warn_allowed(sink: &str, column: &str, class: &str) {
    tracing::warn!(
        sink,
        column,
        class,
        "DANGER: plaintext PII written to a sink, allowed by [danger] allow_plaintext"
    );
}

/// Scans the first batch of a sink's stream; fails the stream if it finds unprotected PII.
pub(crate) fn guard(
    config: &PipelineConfig,
    sink: &str,
    detector: Arc<Detector>,
    stream: SendableRecordBatchStream,
) -> SendableRecordBatchStream {
    let schema = stream.schema();
    let columns: Vec<(usize, String, bool)> = schema
        .fields()
        .iter()
        .enumerate()
        .filter(|(i, f)| {
            !custos_core::is_reserved_column(f.name())
                && !is_protected(&schema, *i)
                && matches!(
                    f.data_type(),
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
                )
        })
        .map(|(i, f)| (i, f.name().clone(), config.danger.allows(sink, f.name())))
        .collect();
    // Columns the plan-time check already knew as PII (and warned about when allowed).
    let declared = declared(config);
    let known: BTreeSet<String> = schema
        .fields()
        .iter()
        .filter(|f| f.metadata().contains_key(PII_META) || declared.contains_key(f.name()))
        .map(|f| f.name().clone())
        .collect();
    Box::pin(Guard {
        inner: stream,
        schema,
        sink: sink.to_string(),
        columns,
        known,
        detector,
        checked: false,
    })
}

struct Guard {
    inner: SendableRecordBatchStream,
    schema: SchemaRef,
    sink: String,
    columns: Vec<(usize, String, bool)>,
    known: BTreeSet<String>,
    detector: Arc<Detector>,
    checked: bool,
}

impl Guard {
    fn check(&self, batch: &RecordBatch) -> Result<()> {
        for (i, name, allowed) in &self.columns {
            let text = cast(batch.column(*i), &DataType::Utf8)?;
            let Some(text) = text.as_any().downcast_ref::<StringArray>() else {
                continue;
            };
            if let Some(class) = scan(&self.detector, text) {
                if *allowed {
                    if !self.known.contains(name) {
                        warn_allowed(&self.sink, name, &class);
                    }
                } else {
                    return Err(DataFusionError::Execution(blocked(
                        &self.sink, name, &class,
                    )));
                }
            }
        }
        Ok(())
    }
}

/// The PII class found in a sample of `values`, if the column holds PII.
pub(crate) fn scan(detector: &Detector, values: &StringArray) -> Option<String> {
    let mut whole: BTreeMap<PiiKind, usize> = BTreeMap::new();
    let mut embedded: BTreeSet<PiiKind> = BTreeSet::new();
    let (mut seen, mut with_findings) = (0usize, 0usize);
    let mut findings = Vec::new();
    for v in values.iter().flatten().take(SAMPLE) {
        seen += 1;
        if let Some((k, _)) = detector.classify_value(v) {
            *whole.entry(k).or_default() += 1;
            continue;
        }
        findings.clear();
        detector.detect_into(v, &mut findings);
        let strong: Vec<PiiKind> = findings
            .iter()
            .map(|f| f.kind)
            .filter(|k| EMBEDDED_KINDS.contains(k))
            .collect();
        if !strong.is_empty() {
            with_findings += 1;
            embedded.extend(strong);
        }
    }
    if seen == 0 {
        return None;
    }
    if let Some((k, n)) = whole.iter().max_by_key(|(_, n)| **n)
        && *n as f64 / seen as f64 >= WHOLE_RATIO
    {
        return Some(detector.kind_name(*k).to_string());
    }
    if with_findings as f64 / seen as f64 >= EMBEDDED_RATIO {
        return Some(
            embedded
                .iter()
                .map(|k| detector.kind_name(*k))
                .collect::<Vec<_>>()
                .join(", "),
        );
    }
    None
}

impl Stream for Guard {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let next = self.inner.poll_next_unpin(cx);
        match next {
            Poll::Ready(Some(Ok(batch))) if !self.checked && batch.num_rows() > 0 => {
                self.checked = true;
                match self.check(&batch) {
                    Ok(()) => Poll::Ready(Some(Ok(batch))),
                    Err(e) => Poll::Ready(Some(Err(e))),
                }
            }
            other => other,
        }
    }
}

impl RecordBatchStream for Guard {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}
