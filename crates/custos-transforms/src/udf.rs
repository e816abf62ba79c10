//! The protection kernels as DataFusion scalar UDFs, so SQL takes the same code path as the
//! `protect` transform:
//!
//! | SQL | config action |
//! |---|---|
//! | `encrypt(v, 'key')`, `decrypt(v, 'key')` | `encrypt`, `decrypt` |
//! | `encrypt_deterministic(v, 'key')`, `decrypt_deterministic(v, 'key')` | same names |
//! | `fpe(v, 'key', 'ssn')`, `fpe_decrypt(v, 'key', 'ssn')` | `fpe`, `fpe_decrypt` |
//! | `tokenize(v, 'key' [, length])` | `tokenize` |
//! | `mask(v, keep_first, keep_last)`, `mask_email(v)`, `mask_pattern(v, 'pattern')` | `mask` |
//! | `redact_pii(text [, 'email,phone'])` | `redact` |
//! | `generalize(d, 'year')`, `generalize_bucket(n, width)`, `generalize_zip(z, digits)` | `generalize` |
//! | `date_shift(d, subject, 'key', max_days)` | `date_shift` |
//!
//! The column binding (associated data, FPE tweak) is the name of the first argument's field,
//! so `encrypt_deterministic(email, 'joins')` equals the `protect` action on column `email`.
//! The functions that take a key accept an optional last argument naming the binding
//! explicitly, for expressions (`encrypt(lower(email), 'pii-main', 'email')`).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use custos_keys::KeySet;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{ScalarValue, exec_err, plan_err};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

use crate::kernel::Kernel;
use crate::mask::MaskSpec;
use crate::protection::{self, Generalize, Protection, RedactWith};
use crate::redact::Redactor;
use crate::{PII_META, PROTECTED_META};

/// One use of a key that protects data (decrypting actions are not uses: they are
/// authorized per column).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyUse {
    /// Key name.
    pub key: String,
    /// The action (`encrypt`, `tokenize`, ...).
    pub operation: &'static str,
    /// Whether equal inputs give equal outputs.
    pub deterministic: bool,
}

/// What the UDFs share: the keys (or why there are none) and built kernels.
///
/// Every kernel is built while the pipeline is planned (SQL functions take their key as a
/// literal), and every key use is recorded then, so a run can authorize each use before any
/// row is read. [`UdfEnv::seal`] ends planning: afterwards a kernel whose key use was not
/// recorded cannot be built, so no key is used that was not authorized.
pub struct UdfEnv {
    keys: std::result::Result<Arc<KeySet>, String>,
    detection: custos_detect::DetectorConfig,
    kernels: Mutex<HashMap<String, Arc<Kernel>>>,
    redactors: Mutex<HashMap<Vec<String>, Arc<Redactor>>>,
    uses: Mutex<std::collections::BTreeSet<KeyUse>>,
    sealed: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for UdfEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdfEnv")
            .field("keys", &self.keys.as_ref().map(|_| "[loaded]"))
            .finish()
    }
}

