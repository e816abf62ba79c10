//! `custos users`, `custos tokens`, `custos grants` and `custos audit`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use custos_policy::{Action, ROLES, Resource};

use crate::access::{Session, audit_key, now_ns};

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
    /// Show the last events.
    Tail {
        /// How many.
        #[arg(short = 'n', long, default_value_t = 20)]
        limit: usize,
        /// Print as JSON lines.
        #[arg(long)]
        json: bool,
    },
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
pub(crate) fn hand_out(token: &custos_policy::Token, who: &str, path: Option<&Path>) -> Result<()> {
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
            writeln!(f, "{}", token.expose())
                .with_context(|| format!("writing {}", p.display()))?;
            println!("token for \"{who}\" written to {} (mode 0600)", p.display());
        }
        None => {
            println!("token for \"{who}\" (shown once; store it in a secret manager):");
            println!("{}", token.expose());
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

pub(crate) fn users(session: &mut Session, cmd: &UsersCommand) -> Result<u8> {
    let me = session.authorize(Action::ManageUsers, &Resource::Directory)?;
    match cmd {
        UsersCommand::Add {
            name,
            role,
            token_file,
        } => {
            let token = session.ids.add_user(name, role, &me.name, now_ns())?;
            hand_out(&token, name, token_file.as_deref())?;
            session.event(
                "user_add",
                &format!("user:{name}"),
                "succeeded",
                None,
                None,
                None,
            )?;
        }
        UsersCommand::List { json } => {
            print_users(&session.ids.users()?, *json)?;
        }
        UsersCommand::Disable { name } | UsersCommand::Enable { name } => {
            let enable = matches!(cmd, UsersCommand::Enable { .. });
            if !enable && *name == me.name {
                bail!("you cannot disable yourself");
            }
            session.ids.set_active(name, enable)?;
            let action = if enable {
                "user_enable"
            } else {
                "user_disable"
            };
            session.event(
                action,
                &format!("user:{name}"),
                "succeeded",
                None,
                None,
                None,
            )?;
            println!(
                "user \"{name}\" {}",
                if enable { "enabled" } else { "disabled" }
            );
        }
        UsersCommand::Remove { name } => {
            if *name == me.name {
                bail!("you cannot remove yourself");
            }
            session.ids.remove_user(name, &me.name, now_ns())?;
            session.event(
                "user_remove",
                &format!("user:{name}"),
                "succeeded",
                None,
                None,
                None,
            )?;
            println!("user \"{name}\" removed; its grants are revoked");
        }
    }
    Ok(0)
}

pub(crate) fn tokens(session: &mut Session, cmd: &TokensCommand) -> Result<u8> {
    let TokensCommand::Rotate { user, token_file } = cmd;
    let me = session.authenticate()?;
    let whose = match user {
        Some(u) if *u != me.name => {
            session.authorize(Action::ManageUsers, &Resource::Directory)?;
            u.clone()
        }
        _ => me.name.clone(),
    };
    let token = session.ids.rotate_token(&whose, &me.name, now_ns())?;
    hand_out(&token, &whose, token_file.as_deref())?;
    session.event(
        "token_rotate",
        &format!("user:{whose}"),
        "succeeded",
        None,
        None,
        None,
    )?;
    Ok(0)
}

pub(crate) fn grants(session: &mut Session, cmd: &GrantsCommand) -> Result<u8> {
    let me = session.authorize(Action::ManageUsers, &Resource::Directory)?;
    match cmd {
        GrantsCommand::Add {
            user,
            action,
            resource,
            until,
            reason,
        } => {
            let now = now_ns();
            let until_s = custos_app::admin::parse_until(until, now / 1_000_000_000)?;
            let id = session
                .ids
                .add_grant(user, action, resource, until_s, reason, &me.name, now)?;
            session.event(
                "grant_add",
                &format!("grant:{id}"),
                "succeeded",
                None,
                None,
                None,
            )?;
            println!(
                "{}",
                grant_added(&custos_policy::Grant {
                    id,
                    user: user.clone(),
                    action: action.clone(),
                    resource: resource.clone(),
                    until_s,
                    reason: reason.clone(),
                    granted_by: me.name.clone(),
                    created_ns: now,
                    revoked_ns: None,
                    revoked_by: None,
                })
            );
        }
        GrantsCommand::List { all, json } => {
            let now_s = now_ns() / 1_000_000_000;
            let grants = session.ids.grants((!*all).then_some(now_s))?;
            print_grants(&grants, now_s, *json)?;
        }
        GrantsCommand::Revoke { id } => {
            session.ids.revoke_grant(*id, &me.name, now_ns())?;
            session.event(
                "grant_revoke",
                &format!("grant:{id}"),
                "succeeded",
                None,
                None,
                None,
            )?;
            println!("grant {id} revoked");
        }
    }
    Ok(0)
}

/// An exported checkpoint: the signed statement and the key that verifies it.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Exported {
    checkpoint: custos_audit::Checkpoint,
    public_key: String,
}

