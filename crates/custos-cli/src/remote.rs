//! Server mode: with `CUSTOS_SERVER=https://host:8443` set, commands go to a `custos serve`,
//! which alone holds the project's keys, users, policies and audit log. The output and exit
//! codes are those of local mode. The token is `CUSTOS_TOKEN`, the file named by
//! `CUSTOS_TOKEN_FILE`, or the one `custos login` saved for that server; the server's CA is
//! the PEM file named by `CUSTOS_SERVER_CA` (else the system roots).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Subcommand;
use custos_engine::{RunRecord, RunSummary};
use custos_server::client::{Client, ClientError};
use serde_json::{Value, json};

use crate::{EXIT_DENIED, EXIT_INVALID, EXIT_RUN_FAILED, RunArgs, RunsCommand, output};

/// `custos pipelines ...` (server mode).
#[derive(Debug, Subcommand)]
pub(crate) enum PipelinesCommand {
    /// Register a pipeline file with the server (a new version if the name exists).
    Register {
        /// The pipeline file; its `[pipeline] name` is the registered name.
        file: PathBuf,
        /// A tag the policies see (repeat for more) [default: the file's `[pipeline] tags`].
        #[arg(long = "tag", value_name = "TAG")]
        tags: Vec<String>,
        /// public, internal, confidential or restricted.
        #[arg(long, default_value = "confidential")]
        classification: String,
        /// Directory on the server that relative paths resolve against [default: its first
        /// data root].
        #[arg(long, value_name = "DIR")]
        base_dir: Option<PathBuf>,
    },
    /// List registered pipelines.
    List {
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one registered pipeline and its config.
    Show {
        /// Pipeline name.
        name: String,
    },
}

/// `custos jobs ...` (server mode).
#[derive(Debug, Subcommand)]
pub(crate) enum JobsCommand {
    /// List the server's run jobs, newest first.
    List {
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one job.
    Show {
        /// Job id.
        id: String,
    },
    /// Cancel a job: a queued one never starts, a running one is rolled back.
    Cancel {
        /// Job id.
        id: String,
    },
}

/// `custos mfa ...` (server mode; `ticket` also locally).
#[derive(Debug, Subcommand)]
pub(crate) enum MfaCommand {
    /// Start enrolling an authenticator app: prints the secret and an otpauth:// URI (once).
    Enroll {
        /// Read the one-time enrolment ticket an admin issued you from standard input (a
        /// server with `[auth] mfa_enrollment = "ticket"` requires one).
        #[arg(long)]
        ticket_stdin: bool,
    },
    /// Issue a user a one-time enrolment ticket (needs manage_users; not for yourself on a
    /// server). Hand it over by another channel than their token.
    Ticket {
        /// User name.
        user: String,
        /// Hours the ticket is valid (1 to 720).
        #[arg(long, default_value_t = 24)]
        valid_hours: u32,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Finish enrolling with the app's current code.
    Confirm {
        /// The 6-digit code.
        code: String,
    },
    /// Show whether you have a confirmed second factor.
    Status,
    /// Remove a user's second factor, e.g. after a lost phone (needs manage_users).
    Reset {
        /// User name.
        user: String,
    },
}

/// `custos policies ...` (server mode).
#[derive(Debug, Subcommand)]
pub(crate) enum PoliciesCommand {
    /// Print the stored policies (none: the server uses its policy files or the defaults).
    Show {
        /// Print the version record as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Replace the policies with a Cedar file, validated against the schema first.
    Set {
        /// The .cedar file (every policy with an @id).
        file: PathBuf,
        /// Why (ticket, change request): recorded with the version.
        #[arg(long)]
        reason: String,
    },
    /// Set how long audit records are kept (90d, 12w, 6m, 7y).
    Retention {
        /// The period.
        period: String,
    },
}

/// The server named by `CUSTOS_SERVER`, if any.
pub(crate) fn server() -> Option<String> {
    std::env::var("CUSTOS_SERVER")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Where `custos login` keeps tokens: `$XDG_CONFIG_HOME/custos/credentials.json` (or
/// `~/.config/...`), mode 0600.
fn credentials_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("custos").join("credentials.json"))
}

fn saved_token(server: &str) -> Option<String> {
    let text = std::fs::read_to_string(credentials_path()?).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    v[server].as_str().map(str::to_string)
}

fn token(server: &str) -> Result<Option<String>> {
    Ok(crate::access::token_from_env()?.or_else(|| saved_token(server)))
}

fn client(server: &str, token: &str) -> Result<Client, ClientError> {
    let ca = match std::env::var_os("CUSTOS_SERVER_CA").filter(|v| !v.is_empty()) {
        Some(p) => Some(std::fs::read_to_string(&p).map_err(|e| {
            ClientError::Config(format!(
                "CUSTOS_SERVER_CA {}: {e}",
                PathBuf::from(&p).display()
            ))
        })?),
        None => None,
    };
    let c = Client::new(server, ca.as_deref(), token)?;
    // The second factor for privileged actions, when given.
    Ok(match std::env::var("CUSTOS_OTP") {
        Ok(code) if !code.trim().is_empty() => c.with_one_time_code(&code),
        _ => c,
    })
}

/// Prints a client error the way local mode prints its errors; returns the exit code.
fn fail(e: &ClientError) -> u8 {
    match e {
        ClientError::Api {
            status: 401 | 403, ..
        } => eprintln!("custos: {e}"),
        _ => eprintln!("custos: error: {e}"),
    }
    e.exit_code()
}

/// Runs one command against the server; `None` when the command has no server form.
pub(crate) fn dispatch(server: &str, command: &crate::Command) -> Result<Option<u8>> {
    use crate::Command;
    let needs_token = !matches!(command, Command::Login { .. });
    let tok = token(server)?;
    if needs_token && tok.is_none() {
        eprintln!(
            "custos: not signed in: set CUSTOS_TOKEN (or CUSTOS_TOKEN_FILE), or run `custos login`"
        );
        return Ok(Some(EXIT_DENIED));
    }
    let rt = crate::runtime()?;
    let tok = tok.unwrap_or_default();
    let c = match client(server, &tok) {
        Ok(c) => c,
        Err(e) => return Ok(Some(fail(&e))),
    };
    let code = match command {
        Command::Login { token_stdin } => rt.block_on(login(server, *token_stdin))?,
        Command::Run(args) => rt.block_on(run(&c, args))?,
        Command::Runs { command } => rt.block_on(runs(&c, command))?,
        Command::Pipelines { command } => rt.block_on(pipelines(&c, command))?,
        Command::Jobs { command } => rt.block_on(jobs(&c, command))?,
        Command::Audit { command } => return rt.block_on(audit(&c, command)),
        Command::Scan {
            target,
            sample,
            seed,
            json,
            suggest,
        } => rt.block_on(scan(&c, target, *sample, *seed, *json, *suggest))?,
        Command::Users { command } => rt.block_on(users(&c, command))?,
        Command::Tokens { command } => rt.block_on(tokens(&c, command))?,
        Command::Grants { command } => rt.block_on(grants(&c, command))?,
        Command::Mfa { command } => rt.block_on(mfa(&c, command))?,
        Command::Policies { command } => rt.block_on(policies(&c, command))?,
        Command::Keys {
            keystore: None,
            command,
        } => match rt.block_on(keys(&c, command))? {
            Some(code) => code,
            None => return Ok(None),
        },
        _ => return Ok(None),
    };
    Ok(Some(code))
}

async fn login(server: &str, from_stdin: bool) -> Result<u8> {
    let token = if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("reading the token from standard input")?;
        line.trim().to_string()
    } else {
        match token(server)? {
            Some(t) => t,
            None => {
                eprintln!(
                    "custos: error: give the token on standard input (--token-stdin) or in CUSTOS_TOKEN_FILE"
                );
                return Ok(EXIT_INVALID);
            }
        }
    };
    let c = match client(server, &token) {
        Ok(c) => c,
        Err(e) => return Ok(fail(&e)),
    };
    let me = match c.call("GET", "/v1/whoami", None).await {
        Ok(v) => v,
        Err(e) => return Ok(fail(&e)),
    };
    let Some(path) = credentials_path() else {
        anyhow::bail!("no home directory to keep the credentials in (set XDG_CONFIG_HOME)");
    };
    let mut all: Value = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_else(|| json!({}));
    all[server] = json!(token);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = path.with_extension("json.tmp");
    {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt;
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(serde_json::to_string_pretty(&all)?.as_bytes())
            .with_context(|| format!("writing {}", tmp.display()))?;
        f.sync_all().ok();
    }
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    println!(
        "signed in to {server} as \"{}\" (role {}); token kept in {} (mode 0600)",
        me["user"]["name"].as_str().unwrap_or("?"),
        me["user"]["role"].as_str().unwrap_or("?"),
        path.display()
    );
    Ok(0)
}

async fn run(c: &Client, args: &RunArgs) -> Result<u8> {
    // On a server, runs name a registered pipeline.
    let name = args.file.display().to_string();
    let path = format!("/v1/pipelines/{}/runs", encode(&name));
    let job = match c.call("POST", &path, None).await {
        Ok(j) => j,
        Err(e) => return Ok(fail(&e)),
    };
    let id = job["id"].as_str().unwrap_or_default().to_string();
    let show_bar = !args.quiet && !args.json && std::io::stderr().is_terminal();
    let bar = show_bar.then(|| {
        let pb = indicatif::ProgressBar::new_spinner();
        pb.enable_steady_tick(Duration::from_millis(120));
        pb
    });
    let cancelled = Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let cancelled = cancelled.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                cancelled.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        });
    }
    let mut asked_cancel = false;
    let info = loop {
        if cancelled.load(std::sync::atomic::Ordering::Relaxed) && !asked_cancel {
            asked_cancel = true;
            if let Err(e) = c.call("POST", &format!("/v1/jobs/{id}/cancel"), None).await {
                eprintln!("custos: cancelling job {id}: {e}");
            }
        }
        let info = match c.call("GET", &format!("/v1/jobs/{id}"), None).await {
            Ok(i) => i,
            Err(e) => return Ok(fail(&e)),
        };
        let status = info["status"].as_str().unwrap_or_default();
        if let Some(pb) = &bar {
            pb.set_message(format!(
                "job {id} {status}: {} rows read, {} rows written",
                info["progress"]["rows_read"], info["progress"]["rows_written"]
            ));
        }
        if !matches!(status, "queued" | "running") {
            break info;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    if let Some(pb) = bar {
        pb.finish_and_clear();
    }
    let Some(summary) = info.get("summary").filter(|s| !s.is_null()) else {
        eprintln!(
            "custos: run of \"{name}\" {}: {}",
            info["status"].as_str().unwrap_or("failed"),
            info["error"].as_str().unwrap_or("unknown error")
        );
        return Ok(EXIT_RUN_FAILED);
    };
    let summary: RunSummary =
        serde_json::from_value(summary.clone()).context("reading the run summary")?;
    crate::report_summary(&summary, args)
}

/// Percent-encodes a path segment.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn runs(c: &Client, command: &RunsCommand) -> Result<u8> {
    match command {
        RunsCommand::List { limit, json } => {
            let v = match c
                .call("GET", &format!("/v1/runs?limit={limit}"), None)
                .await
            {
                Ok(v) => v,
                Err(e) => return Ok(fail(&e)),
            };
            let runs: Vec<RunRecord> = serde_json::from_value(v).context("reading run records")?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&runs)?);
            } else {
                output::print_runs(&runs);
            }
            Ok(0)
        }
        RunsCommand::Show { id, json } => {
            let v = match c
                .call("GET", &format!("/v1/runs/{}", encode(id)), None)
                .await
            {
                Ok(v) => v,
                Err(e) => return Ok(fail(&e)),
            };
            let r: RunRecord = serde_json::from_value(v).context("reading the run record")?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                output::print_run(&r);
            }
            Ok(0)
        }
    }
}

