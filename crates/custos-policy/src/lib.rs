//! custos access control: identities and API tokens ([`identity`]), OIDC bearer tokens
//! ([`oidc`]), the Cedar schema and the default role matrix, time-bound grants, and
//! authorization decisions.
//!
//! Policies are `.cedar` files in the project's `policies/` directory (the built-in
//! [`DEFAULT_POLICIES`] when it does not exist), validated strictly against [`SCHEMA`]. Every
//! policy carries an `@id("...")` annotation: decisions report the ids of the policies that
//! decided, and the audit log records them. Grants become policies `grant:<id>` that permit one
//! action on one resource pattern while the request time is before their expiry, so an expired
//! grant stops working without anyone acting. Default deny; a request whose evaluation raises
//! any error is denied (fail closed), even if some permit matched.

pub mod identity;
pub mod mfa;
pub mod oidc;
mod seal;
pub mod stored;

use std::path::{Path, PathBuf};
use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Decision as CedarDecision, Entities, EntityId, EntityTypeName, EntityUid,
    Policy, PolicyId, PolicySet, Request, Schema, ValidationMode, Validator,
};
use serde_json::json;

pub use identity::{
    AUTH_FAILED, EXTERNAL_PREFIX, Grant, Identities, Token, User, grant_subject, valid_user_name,
};
pub use mfa::{MfaEnrollment, MfaStatus};
pub use seal::{SealState, StoreKey};
pub use stored::{PolicyVersion, Setting, StoredPolicies};

/// The Cedar schema of custos' authorization model.
pub const SCHEMA: &str = include_str!("data/schema.cedarschema");
/// The default policies (the role matrix), written by `custos init` to `policies/default.cedar`.
pub const DEFAULT_POLICIES: &str = include_str!("data/default.cedar");
/// The roles the default policies know.
pub const ROLES: [&str; 4] = ["analyst", "data_engineer", "ml_engineer", "security_admin"];

/// Errors of access control. Messages never contain tokens or secrets.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// Sign-in failed; one message for every reason.
    #[error("{}", AUTH_FAILED)]
    Authentication,
    /// A policy file does not parse or does not validate against the schema.
    #[error("{0}")]
    Policies(String),
    /// Bad input to an identity or grant operation.
    #[error("{0}")]
    Invalid(String),
    /// The identity store failed.
    #[error("identity store: {0}")]
    Store(String),
    /// A sealed identity store does not verify: the named row or the store MAC was changed
    /// without the key, or the key is not the one that sealed it.
    #[error("identity.db failed verification: {0}")]
    Tampered(String),
    /// The unkeyed open of a store a server sealed.
    #[error("identity.db is sealed by a server; open it with the keystore (through the server)")]
    Sealed,
    /// MFA step-up for a user without a confirmed TOTP enrolment.
    #[error("mfa: the user has no confirmed TOTP enrolment")]
    MfaNotEnrolled,
    /// A TOTP code that is malformed, wrong, or outside the accepted window.
    #[error("mfa: the code is wrong or expired")]
    MfaInvalid,
    /// A TOTP code for a time step already used (or older than one used).
    #[error("mfa: this code was already used; wait for the next one")]
    MfaReplayed,
}

/// The actions of the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Run a pipeline.
    RunPipeline,
    /// Validate a pipeline.
    ValidatePipeline,
    /// Register a pipeline with the server (its config, tags and classification).
    RegisterPipeline,
    /// Read a data set or column outside a run (`custos scan`).
    ReadDataset,
    /// Decrypt a protected column in a pipeline.
    DecryptColumn,
    /// Detokenize or decrypt one subject.
    Reidentify,
    /// Create, list, enable or disable keys.
    ManageKeys,
    /// Rotate a key.
    RotateKey,
    /// Destroy a key version (crypto-shredding).
    DestroyKey,
    /// Raise or lower a key's minimum decryptable version (older ciphertexts stop or start
    /// decrypting): like destroying, only through a grant.
    SetKeyMinVersion,
    /// Protect data with a key in a run (encrypt, tokenize, FPE, keyed date shifts and
    /// redaction); reversing it is [`Action::DecryptColumn`].
    UseKey,
    /// Manage users, tokens and grants.
    ManageUsers,
    /// Replace the policies, or change settings such as audit retention.
    ManagePolicies,
    /// Read and verify the audit log.
    ReadAudit,
    /// Export a data subject's data (later).
    ExportSubject,
    /// Erase a data subject (later).
    EraseSubject,
    /// Rectify a data subject's data (later).
    RectifySubject,
}

