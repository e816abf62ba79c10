//! The protection kernels: one [`Kernel`] per configured column (or SQL call), applied to whole
//! Arrow arrays. Keys are resolved and expanded when the kernel is built or once per batch,
//! never per cell; output builders are sized once per batch.

use std::sync::Arc;

use custos_crypto::aead::{self, AeadDecryptor, AeadEncryptor};
use custos_crypto::fpe::{Format, FpeBatch, FpeCipher};
use custos_crypto::siv::{self, SivCipher};
use custos_crypto::token::{Encoding, Tokenizer};
use custos_crypto::{CellEncryptor, CryptoError, Header, SecretBytes};
use custos_keys::{KeySet, Purpose};
use datafusion::arrow::array::{
    Array, ArrayRef, BinaryArray, BinaryBuilder, StringArray, StringBuilder,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;

use crate::mask::MaskSpec;
use crate::protection::{Generalize, Protection, RedactWith};
use crate::redact::Redactor;

/// Why a kernel could not be built or run. Never holds a cell value or key material.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// The operation's configuration is wrong (unknown key, wrong purpose, bad option).
    #[error("{0}")]
    Config(String),
    /// The input column's type does not suit the operation.
    #[error("{0}")]
    Type(String),
    /// Arrow failed (casting, building arrays).
    #[error("{0}")]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
}

/// A kernel's result over one array.
#[derive(Debug)]
pub struct Output {
    /// The protected values; rows that failed are null.
    pub array: ArrayRef,
    /// `(row, reason)` for every row the operation could not handle (the reason names no value).
    pub failures: Vec<(usize, String)>,
}

/// What replaces a detected span in `redact`.
#[derive(Debug, Clone)]
pub enum Replacement {
    /// `<EMAIL>`.
    Label,
    /// `<EMAIL:token>`.
    Token(Box<Tokenizer>),
    /// An AES-256-GCM ciphertext (`cx1.`) of the span, bound to the column.
    Encrypt {
        /// Key id.
        id: u32,
        /// Key version.
        version: u32,
        /// Key material.
        key: SecretBytes,
    },
}

#[derive(Debug)]
enum Op {
    Encrypt {
        id: u32,
        version: u32,
        key: SecretBytes,
    },
    Decrypt {
        id: u32,
        keys: Arc<KeySet>,
    },
    Seal {
        id: u32,
        version: u32,
        key: SecretBytes,
    },
    Open {
        id: u32,
        keys: Arc<KeySet>,
    },
    Fpe {
        cipher: Box<FpeCipher>,
        format: Format,
        decrypt: bool,
    },
    Tokenize(Tokenizer),
    Mask(MaskSpec),
    Redact(Arc<Redactor>),
    GeneralizeDate {
        year: bool,
    },
    GeneralizeNumber(f64),
    GeneralizeZip(usize),
    DateShift {
        mac: Tokenizer,
        max_days: u32,
    },
}

/// One protection operation bound to one column.
#[derive(Debug)]
pub struct Kernel {
    op: Op,
    action: &'static str,
    /// The column binding: associated data (AEAD, SIV) and tweak (FPE).
    context: Vec<u8>,
}

/// The keys a kernel needs, or why they are not available (no keystore, no passphrase).
pub type Keys<'a> = Result<&'a Arc<KeySet>, &'a str>;

fn keyset<'a>(keys: Keys<'a>, action: &str) -> Result<&'a Arc<KeySet>, KernelError> {
    keys.map_err(|why| KernelError::Config(format!("{action} needs keys: {why}")))
}

fn primary(
    keys: &KeySet,
    name: &str,
    want: Purpose,
    action: &str,
) -> Result<(u32, u32, SecretBytes), KernelError> {
    let (id, version, purpose, material) = keys.primary(name).map_err(KernelError::Config)?;
    if purpose != want {
        return Err(KernelError::Config(format!(
            "key \"{name}\" has purpose {}; {action} needs a key of purpose {}",
            purpose.name(),
            want.name()
        )));
    }
    Ok((id, version, material.clone()))
}

