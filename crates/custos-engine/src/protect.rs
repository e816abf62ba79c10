//! The `protect` transform: runs one protection kernel per configured column over every
//! batch. Rows a kernel cannot handle (an invalid SSN for `fpe`, a ciphertext of another key
//! for `decrypt`) go to quarantine with the column and a value-free reason.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use custos_config::{ColumnAction, ColumnActions};
use custos_connectors::quarantine::Quarantine;
use custos_transforms::protection::{self, Generalize, Protection, RedactWith};
use custos_transforms::udf::UdfEnv;
use custos_transforms::{Kernel, MaskSpec, PII_META, PROTECTED_META};
use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::error::{DataFusionError, Result};

use crate::exec::{BatchOp, ConcurrentOp, Prepared};
use crate::reject::{Rejected, Rejector};
use crate::validate::ValidateStats;

struct Step {
    input: usize,
    column: String,
    kernel: Arc<Kernel>,
    subject: Option<usize>,
}

/// The protect operation over batches.
pub struct ProtectOp {
    component: String,
    steps: Vec<Step>,
    /// Input column index of each output column.
    keep: Vec<usize>,
    schema: SchemaRef,
    stats: Arc<ValidateStats>,
    rejector: Rejector,
}

impl std::fmt::Debug for ProtectOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProtectOp")
            .field("component", &self.component)
            .field(
                "columns",
                &self.steps.iter().map(|s| &s.column).collect::<Vec<_>>(),
            )
            .finish()
    }
}

fn missing(schema: &Schema, c: &str) -> String {
    let names = schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .filter(|n| !custos_core::is_reserved_column(n));
    let mut m = format!("no column named \"{c}\" in the input");
    if let Some(d) = custos_core::did_you_mean(c, names) {
        m.push_str(&format!("; did you mean \"{d}\"?"));
    }
    m
}