impl Action {
    /// Every action.
    pub const ALL: [Action; 17] = [
        Action::RunPipeline,
        Action::ValidatePipeline,
        Action::RegisterPipeline,
        Action::ReadDataset,
        Action::DecryptColumn,
        Action::Reidentify,
        Action::ManageKeys,
        Action::RotateKey,
        Action::DestroyKey,
        Action::SetKeyMinVersion,
        Action::UseKey,
        Action::ManageUsers,
        Action::ManagePolicies,
        Action::ReadAudit,
        Action::ExportSubject,
        Action::EraseSubject,
        Action::RectifySubject,
    ];

    /// The action's name in the schema.
    pub fn name(self) -> &'static str {
        match self {
            Action::RunPipeline => "run_pipeline",
            Action::ValidatePipeline => "validate_pipeline",
            Action::RegisterPipeline => "register_pipeline",
            Action::ReadDataset => "read_dataset",
            Action::DecryptColumn => "decrypt_column",
            Action::Reidentify => "reidentify",
            Action::ManageKeys => "manage_keys",
            Action::RotateKey => "rotate_key",
            Action::DestroyKey => "destroy_key",
            Action::SetKeyMinVersion => "set_key_min_version",
            Action::UseKey => "use_key",
            Action::ManageUsers => "manage_users",
            Action::ManagePolicies => "manage_policies",
            Action::ReadAudit => "read_audit",
            Action::ExportSubject => "export_subject",
            Action::EraseSubject => "erase_subject",
            Action::RectifySubject => "rectify_subject",
        }
    }

    /// Whether the action needs a second factor (step-up) where the project requires MFA:
    /// destroying keys and changing their minimum version, users, tokens, grants and
    /// policies, decrypting and re-identifying, and subject workflows.
    pub fn needs_step_up(self) -> bool {
        matches!(
            self,
            Action::DestroyKey
                | Action::SetKeyMinVersion
                | Action::ManageUsers
                | Action::ManagePolicies
                | Action::DecryptColumn
                | Action::Reidentify
                | Action::ExportSubject
                | Action::EraseSubject
                | Action::RectifySubject
        )
    }

    /// Parses an action name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == s)
    }

    fn uid(self) -> EntityUid {
        uid("Action", self.name())
    }
}

fn uid(kind: &str, id: &str) -> EntityUid {
    // The type names are fixed identifiers of the schema.
    let ty = EntityTypeName::from_str(&format!("Custos::{kind}"))
        .unwrap_or_else(|_| unreachable!("static type name"));
    EntityUid::from_type_name_and_id(ty, EntityId::new(id))
}

/// What a request acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    /// A pipeline and its tags.
    Pipeline {
        /// `[pipeline] name`.
        name: String,
        /// `[pipeline] tags`.
        tags: Vec<String>,
    },
    /// A data set read outside a run.
    Dataset {
        /// Its path or name.
        name: String,
    },
    /// A column of a pipeline.
    Column {
        /// The pipeline.
        pipeline: String,
        /// Its tags (the column's parent entity carries them).
        tags: Vec<String>,
        /// The column.
        name: String,
        /// Whether it holds personal data.
        pii: bool,
        /// The protection applied to it (`none` if none).
        protection: String,
    },
    /// A key (`*`: the keyring).
    Key {
        /// Key name.
        name: String,
    },
    /// One use of a key by a pipeline's protect action or SQL function.
    KeyUse {
        /// Key name.
        key: String,
        /// The pipeline.
        pipeline: String,
        /// Its tags.
        tags: Vec<String>,
        /// The operation (`encrypt`, `tokenize`, ...).
        operation: String,
        /// Whether equal inputs give equal outputs.
        deterministic: bool,
    },
    /// The audit log.
    AuditLog,
    /// Users and grants.
    Directory,
    /// The stored policies and settings.
    PolicyStore,
    /// A data subject (by keyed hash, never the raw identifier).
    Subject {
        /// Keyed hash of the subject id.
        id: String,
    },
}

impl Resource {
    /// The resource as written in audit records and grants: `pipeline:NAME`, `dataset:NAME`,
    /// `column:PIPELINE/COLUMN`, `key:NAME`, `audit`, `users`, `subject:ID`.
    pub fn spec(&self) -> String {
        match self {
            Resource::Pipeline { name, .. } => format!("pipeline:{name}"),
            Resource::Dataset { name } => format!("dataset:{name}"),
            Resource::Column { pipeline, name, .. } => format!("column:{pipeline}/{name}"),
            Resource::Key { name } => format!("key:{name}"),
            Resource::KeyUse {
                key,
                pipeline,
                operation,
                ..
            } => format!("key:{key}/{pipeline}/{operation}"),
            Resource::AuditLog => "audit".into(),
            Resource::Directory => "users".into(),
            Resource::PolicyStore => "policies".into(),
            Resource::Subject { id } => format!("subject:{id}"),
        }
    }