fn tokenizer(
    keys: &KeySet,
    name: &str,
    action: &str,
    bytes: usize,
    encoding: Encoding,
) -> Result<Tokenizer, KernelError> {
    let (_, _, key) = primary(keys, name, Purpose::Hmac, action)?;
    Tokenizer::new(&key, bytes, encoding).map_err(|e| KernelError::Config(e.to_string()))
}

impl Kernel {
    /// Builds the kernel for `protection` on `column`. `redactor` builds the PII detector for
    /// `redact` (shared between columns by the caller).
    pub fn new(
        protection: &Protection,
        column: &str,
        keys: Keys<'_>,
        redactor: impl FnOnce(&[String]) -> Result<Arc<Redactor>, KernelError>,
    ) -> Result<Self, KernelError> {
        let name = protection.name();
        let op = match protection {
            Protection::Encrypt { key } => {
                let (id, version, key) = primary(keyset(keys, name)?, key, Purpose::Aead, name)?;
                Op::Encrypt { id, version, key }
            }
            Protection::Decrypt { key } => {
                let ks = keyset(keys, name)?;
                Op::Decrypt {
                    id: ks.id(key).map_err(KernelError::Config)?,
                    keys: ks.clone(),
                }
            }
            Protection::EncryptDeterministic { key } => {
                let (id, version, key) = primary(keyset(keys, name)?, key, Purpose::Daead, name)?;
                Op::Seal { id, version, key }
            }
            Protection::DecryptDeterministic { key } => {
                let ks = keyset(keys, name)?;
                Op::Open {
                    id: ks.id(key).map_err(KernelError::Config)?,
                    keys: ks.clone(),
                }
            }
            Protection::Fpe {
                key,
                format,
                version,
            }
            | Protection::FpeDecrypt {
                key,
                format,
                version,
            } => {
                let ks = keyset(keys, name)?;
                let material = match version {
                    None => primary(ks, key, Purpose::Fpe, name)?.2,
                    Some(v) => ks.version(key, *v).map_err(KernelError::Config)?.1.clone(),
                };
                Op::Fpe {
                    cipher: Box::new(
                        FpeCipher::new(&material)
                            .map_err(|e| KernelError::Config(e.to_string()))?,
                    ),
                    format: *format,
                    decrypt: protection.reveals(),
                }
            }
            Protection::Tokenize {
                key,
                length,
                encoding,
            } => Op::Tokenize(tokenizer(
                keyset(keys, name)?,
                key,
                name,
                *length,
                *encoding,
            )?),
            Protection::Mask(spec) => Op::Mask(spec.clone()),
            Protection::Redact { types, with } => {
                let mut r = redactor(types)?;
                let replacement = match with {
                    RedactWith::Label => Replacement::Label,
                    RedactWith::Token { key } => Replacement::Token(Box::new(tokenizer(
                        keyset(keys, name)?,
                        key,
                        name,
                        8,
                        Encoding::Hex,
                    )?)),
                    RedactWith::Encrypt { key } => {
                        let (id, version, key) =
                            primary(keyset(keys, name)?, key, Purpose::Aead, name)?;
                        Replacement::Encrypt { id, version, key }
                    }
                };
                Arc::make_mut(&mut r).set_replacement(replacement);
                Op::Redact(r)
            }
            Protection::Generalize(g) => match g {
                Generalize::Year => Op::GeneralizeDate { year: true },
                Generalize::Month => Op::GeneralizeDate { year: false },
                Generalize::Bucket(b) => Op::GeneralizeNumber(b.get()),
                Generalize::ZipDigits(d) => Op::GeneralizeZip(*d),
            },
            Protection::DateShift { key, max_days } => Op::DateShift {
                mac: tokenizer(keyset(keys, name)?, key, name, 8, Encoding::Hex)?
                    .derived("date_shift"),
                max_days: max_days.get(),
            },
        };
        Ok(Self {
            op,
            action: name,
            context: column.as_bytes().to_vec(),
        })
    }