async fn pipelines(c: &Client, command: &PipelinesCommand) -> Result<u8> {
    match command {
        PipelinesCommand::Register {
            file,
            tags,
            classification,
            base_dir,
        } => {
            let config = std::fs::read_to_string(file)
                .with_context(|| format!("reading {}", file.display()))?;
            let mut body = json!({"config": config, "classification": classification});
            if !tags.is_empty() {
                body["tags"] = json!(tags);
            }
            if let Some(d) = base_dir {
                body["base_dir"] = json!(d);
            }
            match c.call("POST", "/v1/pipelines", Some(&body)).await {
                Ok(v) => {
                    println!(
                        "registered \"{}\" version {} (sha256 {}), tags {}, {}",
                        v["name"].as_str().unwrap_or("?"),
                        v["version"],
                        v["sha256"].as_str().unwrap_or("?"),
                        v["tags"],
                        v["classification"].as_str().unwrap_or("?")
                    );
                    Ok(0)
                }
                Err(e) => Ok(fail(&e)),
            }
        }
        PipelinesCommand::List { json } => {
            let v = match c.call("GET", "/v1/pipelines", None).await {
                Ok(v) => v,
                Err(e) => return Ok(fail(&e)),
            };
            if *json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(0);
            }
            for p in v.as_array().into_iter().flatten() {
                println!(
                    "{:<24} v{:<4} {:<13} tags {:<24} by {}",
                    p["name"].as_str().unwrap_or("?"),
                    p["version"],
                    p["classification"].as_str().unwrap_or("?"),
                    p["tags"].to_string(),
                    p["registered_by"].as_str().unwrap_or("?")
                );
            }
            Ok(0)
        }
        PipelinesCommand::Show { name } => {
            match c
                .call("GET", &format!("/v1/pipelines/{}", encode(name)), None)
                .await
            {
                Ok(v) => {
                    println!("{}", serde_json::to_string_pretty(&v)?);
                    Ok(0)
                }
                Err(e) => Ok(fail(&e)),
            }
        }
    }
}

