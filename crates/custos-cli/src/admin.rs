//! `custos users`, `custos tokens`, `custos grants` and `custos audit`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Subcommand;
use custos_app::{
    AppError, AuditFilter, ExportedCheckpoint, NewGrant, NewUser, Principal, Project,
};
use custos_policy::ROLES;

#[derive(Debug, Subcommand)]
pub(crate) enum UsersCommand {
    /// Add a user and print its API token (once; only a hash is stored).
    Add {
        /// User name (letters, digits, '.', '_', '@', '-').
        name: String,
        /// analyst, data_engineer, ml_engineer or security_admin.
        #[arg(long, value_parser = ROLES)]
        role: String,
        /// Write the token to this file (mode 0600) instead of printing it.
        #[arg(long, value_name = "FILE")]
        token_file: Option<PathBuf>,
    },
    /// List users, roles and states (never tokens).
    List {
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop a user from signing in.
    Disable {
        /// User name.
        name: String,
    },
    /// Let a disabled user sign in again.
    Enable {
        /// User name.
        name: String,
    },
    /// Remove a user and revoke its grants.
    Remove {
        /// User name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum TokensCommand {
    /// Replace a token: your own, or another user's (needs manage_users). The old token stops
    /// working at once.
    Rotate {
        /// Whose token [default: yours].
        #[arg(long)]
        user: Option<String>,
        /// Write the new token to this file (mode 0600) instead of printing it.
        #[arg(long, value_name = "FILE")]
        token_file: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum GrantsCommand {
    /// Grant USER one ACTION on a resource until a time (a second person must grant it).
    Add {
        /// Grantee.
        user: String,
        /// Action: decrypt_column, destroy_key, reidentify, run_pipeline, ...
        action: String,
        /// `pipeline:NAME`, `column:PIPELINE/COLUMN`, `dataset:NAME`, `key:NAME`, `audit`,
        /// `users`, `subject:ID` or `*`.
        #[arg(long = "on", value_name = "RESOURCE")]
        resource: String,
        /// Expiry: RFC 3339 (`2026-12-01T18:00:00Z`) or from now (`+30m`, `+8h`, `+2d`).
        #[arg(long, value_name = "TIME")]
        until: String,
        /// Why (ticket, incident): recorded with the grant.
        #[arg(long)]
        reason: String,
    },
    /// List grants (active ones unless --all).
    List {
        /// Include expired and revoked grants.
        #[arg(long)]
        all: bool,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a grant.
    Revoke {
        /// Grant id.
        id: i64,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Recompute the hash chain, Merkle roots and every checkpoint signature; name the first
    /// bad position if anything was modified, deleted, inserted, reordered or truncated.
    Verify {
        /// Checkpoint public key (hex) [default: the audit key in the keystore].
        #[arg(long, value_name = "HEX")]
        public_key: Option<String>,
    },
    /// Sign a checkpoint of the log as it is now and print it (with the public key) as JSON,
    /// to keep a copy elsewhere.
    ExportCheckpoint {
        /// Write to this file instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Prove that the log only grew since an exported checkpoint (RFC 6962 consistency proof).
    Prove {
        /// A file written by `custos audit export-checkpoint`.
        checkpoint: PathBuf,
    },
    /// Show the last events, optionally only those matching every filter given.
    Tail {
        /// How many (the newest that match).
        #[arg(short = 'n', long, default_value_t = 20)]
        limit: usize,
        /// Only this principal.
        #[arg(long)]
        principal: Option<String>,
        /// Only this action (`run_pipeline`, `authenticate`, `decrypt_column`, ...).
        #[arg(long)]
        action: Option<String>,
        /// Only this outcome.
        #[arg(long, value_parser = ["allowed", "denied", "succeeded", "failed"])]
        outcome: Option<String>,
        /// Only events at or after this time (RFC 3339).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Only events before this time (RFC 3339).
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
        /// Print as JSON lines.
        #[arg(long)]
        json: bool,
    },
}

impl AuditCommand {
    /// The filter of `tail` (local and server mode alike).
    pub(crate) fn filter(&self) -> Option<AuditFilter> {
        let AuditCommand::Tail {
            limit,
            principal,
            action,
            outcome,
            since,
            until,
            ..
        } = self
        else {
            return None;
        };
        Some(AuditFilter {
            principal: principal.clone(),
            action: action.clone(),
            outcome: outcome.clone(),
            since: since.clone(),
            until: until.clone(),
            limit: Some(*limit),
        })
    }
}

/// Prints an enrolment ticket, shown once (local and server mode alike).
pub(crate) fn print_ticket(user: &str, ticket: &str, expires: &str, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::json!({"user": user, "ticket": ticket, "expires": expires})
        );
    } else {
        println!(
            "enrolment ticket for \"{}\" (shown once, valid until {}; give it to them by another channel than their token):",
            user, expires
        );
        println!("{ticket}");
        println!("they enrol with: custos mfa enroll --ticket-stdin, then custos mfa confirm CODE");
    }
}

/// Prints users as a table or JSON (local and server mode alike).
pub(crate) fn print_users(users: &[custos_policy::User], json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(users)?);
        return Ok(());
    }
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::NOTHING).set_header([
        "user",
        "role",
        "state",
        "created",
        "token issued",
    ]);
    for u in users {
        t.add_row([
            u.name.clone(),
            u.role.clone(),
            if u.active { "active" } else { "disabled" }.to_string(),
            ns_to_rfc3339(u.created_ns),
            ns_to_rfc3339(u.token_issued_ns),
        ]);
    }
    println!("{t}");
    Ok(())
}

/// Prints grants as a table or JSON (local and server mode alike).
pub(crate) fn print_grants(grants: &[custos_policy::Grant], now_s: i64, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(grants)?);
        return Ok(());
    }
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::NOTHING).set_header([
        "id", "user", "action", "resource", "until", "state", "by", "reason",
    ]);
    for g in grants {
        let state = if g.revoked_ns.is_some() {
            "revoked"
        } else if g.is_active(now_s) {
            "active"
        } else {
            "expired"
        };
        t.add_row([
            g.id.to_string(),
            g.user.clone(),
            g.action.clone(),
            g.resource.clone(),
            s_to_rfc3339(g.until_s),
            state.to_string(),
            g.granted_by.clone(),
            g.reason.clone(),
        ]);
    }
    println!("{t}");
    Ok(())
}

