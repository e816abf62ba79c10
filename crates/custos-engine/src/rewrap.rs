//! The `rewrap` transform: moves ciphertext cells written under older key versions to the
//! primary version of the same key (decrypt, then encrypt again), so that old versions can be
//! retired with `keys set-min-version` and destroyed.
//!
//! Cells are bound to their column: the associated data (AES-GCM) or second associated-data
//! component (AES-SIV) is the column name.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::Ordering;

use custos_connectors::quarantine::Quarantine;
use custos_crypto::aead::{self, AeadDecryptor, AeadEncryptor};
use custos_crypto::siv::{self, SivCipher};
use custos_crypto::{CellEncryptor, Header};
use custos_keys::KeySet;
use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, StringArray, StringBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::error::{DataFusionError, Result};

use crate::exec::BatchOp;
use crate::reject::{Rejected, Rejector};
use crate::validate::ValidateStats;

/// Per-key-id encryptors for the primary versions, created on first use.
#[derive(Default)]
struct Writers {
    aead: HashMap<u32, AeadEncryptor>,
    siv: HashMap<(u32, u32), SivCipher>,
    dec: AeadDecryptor,
}

/// The rewrap operation over batches.
pub struct RewrapOp {
    component: String,
    columns: Vec<(usize, String)>,
    keys: Arc<KeySet>,
    writers: Mutex<Writers>,
    stats: Arc<ValidateStats>,
    rejector: Rejector,
}

impl std::fmt::Debug for RewrapOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RewrapOp")
            .field("component", &self.component)
            .field("keys", &self.keys)
            .finish()
    }
}

impl RewrapOp {
    /// Checks the columns against the input schema; errors are `(key, message)` pairs.
    pub fn compile(
        component: &str,
        columns: &[String],
        schema: &Schema,
        keys: Arc<KeySet>,
        quarantine: Arc<Quarantine>,
        files: Arc<Vec<Vec<PathBuf>>>,
        stats: Arc<ValidateStats>,
    ) -> std::result::Result<Self, Vec<(String, String)>> {
        let mut errors = Vec::new();
        let mut cols = Vec::new();
        for (i, c) in columns.iter().enumerate() {
            match schema.column_with_name(c) {
                Some((idx, f))
                    if matches!(
                        f.data_type(),
                        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
                    ) =>
                {
                    cols.push((idx, c.clone()))
                }
                Some((_, f)) => errors.push((
                    format!("columns[{i}]"),
                    format!(
                        "column \"{c}\" is {}, but ciphertexts are text",
                        f.data_type()
                    ),
                )),
                None => {
                    let names = schema
                        .fields()
                        .iter()
                        .map(|f| f.name().as_str())
                        .filter(|n| !custos_core::is_reserved_column(n));
                    let mut m = format!("no column named \"{c}\" in the input");
                    if let Some(d) = custos_core::did_you_mean(c, names) {
                        m.push_str(&format!("; did you mean \"{d}\"?"));
                    }
                    errors.push((format!("columns[{i}]"), m));
                }
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self {
            component: component.to_string(),
            columns: cols,
            keys,
            writers: Mutex::new(Writers::default()),
            stats,
            rejector: Rejector::new(component, schema, quarantine, files),
        })
    }

    /// Rewraps one cell; `Ok(None)` keeps it as is.
    fn cell(
        &self,
        w: &mut Writers,
        text: &str,
        column: &str,
        out: &mut String,
    ) -> std::result::Result<bool, String> {
        let ctx = column.as_bytes();
        if text.starts_with(aead::TEXT_PREFIX) {
            let bin = aead::decode(text).map_err(|e| e.to_string())?;
            let h = aead::header_of(&bin).map_err(|e| e.to_string())?;
            let primary = self.primary_version(&h)?;
            if h.version == primary {
                return Ok(false);
            }
            let old = self
                .keys
                .material
                .get(&(h.key_id, h.version))
                .ok_or_else(|| self.keys.why(h.key_id, h.version))?;
            let pt = w.dec.decrypt(&bin, old, ctx).map_err(|e| e.to_string())?;
            let pt = String::from_utf8(pt).map_err(|_| "plaintext is not UTF-8".to_string())?;
            let enc = match w.aead.entry(h.key_id) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => {
                    let key = self
                        .keys
                        .material
                        .get(&(h.key_id, primary))
                        .ok_or_else(|| self.keys.why(h.key_id, primary))?;
                    v.insert(AeadEncryptor::new(h.key_id, primary, key).map_err(|e| e.to_string())?)
                }
            };
            let mut scratch = Vec::new();
            enc.encrypt_text_into(&pt, ctx, &mut scratch, out)
                .map_err(|e| e.to_string())?;
            Ok(true)
        } else if text.starts_with(siv::TEXT_PREFIX) {
            let bin = siv::decode(text).map_err(|e| e.to_string())?;
            let h = siv::header_of(&bin).map_err(|e| e.to_string())?;
            let primary = self.primary_version(&h)?;
            if h.version == primary {
                return Ok(false);
            }
            let pt = {
                let c = self.siv(w, h.key_id, h.version)?;
                c.decrypt(&bin, ctx).map_err(|e| e.to_string())?
            };
            let pt = String::from_utf8(pt).map_err(|_| "plaintext is not UTF-8".to_string())?;
            let c = self.siv(w, h.key_id, primary)?;
            c.encrypt_text_into(&pt, ctx, &mut Vec::new(), out)
                .map_err(|e| e.to_string())?;
            Ok(true)
        } else {
            Err("not a custos ciphertext (expected a cx1. or cs1. value)".to_string())
        }
    }