async fn jobs(c: &Client, command: &JobsCommand) -> Result<u8> {
    let r = match command {
        JobsCommand::List { json } => match c.call("GET", "/v1/jobs", None).await {
            Ok(v) if *json => {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(0);
            }
            Ok(v) => {
                for j in v.as_array().into_iter().flatten() {
                    println!(
                        "{}  {:<20} {:<10} by {}",
                        j["id"].as_str().unwrap_or("?"),
                        j["pipeline"].as_str().unwrap_or("?"),
                        j["status"].as_str().unwrap_or("?"),
                        j["principal"].as_str().unwrap_or("?")
                    );
                }
                return Ok(0);
            }
            Err(e) => Err(e),
        },
        JobsCommand::Show { id } => {
            c.call("GET", &format!("/v1/jobs/{}", encode(id)), None)
                .await
        }
        JobsCommand::Cancel { id } => {
            c.call("POST", &format!("/v1/jobs/{}/cancel", encode(id)), None)
                .await
        }
    };
    match r {
        Ok(v) => {
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(0)
        }
        Err(e) => Ok(fail(&e)),
    }
}

async fn audit(c: &Client, command: &crate::admin::AuditCommand) -> Result<Option<u8>> {
    use crate::admin::AuditCommand;
    match command {
        AuditCommand::Verify { public_key: None } => {
            match c.call("POST", "/v1/audit/verify", None).await {
                Ok(v) => {
                    crate::admin::print_verified(&serde_json::from_value(v)?);
                    Ok(Some(0))
                }
                Err(e) => Ok(Some(fail(&e))),
            }
        }
        AuditCommand::Verify {
            public_key: Some(_),
        } => {
            eprintln!(
                "custos: error: a server verifies its log with its own audit key; --public-key is for local mode"
            );
            Ok(Some(crate::EXIT_INVALID))
        }
        AuditCommand::ExportCheckpoint { out } => {
            match c.call("POST", "/v1/audit/checkpoint", None).await {
                Ok(v) => {
                    crate::admin::write_checkpoint(&serde_json::from_value(v)?, out.as_deref())?;
                    Ok(Some(0))
                }
                Err(e) => Ok(Some(fail(&e))),
            }
        }
        AuditCommand::Prove { checkpoint } => {
            let old = crate::admin::read_checkpoint(checkpoint)?;
            match c
                .call(
                    "POST",
                    "/v1/audit/prove",
                    Some(&serde_json::to_value(&old)?),
                )
                .await
            {
                Ok(v) => {
                    crate::admin::print_consistent(
                        v["old_size"].as_u64().unwrap_or(0),
                        v["size"].as_u64().unwrap_or(0),
                    );
                    Ok(Some(0))
                }
                Err(e) => Ok(Some(fail(&e))),
            }
        }
        AuditCommand::Tail { json, .. } => {
            let f = command.filter().unwrap_or_default();
            let mut query = format!("limit={}", f.limit.unwrap_or(20));
            for (key, value) in [
                ("principal", &f.principal),
                ("action", &f.action),
                ("outcome", &f.outcome),
                ("since", &f.since),
                ("until", &f.until),
            ] {
                if let Some(v) = value {
                    query.push_str(&format!("&{key}={}", encode(v)));
                }
            }
            match c.call("GET", &format!("/v1/audit?{query}"), None).await {
                Ok(v) => {
                    crate::admin::print_entries(
                        &serde_json::from_value::<Vec<custos_app::AuditEntry>>(v)?,
                        *json,
                    );
                    Ok(Some(0))
                }
                Err(e) => Ok(Some(fail(&e))),
            }
        }
    }
}

