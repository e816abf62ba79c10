//! `custos keys`: the keyring in the local encrypted keystore. Listings show names, versions,
//! states and dates; key material and the passphrase are never printed.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Result, bail};
use clap::Subcommand;
use comfy_table::{Cell, Table, presets::UTF8_FULL_CONDENSED};
use custos_app::keys::{KeyChange, KeyInfo};
use custos_app::{Principal, Project};
use custos_keys::KdfParams;

/// `custos keys` subcommands.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create an empty keystore (passphrase from CUSTOS_KEYSTORE_PASSPHRASE or
    /// CUSTOS_KEYSTORE_PASSPHRASE_FILE).
    Init {
        /// Argon2id memory in MiB (at least 8).
        #[arg(long, default_value_t = 64)]
        kdf_memory_mib: u32,
        /// Argon2id iterations.
        #[arg(long, default_value_t = 3)]
        kdf_iterations: u32,
    },
    /// Create a key with version 1 active.
    Create {
        /// Key name (lowercase letters, digits, '-' and '_').
        name: String,
        /// aead (AES-256-GCM), daead (AES-SIV), fpe (FF1) or hmac (tokens).
        #[arg(long, value_parser = ["aead", "daead", "fpe", "hmac"])]
        purpose: String,
    },
    /// List keys with their versions and states.
    List {
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one key's versions, states and dates.
    Show {
        /// Key name.
        name: String,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Add a new primary version; the old primary becomes decrypt-only.
    Rotate {
        /// Key name.
        name: String,
    },
    /// Stop versions below V from decrypting.
    SetMinVersion {
        /// Key name.
        name: String,
        /// Minimum version that may decrypt.
        #[arg(value_name = "V")]
        key_version: u32,
    },
    /// Disable a (non-primary) version until it is enabled again.
    Disable {
        /// Key name.
        name: String,
        /// Version.
        #[arg(value_name = "V")]
        key_version: u32,
    },
    /// Enable a disabled version (decrypt-only).
    Enable {
        /// Key name.
        name: String,
        /// Version.
        #[arg(value_name = "V")]
        key_version: u32,
    },
    /// Erase a (non-primary) version's material for good: what it encrypted becomes
    /// unreadable (crypto-shredding). Asks for confirmation unless --yes.
    Destroy {
        /// Key name.
        name: String,
        /// Version.
        #[arg(value_name = "V")]
        key_version: u32,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

/// Prints keys as a table or JSON (local and server mode alike).
pub(crate) fn print_keys(keys: &[KeyInfo], json: bool, empty: &str) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(keys)?);
    } else if keys.is_empty() {
        println!("{empty}");
    } else {
        let mut t = Table::new();
        t.load_preset(UTF8_FULL_CONDENSED);
        t.set_header(vec![
            "name", "id", "purpose", "primary", "min", "versions", "created",
        ]);
        for v in keys {
            let versions: Vec<String> = v
                .versions
                .iter()
                .map(|x| format!("v{} {}", x.version, x.state))
                .collect();
            t.add_row(vec![
                Cell::new(&v.name),
                Cell::new(v.id),
                Cell::new(&v.purpose),
                Cell::new(v.primary.map_or("-".to_string(), |p| format!("v{p}"))),
                Cell::new(v.min_version),
                Cell::new(versions.join(", ")),
                Cell::new(&v.created_at),
            ]);
        }
        println!("{t}");
    }
    Ok(())
}

/// Prints one key as a table or JSON (local and server mode alike).
pub(crate) fn print_key(k: &KeyInfo, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(k)?);
        return Ok(());
    }
    println!(
        "key {} (id {}, purpose {}, min version {})",
        k.name, k.id, k.purpose, k.min_version
    );
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(vec!["version", "state", "created", "updated", "provider"]);
    for v in &k.versions {
        t.add_row(vec![
            Cell::new(v.version),
            Cell::new(&v.state),
            Cell::new(&v.created_at),
            Cell::new(&v.updated_at),
            Cell::new(&v.provider),
        ]);
    }
    println!("{t}");
    Ok(())
}

/// Runs a `custos keys` command on the project's keystore, as `me`.
pub(crate) async fn run(p: &Project, me: &Principal, cmd: &KeysCommand) -> Result<u8> {
    match cmd {
        KeysCommand::Init {
            kdf_memory_mib,
            kdf_iterations,
        } => {
            if *kdf_memory_mib < 8 || *kdf_iterations < 1 {
                eprintln!(
                    "custos: --kdf-memory-mib must be at least 8 and --kdf-iterations at least 1"
                );
                return Ok(crate::EXIT_INVALID);
            }
            let params = KdfParams {
                memory_kib: kdf_memory_mib * 1024,
                iterations: *kdf_iterations,
                lanes: 1,
            };
            p.init_keystore(me, params).await?;
            println!(
                "created keystore {} (Argon2id {kdf_memory_mib} MiB, {kdf_iterations} iterations)",
                p.keystore_file().display()
            );
        }
        KeysCommand::Create { name, purpose } => {
            let k = p
                .change_key(me, name, &KeyChange::Create(purpose.clone()))
                .await?;
            println!(
                "created key \"{}\" (id {}, {}), version 1 active",
                k.name, k.id, k.purpose
            );
        }
        KeysCommand::List { json } => {
            let keys = p.keys(me).await?;
            print_keys(
                &keys,
                *json,
                &format!("no keys in {}", p.keystore_file().display()),
            )?;
        }
        KeysCommand::Show { name, json } => print_key(&p.key(me, name).await?, *json)?,
        KeysCommand::Rotate { name } => {
            let k = p.change_key(me, name, &KeyChange::Rotate).await?;
            let v = k.primary.unwrap_or_default();
            println!("key \"{name}\": version {v} is now primary");
        }
        KeysCommand::SetMinVersion {
            name,
            key_version: version,
        } => {
            p.change_key(me, name, &KeyChange::SetMinVersion(*version))
                .await?;
            println!("key \"{name}\": versions below {version} can no longer decrypt");
        }
        KeysCommand::Disable {
            name,
            key_version: version,
        } => {
            p.change_key(me, name, &KeyChange::Disable(*version))
                .await?;
            println!("key \"{name}\" version {version} disabled");
        }
        KeysCommand::Enable {
            name,
            key_version: version,
        } => {
            p.change_key(me, name, &KeyChange::Enable(*version)).await?;
            println!("key \"{name}\" version {version} enabled (decrypt-only)");
        }
        KeysCommand::Destroy {
            name,
            key_version: version,
            yes,
        } => {
            if !yes && !confirm_destroy(name, *version)? {
                return Ok(crate::EXIT_INVALID);
            }
            p.change_key(me, name, &KeyChange::Destroy(*version))
                .await?;
            println!("key \"{name}\" version {version} destroyed");
        }
    }
    Ok(0)
}

/// Asks on the terminal to type the key's name; `false` (after saying why) when there is no
/// terminal to ask on.
pub(crate) fn confirm_destroy(name: &str, version: u32) -> Result<bool> {
    if !std::io::stdin().is_terminal() {
        eprintln!(
            "custos: refusing to destroy key \"{name}\" version {version} without confirmation; pass --yes"
        );
        return Ok(false);
    }
    eprint!(
        "destroying key \"{name}\" version {version} makes everything it encrypted unreadable, for good.\ntype the key name to confirm: "
    );
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    if line.trim() != name {
        bail!("confirmation did not match; nothing was destroyed");
    }
    Ok(true)
}