    /// The operation's name (`encrypt`, `mask`, ...).
    pub fn action(&self) -> &'static str {
        self.action
    }

    /// Whether the operation reads a subject column (`date_shift`).
    pub fn needs_subject(&self) -> bool {
        matches!(self.op, Op::DateShift { .. })
    }

    /// Whether the output is plaintext again.
    pub fn reveals(&self) -> bool {
        matches!(
            &self.op,
            Op::Decrypt { .. } | Op::Open { .. } | Op::Fpe { decrypt: true, .. }
        )
    }

    /// Whether the operation gives a different output for the same input on each call.
    pub fn is_volatile(&self) -> bool {
        match &self.op {
            Op::Encrypt { .. } => true,
            Op::Redact(r) => r.is_volatile(),
            _ => false,
        }
    }

    /// The output type for an input of type `input`, or why the type does not suit.
    pub fn output_type(&self, input: &DataType) -> Result<DataType, KernelError> {
        let text = |t: &DataType| match t {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => t.clone(),
            _ => DataType::Utf8,
        };
        match &self.op {
            Op::Encrypt { .. } | Op::Decrypt { .. } | Op::Seal { .. } | Op::Open { .. } => {
                Ok(match input {
                    DataType::Binary | DataType::LargeBinary | DataType::BinaryView => {
                        DataType::Binary
                    }
                    t => text(t),
                })
            }
            Op::GeneralizeDate { .. } | Op::DateShift { .. } => match input {
                DataType::Date32
                | DataType::Date64
                | DataType::Timestamp(..)
                | DataType::Utf8
                | DataType::LargeUtf8
                | DataType::Utf8View => Ok(input.clone()),
                t => Err(KernelError::Type(format!(
                    "{} needs a date, timestamp or ISO date text column, found {t}",
                    self.action
                ))),
            },
            Op::GeneralizeNumber(b) => {
                if input.is_integer() && b.fract() != 0.0 {
                    Err(KernelError::Type(
                        "an integer column needs a whole-number bucket".into(),
                    ))
                } else if input.is_numeric() {
                    Ok(input.clone())
                } else {
                    Err(KernelError::Type(format!(
                        "generalize with bucket needs a numeric column, found {input}"
                    )))
                }
            }
            _ => Ok(text(input)),
        }
    }

    /// Applies the operation to `input`; `subject` is the subject column for `date_shift`.
    pub fn apply(
        &self,
        input: &ArrayRef,
        subject: Option<&ArrayRef>,
    ) -> Result<Output, KernelError> {
        let out_type = self.output_type(input.data_type())?;
        let ctx = self.context.as_slice();
        let out = match &self.op {
            Op::Encrypt { id, version, key } => {
                let enc = AeadEncryptor::new(*id, *version, key)
                    .map_err(|e| KernelError::Config(e.to_string()))?;
                map_seal(
                    input,
                    out_type == DataType::Binary,
                    aead::OVERHEAD,
                    enc,
                    ctx,
                )?
            }
            Op::Decrypt { id, keys } => {
                let mut dec = AeadDecryptor::new();
                let open = |bin: &[u8]| -> Result<Vec<u8>, String> {
                    let h = aead::header_of(bin).map_err(|e| e.to_string())?;
                    let key = key_for(keys, *id, &h)?;
                    dec.decrypt(bin, key, ctx).map_err(|e| e.to_string())
                };
                map_open(input, out_type == DataType::Binary, aead::decode, open)?
            }
            Op::Seal { id, version, key } => {
                let c = SivCipher::new(*id, *version, key)
                    .map_err(|e| KernelError::Config(e.to_string()))?;
                map_seal(input, out_type == DataType::Binary, 26, c, ctx)?
            }
            Op::Open { id, keys } => {
                let mut ciphers: Vec<(u32, SivCipher)> = Vec::new();
                let open = |bin: &[u8]| -> Result<Vec<u8>, String> {
                    let h = siv::header_of(bin).map_err(|e| e.to_string())?;
                    let key = key_for(keys, *id, &h)?;
                    let pos = match ciphers.iter().position(|(v, _)| *v == h.version) {
                        Some(p) => p,
                        None => {
                            let c = SivCipher::new(h.key_id, h.version, key)
                                .map_err(|e| e.to_string())?;
                            ciphers.push((h.version, c));
                            ciphers.len() - 1
                        }
                    };
                    ciphers[pos].1.decrypt(bin, ctx).map_err(|e| e.to_string())
                };
                map_open(input, out_type == DataType::Binary, siv::decode, open)?
            }
            Op::Fpe {
                cipher,
                format,
                decrypt,
            } => fpe_column(input, cipher, *format, !*decrypt, ctx)?,
            Op::Tokenize(t) => map_text(input, 0, |_, v, out| {
                t.token_into(v.as_bytes(), out);
                Ok(())
            })?,
            Op::Mask(m) => map_text(input, 0, |_, v, out| {
                m.apply(v, out);
                Ok(())
            })?,
            Op::Redact(r) => {
                let mut state = r.state(ctx)?;
                map_text(input, 0, |_, v, out| r.redact(v, &mut state, out))?
            }
            Op::GeneralizeZip(keep) => map_text(input, 0, |_, v, out| {
                let mut digits = 0;
                for c in v.chars() {
                    if c.is_ascii_digit() {
                        digits += 1;
                        out.push(if digits > *keep { '*' } else { c });
                    } else {
                        out.push(c);
                    }
                }
                Ok(())
            })?,
            Op::GeneralizeDate { year } => crate::time::generalize(input, *year)?,
            Op::GeneralizeNumber(b) => crate::time::bucket(input, *b)?,
            Op::DateShift { mac, max_days } => {
                let subject = subject.ok_or_else(|| {
                    KernelError::Config("date_shift needs its subject column".into())
                })?;
                let subject = cast(subject, &DataType::Utf8)?;
                let subject = subject
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .ok_or_else(|| KernelError::Type("subject is not text".into()))?;
                let span = 2 * u64::from(*max_days) + 1;
                let offsets: Vec<Option<i64>> = (0..subject.len())
                    .map(|i| {
                        (!subject.is_null(i)).then(|| {
                            (mac.mac_u64(subject.value(i).as_bytes()) % span) as i64
                                - i64::from(*max_days)
                        })
                    })
                    .collect();
                crate::time::shift(input, &offsets)?
            }
        };
        let array = if out.array.data_type() != &out_type {
            cast(&out.array, &out_type)?
        } else {
            out.array
        };
        Ok(Output {
            array,
            failures: out.failures,
        })
    }
}

