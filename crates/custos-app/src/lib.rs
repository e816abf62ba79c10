//! custos-app: the one place where custos signs callers in, decides what they may do, records
//! it in the audit log and runs pipelines. The server (`custos serve`) and the CLI both call
//! it, so a decision never depends on which front end carried the request.
//!
//! - [`auth`]: credentials to a [`Principal`] (API tokens with a verified-token cache,
//!   lockout with backoff, address allowlist).
//! - [`authz`]: Cedar decisions on behalf of a principal, recorded durably before acting.
//! - [`audit`]: typed audit records and the single writer thread (group commit, checkpoints).
//! - [`admin`]: users, tokens, grants, second factors, stored policies and settings.
//! - [`keys`]: the server's keystore: list, create, rotate, minimum version, destroy.
//! - [`registry`], [`confine`]: pipelines registered with the server, and what they may reach.
//! - [`jobs`], [`project`]: runs as jobs with progress and cancellation, and the operations.
//! - [`error`]: [`AppError`], mapped to CLI exit codes and HTTP statuses.

pub mod admin;
pub mod audit;
pub mod auth;
pub mod authz;
pub mod confine;
pub mod error;
pub mod jobs;
pub mod keys;
pub mod local;
pub mod oidc;
pub mod project;
pub mod registry;
pub mod scan;
pub mod settings;

pub use admin::{IssuedTicket, IssuedToken, NewGrant, NewPolicies, NewTicket, NewUser};
pub use auth::{AuthMethod, Authenticator, Cidr, Credential, Principal, SecondFactor};
pub use authz::{Authorizer, RunScope};
pub use confine::Confinement;
pub use error::{AppError, Result};
pub use jobs::{Job, JobInfo, JobStatus, ProgressInfo};
pub use project::{
    AuditEntry, AuditFilter, AuditVerification, EnrollmentMode, ExportedCheckpoint, LocalOptions,
    Project, ProjectOptions, RegisterRequest,
};
pub use registry::{CLASSIFICATIONS, RegisteredPipeline};
pub use scan::ScanRequest;