impl UdfEnv {
    /// An environment over `keys`, or the reason keys are unavailable (reported when a
    /// function that needs a key is planned).
    pub fn new(
        keys: std::result::Result<Arc<KeySet>, String>,
        detection: custos_detect::DetectorConfig,
    ) -> Arc<Self> {
        Arc::new(Self {
            keys,
            detection,
            kernels: Mutex::new(HashMap::new()),
            redactors: Mutex::new(HashMap::new()),
            uses: Mutex::new(std::collections::BTreeSet::new()),
            sealed: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The keys used to protect data by the kernels built so far, each once, in key order.
    pub fn key_uses(&self) -> Vec<KeyUse> {
        let uses = self.uses.lock().unwrap_or_else(|p| p.into_inner());
        uses.iter().cloned().collect()
    }

    /// Ends planning: kernels for the recorded key uses can still be built (and those without
    /// keys); one for any other use of a key fails.
    pub fn seal(&self) {
        self.sealed
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// The keys, or why they are unavailable.
    pub fn keys(&self) -> std::result::Result<&Arc<KeySet>, &str> {
        self.keys.as_ref().map_err(String::as_str)
    }

    /// A shared redactor for `types` (detectors are built once per type set).
    pub fn redactor(
        &self,
        types: &[String],
    ) -> std::result::Result<Arc<Redactor>, crate::KernelError> {
        let mut m = self.redactors.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = m.get(types) {
            return Ok(r.clone());
        }
        let r = Arc::new(Redactor::new(types, &self.detection)?);
        m.insert(types.to_vec(), r.clone());
        Ok(r)
    }

    /// The kernel for `protection` on `column`, built once.
    pub fn kernel(
        &self,
        protection: &Protection,
        column: &str,
    ) -> std::result::Result<Arc<Kernel>, crate::KernelError> {
        let id = format!("{protection:?}\u{0}{column}");
        let mut m = self.kernels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(k) = m.get(&id) {
            return Ok(k.clone());
        }
        if !protection.reveals()
            && let Some(key) = protection.key()
        {
            let sealed = self.sealed.load(std::sync::atomic::Ordering::Acquire);
            let mut uses = self.uses.lock().unwrap_or_else(|p| p.into_inner());
            let u = KeyUse {
                key: key.to_string(),
                operation: protection.name(),
                deterministic: protection.deterministic(),
            };
            if sealed && !uses.contains(&u) {
                return Err(crate::KernelError::Config(format!(
                    "{} with key \"{key}\" was not planned, so its use was not authorized",
                    protection.name()
                )));
            }
            uses.insert(u);
        }
        let k = Arc::new(Kernel::new(protection, column, self.keys(), |t| {
            self.redactor(t)
        })?);
        m.insert(id, k.clone());
        Ok(k)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Fun {
    Encrypt,
    Decrypt,
    EncryptDeterministic,
    DecryptDeterministic,
    Fpe,
    FpeDecrypt,
    Tokenize,
    Mask,
    MaskEmail,
    MaskPattern,
    RedactPii,
    Generalize,
    GeneralizeBucket,
    GeneralizeZip,
    DateShift,
}

const FUNS: &[(&str, Fun)] = &[
    ("encrypt", Fun::Encrypt),
    ("decrypt", Fun::Decrypt),
    ("encrypt_deterministic", Fun::EncryptDeterministic),
    ("decrypt_deterministic", Fun::DecryptDeterministic),
    ("fpe", Fun::Fpe),
    ("fpe_decrypt", Fun::FpeDecrypt),
    ("tokenize", Fun::Tokenize),
    ("mask", Fun::Mask),
    ("mask_email", Fun::MaskEmail),
    ("mask_pattern", Fun::MaskPattern),
    ("redact_pii", Fun::RedactPii),
    ("generalize", Fun::Generalize),
    ("generalize_bucket", Fun::GeneralizeBucket),
    ("generalize_zip", Fun::GeneralizeZip),
    ("date_shift", Fun::DateShift),
];

impl Fun {
    /// `(required literal args after the value, optional literal args, usage)`.
    fn arity(self) -> (usize, usize, &'static str) {
        match self {
            Fun::Encrypt | Fun::Decrypt | Fun::EncryptDeterministic | Fun::DecryptDeterministic => {
                (1, 1, "(value, 'key' [, 'binding'])")
            }
            Fun::Fpe | Fun::FpeDecrypt => (2, 1, "(value, 'key', 'format' [, 'binding'])"),
            Fun::Tokenize => (1, 1, "(value, 'key' [, length])"),
            Fun::Mask => (2, 0, "(value, keep_first, keep_last)"),
            Fun::MaskEmail => (0, 0, "(email)"),
            Fun::MaskPattern => (1, 0, "(value, 'pattern')"),
            Fun::RedactPii => (0, 1, "(text [, 'email,phone,...'])"),
            Fun::Generalize => (1, 0, "(date, 'month' | 'year')"),
            Fun::GeneralizeBucket => (1, 0, "(number, width)"),
            Fun::GeneralizeZip => (1, 0, "(text, digits)"),
            Fun::DateShift => (2, 0, "(date, subject, 'key', max_days)"),
        }
    }
}

/// One protection function.
#[derive(Debug)]
struct ProtectUdf {
    name: &'static str,
    fun: Fun,
    signature: Signature,
    env: Arc<UdfEnv>,
}

impl PartialEq for ProtectUdf {
    fn eq(&self, other: &Self) -> bool {
        self.fun == other.fun && Arc::ptr_eq(&self.env, &other.env)
    }
}
impl Eq for ProtectUdf {}
impl Hash for ProtectUdf {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.fun.hash(state);
    }
}

fn literal_text(v: Option<&ScalarValue>) -> Option<String> {
    match v? {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => Some(s.clone()),
        _ => None,
    }
}

fn literal_int(v: Option<&ScalarValue>) -> Option<i64> {
    let v = v?;
    if v.is_null() {
        return None;
    }
    match v.cast_to(&DataType::Int64).ok()? {
        ScalarValue::Int64(Some(i)) => Some(i),
        _ => None,
    }
}

impl ProtectUdf {
    /// The position of the literal arguments (the value, and the subject of date_shift, are
    /// columns).
    fn first_literal(&self) -> usize {
        if self.fun == Fun::DateShift { 2 } else { 1 }
    }

    /// The protection and binding a call describes, from its literal arguments.
    fn protection(
        &self,
        column: &str,
        lits: &[Option<&ScalarValue>],
    ) -> Result<(Protection, String)> {
        let (req, opt, usage) = self.fun.arity();
        let first = self.first_literal();
        let n = lits.len().saturating_sub(first);
        if lits.len() < first || n < req || n > req + opt {
            return plan_err!("{} takes {}{usage}", self.name, self.name);
        }
        let text = |i: usize, what: &str| -> Result<String> {
            literal_text(lits.get(first + i).copied().flatten()).ok_or_else(|| {
                DataFusionError::Plan(format!(
                    "{}: argument {} ({what}) must be a text literal",
                    self.name,
                    first + i + 1
                ))
            })
        };
        let int = |i: usize, what: &str| -> Result<i64> {
            literal_int(lits.get(first + i).copied().flatten()).ok_or_else(|| {
                DataFusionError::Plan(format!(
                    "{}: argument {} ({what}) must be an integer literal",
                    self.name,
                    first + i + 1
                ))
            })
        };
        let binding = |i: usize| -> Result<String> {
            if n > i {
                text(i, "binding")
            } else {
                Ok(column.to_string())
            }
        };
        let non_negative = |v: i64, what: &str| -> Result<usize> {
            usize::try_from(v).map_err(|_| {
                DataFusionError::Plan(format!("{}: {what} must not be negative", self.name))
            })
        };
        let invalid = |e: crate::KernelError| DataFusionError::Plan(format!("{}: {e}", self.name));
        Ok(match self.fun {
            Fun::Encrypt => (
                Protection::Encrypt {
                    key: text(0, "key")?,
                },
                binding(1)?,
            ),
            Fun::Decrypt => (
                Protection::Decrypt {
                    key: text(0, "key")?,
                },
                binding(1)?,
            ),
            Fun::EncryptDeterministic => (
                Protection::EncryptDeterministic {
                    key: text(0, "key")?,
                },
                binding(1)?,
            ),
            Fun::DecryptDeterministic => (
                Protection::DecryptDeterministic {
                    key: text(0, "key")?,
                },
                binding(1)?,
            ),
            Fun::Fpe => (
                Protection::Fpe {
                    key: text(0, "key")?,
                    format: protection::fpe_format(&text(1, "format")?).map_err(invalid)?,
                    version: None,
                },
                binding(2)?,
            ),
            Fun::FpeDecrypt => (
                Protection::FpeDecrypt {
                    key: text(0, "key")?,
                    format: protection::fpe_format(&text(1, "format")?).map_err(invalid)?,
                    version: None,
                },
                binding(2)?,
            ),
            Fun::Tokenize => (
                Protection::Tokenize {
                    key: text(0, "key")?,
                    length: if n > 1 {
                        non_negative(int(1, "length")?, "length")?
                    } else {
                        protection::DEFAULT_TOKEN_LENGTH
                    },
                    encoding: protection::TokenEncoding::Hex,
                },
                column.to_string(),
            ),
            Fun::Mask => (
                Protection::Mask(MaskSpec {
                    keep_first: non_negative(int(0, "keep_first")?, "keep_first")?,
                    keep_last: non_negative(int(1, "keep_last")?, "keep_last")?,
                    ..MaskSpec::default()
                }),
                column.to_string(),
            ),
            Fun::MaskEmail => (
                Protection::Mask(MaskSpec {
                    email: true,
                    ..MaskSpec::default()
                }),
                column.to_string(),
            ),
            Fun::MaskPattern => (
                Protection::Mask(MaskSpec {
                    pattern: Some(text(0, "pattern")?),
                    ..MaskSpec::default()
                }),
                column.to_string(),
            ),
            Fun::RedactPii => (
                Protection::Redact {
                    types: if n > 0 {
                        text(0, "types")?
                            .split(',')
                            .map(|t| t.trim().to_string())
                            .filter(|t| !t.is_empty())
                            .collect()
                    } else {
                        protection::DEFAULT_REDACT_TYPES
                            .iter()
                            .map(|t| t.to_string())
                            .collect()
                    },
                    with: RedactWith::Label,
                },
                column.to_string(),
            ),
            Fun::Generalize => (
                Protection::Generalize(Generalize::level(&text(0, "level")?).map_err(invalid)?),
                column.to_string(),
            ),
            Fun::GeneralizeBucket => {
                let width = lits
                    .get(first)
                    .copied()
                    .flatten()
                    .and_then(|v| v.cast_to(&DataType::Float64).ok())
                    .and_then(|v| match v {
                        ScalarValue::Float64(Some(f)) => Some(f),
                        _ => None,
                    })
                    .ok_or_else(|| {
                        DataFusionError::Plan(format!(
                            "{}: argument 2 (width) must be a number literal",
                            self.name
                        ))
                    })?;
                (
                    Protection::Generalize(Generalize::bucket(width).map_err(invalid)?),
                    column.to_string(),
                )
            }
            Fun::GeneralizeZip => (
                Protection::Generalize(Generalize::ZipDigits(non_negative(
                    int(0, "digits")?,
                    "digits",
                )?)),
                column.to_string(),
            ),
            Fun::DateShift => {
                let key = text(0, "key")?;
                let days = u32::try_from(int(1, "max_days")?).map_err(|_| {
                    DataFusionError::Plan(format!("{}: max_days out of range", self.name))
                })?;
                (
                    Protection::DateShift {
                        key,
                        max_days: protection::max_days(days).map_err(invalid)?,
                    },
                    column.to_string(),
                )
            }
        })
    }

    fn kernel(&self, column: &str, lits: &[Option<&ScalarValue>]) -> Result<Arc<Kernel>> {
        let (protection, binding) = self.protection(column, lits)?;
        self.env
            .kernel(&protection, &binding)
            .map_err(|e| DataFusionError::Plan(format!("{}: {e}", self.name)))
    }
}

impl ScalarUDFImpl for ProtectUdf {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        // Planning goes through return_field_from_args, which sees the literal arguments.
        plan_err!("{} needs its arguments to plan", self.name)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let Some(value) = args.arg_fields.first() else {
            return plan_err!("{} takes {}{}", self.name, self.name, self.fun.arity().2);
        };
        let kernel = self.kernel(value.name(), args.scalar_arguments)?;
        let out = kernel
            .output_type(value.data_type())
            .map_err(|e| DataFusionError::Plan(format!("{}: {e}", self.name)))?;
        let mut meta = HashMap::new();
        if kernel.reveals() {
            meta.insert(PII_META.to_string(), "decrypted".to_string());
        } else {
            meta.insert(PROTECTED_META.to_string(), kernel.action().to_string());
        }
        Ok(Arc::new(
            Field::new(value.name(), out, true).with_metadata(meta),
        ))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let lits: Vec<Option<ScalarValue>> = args
            .args
            .iter()
            .map(|a| match a {
                ColumnarValue::Scalar(s) => Some(s.clone()),
                ColumnarValue::Array(_) => None,
            })
            .collect();
        let lit_refs: Vec<Option<&ScalarValue>> = lits.iter().map(Option::as_ref).collect();
        let column = args.arg_fields.first().map_or("", |f| f.name().as_str());
        let kernel = self.kernel(column, &lit_refs)?;
        let n = args.number_rows;
        let value = args.args[0].to_array(n)?;
        let subject = if kernel.needs_subject() {
            Some(
                args.args
                    .get(1)
                    .ok_or_else(|| DataFusionError::Plan("date_shift needs a subject".into()))?
                    .to_array(n)?,
            )
        } else {
            None
        };
        let out = kernel
            .apply(&value, subject.as_ref())
            .map_err(|e| DataFusionError::Execution(format!("{}: {e}", self.name)))?;
        if let Some((row, reason)) = out.failures.first() {
            return exec_err!(
                "{}: column \"{column}\", row {} of the batch: {reason} ({} rows failed in this batch)",
                self.name,
                row + 1,
                out.failures.len()
            );
        }
        Ok(ColumnarValue::Array(out.array))
    }
}

/// Every protection UDF, sharing `env`.
pub fn all(env: &Arc<UdfEnv>) -> Vec<ScalarUDF> {
    FUNS.iter()
        .map(|(name, fun)| {
            let volatility = match fun {
                Fun::Encrypt => Volatility::Volatile,
                _ => Volatility::Immutable,
            };
            ScalarUDF::new_from_impl(ProtectUdf {
                name,
                fun: *fun,
                signature: Signature::variadic_any(volatility),
                env: env.clone(),
            })
        })
        .collect()
}

/// The names of the protection UDFs.
pub fn names() -> impl Iterator<Item = &'static str> {
    FUNS.iter().map(|(n, _)| *n)
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Array, StringArray};
    use datafusion::prelude::SessionContext;

    use super::*;

    fn session() -> SessionContext {
        let env = UdfEnv::new(Err("no keystore".into()), Default::default());
        let ctx = SessionContext::new();
        for udf in all(&env) {
            ctx.register_udf(udf);
        }
        ctx
    }

    async fn plan_error(sql: &str) -> String {
        match session().sql(sql).await {
            Ok(_) => panic!("{sql} planned"),
            Err(e) => e.to_string(),
        }
    }

    #[tokio::test]
    async fn bad_literals_are_plan_errors() {
        let cases = [
            (
                "select generalize(d, 'decade') from (values (date '2020-01-01')) t(d)",
                "generalize: generalize needs exactly one of to = \"month\"|\"year\", bucket (> 0) or zip_digits",
            ),
            (
                "select generalize_bucket(n, 0) from (values (5)) t(n)",
                "generalize_bucket: generalize needs exactly one of",
            ),
            (
                "select fpe(s, 'k', 'roman') from (values ('123')) t(s)",
                "fpe: unknown FPE format \"roman\"; expected digits, alphanumeric, card or ssn",
            ),
            (
                "select date_shift(d, s, 'k', 0) from (values (date '2020-01-01', 'a')) t(d, s)",
                "date_shift: max_days must be at least 1",
            ),
            (
                "select tokenize(s, 'k') from (values ('a')) t(s)",
                "tokenize: tokenize needs keys: no keystore",
            ),
        ];
        for (sql, want) in cases {
            let e = plan_error(sql).await;
            assert!(e.contains(want), "{sql}: {e}");
        }
    }

    #[tokio::test]
    async fn keyless_functions_run() {
        let batches = session()
            .sql(
                "select mask(s, 0, 4) as m, generalize_zip(z, 3) as z \
                 from (values ('4111-1111', '88725')) t(s, z)",
            )
            .await
            .expect("plans")
            .collect()
            .await
            .expect("runs");
        let text = |i: usize| {
            batches[0]
                .column(i)
                .as_any()
                .downcast_ref::<StringArray>()
                .expect("text")
                .value(0)
                .to_string()
        };
        assert_eq!(text(0), "****-1111");
        assert_eq!(text(1), "887**");
        assert!(!batches[0].column(0).is_null(0));
    }
}