/// The material for the version a ciphertext header names, if it belongs to key `id`.
fn key_for<'k>(keys: &'k KeySet, id: u32, h: &Header) -> Result<&'k SecretBytes, String> {
    if h.key_id != id {
        let named = keys.name_of(h.key_id).map_or_else(
            || format!("key id {}", h.key_id),
            |n| format!("key \"{n}\""),
        );
        return Err(format!("the ciphertext was written with {named}"));
    }
    keys.material
        .get(&(h.key_id, h.version))
        .ok_or_else(|| keys.why(h.key_id, h.version))
}

/// Encrypts every non-null cell: binary cells to binary ciphertexts (`overhead` bytes longer),
/// everything else to the text form.
fn map_seal(
    input: &ArrayRef,
    binary: bool,
    overhead: usize,
    mut sealer: impl CellEncryptor,
    ctx: &[u8],
) -> Result<Output, KernelError> {
    if binary {
        return map_binary(input, overhead, |v, out| {
            sealer.encrypt_into(v, ctx, out).map_err(|e| e.to_string())
        });
    }
    let mut scratch = Vec::with_capacity(256);
    map_text(input, overhead * 4 / 3 + 4, |_, v, out| {
        sealer
            .encrypt_text_into(v, ctx, &mut scratch, out)
            .map_err(|e| e.to_string())
    })
}