/// `custos scan` on a server: a data file under its data roots (by extension) or a registered
/// pipeline (by name).
async fn scan(
    c: &Client,
    target: &std::path::Path,
    sample: usize,
    seed: u64,
    json: bool,
    suggest: bool,
) -> Result<u8> {
    let ext = target
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let mut req = json!({ "sample": sample, "seed": seed });
    match ext.as_deref() {
        Some("toml") => {
            eprintln!(
                "custos: error: a server scans registered pipelines: register {} (custos pipelines register) and scan it by name",
                target.display()
            );
            return Ok(crate::EXIT_INVALID);
        }
        Some(_) => req["path"] = json!(target),
        None => req["pipeline"] = json!(target.display().to_string()),
    }
    match call(c, "POST", "/v1/scan", Some(&req)).await {
        Ok(v) => {
            let scans: Vec<custos_engine::scan::SourceScan> = serde_json::from_value(v)?;
            crate::scan::print(&scans, json, suggest)?;
            Ok(0)
        }
        Err(code) => Ok(code),
    }
}

/// The JSON answer, or the exit code after printing the error.
async fn call(c: &Client, method: &str, path: &str, body: Option<&Value>) -> Result<Value, u8> {
    c.call(method, path, body).await.map_err(|e| fail(&e))
}