/// The protection `action` describes. An option the kernels cannot take is reported as
/// `(config key, message)`, the key under `path` (`columns.NAME`) naming the offending option.
/// `drop` is no protection: the caller removes the column instead.
pub(crate) fn protection(
    action: &ColumnAction,
    path: &str,
) -> std::result::Result<Protection, (String, String)> {
    let at = |option: &str| {
        if option.is_empty() {
            path.to_string()
        } else {
            format!("{path}.{option}")
        }
    };
    let invalid =
        |option: &'static str| move |e: custos_transforms::KernelError| (at(option), e.to_string());
    Ok(match action {
        ColumnAction::Encrypt { key } => Protection::Encrypt { key: key.clone() },
        ColumnAction::Decrypt { key } => Protection::Decrypt { key: key.clone() },
        ColumnAction::EncryptDeterministic { key } => {
            Protection::EncryptDeterministic { key: key.clone() }
        }
        ColumnAction::DecryptDeterministic { key } => {
            Protection::DecryptDeterministic { key: key.clone() }
        }
        ColumnAction::Fpe {
            key,
            format,
            version,
        } => Protection::Fpe {
            key: key.clone(),
            format: protection::fpe_format(format).map_err(invalid("format"))?,
            version: *version,
        },
        ColumnAction::FpeDecrypt {
            key,
            format,
            version,
        } => Protection::FpeDecrypt {
            key: key.clone(),
            format: protection::fpe_format(format).map_err(invalid("format"))?,
            version: *version,
        },
        ColumnAction::Tokenize {
            key,
            length,
            encoding,
        } => Protection::Tokenize {
            key: key.clone(),
            length: length.unwrap_or(protection::DEFAULT_TOKEN_LENGTH),
            encoding: match encoding {
                None => protection::TokenEncoding::Hex,
                Some(e) => protection::token_encoding(e).map_err(invalid("encoding"))?,
            },
        },
        ColumnAction::Mask {
            keep_first,
            keep_last,
            char,
            keep_separators,
            email,
            pattern,
        } => {
            let default = MaskSpec::default();
            let mask = match char.as_deref().map(|c| {
                let mut chars = c.chars();
                (chars.next(), chars.next())
            }) {
                None => default.mask,
                Some((Some(c), None)) => c,
                Some(_) => return Err((at("char"), "must be one character".into())),
            };
            Protection::Mask(MaskSpec {
                keep_first: *keep_first,
                keep_last: *keep_last,
                mask,
                keep_separators: keep_separators.unwrap_or(default.keep_separators),
                email: *email,
                pattern: pattern.clone(),
            })
        }
        ColumnAction::Redact { types, with, key } => Protection::Redact {
            types: types.clone().unwrap_or_else(|| {
                protection::DEFAULT_REDACT_TYPES
                    .iter()
                    .map(|t| t.to_string())
                    .collect()
            }),
            with: match (with.as_deref(), key) {
                (None | Some("label"), _) => RedactWith::Label,
                (Some("token"), Some(k)) => RedactWith::Token { key: k.clone() },
                (Some("encrypt"), Some(k)) => RedactWith::Encrypt { key: k.clone() },
                (Some(w), _) => {
                    // A known replacement lacks its key; anything else is unknown.
                    let option = if matches!(w, "token" | "encrypt") {
                        "key"
                    } else {
                        "with"
                    };
                    return Err((
                        at(option),
                        format!(
                            "redact with \"{w}\" needs a valid `key` (label, token or encrypt)"
                        ),
                    ));
                }
            },
        },
        ColumnAction::Generalize {
            to,
            bucket,
            zip_digits,
        } => Protection::Generalize(match (to, bucket, zip_digits) {
            (Some(to), None, None) => Generalize::level(to).map_err(invalid("to"))?,
            (None, Some(b), None) => Generalize::bucket(*b).map_err(invalid("bucket"))?,
            (None, None, Some(d)) => Generalize::ZipDigits(*d),
            _ => return Err(invalid("")(Generalize::usage())),
        }),
        ColumnAction::DateShift { max_days, key, .. } => Protection::DateShift {
            key: key.clone(),
            max_days: protection::max_days(*max_days).map_err(invalid("max_days"))?,
        },
        ColumnAction::Drop => {
            return Err((at(""), "drop removes the column; it has no kernel".into()));
        }
    })
}

impl ProtectOp {
    /// Builds the kernels against the input schema; errors are `(key, message)` pairs.
    pub fn compile(
        component: &str,
        columns: &ColumnActions,
        schema: &Schema,
        env: &UdfEnv,
        quarantine: Arc<Quarantine>,
        files: Arc<Vec<Vec<PathBuf>>>,
        stats: Arc<ValidateStats>,
    ) -> std::result::Result<Self, Vec<(String, String)>> {
        let mut errors = Vec::new();
        let mut steps = Vec::new();
        let mut dropped = Vec::new();
        let mut out_fields: HashMap<usize, Field> = HashMap::new();
        for (col, action) in &columns.0 {
            let key = format!("columns.{col}");
            let Some((idx, field)) = schema.column_with_name(col) else {
                errors.push((key, missing(schema, col)));
                continue;
            };
            if custos_core::is_reserved_column(col) {
                errors.push((key, format!("column \"{col}\" is reserved")));
                continue;
            }
            if *action == ColumnAction::Drop {
                dropped.push(idx);
                continue;
            }
            let subject = match action {
                ColumnAction::DateShift { subject, .. } => match schema.index_of(subject) {
                    Ok(i) => Some(i),
                    Err(_) => {
                        errors.push((format!("{key}.subject"), missing(schema, subject)));
                        continue;
                    }
                },
                _ => None,
            };
            let protection = match protection(action, &key) {
                Ok(p) => p,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            let kernel = match env.kernel(&protection, col) {
                Ok(k) => k,
                Err(e) => {
                    errors.push((key, e.to_string()));
                    continue;
                }
            };
            match kernel.output_type(field.data_type()) {
                Ok(t) => {
                    let mut meta = field.metadata().clone();
                    if kernel.reveals() {
                        meta.remove(PROTECTED_META);
                        meta.insert(PII_META.into(), "decrypted".into());
                    } else {
                        meta.remove(PII_META);
                        meta.insert(PROTECTED_META.into(), kernel.action().into());
                    }
                    out_fields.insert(idx, Field::new(col, t, true).with_metadata(meta));
                }
                Err(e) => {
                    errors.push((format!("{key}.action"), format!("column \"{col}\": {e}")));
                    continue;
                }
            }
            steps.push(Step {
                input: idx,
                column: col.clone(),
                kernel,
                subject,
            });
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let keep: Vec<usize> = (0..schema.fields().len())
            .filter(|i| !dropped.contains(i))
            .collect();
        let fields: Vec<Field> = keep
            .iter()
            .map(|i| {
                out_fields
                    .remove(i)
                    .unwrap_or_else(|| schema.field(*i).clone())
            })
            .collect();
        Ok(Self {
            component: component.to_string(),
            steps,
            keep,
            schema: Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone())),
            stats,
            rejector: Rejector::new(component, schema, quarantine, files),
        })
    }
}