fn verifying_key(state_dir: &Path, hex_key: Option<&str>) -> Result<ed25519_dalek::VerifyingKey> {
    if let Some(h) = hex_key {
        let bytes: [u8; 32] = hex::decode(h)
            .ok()
            .and_then(|b| b.try_into().ok())
            .context("--public-key must be 64 hex digits")?;
        return ed25519_dalek::VerifyingKey::from_bytes(&bytes)
            .map_err(|_| anyhow::anyhow!("--public-key is not a valid Ed25519 key"));
    }
    match audit_key(state_dir, false)? {
        Some(k) => Ok(k.verifying_key()),
        None => bail!(
            "the audit checkpoint key is in the keystore: set CUSTOS_KEYSTORE_PASSPHRASE (or CUSTOS_KEYSTORE_PASSPHRASE_FILE), or pass --public-key"
        ),
    }
}

pub(crate) fn audit(session: &mut Session, state_dir: &Path, cmd: &AuditCommand) -> Result<u8> {
    session.authorize(Action::ReadAudit, &Resource::AuditLog)?;
    let dir = state_dir.join("audit");
    match cmd {
        AuditCommand::Verify { public_key } => {
            let key = verifying_key(state_dir, public_key.as_deref())?;
            // The events of this command are in the log too: flush them first.
            session.sync()?;
            match custos_audit::verify(&dir, &key) {
                Ok(r) => {
                    println!(
                        "audit log ok: {} records, {} checkpoints, root {}",
                        r.records, r.checkpoints, r.root
                    );
                    Ok(0)
                }
                Err(e) => {
                    eprintln!("custos: audit log verification FAILED: {e}");
                    session.event(
                        "audit_verify",
                        "audit",
                        "failed",
                        Some("tampered"),
                        None,
                        None,
                    )?;
                    Ok(crate::EXIT_RUN_FAILED)
                }
            }
        }
        AuditCommand::ExportCheckpoint { out } => {
            let Some(key) = audit_key(state_dir, false)? else {
                bail!("signing a checkpoint needs the audit key: set CUSTOS_KEYSTORE_PASSPHRASE");
            };
            let cp = session.checkpoint(&key)?;
            let text = serde_json::to_string_pretty(&Exported {
                checkpoint: cp,
                public_key: hex::encode(key.verifying_key().to_bytes()),
            })?;
            match out {
                Some(p) => {
                    std::fs::write(p, format!("{text}\n"))
                        .with_context(|| format!("writing {}", p.display()))?;
                    println!("checkpoint written to {}", p.display());
                }
                None => println!("{text}"),
            }
            Ok(0)
        }
        AuditCommand::Prove { checkpoint } => {
            let text = std::fs::read_to_string(checkpoint)
                .with_context(|| format!("reading {}", checkpoint.display()))?;
            let old: Exported = serde_json::from_str(&text)
                .with_context(|| format!("{}: not an exported checkpoint", checkpoint.display()))?;
            let key = verifying_key(state_dir, Some(&old.public_key))?;
            if !old.checkpoint.verify_signature(&key) {
                eprintln!(
                    "custos: {}: the checkpoint signature does not verify",
                    checkpoint.display()
                );
                return Ok(crate::EXIT_RUN_FAILED);
            }
            match session.prove(&old.checkpoint) {
                Ok((m, n)) => {
                    println!(
                        "consistent: the log of {m} records in the checkpoint is a prefix of the current log of {n} records"
                    );
                    Ok(0)
                }
                Err(e) => {
                    eprintln!(
                        "custos: audit log is NOT consistent with {}: {e}",
                        checkpoint.display()
                    );
                    Ok(crate::EXIT_RUN_FAILED)
                }
            }
        }
        AuditCommand::Tail { limit, json } => {
            session.sync()?;
            for (seq, event) in custos_audit::tail(&dir, *limit)? {
                if *json {
                    println!("{}", serde_json::json!({"seq": seq, "event": &event}));
                } else {
                    let e = (seq, event);
                    println!(
                        "{:>8}  {}  {:<12} {:<18} {:<28} {}{}",
                        e.0,
                        ns_to_rfc3339(e.1.time_ns),
                        e.1.principal,
                        e.1.action,
                        e.1.resource,
                        e.1.outcome,
                        e.1.error_code
                            .as_deref()
                            .map(|c| format!(" ({c})"))
                            .unwrap_or_default()
                    );
                }
            }
            Ok(0)
        }
    }
}