/// Writes a token handed out by the server like local mode does.
fn hand_out(v: &Value, token_file: Option<&std::path::Path>) -> Result<()> {
    crate::admin::hand_out(
        v["token"].as_str().unwrap_or_default(),
        v["user"]["name"].as_str().unwrap_or("?"),
        token_file,
    )
}

async fn users(c: &Client, command: &crate::admin::UsersCommand) -> Result<u8> {
    use crate::admin::UsersCommand;
    match command {
        UsersCommand::Add {
            name,
            role,
            token_file,
        } => {
            let body = json!({"name": name, "role": role});
            match call(c, "POST", "/v1/users", Some(&body)).await {
                Ok(v) => hand_out(&v, token_file.as_deref()).map(|()| 0),
                Err(code) => Ok(code),
            }
        }
        UsersCommand::List { json } => match call(c, "GET", "/v1/users", None).await {
            Ok(v) => {
                let users: Vec<custos_policy::User> =
                    serde_json::from_value(v).context("reading users")?;
                crate::admin::print_users(&users, *json).map(|()| 0)
            }
            Err(code) => Ok(code),
        },
        UsersCommand::Disable { name } | UsersCommand::Enable { name } => {
            let enable = matches!(command, UsersCommand::Enable { .. });
            let verb = if enable { "enable" } else { "disable" };
            match call(
                c,
                "POST",
                &format!("/v1/users/{}/{verb}", encode(name)),
                None,
            )
            .await
            {
                Ok(_) => {
                    println!("user \"{name}\" {verb}d");
                    Ok(0)
                }
                Err(code) => Ok(code),
            }
        }
        UsersCommand::Remove { name } => {
            match call(c, "DELETE", &format!("/v1/users/{}", encode(name)), None).await {
                Ok(_) => {
                    println!("user \"{name}\" removed; its grants are revoked");
                    Ok(0)
                }
                Err(code) => Ok(code),
            }
        }
    }
}

async fn tokens(c: &Client, command: &crate::admin::TokensCommand) -> Result<u8> {
    let crate::admin::TokensCommand::Rotate { user, token_file } = command;
    let path = match user {
        Some(u) => format!("/v1/users/{}/token", encode(u)),
        None => "/v1/token".to_string(),
    };
    match call(c, "POST", &path, None).await {
        Ok(v) => hand_out(&v, token_file.as_deref()).map(|()| 0),
        Err(code) => Ok(code),
    }
}