impl BatchOp for ProtectOp {
    fn name(&self) -> &str {
        "protect"
    }

    fn output_schema(&self, _input: &SchemaRef) -> Result<SchemaRef> {
        Ok(self.schema.clone())
    }

    fn apply(&self, batch: RecordBatch) -> Result<RecordBatch> {
        self.commit(self.prepare(batch)?)
    }

    fn concurrent(self: Arc<Self>) -> Option<Arc<dyn ConcurrentOp>> {
        Some(self)
    }
}

impl ConcurrentOp for ProtectOp {
    fn prepare(&self, batch: RecordBatch) -> Result<Prepared> {
        let n = batch.num_rows();
        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        let mut failed: Vec<Option<(String, String)>> = vec![None; n];
        for s in &self.steps {
            let subject = s.subject.map(|i| batch.column(i).clone());
            let out = s
                .kernel
                .apply(batch.column(s.input), subject.as_ref())
                .map_err(|e| {
                    DataFusionError::Execution(format!(
                        "transform \"{}\": column \"{}\": {e}",
                        self.component, s.column
                    ))
                })?;
            for (row, reason) in out.failures {
                if failed[row].is_none() {
                    failed[row] = Some((
                        s.column.clone(),
                        format!(
                            "column \"{}\": {} failed: {reason}",
                            s.column,
                            s.kernel.action()
                        ),
                    ));
                }
            }
            columns[s.input] = out.array;
        }
        let kept: Vec<ArrayRef> = self.keep.iter().map(|i| columns[*i].clone()).collect();
        Ok(Prepared {
            output: RecordBatch::try_new(self.schema.clone(), kept)?,
            rejected: Rejected::from_failures(failed, "protect"),
            input: batch,
        })
    }