    fn uid(&self) -> EntityUid {
        match self {
            Resource::Pipeline { name, .. } => uid("Pipeline", name),
            Resource::Dataset { name } => uid("Dataset", name),
            Resource::Column { pipeline, name, .. } => uid("Column", &format!("{pipeline}/{name}")),
            Resource::Key { name } => uid("Key", name),
            Resource::KeyUse {
                key,
                pipeline,
                operation,
                ..
            } => uid("KeyUse", &format!("{key}/{pipeline}/{operation}")),
            Resource::AuditLog => uid("AuditLog", "log"),
            Resource::Directory => uid("Directory", "users"),
            Resource::PolicyStore => uid("PolicyStore", "policies"),
            Resource::Subject { id } => uid("Subject", id),
        }
    }

    /// The resource's entities (itself and its parents) as Cedar entity JSON.
    fn entities(&self) -> Vec<serde_json::Value> {
        let e = |u: &EntityUid, attrs: serde_json::Value, parents: Vec<serde_json::Value>| json!({"uid": uid_json(u), "attrs": attrs, "parents": parents});
        match self {
            Resource::Pipeline { tags, .. } => vec![e(&self.uid(), json!({"tags": tags}), vec![])],
            Resource::Column {
                pipeline,
                tags,
                pii,
                protection,
                ..
            } => {
                let parent = uid("Pipeline", pipeline);
                vec![
                    e(&parent, json!({"tags": tags}), vec![]),
                    e(
                        &self.uid(),
                        json!({"pii": pii, "protection": protection}),
                        vec![uid_json(&parent)],
                    ),
                ]
            }
            Resource::KeyUse {
                key,
                pipeline,
                tags,
                operation,
                deterministic,
            } => {
                let k = uid("Key", key);
                let p = uid("Pipeline", pipeline);
                vec![
                    e(&k, json!({}), vec![]),
                    e(&p, json!({"tags": tags}), vec![]),
                    e(
                        &self.uid(),
                        json!({"operation": operation, "deterministic": deterministic}),
                        vec![uid_json(&k), uid_json(&p)],
                    ),
                ]
            }
            _ => vec![e(&self.uid(), json!({}), vec![])],
        }
    }
}

fn uid_json(u: &EntityUid) -> serde_json::Value {
    json!({"type": u.type_name().to_string(), "id": u.id().unescaped()})
}

/// What a grant applies to: a resource, everything under a pipeline, or anything (`*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourcePattern {
    /// Any resource.
    Any,
    /// Exactly this entity, or anything inside it (a pipeline's columns).
    In(String, String),
}

impl ResourcePattern {
    /// Parses `*`, `pipeline:NAME`, `dataset:NAME`, `column:PIPELINE/COLUMN`, `key:NAME`,
    /// `audit`, `users`, `policies` or `subject:ID`.
    pub fn parse(s: &str) -> Result<Self, PolicyError> {
        let bad = || {
            PolicyError::Invalid(format!(
                "invalid resource \"{s}\": use *, pipeline:NAME, column:PIPELINE/COLUMN, dataset:NAME, key:NAME, audit, users, policies or subject:ID"
            ))
        };
        Ok(match s {
            "*" => ResourcePattern::Any,
            "audit" => ResourcePattern::In("AuditLog".into(), "log".into()),
            "users" => ResourcePattern::In("Directory".into(), "users".into()),
            "policies" => ResourcePattern::In("PolicyStore".into(), "policies".into()),
            _ => {
                let (kind, name) = s.split_once(':').ok_or_else(bad)?;
                if name.is_empty() {
                    return Err(bad());
                }
                let kind = match kind {
                    "pipeline" => "Pipeline",
                    "dataset" => "Dataset",
                    "column" if name.contains('/') => "Column",
                    "key" => "Key",
                    "subject" => "Subject",
                    _ => return Err(bad()),
                };
                ResourcePattern::In(kind.into(), name.into())
            }
        })
    }

    fn scope(&self) -> String {
        match self {
            ResourcePattern::Any => "resource".into(),
            ResourcePattern::In(kind, name) => format!("resource in {}", uid(kind, name)),
        }
    }
}