async fn grants(c: &Client, command: &crate::admin::GrantsCommand) -> Result<u8> {
    use crate::admin::GrantsCommand;
    match command {
        GrantsCommand::Add {
            user,
            action,
            resource,
            until,
            reason,
        } => {
            let body = json!({"user": user, "action": action, "resource": resource, "until": until, "reason": reason});
            match call(c, "POST", "/v1/grants", Some(&body)).await {
                Ok(v) => {
                    let g: custos_policy::Grant =
                        serde_json::from_value(v).context("reading the grant")?;
                    println!("{}", crate::admin::grant_added(&g));
                    Ok(0)
                }
                Err(code) => Ok(code),
            }
        }
        GrantsCommand::List { all, json } => {
            match call(c, "GET", &format!("/v1/grants?all={all}"), None).await {
                Ok(v) => {
                    let grants: Vec<custos_policy::Grant> =
                        serde_json::from_value(v).context("reading grants")?;
                    let now_s = chrono::Utc::now().timestamp();
                    crate::admin::print_grants(&grants, now_s, *json).map(|()| 0)
                }
                Err(code) => Ok(code),
            }
        }
        GrantsCommand::Revoke { id } => {
            match call(c, "DELETE", &format!("/v1/grants/{id}"), None).await {
                Ok(_) => {
                    println!("grant {id} revoked");
                    Ok(0)
                }
                Err(code) => Ok(code),
            }
        }
    }
}

/// The enrolment ticket, from the first line of standard input.
fn read_ticket() -> Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("reading the enrolment ticket from standard input")?;
    let t = line.trim().to_string();
    if t.is_empty() {
        anyhow::bail!("no enrolment ticket on standard input");
    }
    Ok(t)
}

async fn mfa(c: &Client, command: &MfaCommand) -> Result<u8> {
    match command {
        MfaCommand::Ticket {
            user,
            valid_hours,
            json,
        } => {
            let body = json!({"valid_hours": valid_hours});
            match call(
                c,
                "POST",
                &format!("/v1/users/{}/mfa/ticket", encode(user)),
                Some(&body),
            )
            .await
            {
                Ok(v) => {
                    let field = |k: &str| v[k].as_str().unwrap_or("?").to_string();
                    crate::admin::print_ticket(
                        &field("user"),
                        &field("ticket"),
                        &field("expires"),
                        *json,
                    );
                    Ok(0)
                }
                Err(code) => Ok(code),
            }
        }
        MfaCommand::Enroll { ticket_stdin } => {
            let body = match ticket_stdin.then(read_ticket).transpose()? {
                Some(t) => json!({ "ticket": t }),
                None => json!({}),
            };
            match call(c, "POST", "/v1/mfa/enroll", Some(&body)).await {
                Ok(v) => {
                    println!(
                        "add this to your authenticator app (shown once), then run `custos mfa confirm CODE`:"
                    );
                    println!("secret: {}", v["secret"].as_str().unwrap_or("?"));
                    println!("{}", v["otpauth_uri"].as_str().unwrap_or("?"));
                    Ok(0)
                }
                Err(code) => Ok(code),
            }
        }
        MfaCommand::Confirm { code } => {
            let body = json!({"code": code});
            match call(c, "POST", "/v1/mfa/confirm", Some(&body)).await {
                Ok(_) => {
                    println!(
                        "second factor confirmed: privileged commands now need CUSTOS_OTP set to the current code"
                    );
                    Ok(0)
                }
                Err(code) => Ok(code),
            }
        }
        MfaCommand::Status => match call(c, "GET", "/v1/mfa", None).await {
            Ok(v) => {
                println!("{}", serde_json::to_string_pretty(&v)?);
                Ok(0)
            }
            Err(code) => Ok(code),
        },
        MfaCommand::Reset { user } => {
            match call(
                c,
                "DELETE",
                &format!("/v1/users/{}/mfa", encode(user)),
                None,
            )
            .await
            {
                Ok(_) => {
                    println!("second factor of \"{user}\" removed; they can enrol again");
                    Ok(0)
                }
                Err(code) => Ok(code),
            }
        }
    }
}

