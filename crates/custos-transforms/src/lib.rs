//! custos protection operations: one kernel per operation over Arrow arrays ([`Kernel`]),
//! built from a typed [`Protection`] and exposed twice with the same code path: as DataFusion
//! scalar UDFs for SQL ([`udf`]) and to the engine's declarative `protect` transform.
//!
//! Every output field of a protection operation carries the field metadata
//! [`PROTECTED_META`] (the operation's name); fields holding personal data carry [`PII_META`]
//! (its class). The engine's PII gate reads both before a sink commits.

mod kernel;
mod mask;
pub mod protection;
mod redact;
mod time;
pub mod udf;

pub use kernel::{Kernel, KernelError, Output, Replacement};
pub use mask::MaskSpec;
pub use protection::{BucketWidth, FpeFormat, Generalize, Protection, RedactWith, TokenEncoding};
pub use redact::Redactor;

pub use custos_core::{PII_META, PROTECTED_META};