    /// The primary version of the key a ciphertext names.
    fn primary_version(&self, h: &Header) -> std::result::Result<u32, String> {
        self.keys
            .primary
            .get(&h.key_id)
            .map(|(version, _)| *version)
            .ok_or_else(|| self.keys.why(h.key_id, h.version))
    }

    fn siv<'w>(
        &self,
        w: &'w mut Writers,
        id: u32,
        version: u32,
    ) -> std::result::Result<&'w mut SivCipher, String> {
        match w.siv.entry((id, version)) {
            std::collections::hash_map::Entry::Occupied(e) => Ok(e.into_mut()),
            std::collections::hash_map::Entry::Vacant(v) => {
                let key = self
                    .keys
                    .material
                    .get(&(id, version))
                    .ok_or_else(|| self.keys.why(id, version))?;
                Ok(v.insert(SivCipher::new(id, version, key).map_err(|e| e.to_string())?))
            }
        }
    }
}

impl BatchOp for RewrapOp {
    fn name(&self) -> &str {
        "rewrap"
    }

    fn apply(&self, batch: RecordBatch) -> Result<RecordBatch> {
        let n = batch.num_rows();
        let first_row = self.stats.rows_in.fetch_add(n as u64, Ordering::Relaxed);
        let mut fail: Vec<Option<(String, String)>> = vec![None; n];
        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        let mut w = self.writers.lock().unwrap_or_else(|p| p.into_inner());
        for (idx, name) in &self.columns {
            let original = batch.column(*idx);
            let text = cast(original, &DataType::Utf8)?;
            let text = text
                .as_any()
                .downcast_ref::<StringArray>()
                .ok_or_else(|| DataFusionError::Internal("utf8 cast".into()))?;
            let mut b = StringBuilder::with_capacity(n, text.value_data().len() + n * 8);
            let mut cell = String::new();
            for (i, failed) in fail.iter_mut().enumerate() {
                if text.is_null(i) {
                    b.append_null();
                    continue;
                }
                cell.clear();
                match self.cell(&mut w, text.value(i), name, &mut cell) {
                    Ok(true) => b.append_value(&cell),
                    Ok(false) => b.append_value(text.value(i)),
                    Err(reason) => {
                        if failed.is_none() {
                            *failed = Some((name.clone(), format!("column \"{name}\": {reason}")));
                        }
                        b.append_value(text.value(i));
                    }
                }
            }
            columns[*idx] = cast(
                &(std::sync::Arc::new(b.finish()) as ArrayRef),
                original.data_type(),
            )?;
        }
        drop(w);
        let out = RecordBatch::try_new(batch.schema(), columns)?;
        let rejected = Rejected::from_failures(fail, "rewrap");
        self.rejector
            .reject_and_drop(&batch, out, first_row, &self.stats.quarantined, rejected)
    }
}