async fn policies(c: &Client, command: &PoliciesCommand) -> Result<u8> {
    match command {
        PoliciesCommand::Show { json } => match call(c, "GET", "/v1/policies", None).await {
            Ok(Value::Null) => {
                println!(
                    "no stored policies: the server uses its policy files or the built-in defaults"
                );
                Ok(0)
            }
            Ok(v) if *json => {
                println!("{}", serde_json::to_string_pretty(&v)?);
                Ok(0)
            }
            Ok(v) => {
                println!(
                    "// version {} set by {} ({})",
                    v["version"],
                    v["set_by"].as_str().unwrap_or("?"),
                    v["reason"].as_str().unwrap_or("")
                );
                print!("{}", v["text"].as_str().unwrap_or_default());
                Ok(0)
            }
            Err(code) => Ok(code),
        },
        PoliciesCommand::Set { file, reason } => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading {}", file.display()))?;
            let body = json!({"text": text, "reason": reason});
            match call(c, "PUT", "/v1/policies", Some(&body)).await {
                Ok(v) => {
                    println!(
                        "policies version {} in force (sha256 {})",
                        v["version"],
                        v["sha256"].as_str().unwrap_or("?")
                    );
                    Ok(0)
                }
                Err(code) => Ok(code),
            }
        }
        PoliciesCommand::Retention { period } => {
            let body = json!({"retention": period});
            match call(c, "PUT", "/v1/settings/audit-retention", Some(&body)).await {
                Ok(_) => {
                    println!("audit records are kept for {period}");
                    Ok(0)
                }
                Err(code) => Ok(code),
            }
        }
    }
}

/// Key management on the server's keystore; `None` for `keys init` (a server has its own).
async fn keys(c: &Client, command: &crate::keys::KeysCommand) -> Result<Option<u8>> {
    use crate::keys::KeysCommand;
    let key_path = |name: &str| format!("/v1/keys/{}", encode(name));
    let r = match command {
        KeysCommand::Init { .. } => return Ok(None),
        KeysCommand::List { json } => match call(c, "GET", "/v1/keys", None).await {
            Ok(v) => {
                let keys: Vec<custos_app::keys::KeyInfo> =
                    serde_json::from_value(v).context("reading keys")?;
                crate::keys::print_keys(&keys, *json, "no keys on the server")?;
                return Ok(Some(0));
            }
            Err(code) => return Ok(Some(code)),
        },
        KeysCommand::Show { name, json } => match call(c, "GET", &key_path(name), None).await {
            Ok(v) => {
                let k: custos_app::keys::KeyInfo =
                    serde_json::from_value(v).context("reading the key")?;
                crate::keys::print_key(&k, *json)?;
                return Ok(Some(0));
            }
            Err(code) => return Ok(Some(code)),
        },
        KeysCommand::Create { name, purpose } => call(
            c,
            "POST",
            "/v1/keys",
            Some(&json!({"name": name, "purpose": purpose})),
        )
        .await
        .map(|k| {
            format!(
                "created key \"{name}\" (id {}, {}), version 1 active",
                k["id"],
                k["purpose"].as_str().unwrap_or("?")
            )
        }),
        KeysCommand::Rotate { name } => {
            call(c, "POST", &format!("{}/rotate", key_path(name)), None)
                .await
                .map(|k| format!("key \"{name}\": version {} is now primary", k["primary"]))
        }
        KeysCommand::SetMinVersion { name, key_version } => call(
            c,
            "PUT",
            &format!("{}/min-version", key_path(name)),
            Some(&json!({"version": key_version})),
        )
        .await
        .map(|_| format!("key \"{name}\": versions below {key_version} can no longer decrypt")),
        KeysCommand::Disable { name, key_version } => call(
            c,
            "POST",
            &format!("{}/versions/{key_version}/disable", key_path(name)),
            None,
        )
        .await
        .map(|_| format!("key \"{name}\" version {key_version} disabled")),
        KeysCommand::Enable { name, key_version } => call(
            c,
            "POST",
            &format!("{}/versions/{key_version}/enable", key_path(name)),
            None,
        )
        .await
        .map(|_| format!("key \"{name}\" version {key_version} enabled (decrypt-only)")),
        KeysCommand::Destroy {
            name,
            key_version,
            yes,
        } => {
            if !*yes {
                eprintln!(
                    "custos: refusing to destroy key \"{name}\" version {key_version} on the server without --yes"
                );
                return Ok(Some(EXIT_INVALID));
            }
            call(
                c,
                "DELETE",
                &format!(
                    "{}/versions/{key_version}?confirm={}",
                    key_path(name),
                    encode(name)
                ),
                None,
            )
            .await
            .map(|_| format!("key \"{name}\" version {key_version} destroyed"))
        }
    };
    Ok(Some(match r {
        Ok(line) => {
            println!("{line}");
            0
        }
        Err(code) => code,
    }))
}
