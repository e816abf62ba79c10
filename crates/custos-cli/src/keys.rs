//! `custos keys`: the keyring in the local encrypted keystore. Listings show names, versions,
//! states and dates; key material and the passphrase are never printed.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Subcommand;
use comfy_table::{Cell, Table, presets::UTF8_FULL_CONDENSED};
use custos_app::keys::KeyInfo;
use custos_keys::{KdfParams, Keystore, Passphrase, Purpose};

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

impl KeysCommand {
    /// The action and resource a command needs permission for.
    pub(crate) fn access(&self) -> (custos_policy::Action, custos_policy::Resource) {
        use custos_policy::{Action, Resource};
        let key = |name: &str| Resource::Key {
            name: name.to_string(),
        };
        match self {
            KeysCommand::Init { .. } | KeysCommand::List { .. } => (Action::ManageKeys, key("*")),
            KeysCommand::Create { name, .. }
            | KeysCommand::Show { name, .. }
            | KeysCommand::Disable { name, .. }
            | KeysCommand::Enable { name, .. } => (Action::ManageKeys, key(name)),
            // Older ciphertexts stop (or start again) decrypting: a grant, like destroying.
            KeysCommand::SetMinVersion { name, .. } => (Action::SetKeyMinVersion, key(name)),
            KeysCommand::Rotate { name } => (Action::RotateKey, key(name)),
            KeysCommand::Destroy { name, .. } => (Action::DestroyKey, key(name)),
        }
    }

    /// Whether the command creates a keystore or keys (and so may create the audit key).
    pub(crate) fn sets_up(&self) -> bool {
        matches!(self, KeysCommand::Init { .. } | KeysCommand::Create { .. })
    }
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

fn passphrase() -> Result<Passphrase> {
    let (p, warning) = Passphrase::from_env()?;
    if let Some(w) = warning {
        eprintln!("custos: warning: {w}");
    }
    Ok(p)
}

/// Runs a `custos keys` command against the keystore at `path`. The keystore it unlocked is
/// left in `unlocked`, so the command's audit checkpoint needs no second unlock.
pub fn run(
    path: PathBuf,
    cmd: &KeysCommand,
    unlocked: &mut Option<std::sync::Arc<Keystore>>,
) -> Result<u8> {
    if let KeysCommand::Init {
        kdf_memory_mib,
        kdf_iterations,
    } = cmd
    {
        return init(&path, *kdf_memory_mib, *kdf_iterations);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut ks = Keystore::open(&path, &passphrase()?)?;
    match cmd {
        KeysCommand::Rotate { name }
        | KeysCommand::SetMinVersion { name, .. }
        | KeysCommand::Disable { name, .. }
        | KeysCommand::Destroy { name, .. }
            if name == crate::access::AUDIT_KEY =>
        {
            bail!(
                "key \"{name}\" signs the audit log's checkpoints; it cannot be rotated, disabled or destroyed (earlier checkpoints would stop verifying)"
            );
        }
        KeysCommand::Rotate { name }
        | KeysCommand::SetMinVersion { name, .. }
        | KeysCommand::Disable { name, .. }
        | KeysCommand::Destroy { name, .. }
            if name == custos_app::project::IDENTITY_KEY =>
        {
            bail!(
                "key \"{name}\" seals the identity store; it cannot be rotated, disabled or destroyed (the store would no longer verify)"
            );
        }
        _ => {}
    }
    match cmd {
        KeysCommand::Init { .. } => return Ok(2), // handled above
        KeysCommand::Create { name, purpose } => {
            let purpose =
                Purpose::parse(purpose).ok_or_else(|| anyhow::anyhow!("unknown purpose"))?;
            let k = rt.block_on(ks.create(name, purpose))?;
            println!(
                "created key \"{}\" (id {}, {}), version 1 active",
                k.name,
                k.id,
                k.purpose.name()
            );
        }
        KeysCommand::List { json } => {
            let keys: Vec<KeyInfo> = ks.keys().iter().map(KeyInfo::from).collect();
            print_keys(&keys, *json, &format!("no keys in {}", path.display()))?;
        }
        KeysCommand::Show { name, json } => {
            print_key(&KeyInfo::from(ks.key(name)?), *json)?;
        }
        KeysCommand::Rotate { name } => {
            let v = rt.block_on(ks.rotate(name))?;
            println!("key \"{name}\": version {v} is now primary");
        }
        KeysCommand::SetMinVersion {
            name,
            key_version: version,
        } => {
            ks.set_min_version(name, *version)?;
            println!("key \"{name}\": versions below {version} can no longer decrypt");
        }
        KeysCommand::Disable {
            name,
            key_version: version,
        } => {
            ks.disable(name, *version)?;
            println!("key \"{name}\" version {version} disabled");
        }
        KeysCommand::Enable {
            name,
            key_version: version,
        } => {
            ks.enable(name, *version)?;
            println!("key \"{name}\" version {version} enabled (decrypt-only)");
        }
        KeysCommand::Destroy {
            name,
            key_version: version,
            yes,
        } => {
            let k = ks.key(name)?;
            let state = k.version(*version)?.state;
            if state == custos_keys::VersionState::Active {
                bail!(
                    "key \"{name}\" version {version} is the primary; rotate before disabling or destroying it"
                );
            }
            if state == custos_keys::VersionState::Destroyed {
                bail!("key \"{name}\" version {version} was destroyed");
            }
            if !yes {
                if !std::io::stdin().is_terminal() {
                    eprintln!(
                        "custos: refusing to destroy key \"{name}\" version {version} without confirmation; pass --yes"
                    );
                    return Ok(2);
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
            }
            ks.destroy(name, *version)?;
            println!("key \"{name}\" version {version} destroyed");
        }
    }
    *unlocked = Some(std::sync::Arc::new(ks));
    Ok(0)
}

fn init(path: &std::path::Path, memory_mib: u32, iterations: u32) -> Result<u8> {
    if memory_mib < 8 || iterations < 1 {
        eprintln!("custos: --kdf-memory-mib must be at least 8 and --kdf-iterations at least 1");
        return Ok(2);
    }
    let params = KdfParams {
        memory_kib: memory_mib * 1024,
        iterations,
        lanes: 1,
    };
    Keystore::init(path, &passphrase()?, params)?;
    println!(
        "created keystore {} (Argon2id {memory_mib} MiB, {iterations} iterations)",
        path.display()
    );
    Ok(0)
}