/// Decrypts every non-null cell with `open`: binary cells as they are, text cells after
/// `decode` (the `cx1.`/`cs1.` text form); text plaintexts must be UTF-8.
fn map_open(
    input: &ArrayRef,
    binary: bool,
    decode: fn(&str) -> Result<Vec<u8>, CryptoError>,
    mut open: impl FnMut(&[u8]) -> Result<Vec<u8>, String>,
) -> Result<Output, KernelError> {
    if binary {
        return map_binary(input, 0, |v, out| {
            out.extend_from_slice(&open(v)?);
            Ok(())
        });
    }
    map_text(input, 0, |_, v, out| {
        let bin = decode(v).map_err(|e| e.to_string())?;
        let pt = open(&bin)?;
        out.push_str(std::str::from_utf8(&pt).map_err(|_| "plaintext is not UTF-8")?);
        Ok(())
    })
}

/// `input` cast to text.
fn text_of(input: &ArrayRef) -> Result<StringArray, KernelError> {
    cast(input, &DataType::Utf8)?
        .as_any()
        .downcast_ref::<StringArray>()
        .cloned()
        .ok_or_else(|| KernelError::Type("cast to text failed".into()))
}

/// Runs `f` over every non-null cell of `input` as text, building a string array.
pub(crate) fn map_text(
    input: &ArrayRef,
    extra_per_cell: usize,
    mut f: impl FnMut(usize, &str, &mut String) -> Result<(), String>,
) -> Result<Output, KernelError> {
    let text = text_of(input)?;
    let n = text.len();
    let mut b = StringBuilder::with_capacity(
        n,
        text.value_data().len() * if extra_per_cell > 0 { 2 } else { 1 } + n * extra_per_cell,
    );
    let mut cell = String::with_capacity(256);
    let mut failures = Vec::new();
    for i in 0..n {
        if text.is_null(i) {
            b.append_null();
            continue;
        }
        cell.clear();
        match f(i, text.value(i), &mut cell) {
            Ok(()) => b.append_value(&cell),
            Err(reason) => {
                failures.push((i, reason));
                b.append_null();
            }
        }
    }
    Ok(Output {
        array: Arc::new(b.finish()),
        failures,
    })
}

/// FF1 over every non-null cell of `input`, all of them in one batch (see
/// [`FpeCipher::encrypt_batch`]).
fn fpe_column(
    input: &ArrayRef,
    cipher: &FpeCipher,
    format: Format,
    encrypt: bool,
    ctx: &[u8],
) -> Result<Output, KernelError> {
    let text = text_of(input)?;
    let values = text.iter().flatten();
    let mut batch = FpeBatch::default();
    if encrypt {
        cipher.encrypt_batch(values, format, ctx, &mut batch);
    } else {
        cipher.decrypt_batch(values, format, ctx, &mut batch);
    }
    // The batch holds the non-null cells in order: the n-th non-null cell's result is the
    // n-th entry.
    let mut next = 0;
    map_text(input, 0, |_, _, out| {
        let r = batch.get(next).map(|v| out.push_str(v));
        next += 1;
        r.map_err(|e| e.to_string())
    })
}

/// Runs `f` over every non-null cell of a binary `input`.
fn map_binary(
    input: &ArrayRef,
    extra_per_cell: usize,
    mut f: impl FnMut(&[u8], &mut Vec<u8>) -> Result<(), String>,
) -> Result<Output, KernelError> {
    let bin = cast(input, &DataType::Binary)?;
    let bin = bin
        .as_any()
        .downcast_ref::<BinaryArray>()
        .ok_or_else(|| KernelError::Type("cast to binary failed".into()))?;
    let n = bin.len();
    let mut b = BinaryBuilder::with_capacity(n, bin.value_data().len() + n * extra_per_cell);
    let mut cell = Vec::with_capacity(256);
    let mut failures = Vec::new();
    for i in 0..n {
        if bin.is_null(i) {
            b.append_null();
            continue;
        }
        cell.clear();
        match f(bin.value(i), &mut cell) {
            Ok(()) => b.append_value(&cell),
            Err(reason) => {
                failures.push((i, reason));
                b.append_null();
            }
        }
    }
    Ok(Output {
        array: Arc::new(b.finish()),
        failures,
    })
}