/// The outcome of one authorization request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request is allowed.
    pub allowed: bool,
    /// Ids of the policies that decided (the permits that allowed it, or the forbids that
    /// denied it; empty for a default deny).
    pub policies: Vec<String>,
    /// Evaluation errors (any error denies).
    pub errors: Vec<String>,
}

/// A validated policy set with its schema.
pub struct PolicyEngine {
    schema: Schema,
    policies: PolicySet,
    source: String,
}

impl std::fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyEngine")
            .field("source", &self.source)
            .finish()
    }
}

fn schema() -> Result<Schema, PolicyError> {
    Schema::from_cedarschema_str(SCHEMA)
        .map(|(s, _)| s)
        .map_err(|e| PolicyError::Policies(format!("built-in schema: {e}")))
}

/// The `.cedar` files of a policy directory, sorted.
fn policy_files(dir: &Path) -> Result<Vec<PathBuf>, PolicyError> {
    let rd = std::fs::read_dir(dir)
        .map_err(|e| PolicyError::Policies(format!("reading {}: {e}", dir.display())))?;
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "cedar"))
        .collect();
    files.sort();
    Ok(files)
}

/// Parses policy text into `set`, renaming each policy to its `@id`; errors name the file.
fn add_policies(
    set: &mut PolicySet,
    text: &str,
    origin: &str,
    origins: &mut std::collections::HashMap<String, String>,
    errors: &mut Vec<String>,
) {
    let parsed = match PolicySet::from_str(text) {
        Ok(p) => p,
        Err(e) => {
            errors.push(format!("{origin}: {e}"));
            return;
        }
    };
    for (i, p) in parsed.policies().enumerate() {
        let Some(id) = p.annotation("id") else {
            errors.push(format!(
                "{origin}: policy {} has no @id(\"...\") annotation (every policy needs one, so decisions and audit records can name it)",
                i + 1
            ));
            continue;
        };
        if id.starts_with("grant:") {
            errors.push(format!(
                "{origin}: policy id \"{id}\" is reserved for time-bound grants"
            ));
            continue;
        }
        if let Err(e) = set.add(p.new_id(PolicyId::new(id))) {
            errors.push(format!("{origin}: policy \"{id}\": {e}"));
        } else {
            origins.insert(id.to_string(), origin.to_string());
        }
    }
}

impl PolicyEngine {
    /// Loads and validates the policies in `dir` (every `*.cedar` file), or the built-in
    /// defaults when `dir` does not exist.
    pub fn load(dir: &Path) -> Result<Self, PolicyError> {
        let schema = schema()?;
        let mut set = PolicySet::new();
        let mut errors = Vec::new();
        let mut origins = std::collections::HashMap::new();
        let source = if dir.is_dir() {
            let files = policy_files(dir)?;
            if files.is_empty() {
                return Err(PolicyError::Policies(format!(
                    "{}: no .cedar policy files (delete the directory to use the built-in defaults)",
                    dir.display()
                )));
            }
            for f in &files {
                let text = std::fs::read_to_string(f)
                    .map_err(|e| PolicyError::Policies(format!("reading {}: {e}", f.display())))?;
                add_policies(
                    &mut set,
                    &text,
                    &f.display().to_string(),
                    &mut origins,
                    &mut errors,
                );
            }
            dir.display().to_string()
        } else {
            add_policies(
                &mut set,
                DEFAULT_POLICIES,
                "built-in policies",
                &mut origins,
                &mut errors,
            );
            "built-in policies".into()
        };
        let result = Validator::new(schema.clone()).validate(&set, ValidationMode::Strict);
        for e in result.validation_errors() {
            let origin = origins
                .get(&e.policy_id().to_string())
                .map_or(source.as_str(), String::as_str);
            errors.push(format!("{origin}: {e}"));
        }
        if !errors.is_empty() {
            return Err(PolicyError::Policies(errors.join("\n")));
        }
        Ok(Self {
            schema,
            policies: set,
            source,
        })
    }