    fn commit(&self, p: Prepared) -> Result<RecordBatch> {
        let n = p.input.num_rows() as u64;
        let first_row = self.stats.rows_in.fetch_add(n, Ordering::Relaxed);
        self.rejector.reject_and_drop(
            &p.input,
            p.output,
            first_row,
            &self.stats.quarantined,
            p.rejected,
        )
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use custos_config::ColumnAction as A;
    use custos_transforms::protection::{FpeFormat, TokenEncoding};
    use custos_transforms::{BucketWidth, Generalize, MaskSpec, Protection, RedactWith};

    use super::protection;

    fn ok(a: A) -> Protection {
        match protection(&a, "columns.c") {
            Ok(p) => p,
            Err((k, m)) => panic!("{a:?}: {k}: {m}"),
        }
    }

    fn err(a: A) -> (String, String) {
        match protection(&a, "columns.c") {
            Ok(p) => panic!("{a:?} converted to {p:?}"),
            Err(e) => e,
        }
    }

    fn k() -> String {
        "k".into()
    }

    fn mask() -> A {
        mask_with(None)
    }

    fn mask_with(char: Option<&str>) -> A {
        A::Mask {
            keep_first: 1,
            keep_last: 2,
            char: char.map(str::to_string),
            keep_separators: None,
            email: false,
            pattern: None,
        }
    }

    fn redact(with: Option<&str>, key: Option<&str>) -> A {
        A::Redact {
            types: None,
            with: with.map(str::to_string),
            key: key.map(str::to_string),
        }
    }

    fn generalize(to: Option<&str>, bucket: Option<f64>, zip_digits: Option<usize>) -> A {
        A::Generalize {
            to: to.map(str::to_string),
            bucket,
            zip_digits,
        }
    }

    #[test]
    fn converts_every_action() {
        assert_eq!(
            ok(A::Encrypt { key: k() }),
            Protection::Encrypt { key: k() }
        );
        assert_eq!(
            ok(A::Decrypt { key: k() }),
            Protection::Decrypt { key: k() }
        );
        assert_eq!(
            ok(A::EncryptDeterministic { key: k() }),
            Protection::EncryptDeterministic { key: k() }
        );
        assert_eq!(
            ok(A::DecryptDeterministic { key: k() }),
            Protection::DecryptDeterministic { key: k() }
        );
        assert_eq!(
            ok(A::Fpe {
                key: k(),
                format: "ssn".into(),
                version: None
            }),
            Protection::Fpe {
                key: k(),
                format: FpeFormat::Ssn,
                version: None
            }
        );
        assert_eq!(
            ok(A::FpeDecrypt {
                key: k(),
                format: "card".into(),
                version: Some(2)
            }),
            Protection::FpeDecrypt {
                key: k(),
                format: FpeFormat::Card,
                version: Some(2)
            }
        );
        assert_eq!(
            ok(A::Tokenize {
                key: k(),
                length: None,
                encoding: None
            }),
            Protection::Tokenize {
                key: k(),
                length: 16,
                encoding: TokenEncoding::Hex
            }
        );
        assert_eq!(
            ok(A::Tokenize {
                key: k(),
                length: Some(8),
                encoding: Some("base64url".into())
            }),
            Protection::Tokenize {
                key: k(),
                length: 8,
                encoding: TokenEncoding::Base64Url
            }
        );
        assert_eq!(
            ok(mask()),
            Protection::Mask(MaskSpec {
                keep_first: 1,
                keep_last: 2,
                ..MaskSpec::default()
            })
        );
        assert_eq!(
            ok(A::Mask {
                keep_first: 0,
                keep_last: 0,
                char: Some("#".into()),
                keep_separators: Some(false),
                email: true,
                pattern: Some("##*".into()),
            }),
            Protection::Mask(MaskSpec {
                keep_first: 0,
                keep_last: 0,
                mask: '#',
                keep_separators: false,
                email: true,
                pattern: Some("##*".into()),
            })
        );
        let defaults: Vec<String> = ["email", "phone", "ssn", "card", "iban", "ip"]
            .iter()
            .map(|t| t.to_string())
            .collect();
        assert_eq!(
            ok(redact(None, None)),
            Protection::Redact {
                types: defaults.clone(),
                with: RedactWith::Label
            }
        );
        // `with = "label"` uses no key, even when one is named.
        assert_eq!(
            ok(redact(Some("label"), Some("k"))),
            Protection::Redact {
                types: defaults.clone(),
                with: RedactWith::Label
            }
        );
        assert_eq!(
            ok(redact(Some("token"), Some("k"))),
            Protection::Redact {
                types: defaults.clone(),
                with: RedactWith::Token { key: k() }
            }
        );
        assert_eq!(
            ok(A::Redact {
                types: Some(vec!["email".into()]),
                with: Some("encrypt".into()),
                key: Some(k()),
            }),
            Protection::Redact {
                types: vec!["email".into()],
                with: RedactWith::Encrypt { key: k() }
            }
        );
        assert_eq!(
            ok(generalize(Some("year"), None, None)),
            Protection::Generalize(Generalize::Year)
        );
        assert_eq!(
            ok(generalize(Some("month"), None, None)),
            Protection::Generalize(Generalize::Month)
        );
        assert_eq!(
            ok(generalize(None, Some(10.0), None)),
            Protection::Generalize(Generalize::Bucket(
                BucketWidth::new(10.0).expect("positive")
            ))
        );
        assert_eq!(
            ok(generalize(None, None, Some(3))),
            Protection::Generalize(Generalize::ZipDigits(3))
        );
        assert_eq!(
            ok(A::DateShift {
                max_days: 30,
                subject: "id".into(),
                key: k()
            }),
            Protection::DateShift {
                key: k(),
                max_days: NonZeroU32::new(30).expect("not zero")
            }
        );
    }

    #[test]
    fn names_the_key_of_each_bad_option() {
        let usage =
            "generalize needs exactly one of to = \"month\"|\"year\", bucket (> 0) or zip_digits";
        let cases: Vec<(A, &str, String)> = vec![
            (
                A::Fpe {
                    key: k(),
                    format: "roman".into(),
                    version: None,
                },
                "columns.c.format",
                "unknown FPE format \"roman\"; expected digits, alphanumeric, card or ssn".into(),
            ),
            (
                A::FpeDecrypt {
                    key: k(),
                    format: "".into(),
                    version: None,
                },
                "columns.c.format",
                "unknown FPE format \"\"; expected digits, alphanumeric, card or ssn".into(),
            ),
            (
                A::Tokenize {
                    key: k(),
                    length: None,
                    encoding: Some("b64".into()),
                },
                "columns.c.encoding",
                "unknown token encoding \"b64\"; expected hex or base64url".into(),
            ),
            (
                mask_with(Some("")),
                "columns.c.char",
                "must be one character".into(),
            ),
            (
                mask_with(Some("ab")),
                "columns.c.char",
                "must be one character".into(),
            ),
            (
                redact(Some("token"), None),
                "columns.c.key",
                "redact with \"token\" needs a valid `key` (label, token or encrypt)".into(),
            ),
            (
                redact(Some("encrypt"), None),
                "columns.c.key",
                "redact with \"encrypt\" needs a valid `key` (label, token or encrypt)".into(),
            ),
            (
                redact(Some("hash"), Some("k")),
                "columns.c.with",
                "redact with \"hash\" needs a valid `key` (label, token or encrypt)".into(),
            ),
            (
                generalize(Some("decade"), None, None),
                "columns.c.to",
                usage.into(),
            ),
            (
                generalize(None, Some(0.0), None),
                "columns.c.bucket",
                usage.into(),
            ),
            (
                generalize(None, Some(-5.0), None),
                "columns.c.bucket",
                usage.into(),
            ),
            (
                generalize(None, Some(f64::INFINITY), None),
                "columns.c.bucket",
                usage.into(),
            ),
            (generalize(None, None, None), "columns.c", usage.into()),
            (
                generalize(Some("year"), Some(1.0), None),
                "columns.c",
                usage.into(),
            ),
            (
                generalize(None, Some(1.0), Some(3)),
                "columns.c",
                usage.into(),
            ),
            (
                A::DateShift {
                    max_days: 0,
                    subject: "id".into(),
                    key: k(),
                },
                "columns.c.max_days",
                "max_days must be at least 1".into(),
            ),
            (
                A::Drop,
                "columns.c",
                "drop removes the column; it has no kernel".into(),
            ),
        ];
        for (action, key, message) in cases {
            assert_eq!(err(action), (key.to_string(), message));
        }
    }
}