/// The message after a grant is added.
pub(crate) fn grant_added(g: &custos_policy::Grant) -> String {
    format!(
        "grant {}: {} may {} on {} until {}",
        g.id,
        g.user,
        g.action,
        g.resource,
        s_to_rfc3339(g.until_s)
    )
}

/// Writes a token to `path` (0600, refusing to overwrite) or prints it.
pub(crate) fn hand_out(token: &str, who: &str, path: Option<&Path>) -> Result<()> {
    match path {
        Some(p) => {
            use std::io::Write as _;
            let mut o = std::fs::OpenOptions::new();
            o.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                o.mode(0o600);
            }
            let mut f = o
                .open(p)
                .with_context(|| format!("creating the token file {}", p.display()))?;
            writeln!(f, "{token}").with_context(|| format!("writing {}", p.display()))?;
            println!("token for \"{who}\" written to {} (mode 0600)", p.display());
        }
        None => {
            println!("token for \"{who}\" (shown once; store it in a secret manager):");
            println!("{token}");
        }
    }
    Ok(())
}

fn ns_to_rfc3339(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn s_to_rfc3339(s: i64) -> String {
    chrono::DateTime::from_timestamp(s, 0)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| s.to_string())
}

pub(crate) async fn users(p: &Project, me: &Principal, cmd: &UsersCommand) -> Result<u8> {
    match cmd {
        UsersCommand::Add {
            name,
            role,
            token_file,
        } => {
            let issued = p
                .add_user(
                    me,
                    &NewUser {
                        name: name.clone(),
                        role: role.clone(),
                    },
                )
                .await?;
            hand_out(&issued.token, name, token_file.as_deref())?;
        }
        UsersCommand::List { json } => print_users(&p.users(me).await?, *json)?,
        UsersCommand::Disable { name } | UsersCommand::Enable { name } => {
            let enable = matches!(cmd, UsersCommand::Enable { .. });
            p.set_user_active(me, name, enable).await?;
            println!(
                "user \"{name}\" {}",
                if enable { "enabled" } else { "disabled" }
            );
        }
        UsersCommand::Remove { name } => {
            p.remove_user(me, name).await?;
            println!("user \"{name}\" removed; its grants are revoked");
        }
    }
    Ok(0)
}

pub(crate) async fn tokens(p: &Project, me: &Principal, cmd: &TokensCommand) -> Result<u8> {
    let TokensCommand::Rotate { user, token_file } = cmd;
    let issued = p.rotate_token(me, user.as_deref()).await?;
    hand_out(&issued.token, &issued.user.name, token_file.as_deref())?;
    Ok(0)
}