    /// Validates policy `text` (as stored in the identity store) like [`PolicyEngine::load`]
    /// does a file: strictly against [`SCHEMA`], every policy with an `@id`. `origin` names
    /// the text in errors and is the engine's [`PolicyEngine::source`].
    pub fn from_text(text: &str, origin: &str) -> Result<Self, PolicyError> {
        let schema = schema()?;
        let mut set = PolicySet::new();
        let mut errors = Vec::new();
        let mut origins = std::collections::HashMap::new();
        add_policies(&mut set, text, origin, &mut origins, &mut errors);
        if errors.is_empty() && set.policies().next().is_none() {
            errors.push(format!(
                "{origin}: no policies (everything would be denied)"
            ));
        }
        let result = Validator::new(schema.clone()).validate(&set, ValidationMode::Strict);
        for e in result.validation_errors() {
            errors.push(format!("{origin}: {e}"));
        }
        if !errors.is_empty() {
            return Err(PolicyError::Policies(errors.join("\n")));
        }
        Ok(Self {
            schema,
            policies: set,
            source: origin.to_string(),
        })
    }

    /// Where the policies came from (a directory or "built-in policies").
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether any policy of the set could permit `action` (a `permit` whose action scope is
    /// unconstrained, that action, or a list holding it), whatever its conditions. `false`
    /// means only a grant can allow it: a set written before the action existed.
    pub fn may_permit(&self, action: Action) -> bool {
        let target = action.uid();
        self.policies.policies().any(|p| {
            p.effect() == cedar_policy::Effect::Permit
                && match p.action_constraint() {
                    cedar_policy::ActionConstraint::Any => true,
                    cedar_policy::ActionConstraint::Eq(a) => a == target,
                    cedar_policy::ActionConstraint::In(list) => list.contains(&target),
                }
        })
    }

    /// Decides whether `user` may do `action` on `resource` at `now_s` (Unix seconds), with
    /// the user's active `grants` added as policies. Default deny; any evaluation error denies.
    pub fn decide(
        &self,
        user: &User,
        action: Action,
        resource: &Resource,
        grants: &[Grant],
        now_s: i64,
    ) -> Decision {
        match self.try_decide(user, action, resource, grants, now_s) {
            Ok(d) => d,
            Err(e) => Decision {
                allowed: false,
                policies: Vec::new(),
                errors: vec![e],
            },
        }
    }

    fn try_decide(
        &self,
        user: &User,
        action: Action,
        resource: &Resource,
        grants: &[Grant],
        now_s: i64,
    ) -> Result<Decision, String> {
        let mut set = self.policies.clone();
        let principal = uid("User", &user.name);
        // The caller reads the grants of the user's grant subject (`oidc:NAME` for an
        // identity provider's user); any other user's grant is ignored.
        for g in grants.iter().filter(|g| {
            g.user.strip_prefix(EXTERNAL_PREFIX).unwrap_or(&g.user) == user.name
                && g.is_active(now_s)
        }) {
            let Some(a) = Action::parse(&g.action) else {
                continue;
            };
            let pattern = ResourcePattern::parse(&g.resource).map_err(|e| e.to_string())?;
            let text = format!(
                "permit (principal == {principal}, action == {}, {}) when {{ context.now < {} }};",
                a.uid(),
                pattern.scope(),
                g.until_s
            );
            let p = Policy::parse(Some(PolicyId::new(format!("grant:{}", g.id))), text)
                .map_err(|e| format!("grant {}: {e}", g.id))?;
            set.add(p).map_err(|e| format!("grant {}: {e}", g.id))?;
        }
        let mut entities = vec![
            json!({
                "uid": uid_json(&principal),
                "attrs": {"active": user.active},
                "parents": [uid_json(&uid("Role", &user.role))],
            }),
            json!({"uid": uid_json(&uid("Role", &user.role)), "attrs": {}, "parents": []}),
        ];
        entities.extend(resource.entities());
        let entities =
            Entities::from_json_value(serde_json::Value::Array(entities), Some(&self.schema))
                .map_err(|e| format!("entities: {e}"))?;
        let action_uid = action.uid();
        let context =
            Context::from_json_value(json!({"now": now_s}), Some((&self.schema, &action_uid)))
                .map_err(|e| format!("context: {e}"))?;
        let request = Request::new(
            principal,
            action_uid,
            resource.uid(),
            context,
            Some(&self.schema),
        )
        .map_err(|e| format!("request: {e}"))?;
        let response = Authorizer::new().is_authorized(&request, &set, &entities);
        let errors: Vec<String> = response
            .diagnostics()
            .errors()
            .map(|e| e.to_string())
            .collect();
        let policies: Vec<String> = response
            .diagnostics()
            .reason()
            .map(|p| p.to_string())
            .collect();
        Ok(Decision {
            allowed: response.decision() == CedarDecision::Allow && errors.is_empty(),
            policies,
            errors,
        })
    }
}