pub(crate) async fn grants(p: &Project, me: &Principal, cmd: &GrantsCommand) -> Result<u8> {
    match cmd {
        GrantsCommand::Add {
            user,
            action,
            resource,
            until,
            reason,
        } => {
            let g = p
                .add_grant(
                    me,
                    &NewGrant {
                        user: user.clone(),
                        action: action.clone(),
                        resource: resource.clone(),
                        until: until.clone(),
                        reason: reason.clone(),
                    },
                )
                .await?;
            println!("{}", grant_added(&g));
        }
        GrantsCommand::List { all, json } => {
            let now_s = chrono::Utc::now().timestamp();
            print_grants(&p.grants(me, *all).await?, now_s, *json)?;
        }
        GrantsCommand::Revoke { id } => {
            p.revoke_grant(me, *id).await?;
            println!("grant {id} revoked");
        }
    }
    Ok(0)
}

fn public_key(hex_key: &str) -> Result<ed25519_dalek::VerifyingKey> {
    let bytes: [u8; 32] = hex::decode(hex_key)
        .ok()
        .and_then(|b| b.try_into().ok())
        .context("--public-key must be 64 hex digits")?;
    ed25519_dalek::VerifyingKey::from_bytes(&bytes)
        .map_err(|_| anyhow::anyhow!("--public-key is not a valid Ed25519 key"))
}

/// Prints the result of verifying the audit log (local and server mode alike).
pub(crate) fn print_verified(v: &custos_app::AuditVerification) {
    println!(
        "audit log ok: {} records, {} checkpoints, root {}",
        v.records, v.checkpoints, v.root
    );
}

/// Prints audit entries, oldest first (local and server mode alike).
pub(crate) fn print_entries(entries: &[custos_app::AuditEntry], json: bool) {
    for e in entries {
        if json {
            println!(
                "{}",
                serde_json::json!({"seq": e.position, "event": &e.event})
            );
        } else {
            println!(
                "{:>8}  {}  {:<12} {:<18} {:<28} {}{}",
                e.position,
                ns_to_rfc3339(e.event.time_ns),
                e.event.principal,
                e.event.action,
                e.event.resource,
                e.event.outcome,
                e.event
                    .error_code
                    .as_deref()
                    .map(|c| format!(" ({c})"))
                    .unwrap_or_default()
            );
        }
    }
}

/// Writes an exported checkpoint to `out` or prints it (local and server mode alike).
pub(crate) fn write_checkpoint(cp: &ExportedCheckpoint, out: Option<&Path>) -> Result<()> {
    let text = serde_json::to_string_pretty(cp)?;
    match out {
        Some(p) => {
            std::fs::write(p, format!("{text}\n"))
                .with_context(|| format!("writing {}", p.display()))?;
            println!("checkpoint written to {}", p.display());
        }
        None => println!("{text}"),
    }
    Ok(())
}

/// Reads a checkpoint written by `custos audit export-checkpoint`.
pub(crate) fn read_checkpoint(path: &Path) -> Result<ExportedCheckpoint> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| {
        AppError::Invalid(format!(
            "{}: not an exported checkpoint: {e}",
            path.display()
        ))
        .into()
    })
}

/// Prints the result of a consistency proof (local and server mode alike).
pub(crate) fn print_consistent(old: u64, now: u64) {
    println!(
        "consistent: the log of {old} records in the checkpoint is a prefix of the current log of {now} records"
    );
}

pub(crate) async fn audit(p: &Project, me: &Principal, cmd: &AuditCommand) -> Result<u8> {
    match cmd {
        AuditCommand::Verify { public_key: key } => {
            let key = key.as_deref().map(public_key).transpose()?;
            print_verified(&p.audit_verify_with(me, key).await?);
        }
        AuditCommand::ExportCheckpoint { out } => {
            write_checkpoint(&p.export_checkpoint(me).await?, out.as_deref())?;
        }
        AuditCommand::Prove { checkpoint } => {
            let old = read_checkpoint(checkpoint)?;
            let (m, n) = p.prove_checkpoint(me, &old).await?;
            print_consistent(m, n);
        }
        AuditCommand::Tail { json, .. } => {
            let filter = cmd.filter().unwrap_or_default();
            print_entries(&p.audit_query(me, filter).await?, *json);
        }
    }
    Ok(0)
}
